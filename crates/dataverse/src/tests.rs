use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::model::{CompactString, DateTime, Entity, Value};
use super::*;

/// The repository's own samples: tests/samples/dataverse/INDEX.md says what each is.
const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/samples/dataverse");
/// More samples beside the repository, when it is checked out next to them: the tests
/// that walk a folder walk this one too when it is there, and never require it.
const SHARED_SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/samples/dataverse");
const ACCOUNT_UPDATE: &str = "account-update.dcjs.json";
const CONTACT_CREATE: &str = "contact-create.dcjs.json";
const EMAIL_CREATE: &str = "email-create.dcjs.json";
const ACCOUNT_ID: &str = "b7e41f02-6c3a-4d85-9f17-2a0c8e5d4b91";
const CONTACT_ID: &str = "e2a96c58-0d4f-4b73-8a1e-5c7f3b9d2064";
const ACCOUNT_NAME: &str = "Fabrikam & Söhne \"Nord\" <Großhandel>";

fn sample(name: &str) -> Context {
    let body = std::fs::read(Path::new(SAMPLES).join(name)).unwrap();
    decode(&body, Some("application/json"), &Limits::default()).unwrap()
}

/// The files named `*.{extension}` in the repository's samples, and in the shared
/// samples when that folder exists (else none), each list sorted.
fn sample_files(extension: &str) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let list = |folder: &Path| {
        let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
            .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|e| e == extension))
            .collect();
        files.sort();
        files
    };
    let shared = Path::new(SHARED_SAMPLES);
    let shared = if shared.is_dir() { list(shared) } else { Vec::new() };
    (list(Path::new(SAMPLES)), shared)
}

fn decode_str(body: &str) -> Result<Context, DecodeError> {
    decode(body.as_bytes(), None, &Limits::default())
}

fn error(body: &str) -> String {
    decode_str(body).unwrap_err().to_string()
}

fn get<'a>(bag: &'a [(CompactString, Value)], key: &str) -> &'a Value {
    bag.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {key}"))
}

fn entity(value: &Value) -> &Entity {
    match value {
        Value::Entity(entity) => entity,
        other => panic!("not an entity: {other:?}"),
    }
}

fn target(context: &Context) -> &Entity {
    entity(get(context.bag("InputParameters"), "Target"))
}

