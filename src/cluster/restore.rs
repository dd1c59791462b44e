//! The Kubernetes side of a restore: the target namespace, what runs in it,
//! server-side apply of a bundle, claims bound to restored volumes, scaling,
//! readiness and check Jobs. Every wait has a deadline and says what it
//! last saw.

use super::ClusterError;
use crate::bundle::{KINDS, Workload};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    Namespace as K8sNamespace, PersistentVolume, PersistentVolumeClaim, Pod, Secret,
};
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    PostParams,
};
use kube::{Api, Client};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// The field manager of dr's server-side applies.
pub const FIELD_MANAGER: &str = "dr";
/// Label on what a restore or drill created: the run's id.
pub const LABEL_RUN: &str = "dr.longhorn.io/run";

const POLL: Duration = Duration::from_millis(500);

pub(crate) fn api_err(
    op: &'static str,
    namespace: &str,
) -> impl FnOnce(kube::Error) -> ClusterError {
    let namespace = namespace.to_owned();
    move |source| ClusterError::Api {
        op,
        namespace,
        source,
    }
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

type Result<T, E = ClusterError> = std::result::Result<T, E>;

/// The API server's version (`check: kubernetes`).
pub async fn server_version(client: &Client) -> Result<String> {
    let v = client
        .apiserver_version()
        .await
        .map_err(api_err("read the server version", "-"))?;
    Ok(v.git_version)
}

/// What the target namespace looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamespaceState {
    Absent,
    Active { labels: BTreeMap<String, String> },
    Terminating,
}

/// Reads the namespace's state.
pub async fn namespace_state(client: &Client, ns: &str) -> Result<NamespaceState> {
    let api = Api::<K8sNamespace>::all(client.clone());
    match api
        .get_opt(ns)
        .await
        .map_err(api_err("read namespace", ns))?
    {
        None => Ok(NamespaceState::Absent),
        Some(n) if n.metadata.deletion_timestamp.is_some() => Ok(NamespaceState::Terminating),
        Some(n) => Ok(NamespaceState::Active {
            labels: n.metadata.labels.unwrap_or_default(),
        }),
    }
}

/// Makes sure the namespace exists: waits out a deletion in progress, then
/// creates it with `labels` if missing. Returns whether dr created it.
pub async fn ensure_namespace(
    client: &Client,
    ns: &str,
    labels: &BTreeMap<String, String>,
    wait: Duration,
) -> Result<bool> {
    let start = Instant::now();
    loop {
        match namespace_state(client, ns).await? {
            NamespaceState::Active { .. } => return Ok(false),
            NamespaceState::Absent => {
                let obj: K8sNamespace = serde_json::from_value(json!({
                    "apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": ns, "labels": labels},
                }))
                .map_err(|e| ClusterError::BadObject {
                    kind: "Namespace".into(),
                    name: ns.into(),
                    message: e.to_string(),
                })?;
                match Api::<K8sNamespace>::all(client.clone())
                    .create(&PostParams::default(), &obj)
                    .await
                {
                    Ok(_) => return Ok(true),
                    Err(e) if is_status(&e, 409) => continue,
                    Err(e) => return Err(api_err("create namespace", ns)(e)),
                }
            }
            NamespaceState::Terminating => {
                if start.elapsed() >= wait {
                    return Err(ClusterError::Deadline {
                        what: format!("the deletion of namespace {ns} to finish"),
                        waited: start.elapsed(),
                        last: "Terminating".into(),
                    });
                }
                tokio::time::sleep(POLL).await;
            }
        }
    }
}

