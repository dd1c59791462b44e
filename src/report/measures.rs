//! The report's figures as pure functions of their inputs and `now`: RPO
//! exposure and compliance ([`rpo_stats`]), RTO from drills and restores
//! ([`rto_stats`]), and MTBF, MTTR and availability from incidents
//! ([`availability`]). Nothing here reads the catalog or formats text.
//!
//! A figure that its inputs cannot support is left out with a [`Why`], never
//! made up: no percentage over an empty span, no negative duration, no time
//! after `now` measured. The definitions printed under every report are
//! [`DEFINITIONS`].

use crate::catalog::{Consistency, RunKind, RunState};
use crate::runbook::summary::{RunSummary, Verdict};
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

/// The definitions printed under the report (and in the README's report
/// section: keep both true to the code below).
pub const DEFINITIONS: &str = "The window runs from --since to --until, or to now if that is earlier: time that has not happened is not measured. \
Incidents: an incident is open from its opening to its resolution (still open: to the window's end). n = incidents that began in the window; downtime D = the time in the window during which at least one incident was open (one that began before the window counts for its part inside it; overlapping incidents count once); uptime U = window - D; MTBF = U / n; MTTR = the mean time the n incidents were open in the window; availability = U / (U + D), U + D being the window. With n = 0, MTBF and MTTR are not given; with no incident open in the window, neither is availability. \
RPO: exposure at time t = t - the time of the newest complete, verified recovery point available at t (no point yet: outside the RPO). Exposure now = now - the newest verified point (not given if that point is dated after now: a clock was stepped). A policy is protected from its first tick (its first recorded tick or point; for a policy no longer configured, until its last); worst exposure and time within RPO are measured over the protected part of the window only, and time within RPO is not given when that part is shorter than one RPO. Missed and skipped ticks, and failed and partial points, are counted by tick time over that same part. \
RTO: the last 10 finished drills and restores that started in the window; a run whose recorded duration is negative (a clock was stepped during it) is left out.";

/// A duration in seconds, to the millisecond.
pub(crate) fn secs(d: TimeDelta) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

/// Why a figure is left out rather than made up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Why {
    /// The window's start is not before its end.
    EmptyWindow,
    /// The window starts at or after now: none of it has happened.
    WindowAfterNow,
    /// No tick or point of the policy is recorded.
    NeverProtected,
    /// The policy's first tick came at or after the window's end (or now).
    ProtectedAfterWindow,
    /// The last tick of a policy no longer configured came before the window.
    ProtectionEndedBeforeWindow,
    /// The protected part of the window is shorter than one RPO.
    LessThanOneRpo,
    /// No verified recovery point was available.
    NoVerifiedPoint,
    /// The newest verified point is dated after now.
    PointAfterNow,
    /// No incident was open in the window.
    NoIncident,
    /// No incident began in the window.
    NoFailure,
}

impl Why {
    /// The reason in words, as the renderers print it.
    pub fn text(self) -> &'static str {
        match self {
            Why::EmptyWindow => "the window is empty",
            Why::WindowAfterNow => "the window begins after now",
            Why::NeverProtected => "no tick recorded for this policy yet",
            Why::ProtectedAfterWindow => "the policy's first tick came after the window",
            Why::ProtectionEndedBeforeWindow => {
                "the policy's last tick came before the window (no longer configured)"
            }
            Why::LessThanOneRpo => "less than one RPO of protected time in the window",
            Why::NoVerifiedPoint => "no verified recovery point",
            Why::PointAfterNow => {
                "the newest verified point is dated after now (a clock was stepped)"
            }
            Why::NoIncident => "no incident in the window",
            Why::NoFailure => "no incident began in the window",
        }
    }
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.text())
    }
}

/// The part of [since, until] that has happened: [since, min(until, now)].
pub fn measured_window(
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), Why> {
    if until <= since {
        Err(Why::EmptyWindow)
    } else if now <= since {
        Err(Why::WindowAfterNow)
    } else {
        Ok((since, until.min(now)))
    }
}

/// MTBF, MTTR and availability over a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Availability {
    /// Incidents that began in the window (n): what MTBF and MTTR rest on.
    pub failures: usize,
    /// Incidents open at some time in the window, those that began before
    /// it included: what availability rests on.
    pub incidents: usize,
    /// The window measured: [since, min(until, now)].
    pub window_seconds: f64,
    pub downtime_seconds: f64,
    pub uptime_seconds: f64,
    pub mtbf_seconds: Option<f64>,
    pub mttr_seconds: Option<f64>,
    /// Why MTBF and MTTR are not given.
    pub mtbf_mttr_why: Option<Why>,
    pub availability: Option<f64>,
    /// Why availability is not given.
    pub availability_why: Option<Why>,
}

