//! The Kubernetes side, as Longhorn's CSI driver and controllers would do it:
//! the `longhorn` StorageClass, a provisioner that gives each PVC of that class
//! an emulated volume and a bound PV, cleanup of released PVs, `pvCreate` /
//! `pvcCreate` for restored volumes, and `kubernetesStatus` refreshed from the
//! cluster.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt as _, reflector, watcher};
use serde_json::json;
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::api::{ApiError, PvInput, PvcInput, create_plain_volume, parse_quantity};
use crate::render::rfc3339;
use crate::state::{BLOCK, Shared, State, VolState, WorkloadStatus};
use crate::worker;

/// The CSI driver name Longhorn registers.
pub const DRIVER: &str = "driver.longhorn.io";
/// The StorageClass the provisioner serves.
pub const STORAGE_CLASS: &str = "longhorn";
/// A class of the same provisioner whose volumes are formatted xfs: the CSI
/// external-provisioner copies the class's `csi.storage.k8s.io/fstype`
/// parameter into the PV's `spec.csi.fsType`, which Longhorn's node plugin
/// formats and mounts with (csi/node_server.go `NodeStageVolume`).
pub const XFS_STORAGE_CLASS: &str = "longhorn-xfs";
/// Longhorn's `default-longhorn-static-storage-class` (pvCreate default).
pub const STATIC_STORAGE_CLASS: &str = "longhorn-static";

/// A failed Kubernetes-side operation.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("Kubernetes {op} {name} failed: {source}")]
    Kube {
        op: &'static str,
        name: String,
        source: kube::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

fn kerr(op: &'static str, name: &str) -> impl FnOnce(kube::Error) -> ClusterError {
    let name = name.to_owned();
    move |source| ClusterError::Kube { op, name, source }
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

fn to_api(e: ClusterError) -> ApiError {
    ApiError::Internal(e.to_string())
}

/// Creates the StorageClass and starts the provisioner, the PV reclaimer and
/// the status refresher.
pub async fn start(sh: &Arc<Shared>, client: kube::Client) -> Result<(), ClusterError> {
    ensure_storage_class(&client).await?;
    let (sh1, c1) = (sh.clone(), client.clone());
    sh.spawn(async move { run_provisioner(sh1, c1).await });
    let (sh2, c2) = (sh.clone(), client.clone());
    sh.spawn(async move { run_reclaimer(sh2, c2).await });
    let sh3 = sh.clone();
    sh.spawn(async move { run_status_refresh(sh3, client).await });
    Ok(())
}

async fn ensure_storage_class(client: &kube::Client) -> Result<(), ClusterError> {
    for (name, fs_type) in [(STORAGE_CLASS, "ext4"), (XFS_STORAGE_CLASS, "xfs")] {
        let sc: StorageClass = serde_json::from_value(json!({
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": { "name": name },
            "provisioner": DRIVER,
            "volumeBindingMode": "Immediate",
            "reclaimPolicy": "Delete",
            "allowVolumeExpansion": true,
            "parameters": {
                "numberOfReplicas": "3",
                "staleReplicaTimeout": "30",
                "csi.storage.k8s.io/fstype": fs_type,
            },
        }))
        .map_err(|e| ClusterError::Invalid(format!("StorageClass manifest: {e}")))?;
        match Api::<StorageClass>::all(client.clone())
            .create(&PostParams::default(), &sc)
            .await
        {
            Ok(_) => info!("created StorageClass {name}"),
            Err(e) if is_conflict(&e) => {}
            Err(e) => return Err(kerr("create StorageClass", name)(e)),
        }
    }
    Ok(())
}

fn access_modes(mode: &str) -> Vec<&'static str> {
    match mode {
        "rwx" => vec!["ReadWriteMany"],
        "rwop" => vec!["ReadWriteOncePod"],
        _ => vec!["ReadWriteOnce"],
    }
}

#[allow(clippy::too_many_arguments)]
fn pv_manifest(
    pv: &str,
    volume: &str,
    size: u64,
    modes: serde_json::Value,
    reclaim: &str,
    sc: &str,
    fs_type: &str,
    claim: Option<serde_json::Value>,
) -> Result<PersistentVolume, ClusterError> {
    let mut spec = json!({
        "capacity": { "storage": size.to_string() },
        "accessModes": modes,
        "persistentVolumeReclaimPolicy": reclaim,
        "storageClassName": sc,
        "volumeMode": "Filesystem",
        "csi": {
            "driver": DRIVER,
            "volumeHandle": volume,
            "fsType": fs_type,
            "volumeAttributes": { "numberOfReplicas": "3", "staleReplicaTimeout": "30" },
        },
    });
    if let Some(c) = claim {
        spec["claimRef"] = c;
    }
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": pv,
            "annotations": { "pv.kubernetes.io/provisioned-by": DRIVER },
        },
        "spec": spec,
    }))
    .map_err(|e| ClusterError::Invalid(format!("PV manifest: {e}")))
}

