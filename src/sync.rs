//! `dr catalog sync`: the catalog rebuilt from the store after it was lost.
//! Longhorn's backup list (backups carry dr's policy/tick/PVC labels) and the
//! manifest bundles in S3 are compared with the catalog: points the store has
//! and the catalog lacks are recorded again; every other disagreement is
//! reported, never silently repaired.

use crate::backup::{LABEL_FS_TYPE, LABEL_POLICY, LABEL_PVC, LABEL_TICK};
use crate::catalog::{
    BackupState, BackupUpdate, Catalog, CatalogError, NewBackup, PointState, Verification,
};
use crate::clock::Clock;
use crate::config::PolicyConfig;
use crate::longhorn::{Backup, LhBackupState, LonghornClient, LonghornError};
use crate::point_file::PointFile;
use crate::store::{self, BackupTargetUrl, Check, Store, StoreError};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// A failed sync.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Longhorn(#[from] LonghornError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One disagreement between catalog and store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    pub policy: String,
    pub tick: Option<DateTime<Utc>>,
    pub what: String,
}

/// What a sync found and did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncReport {
    /// Points recorded again from the store (or that would be, in a dry run).
    pub recovered: Vec<(String, DateTime<Utc>, usize)>,
    /// Disagreements left for a person to look at.
    pub differences: Vec<Difference>,
    /// How long Longhorn took to list the bucket's backups after dr asked
    /// for a backup-target sync; `None` when it listed them already.
    pub backup_target_sync_seconds: Option<f64>,
}

/// How long a sync waits for Longhorn to list the backups the bucket's
/// point files name, after asking for a backup-target sync.
pub const LISTING_WAIT: Duration = Duration::from_secs(120);

/// How long the listing may stay short after a sync before dr stops
/// waiting for it to grow.
pub const LISTING_SETTLED: Duration = Duration::from_secs(10);

