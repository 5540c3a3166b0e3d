//! What the broker reads beyond fe2o3's strict decoding, because Service Bus reads it too.
//!
//! rhea, the AMQP stack under the official JavaScript SDK, encodes the `info` map of an
//! `amqp:error:list` with string keys where the AMQP spec (and fe2o3's `Fields`) want symbols:
//! every dead-letter disposition from that SDK carries one. A frame that fails strict decoding
//! is therefore read again as a plain AMQP value; if an error's `info` has string keys, they
//! become symbols and the frame is decoded once more. Only frames that failed pay for this.

use fe2o3_amqp_types::primitives::{OrderedMap, Symbol, Value};
use serde_amqp::descriptor::Descriptor;

/// The descriptor code of `amqp:error:list`.
const ERROR_CODE: u64 = 0x1d;
const ERROR_NAME: &str = "amqp:error:list";

/// `performative` (an encoded described list, with no payload after it) with every error's
/// string-keyed `info` given symbol keys, or `None` when there was nothing to change.
pub(super) fn symbolize_error_info(performative: &[u8]) -> Option<Vec<u8>> {
    let mut value: Value = serde_amqp::from_slice(performative).ok()?;
    if !symbolize(&mut value) {
        return None;
    }
    serde_amqp::to_vec(&value).ok()
}

/// Turns string keys of error `info` maps anywhere inside `value` into symbols; true if any was.
fn symbolize(value: &mut Value) -> bool {
    match value {
        Value::Described(described) => {
            let is_error = match &described.descriptor {
                Descriptor::Code(code) => *code == ERROR_CODE,
                Descriptor::Name(name) => name.as_str() == ERROR_NAME,
            };
            let mut changed = false;
            if is_error
                && let Value::List(fields) = &mut described.value
                && let Some(Value::Map(info)) = fields.get_mut(2)
            {
                changed = symbol_keys(info);
            }
            symbolize(&mut described.value) || changed
        }
        Value::List(items) => {
            // Every item, not just up to the first change.
            let mut changed = false;
            for item in items {
                changed |= symbolize(item);
            }
            changed
        }
        _ => false,
    }
}

fn symbol_keys(info: &mut OrderedMap<Value, Value>) -> bool {
    if !info.keys().any(|key| matches!(key, Value::String(_))) {
        return false;
    }
    *info = std::mem::take(info)
        .into_iter()
        .map(|(key, value)| match key {
            Value::String(text) => (Value::Symbol(Symbol::from(text)), value),
            other => (other, value),
        })
        .collect();
    true
}

#[cfg(test)]
mod tests {
    use fe2o3_amqp_types::definitions::{AmqpError, ErrorCondition};
    use fe2o3_amqp_types::messaging::{DeliveryState, Rejected};
    use fe2o3_amqp_types::performatives::Disposition;
    use serde_amqp::described::Described;

    use super::*;

    /// A `rejected` disposition as rhea encodes a dead-letter: error info with string keys.
    fn rhea_dead_letter() -> Vec<u8> {
        let mut info = OrderedMap::new();
        info.insert(
            Value::String("DeadLetterReason".into()),
            Value::String("BadInput".into()),
        );
        info.insert(Value::String("DeadLetterErrorDescription".into()), Value::Null);
        let error = Value::Described(Box::new(Described {
            descriptor: Descriptor::Code(ERROR_CODE),
            value: Value::List(vec![
                Value::Symbol(Symbol::from("com.microsoft:dead-letter")),
                Value::Null,
                Value::Map(info),
            ]),
        }));
        let rejected = Value::Described(Box::new(Described {
            descriptor: Descriptor::Code(0x25),
            value: Value::List(vec![error]),
        }));
        let disposition = Value::Described(Box::new(Described {
            descriptor: Descriptor::Code(0x15),
            value: Value::List(vec![
                Value::Bool(true),
                Value::Uint(7),
                Value::Null,
                Value::Bool(true),
                rejected,
            ]),
        }));
        serde_amqp::to_vec(&disposition).unwrap()
    }

    #[test]
    fn a_dead_letter_with_string_keyed_info_decodes_once_its_keys_are_symbols() {
        let encoded = rhea_dead_letter();
        assert!(
            serde_amqp::from_slice::<Disposition>(&encoded).is_err(),
            "fe2o3 is strict"
        );
        let fixed = symbolize_error_info(&encoded).expect("the keys change");
        let disposition: Disposition = serde_amqp::from_slice(&fixed).unwrap();
        let Some(DeliveryState::Rejected(Rejected { error: Some(error) })) = disposition.state else {
            panic!("expected a rejection: {disposition:?}")
        };
        assert_eq!(
            error.condition,
            ErrorCondition::Custom(Symbol::from("com.microsoft:dead-letter"))
        );
        let info = error.info.unwrap();
        assert_eq!(
            info.get(&Symbol::from("DeadLetterReason")),
            Some(&Value::String("BadInput".into()))
        );
        assert_eq!(disposition.first, 7);
    }

    #[test]
    fn frames_with_nothing_to_fix_are_left_alone() {
        let disposition = Disposition {
            role: fe2o3_amqp_types::definitions::Role::Receiver,
            first: 1,
            last: None,
            settled: true,
            state: Some(DeliveryState::Rejected(Rejected {
                error: Some(fe2o3_amqp_types::definitions::Error::new(
                    AmqpError::InternalError,
                    None,
                    None,
                )),
            })),
            batchable: false,
        };
        assert_eq!(symbolize_error_info(&serde_amqp::to_vec(&disposition).unwrap()), None);
        assert_eq!(symbolize_error_info(b"\x00garbage"), None);
    }
}
