//! Ticks: when a policy's schedule fires, and which firings were missed while
//! dr was not running. Pure functions of the schedule and the clock.

use crate::config::Schedule;
use chrono::{DateTime, TimeDelta, Utc};

/// Firings strictly after `after` and at or before `until`, oldest first, at
/// most `cap` of them (the newest ones: they matter for the RPO). The tick
/// ledger records each of them once (see [`crate::daemon`]).
pub fn firings(
    schedule: &Schedule,
    after: DateTime<Utc>,
    until: DateTime<Utc>,
    cap: usize,
) -> Vec<DateTime<Utc>> {
    let mut out = std::collections::VecDeque::new();
    let mut t = after;
    while let Some(next) = schedule.next_after(t) {
        if next > until {
            break;
        }
        out.push_back(next);
        if out.len() > cap {
            out.pop_front();
        }
        t = next;
    }
    out.into()
}

/// The scheduled instant a firing at `fired` stands for: the latest
/// scheduled time at or before it (schedulers fire a little late).
pub fn tick_of(schedule: &Schedule, fired: DateTime<Utc>) -> DateTime<Utc> {
    let whole =
        chrono::DurationRound::duration_trunc(fired, TimeDelta::seconds(1)).unwrap_or(fired);
    // Look back over growing windows so frequent schedules take few steps.
    for window in [
        TimeDelta::minutes(2),
        TimeDelta::hours(2),
        TimeDelta::days(2),
    ] {
        let mut probe = whole - window;
        let mut best = None;
        while let Some(n) = schedule.next_after(probe) {
            if n > whole {
                break;
            }
            best = Some(n);
            probe = n;
        }
        if let Some(b) = best {
            return b;
        }
    }
    whole
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, h, m, s).unwrap()
    }
    fn every15() -> Schedule {
        "0 */15 * * * *".parse().unwrap()
    }

    #[test]
    fn firings_between_last_and_now() {
        let m = firings(&every15(), t(9, 0, 0), t(10, 5, 0), 100);
        assert_eq!(m, vec![t(9, 15, 0), t(9, 30, 0), t(9, 45, 0), t(10, 0, 0)]);
    }

    #[test]
    fn firings_include_until_and_exclude_after() {
        let m = firings(&every15(), t(9, 45, 0), t(10, 0, 0), 100);
        assert_eq!(m, vec![t(10, 0, 0)]);
        assert!(firings(&every15(), t(9, 45, 0), t(9, 59, 59), 100).is_empty());
    }

    #[test]
    fn every_firing_of_a_short_outage_counts() {
        // A 35 s outage at a 5 s schedule: seven firings, none left out
        // (a grace before `now` once hid the newest six).
        let every5: Schedule = "*/5 * * * * *".parse().unwrap();
        let m = firings(&every5, t(9, 0, 0), t(9, 0, 35), 100);
        assert_eq!(m.len(), 7, "{m:?}");
    }

    #[test]
    fn cap_keeps_the_newest() {
        let m = firings(&every15(), t(0, 0, 0), t(11, 59, 30), 3);
        assert_eq!(m, vec![t(11, 15, 0), t(11, 30, 0), t(11, 45, 0)]);
    }

    #[test]
    fn firing_late_maps_to_its_tick() {
        assert_eq!(tick_of(&every15(), t(9, 45, 0)), t(9, 45, 0));
        assert_eq!(tick_of(&every15(), t(9, 45, 1)), t(9, 45, 0));
        assert_eq!(tick_of(&every15(), t(9, 59, 59)), t(9, 45, 0));
        let late = t(9, 45, 0) + TimeDelta::milliseconds(137);
        assert_eq!(tick_of(&every15(), late), t(9, 45, 0));
        let every3: Schedule = "*/3 * * * * *".parse().unwrap();
        assert_eq!(
            tick_of(&every3, t(9, 45, 4) + TimeDelta::milliseconds(500)),
            t(9, 45, 3)
        );
    }
}
