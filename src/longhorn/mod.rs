//! The Longhorn adapter: a typed client of the manager REST API (Longhorn 1.8
//! and later; shapes read from v1.12.1).
//!
//! Two kinds of failure are kept apart: Longhorn *refused* (it answered with
//! an error; the message is kept) and Longhorn was *unreachable or slow*
//! (retryable). Every call has a timeout. Reads are retried with backoff and
//! jitter; writes never are, because Longhorn's writes are not idempotent
//! (`snapshotBackup` makes a new backup each time). Instead each write is
//! preceded by a look for what a previous attempt may already have made, so a
//! retry after a timeout or a restart adopts it rather than doubling it.

mod snapshots;
mod types;
mod version;

pub use snapshots::{
    SnapshotPace, freezes_filesystem, snapshot_error_is_limit, snapshot_error_is_transient,
};
pub use types::*;
pub use version::{MINIMUM_VERSION, ManagerVersion};

use rand::Rng;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;
use url::Url;

/// A failed Longhorn operation.
#[derive(Debug, thiserror::Error)]
pub enum LonghornError {
    /// Longhorn answered with an error (validation errors are 500s there).
    #[error("Longhorn refused {op} (HTTP {status}): {message}")]
    Refused {
        op: &'static str,
        status: u16,
        message: String,
    },
    /// The object does not exist.
    #[error("Longhorn has no {what} {name:?}")]
    NotFound { what: &'static str, name: String },
    /// No answer: connection refused or reset, DNS, TLS.
    #[error("Longhorn is unreachable at {url} ({op}): {source}")]
    Unreachable {
        op: &'static str,
        url: String,
        source: reqwest::Error,
    },
    /// The call took longer than its timeout.
    #[error("Longhorn did not answer {op} within {after:?}")]
    Timeout { op: &'static str, after: Duration },
    /// Longhorn answered something dr cannot read.
    #[error("cannot read Longhorn's answer to {op}: {source} (body starts: {body:?})")]
    Decode {
        op: &'static str,
        source: serde_json::Error,
        body: String,
    },
    /// A wait exceeded its deadline (the work may still finish in Longhorn).
    #[error("gave up waiting for {what} after {waited:?}; last seen: {last}")]
    Deadline {
        what: String,
        waited: Duration,
        last: String,
    },
    /// The backup ended in `Error` or `Unknown`.
    #[error("backup {backup} of volume {volume} failed ({state:?}): {message}")]
    BackupFailed {
        volume: String,
        backup: String,
        state: LhBackupState,
        message: String,
    },
    /// `snapshotBackup` could not be confirmed: the request got no answer and
    /// no backup of the snapshot appeared. Retrying the whole request is safe:
    /// it looks for the backup again before asking for one.
    #[error("could not confirm a backup of snapshot {snapshot} on volume {volume}: {cause}")]
    BackupUnconfirmed {
        volume: String,
        snapshot: String,
        cause: String,
    },
    /// Restoring a volume failed.
    #[error("restore of volume {volume} failed: {message}")]
    RestoreFailed { volume: String, message: String },
    /// A volume of that name exists but is not the restore dr asked for.
    #[error(
        "volume {volume} already exists and was not restored from {wanted} (fromBackup {found:?}); choose another name"
    )]
    NameTaken {
        volume: String,
        wanted: String,
        found: String,
    },
    /// The snapshot can never become ready.
    #[error("snapshot {snapshot} of volume {volume} failed: {message}")]
    SnapshotFailed {
        volume: String,
        snapshot: String,
        message: String,
    },
    /// The shared volume listing that follows backups failed for good.
    #[error("cannot list volumes to follow backup {backup}: {message}")]
    ListingFailed { backup: String, message: String },
    /// The manager has no such route or action: it is older (or other) than
    /// dr supports. Not "absent": a missing route says nothing of the data.
    #[error(
        "Longhorn's manager has no {op} (it answered \"404 page not found\"): dr needs Longhorn {MINIMUM_VERSION} or later"
    )]
    NoSuchRoute { op: &'static str },
    /// The manager's version is older than dr supports.
    #[error(
        "Longhorn {version} is not supported: dr needs Longhorn {MINIMUM_VERSION} or later (it lists a volume's backups with backupListByVolume, which v1.8.1 added)"
    )]
    Unsupported { version: String },
    /// Longhorn made the object under another name than the one asked for
    /// (its mutator shortens names over 40 characters).
    #[error(
        "Longhorn created {what} {got:?} when asked for {asked:?}; names must be at most 40 characters"
    )]
    Renamed {
        what: &'static str,
        asked: String,
        got: String,
    },
}

