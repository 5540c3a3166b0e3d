//! Renders what a step did as JSON, for comparison with `expected.json`, and
//! explains the differences.

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::component::wit;
use crate::saga::StepRun;

use super::mock::UNMATCHED;

/// The JSON record of a step: the requests it made and how it ended.
///
/// Secrets appear by name (`secret(mdm-api-key)`), never by value: the harness
/// has none.
pub fn record(run: &StepRun) -> Value {
    let requests: Vec<Value> = run
        .rounds
        .iter()
        .enumerate()
        .flat_map(|(round, r)| {
            r.requests
                .iter()
                .zip(&r.results)
                .map(move |(req, res)| request(round + 1, req, res))
        })
        .collect();
    let outcome = match &run.outcome {
        Ok(outcome) => json!({
            "decision": decision(&outcome.decision),
            "compensation-data": outcome.compensation_data.as_deref().map(text_or_json),
        }),
        Err(err) => json!({ "error": { "reason": err.reason(), "message": err.to_string() } }),
    };
    json!({ "requests": requests, "outcome": outcome })
}

fn request(round: usize, req: &wit::HttpRequest, res: &wit::HttpResult) -> Value {
    let mut headers = Map::new();
    for h in &req.headers {
        let value = match &h.value {
            wit::HeaderValue::Literal(v) => v.clone(),
            wit::HeaderValue::Secret(name) => format!("secret({name})"),
            wit::HeaderValue::SecretTemplate(t) => t.template.replace("{}", &format!("secret({})", t.secret)),
        };
        headers.insert(h.name.to_ascii_lowercase(), Value::String(value));
    }
    let mut out = json!({
        "round": round,
        "id": req.id,
        "method": req.method,
        "url": req.url,
        "headers": headers,
        "body": req.body.as_deref().map(body),
    });
    if matches!(&res.response, Err(wit::HttpError::Connection(m)) if m == UNMATCHED) {
        out["unmatched"] = Value::Bool(true);
    }
    out
}

fn decision(decision: &wit::Decision) -> Value {
    match decision {
        wit::Decision::Complete => json!("complete"),
        wit::Decision::Forward(messages) => json!({ "forward": messages.iter().map(|m| json!({
            "route": m.route,
            "body": m.body.as_deref().map(body),
            "content-type": m.content_type,
            "properties": m.properties.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect::<Map<String, Value>>(),
        })).collect::<Vec<_>>() }),
        wit::Decision::Retry(r) => json!({ "retry": { "delay-ms": r.delay_ms, "reason": r.reason } }),
        wit::Decision::Compensate(c) => json!({ "compensate": { "reason": c.reason, "details": c.details } }),
        wit::Decision::DeadLetter(d) => {
            json!({ "dead-letter": { "reason": d.reason, "description": d.description } })
        }
    }
}

/// A body as JSON when it is JSON, as text when it is UTF-8, else as base64.
fn body(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => text_or_json(text),
        Err(_) => json!({ "base64": base64::engine::general_purpose::STANDARD.encode(bytes) }),
    }
}

fn text_or_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// Where `actual` differs from `expected`, one line per difference, by JSON path.
pub fn diff(expected: &Value, actual: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff_at("$", expected, actual, &mut out);
    out
}

fn diff_at(path: &str, expected: &Value, actual: &Value, out: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (key, ev) in e {
                match a.get(key) {
                    Some(av) => diff_at(&format!("{path}.{key}"), ev, av, out),
                    None => out.push(format!("{path}.{key}: expected {ev}, missing")),
                }
            }
            for (key, av) in a.iter().filter(|(k, _)| !e.contains_key(*k)) {
                out.push(format!("{path}.{key}: not expected, got {av}"));
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                diff_at(&format!("{path}[{i}]"), ev, av, out);
            }
            for (i, ev) in e.iter().enumerate().skip(a.len()) {
                out.push(format!("{path}[{i}]: expected {ev}, missing"));
            }
            for (i, av) in a.iter().enumerate().skip(e.len()) {
                out.push(format!("{path}[{i}]: not expected, got {av}"));
            }
        }
        _ if expected != actual => out.push(format!("{path}: expected {expected}, got {actual}")),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_ignores_key_order_and_names_paths() {
        let expected = json!({"a": 1, "b": {"c": [1, 2]}});
        let same = serde_json::from_str::<Value>(r#"{"b": {"c": [1, 2]}, "a": 1}"#).unwrap();
        assert!(diff(&expected, &same).is_empty());
        let actual = json!({"a": 2, "b": {"c": [1]}, "d": true});
        assert_eq!(
            diff(&expected, &actual),
            vec![
                "$.a: expected 1, got 2",
                "$.b.c[1]: expected 2, missing",
                "$.d: not expected, got true"
            ]
        );
    }
}
