//! The asynchronous side of Longhorn: every state change a real cluster makes
//! "later" is a task here that sleeps for the configured time and then moves
//! the object. Tasks re-check the object's `uid` after every sleep, so a volume
//! or backup deleted (and maybe re-created) meanwhile is left alone.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use chrono::Utc;
use tracing::{debug, warn};

use crate::config::{ms, transfer_time};
use crate::render::rfc3339;
use crate::state::{
    BLOCK, Backup, BackupVolumeState, Blocks, RestoreStatus, Shared, State, VolState, Volume,
};
use crate::store::{BackupCfg, BlockMapping, SingleFile, VolumeCfg, double_encode, prepare_block};

async fn sleep_ms(v: u64) {
    tokio::time::sleep(ms(v)).await;
}

/// The ticket Longhorn's restore controller holds while restoring.
pub fn restore_ticket(volume: &str) -> String {
    format!("volume-restore-controller-{volume}")
}

/// Starts whatever transition the volume needs next (attach when it has
/// tickets, detach when it has none, the restore once attached).
pub fn kick(sh: &Arc<Shared>, st: &mut State, name: &str) {
    let timings = st.timings.clone();
    let Some(v) = st.volumes.get_mut(name) else {
        return;
    };
    if v.busy {
        return;
    }
    // A volume none of whose replicas is scheduled cannot start
    // (volume_controller.go openVolumeDependentResources: "no healthy or
    // scheduled replica for starting"): it stays detached, tickets or not.
    let want_attached = !v.tickets.is_empty() && !v.faulted && v.scheduled > 0;
    let uid = v.uid;
    match (v.state, want_attached) {
        (VolState::Detached, true) => {
            v.state = VolState::Attaching;
            v.busy = true;
            let sh2 = sh.clone();
            let name = name.to_owned();
            sh.spawn(async move {
                sleep_ms(timings.attach_ms).await;
                let mut st = sh2.lock();
                if let Some(v) = st.volumes.get_mut(&name).filter(|v| v.uid == uid) {
                    v.busy = false;
                    if v.state == VolState::Attaching {
                        v.state = VolState::Attached;
                        if let Some(t) = v.tickets.values().next() {
                            v.last_attached_by = t.kind.clone();
                        }
                    }
                    kick(&sh2, &mut st, &name);
                }
            });
        }
        (VolState::Attached, false) => {
            v.state = VolState::Detaching;
            v.busy = true;
            let sh2 = sh.clone();
            let name = name.to_owned();
            sh.spawn(async move {
                sleep_ms(timings.attach_ms / 2).await;
                let mut st = sh2.lock();
                if let Some(v) = st.volumes.get_mut(&name).filter(|v| v.uid == uid) {
                    v.busy = false;
                    if v.state == VolState::Detaching {
                        v.state = VolState::Detached;
                    }
                    kick(&sh2, &mut st, &name);
                }
            });
        }
        (VolState::Attached, true) => {
            let start =
                v.restore_required && !v.faulted && v.restore.as_ref().is_some_and(|r| !r.started);
            if start {
                if let Some(r) = v.restore.as_mut() {
                    r.started = true;
                }
                let sh2 = sh.clone();
                let name = name.to_owned();
                sh.spawn_data(async move { run_restore(sh2, name, uid).await });
            }
        }
        _ => {}
    }
}

/// `""` -> `creating` -> `detached` (restore volumes then get their restore ticket).
pub async fn run_create(sh: Arc<Shared>, name: String, uid: u64) {
    let t = sh.timings();
    sleep_ms(t.volume_create_ms / 2).await;
    {
        let mut st = sh.lock();
        let Some(v) = st.volumes.get_mut(&name).filter(|v| v.uid == uid) else {
            return;
        };
        if v.state == VolState::New {
            v.state = VolState::Creating;
        }
    }
    sleep_ms(t.volume_create_ms - t.volume_create_ms / 2).await;
    let restore = {
        let mut st = sh.lock();
        let Some(v) = st.volumes.get_mut(&name).filter(|v| v.uid == uid) else {
            return;
        };
        v.busy = false;
        if v.state == VolState::Creating {
            v.state = VolState::Detached;
        }
        let restore = v.restore.is_some();
        if restore {
            v.restore_initiated = true;
        } else {
            kick(&sh, &mut st, &name);
        }
        restore
    };
    if !restore {
        return;
    }
    // A restore volume shows `detached` with restoreInitiated/restoreRequired
    // for a moment, then the restore controller attaches it.
    sleep_ms(t.attach_ms / 2).await;
    let mut st = sh.lock();
    let Some(v) = st.volumes.get_mut(&name).filter(|v| v.uid == uid) else {
        return;
    };
    if v.state == VolState::Deleting {
        return;
    }
    v.tickets.insert(
        restore_ticket(&name),
        crate::state::Ticket {
            kind: "volume-restore-controller".into(),
            node: "node-1".into(),
            disable_frontend: true,
            any_frontend: false,
        },
    );
    kick(&sh, &mut st, &name);
}

/// Marks a volume `deleting` and starts its removal; false if it does not exist.
pub fn start_volume_deletion(sh: &Arc<Shared>, name: &str) -> bool {
    let uid = {
        let mut st = sh.lock();
        let Some(v) = st.volumes.get_mut(name) else {
            return false;
        };
        if v.state == VolState::Deleting {
            return true;
        }
        v.state = VolState::Deleting;
        v.busy = true;
        v.uid
    };
    let sh2 = sh.clone();
    let name = name.to_owned();
    sh.spawn(async move { run_delete_volume(sh2, name, uid).await });
    true
}

/// `deleting` -> gone.
pub async fn run_delete_volume(sh: Arc<Shared>, name: String, uid: u64) {
    let t = sh.timings();
    sleep_ms(t.delete_ms).await;
    let mut st = sh.lock();
    if st.volumes.get(&name).is_some_and(|v| v.uid == uid) {
        st.volumes.remove(&name);
        debug!(volume = %name, "volume deleted");
    }
}