impl LonghornError {
    /// Whether trying again later may succeed: no answer, or an answer too late.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Unreachable { .. }
                | Self::Timeout { .. }
                | Self::Deadline { .. }
                | Self::BackupUnconfirmed { .. }
        )
    }

    /// A short label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Refused { .. } => "refused",
            Self::NotFound { .. } => "not_found",
            Self::Unreachable { .. } => "unreachable",
            Self::Timeout { .. } => "timeout",
            Self::Decode { .. } => "decode",
            Self::Deadline { .. } => "deadline",
            Self::BackupFailed { .. } => "backup_failed",
            Self::BackupUnconfirmed { .. } => "backup_unconfirmed",
            Self::RestoreFailed { .. } => "restore_failed",
            Self::NameTaken { .. } => "name_taken",
            Self::SnapshotFailed { .. } => "snapshot_failed",
            Self::ListingFailed { .. } => "listing_failed",
            Self::NoSuchRoute { .. } => "no_such_route",
            Self::Unsupported { .. } => "unsupported",
            Self::Renamed { .. } => "renamed",
        }
    }
}

type Result<T, E = LonghornError> = std::result::Result<T, E>;

/// How the client talks and waits.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The manager's base URL, e.g. `http://longhorn-backend.longhorn-system:9500`.
    pub url: Url,
    /// Deadline of each HTTP call.
    pub timeout: Duration,
    /// Pause between polls of something asynchronous.
    pub poll: Duration,
    /// Extra attempts of a failed read.
    pub read_retries: u32,
    /// First backoff; doubled each attempt up to `backoff_max`, with full jitter.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// How long to look for a backup after `snapshotBackup` before giving up.
    pub discover_for: Duration,
    /// How often the shared volume listing that follows a tick's backups is
    /// refreshed (one call serves every backup; a completion is recorded
    /// within about this long). The listing is never repeated sooner than
    /// four times its own duration after it ends (see `VolumeWatch::poll`).
    pub follow_interval: Duration,
    /// The backup target dr's backups go to.
    pub backup_target: String,
}

impl ClientConfig {
    /// Defaults for a real cluster: 30 s per call, polls every 2 s, the
    /// shared follow listing every 500 ms.
    pub fn new(url: Url) -> Self {
        ClientConfig {
            url,
            timeout: Duration::from_secs(30),
            poll: Duration::from_secs(2),
            read_retries: 4,
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(5),
            discover_for: Duration::from_secs(180),
            // A completion shows in the listing at its backup monitor's next
            // poll (engineapi/backup_monitor.go `linerTimer`, every
            // `BackupMonitorSyncPeriod`, 2 s), each monitor at its own
            // phase, so any interval finds some completions new; one is
            // recorded within the interval plus a listing. 500 ms meets the
            // 1 s target where a listing is short (a few hundred volumes);
            // where it is long, `VolumeWatch::pause` (never listing more
            // than a fifth of the time) governs instead: at 1,000 volumes,
            // ~10 MiB a listing, measured 5.4 MiB/s of listings and a
            // completion recorded 1.5 s late at the median (README, "How a
            // tick keeps its requests flowing").
            follow_interval: Duration::from_millis(500),
            backup_target: "default".into(),
        }
    }
}

/// A backup found for a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupRef {
    pub volume: String,
    pub snapshot: String,
    pub backup: String,
}

/// Progress of something long, for callers that show it.
pub type ProgressFn<'a> = &'a mut (dyn FnMut(i64) + Send);

/// The client.
#[derive(Debug, Clone)]
pub struct LonghornClient {
    cfg: ClientConfig,
    http: reqwest::Client,
}

fn snippet(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(200)]).into_owned()
}

