//! The report as a [`Page`]: every figure's label and wording, once, for
//! every renderer. A new figure is a new row here.

use super::{Block, Cell, Chart, Mark, Page, Section, Table, dur, nedata, pct};
use crate::report::measures::{Availability, Durations, RpoStats, RtoStats};
use crate::report::{PolicyReport, Report};
use crate::timespec::fmt_time;
use chrono::{DateTime, Utc};

/// Lays the report out: a section per policy, then the total and the
/// definitions.
pub(super) fn page(r: &Report) -> Page<'_> {
    let mut sections: Vec<Section> = r
        .policies
        .iter()
        .map(|p| policy_section(p, r.since, r.until))
        .collect();
    sections.push(Section {
        title: "Total".into(),
        blocks: vec![Block::Table(availability_table(&r.total))],
    });
    sections.push(Section {
        title: "Definitions".into(),
        blocks: vec![Block::Paragraph(r.definitions)],
    });
    Page {
        since: r.since,
        until: r.until,
        generated_at: r.generated_at,
        sections,
    }
}

fn policy_section(p: &PolicyReport, since: DateTime<Utc>, until: DateTime<Utc>) -> Section<'_> {
    let title = match p.configured {
        Some(false) => format!(
            "Policy {} (no longer configured: measured up to its last tick)",
            p.policy
        ),
        _ => format!("Policy {}", p.policy),
    };
    let mut blocks = Vec::new();
    if let Some(note) = p.secrets.and_then(|m| m.note()) {
        blocks.push(Block::Paragraph(note));
    }
    blocks.extend([
        Block::Table(rpo_table(&p.rpo)),
        Block::Chart {
            title: "Exposure over time against the RPO",
            chart: Chart::Exposure {
                rpo: &p.rpo,
                since,
                until,
            },
            table: None,
        },
        Block::Table(rto_table(&p.rto)),
        Block::Chart {
            title: "Stage timings against budgets",
            chart: Chart::Stages(&p.rto),
            table: Some(stages_table(&p.rto)),
        },
        Block::Table(availability_table(&p.availability)),
    ]);
    Section { title, blocks }
}

/// A row of a label and its value.
fn row(label: &str, value: String) -> Vec<Cell> {
    vec![plain(label.into()), plain(value)]
}

fn plain(text: String) -> Cell {
    Cell { text, mark: None }
}

fn rpo_table(p: &RpoStats) -> Table {
    let within = p.exposure_now_seconds.is_some_and(|e| e <= p.rpo_seconds);
    let exposure_now = Cell {
        text: nedata(p.exposure_now_seconds, p.exposure_now_why),
        mark: Some(if within { Mark::Ok } else { Mark::Over }),
    };
    Table {
        head: &["RPO", "value"],
        rows: vec![
            row("RPO", dur(Some(p.rpo_seconds))),
            vec![plain("exposure now".into()), exposure_now],
            row("protected", protected(p)),
            row(
                "worst exposure while protected",
                nedata(p.worst_exposure_seconds, p.worst_exposure_why),
            ),
            row("time within RPO while protected", within_rpo(p)),
            row(
                "missed / skipped ticks",
                format!(
                    "{} / {} of {} ticks",
                    p.missed_ticks, p.skipped_ticks, p.ticks
                ),
            ),
            row(
                "failed / partial points",
                format!("{} / {}", p.failed_points, p.partial_points),
            ),
            row(
                "newest point's consistency",
                p.consistency
                    .map_or_else(|| "not recorded".into(), |c| c.as_str().to_owned()),
            ),
        ],
    }
}

/// The protected part of the window: from the first tick (to the last, for
/// a policy no longer configured).
fn protected(p: &RpoStats) -> String {
    match (p.protected_since, p.protected_until) {
        (None, _) => "never (no tick recorded)".into(),
        (Some(a), None) => format!("since {} (first tick)", fmt_time(a)),
        (Some(a), Some(b)) => format!("{} .. {} (first and last tick)", fmt_time(a), fmt_time(b)),
    }
}

/// Time within the RPO, with the span it is a share of.
fn within_rpo(p: &RpoStats) -> String {
    let span = match (p.measured_since, p.measured_until) {
        (Some(a), Some(b)) => dur(Some(super::secs(b - a))),
        _ => "-".into(),
    };
    match p.within_rpo_percent {
        Some(x) => format!("{x:.2}% of {span}"),
        None => nedata(None, p.within_rpo_why),
    }
}

/// Last, median and worst of some runs, or that there were none.
fn runs(d: &Durations, failed: usize, passed: &str, none: &str) -> String {
    if d.count == 0 && failed == 0 {
        return none.into();
    }
    format!(
        "{} / {} / {} ({} {passed}, {failed} failed)",
        dur(d.last_seconds),
        dur(d.median_seconds),
        dur(d.worst_seconds),
        d.count,
    )
}

fn rto_table(t: &RtoStats) -> Table {
    let mut rows = vec![
        row("RTO", dur(Some(t.rto_seconds))),
        row(
            "drills (last / median / worst)",
            runs(
                &t.drills,
                t.drills_failed,
                "passed",
                "no drill in the window",
            ),
        ),
        row(
            "restores (last / median / worst)",
            runs(
                &t.restores,
                t.restores_failed,
                "succeeded",
                "no restore in the window",
            ),
        ),
        row("forecast RTO for a restore now", forecast(t)),
        row(
            "stage most often over budget",
            t.most_over_budget.clone().unwrap_or_else(|| "none".into()),
        ),
    ];
    if t.unmeasured > 0 {
        rows.push(row(
            "runs left out (negative duration: a clock was stepped)",
            t.unmeasured.to_string(),
        ));
    }
    Table {
        head: &["RTO", "value"],
        rows,
    }
}

/// The forecast of a restore now against the RTO.
fn forecast(t: &RtoStats) -> String {
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
    }
}

fn stages_table(t: &RtoStats) -> Table {
    Table {
        head: &["stage", "budget", "median", "worst", "over budget"],
        rows: t
            .stages
            .iter()
            .map(|st| {
                vec![
                    plain(format!("stage {}", st.name)),
                    plain(format!("budget {}", dur(Some(st.budget_seconds)))),
                    plain(format!("median {}", dur(st.median_seconds))),
                    plain(format!("worst {}", dur(st.worst_seconds))),
                    plain(format!("over budget {}/{}", st.over_budget, st.runs)),
                ]
            })
            .collect(),
    }
}

fn availability_table(a: &Availability) -> Table {
    Table {
        head: &["availability", "value"],
        rows: vec![
            row(
                "failures (incidents that began in the window)",
                a.failures.to_string(),
            ),
            row("incidents open in the window", a.incidents.to_string()),
            row(
                "downtime D / uptime U",
                format!(
                    "{} / {}",
                    dur(Some(a.downtime_seconds)),
                    dur(Some(a.uptime_seconds))
                ),
            ),
            row("MTBF", nedata(a.mtbf_seconds, a.mtbf_mttr_why)),
            row("MTTR", nedata(a.mttr_seconds, a.mtbf_mttr_why)),
            row("availability", pct(a.availability, a.availability_why)),
        ],
    }
}
