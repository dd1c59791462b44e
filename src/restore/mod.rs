//! Restore planning: from a target time to the recovery point to restore and
//! its backups, with the data loss measured against the RPO.
//!
//! [`decide`] is pure (catalog rows and `now` in, a choice or a refusal out);
//! [`plan`] reads what it needs from the catalog with index seeks and calls it.
//! A target that cannot be met is refused with the recoverable window and the
//! nearest candidates: never a silent fallback to another point.

use crate::catalog::{BackupRecord, Catalog, CatalogError, PointRecord, PolicyRecord, Window};
use crate::names::{Namespace, PolicyName};
use crate::span::{Span, human};
use crate::timespec::{Target, fmt_time};
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use std::fmt;

/// A recovery point offered instead of an impossible target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    pub point_id: i64,
    pub at: DateTime<Utc>,
}

impl Candidate {
    fn of(p: &PointRecord) -> Option<Candidate> {
        p.point_at.map(|at| Candidate {
            point_id: p.id.0,
            at,
        })
    }
}

impl fmt::Display for Candidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "point {} at {}", self.point_id, fmt_time(self.at))
    }
}

fn list(c: &[Candidate]) -> String {
    c.iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

fn window_text(w: &Window) -> String {
    format!("{} .. {}", fmt_time(w.oldest), fmt_time(w.newest))
}

/// Why no plan could be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("the target was understood as {}, which is {} in the future (now is {}); the recoverable window of policy {policy} is {}; nearest candidates: {}", fmt_time(*understood), human(*understood - *now), fmt_time(*now), window_text(window), list(candidates))]
    FutureTime {
        policy: String,
        understood: DateTime<Utc>,
        now: DateTime<Utc>,
        window: Window,
        candidates: Vec<Candidate>,
    },
    #[error("the target was understood as {}, which is before the oldest complete recovery point of policy {policy}; the recoverable window is {}; nearest candidates: {}", fmt_time(*understood), window_text(window), list(candidates))]
    BeforeWindow {
        policy: String,
        understood: DateTime<Utc>,
        window: Window,
        candidates: Vec<Candidate>,
    },
    #[error(
        "policy {policy} has no complete recovery point yet; nothing can be restored (see `dr catalog list --policy {policy}`)"
    )]
    NoCompletePoint { policy: String },
    #[error("the catalog knows several policies ({}); choose one with --policy", known.join(", "))]
    PolicyRequired { known: Vec<String> },
    #[error(
        "the catalog knows no policy yet; run `dr serve` with a configuration first, or point --catalog at the right catalog"
    )]
    NoPolicies,
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

impl PlanError {
    /// Whether the user's input (time, policy) is at fault, rather than the system.
    pub fn is_input_error(&self) -> bool {
        match self {
            PlanError::Catalog(CatalogError::UnknownPolicy { .. }) => true,
            PlanError::Catalog(_) => false,
            _ => true,
        }
    }

    /// A stable machine-readable name for `--output json`.
    pub fn kind(&self) -> &'static str {
        match self {
            PlanError::FutureTime { .. } => "future_time",
            PlanError::BeforeWindow { .. } => "before_window",
            PlanError::NoCompletePoint { .. } => "no_complete_point",
            PlanError::PolicyRequired { .. } => "policy_required",
            PlanError::NoPolicies => "no_policies",
            PlanError::Catalog(CatalogError::UnknownPolicy { .. }) => "unknown_policy",
            PlanError::Catalog(_) => "catalog",
        }
    }

    /// The recoverable window and candidates, when the refusal has them.
    pub fn context(&self) -> Option<(&Window, &[Candidate])> {
        match self {
            PlanError::FutureTime {
                window, candidates, ..
            }
            | PlanError::BeforeWindow {
                window, candidates, ..
            } => Some((window, candidates)),
            _ => None,
        }
    }
}

/// What the catalog said around the target, the input of [`decide`].
#[derive(Debug, Clone, PartialEq)]
pub struct Around {
    pub window: Option<Window>,
    /// The newest complete point at or before the target instant.
    pub at_or_before: Option<PointRecord>,
    /// The oldest complete point after the target instant.
    pub after: Option<PointRecord>,
    /// The newest complete point overall.
    pub newest: Option<PointRecord>,
    /// The complete point just before the newest one.
    pub before_newest: Option<PointRecord>,
}

/// Chooses the point to restore for `target`, or refuses with reasons. Pure.
pub fn decide(
    policy: &str,
    target: Target,
    now: DateTime<Utc>,
    around: &Around,
) -> Result<PointRecord, PlanError> {
    let Some(window) = around.window else {
        return Err(PlanError::NoCompletePoint {
            policy: policy.to_owned(),
        });
    };
    let t = target.instant(now);
    if t > now {
        let candidates = [&around.newest, &around.before_newest]
            .into_iter()
            .flatten()
            .filter_map(Candidate::of)
            .collect();
        return Err(PlanError::FutureTime {
            policy: policy.to_owned(),
            understood: t,
            now,
            window,
            candidates,
        });
    }
    match &around.at_or_before {
        Some(p) => Ok(p.clone()),
        None => Err(PlanError::BeforeWindow {
            policy: policy.to_owned(),
            understood: t,
            window,
            candidates: around.after.iter().filter_map(Candidate::of).collect(),
        }),
    }
}

