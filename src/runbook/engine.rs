//! The runbook engine: a run begins (a new run, or one a dead process left
//! behind, taken over), is held by this process's heartbeat, runs its steps
//! in order — each written to the catalog as it starts and ends, so a second
//! run of the same command after a crash skips what is done and adopts what
//! was created — and finishes with its state and summary. A restore is
//! begin → hold → steps → finish; a drill adds its teardown before finish
//! (see `crate::drill`).

use super::lease::{self, Holder, Lease, STALE_AFTER};
use super::spec::{Action, PlannedStep, Runbook};
use super::steps::{StepCtx, restorable};
use super::summary::{RunSummary, StageBudget, StageBudgets, summarize};
use crate::catalog::{
    Catalog, CatalogError, IncidentId, NewRun, RunId, RunKind, RunRecord, RunState, StepRecord,
    StepState,
};
use crate::clock::Clock;
use crate::cluster::ClusterError;
use crate::cluster::restore as k8s;
use crate::longhorn::LonghornClient;
use crate::names::Namespace;
use crate::restore::RestorePlan;
use crate::store::Store;
use std::collections::BTreeMap;

/// What a run talks to, and its clock.
#[derive(Clone)]
pub struct Env {
    pub catalog: Catalog,
    pub kube: kube::Client,
    pub longhorn: LonghornClient,
    pub store: Store,
    pub clock: Clock,
}

/// What to run and how.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub kind: RunKind,
    /// Where the application lives (Secrets are copied from here when the
    /// target is another namespace).
    pub source: Namespace,
    pub target: Namespace,
    pub runbook: Runbook,
    /// Restore over live data (workloads running, claims present).
    pub replace: bool,
    /// Whether `manual` steps can ask a human (else they are skipped).
    pub interactive: bool,
    /// Prefix of restored volume names: `dr-r` for restores, `dr-d` for drills.
    pub volume_prefix: String,
    /// Labels for a namespace dr creates.
    pub namespace_labels: BTreeMap<String, String>,
    pub incident: Option<IncidentId>,
    /// The policy's content probe URL template, for `content: checksums`.
    pub content_url: Option<String>,
    /// This process: `host:pid:nonce`.
    pub holder: String,
    /// The age identity that opens the point's sealed Secrets
    /// (`--secrets-identity`); without it a restore of a point with sealed
    /// Secrets is refused, and a drill copies them from the live namespace.
    pub secrets_identity: Option<crate::secrets::Identity>,
}

/// Why a run could not start or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(
        "{kind} run {run} into namespace {namespace} is in progress (holder {holder}, last heartbeat {age} ago); wait for it to finish, or if its process is gone run the same command again after {stale}s to resume it"
    )]
    Busy {
        run: RunId,
        kind: RunKind,
        namespace: String,
        holder: String,
        age: String,
        stale: u64,
    },
    #[error(
        "namespace {namespace} has live data: {}; dr never restores over it without --replace (or restore into another namespace with --namespace)", items.join(", ")
    )]
    LiveData {
        namespace: String,
        items: Vec<String>,
    },
    #[error("recovery point {point} has no restorable backup")]
    NothingToRestore { point: i64 },
    #[error(
        "recovery point {point} holds sealed Secrets that {why}: {}; {todo}. Nothing was applied", names.join(", ")
    )]
    SecretsSealed {
        point: i64,
        names: Vec<String>,
        why: String,
        todo: String,
    },
    #[error("another process took over run {run}; this one stops")]
    LostLock { run: RunId },
    #[error(transparent)]
    StepFailed(#[from] StepFailed),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Kubernetes(#[from] ClusterError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl RunError {
    /// Refusals the user can act on (exit code 2), rather than failures.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            RunError::Busy { .. }
                | RunError::LiveData { .. }
                | RunError::NothingToRestore { .. }
                | RunError::SecretsSealed { .. }
        )
    }
}

