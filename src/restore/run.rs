//! Executing a restore: the runbook's steps in order against Kubernetes,
//! Longhorn and S3, each step written to the catalog as it starts and ends,
//! so that a second run of the same command after a crash skips what is done
//! and adopts what was created.

use super::RestorePlan;
use super::summary::{RunSummary, StageBudgets, summarize};
use crate::catalog::{
    BackupRecord, BackupState, Catalog, CatalogError, IncidentId, NewRun, RunId, RunKind,
    RunRecord, RunState, StepRecord, StepState,
};
use crate::cluster::ClusterError;
use crate::cluster::manifests::{self, Bundle};
use crate::cluster::restore::{self as k8s, LABEL_RUN, RestoreClusterError};
use crate::longhorn::{LonghornClient, LonghornError};
use crate::names::Namespace;
use crate::runbook::{Action, Check, PlannedStep, Runbook, expand};
use crate::store::{Store, StoreError};
use chrono::{TimeDelta, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A running run's holder refreshes its heartbeat this often…
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// …and is presumed dead after this long without one.
pub const STALE_AFTER: Duration = Duration::from_secs(30);

/// What a restore talks to.
#[derive(Clone)]
pub struct Env {
    pub catalog: Catalog,
    pub kube: kube::Client,
    pub longhorn: LonghornClient,
    pub store: Store,
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
    #[error("another process took over run {run}; this one stops")]
    LostLock { run: RunId },
    #[error(transparent)]
    StepFailed(#[from] StepFailed),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Kubernetes(#[from] RestoreClusterError),
}

impl RunError {
    /// Refusals the user can act on (exit code 2), rather than failures.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            RunError::Busy { .. } | RunError::LiveData { .. } | RunError::NothingToRestore { .. }
        )
    }
}

