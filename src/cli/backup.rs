//! `dr backup now`: run one tick by hand and show its progress.

use super::output::{self, Format};
use super::{Context, Failure};
use crate::backup::{Event, Events};
use crate::catalog::TickOutcome;
use crate::names::PolicyName;
use chrono::{DurationRound, TimeDelta};
use clap::Subcommand;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// `dr backup …`
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Run one tick of a policy now: snapshot and back up every protected
    /// volume, capture the manifests, and record the recovery point.
    Now {
        /// The policy [default: the only configured policy].
        #[arg(long, short = 'p', env = "DR_POLICY")]
        policy: Option<PolicyName>,
    },
}

pub async fn run(ctx: &Context, c: BackupCommand) -> Result<(), Failure> {
    let BackupCommand::Now { policy } = c;
    let p = match (&policy, ctx.config().policies.as_slice()) {
        (Some(name), all) => all.iter().find(|p| &p.name == name).ok_or_else(|| {
            Failure::input(anyhow::anyhow!(
                "policy {name:?} is not in the configuration; configured: {}",
                all.iter()
                    .map(|p| p.name.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?,
        (None, [only]) => only,
        (None, []) => {
            return Err(Failure::input(anyhow::anyhow!(
                "no policy is configured; give a configuration with --config"
            )));
        }
        (None, all) => {
            return Err(Failure::input(anyhow::anyhow!(
                "several policies are configured ({}); choose one with --policy",
                all.iter()
                    .map(|p| p.name.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    };
    let protect = ctx.app.protect().await?;
    let tick = ctx.app.clock.now().duration_trunc(TimeDelta::seconds(1))?;
    let quiet = ctx.output == Format::Json;
    let shown: Arc<Mutex<HashMap<String, (String, i64)>>> = Arc::default();
    let events: Events = Arc::new(move |e: Event| {
        if quiet {
            return;
        }
        match e {
            Event::Resolved {
                volumes,
                unprotectable,
            } => {
                eprintln!("{volumes} volumes to protect");
                for u in unprotectable {
                    eprintln!("  not protectable: {} ({})", u.pvc, u.reason);
                }
            }
            Event::Bundle { key, error } => match (key, error) {
                (Some(k), _) => eprintln!("manifests stored as {k}"),
                (_, Some(e)) => eprintln!("manifests NOT stored: {e}"),
                _ => {}
            },
            Event::Volume {
                volume: _,
                pvc,
                stage,
                progress,
            } => {
                let Ok(mut seen) = shown.lock() else { return };
                let last = seen.get(&pvc).cloned();
                // One line per stage and per 25% of progress: readable in logs.
                let show = match &last {
                    Some((s, p)) => s != &stage || progress / 25 > p / 25,
                    None => true,
                };
                if show {
                    eprintln!("  {pvc}: {stage} {progress}%");
                    seen.insert(pvc, (stage, progress));
                }
            }
            Event::Requested { .. } | Event::Completed { .. } => {}
            Event::VolumeDone {
                volume,
                state,
                verification,
                error,
            } => match error {
                None => eprintln!("  {volume}: {state}, {verification}"),
                Some(e) => eprintln!("  {volume}: {state}: {e}"),
            },
        }
    });
    let report = protect.tick(p, tick, events).await?;
    protect
        .catalog
        .record_tick(
            &p.name,
            tick,
            TickOutcome::Ran,
            Some(report.point_id),
            Some("by hand (dr backup now)"),
            ctx.app.clock.now(),
        )
        .await?;
    match ctx.output {
        Format::Json => output::json(&report)?,
        Format::Table => {
            println!(
                "Recovery point {} of policy {}: {}{}",
                report.point_id,
                report.policy,
                report.state,
                report
                    .reason
                    .as_ref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            );
        }
    }
    if report.state == crate::catalog::PointState::Complete {
        Ok(())
    } else {
        Err(Failure::failed(anyhow::anyhow!(
            "the recovery point is {}, not complete",
            report.state
        )))
    }
}
