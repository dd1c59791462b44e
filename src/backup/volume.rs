//! One volume of a tick, once `fan_out` (fan_out.rs) gave it its row and the
//! gates: its work as phases (snapshot with the content probe, backup
//! request, follow, verify), the first one chosen from its catalog row by
//! [`next_phase`], so resuming after a crash is running the next phase.

use super::fan_out::{Gates, Unrequested};
use super::{
    Event, LABEL_FS_TYPE, LABEL_POLICY, LABEL_PVC, LABEL_TICK, Protect, VolumeOutcome,
    snapshot_name,
};
use crate::catalog::{
    BackupId, BackupRecord, BackupState, BackupUpdate, CatalogError, Verification,
};
use crate::cluster::ProtectedVolume;
use crate::config::PolicyConfig;
use crate::longhorn::{CompletedBackup, LonghornError};
use crate::store::{self, BackupTargetUrl, Check};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use tokio::sync::AcquireError;

/// What is left to do for a volume. The first phase comes from its row
/// ([`next_phase`]); each phase then says which one comes next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Phase {
    /// Make the snapshot ready. `fresh` (the row is still pending): probe
    /// the content first, then create the snapshot without looking (an
    /// earlier attempt's snapshot of the same name is accepted as it is:
    /// creation refuses duplicates by name); else ensure it exists.
    /// `asked` goes on to [`Phase::Request`].
    Snapshot { fresh: bool, asked: bool },
    /// Ask for the backup of the ready snapshot. `asked`: an earlier attempt
    /// may have asked already (the row is backing up, with no backup name),
    /// so Longhorn is looked at before asking again.
    Request {
        asked: bool,
        snapshot_at: Option<DateTime<Utc>>,
    },
    /// Record the backup's name, and follow it until Longhorn completes it.
    Follow { backup: String },
    /// Check the completed backup's objects in the backup store.
    Verify {
        backup: String,
        url: String,
        state: BackupState,
    },
    /// Delete dr's older snapshots of the volume (snapshots.rs), keeping
    /// the one just backed up.
    Tidy(Finished),
    /// Nothing left to do.
    Done(Finished),
}

/// How a volume ended, when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Finished {
    pub(super) backup: Option<String>,
    pub(super) state: BackupState,
    pub(super) verification: Verification,
}

/// The phase to run next for the volume whose catalog row is `row`. Pure.
pub(super) fn next_phase(row: &BackupRecord) -> Phase {
    match (row.state, &row.backup_name) {
        // Completed, but its check in the store was cut short (a crash):
        // verified now, before the point can count for the RPO.
        (BackupState::Completed, Some(backup))
            if row.verification == Verification::Unverified && row.backup_url.is_some() =>
        {
            Phase::Verify {
                backup: backup.clone(),
                url: row.backup_url.clone().unwrap_or_default(),
                state: BackupState::Completed,
            }
        }
        (state, backup) if state.is_terminal() => Phase::Done(Finished {
            backup: backup.clone(),
            state,
            verification: row.verification,
        }),
        // Resumed after the backup was found: only following is left.
        (BackupState::BackingUp, Some(backup)) => Phase::Follow {
            backup: backup.clone(),
        },
        (state, _) => Phase::Snapshot {
            fresh: state == BackupState::Pending,
            asked: !matches!(state, BackupState::Pending | BackupState::Snapshotting),
        },
    }
}

