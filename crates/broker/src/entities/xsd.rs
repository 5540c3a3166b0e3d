//! The XML Schema value types entity descriptions are written in: `xs:duration` as .NET writes a
//! `TimeSpan` (`PT30S`, `P14D`, `P10675199DT2H48M5.4775807S`), `xs:dateTime` in UTC, and
//! `xs:boolean`. Pure functions, so the rules are tested on their own.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds in a day.
const DAY: u64 = 86_400;

/// .NET's `TimeSpan.MaxValue`, which Service Bus writes for "never" (a default time to live or
/// auto-delete that is not set), in whole days. A duration of at least this many days is "never".
const NEVER_DAYS: u64 = 10_675_199;

/// What .NET's `TimeSpan.MaxValue` reads as: "never".
pub const NEVER: &str = "P10675199DT2H48M5.4775807S";

/// .NET's `DateTime.MinValue`, which Service Bus writes for a time that is not known.
pub const UNKNOWN_TIME: &str = "0001-01-01T00:00:00Z";

/// Parses an `xs:duration` of days, hours, minutes and (fractional) seconds: what .NET and the
/// Azure SDKs write. Years and months are refused (they have no fixed length), as are negative
/// durations. Returns `None` for "never" (see [`NEVER`]).
pub fn parse_duration(text: &str) -> Result<Option<Duration>, String> {
    let malformed = || format!("`{text}` is not an ISO 8601 duration such as PT30S, PT5M or P14D");
    let rest = text.trim().strip_prefix('P').ok_or_else(malformed)?;
    let (date, time) = match rest.split_once('T') {
        Some((date, time)) if !time.is_empty() => (date, time),
        Some(_) => return Err(malformed()),
        None => (rest, ""),
    };
    if date.is_empty() && time.is_empty() {
        return Err(malformed());
    }
    let mut seconds: u64 = 0;
    let mut nanos: u32 = 0;
    for (part, units) in [(date, "WD"), (time, "HMS")] {
        let mut number = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() || (c == '.' && units == "HMS") {
                number.push(c);
                continue;
            }
            if !units.contains(c) || number.is_empty() {
                return Err(if "YM".contains(c) && units == "WD" {
                    format!("`{text}`: durations in years or months are not supported; give days instead")
                } else {
                    malformed()
                });
            }
            let (whole, fraction) = number.split_once('.').unwrap_or((&number, ""));
            if !fraction.is_empty() && c != 'S' {
                return Err(malformed());
            }
            let whole: u64 = whole.parse().map_err(|_| malformed())?;
            let unit = match c {
                'W' => 7 * DAY,
                'D' => DAY,
                'H' => 3_600,
                'M' => 60,
                _ => 1,
            };
            seconds = seconds.saturating_add(whole.saturating_mul(unit));
            if !fraction.is_empty() {
                let digits: String = fraction.chars().chain(std::iter::repeat('0')).take(9).collect();
                nanos = digits.parse().map_err(|_| malformed())?;
            }
            number.clear();
        }
        if !number.is_empty() {
            return Err(malformed());
        }
    }
    if seconds >= NEVER_DAYS * DAY {
        return Ok(None);
    }
    Ok(Some(Duration::new(seconds, nanos)))
}

/// Writes `duration` as .NET writes a `TimeSpan`: `PT30S`, `PT1M30S`, `P1DT2H`, `PT0.5S`;
/// `None` is [`NEVER`].
pub fn format_duration(duration: Option<Duration>) -> String {
    let Some(duration) = duration else {
        return NEVER.to_owned();
    };
    let total = duration.as_secs();
    let (days, hours, minutes, seconds) = (total / DAY, total % DAY / 3_600, total % 3_600 / 60, total % 60);
    // .NET keeps 100 ns ticks: seven fractional digits at most, trailing zeros dropped.
    let ticks = duration.subsec_nanos() / 100;
    let mut text = String::from("P");
    if days > 0 {
        text.push_str(&format!("{days}D"));
    }
    if hours > 0 || minutes > 0 || seconds > 0 || ticks > 0 || days == 0 {
        text.push('T');
        if hours > 0 {
            text.push_str(&format!("{hours}H"));
        }
        if minutes > 0 {
            text.push_str(&format!("{minutes}M"));
        }
        if seconds > 0 || ticks > 0 || (hours == 0 && minutes == 0) {
            text.push_str(&seconds.to_string());
            if ticks > 0 {
                text.push_str(format!(".{ticks:07}").trim_end_matches('0'));
            }
            text.push('S');
        }
    }
    text
}

/// Writes `time` as an `xs:dateTime` in UTC with milliseconds: `2026-12-06T08:02:04.123Z`;
/// `None` is [`UNKNOWN_TIME`].
pub fn format_time(time: Option<SystemTime>) -> String {
    let Some(time) = time else {
        return UNKNOWN_TIME.to_owned();
    };
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let days = i64::try_from(secs / DAY).unwrap_or(i64::MAX);
    let (year, month, day) = civil_from_days(days);
    let in_day = secs % DAY;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600,
        in_day % 3_600 / 60,
        in_day % 60,
        since.subsec_millis()
    )
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 → (year, month, day) in the
/// proleptic Gregorian calendar. Ten lines, so no date crate for it.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Parses an `xs:boolean` (`true`, `false`, `1`, `0`).
pub fn parse_bool(text: &str) -> Result<bool, String> {
    match text.trim() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(format!("`{other}` is not a boolean (true or false)")),
    }
}
