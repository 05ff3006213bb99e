//! `logs --local`: the offset from UTC of the local time zone at an instant,
//! as `TZ` says, without a C library: `TZ` unset reads `/etc/localtime`; an
//! empty `TZ` is UTC; otherwise `TZ` (a leading `:` dropped) names a TZif
//! file (absolute, or under `$TZDIR` or `/usr/share/zoneinfo`, as
//! `Europe/Paris`), or failing that is a POSIX rule such as
//! `CET-1CEST,M3.5.0,M10.5.0/3`; anything else is UTC. A TZif file's own
//! rule (its footer) covers the instants after its last transition.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use super::since::{days_from_civil, days_in_month};

/// A time zone: the offsets it had and the rule it follows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Zone {
    /// (instant in seconds since the epoch, offset in seconds east of UTC
    /// from then on), in order.
    transitions: Vec<(i64, i32)>,
    /// The offset before the first transition (or always, without any).
    initial: i32,
    /// The rule after the last transition.
    rule: Option<Rule>,
}

impl Zone {
    /// UTC.
    pub fn utc() -> Zone {
        Zone::default()
    }

    /// The zone `TZ` (its value, or `None` when unset) names; UTC when it
    /// names none this can read.
    pub fn from_tz(tz: Option<&OsStr>) -> Zone {
        let Some(tz) = tz else {
            return Zone::from_file(Path::new("/etc/localtime")).unwrap_or_default();
        };
        let Some(tz) = tz.to_str() else {
            return Zone::utc();
        };
        let name = tz.strip_prefix(':').unwrap_or(tz);
        if name.is_empty() {
            return Zone::utc();
        }
        let path = if name.starts_with('/') {
            PathBuf::from(name)
        } else if name.split('/').any(|part| part == "..") {
            return Zone::utc();
        } else {
            let dir = std::env::var_os("TZDIR").unwrap_or_else(|| "/usr/share/zoneinfo".into());
            Path::new(&dir).join(name)
        };
        if let Some(zone) = Zone::from_file(&path) {
            return zone;
        }
        match Rule::parse(name) {
            Some(rule) => Zone {
                transitions: Vec::new(),
                initial: rule.std,
                rule: Some(rule),
            },
            None => Zone::utc(),
        }
    }

    /// The zone of a TZif file (RFC 8536), `None` if it is not one.
    pub fn from_file(path: &Path) -> Option<Zone> {
        let data = std::fs::read(path).ok()?;
        parse_tzif(&data)
    }

    /// The offset in seconds east of UTC at `secs` since the epoch.
    pub fn offset_at(&self, secs: i64) -> i32 {
        match self.transitions.partition_point(|(at, _)| *at <= secs) {
            0 => match (&self.rule, self.transitions.is_empty()) {
                (Some(rule), true) => rule.offset_at(secs),
                _ => self.initial,
            },
            n if n == self.transitions.len() && self.rule.is_some() => self
                .rule
                .as_ref()
                .map_or(self.transitions[n - 1].1, |r| r.offset_at(secs)),
            n => self.transitions[n - 1].1,
        }
    }
}

