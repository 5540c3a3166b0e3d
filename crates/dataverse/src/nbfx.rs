//! The .NET binary message format (`application/msbin1`): [MC-NBFX] .NET Binary
//! XML, as `XmlDictionaryWriter.CreateBinaryWriter(stream, null, null, false)`
//! writes it, so with no static or session dictionary.
//!
//! No Rust crate reads MC-NBFX, so this is a small hand-written reader. It turns
//! the records into the same events the text XML reader produces and feeds them
//! to the shared [`Builder`], so both formats end in the same tape and go
//! through the same [`mapper`](super::mapper). Typed text records become the text
//! DataContractSerializer would have written for the same value in text XML
//! (`true`, `1.0000000000`, `2017-09-26T00:04:07Z`, base64 for bytes…), which is
//! what the mapper parses.
//!
//! What it reads (record type bytes in brackets; each text record `T` also has a
//! `T + 1` form that closes the element after the text):
//! - elements: `EndElement` (0x01), `ShortElement` (0x40), `Element` (0x41),
//!   `PrefixElement_a..z` (0x5E–0x77);
//! - attributes: `ShortAttribute` (0x04), `Attribute` (0x05), `ShortXmlnsAttribute`
//!   (0x08), `XmlnsAttribute` (0x09), `PrefixAttribute_a..z` (0x26–0x3F);
//! - `Comment` (0x02, skipped) and `Array` (0x03, an element repeated once per
//!   value of a fixed-size text type);
//! - text: Zero/One/False/True (0x80–0x86), Int8/16/32/64 (0x88–0x8E), Float
//!   (0x90), Double (0x92), Decimal (0x94), DateTime (0x96), Chars8/16/32 (0x98–0x9C,
//!   UTF-8), Bytes8/16/32 (0x9E–0xA2), StartList/EndList (0xA4/0xA6), Empty (0xA8),
//!   UniqueId (0xAC), TimeSpan (0xAE), Uuid (0xB0), UInt64 (0xB2), Bool (0xB4),
//!   UnicodeChars8/16/32 (0xB6–0xBA, UTF-16LE).
//!
//! Every dictionary record (`DictionaryElement`, `PrefixDictionaryAttribute_x`,
//! `DictionaryText`, `QNameDictionaryText`…) is refused with a clear error: there is
//! no dictionary to look the strings up in, and these bodies never use one.
//! Lengths are MultiByteInt31 (7 bits a byte, least significant first, at most 5
//! bytes). Numbers are little-endian.

use std::borrow::Cow;

use base64::Engine;
use uuid::Uuid;

use super::infoset::{BuildError, Builder, Declaration, RawAttribute, Tape, attribute_cost, declaration_cost};
use super::model::{Context, DateTime};
use super::{DecodeError, Format, Limits, mapper};

/// .NET ticks (100 ns since 0001-01-01) at the Unix epoch.
const UNIX_EPOCH_TICKS: i64 = 621_355_968_000_000_000;
/// `DateTime.MaxValue.Ticks`.
const MAX_TICKS: u64 = 3_155_378_975_999_999_999;
/// The longest text an `Array` item becomes (a negative decimal with 28 fraction digits
/// is 31 bytes, a GUID 36).
const MAX_ARRAY_ITEM_TEXT: usize = 40;

/// Decodes a binary `RemoteExecutionContext`; the body is already within the size limit.
pub(super) fn decode(body: &[u8], limits: &Limits) -> std::result::Result<Context, DecodeError> {
    let tape = read(body, limits)?;
    mapper::context(tape, Format::Binary, limits)
}

/// Parses the records onto the tape.
fn read<'a>(body: &'a [u8], limits: &Limits) -> std::result::Result<Tape<'a>, DecodeError> {
    let mut reader = Reader {
        body,
        pos: 0,
        limits,
        builder: Builder::new(limits, body.len()),
        elements: 0,
        spare: Default::default(),
    };
    reader.document().map_err(|(offset, err)| match err {
        BuildError::Invalid(reason) => DecodeError::Binary { offset, reason },
        BuildError::TooDeep { limit } => DecodeError::BinaryTooDeep { limit, offset },
        BuildError::TooLong { path, size } => DecodeError::StringTooLong {
            format: Format::Binary,
            path: format!("{path} (byte {offset})"),
            size,
            limit: limits.max_string_bytes,
        },
        BuildError::Expansion { limit } => DecodeError::Expansion {
            format: Format::Binary,
            size: body.len(),
            limit,
        },
    })?;
    let end = body.len();
    reader.builder.finish().map_err(|err| match err {
        BuildError::Invalid(reason) => DecodeError::Binary { offset: end, reason },
        _ => DecodeError::Binary {
            offset: end,
            reason: "incomplete document".into(),
        },
    })
}

