//! JSON of the API's resources, in Longhorn's shapes (reference sections 1-4):
//! `id`/`type`/`links`/`actions` envelopes, sizes as decimal strings, keys sorted
//! (serde_json maps are ordered), `null` where Longhorn has nil maps and slices.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::state::{BLOCK, Backup, BackupVolumeState, State, VolState, Volume};
use crate::store::Store;

/// RFC3339 UTC with seconds, as Longhorn prints it.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Go's `time.String()` form used by `volume.created`.
pub fn go_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S %z UTC").to_string()
}

/// A nil-able string map.
fn map_or_null(m: &BTreeMap<String, String>) -> Value {
    if m.is_empty() { Value::Null } else { json!(m) }
}

fn actions(base: &str, plural: &str, id: &str, names: &[&str]) -> Value {
    let m: serde_json::Map<String, Value> = names
        .iter()
        .map(|a| {
            (
                (*a).to_owned(),
                Value::String(format!("{base}/v1/{plural}/{id}?action={a}")),
            )
        })
        .collect();
    Value::Object(m)
}

/// Adds the envelope keys to `fields` and writes the result through
/// `kind`'s schema, as go-rancher api/api.go `ResourceToMap` does: a key
/// the schema does not declare is dropped.
fn resource(mut fields: Value, kind: &str, id: &str, self_link: String, actions: Value) -> Value {
    if let Value::Object(m) = &mut fields {
        if !id.is_empty() {
            m.insert("id".into(), json!(id));
        }
        m.insert("type".into(), json!(kind));
        m.insert("links".into(), json!({ "self": self_link }));
        m.insert("actions".into(), actions);
    }
    crate::schema::schemas().filter(kind, fields)
}

/// A collection envelope.
pub fn collection(resource_type: &str, self_url: &str, data: Vec<Value>) -> Value {
    json!({
        "type": "collection",
        "resourceType": resource_type,
        "links": { "self": self_url },
        "data": data,
    })
}

/// The error envelope.
pub fn error(status: u16, code: &str, message: &str, self_url: &str) -> Value {
    json!({
        "type": "error",
        "status": status,
        "code": code,
        "message": message,
        "detail": "",
        "links": { "self": self_url },
        "actions": {},
    })
}

fn condition(kind: &str, status: &str, reason: &str, message: &str, t: DateTime<Utc>) -> Value {
    json!({
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastProbeTime": "",
        "lastTransitionTime": rfc3339(t),
    })
}

pub fn volume(base: &str, st: &State, v: &Volume) -> Value {
    let backups: Vec<&Backup> = st
        .backups
        .values()
        .filter(|b| b.volume_name == v.name)
        .collect();
    volume_with(base, v, &backups, allow_degraded(st))
}

/// `allow-volume-creation-with-degraded-availability`.
pub fn allow_degraded(st: &State) -> bool {
    st.setting("allow-volume-creation-with-degraded-availability") == "true"
}