/// A TZif file's transitions, offsets and footer rule.
fn parse_tzif(data: &[u8]) -> Option<Zone> {
    let header = |at: usize| -> Option<[usize; 6]> {
        if data.get(at..at + 4)? != b"TZif" {
            return None;
        }
        let mut counts = [0usize; 6];
        for (i, c) in counts.iter_mut().enumerate() {
            let b = data.get(at + 20 + 4 * i..at + 24 + 4 * i)?;
            *c = u32::from_be_bytes(b.try_into().ok()?) as usize;
        }
        Some(counts)
    };
    // isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt
    let v1 = header(0)?;
    let block = |c: [usize; 6], time: usize| {
        c[3] * time + c[3] + c[4] * 6 + c[5] + c[2] * (time + 4) + c[1] + c[0]
    };
    let (at, counts, time) = match data.get(4) {
        Some(b'2'..=b'9') => {
            let at = 44 + block(v1, 4);
            (at, header(at)?, 8)
        }
        _ => (0, v1, 4),
    };
    let [_, _, leaps, times, types, chars] = counts;
    let body = at + 44;
    let instant = |i: usize| -> Option<i64> {
        let b = data.get(body + i * time..body + (i + 1) * time)?;
        Some(match time {
            8 => i64::from_be_bytes(b.try_into().ok()?),
            _ => i64::from(i32::from_be_bytes(b.try_into().ok()?)),
        })
    };
    let indices = body + times * time;
    let infos = indices + times;
    let offset = |t: usize| -> Option<i32> {
        let b = data.get(infos + t * 6..infos + t * 6 + 4)?;
        Some(i32::from_be_bytes(b.try_into().ok()?))
    };
    if types == 0 {
        return None;
    }
    let mut transitions = Vec::with_capacity(times);
    for i in 0..times {
        let t = usize::from(*data.get(indices + i)?);
        if t >= types {
            return None;
        }
        transitions.push((instant(i)?, offset(t)?));
    }
    let end = infos + types * 6 + chars + leaps * (time + 4) + counts[1] + counts[0];
    let rule = match time {
        8 => data
            .get(end..)
            .and_then(|rest| rest.strip_prefix(b"\n"))
            .and_then(|rest| rest.split(|&b| b == b'\n').next())
            .and_then(|footer| std::str::from_utf8(footer).ok())
            .and_then(Rule::parse),
        _ => None,
    };
    Some(Zone {
        transitions,
        initial: offset(0)?,
        rule,
    })
}

/// A POSIX `TZ` rule: standard offset, and daylight saving time's offset
/// and when it starts and ends, if it has any.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    /// Offsets in seconds east of UTC.
    std: i32,
    dst: Option<(i32, When, When)>,
}

/// A day of the year and a time of that day (seconds, local).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct When {
    day: Day,
    secs: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Day {
    /// `Jn`: 1 to 365, February 29 never counted.
    Julian(i64),
    /// `n`: 0 to 365, February 29 counted.
    Zero(i64),
    /// `Mm.w.d`: weekday d (0 Sunday) of week w (5: the last) of month m.
    Month(i64, i64, i64),
}

impl Rule {
    /// `std offset [dst [offset] [,start[/time],end[/time]]]`.
    fn parse(text: &str) -> Option<Rule> {
        let mut p = Parser(text.as_bytes());
        p.name()?;
        let std = -p.offset()?;
        if p.0.is_empty() {
            return Some(Rule { std, dst: None });
        }
        p.name()?;
        let dst = match p.0.first() {
            Some(b',') | None => std + 3600,
            Some(_) => -p.offset()?,
        };
        let (start, end) = if p.0.is_empty() {
            // The rule glibc assumes: the United States' since 2007.
            (
                When {
                    day: Day::Month(3, 2, 0),
                    secs: 7200,
                },
                When {
                    day: Day::Month(11, 1, 0),
                    secs: 7200,
                },
            )
        } else {
            p.eat(b',')?;
            let start = p.when()?;
            p.eat(b',')?;
            (start, p.when()?)
        };
        p.0.is_empty().then_some(Rule {
            std,
            dst: Some((dst, start, end)),
        })
    }

    fn offset_at(&self, secs: i64) -> i32 {
        let Some((dst, start, end)) = self.dst else {
            return self.std;
        };
        let local = secs + i64::from(self.std);
        let (year, _, _) = crate::shell::exec_log::civil_from_days(local.div_euclid(86_400));
        let begins = start.local(year) - i64::from(self.std);
        let ends = end.local(year) - i64::from(dst);
        let in_dst = if begins <= ends {
            secs >= begins && secs < ends
        } else {
            secs >= begins || secs < ends
        };
        if in_dst { dst } else { self.std }
    }
}

impl When {
    /// Seconds since the epoch of this moment of `year`, in local time.
    fn local(self, year: i64) -> i64 {
        let leap = days_in_month(year, 2) == 29;
        let jan1 = days_from_civil(year, 1, 1);
        let day = match self.day {
            Day::Julian(n) => jan1 + n - 1 + i64::from(leap && n >= 60),
            Day::Zero(n) => jan1 + n,
            Day::Month(m, w, d) => {
                let first = days_from_civil(year, m, 1);
                // 1970-01-01 was a Thursday (4).
                let weekday = (first + 4).rem_euclid(7);
                let mut date = 1 + (d - weekday).rem_euclid(7) + 7 * (w - 1);
                while date > days_in_month(year, m) {
                    date -= 7;
                }
                first + date - 1
            }
        };
        day * 86_400 + self.secs
    }
}