/// The attachment ticket of the snapshot controller for `snap`
/// (`longhorn.GetAttachmentTicketID(AttacherTypeSnapshotController, name)`).
pub fn snapshot_ticket(snap: &str) -> String {
    format!("snapshot-controller-{snap}")
}

/// The attachment ticket of the backup controller for `backup`.
pub fn backup_ticket(backup: &str) -> String {
    format!("backup-controller-{backup}")
}

/// The engine's refusal to take one more snapshot, if it would refuse.
///
/// longhorn-engine pkg/controller/replicator.go (*replicator).RemainSnapshots:
/// `snapshotMaxCount - usage <= 0` -> "too many snapshots created", where
/// pkg/replica/replica.go getSnapshotCountUsage counts every snapshot disk
/// but the volume head and the removed ones, system snapshots included.
/// The manager sees it through the instance-manager proxy
/// (longhorn-instance-manager pkg/client/proxy_snapshot.go VolumeSnapshot:
/// "<proxy prefix> failed to snapshot volume: ...").
pub fn snapshot_limit_error(v: &crate::state::Volume) -> Option<String> {
    let usage = v
        .snapshots
        .values()
        .filter(|s| s.taken && !s.mark_removed)
        .count();
    (usage >= v.snapshot_max_count as usize).then(|| {
        "proxyServer=10.42.0.10:8501 destination=10.42.0.10:10010: failed to snapshot volume: \
         rpc error: code = Unknown desc = too many snapshots created"
            .to_owned()
    })
}

/// One pass of longhorn-manager controller/snapshot_controller.go
/// (*SnapshotController).reconcile for a new Snapshot CR (`createSnapshot`,
/// no creation time yet), under the state lock:
/// 1. handleAttachmentTicketCreation: ticket `snapshot-controller-<snap>`
///    (node: the volume's owner, frontend `any`), so a detached volume
///    attaches;
/// 2. engine not running -> `status.error` "failed to take snapshot because
///    the volume engine <e> is not running. Waiting for the volume to be attached";
/// 3. engine upgrading -> "snapshot creation delayed: volume engine <e> is
///    upgrading from image <a> to <b>";
/// 4. handleSnapshotCreate -> the engine takes it, or its error (too many
///    snapshots) goes to `status.error` and the CR is retried later.
///
/// The error stays until the snapshot is ready (syncSnapshotWithSnapshotInfo
/// clears it). Returns true once the engine has taken the snapshot.
pub fn reconcile_snapshot(sh: &Arc<Shared>, st: &mut State, volume: &str, snap: &str) -> bool {
    let Some(v) = st.volumes.get_mut(volume) else {
        return false;
    };
    match v.snapshots.get(snap) {
        None => return false,
        Some(s) if s.taken => return true,
        // Deleted before the engine took it: the deletion branch removes it.
        Some(s) if s.deleting => return false,
        Some(_) => {}
    }
    let ticket = snapshot_ticket(snap);
    let mut changed = false;
    if !v.tickets.contains_key(&ticket) && v.state != VolState::Deleting {
        let node = match v.node() {
            n if n.is_empty() => "node-1".to_owned(),
            n => n,
        };
        v.tickets.insert(
            ticket,
            crate::state::Ticket::controller("snapshot-controller", &node),
        );
        changed = true;
    }
    let engine = v.engine_name();
    let error = if v.state != VolState::Attached {
        Some(format!(
            "failed to take snapshot because the volume engine {engine} is not running. Waiting for the volume to be attached"
        ))
    } else if let Some((from, to)) = &v.engine_upgrading {
        Some(format!(
            "snapshot creation delayed: volume engine {engine} is upgrading from image {from} to {to}"
        ))
    } else {
        snapshot_limit_error(v)
    };
    let taken = match error {
        Some(e) => {
            if let Some(s) = v.snapshots.get_mut(snap) {
                s.error = e;
            }
            false
        }
        None => {
            let parent = v.head_parent().map(|p| p.name.clone()).unwrap_or_default();
            let data = v.data.clone();
            if let Some(s) = v.snapshots.get_mut(snap) {
                s.taken = true;
                s.parent = parent;
                s.data = data;
            }
            true
        }
    };
    if changed {
        kick(sh, st, volume);
    }
    taken
}

/// The snapshot controller for one new Snapshot CR: retried until the
/// engine has taken it (see [`reconcile_snapshot`]); `readyToUse` (and the
/// creation time, error cleared) `snapshot_ready_ms` later; then its ticket
/// goes (handleAttachmentTicketDeletion) and the volume detaches if nothing
/// else holds it.
pub async fn run_snapshot_controller(
    sh: Arc<Shared>,
    volume: String,
    uid: u64,
    snap: String,
    seq: u64,
) {
    let alive = |st: &State| {
        st.volumes
            .get(&volume)
            .filter(|v| v.uid == uid)
            .and_then(|v| v.snapshots.get(&snap))
            .is_some_and(|s| s.seq == seq)
    };
    loop {
        let taken = {
            let mut st = sh.lock();
            if !alive(&st) {
                drop_ticket(&sh, &mut st, &volume, uid, &snapshot_ticket(&snap));
                return;
            }
            reconcile_snapshot(&sh, &mut st, &volume, &snap)
        };
        if taken {
            break;
        }
        // Requeued: on the volume's next change, or rate limited on an error.
        sleep_ms(sh.timings().snapshot_ready_ms.clamp(10, 100)).await;
    }
    sleep_ms(sh.timings().snapshot_ready_ms).await;
    let mut st = sh.lock();
    if alive(&st)
        && let Some(s) = st
            .volumes
            .get_mut(&volume)
            .and_then(|v| v.snapshots.get_mut(&snap))
    {
        s.ready = true;
        s.error.clear();
        s.creation_time = Some(Utc::now());
        // The engine monitor's refresh that lists it counts it too.
        sync_too_many_snapshots(&mut st, &volume);
    }
    // A deletion under way holds the same ticket (it is one per snapshot):
    // it keeps it until the snapshot is purged.
    let deleting = st
        .volumes
        .get(&volume)
        .and_then(|v| v.snapshots.get(&snap))
        .is_some_and(|s| s.deleting && s.seq == seq);
    if !deleting {
        drop_ticket(&sh, &mut st, &volume, uid, &snapshot_ticket(&snap));
    }
}