/// Why a step failed (recorded in the step's detail and the run's error).
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Longhorn(#[from] LonghornError),
    #[error(transparent)]
    Kubernetes(#[from] RestoreClusterError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("{0}")]
    Check(String),
}

impl From<ClusterError> for StepError {
    fn from(e: ClusterError) -> Self {
        StepError::Kubernetes(e.into())
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

/// A unique holder id for this process.
pub fn holder_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    format!(
        "{host}:{}:{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// Whether a holder is certainly dead: same host and its process is gone
/// (or a zombie). Another host's holder is judged by its heartbeat alone.
pub fn holder_dead(holder: &str) -> bool {
    let mut parts = holder.split(':');
    let (Some(host), Some(pid)) = (parts.next(), parts.next()) else {
        return false;
    };
    let here = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    if host != here || pid.parse::<u32>().is_err() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Err(_) => true,
        Ok(s) => s
            .lines()
            .find(|l| l.starts_with("State:"))
            .is_some_and(|l| l.contains("Z") || l.contains("X")),
    }
}

/// A restored volume's name: deterministic per (run, claim), so a resumed run
/// finds what it created, and unique across catalogs (run ids restart at 1
/// in a rebuilt catalog, and Longhorn volume and PV names are cluster-wide):
/// the run id and a digest of its start time and target; at most 63 characters.
pub fn restored_volume_name(prefix: &str, run: &RunRecord, claim: &str) -> String {
    use sha2::Digest as _;
    let seed = format!(
        "{}/{}/{}",
        run.id.0,
        run.started_at.timestamp_millis(),
        run.target_namespace
    );
    let tag = hex::encode(sha2::Sha256::digest(seed.as_bytes()));
    let head = format!("{prefix}{}-{}-", run.id.0, &tag[..6]);
    let mut name = format!("{head}{claim}");
    if name.len() > 63 {
        let h = hex::encode(sha2::Sha256::digest(claim.as_bytes()));
        let keep = 63 - head.len() - 9;
        name = format!("{head}{}-{}", &claim[..keep.min(claim.len())], &h[..8]);
    }
    name.trim_end_matches(['-', '.']).to_owned()
}

/// The volumes of a point a restore brings back: completed backups with a URL.
pub fn restorable(backups: &[BackupRecord]) -> Vec<&BackupRecord> {
    backups
        .iter()
        .filter(|b| b.state == BackupState::Completed && b.backup_url.is_some())
        .collect()
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
    let now = Utc::now();
    if let Some(r) = env.catalog.running_run(&spec.target).await? {
        let hb = r.heartbeat_at.unwrap_or(r.started_at);
        let stale = now - hb > TimeDelta::from_std(STALE_AFTER).unwrap_or(TimeDelta::MAX)
            || r.holder.as_deref().is_some_and(holder_dead);
        let busy = || RunError::Busy {
            run: r.id,
            kind: r.kind,
            namespace: r.target_namespace.to_string(),
            holder: r.holder.clone().unwrap_or_else(|| "unknown".into()),
            age: crate::span::human(now - hb),
            stale: STALE_AFTER.as_secs(),
        };
        if !stale || r.kind != spec.kind || r.policy.as_str() != plan.policy {
            return Err(busy());
        }
        let cutoff = if r.holder.as_deref().is_some_and(holder_dead) {
            now + TimeDelta::seconds(1)
        } else {
            now - TimeDelta::from_std(STALE_AFTER).unwrap_or(TimeDelta::zero())
        };
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

/// What one restored volume took.
#[derive(Debug, Clone, Serialize)]
struct VolumeDone {
    pvc: String,
    volume: String,
    backup: String,
    seconds: f64,
}

struct Ctx<'a> {
    env: &'a Env,
    spec: &'a RunSpec,
    plan: &'a RestorePlan,
    run: RunId,
    record: &'a RunRecord,
    obs: &'a dyn Observer,
    bundle: tokio::sync::OnceCell<Bundle>,
}

impl Ctx<'_> {
    async fn bundle(&self) -> Result<&Bundle, StepError> {
        self.bundle
            .get_or_try_init(|| async {
                let key = self.plan.point.bundle_key.as_deref().ok_or_else(|| {
                    StepError::Check(format!(
                        "recovery point {} has no manifest bundle recorded",
                        self.plan.point.id
                    ))
                })?;
                Ok::<_, StepError>(self.env.store.get_bundle(key).await?)
            })
            .await
    }

    fn ns(&self) -> &str {
        self.spec.target.as_str()
    }

    fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([(LABEL_RUN.to_owned(), self.run.0.to_string())])
    }

    /// The restored volume of each restorable backup: (claim, volume, backup).
    fn volumes(&self) -> Vec<(String, String, &BackupRecord)> {
        restorable(&self.plan.backups)
            .into_iter()
            .map(|b| {
                let claim = b.pvc.clone().unwrap_or_else(|| b.volume.to_string());
                let vol = restored_volume_name(&self.spec.volume_prefix, self.record, &claim);
                (claim, vol, b)
            })
            .collect()
    }

    async fn step(&self, s: &PlannedStep) -> Result<Option<String>, StepError> {
        match &s.action {
            Action::Check { check } => match check {
                Check::Kubernetes => {
                    let v = k8s::server_version(&self.env.kube).await?;
                    Ok(Some(format!("API server {v}")))
                }
                Check::Longhorn => {
                    let n = self.env.longhorn.list_volumes().await?.len();
                    Ok(Some(format!("Longhorn manager answers ({n} volumes)")))
                }
                Check::BackupTarget => {
                    let t = self.env.longhorn.backup_target().await?;
                    if !t.available {
                        return Err(StepError::Check(format!(
                            "Longhorn's backup target {} is not available: {}",
                            t.backup_target_url, t.message
                        )));
                    }
                    self.bundle().await?;
                    Ok(Some(format!(
                        "backup target {} available; bundle readable",
                        t.backup_target_url
                    )))
                }
            },
            Action::EnsureNamespace => {
                let mut labels = self.spec.namespace_labels.clone();
                labels.extend(self.labels());
                let created = k8s::ensure_namespace(
                    &self.env.kube,
                    self.ns(),
                    &labels,
                    Duration::from_secs(300),
                )
                .await?;
                Ok(Some(if created {
                    format!("created namespace {}", self.ns())
                } else {
                    format!("namespace {} exists", self.ns())
                }))
            }
            Action::ApplyRecoveryPoint => {
                let bundle = self.bundle().await?;
                let objects = manifests::for_redeploy(&bundle.objects, self.ns());
                let applied = k8s::apply(&self.env.kube, self.ns(), &objects).await?;
                let wanted = manifests::secret_names(&bundle.objects);
                let mut missing = k8s::missing_secrets(&self.env.kube, self.ns(), &wanted).await?;
                let mut copied = Vec::new();
                if self.spec.source != self.spec.target {
                    let mut still = Vec::new();
                    for name in missing {
                        if k8s::copy_secret(
                            &self.env.kube,
                            self.spec.source.as_str(),
                            self.ns(),
                            &name,
                        )
                        .await?
                        {
                            copied.push(name);
                        } else {
                            still.push(name);
                        }
                    }
                    missing = still;
                }
                let mut d = format!(
                    "applied {} objects, workloads held at 0 replicas",
                    applied.len()
                );
                if !copied.is_empty() {
                    d.push_str(&format!(
                        "; Secrets copied from {}: {}",
                        self.spec.source,
                        copied.join(", ")
                    ));
                }
                if !missing.is_empty() {
                    let msg = format!(
                        "Secrets the application needs are missing in {} (the bundle holds them by reference only): {}; create them, then re-run",
                        self.ns(),
                        missing.join(", ")
                    );
                    self.obs.event(&RunEvent::Notice(msg.clone()));
                    d.push_str(&format!("; MISSING Secrets: {}", missing.join(", ")));
                }
                Ok(Some(d))
            }
            Action::RestoreVolumes {
                concurrency,
                timeout,
            } => {
                self.restore_volumes(*concurrency, timeout.as_duration())
                    .await
            }
            Action::BindClaims { timeout } => self.bind_claims(timeout.as_duration()).await,
            Action::ScaleRestore => {
                let bundle = self.bundle().await?;
                let w = manifests::workloads(&bundle.objects);
                k8s::scale(&self.env.kube, self.ns(), &w).await?;
                Ok(Some(
                    w.iter()
                        .map(|w| format!("{}/{}={}", w.kind, w.name, w.replicas))
                        .collect::<Vec<_>>()
                        .join(", "),
                ))
            }
            Action::WaitReady { timeout } => {
                let bundle = self.bundle().await?;
                let w = manifests::workloads(&bundle.objects);
                k8s::wait_ready(&self.env.kube, self.ns(), &w, timeout.as_duration()).await?;
                Ok(Some(format!("{} workloads Ready", w.len())))
            }
            Action::Http {
                url,
                expect,
                contains,
                timeout,
            } => {
                let url = expand(url, self.ns(), &self.plan.policy);
                http_check(&url, *expect, contains.as_deref(), timeout.as_duration())
                    .await
                    .map(Some)
            }
            Action::Job {
                name,
                image,
                command,
                timeout,
            } => {
                let job = format!("{name}-{}", self.run.0);
                let command: Vec<String> = command
                    .iter()
                    .map(|c| expand(c, self.ns(), &self.plan.policy))
                    .collect();
                k8s::run_job(
                    &self.env.kube,
                    self.ns(),
                    &job,
                    image,
                    &command,
                    &self.labels(),
                    timeout.as_duration(),
                )
                .await?;
                Ok(Some(format!("job {job} succeeded")))
            }
            Action::ContentChecksums => self.content_checksums().await.map(Some),
            Action::Manual { .. } => Ok(None),
        }
    }

    async fn restore_volumes(
        &self,
        concurrency: usize,
        timeout: Duration,
    ) -> Result<Option<String>, StepError> {
        let vols: Vec<(String, String, String, String)> = self
            .volumes()
            .into_iter()
            .map(|(claim, vol, b)| {
                (
                    claim,
                    vol,
                    b.backup_url.clone().unwrap_or_default(),
                    b.backup_name.clone().unwrap_or_default(),
                )
            })
            .collect();
        let n = vols.len();
        // Owned inputs and a semaphore (not a stream of borrowing closures),
        // so the future stays Send for the daemon's drills.
        let slots = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
        let mut futs = Vec::with_capacity(n);
        for (claim, vol, url, backup) in vols {
            let slots = slots.clone();
            futs.push(self.restore_one(slots, claim, vol, url, backup, timeout));
        }
        let results: Vec<Result<VolumeDone, StepError>> = futures::future::join_all(futs).await;
        let mut done = Vec::new();
        let mut failed = Vec::new();
        for r in results {
            match r {
                Ok(d) => done.push(d),
                Err(e) => failed.push(e.to_string()),
            }
        }
        done.sort_by(|a, b| a.pvc.cmp(&b.pvc));
        if !failed.is_empty() {
            return Err(StepError::Check(format!(
                "{} of {n} volumes did not restore: {}",
                failed.len(),
                failed.join("; ")
            )));
        }
        Ok(Some(serde_json::json!({ "volumes": done }).to_string()))
    }

    async fn content_checksums(&self) -> Result<String, StepError> {
        let template = self.spec.content_url.as_deref().ok_or_else(|| {
            StepError::Check(format!(
                "policy {} has no content probe (content.checksum_url) to compare with",
                self.plan.policy
            ))
        })?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| StepError::Check(e.to_string()))?;
        let mut bad = Vec::new();
        let mut good = 0;
        for (claim, vol, b) in self.volumes() {
            let Some(want) = b.content_checksum.as_deref() else {
                bad.push(format!(
                    "{claim}: no checksum was recorded when its backup was taken"
                ));
                continue;
            };
            match crate::probe::content_checksum(&client, template, &vol).await {
                Ok(got) if got == want => good += 1,
                Ok(got) => bad.push(format!("{claim} ({vol}): checksum {got}, backed up {want}")),
                Err(e) => bad.push(format!("{claim} ({vol}): {e}")),
            }
        }
        if bad.is_empty() {
            Ok(format!("{good} volumes hold the bytes that were backed up"))
        } else {
            Err(StepError::Check(format!(
                "content differs from the backup: {}",
                bad.join("; ")
            )))
        }
    }

    async fn restore_one(
        &self,
        slots: Arc<tokio::sync::Semaphore>,
        claim: String,
        vol: String,
        url: String,
        backup: String,
        timeout: Duration,
    ) -> Result<VolumeDone, StepError> {
        let _slot = slots
            .acquire_owned()
            .await
            .map_err(|e| StepError::Check(e.to_string()))?;
        let start = std::time::Instant::now();
        self.env
            .longhorn
            .create_restored_volume(&vol, &url, None)
            .await?;
        self.obs.event(&RunEvent::Volume {
            pvc: claim.clone(),
            volume: vol.clone(),
            percent: 0,
        });
        let obs = self.obs;
        let (c2, v2) = (claim.clone(), vol.clone());
        let mut last = -1;
        let mut report = move |p: i64| {
            if p != last {
                last = p;
                obs.event(&RunEvent::Volume {
                    pvc: c2.clone(),
                    volume: v2.clone(),
                    percent: p,
                });
            }
        };
        self.env
            .longhorn
            .wait_restored(&vol, timeout, &mut report)
            .await?;
        Ok(VolumeDone {
            pvc: claim,
            volume: vol,
            backup,
            seconds: start.elapsed().as_secs_f64(),
        })
    }

    async fn bind_claims(&self, timeout: Duration) -> Result<Option<String>, StepError> {
        let bundle = self.bundle().await?;
        let claims = manifests::claims(&bundle.objects);
        let vols = self.volumes();
        let names: Vec<String> = vols.iter().map(|(c, _, _)| c.clone()).collect();
        if self.spec.replace {
            // Claims of the same names bound to other volumes are the live data being replaced.
            let mut replaced = Vec::new();
            for (claim, vol, _) in &vols {
                if let Some(bound) = k8s::claim_volume(&self.env.kube, self.ns(), claim).await?
                    && bound.as_deref() != Some(vol.as_str())
                {
                    replaced.push(claim.clone());
                }
            }
            if !replaced.is_empty() {
                self.obs.event(&RunEvent::Notice(format!(
                    "--replace: deleting the claims {} in {} (their old volumes are kept in Longhorn)",
                    replaced.join(", "),
                    self.ns()
                )));
                k8s::delete_claims(&self.env.kube, self.ns(), &replaced, timeout).await?;
            }
        }
        for (claim, vol, _) in &vols {
            let captured = claims
                .iter()
                .find(|c| c["metadata"]["name"] == claim.as_str());
            let sc = captured
                .and_then(|c| c["spec"]["storageClassName"].as_str())
                .unwrap_or("longhorn")
                .to_owned();
            let v = self.env.longhorn.volume(vol).await?.ok_or_else(|| {
                StepError::Check(format!("restored volume {vol} is gone from Longhorn"))
            })?;
            if v.kubernetes_status.pv_name.is_empty() {
                self.env.longhorn.pv_create(vol, vol, "ext4", &sc).await?;
            }
            match captured {
                Some(c) => {
                    let mut obj = manifests::claim_for(c, self.ns(), vol);
                    let labels = obj["metadata"]["labels"].as_object_mut();
                    match labels {
                        Some(l) => {
                            l.insert(LABEL_RUN.into(), self.run.0.to_string().into());
                        }
                        None => {
                            obj["metadata"]["labels"] =
                                serde_json::json!({ LABEL_RUN: self.run.0.to_string() });
                        }
                    }
                    k8s::create_claim(&self.env.kube, self.ns(), &obj).await?;
                }
                None => {
                    if k8s::claim_volume(&self.env.kube, self.ns(), claim)
                        .await?
                        .is_none()
                    {
                        self.env.longhorn.pvc_create(vol, self.ns(), claim).await?;
                    }
                }
            }
        }
        k8s::wait_bound(&self.env.kube, self.ns(), &names, timeout).await?;
        Ok(Some(format!(
            "{} claims bound: {}",
            names.len(),
            names.join(", ")
        )))
    }
}

async fn http_check(
    url: &str,
    expect: u16,
    contains: Option<&str>,
    timeout: Duration,
) -> Result<String, StepError> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| StepError::Check(format!("HTTP client: {e}")))?;
    let start = std::time::Instant::now();
    let mut last;
    loop {
        match client.get(url).send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                let body = r.text().await.unwrap_or_default();
                let body_ok = contains.is_none_or(|c| body.contains(c));
                if status == expect && body_ok {
                    return Ok(format!("GET {url}: {status}"));
                }
                last = if status != expect {
                    format!("status {status}, expected {expect}")
                } else {
                    format!(
                        "status {status} but the body lacks {:?}",
                        contains.unwrap_or_default()
                    )
                };
            }
            Err(e) => last = e.to_string(),
        }
        if start.elapsed() >= timeout {
            return Err(StepError::Check(format!(
                "GET {url} did not answer {expect} within {timeout:?}; last: {last}"
            )));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The outcome of [`execute`].
#[derive(Debug, Clone)]
pub struct Outcome {
    pub run: RunRecord,
    pub summary: RunSummary,
}

/// Runs (or resumes) the runbook of a begun run to its end.
pub async fn execute(
    env: &Env,
    spec: &RunSpec,
    plan: &RestorePlan,
    begun: &Begun,
    obs: &dyn Observer,
) -> Result<Outcome, RunError> {
    let run = begun.run().clone();
    obs.event(&RunEvent::Started {
        run: run.id,
        resumed: matches!(begun, Begun::Resumed(_)),
    });
    let lost = Arc::new(AtomicBool::new(false));
    let beat = {
        let catalog = env.catalog.clone();
        let holder = spec.holder.clone();
        let lost = lost.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(HEARTBEAT).await;
                match catalog.heartbeat(run.id, &holder, Utc::now()).await {
                    Ok(true) => {}
                    Ok(false) => {
                        lost.store(true, Ordering::SeqCst);
                        return;
                    }
                    Err(e) => tracing::warn!(error = %e, "run heartbeat failed (will retry)"),
                }
            }
        })
    };
    let mut result = run_steps(env, spec, plan, &run, obs, &lost).await;
    if spec.kind == RunKind::Drill && !matches!(result, Err(RunError::LostLock { .. })) {
        // A drill always tears down what it made, passed or not.
        let seq = spec.runbook.planned().len() as i64 + 1;
        obs.event(&RunEvent::Notice(format!(
            "tearing down drill namespace {}",
            spec.target
        )));
        let td = crate::drill::teardown_step(env, &run, seq, Duration::from_secs(300)).await;
        match td {
            Ok(d) => obs.event(&RunEvent::Notice(d)),
            Err(e) => {
                obs.event(&RunEvent::Notice(format!("teardown failed: {e}")));
                if result.is_ok() {
                    result = Err(RunError::StepFailed(StepFailed {
                        seq,
                        stage: crate::drill::TEARDOWN.into(),
                        label: "teardown".into(),
                        message: e.to_string(),
                    }));
                }
            }
        }
    }
    beat.abort();
    let (state, error) = match &result {
        Ok(()) => (RunState::Succeeded, None),
        Err(RunError::LostLock { .. }) => return Err(RunError::LostLock { run: run.id }),
        Err(e) => (RunState::Failed, Some(e.to_string())),
    };
    let done = env
        .catalog
        .finish_run(run.id, state, error.as_deref(), Utc::now())
        .await?;
    let summary = summary_of(env, &done, &spec.runbook, plan).await?;
    if let Ok(json) = serde_json::to_string(&summary) {
        env.catalog.set_run_summary(run.id, &json).await?;
    }
    Ok(Outcome { run: done, summary })
}