/// An error and the offset of the record it is about.
type Failure = (usize, BuildError);
type Result<T> = std::result::Result<T, Failure>;

/// An element record with its attributes, kept whole so an `Array` record can
/// repeat it.
struct StartRecord<'a> {
    prefix: &'a str,
    local: &'a str,
    /// Declarations, borrowed from the body.
    xmlns: Vec<Declaration<'a>>,
    attributes: Vec<RawAttribute<'a, 'a>>,
}

struct Reader<'a, 'l> {
    body: &'a [u8],
    pos: usize,
    limits: &'l Limits,
    builder: Builder<'a, 'l>,
    /// Elements built so far, `Array` items included: bounded so a short array
    /// record cannot expand into more elements than a body of this size could
    /// hold written out.
    elements: usize,
    /// The lists of the last element record read, emptied, for the next one to fill.
    spare: (Vec<Declaration<'a>>, Vec<RawAttribute<'a, 'a>>),
}

impl<'a> Reader<'a, '_> {
    fn document(&mut self) -> Result<()> {
        while self.pos < self.body.len() {
            let offset = self.pos;
            let record = self.byte()?;
            match record {
                0x01 => self.build(offset, |b| b.end())?,
                0x02 => {
                    self.body_str()?;
                }
                0x03 => self.array(offset)?,
                0x40..=0x77 => {
                    let start = self.start_record(offset, record)?;
                    self.start(offset, &start)?;
                    self.recycle(start);
                }
                0x80..=0xBF => {
                    let text = self.text(offset, record)?;
                    self.build(offset, |b| b.text(text))?;
                    if record & 1 == 1 {
                        self.build(offset, |b| b.end())?;
                    }
                }
                0x04..=0x3F => {
                    return Err(invalid(
                        offset,
                        format!("attribute record 0x{record:02X} outside an element"),
                    ));
                }
                _ => return Err(invalid(offset, format!("unknown record type 0x{record:02X}"))),
            }
        }
        Ok(())
    }