/// Removes a snapshot from the volume's chain (its children get its parent).
pub fn remove_snapshot(v: &mut Volume, snap: &str) {
    if let Some(s) = v.snapshots.remove(snap) {
        for c in v.snapshots.values_mut().filter(|c| c.parent == snap) {
            c.parent = s.parent.clone();
        }
    }
}

/// Whether the engine's purge can remove a snapshot marked removed: not
/// the parent of the volume head (longhorn-engine coalesces a removed
/// snapshot into its child, and the head is not one it can coalesce into;
/// longhorn-manager controller/snapshot_controller.go `reconcile`: "This
/// snapshot is the parent of volume-head, so it cannot be purged
/// immediately").
pub fn purgeable(v: &Volume, snap: &str) -> bool {
    v.head_parent().is_none_or(|p| p.name != snap)
}

/// The `TooManySnapshots` condition, as longhorn-manager
/// controller/volume_controller.go
/// `(*VolumeController).reconcileTooManySnapshotsCondition` sets it on
/// every volume reconcile: True (reason `TooManySnapshots`, "Snapshots
/// count is <n> at or over the warning threshold <t>") when the snapshots
/// the engine lists (`len(engine.Status.Snapshots) - 1`: every snapshot
/// but the volume head, removed ones included until purged) reach
/// `getSnapshotCountThreshold`, the smaller of the setting
/// `snapshot-count-warning-threshold` (default 100) and the volume's
/// `snapshotMaxCount`; else False with no reason or message. Its
/// transition time changes only with its status (types/condition.go
/// `SetCondition`). (The size threshold, `snapshotMaxSize`, is 0 here.)
///
/// `engine.Status.Snapshots` is the engine monitor's last refresh: a
/// snapshot counts from its readiness (the same refresh makes its CR
/// ready) until it is purged.
pub fn sync_too_many_snapshots(st: &mut State, volume: &str) {
    let setting = st
        .setting("snapshot-count-warning-threshold")
        .trim()
        .parse::<u64>()
        .ok();
    let Some(v) = st.volumes.get_mut(volume) else {
        return;
    };
    let max = u64::from(v.snapshot_max_count);
    // getSnapshotCountThreshold: without the setting, the volume's maximum.
    let threshold = setting.map_or(max, |t| t.min(max));
    let count = v.snapshots.values().filter(|s| s.taken && s.ready).count() as u64;
    if count >= threshold {
        let message =
            format!("Snapshots count is {count} at or over the warning threshold {threshold}");
        v.too_many_snapshots
            .set("True", "TooManySnapshots", &message);
    } else {
        v.too_many_snapshots.set("False", "", "");
    }
}

/// `snapshotCRDelete` (api/snapshot.go `SnapshotCRDelete` ->
/// manager/snapshot.go `DeleteSnapshotCR`): the CR gets its deletion
/// timestamp and the answer goes out; the snapshot controller does the
/// rest (controller/snapshot_controller.go `reconcile`, deletion branch):
/// - a snapshot the engine never took (`status.requestedTime` empty): its
///   ticket goes and the finalizer is removed at once;
/// - else the volume is attached for it (ticket
///   `snapshot-controller-<snap>`), the engine marks it removed
///   (`SnapshotDelete`: it no longer counts against `snapshotMaxCount`)
///   and purges it (`SnapshotPurge`), and only once the engine monitor no
///   longer lists it are the ticket and the finalizer removed: the CR is
///   listed, marked removed and not ready, for `snapshot_delete_ms`;
/// - the parent of the volume head, once marked removed, cannot be
///   purged: its ticket goes and its CR stays until a newer snapshot
///   makes it purgeable;
/// - during an engine upgrade: "snapshot deletion delayed: ..." in
///   `status.error`, retried.
///
/// A name not found is no error (the API ignores NotFound).
pub fn delete_snapshot_cr(sh: &Arc<Shared>, st: &mut State, volume: &str, snap: &str) {
    let Some(v) = st.volumes.get_mut(volume) else {
        return;
    };
    let uid = v.uid;
    let Some(s) = v.snapshots.get_mut(snap) else {
        return;
    };
    if s.deleting {
        return;
    }
    s.deleting = true;
    let (taken, seq) = (s.taken, s.seq);
    if !taken {
        remove_snapshot(v, snap);
        drop_ticket(sh, st, volume, uid, &snapshot_ticket(snap));
        return;
    }
    // The controller's first pass comes at once (an attached volume's
    // snapshot is marked removed before the next call can look).
    let step = reconcile_snapshot_deletion(sh, st, volume, snap);
    let sh2 = sh.clone();
    let (volume, snap) = (volume.to_owned(), snap.to_owned());
    sh.spawn(async move { run_snapshot_deletion(sh2, volume, uid, snap, seq, step).await });
}

/// Where a Snapshot CR's deletion stands after a pass of the controller.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Deletion {
    /// The CR is gone.
    Gone,
    /// Waiting (for the attachment, an engine upgrade, a newer snapshot).
    Waiting,
    /// Marked removed; the engine purges it.
    Purging,
}