/// The actions api/model.go `toVolumeResource` offers: `attach` and
/// `detach` always; `salvage` alone when faulted; else the Snapshot CR
/// actions and `snapshotBackup`, and per state (detached, attaching,
/// attached) the lists below, in Longhorn's words.
pub fn volume_actions(v: &Volume) -> Vec<&'static str> {
    let mut names = vec!["attach", "detach"];
    if v.faulted {
        names.push("salvage");
        return names;
    }
    names.extend([
        "snapshotCRCreate",
        "snapshotCRGet",
        "snapshotCRList",
        "snapshotCRDelete",
        "snapshotBackup",
    ]);
    const RECURRING: [&str; 3] = ["recurringJobAdd", "recurringJobDelete", "recurringJobList"];
    match v.state {
        VolState::Detached => names.extend(
            [
                "activate",
                "expand",
                "cancelExpansion",
                "offlineReplicaRebuilding",
                "replicaRemove",
                "engineUpgrade",
                "pvCreate",
                "pvcCreate",
                "updateDataLocality",
                "updateAccessMode",
                "updateReplicaAutoBalance",
                "updateRebuildConcurrentSyncLimit",
                "updateUnmapMarkSnapChainRemoved",
                "updateSnapshotDataIntegrity",
                "updateSnapshotMaxCount",
                "updateSnapshotMaxSize",
                "updateReplicaRebuildingBandwidthLimit",
                "updateUblkQueueDepth",
                "updateUblkNumberOfQueue",
                "updateBackupCompressionMethod",
                "updateReplicaSoftAntiAffinity",
                "updateReplicaZoneSoftAntiAffinity",
                "updateReplicaDiskSoftAntiAffinity",
                "updateFreezeFilesystemForSnapshot",
                "updateBackupTargetName",
            ]
            .into_iter()
            .chain(RECURRING),
        ),
        VolState::Attaching => names.extend(
            ["cancelExpansion", "offlineReplicaRebuilding"]
                .into_iter()
                .chain(RECURRING),
        ),
        VolState::Attached => names.extend(
            [
                "activate",
                "expand",
                "snapshotPurge",
                "snapshotCreate",
                "snapshotList",
                "snapshotGet",
                "snapshotDelete",
                "snapshotRevert",
                "replicaRemove",
                "engineUpgrade",
                "updateReplicaCount",
                "updateDataLocality",
                "updateReplicaAutoBalance",
                "updateRebuildConcurrentSyncLimit",
                "updateUnmapMarkSnapChainRemoved",
                "updateSnapshotDataIntegrity",
                "updateSnapshotMaxCount",
                "updateSnapshotMaxSize",
                "updateReplicaRebuildingBandwidthLimit",
                "updateBackupCompressionMethod",
                "updateReplicaSoftAntiAffinity",
                "updateReplicaZoneSoftAntiAffinity",
                "updateReplicaDiskSoftAntiAffinity",
                "updateFreezeFilesystemForSnapshot",
                "updateBackupTargetName",
                "pvCreate",
                "pvcCreate",
                "cancelExpansion",
                "offlineReplicaRebuilding",
                "trimFilesystem",
            ]
            .into_iter()
            .chain(RECURRING),
        ),
        _ => {}
    }
    names
}

