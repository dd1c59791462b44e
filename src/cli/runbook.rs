//! `dr runbook validate`: check a runbook file before an incident needs it.

use super::output::{self, Format, Table};
use super::{Context, Failure};
use crate::names::PolicyName;
use crate::runbook::Runbook;
use crate::span::Span;
use clap::Subcommand;
use serde_json::json;
use std::path::PathBuf;

/// `dr runbook …`
#[derive(Debug, Subcommand)]
pub enum RunbookCommand {
    /// Parse and check a runbook: known step kinds and options, a workable
    /// order, budgets that sum to at most the RTO. Errors name the step.
    Validate {
        /// The runbook file (YAML).
        file: PathBuf,
        /// Check the budgets against this RTO [default: the policy's, else 1h].
        #[arg(long, value_name = "SPAN", value_parser = positive_span)]
        rto: Option<Span>,
        /// Check against this configured policy's RTO.
        #[arg(long, short = 'p')]
        policy: Option<PolicyName>,
    },
}

/// An RTO given on the command line: a span more than zero, as in the
/// configuration.
fn positive_span(s: &str) -> Result<Span, String> {
    crate::config::Positive::try_from(s.to_owned()).map(|p| p.0)
}

pub async fn run(ctx: &Context, c: RunbookCommand) -> Result<(), Failure> {
    let RunbookCommand::Validate { file, rto, policy } = c;
    let rto = match (rto, &policy) {
        (Some(r), _) => r,
        (None, Some(p)) => {
            ctx.config()
                .policies
                .iter()
                .find(|x| &x.name == p)
                .ok_or_else(|| {
                    Failure::input(anyhow::anyhow!(
                        "policy {p:?} is not in the configuration; give --config, or --rto"
                    ))
                })?
                .rto
                .0
        }
        (None, None) => Span::from_secs(3600),
    };
    let name = file.display().to_string();
    let rb = Runbook::load(&file).map_err(Failure::input)?;
    rb.check_rto(&name, rto).map_err(Failure::input)?;
    match ctx.output {
        Format::Json => output::json(&json!({
            "file": name, "valid": true, "rto": rto, "total_budget": rb.total_budget(), "runbook": rb,
        }))?,
        Format::Table => {
            println!(
                "{name}: valid. Runbook {:?}, {} stages, budgets {} of RTO {rto}",
                rb.name,
                rb.stages.len(),
                rb.total_budget()
            );
            let mut t = Table::new(&["#", "STAGE", "BUDGET", "STEP"]);
            for s in rb.planned() {
                t.row(vec![
                    s.seq.to_string(),
                    s.stage.clone(),
                    s.stage_budget.to_string(),
                    s.label.clone(),
                ]);
            }
            print!("{}", t.render());
        }
    }
    Ok(())
}
