//! Restore targets as people type them: RFC 3339, `latest`, `2h ago`,
//! `now-2h`, and `YYYY-MM-DD HH:MM[:SS]` read in a time zone (`--tz`).
//! Parsing is pure: `now` and the zone are inputs.

use crate::span::{Span, SpanError};
use chrono::{DateTime, LocalResult, NaiveDateTime, TimeDelta, TimeZone, Utc};
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
        "{input:?} is outside the dates dr can represent (years -262143 to 262142); give a span of at most a few thousand years (e.g. 30d, 2h ago) or a date in that range"
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
    // A span so long that now minus it is before chrono's first date, or
    // longer than any duration, is refused, not a panic.
    let out_of_range = || TimeSpecError::OutOfRange {
        input: input.to_owned(),
    };
    let before = |text: &str| match relative_span(text) {
        Ok(span) => now
            .checked_sub_signed(span.as_chrono())
            .map(Target::At)
            .ok_or_else(out_of_range),
        Err(SpanError::TooLong(_)) => Err(out_of_range()),
        Err(SpanError::Unrecognised(_)) => Err(unrecognised()),
    };
    if let Some(rest) = lower.strip_suffix("ago") {
        return before(rest);
    }
    if let Some(rest) = lower.strip_prefix("now") {
        if let Some(d) = rest.trim().strip_prefix('-') {
            return before(d);
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
            return in_zone(input, naive, tz);
        }
    }
    Err(unrecognised())
}

/// A wall-clock time read in `tz`: the one instant it names, or why not.
fn in_zone(input: &str, naive: NaiveDateTime, tz: Tz) -> Result<Target, TimeSpecError> {
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => Ok(Target::At(t.to_utc())),
        LocalResult::Ambiguous(a, b) => Err(TimeSpecError::Ambiguous {
            input: input.to_owned(),
            tz: tz.name().to_owned(),
            first: fmt_time(a.to_utc()),
            second: fmt_time(b.to_utc()),
        }),
        // Within a day of chrono's first or last date, no instant is not a
        // clock change but the end of the calendar.
        LocalResult::None
            if naive.checked_sub_signed(TimeDelta::days(1)).is_none()
                || naive.checked_add_signed(TimeDelta::days(1)).is_none() =>
        {
            Err(TimeSpecError::OutOfRange {
                input: input.to_owned(),
            })
        }
        LocalResult::None => Err(TimeSpecError::Skipped {
            input: input.to_owned(),
            tz: tz.name().to_owned(),
        }),
    }
}

