//! The tick ledger: every firing of a policy's schedule recorded once, as
//! `ran` (with its point), `skipped` or `missed`; and the slot that lets one
//! firing of a policy run at a time.

use super::{Daemon, MISSED_CAP};
use crate::catalog::{CatalogError, PointId, TickOutcome};
use crate::config::PolicyConfig;
use crate::schedule;
use chrono::{DateTime, TimeDelta, Utc};
use std::sync::Arc;

/// Why firings before this replica took the policy are `missed`.
pub(super) const NO_LEADER: &str =
    "no replica of dr led the policy (dr was not running, or its leader was lost)";
/// Why firings that never came while dr ran are `missed`.
pub(super) const NO_FIRING: &str =
    "the firing never came (dr was paused or its scheduler fell behind)";

/// The firing a policy is running, if any.
pub(super) type Slot = Arc<std::sync::Mutex<Option<DateTime<Utc>>>>;

/// What a firing finds in its policy's slot.
pub(super) enum Claim {
    /// Free: this firing runs; the slot is freed when the guard drops.
    Mine(Claimed),
    /// The same firing is running already (delivered twice).
    Same,
    /// Another firing is running.
    Busy,
}

/// A policy's slot held by one firing.
pub(super) struct Claimed(Slot);

impl Drop for Claimed {
    fn drop(&mut self) {
        if let Ok(mut s) = self.0.lock() {
            *s = None;
        }
    }
}

pub(super) fn claim(slot: &Slot, tick: DateTime<Utc>) -> Claim {
    let Ok(mut s) = slot.lock() else {
        return Claim::Busy;
    };
    match *s {
        Some(t) if t == tick => Claim::Same,
        Some(_) => Claim::Busy,
        None => {
            *s = Some(tick);
            Claim::Mine(Claimed(slot.clone()))
        }
    }
}

impl Daemon {
    /// Records `outcome` for a firing; counted in the metrics only when
    /// this call recorded it (the first record of a firing wins).
    pub(super) async fn record(
        &self,
        p: &PolicyConfig,
        tick: DateTime<Utc>,
        outcome: TickOutcome,
        point: Option<PointId>,
        reason: Option<&str>,
    ) -> Result<bool, CatalogError> {
        let now = self.app.clock.now();
        let recorded = self
            .protect
            .catalog
            .record_tick(&p.name, tick, outcome, point, reason, now)
            .await?;
        if recorded {
            self.metrics.tick(p.name.as_str(), outcome);
        }
        Ok(recorded)
    }

    /// Records every firing of `p` after the newest recorded one and at or
    /// before `until`: `ran` where a point was begun for it, else `missed`
    /// for `reason`. A point whose tick a crash cut short before its record
    /// is recorded `ran` first (also one older than the newest record, or
    /// when the ledger is still empty). Returns how many were missed.
    pub(super) async fn record_unrecorded(
        &self,
        p: &PolicyConfig,
        until: DateTime<Utc>,
        reason: &str,
    ) -> Result<usize, CatalogError> {
        let catalog = &self.protect.catalog;
        let last = catalog.last_recorded_tick(&p.name).await?;
        // A day back from the newest record is far more than a tick lasts.
        let since = last
            .and_then(|l| l.checked_sub_signed(TimeDelta::days(1)))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let begun = catalog.unrecorded_points(&p.name, since).await?;
        for (t, id) in begun.range(..=until) {
            self.record(p, *t, TickOutcome::Ran, Some(*id), None)
                .await?;
        }
        let after = match (last, begun.keys().next()) {
            (Some(l), _) => l,
            (None, Some(first)) => *first - TimeDelta::milliseconds(1),
            (None, None) => return Ok(0),
        };
        let firings = schedule::firings(&p.schedule, after, until, MISSED_CAP);
        if firings.is_empty() {
            return Ok(0);
        }
        let points = catalog.points_of_ticks(&p.name, after, until).await?;
        let mut missed = 0;
        for t in firings {
            match points.get(&t) {
                Some(id) => self.record(p, t, TickOutcome::Ran, Some(*id), None).await?,
                None => {
                    missed += 1;
                    self.record(p, t, TickOutcome::Missed, None, Some(reason))
                        .await?
                }
            };
        }
        if missed > 0 {
            tracing::warn!(policy = %p.name, count = missed, reason, "ticks missed");
        }
        Ok(missed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_firing_delivered_twice_runs_once_and_another_is_busy() {
        let slot = Slot::default();
        let t = |s| Utc.with_ymd_and_hms(2026, 12, 3, 9, 0, s).single();
        let (Some(t0), Some(t5)) = (t(0), t(5)) else {
            panic!("valid times");
        };
        let Claim::Mine(guard) = claim(&slot, t0) else {
            panic!("a free slot is claimed");
        };
        assert!(matches!(claim(&slot, t0), Claim::Same));
        assert!(matches!(claim(&slot, t5), Claim::Busy));
        drop(guard);
        assert!(matches!(claim(&slot, t5), Claim::Mine(_)));
    }
}