/// longhorn-manager util/util.go `MinimalVolumeSize` (10 MiB): CSI
/// `CreateVolume` enlarges smaller requests to it.
pub const MINIMAL_VOLUME_SIZE: u64 = 10 << 20;
/// util/util.go `MinimalVolumeSizeXFS` (300 MiB, longhorn/longhorn#8488):
/// mkfs.xfs fails on smaller devices.
pub const MINIMAL_VOLUME_SIZE_XFS: u64 = 300 << 20;

/// The size CSI `CreateVolume` gives a claim's volume (longhorn-manager
/// csi/controller_server.go `(*ControllerServer).CreateVolume`): at least
/// `MinimalVolumeSize`, rounded up to 2 MiB (`util.RoundUpSize`).
pub fn csi_volume_size(requested: u64) -> u64 {
    requested.max(MINIMAL_VOLUME_SIZE).div_ceil(BLOCK) * BLOCK
}

/// Why CSI `CreateVolume` refuses a new volume of `size` bytes to be
/// formatted `fs_type`, if it does (csi/controller_server.go `CreateVolume`:
/// a new xfs volume below `MinimalVolumeSizeXFS`, with no snapshot or
/// volume to copy from, which may hold a filesystem already). The error is
/// a plain Go error: gRPC sends it with code Unknown.
pub fn csi_refusal(fs_type: &str, size: u64, has_source: bool) -> Option<String> {
    (fs_type == "xfs" && size < MINIMAL_VOLUME_SIZE_XFS && !has_source).then(|| {
        format!(
            "XFS filesystems with size {size}, smaller than {MINIMAL_VOLUME_SIZE_XFS}, are not supported"
        )
    })
}

/// What the provisioner remembers between claims.
#[derive(Default)]
struct Provisioner {
    /// PVs it created (by name): a claim whose PV exists is only waiting for
    /// kube-controller-manager's binder, and costs no API call.
    created: std::collections::HashSet<String>,
    /// Claims (by uid) refused with an event already.
    refused: std::collections::HashSet<String>,
}

/// The external-provisioner's event on a claim it could not provision
/// (sig-storage-lib-external-provisioner controller.go
/// `provisionClaimOperation`: Warning `ProvisioningFailed`, "failed to
/// provision volume with StorageClass <class>: <the CSI error>").
async fn provisioning_failed(
    client: &kube::Client,
    pvc: &PersistentVolumeClaim,
    class: &str,
    message: &str,
) -> Result<(), ClusterError> {
    use k8s_openapi::api::core::v1::Event;
    let ns = pvc.metadata.namespace.clone().unwrap_or_default();
    let name = pvc.metadata.name.clone().unwrap_or_default();
    let now = Utc::now();
    let event: Event = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": { "generateName": format!("{name}."), "namespace": ns },
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "namespace": ns,
            "name": name,
            "uid": pvc.metadata.uid,
            "resourceVersion": pvc.metadata.resource_version,
        },
        "reason": "ProvisioningFailed",
        "type": "Warning",
        "message": format!(
            "failed to provision volume with StorageClass {class:?}: rpc error: code = Unknown desc = {message}"
        ),
        "source": { "component": format!("{DRIVER}_csi-provisioner-emulated") },
        "firstTimestamp": rfc3339(now),
        "lastTimestamp": rfc3339(now),
        "count": 1,
    }))
    .map_err(|e| ClusterError::Invalid(format!("Event manifest: {e}")))?;
    Api::<Event>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &event)
        .await
        .map_err(kerr("create Event", &name))?;
    Ok(())
}

