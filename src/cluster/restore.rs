//! The Kubernetes side of a restore: the target namespace, what runs in it,
//! server-side apply of a bundle, claims bound to restored volumes, scaling,
//! readiness and check Jobs. Every wait has a deadline and says what it
//! last saw.

use super::ClusterError;
use crate::bundle::{self, Bundle, Resource, Workload};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    Namespace as K8sNamespace, PersistentVolume, PersistentVolumeClaim, Pod, Secret,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
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

fn resource_of(obj: &Value, resources: &[Resource]) -> Result<(ApiResource, bool, String)> {
    let kind = obj["kind"].as_str().unwrap_or_default();
    let api_version = obj["apiVersion"].as_str().unwrap_or_default();
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let r = bundle::find_resource(resources, api_version, kind).ok_or_else(|| {
        ClusterError::BadObject {
            kind: kind.into(),
            name: name.clone(),
            message: format!("the bundle does not record the resource of {api_version} {kind}"),
        }
    })?;
    if name.is_empty() {
        return Err(ClusterError::BadObject {
            kind: kind.into(),
            name,
            message: "metadata.name is missing".into(),
        });
    }
    let gvk = GroupVersionKind::gvk(r.group(), r.version(), &r.kind);
    Ok((
        ApiResource::from_gvk_with_plural(&gvk, &r.plural),
        r.namespaced,
        name,
    ))
}

/// What [`apply`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// `Kind/name` of every object applied, in order.
    pub objects: Vec<String>,
    /// What was applied otherwise than captured, and why (a Service whose
    /// nodePort is taken in this cluster).
    pub notes: Vec<String>,
}

/// Whether an apply failed because a Service's nodePort is taken (the API
/// server's validation: "provided port is already allocated", HTTP 422).
fn is_port_taken(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 422 && s.message.contains("port is already allocated"))
}

/// Server-side applies objects (already placed in `ns`) in order, as dr's
/// field manager, forcing conflicts: the recovery point is the truth. Each
/// object's resource comes from `resources` (the bundle's table), not from
/// discovery. A Service whose explicit nodePort is taken here (a copy beside
/// the original, e.g. a drill) is applied once more without nodePorts, and
/// [`Applied::notes`] says so.
pub async fn apply(
    client: &Client,
    ns: &str,
    objects: &[Value],
    resources: &[Resource],
) -> Result<Applied> {
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let mut out = Applied::default();
    for obj in objects {
        let (ar, namespaced, name) = resource_of(obj, resources)?;
        let api: Api<DynamicObject> = if namespaced {
            Api::namespaced_with(client.clone(), ns, &ar)
        } else {
            Api::all_with(client.clone(), &ar)
        };
        match api.patch(&name, &pp, &Patch::Apply(obj)).await {
            Ok(_) => {}
            Err(e) if ar.kind == "Service" && is_port_taken(&e) => {
                let Some(without) = bundle::without_node_ports(obj) else {
                    return Err(api_err("server-side apply", ns)(e));
                };
                api.patch(&name, &pp, &Patch::Apply(&without))
                    .await
                    .map_err(api_err("server-side apply", ns))?;
                out.notes.push(format!(
                    "Service/{name}: its nodePort is taken in this cluster, applied with ports the server chose"
                ));
            }
            Err(e) => return Err(api_err("server-side apply", ns)(e)),
        }
        out.objects.push(format!("{}/{name}", ar.kind));
    }
    Ok(out)
}

/// What [`ensure_cluster_objects`] found and did, as `Kind/name`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ClusterObjectsOutcome {
    /// Missing, so created from the bundle.
    pub created: Vec<String>,
    /// Present and as the bundle has them.
    pub present: Vec<String>,
    /// Present but different (left as they are): `Kind/name (fields)`.
    pub differing: Vec<String>,
}