/// Reads a POSIX `TZ` string.
struct Parser<'a>(&'a [u8]);

impl Parser<'_> {
    fn eat(&mut self, b: u8) -> Option<()> {
        let rest = self.0.strip_prefix(&[b])?;
        self.0 = rest;
        Some(())
    }

    /// A zone name: `<...>`, or three or more letters.
    fn name(&mut self) -> Option<()> {
        if self.eat(b'<').is_some() {
            let end = self.0.iter().position(|&b| b == b'>')?;
            self.0 = &self.0[end + 1..];
            return Some(());
        }
        let n = self
            .0
            .iter()
            .take_while(|b| b.is_ascii_alphabetic())
            .count();
        (n >= 3).then(|| self.0 = &self.0[n..])
    }

    fn number(&mut self) -> Option<i64> {
        let n = self.0.iter().take_while(|b| b.is_ascii_digit()).count();
        let value = std::str::from_utf8(&self.0[..n]).ok()?.parse().ok()?;
        self.0 = &self.0[n..];
        Some(value)
    }

    /// `[+-]hh[:mm[:ss]]` in seconds.
    fn offset(&mut self) -> Option<i32> {
        let sign = match self.0.first() {
            Some(b'-') => -1,
            _ => 1,
        };
        if matches!(self.0.first(), Some(b'+' | b'-')) {
            self.0 = &self.0[1..];
        }
        let mut secs = self.number()? * 3600;
        for scale in [60, 1] {
            if self.eat(b':').is_none() {
                break;
            }
            secs += self.number()? * scale;
        }
        i32::try_from(sign * secs).ok()
    }

    /// `Jn`, `n` or `Mm.w.d`, then `/time` (02:00 unless given).
    fn when(&mut self) -> Option<When> {
        let day = if self.eat(b'J').is_some() {
            Day::Julian(self.number().filter(|n| (1..=365).contains(n))?)
        } else if self.eat(b'M').is_some() {
            let m = self.number().filter(|m| (1..=12).contains(m))?;
            self.eat(b'.')?;
            let w = self.number().filter(|w| (1..=5).contains(w))?;
            self.eat(b'.')?;
            let d = self.number().filter(|d| (0..=6).contains(d))?;
            Day::Month(m, w, d)
        } else {
            Day::Zero(self.number().filter(|n| (0..=365).contains(n))?)
        };
        let secs = match self.eat(b'/') {
            Some(()) => i64::from(self.offset()?),
            None => 7200,
        };
        Some(When { day, secs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::logs::parse_timestamp;

    fn at(t: &str) -> i64 {
        parse_timestamp(t).unwrap() / 1000
    }

    #[test]
    fn cli_logs_zone_posix_rules() {
        let paris = Rule::parse("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
        // 2026: summer time from March 29 01:00 UTC to October 25 01:00 UTC.
        assert_eq!(paris.offset_at(at("2026-03-29T00:59:59Z")), 3600);
        assert_eq!(paris.offset_at(at("2026-03-29T01:00:00Z")), 7200);
        assert_eq!(paris.offset_at(at("2026-10-25T00:59:59Z")), 7200);
        assert_eq!(paris.offset_at(at("2026-10-25T01:00:00Z")), 3600);
        // Southern hemisphere: summer across the new year.
        let sydney = Rule::parse("AEST-10AEDT,M10.1.0,M4.1.0/3").unwrap();
        assert_eq!(sydney.offset_at(at("2026-01-15T00:00:00Z")), 11 * 3600);
        assert_eq!(sydney.offset_at(at("2026-07-15T00:00:00Z")), 10 * 3600);
        let ny = Rule::parse("EST5EDT").unwrap();
        assert_eq!(ny.offset_at(at("2026-07-01T12:00:00Z")), -4 * 3600);
        assert_eq!(ny.offset_at(at("2026-12-01T12:00:00Z")), -5 * 3600);
        assert_eq!(Rule::parse("<+0530>-5:30").unwrap().std, 5 * 3600 + 1800);
        assert_eq!(Rule::parse("UTC0").unwrap().std, 0);
        assert!(Rule::parse("nonsense!").is_none());
        assert!(Rule::parse("CET-1CEST,M13.5.0,M10.5.0").is_none());
    }
}