/// [`volume`] with the volume's backups found by the caller (a listing
/// indexes them once instead of scanning every backup per volume).
pub fn volume_with(base: &str, v: &Volume, backups: &[&Backup], allow_degraded: bool) -> Value {
    let names = volume_actions(v);
    let attached = v.state == VolState::Attached;
    let node = v.node();
    let (last_backup, last_backup_at) = crate::state::newest_completed(backups.iter().copied())
        .map(|b| (b.name.clone(), b.snapshot_created.clone()))
        .unwrap_or_default();
    let backup_status: Vec<Value> = backups
        .iter()
        .map(|b| {
            json!({
                "id": b.name,
                "links": null,
                "actions": null,
                "snapshot": b.status_snapshot,
                "progress": b.progress,
                "backupURL": if b.state == "Completed" { b.url.as_str() } else { "" },
                "error": b.error,
                "size": b.size.to_string(),
                "state": b.state,
                "replica": b.replica,
            })
        })
        .collect();
    let restore_status: Vec<Value> = v
        .restore_status
        .iter()
        .map(|r| {
            // api/model.go RestoreStatus embeds a zero client.Resource:
            // `id` (omitempty) absent, `links`/`actions` null.
            json!({
                "links": null,
                "actions": null,
                "replica": r.replica,
                "isRestoring": r.is_restoring,
                "lastRestored": r.last_restored,
                "progress": r.progress,
                "error": r.error,
                "filename": "",
                "state": r.state,
                "backupURL": r.backup_url,
            })
        })
        .collect();
    let (requested, last_restored) = match &v.restore {
        Some(r) => (
            r.backup.clone(),
            if r.done {
                r.backup.clone()
            } else {
                String::new()
            },
        ),
        None => (String::new(), String::new()),
    };
    let disable_frontend = v.tickets.values().any(|t| t.disable_frontend);
    let endpoint = if attached && !disable_frontend {
        format!("/dev/longhorn/{}", v.name)
    } else {
        String::new()
    };
    let image = "longhornio/longhorn-engine:v1.12.1";
    let (engine_image, engine_current) = match &v.engine_upgrading {
        Some((from, to)) => (to.as_str(), from.as_str()),
        None => (image, image),
    };
    let controllers = json!([{
        "name": v.engine_name(),
        "hostId": if attached { node.as_str() } else { "" },
        "address": if attached { "10.42.0.10" } else { "" },
        "running": attached,
        "image": engine_image,
        "currentImage": if attached { engine_current } else { "" },
        "instanceManagerName": if attached { "instance-manager-emulated" } else { "" },
        "size": v.size.to_string(),
        // strconv.FormatInt: a decimal string.
        "actualSize": (v.data.len() as u64 * BLOCK).to_string(),
        "endpoint": endpoint,
        "lastRestoredBackup": last_restored,
        "requestedBackupRestore": requested,
        "isExpanding": false,
        "lastExpansionError": "",
        "lastExpansionFailedAt": "",
        "unmapMarkSnapChainRemovedEnabled": false,
    }]);
    let replicas: Vec<Value> = v
        .replicas
        .iter()
        .enumerate()
        .map(|(i, r)| {
            // An unscheduled replica has no node, disk or process.
            let placed = i < v.scheduled;
            let running = attached && placed;
            json!({
                "name": r,
                "hostId": if placed { format!("node-{}", i + 1) } else { String::new() },
                "address": if running { "10.42.0.11" } else { "" },
                "running": running,
                "image": image,
                "currentImage": if running { image } else { "" },
                "instanceManagerName": if running { "instance-manager-emulated" } else { "" },
                "diskID": if placed { format!("disk-{}", i + 1) } else { String::new() },
                "diskPath": if placed { "/var/lib/longhorn/" } else { "" },
                "dataPath": if placed { format!("/var/lib/longhorn/replicas/{r}") } else { String::new() },
                "mode": if running { if v.faulted { "ERR" } else { "RW" } } else { "" },
                "failedAt": "",
                "dataEngine": "v1",
            })
        })
        .collect();
    let attachments: serde_json::Map<String, Value> = v
        .tickets
        .iter()
        .map(|(id, t)| {
            (
                id.clone(),
                json!({
                    "attachmentID": id,
                    "attachmentType": t.kind,
                    "nodeID": t.node,
                    "parameters": {
                        "disableFrontend": if t.any_frontend { "any".to_owned() } else { t.disable_frontend.to_string() },
                    },
                    "satisfied": attached,
                    "conditions": null,
                }),
            )
        })
        .collect();
    let created = v.created;
    let sched = v.scheduled_condition(allow_degraded);
    let rc = &v.restore_condition;
    let tm = &v.too_many_snapshots;
    let ks = &v.kubernetes_status;
    let fields = json!({
        "name": v.name,
        "size": v.size.to_string(),
        "state": v.state.as_str(),
        "robustness": v.robustness(),
        "frontend": v.frontend,
        "disableFrontend": false,
        "numberOfReplicas": v.replicas.len(),
        "dataEngine": "v1",
        "accessMode": v.access_mode,
        "created": go_time(created),
        "currentImage": image,
        "image": image,
        "lastBackup": last_backup,
        "lastBackupAt": last_backup_at,
        "lastAttachedBy": v.last_attached_by,
        "backupTargetName": v.backup_target,
        "backupCompressionMethod": "lz4",
        "backupBlockSize": BLOCK.to_string(),
        "fromBackup": v.from_backup,
        "dataSource": "",
        "dataLocality": "disabled",
        "staleReplicaTimeout": 30,
        "standby": false,
        "encrypted": false,
        "migratable": false,
        "revisionCounterDisabled": true,
        "snapshotDataIntegrity": "ignored",
        "snapshotMaxCount": v.snapshot_max_count,
        "snapshotMaxSize": "0",
        "unmapMarkSnapChainRemoved": "ignored",
        "replicaAutoBalance": "ignored",
        "replicaSoftAntiAffinity": "ignored",
        "replicaZoneSoftAntiAffinity": "ignored",
        "replicaDiskSoftAntiAffinity": "ignored",
        "freezeFilesystemForSnapshot": "ignored",
        "offlineRebuilding": "ignored",
        "backingImage": "",
        "shareEndpoint": "",
        "shareState": "",
        "restoreRequired": v.restore_required,
        "restoreInitiated": v.restore_initiated,
        "restoreVolumeRecurringJob": "ignored",
        "ready": v.ready(allow_degraded),
        "notReadyMessage": v.not_ready_message(allow_degraded),
        "diskSelector": null,
        "nodeSelector": null,
        "recurringJobSelector": null,
        "conditions": {
            "Scheduled": condition("Scheduled", sched.0, sched.1, sched.2, created),
            "Restore": condition("Restore", rc.status, &rc.reason, &rc.message, rc.last_transition),
            "TooManySnapshots": condition("TooManySnapshots", tm.status, &tm.reason, &tm.message, tm.last_transition),
            "WaitForBackingImage": condition("WaitForBackingImage", "False", "", "", created),
            "BackingImageIncompatible": condition("BackingImageIncompatible", "False", "", "", created),
            "OfflineRebuilding": condition("OfflineRebuilding", "False", "", "", created),
        },
        "kubernetesStatus": {
            "pvName": ks.pv_name,
            "pvStatus": ks.pv_status,
            "namespace": ks.namespace,
            "pvcName": ks.pvc_name,
            "lastPVCRefAt": ks.last_pvc_ref_at,
            "lastPodRefAt": ks.last_pod_ref_at,
            "workloadsStatus": ks.workloads_status,
        },
        "controllers": controllers,
        "replicas": replicas,
        "backupStatus": backup_status,
        "restoreStatus": restore_status,
        "purgeStatus": null,
        "rebuildStatus": [],
        // longhorn.VolumeCloneStatus: a plain struct (no links/actions).
        "cloneStatus": {
            "snapshot": "", "sourceVolume": "", "state": "", "attemptCount": 0, "nextAllowedAttemptAt": "",
        },
        // api/model.go VolumeAttachment embeds a zero client.Resource.
        "volumeAttachment": {
            "links": null,
            "actions": null,
            "volume": v.name,
            "attachments": attachments,
        },
        // Fields dr's volumes leave at their zero value (api/model.go
        // Volume: spec.cloneMode, spec.dataLayout {type, mode; the EC
        // counts omitempty}, spec.rebuildConcurrentSyncLimit,
        // spec.replicaRebuildingBandwidthLimit, spec.ublk* (omitempty in
        // the CR, 0 here)).
        "cloneMode": "",
        "dataLayout": { "type": "", "mode": "" },
        "rebuildConcurrentSyncLimit": 0,
        "replicaRebuildingBandwidthLimit": 0,
        "ublkQueueDepth": 0,
        "ublkNumberOfQueue": 0,
    });
    resource(
        fields,
        "volume",
        &v.name,
        format!("{base}/v1/volumes/{}", v.name),
        actions(base, "volumes", &v.name, &names),
    )
}