impl LonghornClient {
    /// A client; no request is made until used.
    pub fn new(cfg: ClientConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("dr/", env!("CARGO_PKG_VERSION")))
            // A tick opens many connections at once; keeping them all idle
            // afterwards (with the buffers of large listings) would hold
            // memory until the next tick for nothing.
            .pool_max_idle_per_host(4)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?;
        Ok(LonghornClient { cfg, http })
    }

    fn url(&self, path: &str, action: Option<&str>) -> Url {
        let mut u = self.cfg.url.clone();
        u.set_path(path);
        u.set_query(None);
        if let Some(a) = action {
            u.query_pairs_mut().append_pair("action", a);
        }
        u
    }

    /// One HTTP exchange; maps transport failures and error answers.
    async fn call(
        &self,
        op: &'static str,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<(StatusCode, bytes::Bytes)> {
        let shown = url.to_string();
        let mut req = self
            .http
            .request(method, url)
            .header("Accept", "application/json");
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|source| {
            if source.is_timeout() {
                LonghornError::Timeout {
                    op,
                    after: self.cfg.timeout,
                }
            } else {
                LonghornError::Unreachable {
                    op,
                    url: shown.clone(),
                    source,
                }
            }
        })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|source| {
            if source.is_timeout() {
                LonghornError::Timeout {
                    op,
                    after: self.cfg.timeout,
                }
            } else {
                LonghornError::Unreachable {
                    op,
                    url: shown.clone(),
                    source,
                }
            }
        })?;
        Ok((status, bytes))
    }

    /// `Some(())` for a 200, `None` for a 404, the refusal otherwise.
    ///
    /// Longhorn answers a missing object with 404 and an empty body
    /// (api/volume.go `responseWithVolume`) or a JSON error (api/router.go
    /// `HandleError`, when `datastore.ErrorIsNotFound`); a route or action
    /// it does not have falls through gorilla/mux to `http.NotFoundHandler`,
    /// whose plain-text "404 page not found" is no answer about the data.
    fn answered(op: &'static str, status: StatusCode, bytes: &[u8]) -> Result<Option<()>> {
        if status == StatusCode::NOT_FOUND {
            if String::from_utf8_lossy(bytes).trim() == "404 page not found" {
                return Err(LonghornError::NoSuchRoute { op });
            }
            return Ok(None);
        }
        if status != StatusCode::OK {
            let message = serde_json::from_slice::<ErrorBody>(bytes)
                .ok()
                .map(|e| e.message)
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| snippet(bytes));
            return Err(LonghornError::Refused {
                op,
                status: status.as_u16(),
                message,
            });
        }
        Ok(Some(()))
    }

    /// A call whose 200 answer is decoded as `T`; 404 is `Ok(None)`.
    async fn json<T: DeserializeOwned>(
        &self,
        op: &'static str,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<Option<T>> {
        let (status, bytes) = self.call(op, method, url, body).await?;
        if Self::answered(op, status, &bytes)?.is_none() {
            return Ok(None);
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| LonghornError::Decode {
                op,
                source,
                body: snippet(&bytes),
            })
    }

    /// Runs a read, retrying transport failures and 5xx answers with
    /// exponential backoff and full jitter. Only for calls without effects.
    async fn read<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut attempt = 0u32;
        loop {
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let transient = e.is_retryable()
                        || matches!(e, LonghornError::Refused { status, .. } if status >= 500);
                    if !transient || attempt >= self.cfg.read_retries {
                        return Err(e);
                    }
                    let cap = self
                        .cfg
                        .backoff_base
                        .saturating_mul(1u32 << attempt.min(16))
                        .min(self.cfg.backoff_max);
                    let jitter = rand::rng().random_range(0..=cap.as_millis().max(1) as u64);
                    tracing::debug!(error = %e, attempt, "retrying Longhorn read");
                    tokio::time::sleep(Duration::from_millis(jitter)).await;
                    attempt += 1;
                }
            }
        }
    }

    fn volume_path(name: &str) -> String {
        format!("/v1/volumes/{name}")
    }

    // ---- volumes --------------------------------------------------------

    /// A whole collection, read with retries (a missing one is empty).
    async fn list<T: DeserializeOwned + Send + 'static>(
        &self,
        op: &'static str,
        path: &str,
    ) -> Result<Vec<T>> {
        self.read(|| async {
            let (status, bytes) = self
                .call(op, Method::GET, self.url(path, None), None)
                .await?;
            if Self::answered(op, status, &bytes)?.is_none() {
                return Ok(Vec::new());
            }
            // A collection can be megabytes of JSON (a thousand volumes): it
            // is decoded on a blocking thread, so that the runtime's workers
            // go on serving the calls in flight meanwhile.
            let decode = |b: &[u8]| {
                serde_json::from_slice::<Collection<T>>(b).map_err(|source| (source, snippet(b)))
            };
            let kept = bytes.clone();
            // A failed blocking task (the pool shutting down) decodes here.
            let decoded = match tokio::task::spawn_blocking(move || decode(&bytes)).await {
                Ok(d) => d,
                Err(_) => decode(&kept),
            };
            decoded
                .map(|c| c.data)
                .map_err(|(source, body)| LonghornError::Decode { op, source, body })
        })
        .await
    }

    /// Every volume.
    pub async fn list_volumes(&self) -> Result<Vec<Volume>> {
        self.list("listVolumes", "/v1/volumes").await
    }

    /// Every volume's name and `backupStatus` (one `GET /v1/volumes`, read
    /// without the rest of each volume).
    pub async fn list_volume_backups(&self) -> Result<Vec<VolumeBackups>> {
        self.list("listVolumes", "/v1/volumes").await
    }

    /// One volume, or `None` if it does not exist.
    pub async fn volume(&self, name: &str) -> Result<Option<Volume>> {
        self.read(|| async {
            self.json(
                "getVolume",
                Method::GET,
                self.url(&Self::volume_path(name), None),
                None,
            )
            .await
        })
        .await
    }

    async fn volume_action<T: DeserializeOwned>(
        &self,
        op: &'static str,
        volume: &str,
        body: Value,
    ) -> Result<Option<T>> {
        self.json(
            op,
            Method::POST,
            self.url(&Self::volume_path(volume), Some(op)),
            Some(&body),
        )
        .await
    }

    // ---- backups -----------------------------------------------------------

    /// Every backup of a volume, by volume name (`backupListByVolume`; no
    /// backup volume name needed). Longhorn lists those on the volume's own
    /// backup target when the volume exists, and on every target when it
    /// does not (manager/engine.go `ListBackupsForVolumeName`): since 1.8 a
    /// backup goes to its volume's `backupTargetName`, which need not be
    /// `default`.
    pub async fn backups_of(&self, volume: &str) -> Result<Vec<Backup>> {
        self.read(|| async {
            let c: Option<Collection<Backup>> = self
                .json(
                    "backupListByVolume",
                    Method::POST,
                    self.url(
                        &format!("/v1/backupvolumes/{volume}"),
                        Some("backupListByVolume"),
                    ),
                    Some(&json!({ "name": volume })),
                )
                .await?;
            Ok(c.map(|c| c.data).unwrap_or_default())
        })
        .await
    }

    /// One backup of a volume, if it exists.
    pub async fn backup(&self, volume: &str, name: &str) -> Result<Option<Backup>> {
        Ok(self
            .backups_of(volume)
            .await?
            .into_iter()
            .find(|b| b.name == name))
    }

    /// Looks for a backup of `snapshot`, in the volume's `backupStatus` and in
    /// the backup list (where `snapshotName` is known at once).
    pub async fn find_backup_of_snapshot(
        &self,
        volume: &str,
        snapshot: &str,
    ) -> Result<Option<BackupRef>> {
        let of = |backup: String| BackupRef {
            volume: volume.to_owned(),
            snapshot: snapshot.to_owned(),
            backup,
        };
        if let Some(b) = self
            .backups_of(volume)
            .await?
            .into_iter()
            .find(|b| b.snapshot_name == snapshot)
        {
            return Ok(Some(of(b.name)));
        }
        let v = self.volume(volume).await?;
        Ok(v.and_then(|v| {
            v.backup_status
                .into_iter()
                .find(|s| s.snapshot == snapshot)
                .map(|s| of(s.id))
        }))
    }

    /// Gets a backup of `snapshot` started: adopts an existing one, or asks
    /// Longhorn for one exactly once and finds it. Never issues
    /// `snapshotBackup` twice: if the request is unanswered, it looks for the
    /// backup until `discover_for` and otherwise reports it unconfirmed.
    #[tracing::instrument(skip(self, labels))]
    pub async fn request_backup(
        &self,
        volume: &str,
        snapshot: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<BackupRef> {
        if let Some(found) = self.find_backup_of_snapshot(volume, snapshot).await? {
            tracing::info!(backup = %found.backup, "adopting existing backup");
            return Ok(found);
        }
        let cause = self.start_backup(volume, snapshot, labels).await?;
        self.discover_backup(volume, snapshot, &cause).await
    }

    /// Issues `snapshotBackup` exactly once, for a snapshot the caller knows
    /// has no backup requested yet. `Ok` means "asked, or unanswered": the
    /// backup must then be found with [`Self::discover_backup`]; the string
    /// says what happened, for the error if it never appears. A refusal is an
    /// error, unless the backup exists anyway.
    pub async fn start_backup(
        &self,
        volume: &str,
        snapshot: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<String> {
        // The answer is the whole volume, of no use here: skipped unread.
        let asked: Result<Option<serde::de::IgnoredAny>> = self
            .volume_action(
                "snapshotBackup",
                volume,
                json!({ "name": snapshot, "labels": labels, "backupMode": "incremental" }),
            )
            .await;
        match asked {
            Ok(_) => Ok("the backup did not appear".to_owned()),
            Err(e) if e.is_retryable() => Ok(e.to_string()),
            Err(e) => {
                // An error answer does not prove nothing happened (a proxy or
                // the manager may fail after the Backup CR was made): look once.
                if let Ok(Some(found)) = self.find_backup_of_snapshot(volume, snapshot).await {
                    tracing::warn!(error = %e, backup = %found.backup, "snapshotBackup failed but the backup exists; adopting it");
                    return Ok(format!("adopted after: {e}"));
                }
                Err(e)
            }
        }
    }

    /// Finds the backup of `snapshot` after [`Self::start_backup`], looking
    /// until `discover_for`; never asks for another.
    pub async fn discover_backup(
        &self,
        volume: &str,
        snapshot: &str,
        cause: &str,
    ) -> Result<BackupRef> {
        let start = Instant::now();
        loop {
            match self.find_backup_of_snapshot(volume, snapshot).await {
                Ok(Some(found)) => return Ok(found),
                Ok(None) => {}
                Err(e) if e.is_retryable() => {
                    tracing::debug!(error = %e, "looking for the backup");
                }
                Err(e) => return Err(e),
            }
            if start.elapsed() >= self.cfg.discover_for {
                return Err(LonghornError::BackupUnconfirmed {
                    volume: volume.into(),
                    snapshot: snapshot.into(),
                    cause: cause.to_owned(),
                });
            }
            tokio::time::sleep(self.cfg.poll).await;
        }
    }

    /// Every backup volume (all targets).
    pub async fn list_backup_volumes(&self) -> Result<Vec<BackupVolume>> {
        self.list("listBackupVolumes", "/v1/backupvolumes").await
    }

    /// The backup volume of a volume on dr's target, matched by `volumeName`
    /// (its resource name is not the volume name since Longhorn 1.8).
    pub async fn backup_volume_of(&self, volume: &str) -> Result<Option<BackupVolume>> {
        Ok(self.list_backup_volumes().await?.into_iter().find(|bv| {
            bv.volume_name == volume
                && (bv.backup_target_name.is_empty()
                    || bv.backup_target_name == self.cfg.backup_target)
        }))
    }

    /// Deletes a backup and waits until it is gone; a missing backup is fine.
    ///
    /// Longhorn deletes by the backup's name alone (api/backup.go
    /// `BackupDelete` → `m.DeleteBackup(input.Name)`); the backup volume in
    /// the path only shapes the answer, and an unknown one still answers
    /// (manager/engine.go `GetBackupVolume` returns a stub), so no lookup of
    /// the backup volume is needed, whatever target the backup is on. The
    /// request is always sent; success is the backup gone from the listing.
    #[tracing::instrument(skip(self))]
    pub async fn delete_backup(&self, volume: &str, backup: &str, wait: Duration) -> Result<()> {
        // 404 (empty body): the backup does not exist, which is the goal.
        let _: Option<Value> = self
            .json(
                "backupDelete",
                Method::POST,
                self.url(&format!("/v1/backupvolumes/{volume}"), Some("backupDelete")),
                Some(&json!({ "name": backup })),
            )
            .await?;
        let start = Instant::now();
        loop {
            if self.backup(volume, backup).await?.is_none() {
                return Ok(());
            }
            if start.elapsed() >= wait {
                return Err(LonghornError::Deadline {
                    what: format!("backup {backup} of volume {volume} to be deleted"),
                    waited: start.elapsed(),
                    last: "still listed".into(),
                });
            }
            tokio::time::sleep(self.cfg.poll).await;
        }
    }

    /// Every backup target (Longhorn 1.8+).
    pub async fn list_backup_targets(&self) -> Result<Vec<BackupTarget>> {
        self.list("listBackupTargets", "/v1/backuptargets").await
    }

    /// dr's backup target (Longhorn 1.8+).
    pub async fn backup_target(&self) -> Result<BackupTarget> {
        let name = self.cfg.backup_target.clone();
        let got: Option<BackupTarget> = self
            .read(|| async {
                self.json(
                    "getBackupTarget",
                    Method::GET,
                    self.url(&format!("/v1/backuptargets/{name}"), None),
                    None,
                )
                .await
            })
            .await?;
        got.ok_or(LonghornError::NotFound {
            what: "backup target",
            name,
        })
    }

    /// Asks Longhorn to sync dr's backup target with its store now, so that
    /// backups made by another cluster are listed (api/backup.go
    /// `BackupTargetSync` → manager/engine.go `SyncBackupTarget`, which sets
    /// the BackupTarget CR's `spec.syncRequestedAt`; the backup target
    /// controller then lists the store's backup volumes, and each backup
    /// volume's controller its backups). Longhorn refuses a second request
    /// within 10 s of the previous one ("cannot synchronize backup target
    /// … in 10 seconds", `SyncBackupTarget`): a sync is then already under way,
    /// and that counts as asked.
    pub async fn request_backup_target_sync(&self) -> Result<()> {
        let name = self.cfg.backup_target.clone();
        let asked: Result<Option<serde::de::IgnoredAny>> = self
            .json(
                "backupTargetSync",
                Method::POST,
                self.url(
                    &format!("/v1/backuptargets/{name}"),
                    Some("backupTargetSync"),
                ),
                Some(&json!({ "syncBackupTarget": true })),
            )
            .await;
        match asked {
            Ok(_) => Ok(()),
            Err(LonghornError::Refused { message, .. })
                if message.contains("cannot synchronize backup target") =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    // ---- restore ---------------------------------------------------------------

    /// Creates volume `name` from a backup's URL, or adopts it if a previous
    /// attempt already did; refuses a same-named volume of other origin.
    #[tracing::instrument(skip(self))]
    pub async fn create_restored_volume(
        &self,
        name: &str,
        backup_url: &str,
        replicas: Option<u32>,
    ) -> Result<Volume> {
        if let Some(v) = self.volume(name).await? {
            return if v.from_backup == backup_url {
                Ok(v)
            } else {
                Err(LonghornError::NameTaken {
                    volume: name.into(),
                    wanted: backup_url.into(),
                    found: v.from_backup,
                })
            };
        }
        let mut body = json!({ "name": name, "fromBackup": backup_url });
        if let Some(r) = replicas {
            body["numberOfReplicas"] = json!(r);
        }
        let made: Result<Option<Volume>> = self
            .json(
                "createVolume",
                Method::POST,
                self.url("/v1/volumes", None),
                Some(&body),
            )
            .await;
        match made {
            Ok(Some(v)) if v.name == name => Ok(v),
            // Longhorn's mutator renamed it (webhook/resources/volume/
            // mutator.go `Create`, util.AutoCorrectName: lower case, and over
            // 40 characters the first 31, "-" and 8 hex of a SHA-512). The
            // volume is dr's, under a name nothing of dr's would find again:
            // deleted, and the name refused.
            Ok(Some(v)) => {
                if let Err(e) = self.delete_volume(&v.name).await {
                    tracing::warn!(volume = %v.name, error = %e, "cannot delete the renamed volume");
                }
                Err(LonghornError::Renamed {
                    what: "volume",
                    asked: name.into(),
                    got: v.name,
                })
            }
            Ok(None) => Err(LonghornError::NotFound {
                what: "backup",
                name: backup_url.into(),
            }),
            Err(e) => {
                // Unanswered, or "already exists" from a racing attempt: look.
                if let Some(v) = self.volume(name).await?
                    && v.from_backup == backup_url
                {
                    return Ok(v);
                }
                Err(e)
            }
        }
    }

    /// Waits until a restored volume is really done (section 5 of the
    /// reference): initiated, not required, detached and ready; a faulted
    /// volume is a failure.
    #[tracing::instrument(skip(self, progress))]
    pub async fn wait_restored(
        &self,
        name: &str,
        wait: Duration,
        progress: ProgressFn<'_>,
    ) -> Result<Volume> {
        let start = Instant::now();
        let mut last: String;
        loop {
            match self.volume(name).await {
                Ok(Some(v)) => {
                    if let Some(why) = v.restore_failure() {
                        return Err(LonghornError::RestoreFailed {
                            volume: name.into(),
                            message: why,
                        });
                    }
                    if v.restore_done() {
                        progress(100);
                        return Ok(v);
                    }
                    last = format!(
                        "state {:?}, restoreRequired {}, progress {}%",
                        v.state,
                        v.restore_required,
                        v.restore_progress()
                    );
                    progress(v.restore_progress().clamp(0, 99));
                }
                Ok(None) => {
                    return Err(LonghornError::NotFound {
                        what: "volume",
                        name: name.into(),
                    });
                }
                Err(e) if e.is_retryable() => last = e.to_string(),
                Err(e) => return Err(e),
            }
            if start.elapsed() >= wait {
                return Err(LonghornError::Deadline {
                    what: format!("restore of volume {name}"),
                    waited: start.elapsed(),
                    last,
                });
            }
            tokio::time::sleep(self.cfg.poll).await;
        }
    }

    /// Deletes a volume (asynchronous in Longhorn; a missing one is fine).
    pub async fn delete_volume(&self, name: &str) -> Result<()> {
        let (status, bytes) = self
            .call(
                "deleteVolume",
                Method::DELETE,
                self.url(&Self::volume_path(name), None),
                None,
            )
            .await?;
        if status == StatusCode::OK || status == StatusCode::NOT_FOUND {
            return Ok(());
        }
        Err(LonghornError::Refused {
            op: "deleteVolume",
            status: status.as_u16(),
            message: serde_json::from_slice::<ErrorBody>(&bytes)
                .map(|e| e.message)
                .unwrap_or_else(|_| snippet(&bytes)),
        })
    }

    /// Creates the PersistentVolume for a volume (`pvCreate`).
    pub async fn pv_create(
        &self,
        volume: &str,
        pv_name: &str,
        fs_type: &str,
        storage_class: &str,
    ) -> Result<Volume> {
        self.volume_action(
            "pvCreate",
            volume,
            json!({ "pvName": pv_name, "fsType": fs_type, "storageClassName": storage_class }),
        )
        .await?
        .ok_or(LonghornError::NotFound {
            what: "volume",
            name: volume.into(),
        })
    }

    /// Creates a PersistentVolumeClaim bound to the volume's PV (`pvcCreate`).
    pub async fn pvc_create(
        &self,
        volume: &str,
        namespace: &str,
        pvc_name: &str,
    ) -> Result<Volume> {
        self.volume_action(
            "pvcCreate",
            volume,
            json!({ "namespace": namespace, "pvcName": pvc_name }),
        )
        .await?
        .ok_or(LonghornError::NotFound {
            what: "volume",
            name: volume.into(),
        })
    }
}

/// How often Longhorn's backup monitor copies the engine's backup status to
/// the Backup CR (engineapi/backup_monitor.go `BackupMonitorSyncPeriod`).
const BACKUP_MONITOR_SYNC_PERIOD: Duration = Duration::from_secs(2);

/// One listing of all volumes shared by many waiters: following a thousand
/// backups costs one `GET /v1/volumes` per poll, not a thousand calls.
///
/// A single poller lists while anyone follows and hands each listing to every
/// follower as soon as it arrives (so a completion is recorded within one
/// interval plus one listing); it stops when the last follower is done.
#[derive(Debug)]
pub struct VolumeWatch {
    inner: std::sync::Arc<WatchInner>,
}

#[derive(Debug)]
struct WatchInner {
    client: LonghornClient,
    listings: tokio::sync::watch::Sender<std::sync::Arc<Listing>>,
    /// The backups followed now: only their entries are kept from a listing.
    followed: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Snapshots whose backup is looked for (by `backupStatus[].snapshot`).
    sought: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Whether the poller runs.
    polling: std::sync::Mutex<bool>,
}

/// A backup seen `Completed`.
#[derive(Debug, Clone)]
pub struct CompletedBackup {
    pub url: String,
    pub size: Option<u64>,
    /// The snapshot's time, when the backup was read in full.
    pub snapshot_created: Option<String>,
}

/// What one listing said about the followed backups.
#[derive(Debug, Default)]
struct Listing {
    /// Backup name → (volume, status).
    backups: std::collections::HashMap<String, (String, BackupStatus)>,
    /// Snapshot name → (volume, backup name), for the snapshots sought.
    by_snapshot: std::collections::HashMap<String, (String, String)>,
    /// Why the listing failed, and whether waiting can help.
    error: Option<(String, bool)>,
}

/// Keeps a name in a followed or sought set while its waiter waits.
struct Interest<'a> {
    set: &'a std::sync::Mutex<std::collections::HashSet<String>>,
    name: String,
}

impl<'a> Interest<'a> {
    fn new(set: &'a std::sync::Mutex<std::collections::HashSet<String>>, name: &str) -> Self {
        if let Ok(mut s) = set.lock() {
            s.insert(name.to_owned());
        }
        Interest {
            set,
            name: name.to_owned(),
        }
    }
}

impl Drop for Interest<'_> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.set.lock() {
            s.remove(&self.name);
        }
    }
}

