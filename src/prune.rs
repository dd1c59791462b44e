//! Retention applied: the pure decision of [`crate::retention`] over the
//! catalog's points, the intent recorded (each pruned point marked before
//! anything is deleted), then the pruned points' backups deleted in Longhorn
//! and their rows marked pruned, and then the pruned points' manifest
//! bundles deleted from the store. Deleting is idempotent, so an interrupted
//! prune is finished by the next one.

use crate::catalog::{BackupRecord, BackupState, BackupUpdate, Catalog, CatalogError, PointState};
use crate::clock::Clock;
use crate::config::PolicyConfig;
use crate::longhorn::LonghornClient;
use crate::names::PolicyName;
use crate::retention::{self, Candidate, Verdict};
use crate::store::Store;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Serialize;
use std::time::Duration;

/// A failed prune.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// Retention's verdicts for a policy's live points, newest first.
pub async fn plan(
    catalog: &Catalog,
    policy: &PolicyConfig,
    now: DateTime<Utc>,
) -> Result<Vec<Verdict>, PruneError> {
    let points = catalog.live_points(&policy.name).await?;
    let candidates: Vec<Candidate> = points
        .iter()
        .map(|p| Candidate {
            id: p.id,
            at: p.point_at.unwrap_or(p.tick_at),
            state: p.state,
        })
        .collect();
    Ok(retention::decide(&candidates, &policy.retain, now))
}

/// What a prune did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneReport {
    pub points_pruned: usize,
    pub backups_deleted: usize,
    /// Manifest bundles of pruned points deleted from the store.
    pub bundles_deleted: usize,
    /// Backups Longhorn would not delete now; they are deleted by the next
    /// prune (their points are already pruned, never planned again).
    pub errors: Vec<String>,
}

/// How many backups are deleted at once: each deletion waits for Longhorn
/// to remove the backup from the store (seconds), so one at a time could
/// not keep up with a short schedule.
pub const DELETIONS_AT_ONCE: usize = 8;

/// Prunes what retention decided, crash-safely: every pruned point is
/// marked `pruned` *before* any of its backups is deleted (so a plan never
/// picks a point whose backups are going), then the backups of every pruned
/// point of `policy` that still has some (this prune's, and those a crash
/// or a refusal left behind) are deleted, [`DELETIONS_AT_ONCE`] at a time,
/// each row marked pruned as its backup goes.
pub async fn execute(
    catalog: &Catalog,
    longhorn: &LonghornClient,
    store: &Store,
    policy: &PolicyName,
    verdicts: &[Verdict],
    wait: Duration,
    clock: &Clock,
) -> Result<PruneReport, PruneError> {
    let mut report = PruneReport::default();
    for v in verdicts.iter().filter(|v| v.prune()) {
        catalog
            .finish_point(v.id, PointState::Pruned, None, None, clock.now())
            .await?;
        report.points_pruned += 1;
    }
    let left = catalog.backups_left_of_pruned_points(policy).await?;
    let deletions = futures::stream::iter(left)
        .map(|b| delete_one(catalog, longhorn, b, wait, clock))
        .buffer_unordered(DELETIONS_AT_ONCE);
    futures::pin_mut!(deletions);
    while let Some(done) = deletions.next().await {
        match done? {
            Ok(()) => report.backups_deleted += 1,
            Err(e) => report.errors.push(e),
        }
    }
    // A bundle goes last, when its point's backups are all gone: a crash
    // before leaves it for the next prune.
    // The point's file goes first: a crash between leaves the bundle, and
    // with it this point on the list, for the next prune.
    for (point, key) in catalog.bundles_of_pruned_points(policy).await? {
        let tick = catalog.point(point).await?.tick_at;
        let deleted = match store.delete_point(policy.as_str(), tick).await {
            Ok(()) => store.delete_bundle(&key).await,
            Err(e) => Err(e),
        };
        match deleted {
            Ok(()) => {
                catalog.clear_bundle(point).await?;
                report.bundles_deleted += 1;
            }
            Err(e) => report.errors.push(format!("bundle of point {point}: {e}")),
        }
    }
    Ok(report)
}

/// Deletes one backup and marks its row; `Ok(Err(text))` when Longhorn
/// would not delete it now.
async fn delete_one(
    catalog: &Catalog,
    longhorn: &LonghornClient,
    b: BackupRecord,
    wait: Duration,
    clock: &Clock,
) -> Result<Result<(), String>, PruneError> {
    if let Some(name) = &b.backup_name
        && let Err(e) = longhorn.delete_backup(b.volume.as_str(), name, wait).await
    {
        return Ok(Err(format!("backup {name} of volume {}: {e}", b.volume)));
    }
    let pruned = BackupUpdate {
        state: Some(BackupState::Pruned),
        pruned_at: Some(clock.now()),
        ..Default::default()
    };
    catalog.update_backup(b.id, &pruned).await?;
    Ok(Ok(()))
}

/// Rows removed from the catalog's history by [`compact_history`].
pub use crate::catalog::Compacted;

/// Statements' batch size: small enough that a tick's writes never wait long.
const COMPACT_BATCH: i64 = 500;

/// Compacts the catalog's history (see `catalog::history`) in small
/// batches until nothing is left to remove: backup rows first (a point goes
/// only once its rows are gone), then tick outcomes, then points.
///
/// On SQLite, dr's one connection is shared with ticks: it pauses between
/// batches so that a tick's writes never wait more than one statement. On
/// PostgreSQL ticks write on other connections, and rows of long-pruned
/// points are never theirs, so it does not pause.
pub async fn compact_history(
    catalog: &Catalog,
    history: &crate::config::HistoryConfig,
    now: DateTime<Utc>,
) -> Result<Compacted, PruneError> {
    // A span longer than the calendar reaches keeps everything.
    let before = |span: crate::span::Span| {
        now.checked_sub_signed(span.as_chrono())
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    };
    let (backups_before, points_before) = (before(history.pruned_backups), before(history.points));
    let pause = catalog.backend() == crate::catalog::Backend::Sqlite;
    let backup_rows = until_none(pause, || {
        catalog.compact_backup_rows(backups_before, COMPACT_BATCH)
    })
    .await?;
    let ticks = until_none(pause, || {
        catalog.compact_ticks(points_before, COMPACT_BATCH)
    })
    .await?;
    let points = until_none(pause, || {
        catalog.compact_points(points_before, COMPACT_BATCH)
    })
    .await?;
    Ok(Compacted {
        backup_rows,
        points,
        ticks,
    })
}

/// Runs one batch after another until one removes nothing; the rows
/// removed in all.
async fn until_none<F, Fut>(pause: bool, mut batch: F) -> Result<u64, PruneError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64, crate::catalog::CatalogError>>,
{
    let mut total = 0;
    loop {
        let n = batch().await?;
        total += n;
        if n == 0 {
            return Ok(total);
        }
        if pause {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