/// Gives a pending PVC of class `longhorn` a volume and a PV bound to it.
async fn provision(
    sh: &Arc<Shared>,
    client: &kube::Client,
    pvc: &PersistentVolumeClaim,
    memo: &mut Provisioner,
) -> Result<(), ClusterError> {
    let Some(spec) = pvc.spec.as_ref() else {
        return Ok(());
    };
    let class = spec.storage_class_name.as_deref();
    let fs_type = match class {
        Some(STORAGE_CLASS) => "ext4",
        Some(XFS_STORAGE_CLASS) => "xfs",
        _ => return Ok(()),
    };
    if spec.volume_name.as_deref().is_some_and(|v| !v.is_empty())
        || pvc.metadata.deletion_timestamp.is_some()
    {
        return Ok(());
    }
    let (Some(uid), Some(ns), Some(name)) = (
        pvc.metadata.uid.as_deref(),
        pvc.metadata.namespace.as_deref(),
        pvc.metadata.name.as_deref(),
    ) else {
        return Ok(());
    };
    let served = sh
        .lock()
        .provision_namespaces
        .as_ref()
        .is_none_or(|set| set.contains(ns));
    if !served {
        return Ok(());
    }
    let volume = format!("pvc-{uid}");
    if memo.created.contains(&volume) {
        return Ok(());
    }
    let requested = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| q.0.clone())
        .unwrap_or_default();
    let bytes = parse_quantity(&requested).ok_or_else(|| {
        ClusterError::Invalid(format!("PVC {ns}/{name}: unsupported size {requested:?}"))
    })?;
    let size = csi_volume_size(bytes);
    let has_source = spec.data_source.is_some() || spec.data_source_ref.is_some();
    if let Some(why) = csi_refusal(fs_type, size, has_source) {
        // The claim stays Pending; the provisioner says why, once.
        if memo.refused.insert(uid.to_owned()) {
            info!(pvc = %format!("{ns}/{name}"), %why, "provisioning refused");
            provisioning_failed(client, pvc, class.unwrap_or_default(), &why).await?;
        }
        return Ok(());
    }
    let exists = sh.lock().volumes.contains_key(&volume);
    if !exists {
        create_plain_volume(sh, &volume, size)
            .map_err(|e| ClusterError::Invalid(format!("creating volume {volume}: {e}")))?;
        let rwx = spec
            .access_modes
            .as_ref()
            .is_some_and(|m| m.iter().any(|a| a == "ReadWriteMany"));
        if let Some(v) = sh.lock().volumes.get_mut(&volume).filter(|_| rwx) {
            v.access_mode = "rwx".into();
        }
        info!(%volume, pvc = %format!("{ns}/{name}"), size, "provisioned a volume");
    }
    let modes = json!(
        spec.access_modes
            .clone()
            .unwrap_or_else(|| vec!["ReadWriteOnce".into()])
    );
    let claim = json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "namespace": ns,
        "name": name,
        "uid": uid,
    });
    let pv = pv_manifest(
        &volume,
        &volume,
        size,
        modes,
        "Delete",
        class.unwrap_or(STORAGE_CLASS),
        fs_type,
        Some(claim),
    )?;
    match Api::<PersistentVolume>::all(client.clone())
        .create(&PostParams::default(), &pv)
        .await
    {
        Ok(_) => {
            if let Some(v) = sh.lock().volumes.get_mut(&volume) {
                v.kubernetes_status.pv_name = volume.clone();
            }
            memo.created.insert(volume);
            Ok(())
        }
        Err(e) if is_conflict(&e) => {
            memo.created.insert(volume);
            Ok(())
        }
        Err(e) => Err(kerr("create PersistentVolume", &volume)(e)),
    }
}

/// Watches PVCs, with a periodic pass over the watch's store so that a PVC
/// skipped earlier (a failure, or a namespace added to the served set later)
/// is picked up. Bound claims, and claims whose PV it made (waiting for
/// kube-controller-manager's binder), cost nothing on that pass: it once
/// asked for every such PV again (409 each), up to a thousand creations
/// every two seconds, back to back, that held the watch's events up and
/// took the API server from the binder.
async fn run_provisioner(sh: Arc<Shared>, client: kube::Client) {
    let api = Api::<PersistentVolumeClaim>::all(client.clone());
    let (claims, writer) = reflector::store::<PersistentVolumeClaim>();
    let mut stream = reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .applied_objects()
        .boxed();
    let mut resync = tokio::time::interval(Duration::from_secs(2));
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut memo = Provisioner::default();
    loop {
        tokio::select! {
            item = stream.next() => match item {
                Some(Ok(pvc)) => {
                    if let Err(e) = provision(&sh, &client, &pvc, &mut memo).await {
                        warn!(error = %e, "provisioning failed");
                    }
                }
                Some(Err(e)) => debug!(error = %e, "PVC watch error (retrying)"),
                None => return,
            },
            _ = resync.tick() => {
                for pvc in claims.state() {
                    if let Err(e) = provision(&sh, &client, &pvc, &mut memo).await {
                        warn!(error = %e, "provisioning failed");
                    }
                }
            }
        }
    }
}

