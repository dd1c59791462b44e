//! Retention: which recovery points to keep, as a pure function of the points
//! and `now` (grandfather-father-son: last N, then the newest point of each of
//! the N most recent hours, days, ISO weeks and months, in UTC).
//!
//! Rules beyond GFS, so nothing restorable is lost by accident:
//! - only complete points fill the GFS slots;
//! - the newest complete point is always kept;
//! - pending points (a tick still running) are never touched;
//! - partial and failed points are kept while they are newer than the newest
//!   complete point (they may hold the freshest data of some volumes, and
//!   show what went wrong), and pruned once a complete point supersedes them.

use crate::catalog::{PointId, PointState};
use crate::config::Retain;
use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// A point as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: PointId,
    /// The point's time (its oldest snapshot), or its tick when unknown.
    pub at: DateTime<Utc>,
    pub state: PointState,
}

/// Why a point is kept.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Keep {
    /// One of the `last` newest complete points.
    Last,
    /// The newest complete point of an hour / day / week / month slot.
    Hourly,
    Daily,
    Weekly,
    Monthly,
    /// The newest complete point is never pruned.
    NewestComplete,
    /// A tick still running.
    InFlight,
    /// A partial or failed point newer than the newest complete one.
    NotSuperseded,
}

/// The decision for one point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub id: PointId,
    pub at: DateTime<Utc>,
    pub state: PointState,
    /// Empty means prune.
    pub keep: Vec<Keep>,
}

impl Verdict {
    /// Whether retention deletes this point.
    pub fn prune(&self) -> bool {
        self.keep.is_empty()
    }

    /// A sentence for `dr prune --dry-run`.
    pub fn reason(&self) -> String {
        if self.keep.is_empty() {
            match self.state {
                PointState::Complete => "outside every retention slot".into(),
                _ => format!("{} and superseded by a newer complete point", self.state),
            }
        } else {
            let names: Vec<String> = self
                .keep
                .iter()
                .map(|k| match k {
                    Keep::Last => "last".to_owned(),
                    Keep::Hourly => "hourly".into(),
                    Keep::Daily => "daily".into(),
                    Keep::Weekly => "weekly".into(),
                    Keep::Monthly => "monthly".into(),
                    Keep::NewestComplete => "newest complete point".into(),
                    Keep::InFlight => "tick still running".into(),
                    Keep::NotSuperseded => "newer than the newest complete point".into(),
                })
                .collect();
            format!("kept: {}", names.join(", "))
        }
    }
}

/// The calendar slot a time falls in (year, then finer fields or 0).
type SlotOf = fn(DateTime<Utc>) -> (i32, u32, u32, u32);

