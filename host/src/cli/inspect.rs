//! `sagahost inspect`: what a component would receive for a message body.
//!
//! Prints a summary with typed values (message, entity, id, Target attributes,
//! images) and then the canonical JSON of the whole context.

use std::fmt::Write as _;

use sagahost_dataverse::model::Context;

use sagahost::component::context;
use sagahost::component::wit::{self, Value};

/// The human-readable summary of a decoded context, as the component sees it.
pub fn summary(ctx: &Context) -> String {
    let wit = context::to_wit(ctx, false);
    let mut out = String::new();
    let id = wit.primary_entity_id.as_deref().unwrap_or("-");
    let _ = writeln!(out, "message:  {} {} {id}", wit.message_name, wit.primary_entity_name);
    let _ = writeln!(out, "stage:    {}  mode: {}  depth: {}", wit.stage, wit.mode, wit.depth);
    if let Some(correlation) = &wit.correlation_id {
        let _ = writeln!(out, "saga id:  {correlation}");
    }
    match (wit.target, &wit.target_reference) {
        (Some(index), _) => entity(&mut out, "target", &wit, index),
        (None, Some(r)) => {
            let _ = writeln!(out, "target:   reference {} {}", r.logical_name, r.id);
        }
        (None, None) => {
            let _ = writeln!(out, "target:   none");
        }
    }
    for (kind, images) in [("pre-image", &wit.pre_images), ("post-image", &wit.post_images)] {
        for image in images {
            entity(&mut out, &format!("{kind} {}", image.name), &wit, image.entity);
        }
    }
    out
}

fn entity(out: &mut String, label: &str, ctx: &wit::Context, index: u32) {
    let e = &ctx.entities[index as usize];
    let _ = writeln!(out, "{label}: {} {}", e.logical_name, e.id.as_deref().unwrap_or("-"));
    let width = e.attributes.iter().map(|a| a.name.len()).max().unwrap_or(0);
    for attribute in &e.attributes {
        let (kind, text) = describe(ctx, &attribute.value);
        let _ = writeln!(out, "  {:width$}  {kind:<22} {text}", attribute.name);
    }
}

/// The type name and display text of a value.
fn describe(ctx: &wit::Context, value: &Value) -> (&'static str, String) {
    let name = |index: &u32| {
        let e = &ctx.entities[*index as usize];
        format!("{} {}", e.logical_name, e.id.as_deref().unwrap_or("-"))
    };
    match value {
        Value::Null => ("null", String::new()),
        Value::Text(t) => ("text", format!("{t:?}")),
        Value::Boolean(b) => ("boolean", b.to_string()),
        Value::Integer(i) => ("integer", i.to_string()),
        Value::Decimal(d) => ("decimal", d.clone()),
        Value::Double(d) => ("double", d.to_string()),
        Value::Money(m) => ("money", m.clone()),
        Value::Datetime(d) => ("datetime", d.clone()),
        Value::Guid(g) => ("guid", g.clone()),
        Value::OptionSet(o) => ("option-set", o.to_string()),
        Value::OptionSetCollection(os) => ("option-set-collection", format!("{os:?}")),
        Value::Reference(r) => ("reference", format!("{} {}", r.logical_name, r.id)),
        Value::Entity(i) => ("entity", name(i)),
        Value::EntityCollection(is) => ("entity-collection", is.iter().map(name).collect::<Vec<_>>().join(", ")),
        Value::Aliased(a) => (
            "aliased",
            format!(
                "{}.{} = {}",
                a.entity_logical_name, a.attribute_logical_name, a.value_json
            ),
        ),
        Value::Other(json) => ("other", json.clone()),
    }
}
