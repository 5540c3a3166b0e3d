//! Hostile bodies for [`decode`](super::decode): the shapes that once made it take
//! quadratic time or memory out of all proportion to the body, one generator per attack
//! and format, each scaled to a requested size.
//!
//! They are here, in the library, so that the unit tests, the peak-memory test
//! (`crates/dataverse/tests/decode_memory.rs`), the `decode` benchmark group and the fuzz targets all
//! decode the very same bodies. Every body is well-formed up to the point of the attack,
//! so it reaches the code the attack is aimed at.

use super::contract::{CONTRACTS_NS, XSI_NS};

/// One kind of hostile body, and how to build it.
#[derive(Debug, Clone, Copy)]
pub struct Generator {
    /// `format/attack`, e.g. `binary/array-long-name`: stable, used as a benchmark id.
    pub name: &'static str,
    /// The content type to decode it with.
    pub content_type: &'static str,
    /// Builds a body of about `size` bytes (never much more; small sizes are rounded up
    /// to the few hundred bytes the attack needs).
    pub build: fn(usize) -> Vec<u8>,
}

const JSON: &str = "application/json";
const XML: &str = "application/xml";
const BINARY: &str = "application/msbin1";

/// Every generator, JSON first, then XML, then .NET binary XML.
pub const GENERATORS: &[Generator] = &[
    Generator {
        name: "json/deep-nesting",
        content_type: JSON,
        build: json_deep_nesting,
    },
    Generator {
        name: "json/long-list",
        content_type: JSON,
        build: json_long_list,
    },
    Generator {
        name: "json/empty-objects",
        content_type: JSON,
        build: json_empty_objects,
    },
    Generator {
        name: "json/many-members",
        content_type: JSON,
        build: json_many_members,
    },
    Generator {
        name: "xml/many-attributes",
        content_type: XML,
        build: xml_many_attributes,
    },
    Generator {
        name: "xml/many-namespaces",
        content_type: XML,
        build: xml_many_namespaces,
    },
    Generator {
        name: "xml/deep-nesting",
        content_type: XML,
        build: xml_deep_nesting,
    },
    Generator {
        name: "xml/many-elements",
        content_type: XML,
        build: xml_many_elements,
    },
    Generator {
        name: "binary/array-long-name",
        content_type: BINARY,
        build: binary_array_long_name,
    },
    Generator {
        name: "binary/array-long-type",
        content_type: BINARY,
        build: binary_array_long_type,
    },
    Generator {
        name: "binary/array-long-xmlns",
        content_type: BINARY,
        build: binary_array_long_xmlns,
    },
    Generator {
        name: "binary/long-list",
        content_type: BINARY,
        build: binary_long_list,
    },
    Generator {
        name: "binary/many-attributes",
        content_type: BINARY,
        build: binary_many_attributes,
    },
    Generator {
        name: "binary/many-namespaces",
        content_type: BINARY,
        build: binary_many_namespaces,
    },
    Generator {
        name: "binary/deep-nesting",
        content_type: BINARY,
        build: binary_deep_nesting,
    },
    Generator {
        name: "binary/many-elements",
        content_type: BINARY,
        build: binary_many_elements,
    },
    Generator {
        name: "binary/text-expansion",
        content_type: BINARY,
        build: binary_text_expansion,
    },
    Generator {
        name: "binary/dictionary-strings",
        content_type: BINARY,
        build: binary_dictionary_strings,
    },
];

