//! `dr restore`: plan a restore from the catalog, and run it through the
//! policy's runbook (or just print the plan with `--dry-run`).

use super::output::{self, Format, Table};
use super::progress::{Terminal, render_summary};
use super::{Context, Failure};
use crate::catalog::{IncidentId, RunKind};
use crate::names::{Namespace, PolicyName};
use crate::restore::{self, RestorePlan};
use crate::runbook::Runbook;
use crate::runbook::engine::{self as exec, Begun, RunSpec};
use crate::runbook::summary::exit_code;
use crate::span::{human, human_secs};
use crate::timespec::{self, fmt_time};
use clap::Args;
use serde_json::json;
use std::io::IsTerminal as _;
use std::path::PathBuf;

/// Arguments of `dr restore`.
#[derive(Debug, Args)]
#[command(
    after_long_help = "Exit codes: 0 restored within the RTO; 3 restored but over the RTO; \
1 failed (the run is recorded; run the same command again to resume it); 2 refused \
(bad time or policy, a busy target, live data without --replace, sealed Secrets without \
their identity)."
)]
pub struct RestoreArgs {
    /// Restore to this time: RFC 3339 (2026-11-24T09:45:00Z), `latest`, `2h ago`,
    /// `now-2h`, or `YYYY-MM-DD HH:MM` read in --tz. The newest complete recovery
    /// point at or before it is chosen; an impossible time is refused.
    #[arg(long, env = "DR_RESTORE_TO", value_name = "TIME")]
    pub to: String,

    /// The policy to restore [default: the only policy in the catalog].
    #[arg(long, short = 'p', env = "DR_POLICY")]
    pub policy: Option<PolicyName>,

    /// Time zone for `YYYY-MM-DD HH:MM` times (IANA name).
    #[arg(long, env = "DR_TZ", default_value = "UTC", value_name = "ZONE")]
    pub tz: String,

    /// Print the plan (recovery point, backups, data loss against the RPO) and
    /// change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Restore into this namespace [default: the policy's own namespace].
    #[arg(long, short = 'n', value_name = "NAMESPACE")]
    pub namespace: Option<Namespace>,

    /// Restore even though the target namespace has running workloads or
    /// claims of the same names: they are scaled to zero and their claims
    /// replaced (the old Longhorn volumes are kept).
    #[arg(long)]
    pub replace: bool,

    /// Accept a `partial` recovery point newer than the newest complete one:
    /// restore the volumes whose backups completed.
    #[arg(long)]
    pub allow_partial: bool,

    /// The runbook to follow [default: the policy's `runbook`, else
    /// runbooks/standard.yaml].
    #[arg(long, value_name = "FILE")]
    pub runbook: Option<PathBuf>,

    /// Link the run to this incident (see `dr incident list`).
    #[arg(long, value_name = "ID")]
    pub incident: Option<i64>,

    /// The age identity file (as `age-keygen` writes it) that opens the
    /// point's sealed Secrets, for policies with `secrets.recipients`
    /// [default: the configuration's `secrets_identity`]. A point with sealed
    /// Secrets is refused without it, or with an identity they were not
    /// sealed to, before anything is applied.
    #[arg(long, env = "DR_SECRETS_IDENTITY", value_name = "FILE")]
    pub secrets_identity: Option<PathBuf>,
}

fn refuse(ctx: &Context, e: restore::PlanError) -> Failure {
    if ctx.output == Format::Json {
        let (window, candidates) = match e.context() {
            Some((w, c)) => (Some(*w), c.to_vec()),
            None => (None, Vec::new()),
        };
        let _ = output::json(&json!({ "error": {
            "kind": e.kind(),
            "message": e.to_string(),
            "window": window,
            "candidates": candidates,
        }}));
    }
    if e.is_input_error() {
        Failure::input(e)
    } else {
        Failure::failed(e)
    }
}

