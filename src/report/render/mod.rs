//! The report laid out once and written four ways. `rows` builds a page
//! from a [`Report`]: sections, each of blocks — tables of labelled rows,
//! charts, a paragraph — and is the one place a figure is laid out; `text`
//! writes the page as aligned text or Markdown, `html` as one
//! self-contained HTML file with the `svg` charts. JSON is the [`Report`]
//! itself, so its shape stays the one scripts read.

mod html;
mod rows;
mod svg;
mod text;

pub use html::render_html;
pub use svg::{exposure_svg, stages_svg};
pub use text::{render_markdown, render_table};

use super::Report;
use super::measures::{RpoStats, RtoStats, Why, secs};
use chrono::{DateTime, Utc};

/// The report as a page: its window and its sections, in order.
struct Page<'a> {
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    generated_at: DateTime<Utc>,
    sections: Vec<Section<'a>>,
}

/// A titled part of the page (a policy, the total, the definitions).
struct Section<'a> {
    title: String,
    blocks: Vec<Block<'a>>,
}

/// What a section is made of.
enum Block<'a> {
    Table(Table),
    /// A chart under its title in HTML; in text and Markdown, `table` stands
    /// in its place (a chart without one is left out there).
    Chart {
        title: &'static str,
        chart: Chart<'a>,
        table: Option<Table>,
    },
    Paragraph(&'a str),
}

/// A table: its column heads and its rows of cells.
struct Table {
    head: &'static [&'static str],
    rows: Vec<Vec<Cell>>,
}

/// One cell: its text and, where it has one, how it reads against its
/// objective (HTML colours it).
struct Cell {
    text: String,
    mark: Option<Mark>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    Ok,
    Over,
}

/// The charts, drawn only where they are shown (HTML).
enum Chart<'a> {
    Exposure {
        rpo: &'a RpoStats,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    },
    Stages(&'a RtoStats),
}

/// The report as JSON: the [`Report`] itself, newline-terminated.
pub fn render_json(r: &Report) -> Result<String, serde_json::Error> {
    Ok(serde_json::to_string_pretty(r)? + "\n")
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

/// "not enough data", and why where it is known.
fn not_enough(why: Option<Why>) -> String {
    match why {
        Some(w) => format!("not enough data ({w})"),
        None => "not enough data".into(),
    }
}

/// A share as a percentage, or "not enough data" and why.
fn pct(x: Option<f64>, why: Option<Why>) -> String {
    x.map_or_else(|| not_enough(why), |a| format!("{:.4}%", a * 100.0))
}

/// A duration, or "not enough data" and why.
fn nedata(x: Option<f64>, why: Option<Why>) -> String {
    x.map_or_else(|| not_enough(why), |v| dur(Some(v)))
}

/// Text made safe inside HTML and SVG.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::measures::{DEFINITIONS, Protected, availability, rpo_stats, rto_stats};
    use crate::report::{PolicyReport, Report};
    use chrono::{TimeDelta, TimeZone};

    fn d(day: u32, h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, h, m, 0).unwrap()
    }

    /// A report of one policy over day 1, generated at its end.
    fn report(policy: &str, rpo: RpoStats, configured: Option<bool>) -> Report {
        let (since, until) = (d(1, 0, 0), d(2, 0, 0));
        Report {
            generated_at: until,
            since,
            until,
            policies: vec![PolicyReport {
                policy: policy.into(),
                configured,
                secrets: None,
                rpo,
                rto: rto_stats(&[], TimeDelta::hours(1), 10),
                availability: availability(&[], since, until, until),
            }],
            total: availability(&[], since, until, until),
            definitions: DEFINITIONS,
        }
    }

    #[test]
    fn no_incidents_is_not_enough_data() {
        let a = availability(&[], d(1, 0, 0), d(2, 0, 0), d(2, 0, 0));
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
            text.contains("MTBF") && text.contains("not enough data (no incident in the window)"),
            "{text}"
        );
        assert!(text.contains("MTBF = U / n"), "{text}");
    }

    #[test]
    fn html_is_self_contained() {
        let rpo = rpo_stats(
            &[(d(1, 1, 0), d(1, 1, 1))],
            TimeDelta::minutes(15),
            Protected {
                since: Some(d(1, 1, 0)),
                until: None,
            },
            d(1, 0, 0),
            d(2, 0, 0),
            d(2, 0, 0),
        );
        let r = report("shop<script>", rpo, None);
        let h = render_html(&r);
        assert!(h.starts_with("<!DOCTYPE html>") && h.contains("<svg") && h.contains("polyline"));
        assert!(!h.contains("<script>") && h.contains("shop&lt;script&gt;"));
        assert!(
            !h.contains("http://") || !h.contains("src=\"http"),
            "nothing fetched"
        );
        let md = render_markdown(&r);
        assert!(
            md.contains("| MTBF | not enough data (no incident in the window) |"),
            "{md}"
        );
    }

    #[test]
    fn a_figure_left_out_says_why_in_every_format() {
        // A policy whose first tick came 5 minutes before the window's end:
        // less than one RPO of history.
        let rpo = rpo_stats(
            &[(d(1, 23, 55), d(1, 23, 56))],
            TimeDelta::minutes(15),
            Protected {
                since: Some(d(1, 23, 55)),
                until: None,
            },
            d(1, 0, 0),
            d(2, 0, 0),
            d(2, 0, 0),
        );
        let r = report("shop", rpo, Some(true));
        let why = "not enough data (less than one RPO of protected time in the window)";
        let text = render_table(&r);
        assert!(text.contains(why), "{text}");
        assert!(text.contains("since 2026-11-01"), "{text}");
        assert!(
            render_markdown(&r).contains(&format!("| time within RPO while protected | {why} |"))
        );
        assert!(render_html(&r).contains(&format!("<td>{why}</td>")));
        let json: serde_json::Value = serde_json::from_str(&render_json(&r).unwrap()).unwrap();
        let p = &json["policies"][0]["rpo"];
        assert!(p["within_rpo_percent"].is_null(), "{p}");
        assert_eq!(p["within_rpo_why"], "less_than_one_rpo");
        assert_eq!(p["exposure_now_seconds"], 300.0);
        assert_eq!(json["policies"][0]["configured"], true);
        // With no drill or restore in the window, the rows say so.
        assert!(text.contains("no drill in the window"), "{text}");
        assert!(text.contains("no restore in the window"), "{text}");
    }

    #[test]
    fn a_policy_no_longer_configured_is_marked() {
        let rpo = rpo_stats(
            &[],
            TimeDelta::minutes(15),
            Protected {
                since: Some(d(1, 1, 0)),
                until: Some(d(1, 2, 0)),
            },
            d(1, 0, 0),
            d(2, 0, 0),
            d(2, 0, 0),
        );
        let text = render_table(&report("old", rpo, Some(false)));
        assert!(
            text.contains("Policy old (no longer configured: measured up to its last tick)"),
            "{text}"
        );
        assert!(text.contains("(first and last tick)"), "{text}");
        assert!(text.contains("0.00% of 1h 00m"), "{text}");
    }
}