/// What in the namespace would be overwritten by a restore: workloads with
/// replicas, running pods, and existing claims among `claim_names`.
pub async fn live_data(client: &Client, ns: &str, claim_names: &[String]) -> Result<Vec<String>> {
    let lp = ListParams::default();
    let mut out = Vec::new();
    if matches!(namespace_state(client, ns).await?, NamespaceState::Absent) {
        return Ok(out);
    }
    for d in Api::<Deployment>::namespaced(client.clone(), ns)
        .list(&lp)
        .await
        .map_err(api_err("list deployments", ns))?
    {
        let r = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        if r > 0 {
            out.push(format!(
                "Deployment/{} ({r} replicas)",
                d.metadata.name.unwrap_or_default()
            ));
        }
    }
    for s in Api::<StatefulSet>::namespaced(client.clone(), ns)
        .list(&lp)
        .await
        .map_err(api_err("list statefulsets", ns))?
    {
        let r = s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        if r > 0 {
            out.push(format!(
                "StatefulSet/{} ({r} replicas)",
                s.metadata.name.unwrap_or_default()
            ));
        }
    }
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&lp)
        .await
        .map_err(api_err("list pods", ns))?;
    let running = pods
        .items
        .iter()
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .is_some_and(|ph| ph == "Running" || ph == "Pending")
        })
        .count();
    if running > 0 {
        out.push(format!("{running} running pods"));
    }
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns);
    for name in claim_names {
        if claims
            .get_opt(name)
            .await
            .map_err(api_err("read claim", ns))?
            .is_some_and(|c| {
                !c.metadata
                    .labels
                    .unwrap_or_default()
                    .contains_key(LABEL_RUN)
            })
        {
            out.push(format!("PersistentVolumeClaim/{name}"));
        }
    }
    Ok(out)
}

fn resource_of(obj: &Value) -> Result<(ApiResource, String)> {
    let kind = obj["kind"].as_str().unwrap_or_default();
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let k = KINDS
        .iter()
        .find(|k| k.kind == kind)
        .ok_or_else(|| ClusterError::BadObject {
            kind: kind.into(),
            name: name.clone(),
            message: "dr does not apply this kind".into(),
        })?;
    if name.is_empty() {
        return Err(ClusterError::BadObject {
            kind: kind.into(),
            name,
            message: "metadata.name is missing".into(),
        });
    }
    let gvk = GroupVersionKind::gvk(k.group(), k.version(), k.kind);
    Ok((ApiResource::from_gvk_with_plural(&gvk, k.plural), name))
}

/// Server-side applies objects (already placed in `ns`) in order, as dr's
/// field manager, forcing conflicts: the recovery point is the truth.
pub async fn apply(client: &Client, ns: &str, objects: &[Value]) -> Result<Vec<String>> {
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let mut applied = Vec::new();
    for obj in objects {
        let (ar, name) = resource_of(obj)?;
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
        api.patch(&name, &pp, &Patch::Apply(obj))
            .await
            .map_err(api_err("server-side apply", ns))?;
        applied.push(format!("{}/{name}", ar.kind));
    }
    Ok(applied)
}

/// Which of the named Secrets exist in `ns`.
pub async fn missing_secrets(client: &Client, ns: &str, names: &[String]) -> Result<Vec<String>> {
    let api = Api::<Secret>::namespaced(client.clone(), ns);
    let mut missing = Vec::new();
    for n in names {
        if api
            .get_opt(n)
            .await
            .map_err(api_err("read secret", ns))?
            .is_none()
        {
            missing.push(n.clone());
        }
    }
    Ok(missing)
}

/// Copies a Secret from one namespace to another (drills and restores into a
/// new namespace need the application's credentials). Values are never logged.
pub async fn copy_secret(client: &Client, from: &str, to: &str, name: &str) -> Result<bool> {
    let Some(s) = Api::<Secret>::namespaced(client.clone(), from)
        .get_opt(name)
        .await
        .map_err(api_err("read secret", from))?
    else {
        return Ok(false);
    };
    let copy = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(to.to_owned()),
            labels: s.metadata.labels.clone(),
            ..Default::default()
        },
        type_: s.type_.clone(),
        data: s.data.clone(),
        immutable: s.immutable,
        string_data: None,
    };
    match Api::<Secret>::namespaced(client.clone(), to)
        .create(&PostParams::default(), &copy)
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if is_status(&e, 409) => Ok(true),
        Err(e) => Err(api_err("create secret", to)(e)),
    }
}

/// The Longhorn volume behind a PV (its CSI driver and volume handle), if
/// the PV exists: `Some(None)` for a PV of another driver.
pub async fn pv_longhorn_volume(client: &Client, name: &str) -> Result<Option<Option<String>>> {
    let pv = Api::<PersistentVolume>::all(client.clone())
        .get_opt(name)
        .await
        .map_err(api_err("read PV", name))?;
    Ok(pv.map(|pv| {
        pv.spec
            .and_then(|s| s.csi)
            .filter(|c| c.driver == "driver.longhorn.io")
            .map(|c| c.volume_handle)
    }))
}

/// The bound volume of a claim, if it exists.
pub async fn claim_volume(client: &Client, ns: &str, name: &str) -> Result<Option<Option<String>>> {
    let c = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(api_err("read claim", ns))?;
    Ok(c.map(|c| c.spec.and_then(|s| s.volume_name)))
}

