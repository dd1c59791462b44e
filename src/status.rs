//! Protection status: the RPO measured, not configured. Pure: from catalog
//! rows and `now` to what `dr status` and `/metrics` say.

use crate::catalog::{Consistency, PointRecord, TickOutcome, TickRecord};
use crate::span::Span;
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

/// What a policy's protection comes to now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    WithinRpo,
    OverRpo,
    /// No verified point yet.
    Unprotected,
    /// The newest verified point is dated after now (a clock was stepped):
    /// the exposure is not known.
    PointAfterNow,
    /// The configuration no longer lists the policy (removed or renamed):
    /// its RPO no longer applies, and its exposure only grows.
    NotConfigured,
}

impl Verdict {
    /// The verdict as `dr status` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::WithinRpo => "within RPO",
            Verdict::OverRpo => "OVER RPO",
            Verdict::Unprotected => "UNPROTECTED",
            Verdict::PointAfterNow => "POINT AFTER NOW",
            Verdict::NotConfigured => "not configured",
        }
    }
}

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
    /// now − newest verified point; `None` when there is none (unprotected)
    /// or it is dated after now.
    #[serde(serialize_with = "ser_opt_secs")]
    pub exposure: Option<TimeDelta>,
    /// How far after now the newest verified point is dated, if it is (a
    /// clock was stepped): then the exposure is not known.
    #[serde(serialize_with = "ser_opt_secs")]
    pub point_after_now: Option<TimeDelta>,
    /// Whether the exposure is within the RPO (false when not known).
    pub within_rpo: bool,
    /// Whether the configuration `dr status` ran with lists the policy
    /// (`None`: it ran without one).
    pub configured: Option<bool>,
    pub verdict: Verdict,
    pub last_ticks: Vec<TickRecord>,
    /// Ticks among `last_ticks` that did not run.
    pub missed_or_skipped: usize,
    pub next_tick: Option<DateTime<Utc>>,
    /// How its points keep its Secrets, from the configuration `dr status`
    /// ran with (`None`: not known).
    pub secrets: Option<crate::config::SecretsMode>,
}

fn ser_opt_secs<S: serde::Serializer>(d: &Option<TimeDelta>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_f64(d.num_milliseconds() as f64 / 1000.0),
        None => s.serialize_none(),
    }
}

/// The verdict of a status from its figures. Pure.
fn verdict(s: &PolicyStatus) -> Verdict {
    if s.configured == Some(false) {
        Verdict::NotConfigured
    } else if s.point_after_now.is_some() {
        Verdict::PointAfterNow
    } else if s.exposure.is_none() {
        Verdict::Unprotected
    } else if s.within_rpo {
        Verdict::WithinRpo
    } else {
        Verdict::OverRpo
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
    // A point dated after now gives no exposure: clamping it to zero would
    // call a policy within its RPO on a clock nobody can trust.
    let point_after_now = at.filter(|t| *t > now).map(|t| t - now);
    let exposure = at.filter(|t| *t <= now).map(|t| now - t);
    let mut s = PolicyStatus {
        policy: policy.to_owned(),
        namespace: namespace.to_owned(),
        rpo,
        newest_verified: at,
        newest_verified_id: newest_verified.map(|p| p.id.0),
        consistency: newest_verified.and_then(|p| p.consistency),
        within_rpo: exposure.is_some_and(|e| e <= rpo.as_chrono()),
        exposure,
        point_after_now,
        configured: None,
        verdict: Verdict::Unprotected,
        missed_or_skipped: last_ticks
            .iter()
            .filter(|t| t.outcome != TickOutcome::Ran)
            .count(),
        last_ticks,
        next_tick,
        secrets: None,
    };
    s.verdict = verdict(&s);
    s
}

impl PolicyStatus {
    /// The same status, knowing whether the configuration lists the policy.
    pub fn configured(mut self, listed: bool) -> PolicyStatus {
        self.configured = Some(listed);
        self.verdict = verdict(&self);
        self
    }

    /// The same status, knowing how the configuration keeps its Secrets.
    pub fn secrets(mut self, mode: crate::config::SecretsMode) -> PolicyStatus {
        self.secrets = Some(mode);
        self
    }

    /// What its Secrets need said beside the table, if anything.
    pub fn secrets_note(&self) -> Option<String> {
        let note = self.secrets?.note()?;
        Some(format!("{}: {note}", self.policy))
    }

    /// What the verdict needs said beside the table, if anything.
    pub fn note(&self) -> Option<String> {
        match self.verdict {
            Verdict::PointAfterNow => Some(format!(
                "{}: the newest verified point ({}) is dated {} after now: a clock was stepped; exposure unknown",
                self.policy,
                self.newest_verified
                    .map_or_else(|| "-".into(), crate::timespec::fmt_time),
                crate::span::human(self.point_after_now.unwrap_or_default()),
            )),
            Verdict::NotConfigured => Some(format!(
                "{}: not in the configuration (removed or renamed); its RPO no longer applies",
                self.policy
            )),
            _ => None,
        }
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

    #[test]
    fn trap_point_dated_after_now() {
        // A clock stepped back: the newest verified point reads 10 min after
        // now. Before: exposure 0 s, "within RPO"; after: no exposure, the
        // verdict says why, and a note says how far ahead.
        let s = policy_status(
            "shop",
            "shop",
            Span::from_secs(900),
            Some(&point(t(9, 30))),
            vec![],
            None,
            t(9, 20),
        );
        assert_eq!(s.exposure, None);
        assert_eq!(s.point_after_now, Some(TimeDelta::minutes(10)));
        assert!(!s.within_rpo);
        assert_eq!(s.verdict, Verdict::PointAfterNow);
        let note = s.note().unwrap();
        assert!(note.contains("10m") && note.contains("after now"), "{note}");
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["point_after_now"], 600.0);
        assert_eq!(json["verdict"], "point_after_now");
    }

    #[test]
    fn trap_policy_no_longer_configured() {
        // Removed from the configuration a day ago: its exposure only grows.
        // Before: "OVER RPO" forever; after: "not configured", exposure kept.
        let s = policy_status(
            "old",
            "old",
            Span::from_secs(900),
            Some(&point(t(9, 0))),
            vec![],
            None,
            t(9, 0) + TimeDelta::days(1),
        )
        .configured(false);
        assert_eq!(s.verdict, Verdict::NotConfigured);
        assert_eq!(s.exposure, Some(TimeDelta::days(1)));
        assert!(s.note().unwrap().contains("not in the configuration"));
        // Listed: the usual verdict.
        let s = policy_status(
            "shop",
            "shop",
            Span::from_secs(900),
            Some(&point(t(9, 0))),
            vec![],
            None,
            t(9, 10),
        )
        .configured(true);
        assert_eq!((s.verdict, s.note()), (Verdict::WithinRpo, None));
    }

    #[test]
    fn trap_policy_configured_with_no_history() {
        // Just added: no tick, no point. Unprotected, and nothing counted.
        let s = policy_status(
            "new",
            "new",
            Span::from_secs(900),
            None,
            vec![],
            None,
            t(9, 0),
        )
        .configured(true);
        assert_eq!(s.verdict, Verdict::Unprotected);
        assert_eq!(
            (s.exposure, s.point_after_now, s.missed_or_skipped),
            (None, None, 0)
        );
    }
}
