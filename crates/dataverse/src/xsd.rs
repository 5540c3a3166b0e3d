//! The text forms of XML Schema values, as DataContractSerializer writes them and the
//! [`mapper`](super::mapper) reads them: whole numbers, booleans, decimals, doubles,
//! GUIDs and `xs:dateTime`. XML Schema whitespace rules collapse the edges of every
//! non-string value, so each parser trims first.

use super::DecodeError;
use super::contract::{lowercase, shape};
use super::model::{CompactString, DateTime};
use compact_str::format_compact;

type Result<T> = std::result::Result<T, DecodeError>;

/// A whole number; a leading `+` is allowed.
pub(super) fn parse_int(text: &str) -> Result<i64> {
    let text = text.trim();
    text.strip_prefix('+')
        .unwrap_or(text)
        .parse()
        .map_err(|_| shape("a whole number", "other text"))
}

pub(super) fn parse_bool(text: &str) -> Result<bool> {
    match text.trim() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(shape("a boolean", "other text")),
    }
}

/// `xs:decimal`: kept as its exact text once checked (`1.0000000000` stays so).
pub(super) fn parse_decimal(text: &str) -> Result<CompactString> {
    let text = text.trim();
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !all_digits(whole) || !all_digits(fraction) {
        return Err(shape("a decimal number", "other text"));
    }
    // A JSON number has no leading `+` and needs a digit before the point.
    let sign = if text.starts_with('-') { "-" } else { "" };
    let whole = if whole.is_empty() { "0" } else { whole };
    Ok(match fraction {
        "" => format_compact!("{sign}{whole}"),
        _ => format_compact!("{sign}{whole}.{fraction}"),
    })
}

/// `xs:double` / `xs:float`, with XML Schema's spelling of the special values.
pub(super) fn parse_double(text: &str) -> Result<f64> {
    match text.trim() {
        "INF" => Ok(f64::INFINITY),
        "-INF" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        other if other.bytes().all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)) => other
            .parse()
            .map_err(|_| shape("a floating-point number", "other text")),
        _ => Err(shape("a floating-point number", "other text")),
    }
}

/// A GUID in its 36-character form, lowercase.
pub(super) fn parse_guid(text: &str) -> Result<CompactString> {
    let text = text.trim();
    let valid = text.len() == 36
        && text.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
    if !valid {
        return Err(shape("a GUID", "other text"));
    }
    Ok(lowercase(text.into()))
}

/// `xs:dateTime` as DataContractSerializer writes it: `2017-09-26T00:04:07Z`, with
/// an optional fraction of up to 7 digits and a `Z`, an offset or no zone. An
/// offset is subtracted to give UTC; no zone (`DateTimeKind.Unspecified`) is taken
/// as UTC, since the instant cannot be known otherwise.
pub(super) fn parse_date_time(text: &str) -> Result<DateTime> {
    parse_date_time_text(text.trim()).ok_or_else(|| shape("a date and time", "other text"))
}

fn parse_date_time_text(text: &str) -> Option<DateTime> {
    let bytes = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        part.bytes().all(|b| b.is_ascii_digit()).then(|| part.parse().ok())?
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if bytes.get(4) != Some(&b'-') || bytes.get(7) != Some(&b'-') || bytes.get(10) != Some(&b'T') {
        return None;
    }
    if bytes.get(13) != Some(&b':') || bytes.get(16) != Some(&b':') {
        return None;
    }
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 59 {
        return None;
    }
    let mut rest = &text[19..];
    let mut fraction_ticks = 0;
    if let Some(after_point) = rest.strip_prefix('.') {
        let digits = after_point.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        // Ticks are 100 ns: seven digits; further digits cannot be represented.
        let kept = &after_point[..digits.min(7)];
        fraction_ticks = kept.parse::<i64>().ok()? * 10_i64.pow(7 - kept.len() as u32);
        rest = &after_point[digits..];
    }
    let offset_minutes = match rest {
        "" | "Z" => 0,
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let zone = &rest[1..];
            if zone.len() != 5 || zone.as_bytes()[2] != b':' {
                return None;
            }
            let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit()).then(|| s.parse::<i64>().ok())?;
            let (h, m) = (digits(&zone[..2])?, digits(&zone[3..])?);
            if h > 14 || m > 59 {
                return None;
            }
            sign * (h * 60 + m)
        }
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some(DateTime {
        unix_ticks: seconds * 10_000_000 + fraction_ticks,
    })
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Howard Hinnant's `days_from_civil`: days since 1970-01-01 of a proleptic
/// Gregorian date (the inverse of `model::civil_from_days`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instant(text: &str) -> Option<String> {
        parse_date_time_text(text).map(|dt| dt.to_string())
    }

    #[test]
    fn date_times_become_utc_instants() {
        assert_eq!(instant("2017-09-26T00:04:07Z").as_deref(), Some("2017-09-26T00:04:07Z"));
        assert_eq!(instant("2017-09-26T00:04:07").as_deref(), Some("2017-09-26T00:04:07Z"));
        assert_eq!(
            instant("2017-09-26T00:04:07.1234567-07:00").as_deref(),
            Some("2017-09-26T07:04:07.1234567Z")
        );
        assert_eq!(
            instant("2000-02-29T23:59:59.5+01:00").as_deref(),
            Some("2000-02-29T22:59:59.5Z")
        );
        assert_eq!(instant("0001-01-01T00:00:00").as_deref(), Some("0001-01-01T00:00:00Z"));
        for bad in [
            "2017-09-26",
            "2017-09-26T00:04",
            "2017-13-01T00:00:00Z",
            "2001-02-29T00:00:00Z",
            "2017-09-26T24:00:00Z",
            "2017-09-26T00:04:07.Z",
            "2017-09-26T00:04:07+7:00",
            "2017-09-26T00:04:07Zjunk",
            "+017-09-26T00:04:07Z",
            "２017-09-26T00:04:07Z",
        ] {
            assert_eq!(instant(bad), None, "{bad}");
        }
    }

    #[test]
    fn decimals_keep_their_digits() {
        assert_eq!(parse_decimal("1.0000000000").unwrap(), "1.0000000000");
        assert_eq!(parse_decimal(" -.5 ").unwrap(), "-0.5");
        assert_eq!(parse_decimal("+10").unwrap(), "10");
        for bad in ["", ".", "1e5", "1.2.3", "--1", "NaN"] {
            assert!(parse_decimal(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn civil_days_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1, 1, 1), -719_162);
    }
}
