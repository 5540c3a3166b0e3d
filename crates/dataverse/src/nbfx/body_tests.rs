use super::super::contract::{ARRAYS_NS, CONTRACTS_NS, GENERIC_NS, SERIALIZATION_NS, XSD_NS, XSI_NS};
use super::super::model::{CompactString, Value};
use super::super::{Limits, decode};

/// A short string: a one-byte MultiByteInt31 length and the bytes.
fn s(text: &str) -> Vec<u8> {
    assert!(text.len() < 128);
    let mut bytes = vec![text.len() as u8];
    bytes.extend(text.as_bytes());
    bytes
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// `<RemoteExecutionContext xmlns=… xmlns:i=…>` + `content` + `</…>`.
fn context(content: &[u8]) -> Vec<u8> {
    cat(&[
        &[0x40],
        &s("RemoteExecutionContext"),
        &[0x08],
        &s(CONTRACTS_NS),
        &[0x09],
        &s("i"),
        &s(XSI_NS),
        content,
        &[0x01],
    ])
}

/// A `KeyValuePairOfstringanyType` whose value has `i:type="<value_type>"` and
/// whose content is `value` (which must close the value element).
fn pair(key: &str, value_type: &str, value: &[u8]) -> Vec<u8> {
    cat(&[
        &[0x40],
        &s("KeyValuePairOfstringanyType"),
        &[0x5E],
        &s("key"),
        &[0x99],
        &s(key),
        &[0x5E],
        &s("value"),
        &[0x2E],
        &s("type"),
        &[0x98],
        &s(value_type),
        value,
        &[0x01],
    ])
}

fn bad(body: &[u8]) -> String {
    decode(body, Some("application/msbin1"), &Limits::default())
        .unwrap_err()
        .to_string()
}

#[test]
fn typed_text_records_become_typed_values() {
    let mut decimal = [0_u8; 16];
    decimal[2] = 12;
    decimal[3] = 0x80;
    decimal[8..].copy_from_slice(&10_000_000_000_u64.to_le_bytes());
    let guid = [
        0x7f, 0x59, 0x81, 0x6d, 0x9f, 0x0f, 0x11, 0xe7, 0x81, 0x22, 0x00, 0x0d, 0x3a, 0xa2, 0x33, 0x1c,
    ];
    let ticks: u64 = 636_419_810_470_000_000 | 1 << 62;
    let mut ints = vec![0x60];
    ints.extend(s("int"));
    ints.extend([0x01, 0x8D, 3]);
    for n in [7_i32, -1, 65_536] {
        ints.extend(n.to_le_bytes());
    }
    let parameters = cat(&[
        &[0x40],
        &s("InputParameters"),
        &[0x09],
        &s("a"),
        &s(GENERIC_NS),
        &[0x09],
        &s("b"),
        &s(XSD_NS),
        &[0x09],
        &s("z"),
        &s(SERIALIZATION_NS),
        &[0x09],
        &s("c"),
        &s(ARRAYS_NS),
        &pair("big", "b:long", &cat(&[&[0x8F], &(-5_000_000_000_i64).to_le_bytes()])),
        &pair("u", "b:unsignedLong", &cat(&[&[0xB3], &u64::MAX.to_le_bytes()])),
        &pair("amount", "b:decimal", &cat(&[&[0x95], &decimal])),
        &pair("id", "z:guid", &cat(&[&[0xB1], &guid])),
        &pair("urn", "b:string", &cat(&[&[0xAD], &guid])),
        &pair(
            "span",
            "z:duration",
            &cat(&[&[0xAF], &36_000_000_000_i64.to_le_bytes()]),
        ),
        &pair("blob", "b:base64Binary", &[0x9F, 3, 1, 2, 255]),
        &pair("flag", "b:boolean", &[0xB5, 1]),
        &pair("f", "b:float", &cat(&[&[0x91], &1.5_f32.to_le_bytes()])),
        &pair("when", "b:dateTime", &cat(&[&[0x97], &ticks.to_le_bytes()])),
        &pair("list", "b:string", &cat(&[&[0xA4, 0x98], &s("a"), &[0x82, 0xA6, 0x01]])),
        &pair("empty", "b:string", &[0xA9]),
        &pair("wide", "b:string", &[0xB7, 4, b'h', 0, 0xE9, 0]),
        &pair("ints", "c:ArrayOfint", &cat(&[&[0x03], &ints, &[0x01]])),
        &[0x01],
    ]);
    let body = context(&cat(&[
        &[0x40],
        &s("Depth"),
        &[0x89, 5],
        &[0x02],
        &s("a comment"),
        &[0x40],
        &s("Stage"),
        &[0x8B, 40, 0],
        &[0x41],
        &s(""),
        &s("MessageName"),
        &[0x99],
        &s("Update"),
        &parameters,
    ]));
    let context = decode(&body, None, &Limits::default()).unwrap();
    assert_eq!(context.int("Depth"), Some(5));
    assert_eq!(context.int("Stage"), Some(40));
    assert_eq!(context.text("MessageName"), Some("Update"));
    let bag = context.bag("InputParameters");
    let get = |key: &str| &bag.iter().find(|(k, _)| k == key).unwrap().1;
    assert_eq!(get("big"), &Value::Int(-5_000_000_000));
    assert_eq!(get("u"), &Value::Decimal("18446744073709551615".into()));
    assert_eq!(get("amount"), &Value::Decimal("-0.010000000000".into()));
    assert_eq!(get("id"), &Value::Guid("6d81597f-0f9f-e711-8122-000d3aa2331c".into()));
    assert_eq!(
        get("urn"),
        &Value::String("urn:uuid:6d81597f-0f9f-e711-8122-000d3aa2331c".into())
    );
    assert_eq!(get("span"), &Value::String("PT1H".into()));
    assert_eq!(
        get("blob"),
        &Value::List(vec![Value::Int(1), Value::Int(2), Value::Int(255)])
    );
    assert_eq!(get("flag"), &Value::Bool(true));
    assert_eq!(get("f"), &Value::Double(1.5));
    match get("when") {
        Value::DateTime(dt) => assert_eq!(dt.to_string(), "2017-09-26T00:04:07Z"),
        other => panic!("{other:?}"),
    }
    assert_eq!(get("list"), &Value::String("a 1".into()));
    assert_eq!(get("empty"), &Value::String(CompactString::default()));
    assert_eq!(get("wide"), &Value::String("hé".into()));
    assert_eq!(
        get("ints"),
        &Value::List(vec![Value::Int(7), Value::Int(-1), Value::Int(65_536)])
    );
}

/// Where the content of [`context`] starts.
fn base() -> usize {
    context(&[]).len() - 1
}

#[test]
fn malformed_bodies_name_the_byte_and_the_reason() {
    let base = base();
    assert_eq!(
        bad(&context(&[0xFF])),
        format!(".NET binary XML body is not valid at byte {base}: unknown record type 0xFF")
    );
    assert_eq!(
        bad(&[0x42, 0x02]),
        ".NET binary XML body is not valid at byte 0: record 0x42 refers to a dictionary string, \
             and these bodies have no dictionary"
    );
    assert_eq!(
        bad(&context(&cat(&[&[0x40], &s("A"), &[0x0B, 0x02, 0x02, 0x01]]))),
        format!(
            ".NET binary XML body is not valid at byte {}: record 0x0B refers to a dictionary string, \
                 and these bodies have no dictionary",
            base + 3
        )
    );
    assert_eq!(
        bad(&context(&[0xAB, 0x02])),
        format!(
            ".NET binary XML body is not valid at byte {base}: record 0xAB refers to a dictionary string, \
                 and these bodies have no dictionary"
        )
    );
    assert_eq!(
        bad(&context(&cat(&[&[0x5F], &s("x"), &[0x01]]))),
        format!(".NET binary XML body is not valid at byte {base}: prefix `b` is not declared")
    );
    assert_eq!(
        bad(&[0x40, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]),
        ".NET binary XML body is not valid at byte 1: MultiByteInt31 is over 31 bits"
    );
    assert_eq!(
        bad(&[0x01]),
        ".NET binary XML body is not valid at byte 0: an end element with no open element"
    );
    let array = cat(&[&[0x03, 0x40], &s("v"), &[0x01, 0x8D, 0xFF, 0xFF, 0xFF, 0x07]]);
    assert_eq!(
        bad(&context(&array)),
        format!(
            ".NET binary XML body is not valid at byte {base}: array of 16777215 items runs past the end \
                 of the body"
        )
    );
    let not_context = cat(&[&[0x40], &s("Other"), &[0x01]]);
    assert_eq!(
        bad(&not_context),
        ".NET binary XML body must be a RemoteExecutionContext object, found another root element"
    );
}

#[test]
fn arrays_are_charged_in_full_before_any_item_is_built() {
    // A 600-byte name repeated by 300 items is about 0.5 MB once decoded (name in the
    // tree and the model, element and value), over a 50 KB budget: refused at the array.
    let mut array = vec![0x03, 0x40, 0xD8, 0x04];
    array.extend([b'n'; 600]);
    array.extend([0x01, 0xB5, 0xAC, 0x02]);
    array.extend([1; 300]);
    let body = context(&array);
    let limits = Limits {
        max_expansion: 0,
        expansion_allowance: 50_000,
        ..Limits::default()
    };
    let err = decode(&body, Some("application/msbin1"), &limits).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            ".NET binary XML body would take more than 50000 bytes once decoded, over the decoded-size \
                 limit for a body of {} bytes",
            body.len()
        )
    );
    // The same array fits a budget that pays for it.
    let limits = Limits {
        expansion_allowance: 1_000_000,
        ..limits
    };
    decode(&body, Some("application/msbin1"), &limits).unwrap();
}

