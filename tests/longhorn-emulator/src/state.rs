//! The emulated cluster's objects (volumes with their bytes, snapshots,
//! backups, backup volumes) and the shared handle every part works through.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tracing::warn;

use crate::config::Timings;
use crate::store::Store;
use crate::{Fault, Stats};

/// Longhorn's default backup block size; volume sizes are multiples of it.
pub const BLOCK: u64 = 2 << 20;

/// The name of the only backup target.
pub const TARGET: &str = "default";

/// Sparse volume contents: block index -> 2 MiB of data (copy on write).
pub type Blocks = BTreeMap<u64, Arc<Vec<u8>>>;

/// The volume `state` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VolState {
    New,
    Creating,
    Detached,
    Attaching,
    Attached,
    Detaching,
    Deleting,
}

impl VolState {
    pub fn as_str(self) -> &'static str {
        match self {
            VolState::New => "",
            VolState::Creating => "creating",
            VolState::Detached => "detached",
            VolState::Attaching => "attaching",
            VolState::Attached => "attached",
            VolState::Detaching => "detaching",
            VolState::Deleting => "deleting",
        }
    }
}

/// `kubernetesStatus` of a volume (JSON shape of Longhorn's `KubernetesStatus`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KubeStatus {
    pub pv_name: String,
    pub pv_status: String,
    pub namespace: String,
    pub pvc_name: String,
    #[serde(rename = "lastPVCRefAt")]
    pub last_pvc_ref_at: String,
    pub workloads_status: Option<Vec<WorkloadStatus>>,
    pub last_pod_ref_at: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WorkloadStatus {
    pub pod_name: String,
    pub pod_status: String,
    pub workload_name: String,
    pub workload_type: String,
}

/// A condition in `volume.conditions`.
#[derive(Clone, Debug)]
pub struct Condition {
    pub status: &'static str,
    pub reason: String,
    pub message: String,
    pub last_transition: DateTime<Utc>,
}

impl Condition {
    pub fn new(status: &'static str) -> Self {
        Condition {
            status,
            reason: String::new(),
            message: String::new(),
            last_transition: Utc::now(),
        }
    }

    pub fn set(&mut self, status: &'static str, reason: &str, message: &str) {
        if self.status != status {
            self.last_transition = Utc::now();
        }
        self.status = status;
        self.reason = reason.to_owned();
        self.message = message.to_owned();
    }
}

/// One attachment ticket.
#[derive(Clone, Debug)]
pub struct Ticket {
    pub kind: String,
    pub node: String,
    pub disable_frontend: bool,
    /// `disableFrontend: any` (`longhorn.AnyValue`), as the snapshot and
    /// backup controllers ask: satisfied by either frontend state.
    pub any_frontend: bool,
}

impl Ticket {
    /// A ticket of the snapshot or backup controller (`<kind>-<object>`,
    /// node = the volume's owner, frontend `any`).
    pub fn controller(kind: &str, node: &str) -> Ticket {
        Ticket {
            kind: kind.to_owned(),
            node: node.to_owned(),
            disable_frontend: false,
            any_frontend: true,
        }
    }
}

/// One replica's `restoreStatus` entry.
#[derive(Clone, Debug, Default)]
pub struct RestoreStatus {
    pub replica: String,
    pub is_restoring: bool,
    pub last_restored: String,
    pub progress: u32,
    pub error: String,
    pub state: String,
    pub backup_url: String,
}

/// A restore in progress or done.
#[derive(Clone, Debug)]
pub struct Restore {
    pub backup: String,
    /// The backup target the backup is on.
    pub target: String,
    pub source_volume: String,
    pub url: String,
    pub started: bool,
    pub done: bool,
}

