//! Command-line values with units: sizes (`8MiB`, `512K`, `1048576`) and
//! durations (`5s`, `250ms`, `2m`), parsed for clap with errors that repeat
//! the value and say what would be accepted. It owns parsing and display
//! only; which values make sense is decided where they are used.

use std::time::Duration;

/// Parses a size: a number of bytes, optionally followed by `K`/`KiB`,
/// `M`/`MiB` or `G`/`GiB` (powers of 1024, any case).
pub fn parse_size(text: &str) -> Result<usize, String> {
    if text.starts_with('-') {
        return Err(format!("size {text:?} is negative: give 0 or more bytes"));
    }
    let bad = || {
        format!(
            "invalid size {text:?}: give a number of bytes, optionally with K, M or G (KiB, MiB, GiB: powers of 1024), e.g. 8MiB"
        )
    };
    let (number, unit) = number_and_unit(text).ok_or_else(bad)?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        _ => return Err(bad()),
    };
    number
        .checked_mul(1 << shift)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| format!("size {text:?} is too large"))
}

/// Parses a size of at least one byte (see [`parse_size`]).
pub fn parse_nonzero_size(text: &str) -> Result<usize, String> {
    match parse_size(text)? {
        0 => Err(format!("size {text:?} is 0: give at least 1 byte")),
        n => Ok(n),
    }
}

/// Parses a duration: a whole number with `ms`, `s`, `m` or `h`; a bare
/// number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if text.starts_with('-') {
        return Err(format!("duration {text:?} is negative: give 0 or more"));
    }
    let bad = || {
        format!(
            "invalid duration {text:?}: give a whole number with ms, s, m or h, e.g. 5s or 250ms (a bare number is seconds)"
        )
    };
    let (number, unit) = number_and_unit(text).ok_or_else(bad)?;
    let millis_per = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        _ => return Err(bad()),
    };
    number
        .checked_mul(millis_per)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("duration {text:?} is too long"))
}

/// The leading whole number of `text` and the unit after it, both trimmed;
/// `None` without digits (or past `u64`).
fn number_and_unit(text: &str) -> Option<(u64, &str)> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    Some((digits.parse().ok()?, unit.trim()))
}

/// A size for messages: `8 MiB` when it is a whole number of MiB (or KiB),
/// bytes otherwise.
pub fn show_size(bytes: usize) -> String {
    const KIB: usize = 1 << 10;
    const MIB: usize = 1 << 20;
    const GIB: usize = 1 << 30;
    match bytes {
        0 => "0 bytes".to_owned(),
        b if b.is_multiple_of(GIB) => format!("{} GiB", b / GIB),
        b if b.is_multiple_of(MIB) => format!("{} MiB", b / MIB),
        b if b.is_multiple_of(KIB) => format!("{} KiB", b / KIB),
        b if b >= MIB => format!("{:.2} MiB ({b} bytes)", b as f64 / MIB as f64),
        b if b >= KIB => format!("{:.2} KiB ({b} bytes)", b as f64 / KIB as f64),
        b => format!("{b} bytes"),
    }
}

/// A duration for messages: `5s`, `250ms`.
pub fn show_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_units_sizes_and_durations() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("8MiB"), Ok(8 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("2 G"), Ok(2 << 30));
        assert!(parse_size("3 MB").unwrap_err().contains("\"3 MB\""));
        assert!(parse_size("-1").is_err());
        assert!(
            parse_size("99999999999G")
                .unwrap_err()
                .contains("too large")
        );
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("1.5s").is_err());
        assert_eq!(show_size(8 << 20), "8 MiB");
        assert_eq!(show_size(4_194_308), "4.00 MiB (4194308 bytes)");
        assert_eq!(show_size(1_500), "1.46 KiB (1500 bytes)");
        assert_eq!(show_size(1_000), "1000 bytes");
        assert_eq!(show_duration(Duration::from_millis(1500)), "1500ms");
    }
}