/// `{"SharedVariables":[{"key":"k","value":` + `inner` + `}]}`, with `inner` filling the
/// rest of `size` by repeating `item` between `open` and `close`.
fn json_value(size: usize, open: &str, item: &str, close: &str) -> Vec<u8> {
    let head = format!(r#"{{"SharedVariables":[{{"key":"k","value":{open}"#);
    let tail = format!(r#"{close}}}]}}"#);
    let mut body = head.into_bytes();
    let count = size.saturating_sub(body.len() + tail.len()) / item.len();
    for i in 0..count.max(1) {
        body.extend(if i == 0 { item.trim_start_matches(',') } else { item }.as_bytes());
    }
    body.extend(tail.as_bytes());
    body
}

/// Arrays nested as deep as the body allows: `[[[[…]]]]`.
fn json_deep_nesting(size: usize) -> Vec<u8> {
    let levels = size.saturating_sub(40) / 2;
    json_value(0, &"[".repeat(levels), "0", &"]".repeat(levels))
}

/// One list of as many one-digit numbers as fit: `[0,0,0,…]`.
fn json_long_list(size: usize) -> Vec<u8> {
    json_value(size, "[", ",0", "]")
}

/// One list of empty objects, each a record in the model: `[{},{},…]`.
fn json_empty_objects(size: usize) -> Vec<u8> {
    json_value(size, "[", ",{}", "]")
}

/// One object with as many distinct members as fit: `{"a0":0,"a1":0,…}`.
fn json_many_members(size: usize) -> Vec<u8> {
    let head = r#"{"SharedVariables":[{"key":"k","value":{"#;
    let mut body = head.as_bytes().to_vec();
    let mut i = 0;
    while body.len() + 20 < size || i == 0 {
        if i > 0 {
            body.push(b',');
        }
        body.extend(format!(r#""a{i}":0"#).as_bytes());
        i += 1;
    }
    body.extend(b"}}]}");
    body
}

/// `<RemoteExecutionContext xmlns=… xmlns:i=…` + `attributes` + `>` + `content` + the end tag.
fn xml_context(attributes: &[u8], content: &[u8]) -> Vec<u8> {
    let mut body = format!(r#"<RemoteExecutionContext xmlns="{CONTRACTS_NS}" xmlns:i="{XSI_NS}""#).into_bytes();
    body.extend(attributes);
    body.push(b'>');
    body.extend(content);
    body.extend(b"</RemoteExecutionContext>");
    body
}

/// Bytes from `item(0)`, `item(1)`… until about `size` bytes are used.
fn repeat_numbered(size: usize, item: impl Fn(usize) -> String) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut i = 0;
    while bytes.len() < size || i == 0 {
        bytes.extend(item(i).as_bytes());
        i += 1;
    }
    bytes
}

/// One element with as many distinct attributes in the instance namespace as fit; each
/// is resolved, and each is checked against the others for duplicates.
fn xml_many_attributes(size: usize) -> Vec<u8> {
    let attributes = repeat_numbered(size.saturating_sub(150), |i| format!(r#" i:a{i}="""#));
    xml_context(&attributes, b"")
}

/// The root declares as many prefixes as half the body holds, and the other half is
/// elements in the default namespace, declared before all of them.
fn xml_many_namespaces(size: usize) -> Vec<u8> {
    let declarations = repeat_numbered(size.saturating_sub(150) / 2, |i| format!(r#" xmlns:p{i}="u""#));
    let elements = "<a/>".repeat(size / 8);
    xml_context(&declarations, elements.as_bytes())
}

/// Elements nested as deep as the body allows.
fn xml_deep_nesting(size: usize) -> Vec<u8> {
    let levels = size.saturating_sub(150) / 7;
    xml_context(
        b"",
        format!("{}{}", "<a>".repeat(levels), "</a>".repeat(levels)).as_bytes(),
    )
}

/// As many empty elements as fit, the smallest element text XML can write.
fn xml_many_elements(size: usize) -> Vec<u8> {
    xml_context(b"", "<a/>".repeat(size.saturating_sub(150) / 4).as_bytes())
}

/// A MultiByteInt31.
fn int31(mut value: usize, bytes: &mut Vec<u8>) {
    while value >= 0x80 {
        bytes.push((value as u8 & 0x7F) | 0x80);
        value >>= 7;
    }
    bytes.push(value as u8);
}

/// A length-prefixed UTF-8 string.
fn string(text: &[u8], bytes: &mut Vec<u8>) {
    int31(text.len(), bytes);
    bytes.extend(text);
}

/// `<RemoteExecutionContext xmlns=… xmlns:i=…>` + `content` + `</…>` as records.
fn binary_context(content: &[u8]) -> Vec<u8> {
    let mut body = vec![0x40];
    string(b"RemoteExecutionContext", &mut body);
    body.push(0x08);
    string(CONTRACTS_NS.as_bytes(), &mut body);
    body.push(0x09);
    string(b"i", &mut body);
    string(XSI_NS.as_bytes(), &mut body);
    body.extend(content);
    body.push(0x01);
    body
}

/// An `Array` record of `count` `BoolText` items, repeating the element `element`
/// (an element record with its attributes) once per item.
fn binary_array(element: &[u8], count: usize) -> Vec<u8> {
    let mut content = vec![0x03];
    content.extend(element);
    content.extend([0x01, 0xB5]);
    int31(count, &mut content);
    content.extend(std::iter::repeat_n(1, count));
    binary_context(&content)
}

/// Half the body is an element's name, the other half the items of an `Array` record
/// that repeats it: written out, the body would be the product of the two.
fn binary_array_long_name(size: usize) -> Vec<u8> {
    let half = size.saturating_sub(200) / 2;
    let mut element = vec![0x40];
    string(&vec![b'n'; half.max(1)], &mut element);
    binary_array(&element, half)
}

/// The same with a long `i:type` on a short element (as long as an attribute value may be).
fn binary_array_long_type(size: usize) -> Vec<u8> {
    let long = (size.saturating_sub(200) / 2).min(super::Limits::default().max_string_bytes);
    let count = size.saturating_sub(200 + long);
    let mut element = vec![0x40];
    string(b"a", &mut element);
    element.push(0x2E);
    string(b"type", &mut element);
    element.push(0x9C);
    element.extend(i32::try_from(long).unwrap_or(i32::MAX).to_le_bytes());
    element.extend(std::iter::repeat_n(b't', long));
    binary_array(&element, count)
}

/// The same with a long namespace declaration on a short element.
fn binary_array_long_xmlns(size: usize) -> Vec<u8> {
    let half = size.saturating_sub(200) / 2;
    let mut element = vec![0x40];
    string(b"a", &mut element);
    element.push(0x09);
    string(b"p", &mut element);
    string(&vec![b'u'; half.max(1)], &mut element);
    binary_array(&element, half)
}

/// `<MessageName>` holding one list of as many one-byte items (`OneText`) as fit.
fn binary_long_list(size: usize) -> Vec<u8> {
    let mut content = vec![0x40];
    string(b"MessageName", &mut content);
    content.push(0xA4);
    content.extend(std::iter::repeat_n(0x82, size.saturating_sub(200)));
    content.extend([0xA6, 0x01]);
    binary_context(&content)
}

/// One element with as many distinct attributes in the instance namespace as fit.
fn binary_many_attributes(size: usize) -> Vec<u8> {
    let mut content = vec![0x40];
    string(b"a", &mut content);
    let mut i = 0;
    while content.len() + 200 < size || i == 0 {
        content.push(0x2E);
        string(format!("a{i}").as_bytes(), &mut content);
        content.push(0xA8);
        i += 1;
    }
    content.push(0x01);
    binary_context(&content)
}

/// As [`xml_many_namespaces`]: many declarations, then elements resolved past all of them.
fn binary_many_namespaces(size: usize) -> Vec<u8> {
    let mut content = vec![0x40];
    string(b"a", &mut content);
    let mut i = 0;
    while content.len() + 200 < size / 2 || i == 0 {
        content.push(0x09);
        string(format!("p{i}").as_bytes(), &mut content);
        string(b"u", &mut content);
        i += 1;
    }
    while content.len() + 200 < size {
        content.extend([0x40, 0x01, b'b', 0x01]);
    }
    content.push(0x01);
    binary_context(&content)
}

/// Elements nested as deep as the body allows.
fn binary_deep_nesting(size: usize) -> Vec<u8> {
    let levels = size.saturating_sub(200) / 4;
    let mut content = Vec::with_capacity(levels * 4);
    for _ in 0..levels {
        content.extend([0x40, 0x01, b'a']);
    }
    content.extend(std::iter::repeat_n(0x01, levels));
    binary_context(&content)
}

/// As many of the smallest elements as fit: `<a>0</a>` in four bytes.
fn binary_many_elements(size: usize) -> Vec<u8> {
    let count = size.saturating_sub(200) / 4;
    let mut content = Vec::with_capacity(count * 4);
    for _ in 0..count {
        content.extend([0x40, 0x01, b'a', 0x81]);
    }
    binary_context(&content)
}

/// Elements made of one-byte `TrueText` records, each four bytes of text.
fn binary_text_expansion(size: usize) -> Vec<u8> {
    let mut content = Vec::new();
    while content.len() + 200 < size || content.is_empty() {
        content.extend([0x40, 0x01, b'a']);
        content.extend(std::iter::repeat_n(0x86, 1000));
        content.push(0x01);
    }
    binary_context(&content)
}

/// Records that name dictionary strings (elements, attributes and text) by the largest
/// ids a MultiByteInt31 holds. These bodies have no dictionary to look them up in.
fn binary_dictionary_strings(size: usize) -> Vec<u8> {
    let mut content = Vec::new();
    while content.len() + 200 < size || content.is_empty() {
        content.push(0x44);
        int31(0x7FFF_FFFF, &mut content);
        content.push(0x0C);
        int31(0x7FFF_FFFF, &mut content);
        content.push(0xAA);
        int31(0x7FFF_FFFF, &mut content);
        content.push(0x01);
    }
    binary_context(&content)
}

#[cfg(test)]
mod tests {
    use super::super::{DecodeError, Limits, decode};
    use super::*;

    /// What each hostile body near the 4 MiB limit comes to under the default limits.
    fn outcome(err: &Result<super::super::model::Context, DecodeError>) -> &'static str {
        match err {
            Ok(_) => "decoded",
            Err(DecodeError::Expansion { .. }) => "over the decoded-size limit",
            Err(DecodeError::TooDeep { .. } | DecodeError::BinaryTooDeep { .. }) => "too deep",
            Err(DecodeError::StringTooLong { .. }) => "string too long",
            Err(DecodeError::Binary { .. }) => "invalid binary",
            Err(_) => "other",
        }
    }

    #[test]
    fn every_hostile_body_near_the_limit_decodes_or_hits_a_limit() {
        let limits = Limits::default();
        let size = limits.max_body_bytes - 4096;
        let mut outcomes = Vec::new();
        for generator in GENERATORS {
            let body = (generator.build)(size);
            assert!(
                (size - 4096..=limits.max_body_bytes).contains(&body.len()),
                "{}: {}",
                generator.name,
                body.len()
            );
            let result = decode(&body, Some(generator.content_type), &limits);
            outcomes.push(format!("{}: {}", generator.name, outcome(&result)));
        }
        let over = "over the decoded-size limit";
        let expected = [
            ("json/deep-nesting", "too deep"),
            ("json/long-list", over),
            ("json/empty-objects", over),
            ("json/many-members", over),
            ("xml/many-attributes", over),
            ("xml/many-namespaces", over),
            ("xml/deep-nesting", "too deep"),
            ("xml/many-elements", over),
            ("binary/array-long-name", over),
            ("binary/array-long-type", over),
            ("binary/array-long-xmlns", over),
            ("binary/long-list", "string too long"),
            ("binary/many-attributes", over),
            ("binary/many-namespaces", over),
            ("binary/deep-nesting", "too deep"),
            ("binary/many-elements", over),
            ("binary/text-expansion", "decoded"),
            ("binary/dictionary-strings", "invalid binary"),
        ]
        .map(|(name, outcome)| format!("{name}: {outcome}"));
        assert_eq!(outcomes, expected);
    }

    #[test]
    fn without_a_budget_the_hostile_shapes_still_decode_correctly() {
        // The readers' linear paths (sorted duplicate check, hashed prefixes, running list
        // size) must give what the quadratic ones gave.
        let lax = Limits {
            max_expansion: 1000,
            ..Limits::default()
        };
        for name in [
            "xml/many-attributes",
            "xml/many-namespaces",
            "binary/many-attributes",
            "binary/many-namespaces",
        ] {
            let generator = GENERATORS.iter().find(|g| g.name == name).unwrap();
            let body = (generator.build)(64 * 1024);
            if let Err(err) = decode(&body, Some(generator.content_type), &lax) {
                panic!("{name}: {err}");
            }
        }
        let list = GENERATORS.iter().find(|g| g.name == "binary/long-list").unwrap();
        let context = decode(&(list.build)(10_000), Some(list.content_type), &lax).unwrap();
        let text = context.text("MessageName").unwrap();
        assert!(text.starts_with("1 1 1 ") && text.ends_with(" 1"), "{text}");
        assert_eq!(text.len(), 2 * (10_000 - 200) - 1);
    }
}
