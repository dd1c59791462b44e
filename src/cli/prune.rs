//! `dr prune`: apply retention now, or show what it would remove and why;
//! then compact the catalog's history (`history` in the configuration).

use super::output::{self, Format, Table};
use super::{Context, Failure};
use crate::names::PolicyName;
use crate::timespec::fmt_time;
use clap::Args;
use std::time::Duration;

/// Arguments of `dr prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Only this policy [default: every configured policy].
    #[arg(long, short = 'p', env = "DR_POLICY")]
    pub policy: Option<PolicyName>,
    /// Show each point's verdict and reason; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub async fn run(ctx: &Context, a: PruneArgs) -> Result<(), Failure> {
    let policies: Vec<_> = ctx
        .config()
        .policies
        .iter()
        .filter(|p| a.policy.as_ref().is_none_or(|n| &p.name == n))
        .collect();
    if policies.is_empty() {
        return Err(Failure::input(anyhow::anyhow!(match &a.policy {
            Some(p) =>
                format!("policy {p:?} is not in the configuration (retention is configured there)"),
            None => "no policy is configured; give a configuration with --config".into(),
        })));
    }
    let catalog = ctx.catalog().await?;
    let now = ctx.app.clock.now();
    let mut json = Vec::new();
    let mut not_deleted = 0;
    for p in policies {
        let verdicts = crate::prune::plan(&catalog, p, now).await?;
        let report = if a.dry_run {
            None
        } else {
            let clients = ctx.app.clients().await?;
            Some(
                crate::prune::execute(
                    &catalog,
                    &clients.longhorn,
                    &clients.store,
                    &p.name,
                    &verdicts,
                    Duration::from_secs(600),
                    &ctx.app.clock,
                )
                .await?,
            )
        };
        not_deleted += report.as_ref().map_or(0, |r| r.errors.len());
        match ctx.output {
            Format::Json => json.push(serde_json::json!({
                "policy": p.name, "dry_run": a.dry_run, "verdicts": verdicts, "report": report,
            })),
            Format::Table => {
                let prune = verdicts.iter().filter(|v| v.prune()).count();
                println!(
                    "Policy {}: {} points, {} {} ({:?})",
                    p.name,
                    verdicts.len(),
                    prune,
                    if a.dry_run {
                        "would be pruned"
                    } else {
                        "pruned"
                    },
                    p.retain
                );
                let mut t = Table::new(&["POINT", "TIME", "STATE", "VERDICT", "WHY"]);
                for v in &verdicts {
                    t.row(vec![
                        v.id.to_string(),
                        fmt_time(v.at),
                        v.state.to_string(),
                        if v.prune() {
                            "prune".into()
                        } else {
                            "keep".into()
                        },
                        v.reason(),
                    ]);
                }
                print!("{}", t.render());
                if let Some(r) = &report {
                    println!(
                        "pruned {} points, deleted {} backups and {} manifest bundles",
                        r.points_pruned, r.backups_deleted, r.bundles_deleted
                    );
                    for e in &r.errors {
                        eprintln!("  not deleted (kept for the next prune): {e}");
                    }
                }
            }
        }
    }
    let history = ctx.config().history;
    let compacted = if a.dry_run {
        None
    } else {
        Some(crate::prune::compact_history(&catalog, &history, ctx.app.clock.now()).await?)
    };
    match ctx.output {
        Format::Json => output::json(&serde_json::json!({
            "policies": json,
            "history": compacted.map(|c| serde_json::json!({
                "backup_rows": c.backup_rows, "points": c.points, "ticks": c.ticks,
            })),
        }))?,
        Format::Table => {
            if let Some(c) = compacted {
                println!(
                    "history: removed {} backup rows of points pruned over {} ago, {} points and {} tick outcomes older than {}",
                    c.backup_rows, history.pruned_backups, c.points, c.ticks, history.points
                );
            }
        }
    }
    // Deletions that failed stay for the next prune: not a success.
    if not_deleted > 0 {
        return Err(Failure::failed(anyhow::anyhow!(
            "{not_deleted} backups could not be deleted in Longhorn (listed above); their points stay pruned and the next prune tries again"
        )));
    }
    Ok(())
}
