//! The shapes of Longhorn's manager API (v1.8+, read from v1.12.1) that dr
//! uses. Only the fields dr reads are modelled; unknown fields are ignored, and
//! the API's quirks are absorbed here: sizes as decimal strings, `null` where
//! a list or map is expected, and pre-1.3 engine state names.

use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;

/// `{"type":"collection","data":[…]}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
pub struct Collection<T> {
    #[serde(default = "Vec::new", deserialize_with = "null_as_default")]
    pub data: Vec<T>,
}

/// The error envelope: `{"type":"error","status":500,"code":"…","message":"…"}`.
#[derive(Debug, Clone, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub status: u16,
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Longhorn writes byte sizes as decimal strings; accept numbers too, and
/// treat empty as unknown.
fn size_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum S {
        Str(String),
        Num(u64),
    }
    Ok(match Option::<S>::deserialize(d)? {
        None => None,
        Some(S::Num(n)) => Some(n),
        Some(S::Str(s)) if s.trim().is_empty() => None,
        Some(S::Str(s)) => Some(s.trim().parse().map_err(serde::de::Error::custom)?),
    })
}

/// A backup's state as Longhorn reports it (Backup CR `status.state`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum LhBackupState {
    /// `""`: just created, not picked up yet.
    New,
    Pending,
    InProgress,
    Completed,
    Error,
    Unknown,
    Deleting,
    /// Anything else, kept verbatim.
    Other(String),
}

impl<'de> Deserialize<'de> for LhBackupState {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Option::<String>::deserialize(d)?.unwrap_or_default();
        Ok(match s.as_str() {
            "" => Self::New,
            "Pending" => Self::Pending,
            // Longhorn 1.2 and older reported engine states.
            "InProgress" | "in_progress" => Self::InProgress,
            "Completed" | "complete" => Self::Completed,
            "Error" | "error" => Self::Error,
            "Unknown" => Self::Unknown,
            "Deleting" => Self::Deleting,
            _ => Self::Other(s),
        })
    }
}

/// One entry of `volume.backupStatus`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatus {
    /// The backup name.
    #[serde(default)]
    pub id: String,
    /// Empty until the engine has picked the backup up.
    #[serde(default, deserialize_with = "null_as_default")]
    pub snapshot: String,
    #[serde(default)]
    pub progress: i64,
    #[serde(default, rename = "backupURL", deserialize_with = "null_as_default")]
    pub backup_url: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub error: String,
    pub state: LhBackupState,
    /// Bytes stored (a string in the API), once known.
    #[serde(default, deserialize_with = "size_string")]
    pub size: Option<u64>,
}

/// A volume's name and `backupStatus`: all that following backups reads from
/// the volume listing (the rest of each volume is skipped, not parsed).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeBackups {
    pub name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub backup_status: Vec<BackupStatus>,
}

/// One entry of `volume.restoreStatus` (one per replica).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreStatus {
    #[serde(default)]
    pub replica: String,
    #[serde(default)]
    pub is_restoring: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub last_restored: String,
    #[serde(default)]
    pub progress: i64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub error: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub state: String,
}

/// A volume condition (`Restore`, `Scheduled`, …).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub message: String,
}

/// `volume.kubernetesStatus`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesStatus {
    #[serde(default, deserialize_with = "null_as_default")]
    pub pv_name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub pv_status: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub namespace: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub pvc_name: String,
}

/// A Longhorn volume.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    pub name: String,
    #[serde(default, deserialize_with = "size_string")]
    pub size: Option<u64>,
    /// `""`, `creating`, `detached`, `attaching`, `attached`, `detaching`, `deleting`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub state: String,
    /// `healthy`, `degraded`, `faulted`, `unknown`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub robustness: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub from_backup: String,
    #[serde(default)]
    pub restore_required: bool,
    #[serde(default)]
    pub restore_initiated: bool,
    #[serde(default)]
    pub ready: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub last_backup: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub last_backup_at: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub backup_target_name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub backup_status: Vec<BackupStatus>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub restore_status: Vec<RestoreStatus>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub conditions: BTreeMap<String, Condition>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub kubernetes_status: KubernetesStatus,
    /// `ignored` (follow the setting), `enabled` or `disabled` (1.7+).
    #[serde(default, deserialize_with = "null_as_default")]
    pub freeze_filesystem_for_snapshot: String,
    /// `v1` or `v2`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub data_engine: String,
}