impl ClusterObjectsOutcome {
    /// One line for a step's detail.
    pub fn summary(&self) -> String {
        let mut parts = vec![format!(
            "cluster objects: {} created, {} present",
            self.created.len(),
            self.present.len()
        )];
        if !self.created.is_empty() {
            parts.push(format!("created {}", self.created.join(", ")));
        }
        if !self.differing.is_empty() {
            parts.push(format!(
                "DIFFERING (left as they are) {}",
                self.differing.join(", ")
            ));
        }
        parts.join("; ")
    }
}

/// How long a created CRD may take to be Established.
pub const CRD_ESTABLISHED_WAIT: Duration = Duration::from_secs(60);

/// Creates the bundle's cluster-scoped objects that are missing (CRDs
/// first, each waited on until Established, then classes and RBAC), and
/// leaves those present as they are, reporting any whose fields differ from
/// the bundle's ([`bundle::differing_fields`]): they belong to the cluster,
/// other applications may depend on them, so a restore does not change them.
pub async fn ensure_cluster_objects(client: &Client, b: &Bundle) -> Result<ClusterObjectsOutcome> {
    let mut out = ClusterObjectsOutcome::default();
    for obj in &b.cluster_objects {
        let (ar, _, name) = resource_of(obj, &b.resources)?;
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        let id = format!("{}/{name}", ar.kind);
        match api
            .get_opt(&name)
            .await
            .map_err(api_err("read cluster object", "-"))?
        {
            Some(live) => {
                let live = serde_json::to_value(live).unwrap_or_default();
                let diff = bundle::differing_fields(obj, &live);
                if diff.is_empty() {
                    out.present.push(id);
                } else {
                    out.differing.push(format!("{id} ({})", diff.join(", ")));
                }
            }
            None => {
                let create: DynamicObject =
                    serde_json::from_value(obj.clone()).map_err(|e| ClusterError::BadObject {
                        kind: ar.kind.clone(),
                        name: name.clone(),
                        message: e.to_string(),
                    })?;
                match api.create(&PostParams::default(), &create).await {
                    Ok(_) => out.created.push(id),
                    // Made meanwhile (another restore): present.
                    Err(e) if is_status(&e, 409) => out.present.push(id),
                    Err(e) => return Err(api_err("create cluster object", "-")(e)),
                }
            }
        }
        if ar.kind == "CustomResourceDefinition" {
            // Present ones too: a resumed run may have created it a moment ago.
            wait_established(client, &name, CRD_ESTABLISHED_WAIT).await?;
        }
    }
    Ok(out)
}

/// Waits until a CRD's `Established` condition is True: only then does the
/// API server serve its custom resources (apiextensions-apiserver's
/// establishing controller; kube-runtime's `conditions::is_crd_established`
/// checks the same condition).
pub async fn wait_established(client: &Client, name: &str, wait: Duration) -> Result<()> {
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    let start = Instant::now();
    loop {
        let crd = api
            .get_opt(name)
            .await
            .map_err(api_err("read CustomResourceDefinition", "-"))?;
        let established = crd
            .as_ref()
            .and_then(|c| c.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            });
        if established {
            return Ok(());
        }
        if start.elapsed() >= wait {
            return Err(ClusterError::Deadline {
                what: format!("CustomResourceDefinition {name} to be Established"),
                waited: start.elapsed(),
                last: if crd.is_some() {
                    "not Established".into()
                } else {
                    "absent".into()
                },
            });
        }
        tokio::time::sleep(POLL).await;
    }
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