/// The summary of a run from the catalog.
pub async fn summary_of(
    env: &Env,
    run: &RunRecord,
    runbook: &Runbook,
    plan: &RestorePlan,
) -> Result<RunSummary, RunError> {
    let steps = env.catalog.steps(run.id).await?;
    let mut stages: StageBudgets = runbook
        .stages
        .iter()
        .map(|s| (s.name.clone(), s.budget))
        .collect();
    if run.kind == RunKind::Drill {
        // Not part of the RTO; a budget only for the verdict column.
        stages.push((
            crate::drill::TEARDOWN.into(),
            crate::span::Span::from_secs(600),
        ));
    }
    Ok(summarize(
        run,
        &steps,
        &stages,
        plan.rto,
        plan.data_loss_seconds,
        plan.rpo,
        Utc::now(),
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

async fn run_steps(
    env: &Env,
    spec: &RunSpec,
    plan: &RestorePlan,
    record: &RunRecord,
    obs: &dyn Observer,
    lost: &AtomicBool,
) -> Result<(), RunError> {
    let run = record.id;
    let ctx = Ctx {
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
        if lost.load(Ordering::SeqCst) {
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
        let started = Utc::now();
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
        let finished = Utc::now();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: i64, started_ms: i64) -> RunRecord {
        RunRecord {
            id: RunId(id),
            kind: RunKind::Restore,
            policy: "shop".parse().unwrap(),
            point_id: None,
            target_namespace: "shop".parse().unwrap(),
            target_at: None,
            state: RunState::Running,
            incident_id: None,
            started_at: chrono::DateTime::from_timestamp_millis(started_ms).unwrap(),
            finished_at: None,
            error: None,
            holder: None,
            heartbeat_at: None,
            summary: None,
        }
    }

    #[test]
    fn restored_names_are_deterministic_unique_and_fit() {
        let r = run(12, 1_700_000_000_000);
        let n = restored_volume_name("dr-r", &r, "data-postgres-0");
        assert!(
            n.starts_with("dr-r12-") && n.ends_with("-data-postgres-0"),
            "{n}"
        );
        assert_eq!(n, restored_volume_name("dr-r", &r, "data-postgres-0"));
        // The same run id in another catalog (another start time) differs.
        let other = run(12, 1_700_000_000_001);
        assert_ne!(n, restored_volume_name("dr-r", &other, "data-postgres-0"));
        let long = "a".repeat(80);
        let r = run(123456, 1);
        let n = restored_volume_name("dr-d", &r, &long);
        assert!(n.len() <= 63, "{n}");
        assert_eq!(n, restored_volume_name("dr-d", &r, &long));
        assert_ne!(n, restored_volume_name("dr-d", &r, &"a".repeat(81)));
    }

    #[test]
    fn a_live_local_holder_is_alive_and_a_gone_one_is_dead() {
        let me = holder_id();
        assert!(!holder_dead(&me));
        let host = me.split(':').next().unwrap();
        assert!(holder_dead(&format!("{host}:4000000:x")));
        assert!(
            !holder_dead("elsewhere:1:x"),
            "other hosts are judged by heartbeat"
        );
    }
}