/// The data lost by restoring a point taken at `point_at` for a target instant `t`.
pub fn data_loss(t: DateTime<Utc>, point_at: DateTime<Utc>) -> TimeDelta {
    (t - point_at).max(TimeDelta::zero())
}

/// A restore plan: what will be restored and what it costs in data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RestorePlan {
    pub policy: PolicyName,
    pub namespace: Namespace,
    pub target: Target,
    /// The instant the target stands for.
    pub target_at: DateTime<Utc>,
    pub planned_at: DateTime<Utc>,
    pub window: Window,
    pub point: PointRecord,
    pub backups: Vec<BackupRecord>,
    /// Target instant minus the point's time.
    #[serde(serialize_with = "ser_delta_secs")]
    pub data_loss_seconds: TimeDelta,
    pub rpo: Span,
    pub within_rpo: bool,
    /// The policy's RTO, which the run is timed against.
    pub rto: Span,
    /// The next complete point after the target, if any (not chosen: it is newer).
    pub next_point: Option<Candidate>,
}

fn ser_delta_secs<S: serde::Serializer>(d: &TimeDelta, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.num_milliseconds() as f64 / 1000.0)
}

/// Picks the policy: the named one, or the only one the catalog knows.
pub async fn choose_policy(
    catalog: &Catalog,
    name: Option<&PolicyName>,
) -> Result<PolicyRecord, PlanError> {
    if let Some(n) = name {
        return Ok(catalog.policy(n.as_str()).await?);
    }
    let all = catalog.policies().await?;
    match all.len() {
        0 => Err(PlanError::NoPolicies),
        1 => Ok(all.into_iter().next().ok_or(PlanError::NoPolicies)?),
        _ => Err(PlanError::PolicyRequired {
            known: all.iter().map(|p| p.name.to_string()).collect(),
        }),
    }
}

/// Plans a restore of `policy` to `target` from the catalog.
pub async fn plan(
    catalog: &Catalog,
    policy: &PolicyRecord,
    target: Target,
    now: DateTime<Utc>,
) -> Result<RestorePlan, PlanError> {
    plan_with(catalog, policy, target, now, false).await
}

/// Like [`plan`]; with `allow_partial`, a newer `partial` point at or before
/// the target is chosen over the complete one (its completed backups are
/// restored, the rest are listed as not restorable).
pub async fn plan_with(
    catalog: &Catalog,
    policy: &PolicyRecord,
    target: Target,
    now: DateTime<Utc>,
    allow_partial: bool,
) -> Result<RestorePlan, PlanError> {
    let name = &policy.name;
    let t = target.instant(now);
    let window = catalog.window(name).await?;
    let mut around = Around {
        window,
        at_or_before: None,
        after: None,
        newest: None,
        before_newest: None,
    };
    if let Some(w) = window {
        if t > now {
            around.newest = catalog.newest_complete_at_or_before(name, w.newest).await?;
            // Nothing is before the first instant chrono knows.
            around.before_newest = match w.newest.checked_sub_signed(TimeDelta::milliseconds(1)) {
                Some(before) => catalog.newest_complete_at_or_before(name, before).await?,
                None => None,
            };
        } else {
            around.at_or_before = catalog.newest_complete_at_or_before(name, t).await?;
            around.after = catalog.oldest_complete_after(name, t).await?;
        }
    }
    let mut point = decide(name.as_str(), target, now, &around)?;
    if allow_partial
        && let Some(p) = catalog.newest_partial_at_or_before(name, t).await?
        && p.point_at > point.point_at
    {
        point = p;
    }
    let window = window.ok_or_else(|| PlanError::NoCompletePoint {
        policy: name.to_string(),
    })?;
    let point_at = point.point_at.unwrap_or(point.tick_at);
    let loss = data_loss(t, point_at);
    let backups = catalog.backups_of(point.id).await?;
    Ok(RestorePlan {
        policy: name.clone(),
        namespace: policy.namespace.clone(),
        target,
        target_at: t,
        planned_at: now,
        window,
        backups,
        data_loss_seconds: loss,
        rpo: policy.rpo,
        within_rpo: loss <= policy.rpo.as_chrono(),
        rto: policy.rto,
        next_point: around.after.as_ref().and_then(Candidate::of),
        point,
    })
}