#[test]
fn truncated_bodies_are_reported() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/samples/dataverse/contact-create.dcs-binary.msbin1"
    );
    let body = std::fs::read(path).unwrap();
    for cut in [1, 2, 40, body.len() / 2, body.len() - 1] {
        let message = bad(&body[..cut]);
        assert!(
            message.starts_with(".NET binary XML body is not valid at byte "),
            "{cut}: {message}"
        );
        assert!(
            message.ends_with("the body ends in the middle of a record")
                || message.contains("the body ends inside element"),
            "{cut}: {message}"
        );
    }
}

#[test]
fn nesting_and_strings_are_bounded() {
    let mut body = Vec::new();
    for _ in 0..100 {
        body.extend([0x40]);
        body.extend(s("ParentContext"));
    }
    body.extend([0x01; 100]);
    let deep = context(&body);
    assert_eq!(
        bad(&deep),
        // The root is level 1, so the 64th `ParentContext` (15 bytes each) is too deep.
        format!(
            ".NET binary XML body has nesting deeper than 64 levels, at byte {}",
            base() + 63 * 15
        )
    );

    let limits = Limits {
        max_string_bytes: 30,
        ..Limits::default()
    };
    // Names and namespaces are not strings in this sense: the 47-byte namespace passes.
    // 30 bytes are 40 characters of base64.
    let body = context(&cat(&[&[0x40], &s("MessageName"), &[0x9F, 30], &[0; 30]]));
    let err = decode(&body, Some("application/msbin1"), &limits).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            ".NET binary XML body: text (byte {}): string is 40 bytes, over the 30-byte limit",
            base() + 13
        )
    );
}
