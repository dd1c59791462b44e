//! dr's own snapshots kept bounded. Longhorn deletes the snapshot of an
//! on-demand backup only when `auto-cleanup-snapshot-after-on-demand-backup-completed`
//! is on (off by default; longhorn-manager controller/backup_controller.go
//! `deleteSnapshotAfterBackupCompleted`), and past the volume's
//! `snapshotMaxCount` (setting `snapshot-max-count`, default 250) every new
//! snapshot fails. So after a completed backup dr deletes its older
//! snapshots of the same policy on that volume, keeping the newest, the one
//! just backed up, so the next backup stays incremental. A crash between the
//! backup and the deletion leaves them for the next completed backup, which
//! deletes every older one it finds. Snapshots dr did not make (no policy
//! label of dr's, or another policy's) are never touched.

use super::{LABEL_POLICY, LABEL_TICK};
use crate::longhorn::SnapshotCr;

/// The snapshots to delete once the backup of `keep` (made at tick label
/// `keep_tick`) completed: dr's, of `policy`, from earlier ticks, not
/// already being removed. Pure.
pub(super) fn stale<'a>(
    snapshots: &'a [SnapshotCr],
    policy: &str,
    keep: &str,
    keep_tick: &str,
) -> Vec<&'a str> {
    snapshots
        .iter()
        .filter(|s| s.name != keep && s.name.starts_with("dr-") && !s.mark_removed)
        .filter(|s| s.labels.get(LABEL_POLICY).map(String::as_str) == Some(policy))
        // Tick labels are `%Y%m%dT%H%M%SZ`: their order is time's. A later
        // tick's snapshot (an adopted older tick finishing late) stays.
        .filter(|s| {
            s.labels
                .get(LABEL_TICK)
                .is_some_and(|t| t.as_str() < keep_tick)
        })
        .map(|s| s.name.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(name: &str, labels: &[(&str, &str)]) -> SnapshotCr {
        let labels: Vec<_> = labels
            .iter()
            .map(|(k, v)| format!("\"{k}\":\"{v}\""))
            .collect();
        serde_json::from_str(&format!(
            "{{\"name\":\"{name}\",\"labels\":{{{}}}}}",
            labels.join(",")
        ))
        .expect("a snapshot")
    }

    #[test]
    fn only_drs_older_snapshots_of_the_policy_go() {
        let mine =
            |name: &str, tick: &str| snap(name, &[(LABEL_POLICY, "shop"), (LABEL_TICK, tick)]);
        let mut removed = mine("dr-shop-20261124t091500-aa", "20261124T091500Z");
        removed.mark_removed = true;
        let snaps = vec![
            mine("dr-shop-20261124t093000-aa", "20261124T093000Z"),
            mine("dr-shop-20261124t091500-ab", "20261124T091500Z"),
            removed,
            // The one just backed up, and a later tick's.
            mine("dr-shop-20261124t094500-aa", "20261124T094500Z"),
            mine("dr-shop-20261124t100000-aa", "20261124T100000Z"),
            // Another policy's, a user's, one without labels, a system one.
            snap(
                "dr-web-20261124t090000-aa",
                &[(LABEL_POLICY, "web"), (LABEL_TICK, "20261124T090000Z")],
            ),
            snap("before-upgrade", &[(LABEL_POLICY, "shop")]),
            snap("dr-shop-by-hand", &[]),
            snap("c7a1e0f2-1c8e-4b5d", &[]),
        ];
        assert_eq!(
            stale(
                &snaps,
                "shop",
                "dr-shop-20261124t094500-aa",
                "20261124T094500Z"
            ),
            vec!["dr-shop-20261124t093000-aa", "dr-shop-20261124t091500-ab"]
        );
        assert!(stale(&snaps, "other", "x", "29991231T000000Z").is_empty());
    }
}