/// The plan of a run being resumed: its own point and target time, whatever
/// the catalog holds now.
pub async fn plan_of_run(
    catalog: &Catalog,
    policy: &PolicyRecord,
    run: &crate::catalog::RunRecord,
    now: DateTime<Utc>,
) -> Result<RestorePlan, PlanError> {
    let point_id = run.point_id.ok_or(PlanError::NoCompletePoint {
        policy: policy.name.to_string(),
    })?;
    plan_of_point(catalog, policy, point_id, run.target_at, now).await
}

/// The plan of a given recovery point (a drill's `--point`, a resumed run);
/// `target_at` defaults to the point's own time (no data loss).
pub async fn plan_of_point(
    catalog: &Catalog,
    policy: &PolicyRecord,
    point_id: crate::catalog::PointId,
    target_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<RestorePlan, PlanError> {
    let point = catalog.point(point_id).await?;
    if point.policy != policy.name {
        return Err(PlanError::Catalog(CatalogError::NotFound {
            what: "recovery point of this policy",
            id: point_id.0,
        }));
    }
    let window = catalog.window(&policy.name).await?.unwrap_or(Window {
        oldest: point.tick_at,
        newest: point.tick_at,
    });
    let point_at = point.point_at.unwrap_or(point.tick_at);
    let t = target_at.unwrap_or(point_at);
    let loss = data_loss(t, point_at);
    Ok(RestorePlan {
        policy: policy.name.clone(),
        namespace: policy.namespace.clone(),
        target: Target::At(t),
        target_at: t,
        planned_at: now,
        window,
        backups: catalog.backups_of(point.id).await?,
        data_loss_seconds: loss,
        rpo: policy.rpo,
        within_rpo: loss <= policy.rpo.as_chrono(),
        rto: policy.rto,
        next_point: None,
        point,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{PointId, PointState};
    use chrono::TimeZone;

    fn t(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, h, m, 0).unwrap()
    }
    fn point(id: i64, at: DateTime<Utc>) -> PointRecord {
        PointRecord {
            id: PointId(id),
            policy: "shop".parse().unwrap(),
            tick_at: at,
            point_at: Some(at),
            state: PointState::Complete,
            bundle_key: None,
            reason: None,
            created_at: at,
            finished_at: Some(at),
            pruned_at: None,
            consistency: None,
        }
    }
    fn around(before: Option<PointRecord>, after: Option<PointRecord>) -> Around {
        Around {
            window: Some(Window {
                oldest: t(9, 0),
                newest: t(11, 0),
            }),
            at_or_before: before,
            after,
            newest: Some(point(9, t(11, 0))),
            before_newest: Some(point(8, t(10, 45))),
        }
    }

    #[test]
    fn chooses_the_point_at_or_before_the_target() {
        let now = t(12, 0);
        let a = around(Some(point(3, t(9, 30))), Some(point(4, t(9, 45))));
        let got = decide("shop", Target::At(t(9, 40)), now, &a).unwrap();
        assert_eq!(got.id, PointId(3));
        assert_eq!(data_loss(t(9, 40), t(9, 30)), TimeDelta::minutes(10));
    }

    #[test]
    fn future_is_refused_with_window_and_newest_candidates() {
        let e = decide("shop", Target::At(t(13, 0)), t(12, 0), &around(None, None)).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, PlanError::FutureTime { .. }));
        assert!(
            msg.contains("2026-11-24T13:00:00Z") && msg.contains("1h in the future"),
            "{msg}"
        );
        assert!(
            msg.contains("2026-11-24T09:00:00Z .. 2026-11-24T11:00:00Z"),
            "{msg}"
        );
        assert!(
            msg.contains("point 9 at 2026-11-24T11:00:00Z; point 8 at"),
            "{msg}"
        );
    }

    #[test]
    fn before_window_is_refused_with_the_oldest_candidate() {
        let e = decide(
            "shop",
            Target::At(t(8, 0)),
            t(12, 0),
            &around(None, Some(point(1, t(9, 0)))),
        )
        .unwrap_err();
        assert_eq!(e.kind(), "before_window");
        assert!(
            e.to_string().contains("point 1 at 2026-11-24T09:00:00Z"),
            "{e}"
        );
    }

    #[test]
    fn no_points_is_refused() {
        let a = Around {
            window: None,
            at_or_before: None,
            after: None,
            newest: None,
            before_newest: None,
        };
        let e = decide("shop", Target::Latest, t(12, 0), &a).unwrap_err();
        assert_eq!(e.kind(), "no_complete_point");
    }

    #[test]
    fn latest_is_now() {
        let a = around(Some(point(9, t(11, 0))), None);
        let got = decide("shop", Target::Latest, t(12, 0), &a).unwrap();
        assert_eq!(got.id, PointId(9));
    }

    #[test]
    fn data_loss_never_negative() {
        assert_eq!(data_loss(t(9, 0), t(9, 5)), TimeDelta::zero());
    }
}