#[derive(Clone, Debug)]
pub struct Volume {
    /// Distinguishes a volume from an earlier one of the same name (tasks check it).
    pub uid: u64,
    pub name: String,
    pub size: u64,
    pub state: VolState,
    /// A task is moving the volume between states; do not start another.
    pub busy: bool,
    pub faulted: bool,
    pub created: DateTime<Utc>,
    pub frontend: String,
    pub replicas: Vec<String>,
    pub access_mode: String,
    pub from_backup: String,
    pub restore: Option<Restore>,
    pub restore_required: bool,
    pub restore_initiated: bool,
    pub restore_status: Vec<RestoreStatus>,
    pub restore_condition: Condition,
    pub kubernetes_status: KubeStatus,
    pub tickets: BTreeMap<String, Ticket>,
    pub data: Blocks,
    pub snapshots: BTreeMap<String, Snapshot>,
    pub labels: BTreeMap<String, String>,
    pub last_attached_by: String,
    /// `spec.snapshotMaxCount` (the setting's value at creation).
    pub snapshot_max_count: u32,
    /// `Some((current image, new image))` while the engine is upgrading.
    pub engine_upgrading: Option<(String, String)>,
    /// The `TooManySnapshots` condition ([`crate::worker::sync_too_many_snapshots`]).
    pub too_many_snapshots: Condition,
    /// `spec.backupTargetName`.
    pub backup_target: String,
    /// Replicas the scheduler placed (the first ones of `replicas`).
    pub scheduled: usize,
    /// After `pvCreate`: the PV and when Longhorn's PV controller shows it
    /// in `kubernetesStatus` (until then the status refresh leaves it alone).
    pub pv_pending: Option<(String, Instant)>,
}

impl Volume {
    pub fn robustness(&self) -> &'static str {
        if self.faulted {
            return "faulted";
        }
        match self.state {
            VolState::New => "",
            VolState::Attached if self.scheduled < self.replicas.len() => "degraded",
            VolState::Attached => "healthy",
            _ => "unknown",
        }
    }

    /// The engine's name as rendered in `controllers`.
    pub fn engine_name(&self) -> String {
        format!("{}-e-0", self.name)
    }

    /// The `Scheduled` condition (longhorn-manager controller/volume_controller.go
    /// (*VolumeController).reconcileVolumeCondition): True when every replica
    /// is placed; otherwise, while the volume is detached (no current node)
    /// and `allow-volume-creation-with-degraded-availability` holds, True
    /// again as soon as one replica is placed ("Reset schedulable ...");
    /// else False / ReplicaSchedulingFailure.
    pub fn scheduled_condition(
        &self,
        allow_degraded: bool,
    ) -> (&'static str, &'static str, &'static str) {
        if self.scheduled >= self.replicas.len() {
            return ("True", "", "");
        }
        let detached = !matches!(
            self.state,
            VolState::Attaching | VolState::Attached | VolState::Detaching
        );
        if detached && allow_degraded && self.scheduled > 0 {
            return (
                "True",
                "",
                "Reset schedulable due to allow volume creation with degraded availability",
            );
        }
        ("False", "ReplicaSchedulingFailure", "insufficient storage")
    }

    /// types/volumes.go IsVolumeReady (generic operation).
    pub fn ready(&self, allow_degraded: bool) -> bool {
        self.not_ready_message(allow_degraded).is_empty()
            && matches!(self.state, VolState::Detached | VolState::Attached)
    }

    pub fn not_ready_message(&self, allow_degraded: bool) -> String {
        if self.state == VolState::Detached
            && self.scheduled_condition(allow_degraded).0 != "True"
            && self.scheduled < self.replicas.len()
        {
            "volume is currently in detached state with some un-schedulable replicas".to_owned()
        } else if self.faulted {
            "volume is faulted".to_owned()
        } else if matches!(self.state, VolState::New | VolState::Creating) {
            format!(
                "waiting for the volume to fully detach. current state: {}",
                self.state.as_str()
            )
        } else if self.restore_required {
            "volume requires restoration".to_owned()
        } else {
            String::new()
        }
    }

    /// The node it is attached to (the first ticket's), or `""`.
    pub fn node(&self) -> String {
        self.tickets
            .values()
            .next()
            .map(|t| t.node.clone())
            .unwrap_or_default()
    }

    /// The newest snapshot the engine holds, marked removed or not: the
    /// parent of `volume-head` (a removed snapshot stays in the chain until
    /// it is purged).
    pub fn head_parent(&self) -> Option<&Snapshot> {
        self.snapshots
            .values()
            .filter(|s| s.taken)
            .max_by_key(|s| (s.cr_creation_time, s.seq))
    }
}

