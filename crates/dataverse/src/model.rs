//! The format-independent model of a Dataverse `RemoteExecutionContext`.
//!
//! Every body format (JSON, XML, .NET binary) decodes into these types, and
//! everything downstream (the canonical JSON, the typed WIT fields) is derived
//! from them. The model keeps every member it is given, known or not, so that
//! the canonical JSON is lossless.
//!
//! Names and text are [`CompactString`]s: most of a context's (member and column names,
//! option labels, short values) are 24 bytes or less and live inline, which spares the
//! decoders more than half their allocations (a 5 KB JSON context: 179 down to 74).

use std::fmt;

pub use compact_str::CompactString;

/// A decoded `RemoteExecutionContext` (or a nested `ParentContext`).
///
/// Members keep their data-contract names and the order the body gave them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Context {
    /// Every member of the context, e.g. `("MessageName", Value::String("Update"))`.
    pub members: Vec<(CompactString, Value)>,
}

/// A typed Dataverse value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// An explicit null (`null` in JSON, `i:nil="true"` in XML).
    Null,
    /// Text.
    String(CompactString),
    /// `true` or `false`.
    Bool(bool),
    /// Any whole number that fits in 64 bits.
    Int(i64),
    /// A decimal number, as its exact text (`"1.0000000000"`). JSON numbers with a
    /// fraction or exponent land here too, since JSON cannot tell decimal from double.
    Decimal(CompactString),
    /// A floating-point number that only typed formats (XML, binary) tell apart from a decimal.
    Double(f64),
    /// An instant in UTC.
    DateTime(DateTime),
    /// A GUID, lowercase. Only formats that type their values produce it.
    Guid(CompactString),
    /// `Money`, as exact decimal text.
    Money(CompactString),
    /// `OptionSetValue`.
    OptionSet(i32),
    /// `OptionSetValueCollection` (multi-select choices).
    OptionSetCollection(Vec<i32>),
    /// A reference to a record (`EntityReference`).
    EntityReference(EntityReference),
    /// A record with its attributes (`Entity`), e.g. `Target` or an image.
    Entity(Box<Entity>),
    /// Records (`EntityCollection`).
    EntityCollection(EntityCollection),
    /// A value from a linked entity in a query (`AliasedValue`).
    Aliased(Box<AliasedValue>),
    /// A nested context (`ParentContext`).
    Context(Box<Context>),
    /// A key/value collection (`ParameterCollection`, `AttributeCollection`…).
    Bag(Vec<(CompactString, Value)>),
    /// An array (`string[]`, `object[]`…).
    List(Vec<Value>),
    /// Any other data-contract object, kept member by member.
    Record(Record),
}

/// A data-contract object the model has no dedicated type for.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The contract type name without namespace, e.g. `KeyValuePairOfstringstring`.
    pub type_name: Option<CompactString>,
    /// Its members, in the order the body gave them.
    pub members: Vec<(CompactString, Value)>,
}

/// `Microsoft.Xrm.Sdk.EntityReference`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EntityReference {
    /// The table's logical name, e.g. `contact`.
    pub logical_name: CompactString,
    /// Lowercase GUID text.
    pub id: CompactString,
    /// The primary name of the record, when Dataverse sent it.
    pub name: Option<CompactString>,
    /// Members the model does not type (`KeyAttributes`, `RowVersion`…).
    pub other: Vec<(CompactString, Value)>,
}

/// `Microsoft.Xrm.Sdk.Entity`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Entity {
    /// The table's logical name, e.g. `contact`.
    pub logical_name: CompactString,
    /// Lowercase GUID text; `None` when absent or the empty GUID.
    pub id: Option<CompactString>,
    /// Column values by logical name, in body order.
    pub attributes: Vec<(CompactString, Value)>,
    /// Display text of columns (option-set labels, formatted money…) by logical name.
    pub formatted_values: Vec<(CompactString, CompactString)>,
    /// Members the model does not type (`KeyAttributes`, `EntityState`, `RowVersion`,
    /// `RelatedEntities`…).
    pub other: Vec<(CompactString, Value)>,
}

/// `Microsoft.Xrm.Sdk.EntityCollection`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EntityCollection {
    /// The records, in body order.
    pub entities: Vec<Entity>,
    /// Members the model does not type (`EntityName`, `MoreRecords`, `PagingCookie`…).
    pub other: Vec<(CompactString, Value)>,
}

/// `Microsoft.Xrm.Sdk.AliasedValue`.
#[derive(Debug, Clone, PartialEq)]
pub struct AliasedValue {
    /// The linked table's logical name.
    pub entity_logical_name: CompactString,
    /// The column's logical name in the linked table.
    pub attribute_logical_name: CompactString,
    /// The column's value.
    pub value: Value,
}

/// An instant in UTC, to .NET tick (100 ns) precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DateTime {
    /// 100-nanosecond ticks since 1970-01-01T00:00:00Z (negative before).
    pub unix_ticks: i64,
}

impl DateTime {
    /// Ticks per millisecond.
    pub const TICKS_PER_MS: i64 = 10_000;

    /// An instant from milliseconds since the Unix epoch.
    pub fn from_unix_millis(ms: i64) -> Self {
        Self {
            unix_ticks: ms.saturating_mul(Self::TICKS_PER_MS),
        }
    }
}

impl fmt::Display for DateTime {
    /// ISO 8601 in UTC with a `Z`, with a fraction only when it is not zero:
    /// `2017-09-26T00:04:07Z`, `2017-09-26T00:04:07.1234567Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const TICKS_PER_SECOND: i64 = 10_000_000;
        let secs = self.unix_ticks.div_euclid(TICKS_PER_SECOND);
        let frac = self.unix_ticks.rem_euclid(TICKS_PER_SECOND);
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
            sod / 3600,
            sod / 60 % 60,
            sod % 60
        )?;
        if frac != 0 {
            let digits = format!("{frac:07}");
            write!(f, ".{}", digits.trim_end_matches('0'))?;
        }
        f.write_str("Z")
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day).
///
/// Howard Hinnant's `civil_from_days`; written out because it is ten lines and
/// saves a date-time dependency for one conversion.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

impl Context {
    /// The value of a top-level member, if present.
    pub fn member(&self, name: &str) -> Option<&Value> {
        self.members.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// A top-level member as text (strings and GUIDs), if present and not empty.
    pub fn text(&self, name: &str) -> Option<&str> {
        match self.member(name)? {
            Value::String(s) | Value::Guid(s) if !s.is_empty() => Some(s),
            _ => None,
        }
    }

    /// A top-level integer member, if present.
    pub fn int(&self, name: &str) -> Option<i64> {
        match self.member(name)? {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// A key/value member (`InputParameters`, `PreEntityImages`…); empty when the
    /// member is missing, null or empty, which Dataverse uses interchangeably.
    pub fn bag(&self, name: &str) -> &[(CompactString, Value)] {
        match self.member(name) {
            Some(Value::Bag(items)) => items,
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetime_formats_as_utc_iso8601() {
        assert_eq!(
            DateTime::from_unix_millis(1_506_384_247_000).to_string(),
            "2017-09-26T00:04:07Z"
        );
        assert_eq!(DateTime::from_unix_millis(0).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(
            DateTime { unix_ticks: 1_234_567 }.to_string(),
            "1970-01-01T00:00:00.1234567Z"
        );
        assert_eq!(DateTime::from_unix_millis(-1).to_string(), "1969-12-31T23:59:59.999Z");
        assert_eq!(
            DateTime::from_unix_millis(951_782_400_000).to_string(),
            "2000-02-29T00:00:00Z"
        );
    }
}
