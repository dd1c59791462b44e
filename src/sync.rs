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
use crate::store::{self, BackupTargetUrl, Check, Store, StoreError};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

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
                if apply {
                    recover(
                        catalog,
                        verifier,
                        policy,
                        *tick,
                        backups,
                        has_bundle.then_some(&bundle_key),
                        clock.now(),
                    )
                    .await?;
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

async fn recover(
    catalog: &Catalog,
    verifier: &aws_sdk_s3::Client,
    policy: &PolicyConfig,
    tick: DateTime<Utc>,
    backups: &[Backup],
    bundle: Option<&String>,
    now: DateTime<Utc>,
) -> Result<(), SyncError> {
    let point = catalog.begin_point(&policy.name, tick, now).await?;
    let mut states = Vec::new();
    for b in backups {
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
                    fs_type: b.labels.get(LABEL_FS_TYPE).cloned(),
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
        if ok && let Ok(target) = BackupTargetUrl::parse(&b.url) {
            let v = match store::verify_backup(verifier, &target, &b.volume_name, &b.name).await {
                Ok(Check::Intact { .. }) => Some(Verification::Verified),
                Ok(Check::Broken(_)) => Some(Verification::Mismatch),
                Err(_) => None,
            };
            if let Some(v) = v {
                catalog.set_verification(row.id, v, now).await?;
            }
        }
        states.push(done.state);
    }
    if let Some(key) = bundle {
        catalog.set_bundle(point.id, key).await?;
    }
    let mut state = PointState::from_backups(&states);
    let mut reason = Some("rebuilt from the store by dr catalog sync".to_owned());
    if bundle.is_none() && state == PointState::Complete {
        state = PointState::Partial;
        reason = Some("rebuilt from the store; its manifest bundle is missing".into());
    }
    let point_at = backups
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
