//! Restore targets as people type them: RFC 3339, `latest`, `2h ago`,
//! `now-2h`, and `YYYY-MM-DD HH:MM[:SS]` read in a time zone (`--tz`).
//! Parsing is pure: `now` and the zone are inputs.

use crate::span::Span;
use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use std::fmt;

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "at", rename_all = "snake_case")]
pub enum Target {
    /// The newest complete point, whatever its time (`latest`).
    Latest,
    /// The newest complete point at or before this instant.
    At(DateTime<Utc>),
}

impl Target {
    /// The instant the target stands for: `now` for `latest`.
    pub fn instant(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Target::Latest => now,
            Target::At(t) => t,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Latest => f.write_str("latest"),
            Target::At(t) => f.write_str(&fmt_time(*t)),
        }
    }
}

/// Formats an instant the way dr prints times: RFC 3339, UTC, seconds.
pub fn fmt_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A time that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeSpecError {
    #[error(
        "{input:?} is not a time; use RFC 3339 (2026-11-24T09:45:00Z), `latest`, `2h ago`, `now-2h`, or `YYYY-MM-DD HH:MM` (read in --tz, default UTC)"
    )]
    Unrecognised { input: String },
    #[error(
        "{input:?} reaches before any date dr can represent; give a span of at most a few thousand years (e.g. 30d, 2h ago)"
    )]
    OutOfRange { input: String },
    #[error(
        "{input:?} does not exist in time zone {tz} (a clock change skips it); give an RFC 3339 time with an offset"
    )]
    Skipped { input: String, tz: String },
    #[error(
        "{input:?} is ambiguous in time zone {tz} (a clock change repeats it: {first} or {second}); give an RFC 3339 time with an offset"
    )]
    Ambiguous {
        input: String,
        tz: String,
        first: String,
        second: String,
    },
    #[error(
        "{input:?} is not a time zone; use an IANA name such as UTC, Europe/Lisbon, America/New_York"
    )]
    BadZone { input: String },
}

/// Parses a time zone name for `--tz`.
pub fn parse_tz(input: &str) -> Result<Tz, TimeSpecError> {
    input.parse::<Tz>().map_err(|_| TimeSpecError::BadZone {
        input: input.to_owned(),
    })
}

/// Parses a restore target relative to `now`, reading wall-clock forms in `tz`.
pub fn parse(input: &str, now: DateTime<Utc>, tz: Tz) -> Result<Target, TimeSpecError> {
    let s = input.trim();
    let unrecognised = || TimeSpecError::Unrecognised {
        input: input.to_owned(),
    };
    let lower = s.to_ascii_lowercase();
    if lower == "latest" {
        return Ok(Target::Latest);
    }
    if lower == "now" {
        return Ok(Target::At(now));
    }
    // A span so long that now minus it is before chrono's first date is
    // refused, not a panic.
    let before = |span: Span| {
        now.checked_sub_signed(span.as_chrono())
            .map(Target::At)
            .ok_or_else(|| TimeSpecError::OutOfRange {
                input: input.to_owned(),
            })
    };
    if let Some(rest) = lower.strip_suffix("ago") {
        let span = relative_span(rest).ok_or_else(unrecognised)?;
        return before(span);
    }
    if let Some(rest) = lower.strip_prefix("now") {
        let rest = rest.trim();
        if let Some(d) = rest.strip_prefix('-') {
            let span = relative_span(d).ok_or_else(unrecognised)?;
            return before(span);
        }
        return Err(unrecognised());
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(Target::At(t.to_utc()));
    }
    for fmt in [
        "%Y-%m-%d %H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%dT%H:%M:%S",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(s, fmt) {
            return match tz.from_local_datetime(&naive) {
                LocalResult::Single(t) => Ok(Target::At(t.to_utc())),
                LocalResult::Ambiguous(a, b) => Err(TimeSpecError::Ambiguous {
                    input: input.to_owned(),
                    tz: tz.name().to_owned(),
                    first: fmt_time(a.to_utc()),
                    second: fmt_time(b.to_utc()),
                }),
                LocalResult::None => Err(TimeSpecError::Skipped {
                    input: input.to_owned(),
                    tz: tz.name().to_owned(),
                }),
            };
        }
    }
    Err(unrecognised())
}

