//! Protection status: the RPO measured, not configured. Pure: from catalog
//! rows and `now` to what `dr status` and `/metrics` say.

use crate::catalog::{Consistency, PointRecord, TickOutcome, TickRecord};
use crate::span::Span;
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

/// One policy's protection, measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyStatus {
    pub policy: String,
    pub namespace: String,
    pub rpo: Span,
    /// The newest complete point whose backups were all verified.
    pub newest_verified: Option<DateTime<Utc>>,
    pub newest_verified_id: Option<i64>,
    /// What that point's data is consistent with (`None`: not recorded).
    pub consistency: Option<Consistency>,
    /// now − newest verified point; `None` when there is none (unprotected).
    #[serde(serialize_with = "ser_opt_secs")]
    pub exposure: Option<TimeDelta>,
    /// Whether the exposure is within the RPO (false when unprotected).
    pub within_rpo: bool,
    pub last_ticks: Vec<TickRecord>,
    pub missed_or_skipped: usize,
    pub next_tick: Option<DateTime<Utc>>,
}

fn ser_opt_secs<S: serde::Serializer>(d: &Option<TimeDelta>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_f64(d.num_milliseconds() as f64 / 1000.0),
        None => s.serialize_none(),
    }
}

/// Computes a policy's status. Pure.
pub fn policy_status(
    policy: &str,
    namespace: &str,
    rpo: Span,
    newest_verified: Option<&PointRecord>,
    last_ticks: Vec<TickRecord>,
    next_tick: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> PolicyStatus {
    let at = newest_verified.and_then(|p| p.point_at);
    let exposure = at.map(|t| (now - t).max(TimeDelta::zero()));
    PolicyStatus {
        policy: policy.to_owned(),
        namespace: namespace.to_owned(),
        rpo,
        newest_verified: at,
        newest_verified_id: newest_verified.map(|p| p.id.0),
        consistency: newest_verified.and_then(|p| p.consistency),
        within_rpo: exposure.is_some_and(|e| e <= rpo.as_chrono()),
        exposure,
        missed_or_skipped: last_ticks
            .iter()
            .filter(|t| t.outcome != TickOutcome::Ran)
            .count(),
        last_ticks,
        next_tick,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{PointId, PointState};
    use chrono::TimeZone;

    fn t(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, h, m, 0).unwrap()
    }

    fn point(at: DateTime<Utc>) -> PointRecord {
        PointRecord {
            id: PointId(7),
            policy: "shop".parse().unwrap(),
            tick_at: at,
            point_at: Some(at),
            state: PointState::Complete,
            bundle_key: None,
            reason: None,
            created_at: at,
            finished_at: None,
            pruned_at: None,
            consistency: None,
        }
    }

    #[test]
    fn exposure_is_now_minus_newest_verified_point() {
        let rpo = Span::from_secs(900);
        let s = policy_status(
            "shop",
            "shop",
            rpo,
            Some(&point(t(9, 45))),
            vec![],
            None,
            t(9, 55),
        );
        assert_eq!(s.exposure, Some(TimeDelta::minutes(10)));
        assert!(s.within_rpo);
        let s = policy_status(
            "shop",
            "shop",
            rpo,
            Some(&point(t(9, 0))),
            vec![],
            None,
            t(9, 20),
        );
        assert!(!s.within_rpo, "20 minutes is over a 15-minute RPO");
        let s = policy_status("shop", "shop", rpo, None, vec![], None, t(9, 20));
        assert_eq!(s.exposure, None);
        assert!(!s.within_rpo, "no verified point: not protected");
    }

    #[test]
    fn counts_ticks_that_did_not_run() {
        let tick = |outcome| TickRecord {
            policy: "shop".parse().unwrap(),
            tick_at: t(9, 0),
            outcome,
            point_id: None,
            reason: None,
            recorded_at: t(9, 0),
        };
        let s = policy_status(
            "shop",
            "shop",
            Span::from_secs(900),
            None,
            vec![
                tick(TickOutcome::Ran),
                tick(TickOutcome::Missed),
                tick(TickOutcome::Skipped),
            ],
            None,
            t(9, 20),
        );
        assert_eq!(s.missed_or_skipped, 2);
    }
}
