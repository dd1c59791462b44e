//! A recovery point's file in the bucket, beside its manifest bundle:
//! everything the catalog knows of the point — its backups with the content
//! checksum taken before each snapshot and the verification of each, the
//! point's verdict, and the policy's RPO, RTO and runbook when it was made —
//! so that `dr catalog sync` rebuilds the point whole after the catalog was
//! lost with the cluster. Pure: built from catalog records, read back as is;
//! the tick writes it (through [`crate::store`]) before the catalog marks
//! the point finished, so a finished point always has one.

use crate::catalog::{BackupRecord, BackupState, Consistency, PointState, Verification};
use crate::config::PolicyConfig;
use crate::span::Span;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Format version of the point file this dr writes.
pub const POINT_FILE_FORMAT: u32 = 1;

/// What the bucket keeps of one recovery point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointFile {
    pub format: u32,
    pub policy: String,
    pub tick: DateTime<Utc>,
    /// The verdict the tick reached (`complete`, `partial`, `failed`).
    pub state: PointState,
    pub point_at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
    pub consistency: Option<Consistency>,
    /// The manifest bundle's key, when it was stored.
    pub bundle: Option<String>,
    /// The policy as it was when the point was made.
    pub rpo: Span,
    pub rto: Span,
    pub runbook: String,
    pub backups: Vec<BackupEntry>,
}

/// One backup of a point, as the catalog recorded it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupEntry {
    pub volume: String,
    pub pvc: Option<String>,
    pub snapshot_name: String,
    pub backup_name: Option<String>,
    pub backup_url: Option<String>,
    pub state: BackupState,
    pub size_bytes: Option<i64>,
    pub snapshot_at: Option<DateTime<Utc>>,
    pub requested_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub verification: Verification,
    pub verified_at: Option<DateTime<Utc>>,
    /// The policy's content probe's answer just before the snapshot.
    pub content_checksum: Option<String>,
    pub fs_type: Option<String>,
}

/// The verdict of a tick, as it is about to be recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict<'a> {
    pub state: PointState,
    pub point_at: Option<DateTime<Utc>>,
    pub reason: Option<&'a str>,
    pub consistency: Option<Consistency>,
    pub bundle: Option<&'a str>,
}

impl PointFile {
    /// The file of a point from its policy, the tick's verdict and its
    /// backup rows.
    pub fn new(
        policy: &PolicyConfig,
        tick: DateTime<Utc>,
        verdict: &Verdict<'_>,
        backups: &[BackupRecord],
    ) -> PointFile {
        PointFile {
            format: POINT_FILE_FORMAT,
            policy: policy.name.to_string(),
            tick,
            state: verdict.state,
            point_at: verdict.point_at,
            reason: verdict.reason.map(str::to_owned),
            consistency: verdict.consistency,
            bundle: verdict.bundle.map(str::to_owned),
            rpo: policy.rpo.0,
            rto: policy.rto.0,
            runbook: policy.runbook.display().to_string(),
            backups: backups.iter().map(BackupEntry::from).collect(),
        }
    }

    /// The entry of a Longhorn backup, by its name.
    pub fn backup(&self, name: &str) -> Option<&BackupEntry> {
        self.backups
            .iter()
            .find(|b| b.backup_name.as_deref() == Some(name))
    }
}

impl From<&BackupRecord> for BackupEntry {
    fn from(b: &BackupRecord) -> Self {
        BackupEntry {
            volume: b.volume.to_string(),
            pvc: b.pvc.clone(),
            snapshot_name: b.snapshot_name.clone(),
            backup_name: b.backup_name.clone(),
            backup_url: b.backup_url.clone(),
            state: b.state,
            size_bytes: b.size_bytes,
            snapshot_at: b.snapshot_at,
            requested_at: b.requested_at,
            completed_at: b.completed_at,
            error: b.error.clone(),
            verification: b.verification,
            verified_at: b.verified_at,
            content_checksum: b.content_checksum.clone(),
            fs_type: b.fs_type.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{BackupId, PointId};
    use chrono::TimeZone;

    fn backup() -> BackupRecord {
        let t = Utc.with_ymd_and_hms(2026, 12, 4, 9, 45, 0).unwrap();
        BackupRecord {
            id: BackupId(3),
            point_id: PointId(1),
            volume: "pvc-0b6c".parse().unwrap(),
            pvc: Some("data-db-0".into()),
            snapshot_name: "dr-shop-20261204t094500-pvc-0b6c".into(),
            backup_name: Some("backup-1a2b".into()),
            backup_url: Some("s3://dr@us-east-1/?backup=backup-1a2b&volume=pvc-0b6c".into()),
            state: BackupState::Completed,
            progress: 100,
            size_bytes: Some(4096),
            snapshot_at: Some(t),
            requested_at: t,
            completed_at: Some(t),
            error: None,
            verification: Verification::Verified,
            verified_at: Some(t),
            pruned_at: None,
            content_checksum: Some("ab12".into()),
            fs_type: Some("ext4".into()),
        }
    }

    #[test]
    fn a_point_file_reads_back_as_written() {
        let policy: PolicyConfig = serde_norway::from_str(
            "{name: shop, namespace: shop, runbook: runbooks/standard.yaml}",
        )
        .unwrap();
        let tick = Utc.with_ymd_and_hms(2026, 12, 4, 9, 45, 0).unwrap();
        let verdict = Verdict {
            state: PointState::Complete,
            point_at: Some(tick),
            reason: None,
            consistency: Some(Consistency::CrashConsistent),
            bundle: Some("dr/bundles/shop/2026-12-04T094500Z.json"),
        };
        let f = PointFile::new(&policy, tick, &verdict, &[backup()]);
        let text = serde_json::to_string(&f).unwrap();
        assert!(text.contains("\"rpo\":\"15m\""), "{text}");
        let back: PointFile = serde_json::from_str(&text).unwrap();
        assert_eq!(back, f);
        let b = back.backup("backup-1a2b").unwrap();
        assert_eq!(b.content_checksum.as_deref(), Some("ab12"));
        assert_eq!(b.verification, Verification::Verified);
        assert!(back.backup("backup-other").is_none());
    }
}