/// One pass of the snapshot controller's deletion branch (see
/// [`delete_snapshot_cr`]), under the state lock.
pub fn reconcile_snapshot_deletion(
    sh: &Arc<Shared>,
    st: &mut State,
    volume: &str,
    snap: &str,
) -> Deletion {
    let Some(v) = st.volumes.get_mut(volume) else {
        return Deletion::Gone;
    };
    if !v.snapshots.contains_key(snap) {
        return Deletion::Gone;
    }
    let uid = v.uid;
    let ticket = snapshot_ticket(snap);
    // isVolumeDeletedOrBeingDeleted: the finalizer goes.
    if v.state == VolState::Deleting {
        remove_snapshot(v, snap);
        return Deletion::Gone;
    }
    if let Some((from, to)) = v.engine_upgrading.clone() {
        let engine = v.engine_name();
        if let Some(s) = v.snapshots.get_mut(snap) {
            s.error = format!(
                "snapshot deletion delayed: volume engine {engine} is upgrading from image {from} to {to}"
            );
            s.deletion_synced = true;
        }
        return Deletion::Waiting;
    }
    let head_child = !purgeable(v, snap);
    let removed = v.snapshots.get(snap).is_some_and(|s| s.mark_removed);
    if head_child && removed {
        if let Some(s) = v.snapshots.get_mut(snap) {
            s.deletion_synced = true;
        }
        drop_ticket(sh, st, volume, uid, &ticket);
        return Deletion::Waiting;
    }
    if !v.tickets.contains_key(&ticket) {
        let node = match v.node() {
            n if n.is_empty() => "node-1".to_owned(),
            n => n,
        };
        v.tickets.insert(
            ticket,
            crate::state::Ticket::controller("snapshot-controller", &node),
        );
        kick(sh, st, volume);
    }
    let Some(v) = st.volumes.get_mut(volume) else {
        return Deletion::Gone;
    };
    // "failed to delete snapshot because the volume engine <e> is not
    // running. Will reenqueue and retry later": returned, not shown, and
    // the CR's status is left as it was (still `readyToUse`).
    if v.state != VolState::Attached {
        return Deletion::Waiting;
    }
    if let Some(s) = v.snapshots.get_mut(snap) {
        s.mark_removed = true;
        s.deletion_synced = true;
        s.error.clear();
    }
    if head_child {
        Deletion::Waiting
    } else {
        Deletion::Purging
    }
}

/// The snapshot controller for a deleted CR of a taken snapshot: passes
/// until the engine purges it, then the CR goes with its ticket.
async fn run_snapshot_deletion(
    sh: Arc<Shared>,
    volume: String,
    uid: u64,
    snap: String,
    seq: u64,
    mut step: Deletion,
) {
    let alive = |st: &State| {
        st.volumes
            .get(&volume)
            .filter(|v| v.uid == uid)
            .and_then(|v| v.snapshots.get(&snap))
            .is_some_and(|s| s.seq == seq && s.deleting)
    };
    loop {
        match step {
            Deletion::Gone => {
                let mut st = sh.lock();
                sync_too_many_snapshots(&mut st, &volume);
                drop_ticket(&sh, &mut st, &volume, uid, &snapshot_ticket(&snap));
                return;
            }
            Deletion::Purging => {
                sleep_ms(sh.timings().snapshot_delete_ms).await;
                let mut st = sh.lock();
                if !alive(&st) {
                    return;
                }
                // A newer snapshot may have come since: purge what it can.
                let purged = st.volumes.get_mut(&volume).is_some_and(|v| {
                    let ok = purgeable(v, &snap);
                    if ok {
                        remove_snapshot(v, &snap);
                    }
                    ok
                });
                step = if purged {
                    Deletion::Gone
                } else {
                    reconcile_snapshot_deletion(&sh, &mut st, &volume, &snap)
                };
                if step == Deletion::Gone {
                    sync_too_many_snapshots(&mut st, &volume);
                    drop_ticket(&sh, &mut st, &volume, uid, &snapshot_ticket(&snap));
                    return;
                }
            }
            Deletion::Waiting => {
                // Requeued on the volume's or the engine's next change.
                sleep_ms(sh.timings().attach_ms.clamp(10, 100)).await;
                let mut st = sh.lock();
                if !alive(&st) {
                    return;
                }
                step = reconcile_snapshot_deletion(&sh, &mut st, &volume, &snap);
            }
        }
    }
}

/// Removes a controller's ticket and lets the volume detach if it was the last.
pub fn drop_ticket(sh: &Arc<Shared>, st: &mut State, volume: &str, uid: u64, ticket: &str) {
    if let Some(v) = st.volumes.get_mut(volume).filter(|v| v.uid == uid)
        && v.tickets.remove(ticket).is_some()
    {
        kick(sh, st, volume);
    }
}

/// Applies `f` to the backup if it is still the one the task started with
/// and not being deleted; `None` tells the task to stop.
fn with_backup<R>(
    sh: &Shared,
    name: &str,
    uid: u64,
    f: impl FnOnce(&mut Backup, &mut BTreeMap<String, BackupVolumeState>) -> R,
) -> Option<R> {
    let mut st = sh.lock();
    let st = &mut *st;
    let b = st
        .backups
        .get_mut(name)
        .filter(|b| b.uid == uid && b.state != "Deleting")?;
    Some(f(b, &mut st.backup_volumes))
}

fn fail_backup(sh: &Arc<Shared>, name: &str, uid: u64, message: String) {
    warn!(backup = %name, %message, "backup failed");
    let volume = with_backup(sh, name, uid, |b, _| {
        b.state = "Error".into();
        b.error = message.clone();
        b.messages.insert("error".into(), message);
        b.replica.clear();
        b.volume_name.clone()
    });
    if let Some(v) = volume {
        release_backup_ticket(sh, name, &v);
    }
}

/// The backup reached a final state (or is gone): its ticket goes, and the
/// volume detaches if nothing else holds it (backup_controller.go reconcile,
/// deferred handleAttachmentTicketDeletion).
pub fn release_backup_ticket(sh: &Arc<Shared>, name: &str, volume: &str) {
    let mut st = sh.lock();
    let Some(uid) = st.volumes.get(volume).map(|v| v.uid) else {
        return;
    };
    drop_ticket(sh, &mut st, volume, uid, &backup_ticket(name));
}