/// Reserves PV `pv` for claim `ns/claim` (a pre-bound `spec.claimRef`), so
/// that between the PV's creation and its claim's no other Pending claim of
/// the same class and a fitting size can bind it: Kubernetes' PV controller
/// binds an Available PV without a claimRef to any matching claim
/// (pkg/controller/volume/persistentvolume `findBestMatchForClaim`), and one
/// whose claimRef names a claim only to that claim. A PV already reserved for
/// that claim is left as it is; one bound or reserved for another is refused.
pub async fn reserve_pv(client: &Client, pv: &str, ns: &str, claim: &str) -> Result<()> {
    let api = Api::<PersistentVolume>::all(client.clone());
    let current = api.get(pv).await.map_err(api_err("read PV", pv))?;
    if let Some(r) = current.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
        if r.namespace.as_deref() == Some(ns) && r.name.as_deref() == Some(claim) {
            return Ok(());
        }
        return Err(ClusterError::BadObject {
            kind: "PersistentVolume".into(),
            name: pv.to_owned(),
            message: format!(
                "it is bound or reserved for claim {}/{}, not {ns}/{claim}; delete it or restore under another run",
                r.namespace.as_deref().unwrap_or(""),
                r.name.as_deref().unwrap_or("")
            ),
        });
    }
    let patch = json!({"spec": {"claimRef": {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": ns, "name": claim}}});
    api.patch(pv, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(api_err("reserve PV", pv))?;
    Ok(())
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

/// The API of a workload kind of [`bundle::workloads`] in `ns`.
fn workload_api(client: &Client, ns: &str, kind: &str) -> Api<DynamicObject> {
    let (group, plural) = match kind {
        "Deployment" => ("apps", "deployments"),
        "StatefulSet" => ("apps", "statefulsets"),
        "ReplicaSet" => ("apps", "replicasets"),
        "DaemonSet" => ("apps", "daemonsets"),
        _ => ("batch", "cronjobs"),
    };
    let gvk = GroupVersionKind::gvk(group, "v1", kind);
    Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::from_gvk_with_plural(&gvk, plural),
    )
}

/// Sets the replicas of workloads (merge patch, so dr's applied manifest
/// stays as applied); releases held DaemonSets and CronJobs
/// ([`bundle::release_patch`]).
pub async fn scale(client: &Client, ns: &str, workloads: &[Workload]) -> Result<()> {
    let pp = PatchParams::default();
    for w in workloads {
        let api = workload_api(client, ns, &w.kind);
        let patch = if bundle::SCALABLE.contains(&w.kind.as_str()) {
            json!({"spec": {"replicas": w.replicas}})
        } else {
            let live = api
                .get(&w.name)
                .await
                .map_err(api_err("read workload", ns))?;
            match bundle::release_patch(&serde_json::to_value(live).unwrap_or_default()) {
                Some(p) => p,
                None => continue,
            }
        };
        api.patch(&w.name, &pp, &Patch::Merge(patch))
            .await
            .map_err(api_err("scale", ns))?;
    }
    Ok(())
}

/// A workload's (ready, wanted, generation, observed generation); an absent
/// one reads as not ready. DaemonSets want what they schedule, CronJobs
/// nothing (their Jobs run on schedule).
async fn readiness(client: &Client, ns: &str, w: &Workload) -> Result<(i64, i64, i64, i64)> {
    let obj = workload_api(client, ns, &w.kind)
        .get_opt(&w.name)
        .await
        .map_err(api_err("read workload", ns))?
        .map(|o| serde_json::to_value(o).unwrap_or_default());
    let Some(o) = obj else {
        return Ok((0, 1, 1, 0));
    };
    let n = |p: &str| o.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    let (generation, observed) = (n("/metadata/generation"), n("/status/observedGeneration"));
    Ok(match w.kind.as_str() {
        "CronJob" => (0, 0, 0, 0),
        "DaemonSet" => (
            n("/status/numberReady"),
            n("/status/desiredNumberScheduled"),
            generation,
            observed,
        ),
        // Deployments, StatefulSets and ReplicaSets report the same figures.
        _ => (
            n("/status/readyReplicas"),
            i64::from(w.replicas),
            generation,
            observed,
        ),
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
            let (ready, want, generation, observed) = readiness(client, ns, w).await?;
            if ready < want || observed < generation {
                waiting.push(format!("{}/{} {ready}/{want} ready", w.kind, w.name));
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
