//! `logs --since TIME`: the times exec.log records carry (RFC 3339 UTC with
//! milliseconds, as [`crate::shell::exec_log::rfc3339_millis`] writes them) and the
//! ones a user types, both as milliseconds since the Unix epoch. It owns
//! parsing only.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::cli::units::parse_duration;

/// A `--since` bound: records at or after this instant are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Since {
    /// Milliseconds since the Unix epoch (UTC).
    pub millis: i64,
}

/// Parses `--since`: `2026-11-25T12:00:00Z` (RFC 3339: fractions and an
/// offset such as `+02:00` allowed, a space for the `T` too; no offset means
/// UTC, as exec.log stores it), `2026-11-25T12:00`, `2026-11-25`, or a time
/// ago: `90s`, `10m`, `2h`, `3d`.
pub fn parse_since(text: &str) -> Result<Since, String> {
    let trimmed = text.trim();
    if let Some(millis) = parse_timestamp(trimmed) {
        return Ok(Since { millis });
    }
    let ago_ms = match trimmed
        .strip_suffix('d')
        .and_then(|d| d.parse::<u64>().ok())
    {
        Some(days) => days.checked_mul(86_400_000),
        None => parse_duration(trimmed)
            .ok()
            .and_then(|d| u64::try_from(d.as_millis()).ok()),
    };
    let Some(ago_ms) = ago_ms.and_then(|ms| i64::try_from(ms).ok()) else {
        return Err(format!(
            "invalid time {text:?}: give 2026-11-25T12:00:00Z (RFC 3339; UTC unless an offset is given), \
             2026-11-25, or a time ago such as 90s, 10m, 2h or 3d"
        ));
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    Ok(Since {
        millis: now.saturating_sub(ago_ms),
    })
}

/// Milliseconds since the epoch of an RFC 3339 timestamp (or a bare date, or
/// a time without seconds); `None` if it is not one.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let num = |at: usize, len: usize| -> Option<i64> {
        let s = text.get(at..at + len)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') || !(1..=12).contains(&month) {
        return None;
    }
    if day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let date_ms = days_from_civil(year, month, day) * 86_400_000;
    if b.len() == 10 {
        return Some(date_ms);
    }
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) || b.get(13) != Some(&b':') {
        return None;
    }
    let (hour, minute) = (num(11, 2)?, num(14, 2)?);
    let mut at = 16;
    let mut second = 0;
    if b.get(at) == Some(&b':') {
        second = num(17, 2)?;
        at = 19;
    }
    let mut millis = 0;
    if b.get(at) == Some(&b'.') {
        let digits = text[at + 1..]
            .bytes()
            .take_while(u8::is_ascii_digit)
            .count();
        if digits == 0 {
            return None;
        }
        let frac = &text[at + 1..at + 1 + digits.min(3)];
        millis = frac.parse::<i64>().ok()? * 10_i64.pow(3 - frac.len() as u32);
        at += 1 + digits;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let offset_ms = parse_offset(&text[at..])?;
    Some(date_ms + ((hour * 60 + minute) * 60 + second) * 1000 + millis - offset_ms)
}

/// `Z`, `+HH:MM`, `-HH:MM` or nothing (UTC), in milliseconds east of UTC.
fn parse_offset(zone: &str) -> Option<i64> {
    match zone {
        "" | "Z" | "z" => Some(0),
        _ => {
            let sign = match zone.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (h, m) = zone[1..].split_once(':')?;
            if h.len() != 2 || m.len() != 2 {
                return None;
            }
            let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
            (h <= 23 && m <= 59).then_some(sign * (h * 60 + m) * 60_000)
        }
    }
}

pub(crate) fn days_in_month(year: i64, month: i64) -> i64 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date: the inverse of the
/// calendar arithmetic in `exec_log` (eras of 400 years, March-based years).
pub(crate) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12; // March = 0
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shell::exec_log::rfc3339_millis;
    use std::time::Duration;

    #[test]
    fn cli_logs_since_round_trips_what_exec_log_writes() {
        for ms in [0u64, 951_782_400_999, 1_704_067_199_005, 1_795_608_000_123] {
            let t = rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms));
            assert_eq!(parse_timestamp(&t), Some(ms as i64), "{t}");
        }
        let noon = parse_timestamp("2026-11-25T12:00:00Z").unwrap();
        assert_eq!(parse_timestamp("2026-11-25T14:00:00+02:00"), Some(noon));
        assert_eq!(parse_timestamp("2026-11-25 12:00"), Some(noon));
        assert_eq!(parse_timestamp("2026-11-25"), Some(noon - 12 * 3_600_000));
        assert_eq!(parse_timestamp("2026-11-25T12:00:00.5Z"), Some(noon + 500));
        for bad in [
            "2026-13-01",
            "2026-02-30",
            "2026-11-25T25:00",
            "yesterday",
            "2026-11-25T12:00:00+2",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
        let ago = parse_since("10m").unwrap().millis;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        assert!((now - 600_000 - ago).abs() < 5_000);
        assert!(parse_since("3d").is_ok());
        assert!(parse_since("soon").unwrap_err().contains("\"soon\""));
    }
}
