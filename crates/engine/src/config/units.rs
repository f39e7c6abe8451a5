//! Human-friendly durations ("90s", "5m") and byte sizes ("16MiB") as written in the config file.

use std::time::Duration;

/// Parses `500ms`, `30s`, `5m`, `2h`, `1d`, combinations such as `1h30m` or `1h 30m`
/// (humantime's grammar), fractions such as `1.5h`; a bare number means seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let bare = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if !bare && let Ok(d) = humantime::parse_duration(text) {
        return within_a_century(text, d);
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration; write e.g. \"30s\", \"5m\" or \"2h\""))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" | "sec" | "secs" => value,
        "m" | "min" | "mins" => value * 60.0,
        "h" | "hour" | "hours" => value * 3600.0,
        "d" | "day" | "days" => value * 86_400.0,
        other => {
            return Err(format!(
                "`{text}` has an unknown unit `{other}`; use ms, s, m, h or d"
            ));
        }
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("`{text}` is not a valid duration"));
    }
    // Beyond a century is a typo, and `Duration::from_secs_f64` panics near 1.8e19 s (audit L10).
    if seconds > 100.0 * 365.25 * 86_400.0 {
        return Err(format!(
            "`{text}` is longer than 100 years; use a duration such as \"30s\", \"5m\" or \"2h\""
        ));
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("`{text}` is not a valid duration"))
}

fn within_a_century(text: &str, d: Duration) -> Result<Duration, String> {
    if d > Duration::from_secs(3_155_760_000) {
        return Err(format!(
            "`{text}` is longer than 100 years; use a duration such as \"30s\", \"5m\" or \"2h\""
        ));
    }
    Ok(d)
}

/// Parses `16MiB`, `8 MiB`, `5GiB`, `64KiB`, `1.5GiB` or a plain number of bytes. Decimal units
/// (`MB`, `GB`) are accepted and mean powers of 1000, as they do everywhere else.
pub fn parse_byte_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if text.contains('.') {
        // Fractions: bytesize's grammar (`1.5GiB`, `0.5 MiB`), whole bytes only.
        return text
            .parse::<bytesize::ByteSize>()
            .map(|b| b.as_u64())
            .map_err(|_| format!("`{text}` is not a size; write e.g. \"16MiB\" or \"1.5GiB\""));
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size; write e.g. \"16MiB\" or \"64MiB\""))?;
    let multiplier: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "`{text}` has an unknown unit `{other}`; use B, KiB, MiB or GiB"
            ));
        }
    };
    value
        .checked_mul(multiplier)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// Formats a byte count for people: `3.0 MiB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("12"), Ok(Duration::from_secs(12)));
        // Issue 8: combinations and fractions.
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(
            parse_duration("1m 30s 500ms"),
            Ok(Duration::from_millis(90_500))
        );
        assert!(parse_duration("5 fortnights").is_err());
        assert!(parse_duration("soon").is_err());
        // Audit L10: absurd values are refused, not a panic.
        assert!(parse_duration("99999999999999999999").is_err());
        assert!(parse_duration("100000000d").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_byte_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_byte_size("5 GiB"), Ok(5 << 30));
        assert_eq!(parse_byte_size("1000"), Ok(1000));
        assert_eq!(parse_byte_size("8MB"), Ok(8_000_000));
        // Issue 8: fractions.
        assert_eq!(parse_byte_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_byte_size("0.5 MiB"), Ok(512 << 10));
        assert!(parse_byte_size("1.5 parsecs").is_err());
        assert!(parse_byte_size("16 mebibytes").is_err());
        assert!(parse_byte_size("-1MiB").is_err());
        assert_eq!(format_bytes(3 << 20), "3.0 MiB");
        assert_eq!(format_bytes(12), "12 B");
    }
}