/// Progress, for the terminal.
#[derive(Debug, Clone)]
pub enum RunEvent {
    Started {
        run: RunId,
        resumed: bool,
    },
    StepStarted {
        step: PlannedStep,
    },
    StepSkipped {
        step: PlannedStep,
        why: String,
    },
    StepDone {
        step: PlannedStep,
        state: StepState,
        seconds: f64,
        detail: Option<String>,
    },
    Volume {
        pvc: String,
        volume: String,
        percent: i64,
    },
    Notice(String),
}

/// Receives progress; `confirm` asks a human to do a `manual` step.
pub trait Observer: Send + Sync {
    fn event(&self, e: &RunEvent);
    /// Blocks until the human confirms; false if they declined.
    fn confirm(&self, _instruction: &str) -> bool {
        false
    }
}

/// An observer that ignores everything.
pub struct Quiet;
impl Observer for Quiet {
    fn event(&self, _e: &RunEvent) {}
}

/// How a run begins: a new run, or one a dead process left behind.
#[derive(Debug)]
pub enum Begun {
    New(RunRecord),
    Resumed(RunRecord),
}

impl Begun {
    pub fn run(&self) -> &RunRecord {
        match self {
            Begun::New(r) | Begun::Resumed(r) => r,
        }
    }
}

/// Finds a run to resume for this target (one whose holder died), or checks
/// that the target is free and holds no live data, and starts a new run.
pub async fn begin(env: &Env, spec: &RunSpec, plan: &RestorePlan) -> Result<Begun, RunError> {
    let now = env.clock.now();
    if let Some(r) = env.catalog.running_run(&spec.target).await? {
        let hb = r.heartbeat_at.unwrap_or(r.started_at);
        let busy = || RunError::Busy {
            run: r.id,
            kind: r.kind,
            namespace: r.target_namespace.to_string(),
            holder: r.holder.clone().unwrap_or_else(|| "unknown".into()),
            age: crate::span::human(now - hb),
            stale: STALE_AFTER.as_secs(),
        };
        let Holder::Gone { cutoff } = lease::judge_now(&r, now) else {
            return Err(busy());
        };
        if r.kind != spec.kind || r.policy != plan.policy {
            return Err(busy());
        }
        if !env.catalog.take_over(&r, &spec.holder, cutoff, now).await? {
            return Err(busy());
        }
        return Ok(Begun::Resumed(env.catalog.run(r.id).await?));
    }
    let claims: Vec<String> = restorable(&plan.backups)
        .iter()
        .map(|b| b.pvc.clone().unwrap_or_else(|| b.volume.to_string()))
        .collect();
    if claims.is_empty() {
        return Err(RunError::NothingToRestore {
            point: plan.point.id.0,
        });
    }
    // Sealed Secrets that cannot be opened refuse the run before it is
    // recorded and before anything in the cluster changes.
    if let Some(key) = plan.point.bundle_key.as_deref() {
        let bundle = env.store.get_bundle(key).await?;
        open_sealed(&bundle, spec, plan.point.id.0)?;
    }
    if !spec.replace {
        let live = k8s::live_data(&env.kube, spec.target.as_str(), &claims).await?;
        if !live.is_empty() {
            return Err(RunError::LiveData {
                namespace: spec.target.to_string(),
                items: live,
            });
        }
    }
    let run = env
        .catalog
        .start_run(&NewRun {
            kind: spec.kind,
            policy: plan.point.policy.clone(),
            point_id: Some(plan.point.id),
            target_namespace: spec.target.clone(),
            target_at: Some(plan.target_at),
            incident_id: spec.incident,
            started_at: now,
            holder: spec.holder.clone(),
        })
        .await
        .map_err(|e| match e {
            CatalogError::TargetBusy {
                run,
                kind,
                namespace,
            } => RunError::Busy {
                run,
                kind,
                namespace,
                holder: "another process".into(),
                age: "0s".into(),
                stale: STALE_AFTER.as_secs(),
            },
            other => RunError::Catalog(other),
        })?;
    Ok(Begun::New(run))
}

