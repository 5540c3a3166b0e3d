//! The XML message format: DataContractSerializer text XML, read with quick-xml
//! onto the shared [`infoset`](super::infoset) tape.
//!
//! This file owns the text syntax only: well-formedness, entity and character
//! references, CDATA, the XML declaration and a leading byte order mark, and
//! turning byte offsets into the line and column of an error. Namespaces are
//! resolved by the shared builder, and the tape is mapped to the model by
//! [`mapper`](super::mapper), exactly as for the binary format.
//!
//! The body must be UTF-8 (what Dataverse and Service Bus send); it is checked once,
//! up front, and refused at its first bad byte if it is not. A DTD is refused:
//! data-contract XML never has one, and refusing it rules out entity expansion.

use std::borrow::Cow;

use quick_xml::Reader;
use quick_xml::escape::{resolve_predefined_entity, unescape};
use quick_xml::events::{BytesStart, BytesText, Event};

use super::infoset::{BuildError, Builder, Declaration, RawAttribute, Tape, attribute_cost, declaration_cost};
use super::model::Context;
use super::{DecodeError, Format, Limits, UTF8_BOM, mapper};

/// What the name of each attribute costs while its element is checked for duplicates.
const KEY_COST: usize = 32;

/// Decodes an XML `RemoteExecutionContext`; the body is already within the size limit.
pub(super) fn decode(body: &[u8], limits: &Limits) -> Result<Context, DecodeError> {
    let body = body.strip_prefix(UTF8_BOM).unwrap_or(body);
    let tape = read(body, limits)?;
    mapper::context(tape, Format::Xml, limits)
}

/// Parses the body onto the tape.
fn read<'a>(body: &'a [u8], limits: &Limits) -> Result<Tape<'a>, DecodeError> {
    let mut reader = Reader::from_reader(body);
    reader.config_mut().check_end_names = true;
    let mut builder = Builder::new(limits, body.len());
    // Bytes that are not in the document's encoding make it not well-formed (XML 1.0,
    // 4.3.3). Checked once here, so names and text borrow from it with no second check.
    let source =
        std::str::from_utf8(body).map_err(|err| syntax(body, err.valid_up_to(), "the body is not UTF-8".into()))?;
    let mut scratch = Scratch::default();
    let error = |offset: u64, err: BuildError| located(body, offset as usize, err, limits);
    loop {
        let before = reader.buffer_position();
        let event = reader
            .read_event()
            .map_err(|err| syntax(body, reader.error_position() as usize, err.to_string()))?;
        let result = match event {
            Event::Start(start) => start_element(&mut builder, source, &start, &mut scratch),
            Event::Empty(start) => {
                start_element(&mut builder, source, &start, &mut scratch).and_then(|()| builder.end())
            }
            Event::End(_) => builder.end(),
            Event::Text(text) => content(source, &text).and_then(|text| builder.text(text)),
            Event::CData(data) => match data.xml_content() {
                Ok(text) => builder.text(text),
                Err(err) => Err(BuildError::Invalid(err.to_string())),
            },
            Event::GeneralRef(reference) => match reference.resolve_char_ref() {
                Ok(Some(c)) => builder.text(Cow::Owned(c.to_string())),
                Ok(None) => {
                    let name = reference
                        .decode()
                        .map_err(|err| syntax(body, before as usize, err.to_string()))?;
                    match resolve_predefined_entity(&name) {
                        Some(text) => builder.text(Cow::Borrowed(text)),
                        None => Err(BuildError::Invalid(format!("unknown entity `&{name};`"))),
                    }
                }
                Err(err) => Err(BuildError::Invalid(err.to_string())),
            },
            Event::DocType(_) => Err(BuildError::Invalid("a DTD is not allowed".into())),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => Ok(()),
            Event::Eof => return builder.finish().map_err(|err| error(reader.buffer_position(), err)),
        };
        result.map_err(|err| error(before, err))?;
    }
}