/// Reads `2h`, `1h30m`, `90 m`, `3 days`, `2 hours 30 minutes`: compact units
/// or English unit words.
fn relative_span(text: &str) -> Result<Span, SpanError> {
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
    compact.parse()
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
    fn a_wall_clock_time_past_the_calendar_is_out_of_range_not_skipped() {
        for (input, zone) in [
            ("+262142-12-31 23:00:00", "America/New_York"),
            ("-262143-01-01 01:00:00", "Asia/Tokyo"),
        ] {
            let tz = parse_tz(zone).unwrap();
            match parse(input, now(), tz) {
                Err(TimeSpecError::OutOfRange { input: i }) => assert_eq!(i, input),
                other => panic!("{input} in {zone}: {other:?}"),
            }
        }
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

#[cfg(test)]
mod props {
    use super::*;
    use chrono::{Datelike, NaiveDate, NaiveTime};
    use proptest::prelude::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap()
    }

    /// Any instant chrono can hold, in whole milliseconds.
    fn instant() -> impl Strategy<Value = DateTime<Utc>> {
        let (min, max) = (
            DateTime::<Utc>::MIN_UTC.timestamp_millis(),
            DateTime::<Utc>::MAX_UTC.timestamp_millis(),
        );
        (min..=max).prop_map(|ms| DateTime::from_timestamp_millis(ms).unwrap())
    }

    /// A local date and time with a year anywhere near chrono's range.
    fn naive(years: std::ops::RangeInclusive<i32>) -> impl Strategy<Value = NaiveDateTime> {
        (years, 1u32..=366, 0u32..86_400).prop_filter_map("a real date", |(y, d, s)| {
            let date = NaiveDate::from_yo_opt(y, d)?;
            Some(date.and_time(NaiveTime::from_num_seconds_from_midnight_opt(s, 0)?))
        })
    }

    fn zone() -> impl Strategy<Value = Tz> {
        prop::sample::select(chrono_tz::TZ_VARIANTS.to_vec())
    }

    const UNITS: [(&str, i128); 12] = [
        ("d", 86_400_000),
        ("days", 86_400_000),
        ("h", 3_600_000),
        ("hours", 3_600_000),
        ("hr", 3_600_000),
        ("m", 60_000),
        ("min", 60_000),
        ("minutes", 60_000),
        ("s", 1_000),
        ("sec", 1_000),
        ("seconds", 1_000),
        ("ms", 1),
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any text, at any `now`, in any zone: a target, or a refusal that
        /// quotes the text.
        #[test]
        fn any_text_is_a_target_or_refused_by_name(
            s in "\\PC{0,30}|(now ?- ?)?[0-9]{1,22} ?[a-z]{1,7}( ago)?|[+-]?[0-9]{4,7}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}(:[0-9]{2})?",
            now in instant(),
            tz in zone(),
        ) {
            if let Err(e) = parse(&s, now, tz) {
                let text = e.to_string();
                prop_assert!(text.contains(&format!("{s:?}")), "{text}");
            }
        }

        /// `N unit ago` is exactly now minus N units, or refused as out of
        /// range when that is before chrono's first instant.
        #[test]
        fn relative_times_are_exact_or_refused(
            n in prop_oneof![0u64..10_000, any::<u64>()],
            unit in 0..UNITS.len(),
            now_form in any::<bool>(),
            now in instant(),
        ) {
            let (word, size) = UNITS[unit];
            let input = if now_form { format!("now - {n} {word}") } else { format!("{n} {word} ago") };
            let want = (i128::from(now.timestamp_millis()) - i128::from(n) * size, i128::from(n) * size);
            let exact = i64::try_from(want.0)
                .ok()
                .filter(|_| want.1 <= i128::from(i64::MAX))
                .and_then(DateTime::from_timestamp_millis);
            match (parse(&input, now, chrono_tz::UTC), exact) {
                (Ok(Target::At(t)), Some(w)) => prop_assert_eq!(t, w),
                (Err(TimeSpecError::OutOfRange { input: i }), None) => prop_assert_eq!(i, input),
                (got, want) => prop_assert!(false, "{input}: {got:?}, want {want:?}"),
            }
        }

        /// RFC 3339 with any offset reads back as the same instant.
        #[test]
        fn rfc3339_reads_back(
            ms in -62_167_132_800_000i64..253_402_214_400_000,
            minutes in -1439i32..=1439,
        ) {
            // RFC 3339 has four-digit years and offsets in minutes; the range
            // keeps the local time in years 0..=9999 whatever the offset.
            let t = DateTime::from_timestamp_millis(ms).unwrap();
            let tz = chrono::FixedOffset::east_opt(minutes * 60).unwrap();
            let text = t.with_timezone(&tz).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false);
            prop_assert_eq!(parse(&text, now(), chrono_tz::UTC), Ok(Target::At(t)));
        }

        /// A wall-clock time in any zone is that local time, or refused by
        /// name (skipped, repeated, or outside the calendar): never shifted.
        #[test]
        fn wall_clock_times_are_that_local_time(local in prop_oneof![
                naive(1800..=2200),
                naive(-262_144..=262_143),
                naive(-262_144..=-262_142),
                naive(262_141..=262_143),
            ], tz in zone()) {
            let input = local.format("%Y-%m-%d %H:%M:%S").to_string();
            match parse(&input, now(), tz) {
                Ok(Target::At(t)) => prop_assert_eq!(t.with_timezone(&tz).naive_local(), local),
                Ok(Target::Latest) => prop_assert!(false, "{input}: latest"),
                Err(TimeSpecError::Ambiguous { first, second, .. }) => prop_assert!(first < second || first.len() != second.len()),
                Err(e @ TimeSpecError::OutOfRange { .. }) => {
                    prop_assert!(local.year().abs() > 262_000, "{input} in {tz}: {e}");
                    prop_assert!(e.to_string().contains(&input), "{e}");
                }
                Err(e @ TimeSpecError::Skipped { .. }) => {
                    prop_assert!(local.year().abs() < 262_000, "{input} in {tz}: {e}");
                    prop_assert!(e.to_string().contains(&input), "{e}");
                }
                Err(e) => prop_assert!(false, "{input} in {tz}: {e}"),
            }
        }

        /// Any text as a zone: an IANA zone of exactly that name, or refused by name.
        #[test]
        fn zones_are_taken_by_their_exact_name(s in "\\PC{0,20}|[A-Za-z_/+-]{1,20}", known in zone()) {
            match parse_tz(&s) {
                Ok(tz) => prop_assert_eq!(tz.name(), s.as_str()),
                Err(e) => prop_assert!(e.to_string().contains(&format!("{s:?}")), "{e}"),
            }
            prop_assert_eq!(parse_tz(known.name()), Ok(known));
        }
    }
}
