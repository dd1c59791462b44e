//! `dr drill`: restore drills into scratch namespaces, and their records.

use super::output::{self, Format, Table};
use super::progress::{Terminal, render_summary};
use super::{Context, Failure};
use crate::catalog::{PointId, RunId, RunKind};
use crate::drill;
use crate::names::PolicyName;
use crate::restore::{self, RestorePlan};
use crate::runbook::summary::RunSummary;
use crate::timespec::{self, fmt_time};
use clap::Subcommand;
use serde_json::json;

/// `dr drill …`
#[derive(Debug, Subcommand)]
pub enum DrillCommand {
    /// Run a drill now: restore a recovery point into a new scratch namespace
    /// (dr-drill-<policy>-<id>), verify it with the runbook, tear it down.
    /// Passes only if verification passed and teardown completed.
    #[command(
        after_long_help = "Exit codes: 0 passed; 1 failed (recorded; the scratch namespace is torn down either way); 2 bad input."
    )]
    Run {
        /// The policy [default: the only policy in the catalog].
        #[arg(long, short = 'p', env = "DR_POLICY")]
        policy: Option<PolicyName>,
        /// Drill this recovery point.
        #[arg(long, conflicts_with = "to", value_name = "ID")]
        point: Option<i64>,
        /// Drill the newest complete point at or before this time [default: latest].
        #[arg(long, value_name = "TIME")]
        to: Option<String>,
        /// The runbook [default: the policy's drill runbook, else its runbook].
        #[arg(long, value_name = "FILE")]
        runbook: Option<std::path::PathBuf>,
        /// The age identity file that opens the point's sealed Secrets
        /// [default: the configuration's `secrets_identity`; without one,
        /// Secrets are copied from the live namespace]. A wrong identity
        /// fails the drill before anything is applied.
        #[arg(long, env = "DR_SECRETS_IDENTITY", value_name = "FILE")]
        secrets_identity: Option<std::path::PathBuf>,
    },
    /// Drills, newest first: verdict, point, duration.
    List {
        #[arg(long, short = 'p')]
        policy: Option<PolicyName>,
        /// At most this many.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i64).range(1..=100_000))]
        limit: i64,
    },
    /// One drill (or restore) run: stages against budgets, steps, verdict.
    Show {
        /// The run id.
        id: i64,
    },
    /// Remove drill leftovers now: interrupted drills and drill namespaces
    /// older than --ttl (`dr serve` does this at start).
    Clean {
        /// Age past which a drill namespace is a leftover [default: the
        /// shortest drill TTL of the configured policies, else 2h].
        #[arg(long, value_name = "SPAN")]
        ttl: Option<crate::span::Span>,
    },
}