/// The point's sealed Secrets opened with the run's identity: `None` when
/// the bundle has none, or for a drill without an identity (it copies them
/// from the live namespace); refused for a restore without an identity or
/// with one they were not sealed to, naming the Secrets.
pub fn open_sealed(
    bundle: &crate::bundle::Bundle,
    spec: &RunSpec,
    point: i64,
) -> Result<Option<Vec<serde_json::Value>>, RunError> {
    let Some(sealed) = bundle.sealed_secrets.as_deref() else {
        return Ok(None);
    };
    let refused = |why: String, todo: &str| RunError::SecretsSealed {
        point,
        names: bundle.secrets_by_reference.clone(),
        why,
        todo: todo.to_owned(),
    };
    match &spec.secrets_identity {
        None if spec.kind == RunKind::Drill => Ok(None),
        None => Err(refused(
            "cannot be brought back without the age identity they were sealed to".into(),
            "give its file with --secrets-identity FILE (or DR_SECRETS_IDENTITY, or secrets_identity in the configuration)",
        )),
        Some(id) => crate::secrets::open_objects(sealed, id)
            .map(Some)
            .map_err(|e| {
                refused(
                    format!("cannot be opened ({e})"),
                    "give the identity file of one of the policy's secrets.recipients with --secrets-identity FILE",
                )
            }),
    }
}

/// The outcome of a finished run.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub run: RunRecord,
    pub summary: RunSummary,
}

/// A begun run while this process holds it: the heartbeat runs until it is
/// finished.
pub struct Held {
    pub run: RunRecord,
    lease: Lease,
}

impl Held {
    /// Whether another process took the run over (this one must stop).
    pub fn lost(&self) -> bool {
        self.lease.lost()
    }
}

/// Holds a begun run: starts its heartbeat and announces it.
pub fn hold(env: &Env, spec: &RunSpec, begun: &Begun, obs: &dyn Observer) -> Held {
    let run = begun.run().clone();
    obs.event(&RunEvent::Started {
        run: run.id,
        resumed: matches!(begun, Begun::Resumed(_)),
    });
    let lease = Lease::hold(env.catalog.clone(), env.clock, run.id, spec.holder.clone());
    Held { run, lease }
}

/// Runs (or resumes) the runbook of a begun run to its end: a restore is
/// hold → steps → finish.
pub async fn execute(
    env: &Env,
    spec: &RunSpec,
    plan: &RestorePlan,
    begun: &Begun,
    obs: &dyn Observer,
) -> Result<Outcome, RunError> {
    let held = hold(env, spec, begun, obs);
    let result = run_steps(env, spec, plan, &held, obs).await;
    finish(env, held, result, &stage_budgets(&spec.runbook), plan).await
}

/// The runbook's stages with their budgets, in order.
pub fn stage_budgets(runbook: &Runbook) -> StageBudgets {
    runbook
        .stages
        .iter()
        .map(|s| StageBudget::recovery(s.name.clone(), s.budget))
        .collect()
}

/// Records the end of a held run (its state from `result`), and its summary
/// over `stages`. A run another process took over is left to that process.
pub async fn finish(
    env: &Env,
    held: Held,
    result: Result<(), RunError>,
    stages: &StageBudgets,
    plan: &RestorePlan,
) -> Result<Outcome, RunError> {
    let Held { run, lease } = held;
    drop(lease);
    let (state, error) = match &result {
        Ok(()) => (RunState::Succeeded, None),
        Err(RunError::LostLock { .. }) => return Err(RunError::LostLock { run: run.id }),
        Err(e) => (RunState::Failed, Some(e.to_string())),
    };
    let done = env
        .catalog
        .finish_run(run.id, state, error.as_deref(), env.clock.now())
        .await?;
    let summary = summary_of(env, &done, stages, plan).await?;
    if let Ok(json) = serde_json::to_string(&summary) {
        env.catalog.set_run_summary(run.id, &json).await?;
    }
    Ok(Outcome { run: done, summary })
}