/// Why a volume's work stopped, by the operation that failed. It becomes
/// text only in the volume's row and outcome.
#[derive(Debug, thiserror::Error)]
pub(super) enum VolumeError {
    #[error("no catalog row was recorded for this volume")]
    NoRow { volume: String },
    /// The tick's snapshot gate was closed.
    #[error("{source}")]
    SnapshotSlot {
        volume: String,
        source: AcquireError,
    },
    #[error("snapshot: {source}")]
    Snapshot {
        volume: String,
        snapshot: String,
        source: LonghornError,
    },
    /// The volume's backup target is a store dr cannot read.
    #[error("volume {volume} cannot be protected by dr: {reason}")]
    Unprotectable { volume: String, reason: String },
    /// The volume is at its snapshot limit: no snapshot can be made until
    /// some are deleted.
    #[error(
        "snapshot: volume {volume} is at its snapshot limit (snapshotMaxCount), so Longhorn refuses new snapshots ({message}); dr keeps one snapshot of its own per policy, so delete snapshots made by others or raise the volume's snapshotMaxCount"
    )]
    SnapshotLimit {
        volume: String,
        snapshot: String,
        message: String,
    },
    /// The row's move to backing_up, before the first request.
    #[error("{source}")]
    RecordBackingUp { row: BackupId, source: CatalogError },
    /// The tick's request gate was closed.
    #[error("{source}")]
    RequestSlot {
        volume: String,
        source: AcquireError,
    },
    #[error("backup request: {source}")]
    BackupRequest {
        volume: String,
        snapshot: String,
        source: LonghornError,
    },
    #[error("{source}")]
    RecordBackupName {
        row: BackupId,
        backup: String,
        source: CatalogError,
    },
    /// Longhorn ended the backup in `Error` or `Unknown`.
    #[error("{source}")]
    BackupFailed {
        backup: String,
        source: LonghornError,
    },
    #[error("following the backup: {source}")]
    Follow {
        backup: String,
        source: LonghornError,
    },
    #[error("{source}")]
    RecordCompleted {
        row: BackupId,
        backup: String,
        source: CatalogError,
    },
    /// The tick's snapshot gate, shared by the checks, was closed.
    #[error("{source}")]
    VerifySlot {
        backup: String,
        source: AcquireError,
    },
}

impl VolumeError {
    /// The backup's name, once Longhorn gave one.
    fn backup(&self) -> Option<&str> {
        match self {
            VolumeError::RecordBackupName { backup, .. }
            | VolumeError::BackupFailed { backup, .. }
            | VolumeError::Follow { backup, .. }
            | VolumeError::RecordCompleted { backup, .. }
            | VolumeError::VerifySlot { backup, .. } => Some(backup),
            _ => None,
        }
    }

    /// Whether the row is marked failed with this text: Longhorn's failures
    /// are; the catalog's and the gates' leave the row as it was.
    fn fails_row(&self) -> bool {
        matches!(
            self,
            VolumeError::Snapshot { .. }
                | VolumeError::SnapshotLimit { .. }
                | VolumeError::Unprotectable { .. }
                | VolumeError::BackupRequest { .. }
                | VolumeError::BackupFailed { .. }
                | VolumeError::Follow { .. }
        )
    }
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.to_utc())
}

impl Protect {
    /// Snapshot, backup, follow and verify one volume; never fails the tick:
    /// the outcome says what happened.
    pub(super) async fn volume(
        &self,
        policy: &PolicyConfig,
        tick_at: DateTime<Utc>,
        v: ProtectedVolume,
        row: Option<BackupRecord>,
        gates: Gates,
        ticket: Unrequested,
    ) -> VolumeOutcome {
        let volume = v.volume.to_string();
        let mut out = VolumeOutcome {
            volume: volume.clone(),
            pvc: v.pvc.clone(),
            backup: None,
            state: BackupState::Pending,
            verification: Verification::Unverified,
            error: None,
        };
        let Some(row) = row else {
            out.state = BackupState::Failed;
            out.error = Some(VolumeError::NoRow { volume }.to_string());
            return out;
        };
        let work = Work::new(self, policy, tick_at, &v, row.id, &gates);
        match work.run(next_phase(&row), ticket).await {
            Ok(finished) => {
                out.backup = finished.backup;
                out.state = finished.state;
                out.verification = finished.verification;
            }
            Err(e) => {
                out.backup = e.backup().map(str::to_owned);
                out.state = BackupState::Failed;
                out.error = Some(e.to_string());
            }
        }
        (gates.events)(Event::VolumeDone {
            volume,
            state: out.state,
            verification: out.verification,
            error: out.error.clone(),
        });
        out
    }
}

/// One volume's work in a tick: what its phases share.
struct Work<'a> {
    protect: &'a Protect,
    policy: &'a PolicyConfig,
    v: &'a ProtectedVolume,
    row: BackupId,
    gates: &'a Gates,
    snapshot: String,
    labels: BTreeMap<String, String>,
}