impl Volume {
    /// A restore is done when it was initiated, is no longer required, and
    /// the volume is detached again and ready, or restored with fewer
    /// replicas than asked for ([`Self::unschedulable`]).
    pub fn restore_done(&self) -> bool {
        self.restore_initiated
            && !self.restore_required
            && self.state == "detached"
            && (self.ready || self.unschedulable().is_some())
    }

    /// Why a detached volume is not `ready` although nothing failed: some of
    /// its replicas cannot be scheduled. types/volumes.go `IsVolumeReady`
    /// says "volume is currently in detached state with some un-schedulable
    /// replicas" whenever the `Scheduled` condition is not True; with
    /// `allow-volume-creation-with-degraded-availability` (on by default) the
    /// restore still runs on the replicas that were scheduled
    /// (controller/volume_controller.go `reconcileVolumeCondition`), so the
    /// data is back, with less redundancy than asked for.
    pub fn unschedulable(&self) -> Option<String> {
        if self.ready || self.state != "detached" {
            return None;
        }
        let c = self.conditions.get("Scheduled")?;
        (c.status == "False").then(|| {
            let why = [c.reason.as_str(), c.message.as_str()]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(": ");
            if why.is_empty() {
                "some replicas cannot be scheduled".to_owned()
            } else {
                format!("some replicas cannot be scheduled ({why})")
            }
        })
    }

    /// Why a restore failed, if it did: the volume faulted or a replica reported an error.
    pub fn restore_failure(&self) -> Option<String> {
        if self.robustness == "faulted" {
            let why = self
                .conditions
                .get("Restore")
                .filter(|c| !c.message.is_empty() || !c.reason.is_empty())
                .map(|c| format!("{}: {}", c.reason, c.message))
                .unwrap_or_else(|| "the volume became faulted".into());
            return Some(why);
        }
        let errors: Vec<&str> = self
            .restore_status
            .iter()
            .filter(|r| !r.error.is_empty())
            .map(|r| r.error.as_str())
            .collect();
        // One failed replica is survivable; all of them is not.
        if !self.restore_status.is_empty() && errors.len() == self.restore_status.len() {
            return Some(errors.join("; "));
        }
        None
    }

    /// Restore progress in percent: the slowest replica's.
    pub fn restore_progress(&self) -> i64 {
        self.restore_status
            .iter()
            .map(|r| r.progress)
            .min()
            .unwrap_or(0)
    }
}

/// A Snapshot CR as the API shows it (`snapshotCR`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotCr {
    pub name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub volume: String,
    #[serde(default)]
    pub ready_to_use: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub creation_time: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub error: String,
    #[serde(default)]
    pub mark_removed: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    /// Made by a user or a client (dr included), not by Longhorn itself.
    #[serde(default)]
    pub user_created: bool,
}

/// A backup in a backup volume (`backup`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Backup {
    pub name: String,
    pub state: LhBackupState,
    #[serde(default)]
    pub progress: i64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub error: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub url: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub snapshot_name: String,
    /// Snapshot creation time (RFC 3339).
    #[serde(default, deserialize_with = "null_as_default")]
    pub snapshot_created: String,
    /// Upload finished (RFC 3339); empty until `Completed`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub created: String,
    #[serde(default, deserialize_with = "size_string")]
    pub size: Option<u64>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub volume_name: String,
    #[serde(default, deserialize_with = "size_string")]
    pub volume_size: Option<u64>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub backup_target_name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub messages: BTreeMap<String, String>,
    /// The labels given to `snapshotBackup` (plus Longhorn's); empty until `Completed`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
}

