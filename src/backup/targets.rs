//! Where each volume's backups go. Since Longhorn 1.8 a backup goes to its
//! volume's own `backupTargetName` (the volume mutator sets `default` when
//! empty: webhook/resources/volume/mutator.go `Create`; the backup
//! validator refuses a backup whose target does not match:
//! webhook/resources/backup/validator.go `Create`), and several targets may
//! exist. dr verifies every backup in its store through S3, so a volume
//! whose target is not an S3 store cannot be protected by dr: it is refused
//! before its backup is asked for, with the reason. Read once per tick, on
//! the side (one listing of volumes, one of targets, one setting), with
//! whether Longhorn freezes each volume's filesystem for its snapshots, which
//! makes the point's consistency.

use crate::catalog::Consistency;
use crate::longhorn::{BackupTarget, LonghornClient, freezes_filesystem};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use std::collections::HashMap;
use std::sync::Arc;

/// The tick's view of the targets, read once and shared by its volumes.
pub(super) type SharedTargets = Shared<BoxFuture<'static, Option<Arc<Targets>>>>;

/// Starts reading the targets; nothing waits for it until asked.
pub(super) fn read_on_the_side(longhorn: &LonghornClient) -> SharedTargets {
    let longhorn = longhorn.clone();
    async move { Targets::read(&longhorn).await.map(Arc::new) }
        .boxed()
        .shared()
}

/// The volumes' targets, as Longhorn said at the start of the tick.
#[derive(Debug, Default)]
pub(super) struct Targets {
    /// volume → its `backupTargetName`.
    volumes: HashMap<String, String>,
    /// target name → `Ok` when dr can read its store, else why not.
    targets: HashMap<String, Result<(), String>>,
    /// volume → whether Longhorn freezes its filesystem for snapshots.
    frozen: HashMap<String, bool>,
}

impl Targets {
    /// Reads both listings; `None` when Longhorn cannot be read (each
    /// volume's own calls then say what is wrong).
    pub(super) async fn read(longhorn: &LonghornClient) -> Option<Targets> {
        let (volumes, targets, freeze) = futures::join!(
            longhorn.list_volumes(),
            longhorn.list_backup_targets(),
            longhorn.setting("freeze-filesystem-for-snapshot")
        );
        let (volumes, targets, freeze) = match (volumes, targets, freeze) {
            (Ok(v), Ok(t), Ok(f)) => (v, t, f),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                tracing::warn!(error = %e, "cannot read the volumes' backup targets");
                return None;
            }
        };
        let frozen = volumes
            .iter()
            .map(|v| {
                let f = freezes_filesystem(
                    freeze.as_deref(),
                    &v.freeze_filesystem_for_snapshot,
                    &v.data_engine,
                );
                (v.name.clone(), f)
            })
            .collect();
        Some(Targets {
            volumes: volumes
                .into_iter()
                .map(|v| (v.name, v.backup_target_name))
                .collect(),
            targets: targets.iter().map(|t| (t.name.clone(), judge(t))).collect(),
            frozen,
        })
    }

    /// The consistency of a point of these volumes (a volume Longhorn did
    /// not list counts as not frozen).
    pub(super) fn consistency<'a>(&self, volumes: impl Iterator<Item = &'a str>) -> Consistency {
        let frozen: Vec<bool> = volumes
            .map(|v| self.frozen.get(v).copied().unwrap_or(false))
            .collect();
        Consistency::of_volumes(&frozen)
    }

    /// Why dr cannot protect `volume`, if it cannot. A volume or target
    /// missing from the listings is not refused here: Longhorn's own
    /// answer to the backup request says more.
    pub(super) fn refusal(&self, volume: &str) -> Option<String> {
        let target = match self.volumes.get(volume).map(String::as_str) {
            Some("") | None => "default",
            Some(t) => t,
        };
        match self.targets.get(target) {
            Some(Err(why)) => Some(why.clone()),
            _ => None,
        }
    }
}

/// Whether dr can read a target's store. Pure.
fn judge(t: &BackupTarget) -> Result<(), String> {
    let url = t.backup_target_url.as_str();
    if url.is_empty() || url.starts_with("s3://") {
        // An empty or unavailable target fails the backup request with
        // Longhorn's own message ("backup target … is not available").
        return Ok(());
    }
    let scheme = url.split("://").next().unwrap_or(url);
    Err(format!(
        "its Longhorn backup target {} is {url}, a {scheme} store dr cannot read: dr verifies every backup in the store through S3, so it protects only volumes whose target is an s3:// store (set the volume's backupTargetName to one)",
        t.name
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(name: &str, url: &str) -> BackupTarget {
        serde_json::from_value(serde_json::json!({
            "name": name, "backupTargetURL": url, "available": true
        }))
        .expect("a target")
    }

    #[test]
    fn volumes_on_a_store_dr_cannot_read_are_refused_with_the_reason() {
        let t = Targets {
            volumes: [
                ("a".to_string(), "default".to_string()),
                ("b".to_string(), "nfs-target".to_string()),
                ("c".to_string(), String::new()),
                ("d".to_string(), "offsite".to_string()),
            ]
            .into(),
            targets: [
                target("default", "s3://backups@us-east-1/"),
                target("nfs-target", "nfs://10.0.0.5:/exports/longhorn"),
                target("offsite", "s3://offsite@eu-west-1/lh"),
            ]
            .iter()
            .map(|t| (t.name.clone(), judge(t)))
            .collect(),
            frozen: [("a".to_string(), true), ("b".to_string(), false)].into(),
        };
        assert_eq!(
            t.consistency(["a"].into_iter()),
            Consistency::FilesystemFrozen
        );
        assert_eq!(
            t.consistency(["a", "b"].into_iter()),
            Consistency::CrashConsistent
        );
        assert_eq!(
            t.consistency(["a", "gone"].into_iter()),
            Consistency::CrashConsistent
        );
        assert_eq!(t.refusal("a"), None);
        let why = t.refusal("b").expect("refused");
        assert!(
            why.contains("nfs-target") && why.contains("nfs://") && why.contains("s3://"),
            "{why}"
        );
        assert_eq!(t.refusal("c"), None, "empty means default");
        assert_eq!(t.refusal("d"), None, "another S3 target is fine");
        assert_eq!(t.refusal("unknown"), None);
    }
}
