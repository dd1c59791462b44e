//! The report's figures as pure functions of their inputs and `now`: RPO
//! exposure and compliance ([`rpo_stats`]), RTO from drills and restores
//! ([`rto_stats`]), and MTBF, MTTR and availability from incidents
//! ([`availability`]). Nothing here reads the catalog or formats text.
//!
//! Definitions (printed under every report): n = incidents that began in the
//! window; downtime D = their durations clipped to the window (an open
//! incident counts up to the window's end); uptime U = window − D;
//! MTBF = U / n; MTTR = D / n; availability = U / (U + D). With n = 0 there
//! is not enough data, and no figure is made up.

use crate::catalog::{Consistency, RunKind, RunState};
use crate::runbook::summary::{RunSummary, Verdict};
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

/// The definitions printed under the report.
pub const DEFINITIONS: &str = "n = incidents that began in the window; downtime D = their durations clipped to the window (an open incident counts up to the window's end); uptime U = window - D; MTBF = U / n; MTTR = D / n; availability = U / (U + D). Exposure at time t = t - the time of the newest complete, verified recovery point available at t.";

/// A duration in seconds, to the millisecond.
pub(crate) fn secs(d: TimeDelta) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

/// MTBF, MTTR and availability over a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Availability {
    /// Incidents that began in the window: what the figures rest on.
    pub failures: usize,
    pub window_seconds: f64,
    pub downtime_seconds: f64,
    pub uptime_seconds: f64,
    pub mtbf_seconds: Option<f64>,
    pub mttr_seconds: Option<f64>,
    pub availability: Option<f64>,
}

/// Computes availability from incidents (opened, resolved-or-open) over
/// [since, until]. Pure.
pub fn availability(
    incidents: &[(DateTime<Utc>, Option<DateTime<Utc>>)],
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Availability {
    let window = (until - since).max(TimeDelta::zero());
    let began: Vec<_> = incidents
        .iter()
        .filter(|(o, _)| *o >= since && *o < until)
        .collect();
    let n = began.len();
    let d = began
        .iter()
        .map(|(o, r)| {
            let end = r.unwrap_or(until).min(until);
            (end - *o).max(TimeDelta::zero())
        })
        .fold(TimeDelta::zero(), |a, b| a + b)
        .min(window);
    let u = window - d;
    let (mtbf, mttr, avail) = if n == 0 {
        (None, None, None)
    } else {
        let total = secs(u) + secs(d);
        (
            Some(secs(u) / n as f64),
            Some(secs(d) / n as f64),
            (total > 0.0).then(|| secs(u) / total),
        )
    };
    Availability {
        failures: n,
        window_seconds: secs(window),
        downtime_seconds: secs(d),
        uptime_seconds: secs(u),
        mtbf_seconds: mtbf,
        mttr_seconds: mttr,
        availability: avail,
    }
}

/// RPO compliance over a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RpoStats {
    pub rpo_seconds: f64,
    /// now − newest complete verified point (None: no point yet).
    pub exposure_now_seconds: Option<f64>,
    /// The worst exposure in the window (None: no point before the window ended).
    pub worst_exposure_seconds: Option<f64>,
    /// Share of the window during which exposure ≤ RPO (time without any
    /// point counts as outside).
    pub within_rpo_percent: f64,
    pub missed_ticks: i64,
    pub skipped_ticks: i64,
    pub failed_points: i64,
    pub partial_points: i64,
    /// What the newest verified point's data is consistent with (None: no
    /// point, or not recorded).
    pub consistency: Option<Consistency>,
    /// Exposure over time (seconds), for the chart: (time, exposure).
    pub series: Vec<(DateTime<Utc>, f64)>,
}

/// The moments the newest point changed: (available time, point time),
/// from the verified points as (point time, available time). A point is
/// available no earlier than its own time.
fn availability_events(
    points: &[(DateTime<Utc>, DateTime<Utc>)],
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let mut events = Vec::new();
    let mut best: Option<DateTime<Utc>> = None;
    let mut sorted = points.to_vec();
    sorted.sort_by_key(|(p, a)| (*a, *p));
    for (p, a) in sorted {
        let a = a.max(p);
        if best.is_none_or(|b| p > b) {
            best = Some(p);
            events.push((a, p));
        }
    }
    events
}

