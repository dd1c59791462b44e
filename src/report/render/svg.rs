//! The report's charts as inline SVG: exposure over time against the RPO,
//! and stage timings against their budgets.

use super::{dur, esc};
use crate::report::measures::{RpoStats, RtoStats, secs};
use chrono::{DateTime, Utc};
use std::fmt::Write as _;

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
    let none = p
        .worst_exposure_why
        .map_or("no verified recovery point in the window", |w| w.text());
    s.push_str(&exposure_line(&pts, none, pad, h));
    s.push_str(&axis_labels(since, until, ymax, (w, h, pad)));
    s.push_str("</svg>");
    s
}

/// The exposure line through `pts`, or `none`: why there is none.
fn exposure_line(pts: &[String], none: &str, pad: f64, h: f64) -> String {
    if !pts.is_empty() {
        format!(
            r##"<polyline fill="none" stroke="#1f6feb" stroke-width="2" points="{}"/>"##,
            pts.join(" ")
        )
    } else {
        format!(
            r##"<text x="{}" y="{}" font-size="14" fill="#666">{}</text>"##,
            pad + 10.0,
            h / 2.0,
            esc(none)
        )
    }
}

/// The window's ends under the time axis and the top of the exposure axis.
fn axis_labels(
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    ymax: f64,
    (w, h, pad): (f64, f64, f64),
) -> String {
    format!(
        r##"<text x="{pad}" y="{}" font-size="11" fill="#333">{}</text><text x="{}" y="{}" font-size="11" fill="#333" text-anchor="end">{}</text><text x="4" y="{}" font-size="11" fill="#333">{}</text>"##,
        h - pad + 16.0,
        esc(&crate::timespec::fmt_time(since)),
        w - pad,
        h - pad + 16.0,
        esc(&crate::timespec::fmt_time(until)),
        pad - 6.0,
        esc(&dur(Some(ymax)))
    )
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