/// The summary of a run from the catalog.
pub async fn summary_of(
    env: &Env,
    run: &RunRecord,
    stages: &StageBudgets,
    plan: &RestorePlan,
) -> Result<RunSummary, RunError> {
    let steps = env.catalog.steps(run.id).await?;
    Ok(summarize(
        run,
        &steps,
        stages,
        plan.rto,
        plan.data_loss_seconds,
        plan.rpo,
        env.clock.now(),
    ))
}

/// The first failure stops the run; it is recorded on its step.
#[derive(Debug, thiserror::Error)]
#[error("step {seq} ({stage}: {label}) failed: {message}")]
pub struct StepFailed {
    pub seq: i64,
    pub stage: String,
    pub label: String,
    pub message: String,
}

/// Runs the runbook's steps in order, skipping those a previous holder
/// finished; stops at the first failure, or when the run was taken over.
pub async fn run_steps(
    env: &Env,
    spec: &RunSpec,
    plan: &RestorePlan,
    held: &Held,
    obs: &dyn Observer,
) -> Result<(), RunError> {
    let record = &held.run;
    let run = record.id;
    let ctx = StepCtx {
        env,
        spec,
        plan,
        run,
        record,
        obs,
        bundle: tokio::sync::OnceCell::new(),
    };
    let done: BTreeMap<i64, StepRecord> = env
        .catalog
        .steps(run)
        .await?
        .into_iter()
        .map(|s| (s.seq, s))
        .collect();
    for step in spec.runbook.planned() {
        if held.lost() {
            return Err(RunError::LostLock { run });
        }
        if let Some(prev) = done.get(&step.seq)
            && matches!(prev.state, StepState::Succeeded | StepState::Skipped)
        {
            obs.event(&RunEvent::StepSkipped {
                step: step.clone(),
                why: format!("already {} before the resume", prev.state),
            });
            continue;
        }
        let started = env.clock.now();
        let mut rec = StepRecord {
            seq: step.seq,
            stage: step.stage.clone(),
            step: step.label.clone(),
            state: StepState::Running,
            budget: Some(step.stage_budget),
            started_at: Some(started),
            finished_at: None,
            detail: None,
        };
        env.catalog.record_step(run, &rec).await?;
        obs.event(&RunEvent::StepStarted { step: step.clone() });
        let outcome = match &step.action {
            Action::Manual { instruction } => {
                if spec.interactive && spec.kind == RunKind::Restore {
                    let text = instruction.clone();
                    let confirmed = tokio::task::block_in_place(|| obs.confirm(&text));
                    if confirmed {
                        Ok((
                            StepState::Succeeded,
                            Some("confirmed by the operator".to_owned()),
                        ))
                    } else {
                        Ok((
                            StepState::Skipped,
                            Some("declined by the operator".to_owned()),
                        ))
                    }
                } else {
                    let why = if spec.kind == RunKind::Drill {
                        "drills skip manual steps".to_owned()
                    } else {
                        format!("no terminal to confirm on; do it by hand: {instruction}")
                    };
                    Ok((StepState::Skipped, Some(why)))
                }
            }
            _ => ctx.step(&step).await.map(|d| (StepState::Succeeded, d)),
        };
        let finished = env.clock.now();
        let seconds = (finished - started).num_milliseconds() as f64 / 1000.0;
        match outcome {
            Ok((state, detail)) => {
                rec.state = state;
                rec.finished_at = Some(finished);
                rec.detail = detail.clone();
                env.catalog.record_step(run, &rec).await?;
                obs.event(&RunEvent::StepDone {
                    step,
                    state,
                    seconds,
                    detail,
                });
            }
            Err(e) => {
                let message = e.to_string();
                rec.state = StepState::Failed;
                rec.finished_at = Some(finished);
                rec.detail = Some(message.clone());
                env.catalog.record_step(run, &rec).await?;
                obs.event(&RunEvent::StepDone {
                    step: step.clone(),
                    state: StepState::Failed,
                    seconds,
                    detail: Some(message.clone()),
                });
                return Err(RunError::StepFailed(StepFailed {
                    seq: step.seq,
                    stage: step.stage,
                    label: step.label,
                    message,
                }));
            }
        }
    }
    Ok(())
}
