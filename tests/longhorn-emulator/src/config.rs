//! What an emulator is started with: where it listens, the S3 backup store,
//! the Kubernetes cluster, and the speed of every asynchronous operation.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// Everything [`crate::Emulator::start`] needs.
pub struct EmulatorConfig {
    /// Address of the manager API and the control endpoint (tests use `127.0.0.1:0`).
    pub listen: SocketAddr,
    /// The backup target; `None` leaves the `default` target unavailable.
    pub store: Option<StoreConfig>,
    /// The cluster for the CSI side; `None`: no provisioner, `pvCreate`/`pvcCreate` fail.
    pub kube: Option<kube::Client>,
    /// Delays and rates of the asynchronous operations (changeable at run time).
    pub timings: Timings,
    /// Namespaces whose PVCs the provisioner serves (`None`: all). Tests that
    /// share the test bed's cluster each scope their emulator to their own.
    pub provision_namespaces: Option<Vec<String>>,
    /// `Some(n)`: backups, restores and backup deletions (the data path,
    /// Longhorn's replicas and engines) run on threads of their own at nice
    /// `n`, as they run on other nodes than the manager API in a cluster;
    /// benchmarks use it so that the emulator's uploads do not slow its API.
    /// `None` (the default): everything on the caller's runtime.
    pub data_path_nice: Option<i32>,
}

impl EmulatorConfig {
    /// No store, no cluster, [`Timings::fast`].
    pub fn new(listen: SocketAddr) -> Self {
        EmulatorConfig {
            listen,
            store: None,
            kube: None,
            timings: Timings::fast(),
            provision_namespaces: None,
            data_path_nice: None,
        }
    }
}

/// An S3 bucket used as the backup target `s3://<bucket>@<region>/<prefix>/`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreConfig {
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    /// Key prefix without leading/trailing `/`; objects live under `<prefix>/backupstore/`.
    pub prefix: String,
    pub access_key: String,
    pub secret_key: String,
}

impl StoreConfig {
    /// The test bed's S3 server with a fresh prefix `longhorn-emulator/<16 hex>`,
    /// so that each call gets a store of its own.
    pub fn from_testbed_env() -> anyhow::Result<StoreConfig> {
        Self::from_testbed_env_with_prefix(&format!(
            "longhorn-emulator/{:016x}",
            rand::random::<u64>()
        ))
    }

    /// The test bed's S3 server with a caller-chosen key prefix (tests use one per test).
    /// Variables come from `target/testbed.env` (see [`TestbedEnv::locate`]), else
    /// from the process environment.
    pub fn from_testbed_env_with_prefix(prefix: &str) -> anyhow::Result<StoreConfig> {
        TestbedEnv::load_or_environment()?.store(prefix)
    }

    /// The backup target URL as Longhorn shows it.
    pub fn target_url(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}@{}/", self.bucket, self.region)
        } else {
            format!("s3://{}@{}/{}/", self.bucket, self.region, self.prefix)
        }
    }
}

/// The env file written by `tests/testbed/up`.
pub struct TestbedEnv {
    path: PathBuf,
    vars: Vec<(String, String)>,
}

const HINT: &str = "start the test bed with tests/testbed/up";