    /// Reads an element record (type byte already read) and its attributes.
    fn start_record(&mut self, offset: usize, record: u8) -> Result<StartRecord<'a>> {
        let (prefix, local) = match record {
            0x40 => ("", self.body_str()?),
            0x41 => (self.body_str()?, self.body_str()?),
            0x5E..=0x77 => (letter(record - 0x5E), self.body_str()?),
            0x42..=0x5D => return Err(dictionary(offset, record)),
            _ => return Err(invalid(offset, format!("record 0x{record:02X} is not an element"))),
        };
        let mut start = StartRecord {
            prefix,
            local,
            xmlns: std::mem::take(&mut self.spare.0),
            attributes: std::mem::take(&mut self.spare.1),
        };
        while let Some(&record @ 0x04..=0x3F) = self.body.get(self.pos) {
            let offset = self.pos;
            self.pos += 1;
            let (prefix, local) = match record {
                // An attribute without a prefix is in no namespace, so never `i:type`
                // or `i:nil`: nothing keeps it.
                0x04 => {
                    self.body_str()?;
                    self.attribute_value()?;
                    continue;
                }
                0x05 => (self.body_str()?, self.body_str()?),
                0x26..=0x3F => (letter(record - 0x26), self.body_str()?),
                0x08 | 0x09 => {
                    let prefix = if record == 0x09 { self.body_str()? } else { "" };
                    let ns = self.body_str()?;
                    self.build(offset, |b| b.charge(declaration_cost(prefix, ns)))?;
                    start.xmlns.push((prefix, ns.into()));
                    continue;
                }
                // 0x06, 0x07, 0x0A, 0x0B, 0x0C–0x25.
                _ => return Err(dictionary(offset, record)),
            };
            // Only `type` and `nil` values are kept (as `i:type` and `i:nil`); the
            // prefix of every other attribute is still checked.
            let value = self.attribute_value()?;
            let value = if matches!(local, "type" | "nil") {
                value
            } else {
                Cow::Borrowed("")
            };
            self.build(offset, |b| b.charge(attribute_cost(&value)))?;
            start.attributes.push(RawAttribute { prefix, local, value });
        }
        Ok(start)
    }

    fn start(&mut self, offset: usize, start: &StartRecord<'a>) -> Result<()> {
        self.elements += 1;
        if self.elements > self.body.len() / 3 + 1 {
            return Err(invalid(offset, "more elements than the body can hold".into()));
        }
        let result = self.builder.start(
            start.prefix,
            Cow::Borrowed(start.local),
            &start.xmlns,
            &start.attributes,
        );
        result.map_err(|err| (offset, err))
    }

    /// `Array`: an element record, `EndElement`, then a text record type (one of
    /// the fixed-size `…WithEndElement` forms), a count, and that many values. It
    /// means the element written once per value, so the whole repetition is checked
    /// against the decoded-size budget before the first item is built.
    fn array(&mut self, offset: usize) -> Result<()> {
        let element_offset = self.pos;
        let record = self.byte()?;
        let start = self.start_record(element_offset, record)?;
        if self.byte()? != 0x01 {
            return Err(invalid(
                self.pos - 1,
                "an array element must be followed by EndElement".into(),
            ));
        }
        let type_offset = self.pos;
        let item = self.byte()?;
        let size = match item {
            0xB5 => 1,
            0x8B => 2,
            0x8D | 0x91 => 4,
            0x8F | 0x93 | 0x97 | 0xAF => 8,
            0x95 | 0xB1 => 16,
            _ => {
                return Err(invalid(
                    type_offset,
                    format!("record 0x{item:02X} cannot be an array item"),
                ));
            }
        };
        let count = self.int31()?;
        if count
            .checked_mul(size)
            .is_none_or(|bytes| bytes > self.body.len() - self.pos)
        {
            return Err(invalid(
                offset,
                format!("array of {count} items runs past the end of the body"),
            ));
        }
        // Each item is the element written out again, declarations and attributes included.
        let declarations: usize = start
            .xmlns
            .iter()
            .map(|(prefix, ns)| declaration_cost(prefix, ns))
            .sum();
        let attributes: usize = start.attributes.iter().map(|a| attribute_cost(&a.value)).sum();
        let item_cost = Builder::element_cost(start.local) + declarations + attributes + 2 * MAX_ARRAY_ITEM_TEXT;
        self.builder
            .budget()
            .check_each(count, item_cost)
            .map_err(|exhausted| (offset, exhausted.into()))?;
        for _ in 0..count {
            let value_offset = self.pos;
            self.start(value_offset, &start)?;
            let text = self.text(value_offset, item)?;
            self.build(value_offset, |b| b.text(text))?;
            self.build(value_offset, |b| b.end())?;
        }
        self.recycle(start);
        Ok(())
    }

    /// Keeps an element record's lists, emptied, for the next record.
    fn recycle(&mut self, start: StartRecord<'a>) {
        let (mut xmlns, mut attributes) = (start.xmlns, start.attributes);
        xmlns.clear();
        attributes.clear();
        self.spare = (xmlns, attributes);
    }

    /// An attribute's value: one text record, without the `…WithEndElement` forms.
    fn attribute_value(&mut self) -> Result<Cow<'a, str>> {
        let offset = self.pos;
        match self.byte()? {
            record @ 0x80..=0xBF if record & 1 == 0 => self.text(offset, record),
            record => Err(invalid(
                offset,
                format!("record 0x{record:02X} is not an attribute value"),
            )),
        }
    }

    /// The text of a text record whose type byte (at `offset`) is `record`.
    fn text(&mut self, offset: usize, record: u8) -> Result<Cow<'a, str>> {
        // Fixed values borrow a constant and UTF-8 text borrows the body: a body can hold a
        // million one-byte records.
        Ok(match record & !1 {
            0x80 => "0".into(),
            0x82 => "1".into(),
            0x84 => "false".into(),
            0x86 => "true".into(),
            0x88 => i8::from_le_bytes(self.array_of()?).to_string().into(),
            0x8A => i16::from_le_bytes(self.array_of()?).to_string().into(),
            0x8C => i32::from_le_bytes(self.array_of()?).to_string().into(),
            0x8E => i64::from_le_bytes(self.array_of()?).to_string().into(),
            0xB2 => u64::from_le_bytes(self.array_of()?).to_string().into(),
            0x90 => {
                let value = f32::from_le_bytes(self.array_of()?);
                float_text(value.into(), format!("{value:?}")).into()
            }
            0x92 => {
                let value = f64::from_le_bytes(self.array_of()?);
                float_text(value, format!("{value:?}")).into()
            }
            0x94 => decimal_text(&self.array_of()?)
                .ok_or_else(|| invalid(offset, "invalid decimal".into()))?
                .into(),
            0x96 => date_time_text(u64::from_le_bytes(self.array_of()?))
                .ok_or_else(|| invalid(offset, "invalid DateTime".into()))?
                .into(),
            0x98 => {
                let length = usize::from(self.byte()?);
                self.utf8(offset, length)?
            }
            0x9A => {
                let length = usize::from(u16::from_le_bytes(self.array_of()?));
                self.utf8(offset, length)?
            }
            0x9C => {
                let length = self.length32(offset)?;
                self.utf8(offset, length)?
            }
            0x9E => {
                let length = usize::from(self.byte()?);
                self.base64(offset, length)?.into()
            }
            0xA0 => {
                let length = usize::from(u16::from_le_bytes(self.array_of()?));
                self.base64(offset, length)?.into()
            }
            0xA2 => {
                let length = self.length32(offset)?;
                self.base64(offset, length)?.into()
            }
            0xA4 if record & 1 == 0 => self.list(offset)?.into(),
            0xA8 => "".into(),
            // GUIDs are stored in .NET's order: the first three groups little-endian.
            0xAC => Uuid::from_bytes_le(self.array_of()?).urn().to_string().into(),
            0xAE => duration_text(i64::from_le_bytes(self.array_of()?)).into(),
            0xB0 => Uuid::from_bytes_le(self.array_of()?).to_string().into(),
            0xB4 => match self.byte()? {
                0 => "false".into(),
                1 => "true".into(),
                other => return Err(invalid(offset, format!("BoolText value {other} is not 0 or 1"))),
            },
            0xB6 => {
                let length = usize::from(self.byte()?);
                self.utf16(offset, length)?.into()
            }
            0xB8 => {
                let length = usize::from(u16::from_le_bytes(self.array_of()?));
                self.utf16(offset, length)?.into()
            }
            0xBA => {
                let length = self.length32(offset)?;
                self.utf16(offset, length)?.into()
            }
            0xAA | 0xBC => return Err(dictionary(offset, record)),
            _ => return Err(invalid(offset, format!("record 0x{record:02X} is not valid here"))),
        })
    }

    /// `StartListText`: text records up to `EndListText`, separated by spaces.
    fn list(&mut self, offset: usize) -> Result<String> {
        let (mut text, mut items) = (String::new(), 0_usize);
        loop {
            let item_offset = self.pos;
            match self.byte()? {
                0xA6 => return Ok(text),
                0xA4 => return Err(invalid(item_offset, "lists do not nest".into())),
                record @ 0x80..=0xBF if record & 1 == 0 => {
                    let item = self.text(item_offset, record)?;
                    let separator = usize::from(items > 0);
                    let size = text.len() + separator + item.len();
                    if size > self.limits.max_string_bytes {
                        return Err((
                            offset,
                            BuildError::TooLong {
                                path: "list".into(),
                                size,
                            },
                        ));
                    }
                    if separator == 1 {
                        text.push(' ');
                    }
                    text.push_str(&item);
                    items += 1;
                }
                record => {
                    return Err(invalid(
                        item_offset,
                        format!("record 0x{record:02X} cannot be in a list"),
                    ));
                }
            }
        }
    }

    fn build(
        &mut self,
        offset: usize,
        event: impl FnOnce(&mut Builder<'a, '_>) -> std::result::Result<(), BuildError>,
    ) -> Result<()> {
        event(&mut self.builder).map_err(|err| (offset, err))
    }

    fn byte(&mut self) -> Result<u8> {
        let byte = *self.body.get(self.pos).ok_or_else(|| self.truncated())?;
        self.pos += 1;
        Ok(byte)
    }

    fn array_of<const N: usize>(&mut self) -> Result<[u8; N]> {
        let bytes = self.bytes(N)?;
        Ok(bytes.try_into().expect("N bytes"))
    }

    fn bytes(&mut self, length: usize) -> Result<&[u8]> {
        if length > self.body.len() - self.pos {
            return Err(self.truncated());
        }
        let bytes = &self.body[self.pos..self.pos + length];
        self.pos += length;
        Ok(bytes)
    }

    /// A MultiByteInt31: 7 bits a byte, least significant group first, the high bit
    /// set on every byte but the last; at most 5 bytes and 31 bits.
    fn int31(&mut self) -> Result<usize> {
        let offset = self.pos;
        let mut value: u32 = 0;
        for i in 0..5 {
            let byte = self.byte()?;
            if i == 4 && byte > 0x07 {
                return Err(invalid(offset, "MultiByteInt31 is over 31 bits".into()));
            }
            value |= u32::from(byte & 0x7F) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value as usize);
            }
        }
        unreachable!("the fifth byte has no continuation bit")
    }

    /// A name, namespace or comment: a MultiByteInt31 length and UTF-8 bytes, borrowed
    /// from the body. Like member names in JSON, these are bounded by the body size only.
    fn body_str(&mut self) -> Result<&'a str> {
        let offset = self.pos;
        let length = self.int31()?;
        if length > self.body.len() - self.pos {
            return Err(self.truncated());
        }
        let body: &'a [u8] = self.body;
        let bytes = &body[self.pos..self.pos + length];
        self.pos += length;
        std::str::from_utf8(bytes).map_err(|_| invalid(offset, "a name is not UTF-8".into()))
    }

    /// The signed 32-bit length of the `…32Text` records.
    fn length32(&mut self, offset: usize) -> Result<usize> {
        let length = i32::from_le_bytes(self.array_of()?);
        usize::try_from(length).map_err(|_| invalid(offset, format!("negative length {length}")))
    }

    fn check_length(&self, offset: usize, length: usize) -> Result<()> {
        if length > self.limits.max_string_bytes {
            return Err((
                offset,
                BuildError::TooLong {
                    path: "text".into(),
                    size: length,
                },
            ));
        }
        Ok(())
    }

    fn utf8(&mut self, offset: usize, length: usize) -> Result<Cow<'a, str>> {
        self.check_length(offset, length)?;
        let body: &'a [u8] = self.body;
        self.bytes(length)?;
        let bytes = &body[self.pos - length..self.pos];
        match std::str::from_utf8(bytes) {
            Ok(text) => Ok(Cow::Borrowed(text)),
            Err(_) => Err(invalid(offset, "text is not UTF-8".into())),
        }
    }

    fn utf16(&mut self, offset: usize, length: usize) -> Result<String> {
        self.check_length(offset, length)?;
        if !length.is_multiple_of(2) {
            return Err(invalid(offset, format!("UTF-16 text of odd length {length}")));
        }
        let units: Vec<u16> = self
            .bytes(length)?
            .chunks_exact(2)
            .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
            .collect();
        String::from_utf16(&units).map_err(|_| invalid(offset, "text is not valid UTF-16".into()))
    }

    fn base64(&mut self, offset: usize, length: usize) -> Result<String> {
        // Base64 text is 4/3 the size of the bytes.
        self.check_length(offset, length.div_ceil(3) * 4)?;
        let bytes = self.bytes(length)?;
        Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    fn truncated(&self) -> Failure {
        invalid(self.body.len(), "the body ends in the middle of a record".into())
    }
}

