//! The value grammars every flag shares: one for durations, one for sizes.

use std::time::Duration;

/// A duration: `0`, `250ms`, `5s`, `1.5s`, `2m`, `1h`, `100us`; a bare
/// number means seconds, like most server timeouts.
///
/// Hand-written: humantime, the usual crate, takes neither bare seconds nor
/// decimal values (`1.5s`), which every flag here documents.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {text:?}: expected e.g. 30s, 250ms or 2m"))?;
    let secs = match unit.trim() {
        "" | "s" | "sec" | "secs" => n,
        "ms" => n / 1e3,
        "us" | "µs" => n / 1e6,
        "m" | "min" | "mins" => n * 60.0,
        "h" => n * 3600.0,
        _ => {
            return Err(format!(
                "invalid duration unit in {text:?}: use us, ms, s, m or h"
            ));
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("invalid duration {text:?}"))
}

/// A duration that must be more than zero.
pub fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d.is_zero() {
        return Err(format!("{text:?}: a duration must be positive"));
    }
    Ok(d)
}

/// A byte size: `10485760`, `512KiB`, `10MiB`, `1GiB` (powers of 1024),
/// `10MB`, `10M`, `1.5GB` (powers of 1000), by the `parse-size` crate.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let n = parse_size::parse_size(text.trim()).map_err(|e| {
        format!("invalid size {text:?} ({e}): expected e.g. 10MiB, 512KiB or 1048576")
    })?;
    usize::try_from(n).map_err(|_| format!("size {text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("10MiB").unwrap(), 10 << 20);
        assert_eq!(parse_size("512 KiB").unwrap(), 512 << 10);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert_eq!(parse_size("2MB").unwrap(), 2_000_000);
        assert!(parse_size("ten").is_err());
        assert!(parse_size("1XB").is_err());
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1.5m").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3 weeks").is_err());
        assert!(parse_positive_duration("0s").is_err());
        assert_eq!(
            parse_positive_duration("10").unwrap(),
            Duration::from_secs(10)
        );
    }
}
