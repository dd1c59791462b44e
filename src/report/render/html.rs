//! The [`Page`] as one self-contained HTML file: inline CSS and SVG
//! charts, no scripts, nothing fetched.

use super::{Block, Chart, Mark, Page, Table, esc, rows, svg};
use crate::report::Report;
use crate::timespec::fmt_time;
use std::fmt::Write as _;

/// The page's head: its title and style.
const HEAD: &str = r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>dr report</title><style>body{font-family:system-ui,sans-serif;margin:2em;color:#222;background:#fff}table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}th{background:#f3f3f3}.over{color:#b00;font-weight:bold}.ok{color:#070}</style></head><body>"#;

/// The report as one self-contained HTML file (inline CSS and SVG, no
/// scripts, nothing fetched).
pub fn render_html(r: &Report) -> String {
    page(&rows::page(r))
}

fn page(page: &Page) -> String {
    let mut s = String::from(HEAD);
    let _ = write!(
        s,
        "<h1>dr report</h1><p>Window {} .. {} (generated {})</p>",
        esc(&fmt_time(page.since)),
        esc(&fmt_time(page.until)),
        esc(&fmt_time(page.generated_at))
    );
    for section in &page.sections {
        let _ = write!(s, "<h2>{}</h2>", esc(&section.title));
        for block in &section.blocks {
            match block {
                Block::Table(t) => write_table(&mut s, t),
                Block::Chart { title, chart, .. } => {
                    let _ = write!(s, "<h3>{}</h3>{}", esc(title), draw(chart));
                }
                Block::Paragraph(p) => {
                    let _ = write!(s, "<p>{}</p>", esc(p));
                }
            }
        }
    }
    s.push_str("</body></html>");
    s
}

fn draw(chart: &Chart) -> String {
    match chart {
        Chart::Exposure { rpo, since, until } => svg::exposure_svg(rpo, *since, *until),
        Chart::Stages(t) => svg::stages_svg(t),
    }
}

fn write_table(s: &mut String, t: &Table) {
    s.push_str("<table><tr>");
    for h in t.head {
        let _ = write!(s, "<th>{}</th>", esc(h));
    }
    s.push_str("</tr>");
    for row in &t.rows {
        s.push_str("<tr>");
        for cell in row {
            let class = match cell.mark {
                Some(Mark::Ok) => " class=\"ok\"",
                Some(Mark::Over) => " class=\"over\"",
                None => "",
            };
            let _ = write!(s, "<td{class}>{}</td>", esc(&cell.text));
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>");
}
