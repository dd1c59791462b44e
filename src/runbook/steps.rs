//! One function per kind of runbook step: checks, namespace, redeploy of the
//! point's manifests, volume restores, claims, scaling, readiness, HTTP and
//! Job checks, content checksums. Each acts on the run's target namespace and
//! says what it did; the engine records it.

use super::engine::{Env, Observer, RunEvent, RunSpec};
use super::spec::{Action, Check, PlannedStep, expand};
use crate::bundle::{self, Bundle};
use crate::catalog::{BackupRecord, BackupState, CatalogError, RunId, RunRecord};
use crate::cluster::ClusterError;
use crate::cluster::restore::{self as k8s, LABEL_RUN};
use crate::longhorn::LonghornError;
use crate::restore::RestorePlan;
use crate::store::StoreError;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Why a step failed (recorded in the step's detail and the run's error).
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Longhorn(#[from] LonghornError),
    #[error(transparent)]
    Kubernetes(#[from] ClusterError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("{0}")]
    Check(String),
}

/// The longest volume name Longhorn keeps as it is.
pub const MAX_VOLUME_NAME: usize = 40;

/// A restored volume's name: deterministic per (run, claim), so a resumed run
/// finds what it created, and unique across catalogs (run ids restart at 1
/// in a rebuilt catalog, and Longhorn volume and PV names are cluster-wide):
/// the run id and a digest of its start time and target; at most
/// [`MAX_VOLUME_NAME`] characters.
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
    // Longhorn's volume mutator renames anything longer than 40 characters
    // (longhorn-manager webhook/resources/volume/mutator.go `Create` →
    // util.AutoCorrectName with datastore.NameMaximumLength = 40), so a
    // longer name would be lost under the name dr asked for.
    if name.len() > MAX_VOLUME_NAME {
        let h = hex::encode(sha2::Sha256::digest(claim.as_bytes()));
        let keep = MAX_VOLUME_NAME.saturating_sub(head.len() + 9);
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

/// What one restored volume took.
#[derive(Debug, Clone, Serialize)]
struct VolumeDone {
    pvc: String,
    volume: String,
    backup: String,
    seconds: f64,
    /// Restored with fewer replicas than asked for, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    degraded: Option<String>,
}

pub(super) struct StepCtx<'a> {
    pub(super) env: &'a Env,
    pub(super) spec: &'a RunSpec,
    pub(super) plan: &'a RestorePlan,
    pub(super) run: RunId,
    pub(super) record: &'a RunRecord,
    pub(super) obs: &'a dyn Observer,
    pub(super) bundle: tokio::sync::OnceCell<Bundle>,
}

impl StepCtx<'_> {
    pub(super) async fn bundle(&self) -> Result<&Bundle, StepError> {
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

    /// Runs one step; each kind of step is a function of its own below.
    pub(super) async fn step(&self, s: &PlannedStep) -> Result<Option<String>, StepError> {
        match &s.action {
            Action::Check { check } => match check {
                Check::Kubernetes => self.check_kubernetes().await.map(Some),
                Check::Longhorn => self.check_longhorn().await.map(Some),
                Check::BackupTarget => self.check_backup_target().await.map(Some),
                Check::ClusterObjects => self.check_cluster_objects().await.map(Some),
            },
            Action::EnsureNamespace => self.ensure_namespace().await.map(Some),
            Action::ApplyRecoveryPoint => self.apply_recovery_point().await.map(Some),
            Action::RestoreVolumes {
                concurrency,
                timeout,
            } => {
                self.restore_volumes(*concurrency, timeout.as_duration())
                    .await
            }
            Action::BindClaims { timeout } => self.bind_claims(timeout.as_duration()).await,
            Action::ScaleRestore => self.scale_restore().await.map(Some),
            Action::WaitReady { timeout } => self.wait_ready(timeout.as_duration()).await.map(Some),
            Action::Http {
                url,
                expect,
                contains,
                timeout,
            } => {
                let url = expand(url, self.ns(), self.plan.policy.as_str());
                http_check(&url, *expect, contains.as_deref(), timeout.as_duration())
                    .await
                    .map(Some)
            }
            Action::Job {
                name,
                image,
                command,
                timeout,
            } => self
                .job(name, image, command, timeout.as_duration())
                .await
                .map(Some),
            Action::ContentChecksums => self.content_checksums().await.map(Some),
            // The engine handles manual steps (they need the observer).
            Action::Manual { .. } => Ok(None),
        }
    }

    async fn check_kubernetes(&self) -> Result<String, StepError> {
        let v = k8s::server_version(&self.env.kube).await?;
        Ok(format!("API server {v}"))
    }

    async fn check_longhorn(&self) -> Result<String, StepError> {
        let version = self.env.longhorn.check_supported().await?;
        let n = self.env.longhorn.list_volumes().await?.len();
        Ok(format!("Longhorn manager {version} answers ({n} volumes)"))
    }

    async fn ensure_namespace(&self) -> Result<String, StepError> {
        let mut labels = self.spec.namespace_labels.clone();
        labels.extend(self.labels());
        let created =
            k8s::ensure_namespace(&self.env.kube, self.ns(), &labels, Duration::from_secs(300))
                .await?;
        Ok(if created {
            format!("created namespace {}", self.ns())
        } else {
            format!("namespace {} exists", self.ns())
        })
    }

    async fn apply_recovery_point(&self) -> Result<String, StepError> {
        let bundle = self.bundle().await?;
        // Opened before anything is applied: a resumed run whose identity
        // is missing or wrong changes nothing.
        let opened = super::engine::open_sealed(bundle, self.spec, self.plan.point.id.0)
            .map_err(|e| StepError::Check(e.to_string()))?;
        let mut restored = Vec::new();
        if let Some(secrets) = &opened {
            restored = crate::cluster::secrets::apply(&self.env.kube, self.ns(), secrets).await?;
        }
        // Cluster-scoped dependencies (CRDs Established) before the objects
        // that need them.
        let cluster = k8s::ensure_cluster_objects(&self.env.kube, bundle).await?;
        let objects = bundle::for_redeploy(&bundle.objects, self.ns());
        let applied = k8s::apply(&self.env.kube, self.ns(), &objects, &bundle.resources).await?;
        let wanted = bundle::secret_names(&bundle.objects);
        let missing = k8s::missing_secrets(&self.env.kube, self.ns(), &wanted).await?;
        let mut copied = Vec::new();
        if self.spec.source != self.spec.target {
            for name in missing {
                if k8s::copy_secret(&self.env.kube, self.spec.source.as_str(), self.ns(), &name)
                    .await?
                {
                    copied.push(name);
                }
            }
        }
        self.check_references(bundle).await?;
        let mut d = format!(
            "applied {} objects, workloads held at 0 replicas",
            applied.objects.len()
        );
        if !restored.is_empty() {
            d.push_str(&format!(
                "; Secrets restored from the sealed copy: {}",
                restored.join(", ")
            ));
        }
        if !bundle.cluster_objects.is_empty() {
            d.push_str(&format!("; {}", cluster.summary()));
        }
        for note in &applied.notes {
            d.push_str(&format!("; {note}"));
        }
        if !copied.is_empty() {
            d.push_str(&format!(
                "; Secrets copied from {}: {}",
                self.spec.source,
                copied.join(", ")
            ));
        }
        d.push_str("; every reference of the application found");
        Ok(d)
    }

    /// Fails, naming each and saying what to do, when something the
    /// application refers to (see `crate::references`) is not in the target
    /// namespace; claims the data stage binds later count as there.
    async fn check_references(&self, bundle: &Bundle) -> Result<(), StepError> {
        use crate::references::{self as refs, Reference, Target};
        let point = self.plan.point.id;
        let mut all = refs::references(&bundle.objects);
        // A Secret the point captured is needed even if no template names it.
        for name in bundle::secret_names(&bundle.objects) {
            all.push(Reference {
                target: Target::Secret { name },
                by: format!("recovery point {point}"),
                via: "which captured it".into(),
            });
        }
        let coming: std::collections::BTreeSet<String> =
            self.volumes().into_iter().map(|(c, _, _)| c).collect();
        let later = |t: &Target| match t {
            Target::PersistentVolumeClaim { name } => {
                coming.contains(name) || refs::made_by_template(name, &bundle.objects)
            }
            _ => false,
        };
        let lookup: std::collections::BTreeSet<Target> = all
            .iter()
            .map(|r| r.target.clone())
            .filter(|t| !later(t))
            .collect();
        let present =
            crate::cluster::references::present(&self.env.kube, self.ns(), &lookup).await?;
        let missing = refs::missing(&all, |t| later(t) || present.contains(t));
        if missing.is_empty() {
            return Ok(());
        }
        let sealed = bundle.sealed_secrets.is_some();
        let lines: Vec<String> = missing
            .iter()
            .map(|(t, by)| {
                let uses = by
                    .iter()
                    .map(|r| format!("{} {}", r.by, r.via))
                    .collect::<Vec<_>>()
                    .join(", ");
                let todo = match t {
                    Target::Secret { .. } if !sealed => {
                        "the recovery point holds Secrets by reference only; add `secrets: {recipients: [age1…]}` to the policy so later points carry them, or create it"
                    }
                    Target::Secret { .. } => {
                        "it is not among the point's sealed Secrets; create it"
                    }
                    Target::CustomResourceDefinition { .. } => "install its definition",
                    Target::PersistentVolumeClaim { .. } => {
                        "the recovery point has no backup of it; create it"
                    }
                    _ => "it is not in the recovery point; create it",
                };
                format!("{t} (referenced by {uses}) is missing in namespace {}: {todo}", self.ns())
            })
            .collect();
        // A failed restore's error already says to run the same command again.
        let again = match self.spec.kind {
            crate::catalog::RunKind::Drill => "; then run the drill again",
            _ => "",
        };
        Err(StepError::Check(format!(
            "the application lacks what it refers to: {}{again}",
            lines.join("; ")
        )))
    }

    async fn scale_restore(&self) -> Result<String, StepError> {
        let bundle = self.bundle().await?;
        let w = bundle::workloads(&bundle.objects);
        k8s::scale(&self.env.kube, self.ns(), &w).await?;
        Ok(w.iter()
            .map(|w| match w.kind.as_str() {
                "DaemonSet" | "CronJob" => format!("{}/{} released", w.kind, w.name),
                _ => format!("{}/{}={}", w.kind, w.name, w.replicas),
            })
            .collect::<Vec<_>>()
            .join(", "))
    }

    async fn wait_ready(&self, timeout: Duration) -> Result<String, StepError> {
        let bundle = self.bundle().await?;
        let w = bundle::workloads(&bundle.objects);
        k8s::wait_ready(&self.env.kube, self.ns(), &w, timeout).await?;
        Ok(format!("{} workloads Ready", w.len()))
    }

    async fn job(
        &self,
        name: &str,
        image: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<String, StepError> {
        let job = format!("{name}-{}", self.run.0);
        let command: Vec<String> = command
            .iter()
            .map(|c| expand(c, self.ns(), self.plan.policy.as_str()))
            .collect();
        k8s::run_job(
            &self.env.kube,
            self.ns(),
            &job,
            image,
            &command,
            &self.labels(),
            timeout,
        )
        .await?;
        Ok(format!("job {job} succeeded"))
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
        let start = tokio::time::Instant::now();
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
        let restored = self
            .env
            .longhorn
            .wait_restored(&vol, timeout, &mut report)
            .await?;
        let degraded = restored.unschedulable();
        if let Some(why) = &degraded {
            self.obs.event(&RunEvent::Notice(format!(
                "volume {vol} ({claim}) is restored with less redundancy than asked for: {why}"
            )));
        }
        Ok(VolumeDone {
            pvc: claim,
            volume: vol,
            backup,
            seconds: start.elapsed().as_secs_f64(),
            degraded,
        })
    }

    async fn bind_claims(&self, timeout: Duration) -> Result<Option<String>, StepError> {
        let bundle = self.bundle().await?;
        let claims = bundle::claims(&bundle.objects);
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
        for (claim, vol, b) in &vols {
            let captured = claims
                .iter()
                .find(|c| c["metadata"]["name"] == claim.as_str());
            let sc = captured
                .and_then(|c| c["spec"]["storageClassName"].as_str())
                .unwrap_or("longhorn")
                .to_owned();
            // Rows from before the filesystem was recorded: ext4, Longhorn's
            // own default (manager/kubernetes.go `PVCreate`).
            let fs_type = b.fs_type.as_deref().unwrap_or("ext4");
            self.ensure_pv(vol, fs_type, &sc).await?;
            k8s::reserve_pv(&self.env.kube, vol, self.ns(), claim).await?;
            match captured {
                Some(c) => {
                    let mut obj = bundle::claim_for(c, self.ns(), vol);
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

impl StepCtx<'_> {
    /// The restored volume's PV, named as the volume: made with `pvCreate`,
    /// or adopted when it exists already and is backed by that volume.
    /// Longhorn sets `kubernetesStatus.pvName` only later, from the PV's
    /// events (controller/kubernetes_pv_controller.go
    /// `syncKubernetesStatus`), and refuses a second `pvCreate` with "volume
    /// already had PV …" or `persistentvolumes "…" already exists`
    /// (manager/kubernetes.go `PVCreate`): after a crash, or a retry right
    /// after the first, the PV is there and is dr's.
    async fn ensure_pv(&self, vol: &str, fs_type: &str, sc: &str) -> Result<(), StepError> {
        let v = self.env.longhorn.volume(vol).await?.ok_or_else(|| {
            StepError::Check(format!("restored volume {vol} is gone from Longhorn"))
        })?;
        if !v.kubernetes_status.pv_name.is_empty() {
            return Ok(());
        }
        if self.pv_is_ours(vol).await? {
            return Ok(());
        }
        match self.env.longhorn.pv_create(vol, vol, fs_type, sc).await {
            Ok(_) => Ok(()),
            Err(LonghornError::Refused { message, .. })
                if message.contains("already had PV") || message.contains("already exists") =>
            {
                if self.pv_is_ours(vol).await? {
                    Ok(())
                } else {
                    Err(StepError::Check(format!(
                        "PersistentVolume {vol} exists and is not backed by the restored volume {vol} (Longhorn: {message}); delete it or restore under another run"
                    )))
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Whether PV `vol` exists and is Longhorn's volume `vol`; a PV of that
    /// name backed by something else is refused.
    async fn pv_is_ours(&self, vol: &str) -> Result<bool, StepError> {
        match k8s::pv_longhorn_volume(&self.env.kube, vol).await? {
            None => Ok(false),
            Some(Some(handle)) if handle == vol => Ok(true),
            Some(other) => Err(StepError::Check(format!(
                "PersistentVolume {vol} exists and is backed by {} instead of the restored volume {vol}; delete it or restore under another run",
                other.as_deref().unwrap_or("another driver")
            ))),
        }
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
    let start = tokio::time::Instant::now();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{RunKind, RunState};

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
        assert!(n.len() <= MAX_VOLUME_NAME, "{n}");
        let huge = restored_volume_name("dr-r", &run(i64::MAX, 1), &long);
        assert!(huge.len() <= MAX_VOLUME_NAME, "{huge}");
        let short = restored_volume_name("dr-r", &run(12, 1), "data-postgres-0");
        assert!(short.len() <= MAX_VOLUME_NAME, "{short}");
        assert_eq!(n, restored_volume_name("dr-d", &r, &long));
        assert_ne!(n, restored_volume_name("dr-d", &r, &"a".repeat(81)));
    }

    #[tokio::test(start_paused = true)]
    async fn an_http_check_gives_up_at_its_timeout_on_tokio_time() {
        // Nothing listens on port 9 of loopback: every try is refused at once,
        // and the check retries every 2 s until its timeout, on tokio's clock.
        let start = tokio::time::Instant::now();
        let e = http_check("http://127.0.0.1:9/", 200, None, Duration::from_secs(60))
            .await
            .expect_err("nothing answers");
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_secs(60) && waited < Duration::from_secs(63),
            "{waited:?}"
        );
        assert!(
            e.to_string().contains("did not answer 200 within 60s"),
            "{e}"
        );
    }
}
