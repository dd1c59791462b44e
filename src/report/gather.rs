//! Reads what [`super::measures`] computes from: per policy, the verified
//! points, tick and point outcome counts, run summaries and incidents; and
//! puts the figures together into a [`Report`].

use super::measures::{self, DEFINITIONS};
use super::{PolicyReport, Report};
use crate::catalog::{Catalog, CatalogError, PolicyRecord};
use crate::names::PolicyName;
use crate::runbook::summary::RunSummary;
use chrono::{DateTime, Utc};

/// How many recent drills and restores the RTO figures use.
pub const LAST_RUNS: usize = 10;

/// Builds the report of `policies` over [since, until].
pub async fn gather(
    catalog: &Catalog,
    policies: &[PolicyRecord],
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Report, CatalogError> {
    let mut out = Vec::new();
    for p in policies {
        out.push(policy_report(catalog, p, since, until, now).await?);
    }
    let all = incident_spans(catalog, None).await?;
    Ok(Report {
        generated_at: now,
        since,
        until,
        policies: out,
        total: measures::availability(&all, since, until),
        definitions: DEFINITIONS,
    })
}

/// One policy's part of the report.
pub async fn policy_report(
    catalog: &Catalog,
    p: &PolicyRecord,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<PolicyReport, CatalogError> {
    let points = catalog.verified_point_times(&p.name).await?;
    let mut rpo = measures::rpo_stats(&points, p.rpo.as_chrono(), since, until, now);
    let (ticks, states) = catalog.outcome_counts(&p.name, since, until).await?;
    rpo.missed_ticks = ticks.get("missed").copied().unwrap_or(0);
    rpo.skipped_ticks = ticks.get("skipped").copied().unwrap_or(0);
    rpo.failed_points = states.get("failed").copied().unwrap_or(0);
    rpo.partial_points = states.get("partial").copied().unwrap_or(0);
    let newest = catalog.newest_verified_point(&p.name).await?;
    rpo.consistency = newest.and_then(|p| p.consistency);
    let runs: Vec<RunSummary> = catalog
        .list_runs(None, Some(&p.name), 200)
        .await?
        .into_iter()
        .filter(|r| r.started_at >= since && r.started_at < until)
        .filter_map(|r| crate::runbook::summary::stored(&r))
        .collect();
    let rto = measures::rto_stats(&runs, p.rto.as_chrono(), LAST_RUNS);
    let incidents = incident_spans(catalog, Some(&p.name)).await?;
    Ok(PolicyReport {
        policy: p.name.to_string(),
        rpo,
        rto,
        availability: measures::availability(&incidents, since, until),
    })
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