#[derive(Clone, Debug)]
pub struct Snapshot {
    pub name: String,
    pub seq: u64,
    pub cr_creation_time: DateTime<Utc>,
    /// Set when the engine has taken it (readyToUse).
    pub creation_time: Option<DateTime<Utc>>,
    pub labels: BTreeMap<String, String>,
    pub data: Blocks,
    pub ready: bool,
    /// The engine has taken it (counts against `snapshotMaxCount`; `data` is final).
    pub taken: bool,
    /// `status.error` of the Snapshot CR.
    pub error: String,
    pub mark_removed: bool,
    pub user_created: bool,
    pub parent: String,
    /// The CR has a deletion timestamp: `snapshotCRDelete` was answered and
    /// the snapshot controller is removing it (still listed until it is gone).
    pub deleting: bool,
    /// A pass of the deletion updated the CR's status (`readyToUse` false):
    /// not while the engine is not running, a pass that ends in an error
    /// that leaves the status as it was (controller/snapshot_controller.go
    /// `reconcile`: the deferred status update skips such errors).
    pub deletion_synced: bool,
}

impl Snapshot {
    /// The CR's `readyToUse` (controller/snapshot_controller.go
    /// `syncSnapshotWithSnapshotInfo`: not when marked removed, nor once a
    /// deletion pass synced it).
    pub fn cr_ready(&self) -> bool {
        self.ready && !self.mark_removed && !(self.deleting && self.deletion_synced)
    }

    /// Bytes of non-empty blocks.
    pub fn size(&self) -> u64 {
        self.data.len() as u64 * BLOCK
    }
}

#[derive(Clone, Debug)]
pub struct Backup {
    pub uid: u64,
    pub name: String,
    pub volume_name: String,
    /// The backup target (label `longhorn.io/backup-target`).
    pub target: String,
    /// `spec.snapshotName`.
    pub snapshot_name: String,
    /// `status.snapshotName`: empty until the upload picked the backup up.
    pub status_snapshot: String,
    pub state: String,
    pub progress: u32,
    pub error: String,
    pub messages: BTreeMap<String, String>,
    pub url: String,
    pub snapshot_created: String,
    /// The snapshot time with full precision: orders backups made within one second.
    pub snapshot_at: Option<DateTime<Utc>>,
    pub created: String,
    pub size: u64,
    /// Spec labels, with the ones the server adds.
    pub spec_labels: BTreeMap<String, String>,
    /// `labels` as shown: null until Completed.
    pub labels: Option<BTreeMap<String, String>>,
    pub backup_mode: String,
    pub volume_size: u64,
    pub volume_created: String,
    pub newly_uploaded: u64,
    pub reuploaded: u64,
    pub replica: String,
    /// When it became Completed, on the [`State::completions`] counter.
    pub completed_seq: u64,
    /// When it became Completed, with full precision (`created` shows whole
    /// seconds, as Longhorn does): for measuring how soon a client saw it.
    pub completed_at: Option<DateTime<Utc>>,
}

/// What the emulator remembers of a backup volume beyond its backups
/// (keyed by its CR name, [`crate::render::bv_name`]).
#[derive(Clone, Debug, Default)]
pub struct BackupVolumeState {
    /// `spec.volumeName`.
    pub volume: String,
    /// `spec.backupTargetName`.
    pub target: String,
    pub created: String,
    pub block_count: u64,
    pub last_sync: Option<std::time::Instant>,
    pub storage_class_name: String,
}

