//! Restore drills: the restore runbook into a scratch namespace the drill
//! creates (`dr-drill-<policy>-<short id>`, labelled as dr's), verified, then
//! torn down — namespace, restored volumes and their PVs. A drill passes only
//! if its runbook passed *and* its teardown completed. A janitor removes what
//! interrupted drills left behind, even after a crash.

use crate::catalog::{RunKind, RunRecord, RunState, StepRecord, StepState};
use crate::cluster::restore::{self as k8s, NamespaceState};
use crate::names::Namespace;
use crate::restore::run::{
    Env, Observer, Outcome, RunError, RunSpec, STALE_AFTER, StepError, begin, execute, holder_dead,
};
use chrono::{DateTime, TimeDelta, Utc};
use k8s_openapi::api::core::v1::{Namespace as K8sNamespace, PersistentVolume};
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Label on every namespace a drill creates (value: the policy).
pub const LABEL_DRILL: &str = "dr.longhorn.io/drill";
/// The stage name of a drill's teardown.
pub const TEARDOWN: &str = "teardown";
/// Prefix of the volumes drills restore (never a production name).
pub const VOLUME_PREFIX: &str = "dr-d";

/// The scratch namespace of a drill: `dr-drill-<policy>-<6 hex>` (policy
/// names have at most 40 characters, so it fits in 63).
pub fn drill_namespace(policy: &str) -> Result<Namespace, crate::names::NameError> {
    let short = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
    format!("dr-drill-{policy}-{short}").parse()
}

fn kube_step(op: &'static str, ns: &str) -> impl FnOnce(kube::Error) -> StepError {
    let to_cluster = k8s::api_err(op, ns);
    move |e| StepError::from(to_cluster(e))
}

