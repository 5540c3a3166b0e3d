//! The SQL filter subset: a lexer and a recursive-descent parser from filter text to [`Expr`].
//!
//! Grammar (keywords case-insensitive; `AND` binds tighter than `OR`, `NOT` tighter than both):
//!
//! ```text
//! or        := and ( OR and )*
//! and       := not ( AND not )*
//! not       := NOT not | primary
//! primary   := '(' or ')' | EXISTS '(' property ')' | TRUE | FALSE | operand tail
//! tail      := cmp operand | IS [NOT] NULL | [NOT] LIKE string [ESCAPE string]
//!            | [NOT] IN '(' literal ( ',' literal )* ')'
//! operand   := property | literal
//! property  := name | scope '.' name        scope: sys | user
//! name      := identifier | '[' text ']' | '"' text '"'
//! literal   := 'text' ('' escapes a quote) | [-]number | TRUE | FALSE | NULL
//! ```
//!
//! `AND` and `OR` chains become one n-ary node, so only parentheses and `NOT` deepen the tree;
//! both count against [`MAX_DEPTH`].

use super::{FilterError, MAX_DEPTH, MAX_SQL_LENGTH};

/// A parsed SQL filter.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Constant(bool),
    Compare {
        left: Operand,
        op: CompareOp,
        right: Operand,
    },
    IsNull {
        property: Property,
        negated: bool,
    },
    Exists(Property),
    Like {
        operand: Operand,
        pattern: String,
        escape: Option<char>,
        negated: bool,
    },
    In {
        operand: Operand,
        list: Vec<Literal>,
        negated: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CompareOp {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Operand {
    Property(Property),
    Literal(Literal),
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Literal {
    Text(String),
    Number(f64),
    Bool(bool),
    Null,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Property {
    /// An application property, by name (compared case-insensitively).
    User(String),
    System(SystemProperty),
}

/// The system properties a filter may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SystemProperty {
    MessageId,
    CorrelationId,
    ContentType,
    Subject,
    To,
    ReplyTo,
    SessionId,
    ReplyToSessionId,
}

/// The names `sys.` accepts, lower-cased, and what each means (`Label` is Subject's older name).
const SYSTEM_PROPERTIES: [(&str, SystemProperty); 9] = [
    ("messageid", SystemProperty::MessageId),
    ("correlationid", SystemProperty::CorrelationId),
    ("contenttype", SystemProperty::ContentType),
    ("label", SystemProperty::Subject),
    ("subject", SystemProperty::Subject),
    ("to", SystemProperty::To),
    ("replyto", SystemProperty::ReplyTo),
    ("sessionid", SystemProperty::SessionId),
    ("replytosessionid", SystemProperty::ReplyToSessionId),
];

#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// An unquoted word: a keyword or a name.
    Word(String),
    /// A `[...]` or `"..."` name: never a keyword.
    Quoted(String),
    Text(String),
    Number(f64),
    Op(CompareOp),
    LParen,
    RParen,
    Comma,
    Dot,
    End,
}

/// A token and the 1-based character position where it starts.
#[derive(Debug, Clone)]
struct Spanned {
    token: Token,
    at: usize,
}

fn lex(text: &str) -> Result<Vec<Spanned>, FilterError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let at = i + 1;
        let token = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '(' => {
                i += 1;
                Token::LParen
            }
            ')' => {
                i += 1;
                Token::RParen
            }
            ',' => {
                i += 1;
                Token::Comma
            }
            '.' if !chars.get(i + 1).is_some_and(char::is_ascii_digit) => {
                i += 1;
                Token::Dot
            }
            '=' => {
                i += 1;
                Token::Op(CompareOp::Eq)
            }
            '<' | '>' | '!' => {
                let next = chars.get(i + 1).copied();
                let (op, width) = match (c, next) {
                    ('<', Some('>')) | ('!', Some('=')) => (CompareOp::Ne, 2),
                    ('<', Some('=')) => (CompareOp::Le, 2),
                    ('>', Some('=')) => (CompareOp::Ge, 2),
                    ('<', _) => (CompareOp::Lt, 1),
                    ('>', _) => (CompareOp::Gt, 1),
                    _ => return Err(FilterError::at(at, "`!` must be followed by `=`")),
                };
                i += width;
                Token::Op(op)
            }
            '\'' => {
                let (text, end) = delimited(&chars, i, '\'', '\'', "a string literal")?;
                i = end;
                Token::Text(text)
            }
            '[' => {
                let (name, end) = delimited(&chars, i, '[', ']', "a `[...]` property name")?;
                i = end;
                Token::Quoted(name)
            }
            '"' => {
                let (name, end) = delimited(&chars, i, '"', '"', "a quoted property name")?;
                i = end;
                Token::Quoted(name)
            }
            '-' | '0'..='9' | '.' => {
                let (number, end) = number(&chars, i)?;
                i = end;
                Token::Number(number)
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while chars.get(i).is_some_and(|c| c.is_alphanumeric() || *c == '_') {
                    i += 1;
                }
                Token::Word(chars[start..i].iter().collect())
            }
            '+' | '*' | '/' | '%' => {
                return Err(FilterError::at(
                    at,
                    format!("arithmetic (`{c}`) is not supported in filters: compare properties with literals"),
                ));
            }
            other => return Err(FilterError::at(at, format!("unexpected character `{other}`"))),
        };
        tokens.push(Spanned { token, at });
    }
    tokens.push(Spanned {
        token: Token::End,
        at: chars.len() + 1,
    });
    Ok(tokens)
}