/// Released PVs of this driver with reclaim policy Delete: the volume and the
/// PV are deleted, as the external provisioner does.
async fn run_reclaimer(sh: Arc<Shared>, client: kube::Client) {
    let api = Api::<PersistentVolume>::all(client.clone());
    let mut stream = watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(item) = stream.next().await {
        let pv = match item {
            Ok(pv) => pv,
            Err(e) => {
                debug!(error = %e, "PV watch error (retrying)");
                continue;
            }
        };
        let Some(spec) = pv.spec.as_ref() else {
            continue;
        };
        let Some(csi) = spec.csi.as_ref().filter(|c| c.driver == DRIVER) else {
            continue;
        };
        let released = pv
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Released");
        if !released || spec.persistent_volume_reclaim_policy.as_deref() != Some("Delete") {
            continue;
        }
        let name = pv.metadata.name.clone().unwrap_or_default();
        info!(pv = %name, volume = %csi.volume_handle, "PV released: deleting it and its volume");
        worker::start_volume_deletion(&sh, &csi.volume_handle);
        if let Err(e) = api.delete(&name, &DeleteParams::default()).await
            && !matches!(&e, kube::Error::Api(s) if s.code == 404)
        {
            warn!(pv = %name, error = %e, "deleting a released PV failed");
        }
    }
}

/// Keeps `store` in step with the cluster (a watch, as Longhorn's informers
/// do) and pokes `changed` on every event.
fn spawn_reflector<K>(
    sh: &Arc<Shared>,
    api: Api<K>,
    writer: reflector::store::Writer<K>,
    changed: Arc<Notify>,
) where
    K: kube::Resource
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    sh.spawn(async move {
        let stream = reflector(writer, watcher(api, watcher::Config::default()))
            .default_backoff()
            .boxed();
        stream
            .for_each(|event| {
                if let Err(e) = event {
                    debug!(error = %e, "watch error (retrying)");
                } else {
                    changed.notify_one();
                }
                futures::future::ready(())
            })
            .await;
    });
}

