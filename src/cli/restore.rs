//! `dr restore`: plan a restore from the catalog, and run it through the
//! policy's runbook (or just print the plan with `--dry-run`).

use super::output::{self, Format, Table};
use super::{Context, Failure};
use crate::catalog::{IncidentId, RunKind};
use crate::names::Namespace;
use crate::restore::{self, RestorePlan};
use crate::runbook::Runbook;
use crate::runbook::engine::{self as exec, Begun, Env, Observer, RunEvent, RunSpec};
use crate::runbook::summary::{RunSummary, exit_code};
use crate::span::human;
use crate::timespec::{self, fmt_time};
use clap::Args;
use serde_json::json;
use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::Mutex;

/// Arguments of `dr restore`.
#[derive(Debug, Args)]
#[command(
    after_long_help = "Exit codes: 0 restored within the RTO; 3 restored but over the RTO; \
1 failed (the run is recorded; run the same command again to resume it); 2 refused \
(bad time or policy, a busy target, live data without --replace)."
)]
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
    let now = chrono::Utc::now();
    let tz = timespec::parse_tz(&a.tz).map_err(Failure::input)?;
    let target = timespec::parse(&a.to, now, tz).map_err(Failure::input)?;
    let catalog = ctx.catalog().await?;
    let policy = restore::choose_policy(&catalog, a.policy.as_deref())
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
    let configured = ctx.config.policies.iter().find(|p| p.name == policy.name);
    let rb_path = super::runbook::resolve(
        ctx,
        a.runbook
            .as_deref()
            .or(configured.map(|p| p.runbook.as_path()))
            .unwrap_or(std::path::Path::new("runbooks/standard.yaml")),
    );
    let runbook = Runbook::load(&rb_path).map_err(Failure::input)?;
    runbook
        .check_rto(&rb_path.display().to_string(), policy.rto)
        .map_err(Failure::input)?;

    let (longhorn, store, _) = super::backup::adapters(ctx).await?;
    let kube = crate::cluster::client(None).await?;
    let env = Env {
        catalog: catalog.clone(),
        kube,
        longhorn,
        store,
        clock: crate::clock::Clock::System,
    };
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
        content_url: configured.and_then(|p| p.content.as_ref().map(|c| c.checksum_url.clone())),
        holder: crate::runbook::lease::holder_id(),
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
        Begun::Resumed(run) => restore::plan_of_run(&catalog, &policy, run, chrono::Utc::now())
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
                human(chrono::TimeDelta::milliseconds(
                    (s.total_seconds * 1000.0) as i64
                )),
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

/// Progress on stderr: a bar per volume on a terminal, plain lines otherwise.
pub(super) struct Terminal {
    bars: Option<indicatif::MultiProgress>,
    volumes: Mutex<HashMap<String, indicatif::ProgressBar>>,
    last_line: Mutex<HashMap<String, i64>>,
}

impl Terminal {
    pub(super) fn new() -> Self {
        Terminal {
            bars: std::io::stderr()
                .is_terminal()
                .then(indicatif::MultiProgress::new),
            volumes: Mutex::new(HashMap::new()),
            last_line: Mutex::new(HashMap::new()),
        }
    }

    fn line(&self, s: &str) {
        match &self.bars {
            Some(m) => {
                let _ = m.println(s);
            }
            None => eprintln!("{s}"),
        }
    }

    pub(super) fn finish(&self) {
        if let Ok(v) = self.volumes.lock() {
            for b in v.values() {
                b.finish();
            }
        }
    }
}

impl Observer for Terminal {
    fn event(&self, e: &RunEvent) {
        let ts = chrono::Utc::now().format("%H:%M:%S");
        match e {
            RunEvent::Started { run, resumed } => self.line(&format!(
                "{ts} run {run} {}",
                if *resumed {
                    "resumed: steps already done are skipped"
                } else {
                    "started"
                }
            )),
            RunEvent::StepStarted { step } => {
                self.line(&format!("{ts} [{}] {} …", step.stage, step.label))
            }
            RunEvent::StepSkipped { step, why } => self.line(&format!(
                "{ts} [{}] {}: skipped ({why})",
                step.stage, step.label
            )),
            RunEvent::StepDone {
                step,
                state,
                seconds,
                detail,
            } => {
                let d = detail
                    .as_deref()
                    .filter(|d| !d.starts_with('{'))
                    .map(|d| format!(" — {d}"))
                    .unwrap_or_default();
                self.line(&format!(
                    "{ts} [{}] {}: {state} in {seconds:.1}s{d}",
                    step.stage, step.label
                ))
            }
            RunEvent::Volume {
                pvc,
                volume,
                percent,
            } => match &self.bars {
                Some(m) => {
                    let Ok(mut v) = self.volumes.lock() else {
                        return;
                    };
                    let bar = v.entry(pvc.clone()).or_insert_with(|| {
                        let b = m.add(indicatif::ProgressBar::new(100));
                        if let Ok(style) = indicatif::ProgressStyle::with_template(
                            "  {prefix:30} [{bar:30}] {pos:>3}% {elapsed}",
                        ) {
                            b.set_style(style.progress_chars("=> "));
                        }
                        b.set_prefix(format!("{pvc} ← {volume}"));
                        b
                    });
                    bar.set_position((*percent).clamp(0, 100) as u64);
                    if *percent >= 100 {
                        bar.finish();
                    }
                }
                None => {
                    // Plain lines at 0, 25, 50, 75 and 100 %.
                    let Ok(mut last) = self.last_line.lock() else {
                        return;
                    };
                    let q = percent / 25;
                    if last.get(pvc).is_none_or(|l| *l < q) {
                        last.insert(pvc.clone(), q);
                        eprintln!("{ts}   volume {pvc} ({volume}): {percent}%");
                    }
                }
            },
            RunEvent::Notice(n) => self.line(&format!("{ts} NOTE: {n}")),
        }
    }

    fn confirm(&self, instruction: &str) -> bool {
        self.line(&format!(
            "MANUAL STEP: {instruction}\nPress Enter when done, or type `skip` and Enter to record it as skipped:"
        ));
        let mut answer = String::new();
        if std::io::stdin().read_line(&mut answer).is_err() {
            return false;
        }
        answer.trim() != "skip"
    }
}

pub(super) fn render_summary(s: &RunSummary) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "\nRun {} ({} of policy {} into {}): {}\n",
        s.run_id, s.kind, s.policy, s.target_namespace, s.state
    ));
    let mut t = Table::new(&["STAGE", "BUDGET", "ACTUAL", "VERDICT"]);
    for st in &s.stages {
        t.row(vec![
            st.name.clone(),
            secs(st.budget_seconds),
            st.actual_seconds.map(secs).unwrap_or_else(|| "-".into()),
            st.verdict.as_str().to_owned(),
        ]);
    }
    t.row(vec![
        "TOTAL (RTO)".into(),
        secs(s.rto_seconds),
        secs(s.total_seconds),
        s.rto_verdict.as_str().to_owned(),
    ]);
    out.push_str(&t.render());
    out.push_str(&format!(
        "Achieved RPO (data loss): {} against RPO {}: {}\n",
        secs(s.data_loss_seconds),
        secs(s.rpo_seconds),
        if s.within_rpo { "within" } else { "OVER" }
    ));
    if let Some(e) = &s.error {
        out.push_str(&format!("Error: {e}\n"));
    }
    out
}

fn secs(x: f64) -> String {
    if x < 60.0 {
        format!("{x:.1}s")
    } else {
        human(chrono::TimeDelta::milliseconds((x * 1000.0) as i64))
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