#[test]
fn every_json_sample_decodes() {
    let (own, shared) = sample_files("json");
    assert_eq!(own.len(), 3, "{own:?}");
    for path in own.iter().chain(&shared) {
        let body = std::fs::read(path).unwrap();
        let context = decode(&body, None, &Limits::default()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(context.text("MessageName").is_some(), "{}", path.display());
    }
}

fn reference(value: &Value) -> (&str, &str, Option<&str>) {
    match value {
        Value::EntityReference(r) => (r.logical_name.as_str(), r.id.as_str(), r.name.as_deref()),
        other => panic!("not a reference: {other:?}"),
    }
}

#[test]
fn account_update_sample_has_every_value_type() {
    let context = sample(ACCOUNT_UPDATE);
    assert_eq!(context.text("MessageName"), Some("Update"));
    assert_eq!(context.text("PrimaryEntityName"), Some("account"));
    assert_eq!((context.int("Stage"), context.int("Mode")), (Some(40), Some(0)));
    assert_eq!(context.member("IsInTransaction"), Some(&Value::Bool(true)));
    assert_eq!(
        context.member("OperationCreatedOn"),
        Some(&Value::DateTime(DateTime::from_unix_millis(1_710_754_887_410)))
    );
    assert_eq!(context.text("RequestId"), Some("a8d3f61e-27c4-4b90-8e5a-1f6c0d9b3e72"));

    let account = target(&context);
    assert_eq!(account.logical_name, "account");
    assert_eq!(account.id.as_deref(), Some(ACCOUNT_ID));
    let attrs = &account.attributes;
    // Written as `\"`, `\/`, `\u000d\u000a`, `\u0009` and a surrogate pair.
    assert_eq!(get(attrs, "name"), &Value::String(ACCOUNT_NAME.into()));
    assert_eq!(
        get(attrs, "description"),
        &Value::String("Line one\r\nLine two\tindented \\ backslash / slash 😀 end".into())
    );
    // JSON does not type GUIDs: they stay text.
    assert_eq!(get(attrs, "accountid"), &Value::String(ACCOUNT_ID.into()));
    assert_eq!(get(attrs, "revenue"), &Value::Money("2500000.75".into()));
    assert_eq!(get(attrs, "creditlimit"), &Value::Money("0.00".into()));
    assert_eq!(get(attrs, "industrycode"), &Value::OptionSet(7));
    assert_eq!(get(attrs, "numberofemployees"), &Value::Int(1250));
    assert_eq!(get(attrs, "new_sitecount"), &Value::Int(70_000));
    assert_eq!(get(attrs, "new_healthscore"), &Value::Int(-15));
    assert_eq!(get(attrs, "donotphone"), &Value::Bool(true));
    assert_eq!(get(attrs, "creditonhold"), &Value::Bool(false));
    assert_eq!(get(attrs, "exchangerate"), &Value::Decimal("1.0000000000".into()));
    assert_eq!(get(attrs, "new_discountrate"), &Value::Decimal("-0.0125".into()));
    // JSON cannot tell a double from a decimal.
    assert_eq!(get(attrs, "address1_latitude"), &Value::Decimal("52.5163".into()));
    match get(attrs, "modifiedon") {
        Value::DateTime(dt) => {
            assert_eq!(*dt, DateTime::from_unix_millis(1_710_754_887_357));
            assert_eq!(dt.to_string(), "2024-03-18T09:41:27.357Z");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        reference(get(attrs, "modifiedby")),
        ("systemuser", "5f2e8a1c-93b7-4d06-a4c8-e1b7d3f90a26", None)
    );
    match get(attrs, "modifiedby") {
        Value::EntityReference(r) => assert_eq!(
            r.other,
            [
                ("KeyAttributes".into(), Value::Bag(vec![])),
                ("RowVersion".into(), Value::Null)
            ]
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        reference(get(attrs, "primarycontactid")),
        ("contact", CONTACT_ID, Some("Aoife O'Brien"))
    );
    assert_eq!(get(attrs, "parentaccountid"), &Value::Null);
    assert_eq!(account.formatted_values.len(), 7);
    assert_eq!(account.formatted_values[0], ("revenue".into(), "€2,500,000.75".into()));
    let other: Vec<&str> = account.other.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(other, ["EntityState", "KeyAttributes", "RelatedEntities", "RowVersion"]);

    let pre = entity(get(context.bag("PreEntityImages"), "PreImage"));
    assert_eq!(get(&pre.attributes, "name"), &Value::String("Fabrikam Nord".into()));
    assert_eq!(get(&pre.attributes, "revenue"), &Value::Money("2250000.00".into()));
    let post = entity(get(context.bag("PostEntityImages"), "PostImage"));
    assert_eq!(get(&post.attributes, "statecode"), &Value::OptionSet(0));
    assert_eq!(post.formatted_values[0], ("statecode".into(), "Active".into()));
    assert_eq!(context.bag("OutputParameters"), []);
    assert_eq!(
        reference(context.member("OwningExtension").unwrap()),
        ("sdkmessageprocessingstep", "c41d7e93-5a08-4b2f-9e6c-83f0a1b5d247", None)
    );

    let shared = context.bag("SharedVariables");
    assert_eq!(get(shared, "IsAutoTransact"), &Value::Bool(true));
    assert_eq!(get(shared, "new_source"), &Value::String("integration-tests".into()));
    assert_eq!(get(shared, "new_batchsize"), &Value::Int(25));
    match get(shared, "ChangedEntityTypes") {
        Value::List(items) => match &items[..] {
            [Value::Record(r)] => {
                assert_eq!(r.type_name.as_deref(), Some("KeyValuePairOfstringstring"));
                assert_eq!(
                    r.members,
                    [
                        ("key".into(), Value::String("account".into())),
                        ("value".into(), Value::String("Update".into()))
                    ]
                );
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }

    let Some(Value::Context(parent)) = context.member("ParentContext") else {
        panic!("no ParentContext")
    };
    assert_eq!(parent.int("Stage"), Some(30));
    assert_eq!(parent.text("CorrelationId"), context.text("CorrelationId"));
    assert_eq!(target(parent).attributes.len(), 2);
    match get(parent.bag("SharedVariables"), "ChangedEntityTypes") {
        Value::List(items) => assert_eq!(items.len(), 2),
        other => panic!("{other:?}"),
    }
    assert_eq!(parent.member("ParentContext"), Some(&Value::Null));
    assert!(parent.bag("PostEntityImages").is_empty());
}

#[test]
fn contact_create_sample_keeps_exact_numbers_and_choices() {
    let context = sample(CONTACT_CREATE);
    assert_eq!(context.text("MessageName"), Some("Create"));
    assert_eq!((context.int("Stage"), context.int("Mode")), (Some(40), Some(1)));
    let target = target(&context);
    let attrs = &target.attributes;
    assert_eq!(
        get(attrs, "new_preferredchannels"),
        &Value::OptionSetCollection(vec![100_000_000, 100_000_002])
    );
    assert!(
        target
            .formatted_values
            .contains(&("new_preferredchannels".into(), "Email; SMS".into()))
    );
    assert_eq!(get(attrs, "annualincome"), &Value::Money("84000.00".into()));
    assert_eq!(get(attrs, "new_loyaltyscore"), &Value::Decimal("12.3400".into()));
    assert_eq!(get(attrs, "address1_longitude"), &Value::Decimal("-6.2603".into()));
    assert_eq!(get(attrs, "numberofchildren"), &Value::Int(0));
    assert_eq!(get(attrs, "gendercode"), &Value::OptionSet(2));
    assert_eq!(
        get(attrs, "birthdate"),
        &Value::DateTime(DateTime::from_unix_millis(594_691_200_000))
    );
    assert_eq!(
        reference(get(attrs, "parentcustomerid")),
        ("account", ACCOUNT_ID, Some("Fabrikam Nord"))
    );
    assert_eq!(
        get(context.bag("OutputParameters"), "id"),
        &Value::String(CONTACT_ID.into())
    );
    let image = entity(get(context.bag("PostEntityImages"), "AsynchronousStepPrimaryName"));
    assert_eq!(
        get(&image.attributes, "fullname"),
        &Value::String("Aoife O'Brien".into())
    );
    assert!(context.bag("PreEntityImages").is_empty());
    assert_eq!(context.member("ParentContext"), Some(&Value::Null));
    assert_eq!(context.member("RequestId"), Some(&Value::Null));
}

#[test]
fn email_create_sample_has_collections_and_aliased_values() {
    let context = sample(EMAIL_CREATE);
    let target = target(&context);
    assert_eq!(target.logical_name, "email");
    let attrs = &target.attributes;
    assert_eq!(
        get(attrs, "subject"),
        &Value::String("Re: Order #4711 – delivery <urgent> & \"confirmed\"".into())
    );
    assert_eq!(get(attrs, "new_topics"), &Value::OptionSetCollection(vec![1, 3, 4]));
    assert_eq!(get(attrs, "directioncode"), &Value::Bool(true));
    match get(attrs, "to") {
        Value::EntityCollection(c) => {
            let parties: Vec<_> = c
                .entities
                .iter()
                .map(|party| reference(get(&party.attributes, "partyid")))
                .collect();
            assert_eq!(
                parties,
                [
                    ("contact", CONTACT_ID, Some("Aoife O'Brien")),
                    ("account", ACCOUNT_ID, Some(ACCOUNT_NAME))
                ]
            );
            for party in &c.entities {
                assert_eq!(party.logical_name, "activityparty");
                assert_eq!(get(&party.attributes, "participationtypemask"), &Value::OptionSet(2));
            }
            assert_eq!(get(&c.other, "EntityName"), &Value::String("activityparty".into()));
            assert_eq!(get(&c.other, "MoreRecords"), &Value::Bool(false));
            assert_eq!(get(&c.other, "TotalRecordCount"), &Value::Int(-1));
        }
        other => panic!("{other:?}"),
    }
    match get(attrs, "from") {
        Value::EntityCollection(c) => assert_eq!(c.entities.len(), 1),
        other => panic!("{other:?}"),
    }
    for (key, attribute, value) in [
        (
            "regarding.accountnumber",
            "accountnumber",
            Value::String("FAB-00042".into()),
        ),
        ("regarding.numberofemployees", "numberofemployees", Value::Int(1250)),
    ] {
        match get(attrs, key) {
            Value::Aliased(a) => {
                assert_eq!(
                    (a.entity_logical_name.as_str(), a.attribute_logical_name.as_str()),
                    ("account", attribute)
                );
                assert_eq!(a.value, value);
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_json_date_offset_does_not_move_the_instant() {
    // Dataverse writes `\/Date(ms-0700)\/`: UTC milliseconds, then the server's offset.
    let context = decode_str(r#"{"OperationCreatedOn":"\/Date(1506409448000-0700)\/"}"#).unwrap();
    assert_eq!(
        context.member("OperationCreatedOn"),
        Some(&Value::DateTime(DateTime::from_unix_millis(1_506_409_448_000)))
    );
}

#[test]
fn canonical_json_of_a_sample_is_sorted_and_exact() {
    let json = sample(ACCOUNT_UPDATE).to_canonical_json();
    let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
    assert!(keys.is_sorted(), "{keys:?}");
    let text = json.to_string();
    assert!(text.starts_with(r#"{"BusinessUnitId":"3e8b0c4f-71d2-4a95-b6e3-0f5a9c2d7e14","#));
    for expected in [
        r#""exchangerate":1.0000000000"#,
        r#""creditlimit":{"$type":"Money","Value":0.00}"#,
        r#""revenue":{"$type":"Money","Value":2500000.75}"#,
        r#""industrycode":{"$type":"OptionSetValue","Value":7}"#,
        r#""modifiedon":{"$type":"DateTime","Value":"2024-03-18T09:41:27.357Z"}"#,
        r#""OperationCreatedOn":{"$type":"DateTime","Value":"2024-03-18T09:41:27.41Z"}"#,
        r#""PreEntityImages":{"PreImage":{"$type":"Entity","Attributes":{"industrycode""#,
        r#""name":"Fabrikam & Söhne \"Nord\" <Großhandel>""#,
        r#""ParentContext":{"BusinessUnitId":"3e8b0c4f-71d2-4a95-b6e3-0f5a9c2d7e14","#,
    ] {
        assert!(text.contains(expected), "{expected} not in {text}");
    }
}

#[test]
fn format_comes_from_content_type_then_sniffing() {
    let body = b"\xEF\xBB\xBF \n{\"MessageName\":\"Create\"}";
    assert_eq!(
        decode(body, None, &Limits::default()).unwrap().text("MessageName"),
        Some("Create")
    );
    let json = Some("Application/JSON; charset=utf-8");
    assert_eq!(
        decode(body, json, &Limits::default()).unwrap().text("MessageName"),
        Some("Create")
    );
    // An unhelpful content type falls back to sniffing.
    assert!(decode(body, Some("application/octet-stream"), &Limits::default()).is_ok());

    let error = |body: &[u8], content_type| decode(body, content_type, &Limits::default()).unwrap_err().to_string();
    // The content type wins over what the body looks like.
    assert!(error(b"{}", Some("application/xml")).starts_with("XML body is not valid at line 1, column 1"));
    assert!(error(b"{}", Some("text/xml")).starts_with("XML body is not valid"));
    assert!(error(b"{}", Some("application/msbin1")).starts_with(".NET binary XML body is not valid at byte 0"));
    // … and when it is wrong, the error says what the body looks like.
    assert!(error(b"{}", Some("application/xml")).ends_with(
        "(the content type says XML, but the body looks like JSON: check the content type the sender sets)"
    ));
    let binary = error(b"@\x16RemoteExecutionContext", Some("application/json"));
    assert!(
        binary.starts_with("JSON body is not valid at line 1, column 1"),
        "{binary}"
    );
    assert!(binary.contains("the body looks like .NET binary XML"), "{binary}");
    assert!(!error(b"{\"Depth\": }", Some("application/json")).contains("looks like"));
    assert_eq!(
        error(b"  <RemoteExecutionContext/>", None),
        "XML body must be a RemoteExecutionContext object, found another root element"
    );
    assert_eq!(
        error(b"@\x16RemoteExecutionContext", None),
        ".NET binary XML body is not valid at byte 24: the body ends inside element /RemoteExecutionContext"
    );
    let xml = "\u{FEFF}<?xml version=\"1.0\" encoding=\"utf-8\"?>\r\n<RemoteExecutionContext \
                   xmlns=\"http://schemas.microsoft.com/xrm/2011/Contracts\"><Stage>40</Stage></RemoteExecutionContext>";
    for content_type in [None, Some("application/xml; charset=utf-8"), Some("text/xml")] {
        let context = decode(xml.as_bytes(), content_type, &Limits::default()).unwrap();
        assert_eq!(context.int("Stage"), Some(40));
    }
    assert_eq!(error(b" \r\n", None), "body is empty");
}

/// Replaces every `{"$type":"Guid","Value":x}` with `x`, noting where.
fn untype_guids(json: &mut serde_json::Value, path: &str, found: &mut Vec<String>) {
    match json {
        serde_json::Value::Object(members) => {
            if members.get("$type").and_then(|t| t.as_str()) == Some("Guid") && members.len() == 2 {
                found.push(path.to_owned());
                *json = members["Value"].clone();
                return;
            }
            for (name, value) in members.iter_mut() {
                let path = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                untype_guids(value, &path, found);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                untype_guids(item, &format!("{path}[{i}]"), found);
            }
        }
        _ => {}
    }
}

#[test]
fn xml_and_binary_twins_match_the_json_twin() {
    /// Each `NAME.dcjs.json` with its `NAME.dcs.xml` and `NAME.dcs-binary.msbin1`.
    fn triples(files: &[PathBuf]) -> Vec<[PathBuf; 3]> {
        files
            .iter()
            .filter_map(|json| {
                let stem = json.file_name()?.to_str()?.strip_suffix(".dcjs.json")?;
                let xml = json.with_file_name(format!("{stem}.dcs.xml"));
                let binary = json.with_file_name(format!("{stem}.dcs-binary.msbin1"));
                (xml.is_file() && binary.is_file()).then(|| [json.clone(), xml, binary])
            })
            .collect()
    }
    let read = |path: &PathBuf| {
        decode(&std::fs::read(path).unwrap(), None, &Limits::default())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let (own, shared) = sample_files("json");
    let own = triples(&own);
    assert_eq!(own.len(), 3, "{own:?}");
    let mut typed_guids = BTreeMap::new();
    for [json_path, xml_path, binary_path] in own.iter().chain(&triples(&shared)) {
        let (json, xml, binary) = (read(json_path), read(xml_path), read(binary_path));
        // The binary and text XML forms carry the same information.
        assert_eq!(xml, binary, "{}", binary_path.display());

        // The only differences JSON allows: a GUID inside a bag is typed in XML
        // (`i:type="b:guid"`) and plain text in JSON, which has no GUID type.
        // DateTimes in bags are typed in all three (JSON's `\/Date(…)\/`), decimals
        // and doubles render as the same number text.
        let expected = json.to_canonical_json();
        let mut found = Vec::new();
        untype_guids(&mut expected.clone(), "", &mut found);
        assert!(found.is_empty(), "{found:?}");
        let mut canonical = xml.to_canonical_json();
        let mut found = Vec::new();
        untype_guids(&mut canonical, "", &mut found);
        assert_eq!(canonical, expected, "{}", xml_path.display());
        typed_guids.insert(json_path.file_name().unwrap().to_owned(), found);
    }
    let typed = |name: &str| typed_guids[std::ffi::OsStr::new(name)].clone();
    assert_eq!(
        typed(ACCOUNT_UPDATE),
        [
            "InputParameters.Target.Attributes.accountid",
            "ParentContext.InputParameters.Target.Attributes.accountid"
        ]
    );
    assert_eq!(
        typed(CONTACT_CREATE),
        [
            "InputParameters.Target.Attributes.contactid",
            "OutputParameters.id",
            "PostEntityImages.AsynchronousStepPrimaryName.Attributes.contactid"
        ]
    );

    let xml = read(&Path::new(SAMPLES).join("account-update.dcs.xml"));
    let text = xml.to_canonical_json().to_string();
    assert!(text.contains(r#""exchangerate":1.0000000000"#), "{text}");
    assert!(text.contains(r#""address1_latitude":52.5163"#), "{text}");
    assert!(
        text.contains(r#""creditlimit":{"$type":"Money","Value":0.00}"#),
        "{text}"
    );
    assert!(
        text.contains(r#""modifiedon":{"$type":"DateTime","Value":"2024-03-18T09:41:27.357Z"}"#),
        "{text}"
    );
}

#[test]
fn malformed_json_names_line_and_column() {
    assert_eq!(
        error("{\n  \"Depth\": 1,\n  \"Mode\": 1 \"Stage\": 40\n}"),
        "JSON body is not valid at line 3, column 13: expected `,` or `}`"
    );
}

#[test]
fn truncated_json_is_reported() {
    let body = std::fs::read_to_string(Path::new(SAMPLES).join(CONTACT_CREATE)).unwrap();
    let message = error(&body[..body.len() / 2]);
    assert!(
        message.starts_with("JSON body is not valid at line 1, column "),
        "{message}"
    );
    assert!(message.contains("EOF while parsing"), "{message}");
}

#[test]
fn root_must_be_an_object() {
    let err = decode(b"[1, 2]", Some("application/json"), &Limits::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "JSON body must be a RemoteExecutionContext object, found a list"
    );
}

#[test]
fn parent_context_chains_are_bounded() {
    let chain = |levels| format!("{}null{}", "{\"ParentContext\":".repeat(levels), "}".repeat(levels));
    assert!(decode_str(&chain(64)).is_ok());
    // 100 levels is under serde_json's own limit of 127: our check has to catch it.
    assert_eq!(
        error(&chain(100)),
        "JSON body has nesting deeper than 64 levels, at line 1, column 1089"
    );
}

#[test]
fn deep_arrays_are_bounded_before_serde_json_gives_up() {
    let body = format!(
        "{{\"SharedVariables\":[{{\"key\":\"x\",\"value\":{}1{}}}]}}",
        "[".repeat(500),
        "]".repeat(500)
    );
    let message = error(&body);
    assert!(
        message.starts_with("JSON body has nesting deeper than 64 levels"),
        "{message}"
    );
    // Brackets inside strings are text, not nesting.
    let quoted = format!("{{\"MessageName\":\"{}\"}}", "[{".repeat(500));
    assert!(decode_str(&quoted).is_ok());
}

#[test]
fn oversized_bodies_are_refused_before_parsing() {
    let limits = Limits {
        max_body_bytes: 16,
        ..Limits::default()
    };
    let err = decode(b"{\"MessageName\":\"Create\"}", None, &limits).unwrap_err();
    assert_eq!(err.to_string(), "body is 24 bytes, over the 16-byte limit");
    let big = vec![b' '; Limits::default().max_body_bytes + 1];
    assert!(matches!(
        decode(&big, None, &Limits::default()),
        Err(DecodeError::BodyTooLarge { .. })
    ));
}

#[test]
fn oversized_strings_name_their_member() {
    let limits = Limits {
        max_string_bytes: 8,
        ..Limits::default()
    };
    let body = br#"{"InputParameters":[{"key":"Target","value":{"__type":"Entity:http:\/\/schemas.microsoft.com\/xrm\/2011\/Contracts","Attributes":[{"key":"name","value":"Alexander"}],"LogicalName":"contact"}}]}"#;
    let err = decode(body, None, &limits).unwrap_err();
    assert_eq!(
        err.to_string(),
        "JSON body: InputParameters.Target.Attributes.name: string is 9 bytes, over the 8-byte limit"
    );
}

#[test]
fn misshapen_members_name_their_path() {
    assert_eq!(
        error(r#"{"InputParameters":"Target"}"#),
        "InputParameters: expected a list of {key, value} pairs, found a string"
    );
    assert_eq!(
        error(r#"{"SharedVariables":[{"key":1,"value":2}]}"#),
        "SharedVariables[0].key: expected a string, found a number"
    );
    assert_eq!(
        error(r#"{"InputParameters":[{"key":"Target","value":{"__type":"OptionSetValue:x","Value":"1"}}]}"#),
        "InputParameters.Target.Value: expected a 32-bit whole number, found a string"
    );
}