/// All mutable emulator state, behind one lock that is never held across an await.
#[derive(Default)]
pub struct State {
    pub timings: Timings,
    pub faults: BTreeMap<String, Fault>,
    pub volumes: BTreeMap<String, Volume>,
    pub backups: BTreeMap<String, Backup>,
    pub backup_volumes: BTreeMap<String, BackupVolumeState>,
    pub requests: BTreeMap<String, u64>,
    /// Response body bytes per operation.
    pub response_bytes: BTreeMap<String, u64>,
    /// Request body bytes per operation.
    pub request_bytes: BTreeMap<String, u64>,
    pub backups_created: u64,
    pub next_uid: u64,
    /// Namespaces whose PVCs the provisioner serves (`None`: all).
    pub provision_namespaces: Option<std::collections::BTreeSet<String>>,
    /// Each target's last sync request (`spec.syncRequestedAt`; a manual
    /// one is refused within 10 s of it).
    pub target_syncs: BTreeMap<String, std::time::Instant>,
    /// Counts backups becoming Completed (a sync only drops those it saw before it scanned).
    pub completions: u64,
    /// Setting values by name (every name of [`crate::render::SETTINGS`]).
    pub settings: BTreeMap<String, String>,
    /// How many replicas of a new volume the scheduler can place (`None`: all).
    pub schedulable_replicas: Option<usize>,
}

impl State {
    pub fn uid(&mut self) -> u64 {
        self.next_uid += 1;
        self.next_uid
    }

    /// The completed backup of `volume` on `target` with the newest snapshot time.
    pub fn last_backup(&self, volume: &str, target: &str) -> Option<&Backup> {
        newest_completed(
            self.backups
                .values()
                .filter(|b| b.volume_name == volume && b.target == target),
        )
    }

    /// A setting's value ("" for a name the emulator does not know).
    pub fn setting(&self, name: &str) -> &str {
        self.settings
            .get(name)
            .map(String::as_str)
            .unwrap_or_default()
    }

    /// `current-longhorn-version` is at least `major.minor.patch`.
    pub fn version_at_least(&self, want: (u64, u64, u64)) -> bool {
        parse_version(self.setting("current-longhorn-version")).is_none_or(|v| v >= want)
    }

    pub fn stats(&self) -> Stats {
        Stats {
            requests: self.requests.clone(),
            response_bytes: self.response_bytes.clone(),
            request_bytes: self.request_bytes.clone(),
            backups_created: self.backups_created,
            volumes: self.volumes.keys().cloned().collect(),
            backups: self.backups.keys().cloned().collect(),
            completed_at: self
                .backups
                .iter()
                .filter_map(|(name, b)| b.completed_at.map(|t| (name.clone(), t)))
                .collect(),
        }
    }
}

/// `v1.8.1`, `1.8.1-rc3` -> (1, 8, 1); `None` when it is not a version.
pub fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let core = v.trim().trim_start_matches('v');
    let core = core.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    let patch = parts.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

/// The completed backup with the newest snapshot time among `backups`.
pub fn newest_completed<'a>(backups: impl Iterator<Item = &'a Backup>) -> Option<&'a Backup> {
    backups
        .filter(|b| b.state == "Completed")
        .max_by_key(|b| (b.snapshot_at, b.uid))
}

/// The handle shared by the API handlers, the control endpoint and the tasks.
pub struct Shared {
    state: Mutex<State>,
    /// The `default` target's store.
    pub store: Option<Arc<Store>>,
    /// Targets added by the control endpoint, by name.
    pub extra_stores: Mutex<BTreeMap<String, Arc<Store>>>,
    pub kube: Option<kube::Client>,
    pub down: AtomicBool,
    /// Bumped whenever faults change, to wake hung requests.
    pub faults_changed: watch::Sender<u64>,
    tasks: Mutex<Vec<AbortHandle>>,
    delays: Delays,
    data_path: Option<DataPath>,
}

/// Threads of their own, at a lower CPU priority, for the data path
/// ([`crate::EmulatorConfig::data_path_nice`]).
pub struct DataPath(Option<tokio::runtime::Runtime>);

