//! `dr catalog list|show`: what the catalog holds.

use super::output::{self, Format, Table};
use super::{Context, Failure};
use crate::catalog::PointId;
use crate::names::PolicyName;
use crate::timespec::fmt_time;
use clap::Subcommand;
use serde_json::json;

/// `dr catalog …`
#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// List recovery points, newest first.
    List {
        /// Only this policy's points.
        #[arg(long, short = 'p', env = "DR_POLICY")]
        policy: Option<PolicyName>,
        /// At most this many points.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=100_000))]
        limit: i64,
    },
    /// Show one recovery point and its backups.
    Show {
        /// The recovery point's id (from `dr catalog list`).
        id: PointId,
    },
    /// Rebuild the catalog from Longhorn's backup list and the bundles and
    /// point files in S3 (after the catalog was lost), and report every
    /// other difference between catalog and store without changing it. A
    /// fresh Longhorn that does not list the backups the bucket names yet is
    /// asked for a backup-target sync first, and waited for (up to 2 min).
    Sync {
        /// Only this policy [default: every configured policy].
        #[arg(long, short = 'p', env = "DR_POLICY")]
        policy: Option<PolicyName>,
        /// Report only: record nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

pub async fn run(ctx: &Context, c: CatalogCommand) -> Result<(), Failure> {
    let catalog = ctx.catalog().await?;
    match c {
        CatalogCommand::Sync { policy, dry_run } => {
            let policies: Vec<_> = ctx
                .config()
                .policies
                .iter()
                .filter(|p| policy.as_ref().is_none_or(|n| &p.name == n))
                .collect();
            if policies.is_empty() {
                return Err(Failure::input(anyhow::anyhow!(
                    "no matching policy in the configuration; sync reads the policies (and where their backups are) from --config"
                )));
            }
            let crate::app::Clients {
                longhorn,
                store,
                verifier,
            } = ctx.app.clients().await?;
            let mut reports = Vec::new();
            for p in policies {
                let r = crate::sync::sync_policy(
                    &catalog,
                    longhorn,
                    store,
                    verifier,
                    p,
                    !dry_run,
                    &ctx.app.clock,
                )
                .await?;
                if ctx.output == Format::Table {
                    if let Some(s) = r.backup_target_sync_seconds {
                        println!(
                            "policy {}: Longhorn listed the bucket's backups after a backup-target sync dr asked for ({s:.1} s)",
                            p.name
                        );
                    }
                    for (policy, tick, n) in &r.recovered {
                        println!(
                            "{} point {policy} {} ({n} backups) from the store",
                            if dry_run {
                                "would recover"
                            } else {
                                "recovered"
                            },
                            fmt_time(*tick)
                        );
                    }
                    for d in &r.differences {
                        println!(
                            "DIFFERENCE {} {}: {}",
                            d.policy,
                            d.tick.map(fmt_time).unwrap_or_else(|| "-".into()),
                            d.what
                        );
                    }
                    if r.recovered.is_empty() && r.differences.is_empty() {
                        println!("policy {}: catalog and store agree", p.name);
                    }
                }
                reports
                    .push(serde_json::json!({ "policy": p.name, "dry_run": dry_run, "report": r }));
            }
            if ctx.output == Format::Json {
                output::json(&serde_json::json!({ "policies": reports }))?;
            }
        }
        CatalogCommand::List { policy, limit } => {
            if let Some(p) = &policy {
                catalog.policy(p.as_str()).await.map_err(Failure::input)?;
            }
            let points = catalog.list_points(policy.as_ref(), limit).await?;
            match ctx.output {
                Format::Json => output::json(&json!({ "points": points }))?,
                Format::Table => {
                    if points.is_empty() {
                        println!(
                            "No recovery points in the catalog ({}).",
                            ctx.app.catalog_url
                        );
                        return Ok(());
                    }
                    let mut t = Table::new(&[
                        "ID",
                        "POLICY",
                        "TICK",
                        "POINT TIME",
                        "STATE",
                        "BACKUPS",
                        "SIZE",
                    ]);
                    for s in &points {
                        t.row(vec![
                            s.point.id.to_string(),
                            s.point.policy.to_string(),
                            fmt_time(s.point.tick_at),
                            output::time_or_dash(s.point.point_at),
                            s.point.state.to_string(),
                            format!("{}/{}", s.completed, s.backups),
                            output::bytes(s.size_bytes),
                        ]);
                    }
                    print!("{}", t.render());
                }
            }
        }
        CatalogCommand::Show { id } => {
            let point = catalog.point(id).await.map_err(Failure::input)?;
            let backups = catalog.backups_of(id).await?;
            match ctx.output {
                Format::Json => output::json(&json!({ "point": point, "backups": backups }))?,
                Format::Table => {
                    println!("Recovery point {} of policy {}", point.id, point.policy);
                    println!("  state       {}", point.state);
                    println!("  tick        {}", fmt_time(point.tick_at));
                    println!("  point time  {}", output::time_or_dash(point.point_at));
                    println!(
                        "  consistency {}",
                        point
                            .consistency
                            .map_or("unknown (not recorded)", |c| c.as_str())
                    );
                    println!(
                        "  bundle      {}",
                        point.bundle_key.as_deref().unwrap_or("-")
                    );
                    if let Some(r) = &point.reason {
                        println!("  reason      {r}");
                    }
                    println!();
                    let mut t = Table::new(&[
                        "VOLUME", "PVC", "STATE", "BACKUP", "SIZE", "SNAPSHOT", "VERIFIED", "ERROR",
                    ]);
                    for b in &backups {
                        t.row(vec![
                            b.volume.to_string(),
                            b.pvc.clone().unwrap_or_else(|| "-".into()),
                            b.state.to_string(),
                            b.backup_name.clone().unwrap_or_else(|| "-".into()),
                            b.size_bytes
                                .map(output::bytes)
                                .unwrap_or_else(|| "-".into()),
                            output::time_or_dash(b.snapshot_at),
                            b.verification.to_string(),
                            b.error.clone().unwrap_or_default(),
                        ]);
                    }
                    print!("{}", t.render());
                }
            }
        }
    }
    Ok(())
}
