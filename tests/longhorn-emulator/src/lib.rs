//! A faithful emulator of the Longhorn v1.12 manager REST API, for dr's tests
//! and demo (Longhorn itself cannot run on the test machines).
//!
//! ```text
//!   HTTP  ──► api (/v1: routing, faults, handlers) ──► state (volumes, snapshots, backups)
//!              │                                         ▲
//!              └─ control (/emulator: data, faults) ─────┤
//!   worker (timed lifecycles: create, attach, backup upload, restore, delete)
//!      └──► store (S3 backup store, Longhorn's layout)    cluster (StorageClass, provisioner,
//!                                                            PV/PVC, kubernetesStatus)
//! ```
//!
//! Start one in-process with [`Emulator::start`]; drive its data and faults
//! with [`Control`]. The binary `longhorn-emulator` runs the same server.

#![recursion_limit = "256"]

mod api;
mod cluster;
mod config;
mod control;
mod render;
mod schema;
mod state;
mod store;
mod worker;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tower::ServiceExt as _;
use tracing::{debug, info, warn};

pub use config::{Cluster, EmulatorConfig, StoreConfig, TestbedEnv, Timings, kube_client_from};
pub use control::Control;
pub use store::{BackupCfg, BlockMapping, VolumeCfg, double_decode, sha512_hex};

/// An injected fault for one operation (or `"*"` for every API request).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Fault {
    /// An action name (`snapshotBackup`, `backupGet`...), `getVolume`,
    /// `listVolumes`, `createVolume`, `deleteVolume`, `listBackupVolumes`,
    /// `getBackupVolume`, `getBackupTarget`, `backupUpload` (the asynchronous
    /// upload ends in `Error`), `restore` (the asynchronous restore fails), or `*`.
    pub operation: String,
    /// Fraction (0..1) of calls answered 500 `injected fault`.
    pub error_rate: f64,
    /// Added before answering.
    pub latency_ms: u64,
    /// Never answer until the faults are cleared.
    pub hang: bool,
    /// The operation takes effect first; the latency, the hang and the
    /// injected 500 come after it (a client timing out on work the server did).
    pub after_effect: bool,
}

/// Counters and names, for assertions.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Stats {
    /// API requests per operation (the names [`Fault::operation`] uses).
    pub requests: std::collections::BTreeMap<String, u64>,
    /// Bytes of the response bodies per operation (headers not counted):
    /// what answering the client cost the manager.
    pub response_bytes: std::collections::BTreeMap<String, u64>,
    /// Bytes of the request bodies per operation.
    pub request_bytes: std::collections::BTreeMap<String, u64>,
    /// `snapshotBackup` calls that created a backup.
    pub backups_created: u64,
    /// Volumes that exist.
    pub volumes: Vec<String>,
    /// Backup CRs that exist.
    pub backups: Vec<String>,
    /// When each completed backup completed, to the microsecond (the API's
    /// `created` has whole seconds only).
    pub completed_at: std::collections::BTreeMap<String, chrono::DateTime<chrono::Utc>>,
}

/// A running emulator.
pub struct Emulator {
    addr: SocketAddr,
    shared: Arc<state::Shared>,
    server: JoinHandle<()>,
}

/// The error that makes hyper drop a connection without answering ("Longhorn down").
#[derive(Debug, thiserror::Error)]
#[error("the emulated Longhorn is down")]
struct Down;

impl Emulator {
    /// Binds, syncs backups already in the store, sets up the Kubernetes side,
    /// and serves until [`Emulator::shutdown`] (or drop).
    pub async fn start(cfg: EmulatorConfig) -> anyhow::Result<Emulator> {
        let store = cfg.store.map(store::Store::new);
        let data_path = cfg
            .data_path_nice
            .map(state::DataPath::start)
            .transpose()
            .context("starting the data path's threads")?;
        let shared = Arc::new(state::Shared::new(
            cfg.timings,
            store,
            cfg.kube.clone(),
            data_path,
        ));
        // Scope the provisioner before it starts, so an emulator never grabs
        // another test's claims in the moment after it starts.
        shared.lock().provision_namespaces =
            cfg.provision_namespaces.map(|v| v.into_iter().collect());
        if shared.store.is_some() {
            // A fresh Longhorn lists what the store already holds at start,
            // with no sync request and no wait for the poll interval
            // (longhorn-manager v1.12.1): controller/backup_target_controller.go
            // `reconcile` syncs while `isBackupTargetSyncRequired`, true for a
            // target whose Status.LastSyncedAt is zero, as a fresh one's is.
            // Its first reconcile only sets Available (longhorn#11337); the
            // status update re-queues it and the second one's `syncBackupVolume`
            // (`pullBackupVolumeFromBackupTarget`) creates the BackupVolume CRs;
            // each new BackupVolume's LastSyncedAt is zero, so
            // controller/backup_volume_controller.go `reconcile` creates its
            // Backup CRs, which controller/backup_controller.go `reconcile`
            // fills from the store. Here all of it happens before the API
            // answers (Longhorn's reconciles take a moment, not modelled);
            // then the BackupStoreTimer polls (`start_target_poll`). A manual
            // `backupTargetSync` right after the start is accepted: nothing
            // set spec.syncRequestedAt yet (manager/engine.go SyncBackupTarget).
            api::sync_from_store(&shared, state::TARGET, None)
                .await
                .context("reading the backup store (is the test bed up? tests/testbed/up)")?;
            api::start_target_poll(&shared, state::TARGET);
        }
        if let Some(client) = cfg.kube {
            cluster::start(&shared, client)
                .await
                .context("setting up the Kubernetes side")?;
        }
        let listener = TcpListener::bind(cfg.listen)
            .await
            .with_context(|| format!("binding {}", cfg.listen))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let router = Router::new()
            .nest("/emulator", control::routes())
            .fallback(api::handle)
            .with_state(shared.clone());
        let server = tokio::spawn(serve(listener, router, shared.clone()));
        info!(%addr, "Longhorn emulator listening");
        Ok(Emulator {
            addr,
            shared,
            server,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/`: the manager API root (API under `/v1`).
    pub fn url(&self) -> url::Url {
        url::Url::parse(&format!("http://{}/", self.addr)).unwrap_or_else(|_| {
            // A SocketAddr always forms a valid URL; keep a usable value anyway.
            url::Url::parse("http://127.0.0.1/").unwrap_or_else(|_| unreachable!())
        })
    }

    /// A client of the control endpoint.
    pub fn control(&self) -> Control {
        Control::new(self.url())
    }

    /// Stops serving and every background task.
    pub async fn shutdown(self) {
        self.server.abort();
        self.shared.abort_all();
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.server.abort();
        self.shared.abort_all();
    }
}

async fn serve(listener: TcpListener, router: Router, shared: Arc<state::Shared>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    // As Go's net/http (Longhorn's server) does: no Nagle delay.
                    let _ = stream.set_nodelay(true);
                    conns.spawn(serve_conn(stream, router.clone(), shared.clone()));
                }
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn serve_conn(stream: TcpStream, router: Router, shared: Arc<state::Shared>) {
    let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let router = router.clone();
        let shared = shared.clone();
        async move {
            if shared.is_down() && !req.uri().path().starts_with("/emulator") {
                return Err(Down);
            }
            match router.oneshot(req.map(Body::new)).await {
                Ok(resp) => Ok(resp),
                Err(never) => match never {},
            }
        }
    });
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), svc)
        .await
    {
        debug!(error = %e, "connection ended");
    }
}