/// `kubernetesStatus` of every volume, from PVs, PVCs and pods: watched, not
/// listed, so a thousand claims cost nothing while nothing changes.
async fn run_status_refresh(sh: Arc<Shared>, client: kube::Client) {
    let changed = Arc::new(Notify::new());
    let (pvs, pv_writer) = reflector::store::<PersistentVolume>();
    let (pvcs, pvc_writer) = reflector::store::<PersistentVolumeClaim>();
    let (pods, pod_writer) = reflector::store::<Pod>();
    spawn_reflector(&sh, Api::all(client.clone()), pv_writer, changed.clone());
    spawn_reflector(&sh, Api::all(client.clone()), pvc_writer, changed.clone());
    spawn_reflector(&sh, Api::all(client), pod_writer, changed.clone());
    for ready in [
        pvs.wait_until_ready().await,
        pvcs.wait_until_ready().await,
        pods.wait_until_ready().await,
    ] {
        if ready.is_err() {
            return;
        }
    }
    loop {
        // On a change (a burst is taken as one), and every half second for
        // volumes made through the API next to objects that already exist.
        tokio::select! {
            _ = changed.notified() => tokio::time::sleep(Duration::from_millis(20)).await,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        if sh.lock().volumes.is_empty() {
            continue;
        }
        let (pvs, pvcs, pods) = (pvs.state(), pvcs.state(), pods.state());
        let mut st = sh.lock();
        let changed = refresh(&mut st, &pvs, &pvcs, &pods);
        for name in changed {
            worker::kick(&sh, &mut st, &name);
        }
    }
}

/// Updates `kubernetesStatus` and the CSI attachment ticket of every volume;
/// returns the volumes whose tickets changed (to be attached or detached).
fn refresh(
    st: &mut State,
    pvs: &[Arc<PersistentVolume>],
    pvcs: &[Arc<PersistentVolumeClaim>],
    pods: &[Arc<Pod>],
) -> Vec<String> {
    let now = rfc3339(Utc::now());
    let mut changed = Vec::new();
    let by_handle: HashMap<&str, &PersistentVolume> = pvs
        .iter()
        .filter_map(|pv| {
            let csi = pv.spec.as_ref()?.csi.as_ref()?;
            (csi.driver == DRIVER).then_some((csi.volume_handle.as_str(), &**pv))
        })
        .collect();
    // Claims by (namespace, name), and pods by the claims they mount.
    let claim_key = |ns: Option<&str>, name: Option<&str>| {
        (
            ns.unwrap_or_default().to_owned(),
            name.unwrap_or_default().to_owned(),
        )
    };
    let claims: HashMap<(String, String), &PersistentVolumeClaim> = pvcs
        .iter()
        .map(|p| {
            (
                claim_key(p.metadata.namespace.as_deref(), p.metadata.name.as_deref()),
                &**p,
            )
        })
        .collect();
    let mut mounting: HashMap<(String, String), Vec<&Pod>> = HashMap::new();
    for p in pods {
        let ns = p.metadata.namespace.as_deref();
        let mounted = p
            .spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .filter_map(|vol| vol.persistent_volume_claim.as_ref());
        for c in mounted {
            let users = mounting
                .entry(claim_key(ns, Some(c.claim_name.as_str())))
                .or_default();
            // A pod naming the same claim twice is one user.
            if !users.iter().any(|u| std::ptr::eq(*u, &**p)) {
                users.push(&**p);
            }
        }
    }
    // The watch's store has no order; the list had one (by name).
    for users in mounting.values_mut() {
        users.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    }
    let instant = std::time::Instant::now();
    for v in st.volumes.values_mut() {
        let old = v.kubernetes_status.clone();
        let mut ks = old.clone();
        // A PV from pvCreate shows only once the PV controller got to it.
        let pv_hidden = v.pv_pending.as_ref().is_some_and(|(_, at)| instant < *at);
        match by_handle.get(v.name.as_str()) {
            _ if pv_hidden => {}
            None => {
                // pvCreate may have just made it; keep the name until the PV shows up.
                if ks.pv_status.is_empty() && !ks.pv_name.is_empty() {
                    // created by us moments ago: leave as is
                } else {
                    ks.pv_name.clear();
                    ks.pv_status.clear();
                }
            }
            Some(pv) => {
                ks.pv_name = pv.metadata.name.clone().unwrap_or_default();
                ks.pv_status = pv
                    .status
                    .as_ref()
                    .and_then(|s| s.phase.clone())
                    .unwrap_or_default();
                let claim = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
                let bound_pvc = claim
                    .and_then(|c| claims.get(&claim_key(c.namespace.as_deref(), c.name.as_deref())))
                    .filter(|p| {
                        p.spec.as_ref().and_then(|s| s.volume_name.as_deref())
                            == pv.metadata.name.as_deref()
                    });
                if let Some(pvc) = bound_pvc {
                    ks.namespace = pvc.metadata.namespace.clone().unwrap_or_default();
                    ks.pvc_name = pvc.metadata.name.clone().unwrap_or_default();
                    ks.last_pvc_ref_at.clear();
                }
            }
        }
        let pvc_key = claim_key(Some(ks.namespace.as_str()), Some(ks.pvc_name.as_str()));
        let pvc_live = by_handle.contains_key(v.name.as_str())
            && !ks.pvc_name.is_empty()
            && claims.contains_key(&pvc_key);
        if !pvc_live && !ks.pvc_name.is_empty() && ks.last_pvc_ref_at.is_empty() {
            ks.last_pvc_ref_at = now.clone();
        }
        let users: Vec<&Pod> = if pvc_live {
            mounting.get(&pvc_key).cloned().unwrap_or_default()
        } else {
            Vec::new()
        };
        // The CSI attacher attaches the volume to the node of a live pod using it.
        let csi_node = users
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| {
                !p.status
                    .as_ref()
                    .and_then(|s| s.phase.as_deref())
                    .is_some_and(|ph| ph == "Succeeded" || ph == "Failed")
            })
            .find_map(|p| p.spec.as_ref().and_then(|s| s.node_name.clone()));
        let ticket = format!("csi-{}", v.name);
        match csi_node {
            Some(node) if !v.restore_required && !v.faulted && v.state != VolState::Deleting => {
                if let std::collections::btree_map::Entry::Vacant(e) = v.tickets.entry(ticket) {
                    e.insert(crate::state::Ticket {
                        kind: "csi-attacher".into(),
                        node,
                        disable_frontend: false,
                        any_frontend: false,
                    });
                    changed.push(v.name.clone());
                }
            }
            _ => {
                if v.tickets.remove(&ticket).is_some() {
                    changed.push(v.name.clone());
                }
            }
        }
        let workloads: Vec<WorkloadStatus> = if pvc_live {
            users
                .iter()
                .map(|p| {
                    let owner = p
                        .metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .find(|o| o.controller == Some(true));
                    WorkloadStatus {
                        pod_name: p.metadata.name.clone().unwrap_or_default(),
                        pod_status: p
                            .status
                            .as_ref()
                            .and_then(|s| s.phase.clone())
                            .unwrap_or_default(),
                        workload_name: owner.map(|o| o.name.clone()).unwrap_or_default(),
                        workload_type: owner.map(|o| o.kind.clone()).unwrap_or_default(),
                    }
                })
                .collect()
        } else {
            Vec::new()
        };
        if workloads.is_empty() {
            if ks.workloads_status.as_ref().is_some_and(|w| !w.is_empty())
                && ks.last_pod_ref_at.is_empty()
            {
                ks.last_pod_ref_at = now.clone();
            }
        } else {
            ks.workloads_status = Some(workloads);
            ks.last_pod_ref_at.clear();
        }
        if ks != old {
            v.kubernetes_status = ks;
        }
    }
    changed
}