pub fn snapshot_cr(base: &str, v: &Volume, s: &crate::state::Snapshot) -> Value {
    let children: BTreeMap<String, bool> = v
        .snapshots
        .values()
        .filter(|c| c.parent == s.name)
        .map(|c| (c.name.clone(), true))
        .collect();
    let mut fields = json!({
        "name": s.name,
        "crCreationTime": rfc3339(s.cr_creation_time),
        "volume": v.name,
        "createSnapshot": true,
        "parent": s.parent,
        "children": if children.is_empty() { Value::Null } else { json!(children) },
        "markRemoved": s.mark_removed,
        "userCreated": s.user_created,
        "creationTime": s.creation_time.map(rfc3339).unwrap_or_default(),
        "size": if s.ready { s.size() } else { 0 },
        "labels": map_or_null(&s.labels),
        "ownerID": if s.ready { "node-1" } else { "" },
        "restoreSize": v.size,
        "readyToUse": s.cr_ready(),
        "checksum": "",
    });
    // api/model.go SnapshotCR: `Error string json:"error,omitempty"`.
    if !s.error.is_empty() {
        fields["error"] = json!(s.error);
    }
    resource(
        fields,
        "snapshotCR",
        &s.name,
        format!("{base}/v1/snapshotcrs/{}", s.name),
        json!({}),
    )
}

