//! The report: RPO and RTO compliance, MTBF, MTTR and availability, per
//! policy and in total. Every figure is a pure function of catalog rows and
//! `now` ([`rpo_stats`], [`rto_stats`], [`availability`]); [`render_table`],
//! [`render_markdown`] and [`render_html`] format a [`Report`].
//!
//! Definitions (printed under every report): n = incidents that began in the
//! window; downtime D = their durations clipped to the window (an open
//! incident counts up to the window's end); uptime U = window − D;
//! MTBF = U / n; MTTR = D / n; availability = U / (U + D). With n = 0 there
//! is not enough data, and no figure is made up.

use crate::runbook::summary::{RunSummary, Verdict};
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The definitions printed under the report.
pub const DEFINITIONS: &str = "n = incidents that began in the window; downtime D = their durations clipped to the window (an open incident counts up to the window's end); uptime U = window - D; MTBF = U / n; MTTR = D / n; availability = U / (U + D). Exposure at time t = t - the time of the newest complete, verified recovery point available at t.";

fn secs(d: TimeDelta) -> f64 {
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
    /// Exposure over time (seconds), for the chart: (time, exposure).
    pub series: Vec<(DateTime<Utc>, f64)>,
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
    // The newest point time known at each availability event.
    let mut events: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
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
    let newest_at = |t: DateTime<Utc>| -> Option<DateTime<Utc>> {
        events
            .iter()
            .take_while(|(a, _)| *a <= t)
            .last()
            .map(|(_, p)| *p)
    };
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

/// Computes RTO figures from run summaries (newest first), using the last
/// `n` of each kind. Pure.
pub fn rto_stats(runs: &[RunSummary], rto: TimeDelta, n: usize) -> RtoStats {
    let finished = |kind: &str| -> Vec<&RunSummary> {
        runs.iter()
            .filter(|r| r.kind == kind && r.state != "running")
            .take(n)
            .collect()
    };
    let drills = finished("drill");
    let restores = finished("restore");
    let ok = |v: &[&RunSummary]| -> Vec<f64> {
        v.iter()
            .filter(|r| r.state == "succeeded")
            .map(|r| r.total_seconds)
            .collect()
    };
    let d_ok = ok(&drills);
    let r_ok = ok(&restores);
    let mut stage_names: Vec<(String, f64)> = Vec::new();
    let mut per: BTreeMap<String, (Vec<f64>, usize, usize)> = BTreeMap::new();
    for r in drills.iter().chain(restores.iter()) {
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
    let stages: Vec<StageStat> = stage_names
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
        .collect();
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

/// One policy's report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyReport {
    pub policy: String,
    pub rpo: RpoStats,
    pub rto: RtoStats,
    pub availability: Availability,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub generated_at: DateTime<Utc>,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub policies: Vec<PolicyReport>,
    /// Over every incident (of any policy, or none).
    pub total: Availability,
    pub definitions: &'static str,
}

/// A duration for people: `42s`, `3m 20s`, `2h 05m`, `3d 4h`.
pub fn dur(s: Option<f64>) -> String {
    let Some(s) = s else {
        return "-".into();
    };
    let t = s.round() as i64;
    if t < 60 {
        format!("{:.1}s", s)
    } else if t < 3600 {
        format!("{}m {:02}s", t / 60, t % 60)
    } else if t < 86400 {
        format!("{}h {:02}m", t / 3600, (t % 3600) / 60)
    } else {
        format!("{}d {}h", t / 86400, (t % 86400) / 3600)
    }
}

fn pct(x: Option<f64>) -> String {
    x.map_or_else(
        || "not enough data".into(),
        |a| format!("{:.4}%", a * 100.0),
    )
}

fn nedata(x: Option<f64>) -> String {
    x.map_or_else(|| "not enough data".into(), |v| dur(Some(v)))
}

fn lines(r: &Report, md: bool) -> String {
    let mut s = String::new();
    let h = |s: &mut String, level: usize, t: &str| {
        if md {
            let _ = writeln!(s, "\n{} {t}\n", "#".repeat(level));
        } else {
            let _ = writeln!(s, "\n{t}\n{}", "-".repeat(t.chars().count()));
        }
    };
    let row = |s: &mut String, cells: &[String]| {
        if md {
            let _ = writeln!(s, "| {} |", cells.join(" | "));
        } else {
            let _ = writeln!(s, "  {:<46} {}", cells[0], cells[1..].join("  "));
        }
    };
    let head = |s: &mut String, cells: &[&str]| {
        if md {
            let _ = writeln!(s, "| {} |", cells.join(" | "));
            let _ = writeln!(s, "|{}", " --- |".repeat(cells.len()));
        }
    };
    if md {
        let _ = writeln!(s, "# dr report");
    } else {
        let _ = writeln!(s, "dr report");
    }
    let _ = writeln!(
        s,
        "{}window {} .. {} (generated {})",
        if md { "\n" } else { "" },
        crate::timespec::fmt_time(r.since),
        crate::timespec::fmt_time(r.until),
        crate::timespec::fmt_time(r.generated_at)
    );
    for p in &r.policies {
        h(&mut s, 2, &format!("Policy {}", p.policy));
        head(&mut s, &["RPO", "value"]);
        row(&mut s, &["RPO".into(), dur(Some(p.rpo.rpo_seconds))]);
        row(
            &mut s,
            &["exposure now".into(), nedata(p.rpo.exposure_now_seconds)],
        );
        row(
            &mut s,
            &[
                "worst exposure in the window".into(),
                nedata(p.rpo.worst_exposure_seconds),
            ],
        );
        row(
            &mut s,
            &[
                "time within RPO".into(),
                format!("{:.2}%", p.rpo.within_rpo_percent),
            ],
        );
        row(
            &mut s,
            &[
                "missed / skipped ticks".into(),
                format!("{} / {}", p.rpo.missed_ticks, p.rpo.skipped_ticks),
            ],
        );
        row(
            &mut s,
            &[
                "failed / partial points".into(),
                format!("{} / {}", p.rpo.failed_points, p.rpo.partial_points),
            ],
        );
        if md {
            s.push('\n');
        }
        head(&mut s, &["RTO", "value"]);
        let t = &p.rto;
        row(&mut s, &["RTO".into(), dur(Some(t.rto_seconds))]);
        row(
            &mut s,
            &[
                "drills (last / median / worst)".into(),
                format!(
                    "{} / {} / {} ({} passed, {} failed)",
                    dur(t.drills.last_seconds),
                    dur(t.drills.median_seconds),
                    dur(t.drills.worst_seconds),
                    t.drills.count,
                    t.drills_failed
                ),
            ],
        );
        row(
            &mut s,
            &[
                "restores (last / median / worst)".into(),
                format!(
                    "{} / {} / {} ({} succeeded, {} failed)",
                    dur(t.restores.last_seconds),
                    dur(t.restores.median_seconds),
                    dur(t.restores.worst_seconds),
                    t.restores.count,
                    t.restores_failed
                ),
            ],
        );
        row(
            &mut s,
            &[
                "forecast RTO for a restore now".into(),
                match (t.forecast_median_seconds, t.forecast_worst_seconds) {
                    (Some(m), Some(w)) => format!(
                        "median {}, worst {}: {}",
                        dur(Some(m)),
                        dur(Some(w)),
                        if w <= t.rto_seconds {
                            "within RTO"
                        } else {
                            "OVER RTO"
                        }
                    ),
                    _ => "not enough data (no successful drill or restore)".into(),
                },
            ],
        );
        row(
            &mut s,
            &[
                "stage most often over budget".into(),
                t.most_over_budget.clone().unwrap_or_else(|| "none".into()),
            ],
        );
        if md {
            s.push('\n');
        }
        head(
            &mut s,
            &["stage", "budget", "median", "worst", "over budget"],
        );
        for st in &t.stages {
            row(
                &mut s,
                &[
                    format!("stage {}", st.name),
                    format!("budget {}", dur(Some(st.budget_seconds))),
                    format!("median {}", dur(st.median_seconds)),
                    format!("worst {}", dur(st.worst_seconds)),
                    format!("over budget {}/{}", st.over_budget, st.runs),
                ],
            );
        }
        if md {
            s.push('\n');
        }
        avail_rows(&mut s, &p.availability, md);
    }
    h(&mut s, 2, "Total");
    avail_rows(&mut s, &r.total, md);
    h(&mut s, 2, "Definitions");
    let _ = writeln!(s, "{}", r.definitions);
    s
}

fn avail_rows(s: &mut String, a: &Availability, md: bool) {
    let rows = [
        (
            "failures (incidents that began in the window)",
            a.failures.to_string(),
        ),
        (
            "downtime D / uptime U",
            format!(
                "{} / {}",
                dur(Some(a.downtime_seconds)),
                dur(Some(a.uptime_seconds))
            ),
        ),
        ("MTBF", nedata(a.mtbf_seconds)),
        ("MTTR", nedata(a.mttr_seconds)),
        ("availability", pct(a.availability)),
    ];
    if md {
        let _ = writeln!(s, "| availability | value |\n| --- | --- |");
    }
    for (k, v) in rows {
        if md {
            let _ = writeln!(s, "| {k} | {v} |");
        } else {
            let _ = writeln!(s, "  {k:<46} {v}");
        }
    }
}

/// The report as aligned text.
pub fn render_table(r: &Report) -> String {
    lines(r, false)
}

/// The report as Markdown.
pub fn render_markdown(r: &Report) -> String {
    lines(r, true)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Exposure over time against the RPO line, as an inline SVG.
pub fn exposure_svg(p: &RpoStats, since: DateTime<Utc>, until: DateTime<Utc>) -> String {
    let (w, h, pad) = (720.0, 240.0, 40.0);
    let span = secs(until - since).max(1.0);
    let ymax = p
        .series
        .iter()
        .map(|(_, e)| *e)
        .fold(p.rpo_seconds * 1.5, f64::max)
        .max(1.0);
    let x = |t: DateTime<Utc>| pad + (w - 2.0 * pad) * secs(t - since) / span;
    let y = |e: f64| h - pad - (h - 2.0 * pad) * (e / ymax);
    let pts: Vec<String> = p
        .series
        .iter()
        .map(|(t, e)| format!("{:.1},{:.1}", x(*t), y(*e)))
        .collect();
    let mut s = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="RPO exposure over time">"##
    );
    let _ = write!(
        s,
        r##"<rect x="0" y="0" width="{w}" height="{h}" fill="#ffffff"/><line x1="{pad}" y1="{b}" x2="{r}" y2="{b}" stroke="#333"/><line x1="{pad}" y1="{pad}" x2="{pad}" y2="{b}" stroke="#333"/>"##,
        b = h - pad,
        r = w - pad
    );
    let ry = y(p.rpo_seconds);
    let _ = write!(
        s,
        r##"<line x1="{pad}" y1="{ry:.1}" x2="{r}" y2="{ry:.1}" stroke="#d33" stroke-dasharray="6 4"/><text x="{tx}" y="{ty:.1}" fill="#d33" font-size="12">RPO {rpo}</text>"##,
        r = w - pad,
        tx = w - pad - 70.0,
        ty = ry - 4.0,
        rpo = esc(&dur(Some(p.rpo_seconds)))
    );
    if !pts.is_empty() {
        let _ = write!(
            s,
            r##"<polyline fill="none" stroke="#1f6feb" stroke-width="2" points="{}"/>"##,
            pts.join(" ")
        );
    } else {
        let _ = write!(
            s,
            r##"<text x="{}" y="{}" font-size="14" fill="#666">no verified recovery point in the window</text>"##,
            pad + 10.0,
            h / 2.0
        );
    }
    let _ = write!(
        s,
        r##"<text x="{pad}" y="{}" font-size="11" fill="#333">{}</text><text x="{}" y="{}" font-size="11" fill="#333" text-anchor="end">{}</text><text x="4" y="{}" font-size="11" fill="#333">{}</text></svg>"##,
        h - pad + 16.0,
        esc(&crate::timespec::fmt_time(since)),
        w - pad,
        h - pad + 16.0,
        esc(&crate::timespec::fmt_time(until)),
        pad - 6.0,
        esc(&dur(Some(ymax)))
    );
    s
}

/// Stage timings (median and worst) against budgets, as an inline SVG.
pub fn stages_svg(t: &RtoStats) -> String {
    let (w, pad, bar) = (720.0, 140.0, 14.0);
    let h = 40.0 + t.stages.len() as f64 * (3.0 * bar + 12.0);
    let xmax = t
        .stages
        .iter()
        .flat_map(|s| [s.budget_seconds, s.worst_seconds.unwrap_or(0.0)])
        .fold(1.0, f64::max);
    let x = |v: f64| (w - pad - 20.0) * v / xmax;
    let mut s = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="stage timings against budgets"><rect x="0" y="0" width="{w}" height="{h}" fill="#ffffff"/>"##
    );
    if t.stages.is_empty() {
        let _ = write!(
            s,
            r##"<text x="10" y="24" font-size="14" fill="#666">no drill or restore yet</text>"##
        );
    }
    for (i, st) in t.stages.iter().enumerate() {
        let y0 = 20.0 + i as f64 * (3.0 * bar + 12.0);
        let _ = write!(
            s,
            r##"<text x="4" y="{:.1}" font-size="12" fill="#333">{}</text>"##,
            y0 + bar * 1.8,
            esc(&st.name)
        );
        for (k, (v, color, label)) in [
            (Some(st.budget_seconds), "#bbbbbb", "budget"),
            (st.median_seconds, "#1f6feb", "median"),
            (st.worst_seconds, "#d33", "worst"),
        ]
        .into_iter()
        .enumerate()
        {
            let yy = y0 + k as f64 * bar;
            let v = v.unwrap_or(0.0);
            let _ = write!(
                s,
                r##"<rect x="{pad}" y="{yy:.1}" width="{:.1}" height="{:.1}" fill="{color}"><title>{label} {}</title></rect><text x="{:.1}" y="{:.1}" font-size="10" fill="#333">{label} {}</text>"##,
                x(v).max(1.0),
                bar - 2.0,
                esc(&dur(Some(v))),
                pad + x(v).max(1.0) + 4.0,
                yy + bar - 4.0,
                esc(&dur(Some(v)))
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// The report as one self-contained HTML file (inline CSS and SVG, no
/// scripts, nothing fetched).
pub fn render_html(r: &Report) -> String {
    let mut s = String::from(
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>dr report</title><style>body{font-family:system-ui,sans-serif;margin:2em;color:#222;background:#fff}table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}th{background:#f3f3f3}.over{color:#b00;font-weight:bold}.ok{color:#070}</style></head><body>"#,
    );
    let _ = write!(
        s,
        "<h1>dr report</h1><p>Window {} .. {} (generated {})</p>",
        esc(&crate::timespec::fmt_time(r.since)),
        esc(&crate::timespec::fmt_time(r.until)),
        esc(&crate::timespec::fmt_time(r.generated_at))
    );
    for p in &r.policies {
        let _ = write!(s, "<h2>Policy {}</h2>", esc(&p.policy));
        let within = p
            .rpo
            .exposure_now_seconds
            .is_some_and(|e| e <= p.rpo.rpo_seconds);
        let _ = write!(
            s,
            "<table><tr><th>RPO</th><th>value</th></tr><tr><td>RPO</td><td>{}</td></tr><tr><td>exposure now</td><td class=\"{}\">{}</td></tr><tr><td>worst exposure in the window</td><td>{}</td></tr><tr><td>time within RPO</td><td>{:.2}%</td></tr><tr><td>missed / skipped ticks</td><td>{} / {}</td></tr><tr><td>failed / partial points</td><td>{} / {}</td></tr></table>",
            esc(&dur(Some(p.rpo.rpo_seconds))),
            if within { "ok" } else { "over" },
            esc(&nedata(p.rpo.exposure_now_seconds)),
            esc(&nedata(p.rpo.worst_exposure_seconds)),
            p.rpo.within_rpo_percent,
            p.rpo.missed_ticks,
            p.rpo.skipped_ticks,
            p.rpo.failed_points,
            p.rpo.partial_points
        );
        let _ = write!(
            s,
            "<h3>Exposure over time against the RPO</h3>{}",
            exposure_svg(&p.rpo, r.since, r.until)
        );
        let t = &p.rto;
        let _ = write!(
            s,
            "<table><tr><th>RTO</th><th>value</th></tr><tr><td>RTO</td><td>{}</td></tr><tr><td>drills (last / median / worst)</td><td>{} / {} / {} ({} passed, {} failed)</td></tr><tr><td>restores (last / median / worst)</td><td>{} / {} / {} ({} succeeded, {} failed)</td></tr><tr><td>forecast RTO for a restore now</td><td>{}</td></tr><tr><td>stage most often over budget</td><td>{}</td></tr></table>",
            esc(&dur(Some(t.rto_seconds))),
            esc(&dur(t.drills.last_seconds)),
            esc(&dur(t.drills.median_seconds)),
            esc(&dur(t.drills.worst_seconds)),
            t.drills.count,
            t.drills_failed,
            esc(&dur(t.restores.last_seconds)),
            esc(&dur(t.restores.median_seconds)),
            esc(&dur(t.restores.worst_seconds)),
            t.restores.count,
            t.restores_failed,
            match (t.forecast_median_seconds, t.forecast_worst_seconds) {
                (Some(m), Some(w)) => esc(&format!(
                    "median {}, worst {}: {}",
                    dur(Some(m)),
                    dur(Some(w)),
                    if w <= t.rto_seconds {
                        "within RTO"
                    } else {
                        "OVER RTO"
                    }
                )),
                _ => "not enough data (no successful drill or restore)".into(),
            },
            esc(&t.most_over_budget.clone().unwrap_or_else(|| "none".into()))
        );
        let _ = write!(s, "<h3>Stage timings against budgets</h3>{}", stages_svg(t));
        let _ = write!(s, "{}", avail_html(&p.availability));
    }
    let _ = write!(s, "<h2>Total</h2>{}", avail_html(&r.total));
    let _ = write!(
        s,
        "<h2>Definitions</h2><p>{}</p></body></html>",
        esc(r.definitions)
    );
    s
}

fn avail_html(a: &Availability) -> String {
    format!(
        "<table><tr><th>availability</th><th>value</th></tr><tr><td>failures (incidents that began in the window)</td><td>{}</td></tr><tr><td>downtime D / uptime U</td><td>{} / {}</td></tr><tr><td>MTBF</td><td>{}</td></tr><tr><td>MTTR</td><td>{}</td></tr><tr><td>availability</td><td>{}</td></tr></table>",
        a.failures,
        esc(&dur(Some(a.downtime_seconds))),
        esc(&dur(Some(a.uptime_seconds))),
        esc(&nedata(a.mtbf_seconds)),
        esc(&nedata(a.mttr_seconds)),
        esc(&pct(a.availability))
    )
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
        let r = Report {
            generated_at: d(2, 0, 0),
            since: d(1, 0, 0),
            until: d(2, 0, 0),
            policies: vec![],
            total: a,
            definitions: DEFINITIONS,
        };
        let text = render_table(&r);
        assert!(
            text.contains("MTBF") && text.contains("not enough data"),
            "{text}"
        );
        assert!(text.contains("MTBF = U / n"), "{text}");
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
            kind: kind.into(),
            policy: "shop".into(),
            point_id: None,
            target_namespace: "x".into(),
            state: state.into(),
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
    fn html_is_self_contained() {
        let r = Report {
            generated_at: d(2, 0, 0),
            since: d(1, 0, 0),
            until: d(2, 0, 0),
            policies: vec![PolicyReport {
                policy: "shop<script>".into(),
                rpo: rpo_stats(
                    &[(d(1, 1, 0), d(1, 1, 1))],
                    TimeDelta::minutes(15),
                    d(1, 0, 0),
                    d(2, 0, 0),
                    d(2, 0, 0),
                ),
                rto: rto_stats(&[], TimeDelta::hours(1), 10),
                availability: availability(&[], d(1, 0, 0), d(2, 0, 0)),
            }],
            total: availability(&[], d(1, 0, 0), d(2, 0, 0)),
            definitions: DEFINITIONS,
        };
        let h = render_html(&r);
        assert!(h.starts_with("<!DOCTYPE html>") && h.contains("<svg") && h.contains("polyline"));
        assert!(!h.contains("<script>") && h.contains("shop&lt;script&gt;"));
        assert!(
            !h.contains("http://") || !h.contains("src=\"http"),
            "nothing fetched"
        );
        let md = render_markdown(&r);
        assert!(md.contains("| MTBF | not enough data |"), "{md}");
    }
}
