//! Restore drills: the restore runbook into a scratch namespace the drill
//! creates (`dr-drill-<policy>-<short id>`, labelled as dr's), verified, then
//! torn down — namespace, restored volumes and their PVs. A drill is
//! begin → hold → steps → teardown → finish, and passes only if its runbook
//! passed *and* its teardown completed. A janitor removes what interrupted
//! drills left behind, even after a crash.

use crate::app::App;
use crate::catalog::{PolicyRecord, RunKind, RunRecord, RunState, StepRecord, StepState};
use crate::cluster::restore::{self as k8s, NamespaceState};
use crate::cluster::scratch;
use crate::names::Namespace;
use crate::restore::RestorePlan;
use crate::runbook::engine::{self, Env, Held, Observer, Outcome, RunError, RunEvent, RunSpec};
use crate::runbook::lease::{self, Holder};
use crate::runbook::summary::{RunSummary, StageBudget, Verdict};
use crate::runbook::{Runbook, StepError, StepFailed};
use crate::span::Span;
use chrono::{DateTime, TimeDelta};
use std::collections::BTreeSet;
use std::time::Duration;

/// Label on every namespace a drill creates (value: the policy).
pub const LABEL_DRILL: &str = "dr.longhorn.io/drill";
/// The stage name of a drill's teardown.
pub const TEARDOWN: &str = "teardown";
/// Prefix of the volumes drills restore (never a production name).
pub const VOLUME_PREFIX: &str = "dr-d";
/// How long a teardown waits for what it deleted to be gone.
const TEARDOWN_WAIT: Duration = Duration::from_secs(300);
/// The teardown's budget, for its verdict column only (not part of the RTO).
const TEARDOWN_BUDGET: Span = Span::from_secs(600);
/// How often a teardown looks again at what it deleted.
const POLL: Duration = Duration::from_millis(500);

/// The scratch namespace of a drill: `dr-drill-<policy>-<6 hex>` (policy
/// names have at most 40 characters, so it fits in 63).
pub fn drill_namespace(policy: &str) -> Result<Namespace, crate::names::NameError> {
    let short = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
    format!("dr-drill-{policy}-{short}").parse()
}

/// A drill as dr runs it, by hand (`dr drill run`) or on the policy's drill
/// schedule (`dr serve`): leftovers of earlier drills past the policy's drill
/// TTL are removed first (said to `obs`), then [`run_drill`] with the
/// policy's content probe and `secrets_identity` (without it, sealed Secrets
/// are copied from the live namespace), held by this process.
pub async fn start(
    app: &App,
    env: &Env,
    policy: &PolicyRecord,
    runbook: Runbook,
    plan: &RestorePlan,
    secrets_identity: Option<crate::secrets::Identity>,
    obs: &dyn Observer,
) -> Result<Outcome, RunError> {
    let name = policy.name.as_str();
    let j = janitor(env, &app.holder, app.drill_ttl(name), env.clock.now()).await;
    if !j.interrupted_runs.is_empty() || !j.stale_namespaces.is_empty() {
        obs.event(&RunEvent::Notice(format!(
            "cleaned drill leftovers first: interrupted runs {:?}, stale namespaces {:?}",
            j.interrupted_runs, j.stale_namespaces
        )));
    }
    for e in &j.errors {
        obs.event(&RunEvent::Notice(format!(
            "drill leftovers not removed (tried again later): {e}"
        )));
    }
    let content_url = app.policy(name).and_then(|p| p.content_url.clone());
    let opts = DrillOptions {
        content_url,
        secrets_identity,
    };
    run_drill(env, policy, runbook, plan, opts, &app.holder, obs).await
}

/// What a drill uses beyond its plan and runbook.
#[derive(Debug, Clone, Default)]
pub struct DrillOptions {
    /// The policy's content probe URL template, for `content: checksums`.
    pub content_url: Option<String>,
    /// Opens the point's sealed Secrets; without it they are copied from
    /// the live namespace.
    pub secrets_identity: Option<crate::secrets::Identity>,
}