/// The newest point time available at `t`.
fn newest_at(events: &[(DateTime<Utc>, DateTime<Utc>)], t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    events
        .iter()
        .take_while(|(a, _)| *a <= t)
        .last()
        .map(|(_, p)| *p)
}

/// Computes RPO figures from the verified points as (point time, available
/// time), sorted by available time. Pure.
pub fn rpo_stats(
    points: &[(DateTime<Utc>, DateTime<Utc>)],
    rpo: TimeDelta,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> RpoStats {
    let events = availability_events(points);
    let newest_at = |t: DateTime<Utc>| newest_at(&events, t);
    let exposure_now = newest_at(now).map(|p| secs(now - p));
    // Walk the window in pieces between availability events.
    let mut cuts: Vec<DateTime<Utc>> = vec![since];
    cuts.extend(
        events
            .iter()
            .map(|(a, _)| *a)
            .filter(|a| *a > since && *a < until),
    );
    cuts.push(until);
    let mut within = TimeDelta::zero();
    let mut worst: Option<f64> = None;
    let mut series = Vec::new();
    for w in cuts.windows(2) {
        let (a, b) = (w[0], w[1]);
        if b <= a {
            continue;
        }
        if let Some(p) = newest_at(a) {
            let ok_until = (p + rpo).min(b);
            if ok_until > a {
                within += ok_until - a;
            }
            let e_end = secs(b - p);
            worst = Some(worst.map_or(e_end, |x: f64| x.max(e_end)));
            series.push((a, secs(a - p)));
            series.push((b, e_end));
        }
    }
    let window = until - since;
    RpoStats {
        rpo_seconds: secs(rpo),
        exposure_now_seconds: exposure_now,
        worst_exposure_seconds: worst,
        within_rpo_percent: if window > TimeDelta::zero() {
            100.0 * secs(within) / secs(window)
        } else {
            0.0
        },
        missed_ticks: 0,
        skipped_ticks: 0,
        failed_points: 0,
        partial_points: 0,
        consistency: None,
        series,
    }
}

/// Last, median and worst of some durations.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Durations {
    pub count: usize,
    pub last_seconds: Option<f64>,
    pub median_seconds: Option<f64>,
    pub worst_seconds: Option<f64>,
}

fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    Some(if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    })
}

/// Durations newest first.
pub fn durations(newest_first: &[f64]) -> Durations {
    Durations {
        count: newest_first.len(),
        last_seconds: newest_first.first().copied(),
        median_seconds: median(newest_first),
        worst_seconds: newest_first.iter().copied().reduce(f64::max),
    }
}

/// One stage over the drills and restores considered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageStat {
    pub name: String,
    pub budget_seconds: f64,
    pub median_seconds: Option<f64>,
    pub worst_seconds: Option<f64>,
    pub over_budget: usize,
    pub runs: usize,
}

/// RTO figures from the runs of a policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RtoStats {
    pub rto_seconds: f64,
    /// Successful drills (their time to a verified restore), last N.
    pub drills: Durations,
    pub drills_failed: usize,
    /// Successful restores, last N.
    pub restores: Durations,
    pub restores_failed: usize,
    pub stages: Vec<StageStat>,
    /// The stage that most often went over its budget.
    pub most_over_budget: Option<String>,
    /// Forecast of a restore now: median and worst of the last N successful
    /// drills and restores.
    pub forecast_median_seconds: Option<f64>,
    pub forecast_worst_seconds: Option<f64>,
    pub forecast_within_rto: Option<bool>,
}

/// Each stage's timings over `runs`, in the order the stages first appear;
/// the teardown is not a stage of the recovery and is left out.
fn stage_stats<'a>(runs: impl Iterator<Item = &'a RunSummary>) -> Vec<StageStat> {
    let mut stage_names: Vec<(String, f64)> = Vec::new();
    let mut per: BTreeMap<String, (Vec<f64>, usize, usize)> = BTreeMap::new();
    for r in runs {
        for s in &r.stages {
            if s.name == crate::drill::TEARDOWN {
                continue;
            }
            if !stage_names.iter().any(|(n, _)| n == &s.name) {
                stage_names.push((s.name.clone(), s.budget_seconds));
            }
            let e = per.entry(s.name.clone()).or_default();
            if let Some(a) = s.actual_seconds
                && matches!(s.verdict, Verdict::Within | Verdict::Over)
            {
                e.0.push(a);
                e.2 += 1;
            }
            if s.verdict == Verdict::Over {
                e.1 += 1;
            }
        }
    }
    stage_names
        .iter()
        .map(|(name, budget)| {
            let (vals, over, count) = per.get(name).cloned().unwrap_or_default();
            StageStat {
                name: name.clone(),
                budget_seconds: *budget,
                median_seconds: median(&vals),
                worst_seconds: vals.iter().copied().reduce(f64::max),
                over_budget: over,
                runs: count,
            }
        })
        .collect()
}