/// Makes sure Longhorn lists what the bucket says exists before the two are
/// compared. The point files name every completed backup of every live
/// point: when Longhorn lists fewer, dr asks for a backup-target sync
/// (manager/engine.go `SyncBackupTarget`) and waits until it lists them, or
/// until the listing has not grown for [`LISTING_SETTLED`] (a backup deleted
/// from the store never comes back: the comparison then reports it), up to
/// `wait`. How long that took, when a sync was needed.
///
/// A fresh longhorn-manager syncs a new backup target at once
/// (controller/backup_target_controller.go `reconcile`: a target never
/// synced, `Status.LastSyncedAt` zero, needs one; the BackupVolume
/// controllers then list their backups), so there the request is mostly a
/// formality; it matters where a target was re-pointed at the store, or its
/// last sync (every 5 min) is older than the store's newest backups.
async fn await_listing(
    longhorn: &LonghornClient,
    store: &Store,
    policy: &str,
    wait: Duration,
) -> Result<Option<Duration>, SyncError> {
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for key in store.list_points(policy).await? {
        let Some(f) = store.get_point_at(&key).await? else {
            continue;
        };
        for b in f
            .backups
            .iter()
            .filter(|b| b.state == BackupState::Completed)
        {
            if let Some(n) = &b.backup_name {
                expected
                    .entry(b.volume.clone())
                    .or_default()
                    .push(n.clone());
            }
        }
    }
    let start = Instant::now();
    let mut asked = false;
    let mut fewest = usize::MAX;
    let mut since = Instant::now();
    loop {
        let mut unlisted = 0;
        for (volume, wanted) in &expected {
            let listed: BTreeSet<String> = longhorn
                .backups_of(volume)
                .await?
                .into_iter()
                .map(|b| b.name)
                .collect();
            unlisted += wanted.iter().filter(|n| !listed.contains(*n)).count();
        }
        if unlisted < fewest {
            fewest = unlisted;
            since = Instant::now();
        }
        let done = unlisted == 0
            || start.elapsed() >= wait
            || (asked && since.elapsed() >= LISTING_SETTLED);
        if done {
            return Ok(asked.then(|| start.elapsed()));
        }
        if !asked {
            longhorn.request_backup_target_sync().await?;
            asked = true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn tick_of_label(s: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(s, "%Y%m%dT%H%M%SZ")
        .ok()
        .map(|n| n.and_utc())
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.to_utc())
}

/// The store's view of one policy: its dr backups grouped by tick.
async fn store_side(
    longhorn: &LonghornClient,
    policy: &str,
) -> Result<BTreeMap<DateTime<Utc>, Vec<Backup>>, SyncError> {
    let mut by_tick: BTreeMap<DateTime<Utc>, Vec<Backup>> = BTreeMap::new();
    for bv in longhorn.list_backup_volumes().await? {
        for b in longhorn.backups_of(&bv.volume_name).await? {
            if b.labels.get(LABEL_POLICY).map(String::as_str) != Some(policy) {
                continue;
            }
            if let Some(t) = b.labels.get(LABEL_TICK).and_then(|t| tick_of_label(t)) {
                by_tick.entry(t).or_default().push(b);
            }
        }
    }
    Ok(by_tick)
}

/// Compares (and with `apply`, rebuilds) one policy's points.
pub async fn sync_policy(
    catalog: &Catalog,
    longhorn: &LonghornClient,
    store: &Store,
    verifier: &aws_sdk_s3::Client,
    policy: &PolicyConfig,
    apply: bool,
    clock: &Clock,
) -> Result<SyncReport, SyncError> {
    let name = policy.name.as_str();
    let mut report = SyncReport::default();
    let listing = await_listing(longhorn, store, name, LISTING_WAIT).await?;
    report.backup_target_sync_seconds = listing.map(|d| d.as_secs_f64());
    let in_store = store_side(longhorn, name).await?;
    let bundles: BTreeSet<String> = store.list_bundles(name).await?.into_iter().collect();
    let catalog_points = catalog.live_points(&policy.name).await?;
    let by_tick: BTreeMap<DateTime<Utc>, _> =
        catalog_points.iter().map(|p| (p.tick_at, p)).collect();
    let diff = |tick: Option<DateTime<Utc>>, what: String| Difference {
        policy: name.to_owned(),
        tick,
        what,
    };

    for (tick, backups) in &in_store {
        let bundle_key = store.bundle_key(name, *tick);
        let has_bundle = bundles.contains(&bundle_key);
        match by_tick.get(tick) {
            None => {
                report
                    .recovered
                    .push((name.to_owned(), *tick, backups.len()));
                let file = match store.get_point(name, *tick).await {
                    Ok(f) => f,
                    Err(e @ StoreError::Corrupt { .. }) => {
                        report.differences.push(diff(Some(*tick), e.to_string()));
                        None
                    }
                    Err(e) => return Err(e.into()),
                };
                if let Some(f) = &file {
                    report
                        .differences
                        .extend(terms_differ(policy, f).map(|w| diff(Some(*tick), w)));
                    report
                        .differences
                        .extend(gone_from_store(f, backups).into_iter().map(|n| {
                            diff(
                                Some(*tick),
                                format!(
                                    "backup {n} is in the point's file but missing from the store"
                                ),
                            )
                        }));
                }
                if apply {
                    let found = Found {
                        backups,
                        bundle: has_bundle.then_some(&bundle_key),
                        file: file.as_ref(),
                    };
                    recover(catalog, verifier, policy, *tick, &found, clock.now()).await?;
                }
            }
            Some(point) => {
                let rows = catalog.backups_of(point.id).await?;
                let known: BTreeSet<&str> = rows
                    .iter()
                    .filter_map(|r| r.backup_name.as_deref())
                    .collect();
                for b in backups {
                    if !known.contains(b.name.as_str()) {
                        report.differences.push(diff(
                            Some(*tick),
                            format!(
                                "backup {} of volume {} is in the store but not in point {}",
                                b.name, b.volume_name, point.id
                            ),
                        ));
                    }
                }
                let stored: BTreeSet<&str> = backups.iter().map(|b| b.name.as_str()).collect();
                for r in rows.iter().filter(|r| r.state == BackupState::Completed) {
                    if let Some(n) = &r.backup_name
                        && !stored.contains(n.as_str())
                    {
                        report.differences.push(diff(
                            Some(*tick),
                            format!("backup {n} of point {} is completed in the catalog but missing from the store", point.id),
                        ));
                    }
                }
                if point.bundle_key.is_some() && !has_bundle {
                    report.differences.push(diff(
                        Some(*tick),
                        format!(
                            "the manifest bundle of point {} is missing from S3",
                            point.id
                        ),
                    ));
                }
            }
        }
    }
    for p in &catalog_points {
        let has_completed = catalog
            .backups_of(p.id)
            .await?
            .iter()
            .any(|b| b.state == BackupState::Completed);
        if p.state != PointState::Pending && has_completed && !in_store.contains_key(&p.tick_at) {
            report.differences.push(diff(
                Some(p.tick_at),
                format!(
                    "point {} ({}) has no backup left in the store",
                    p.id, p.state
                ),
            ));
        }
    }
    Ok(report)
}

/// Where the policy's terms recorded in a point's file differ from the
/// configuration's: the point was made under other terms (a person should
/// know, the configuration is not changed).
fn terms_differ<'a>(
    policy: &'a PolicyConfig,
    f: &'a PointFile,
) -> impl Iterator<Item = String> + 'a {
    let runbook = policy.runbook.display().to_string();
    [
        ("RPO", f.rpo.to_string(), policy.rpo.0.to_string()),
        ("RTO", f.rto.to_string(), policy.rto.0.to_string()),
        ("runbook", f.runbook.clone(), runbook),
    ]
    .into_iter()
    .filter(|(_, then, now)| then != now)
    .map(|(what, then, now)| {
        format!("the point was made with {what} {then}; the configuration now says {now}")
    })
}

