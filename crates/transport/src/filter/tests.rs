use super::eval::like;
use super::*;

fn props(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn message(properties: &[(String, String)]) -> MessageFields<'_> {
    MessageFields {
        message_id: Some("m-1"),
        correlation_id: Some("corr-1"),
        content_type: Some("application/json"),
        properties,
        ..MessageFields::default()
    }
}

fn sql(text: &str) -> Filter {
    Filter::compile(&RuleFilter::Sql(text.to_owned())).unwrap_or_else(|error| panic!("`{text}`: {error}"))
}

fn matches(text: &str, properties: &[(&str, &str)]) -> bool {
    let properties = props(properties);
    sql(text).matches(&message(&properties))
}

fn error(text: &str) -> FilterError {
    Filter::compile(&RuleFilter::Sql(text.to_owned())).expect_err(text)
}

#[test]
fn true_and_false_filters() {
    let none = props(&[]);
    assert!(Filter::compile(&RuleFilter::True).unwrap().matches(&message(&none)));
    assert!(!Filter::compile(&RuleFilter::False).unwrap().matches(&message(&none)));
    assert!(matches("1=1", &[]));
    assert!(!matches("1=0", &[]));
    assert!(matches("TRUE", &[]));
    assert!(!matches("false", &[]));
}

#[test]
fn every_comparison_operator_on_numbers_and_text() {
    let p = [("priority", "7"), ("entity", "contact")];
    for (text, expected) in [
        ("priority = 7", true),
        ("priority <> 7", false),
        ("priority != 7", false),
        ("priority < 10", true),
        ("priority > 10", false),
        ("priority <= 7", true),
        ("priority >= 8", false),
        ("priority = 7.0", true),
        ("priority > -1", true),
        ("entity = 'contact'", true),
        ("entity = 'Contact'", false),
        ("entity <> 'account'", true),
        ("entity < 'd'", true),
        ("entity >= 'contact'", true),
        ("'contact' = entity", true),
    ] {
        assert_eq!(matches(text, &p), expected, "{text}");
    }
}

#[test]
fn booleans_compare_with_property_text() {
    assert!(matches("flag = TRUE", &[("flag", "true")]));
    assert!(matches("flag = false", &[("flag", "False")]));
    assert!(!matches("flag = true", &[("flag", "yes")]), "not a boolean: unknown");
}

#[test]
fn property_names_and_keywords_are_case_insensitive() {
    let p = [("EntityName", "contact")];
    assert!(matches("entityname = 'contact'", &p));
    assert!(matches("ENTITYNAME = 'contact' and 1 = 1", &p));
    assert!(matches("user.entityNAME = 'contact'", &p));
    assert!(matches("[EntityName] = 'contact'", &p));
    assert!(matches("\"entityname\" = 'contact'", &p));
}

#[test]
fn system_properties() {
    let none = props(&[]);
    let m = message(&none);
    assert!(sql("sys.CorrelationId = 'corr-1'").matches(&m));
    assert!(sql("SYS.messageid = 'm-1'").matches(&m));
    assert!(sql("sys.ContentType LIKE 'application/%'").matches(&m));
    assert!(!sql("sys.Label = 'x'").matches(&m), "no subject: unknown");
    assert!(sql("sys.Label IS NULL").matches(&m));
    let with_subject = MessageFields {
        subject: Some("Create"),
        ..m
    };
    assert!(sql("sys.Subject = 'Create'").matches(&with_subject));
    assert!(sql("sys.Label = 'Create'").matches(&with_subject));
    let unknown = error("sys.EnqueuedTimeUtc > 0");
    assert!(unknown.message.contains("sys.EnqueuedTimeUtc"), "{unknown}");
    assert_eq!(unknown.position, Some(5));
}

#[test]
fn and_binds_tighter_than_or_and_not_tighter_than_both() {
    let p = [("a", "1"), ("b", "2")];
    assert!(matches("a = 1 OR a = 5 AND b = 9", &p), "OR (a=5 AND b=9)");
    assert!(!matches("(a = 1 OR a = 5) AND b = 9", &p));
    assert!(matches("NOT a = 5 AND b = 2", &p), "(NOT a=5) AND b=2");
    assert!(!matches("NOT (a = 1 AND b = 2)", &p));
    assert!(matches("NOT NOT a = 1", &p));
}

#[test]
fn missing_properties_are_unknown_in_three_valued_logic() {
    assert!(!matches("missing = 1", &[]));
    assert!(!matches("missing <> 1", &[]));
    assert!(!matches("NOT missing = 1", &[]), "NOT unknown is unknown");
    assert!(!matches("missing = 1 OR 1 = 0", &[]));
    assert!(matches("missing = 1 OR 1 = 1", &[]), "unknown OR true is true");
    assert!(!matches("missing = 1 AND 1 = 1", &[]));
    assert!(!matches("NOT (missing = 1 AND 1 = 0) AND 1 = 0", &[]));
    assert!(
        matches("NOT (missing = 1 AND 1 = 0)", &[]),
        "unknown AND false is false"
    );
    assert!(!matches("x = NULL", &[("x", "1")]), "comparing with NULL is unknown");
    assert!(!matches("n > 5", &[("n", "many")]), "text that is no number: unknown");
}