pub async fn run(ctx: &Context, a: RestoreArgs) -> Result<(), Failure> {
    let now = ctx.app.clock.now();
    let tz = timespec::parse_tz(&a.tz).map_err(Failure::input)?;
    let target = timespec::parse(&a.to, now, tz).map_err(Failure::input)?;
    let catalog = ctx.catalog().await?;
    let policy = restore::choose_policy(&catalog, a.policy.as_ref())
        .await
        .map_err(|e| refuse(ctx, e))?;
    let plan = restore::plan_with(&catalog, &policy, target, now, a.allow_partial)
        .await
        .map_err(|e| refuse(ctx, e))?;
    if a.dry_run {
        match ctx.output {
            Format::Json => output::json(&json!({ "dry_run": true, "plan": plan }))?,
            Format::Table => print!("{}", render(&plan, &a.to, true)),
        }
        return Ok(());
    }

    // The runbook: flag, the policy's, or the standard one.
    let rb_path = ctx
        .app
        .restore_runbook(policy.name.as_str(), a.runbook.as_deref());
    let runbook = Runbook::load(&rb_path).map_err(Failure::input)?;
    runbook
        .check_rto(&rb_path.display().to_string(), policy.rto)
        .map_err(Failure::input)?;

    let secrets_identity = ctx
        .app
        .secrets_identity(a.secrets_identity.as_deref())
        .map_err(Failure::input)?;
    let env = ctx.app.env().await?;
    let target_ns = a
        .namespace
        .clone()
        .unwrap_or_else(|| policy.namespace.clone());
    let spec = RunSpec {
        kind: RunKind::Restore,
        source: policy.namespace.clone(),
        target: target_ns,
        runbook,
        replace: a.replace,
        interactive: std::io::stdin().is_terminal() && std::io::stderr().is_terminal(),
        volume_prefix: "dr-r".into(),
        namespace_labels: Default::default(),
        incident: a.incident.map(IncidentId),
        content_url: ctx
            .app
            .policy(policy.name.as_str())
            .and_then(|p| p.content_url.clone()),
        holder: ctx.app.holder.clone(),
        secrets_identity,
    };
    let begun = exec::begin(&env, &spec, &plan).await.map_err(|e| {
        if e.is_refusal() {
            Failure::input(e)
        } else {
            Failure::failed(e)
        }
    })?;
    let plan = match &begun {
        Begun::New(_) => plan,
        Begun::Resumed(run) => restore::plan_of_run(&catalog, &policy, run, ctx.app.clock.now())
            .await
            .map_err(|e| refuse(ctx, e))?,
    };
    if ctx.output == Format::Table {
        print!("{}", render(&plan, &a.to, false));
        println!(
            "\nRunbook {} ({}), target namespace {}, RTO {}\n",
            spec.runbook.name,
            rb_path.display(),
            spec.target,
            policy.rto
        );
    }
    let obs = Terminal::new();
    let outcome = exec::execute(&env, &spec, &plan, &begun, &obs)
        .await
        .map_err(Failure::failed)?;
    obs.finish();
    let s = &outcome.summary;
    match ctx.output {
        Format::Json => output::json(&json!({ "plan": plan, "run": s }))?,
        Format::Table => print!("{}", render_summary(s)),
    }
    match exit_code(s) {
        0 => Ok(()),
        3 => Err(Failure {
            code: super::EXIT_OVER_RTO,
            error: anyhow::anyhow!(
                "restored, but in {} — over the RTO of {}",
                human_secs(s.total_seconds),
                policy.rto
            ),
        }),
        _ => Err(Failure::failed(anyhow::anyhow!(
            "restore run {} failed: {}; fix the cause and run the same command again to resume it",
            s.run_id,
            s.error
                .clone()
                .unwrap_or_else(|| "see the table above".into())
        ))),
    }
}

fn render(p: &RestorePlan, asked: &str, dry_run: bool) -> String {
    let mut s = String::new();
    let point_at = p.point.point_at.unwrap_or(p.point.tick_at);
    s.push_str(&format!(
        "Restore plan{} for policy {} (namespace {})\n",
        if dry_run {
            " (dry run: nothing is changed)"
        } else {
            ""
        },
        p.policy,
        p.namespace
    ));
    s.push_str(&format!(
        "  target          {} (asked: {asked:?})\n",
        fmt_time(p.target_at)
    ));
    s.push_str(&format!(
        "  recovery point  {} ({}) taken {} (tick {}), {} backups\n",
        p.point.id,
        p.point.state,
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