/// What the bucket holds of one tick.
struct Found<'a> {
    /// Longhorn's backups labelled with the tick.
    backups: &'a [Backup],
    /// The manifest bundle's key, when it is in S3.
    bundle: Option<&'a String>,
    /// The point's file, when dr wrote one (see [`crate::point_file`]).
    file: Option<&'a PointFile>,
}

/// The backups a point's file lists as completed that the store has not.
fn gone_from_store<'a>(f: &'a PointFile, backups: &[Backup]) -> Vec<&'a str> {
    let stored: BTreeSet<&str> = backups.iter().map(|b| b.name.as_str()).collect();
    f.backups
        .iter()
        .filter(|b| b.state == BackupState::Completed)
        .filter_map(|b| b.backup_name.as_deref())
        .filter(|n| !stored.contains(n))
        .collect()
}

/// The verdict of a rebuilt point: what its backups and bundle allow, never
/// better than the tick's own verdict in its file, and not whole when a
/// backup the file lists as completed is gone from the store.
fn rebuilt_verdict(states: &[BackupState], found: &Found<'_>) -> (PointState, String) {
    let mut state = PointState::from_backups(states);
    let mut reasons = vec!["rebuilt from the store by dr catalog sync".to_owned()];
    if found.bundle.is_none() && state == PointState::Complete {
        state = PointState::Partial;
        reasons.push("its manifest bundle is missing".into());
    }
    match found.file {
        None => reasons.push(
            "it has no point file, so its content checksums and verification were not recovered"
                .into(),
        ),
        Some(f) => {
            let gone = gone_from_store(f, found.backups);
            if !gone.is_empty() && state == PointState::Complete {
                state = PointState::Partial;
                reasons.push(format!(
                    "backups missing from the store: {}",
                    gone.join(", ")
                ));
            }
            if f.state != PointState::Complete && state == PointState::Complete {
                state = f.state;
                reasons.push(format!(
                    "the tick found it {}: {}",
                    f.state,
                    f.reason.as_deref().unwrap_or("no reason recorded")
                ));
            }
        }
    }
    (state, reasons.join("; "))
}