enum SnapCheck {
    Ready(Blocks, chrono::DateTime<Utc>, String),
    Missing,
    NotReady,
    NoVolume,
}

/// What the engine (the replica's backup process) reports of a backup, as
/// the backup monitor reads it (longhorn-engine's replica backup status,
/// `in_progress` / `complete` / `error`, converted by
/// engineapi/backups.go `ConvertEngineBackupState`).
#[derive(Clone, Default)]
struct EngineBackup {
    progress: u32,
    /// `Some(Ok)`: complete; `Some(Err)`: error; `None`: in progress.
    end: Option<Result<UploadDone, String>>,
    /// The upload was abandoned (the backup was deleted meanwhile).
    abandoned: bool,
}

type SharedEngineBackup = Arc<std::sync::Mutex<EngineBackup>>;

fn engine_update(engine: &SharedEngineBackup, f: impl FnOnce(&mut EngineBackup)) {
    f(&mut engine.lock().unwrap_or_else(|p| p.into_inner()));
}

/// A backup of `volume` on `target` other than `name` being deleted.
fn deleting_backup(st: &State, volume: &str, target: &str, name: &str) -> Option<String> {
    st.backups
        .values()
        .find(|b| {
            b.name != name && b.volume_name == volume && b.target == target && b.state == "Deleting"
        })
        .map(|b| b.name.clone())
}

/// The backup controller, the backup monitor and the engine, from the
/// Backup CR's creation to its end (longhorn-manager
/// controller/backup_controller.go `(*BackupController).reconcile`):
/// 1. handleAttachmentTicketCreation: ticket `backup-controller-<backup>`,
///    so a detached volume attaches; until the ticket is satisfied
///    `checkMonitor` answers "waiting for attachment ... before enabling
///    backup monitor", an error that only requeues: the state stays `""`;
/// 2. `checkMonitor`: a missing or not ready snapshot sets `Pending` with
///    messages.info ("Failed to get the Snapshot <s>", "Waiting for the
///    snapshot <s> to be ready"), `Error` after maxCreationRetry (5) tries;
///    another backup of the volume being deleted sets `Pending` ("Wait for
///    backup <b> to be deleted") for as long as it lasts;
/// 3. `enableBackupMonitor`: engineapi/backup_monitor.go `NewBackupMonitor`
///    calls the engine's `SnapshotBackup` (`backup_start_ms`, counted from
///    here) and keeps the CR's status as it was (`""`, or `Pending`);
/// 4. `linerTimer`: every `BackupMonitorSyncPeriod` (`backup_monitor_ms`,
///    the first a period after the start) the engine's status is copied to
///    the CR (`syncWithMonitor`): `InProgress` with the snapshot name and
///    progress, then `Completed` with the URL (or `Error`) at the first
///    poll after the engine finished.
///
/// The ticket goes once the backup is in a final state
/// (handleAttachmentTicketDeletion, deferred in `reconcile`).
pub async fn run_backup(sh: Arc<Shared>, name: String, uid: u64) {
    let t = sh.timings();
    let Some((volume, snap, target)) = with_backup(&sh, &name, uid, |b, _| {
        (
            b.volume_name.clone(),
            b.snapshot_name.clone(),
            b.target.clone(),
        )
    }) else {
        return;
    };

    // 1. The attachment: the state stays "" meanwhile.
    loop {
        let attached = {
            let mut st = sh.lock();
            let alive = st
                .backups
                .get(&name)
                .is_some_and(|b| b.uid == uid && b.state != "Deleting");
            let Some(v) = st.volumes.get_mut(&volume) else {
                break;
            };
            if !alive {
                return;
            }
            let ticket = backup_ticket(&name);
            if !v.tickets.contains_key(&ticket) && v.state != VolState::Deleting {
                let node = match v.node() {
                    n if n.is_empty() => "node-1".to_owned(),
                    n => n,
                };
                v.tickets.insert(
                    ticket,
                    crate::state::Ticket::controller("backup-controller", &node),
                );
                kick(&sh, &mut st, &volume);
            }
            st.volumes
                .get(&volume)
                .is_some_and(|v| v.state == VolState::Attached)
        };
        if attached {
            break;
        }
        sleep_ms(t.attach_ms.clamp(10, 100)).await;
    }

    // 2. checkMonitor: the snapshot, with a bounded number of tries; a
    // backup of the same volume being deleted, for as long as it lasts.
    let mut attempt = 0;
    let (data, snap_time, replica) = loop {
        let (check, deleting) = {
            let st = sh.lock();
            let check = match st.volumes.get(&volume) {
                None => SnapCheck::NoVolume,
                Some(v) => match v.snapshots.get(&snap) {
                    None => SnapCheck::Missing,
                    // checkMonitor reads the CR's status.
                    Some(s) if !s.cr_ready() => SnapCheck::NotReady,
                    Some(s) => SnapCheck::Ready(
                        s.data.clone(),
                        s.creation_time.unwrap_or(s.cr_creation_time),
                        v.replicas.first().cloned().unwrap_or_default(),
                    ),
                },
            };
            (check, deleting_backup(&st, &volume, &target, &name))
        };
        let failure = match check {
            SnapCheck::Ready(d, at, r) => match deleting {
                None => break (d, at, r),
                Some(other) => {
                    let pending = with_backup(&sh, &name, uid, |b, _| {
                        b.state = "Pending".into();
                        b.messages.insert(
                            "info".into(),
                            format!("Wait for backup {other} to be deleted"),
                        );
                    });
                    if pending.is_none() {
                        return release_backup_ticket(&sh, &name, &volume);
                    }
                    sleep_ms(sh.timings().resync_ms).await;
                    continue;
                }
            },
            SnapCheck::NoVolume => {
                return fail_backup(
                    &sh,
                    &name,
                    uid,
                    format!("cannot find the corresponding volume: volume {volume} not found"),
                );
            }
            SnapCheck::Missing => format!("Failed to get the Snapshot {snap}"),
            SnapCheck::NotReady => format!("Failed waiting for the snapshot {snap} to be ready"),
        };
        attempt += 1;
        if attempt >= 5 {
            return fail_backup(&sh, &name, uid, failure);
        }
        let info = if failure.starts_with("Failed to get") {
            failure
        } else {
            format!("Waiting for the snapshot {snap} to be ready")
        };
        let pending = with_backup(&sh, &name, uid, |b, _| {
            b.state = "Pending".into();
            b.messages.insert("info".into(), info);
        });
        if pending.is_none() {
            return release_backup_ticket(&sh, &name, &volume);
        }
        // Reconciled again at the next resync (its status did not change).
        sleep_ms(sh.timings().resync_ms).await;
    };

    // 3. The monitor starts: the engine's SnapshotBackup. A backup goes to
    // the store of its target (backup_controller.go getBackupTarget from
    // the backup's label).
    sleep_ms(t.backup_start_ms).await;
    let Some(store) = sh.store_for(&target) else {
        return fail_backup(
            &sh,
            &name,
            uid,
            format!("backup target {target} is not available"),
        );
    };
    let Some((mode, labels, volume_size)) = with_backup(&sh, &name, uid, |b, _| {
        b.snapshot_created = rfc3339(snap_time);
        b.snapshot_at = Some(snap_time);
        (b.backup_mode.clone(), b.spec_labels.clone(), b.volume_size)
    }) else {
        return release_backup_ticket(&sh, &name, &volume);
    };
    debug!(backup = %name, %volume, %replica, "upload starts");
    let engine: SharedEngineBackup = Arc::default();
    let engine_side = {
        let (sh, store, engine) = (&sh, &store, engine.clone());
        let (name, volume, snap, mode) = (&name, &volume, &snap, &mode);
        let (labels, data) = (&labels, &data);
        async move {
            let _lock = store.locks.lock(volume).await;
            let job = Upload {
                name,
                uid,
                volume,
                snap,
                snap_time,
                mode,
                labels,
                volume_size,
                data,
            };
            let ended = upload(sh, store, &job, &engine).await;
            engine_update(&engine, |e| match ended {
                Ok(Some(done)) => e.end = Some(Ok(done)),
                Ok(None) => e.abandoned = true,
                Err(message) => e.end = Some(Err(message)),
            });
        }
    };
    // 4. The monitor's polls.
    let monitor = async {
        loop {
            sleep_ms(sh.timings().backup_monitor_ms).await;
            let seen = engine.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if seen.abandoned {
                debug!(backup = %name, "backup abandoned (deleted meanwhile)");
                return;
            }
            match seen.end {
                None => {
                    let alive = with_backup(&sh, &name, uid, |b, _| {
                        if b.state != "InProgress" {
                            b.state = "InProgress".into();
                            b.messages.clear();
                        }
                        b.replica = replica.clone();
                        b.status_snapshot = snap.clone();
                        b.progress = seen.progress;
                    });
                    if alive.is_none() {
                        return;
                    }
                }
                Some(Ok(done)) => {
                    complete_backup(&sh, &name, uid, &store, &snap, done);
                    return;
                }
                Some(Err(message)) => {
                    with_backup(&sh, &name, uid, |b, _| {
                        b.status_snapshot = snap.clone();
                    });
                    fail_backup(&sh, &name, uid, message);
                    return;
                }
            }
        }
    };
    tokio::join!(engine_side, monitor);
    release_backup_ticket(&sh, &name, &volume);
}