/// The lists [`start_element`] fills for each element, kept from one element to the
/// next so that an element's attributes cost no allocation.
#[derive(Default)]
struct Scratch<'a> {
    keys: Vec<&'a str>,
    xmlns: Vec<Declaration<'a>>,
    raw: Vec<RawAttribute<'a, 'a>>,
}

/// Splits an element's attributes into `xmlns` declarations and the rest, and
/// opens it.
///
/// Only prefixed `type` and `nil` attributes can be `i:type` and `i:nil`, the only
/// attributes the tape keeps, so no other value is unescaped. quick-xml's own
/// duplicate check compares every attribute with every earlier one; this one sorts the
/// names instead, so an element with many attributes costs `n log n`, not `n²`.
fn start_element<'a>(
    builder: &mut Builder<'a, '_>,
    source: &'a str,
    start: &BytesStart<'a>,
    scratch: &mut Scratch<'a>,
) -> Result<(), BuildError> {
    let Scratch { keys, xmlns, raw } = scratch;
    keys.clear();
    xmlns.clear();
    raw.clear();
    let name = within(source, start.name().into_inner())?;
    let (prefix, local) = name.split_once(':').unwrap_or(("", name));
    for attribute in start.attributes().with_checks(false) {
        let attribute = attribute.map_err(|err| BuildError::Invalid(err.to_string()))?;
        let key = within(source, attribute.key.into_inner())?;
        keys.push(key);
        builder.charge(KEY_COST)?;
        let value = || unescape(within(source, &attribute.value)?).map_err(|err| BuildError::Invalid(err.to_string()));
        match key.split_once(':') {
            None if key == "xmlns" => {
                let ns = value()?;
                builder.charge(declaration_cost("", &ns))?;
                xmlns.push(("", ns));
            }
            Some(("xmlns", declared)) => {
                let ns = value()?;
                builder.charge(declaration_cost(declared, &ns))?;
                xmlns.push((declared, ns));
            }
            // Other prefixed attributes are passed on for their prefix to be checked.
            Some((prefix, local)) => {
                let value = match local {
                    "type" | "nil" => value()?,
                    _ => Cow::Borrowed(""),
                };
                builder.charge(attribute_cost(&value))?;
                raw.push(RawAttribute { prefix, local, value });
            }
            None => {}
        }
    }
    keys.sort_unstable();
    if let Some(pair) = keys.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(BuildError::Invalid(format!(
            "attribute `{}` appears twice on element `{name}`",
            pair[0]
        )));
    }
    builder.start(prefix, Cow::Borrowed(local), xmlns, raw)
}

/// A text node's content, with line ends normalised as quick-xml does. Text with no
/// line end to rewrite (no `\r`, U+0085 or U+2028) is the body's own, borrowed.
fn content<'a>(source: &'a str, text: &BytesText<'a>) -> Result<Cow<'a, str>, BuildError> {
    let own = within(source, text)?;
    match memchr::memchr3(b'\r', 0xC2, 0xE2, own.as_bytes()) {
        None => Ok(Cow::Borrowed(own)),
        Some(_) => text.xml_content().map_err(|err| BuildError::Invalid(err.to_string())),
    }
}

/// `bytes`, which quick-xml lends only for as long as their event, as the body's own
/// text, which lasts as long as the body.
fn within<'a>(source: &'a str, bytes: &[u8]) -> Result<&'a str, BuildError> {
    (bytes.as_ptr() as usize)
        .checked_sub(source.as_ptr() as usize)
        .and_then(|offset| source.get(offset..offset.checked_add(bytes.len())?))
        .filter(|slice| slice.as_ptr() == bytes.as_ptr())
        .ok_or_else(|| BuildError::Invalid("a name or text does not lie within the body".into()))
}