/// Computes RTO figures from run summaries (newest first), using the last
/// `n` of each kind. Pure.
pub fn rto_stats(runs: &[RunSummary], rto: TimeDelta, n: usize) -> RtoStats {
    let finished = |kind: RunKind| -> Vec<&RunSummary> {
        runs.iter()
            .filter(|r| r.kind == kind && r.state != RunState::Running)
            .take(n)
            .collect()
    };
    let drills = finished(RunKind::Drill);
    let restores = finished(RunKind::Restore);
    let ok = |v: &[&RunSummary]| -> Vec<f64> {
        v.iter()
            .filter(|r| r.state == RunState::Succeeded)
            .map(|r| r.total_seconds)
            .collect()
    };
    let d_ok = ok(&drills);
    let r_ok = ok(&restores);
    let stages = stage_stats(drills.iter().chain(restores.iter()).copied());
    let most_over_budget = stages
        .iter()
        .filter(|s| s.over_budget > 0)
        .max_by_key(|s| s.over_budget)
        .map(|s| s.name.clone());
    let all: Vec<f64> = d_ok.iter().chain(r_ok.iter()).copied().collect();
    let forecast_median = median(&all);
    let forecast_worst = all.iter().copied().reduce(f64::max);
    RtoStats {
        rto_seconds: secs(rto),
        drills: durations(&d_ok),
        drills_failed: drills.len() - d_ok.len(),
        restores: durations(&r_ok),
        restores_failed: restores.len() - r_ok.len(),
        stages,
        most_over_budget,
        forecast_median_seconds: forecast_median,
        forecast_worst_seconds: forecast_worst,
        forecast_within_rto: forecast_worst.map(|w| w <= secs(rto)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn d(day: u32, h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, h, m, 0).unwrap()
    }

    #[test]
    fn availability_by_hand() {
        // A 10-day window; incidents of 2 h and 30 min, one of 1 h that began
        // before the window (not counted), and one still open for the last 90 min.
        let since = d(1, 0, 0);
        let until = d(11, 0, 0);
        let incidents = vec![
            (d(2, 10, 0), Some(d(2, 12, 0))),
            (d(5, 8, 0), Some(d(5, 8, 30))),
            (d(1, 0, 0) - TimeDelta::hours(1), Some(d(1, 0, 30))),
            (d(10, 22, 30), None),
        ];
        let a = availability(&incidents, since, until);
        assert_eq!(a.failures, 3);
        // D = 2h + 30m + 1h30m = 4h = 14400 s; window 864000 s; U = 849600 s.
        assert_eq!(a.downtime_seconds, 14_400.0);
        assert_eq!(a.uptime_seconds, 849_600.0);
        assert_eq!(a.mtbf_seconds, Some(283_200.0)); // U / 3
        assert_eq!(a.mttr_seconds, Some(4_800.0)); // D / 3 = 80 min
        let av = a.availability.unwrap();
        assert!((av - 849_600.0 / 864_000.0).abs() < 1e-12, "{av}"); // 98.3333…%
        // MTBF / (MTBF + MTTR) is the same figure.
        assert!((av - 283_200.0 / (283_200.0 + 4_800.0)).abs() < 1e-12);
    }

    #[test]
    fn no_incidents_is_not_enough_data() {
        let a = availability(&[], d(1, 0, 0), d(2, 0, 0));
        assert_eq!(a.failures, 0);
        assert_eq!(
            (a.mtbf_seconds, a.mttr_seconds, a.availability),
            (None, None, None)
        );
    }

    #[test]
    fn rpo_exposure_by_hand() {
        // RPO 15 min. Points at 10:00 (available 10:02), 10:15 (10:17), then a
        // gap until 11:00 (11:03). Window 10:05 .. 11:10, now 11:10.
        let pts = vec![
            (d(1, 10, 0), d(1, 10, 2)),
            (d(1, 10, 15), d(1, 10, 17)),
            (d(1, 11, 0), d(1, 11, 3)),
        ];
        let s = rpo_stats(
            &pts,
            TimeDelta::minutes(15),
            d(1, 10, 5),
            d(1, 11, 10),
            d(1, 11, 10),
        );
        assert_eq!(s.exposure_now_seconds, Some(600.0)); // 11:10 - 11:00
        // Worst: just before 11:03, exposure = 11:03 - 10:15 = 48 min.
        assert_eq!(s.worst_exposure_seconds, Some(48.0 * 60.0));
        // Within RPO: 10:05..10:15 (10 min, point 10:00), 10:17..10:30
        // (13 min, point 10:15), 11:03..11:10 (7 min, point 11:00) = 30 of 65 min.
        assert!(
            (s.within_rpo_percent - 100.0 * 30.0 / 65.0).abs() < 1e-9,
            "{}",
            s.within_rpo_percent
        );
        assert_eq!(s.series.first(), Some(&(d(1, 10, 5), 300.0)));
    }

    #[test]
    fn rpo_without_points_is_all_outside() {
        let s = rpo_stats(
            &[],
            TimeDelta::minutes(15),
            d(1, 0, 0),
            d(1, 1, 0),
            d(1, 1, 0),
        );
        assert_eq!(s.exposure_now_seconds, None);
        assert_eq!(s.worst_exposure_seconds, None);
        assert_eq!(s.within_rpo_percent, 0.0);
    }

    fn summary(
        kind: &str,
        state: &str,
        total: f64,
        stages: &[(&str, f64, f64, Verdict)],
    ) -> RunSummary {
        RunSummary {
            run_id: 1,
            kind: kind.parse().expect("a run kind"),
            policy: "shop".into(),
            point_id: None,
            target_namespace: "x".into(),
            state: state.parse().expect("a run state"),
            started_at: d(1, 0, 0),
            finished_at: None,
            total_seconds: total,
            rto_seconds: 3600.0,
            rto_verdict: Verdict::Within,
            data_loss_seconds: 0.0,
            rpo_seconds: 900.0,
            within_rpo: true,
            stages: stages
                .iter()
                .map(|(n, b, a, v)| crate::runbook::summary::StageSummary {
                    name: (*n).into(),
                    budget_seconds: *b,
                    actual_seconds: Some(*a),
                    verdict: *v,
                    steps: vec![],
                })
                .collect(),
            error: None,
        }
    }

    #[test]
    fn rto_by_hand() {
        use Verdict::*;
        let runs = vec![
            summary(
                "drill",
                "succeeded",
                600.0,
                &[
                    ("data", 300.0, 400.0, Over),
                    ("verification", 300.0, 200.0, Within),
                ],
            ),
            summary("drill", "failed", 100.0, &[("data", 300.0, 100.0, Failed)]),
            summary(
                "drill",
                "succeeded",
                400.0,
                &[
                    ("data", 300.0, 350.0, Over),
                    ("verification", 300.0, 50.0, Within),
                ],
            ),
            summary(
                "restore",
                "succeeded",
                900.0,
                &[
                    ("data", 300.0, 200.0, Within),
                    ("verification", 300.0, 400.0, Over),
                ],
            ),
        ];
        let t = rto_stats(&runs, TimeDelta::hours(1), 10);
        assert_eq!(t.drills.count, 2);
        assert_eq!(t.drills_failed, 1);
        assert_eq!(t.drills.last_seconds, Some(600.0));
        assert_eq!(t.drills.median_seconds, Some(500.0));
        assert_eq!(t.drills.worst_seconds, Some(600.0));
        assert_eq!(t.restores.last_seconds, Some(900.0));
        let data = &t.stages[0];
        assert_eq!(
            (data.name.as_str(), data.over_budget, data.runs),
            ("data", 2, 3)
        );
        assert_eq!(data.median_seconds, Some(350.0));
        assert_eq!(t.most_over_budget.as_deref(), Some("data"));
        assert_eq!(t.forecast_median_seconds, Some(600.0)); // of 600, 400, 900
        assert_eq!(t.forecast_worst_seconds, Some(900.0));
        assert_eq!(t.forecast_within_rto, Some(true));
        // Only the last N count.
        assert_eq!(rto_stats(&runs, TimeDelta::hours(1), 1).drills.count, 1);
    }
}