fn invalid(offset: usize, reason: String) -> Failure {
    (offset, BuildError::Invalid(reason))
}

fn dictionary(offset: usize, record: u8) -> Failure {
    invalid(
        offset,
        format!("record 0x{record:02X} refers to a dictionary string, and these bodies have no dictionary"),
    )
}

/// The prefix of the `Prefix…_a..z` records.
fn letter(index: u8) -> &'static str {
    const LETTERS: &str = "abcdefghijklmnopqrstuvwxyz";
    &LETTERS[usize::from(index)..=usize::from(index)]
}

/// A float or double as XML Schema text; `finite` is Rust's shortest round-trip
/// form (`47.6062`, `1e300`), which XML Schema accepts.
fn float_text(value: f64, finite: String) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value == f64::INFINITY {
        "INF".into()
    } else if value == f64::NEG_INFINITY {
        "-INF".into()
    } else {
        finite
    }
}

/// `DecimalText`: the 16-byte `DECIMAL` layout, reserved(2) scale(1) sign(1)
/// hi32(4) lo64(8), as its exact text with `scale` fraction digits (`1.0000000000`).
fn decimal_text(bytes: &[u8; 16]) -> Option<String> {
    let scale = usize::from(bytes[2]);
    let negative = match bytes[3] {
        0 => false,
        0x80 => true,
        _ => return None,
    };
    if scale > 28 {
        return None;
    }
    let hi = u128::from(u32::from_le_bytes(bytes[4..8].try_into().ok()?));
    let lo = u128::from(u64::from_le_bytes(bytes[8..16].try_into().ok()?));
    let magnitude = (hi << 64) | lo;
    let digits = format!("{magnitude:0>width$}", width = scale + 1);
    let (whole, fraction) = digits.split_at(digits.len() - scale);
    let sign = if negative && magnitude != 0 { "-" } else { "" };
    Some(match fraction {
        "" => format!("{sign}{whole}"),
        _ => format!("{sign}{whole}.{fraction}"),
    })
}