/// Runs a drill of `plan` (a recovery point of `policy`) into a new scratch
/// namespace: the runbook, then the teardown. `manual` steps are skipped.
pub async fn run_drill(
    env: &Env,
    policy: &crate::catalog::PolicyRecord,
    runbook: crate::runbook::Runbook,
    plan: &crate::restore::RestorePlan,
    content_url: Option<String>,
    holder: &str,
    obs: &dyn Observer,
) -> Result<Outcome, RunError> {
    let target = drill_namespace(policy.name.as_str()).map_err(|e| {
        RunError::StepFailed(crate::restore::run::StepFailed {
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
    };
    let begun = begin(env, &spec, plan).await?;
    execute(env, &spec, plan, &begun, obs).await
}

/// Whether a drill passed: its runbook and its teardown succeeded.
pub fn passed(summary: &crate::restore::summary::RunSummary) -> bool {
    summary.state == "succeeded"
        && summary.stages.iter().any(|s| {
            s.name == TEARDOWN
                && s.verdict != crate::restore::summary::Verdict::Failed
                && s.verdict != crate::restore::summary::Verdict::NotRun
        })
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
    let start = Instant::now();
    let nss = Api::<K8sNamespace>::all(env.kube.clone());
    let mut deleted_ns = false;
    match k8s::namespace_state(&env.kube, ns).await? {
        NamespaceState::Absent => {}
        NamespaceState::Terminating => deleted_ns = true,
        NamespaceState::Active { labels } => {
            if !labels.contains_key(LABEL_DRILL) {
                return Err(StepError::Check(format!(
                    "namespace {ns} does not carry the {LABEL_DRILL} label; a drill deletes only namespaces it created"
                )));
            }
            match nss.delete(ns, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(kube_step("delete namespace", ns)(e)),
            }
            deleted_ns = true;
        }
    }
    // The volumes: by the run's name prefix, and by the PVs bound in the namespace.
    let prefix = run.map(|r| format!("{VOLUME_PREFIX}{}-", r.id.0));
    let mut volumes: BTreeSet<String> = BTreeSet::new();
    for v in env.longhorn.list_volumes().await? {
        let by_run = prefix.as_deref().is_some_and(|p| v.name.starts_with(p));
        let by_ns = v.kubernetes_status.namespace == ns && v.name.starts_with(VOLUME_PREFIX);
        if by_run || by_ns {
            volumes.insert(v.name);
        }
    }
    let pvs = Api::<PersistentVolume>::all(env.kube.clone());
    let mut pv_names: BTreeSet<String> = BTreeSet::new();
    for pv in pvs
        .list(&ListParams::default())
        .await
        .map_err(kube_step("list PVs", ns))?
    {
        let spec = pv.spec.unwrap_or_default();
        let claim_ns = spec
            .claim_ref
            .as_ref()
            .and_then(|c| c.namespace.as_deref())
            .unwrap_or_default();
        let handle = spec
            .csi
            .as_ref()
            .map(|c| c.volume_handle.clone())
            .unwrap_or_default();
        if claim_ns == ns || volumes.contains(&handle) {
            if handle.starts_with(VOLUME_PREFIX) {
                volumes.insert(handle);
            }
            if let Some(n) = pv.metadata.name {
                pv_names.insert(n);
            }
        }
    }
    // Namespace first (its pods and claims go), then PVs, then volumes.
    if deleted_ns {
        loop {
            if nss
                .get_opt(ns)
                .await
                .map_err(kube_step("read namespace", ns))?
                .is_none()
            {
                break;
            }
            if start.elapsed() >= wait {
                return Err(StepError::Check(format!(
                    "namespace {ns} was still terminating after {wait:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    for p in &pv_names {
        match pvs.delete(p, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(kube_step("delete PV", ns)(e)),
        }
    }
    for v in &volumes {
        env.longhorn.delete_volume(v).await?;
    }
    loop {
        let left_pv = {
            let mut n = 0;
            for p in &pv_names {
                if pvs
                    .get_opt(p)
                    .await
                    .map_err(kube_step("read PV", ns))?
                    .is_some()
                {
                    n += 1;
                }
            }
            n
        };
        let existing: BTreeSet<String> = env
            .longhorn
            .list_volumes()
            .await?
            .into_iter()
            .map(|v| v.name)
            .collect();
        let left_vol = volumes.iter().filter(|v| existing.contains(*v)).count();
        if left_pv == 0 && left_vol == 0 {
            break;
        }
        if start.elapsed() >= wait {
            return Err(StepError::Check(format!(
                "after {wait:?}, {left_pv} PVs and {left_vol} Longhorn volumes of drill namespace {ns} were still there"
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(format!(
        "namespace {ns} {}; {} PVs and {} Longhorn volumes deleted",
        if deleted_ns {
            "deleted"
        } else {
            "was already gone"
        },
        pv_names.len(),
        volumes.len()
    ))
}

/// Records a teardown as the step after the runbook's last.
pub async fn teardown_step(
    env: &Env,
    run: &RunRecord,
    seq: i64,
    wait: Duration,
) -> Result<String, StepError> {
    let started = Utc::now();
    let mut rec = StepRecord {
        seq,
        stage: TEARDOWN.into(),
        step: "delete namespace, PVs and volumes".into(),
        state: StepState::Running,
        budget: None,
        started_at: Some(started),
        finished_at: None,
        detail: None,
    };
    env.catalog.record_step(run.id, &rec).await?;
    let r = teardown(env, run.target_namespace.as_str(), Some(run), wait).await;
    rec.finished_at = Some(Utc::now());
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
pub async fn janitor(env: &Env, holder: &str, ttl: Duration, now: DateTime<Utc>) -> Janitor {
    let mut out = Janitor::default();
    let stale_after = TimeDelta::from_std(STALE_AFTER).unwrap_or(TimeDelta::zero());
    let mut live_namespaces = BTreeSet::new();
    match env
        .catalog
        .list_runs(Some(RunKind::Drill), None, 1000)
        .await
    {
        Ok(runs) => {
            for r in runs.into_iter().filter(|r| r.state == RunState::Running) {
                let hb = r.heartbeat_at.unwrap_or(r.started_at);
                let dead = r.holder.as_deref().is_some_and(holder_dead);
                if !dead && now - hb <= stale_after {
                    live_namespaces.insert(r.target_namespace.to_string());
                    continue;
                }
                let cutoff = if dead {
                    now + TimeDelta::seconds(1)
                } else {
                    now - stale_after
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
                match teardown_step(env, &r, seq, Duration::from_secs(300)).await {
                    Ok(_) => {
                        let _ = env
                            .catalog
                            .finish_run(
                                r.id,
                                RunState::Failed,
                                Some("interrupted: its process died; torn down by the janitor"),
                                Utc::now(),
                            )
                            .await;
                        out.interrupted_runs.push(r.id.0);
                    }
                    Err(e) => out.errors.push(format!("drill run {}: {e}", r.id)),
                }
            }
        }
        Err(e) => out.errors.push(e.to_string()),
    }
    let nss = Api::<K8sNamespace>::all(env.kube.clone());
    match nss.list(&ListParams::default().labels(LABEL_DRILL)).await {
        Ok(list) => {
            for n in list {
                let Some(name) = n.metadata.name.clone() else {
                    continue;
                };
                let created = n.metadata.creation_timestamp.as_ref().map(|t| t.0);
                let old = created.is_some_and(|c| {
                    let c = DateTime::<Utc>::from_timestamp(c.as_second(), 0).unwrap_or(now);
                    now - c > TimeDelta::from_std(ttl).unwrap_or(TimeDelta::zero())
                });
                if !old || live_namespaces.contains(&name) {
                    continue;
                }
                match teardown(env, &name, None, Duration::from_secs(300)).await {
                    Ok(_) => out.stale_namespaces.push(name),
                    Err(e) => out.errors.push(format!("namespace {name}: {e}")),
                }
            }
        }
        Err(e) => out.errors.push(format!("listing drill namespaces: {e}")),
    }
    out
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