/// Runs a drill of `plan` (a recovery point of `policy`) into a new scratch
/// namespace: the runbook, then the teardown. `manual` steps are skipped.
pub async fn run_drill(
    env: &Env,
    policy: &PolicyRecord,
    runbook: Runbook,
    plan: &RestorePlan,
    opts: DrillOptions,
    holder: &str,
    obs: &dyn Observer,
) -> Result<Outcome, RunError> {
    let DrillOptions {
        content_url,
        secrets_identity,
    } = opts;
    let target = drill_namespace(policy.name.as_str()).map_err(|e| {
        RunError::StepFailed(StepFailed {
            seq: 0,
            stage: "setup".into(),
            label: "drill namespace".into(),
            message: e.to_string(),
        })
    })?;
    let spec = RunSpec {
        kind: RunKind::Drill,
        source: policy.namespace.clone(),
        target,
        runbook,
        replace: false,
        interactive: false,
        volume_prefix: VOLUME_PREFIX.into(),
        namespace_labels: std::collections::BTreeMap::from([(
            LABEL_DRILL.to_owned(),
            policy.name.to_string(),
        )]),
        incident: None,
        content_url,
        holder: holder.to_owned(),
        secrets_identity,
    };
    let begun = engine::begin(env, &spec, plan).await?;
    let held = engine::hold(env, &spec, &begun, obs);
    let mut result = engine::run_steps(env, &spec, plan, &held, obs).await;
    if !matches!(result, Err(RunError::LostLock { .. })) {
        // A drill always tears down what it made, passed or not.
        let torn = teardown_stage(env, &spec, &held, obs).await;
        if result.is_ok() {
            result = torn;
        }
    }
    let mut stages = engine::stage_budgets(&spec.runbook);
    stages.push(StageBudget::after_recovery(TEARDOWN, TEARDOWN_BUDGET));
    engine::finish(env, held, result, &stages, plan).await
}

/// The teardown as the stage after the runbook's last, announced to `obs`.
async fn teardown_stage(
    env: &Env,
    spec: &RunSpec,
    held: &Held,
    obs: &dyn Observer,
) -> Result<(), RunError> {
    let seq = spec.runbook.planned().len() as i64 + 1;
    obs.event(&RunEvent::Notice(format!(
        "tearing down drill namespace {}",
        spec.target
    )));
    match teardown_step(env, &held.run, seq, TEARDOWN_WAIT).await {
        Ok(d) => {
            obs.event(&RunEvent::Notice(d));
            Ok(())
        }
        Err(e) => {
            obs.event(&RunEvent::Notice(format!("teardown failed: {e}")));
            Err(RunError::StepFailed(StepFailed {
                seq,
                stage: TEARDOWN.into(),
                label: "teardown".into(),
                message: e.to_string(),
            }))
        }
    }
}

/// Whether a drill passed: its runbook and its teardown succeeded.
pub fn passed(summary: &RunSummary) -> bool {
    summary.state == RunState::Succeeded
        && summary.stages.iter().any(|s| {
            s.name == TEARDOWN && s.verdict != Verdict::Failed && s.verdict != Verdict::NotRun
        })
}

/// What a teardown found to delete.
struct Leftovers {
    pvs: BTreeSet<String>,
    volumes: BTreeSet<String>,
}

/// The PVs and Longhorn volumes of a drill: by the run's volume name prefix,
/// and by the PVs bound in its namespace.
async fn leftovers(env: &Env, ns: &str, run: Option<&RunRecord>) -> Result<Leftovers, StepError> {
    let prefix = run.map(|r| format!("{VOLUME_PREFIX}{}-", r.id.0));
    let mut volumes: BTreeSet<String> = BTreeSet::new();
    for v in env.longhorn.list_volumes().await? {
        let by_run = prefix.as_deref().is_some_and(|p| v.name.starts_with(p));
        let by_ns = v.kubernetes_status.namespace == ns && v.name.starts_with(VOLUME_PREFIX);
        if by_run || by_ns {
            volumes.insert(v.name);
        }
    }
    let mut pvs = BTreeSet::new();
    for pv in scratch::pvs_for(&env.kube, ns, &volumes).await? {
        if pv.handle.starts_with(VOLUME_PREFIX) {
            volumes.insert(pv.handle);
        }
        pvs.insert(pv.name);
    }
    Ok(Leftovers { pvs, volumes })
}

