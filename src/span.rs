//! Durations as people write them in configuration and on the command line:
//! `15m`, `1h30m`, `90s`, `2d`. Used for RPO, RTO, budgets, timeouts and
//! relative times (`2h ago`).

use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A non-negative duration with a compact human form. A parsed span is at
/// most [`Span::MAX`], so it converts exactly to milliseconds in an `i64`
/// (the catalog) and to a chrono duration (time arithmetic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(into = "String")]
pub struct Span(Duration);

/// A duration that could not be understood, or that is too long to use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpanError {
    #[error(
        "{0:?} is not a duration; use a number and a unit (d, h, m, s, ms), e.g. 15m, 1h30m, 90s"
    )]
    Unrecognised(String),
    #[error(
        "{0:?} is not a duration dr can use: the longest is {max} (about 292 million years); use a number and a unit (d, h, m, s, ms), e.g. 15m, 1h30m, 90s",
        max = Span::MAX
    )]
    TooLong(String),
}

impl SpanError {
    /// The text that was refused.
    pub fn input(&self) -> &str {
        match self {
            SpanError::Unrecognised(s) | SpanError::TooLong(s) => s,
        }
    }
}

/// [`Span::MAX`] in milliseconds.
const MAX_MS: u64 = i64::MAX.unsigned_abs();

impl Span {
    /// The longest span: `i64::MAX` milliseconds, chrono's longest duration.
    pub const MAX: Span = Span(Duration::from_millis(MAX_MS));

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
    /// Whole milliseconds: exact for every parsed span (at most
    /// [`Span::MAX`]); saturating for a longer one built in code.
    pub fn as_millis_i64(self) -> i64 {
        i64::try_from(self.0.as_millis()).unwrap_or(i64::MAX)
    }
    /// The span as a chrono duration: exact for every parsed span (at most
    /// [`Span::MAX`]); saturating for a longer one built in code.
    pub fn as_chrono(self) -> chrono::TimeDelta {
        chrono::TimeDelta::try_milliseconds(self.as_millis_i64()).unwrap_or(chrono::TimeDelta::MAX)
    }
    /// The sum of two spans, `None` past [`Span::MAX`].
    pub fn checked_add(self, other: Span) -> Option<Span> {
        self.0
            .checked_add(other.0)
            .map(Span)
            .filter(|s| *s <= Span::MAX)
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
    /// Reads a sequence of `<digits><unit>`; refuses anything else, and a
    /// total over [`Span::MAX`] (never wrapped, never clamped).
    fn from_str(input: &str) -> Result<Self, SpanError> {
        let unrecognised = || SpanError::Unrecognised(input.to_owned());
        let too_long = || SpanError::TooLong(input.to_owned());
        let s = input.trim();
        if s.is_empty() {
            return Err(unrecognised());
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
                return Err(unrecognised());
            }
            // Only ASCII digits: the parse fails only past u128.
            let n: u128 = s[start..i].parse().map_err(|_| too_long())?;
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
                _ => return Err(unrecognised()),
            };
            total = n
                .checked_mul(unit_ms)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(too_long)?;
        }
        match u64::try_from(total) {
            Ok(ms) if ms <= MAX_MS => Ok(Span(Duration::from_millis(ms))),
            _ => Err(too_long()),
        }
    }
}

impl TryFrom<String> for Span {
    type Error = SpanError;
    fn try_from(s: String) -> Result<Self, SpanError> {
        s.parse()
    }
}

impl<'de> Deserialize<'de> for Span {
    /// From a string; a bare number (`rpo: 15`) is refused with the
    /// duration message, as any other text without a unit.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        duration_text(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// Reads a duration's scalar as the text that was written: a string as is, a
/// number or a boolean in its usual form, so that [`Span`]'s parser refuses
/// it with its own message (naming the value and the accepted form) instead
/// of serde's "invalid type: integer, expected a string".
pub fn duration_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    struct Text;
    impl serde::de::Visitor<'_> for Text {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration such as 15m, 1h30m or 90s")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }
        fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<String, E> {
            Ok(v.to_string())
        }
    }
    d.deserialize_any(Text)
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