/// The monitor's poll that finds the engine's backup complete: the CR
/// `Completed` with its URL and sizes, the backup volume updated.
fn complete_backup(
    sh: &Shared,
    name: &str,
    uid: u64,
    store: &crate::store::Store,
    snap: &str,
    done: UploadDone,
) {
    let url = store.backup_url(name, &done.volume);
    let seq = {
        let mut st = sh.lock();
        st.completions += 1;
        st.completions
    };
    with_backup(sh, name, uid, |b, bvs| {
        b.state = "Completed".into();
        b.messages.clear();
        b.status_snapshot = snap.to_owned();
        b.completed_seq = seq;
        b.progress = 100;
        b.url = url;
        let now = Utc::now();
        b.created = rfc3339(now);
        b.completed_at = Some(now);
        b.size = done.size;
        b.labels = Some(b.spec_labels.clone());
        b.newly_uploaded = done.newly;
        b.reuploaded = done.reuploaded;
        b.replica.clear();
        let bv = bvs
            .entry(crate::render::bv_name(&b.volume_name, &b.target))
            .or_insert_with(|| BackupVolumeState {
                volume: b.volume_name.clone(),
                target: b.target.clone(),
                ..BackupVolumeState::default()
            });
        if bv.created.is_empty() {
            bv.created = done.volume_created.clone();
        }
        bv.block_count = done.block_count;
    });
    debug!(backup = %name, "backup completed");
}

#[derive(Clone)]
struct UploadDone {
    volume: String,
    size: u64,
    newly: u64,
    reuploaded: u64,
    block_count: u64,
    volume_created: String,
}

/// One backup's upload, as the engine's replica runs it.
#[derive(Clone, Copy)]
struct Upload<'a> {
    name: &'a str,
    uid: u64,
    volume: &'a str,
    snap: &'a str,
    snap_time: chrono::DateTime<Utc>,
    mode: &'a str,
    labels: &'a BTreeMap<String, String>,
    volume_size: u64,
    data: &'a Blocks,
}