/// Deletes a drill's namespace if it carries the drill label; whether it
/// was (or is being) deleted, or was already gone.
async fn delete_drill_namespace(env: &Env, ns: &str) -> Result<bool, StepError> {
    match k8s::namespace_state(&env.kube, ns).await? {
        NamespaceState::Absent => Ok(false),
        NamespaceState::Terminating => Ok(true),
        NamespaceState::Active { labels } => {
            if !labels.contains_key(LABEL_DRILL) {
                return Err(StepError::Check(format!(
                    "namespace {ns} does not carry the {LABEL_DRILL} label; a drill deletes only namespaces it created"
                )));
            }
            scratch::delete_namespace(&env.kube, ns).await?;
            Ok(true)
        }
    }
}

/// Removes what a drill created: its namespace (only if it carries the drill
/// label), the PVs bound there or named after its volumes, and its Longhorn
/// volumes (`dr-d<run>-…`). Waits until all are gone.
pub async fn teardown(
    env: &Env,
    ns: &str,
    run: Option<&RunRecord>,
    wait: Duration,
) -> Result<String, StepError> {
    let deadline = tokio::time::Instant::now() + wait;
    let deleted_ns = delete_drill_namespace(env, ns).await?;
    let left = leftovers(env, ns, run).await?;
    // Namespace first (its pods and claims go), then PVs, then volumes.
    if deleted_ns {
        while scratch::namespace_exists(&env.kube, ns).await? {
            if tokio::time::Instant::now() >= deadline {
                return Err(StepError::Check(format!(
                    "namespace {ns} was still terminating after {wait:?}"
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }
    for p in &left.pvs {
        scratch::delete_pv(&env.kube, ns, p).await?;
    }
    for v in &left.volumes {
        env.longhorn.delete_volume(v).await?;
    }
    loop {
        let mut left_pv = 0;
        for p in &left.pvs {
            if scratch::pv_exists(&env.kube, ns, p).await? {
                left_pv += 1;
            }
        }
        let existing: BTreeSet<String> = env
            .longhorn
            .list_volumes()
            .await?
            .into_iter()
            .map(|v| v.name)
            .collect();
        let left_vol = left
            .volumes
            .iter()
            .filter(|v| existing.contains(*v))
            .count();
        if left_pv == 0 && left_vol == 0 {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(StepError::Check(format!(
                "after {wait:?}, {left_pv} PVs and {left_vol} Longhorn volumes of drill namespace {ns} were still there"
            )));
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(format!(
        "namespace {ns} {}; {} PVs and {} Longhorn volumes deleted",
        if deleted_ns {
            "deleted"
        } else {
            "was already gone"
        },
        left.pvs.len(),
        left.volumes.len()
    ))
}

/// Records a teardown as the step after the runbook's last.
pub async fn teardown_step(
    env: &Env,
    run: &RunRecord,
    seq: i64,
    wait: Duration,
) -> Result<String, StepError> {
    let mut rec = StepRecord {
        seq,
        stage: TEARDOWN.into(),
        step: "delete namespace, PVs and volumes".into(),
        state: StepState::Running,
        budget: None,
        started_at: Some(env.clock.now()),
        finished_at: None,
        detail: None,
    };
    env.catalog.record_step(run.id, &rec).await?;
    let r = teardown(env, run.target_namespace.as_str(), Some(run), wait).await;
    rec.finished_at = Some(env.clock.now());
    match &r {
        Ok(d) => {
            rec.state = StepState::Succeeded;
            rec.detail = Some(d.clone());
        }
        Err(e) => {
            rec.state = StepState::Failed;
            rec.detail = Some(e.to_string());
        }
    }
    env.catalog.record_step(run.id, &rec).await?;
    r
}

/// What the janitor cleaned.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Janitor {
    /// Drill runs whose process died, torn down and recorded failed.
    pub interrupted_runs: Vec<i64>,
    /// Drill namespaces older than the TTL without a live run, removed.
    pub stale_namespaces: Vec<String>,
    /// What could not be cleaned (tried again at the next start).
    pub errors: Vec<String>,
}

/// Removes drill leftovers: interrupted drill runs (their process is gone)
/// are torn down and recorded failed; drill namespaces older than `ttl` that
/// no live run holds are removed with their PVs and volumes.
pub async fn janitor(
    env: &Env,
    holder: &str,
    ttl: Duration,
    now: DateTime<chrono::Utc>,
) -> Janitor {
    let mut out = Janitor::default();
    let live_namespaces = interrupted_runs(env, holder, now, &mut out).await;
    stale_namespaces(env, ttl, now, &live_namespaces, &mut out).await;
    out
}

/// Tears down the drill runs whose holder is gone; the namespaces of the
/// drills still running.
async fn interrupted_runs(
    env: &Env,
    holder: &str,
    now: DateTime<chrono::Utc>,
    out: &mut Janitor,
) -> BTreeSet<String> {
    let mut live = BTreeSet::new();
    let runs = match env
        .catalog
        .list_runs(Some(RunKind::Drill), None, 1000)
        .await
    {
        Ok(runs) => runs,
        Err(e) => {
            out.errors.push(e.to_string());
            return live;
        }
    };
    for r in runs.into_iter().filter(|r| r.state == RunState::Running) {
        let Holder::Gone { cutoff } = lease::judge_now(&r, now) else {
            live.insert(r.target_namespace.to_string());
            continue;
        };
        match env.catalog.take_over(&r, holder, cutoff, now).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                out.errors.push(e.to_string());
                continue;
            }
        }
        let seq = env
            .catalog
            .steps(r.id)
            .await
            .map(|s| s.iter().map(|x| x.seq).max().unwrap_or(0) + 1)
            .unwrap_or(1000);
        match teardown_step(env, &r, seq, TEARDOWN_WAIT).await {
            Ok(_) => {
                let _ = env
                    .catalog
                    .finish_run(
                        r.id,
                        RunState::Failed,
                        Some("interrupted: its process died; torn down by the janitor"),
                        env.clock.now(),
                    )
                    .await;
                out.interrupted_runs.push(r.id.0);
            }
            Err(e) => out.errors.push(format!("drill run {}: {e}", r.id)),
        }
    }
    live
}

/// Removes drill namespaces older than `ttl` that no live run holds.
async fn stale_namespaces(
    env: &Env,
    ttl: Duration,
    now: DateTime<chrono::Utc>,
    live: &BTreeSet<String>,
    out: &mut Janitor,
) {
    let list = match scratch::labelled_namespaces(&env.kube, LABEL_DRILL).await {
        Ok(list) => list,
        Err(e) => {
            out.errors.push(format!("listing drill namespaces: {e}"));
            return;
        }
    };
    let ttl = TimeDelta::from_std(ttl).unwrap_or(TimeDelta::MAX);
    for (name, created) in list {
        let old = created.is_some_and(|c| now - c > ttl);
        if !old || live.contains(&name) {
            continue;
        }
        match teardown(env, &name, None, TEARDOWN_WAIT).await {
            Ok(_) => out.stale_namespaces.push(name),
            Err(e) => out.errors.push(format!("namespace {name}: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drill_namespaces_are_labels_that_fit() {
        let n = drill_namespace(&"p".repeat(40)).unwrap();
        assert!(n.as_str().len() <= 63, "{n}");
        assert!(n.as_str().starts_with("dr-drill-ppp"));
        assert_ne!(
            drill_namespace("shop").unwrap(),
            drill_namespace("shop").unwrap()
        );
    }
}