#[test]
fn exists_and_is_null() {
    let p = [("Region", "eu")];
    assert!(matches("EXISTS(region)", &p));
    assert!(matches("exists ( [REGION] )", &p));
    assert!(!matches("EXISTS(other)", &p));
    assert!(matches("other IS NULL", &p));
    assert!(!matches("region IS NULL", &p));
    assert!(matches("region IS NOT NULL", &p));
    assert!(matches("NOT EXISTS(other)", &p));
}

#[test]
fn like_patterns() {
    assert!(like("contact", "con%", None));
    assert!(like("contact", "%act", None));
    assert!(like("contact", "%nta%", None));
    assert!(like("contact", "c_ntact", None));
    assert!(!like("contact", "c_tact", None));
    assert!(like("", "%", None));
    assert!(!like("", "_", None));
    assert!(like("a%b", "a!%b", Some('!')));
    assert!(!like("axb", "a!%b", Some('!')));
    assert!(like("a_b", "a\\_b", Some('\\')));
    assert!(like("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab", "%a%a%a%a%a%a%a%a%b", None));
    assert!(!like("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "%a%a%a%a%a%a%a%a%b", None));
    let p = [("entity", "contact")];
    assert!(matches("entity LIKE 'con%'", &p));
    assert!(matches("entity NOT LIKE 'acc%'", &p));
    assert!(!matches("entity NOT LIKE 'c%'", &p));
    assert!(matches("entity LIKE 'con!%' ESCAPE '!' OR entity LIKE 'c______'", &p));
    assert!(!matches("missing LIKE '%'", &p), "unknown");
    assert!(!matches("missing NOT LIKE 'x'", &p), "unknown");
}

#[test]
fn in_lists() {
    let p = [("entity", "contact"), ("n", "3")];
    assert!(matches("entity IN ('account', 'contact')", &p));
    assert!(!matches("entity IN ('account')", &p));
    assert!(matches("entity NOT IN ('account', 'lead')", &p));
    assert!(!matches("entity NOT IN ('contact')", &p));
    assert!(matches("n IN (1, 2, 3)", &p));
    assert!(!matches("missing IN ('a')", &p));
    assert!(!matches("missing NOT IN ('a')", &p));
}

#[test]
fn string_literals_escape_quotes_by_doubling() {
    assert!(matches("name = 'O''Brien'", &[("name", "O'Brien")]));
}

#[test]
fn correlation_filters_need_every_field_given() {
    let p = props(&[("Region", "eu"), ("kind", "create")]);
    let m = message(&p);
    let compile = |filter: CorrelationFilter| Filter::compile(&RuleFilter::Correlation(filter)).unwrap();
    assert!(compile(CorrelationFilter::default()).matches(&m));
    assert!(
        compile(CorrelationFilter {
            correlation_id: Some("corr-1".into()),
            properties: props(&[("region", "eu")]),
            ..CorrelationFilter::default()
        })
        .matches(&m)
    );
    assert!(
        !compile(CorrelationFilter {
            correlation_id: Some("corr-1".into()),
            properties: props(&[("region", "us")]),
            ..CorrelationFilter::default()
        })
        .matches(&m)
    );
    assert!(
        !compile(CorrelationFilter {
            subject: Some("x".into()),
            ..CorrelationFilter::default()
        })
        .matches(&m),
        "a subject the message does not carry does not match"
    );
    assert!(
        compile(CorrelationFilter {
            message_id: Some("m-1".into()),
            content_type: Some("application/json".into()),
            ..CorrelationFilter::default()
        })
        .matches(&m)
    );
}

#[test]
fn errors_name_the_position_and_the_problem() {
    let e = error("a = ");
    assert_eq!(e.position, Some(5));
    assert!(e.to_string().contains("at character 5"), "{e}");
    assert!(e.message.contains("expected a property or a literal"), "{e}");

    let e = error("a = 1 AND (b = 2");
    assert!(e.message.contains("expected `)`"), "{e}");

    let e = error("a = 'open");
    assert_eq!(e.position, Some(5));
    assert!(e.message.contains("not closed"), "{e}");

    let e = error("a + 1 = 2");
    assert_eq!(e.position, Some(3));
    assert!(e.message.contains("arithmetic"), "{e}");

    assert!(error("a LIKE b").message.contains("string pattern"));
    assert!(
        error("a LIKE 'x' ESCAPE 'ab'")
            .message
            .contains("exactly one character")
    );
    assert!(error("a IN (b)").message.contains("literals only"));
    assert!(error("a = 1 b = 2").message.contains("expected `AND`, `OR`"));
    assert!(error("a").message.contains("expected a comparison"));
    assert!(error("and = 1").message.contains("keyword"));
    assert!(error("foo.bar = 1").message.contains("unknown scope"));
    assert!(error("a NOT = 1").message.contains("LIKE or IN after NOT"));
    assert!(error("5 IS NULL").message.contains("applies to a property"));
    assert!(error("").message.contains("empty"));
    assert!(error("a = 1 SET b = 2").message.contains("rule actions"));
}

#[test]
fn hostile_nesting_and_length_are_refused() {
    let deep = format!("{}a = 1{}", "(".repeat(2000), ")".repeat(2000));
    let e = error(&deep);
    assert!(e.message.contains("more than 32 deep"), "{e}");
    let nots = format!("{}a = 1", "NOT ".repeat(1000));
    assert!(error(&nots).message.contains("deep"));
    let fine = format!("{}a = 1{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
    assert!(matches(&fine, &[("a", "1")]));
    let long = format!("a = '{}'", "x".repeat(MAX_SQL_LENGTH));
    assert!(error(&long).message.contains("at most 4096"));
    // A long flat chain is n-ary, not deep: it parses and evaluates without recursion per term.
    let chain = vec!["a = 1"; 400].join(" AND ");
    assert!(matches(&chain, &[("a", "1")]));
}

#[test]
fn actions_are_refused() {
    assert!(check_action(None).is_ok());
    assert!(check_action(Some("  ")).is_ok());
    let e = check_action(Some("SET a = 1")).unwrap_err();
    assert!(e.to_string().contains("rule actions are not supported"), "{e}");
}

#[test]
fn rule_filters_read_from_toml_and_json() {
    #[derive(serde::Deserialize)]
    struct Holder {
        filter: RuleFilter,
    }
    let read = |text: &str| serde_json::from_str::<Holder>(text).unwrap().filter;
    assert_eq!(read(r#"{"filter":"true"}"#), RuleFilter::True);
    assert_eq!(read(r#"{"filter":{"sql":"a = 1"}}"#), RuleFilter::Sql("a = 1".into()));
    let correlation = read(r#"{"filter":{"correlation":{"correlation-id":"c","properties":{"region":"eu"}}}}"#);
    assert_eq!(
        correlation,
        RuleFilter::Correlation(CorrelationFilter {
            correlation_id: Some("c".into()),
            properties: props(&[("region", "eu")]),
            ..CorrelationFilter::default()
        })
    );
    let json = serde_json::to_string(&correlation).unwrap();
    assert_eq!(serde_json::from_str::<RuleFilter>(&json).unwrap(), correlation);
}

#[test]
fn stored_messages_keep_subject_to_reply_to_and_session_id_in_reserved_properties() {
    let p = props(&[
        (SUBJECT_PROPERTY, "Create"),
        (TO_PROPERTY, "mdm"),
        (REPLY_TO_PROPERTY, "replies"),
        (SESSION_ID_PROPERTY, "s-1"),
        (REPLY_TO_SESSION_ID_PROPERTY, "r-1"),
        ("kind", "contact"),
    ]);
    let m = MessageFields::stored("m-1", Some("c-1"), None, &p);
    assert!(
        sql("sys.Label = 'Create' AND sys.To = 'mdm' AND sys.ReplyTo = 'replies' AND sys.SessionId = 's-1'")
            .matches(&m)
    );
    assert!(sql("sys.MessageId = 'm-1' AND sys.CorrelationId = 'c-1' AND sys.ContentType IS NULL").matches(&m));
    assert!(sql("sys.ReplyToSessionId = 'r-1'").matches(&m));
    let reply_to_session = |id: &str| {
        Filter::compile(&RuleFilter::Correlation(CorrelationFilter {
            reply_to_session_id: Some(id.into()),
            ..CorrelationFilter::default()
        }))
        .unwrap()
    };
    assert!(reply_to_session("r-1").matches(&m));
    assert!(!reply_to_session("r-2").matches(&m));
    let none = props(&[]);
    assert!(sql("sys.Subject IS NULL").matches(&MessageFields::stored("m", None, None, &none)));
}

#[test]
fn the_readme_s_dataverse_filter_matches_on_the_claims_dataverse_sets() {
    let filter = "[http://schemas.microsoft.com/xrm/2011/Claims/EntityLogicalName] = 'contact' \
                  AND [http://schemas.microsoft.com/xrm/2011/Claims/RequestName] IN ('Create', 'Update')";
    let claim = |name: &str| format!("http://schemas.microsoft.com/xrm/2011/Claims/{name}");
    let (entity, request) = (claim("EntityLogicalName"), claim("RequestName"));
    assert!(matches(filter, &[(&entity, "contact"), (&request, "Create")]));
    assert!(!matches(filter, &[(&entity, "contact"), (&request, "Delete")]));
    assert!(!matches(filter, &[(&entity, "account"), (&request, "Create")]));
    assert!(!matches(filter, &[(&request, "Create")]), "no entity claim");
}
