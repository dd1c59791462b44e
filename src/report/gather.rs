//! Reads what [`super::measures`] computes from: per policy, when it was
//! protected, the verified points, tick and point outcome counts, run
//! summaries and incidents; and puts the figures together into a [`Report`].

use super::measures::{self, DEFINITIONS, Protected, RpoStats};
use super::{PolicyReport, Report};
use crate::catalog::{Catalog, CatalogError, PolicyRecord, RunKind};
use crate::names::PolicyName;
use crate::runbook::summary::RunSummary;
use chrono::{DateTime, Utc};

/// How many recent drills and restores the RTO figures use.
pub const LAST_RUNS: usize = 10;

/// Builds the report of `policies` over [since, until]. `configured` lists
/// the policies of the configuration the report runs with (None: it runs
/// without one, and every policy counts as configured).
pub async fn gather(
    catalog: &Catalog,
    policies: &[PolicyRecord],
    configured: Option<&[PolicyName]>,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Report, CatalogError> {
    let mut out = Vec::new();
    for p in policies {
        let listed = configured.map(|c| c.contains(&p.name));
        out.push(policy_report(catalog, p, listed, since, until, now).await?);
    }
    let all = incident_spans(catalog, None).await?;
    Ok(Report {
        generated_at: now,
        since,
        until,
        policies: out,
        total: measures::availability(&all, since, until, now),
        definitions: DEFINITIONS,
    })
}

/// One policy's part of the report; `configured`: whether the
/// configuration lists it (None: not known).
pub async fn policy_report(
    catalog: &Catalog,
    p: &PolicyRecord,
    configured: Option<bool>,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<PolicyReport, CatalogError> {
    let rpo = rpo_figures(catalog, p, configured, since, until, now).await?;
    let mut runs: Vec<RunSummary> = Vec::new();
    for kind in [RunKind::Drill, RunKind::Restore] {
        let rows = catalog
            .finished_runs_between(kind, &p.name, since, until, LAST_RUNS as i64)
            .await?;
        runs.extend(rows.iter().filter_map(crate::runbook::summary::stored));
    }
    let rto = measures::rto_stats(&runs, p.rto.as_chrono(), LAST_RUNS);
    let incidents = incident_spans(catalog, Some(&p.name)).await?;
    Ok(PolicyReport {
        policy: p.name.to_string(),
        configured,
        secrets: None,
        rpo,
        rto,
        availability: measures::availability(&incidents, since, until, now),
    })
}

/// The RPO figures of a policy, its tick and point counts taken over the
/// same protected part of the window as its compliance.
async fn rpo_figures(
    catalog: &Catalog,
    p: &PolicyRecord,
    configured: Option<bool>,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<RpoStats, CatalogError> {
    let ticks = catalog.first_and_last_tick(&p.name).await?;
    let protected = Protected {
        since: ticks.map(|t| t.0),
        until: ticks.map(|t| t.1).filter(|_| configured == Some(false)),
    };
    let points = catalog.verified_point_times(&p.name).await?;
    let mut rpo = measures::rpo_stats(&points, p.rpo.as_chrono(), protected, since, until, now);
    if let Some((from, to)) = measures::count_span(protected, since, until, now) {
        let (ticks, states) = catalog.outcome_counts(&p.name, from, to).await?;
        let n =
            |m: &std::collections::BTreeMap<String, i64>, k: &str| m.get(k).copied().unwrap_or(0);
        rpo.ticks = ticks.values().sum();
        rpo.missed_ticks = n(&ticks, "missed");
        rpo.skipped_ticks = n(&ticks, "skipped");
        rpo.failed_points = n(&states, "failed");
        rpo.partial_points = n(&states, "partial");
    }
    let newest = catalog.newest_verified_point(&p.name).await?;
    rpo.consistency = newest.and_then(|p| p.consistency);
    Ok(rpo)
}

/// Every incident of `policy` (None: of any policy, or none) as (opened,
/// resolved-or-open).
async fn incident_spans(
    catalog: &Catalog,
    policy: Option<&PolicyName>,
) -> Result<Vec<(DateTime<Utc>, Option<DateTime<Utc>>)>, CatalogError> {
    Ok(catalog
        .list_incidents(policy, false, 100_000)
        .await?
        .into_iter()
        .map(|i| (i.opened_at, i.resolved_at))
        .collect())
}