impl DataPath {
    pub fn start(nice: i32) -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("emulator-data")
            .on_thread_start(move || {
                // Per thread on Linux: this thread only, not the process.
                let tid = rustix::thread::gettid();
                if let Err(e) = rustix::process::setpriority_process(Some(tid), nice) {
                    warn!(error = %e, "could not lower the data path's priority");
                }
            })
            .enable_all()
            .build()?;
        Ok(DataPath(Some(rt)))
    }
}

impl Drop for DataPath {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which tokio refuses inside another runtime.
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Injected latency, kept by a thread of its own to the tens of
/// microseconds. Tokio's timer counts whole milliseconds and fires only when
/// a worker gets to it: under a tick's load a 50 ms sleep took 51.4-52.0 ms
/// at the median and 55-60 ms at p90, lateness the benchmarks would charge
/// to the client as if it were its own.
struct Delays {
    tx: std::sync::mpsc::Sender<(Instant, tokio::sync::oneshot::Sender<()>)>,
}

impl Delays {
    fn start() -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        // Without the thread every send fails and `sleep` falls back to tokio's timer.
        let _ = std::thread::Builder::new()
            .name("emulator-delays".into())
            .spawn(move || Self::run(rx));
        Delays { tx }
    }

    /// Wakes each waiter at its deadline; ends when the emulator is dropped.
    fn run(rx: std::sync::mpsc::Receiver<(Instant, tokio::sync::oneshot::Sender<()>)>) {
        use std::sync::mpsc::RecvTimeoutError;
        let mut due: BTreeMap<(Instant, u64), tokio::sync::oneshot::Sender<()>> = BTreeMap::new();
        let mut seq = 0u64;
        loop {
            let now = Instant::now();
            while let Some(entry) = due.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                // The request may be gone (its client hung up): nothing to wake.
                let _ = entry.remove().send(());
            }
            let next = match due.keys().next() {
                Some((at, _)) => rx.recv_timeout(at.saturating_duration_since(now)),
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match next {
                Ok((at, waiter)) => {
                    seq += 1;
                    due.insert((at, seq), waiter);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    async fn sleep(&self, d: Duration) {
        let deadline = Instant::now() + d;
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.tx.send((deadline, tx)).is_err() || rx.await.is_err() {
            tokio::time::sleep_until(deadline.into()).await;
        }
    }
}

impl Shared {
    pub fn new(
        timings: Timings,
        store: Option<Store>,
        kube: Option<kube::Client>,
        data_path: Option<DataPath>,
    ) -> Self {
        Shared {
            state: Mutex::new(State {
                timings,
                settings: crate::render::SETTINGS
                    .iter()
                    .map(|d| (d.name.to_owned(), d.default.to_owned()))
                    .collect(),
                ..State::default()
            }),
            store: store.map(Arc::new),
            extra_stores: Mutex::new(BTreeMap::new()),
            kube,
            down: AtomicBool::new(false),
            faults_changed: watch::channel(0).0,
            tasks: Mutex::new(Vec::new()),
            delays: Delays::start(),
            data_path,
        }
    }

    /// The state; a poisoned lock (a panicked task) is taken over as is.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The store of backup target `target` (`None`: no such target, or the
    /// `default` one without a URL).
    pub fn store_for(&self, target: &str) -> Option<Arc<Store>> {
        if target == TARGET {
            return self.store.clone();
        }
        self.extra_stores
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(target)
            .cloned()
    }

    /// Every backup target: `default` first, then the added ones by name,
    /// with their stores.
    pub fn targets(&self) -> Vec<(String, Option<Arc<Store>>)> {
        let mut out = vec![(TARGET.to_owned(), self.store.clone())];
        let extra = self.extra_stores.lock().unwrap_or_else(|p| p.into_inner());
        out.extend(extra.iter().map(|(n, s)| (n.clone(), Some(s.clone()))));
        out
    }

    pub fn timings(&self) -> Timings {
        self.lock().timings.clone()
    }

    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::SeqCst)
    }

    /// Spawns a background task that [`Shared::abort_all`] stops.
    pub fn spawn<F>(&self, fut: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.track(tokio::spawn(fut).abort_handle());
    }

    /// [`Shared::spawn`] for the data path: on its own threads if configured.
    pub fn spawn_data<F>(&self, fut: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        match self.data_path.as_ref().and_then(|d| d.0.as_ref()) {
            Some(rt) => self.track(rt.spawn(fut).abort_handle()),
            None => self.spawn(fut),
        }
    }

    fn track(&self, handle: AbortHandle) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        if tasks.len() > 128 {
            tasks.retain(|t| !t.is_finished());
        }
        tasks.push(handle);
    }

    pub fn abort_all(&self) {
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            t.abort();
        }
    }