impl TestbedEnv {
    /// Finds the file: `$DR_TESTBED_ENV`, else `target/testbed.env` in the current
    /// directory or one of its parents, else relative to this crate.
    pub fn locate() -> anyhow::Result<PathBuf> {
        if let Some(p) = std::env::var_os("DR_TESTBED_ENV") {
            return Ok(PathBuf::from(p));
        }
        let cwd = std::env::current_dir().context("reading the current directory")?;
        for dir in cwd.ancestors() {
            let candidate = dir.join("target/testbed.env");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
        let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/testbed.env");
        if here.is_file() {
            return Ok(here);
        }
        anyhow::bail!("no target/testbed.env above {}: {HINT}", cwd.display())
    }

    /// Loads the file found by [`TestbedEnv::locate`].
    pub fn load() -> anyhow::Result<TestbedEnv> {
        Self::load_from(&Self::locate()?)
    }

    /// The env file if it can be found, else only the process environment
    /// (every [`TestbedEnv::var`] then comes from the environment or fails).
    pub fn load_or_environment() -> anyhow::Result<TestbedEnv> {
        match Self::locate().and_then(|p| Self::load_from(&p)) {
            Ok(env) => Ok(env),
            Err(e) if std::env::var_os("DR_TEST_S3_ENDPOINT").is_some() => {
                tracing::debug!(error = %e, "no test bed env file; using the environment");
                Ok(TestbedEnv {
                    path: PathBuf::from("(environment)"),
                    vars: Vec::new(),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Loads `KEY=VALUE` lines from `path`.
    pub fn load_from(path: &Path) -> anyhow::Result<TestbedEnv> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading {}: {HINT}", path.display()))?;
        let vars = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        Ok(TestbedEnv {
            path: path.to_owned(),
            vars,
        })
    }

    /// One variable: from the file, else from the process environment (the
    /// file wins so that a shell's `KUBECONFIG` never points the emulator at
    /// another cluster); an error naming the file if it is absent from both.
    pub fn var(&self, key: &str) -> anyhow::Result<String> {
        self.vars
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var(key).ok().filter(|v| !v.is_empty()))
            .with_context(|| format!("{key} is missing from {}: {HINT}", self.path.display()))
    }

    /// The bed's S3 server as a backup store under `prefix`. The bed has one
    /// S3 server for both clusters: emulators on cluster A and on cluster B
    /// given the same prefix serve the same backup store.
    pub fn store(&self, prefix: &str) -> anyhow::Result<StoreConfig> {
        Ok(StoreConfig {
            endpoint: self.var("DR_TEST_S3_ENDPOINT")?,
            region: self.var("DR_TEST_S3_REGION")?,
            bucket: self.var("DR_TEST_S3_BUCKET")?,
            prefix: prefix.trim_matches('/').to_owned(),
            access_key: self.var("AWS_ACCESS_KEY_ID")?,
            secret_key: self.var("AWS_SECRET_ACCESS_KEY")?,
        })
    }

    /// A kube client for the bed's cluster A (from its `KUBECONFIG`), checked to answer.
    pub async fn kube_client(&self) -> anyhow::Result<kube::Client> {
        self.kube_client_of(Cluster::A).await
    }

    /// A kube client for the bed's cluster B (from `DR_TEST_KUBECONFIG_B`),
    /// checked to answer: the new cluster a disaster recovers into.
    pub async fn kube_client_b(&self) -> anyhow::Result<kube::Client> {
        self.kube_client_of(Cluster::B).await
    }

    /// The kubeconfig of one of the bed's clusters.
    pub fn kubeconfig(&self, cluster: Cluster) -> anyhow::Result<PathBuf> {
        self.var(cluster.kubeconfig_var()).map(PathBuf::from)
    }

    /// A kube client for one of the bed's clusters, checked to answer.
    pub async fn kube_client_of(&self, cluster: Cluster) -> anyhow::Result<kube::Client> {
        kube_client_from(&self.kubeconfig(cluster)?)
            .await
            .with_context(|| format!("cluster {cluster:?} of the test bed"))
    }
}

/// One of the test bed's two Kubernetes clusters (`tests/testbed/up` starts
/// both): A, where applications run, and B, a separate cluster with its own
/// etcd and nodes, to recover into after A is lost. Both share the bed's S3
/// server, so emulators on A and on B can serve the same backup store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Cluster {
    #[default]
    A,
    B,
}

impl Cluster {
    /// The env file's variable naming the cluster's kubeconfig.
    pub fn kubeconfig_var(self) -> &'static str {
        match self {
            Cluster::A => "KUBECONFIG",
            Cluster::B => "DR_TEST_KUBECONFIG_B",
        }
    }
}

/// A kube client from a kubeconfig file, after checking that the API server answers.
pub async fn kube_client_from(path: &Path) -> anyhow::Result<kube::Client> {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let kc = Kubeconfig::read_from(path)
        .with_context(|| format!("reading kubeconfig {}: {HINT}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("loading kubeconfig {}", path.display()))?;
    let client = kube::Client::try_from(config).context("building a kube client")?;
    tokio::time::timeout(Duration::from_secs(10), client.apiserver_version())
        .await
        .map_err(|_| anyhow::anyhow!("kube-apiserver did not answer in 10 s: {HINT}"))?
        .with_context(|| format!("kube-apiserver refused: {HINT}"))?;
    Ok(client)
}

/// Delays and rates of the emulated asynchronous operations (fields absent
/// from a JSON body take [`Timings::fast`]'s values).
///
/// Both profiles run the same sequence as longhorn-manager: a detached
/// volume is attached for a snapshot, a backup or a snapshot's deletion
/// (the controllers' attachment tickets); a Snapshot CR is ready once the
/// engine took it and its monitor saw it; a Backup CR shows `""` (or
/// `Pending` while its snapshot is not ready) until the backup monitor's
/// first poll, then `InProgress`, then `Completed`, each refreshed only at
/// the monitor's polls; a deleted Snapshot CR stays listed until the
/// engine purged the snapshot. Only the durations differ:
/// - [`Timings::fast`]: tens of milliseconds per step, for the test suites
///   (the harness, the contract tests and the emulator's own): the whole
///   sequence, in a second or so per test.
/// - [`Timings::realistic`]: Longhorn's own periods (the engine monitor's
///   5 s, the backup monitor's 2 s) and seconds per attachment, for the
///   demo and the fan-out bench's default profile, whose figures then say
///   what a tick costs against a real manager.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Timings {
    /// `""` -> `creating` -> `detached`.
    pub volume_create_ms: u64,
    /// `attaching` -> `attached` (detaching takes half).
    pub attach_ms: u64,
    /// The engine took the snapshot -> the Snapshot CR is `readyToUse`.
    /// Longhorn marks it ready when the engine monitor's next refresh lists
    /// it (controller/snapshot_controller.go `reconcile` reads
    /// `engine.Status.Snapshots`, which controller/engine_controller.go
    /// `(*EngineMonitor).Run` refreshes every `EnginePollInterval`, 5 s):
    /// between 0 and 5 s, 2.5 s on average.
    pub snapshot_ready_ms: u64,
    /// `snapshotCRDelete` of a snapshot the engine holds -> the CR is gone:
    /// the engine's purge, then the engine monitor's next refresh no longer
    /// listing it (snapshot_controller.go `reconcile`, deletion branch:
    /// the finalizer is removed only once the snapshot left
    /// `engine.Status.Snapshots`). Until then the CR is listed, marked removed.
    pub snapshot_delete_ms: u64,
    /// A Backup CR whose volume is attached and snapshot ready -> its
    /// backup monitor starts: the backup controller's reconciles (its
    /// attachment ticket satisfied) and the engine's `SnapshotBackup` call
    /// (controller/backup_controller.go `checkMonitor`, `enableBackupMonitor`).
    pub backup_start_ms: u64,
    /// The backup monitor's poll period: the Backup CR's state, progress
    /// and URL change only at these polls, the first one a period after the
    /// monitor started (engineapi/backup_monitor.go `BackupMonitorSyncPeriod`,
    /// 2 s, `linerTimer`).
    pub backup_monitor_ms: u64,
    /// The informers' resync period (util/client/client.go: 30 s): a
    /// Backup CR left `Pending` by `checkMonitor` (its snapshot missing or
    /// not ready, another backup of the volume being deleted) is reconciled
    /// again only then; it errors after 5 such tries (`maxCreationRetry`).
    pub resync_ms: u64,
    /// Upload speed over the snapshot's non-zero data.
    pub backup_bytes_per_sec: u64,
    /// Restore: from attached to the first bytes.
    pub restore_start_ms: u64,
    /// Restore speed over the backup's blocks (a full restore writes only
    /// the blocks the backup maps; the rest of the volume stays sparse).
    pub restore_bytes_per_sec: u64,
    /// Volume and backup deletion.
    pub delete_ms: u64,
    /// `pvCreate` -> `kubernetesStatus.pvName` (Longhorn's PV controller sees
    /// the new PV and updates the volume's status).
    pub pv_status_ms: u64,
}

impl Timings {
    /// Tens of milliseconds per step, 256 MiB/s: for the test suites.
    pub fn fast() -> Self {
        Timings {
            volume_create_ms: 30,
            attach_ms: 30,
            snapshot_ready_ms: 30,
            snapshot_delete_ms: 30,
            backup_start_ms: 20,
            backup_monitor_ms: 20,
            resync_ms: 60,
            backup_bytes_per_sec: 256 << 20,
            restore_start_ms: 40,
            restore_bytes_per_sec: 256 << 20,
            delete_ms: 30,
            pv_status_ms: 300,
        }
    }

    /// Longhorn's own periods and seconds per step, tens of MiB/s: close to
    /// a small real cluster, for the demo and the fan-out bench.
    pub fn realistic() -> Self {
        Timings {
            volume_create_ms: 2_000,
            attach_ms: 4_000,
            // The mean wait for the engine monitor's 5 s refresh.
            snapshot_ready_ms: 2_500,
            // A small purge, then the mean wait for the next refresh.
            snapshot_delete_ms: 3_000,
            backup_start_ms: 1_000,
            backup_monitor_ms: 2_000,
            resync_ms: 30_000,
            backup_bytes_per_sec: 20 << 20,
            restore_start_ms: 5_000,
            restore_bytes_per_sec: 40 << 20,
            delete_ms: 2_000,
            pv_status_ms: 1_000,
        }
    }
}

impl Default for Timings {
    fn default() -> Self {
        Timings::fast()
    }
}

pub(crate) fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// How long moving `bytes` takes at `rate` bytes per second (rate 0 = instant).
pub(crate) fn transfer_time(bytes: u64, rate: u64) -> Duration {
    if rate == 0 {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(bytes as f64 / rate as f64)
}
