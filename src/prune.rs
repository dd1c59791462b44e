//! Retention applied: the pure decision of [`crate::retention`] over the
//! catalog's points, then each pruned point's backups deleted in Longhorn and
//! its rows marked pruned. Deleting is idempotent, so an interrupted prune is
//! finished by the next one.

use crate::catalog::{BackupState, BackupUpdate, Catalog, CatalogError, PointState};
use crate::clock::Clock;
use crate::config::PolicyConfig;
use crate::longhorn::{LonghornClient, LonghornError};
use crate::retention::{self, Candidate, Verdict};
use chrono::{DateTime, Utc};
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
    /// Backups Longhorn would not delete now; their points stay for the next prune.
    pub errors: Vec<String>,
}

/// Deletes the backups of every point retention prunes, then marks the point.
pub async fn execute(
    catalog: &Catalog,
    longhorn: &LonghornClient,
    verdicts: &[Verdict],
    wait: Duration,
    clock: &Clock,
) -> Result<PruneReport, PruneError> {
    let mut report = PruneReport::default();
    for v in verdicts.iter().filter(|v| v.prune()) {
        let mut all_gone = true;
        for b in catalog.backups_of(v.id).await? {
            if b.state == BackupState::Pruned {
                continue;
            }
            if !b.state.is_terminal() {
                // Retention never prunes pending points, but be safe.
                all_gone = false;
                continue;
            }
            let deleted: Result<(), LonghornError> = match &b.backup_name {
                Some(name) => longhorn.delete_backup(b.volume.as_str(), name, wait).await,
                None => Ok(()),
            };
            match deleted {
                Ok(()) => {
                    catalog
                        .update_backup(
                            b.id,
                            &BackupUpdate {
                                state: Some(BackupState::Pruned),
                                ..Default::default()
                            },
                        )
                        .await?;
                    report.backups_deleted += 1;
                }
                Err(e) => {
                    all_gone = false;
                    report.errors.push(format!(
                        "backup {} of volume {}: {e}",
                        b.backup_name.as_deref().unwrap_or("-"),
                        b.volume
                    ));
                }
            }
        }
        if all_gone {
            catalog
                .finish_point(v.id, PointState::Pruned, None, None, clock.now())
                .await?;
            report.points_pruned += 1;
        }
    }
    Ok(report)
}