/// The engine view of a snapshot (legacy actions).
pub fn snapshot(base: &str, v: &Volume, s: &crate::state::Snapshot) -> Value {
    let children: BTreeMap<String, bool> = v
        .snapshots
        .values()
        .filter(|c| c.parent == s.name)
        .map(|c| (c.name.clone(), true))
        .collect();
    let fields = json!({
        "name": s.name,
        "parent": s.parent,
        "children": if children.is_empty() { Value::Null } else { json!(children) },
        "removed": s.mark_removed,
        "usercreated": s.user_created,
        "created": rfc3339(s.creation_time.unwrap_or(s.cr_creation_time)),
        "size": s.size().to_string(),
        "labels": map_or_null(&s.labels),
        "checksum": "",
    });
    resource(
        fields,
        "snapshot",
        &s.name,
        format!("{base}/v1/snapshots/{}", s.name),
        json!({}),
    )
}

/// The `volume-head` pseudo snapshot.
pub fn volume_head(base: &str, v: &Volume) -> Value {
    let parent = v.head_parent();
    let fields = json!({
        "name": "volume-head",
        "parent": parent.map(|p| p.name.clone()).unwrap_or_default(),
        "children": null,
        "removed": false,
        "usercreated": false,
        "created": rfc3339(parent.and_then(|p| p.creation_time).unwrap_or(v.created)),
        "size": "0",
        "labels": null,
        "checksum": "",
    });
    resource(
        fields,
        "snapshot",
        "volume-head",
        format!("{base}/v1/snapshots/volume-head"),
        json!({}),
    )
}

pub fn backup(base: &str, b: &Backup) -> Value {
    let fields = json!({
        "name": b.name,
        "state": b.state,
        "progress": b.progress,
        "error": b.error,
        "url": b.url,
        "snapshotName": b.snapshot_name,
        "snapshotCreated": b.snapshot_created,
        "created": b.created,
        "size": b.size.to_string(),
        "labels": b.labels,
        "backupMode": b.backup_mode,
        "messages": if b.messages.is_empty() { Value::Null } else { json!(b.messages) },
        "volumeName": b.volume_name,
        "volumeSize": b.volume_size.to_string(),
        "volumeCreated": b.volume_created,
        "volumeBackingImageName": "",
        "compressionMethod": "lz4",
        "newlyUploadDataSize": b.newly_uploaded.to_string(),
        "reUploadedDataSize": b.reuploaded.to_string(),
        "backupTargetName": b.target,
        "blockSize": BLOCK.to_string(),
    });
    resource(
        fields,
        "backup",
        &b.name,
        format!("{base}/v1/backups/{}", b.name),
        json!({}),
    )
}

/// The BackupVolume CR name of `volume` on `target`: longhorn-manager
/// types/types.go GetBackupVolumeNameFromVolumeName (since v1.9.1/v1.10),
/// `<vol>-<first 8 hex of sha256("<vol>-<target>")>`.
pub fn bv_name(volume: &str, target: &str) -> String {
    use sha2::{Digest, Sha256};
    let h = hex::encode(Sha256::digest(
        format!("{volume}-{target}").trim().as_bytes(),
    ));
    format!("{volume}-{}", &h[..8])
}

pub const BV_ACTIONS: &[&str] = &[
    "backupList",
    "backupListByVolume",
    "backupGet",
    "backupDelete",
    "backupVolumeSync",
];