impl Availability {
    /// Nothing to measure, for `why`.
    fn none(why: Why) -> Availability {
        Availability {
            failures: 0,
            incidents: 0,
            window_seconds: 0.0,
            downtime_seconds: 0.0,
            uptime_seconds: 0.0,
            mtbf_seconds: None,
            mttr_seconds: None,
            mtbf_mttr_why: Some(why),
            availability: None,
            availability_why: Some(why),
        }
    }
}

/// The total length of spans, each counted once where they overlap.
fn union_length(mut spans: Vec<(DateTime<Utc>, DateTime<Utc>)>) -> TimeDelta {
    spans.sort();
    let mut total = TimeDelta::zero();
    let mut reach: Option<DateTime<Utc>> = None;
    for (a, b) in spans {
        let a = reach.map_or(a, |r| a.max(r));
        if b > a {
            total += b - a;
            reach = Some(b);
        }
    }
    total
}

/// Computes availability from incidents (opened, resolved-or-open) over the
/// part of [since, until] before `now`. Pure.
pub fn availability(
    incidents: &[(DateTime<Utc>, Option<DateTime<Utc>>)],
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Availability {
    let (start, end) = match measured_window(since, until, now) {
        Ok(w) => w,
        Err(why) => return Availability::none(why),
    };
    let window = end - start;
    // Each incident's part inside the window; a resolution before the
    // opening (a clock step) leaves nothing.
    let inside: Vec<_> = incidents
        .iter()
        .map(|(o, r)| ((*o).max(start), r.unwrap_or(end).min(end)))
        .filter(|(a, b)| b > a)
        .collect();
    let d = union_length(inside.clone()).min(window);
    let u = window - d;
    let began: Vec<_> = incidents
        .iter()
        .filter(|(o, _)| *o >= start && *o < end)
        .collect();
    let n = began.len();
    let open_for = began
        .iter()
        .map(|(o, r)| (r.unwrap_or(end).min(end) - *o).max(TimeDelta::zero()))
        .fold(TimeDelta::zero(), |a, b| a + b);
    let (mtbf, mttr, mtbf_mttr_why) = match n {
        0 if inside.is_empty() => (None, None, Some(Why::NoIncident)),
        0 => (None, None, Some(Why::NoFailure)),
        _ => (
            Some(secs(u) / n as f64),
            Some(secs(open_for) / n as f64),
            None,
        ),
    };
    let (avail, availability_why) = if inside.is_empty() && n == 0 {
        (None, Some(Why::NoIncident))
    } else {
        (Some(secs(u) / secs(window)), None)
    };
    Availability {
        failures: n,
        incidents: inside.len(),
        window_seconds: secs(window),
        downtime_seconds: secs(d),
        uptime_seconds: secs(u),
        mtbf_seconds: mtbf,
        mttr_seconds: mttr,
        mtbf_mttr_why,
        availability: avail,
        availability_why,
    }
}

/// When a policy was protected: from its first tick (its first recorded
/// tick or point) to, for a policy no longer configured, its last.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Protected {
    /// None: nothing recorded yet.
    pub since: Option<DateTime<Utc>>,
    /// None: still configured (or not known otherwise).
    pub until: Option<DateTime<Utc>>,
}

/// The part of the window RPO compliance is measured over: the measured
/// window ([`measured_window`]) cut to the protected time. Pure.
pub fn protected_span(
    protected: Protected,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), Why> {
    let (start, end) = measured_window(since, until, now)?;
    let first = protected.since.ok_or(Why::NeverProtected)?;
    if first >= end {
        return Err(Why::ProtectedAfterWindow);
    }
    let last = protected.until.unwrap_or(end);
    if last < start {
        return Err(Why::ProtectionEndedBeforeWindow);
    }
    Ok((start.max(first), end.min(last)))
}

/// The half-open span [from, to) ticks and points are counted over, by tick
/// time: the protected part of the window, the last tick of a policy no
/// longer configured included. None: nothing to count. Pure.
pub fn count_span(
    protected: Protected,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let (from, to) = protected_span(protected, since, until, now).ok()?;
    let to = if protected.until == Some(to) {
        to + TimeDelta::milliseconds(1)
    } else {
        to
    };
    Some((from, to))
}

/// RPO compliance over a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RpoStats {
    pub rpo_seconds: f64,
    /// now − newest complete verified point.
    pub exposure_now_seconds: Option<f64>,
    pub exposure_now_why: Option<Why>,
    /// When the policy was protected (its first tick; its last, if no longer
    /// configured).
    pub protected_since: Option<DateTime<Utc>>,
    pub protected_until: Option<DateTime<Utc>>,
    /// The part of the window measured: protected, and not after now.
    pub measured_since: Option<DateTime<Utc>>,
    pub measured_until: Option<DateTime<Utc>>,
    /// The worst exposure over the part measured.
    pub worst_exposure_seconds: Option<f64>,
    pub worst_exposure_why: Option<Why>,
    /// Share of the part measured during which exposure ≤ RPO (time
    /// without any point counts as outside).
    pub within_rpo_percent: Option<f64>,
    pub within_rpo_why: Option<Why>,
    /// Ticks (of any outcome) over the part measured, by tick time.
    pub ticks: i64,
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
    sorted.sort_by_key(|(p, a)| (*a.max(p), *p));
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