/// Reads text from `open` at `start` to the matching `close`; a doubled `close` stands for one.
/// Returns the text and the index after the closing character.
fn delimited(
    chars: &[char],
    start: usize,
    open: char,
    close: char,
    what: &str,
) -> Result<(String, usize), FilterError> {
    debug_assert_eq!(chars[start], open);
    let mut text = String::new();
    let mut i = start + 1;
    loop {
        match chars.get(i) {
            None => {
                return Err(FilterError::at(
                    start + 1,
                    format!("{what} is not closed with `{close}`"),
                ));
            }
            Some(&c) if c == close => {
                if chars.get(i + 1) == Some(&close) {
                    text.push(close);
                    i += 2;
                } else {
                    return Ok((text, i + 1));
                }
            }
            Some(&c) => {
                text.push(c);
                i += 1;
            }
        }
    }
}

/// Reads `[-]digits[.digits][e[+-]digits]` at `start`.
fn number(chars: &[char], start: usize) -> Result<(f64, usize), FilterError> {
    let mut i = start;
    if chars[i] == '-' {
        i += 1;
        if !chars.get(i).is_some_and(|c| c.is_ascii_digit() || *c == '.') {
            return Err(FilterError::at(
                start + 1,
                "arithmetic (`-`) is not supported in filters; `-` may only start a number",
            ));
        }
    }
    let digits = |i: &mut usize| {
        while chars.get(*i).is_some_and(char::is_ascii_digit) {
            *i += 1;
        }
    };
    digits(&mut i);
    if chars.get(i) == Some(&'.') {
        i += 1;
        digits(&mut i);
    }
    if chars.get(i).is_some_and(|c| *c == 'e' || *c == 'E') {
        i += 1;
        if chars.get(i).is_some_and(|c| *c == '+' || *c == '-') {
            i += 1;
        }
        digits(&mut i);
    }
    let text: String = chars[start..i].iter().collect();
    text.parse::<f64>()
        .ok()
        .filter(|n| n.is_finite())
        .map(|n| (n, i))
        .ok_or_else(|| FilterError::at(start + 1, format!("`{text}` is not a number")))
}

/// Parses a SQL filter expression.
pub(super) fn parse(text: &str) -> Result<Expr, FilterError> {
    let length = text.chars().count();
    if length > MAX_SQL_LENGTH {
        return Err(FilterError::general(format!(
            "the SQL filter is {length} characters long; at most {MAX_SQL_LENGTH} are accepted"
        )));
    }
    if text.trim().is_empty() {
        return Err(FilterError::general(
            "the SQL filter is empty: use `1=1` to match every message",
        ));
    }
    let mut parser = Parser {
        tokens: lex(text)?,
        next: 0,
        depth: 0,
    };
    let expr = parser.or()?;
    let rest = parser.peek();
    if rest.token != Token::End {
        let hint = match &rest.token {
            Token::Word(word) if word.eq_ignore_ascii_case("set") => {
                "SQL rule actions (`SET ...`) are not supported: add the rule with a filter only".to_owned()
            }
            _ => format!(
                "expected `AND`, `OR` or the end of the filter, found {}",
                describe(&rest.token)
            ),
        };
        return Err(FilterError::at(rest.at, hint));
    }
    Ok(expr)
}