/// The engine's side of a backup: its blocks and `.cfg` files to the
/// store, its progress in `engine`. `Ok(None)`: the backup was deleted meanwhile.
async fn upload(
    sh: &Shared,
    store: &crate::store::Store,
    job: &Upload<'_>,
    engine: &SharedEngineBackup,
) -> Result<Option<UploadDone>, String> {
    let Upload {
        name,
        uid,
        volume,
        snap,
        snap_time,
        mode,
        labels,
        volume_size,
        data,
    } = *job;
    let now = rfc3339(Utc::now());
    let mut vcfg = match store
        .read_volume_cfg(volume)
        .await
        .map_err(|e| e.to_string())?
    {
        Some(c) => c,
        None => {
            let c = VolumeCfg {
                name: volume.to_owned(),
                size: volume_size.to_string(),
                labels: None,
                created_time: now.clone(),
                last_backup_name: String::new(),
                last_backup_at: String::new(),
                block_count: "0".into(),
                backing_image_name: double_encode(""),
                backing_image_checksum: double_encode(""),
                compression_method: double_encode("lz4"),
                storage_class_name: double_encode(""),
                data_engine: double_encode("v1"),
            };
            store
                .write_volume_cfg(&c)
                .await
                .map_err(|e| e.to_string())?;
            c
        }
    };
    let incremental = mode != "full" && !vcfg.last_backup_name.is_empty();
    let mut cfg = BackupCfg {
        name: name.to_owned(),
        volume_name: volume.to_owned(),
        snapshot_name: snap.to_owned(),
        snapshot_created_at: rfc3339(snap_time),
        created_time: String::new(),
        size: "0".into(),
        labels: Some(labels.clone()).filter(|l| !l.is_empty()),
        parameters: Some(BTreeMap::from([
            ("backup-mode".to_owned(), mode.to_owned()),
            ("backup-block-size".to_owned(), BLOCK.to_string()),
        ])),
        is_incremental: incremental,
        compression_method: "lz4".into(),
        newly_uploaded_data_size: "0".into(),
        re_uploaded_data_size: "0".into(),
        processing_blocks: None,
        blocks: None,
        single_file: SingleFile::default(),
    };
    store
        .write_backup_cfg(&cfg)
        .await
        .map_err(|e| e.to_string())?;
    let mut existing: HashSet<String> = store
        .existing_blocks(volume)
        .await
        .map_err(|e| e.to_string())?;

    // Injected upload failure: decided once, strikes after the first block.
    let injected = sh.apply_fault("backupUpload").await.is_some();
    let blocks: Vec<(u64, Arc<Vec<u8>>)> = data
        .iter()
        .filter(|(_, d)| d.iter().any(|b| *b != 0))
        .map(|(i, d)| (*i, d.clone()))
        .collect();
    let total = blocks.len() as u64;
    let (mut newly, mut reuploaded) = (0u64, 0u64);
    let mut mappings = Vec::with_capacity(blocks.len());
    for (done, (idx, block)) in blocks.into_iter().enumerate() {
        let offset = idx * BLOCK;
        let prepared = tokio::task::spawn_blocking(move || prepare_block(offset, &block))
            .await
            .map_err(|e| format!("block preparation task failed: {e}"))?
            .map_err(|e| e.to_string())?;
        let known = existing.contains(&prepared.checksum);
        if !known || mode == "full" {
            store
                .put_block(volume, &prepared)
                .await
                .map_err(|e| e.to_string())?;
            if known {
                reuploaded += prepared.compressed.len() as u64;
            } else {
                newly += prepared.compressed.len() as u64;
            }
            existing.insert(prepared.checksum.clone());
        }
        mappings.push(BlockMapping {
            offset,
            block_checksum: prepared.checksum,
        });
        tokio::time::sleep(transfer_time(BLOCK, sh.timings().backup_bytes_per_sec)).await;
        if injected {
            return Err(format!(
                "injected fault: failed to upload block at offset {offset} to the backup store"
            ));
        }
        let progress = (((done as u64 + 1) * 95) / total.max(1)) as u32;
        engine_update(engine, |e| e.progress = progress.min(95));
        if with_backup(sh, name, uid, |_, _| ()).is_none() {
            return Ok(None);
        }
    }
    if injected {
        return Err("injected fault: failed to upload the backup".into());
    }
    mappings.sort_by_key(|m| m.offset);
    let size = mappings.len() as u64 * BLOCK;
    cfg.created_time = rfc3339(Utc::now());
    cfg.size = size.to_string();
    cfg.newly_uploaded_data_size = newly.to_string();
    cfg.re_uploaded_data_size = reuploaded.to_string();
    cfg.blocks = Some(mappings).filter(|m| !m.is_empty());
    store
        .write_backup_cfg(&cfg)
        .await
        .map_err(|e| e.to_string())?;

    vcfg.last_backup_name = name.to_owned();
    vcfg.last_backup_at = cfg.snapshot_created_at.clone();
    vcfg.block_count = existing.len().to_string();
    vcfg.size = volume_size.to_string();
    vcfg.labels = cfg.labels.clone();
    store
        .write_volume_cfg(&vcfg)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Some(UploadDone {
        volume: volume.to_owned(),
        size,
        newly,
        reuploaded,
        block_count: existing.len() as u64,
        volume_created: vcfg.created_time,
    }))
}

/// `backupDelete`: `Deleting`, the store cleaned as Longhorn does, then gone.
pub async fn run_delete_backup(sh: Arc<Shared>, name: String, uid: u64) {
    let t = sh.timings();
    sleep_ms(t.delete_ms / 2).await;
    let (volume, target) = {
        let st = sh.lock();
        match st.backups.get(&name).filter(|b| b.uid == uid) {
            Some(b) => (b.volume_name.clone(), b.target.clone()),
            None => return,
        }
    };
    let mut block_count = None;
    if let Some(store) = sh.store_for(&target) {
        let _lock = store.locks.lock(&volume).await;
        match store.delete_backup(&volume, &name).await {
            Ok(vcfg) => {
                block_count = vcfg.and_then(|c| c.block_count.parse::<u64>().ok());
            }
            Err(e) => {
                warn!(backup = %name, error = %e, "backup deletion failed");
                let mut st = sh.lock();
                if let Some(b) = st.backups.get_mut(&name).filter(|b| b.uid == uid) {
                    b.state = "Error".into();
                    b.error = format!("failed to delete backup: {e}");
                    b.messages.insert("error".into(), b.error.clone());
                }
                return;
            }
        }
    }
    sleep_ms(t.delete_ms - t.delete_ms / 2).await;
    let mut st = sh.lock();
    if st.backups.get(&name).is_some_and(|b| b.uid == uid) {
        st.backups.remove(&name);
    }
    let bv_name = crate::render::bv_name(&volume, &target);
    if let (Some(n), Some(bv)) = (block_count, st.backup_volumes.get_mut(&bv_name)) {
        bv.block_count = n;
    }
}