/// Renders seconds (a run's elapsed time) like [`human`]; a value no
/// duration holds (NaN, infinite, beyond 292 million years) is shown as
/// plain seconds, not clamped.
pub fn human_secs(secs: f64) -> String {
    let ms = (secs * 1000.0).trunc();
    // i64::MAX is 9.22e18; anything from 9.2e18 on is out of reach.
    match chrono::TimeDelta::try_milliseconds(ms as i64) {
        Some(d) if ms.is_finite() && ms.abs() < 9.2e18 => human(d),
        _ => format!("{secs}s"),
    }
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

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    const UNITS: [(&str, u128); 5] = [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any text: a span, or a refusal that quotes it and shows the form.
        #[test]
        fn any_text_parses_or_is_refused_by_name(s in "\\PC{0,24}|[0-9dhms ]{0,24}") {
            match s.parse::<Span>() {
                Ok(span) => prop_assert!(span <= Span::MAX),
                Err(e) => {
                    let text = e.to_string();
                    prop_assert!(text.contains(&format!("{s:?}")), "{text}");
                    prop_assert!(text.contains("1h30m"), "{text}");
                    prop_assert_eq!(e.input(), s.as_str());
                }
            }
        }

        /// Every representable span prints in a form that reads back exactly.
        #[test]
        fn printed_spans_read_back(ms in 0..=MAX_MS) {
            let span = Span::from_millis(ms);
            let back: Span = span.to_string().parse().map_err(|e| TestCaseError::fail(format!("{e}")))?;
            prop_assert_eq!(back, span);
            prop_assert_eq!(span.as_millis_i64().unsigned_abs(), ms);
            prop_assert_eq!(span.as_chrono().num_milliseconds().unsigned_abs(), ms);
        }

        /// Numbers of any size with any units: exactly their sum, or refused
        /// as too long; never wrapped or clamped.
        #[test]
        fn sums_are_exact_or_refused(parts in prop::collection::vec((any::<u64>(), 0..5usize), 1..4)) {
            let text: String = parts.iter().map(|(n, u)| format!("{n}{}", UNITS[*u].0)).collect();
            let want: Option<u128> = parts.iter().try_fold(0u128, |acc, (n, u)| {
                u128::from(*n).checked_mul(UNITS[*u].1).and_then(|v| acc.checked_add(v))
            });
            match (text.parse::<Span>(), want) {
                (Ok(span), Some(w)) => prop_assert_eq!(span.as_duration().as_millis(), w),
                (Err(SpanError::TooLong(_)), w) => prop_assert!(w.is_none_or(|w| w > u128::from(MAX_MS))),
                (other, w) => prop_assert!(false, "{text}: {other:?}, want {w:?}"),
            }
        }

        /// Sums of spans are exact or `None`.
        #[test]
        fn checked_add_is_exact(a in 0..=MAX_MS, b in 0..=MAX_MS) {
            let sum = Span::from_millis(a).checked_add(Span::from_millis(b));
            match a.checked_add(b).filter(|s| *s <= MAX_MS) {
                Some(s) => prop_assert_eq!(sum, Some(Span::from_millis(s))),
                None => prop_assert_eq!(sum, None),
            }
        }

        /// Any signed chrono duration renders.
        #[test]
        fn human_renders_any_duration(ms in -i64::MAX..=i64::MAX) {
            let d = chrono::TimeDelta::try_milliseconds(ms).unwrap_or(chrono::TimeDelta::MAX);
            let text = human(d);
            prop_assert_eq!(text.starts_with('-'), ms < 0);
        }

        /// Any number of seconds renders, exactly when a duration holds it.
        #[test]
        fn human_secs_renders_any_number(x in prop_oneof![any::<f64>(), -1e7f64..1e7]) {
            let text = human_secs(x);
            if x.is_finite() && x.abs() < 1e12 {
                let want = human(chrono::TimeDelta::milliseconds((x * 1000.0) as i64));
                prop_assert_eq!(text, want);
            }
        }

        /// A number where a duration belongs (`rpo: 15`) is refused with the
        /// duration message, not serde's type error.
        #[test]
        fn numbers_are_refused_as_durations(n in any::<i64>()) {
            let e = serde_json::from_str::<Span>(&n.to_string()).unwrap_err().to_string();
            prop_assert!(e.contains(&format!("\"{n}\" is not a duration")), "{e}");
        }
    }

    #[test]
    fn the_longest_span_is_chronos_longest_duration() {
        assert_eq!(Span::MAX.as_chrono(), chrono::TimeDelta::MAX);
        assert_eq!(Span::MAX.as_millis_i64(), i64::MAX);
        let max = Span::MAX.to_string();
        assert_eq!(max.parse::<Span>(), Ok(Span::MAX));
        let e = "9223372036854775808ms".parse::<Span>().unwrap_err();
        assert!(matches!(e, SpanError::TooLong(_)), "{e}");
        assert!(e.to_string().contains(&max), "{e}");
    }
}
