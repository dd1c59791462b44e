//! The [`Page`] as aligned text (`dr report`'s default) or as Markdown.

use super::{Block, Page, Table, rows};
use crate::report::Report;
use crate::timespec::fmt_time;
use std::fmt::Write as _;

/// The report as aligned text.
pub fn render_table(r: &Report) -> String {
    lines(&rows::page(r), false)
}

/// The report as Markdown.
pub fn render_markdown(r: &Report) -> String {
    lines(&rows::page(r), true)
}

fn lines(page: &Page, md: bool) -> String {
    let mut s = String::from(if md { "# dr report\n\n" } else { "dr report\n" });
    let _ = writeln!(
        s,
        "window {} .. {} (generated {})",
        fmt_time(page.since),
        fmt_time(page.until),
        fmt_time(page.generated_at)
    );
    for section in &page.sections {
        heading(&mut s, &section.title, md);
        let mut first = true;
        for block in &section.blocks {
            let table = match block {
                Block::Table(t) | Block::Chart { table: Some(t), .. } => t,
                Block::Chart { table: None, .. } => continue,
                Block::Paragraph(p) => {
                    let _ = writeln!(s, "{p}");
                    continue;
                }
            };
            // Markdown tables need a blank line between them.
            if md && !first {
                s.push('\n');
            }
            first = false;
            write_table(&mut s, table, md);
        }
    }
    s
}

fn heading(s: &mut String, title: &str, md: bool) {
    if md {
        let _ = writeln!(s, "\n## {title}\n");
    } else {
        let _ = writeln!(s, "\n{title}\n{}", "-".repeat(title.chars().count()));
    }
}

/// Markdown: a head and rows of cells. Text: no head; the first cell
/// padded into a column, the others after it.
fn write_table(s: &mut String, t: &Table, md: bool) {
    if md {
        let _ = writeln!(s, "| {} |", t.head.join(" | "));
        let _ = writeln!(s, "|{}", " --- |".repeat(t.head.len()));
    }
    for row in &t.rows {
        let cells: Vec<&str> = row.iter().map(|c| c.text.as_str()).collect();
        if md {
            let _ = writeln!(s, "| {} |", cells.join(" | "));
        } else if let Some((first, rest)) = cells.split_first() {
            let _ = writeln!(s, "  {:<46} {}", first, rest.join("  "));
        }
    }
}
