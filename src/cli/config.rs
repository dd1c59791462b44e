//! `dr config check`: validate a configuration file, print what dr will use.

use super::output::{self, Format};
use super::{Context, Failure};
use crate::config::Config;
use clap::Subcommand;
use std::path::PathBuf;

/// `dr config …`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a configuration file and print the effective configuration
    /// (defaults filled in, secrets redacted).
    Check {
        /// The file to check [default: --config / DR_CONFIG].
        file: Option<PathBuf>,
    },
}

pub async fn run(ctx: &Context, c: ConfigCommand) -> Result<(), Failure> {
    let ConfigCommand::Check { file } = c;
    let (config, path) = match (file, &ctx.config_path) {
        (Some(f), _) => (Config::load(&f).map_err(Failure::input)?, f),
        (None, Some(p)) => (ctx.config().clone(), p.clone()),
        (None, None) => {
            return Err(Failure::input(anyhow::anyhow!(
                "no configuration file to check; give one: `dr config check FILE` or --config FILE"
            )));
        }
    };
    let mut effective = config.clone();
    // The catalog URL may carry a password: never print it.
    if let Some(c) = &effective.catalog {
        effective.catalog = c.redacted().parse().ok();
    }
    // Said of every policy whose Secrets will not survive the cluster.
    let secrets: Vec<serde_json::Value> = config
        .policies
        .iter()
        .map(|p| {
            let mode = p.secrets_mode();
            serde_json::json!({"policy": p.name, "secrets": mode, "note": mode.note()})
        })
        .collect();
    match ctx.output {
        Format::Json => output::json(&serde_json::json!({
            "file": path.display().to_string(),
            "valid": true,
            "config": effective,
            "secrets": secrets,
        }))?,
        Format::Table => {
            eprintln!(
                "{}: valid ({} polic{})",
                path.display(),
                config.policies.len(),
                if config.policies.len() == 1 {
                    "y"
                } else {
                    "ies"
                }
            );
            for p in &config.policies {
                if let Some(note) = p.secrets_mode().note() {
                    eprintln!("policy {}: {note}", p.name);
                }
            }
            print!("{}", serde_norway::to_string(&effective)?);
        }
    }
    Ok(())
}
