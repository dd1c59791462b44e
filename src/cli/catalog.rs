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
}

pub async fn run(ctx: &Context, c: CatalogCommand) -> Result<(), Failure> {
    let catalog = ctx.catalog().await?;
    match c {
        CatalogCommand::List { policy, limit } => {
            if let Some(p) = &policy {
                catalog.policy(p.as_str()).await.map_err(Failure::input)?;
            }
            let points = catalog.list_points(policy.as_ref(), limit).await?;
            match ctx.output {
                Format::Json => output::json(&json!({ "points": points }))?,
                Format::Table => {
                    if points.is_empty() {
                        println!("No recovery points in the catalog ({}).", ctx.catalog_url);
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