    /// The fault for `op`: its own, else the `*` one.
    pub fn fault_for(&self, op: &str) -> Option<Fault> {
        let st = self.lock();
        st.faults.get(op).or_else(|| st.faults.get("*")).cloned()
    }

    /// Waits while the fault for `op` says hang.
    pub async fn hang_while_faulted(&self, op: &str) {
        let mut rx = self.faults_changed.subscribe();
        while self.fault_for(op).is_some_and(|f| f.hang) {
            if rx.changed().await.is_err() {
                // The sender lives as long as `self`; nothing can change any more.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Applies the hang and latency parts of the fault for `op` and rolls its
    /// error rate: `Some(after_effect)` when this call must fail.
    pub async fn apply_fault(&self, op: &str) -> Option<bool> {
        let fault = self.fault_for(op)?;
        if fault.hang {
            self.hang_while_faulted(op).await;
        }
        let fault = self.fault_for(op)?;
        if fault.latency_ms > 0 {
            self.delays.sleep(crate::config::ms(fault.latency_ms)).await;
        }
        if fault.error_rate > 0.0 && rand::random::<f64>() < fault.error_rate {
            Some(fault.after_effect)
        } else {
            None
        }
    }
}

/// 16 random lowercase hex digits (backup and snapshot names).
pub fn hex16() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// 8 random lowercase hex digits.
pub fn hex8() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// A random UUID v4 string (engine snapshot names).
pub fn uuid() -> String {
    let b: [u8; 16] = rand::random();
    let h = hex::encode(b);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// Writes `data` at `offset` into sparse blocks (copy on write; all-zero blocks are dropped).
pub fn write_blocks(blocks: &mut Blocks, offset: u64, data: &[u8]) {
    let mut pos = 0usize;
    while pos < data.len() {
        let abs = offset + pos as u64;
        let idx = abs / BLOCK;
        let within = (abs % BLOCK) as usize;
        let n = (BLOCK as usize - within).min(data.len() - pos);
        let chunk = &data[pos..pos + n];
        let entry = blocks
            .entry(idx)
            .or_insert_with(|| Arc::new(vec![0u8; BLOCK as usize]));
        Arc::make_mut(entry)[within..within + n].copy_from_slice(chunk);
        if entry.iter().all(|b| *b == 0) {
            blocks.remove(&idx);
        }
        pos += n;
    }
}

/// The whole contents of a volume of `size` bytes, zeros included.
pub fn read_blocks(blocks: &Blocks, size: u64) -> Vec<u8> {
    let mut out = vec![0u8; size as usize];
    for (idx, block) in blocks {
        let start = (idx * BLOCK) as usize;
        if start >= out.len() {
            continue;
        }
        let end = (start + block.len()).min(out.len());
        out[start..end].copy_from_slice(&block[..end - start]);
    }
    out
}

/// Per-volume serialization of backup-store operations (created on demand).
#[derive(Default)]
pub struct VolumeLocks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl VolumeLocks {
    pub async fn lock(&self, volume: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let m = {
            let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(volume.to_owned()).or_default().clone()
        };
        m.lock_owned().await
    }
}
