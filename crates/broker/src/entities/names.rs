//! Which entity names the management endpoint accepts, as Service Bus (and Azure Resource Manager)
//! rules have them, checked before anything touches the queue so a bad name is a readable 400.
//!
//! - Queues and topics: 1 to 260 characters; letters, digits, `.`, `-`, `_` and `/`; starting and
//!   ending with a letter or digit (so never with `/`, and never `$`-prefixed: names such as
//!   `$Resources` and `$DeadLetterQueue` are the service's); no empty path segment (`//`) and no
//!   `..`.
//! - Subscriptions and rules: 1 to 50 characters; the same, without `/`.

/// What kind of entity a name is for; the kinds differ in length and in whether `/` is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// A queue or topic name: a path.
    Path,
    /// A subscription or rule name: one segment.
    Segment,
}

impl NameKind {
    fn max_len(self) -> usize {
        match self {
            Self::Path => 260,
            Self::Segment => 50,
        }
    }
}

/// Checks `name`; the error says what is wrong with it and what is allowed.
pub fn check(kind: NameKind, name: &str) -> Result<(), String> {
    let allowed = match kind {
        NameKind::Path => "letters, digits, '.', '-', '_' and '/'",
        NameKind::Segment => "letters, digits, '.', '-' and '_'",
    };
    if name.is_empty() {
        return Err("the entity name is empty".to_owned());
    }
    if name.starts_with('$') {
        return Err(format!(
            "the entity name `{name}` starts with `$`: such names are reserved for the service"
        ));
    }
    let length = name.chars().count();
    if length > kind.max_len() {
        return Err(format!(
            "the entity name is {length} characters long; at most {} are allowed",
            kind.max_len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') || (c == '/' && kind == NameKind::Path)))
    {
        return Err(format!(
            "the entity name `{name}` contains {bad:?}; names may contain only {allowed}"
        ));
    }
    let alphanumeric_ends =
        name.starts_with(|c: char| c.is_ascii_alphanumeric()) && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !alphanumeric_ends {
        return Err(format!(
            "the entity name `{name}` must start and end with a letter or digit"
        ));
    }
    if name.contains("..") || name.contains("//") {
        return Err(format!(
            "the entity name `{name}` contains `..` or an empty path segment"
        ));
    }
    Ok(())
}