async fn recover(
    catalog: &Catalog,
    verifier: &aws_sdk_s3::Client,
    policy: &PolicyConfig,
    tick: DateTime<Utc>,
    found: &Found<'_>,
    now: DateTime<Utc>,
) -> Result<(), SyncError> {
    let point = catalog.begin_point(&policy.name, tick, now).await?;
    let mut states = Vec::new();
    for b in found.backups {
        let entry = found.file.and_then(|f| f.backup(&b.name));
        let Ok(volume) = b.volume_name.parse() else {
            continue;
        };
        let row = catalog
            .record_backup(&NewBackup {
                point_id: point.id,
                volume,
                pvc: b.labels.get(LABEL_PVC).cloned(),
                snapshot_name: b.snapshot_name.clone(),
                requested_at: parse_time(&b.snapshot_created).unwrap_or(tick),
            })
            .await?;
        if row.state.is_terminal() {
            states.push(row.state);
            continue;
        }
        let ok = b.state == LhBackupState::Completed;
        catalog
            .update_backup(
                row.id,
                &BackupUpdate {
                    state: Some(BackupState::BackingUp),
                    backup_name: Some(b.name.clone()),
                    snapshot_at: parse_time(&b.snapshot_created),
                    fs_type: b
                        .labels
                        .get(LABEL_FS_TYPE)
                        .cloned()
                        .or_else(|| entry.and_then(|e| e.fs_type.clone())),
                    ..Default::default()
                },
            )
            .await?;
        let done = catalog
            .update_backup(
                row.id,
                &BackupUpdate {
                    state: Some(if ok {
                        BackupState::Completed
                    } else {
                        BackupState::Failed
                    }),
                    backup_url: Some(b.url.clone()).filter(|u| !u.is_empty()),
                    progress: Some(b.progress),
                    size_bytes: b.size.map(|s| s as i64),
                    completed_at: parse_time(&b.created),
                    error: (!ok).then(|| format!("{:?} in Longhorn: {}", b.state, b.error)),
                    ..Default::default()
                },
            )
            .await?;
        if let Some(sum) = entry.and_then(|e| e.content_checksum.as_deref()) {
            catalog.set_content_checksum(row.id, sum).await?;
        }
        if ok {
            // Checked again now; the file's verdict stands only when the
            // store cannot be asked.
            let now_checked = match BackupTargetUrl::parse(&b.url) {
                Ok(target) => {
                    match store::verify_backup(verifier, &target, &b.volume_name, &b.name).await {
                        Ok(Check::Intact { .. }) => Some(Verification::Verified),
                        Ok(Check::Broken(_)) => Some(Verification::Mismatch),
                        Err(_) => None,
                    }
                }
                Err(_) => None,
            };
            let recorded = entry
                .map(|e| e.verification)
                .filter(|v| *v != Verification::Unverified);
            if let Some(v) = now_checked.or(recorded) {
                catalog.set_verification(row.id, v, now).await?;
            }
        }
        states.push(done.state);
    }
    if let Some(key) = found.bundle {
        catalog.set_bundle(point.id, key).await?;
    }
    if let Some(c) = found.file.and_then(|f| f.consistency) {
        catalog.set_consistency(point.id, c).await?;
    }
    let (state, reason) = rebuilt_verdict(&states, found);
    let reason = Some(reason);
    let point_at = found
        .backups
        .iter()
        .filter(|b| b.state == LhBackupState::Completed)
        .filter_map(|b| parse_time(&b.snapshot_created))
        .min();
    if catalog.point(point.id).await?.state == PointState::Pending {
        catalog
            .finish_point(point.id, state, point_at, reason.as_deref(), now)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::point_file::{BackupEntry, PointFile};

    fn lh(name: &str) -> Backup {
        serde_json::from_value(serde_json::json!({"name": name, "state": "Completed"}))
            .expect("a backup")
    }

    fn file(state: PointState, completed: &[&str]) -> PointFile {
        let t = Utc::now();
        PointFile {
            format: 1,
            policy: "shop".into(),
            tick: t,
            state,
            point_at: Some(t),
            reason: (state != PointState::Complete).then(|| "1 claims cannot be protected".into()),
            consistency: None,
            bundle: Some("k".into()),
            rpo: crate::span::Span::from_secs(900),
            rto: crate::span::Span::from_secs(3600),
            runbook: "runbooks/standard.yaml".into(),
            backups: completed
                .iter()
                .map(|n| BackupEntry {
                    volume: "v".into(),
                    pvc: None,
                    snapshot_name: "s".into(),
                    backup_name: Some((*n).into()),
                    backup_url: None,
                    state: BackupState::Completed,
                    size_bytes: None,
                    snapshot_at: None,
                    requested_at: t,
                    completed_at: None,
                    error: None,
                    verification: Verification::Verified,
                    verified_at: None,
                    content_checksum: None,
                    fs_type: None,
                })
                .collect(),
        }
    }

    #[test]
    fn a_rebuilt_point_is_never_better_than_what_the_bucket_holds() {
        let key = "k".to_owned();
        let backups = [lh("b1"), lh("b2")];
        let done = [BackupState::Completed, BackupState::Completed];
        let whole = file(PointState::Complete, &["b1", "b2"]);
        let verdict = |bundle, file| {
            rebuilt_verdict(
                &done,
                &Found {
                    backups: &backups,
                    bundle,
                    file,
                },
            )
        };
        assert_eq!(verdict(Some(&key), Some(&whole)).0, PointState::Complete);
        // No bundle: nothing to redeploy.
        let (s, why) = verdict(None, Some(&whole));
        assert_eq!(s, PointState::Partial, "{why}");
        // A backup the tick completed is gone from the store.
        let more = file(PointState::Complete, &["b1", "b2", "b3"]);
        let (s, why) = verdict(Some(&key), Some(&more));
        assert_eq!(s, PointState::Partial);
        assert!(why.contains("b3"), "{why}");
        // The tick itself found the point partial (a claim it could not
        // protect): Longhorn's backups alone would look complete.
        let partial = file(PointState::Partial, &["b1", "b2"]);
        let (s, why) = verdict(Some(&key), Some(&partial));
        assert_eq!(s, PointState::Partial);
        assert!(why.contains("cannot be protected"), "{why}");
        // No file (a point made before dr wrote them): complete, and says
        // what was not recovered.
        let (s, why) = verdict(Some(&key), None);
        assert_eq!(s, PointState::Complete);
        assert!(why.contains("content checksums"), "{why}");
    }
}
