//! Compile-time duration literals: `"250us"`, `"100ms"`, `"5s"`, `"1.5s"`, `"2m"`, `"1h"`.

use std::time::Duration;

use proc_macro2::TokenStream;
use quote::quote;

const UNITS: &str = "ns, us, ms, s, m or h";

/// Parses `<number><unit>`; the number may have a fractional part as long as the result is
/// a whole number of nanoseconds.
pub(crate) fn parse(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("missing unit (one of {UNITS})"))?;
    let (number, unit) = s.split_at(split);
    let per_unit: u128 = match unit.trim() {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" | "min" => 60 * 1_000_000_000,
        "h" => 3_600 * 1_000_000_000,
        other => return Err(format!("unknown unit `{other}` (expected one of {UNITS})")),
    };
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || frac.contains('.') || (number.contains('.') && frac.is_empty()) {
        return Err(format!("`{number}` is not a number"));
    }
    if frac.len() > 20 {
        return Err("too many decimals".into());
    }
    let too_long = || "too long to represent".to_string();
    let whole: u128 = whole.parse().map_err(|_| too_long())?;
    let mut nanos = whole.checked_mul(per_unit).ok_or_else(too_long)?;
    if !frac.is_empty() {
        let scale = 10u128.pow(frac.len() as u32);
        let frac: u128 = frac.parse().map_err(|_| too_long())?;
        let part = frac * per_unit;
        if !part.is_multiple_of(scale) {
            return Err("finer than a nanosecond".into());
        }
        nanos = nanos.checked_add(part / scale).ok_or_else(too_long)?;
    }
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| too_long())?;
    Ok(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

/// The tokens of a `Duration` constant.
pub(crate) fn tokens(d: Duration) -> TokenStream {
    let secs = d.as_secs();
    let nanos = d.subsec_nanos();
    quote!(::core::time::Duration::new(#secs, #nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("2min"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("7ns"), Ok(Duration::from_nanos(7)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
        assert_eq!(parse(" 10 ms "), Ok(Duration::from_millis(10)));
    }

    #[test]
    fn fractions() {
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("0.25ms"), Ok(Duration::from_micros(250)));
        assert!(parse("1.5ns").is_err());
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "", "5", "ms", "5 sec", "1.2.3s", ".5s", "5.s", "-1s", "5d", "1e3ms",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(parse("99999999999999999999999999999999999999999h").is_err());
        assert!(parse("18446744073709551616s").is_err());
    }
}
