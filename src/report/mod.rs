//! The report: RPO and RTO compliance, MTBF, MTTR and availability, per
//! policy and in total — the last step of the flow, catalog → report.
//!
//! Three parts, in that order: [`gather`](mod@gather) reads the catalog
//! into the inputs of [`measures`], whose pure functions ([`rpo_stats`],
//! [`rto_stats`], [`availability`]) turn them and `now` into a [`Report`];
//! [`render`] lays the report out once as sections of labelled rows and
//! writes those as aligned text, Markdown or HTML ([`render_table`],
//! [`render_markdown`], [`render_html`]), and the report itself as JSON
//! ([`render_json`]).
//!
//! A figure its inputs cannot support (an empty window, a policy younger
//! than its RPO, a point dated after now) is left out with a [`Why`] that
//! every format shows, rather than made up.

pub mod gather;
pub mod measures;
pub mod render;

pub use gather::{LAST_RUNS, gather, policy_report};
pub use measures::{
    Availability, DEFINITIONS, Durations, Protected, RpoStats, RtoStats, StageStat, Why,
    availability, count_span, durations, measured_window, protected_span, rpo_stats, rto_stats,
};
pub use render::{
    dur, exposure_svg, render_html, render_json, render_markdown, render_table, stages_svg,
};

use chrono::{DateTime, Utc};
use serde::Serialize;

/// One policy's report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyReport {
    pub policy: String,
    /// Whether the configuration the report ran with lists the policy
    /// (None: it ran without one). A policy no longer configured is
    /// measured up to its last tick.
    pub configured: Option<bool>,
    /// How its points keep its Secrets, from the configuration the report
    /// ran with (`None`: not known).
    pub secrets: Option<crate::config::SecretsMode>,
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