/// `DateTimeText`: .NET ticks in the low 62 bits and the `DateTimeKind` in the top
/// two (0 Unspecified, 1 Utc, 2 Local), as the UTC instant in XML Schema form.
///
/// Utc ticks are the instant. Unspecified ticks name no zone, and are taken as UTC
/// (as the text XML reader does for a date without a zone). Local ticks are the
/// writer's local time, and the binary form does not record the writer's offset,
/// so they too are taken as UTC: the result is off by that offset, which nothing
/// in the body can correct. Dataverse writes UTC dates.
fn date_time_text(value: u64) -> Option<String> {
    let ticks = value & 0x3FFF_FFFF_FFFF_FFFF;
    let kind = value >> 62;
    if kind == 3 || ticks > MAX_TICKS {
        return None;
    }
    let unix_ticks = i64::try_from(ticks).ok()? - UNIX_EPOCH_TICKS;
    Some(DateTime { unix_ticks }.to_string())
}

/// `TimeSpanText`: ticks as an XML Schema duration, the way `XmlConvert` writes a
/// `TimeSpan` (`PT1H`, `-P1DT2H3M4.5S`, `PT0S`).
fn duration_text(ticks: i64) -> String {
    let sign = if ticks < 0 { "-" } else { "" };
    let ticks = ticks.unsigned_abs();
    let (days, rest) = (ticks / 864_000_000_000, ticks % 864_000_000_000);
    let (hours, rest) = (rest / 36_000_000_000, rest % 36_000_000_000);
    let (minutes, rest) = (rest / 600_000_000, rest % 600_000_000);
    let (seconds, fraction) = (rest / 10_000_000, rest % 10_000_000);
    let mut text = format!("{sign}P");
    if days > 0 {
        text += &format!("{days}D");
    }
    if hours > 0 || minutes > 0 || seconds > 0 || fraction > 0 || days == 0 {
        text.push('T');
        if hours > 0 {
            text += &format!("{hours}H");
        }
        if minutes > 0 {
            text += &format!("{minutes}M");
        }
        if seconds > 0 || fraction > 0 || (days == 0 && hours == 0 && minutes == 0) {
            text += &seconds.to_string();
            if fraction > 0 {
                text += format!(".{fraction:07}").trim_end_matches('0');
            }
            text.push('S');
        }
    }
    text
}

#[cfg(test)]
mod tests;

/// End-to-end tests of binary bodies built record by record.
#[cfg(test)]
mod body_tests;
