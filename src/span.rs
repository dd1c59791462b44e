//! Durations as people write them in configuration and on the command line:
//! `15m`, `1h30m`, `90s`, `2d`. Used for RPO, RTO, budgets, timeouts and
//! relative times (`2h ago`).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A non-negative duration with a compact human form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Span(Duration);

/// A duration that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a duration; use a number and a unit (d, h, m, s, ms), e.g. 15m, 1h30m, 90s")]
pub struct SpanError(pub String);

impl Span {
    /// A span of whole seconds.
    pub const fn from_secs(s: u64) -> Self {
        Span(Duration::from_secs(s))
    }
    /// A span of milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Span(Duration::from_millis(ms))
    }
    /// The span as a `std` duration.
    pub const fn as_duration(self) -> Duration {
        self.0
    }
    /// Whole milliseconds (saturating).
    pub fn as_millis_i64(self) -> i64 {
        i64::try_from(self.0.as_millis()).unwrap_or(i64::MAX)
    }
    /// The span as a chrono duration (saturating).
    pub fn as_chrono(self) -> chrono::TimeDelta {
        chrono::TimeDelta::milliseconds(self.as_millis_i64())
    }
    /// Whether the span is zero.
    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl From<Duration> for Span {
    fn from(d: Duration) -> Self {
        Span(d)
    }
}

impl FromStr for Span {
    type Err = SpanError;
    fn from_str(input: &str) -> Result<Self, SpanError> {
        let err = || SpanError(input.to_owned());
        let s = input.trim();
        if s.is_empty() {
            return Err(err());
        }
        let bytes = s.as_bytes();
        let mut total: u128 = 0;
        let mut i = 0;
        while i < bytes.len() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if start == i {
                return Err(err());
            }
            let n: u128 = s[start..i].parse().map_err(|_| err())?;
            let ustart = i;
            while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                i += 1;
            }
            let unit_ms: u128 = match &s[ustart..i] {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                _ => return Err(err()),
            };
            total = n
                .checked_mul(unit_ms)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(err)?;
        }
        let ms = u64::try_from(total).map_err(|_| err())?;
        Ok(Span(Duration::from_millis(ms)))
    }
}

impl TryFrom<String> for Span {
    type Error = SpanError;
    fn try_from(s: String) -> Result<Self, SpanError> {
        s.parse()
    }
}

impl From<Span> for String {
    fn from(s: Span) -> String {
        s.to_string()
    }
}

impl fmt::Display for Span {
    /// The shortest exact form: `1h30m`, `15m`, `90ms`, `0s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [
            ("d", 86_400_000u128),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
            ("ms", 1),
        ] {
            if ms >= size {
                write!(f, "{}{unit}", ms / size)?;
                ms %= size;
            }
        }
        Ok(())
    }
}

/// Renders a signed chrono duration compactly for people (`-2h5m`, `12m30s`),
/// rounded to whole seconds when over a minute.
pub fn human(d: chrono::TimeDelta) -> String {
    let neg = d < chrono::TimeDelta::zero();
    let ms = d.num_milliseconds().unsigned_abs();
    let ms = if ms >= 60_000 { ms - ms % 1000 } else { ms };
    let s = Span::from_millis(ms).to_string();
    if neg { format!("-{s}") } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for (input, ms, shown) in [
            ("15m", 900_000, "15m"),
            ("1h30m", 5_400_000, "1h30m"),
            ("90s", 90_000, "1m30s"),
            ("2d", 172_800_000, "2d"),
            ("250ms", 250, "250ms"),
            ("0s", 0, "0s"),
            (" 1h ", 3_600_000, "1h"),
        ] {
            let s: Span = input.parse().unwrap();
            assert_eq!(s.as_duration().as_millis(), ms, "{input}");
            assert_eq!(s.to_string(), shown, "{input}");
        }
    }

    #[test]
    fn refuses_garbage_with_the_accepted_form() {
        for bad in [
            "",
            "15",
            "15 minutes",
            "m",
            "1h-3m",
            "1.5h",
            "15M",
            "99999999999999999999d",
        ] {
            let e = bad.parse::<Span>().unwrap_err().to_string();
            assert!(e.contains("is not a duration"), "{bad}: {e}");
            assert!(e.contains("1h30m"), "{e}");
        }
    }

    #[test]
    fn human_rounds_long_durations() {
        assert_eq!(human(chrono::TimeDelta::milliseconds(754_321)), "12m34s");
        assert_eq!(human(chrono::TimeDelta::milliseconds(-7_200_000)), "-2h");
        assert_eq!(human(chrono::TimeDelta::milliseconds(1500)), "1s500ms");
    }
}