fn describe(token: &Token) -> String {
    match token {
        Token::Word(word) => format!("`{word}`"),
        Token::Quoted(name) => format!("the name `{name}`"),
        Token::Text(text) => format!("the string '{text}'"),
        Token::Number(n) => format!("the number {n}"),
        Token::Op(op) => format!("the operator `{op:?}`"),
        Token::LParen => "`(`".to_owned(),
        Token::RParen => "`)`".to_owned(),
        Token::Comma => "`,`".to_owned(),
        Token::Dot => "`.`".to_owned(),
        Token::End => "the end of the filter".to_owned(),
    }
}

struct Parser {
    tokens: Vec<Spanned>,
    next: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> &Spanned {
        &self.tokens[self.next.min(self.tokens.len() - 1)]
    }

    fn bump(&mut self) -> Spanned {
        let token = self.peek().clone();
        if self.next < self.tokens.len() - 1 {
            self.next += 1;
        }
        token
    }

    /// Whether the next token is the keyword `word`; consumes it if so.
    fn keyword(&mut self, word: &str) -> bool {
        let is = matches!(&self.peek().token, Token::Word(w) if w.eq_ignore_ascii_case(word));
        if is {
            self.bump();
        }
        is
    }

    fn expect(&mut self, wanted: &Token, what: &str) -> Result<(), FilterError> {
        let found = self.bump();
        if found.token == *wanted {
            Ok(())
        } else {
            Err(FilterError::at(
                found.at,
                format!("expected {what}, found {}", describe(&found.token)),
            ))
        }
    }

    /// Enters one level of nesting, refusing to go past [`MAX_DEPTH`].
    fn enter(&mut self) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(FilterError::at(
                self.peek().at,
                format!("the filter nests parentheses and NOT more than {MAX_DEPTH} deep"),
            ));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Expr, FilterError> {
        let mut terms = vec![self.and()?];
        while self.keyword("or") {
            terms.push(self.and()?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Expr::Or(terms)
        })
    }

    fn and(&mut self) -> Result<Expr, FilterError> {
        let mut terms = vec![self.not()?];
        while self.keyword("and") {
            terms.push(self.not()?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Expr::And(terms)
        })
    }

