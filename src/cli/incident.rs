//! `dr incident open|resolve|list`: outage windows, declared by people.

use super::output::{self, Format, Table};
use super::{Context, Failure};
use crate::catalog::{CatalogError, IncidentId, IncidentSource};
use crate::names::PolicyName;
use crate::timespec::{self, Target, fmt_time};
use chrono::{DateTime, Utc};
use clap::Subcommand;
use serde_json::json;

/// `dr incident …`
#[derive(Debug, Subcommand)]
pub enum IncidentCommand {
    /// Declare an incident (an outage began).
    Open {
        /// What is broken, in a few words.
        #[arg(long, short = 't')]
        title: String,
        /// The affected policy (its application).
        #[arg(long, short = 'p', env = "DR_POLICY")]
        policy: Option<PolicyName>,
        /// When the outage began [default: now]; same forms as `restore --to`.
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
        /// Time zone for `YYYY-MM-DD HH:MM` times.
        #[arg(long, env = "DR_TZ", default_value = "UTC", value_name = "ZONE")]
        tz: String,
    },
    /// Resolve an open incident (service restored).
    Resolve {
        /// The incident's id (from `dr incident list`).
        id: IncidentId,
        /// When service was restored [default: now].
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
        /// Time zone for `YYYY-MM-DD HH:MM` times.
        #[arg(long, env = "DR_TZ", default_value = "UTC", value_name = "ZONE")]
        tz: String,
        /// A closing note (cause, fix).
        #[arg(long)]
        note: Option<String>,
    },
    /// List incidents, newest first.
    List {
        /// Only this policy's incidents.
        #[arg(long, short = 'p', env = "DR_POLICY")]
        policy: Option<PolicyName>,
        /// Only incidents not yet resolved.
        #[arg(long)]
        open: bool,
        /// At most this many.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=100_000))]
        limit: i64,
    },
}

fn when(at: Option<&str>, tz: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, Failure> {
    let Some(at) = at else { return Ok(now) };
    let tz = timespec::parse_tz(tz).map_err(Failure::input)?;
    match timespec::parse(at, now, tz).map_err(Failure::input)? {
        Target::Latest => Err(Failure::input(anyhow::anyhow!(
            "--at {at:?}: `latest` is not a time here; use `now`, `2h ago` or an RFC 3339 time"
        ))),
        Target::At(t) if t > now => Err(Failure::input(anyhow::anyhow!(
            "--at {at:?} was understood as {}, which is in the future (now is {}); incidents are recorded when they happen",
            fmt_time(t),
            fmt_time(now)
        ))),
        Target::At(t) => Ok(t),
    }
}

fn input_or_failed(e: CatalogError) -> Failure {
    match e {
        CatalogError::UnknownPolicy { .. }
        | CatalogError::NotFound { .. }
        | CatalogError::Incident { .. } => Failure::input(e),
        other => Failure::failed(other),
    }
}

pub async fn run(ctx: &Context, c: IncidentCommand) -> Result<(), Failure> {
    let now = ctx.app.clock.now();
    let catalog = ctx.catalog().await?;
    match c {
        IncidentCommand::Open {
            title,
            policy,
            at,
            tz,
        } => {
            if title.trim().is_empty() {
                return Err(Failure::input(anyhow::anyhow!(
                    "--title is empty; say in a few words what is broken"
                )));
            }
            let at = when(at.as_deref(), &tz, now)?;
            let inc = catalog
                .open_incident(policy.as_ref(), title.trim(), IncidentSource::Declared, at)
                .await
                .map_err(input_or_failed)?;
            match ctx.output {
                Format::Json => output::json(&json!({ "incident": inc }))?,
                Format::Table => println!(
                    "Opened incident {} at {}: {}",
                    inc.id,
                    fmt_time(inc.opened_at),
                    inc.title
                ),
            }
        }
        IncidentCommand::Resolve { id, at, tz, note } => {
            let at = when(at.as_deref(), &tz, now)?;
            let inc = catalog
                .resolve_incident(id, at, note.as_deref())
                .await
                .map_err(input_or_failed)?;
            match ctx.output {
                Format::Json => output::json(&json!({ "incident": inc }))?,
                Format::Table => {
                    let dur = inc.resolved_at.unwrap_or(at) - inc.opened_at;
                    println!(
                        "Resolved incident {} at {} after {}",
                        inc.id,
                        fmt_time(at),
                        crate::span::human(dur)
                    );
                }
            }
        }
        IncidentCommand::List {
            policy,
            open,
            limit,
        } => {
            if let Some(p) = &policy {
                catalog.policy(p.as_str()).await.map_err(Failure::input)?;
            }
            let list = catalog.list_incidents(policy.as_ref(), open, limit).await?;
            match ctx.output {
                Format::Json => output::json(&json!({ "incidents": list }))?,
                Format::Table => {
                    if list.is_empty() {
                        println!("No incidents.");
                        return Ok(());
                    }
                    let mut t = Table::new(&[
                        "ID", "POLICY", "SOURCE", "OPENED", "RESOLVED", "DURATION", "TITLE",
                    ]);
                    for i in &list {
                        let dur = i.resolved_at.unwrap_or(now) - i.opened_at;
                        t.row(vec![
                            i.id.to_string(),
                            i.policy
                                .as_ref()
                                .map(|p| p.to_string())
                                .unwrap_or("-".into()),
                            i.source.to_string(),
                            fmt_time(i.opened_at),
                            output::time_or_dash(i.resolved_at),
                            format!(
                                "{}{}",
                                crate::span::human(dur),
                                if i.resolved_at.is_none() {
                                    " (open)"
                                } else {
                                    ""
                                }
                            ),
                            i.title.clone(),
                        ]);
                    }
                    print!("{}", t.render());
                }
            }
        }
    }
    Ok(())
}
