//! `dr restore`: plan a restore from the catalog (`--dry-run`).

use super::output::{self, Format, Table};
use super::{Context, Failure};
use crate::restore::{self, RestorePlan};
use crate::span::human;
use crate::timespec::{self, fmt_time};
use clap::Args;
use serde_json::json;

/// Arguments of `dr restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Restore to this time: RFC 3339 (2026-11-24T09:45:00Z), `latest`, `2h ago`,
    /// `now-2h`, or `YYYY-MM-DD HH:MM` read in --tz. The newest complete recovery
    /// point at or before it is chosen; an impossible time is refused.
    #[arg(long, env = "DR_RESTORE_TO", value_name = "TIME")]
    pub to: String,

    /// The policy to restore [default: the only policy in the catalog].
    #[arg(long, short = 'p', env = "DR_POLICY")]
    pub policy: Option<String>,

    /// Time zone for `YYYY-MM-DD HH:MM` times (IANA name).
    #[arg(long, env = "DR_TZ", default_value = "UTC", value_name = "ZONE")]
    pub tz: String,

    /// Print the plan (recovery point, backups, data loss against the RPO) and
    /// change nothing. Required: this version of dr plans restores but does not
    /// execute them.
    #[arg(long, required = true)]
    pub dry_run: bool,
}

pub async fn run(ctx: &Context, a: RestoreArgs) -> Result<(), Failure> {
    let now = chrono::Utc::now();
    let tz = timespec::parse_tz(&a.tz).map_err(Failure::input)?;
    let target = timespec::parse(&a.to, now, tz).map_err(Failure::input)?;
    let catalog = ctx.catalog().await?;
    let planned = async {
        let policy = restore::choose_policy(&catalog, a.policy.as_deref()).await?;
        restore::plan(&catalog, &policy, target, now).await
    }
    .await;
    match planned {
        Ok(plan) => {
            match ctx.output {
                Format::Json => output::json(&json!({ "dry_run": true, "plan": plan }))?,
                Format::Table => print!("{}", render(&plan, &a.to)),
            }
            Ok(())
        }
        Err(e) => {
            if ctx.output == Format::Json {
                let (window, candidates) = match e.context() {
                    Some((w, c)) => (Some(*w), c.to_vec()),
                    None => (None, Vec::new()),
                };
                output::json(&json!({ "error": {
                    "kind": e.kind(),
                    "message": e.to_string(),
                    "window": window,
                    "candidates": candidates,
                }}))?;
            }
            Err(if e.is_input_error() {
                Failure::input(e)
            } else {
                Failure::failed(e)
            })
        }
    }
}

fn render(p: &RestorePlan, asked: &str) -> String {
    let mut s = String::new();
    let point_at = p.point.point_at.unwrap_or(p.point.tick_at);
    s.push_str(&format!(
        "Restore plan (dry run: nothing is changed) for policy {} (namespace {})\n",
        p.policy, p.namespace
    ));
    s.push_str(&format!(
        "  target          {} (asked: {asked:?})\n",
        fmt_time(p.target_at)
    ));
    s.push_str(&format!(
        "  recovery point  {} taken {} (tick {}), {} backups\n",
        p.point.id,
        fmt_time(point_at),
        fmt_time(p.point.tick_at),
        p.backups.len()
    ));
    s.push_str(&format!(
        "  data loss       {} against RPO {}: {}\n",
        human(p.data_loss_seconds),
        p.rpo,
        if p.within_rpo {
            "within RPO"
        } else {
            "OVER RPO"
        }
    ));
    s.push_str(&format!(
        "  window          {} .. {}\n",
        fmt_time(p.window.oldest),
        fmt_time(p.window.newest)
    ));
    if let Some(n) = &p.next_point {
        s.push_str(&format!(
            "  next point      {} at {} (after the target, not chosen)\n",
            n.point_id,
            fmt_time(n.at)
        ));
    }
    s.push('\n');
    let mut t = Table::new(&["VOLUME", "PVC", "BACKUP", "SIZE", "SNAPSHOT", "VERIFIED"]);
    for b in &p.backups {
        t.row(vec![
            b.volume.to_string(),
            b.pvc.clone().unwrap_or_else(|| "-".into()),
            b.backup_name.clone().unwrap_or_else(|| "-".into()),
            b.size_bytes
                .map(output::bytes)
                .unwrap_or_else(|| "-".into()),
            output::time_or_dash(b.snapshot_at),
            b.verification.to_string(),
        ]);
    }
    s.push_str(&t.render());
    s
}