    fn not(&mut self) -> Result<Expr, FilterError> {
        if self.keyword("not") {
            self.enter()?;
            let inner = self.not()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, FilterError> {
        let start = self.peek().clone();
        match &start.token {
            Token::LParen => {
                self.bump();
                self.enter()?;
                let inner = self.or()?;
                self.depth -= 1;
                self.expect(&Token::RParen, "`)`")?;
                return Ok(inner);
            }
            Token::Word(word) if word.eq_ignore_ascii_case("exists") => {
                self.bump();
                self.expect(&Token::LParen, "`(` after EXISTS")?;
                let property = self.property()?;
                self.expect(&Token::RParen, "`)` after the EXISTS property")?;
                return Ok(Expr::Exists(property));
            }
            _ => {}
        }
        let operand = self.operand()?;
        self.tail(operand, &start)
    }

    /// What follows an operand: a comparison, IS NULL, LIKE or IN. A lone TRUE or FALSE is a predicate.
    fn tail(&mut self, operand: Operand, start: &Spanned) -> Result<Expr, FilterError> {
        if let Token::Op(op) = self.peek().token {
            self.bump();
            let right = self.operand()?;
            return Ok(Expr::Compare {
                left: operand,
                op,
                right,
            });
        }
        if self.keyword("is") {
            let negated = self.keyword("not");
            if !self.keyword("null") {
                let found = self.peek();
                return Err(FilterError::at(
                    found.at,
                    format!("expected NULL after IS, found {}", describe(&found.token)),
                ));
            }
            let Operand::Property(property) = operand else {
                return Err(FilterError::at(
                    start.at,
                    "IS [NOT] NULL applies to a property, not a literal",
                ));
            };
            return Ok(Expr::IsNull { property, negated });
        }
        let negated = self.keyword("not");
        if self.keyword("like") {
            let pattern = self.text("a string pattern after LIKE")?;
            let escape = if self.keyword("escape") {
                let at = self.peek().at;
                let escape = self.text("a one-character string after ESCAPE")?;
                let mut chars = escape.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => Some(c),
                    _ => return Err(FilterError::at(at, "the ESCAPE string must be exactly one character")),
                }
            } else {
                None
            };
            return Ok(Expr::Like {
                operand,
                pattern,
                escape,
                negated,
            });
        }
        if self.keyword("in") {
            self.expect(&Token::LParen, "`(` after IN")?;
            let mut list = Vec::new();
            loop {
                let at = self.peek().at;
                match self.operand()? {
                    Operand::Literal(literal) => list.push(literal),
                    Operand::Property(_) => {
                        return Err(FilterError::at(at, "IN lists take literals only, not properties"));
                    }
                }
                if self.peek().token == Token::Comma {
                    self.bump();
                } else {
                    break;
                }
            }
            self.expect(&Token::RParen, "`,` or `)` in the IN list")?;
            return Ok(Expr::In { operand, list, negated });
        }
        if negated {
            let found = self.peek();
            return Err(FilterError::at(
                found.at,
                format!("expected LIKE or IN after NOT, found {}", describe(&found.token)),
            ));
        }
        if let Operand::Literal(Literal::Bool(value)) = operand {
            return Ok(Expr::Constant(value));
        }
        let found = self.peek();
        Err(FilterError::at(
            found.at,
            format!(
                "expected a comparison (=, <>, !=, <, >, <=, >=), IS, LIKE or IN, found {}",
                describe(&found.token)
            ),
        ))
    }

    fn text(&mut self, what: &str) -> Result<String, FilterError> {
        let found = self.bump();
        match found.token {
            Token::Text(text) => Ok(text),
            other => Err(FilterError::at(
                found.at,
                format!("expected {what}, found {}", describe(&other)),
            )),
        }
    }

    fn operand(&mut self) -> Result<Operand, FilterError> {
        let found = self.peek().clone();
        let literal = match &found.token {
            Token::Text(text) => Literal::Text(text.clone()),
            Token::Number(n) => Literal::Number(*n),
            Token::Word(word) if word.eq_ignore_ascii_case("true") => Literal::Bool(true),
            Token::Word(word) if word.eq_ignore_ascii_case("false") => Literal::Bool(false),
            Token::Word(word) if word.eq_ignore_ascii_case("null") => Literal::Null,
            Token::Word(_) | Token::Quoted(_) => return self.property().map(Operand::Property),
            other => {
                return Err(FilterError::at(
                    found.at,
                    format!("expected a property or a literal, found {}", describe(other)),
                ));
            }
        };
        self.bump();
        Ok(Operand::Literal(literal))
    }

    fn property(&mut self) -> Result<Property, FilterError> {
        let first = self.bump();
        let name = match &first.token {
            Token::Word(word) if is_keyword(word) => {
                return Err(FilterError::at(
                    first.at,
                    format!("`{word}` is a keyword; write `[{word}]` for a property of that name"),
                ));
            }
            Token::Word(word) | Token::Quoted(word) => word.clone(),
            other => {
                return Err(FilterError::at(
                    first.at,
                    format!("expected a property name, found {}", describe(other)),
                ));
            }
        };
        if self.peek().token != Token::Dot {
            return Ok(Property::User(name));
        }
        self.bump();
        let second = self.bump();
        let (Token::Word(member) | Token::Quoted(member)) = &second.token else {
            return Err(FilterError::at(
                second.at,
                format!(
                    "expected a property name after `{name}.`, found {}",
                    describe(&second.token)
                ),
            ));
        };
        if name.eq_ignore_ascii_case("user") {
            return Ok(Property::User(member.clone()));
        }
        if !name.eq_ignore_ascii_case("sys") {
            return Err(FilterError::at(
                first.at,
                format!("unknown scope `{name}`: a property is `name`, `user.name` or `sys.Name`"),
            ));
        }
        let lowered = member.to_ascii_lowercase();
        SYSTEM_PROPERTIES
            .iter()
            .find(|(known, _)| *known == lowered)
            .map(|(_, property)| Property::System(*property))
            .ok_or_else(|| {
                FilterError::at(
                    second.at,
                    format!(
                        "`sys.{member}` is not a system property filters can use here; use one of sys.MessageId, \
                         sys.CorrelationId, sys.ContentType, sys.Label, sys.Subject, sys.To, sys.ReplyTo, sys.SessionId, \
                         sys.ReplyToSessionId"
                    ),
                )
            })
    }
}

fn is_keyword(word: &str) -> bool {
    const KEYWORDS: [&str; 11] = [
        "and", "or", "not", "is", "null", "like", "escape", "in", "exists", "true", "false",
    ];
    KEYWORDS.iter().any(|keyword| word.eq_ignore_ascii_case(keyword))
}