pub async fn run(ctx: &Context, c: DrillCommand) -> Result<(), Failure> {
    match c {
        DrillCommand::Run {
            policy,
            point,
            to,
            runbook,
            secrets_identity,
        } => {
            // Everything that can be refused is checked (catalog, point,
            // runbook) before Kubernetes or Longhorn is contacted.
            let catalog = ctx.catalog().await?;
            let now = ctx.app.clock.now();
            let policy = restore::choose_policy(&catalog, policy.as_ref())
                .await
                .map_err(Failure::input)?;
            let plan: RestorePlan = match (point, to) {
                (Some(id), _) => restore::plan_of_point(&catalog, &policy, PointId(id), None, now)
                    .await
                    .map_err(Failure::input)?,
                (None, to) => {
                    let target =
                        timespec::parse(to.as_deref().unwrap_or("latest"), now, chrono_tz::UTC)
                            .map_err(Failure::input)?;
                    restore::plan(&catalog, &policy, target, now)
                        .await
                        .map_err(Failure::input)?
                }
            };
            let (path, rb) = ctx
                .app
                .drill_runbook(policy.name.as_str(), runbook.as_deref())
                .map_err(Failure::input)?;
            rb.check_rto(&path.display().to_string(), policy.rto)
                .map_err(Failure::input)?;
            let identity = ctx
                .app
                .secrets_identity(secrets_identity.as_deref())
                .map_err(Failure::input)?;
            let env = ctx.app.env().await?;
            if ctx.output == Format::Table {
                println!(
                    "Drill of policy {} (point {} taken {}), runbook {} ({})",
                    policy.name,
                    plan.point.id,
                    fmt_time(plan.point.point_at.unwrap_or(plan.point.tick_at)),
                    rb.name,
                    path.display()
                );
            }
            let obs = Terminal::new();
            let out = drill::start(&ctx.app, &env, &policy, rb, &plan, identity, &obs)
                .await
                .map_err(|e| {
                    if e.is_refusal() {
                        Failure::input(e)
                    } else {
                        Failure::failed(e)
                    }
                })?;
            obs.finish();
            let passed = drill::passed(&out.summary);
            match ctx.output {
                Format::Json => output::json(&json!({ "passed": passed, "run": out.summary }))?,
                Format::Table => {
                    print!("{}", render_summary(&out.summary));
                    println!("Drill {}", if passed { "PASSED" } else { "FAILED" });
                }
            }
            if passed {
                Ok(())
            } else {
                Err(Failure::failed(anyhow::anyhow!(
                    "drill run {} failed: {}",
                    out.summary.run_id,
                    out.summary.error.clone().unwrap_or_default()
                )))
            }
        }
        DrillCommand::List { policy, limit } => {
            let catalog = ctx.catalog().await?;
            let runs = catalog
                .list_runs(Some(RunKind::Drill), policy.as_ref(), limit)
                .await?;
            let summaries: Vec<(crate::catalog::RunRecord, Option<RunSummary>)> = runs
                .into_iter()
                .map(|r| {
                    let s = crate::runbook::summary::stored(&r);
                    (r, s)
                })
                .collect();
            match ctx.output {
                Format::Json => {
                    output::json(&json!({ "drills": summaries.iter().map(|(r, s)| json!({
                    "run": r, "passed": s.as_ref().map(drill::passed), "summary": s,
                })).collect::<Vec<_>>() }))?
                }
                Format::Table => {
                    let mut t = Table::new(&[
                        "RUN",
                        "POLICY",
                        "POINT",
                        "STARTED",
                        "NAMESPACE",
                        "STATE",
                        "RTO TIME",
                        "VERDICT",
                    ]);
                    for (r, s) in &summaries {
                        t.row(vec![
                            r.id.to_string(),
                            r.policy.to_string(),
                            r.point_id
                                .map(|p| p.to_string())
                                .unwrap_or_else(|| "-".into()),
                            fmt_time(r.started_at),
                            r.target_namespace.to_string(),
                            r.state.to_string(),
                            s.as_ref()
                                .map(|s| format!("{:.1}s", s.total_seconds))
                                .unwrap_or_else(|| "-".into()),
                            match s {
                                Some(s) if drill::passed(s) => "passed".into(),
                                Some(_) => "FAILED".into(),
                                None => "-".into(),
                            },
                        ]);
                    }
                    print!("{}", t.render());
                }
            }
            Ok(())
        }
        DrillCommand::Show { id } => {
            let catalog = ctx.catalog().await?;
            let r = catalog.run(RunId(id)).await.map_err(Failure::input)?;
            let s: Option<RunSummary> = crate::runbook::summary::stored(&r);
            let steps = catalog.steps(r.id).await?;
            match ctx.output {
                Format::Json => output::json(&json!({ "run": r, "summary": s, "steps": steps }))?,
                Format::Table => {
                    match &s {
                        Some(s) => print!("{}", render_summary(s)),
                        None => println!(
                            "Run {} ({} of policy {} into {}): {}",
                            r.id, r.kind, r.policy, r.target_namespace, r.state
                        ),
                    }
                    let mut t = Table::new(&["#", "STAGE", "STEP", "STATE", "SECONDS", "DETAIL"]);
                    for st in &steps {
                        let secs = match (st.started_at, st.finished_at) {
                            (Some(a), Some(b)) => {
                                format!("{:.1}", (b - a).num_milliseconds() as f64 / 1000.0)
                            }
                            _ => "-".into(),
                        };
                        let detail: String = st
                            .detail
                            .clone()
                            .unwrap_or_default()
                            .chars()
                            .take(100)
                            .collect();
                        t.row(vec![
                            st.seq.to_string(),
                            st.stage.clone(),
                            st.step.clone(),
                            st.state.to_string(),
                            secs,
                            detail,
                        ]);
                    }
                    println!();
                    print!("{}", t.render());
                }
            }
            Ok(())
        }
        DrillCommand::Clean { ttl } => {
            let env = ctx.app.env().await?;
            let ttl = ttl.map_or(ctx.app.shortest_drill_ttl(), |t| t.as_duration());
            let j = drill::janitor(&env, &ctx.app.holder, ttl, env.clock.now()).await;
            match ctx.output {
                Format::Json => output::json(&j)?,
                Format::Table => println!(
                    "interrupted drill runs torn down: {:?}\nstale drill namespaces removed: {:?}\nerrors: {:?}",
                    j.interrupted_runs, j.stale_namespaces, j.errors
                ),
            }
            if j.errors.is_empty() {
                Ok(())
            } else {
                Err(Failure::failed(anyhow::anyhow!(
                    "some leftovers could not be removed: {}",
                    j.errors.join("; ")
                )))
            }
        }
    }
}