/// Deleting a backup volume (by CR name): every backup of the volume on its
/// target, and its store directory there.
pub async fn run_delete_backup_volume(sh: Arc<Shared>, bv_name: String) {
    let t = sh.timings();
    sleep_ms(t.delete_ms).await;
    let Some(bv) = sh.lock().backup_volumes.get(&bv_name).cloned() else {
        return;
    };
    let (volume, target) = (bv.volume, bv.target);
    if let Some(store) = sh.store_for(&target) {
        let _lock = store.locks.lock(&volume).await;
        if let Err(e) = store.delete_volume(&volume).await {
            warn!(%volume, error = %e, "backup volume deletion failed");
            return;
        }
    }
    let mut st = sh.lock();
    st.backups
        .retain(|_, b| !(b.volume_name == volume && b.target == target));
    st.backup_volumes.remove(&bv_name);
}

fn set_restore_progress(sh: &Shared, name: &str, uid: u64, progress: u32) -> bool {
    let mut st = sh.lock();
    let Some(v) = st.volumes.get_mut(name).filter(|v| v.uid == uid) else {
        return false;
    };
    for r in &mut v.restore_status {
        r.progress = progress;
    }
    true
}

fn fail_restore(sh: &Arc<Shared>, name: &str, uid: u64, message: String) {
    warn!(volume = %name, %message, "restore failed");
    let mut st = sh.lock();
    let Some(v) = st.volumes.get_mut(name).filter(|v| v.uid == uid) else {
        return;
    };
    v.faulted = true;
    for r in &mut v.restore_status {
        r.is_restoring = false;
        r.state = "error".into();
        r.error = message.clone();
    }
    v.restore_condition.set(
        "False",
        "RestoreFailure",
        "All replica restore failed and the volume became Faulted",
    );
    v.tickets.clear();
    kick(sh, &mut st, name);
}

/// The restore of an attached volume: bytes read back from S3 (verified), then
/// progress for `restore_start_ms + backup data / restore_bytes_per_sec`, then the
/// volume detaches and becomes ready.
pub async fn run_restore(sh: Arc<Shared>, name: String, uid: u64) {
    let (backup, source, url, size, target) = {
        let mut st = sh.lock();
        let Some(v) = st.volumes.get_mut(&name).filter(|v| v.uid == uid) else {
            return;
        };
        let Some(r) = v.restore.clone() else { return };
        v.restore_condition
            .set("True", "RestoreInProgress", "The volume is restoring");
        // Only the replicas the scheduler placed restore.
        v.restore_status = v
            .replicas
            .iter()
            .take(v.scheduled)
            .map(|rep| RestoreStatus {
                replica: rep.clone(),
                is_restoring: true,
                progress: 0,
                state: "in_progress".into(),
                backup_url: r.url.clone(),
                ..RestoreStatus::default()
            })
            .collect();
        (r.backup, r.source_volume, r.url, v.size, r.target)
    };
    let t = sh.timings();
    sleep_ms(t.restore_start_ms).await;
    if sh.apply_fault("restore").await.is_some() {
        return fail_restore(&sh, &name, uid, "injected fault: restore failed".into());
    }
    let Some(store) = sh.store_for(&target) else {
        return fail_restore(
            &sh,
            &name,
            uid,
            format!("backup target {target} is not available"),
        );
    };
    let read = {
        let _lock = store.locks.lock(&source).await;
        store.read_backup_data(&source, &backup).await
    };
    let blocks = match read {
        Ok((_, blocks)) => blocks,
        Err(e) => {
            return fail_restore(
                &sh,
                &name,
                uid,
                format!("failed to restore backup {url}: {e}"),
            );
        }
    };
    // A full restore writes the blocks the backup maps, no more
    // (backupstore deltablock.go RestoreDeltaBlockBackup ->
    // populateBlocksForFullRestore: one block per backup.Blocks entry,
    // progress over their count); the rest of the volume stays sparse.
    let mapped = blocks.keys().filter(|i| *i * BLOCK < size).count() as u64;
    let duration = transfer_time(mapped * BLOCK, sh.timings().restore_bytes_per_sec);
    let steps = 10u32;
    for i in 1..steps {
        tokio::time::sleep(duration / steps).await;
        if !set_restore_progress(&sh, &name, uid, i * 100 / steps) {
            return;
        }
    }
    tokio::time::sleep(duration / steps).await;
    let mut st = sh.lock();
    let Some(v) = st.volumes.get_mut(&name).filter(|v| v.uid == uid) else {
        return;
    };
    v.data = blocks
        .into_iter()
        .filter(|(i, _)| i * BLOCK < size)
        .collect();
    for r in &mut v.restore_status {
        r.is_restoring = false;
        r.progress = 100;
        r.state = "complete".into();
        r.last_restored = backup.clone();
    }
    if let Some(r) = v.restore.as_mut() {
        r.done = true;
    }
    v.restore_required = false;
    v.restore_condition.set("False", "", "");
    v.tickets.remove(&restore_ticket(&name));
    debug!(volume = %name, %backup, "restore complete");
    kick(&sh, &mut st, &name);
}
