//! The fan-out of a tick's volumes, between `tick` (mod.rs) and each volume's
//! phases (volume.rs): the rows written ahead, the gates the volumes share
//! (snapshots ahead, backup requests at once, the volume listing, the
//! volumes' backup targets), and one task per volume.

use super::targets::SharedTargets;
use super::{Events, Protect, TickError, VolumeOutcome, snapshot_name};
use crate::catalog::{BackupRecord, NewBackup, PointId};
use crate::cluster::ProtectedVolume;
use crate::config::PolicyConfig;
use crate::longhorn::{SnapshotPace, VolumeWatch};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// What the volumes of one tick share: limits, the volume listing, the
/// volumes' backup targets, where progress goes.
#[derive(Clone)]
pub(super) struct Gates {
    /// Snapshot calls in flight (held per call, not while waiting), and
    /// later the store checks.
    pub(super) snapshots: Arc<Semaphore>,
    /// The snapshots' waits for readiness (their looks take `snapshots`).
    pub(super) pace: Arc<SnapshotPace>,
    pub(super) requests: Arc<Semaphore>,
    pub(super) watch: Arc<VolumeWatch>,
    /// The volumes' backup targets, read once on the side.
    pub(super) targets: SharedTargets,
    pub(super) events: Events,
    /// For the policy's content probe, if any.
    pub(super) http: reqwest::Client,
    /// How many volumes have not had their backup requested yet.
    pub(super) unrequested: Arc<tokio::sync::watch::Sender<usize>>,
}

/// Held by a volume until its backup is requested (or it gives up): checks
/// in the store wait until no volume holds one, so that they do not take
/// CPU and connections from the requests, which set the tick's RPO.
pub(super) struct Unrequested(Arc<tokio::sync::watch::Sender<usize>>);

impl Drop for Unrequested {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Protect {
    /// Snapshots, backs up, follows and verifies every volume of the tick,
    /// `concurrency` backup requests at a time.
    pub(super) async fn fan_out(
        &self,
        policy: &PolicyConfig,
        tick_at: DateTime<Utc>,
        point_id: PointId,
        volumes: &[ProtectedVolume],
        events: &Events,
        targets: SharedTargets,
    ) -> Result<Vec<VolumeOutcome>, TickError> {
        // Every volume's row is written before Longhorn is asked anything
        // about it. The rows of the volumes snapshotted first go in a
        // transaction of their own, and the rest while those snapshots are
        // taken: a crash in between leaves the point pending, and resuming
        // it resolves the volumes again and writes the rows still missing
        // (a row is keyed by point and volume).
        let conc = self.options.concurrency.max(1);
        let snapshots_at_once = conc * 3;
        let now = self.options.clock.now();
        let new_rows = volumes
            .iter()
            .map(|v| NewBackup {
                point_id,
                volume: v.volume.clone(),
                pvc: Some(v.pvc.clone()),
                snapshot_name: snapshot_name(policy.name.as_str(), tick_at, v.volume.as_str()),
                requested_at: now,
            })
            .collect::<Vec<_>>();
        let (head, tail) = new_rows.split_at(new_rows.len().min(snapshots_at_once));
        let by_volume = |rows: Vec<BackupRecord>| -> HashMap<String, BackupRecord> {
            rows.into_iter()
                .map(|r| (r.volume.to_string(), r))
                .collect()
        };
        let head_rows = by_volume(self.catalog.record_backups(head).await?);
        // The rest of the rows, once written (empty if writing them failed).
        let (tail_tx, tail_rx) = tokio::sync::watch::channel(None::<Arc<HashMap<_, _>>>);
        let write_tail = async {
            let (rows, written) = match self.catalog.record_backups(tail).await {
                Ok(rows) => (by_volume(rows), Ok(())),
                Err(e) => (HashMap::new(), Err(e)),
            };
            tail_tx.send_replace(Some(Arc::new(rows)));
            written
        };

        let snapshots = Arc::new(Semaphore::new(snapshots_at_once));
        let gates = Gates {
            pace: Arc::new(SnapshotPace::new(snapshots.clone())),
            snapshots,
            requests: Arc::new(Semaphore::new(conc)),
            watch: Arc::new(VolumeWatch::new(self.longhorn.clone())),
            targets,
            events: events.clone(),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .unwrap_or_default(),
            unrequested: Arc::new(tokio::sync::watch::Sender::new(volumes.len())),
        };
        // Each volume is a task of its own, so that the runtime's workers
        // share the tick's thousands of answers instead of one task taking
        // them in turn (a batch of answers then waited behind each other,
        // and so did the next requests). Dropping the tick aborts them.
        let this = Arc::new(self.clone());
        let policy = Arc::new(policy.clone());
        let mut tasks = tokio::task::JoinSet::new();
        for v in volumes.iter().cloned() {
            let gates = gates.clone();
            let head_row = head_rows.get(v.volume.as_str()).cloned();
            let mut tail_rx = tail_rx.clone();
            // One per volume, made before any volume starts.
            let ticket = Unrequested(gates.unrequested.clone());
            let (this, policy) = (this.clone(), policy.clone());
            tasks.spawn(async move {
                let row = match head_row {
                    Some(r) => Some(r),
                    None => tail_rx
                        .wait_for(Option::is_some)
                        .await
                        .ok()
                        .and_then(|rows| rows.as_ref()?.get(v.volume.as_str()).cloned()),
                };
                this.volume(&policy, tick_at, v, row, gates, ticket).await
            });
        }
        let fan = async {
            let mut outcomes = Vec::with_capacity(volumes.len());
            while let Some(joined) = tasks.join_next().await {
                match joined {
                    Ok(outcome) => outcomes.push(outcome),
                    // A panic stays the tick's, as when the volumes shared its
                    // task: the point stays pending, to be resumed, and no
                    // row is left unfinished under a finished point. (Tasks
                    // are only cancelled by dropping the set, which ends this.)
                    Err(e) => std::panic::resume_unwind(
                        e.try_into_panic()
                            .unwrap_or_else(|e| Box::new(e.to_string())),
                    ),
                }
            }
            outcomes
        };
        let (written, outcomes) = tokio::join!(write_tail, fan);
        // Volumes without a row asked Longhorn nothing; the point stays
        // pending, to be resumed, as when no row could be written at all.
        written?;
        Ok(outcomes)
    }
}
