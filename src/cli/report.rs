//! `dr report`: RPO and RTO compliance, MTBF, MTTR and availability.

use super::output::Format;
use super::{Context, Failure};
use crate::names::PolicyName;
use crate::report;
use crate::timespec;
use clap::{Args, ValueEnum};

/// The report's formats (beyond the global --output).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Table,
    Json,
    Markdown,
    /// One self-contained HTML file with charts (opens without a network).
    Html,
}

/// Arguments of `dr report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Only this policy [default: every policy in the catalog].
    #[arg(long, short = 'p')]
    pub policy: Option<PolicyName>,
    /// Window start (a time as for --to: RFC 3339, `30 days ago`, …).
    #[arg(long, default_value = "30 days ago", value_name = "TIME")]
    pub since: String,
    /// Window end.
    #[arg(long, default_value = "now", value_name = "TIME")]
    pub until: String,
    /// Time zone for `YYYY-MM-DD HH:MM` times.
    #[arg(long, default_value = "UTC", value_name = "ZONE")]
    pub tz: String,
    /// Report format [default: the global --output].
    #[arg(long, short = 'f', value_enum, value_name = "FORMAT")]
    pub format: Option<ReportFormat>,
    /// Write the report to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<std::path::PathBuf>,
}

pub async fn run(ctx: &Context, a: ReportArgs) -> Result<(), Failure> {
    let now = ctx.app.clock.now();
    let tz = timespec::parse_tz(&a.tz).map_err(Failure::input)?;
    let since = timespec::parse(&a.since, now, tz)
        .map_err(|e| Failure::input(anyhow::anyhow!("--since: {e}")))?
        .instant(now);
    let until = timespec::parse(&a.until, now, tz)
        .map_err(|e| Failure::input(anyhow::anyhow!("--until: {e}")))?
        .instant(now);
    if until <= since {
        return Err(Failure::input(anyhow::anyhow!(
            "--since {} is not before --until {}",
            timespec::fmt_time(since),
            timespec::fmt_time(until)
        )));
    }
    let catalog = ctx.catalog().await?;
    let policies = match &a.policy {
        Some(p) => vec![catalog.policy(p.as_str()).await.map_err(Failure::input)?],
        None => catalog.policies().await?,
    };
    // With a configuration, a policy it no longer lists (removed, renamed)
    // is measured up to its last tick; without one, it cannot be told.
    let configured: Option<Vec<PolicyName>> = ctx.config_path.is_some().then(|| {
        ctx.config()
            .policies
            .iter()
            .map(|p| p.name.clone())
            .collect()
    });
    let mut r = report::gather(
        &catalog,
        &policies,
        configured.as_deref(),
        since,
        until,
        now,
    )
    .await?;
    for p in &mut r.policies {
        p.secrets = p
            .policy
            .parse()
            .ok()
            .and_then(|n| ctx.config().policy(&n))
            .map(|c| c.secrets_mode());
    }
    let format = a.format.unwrap_or(match ctx.output {
        Format::Json => ReportFormat::Json,
        Format::Table => ReportFormat::Table,
    });
    let text = match format {
        ReportFormat::Json => report::render_json(&r).map_err(anyhow::Error::from)?,
        ReportFormat::Table => report::render_table(&r),
        ReportFormat::Markdown => report::render_markdown(&r),
        ReportFormat::Html => report::render_html(&r),
    };
    match &a.out {
        Some(path) => {
            std::fs::write(path, text).map_err(|e| {
                Failure::failed(anyhow::anyhow!("cannot write {}: {e}", path.display()))
            })?;
            eprintln!("report written to {}", path.display());
        }
        None => {
            print!("{text}");
        }
    }
    Ok(())
}