/// A builder error at a byte offset, as a [`DecodeError`] with line and column.
fn located(body: &[u8], offset: usize, err: BuildError, limits: &Limits) -> DecodeError {
    match err {
        BuildError::Invalid(reason) => syntax(body, offset, reason),
        BuildError::TooDeep { limit } => {
            let (line, column) = position(body, offset);
            DecodeError::TooDeep {
                format: Format::Xml,
                limit,
                line,
                column,
            }
        }
        BuildError::TooLong { path, size } => {
            let (line, column) = position(body, offset);
            DecodeError::StringTooLong {
                format: Format::Xml,
                path: format!("{path} (line {line}, column {column})"),
                size,
                limit: limits.max_string_bytes,
            }
        }
        BuildError::Expansion { limit } => DecodeError::Expansion {
            format: Format::Xml,
            size: body.len(),
            limit,
        },
    }
}

fn syntax(body: &[u8], offset: usize, reason: String) -> DecodeError {
    let (line, column) = position(body, offset);
    DecodeError::Syntax {
        format: Format::Xml,
        line,
        column,
        reason,
    }
}

/// One-based line and column of a byte offset; the column counts bytes.
fn position(body: &[u8], offset: usize) -> (usize, usize) {
    let before = &body[..offset.min(body.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |newline| newline + 1);
    (line, before.len() - line_start + 1)
}

#[cfg(test)]
mod tests {
    use super::super::model::{Record, Value};
    use super::super::{DecodeError, Limits, decode};

    const SAMPLE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/samples/dataverse/contact-create.dcs.xml"
    );

    /// A context with the usual namespace declarations around `content`.
    fn context(content: &str) -> String {
        format!(
            "<RemoteExecutionContext xmlns=\"http://schemas.microsoft.com/xrm/2011/Contracts\" \
             xmlns:i=\"http://www.w3.org/2001/XMLSchema-instance\">{content}</RemoteExecutionContext>"
        )
    }

    /// An `InputParameters` bag with one pair whose value element is `value`.
    fn parameter(value: &str) -> String {
        context(&format!(
            "<InputParameters xmlns:a=\"http://schemas.datacontract.org/2004/07/System.Collections.Generic\">\
             <KeyValuePairOfstringanyType><a:key>k</a:key>{value}</KeyValuePairOfstringanyType></InputParameters>"
        ))
    }

    fn value_of(body: &str) -> Value {
        let context = decode(body.as_bytes(), Some("application/xml"), &Limits::default())
            .unwrap_or_else(|err| panic!("{err}: {body}"));
        context.bag("InputParameters")[0].1.clone()
    }

    fn typed(xsi_type: &str, ns: &str, text: &str) -> Value {
        value_of(&parameter(&format!(
            "<a:value i:type=\"{xsi_type}\" xmlns:b=\"{ns}\">{text}</a:value>"
        )))
    }

    fn error(body: &str) -> String {
        decode(body.as_bytes(), Some("application/xml"), &Limits::default())
            .unwrap_err()
            .to_string()
    }

    const XSD: &str = "http://www.w3.org/2001/XMLSchema";
    const SER: &str = "http://schemas.microsoft.com/2003/10/Serialization/";
    const ARRAYS: &str = "http://schemas.microsoft.com/2003/10/Serialization/Arrays";

    #[test]
    fn primitives_are_typed_by_their_resolved_qname() {
        assert_eq!(typed("b:long", XSD, " -5000000000 "), Value::Int(-5_000_000_000));
        assert_eq!(typed("b:short", XSD, "7"), Value::Int(7));
        assert_eq!(typed("b:boolean", XSD, "1"), Value::Bool(true));
        assert_eq!(
            typed("b:decimal", XSD, "1.0000000000"),
            Value::Decimal("1.0000000000".into())
        );
        assert_eq!(typed("b:double", XSD, "-INF"), Value::Double(f64::NEG_INFINITY));
        assert_eq!(typed("b:float", XSD, "1.5E2"), Value::Double(150.0));
        assert_eq!(
            typed("b:guid", SER, "6D81597F-0F9F-E711-8122-000D3AA2331C"),
            Value::Guid("6d81597f-0f9f-e711-8122-000d3aa2331c".into())
        );
        assert_eq!(typed("b:char", SER, "233"), Value::String("é".into()));
        assert_eq!(typed("b:duration", SER, "PT1H"), Value::String("PT1H".into()));
        assert_eq!(
            typed("b:base64Binary", XSD, "AQL/"),
            Value::List(vec![Value::Int(1), Value::Int(2), Value::Int(255)])
        );
        assert_eq!(
            typed("b:string", XSD, "a &amp; b &#x263A; <![CDATA[<c>]]>"),
            Value::String("a & b ☺ <c>".into())
        );
        // The prefix is only a name: `b` bound to another namespace is another type.
        assert_eq!(
            typed("b:int", "urn:not-xsd", "3"),
            Value::Record(Record {
                type_name: Some("int".into()),
                members: vec![("Value".into(), Value::String("3".into()))]
            })
        );
        // And any prefix bound to XML Schema will do, declared on an ancestor too.
        let body = parameter("<a:value xmlns:q=\"http://www.w3.org/2001/XMLSchema\" i:type=\"q:int\">4</a:value>");
        assert_eq!(value_of(&body), Value::Int(4));
    }

    #[test]
    fn arrays_and_collections() {
        let strings = format!(
            "<a:value i:type=\"b:ArrayOfstring\" xmlns:b=\"{ARRAYS}\"><b:string>x</b:string><b:string i:nil=\"true\"/>\
             </a:value>"
        );
        assert_eq!(
            value_of(&parameter(&strings)),
            Value::List(vec![Value::String("x".into()), Value::Null])
        );
        let ints = format!(
            "<a:value i:type=\"b:ArrayOfint\" xmlns:b=\"{ARRAYS}\"><b:int>1</b:int><b:int>-2</b:int></a:value>"
        );
        assert_eq!(
            value_of(&parameter(&ints)),
            Value::List(vec![Value::Int(1), Value::Int(-2)])
        );
        let references = "<a:value i:type=\"EntityReferenceCollection\"><EntityReference><Id>6D81597F-0F9F-E711-8122-000D3AA2331C</Id>\
                          <LogicalName>contact</LogicalName><Name i:nil=\"true\"/></EntityReference></a:value>";
        match value_of(&parameter(references)) {
            Value::List(items) => match &items[..] {
                [Value::EntityReference(r)] => {
                    assert_eq!(
                        (r.logical_name.as_str(), r.id.as_str()),
                        ("contact", "6d81597f-0f9f-e711-8122-000d3aa2331c")
                    )
                }
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
        let empty = "<a:value i:type=\"OptionSetValueCollection\"/>";
        assert_eq!(value_of(&parameter(empty)), Value::OptionSetCollection(vec![]));
    }

    #[test]
    fn unknown_types_become_records() {
        let relationship = "<a:value i:type=\"Relationship\"><PrimaryEntityRole i:nil=\"true\"/>\
                            <SchemaName>account_primary_contact</SchemaName></a:value>";
        assert_eq!(
            value_of(&parameter(relationship)),
            Value::Record(Record {
                type_name: Some("Relationship".into()),
                members: vec![
                    ("PrimaryEntityRole".into(), Value::Null),
                    ("SchemaName".into(), Value::String("account_primary_contact".into())),
                ],
            })
        );
        let unknown = "<a:value i:type=\"c:Thing\" xmlns:c=\"urn:elsewhere\"><X>1</X></a:value>";
        assert_eq!(
            value_of(&parameter(unknown)),
            Value::Record(Record {
                type_name: Some("Thing".into()),
                members: vec![("X".into(), Value::String("1".into()))],
            })
        );
    }

    #[test]
    fn dropped_members_may_be_missing_nil_or_empty() {
        let body = context(
            "<InputParameters i:nil=\"true\"/><OutputParameters/><PreEntityImages></PreEntityImages>\
             <ParentContext i:nil=\"true\"/><OwningExtension i:nil=\"true\"/>",
        );
        let context = decode(body.as_bytes(), None, &Limits::default()).unwrap();
        for bag in ["InputParameters", "OutputParameters", "PreEntityImages"] {
            assert_eq!(context.member(bag), Some(&Value::Bag(vec![])), "{bag}");
        }
        assert!(context.member("PostEntityImages").is_none());
        assert_eq!(context.member("ParentContext"), Some(&Value::Null));
        assert_eq!(context.member("OwningExtension"), Some(&Value::Null));
    }

    #[test]
    fn entities_map_enums_and_related_entities() {
        let entity = "<a:value i:type=\"Entity\"><Attributes i:nil=\"true\"/><EntityState>Changed</EntityState>\
             <Id>00000000-0000-0000-0000-000000000000</Id><LogicalName>account</LogicalName>\
             <RelatedEntities><KeyValuePairOfRelationshipEntityCollectionX_PsK4FkN>\
             <a:key><PrimaryEntityRole>Referenced</PrimaryEntityRole><SchemaName>account_parent_account</SchemaName></a:key>\
             <a:value><Entities/><EntityName>account</EntityName><MoreRecords>false</MoreRecords></a:value>\
             </KeyValuePairOfRelationshipEntityCollectionX_PsK4FkN></RelatedEntities></a:value>";
        let Value::Entity(entity) = value_of(&parameter(entity)) else {
            panic!()
        };
        assert_eq!((entity.logical_name.as_str(), entity.id.as_deref()), ("account", None));
        assert_eq!(entity.other[0], ("EntityState".into(), Value::Int(2)));
        let Value::Bag(related) = &entity.other[1].1 else {
            panic!("{:?}", entity.other)
        };
        assert_eq!(related[0].0, "account_parent_account.Referenced");
        let Value::EntityCollection(collection) = &related[0].1 else {
            panic!()
        };
        assert_eq!(collection.other[1], ("MoreRecords".into(), Value::Bool(false)));
    }

    #[test]
    fn malformed_bodies_name_line_and_column() {
        assert_eq!(
            error(
                "<RemoteExecutionContext xmlns=\"http://schemas.microsoft.com/xrm/2011/Contracts\">\n  <Depth>1</Stage>"
            ),
            "XML body is not valid at line 2, column 11: ill-formed document: expected `</Depth>`, but `</Stage>` was found"
        );
        assert_eq!(
            error(&parameter("<a:value\n i:type=\"b:int\">1</a:value>")),
            format!(
                "XML body is not valid at line 1, column {}: prefix `b` is not declared",
                parameter("").find("</KeyValuePair").unwrap() + 1
            )
        );
        assert_eq!(
            error("<!DOCTYPE x [<!ENTITY a \"b\">]><x/>"),
            "XML body is not valid at line 1, column 1: a DTD is not allowed"
        );
        assert_eq!(
            error(&parameter(
                "<a:value i:type=\"b:int\" xmlns:b=\"http://www.w3.org/2001/XMLSchema\">x</a:value>"
            )),
            "InputParameters.k: expected a whole number, found other text"
        );
        assert_eq!(
            error(&context("<Stage>&nope;</Stage>")),
            format!(
                "XML body is not valid at line 1, column {}: unknown entity `&nope;`",
                context("<Stage>").find("</Remote").unwrap() + 1
            )
        );
        assert_eq!(
            error("<a/><b/>"),
            "XML body is not valid at line 1, column 5: content after the root element"
        );
    }

    #[test]
    fn duplicate_attributes_are_refused() {
        assert_eq!(
            error("<a x=\"1\" y=\"2\" x=\"3\"/>"),
            "XML body is not valid at line 1, column 1: attribute `x` appears twice on element `a`"
        );
        let declarations = context("<Stage xmlns:b=\"urn:1\" xmlns:b=\"urn:2\">1</Stage>");
        assert!(
            error(&declarations).ends_with("attribute `xmlns:b` appears twice on element `Stage`"),
            "{}",
            error(&declarations)
        );
        // Many distinct attributes are fine.
        let many: String = (0..100).map(|i| format!(" i:a{i}=\"\"")).collect();
        let body = context(&format!("<Stage{many}>1</Stage>"));
        assert!(decode(body.as_bytes(), None, &Limits::default()).is_ok());
    }

    #[test]
    fn truncated_bodies_are_reported() {
        let body = std::fs::read_to_string(SAMPLE).unwrap();
        for cut in [10, body.len() / 2, body.len() - 1] {
            let message = error(&body[..cut]);
            assert!(
                message.starts_with("XML body is not valid at line 1, column "),
                "{cut}: {message}"
            );
        }
        assert_eq!(
            error(&body[..body.len() - "</RemoteExecutionContext>".len()]),
            format!(
                "XML body is not valid at line 1, column {}: the body ends inside element /RemoteExecutionContext",
                body.len() - "</RemoteExecutionContext>".len() + 1
            )
        );
    }

    #[test]
    fn nesting_strings_and_size_are_bounded() {
        let chain = |levels| {
            context(&format!(
                "{}{}",
                "<ParentContext>".repeat(levels),
                "</ParentContext>".repeat(levels)
            ))
        };
        assert!(decode(chain(63).as_bytes(), None, &Limits::default()).is_ok());
        let message = error(&chain(64));
        assert!(
            message.starts_with("XML body has nesting deeper than 64 levels, at line 1, column "),
            "{message}"
        );

        // However high the limit is set, documents stop at 256 levels.
        let lax = Limits {
            max_depth: 100_000,
            ..Limits::default()
        };
        let err = decode(chain(1000).as_bytes(), None, &lax).unwrap_err().to_string();
        assert!(err.starts_with("XML body has nesting deeper than 256 levels"), "{err}");

        let limits = Limits {
            max_string_bytes: 8,
            ..Limits::default()
        };
        let err = decode(
            context("<MessageName>Alexander</MessageName>").as_bytes(),
            None,
            &limits,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "XML body: /RemoteExecutionContext/MessageName (line 1, column {}): string is 9 bytes, over the \
                 8-byte limit",
                context("<MessageName>").find("</Remote").unwrap() + 1
            )
        );
        let limits = Limits {
            max_body_bytes: 100,
            ..Limits::default()
        };
        let err = decode(context("").as_bytes(), None, &limits).unwrap_err();
        assert!(matches!(err, DecodeError::BodyTooLarge { limit: 100, .. }), "{err}");
    }

    #[test]
    fn a_body_that_is_not_utf8_is_refused_at_its_first_bad_byte() {
        // Even where nothing reads it (a comment): the document is not well-formed.
        let text = context("<!-- caf\u{e9} --><MessageName>Create</MessageName>");
        let bad = text.find('\u{e9}').unwrap();
        let mut body = text.into_bytes();
        body[bad] = 0xFF;
        let err = decode(&body, Some("application/xml"), &Limits::default())
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "XML body is not valid at line 1, column {}: the body is not UTF-8",
                bad + 1
            )
        );
    }

    #[test]
    fn line_ends_in_text_are_normalised() {
        // One kind to a text, so that each must be found on its own.
        for text in ["a\r\nb", "a\rb", "a\u{85}b", "a\u{2028}b", "a\nb"] {
            assert_eq!(typed("b:string", XSD, text), Value::String("a\nb".into()), "{text:?}");
        }
        assert_eq!(typed("b:string", XSD, "caf\u{e9}"), Value::String("caf\u{e9}".into()));
    }
}