/// Deletes claims (for `--replace`) and waits until they are gone.
pub async fn delete_claims(
    client: &Client,
    ns: &str,
    names: &[String],
    wait: Duration,
) -> Result<()> {
    let api = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns);
    for n in names {
        match api.delete(n, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if is_status(&e, 404) => {}
            Err(e) => return Err(api_err("delete claim", ns)(e)),
        }
    }
    let start = Instant::now();
    loop {
        let mut left = Vec::new();
        for n in names {
            if api
                .get_opt(n)
                .await
                .map_err(api_err("read claim", ns))?
                .is_some()
            {
                left.push(n.clone());
            }
        }
        if left.is_empty() {
            return Ok(());
        }
        if start.elapsed() >= wait {
            return Err(ClusterError::Deadline {
                what: format!("the deletion of the replaced claims in {ns}"),
                waited: start.elapsed(),
                last: format!("still present: {}", left.join(", ")),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Creates a claim (already made to bind to its PV) unless it exists bound
/// to that PV; a claim bound elsewhere is an error.
pub async fn create_claim(client: &Client, ns: &str, claim: &Value) -> Result<()> {
    let name = claim["metadata"]["name"].as_str().unwrap_or_default();
    let want = claim["spec"]["volumeName"].as_str().unwrap_or_default();
    if let Some(existing) = claim_volume(client, ns, name).await? {
        if existing.as_deref() == Some(want) {
            return Ok(());
        }
        return Err(ClusterError::BadObject {
            kind: "PersistentVolumeClaim".into(),
            name: name.into(),
            message: format!(
                "it already exists in {ns}, bound to {} instead of {want}",
                existing.unwrap_or_else(|| "nothing".into())
            ),
        });
    }
    let pvc: PersistentVolumeClaim =
        serde_json::from_value(claim.clone()).map_err(|e| ClusterError::BadObject {
            kind: "PersistentVolumeClaim".into(),
            name: name.into(),
            message: e.to_string(),
        })?;
    match Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &pvc)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, 409) => Ok(()),
        Err(e) => Err(api_err("create claim", ns)(e)),
    }
}

/// Waits until every named claim is Bound.
pub async fn wait_bound(client: &Client, ns: &str, names: &[String], wait: Duration) -> Result<()> {
    let api = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns);
    let start = Instant::now();
    loop {
        let mut pending = Vec::new();
        for n in names {
            let claim = api.get_opt(n).await.map_err(api_err("read claim", ns))?;
            let phase = claim
                .as_ref()
                .and_then(|c| c.status.as_ref().and_then(|s| s.phase.clone()))
                .unwrap_or_else(|| "absent".into());
            if phase != "Bound" {
                // Say what the PV looks like: the usual reason a claim stays Pending.
                let pv_name = claim.and_then(|c| c.spec.and_then(|s| s.volume_name));
                let pv = match &pv_name {
                    Some(p) => Api::<PersistentVolume>::all(client.clone())
                        .get_opt(p)
                        .await
                        .map_err(api_err("read volume", ns))?
                        .map(|pv| {
                            let spec = pv.spec.unwrap_or_default();
                            format!(
                                "PV {p} {} class {:?} capacity {:?} modes {:?} claim {:?}",
                                pv.status.and_then(|s| s.phase).unwrap_or_default(),
                                spec.storage_class_name.unwrap_or_default(),
                                spec.capacity
                                    .unwrap_or_default()
                                    .get("storage")
                                    .map(|q| q.0.clone()),
                                spec.access_modes.unwrap_or_default(),
                                spec.claim_ref.and_then(|c| c.name),
                            )
                        })
                        .unwrap_or_else(|| format!("PV {p} absent")),
                    None => "no PV named".into(),
                };
                pending.push(format!("{n} {phase} ({pv})"));
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        if start.elapsed() >= wait {
            return Err(ClusterError::Deadline {
                what: format!("claims in {ns} to bind"),
                waited: start.elapsed(),
                last: pending.join(", "),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Sets the replicas of workloads (merge patch, so dr's applied manifest stays as applied).
pub async fn scale(client: &Client, ns: &str, workloads: &[Workload]) -> Result<()> {
    let pp = PatchParams::default();
    for w in workloads {
        let patch = Patch::Merge(json!({"spec": {"replicas": w.replicas}}));
        let r = match w.kind.as_str() {
            "Deployment" => Api::<Deployment>::namespaced(client.clone(), ns)
                .patch(&w.name, &pp, &patch)
                .await
                .map(|_| ()),
            _ => Api::<StatefulSet>::namespaced(client.clone(), ns)
                .patch(&w.name, &pp, &patch)
                .await
                .map(|_| ()),
        };
        r.map_err(api_err("scale", ns))?;
    }
    Ok(())
}

/// A workload's (ready replicas, generation, observed generation); an absent
/// one reads as not ready.
async fn readiness(client: &Client, ns: &str, w: &Workload) -> Result<(i32, i64, i64)> {
    // Both kinds report the same three figures under the same names.
    let obj = match w.kind.as_str() {
        "Deployment" => Api::<Deployment>::namespaced(client.clone(), ns)
            .get_opt(&w.name)
            .await
            .map(|o| o.map(|d| serde_json::to_value(d).unwrap_or_default())),
        _ => Api::<StatefulSet>::namespaced(client.clone(), ns)
            .get_opt(&w.name)
            .await
            .map(|o| o.map(|s| serde_json::to_value(s).unwrap_or_default())),
    }
    .map_err(api_err("read workload", ns))?;
    Ok(match obj {
        Some(o) => (
            o["status"]["readyReplicas"].as_i64().unwrap_or(0) as i32,
            o["metadata"]["generation"].as_i64().unwrap_or(0),
            o["status"]["observedGeneration"].as_i64().unwrap_or(0),
        ),
        None => (0, 1, 0),
    })
}

/// Waits until every workload has all its replicas ready.
pub async fn wait_ready(
    client: &Client,
    ns: &str,
    workloads: &[Workload],
    wait: Duration,
) -> Result<()> {
    let start = Instant::now();
    loop {
        let mut waiting = Vec::new();
        for w in workloads {
            let (ready, generation, observed) = readiness(client, ns, w).await?;
            if ready < w.replicas || observed < generation {
                waiting.push(format!(
                    "{}/{} {ready}/{} ready",
                    w.kind, w.name, w.replicas
                ));
            }
        }
        if waiting.is_empty() {
            return Ok(());
        }
        if start.elapsed() >= wait {
            return Err(ClusterError::Deadline {
                what: format!("workloads in {ns} to be Ready"),
                waited: start.elapsed(),
                last: waiting.join(", "),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Runs a check Job (or adopts the one a previous attempt made) and waits
/// for it to succeed.
pub async fn run_job(
    client: &Client,
    ns: &str,
    name: &str,
    image: &str,
    command: &[String],
    labels: &BTreeMap<String, String>,
    wait: Duration,
) -> Result<()> {
    let api = Api::<Job>::namespaced(client.clone(), ns);
    if api
        .get_opt(name)
        .await
        .map_err(api_err("read job", ns))?
        .is_none()
    {
        let job: Job = serde_json::from_value(json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "backoffLimit": 0,
                "activeDeadlineSeconds": wait.as_secs().max(1),
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "check", "image": image, "command": command}],
                    },
                },
            },
        }))
        .map_err(|e| ClusterError::BadObject {
            kind: "Job".into(),
            name: name.into(),
            message: e.to_string(),
        })?;
        match api.create(&PostParams::default(), &job).await {
            Ok(_) => {}
            Err(e) if is_status(&e, 409) => {}
            Err(e) => return Err(api_err("create job", ns)(e)),
        }
    }
    let start = Instant::now();
    loop {
        let j = api.get(name).await.map_err(api_err("read job", ns))?;
        let st = j.status.unwrap_or_default();
        for c in st.conditions.unwrap_or_default() {
            if c.status != "True" {
                continue;
            }
            match c.type_.as_str() {
                "Complete" => return Ok(()),
                "Failed" => {
                    return Err(ClusterError::JobFailed {
                        name: name.into(),
                        message: format!(
                            "{}: {}",
                            c.reason.unwrap_or_default(),
                            c.message.unwrap_or_default()
                        ),
                    });
                }
                _ => {}
            }
        }
        if start.elapsed() >= wait {
            return Err(ClusterError::Deadline {
                what: format!("check job {name} to complete"),
                waited: start.elapsed(),
                last: format!(
                    "active {}, succeeded {}, failed {}",
                    st.active.unwrap_or(0),
                    st.succeeded.unwrap_or(0),
                    st.failed.unwrap_or(0)
                ),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}
