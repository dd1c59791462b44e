//! Snapshot CRs beyond making one ready (mod.rs): what a snapshot's error
//! means, listing a volume's snapshots and deleting one.

use super::{LonghornClient, LonghornError, Result, SnapshotCr};
use serde_json::json;

/// Whether a Snapshot CR's `status.error` is a passing state that Longhorn
/// clears by itself, not a failure.
///
/// longhorn-manager controller/snapshot_controller.go
/// `(*SnapshotController).reconcile`: for a detached volume it first asks
/// for an attachment (ticket `snapshot-controller-<snapshot>`) and, until
/// the engine runs, sets "failed to take snapshot because the volume engine
/// <e> is not running. Waiting for the volume to be attached"; during an
/// engine upgrade, "snapshot creation delayed: volume engine <e> is
/// upgrading from image <a> to <b>". Both are cleared in
/// `syncSnapshotWithSnapshotInfo` once the engine reports the snapshot.
pub fn snapshot_error_is_transient(error: &str) -> bool {
    error.contains("Waiting for the volume to be attached")
        || error.starts_with("snapshot creation delayed")
}

/// Whether a Snapshot CR's error is the snapshot limit: the engine refuses
/// past the volume's `snapshotMaxCount` (setting `snapshot-max-count`,
/// default 250) with "too many snapshots created" (longhorn-engine
/// pkg/controller/replicator.go `RemainSnapshots`), and the snapshot
/// controller keeps retrying the CR, and keeps the volume attached for it.
pub fn snapshot_error_is_limit(error: &str) -> bool {
    error.contains("too many snapshots created")
}

/// Whether Longhorn freezes a volume's filesystem for its snapshots.
/// datastore/longhorn.go `GetFreezeFilesystemForSnapshotSetting`: never for
/// the v2 data engine; the volume's `freezeFilesystemForSnapshot` when it is
/// not `ignored`; else the setting `freeze-filesystem-for-snapshot` (1.7+,
/// off by default) for the volume's data engine, a plain `true`/`false`
/// before 1.10 and a per-engine JSON object (`{"v1":"false"}`) since
/// (`GetSettingAsBoolByDataEngine`). No setting (before 1.7): never.
pub fn freezes_filesystem(setting: Option<&str>, volume: &str, data_engine: &str) -> bool {
    let engine = if data_engine.is_empty() {
        "v1"
    } else {
        data_engine
    };
    if engine == "v2" {
        return false;
    }
    match volume {
        "enabled" => return true,
        "disabled" => return false,
        _ => {}
    }
    let Some(value) = setting.map(str::trim) else {
        return false;
    };
    if value.starts_with('{') {
        return serde_json::from_str::<std::collections::BTreeMap<String, String>>(value)
            .ok()
            .and_then(|m| m.get(engine).cloned())
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    }
    value.eq_ignore_ascii_case("true")
}

impl LonghornClient {
    /// Every Snapshot CR of a volume (`snapshotCRList`).
    pub async fn list_snapshots(&self, volume: &str) -> Result<Vec<SnapshotCr>> {
        self.read(|| async {
            let c: Option<super::Collection<SnapshotCr>> = self
                .volume_action("snapshotCRList", volume, json!({}))
                .await?;
            Ok(c.map(|c| c.data).unwrap_or_default())
        })
        .await
    }

    /// Deletes a Snapshot CR (`snapshotCRDelete`); Longhorn removes the
    /// snapshot from the replicas asynchronously (the snapshot controller's
    /// deletion path). A missing one is fine.
    pub async fn delete_snapshot(&self, volume: &str, name: &str) -> Result<()> {
        let deleted: Result<Option<serde::de::IgnoredAny>> = self
            .volume_action("snapshotCRDelete", volume, json!({ "name": name }))
            .await;
        match deleted {
            Ok(_) => Ok(()),
            Err(LonghornError::Refused { message, .. }) if message.contains("not found") => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_volume_overrides_the_setting_and_v2_never_freezes() {
        let cases = [
            (None, "ignored", "v1", false),
            (Some("false"), "ignored", "v1", false),
            (Some("true"), "ignored", "v1", true),
            (Some("true"), "", "", true),
            (Some(r#"{"v1":"true"}"#), "ignored", "v1", true),
            (Some(r#"{"v1":"false"}"#), "ignored", "v1", false),
            (Some(r#"{"v1":"false"}"#), "enabled", "v1", true),
            (Some("true"), "disabled", "v1", false),
            (Some("true"), "enabled", "v2", false),
            (Some("not json {"), "ignored", "v1", false),
        ];
        for (setting, volume, engine, want) in cases {
            assert_eq!(
                freezes_filesystem(setting, volume, engine),
                want,
                "{setting:?} {volume} {engine}"
            );
        }
    }

    #[test]
    fn waiting_for_an_attachment_or_an_upgrade_is_not_a_failure() {
        let detached = "failed to take snapshot because the volume engine pvc-1-e-0 is not running. Waiting for the volume to be attached";
        let upgrading =
            "snapshot creation delayed: volume engine pvc-1-e-0 is upgrading from image a to b";
        let limit = "proxyServer=10.0.0.1:8501 destination=10.0.0.2:10000: failed to snapshot volume: rpc error: code = Unknown desc = too many snapshots created";
        assert!(snapshot_error_is_transient(detached));
        assert!(snapshot_error_is_transient(upgrading));
        assert!(!snapshot_error_is_transient(limit));
        assert!(!snapshot_error_is_transient(
            "lost track of the corresponding snapshot info inside volume engine"
        ));
        assert!(snapshot_error_is_limit(limit));
        assert!(!snapshot_error_is_limit(detached));
    }
}