impl VolumeWatch {
    /// A watch over the client's volumes.
    pub fn new(client: LonghornClient) -> Self {
        VolumeWatch {
            inner: std::sync::Arc::new(WatchInner {
                client,
                listings: tokio::sync::watch::Sender::new(std::sync::Arc::default()),
                followed: std::sync::Mutex::default(),
                sought: std::sync::Mutex::default(),
                polling: std::sync::Mutex::new(false),
            }),
        }
    }

    /// How often the shared listing is refreshed.
    fn interval(client: &LonghornClient) -> Duration {
        client.cfg.follow_interval
    }

    /// The pause after a listing that took `took`: the rest of the interval,
    /// but never less than four times the listing's duration, so that dr
    /// keeps the manager busy with its listings a fifth of the time at most,
    /// however many volumes the cluster has.
    fn pause(interval: Duration, took: Duration) -> Duration {
        interval.saturating_sub(took).max(took.saturating_mul(4))
    }

    /// How long a requested backup is looked for in the shared listing
    /// before asking for the volume's backups. A backup's `backupStatus`
    /// entry names its snapshot only from the backup monitor's first poll
    /// (controller/backup_controller.go `reconcile` → `enableBackupMonitor`;
    /// engineapi/backup_monitor.go `linerTimer` polls every
    /// `BackupMonitorSyncPeriod` with `wait.PollUntil`, the first a period
    /// after the monitor starts): a period, a second more
    /// for the controller to start it, and two listings.
    pub fn discovery_window(&self) -> Duration {
        Self::interval(&self.inner.client)
            .saturating_mul(2)
            .saturating_add(BACKUP_MONITOR_SYNC_PERIOD)
            .saturating_add(Duration::from_secs(1))
    }

