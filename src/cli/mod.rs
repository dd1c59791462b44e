//! The command line: clap definitions and one file per subcommand. Every flag
//! can also come from the environment (`DR_…`). `anyhow` is used only here.

pub mod backup;
pub mod catalog;
pub mod config;
pub mod drill;
pub mod incident;
pub mod output;
pub mod progress;
pub mod prune;
pub mod report;
pub mod restore;
pub mod runbook;
pub mod serve;
pub mod status;

use crate::app::App;
use crate::catalog::Catalog;
use crate::config::{CatalogUrl, Config, DEFAULT_CATALOG};
use clap::{Parser, Subcommand};
use output::Format;
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: the operation failed (catalog unreachable, I/O, …).
pub const EXIT_FAILED: u8 = 1;
/// Exit code: bad input or a refusal (unparsable time, unknown policy,
/// impossible target, bad config, busy target, live data without --replace).
pub const EXIT_INPUT: u8 = 2;
/// Exit code of `dr restore`: restored, but over the RTO.
pub const EXIT_OVER_RTO: u8 = 3;

/// Disaster recovery for stateful Kubernetes applications on Longhorn volumes.
///
/// dr backs up protected volumes on a schedule into recovery points recorded in a
/// catalog, and restores from it: `dr restore --to <time>` picks the newest complete
/// point at or before that time, shows the data loss against the RPO, and follows the
/// policy's runbook (infrastructure, redeploy, data, verification), timing each stage
/// against the RTO. `--dry-run` prints the plan only.
#[derive(Debug, Parser)]
#[command(name = "dr", version, about, long_about, max_term_width = 100)]
pub struct Cli {
    /// Configuration file (YAML). Without one, dr runs with defaults and no policies.
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "DR_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,

    /// Catalog URL: sqlite://PATH or postgres://USER@HOST/DB [default: the config's
    /// `catalog`, else sqlite://dr.db]
    #[arg(
        long,
        global = true,
        env = "DR_CATALOG",
        value_name = "URL",
        hide_env_values = true
    )]
    pub catalog: Option<String>,

    /// Output format.
    #[arg(long, short = 'o', global = true, env = "DR_OUTPUT", value_enum, default_value_t = Format::Table)]
    pub output: Format,

    /// Log filter (tracing syntax, e.g. `info`, `dr=debug`); logs go to stderr.
    #[arg(
        long,
        global = true,
        env = "DR_LOG",
        default_value = "warn",
        value_name = "FILTER",
        value_parser = log_filter
    )]
    pub log: String,

    #[command(subcommand)]
    pub command: Command,
}

/// dr's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon until SIGTERM: ticks, retention, scheduled drills, probes,
    /// and /healthz, /readyz, /metrics.
    Serve(serve::ServeArgs),
    /// Back up by hand: run one tick of a policy now.
    #[command(subcommand)]
    Backup(backup::BackupCommand),
    /// Apply retention: delete the backups of points no retention slot keeps.
    Prune(prune::PruneArgs),
    /// Protection status: RPO exposure now, last ticks, next tick, per policy.
    Status(status::StatusArgs),
    /// Inspect the catalog of recovery points and backups.
    #[command(subcommand)]
    Catalog(catalog::CatalogCommand),
    /// Restore to a point in time, following the runbook (--dry-run prints the plan).
    Restore(restore::RestoreArgs),
    /// Check runbooks.
    #[command(subcommand)]
    Runbook(runbook::RunbookCommand),
    /// Restore drills into scratch namespaces: run, list, show, clean.
    #[command(subcommand)]
    Drill(drill::DrillCommand),
    /// The report: RPO and RTO compliance, MTBF, MTTR and availability
    /// (table, json, markdown, or a self-contained html file with charts).
    Report(report::ReportArgs),
    /// Declare, resolve and list incidents (outage windows).
    #[command(subcommand)]
    Incident(incident::IncidentCommand),
    /// Validate a configuration file and print the effective configuration.
    #[command(subcommand)]
    Config(config::ConfigCommand),
}

/// A CLI failure, with the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

impl Failure {
    /// Bad input: exit code 2.
    pub fn input(e: impl Into<anyhow::Error>) -> Self {
        Failure {
            code: EXIT_INPUT,
            error: e.into(),
        }
    }
    /// Operational failure: exit code 1.
    pub fn failed(e: impl Into<anyhow::Error>) -> Self {
        Failure {
            code: EXIT_FAILED,
            error: e.into(),
        }
    }
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::failed(e)
    }
}

/// What every subcommand gets: the application context and the globals.
pub struct Context {
    pub app: std::sync::Arc<App>,
    pub config_path: Option<PathBuf>,
    pub output: Format,
}

impl Context {
    fn new(cli: &Cli) -> Result<Self, Failure> {
        let config = match &cli.config {
            Some(p) => Config::load(p).map_err(Failure::input)?,
            None => Config::default(),
        };
        // Parsed here, not by clap: clap's refusal would echo the URL with
        // its password; this one prints it redacted.
        let catalog_url = match (&cli.catalog, &config.catalog) {
            (Some(u), _) => u
                .parse::<CatalogUrl>()
                .map_err(|e| Failure::input(anyhow::anyhow!("--catalog: {e}")))?,
            (None, Some(u)) => u.clone(),
            (None, None) => DEFAULT_CATALOG
                .parse()
                .map_err(|e: String| Failure::failed(anyhow::anyhow!(e)))?,
        };
        Ok(Context {
            app: std::sync::Arc::new(App::new(config, cli.config.as_deref(), catalog_url)),
            config_path: cli.config.clone(),
            output: cli.output,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.app.config
    }

    /// The catalog, with the configured policies registered in it.
    pub async fn catalog(&self) -> Result<Catalog, Failure> {
        Ok(self.app.catalog().await?.clone())
    }
}

/// A `--log` filter tracing accepts; a bad one is refused, not replaced by
/// `warn` behind the user's back.
fn log_filter(s: &str) -> Result<String, String> {
    match tracing_subscriber::EnvFilter::try_new(s) {
        Ok(_) => Ok(s.to_owned()),
        Err(e) => Err(format!(
            "{s:?} is not a log filter ({e}); use a level (error, warn, info, debug, trace) or directives such as dr=debug,kube=warn"
        )),
    }
}

fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// Parses the command line, runs the command, and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(f) => {
            eprintln!("error: {:#}", f.error);
            ExitCode::from(f.code)
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let ctx = Context::new(&cli)?;
    match cli.command {
        Command::Serve(a) => serve::run(&ctx, a).await,
        Command::Backup(c) => backup::run(&ctx, c).await,
        Command::Status(a) => status::run(&ctx, a).await,
        Command::Prune(a) => prune::run(&ctx, a).await,
        Command::Catalog(c) => catalog::run(&ctx, c).await,
        Command::Restore(a) => restore::run(&ctx, a).await,
        Command::Runbook(c) => runbook::run(&ctx, c).await,
        Command::Drill(c) => drill::run(&ctx, c).await,
        Command::Report(a) => report::run(&ctx, a).await,
        Command::Incident(c) => incident::run(&ctx, c).await,
        Command::Config(c) => config::run(&ctx, c).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn log_filters_are_checked() {
        for ok in ["warn", "info", "dr=debug,kube=warn", ""] {
            assert_eq!(log_filter(ok).as_deref(), Ok(ok));
        }
        for bad in ["dr=loud", "[{", "dr=infoo"] {
            let e = log_filter(bad).unwrap_err();
            assert!(
                e.contains(&format!("{bad:?}")) && e.contains("dr=debug"),
                "{e}"
            );
        }
    }
}
