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
use super::measures::{RpoStats, RtoStats};
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

/// A share as a percentage, or "not enough data".
fn pct(x: Option<f64>) -> String {
    x.map_or_else(
        || "not enough data".into(),
        |a| format!("{:.4}%", a * 100.0),
    )
}

/// A duration, or "not enough data".
fn nedata(x: Option<f64>) -> String {
    x.map_or_else(|| "not enough data".into(), |v| dur(Some(v)))
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
    use crate::report::measures::{DEFINITIONS, availability, rpo_stats, rto_stats};
    use crate::report::{PolicyReport, Report};
    use chrono::{TimeDelta, TimeZone};

    fn d(day: u32, h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, h, m, 0).unwrap()
    }

    #[test]
    fn no_incidents_is_not_enough_data() {
        let a = availability(&[], d(1, 0, 0), d(2, 0, 0));
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