/// Exposure now: every point in the catalog is available now, so it is now
/// minus the newest; none if that one is dated after now.
fn exposure_now(points: &[(DateTime<Utc>, DateTime<Utc>)], now: DateTime<Utc>) -> Result<f64, Why> {
    match points.iter().map(|(p, _)| *p).max() {
        None => Err(Why::NoVerifiedPoint),
        Some(p) if p > now => Err(Why::PointAfterNow),
        Some(p) => Ok(secs(now - p)),
    }
}

/// What a walk over a span finds: time within the RPO, the worst exposure
/// and the exposure line.
#[derive(Default)]
struct Walk {
    within: TimeDelta,
    worst: Option<f64>,
    series: Vec<(DateTime<Utc>, f64)>,
}

/// Walks [from, to] in pieces between availability events.
fn walk(
    events: &[(DateTime<Utc>, DateTime<Utc>)],
    rpo: TimeDelta,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Walk {
    let mut cuts: Vec<DateTime<Utc>> = vec![from];
    cuts.extend(
        events
            .iter()
            .map(|(a, _)| *a)
            .filter(|a| *a > from && *a < to),
    );
    cuts.push(to);
    let mut w = Walk::default();
    for c in cuts.windows(2) {
        let (a, b) = (c[0], c[1]);
        if b <= a {
            continue;
        }
        if let Some(p) = newest_at(events, a) {
            let ok_until = (p + rpo).min(b);
            if ok_until > a {
                w.within += ok_until - a;
            }
            let e_end = secs(b - p);
            w.worst = Some(w.worst.map_or(e_end, |x: f64| x.max(e_end)));
            w.series.push((a, secs(a - p)));
            w.series.push((b, e_end));
        }
    }
    w
}

/// Splits a figure into its value and why it is missing.
fn split<T>(r: Result<T, Why>) -> (Option<T>, Option<Why>) {
    match r {
        Ok(v) => (Some(v), None),
        Err(w) => (None, Some(w)),
    }
}

/// Computes RPO figures from the verified points as (point time, available
/// time), over the protected part of [since, until] before `now`. Pure.
pub fn rpo_stats(
    points: &[(DateTime<Utc>, DateTime<Utc>)],
    rpo: TimeDelta,
    protected: Protected,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> RpoStats {
    let events = availability_events(points);
    let span = protected_span(protected, since, until, now);
    let w = span.map_or_else(|_| Walk::default(), |(f, t)| walk(&events, rpo, f, t));
    let worst = span.and_then(|_| w.worst.ok_or(Why::NoVerifiedPoint));
    let within = span.and_then(|(f, t)| {
        if t <= f || t - f < rpo {
            Err(Why::LessThanOneRpo)
        } else {
            Ok(100.0 * secs(w.within) / secs(t - f))
        }
    });
    let (exposure_now_seconds, exposure_now_why) = split(exposure_now(points, now));
    let (worst_exposure_seconds, worst_exposure_why) = split(worst);
    let (within_rpo_percent, within_rpo_why) = split(within);
    RpoStats {
        rpo_seconds: secs(rpo),
        exposure_now_seconds,
        exposure_now_why,
        protected_since: protected.since,
        protected_until: protected.until,
        measured_since: span.ok().map(|s| s.0),
        measured_until: span.ok().map(|s| s.1),
        worst_exposure_seconds,
        worst_exposure_why,
        within_rpo_percent,
        within_rpo_why,
        ticks: 0,
        missed_ticks: 0,
        skipped_ticks: 0,
        failed_points: 0,
        partial_points: 0,
        consistency: None,
        series: w.series,
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
    /// Successful runs left out because their recorded duration is negative
    /// (a clock was stepped during them).
    pub unmeasured: usize,
    pub stages: Vec<StageStat>,
    /// The stage that most often went over its budget.
    pub most_over_budget: Option<String>,
    /// Forecast of a restore now: median and worst of the last N successful
    /// drills and restores.
    pub forecast_median_seconds: Option<f64>,
    pub forecast_worst_seconds: Option<f64>,
    pub forecast_within_rto: Option<bool>,
}

/// Whether a recorded duration can be used: a clock stepped back during a
/// run leaves a negative one.
fn measurable(seconds: f64) -> bool {
    seconds.is_finite() && seconds >= 0.0
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
            // Only a stage that ended with a measured, non-negative time
            // counts: "over budget" is then a share of those, never more.
            let e = per.entry(s.name.clone()).or_default();
            if let Some(a) = s.actual_seconds.filter(|a| measurable(*a))
                && matches!(s.verdict, Verdict::Within | Verdict::Over)
            {
                e.0.push(a);
                e.2 += 1;
                if s.verdict == Verdict::Over {
                    e.1 += 1;
                }
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
    let succeeded = |v: &[&RunSummary]| -> Vec<f64> {
        v.iter()
            .filter(|r| r.state == RunState::Succeeded)
            .map(|r| r.total_seconds)
            .collect()
    };
    let (d_all, r_all) = (succeeded(&drills), succeeded(&restores));
    let ok = |v: &[f64]| -> Vec<f64> { v.iter().copied().filter(|s| measurable(*s)).collect() };
    let d_ok = ok(&d_all);
    let r_ok = ok(&r_all);
    let unmeasured = d_all.len() + r_all.len() - d_ok.len() - r_ok.len();
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
        drills_failed: drills.len() - d_all.len(),
        restores: durations(&r_ok),
        restores_failed: restores.len() - r_all.len(),
        unmeasured,
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

    /// No figure is negative, NaN, or a share over 100 %.
    fn sane_availability(a: &Availability) {
        for v in [a.window_seconds, a.downtime_seconds, a.uptime_seconds]
            .into_iter()
            .chain(a.mtbf_seconds)
            .chain(a.mttr_seconds)
        {
            assert!(v.is_finite() && v >= 0.0, "{a:?}");
        }
        assert!(
            a.availability.is_none_or(|x| (0.0..=1.0).contains(&x)),
            "{a:?}"
        );
        assert_eq!(
            a.availability.is_none(),
            a.availability_why.is_some(),
            "{a:?}"
        );
        assert_eq!(a.mtbf_seconds.is_none(), a.mtbf_mttr_why.is_some(), "{a:?}");
    }

    fn sane_rpo(s: &RpoStats) {
        for v in s
            .exposure_now_seconds
            .into_iter()
            .chain(s.worst_exposure_seconds)
            .chain(s.series.iter().map(|(_, e)| *e))
        {
            assert!(v.is_finite() && v >= 0.0, "{s:?}");
        }
        assert!(
            s.within_rpo_percent
                .is_none_or(|x| (0.0..=100.0).contains(&x)),
            "{s:?}"
        );
        assert_eq!(s.within_rpo_percent.is_none(), s.within_rpo_why.is_some());
        assert_eq!(
            s.worst_exposure_seconds.is_none(),
            s.worst_exposure_why.is_some()
        );
        assert_eq!(
            s.exposure_now_seconds.is_none(),
            s.exposure_now_why.is_some()
        );
    }

    #[test]
    fn availability_by_hand() {
        // A 10-day window; incidents of 2 h and 30 min, one of 90 min that
        // began an hour before the window (30 min of it inside), and one
        // still open for the last 90 min.
        let since = d(1, 0, 0);
        let until = d(11, 0, 0);
        let incidents = vec![
            (d(2, 10, 0), Some(d(2, 12, 0))),
            (d(5, 8, 0), Some(d(5, 8, 30))),
            (d(1, 0, 0) - TimeDelta::hours(1), Some(d(1, 0, 30))),
            (d(10, 22, 30), None),
        ];
        let a = availability(&incidents, since, until, until);
        sane_availability(&a);
        assert_eq!((a.failures, a.incidents), (3, 4));
        // D = 2h + 30m + 30m (the earlier one's part) + 1h30m = 4h30m =
        // 16200 s; window 864000 s; U = 847800 s.
        assert_eq!(a.downtime_seconds, 16_200.0);
        assert_eq!(a.uptime_seconds, 847_800.0);
        assert_eq!(a.mtbf_seconds, Some(282_600.0)); // U / 3
        // The three that began in the window were open 4 h: 80 min each.
        assert_eq!(a.mttr_seconds, Some(4_800.0));
        let av = a.availability.unwrap();
        assert!((av - 847_800.0 / 864_000.0).abs() < 1e-12, "{av}"); // 98.125 %
    }

    #[test]
    fn no_incidents_is_not_enough_data() {
        let a = availability(&[], d(1, 0, 0), d(2, 0, 0), d(2, 0, 0));
        sane_availability(&a);
        assert_eq!(a.failures, 0);
        assert_eq!(
            (a.mtbf_seconds, a.mttr_seconds, a.availability),
            (None, None, None)
        );
        assert_eq!(a.mtbf_mttr_why, Some(Why::NoIncident));
        assert_eq!(a.availability_why, Some(Why::NoIncident));
    }

    #[test]
    fn trap_incident_straddling_the_window_start_is_downtime_not_a_failure() {
        // Down from the day before until noon of the window's first day, and
        // a 1 h failure later. Before: the 12 h inside the window counted as
        // uptime (availability 99.58 %); after: they are downtime, but not a
        // failure of this window (n = 1).
        let incidents = vec![
            (d(1, 0, 0) - TimeDelta::hours(12), Some(d(1, 12, 0))),
            (d(2, 10, 0), Some(d(2, 11, 0))),
        ];
        let a = availability(&incidents, d(1, 0, 0), d(11, 0, 0), d(11, 0, 0));
        sane_availability(&a);
        assert_eq!((a.failures, a.incidents), (1, 2));
        assert_eq!(a.downtime_seconds, 13.0 * 3600.0);
        assert_eq!(a.mttr_seconds, Some(3600.0), "only the failure's own hour");
        assert!((a.availability.unwrap() - (1.0 - 13.0 / 240.0)).abs() < 1e-12);
        // Alone, it still gives availability, but no MTBF or MTTR.
        let a = availability(&incidents[..1], d(1, 0, 0), d(11, 0, 0), d(11, 0, 0));
        sane_availability(&a);
        assert!((a.availability.unwrap() - (1.0 - 12.0 / 240.0)).abs() < 1e-12);
        assert_eq!(a.mtbf_mttr_why, Some(Why::NoFailure));
    }

    #[test]
    fn trap_overlapping_incidents_count_once() {
        // Two policies down over the same hour: one hour of downtime in the
        // total, not two (before: D = 2 h, availability 99.17 % of a 10-day
        // window; overlaps over a whole window gave D > window, clamped).
        let incidents = vec![
            (d(2, 10, 0), Some(d(2, 11, 0))),
            (d(2, 10, 0), Some(d(2, 11, 0))),
        ];
        let a = availability(&incidents, d(1, 0, 0), d(11, 0, 0), d(11, 0, 0));
        sane_availability(&a);
        assert_eq!(a.downtime_seconds, 3600.0);
        assert_eq!(a.failures, 2);
        assert_eq!(a.mttr_seconds, Some(3600.0));
    }

    #[test]
    fn trap_window_past_now_is_not_uptime() {
        // --until tomorrow: the hours that have not happened are neither up
        // nor down, and an open incident counts to now, not to tomorrow.
        let now = d(2, 0, 0);
        let a = availability(&[(d(1, 23, 0), None)], d(1, 0, 0), d(3, 0, 0), now);
        sane_availability(&a);
        assert_eq!(a.window_seconds, 86_400.0); // before: 172800
        assert_eq!(a.downtime_seconds, 3600.0); // before: 25 h to the window's end
        assert_eq!(a.mttr_seconds, Some(3600.0));
    }

    #[test]
    fn trap_empty_window_and_window_after_now() {
        for (since, until, now, why) in [
            (d(2, 0, 0), d(2, 0, 0), d(3, 0, 0), Why::EmptyWindow),
            (d(3, 0, 0), d(2, 0, 0), d(4, 0, 0), Why::EmptyWindow),
            (d(2, 0, 0), d(3, 0, 0), d(1, 0, 0), Why::WindowAfterNow),
        ] {
            let a = availability(&[(d(2, 0, 0), None)], since, until, now);
            sane_availability(&a);
            assert_eq!(a.window_seconds, 0.0);
            assert_eq!(
                (a.availability_why, a.mtbf_mttr_why),
                (Some(why), Some(why))
            );
        }
    }

    #[test]
    fn trap_resolution_before_opening_is_no_negative_downtime() {
        // A clock stepped back between opening and resolving.
        let a = availability(
            &[(d(2, 10, 0), Some(d(2, 9, 0)))],
            d(1, 0, 0),
            d(3, 0, 0),
            d(3, 0, 0),
        );
        sane_availability(&a);
        assert_eq!((a.failures, a.downtime_seconds), (1, 0.0));
        assert_eq!(a.mttr_seconds, Some(0.0));
        assert_eq!(a.availability, Some(1.0));
    }

    /// Protected since `t`, still configured.
    fn since(t: DateTime<Utc>) -> Protected {
        Protected {
            since: Some(t),
            until: None,
        }
    }

    const RPO: TimeDelta = TimeDelta::minutes(15);

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
            RPO,
            since(d(1, 10, 0)),
            d(1, 10, 5),
            d(1, 11, 10),
            d(1, 11, 10),
        );
        sane_rpo(&s);
        assert_eq!(s.exposure_now_seconds, Some(600.0)); // 11:10 - 11:00
        // Worst: just before 11:03, exposure = 11:03 - 10:15 = 48 min.
        assert_eq!(s.worst_exposure_seconds, Some(48.0 * 60.0));
        // Within RPO: 10:05..10:15 (10 min, point 10:00), 10:17..10:30
        // (13 min, point 10:15), 11:03..11:10 (7 min, point 11:00) = 30 of 65 min.
        let w = s.within_rpo_percent.unwrap();
        assert!((w - 100.0 * 30.0 / 65.0).abs() < 1e-9, "{w}");
        assert_eq!(s.series.first(), Some(&(d(1, 10, 5), 300.0)));
        assert_eq!(
            (s.measured_since, s.measured_until),
            (Some(d(1, 10, 5)), Some(d(1, 11, 10)))
        );
    }

    #[test]
    fn rpo_protected_without_points_is_all_outside() {
        // Ticks ran for an hour and none gave a verified point: 0 % is the
        // honest figure, and there is no exposure to speak of.
        let s = rpo_stats(
            &[],
            RPO,
            since(d(1, 0, 0)),
            d(1, 0, 0),
            d(1, 1, 0),
            d(1, 1, 0),
        );
        sane_rpo(&s);
        assert_eq!(s.exposure_now_why, Some(Why::NoVerifiedPoint));
        assert_eq!(s.worst_exposure_why, Some(Why::NoVerifiedPoint));
        assert_eq!(s.within_rpo_percent, Some(0.0));
    }

    #[test]
    fn trap_new_policy_counts_from_its_first_tick() {
        // A window of the last hour; the policy's first tick at 9:40 made a
        // point available at 9:41. Before: the 40 min before dr protected
        // anything counted as exposure, 14 of 60 min = 23.33 %. After: 14 of
        // the 20 min protected = 70 %.
        let pts = vec![(d(1, 9, 40), d(1, 9, 41))];
        let s = rpo_stats(
            &pts,
            RPO,
            since(d(1, 9, 40)),
            d(1, 9, 0),
            d(1, 10, 0),
            d(1, 10, 0),
        );
        sane_rpo(&s);
        assert_eq!(s.measured_since, Some(d(1, 9, 40)));
        let w = s.within_rpo_percent.unwrap();
        assert!((w - 70.0).abs() < 1e-9, "{w}");
        assert_eq!(s.worst_exposure_seconds, Some(20.0 * 60.0));
    }

    #[test]
    fn trap_policy_younger_than_its_rpo() {
        // First tick 4 min ago, point available 1 min later, RPO 15 min.
        // Before: 3 of 60 min = 5 % of the hour (how the new user
        // met 1.78 %); after: not given, with why, while exposure now and the
        // worst so far are.
        let pts = vec![(d(1, 9, 56), d(1, 9, 57))];
        let s = rpo_stats(
            &pts,
            RPO,
            since(d(1, 9, 56)),
            d(1, 9, 0),
            d(1, 10, 0),
            d(1, 10, 0),
        );
        sane_rpo(&s);
        assert_eq!(s.within_rpo_percent, None);
        assert_eq!(s.within_rpo_why, Some(Why::LessThanOneRpo));
        assert_eq!(s.exposure_now_seconds, Some(240.0));
        assert_eq!(s.worst_exposure_seconds, Some(240.0));
    }

    #[test]
    fn trap_policy_configured_with_no_history() {
        // Before: 0.00 % within RPO, as if protection had failed all window.
        let s = rpo_stats(
            &[],
            RPO,
            Protected::default(),
            d(1, 0, 0),
            d(2, 0, 0),
            d(2, 0, 0),
        );
        sane_rpo(&s);
        assert_eq!(s.within_rpo_why, Some(Why::NeverProtected));
        assert_eq!(s.worst_exposure_why, Some(Why::NeverProtected));
        assert_eq!((s.measured_since, s.series.len()), (None, 0));
    }

    #[test]
    fn trap_protection_began_after_the_window() {
        // A report of last week for a policy added yesterday. Before: 0.00 %.
        let pts = vec![(d(5, 10, 0), d(5, 10, 1))];
        let s = rpo_stats(
            &pts,
            RPO,
            since(d(5, 10, 0)),
            d(1, 0, 0),
            d(3, 0, 0),
            d(6, 0, 0),
        );
        sane_rpo(&s);
        assert_eq!(s.within_rpo_why, Some(Why::ProtectedAfterWindow));
        assert_eq!(s.worst_exposure_why, Some(Why::ProtectedAfterWindow));
        assert_eq!(s.exposure_now_seconds, Some(14.0 * 3600.0));
    }

    #[test]
    fn trap_policy_no_longer_configured_is_measured_to_its_last_tick() {
        // Ticks every 15 min, each point available a minute later; removed
        // (or renamed) after its last tick at 11:45; the window runs 10:01 ..
        // 18:00. Before: the 6 h after it stopped counted as exposure
        // (within 112 of 479 min = 23.4 %, worst 6 h 15 min); after:
        // measured over 10:01 .. 11:45, within 98 of 104 min.
        let pts: Vec<_> = (0..8)
            .map(|k| {
                let t = d(1, 10, 0) + TimeDelta::minutes(15 * k);
                (t, t + TimeDelta::minutes(1))
            })
            .collect();
        let gone = Protected {
            since: Some(d(1, 10, 0)),
            until: Some(d(1, 11, 45)),
        };
        let s = rpo_stats(&pts, RPO, gone, d(1, 10, 1), d(1, 18, 0), d(1, 18, 0));
        sane_rpo(&s);
        assert_eq!(s.measured_until, Some(d(1, 11, 45)));
        let w = s.within_rpo_percent.unwrap();
        assert!((w - 100.0 * 98.0 / 104.0).abs() < 1e-9, "{w}");
        // Just before each next point is available: 16 min.
        assert_eq!(s.worst_exposure_seconds, Some(16.0 * 60.0));
        // A window after its last tick has nothing to measure.
        let s = rpo_stats(&pts, RPO, gone, d(2, 0, 0), d(3, 0, 0), d(3, 0, 0));
        assert_eq!(s.within_rpo_why, Some(Why::ProtectionEndedBeforeWindow));
    }

    #[test]
    fn trap_empty_window_and_now_before_since() {
        let pts = vec![(d(1, 9, 0), d(1, 9, 1))];
        for (a, b, now, why) in [
            (d(1, 10, 0), d(1, 10, 0), d(1, 12, 0), Why::EmptyWindow),
            (d(1, 11, 0), d(1, 10, 0), d(1, 12, 0), Why::EmptyWindow),
            // A clock stepped back: the whole window is after now.
            (d(1, 10, 0), d(1, 11, 0), d(1, 9, 30), Why::WindowAfterNow),
        ] {
            // Before: within 0.00 % for all three, and for the one after
            // now a worst exposure of 2 h over time that had not happened.
            let s = rpo_stats(&pts, RPO, since(d(1, 9, 0)), a, b, now);
            sane_rpo(&s);
            assert_eq!(
                (s.within_rpo_why, s.worst_exposure_why),
                (Some(why), Some(why))
            );
            assert!(s.series.is_empty());
        }
    }

    #[test]
    fn trap_window_past_now_is_not_measured() {
        // --until tomorrow. Before: tomorrow's exposure, extrapolated from
        // the newest point, made the worst 26 h 15 min and within 14 of
        // 1620 min = 0.86 %; after: 14 of the 15 min that happened.
        let pts = vec![(d(1, 9, 45), d(1, 9, 46))];
        let s = rpo_stats(
            &pts,
            RPO,
            since(d(1, 9, 45)),
            d(1, 9, 0),
            d(2, 12, 0),
            d(1, 10, 0),
        );
        sane_rpo(&s);
        assert_eq!(s.measured_until, Some(d(1, 10, 0)));
        assert_eq!(s.worst_exposure_seconds, Some(15.0 * 60.0));
        assert_eq!(s.within_rpo_percent, Some(100.0 * 14.0 / 15.0));
        assert!(s.series.iter().all(|(t, _)| *t <= d(1, 10, 0)));
    }

    #[test]
    fn trap_point_dated_after_now() {
        // A clock stepped back after the 10:00 point was made; now reads
        // 9:55. Before: that point was passed over and exposure now was 10
        // min from the 9:45 one, while `dr status` said 0 s from the 10:00
        // one; after: not given, with why.
        let pts = vec![(d(1, 9, 45), d(1, 9, 46)), (d(1, 10, 0), d(1, 10, 1))];
        let s = rpo_stats(
            &pts,
            RPO,
            since(d(1, 9, 45)),
            d(1, 9, 0),
            d(1, 9, 55),
            d(1, 9, 55),
        );
        sane_rpo(&s);
        assert_eq!(s.exposure_now_seconds, None);
        assert_eq!(s.exposure_now_why, Some(Why::PointAfterNow));
    }

    #[test]
    fn trap_available_before_point_time() {
        // Longhorn's clock ahead of dr's: the 10:20 point "became available"
        // at 10:01, before its own time, and sorted first. Before: it hid
        // the 10:05 point, available 10:06, so 10:06 .. 10:20 had no point
        // (within 10 of 30 min = 33.3 %); after: each point counts from when
        // it and its time both exist.
        let pts = vec![(d(1, 10, 20), d(1, 10, 1)), (d(1, 10, 5), d(1, 10, 6))];
        let s = rpo_stats(
            &pts,
            RPO,
            since(d(1, 10, 0)),
            d(1, 10, 0),
            d(1, 10, 30),
            d(1, 10, 30),
        );
        sane_rpo(&s);
        // Within: 10:06 .. 10:20 on the 10:05 point, 10:20 .. 10:30 on the
        // 10:20 one = 24 of 30 min.
        assert_eq!(s.within_rpo_percent, Some(80.0));
        assert_eq!(s.worst_exposure_seconds, Some(15.0 * 60.0));
    }

    #[test]
    fn trap_no_point_in_the_window_but_one_before_it() {
        // The last point was made two days before the window: exposure
        // carries over, and the worst is at the window's end.
        let pts = vec![(d(1, 10, 0), d(1, 10, 1))];
        let s = rpo_stats(
            &pts,
            RPO,
            since(d(1, 10, 0)),
            d(3, 0, 0),
            d(3, 12, 0),
            d(3, 12, 0),
        );
        sane_rpo(&s);
        assert_eq!(
            s.worst_exposure_seconds,
            Some(secs(d(3, 12, 0) - d(1, 10, 0)))
        );
        assert_eq!(s.within_rpo_percent, Some(0.0));
        assert_eq!(
            s.series.first(),
            Some(&(d(3, 0, 0), secs(d(3, 0, 0) - d(1, 10, 0))))
        );
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

    #[test]
    fn trap_tick_counts_follow_the_protected_span() {
        // Ticks are counted where compliance is measured. A policy no longer
        // configured: up to and with its last tick.
        let gone = Protected {
            since: Some(d(1, 10, 0)),
            until: Some(d(1, 11, 45)),
        };
        let (from, to) = count_span(gone, d(1, 0, 0), d(2, 0, 0), d(2, 0, 0)).unwrap();
        assert_eq!(from, d(1, 10, 0));
        assert!(to > d(1, 11, 45) && to < d(1, 11, 46));
        // --until tomorrow: a tick dated after now (a clock step) is not one
        // of this window's (before: counted, over [since, until)).
        let (_, to) = count_span(since(d(1, 9, 0)), d(1, 0, 0), d(3, 0, 0), d(2, 0, 0)).unwrap();
        assert_eq!(to, d(2, 0, 0));
        // Nothing protected, or an empty window: nothing to count.
        assert_eq!(
            count_span(Protected::default(), d(1, 0, 0), d(2, 0, 0), d(2, 0, 0)),
            None
        );
        assert_eq!(
            count_span(since(d(1, 9, 0)), d(2, 0, 0), d(2, 0, 0), d(3, 0, 0)),
            None
        );
    }

    #[test]
    fn trap_drills_rto_with_zero_runs() {
        // No run in the window: nothing is given, nothing is over budget.
        let t = rto_stats(&[], TimeDelta::hours(1), 10);
        assert_eq!((t.drills.count, t.drills_failed, t.unmeasured), (0, 0, 0));
        assert_eq!(
            (
                t.drills.last_seconds,
                t.drills.median_seconds,
                t.drills.worst_seconds
            ),
            (None, None, None)
        );
        assert_eq!(
            (t.forecast_median_seconds, t.forecast_within_rto),
            (None, None)
        );
        assert!(t.stages.is_empty() && t.most_over_budget.is_none());
        // Only failed runs: their stages have no time to give.
        use Verdict::*;
        let runs = vec![summary(
            "drill",
            "failed",
            90.0,
            &[("data", 300.0, 60.0, Failed)],
        )];
        let t = rto_stats(&runs, TimeDelta::hours(1), 10);
        assert_eq!((t.drills.count, t.drills_failed), (0, 1));
        assert_eq!((t.stages[0].runs, t.stages[0].median_seconds), (0, None));
        assert_eq!(t.forecast_within_rto, None);
    }

    #[test]
    fn trap_negative_run_duration_is_left_out() {
        // A clock stepped back 10 min during a drill: its summary says
        // -540 s. Before: last "-540.0s", median 30 s, stage median -80 s,
        // forecast "within RTO"; after: left out and counted as unmeasured.
        use Verdict::*;
        let runs = vec![
            summary(
                "drill",
                "succeeded",
                -540.0,
                &[("data", 300.0, -560.0, Within)],
            ),
            summary("drill", "succeeded", 600.0, &[("data", 300.0, 400.0, Over)]),
        ];
        let t = rto_stats(&runs, TimeDelta::hours(1), 10);
        assert_eq!((t.drills.count, t.drills_failed, t.unmeasured), (1, 0, 1));
        assert_eq!(t.drills.last_seconds, Some(600.0));
        assert_eq!(t.forecast_median_seconds, Some(600.0));
        assert_eq!(
            (t.stages[0].runs, t.stages[0].median_seconds),
            (1, Some(400.0))
        );
    }

    #[test]
    fn trap_over_budget_never_exceeds_runs() {
        // A stored summary with an "over" stage but no time (an older
        // version's row). Before: "over budget 1/0", and the stage most
        // often over budget.
        let mut s = summary(
            "drill",
            "succeeded",
            600.0,
            &[("data", 300.0, 0.0, Verdict::Over)],
        );
        s.stages[0].actual_seconds = None;
        let t = rto_stats(&[s], TimeDelta::hours(1), 10);
        assert_eq!((t.stages[0].over_budget, t.stages[0].runs), (0, 0));
        assert_eq!(t.most_over_budget, None);
    }
}