pub fn backup_volume(base: &str, st: &State, bv: &BackupVolumeState) -> Value {
    let name = bv_name(&bv.volume, &bv.target);
    let last = st.last_backup(&bv.volume, &bv.target);
    let fields = json!({
        "name": name,
        "volumeName": bv.volume,
        "backupTargetName": bv.target,
        "size": last.map(|b| b.volume_size.to_string()).unwrap_or_else(|| "0".into()),
        "labels": last.and_then(|b| b.labels.clone()),
        "created": bv.created,
        "lastBackupName": last.map(|b| b.name.clone()).unwrap_or_default(),
        "lastBackupAt": last.map(|b| b.snapshot_created.clone()).unwrap_or_default(),
        "dataStored": (bv.block_count * BLOCK).to_string(),
        "messages": null,
        "backingImageName": "",
        "backingImageChecksum": "",
        "storageClassName": bv.storage_class_name,
    });
    resource(
        fields,
        "backupVolume",
        &name,
        format!("{base}/v1/backupvolumes/{name}"),
        actions(base, "backupvolumes", &name, BV_ACTIONS),
    )
}

/// A backup volume that does not exist: longhorn-manager manager/engine.go
/// (*VolumeManager).GetBackupVolume answers NotFound with a stub
/// `BackupVolume{Name: name}` ("compatible with the Longhorn CSI plugin"),
/// which api/model.go toBackupVolumeResource renders with every field empty
/// (`GET /v1/backupvolumes/{missing}`, and the answer of `backupDelete`).
pub fn backup_volume_placeholder(base: &str, name: &str) -> Value {
    let fields = json!({
        "name": name,
        "volumeName": "",
        "backupTargetName": "",
        "size": "",
        "labels": null,
        "created": "",
        "lastBackupName": "",
        "lastBackupAt": "",
        "dataStored": "",
        "messages": null,
        "backingImageName": "",
        "backingImageChecksum": "",
        "storageClassName": "",
    });
    resource(
        fields,
        "backupVolume",
        name,
        format!("{base}/v1/backupvolumes/{name}"),
        actions(base, "backupvolumes", name, BV_ACTIONS),
    )
}

/// api/model.go toBackupTargetResource.
pub fn backup_target(base: &str, name: &str, store: Option<&Store>) -> Value {
    let fields = json!({
        "name": name,
        "backupTargetURL": store.map(Store::target_url).unwrap_or_default(),
        "credentialSecret": if store.is_some() { "longhorn-emulator-s3" } else { "" },
        "pollInterval": "5m0s",
        "available": store.is_some(),
        "message": if store.is_some() { "" } else { "backup target URL is empty" },
    });
    resource(
        fields,
        "backupTarget",
        name,
        format!("{base}/v1/backuptargets/{name}"),
        actions(
            base,
            "backuptargets",
            name,
            &["backupTargetSync", "backupTargetUpdate"],
        ),
    )
}

/// One setting's definition (longhorn-manager types/setting.go
/// `SettingDefinition*`): the few settings a client of the emulator may use.
pub struct SettingDef {
    pub name: &'static str,
    pub display_name: &'static str,
    pub category: &'static str,
    /// `int`, `bool` or `string` (Longhorn's `SettingType*`).
    pub kind: &'static str,
    pub read_only: bool,
    pub default: &'static str,
    /// `Required` (false for the read-only version setting).
    pub required: bool,
    /// `Choices` (`options`, omitempty) as JSON, or "".
    pub options: &'static str,
    /// `ValueIntRange` (`range`, omitempty) as JSON, or "".
    pub range: &'static str,
}

const fn def(
    name: &'static str,
    display_name: &'static str,
    category: &'static str,
    kind: &'static str,
    default: &'static str,
) -> SettingDef {
    SettingDef {
        name,
        display_name,
        category,
        kind,
        read_only: false,
        default,
        required: true,
        options: "",
        range: "",
    }
}