fn kube_client(sh: &Shared) -> Result<kube::Client, ApiError> {
    sh.kube.clone().ok_or_else(|| {
        ApiError::Internal("no Kubernetes cluster is configured for the Longhorn emulator".into())
    })
}

/// `pvCreate`: a PV (static class, reclaim Retain) for an existing volume.
///
/// longhorn-manager manager/kubernetes.go (*VolumeManager).PVCreate, errors
/// wrapped "unable to create PV for volume <v>": refused when the volume's
/// status already names a PV; the PV's creation fails (AlreadyExists) when
/// the object exists but the status does not show it yet. The status is set
/// later by controller/kubernetes_pv_controller.go syncKubernetesStatus:
/// here `Timings::pv_status_ms` after the PV is created.
pub async fn pv_create(sh: &Arc<Shared>, volume: &str, input: PvInput) -> Result<(), ApiError> {
    let client = kube_client(sh)?;
    let failed =
        |m: String| ApiError::Internal(format!("unable to create PV for volume {volume}: {m}"));
    let (size, mode) = {
        let st = sh.lock();
        let v = st.volumes.get(volume).ok_or_else(|| {
            ApiError::NotFound(format!("volumes.longhorn.io \"{volume}\" not found"))
        })?;
        if !v.kubernetes_status.pv_name.is_empty() {
            return Err(failed(format!(
                "volume already had PV {}",
                v.kubernetes_status.pv_name
            )));
        }
        (v.size, v.access_mode.clone())
    };
    // PVCreate refuses an xfs PV for a volume below MinimalVolumeSizeXFS,
    // restored or not.
    if input.fs_type == "xfs" && size < MINIMAL_VOLUME_SIZE_XFS {
        return Err(failed(format!(
            "XFS filesystems with size {size}, smaller than {MINIMAL_VOLUME_SIZE_XFS}, are not supported"
        )));
    }
    let pv_name = if input.pv_name.is_empty() {
        volume.to_owned()
    } else {
        input.pv_name
    };
    let fs_type = if input.fs_type.is_empty() {
        "ext4".to_owned()
    } else {
        input.fs_type
    };
    let sc = if input.storage_class_name.is_empty() {
        let st = sh.lock();
        st.backup_volumes
            .values()
            .find(|bv| bv.volume == volume)
            .map(|bv| bv.storage_class_name.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| STATIC_STORAGE_CLASS.to_owned())
    } else {
        input.storage_class_name
    };
    let pv = pv_manifest(
        &pv_name,
        volume,
        size,
        json!(access_modes(&mode)),
        "Retain",
        &sc,
        &fs_type,
        None,
    )
    .map_err(to_api)?;
    Api::<PersistentVolume>::all(client)
        .create(&PostParams::default(), &pv)
        .await
        .map_err(|e| match e {
            // The apiserver's AlreadyExists passes through unwrapped
            // (datastore CreatePersistentVolume).
            kube::Error::Api(s) if s.code == 409 => failed(s.message.clone()),
            e => failed(e.to_string()),
        })?;
    let delay = sh.timings().pv_status_ms;
    let at = std::time::Instant::now() + Duration::from_millis(delay);
    let uid = {
        let mut st = sh.lock();
        let Some(v) = st.volumes.get_mut(volume) else {
            return Ok(());
        };
        v.pv_pending = Some((pv_name.clone(), at));
        v.uid
    };
    let sh2 = sh.clone();
    let volume = volume.to_owned();
    sh.spawn(async move {
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let mut st = sh2.lock();
        if let Some(v) = st.volumes.get_mut(&volume).filter(|v| v.uid == uid) {
            v.pv_pending = None;
            if v.kubernetes_status.pv_name.is_empty() {
                // The phase follows from the watched PV (the refresh).
                v.kubernetes_status.pv_name = pv_name;
            }
        }
    });
    Ok(())
}