/// Reads `2h`, `1h30m`, `90 m`, `3 days`, `2 hours 30 minutes`: compact units
/// or English unit words.
fn relative_span(text: &str) -> Option<Span> {
    let mut compact = String::new();
    for word in text.split_whitespace() {
        let unit = match word {
            "d" | "day" | "days" => "d",
            "h" | "hr" | "hrs" | "hour" | "hours" => "h",
            "m" | "min" | "mins" | "minute" | "minutes" => "m",
            "s" | "sec" | "secs" | "second" | "seconds" => "s",
            other => other,
        };
        compact.push_str(unit);
    }
    compact.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap()
    }
    fn at(s: &str) -> Target {
        Target::At(DateTime::parse_from_rfc3339(s).unwrap().to_utc())
    }

    #[test]
    fn accepted_forms() {
        let utc = chrono_tz::UTC;
        for (input, want) in [
            ("latest", Target::Latest),
            ("LATEST", Target::Latest),
            ("now", at("2026-11-24T12:00:00Z")),
            ("2h ago", at("2026-11-24T10:00:00Z")),
            ("1h30m ago", at("2026-11-24T10:30:00Z")),
            ("90 m ago", at("2026-11-24T10:30:00Z")),
            ("3 days ago", at("2026-11-21T12:00:00Z")),
            ("2 hours 30 minutes ago", at("2026-11-24T09:30:00Z")),
            ("now-1 day", at("2026-11-23T12:00:00Z")),
            ("now-2h", at("2026-11-24T10:00:00Z")),
            ("now - 15m", at("2026-11-24T11:45:00Z")),
            ("2026-11-24T09:45:00Z", at("2026-11-24T09:45:00Z")),
            ("2026-11-24T10:45:00+01:00", at("2026-11-24T09:45:00Z")),
            ("2026-11-24 09:45", at("2026-11-24T09:45:00Z")),
            ("2026-11-24 09:45:30", at("2026-11-24T09:45:30Z")),
        ] {
            assert_eq!(parse(input, now(), utc).unwrap(), want, "{input}");
        }
    }

    #[test]
    fn wall_clock_in_a_zone() {
        let lisbon = parse_tz("Europe/Lisbon").unwrap();
        // Lisbon is UTC+0 in November, UTC+1 in July.
        assert_eq!(
            parse("2026-07-01 10:00", now(), lisbon).unwrap(),
            at("2026-07-01T09:00:00Z")
        );
        let ny = parse_tz("America/New_York").unwrap();
        assert_eq!(
            parse("2026-11-24 04:45", now(), ny).unwrap(),
            at("2026-11-24T09:45:00Z")
        );
        // 2026-11-01 01:30 happens twice in New York; 2026-03-08 02:30 never.
        assert!(matches!(
            parse("2026-11-01 01:30", now(), ny),
            Err(TimeSpecError::Ambiguous { .. })
        ));
        assert!(matches!(
            parse("2026-03-08 02:30", now(), ny),
            Err(TimeSpecError::Skipped { .. })
        ));
    }

    #[test]
    fn garbage_is_refused_with_the_accepted_forms() {
        for bad in [
            "",
            "yesterday",
            "2h",
            "now+2h",
            "2026-13-01 10:00",
            "ago",
            "x ago",
            "12:00",
        ] {
            let e = parse(bad, now(), chrono_tz::UTC).unwrap_err().to_string();
            assert!(e.contains("RFC 3339") && e.contains("2h ago"), "{bad}: {e}");
        }
        assert!(parse_tz("Mars/Olympus").is_err());
    }

    #[test]
    fn a_span_beyond_the_calendar_is_refused_not_a_panic() {
        for input in [
            "99999999999h ago",
            "now-99999999999h",
            "999999999999999d ago",
        ] {
            match parse(input, now(), chrono_tz::UTC) {
                Err(TimeSpecError::OutOfRange { input: i }) => assert_eq!(i, input),
                // A span too long for a duration at all is not a span.
                Err(TimeSpecError::Unrecognised { .. }) => {}
                other => panic!("{input}: {other:?}"),
            }
        }
    }
}