/// Sorted by name, as `GET /v1/settings` lists them.
pub const SETTINGS: &[SettingDef] = &[
    def(
        "allow-volume-creation-with-degraded-availability",
        "Allow Volume Creation with Degraded Availability",
        "scheduling",
        "bool",
        "true",
    ),
    def(
        "auto-cleanup-snapshot-after-on-demand-backup-completed",
        "Automatically Cleanup Snapshot After On-Demand Backup Completed",
        "snapshot",
        "bool",
        "false",
    ),
    def(
        "auto-cleanup-when-delete-backup",
        "Automatically Cleanup Snapshot When Deleting Backup",
        "snapshot",
        "bool",
        "false",
    ),
    SettingDef {
        options: r#"["none","lz4","gzip"]"#,
        ..def(
            "backup-compression-method",
            "Backup Compression Method",
            "backup",
            "string",
            "lz4",
        )
    },
    SettingDef {
        range: r#"{"minimum":1}"#,
        ..def(
            "backup-concurrent-limit",
            "Backup Concurrent Limit Per Backup",
            "backup",
            "int",
            "2",
        )
    },
    SettingDef {
        read_only: true,
        required: false,
        ..def(
            "current-longhorn-version",
            "Current Longhorn Version",
            "system info",
            "string",
            "v1.12.1",
        )
    },
    SettingDef {
        options: "[2,16]",
        ..def(
            "default-backup-block-size",
            "Default Backup Block Size",
            "backup",
            "int",
            "2",
        )
    },
    SettingDef {
        range: r#"{"minimum":1,"maximum":20}"#,
        ..def(
            "default-replica-count",
            "Default Replica Count",
            "general",
            "int",
            "{\"v1\":\"3\",\"v2\":\"3\"}",
        )
    },
    SettingDef {
        range: r#"{"minimum":0}"#,
        ..def(
            "failed-backup-ttl",
            "Failed Backup Time to Live",
            "backup",
            "int",
            "1440",
        )
    },
    SettingDef {
        range: r#"{"minimum":1}"#,
        ..def(
            "restore-concurrent-limit",
            "Restore Concurrent Limit Per Backup",
            "backup",
            "int",
            "2",
        )
    },
    // types/setting.go SettingDefinitionSnapshotCountWarningThreshold
    // (the TooManySnapshots condition's threshold, 2..250).
    SettingDef {
        range: r#"{"minimum":2,"maximum":250}"#,
        ..def(
            "snapshot-count-warning-threshold",
            "Snapshot Count Warning Threshold",
            "snapshot",
            "int",
            "100",
        )
    },
    def(
        "snapshot-max-count",
        "Snapshot Maximum Count",
        "snapshot",
        "int",
        "250",
    ),
    // types/setting.go SettingDefinitionFreezeFilesystemForSnapshot: since
    // v1.10 data-engine specific, off for v1 by default.
    def(
        "freeze-filesystem-for-snapshot",
        "Freeze Filesystem For Snapshot",
        "snapshot",
        "bool",
        "{\"v1\":\"false\"}",
    ),
];

pub fn setting_def(name: &str) -> Option<&'static SettingDef> {
    SETTINGS.iter().find(|d| d.name == name)
}

/// api/model.go toSettingResource; `definition` is types/setting.go
/// SettingDefinition as Go writes it (`options`, `range`, `floatRange` and
/// `dataEngineSpecific` are omitempty). Descriptions are left empty.
pub fn setting(base: &str, d: &SettingDef, value: &str) -> Value {
    let mut definition = json!({
        "displayName": d.display_name,
        "description": "",
        "category": d.category,
        "type": d.kind,
        "required": d.required,
        "readOnly": d.read_only,
        "default": d.default,
    });
    if d.default.starts_with('{') {
        definition["dataEngineSpecific"] = json!(true);
    }
    for (key, raw) in [("options", d.options), ("range", d.range)] {
        if let Ok(v) = serde_json::from_str::<Value>(raw) {
            definition[key] = v;
        }
    }
    let fields = json!({
        "name": d.name,
        "value": value,
        "applied": true,
        "definition": definition,
    });
    resource(
        fields,
        "setting",
        d.name,
        format!("{base}/v1/settings/{}", d.name),
        json!({}),
    )
}

/// `GET /`: go-rancher api/handler.go `VersionsHandler`: one `apiVersion`
/// (links `self` only) and the collection's `latest` link.
pub fn api_versions(base: &str, url: &str) -> Value {
    let v1 = format!("{base}/v1");
    json!({
        "type": "collection",
        "resourceType": "apiVersion",
        "links": { "self": url, "latest": v1 },
        "data": [{
            "id": "v1",
            "type": "apiVersion",
            "links": { "self": v1 },
            "actions": {},
        }],
    })
}