/// `pvcCreate`: a PVC bound to the volume's PV.
///
/// manager/kubernetes.go (*VolumeManager).PVCCreate, errors wrapped "unable
/// to create PVC for volume <v>": refused when the status names a live PVC;
/// polls the volume's status KubeStatusPollCount (5) times, one
/// KubeStatusPollInterval (1 s) apart, for a PV name with phase Available or
/// Released; clears the PV's claimRef; creates the PVC.
pub async fn pvc_create(sh: &Arc<Shared>, volume: &str, input: PvcInput) -> Result<(), ApiError> {
    let client = kube_client(sh)?;
    let failed =
        |m: String| ApiError::Internal(format!("unable to create PVC for volume {volume}: {m}"));
    let status = |sh: &Shared| -> Result<(u64, String, crate::state::KubeStatus), ApiError> {
        let st = sh.lock();
        let v = st.volumes.get(volume).ok_or_else(|| {
            ApiError::NotFound(format!("volumes.longhorn.io \"{volume}\" not found"))
        })?;
        Ok((v.size, v.access_mode.clone(), v.kubernetes_status.clone()))
    };
    let (size, mode, ks) = status(sh)?;
    if ks.last_pvc_ref_at.is_empty() && !ks.pvc_name.is_empty() {
        return Err(failed(format!("volume already had PVC {}", ks.pvc_name)));
    }
    let namespace = if input.namespace.is_empty() {
        "default".to_owned()
    } else {
        input.namespace
    };
    let pvc_name = if input.pvc_name.is_empty() {
        volume.to_owned()
    } else {
        input.pvc_name
    };
    let mut ks = ks;
    let mut found = false;
    for _ in 0..5 {
        ks = status(sh)?.2;
        if !ks.pv_name.is_empty() && (ks.pv_status == "Available" || ks.pv_status == "Released") {
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    if !found {
        return Err(failed(format!(
            "cannot found PV {} or the PV status {} is invalid for PVC creation",
            ks.pv_name, ks.pv_status
        )));
    }
    let pv_name = ks.pv_name.clone();
    let pvs = Api::<PersistentVolume>::all(client.clone());
    let pv = pvs.get(&pv_name).await.map_err(|e| failed(e.to_string()))?;
    if pv.spec.as_ref().is_some_and(|s| s.claim_ref.is_some()) {
        pvs.patch(
            &pv_name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "claimRef": null } })),
        )
        .await
        .map_err(|e| failed(e.to_string()))?;
    }
    let sc = pv
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone())
        .unwrap_or_default();
    let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": { "name": pvc_name, "namespace": namespace },
        "spec": {
            "accessModes": access_modes(&mode),
            "storageClassName": sc,
            "volumeName": pv_name,
            "resources": { "requests": { "storage": size.to_string() } },
        },
    }))
    .map_err(|e| ApiError::Internal(format!("PVC manifest: {e}")))?;
    Api::<PersistentVolumeClaim>::namespaced(client, &namespace)
        .create(&PostParams::default(), &pvc)
        .await
        .map_err(|e| match e {
            kube::Error::Api(s) => failed(s.message.clone()),
            e => failed(e.to_string()),
        })?;
    if let Some(v) = sh.lock().volumes.get_mut(volume) {
        v.kubernetes_status.namespace = namespace;
        v.kubernetes_status.pvc_name = pvc_name;
        v.kubernetes_status.last_pvc_ref_at.clear();
    }
    Ok(())
}