    /// A receiver of listings, with the poller started if it is not running.
    fn subscribe(&self) -> tokio::sync::watch::Receiver<std::sync::Arc<Listing>> {
        let rx = self.inner.listings.subscribe();
        if let Ok(mut polling) = self.inner.polling.lock()
            && !*polling
        {
            *polling = true;
            tokio::spawn(Self::poll(self.inner.clone()));
        }
        rx
    }

    /// Lists until no one follows (checked under the same lock `subscribe`
    /// starts it under, so a new follower is never left without a poller).
    async fn poll(inner: std::sync::Arc<WatchInner>) {
        let interval = Self::interval(&inner.client);
        loop {
            let started = Instant::now();
            let listing = match inner.client.list_volume_backups().await {
                Ok(volumes) => {
                    let followed = inner.followed.lock().map(|f| f.clone()).unwrap_or_default();
                    let sought = inner.sought.lock().map(|f| f.clone()).unwrap_or_default();
                    let mut listing = Listing::default();
                    for v in volumes {
                        for b in v.backup_status {
                            let found = !b.snapshot.is_empty() && sought.contains(&b.snapshot);
                            if found {
                                listing
                                    .by_snapshot
                                    .insert(b.snapshot.clone(), (v.name.clone(), b.id.clone()));
                            }
                            // A backup just found is followed next: keep its
                            // entry, so that a completion already shown counts.
                            if found || followed.contains(&b.id) {
                                listing.backups.insert(b.id.clone(), (v.name.clone(), b));
                            }
                        }
                    }
                    listing
                }
                Err(e) => Listing {
                    error: Some((e.to_string(), e.is_retryable())),
                    ..Listing::default()
                },
            };
            inner.listings.send_replace(std::sync::Arc::new(listing));
            tokio::time::sleep(Self::pause(interval, started.elapsed())).await;
            match inner.polling.lock() {
                Ok(mut polling) if inner.listings.receiver_count() == 0 => {
                    *polling = false;
                    return;
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    }

    /// The backup of `snapshot` as the shared listing shows it, once
    /// Longhorn has picked it up (`backupStatus[].snapshot` is empty until
    /// then): the recipe of Longhorn's own recurring jobs, one listing for
    /// every volume instead of a backup list per volume. `None` if it does
    /// not show within `within` (look elsewhere then).
    pub async fn discover(&self, volume: &str, snapshot: &str, within: Duration) -> Option<String> {
        let start = Instant::now();
        let _sought = Interest::new(&self.inner.sought, snapshot);
        let mut listings = self.subscribe();
        loop {
            let found = listings
                .borrow_and_update()
                .by_snapshot
                .get(snapshot)
                .filter(|(v, _)| v == volume)
                .map(|(_, backup)| backup.clone());
            if found.is_some() {
                return found;
            }
            let left = within.saturating_sub(start.elapsed());
            match tokio::time::timeout(left, listings.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return None,
            }
        }
    }

    /// Follows a backup through the shared listing (`backupStatus`) until it
    /// ends. A completed backup is known from its listing entry (URL and
    /// size); it is read in full only when the entry lacks the URL.
    pub async fn follow(
        &self,
        volume: &str,
        backup: &str,
        wait: Duration,
        progress: ProgressFn<'_>,
    ) -> Result<CompletedBackup> {
        let start = Instant::now();
        let _followed = Interest::new(&self.inner.followed, backup);
        let mut listings = self.subscribe();
        let mut last = "not listed yet".to_owned();
        loop {
            let listing = listings.borrow_and_update().clone();
            if let Some((message, retryable)) = &listing.error {
                if !retryable {
                    return Err(LonghornError::ListingFailed {
                        backup: backup.into(),
                        message: message.clone(),
                    });
                }
                last.clone_from(message);
            } else if let Some((_, st)) = listing.backups.get(backup).filter(|(v, _)| v == volume) {
                last = format!("{:?} {}%", st.state, st.progress);
                match st.state {
                    LhBackupState::Completed if !st.backup_url.is_empty() => {
                        progress(100);
                        return Ok(CompletedBackup {
                            url: st.backup_url.clone(),
                            size: st.size,
                            snapshot_created: None,
                        });
                    }
                    LhBackupState::Completed => {
                        progress(100);
                        // No URL in the listing: read the backup itself.
                        return match self.inner.client.backup(volume, backup).await? {
                            Some(b) => Ok(CompletedBackup {
                                url: b.url,
                                size: b.size,
                                snapshot_created: Some(b.snapshot_created),
                            }),
                            None => Err(LonghornError::NotFound {
                                what: "backup",
                                name: backup.into(),
                            }),
                        };
                    }
                    LhBackupState::Error | LhBackupState::Unknown | LhBackupState::Deleting => {
                        return Err(LonghornError::BackupFailed {
                            volume: volume.into(),
                            backup: backup.into(),
                            state: st.state.clone(),
                            message: st.error.clone(),
                        });
                    }
                    _ => progress(st.progress.clamp(0, 99)),
                }
            }
            let left = wait.saturating_sub(start.elapsed());
            match tokio::time::timeout(left, listings.changed()).await {
                Ok(Ok(())) => {}
                // The sender lives as long as `self`: not reached.
                Ok(Err(_)) | Err(_) => {
                    return Err(LonghornError::Deadline {
                        what: format!("backup {backup} of volume {volume}"),
                        waited: start.elapsed(),
                        last,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_follow_listing_takes_a_fifth_of_the_time_at_most() {
        let ms = Duration::from_millis;
        // A quick listing: the rest of the interval.
        assert_eq!(VolumeWatch::pause(ms(2_000), ms(100)), ms(1_900));
        // A listing longer than the interval: four times its duration.
        assert_eq!(VolumeWatch::pause(ms(2_000), ms(1_000)), ms(4_000));
        assert_eq!(VolumeWatch::pause(ms(2_000), ms(3_000)), ms(12_000));
        assert_eq!(VolumeWatch::pause(ms(0), ms(0)), ms(0));
    }
}