/// A backup volume (`backupVolume`): the store's view of one volume's backups.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupVolume {
    pub name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub volume_name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub backup_target_name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub last_backup_name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub last_backup_at: String,
    #[serde(default, deserialize_with = "size_string")]
    pub size: Option<u64>,
}

/// A backup target (`backupTarget`, Longhorn 1.8+).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupTarget {
    pub name: String,
    #[serde(
        default,
        rename = "backupTargetURL",
        deserialize_with = "null_as_default"
    )]
    pub backup_target_url: String,
    #[serde(default)]
    pub available: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub message: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub poll_interval: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_absorbs_nulls_strings_and_old_states() {
        let v: Volume = serde_json::from_str(
            r#"{"name":"v1","size":"1073741824","state":"detached","robustness":"unknown",
                "backupStatus":[{"id":"backup-0123456789abcdef","snapshot":"","progress":0,"state":""},
                                {"id":"b2","snapshot":"s","progress":100,"state":"complete","backupURL":"s3://x"}],
                "restoreStatus":null,"conditions":null,"kubernetesStatus":{"pvName":"","workloadsStatus":null},
                "created":"2026-08-13 01:11:02 +0000 UTC","actions":{},"links":{"self":"x"}}"#,
        )
        .expect("volume");
        assert_eq!(v.size, Some(1_073_741_824));
        assert_eq!(v.backup_status[0].state, LhBackupState::New);
        assert_eq!(v.backup_status[1].state, LhBackupState::Completed);
        assert!(v.restore_status.is_empty());
    }

    #[test]
    fn restore_done_needs_all_four_signals() {
        let mut v: Volume = serde_json::from_str(
            r#"{"name":"r","state":"detached","restoreInitiated":true,"restoreRequired":false,"ready":true}"#,
        )
        .expect("volume");
        assert!(v.restore_done());
        v.state = "detaching".into();
        assert!(!v.restore_done());
    }

    #[test]
    fn a_restore_with_unschedulable_replicas_is_done_but_degraded() {
        let v: Volume = serde_json::from_str(
            r#"{"name":"r","state":"detached","restoreInitiated":true,"restoreRequired":false,"ready":false,
                "conditions":{"Scheduled":{"status":"False","reason":"ReplicaSchedulingFailure","message":"insufficient storage"}}}"#,
        )
        .expect("volume");
        assert!(v.restore_done());
        let why = v.unschedulable().expect("degraded");
        assert!(
            why.contains("ReplicaSchedulingFailure: insufficient storage"),
            "{why}"
        );
        // Still restoring: not done, whatever the condition says.
        let v: Volume = serde_json::from_str(
            r#"{"name":"r","state":"detached","restoreInitiated":true,"restoreRequired":true,"ready":false,
                "conditions":{"Scheduled":{"status":"False","reason":"ReplicaSchedulingFailure"}}}"#,
        )
        .expect("volume");
        assert!(!v.restore_done());
        // Not ready for no reason dr knows: not done.
        let v: Volume = serde_json::from_str(
            r#"{"name":"r","state":"detached","restoreInitiated":true,"restoreRequired":false,"ready":false,
                "conditions":{"Scheduled":{"status":"True"}}}"#,
        )
        .expect("volume");
        assert!(!v.restore_done() && v.unschedulable().is_none());
    }

    #[test]
    fn restore_failure_reads_faulted_and_all_replica_errors() {
        let v: Volume = serde_json::from_str(
            r#"{"name":"r","robustness":"faulted","conditions":{"Restore":{"status":"False","reason":"RestoreFailure","message":"All replica restore failed and the volume became Faulted"}}}"#,
        )
        .expect("volume");
        assert!(
            v.restore_failure()
                .expect("failed")
                .contains("RestoreFailure")
        );
        let v: Volume = serde_json::from_str(
            r#"{"name":"r","robustness":"healthy","restoreStatus":[{"replica":"a","error":"boom","progress":10},{"replica":"b","error":"","progress":50}]}"#,
        )
        .expect("volume");
        assert!(v.restore_failure().is_none(), "one replica left");
        assert_eq!(v.restore_progress(), 10);
    }
}