impl<'a> Work<'a> {
    fn new(
        protect: &'a Protect,
        policy: &'a PolicyConfig,
        tick_at: DateTime<Utc>,
        v: &'a ProtectedVolume,
        row: BackupId,
        gates: &'a Gates,
    ) -> Self {
        let mut labels: BTreeMap<String, String> = [
            (LABEL_POLICY.to_owned(), policy.name.to_string()),
            (
                LABEL_TICK.to_owned(),
                tick_at.format("%Y%m%dT%H%M%SZ").to_string(),
            ),
            (LABEL_PVC.to_owned(), v.pvc.clone()),
        ]
        .into();
        // In the backup's labels too, so a catalog rebuilt from the store
        // restores the volume with its filesystem.
        if let Some(fs) = &v.fs_type {
            labels.insert(LABEL_FS_TYPE.to_owned(), fs.clone());
        }
        Work {
            snapshot: snapshot_name(policy.name.as_str(), tick_at, v.volume.as_str()),
            protect,
            policy,
            v,
            row,
            gates,
            labels,
        }
    }

    fn volume(&self) -> &'a str {
        self.v.volume.as_str()
    }

    fn stage(&self, stage: &str, progress: i64) {
        (self.gates.events)(Event::Volume {
            volume: self.volume().to_owned(),
            pvc: self.v.pvc.clone(),
            stage: stage.to_owned(),
            progress,
        });
    }

    /// Runs the phases from `phase` on. `ticket` is given back when the
    /// backup is requested, or after a failure is written to the row.
    async fn run(&self, mut phase: Phase, ticket: Unrequested) -> Result<Finished, VolumeError> {
        let mut ticket = Some(ticket);
        let ran = loop {
            let next = match phase {
                Phase::Snapshot { fresh, asked } => self.snapshot(fresh, asked).await,
                Phase::Request { asked, snapshot_at } => self.request(asked, snapshot_at).await,
                Phase::Follow { backup } => {
                    drop(ticket.take());
                    self.follow(backup).await
                }
                Phase::Verify { backup, url, state } => {
                    // Verification waits until no volume holds a ticket: a
                    // resumed volume that starts here gives its own back.
                    drop(ticket.take());
                    self.verify(backup, &url, state).await
                }
                Phase::Tidy(finished) => Ok(self.tidy(finished).await),
                Phase::Done(finished) => break Ok(finished),
            };
            match next {
                Ok(next) => phase = next,
                Err(e) => break Err(e),
            }
        };
        if let Err(e) = &ran
            && e.fails_row()
        {
            self.fail(e).await;
        }
        drop(ticket);
        ran
    }

    /// Marks the row failed with `e`'s text (if that cannot be written, the
    /// outcome still says the volume failed).
    async fn fail(&self, e: &VolumeError) {
        let failed = BackupUpdate {
            state: Some(BackupState::Failed),
            error: Some(e.to_string()),
            completed_at: Some(self.protect.options.clock.now()),
            ..Default::default()
        };
        let _ = self.protect.catalog.update_backup(self.row, &failed).await;
    }

    /// The snapshot, asked for within the tick's limit of snapshot calls,
    /// then made ready.
    async fn snapshot(&self, fresh: bool, asked: bool) -> Result<Phase, VolumeError> {
        let (longhorn, volume) = (&self.protect.longhorn, self.volume());
        let permit = match self.gates.snapshots.acquire().await {
            Ok(permit) => permit,
            Err(source) => {
                let volume = volume.to_owned();
                return Err(VolumeError::SnapshotSlot { volume, source });
            }
        };
        self.stage("snapshot", 0);
        if fresh && let Some(content) = &self.policy.content {
            self.probe_content(&content.checksum_url).await;
        }
        // The permit covers the probe and the request, so that the content
        // read is taken right before the snapshot; the wait for readiness
        // holds it per look only (longhorn::SnapshotPace).
        let (labels, wait) = (&self.labels, self.protect.options.snapshot_wait);
        let requested = longhorn
            .request_snapshot(volume, &self.snapshot, labels, !fresh)
            .await;
        drop(permit);
        let snapped = match requested {
            Ok(()) => {
                let pace = Some(self.gates.pace.as_ref());
                longhorn
                    .await_snapshot(volume, &self.snapshot, labels, wait, pace)
                    .await
            }
            Err(e) => Err(e),
        };
        let snap = match snapped {
            Ok(snap) => snap,
            Err(source) => return Err(self.snapshot_failed(source).await),
        };
        Ok(Phase::Request {
            asked,
            snapshot_at: parse_time(&snap.creation_time),
        })
    }

    /// A snapshot that cannot become ready: its CR is deleted (Longhorn
    /// would retry it forever and keep a detached volume attached for it:
    /// controller/snapshot_controller.go `reconcile` keeps the attachment
    /// ticket until the snapshot is created), and the limit is told apart.
    async fn snapshot_failed(&self, source: LonghornError) -> VolumeError {
        let (volume, snapshot) = (self.volume().to_owned(), self.snapshot.clone());
        let LonghornError::SnapshotFailed { message, .. } = &source else {
            return VolumeError::Snapshot {
                volume,
                snapshot,
                source,
            };
        };
        let longhorn = &self.protect.longhorn;
        if let Err(e) = longhorn.delete_snapshot(&volume, &snapshot).await {
            tracing::warn!(%volume, %snapshot, error = %e, "cannot delete the failed snapshot");
        }
        if crate::longhorn::snapshot_error_is_limit(message) {
            let message = message.clone();
            return VolumeError::SnapshotLimit {
                volume,
                snapshot,
                message,
            };
        }
        VolumeError::Snapshot {
            volume,
            snapshot,
            source,
        }
    }

    /// What the data looks like right before the snapshot, for drills.
    async fn probe_content(&self, checksum_url: &str) {
        let volume = self.volume();
        match crate::probe::content_checksum(&self.gates.http, checksum_url, volume).await {
            Ok(sum) => {
                let catalog = &self.protect.catalog;
                let _ = catalog.set_content_checksum(self.row, &sum).await;
            }
            Err(e) => {
                tracing::warn!(%volume, error = %e, "content probe failed; drills cannot compare this volume")
            }
        }
    }

    /// The backup request, at most `concurrency` at once. Asked before: the
    /// request looks for the backup first. Never asked: the row moves to
    /// backing_up *before* the request, so a crash from here on makes the
    /// next attempt look before asking.
    async fn request(
        &self,
        asked: bool,
        snapshot_at: Option<DateTime<Utc>>,
    ) -> Result<Phase, VolumeError> {
        self.check_target().await?;
        let backup = if asked {
            let longhorn = &self.protect.longhorn;
            longhorn
                .request_backup(self.volume(), &self.snapshot, &self.labels)
                .await
                .map(|found| found.backup)
                .map_err(|e| self.request_failed(e))?
        } else {
            self.record_backing_up(snapshot_at).await?;
            self.first_request().await?
        };
        Ok(Phase::Follow { backup })
    }

    /// Refuses a volume whose backup target dr cannot read (targets.rs),
    /// deleting the snapshot made for it.
    async fn check_target(&self) -> Result<(), VolumeError> {
        let targets = self.gates.targets.clone().await;
        let Some(reason) = targets.and_then(|t| t.refusal(self.volume())) else {
            return Ok(());
        };
        let (longhorn, volume) = (&self.protect.longhorn, self.volume());
        if let Err(e) = longhorn.delete_snapshot(volume, &self.snapshot).await {
            tracing::warn!(%volume, error = %e, "cannot delete the snapshot of a refused volume");
        }
        Err(VolumeError::Unprotectable {
            volume: volume.to_owned(),
            reason,
        })
    }

    /// Recorded before waiting for a request slot, so the slot is held only
    /// for the call itself.
    async fn record_backing_up(
        &self,
        snapshot_at: Option<DateTime<Utc>>,
    ) -> Result<(), VolumeError> {
        let backing_up = BackupUpdate {
            state: Some(BackupState::BackingUp),
            snapshot_at,
            fs_type: self.v.fs_type.clone(),
            ..Default::default()
        };
        let (catalog, row) = (&self.protect.catalog, self.row);
        match catalog.update_backup(row, &backing_up).await {
            Ok(_) => Ok(()),
            Err(source) => Err(VolumeError::RecordBackingUp { row, source }),
        }
    }

    /// `snapshotBackup`, then the backup's name: found in the shared
    /// listing, or else by the volume's backup list (where the snapshot is
    /// named at once).
    async fn first_request(&self) -> Result<String, VolumeError> {
        let (longhorn, volume) = (&self.protect.longhorn, self.volume());
        let permit = match self.gates.requests.acquire().await {
            Ok(permit) => permit,
            Err(source) => {
                let volume = volume.to_owned();
                return Err(VolumeError::RequestSlot { volume, source });
            }
        };
        let slot_at = std::time::Instant::now();
        let started = longhorn
            .start_backup(volume, &self.snapshot, &self.labels)
            .await;
        drop(permit);
        (self.gates.events)(Event::Requested {
            volume: volume.to_owned(),
            took: slot_at.elapsed(),
        });
        let cause = started.map_err(|e| self.request_failed(e))?;
        let watch = &self.gates.watch;
        match watch
            .discover(volume, &self.snapshot, watch.discovery_window())
            .await
        {
            Some(backup) => Ok(backup),
            None => longhorn
                .discover_backup(volume, &self.snapshot, &cause)
                .await
                .map(|found| found.backup)
                .map_err(|e| self.request_failed(e)),
        }
    }

    fn request_failed(&self, source: LonghornError) -> VolumeError {
        VolumeError::BackupRequest {
            volume: self.volume().to_owned(),
            snapshot: self.snapshot.clone(),
            source,
        }
    }

    /// The backup's name recorded, then the backup followed in the shared
    /// listing until Longhorn completes it, and its completion recorded.
    async fn follow(&self, backup: String) -> Result<Phase, VolumeError> {
        let (catalog, volume) = (&self.protect.catalog, self.volume());
        let named = BackupUpdate {
            state: Some(BackupState::BackingUp),
            backup_name: Some(backup.clone()),
            ..Default::default()
        };
        if let Err(source) = catalog.update_backup(self.row, &named).await {
            let row = self.row;
            return Err(VolumeError::RecordBackupName {
                row,
                backup,
                source,
            });
        }
        self.stage("backup", 0);
        let wait = self.protect.options.backup_wait;
        let mut on_progress = self.on_progress();
        let followed = self
            .gates
            .watch
            .follow(volume, &backup, wait, &mut on_progress);
        let done = match followed.await {
            Ok(done) => done,
            Err(source @ LonghornError::BackupFailed { .. }) => {
                return Err(VolumeError::BackupFailed { backup, source });
            }
            Err(source) => return Err(VolumeError::Follow { backup, source }),
        };
        let state = self.record_completed(&backup, &done).await?;
        (self.gates.events)(Event::Completed {
            volume: volume.to_owned(),
        });
        let url = done.url;
        Ok(Phase::Verify { backup, url, state })
    }

    /// Longhorn's completion, in the row.
    async fn record_completed(
        &self,
        backup: &str,
        done: &CompletedBackup,
    ) -> Result<BackupState, VolumeError> {
        let completed = BackupUpdate {
            state: Some(BackupState::Completed),
            backup_url: Some(done.url.clone()),
            progress: Some(100),
            size_bytes: done.size.map(|s| s as i64),
            snapshot_at: done.snapshot_created.as_deref().and_then(parse_time),
            // When dr saw it: within one listing of Longhorn's end
            // (whose `created` has whole seconds only).
            completed_at: Some(self.protect.options.clock.now()),
            ..Default::default()
        };
        let (catalog, row) = (&self.protect.catalog, self.row);
        match catalog.update_backup(row, &completed).await {
            Ok(recorded) => Ok(recorded.state),
            Err(source) => Err(VolumeError::RecordCompleted {
                row,
                backup: backup.to_owned(),
                source,
            }),
        }
    }

    /// The backup's progress, as events, and to the catalog in 10% steps,
    /// not on every poll.
    fn on_progress(&self) -> impl FnMut(i64) + Send + use<'a> {
        let (catalog, id) = (self.protect.catalog.clone(), self.row);
        let (events, volume, pvc) = (self.gates.events.clone(), self.volume(), self.v.pvc.clone());
        let mut last_saved = -1i64;
        move |p: i64| {
            events(Event::Volume {
                volume: volume.to_owned(),
                pvc: pvc.clone(),
                stage: "backup".into(),
                progress: p,
            });
            if p / 10 != last_saved / 10 {
                last_saved = p;
                let c = catalog.clone();
                tokio::spawn(async move {
                    let saved = BackupUpdate {
                        progress: Some(p),
                        ..Default::default()
                    };
                    let _ = c.update_backup(id, &saved).await;
                });
            }
        }
    }

    /// The completed backup's objects checked in the store. Checks wait
    /// until every backup of the tick is asked for (not holding a permit
    /// meanwhile: the snapshot phase needs them), then share the snapshot
    /// phase's limit, so a tick never opens a connection per volume to S3.
    async fn verify(
        &self,
        backup: String,
        url: &str,
        state: BackupState,
    ) -> Result<Phase, VolumeError> {
        self.stage("verify", 100);
        let mut unrequested = self.gates.unrequested.subscribe();
        let _ = unrequested.wait_for(|left| *left == 0).await;
        let permit = match self.gates.snapshots.acquire().await {
            Ok(permit) => permit,
            Err(source) => return Err(VolumeError::VerifySlot { backup, source }),
        };
        // The backup's URL names its own target's store (Longhorn encodes
        // it from the target URL: backupstore `EncodeBackupURL`), whichever
        // target the volume backs up to.
        let verification = match BackupTargetUrl::parse(url) {
            Ok(t) => self.check_store(&t, &backup).await,
            Err(e) => {
                tracing::warn!(%backup, %url, error = %e, "cannot tell the backup's store from its URL");
                Verification::Unverified
            }
        };
        drop(permit);
        if verification != Verification::Unverified {
            let catalog = &self.protect.catalog;
            let _ = catalog
                .set_verification(self.row, verification, self.protect.options.clock.now())
                .await;
        }
        let finished = Finished {
            backup: Some(backup),
            state,
            verification,
        };
        Ok(match state {
            BackupState::Completed => Phase::Tidy(finished),
            _ => Phase::Done(finished),
        })
    }

    /// dr's older snapshots of this volume deleted (snapshots.rs). A failure
    /// here is no failure of the backup: the next completed backup deletes
    /// what is left.
    async fn tidy(&self, finished: Finished) -> Phase {
        let (longhorn, volume) = (&self.protect.longhorn, self.volume());
        let tick = self.labels.get(LABEL_TICK).map_or("", String::as_str);
        let snapshots = match longhorn.list_snapshots(volume).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%volume, error = %e, "cannot list snapshots; older ones stay for the next backup");
                return Phase::Done(finished);
            }
        };
        let policy = self.policy.name.as_str();
        for name in super::snapshots::stale(&snapshots, policy, &self.snapshot, tick) {
            if let Err(e) = longhorn.delete_snapshot(volume, name).await {
                tracing::warn!(%volume, snapshot = %name, error = %e, "cannot delete an older snapshot of dr's; the next backup tries again");
            }
        }
        Phase::Done(finished)
    }

    async fn check_store(&self, target: &BackupTargetUrl, backup: &str) -> Verification {
        let verifier = &self.protect.verifier;
        match store::verify_backup(verifier, target, self.volume(), backup).await {
            Ok(Check::Intact { .. }) => Verification::Verified,
            Ok(Check::Broken(why)) => {
                tracing::warn!(%backup, %why, "backup is not intact in the store");
                Verification::Mismatch
            }
            Err(e) => {
                // The store could not be read: leave it unverified, to be checked again.
                tracing::warn!(%backup, error = %e, "cannot verify backup");
                Verification::Unverified
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::PointId;
    use BackupState::*;
    use Verification::*;

    fn row(state: BackupState, backup: Option<&str>, verification: Verification) -> BackupRecord {
        BackupRecord {
            id: BackupId(7),
            point_id: PointId(3),
            volume: "pvc-0b6c".parse().expect("a volume name"),
            pvc: Some("data-0".into()),
            snapshot_name: "dr-shop-20261124t094500-0b6c0b6c".into(),
            backup_name: backup.map(str::to_owned),
            backup_url: None,
            state,
            progress: 0,
            size_bytes: None,
            snapshot_at: None,
            requested_at: DateTime::UNIX_EPOCH,
            completed_at: None,
            error: None,
            verification,
            verified_at: None,
            pruned_at: None,
            content_checksum: None,
            fs_type: None,
        }
    }

    fn done(backup: Option<&str>, state: BackupState, verification: Verification) -> Phase {
        Phase::Done(Finished {
            backup: backup.map(str::to_owned),
            state,
            verification,
        })
    }

    #[test]
    fn the_next_phase_follows_from_the_row() {
        let snapshot = |fresh, asked| Phase::Snapshot { fresh, asked };
        let follow = Phase::Follow {
            backup: "backup-1".into(),
        };
        let verify = Phase::Verify {
            backup: "backup-1".into(),
            url: "s3://b@r/?backup=backup-1&volume=pvc-0b6c".into(),
            state: Completed,
        };
        #[rustfmt::skip]
        let cases = [
            // A new row: probe, create the snapshot, ask without looking.
            (Pending, None, Unverified, snapshot(true, false)),
            // A name without backing_up is not a request seen through.
            (Pending, Some("backup-1"), Unverified, snapshot(true, false)),
            // The snapshot may exist: ensure it, never asked yet.
            (Snapshotting, None, Unverified, snapshot(false, false)),
            // Asked, maybe, but no backup found: look before asking again.
            (BackingUp, None, Unverified, snapshot(false, true)),
            // The backup was found: only following is left.
            (BackingUp, Some("backup-1"), Unverified, follow),
            // Terminal rows are reported as they are, but for a completed
            // backup whose check was cut short: it is checked now.
            (Completed, Some("backup-1"), Verified, done(Some("backup-1"), Completed, Verified)),
            (Completed, Some("backup-1"), Unverified, verify),
            (Completed, Some("backup-1"), Mismatch, done(Some("backup-1"), Completed, Mismatch)),
            (Failed, None, Unverified, done(None, Failed, Unverified)),
            (Failed, Some("backup-1"), Unverified, done(Some("backup-1"), Failed, Unverified)),
            (Pruned, Some("backup-1"), Verified, done(Some("backup-1"), Pruned, Verified)),
        ];
        for (state, backup, verification, want) in cases {
            let mut r = row(state, backup, verification);
            if state == Completed {
                r.backup_url = Some("s3://b@r/?backup=backup-1&volume=pvc-0b6c".into());
            }
            assert_eq!(next_phase(&r), want, "{state} {backup:?} {verification}");
        }
    }

    #[test]
    fn every_row_state_has_a_next_phase_and_only_terminal_ones_are_done() {
        for &state in BackupState::ALL {
            for backup in [None, Some("backup-1")] {
                let phase = next_phase(&row(state, backup, Unverified));
                assert_eq!(
                    matches!(phase, Phase::Done(_)),
                    state.is_terminal(),
                    "{state} {backup:?}: {phase:?}"
                );
                assert!(!matches!(phase, Phase::Request { .. } | Phase::Tidy(_)));
                // Only a completed, unverified backup with a URL is verified.
                assert!(!matches!(phase, Phase::Verify { .. }), "{state}: no URL");
            }
        }
    }

    fn not_found() -> LonghornError {
        LonghornError::NotFound {
            what: "volume",
            name: "pvc-0b6c".into(),
        }
    }

    #[test]
    fn errors_keep_the_texts_rows_had() {
        let (volume, snapshot, backup) =
            ("pvc-0b6c".to_owned(), "dr-s".to_owned(), "b-1".to_owned());
        let failed = LonghornError::BackupFailed {
            volume: volume.clone(),
            backup: backup.clone(),
            state: crate::longhorn::LhBackupState::Error,
            message: "disk full".into(),
        };
        let longhorn_says = failed.to_string();
        #[rustfmt::skip]
        let cases = [
            (VolumeError::NoRow { volume: volume.clone() }, "no catalog row was recorded for this volume".to_owned(), None, false),
            (VolumeError::Snapshot { volume: volume.clone(), snapshot: snapshot.clone(), source: not_found() }, "snapshot: Longhorn has no volume \"pvc-0b6c\"".to_owned(), None, true),
            (VolumeError::BackupRequest { volume, snapshot, source: not_found() }, "backup request: Longhorn has no volume \"pvc-0b6c\"".to_owned(), None, true),
            (VolumeError::BackupFailed { backup: backup.clone(), source: failed }, longhorn_says, Some("b-1"), true),
            (VolumeError::Follow { backup, source: not_found() }, "following the backup: Longhorn has no volume \"pvc-0b6c\"".to_owned(), Some("b-1"), true),
        ];
        for (e, text, backup, fails_row) in cases {
            assert_eq!(e.to_string(), text);
            assert_eq!(e.backup(), backup, "{e:?}");
            assert_eq!(e.fails_row(), fails_row, "{e:?}");
        }
    }

    #[test]
    fn a_closed_gate_is_not_written_to_the_row() {
        let gate = tokio::sync::Semaphore::new(0);
        gate.close();
        let closed = || futures::executor::block_on(gate.acquire()).expect_err("closed");
        let volume = || "pvc-0b6c".to_owned();
        for e in [
            VolumeError::SnapshotSlot {
                volume: volume(),
                source: closed(),
            },
            VolumeError::RequestSlot {
                volume: volume(),
                source: closed(),
            },
            VolumeError::VerifySlot {
                backup: "b-1".into(),
                source: closed(),
            },
        ] {
            assert_eq!(e.to_string(), "semaphore closed");
            assert!(!e.fails_row(), "{e:?}");
        }
    }
}