/// Decides, for every point, whether it is kept and why. Pure; `now` is
/// accepted so future rules (minimum age) need no new signature, and points
/// dated after `now` (clock skew) are kept.
pub fn decide(points: &[Candidate], retain: &Retain, now: DateTime<Utc>) -> Vec<Verdict> {
    let mut complete: Vec<&Candidate> = points
        .iter()
        .filter(|p| p.state == PointState::Complete)
        .collect();
    // Newest first; ties broken by id so the decision is deterministic.
    complete.sort_by(|a, b| b.at.cmp(&a.at).then(b.id.cmp(&a.id)));
    let newest_complete = complete.first().map(|p| (p.at, p.id));

    let mut keep: BTreeMap<PointId, BTreeSet<Keep>> = BTreeMap::new();
    let mut mark = |id: PointId, k: Keep| {
        keep.entry(id).or_default().insert(k);
    };
    // Counts are u32: as usize they are exact (saturating only on a 16-bit target).
    let take = |n: u32| usize::try_from(n).unwrap_or(usize::MAX);
    for p in complete.iter().take(take(retain.last)) {
        mark(p.id, Keep::Last);
    }
    let slots: [(Keep, u32, SlotOf); 4] = [
        (Keep::Hourly, retain.hourly, |t| {
            (t.year(), t.ordinal(), t.hour(), 0)
        }),
        (Keep::Daily, retain.daily, |t| (t.year(), t.ordinal(), 0, 0)),
        (Keep::Weekly, retain.weekly, |t| {
            let w = t.iso_week();
            (w.year(), w.week(), 0, 0)
        }),
        (Keep::Monthly, retain.monthly, |t| {
            (t.year(), t.month(), 0, 0)
        }),
    ];
    for (kind, count, slot_of) in slots {
        let mut seen = BTreeSet::new();
        for p in &complete {
            if seen.len() >= take(count) {
                break;
            }
            // The first (newest) point met in a slot represents it.
            if seen.insert(slot_of(p.at)) {
                mark(p.id, kind.clone());
            }
        }
    }
    if let Some((_, id)) = newest_complete {
        mark(id, Keep::NewestComplete);
    }
    for p in points {
        match p.state {
            PointState::Pending => mark(p.id, Keep::InFlight),
            PointState::Partial | PointState::Failed
                if newest_complete.is_none_or(|(at, _)| p.at > at) =>
            {
                mark(p.id, Keep::NotSuperseded)
            }
            _ => {}
        }
        if p.at > now {
            mark(p.id, Keep::NotSuperseded);
        }
    }
    let mut out: Vec<Verdict> = points
        .iter()
        .filter(|p| p.state != PointState::Pruned)
        .map(|p| Verdict {
            id: p.id,
            at: p.at,
            state: p.state,
            keep: keep
                .get(&p.id)
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default(),
        })
        .collect();
    out.sort_by(|a, b| b.at.cmp(&a.at).then(b.id.cmp(&a.id)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeDelta, TimeZone};

    fn at(d: u32, h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, d, h, m, 0).unwrap()
    }
    fn c(id: i64, t: DateTime<Utc>, state: PointState) -> Candidate {
        Candidate {
            id: PointId(id),
            at: t,
            state,
        }
    }
    fn none() -> Retain {
        Retain {
            last: 0,
            hourly: 0,
            daily: 0,
            weekly: 0,
            monthly: 0,
        }
    }
    fn kept(v: &[Verdict]) -> Vec<i64> {
        let mut k: Vec<i64> = v.iter().filter(|v| !v.prune()).map(|v| v.id.0).collect();
        k.sort();
        k
    }

    /// Points every 15 minutes over two days, ids in time order.
    fn two_days() -> Vec<Candidate> {
        (0..192)
            .map(|i| {
                c(
                    i + 1,
                    at(23, 0, 0) + TimeDelta::minutes(15 * i),
                    PointState::Complete,
                )
            })
            .collect()
    }

    #[test]
    fn newest_complete_is_kept_even_with_zero_retention() {
        let pts = two_days();
        let v = decide(&pts, &none(), at(25, 0, 0));
        assert_eq!(kept(&v), vec![192]);
        assert!(v[0].keep.contains(&Keep::NewestComplete));
        assert_eq!(v.iter().filter(|v| v.prune()).count(), 191);
    }

    #[test]
    fn last_n() {
        let r = Retain { last: 3, ..none() };
        assert_eq!(
            kept(&decide(&two_days(), &r, at(25, 0, 0))),
            vec![190, 191, 192]
        );
    }

    #[test]
    fn hourly_keeps_the_newest_of_each_recent_hour() {
        let r = Retain {
            hourly: 3,
            ..none()
        };
        // Newest points of the hours 24th 23:xx, 22:xx, 21:xx are :45.
        assert_eq!(
            kept(&decide(&two_days(), &r, at(25, 0, 0))),
            vec![184, 188, 192]
        );
    }

    #[test]
    fn daily_weekly_monthly() {
        let r = Retain { daily: 7, ..none() };
        // Two days of points: the newest of the 23rd (id 96) and of the 24th (192).
        assert_eq!(kept(&decide(&two_days(), &r, at(25, 0, 0))), vec![96, 192]);
        // 2026-11-23 is a Monday: both days are in one ISO week.
        let r = Retain {
            weekly: 4,
            ..none()
        };
        assert_eq!(kept(&decide(&two_days(), &r, at(25, 0, 0))), vec![192]);
        let pts = vec![
            c(
                1,
                Utc.with_ymd_and_hms(2026, 9, 30, 23, 0, 0).unwrap(),
                PointState::Complete,
            ),
            c(
                2,
                Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap(),
                PointState::Complete,
            ),
            c(
                3,
                Utc.with_ymd_and_hms(2026, 10, 31, 0, 0, 0).unwrap(),
                PointState::Complete,
            ),
            c(
                4,
                Utc.with_ymd_and_hms(2026, 11, 2, 0, 0, 0).unwrap(),
                PointState::Complete,
            ),
        ];
        let r = Retain {
            monthly: 2,
            ..none()
        };
        assert_eq!(kept(&decide(&pts, &r, at(25, 0, 0))), vec![3, 4]);
        let r = Retain {
            monthly: 6,
            ..none()
        };
        assert_eq!(kept(&decide(&pts, &r, at(25, 0, 0))), vec![1, 3, 4]);
    }

    #[test]
    fn pending_partial_and_failed() {
        let pts = vec![
            c(1, at(24, 9, 0), PointState::Complete),
            c(2, at(24, 9, 15), PointState::Partial),
            c(3, at(24, 9, 30), PointState::Complete),
            c(4, at(24, 9, 45), PointState::Failed),
            c(5, at(24, 10, 0), PointState::Partial),
            c(6, at(24, 10, 15), PointState::Pending),
        ];
        let v = decide(&pts, &none(), at(24, 11, 0));
        assert_eq!(kept(&v), vec![3, 4, 5, 6]);
        let two = v.iter().find(|v| v.id == PointId(2)).unwrap();
        assert!(two.prune());
        assert_eq!(
            two.reason(),
            "partial and superseded by a newer complete point"
        );
        let six = v.iter().find(|v| v.id == PointId(6)).unwrap();
        assert_eq!(six.keep, vec![Keep::InFlight]);
    }

    #[test]
    fn no_complete_point_prunes_nothing_restorable() {
        let pts = vec![
            c(1, at(24, 9, 0), PointState::Failed),
            c(2, at(24, 9, 15), PointState::Partial),
        ];
        assert_eq!(
            kept(&decide(&pts, &Retain::default(), at(24, 10, 0))),
            vec![1, 2]
        );
    }

    #[test]
    fn default_retention_over_two_days() {
        let v = decide(&two_days(), &Retain::default(), at(25, 0, 0));
        // last 8 (185..192) + hourly 24 (newest of each of the last 24 hours:
        // ids 100, 104, …, 192) + daily (96, 192); weekly and monthly add none.
        let mut want: BTreeSet<i64> = (185..=192).collect();
        want.extend((0..24).map(|h| 100 + 4 * h));
        want.insert(96);
        assert_eq!(kept(&v), want.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn pruned_points_are_not_listed_again() {
        let pts = vec![
            c(1, at(24, 9, 0), PointState::Pruned),
            c(2, at(24, 9, 15), PointState::Complete),
        ];
        let v = decide(&pts, &none(), at(24, 10, 0));
        assert_eq!(v.len(), 1);
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    const STATES: [PointState; 5] = [
        PointState::Pending,
        PointState::Complete,
        PointState::Partial,
        PointState::Failed,
        PointState::Pruned,
    ];

    fn instant() -> impl Strategy<Value = DateTime<Utc>> {
        let (min, max) = (
            DateTime::<Utc>::MIN_UTC.timestamp_millis(),
            DateTime::<Utc>::MAX_UTC.timestamp_millis(),
        );
        prop_oneof![
            (min..=max).prop_map(|ms| DateTime::from_timestamp_millis(ms).unwrap()),
            (1_700_000_000_000i64..1_900_000_000_000)
                .prop_map(|ms| DateTime::from_timestamp_millis(ms).unwrap()),
        ]
    }

    fn count() -> impl Strategy<Value = u32> {
        prop_oneof![0u32..4, Just(u32::MAX), any::<u32>()]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Any points at any times (the calendar's first and last days
        /// included), any counts: a verdict for every point not yet pruned,
        /// the newest complete and running points always kept.
        #[test]
        fn any_points_and_counts_get_a_safe_verdict(
            points in prop::collection::vec((instant(), 0..STATES.len()), 0..24),
            counts in (count(), count(), count(), count(), count()),
            now in instant(),
        ) {
            let points: Vec<Candidate> = points
                .iter()
                .enumerate()
                .map(|(i, (at, s))| Candidate { id: PointId(i as i64), at: *at, state: STATES[*s] })
                .collect();
            let (last, hourly, daily, weekly, monthly) = counts;
            let retain = Retain { last, hourly, daily, weekly, monthly };
            let verdicts = decide(&points, &retain, now);
            let live = points.iter().filter(|p| p.state != PointState::Pruned).count();
            prop_assert_eq!(verdicts.len(), live);
            let newest = points
                .iter()
                .filter(|p| p.state == PointState::Complete)
                .max_by(|a, b| a.at.cmp(&b.at).then(a.id.cmp(&b.id)));
            for v in &verdicts {
                if v.state == PointState::Pending || newest.is_some_and(|n| n.id == v.id) {
                    prop_assert!(!v.prune(), "{v:?}");
                }
                if last == u32::MAX && v.state == PointState::Complete {
                    prop_assert!(!v.prune(), "{v:?} with last = u32::MAX");
                }
                let _ = v.reason();
            }
        }
    }
}
