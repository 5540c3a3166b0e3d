//! Fills the WIT `context` record from a decoded Dataverse context.
//!
//! WIT has no recursive types, so entities are flattened into one table
//! (`context.entities`) and referenced by index; everything the typed fields do
//! not cover stays reachable through the canonical JSON.

use sagahost_dataverse::model::{self, CompactString, Value};

use super::wit;

/// Builds the WIT context for `ctx`.
///
/// `message_size_exceeded` says Dataverse dropped parts of the context to fit
/// the message size limit (it is read from the message properties, not the body).
pub fn to_wit(ctx: &model::Context, message_size_exceeded: bool) -> wit::Context {
    let mut table = EntityTable::default();
    let (target, target_reference) = match ctx.bag("InputParameters").iter().find(|(k, _)| k == "Target") {
        Some((_, Value::Entity(entity))) => (Some(table.push(entity)), None),
        Some((_, Value::EntityReference(reference))) => (None, Some(reference_to_wit(reference))),
        _ => (None, None),
    };
    let pre_images = table.images(ctx.bag("PreEntityImages"));
    let post_images = table.images(ctx.bag("PostEntityImages"));
    let text = |name: &str| ctx.text(name).map(str::to_owned);
    let int = |name: &str| ctx.int(name).and_then(|v| i32::try_from(v).ok()).unwrap_or_default();
    wit::Context {
        message_name: text("MessageName").unwrap_or_default(),
        primary_entity_name: text("PrimaryEntityName").unwrap_or_default(),
        primary_entity_id: text("PrimaryEntityId"),
        stage: int("Stage"),
        mode: int("Mode"),
        depth: int("Depth"),
        correlation_id: text("CorrelationId"),
        user_id: text("UserId"),
        initiating_user_id: text("InitiatingUserId"),
        organization_id: text("OrganizationId"),
        organization_name: text("OrganizationName"),
        operation_id: text("OperationId"),
        operation_created_on: match ctx.member("OperationCreatedOn") {
            Some(Value::DateTime(at)) => Some(at.to_string()),
            _ => None,
        },
        target,
        target_reference,
        pre_images,
        post_images,
        entities: table.entities,
        message_size_exceeded,
        json: ctx.to_canonical_string(),
    }
}

/// The flattened entity table under construction.
#[derive(Default)]
struct EntityTable {
    entities: Vec<wit::Entity>,
}

impl EntityTable {
    /// Adds `entity` (and, first, any entities nested in it); returns its index.
    fn push(&mut self, entity: &model::Entity) -> u32 {
        let index = self.entities.len();
        // Reserve the slot so the entity's index is stable while nested ones are added.
        self.entities.push(wit::Entity {
            logical_name: String::new(),
            id: None,
            attributes: Vec::new(),
            formatted_values: Vec::new(),
        });
        let attributes = entity
            .attributes
            .iter()
            .map(|(name, value)| wit::Attribute {
                name: owned(name),
                value: self.value(value),
            })
            .collect();
        self.entities[index] = wit::Entity {
            logical_name: owned(&entity.logical_name),
            id: entity.id.as_deref().map(str::to_owned),
            attributes,
            formatted_values: entity
                .formatted_values
                .iter()
                .map(|(name, text)| (owned(name), owned(text)))
                .collect(),
        };
        index as u32
    }

    fn images(&mut self, bag: &[(CompactString, Value)]) -> Vec<wit::Image> {
        bag.iter()
            .filter_map(|(name, value)| match value {
                Value::Entity(entity) => Some(wit::Image {
                    name: owned(name),
                    entity: self.push(entity),
                }),
                _ => None,
            })
            .collect()
    }

    fn value(&mut self, value: &Value) -> wit::Value {
        match value {
            Value::Null => wit::Value::Null,
            Value::String(s) => wit::Value::Text(owned(s)),
            Value::Bool(b) => wit::Value::Boolean(*b),
            Value::Int(i) => wit::Value::Integer(*i),
            Value::Decimal(d) => wit::Value::Decimal(owned(d)),
            Value::Double(d) => wit::Value::Double(*d),
            Value::DateTime(at) => wit::Value::Datetime(at.to_string()),
            Value::Guid(g) => wit::Value::Guid(owned(g)),
            Value::Money(m) => wit::Value::Money(owned(m)),
            Value::OptionSet(o) => wit::Value::OptionSet(*o),
            Value::OptionSetCollection(os) => wit::Value::OptionSetCollection(os.clone()),
            Value::EntityReference(r) => wit::Value::Reference(reference_to_wit(r)),
            Value::Entity(e) => wit::Value::Entity(self.push(e)),
            Value::EntityCollection(c) => {
                wit::Value::EntityCollection(c.entities.iter().map(|e| self.push(e)).collect())
            }
            Value::Aliased(a) => wit::Value::Aliased(wit::AliasedValue {
                entity_logical_name: owned(&a.entity_logical_name),
                attribute_logical_name: owned(&a.attribute_logical_name),
                value_json: a.value.to_canonical_string(),
            }),
            Value::Context(_) | Value::Bag(_) | Value::List(_) | Value::Record(_) => {
                wit::Value::Other(value.to_canonical_string())
            }
        }
    }
}

fn reference_to_wit(reference: &model::EntityReference) -> wit::EntityReference {
    wit::EntityReference {
        logical_name: owned(&reference.logical_name),
        id: owned(&reference.id),
        name: reference.name.as_deref().map(str::to_owned),
    }
}

/// The model's compact text as the `String` WIT bindings take.
fn owned(text: &CompactString) -> String {
    text.as_str().to_owned()
}
