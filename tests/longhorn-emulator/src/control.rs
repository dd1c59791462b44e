//! The test-only control endpoint under `/emulator` (same port as the API) and
//! its typed client [`Control`].
//!
//! | Method | Path | Body / answer |
//! |---|---|---|
//! | POST | `/emulator/volumes` | `{"name","size"}`; answers once the volume is `detached` |
//! | PUT | `/emulator/volumes/{name}/data?offset=N` | raw bytes written at `N` |
//! | GET | `/emulator/volumes/{name}/data` | the whole volume, raw |
//! | GET | `/emulator/volumes/{name}/checksum` | `{"sha256":"<hex>"}` of the whole volume |
//! | GET, PUT, DELETE | `/emulator/faults` | list / set one ([`Fault`], replaces the one for its operation) / clear all |
//! | GET, PUT | `/emulator/down` | `{"down":bool}` |
//! | GET, PUT | `/emulator/timings` | [`Timings`] |
//! | GET | `/emulator/stats` | [`Stats`] |
//! | GET, PUT | `/emulator/provisioner` | `{"namespaces": null \| ["ns", ...]}`: PVC namespaces served (null: all) |
//! | PUT | `/emulator/settings/{name}` | `{"value"}`: as `PUT /v1/settings/{name}` |
//! | POST | `/emulator/volumes/{name}/attach`, `.../detach` | ticket `longhorn-ui` added (waits `attached`) / removed (waits `detached` if no other ticket) |
//! | PUT | `/emulator/volumes/{name}/engine-upgrading` | `{"upgrading":bool}` |
//! | PUT | `/emulator/schedulable-replicas` | `{"replicas": null \| n}`: replicas of new volumes the scheduler places |
//! | POST | `/emulator/backuptargets` | `{"name","store":StoreConfig}` (camelCase): a target of its own store, synced before the answer |
//! | PUT | `/emulator/version` | `{"version":"v1.8.0"}`: `current-longhorn-version` |

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::{Deserialize, Serialize};

use crate::config::Timings;
use crate::state::{Shared, VolState, read_blocks, write_blocks};
use crate::{Fault, Stats};

/// A failed control request (plain-text body).
#[derive(Debug, thiserror::Error)]
enum ControlError {
    #[error("volume {0} not found")]
    NoVolume(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Timeout(String),
}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let status = match self {
            ControlError::NoVolume(_) => StatusCode::NOT_FOUND,
            ControlError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ControlError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        };
        (status, self.to_string()).into_response()
    }
}

pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/volumes", post(create_volume))
        .route("/volumes/{name}/data", put(write).get(read))
        .route("/volumes/{name}/checksum", get(checksum))
        .route(
            "/faults",
            get(list_faults).put(set_fault).delete(clear_faults),
        )
        .route("/down", get(get_down).put(set_down))
        .route("/timings", get(get_timings).put(set_timings))
        .route("/stats", get(stats))
        .route("/provisioner", get(get_provisioner).put(set_provisioner))
        .route("/settings/{name}", put(set_setting))
        .route("/volumes/{name}/attach", post(attach))
        .route("/volumes/{name}/detach", post(detach))
        .route(
            "/volumes/{name}/engine-upgrading",
            put(set_engine_upgrading),
        )
        .route("/schedulable-replicas", put(set_schedulable_replicas))
        .route("/backuptargets", post(add_backup_target))
        .route("/version", put(set_version))
        .layer(DefaultBodyLimit::max(1 << 30))
}

#[derive(Serialize, Deserialize)]
struct CreateVolume {
    name: String,
    size: u64,
}

async fn create_volume(
    State(sh): State<Arc<Shared>>,
    Json(input): Json<CreateVolume>,
) -> Result<Json<serde_json::Value>, ControlError> {
    crate::api::create_plain_volume(&sh, &input.name, input.size)
        .map_err(|e| ControlError::BadRequest(e.to_string()))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let state = sh.lock().volumes.get(&input.name).map(|v| v.state);
        match state {
            Some(VolState::Detached) => return Ok(Json(serde_json::json!({}))),
            None => return Err(ControlError::NoVolume(input.name)),
            Some(_) if tokio::time::Instant::now() > deadline => {
                return Err(ControlError::Timeout(format!(
                    "volume {} not detached after 120 s",
                    input.name
                )));
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

#[derive(Deserialize)]
struct Offset {
    #[serde(default)]
    offset: u64,
}

async fn write(
    State(sh): State<Arc<Shared>>,
    Path(name): Path<String>,
    Query(q): Query<Offset>,
    body: Bytes,
) -> Result<StatusCode, ControlError> {
    let mut st = sh.lock();
    let v = st
        .volumes
        .get_mut(&name)
        .ok_or_else(|| ControlError::NoVolume(name.clone()))?;
    let end = q.offset.checked_add(body.len() as u64);
    if end.is_none_or(|e| e > v.size) {
        return Err(ControlError::BadRequest(format!(
            "write of {} bytes at {} goes past the end of volume {name} ({} bytes)",
            body.len(),
            q.offset,
            v.size
        )));
    }
    write_blocks(&mut v.data, q.offset, &body);
    Ok(StatusCode::NO_CONTENT)
}

fn contents(sh: &Shared, name: &str) -> Result<Vec<u8>, ControlError> {
    let (blocks, size) = {
        let st = sh.lock();
        let v = st
            .volumes
            .get(name)
            .ok_or_else(|| ControlError::NoVolume(name.to_owned()))?;
        (v.data.clone(), v.size)
    };
    Ok(read_blocks(&blocks, size))
}

async fn read(
    State(sh): State<Arc<Shared>>,
    Path(name): Path<String>,
) -> Result<Vec<u8>, ControlError> {
    contents(&sh, &name)
}

/// SHA-256 of the whole volume, zeros included, block by block: a 300 MiB
/// volume (Longhorn's xfs minimum) is hashed without being copied whole.
async fn checksum(
    State(sh): State<Arc<Shared>>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ControlError> {
    let (blocks, size) = {
        let st = sh.lock();
        let v = st
            .volumes
            .get(&name)
            .ok_or_else(|| ControlError::NoVolume(name.clone()))?;
        (v.data.clone(), v.size)
    };
    let hex = tokio::task::spawn_blocking(move || {
        let block = crate::state::BLOCK;
        let zeros = vec![0u8; block as usize];
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let mut at = 0u64;
        while at < size {
            let len = block.min(size - at) as usize;
            match blocks.get(&(at / block)) {
                Some(data) => ctx.update(&data[..len.min(data.len())]),
                None => ctx.update(&zeros[..len]),
            }
            at += block;
        }
        hex::encode(ctx.finish().as_ref())
    })
    .await
    .map_err(|e| ControlError::BadRequest(format!("checksum task failed: {e}")))?;
    Ok(Json(serde_json::json!({ "sha256": hex })))
}

async fn list_faults(State(sh): State<Arc<Shared>>) -> Json<Vec<Fault>> {
    Json(sh.lock().faults.values().cloned().collect())
}

async fn set_fault(
    State(sh): State<Arc<Shared>>,
    Json(f): Json<Fault>,
) -> Result<StatusCode, ControlError> {
    if f.operation.is_empty() {
        return Err(ControlError::BadRequest(
            "fault operation is empty (use \"*\" for every request)".into(),
        ));
    }
    if !(0.0..=1.0).contains(&f.error_rate) {
        return Err(ControlError::BadRequest(format!(
            "errorRate {} is not within 0..1",
            f.error_rate
        )));
    }
    sh.lock().faults.insert(f.operation.clone(), f);
    sh.faults_changed.send_modify(|g| *g += 1);
    Ok(StatusCode::NO_CONTENT)
}

async fn clear_faults(State(sh): State<Arc<Shared>>) -> StatusCode {
    sh.lock().faults.clear();
    sh.faults_changed.send_modify(|g| *g += 1);
    StatusCode::NO_CONTENT
}

#[derive(Serialize, Deserialize)]
struct Down {
    down: bool,
}

async fn get_down(State(sh): State<Arc<Shared>>) -> Json<Down> {
    Json(Down { down: sh.is_down() })
}

async fn set_down(State(sh): State<Arc<Shared>>, Json(d): Json<Down>) -> StatusCode {
    sh.down.store(d.down, std::sync::atomic::Ordering::SeqCst);
    StatusCode::NO_CONTENT
}

async fn get_timings(State(sh): State<Arc<Shared>>) -> Json<Timings> {
    Json(sh.timings())
}

async fn set_timings(State(sh): State<Arc<Shared>>, Json(t): Json<Timings>) -> StatusCode {
    sh.lock().timings = t;
    StatusCode::NO_CONTENT
}

#[derive(Serialize, Deserialize)]
struct Provisioner {
    namespaces: Option<Vec<String>>,
}

async fn get_provisioner(State(sh): State<Arc<Shared>>) -> Json<Provisioner> {
    Json(Provisioner {
        namespaces: sh
            .lock()
            .provision_namespaces
            .as_ref()
            .map(|s| s.iter().cloned().collect()),
    })
}

async fn set_provisioner(State(sh): State<Arc<Shared>>, Json(p): Json<Provisioner>) -> StatusCode {
    sh.lock().provision_namespaces = p.namespaces.map(|v| v.into_iter().collect());
    StatusCode::NO_CONTENT
}

/// The ticket of [`Control::attach`] (the one `attach` without an
/// attachment ID makes through the API).
const CONTROL_TICKET: &str = "longhorn-ui";

/// Waits until `done` holds for the volume's state (120 s at most).
async fn wait_state(
    sh: &Shared,
    name: &str,
    what: &str,
    done: impl Fn(VolState) -> bool,
) -> Result<(), ControlError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let state = sh.lock().volumes.get(name).map(|v| v.state);
        match state {
            Some(s) if done(s) => return Ok(()),
            None => return Err(ControlError::NoVolume(name.to_owned())),
            Some(_) if tokio::time::Instant::now() > deadline => {
                return Err(ControlError::Timeout(format!(
                    "volume {name} not {what} after 120 s"
                )));
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// Attaches as `attach` does through the API (ticket `longhorn-ui`), then
/// waits until the volume is `attached`.
async fn attach(
    State(sh): State<Arc<Shared>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ControlError> {
    {
        let mut st = sh.lock();
        let v = st
            .volumes
            .get_mut(&name)
            .ok_or_else(|| ControlError::NoVolume(name.clone()))?;
        if v.restore_required {
            return Err(ControlError::BadRequest(format!(
                "volume {name} is pending restoring"
            )));
        }
        if v.scheduled == 0 {
            return Err(ControlError::BadRequest(format!(
                "volume {name} has no scheduled replica: it cannot attach"
            )));
        }
        v.tickets.insert(
            CONTROL_TICKET.into(),
            crate::state::Ticket {
                kind: "longhorn-api".into(),
                node: "node-1".into(),
                disable_frontend: false,
                any_frontend: false,
            },
        );
        crate::worker::kick(&sh, &mut st, &name);
    }
    wait_state(&sh, &name, "attached", |s| s == VolState::Attached).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes the ticket of [`attach`]; when no other ticket holds the volume,
/// waits until it is `detached`.
async fn detach(
    State(sh): State<Arc<Shared>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ControlError> {
    let free = {
        let mut st = sh.lock();
        let v = st
            .volumes
            .get_mut(&name)
            .ok_or_else(|| ControlError::NoVolume(name.clone()))?;
        v.tickets.remove(CONTROL_TICKET);
        let free = v.tickets.is_empty();
        crate::worker::kick(&sh, &mut st, &name);
        free
    };
    if free {
        wait_state(&sh, &name, "detached", |s| s == VolState::Detached).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, Deserialize)]
struct Upgrading {
    upgrading: bool,
}

/// The engine image the "upgrade" of [`set_engine_upgrading`] goes to.
pub const UPGRADE_IMAGE: &str = "longhornio/longhorn-engine:v1.12.2";

async fn set_engine_upgrading(
    State(sh): State<Arc<Shared>>,
    Path(name): Path<String>,
    Json(u): Json<Upgrading>,
) -> Result<StatusCode, ControlError> {
    let mut st = sh.lock();
    let v = st
        .volumes
        .get_mut(&name)
        .ok_or_else(|| ControlError::NoVolume(name.clone()))?;
    v.engine_upgrading = u.upgrading.then(|| {
        (
            "longhornio/longhorn-engine:v1.12.1".to_owned(),
            UPGRADE_IMAGE.to_owned(),
        )
    });
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, Deserialize)]
struct Schedulable {
    replicas: Option<usize>,
}

async fn set_schedulable_replicas(
    State(sh): State<Arc<Shared>>,
    Json(s): Json<Schedulable>,
) -> StatusCode {
    sh.lock().schedulable_replicas = s.replicas;
    StatusCode::NO_CONTENT
}

#[derive(Serialize, Deserialize)]
struct NewTarget {
    name: String,
    store: crate::config::StoreConfig,
}

/// Adds a backup target with a store of its own; it is synced at once (a
/// fresh target's LastSyncedAt is zero) before the answer, then polled.
async fn add_backup_target(
    State(sh): State<Arc<Shared>>,
    Json(t): Json<NewTarget>,
) -> Result<StatusCode, ControlError> {
    if t.name.is_empty() || t.name == crate::state::TARGET || sh.store_for(&t.name).is_some() {
        return Err(ControlError::BadRequest(format!(
            "backup target {:?} exists already (or is not a name)",
            t.name
        )));
    }
    let store = Arc::new(crate::store::Store::new(t.store));
    sh.extra_stores
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(t.name.clone(), store);
    crate::api::sync_from_store(&sh, &t.name, None)
        .await
        .map_err(|e| ControlError::BadRequest(format!("reading the store of {}: {e:#}", t.name)))?;
    crate::api::start_target_poll(&sh, &t.name);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, Deserialize)]
struct SettingValue {
    value: String,
}

/// As `PUT /v1/settings/{name}` (same validation and messages).
async fn set_setting(
    State(sh): State<Arc<Shared>>,
    Path(name): Path<String>,
    Json(v): Json<SettingValue>,
) -> Result<StatusCode, ControlError> {
    crate::api::set_setting(&sh, &name, &v.value)
        .map_err(|e| ControlError::BadRequest(e.to_string()))?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, Deserialize)]
struct Version {
    version: String,
}

/// Sets `current-longhorn-version` (as an upgrade does).
async fn set_version(
    State(sh): State<Arc<Shared>>,
    Json(v): Json<Version>,
) -> Result<StatusCode, ControlError> {
    if crate::state::parse_version(&v.version).is_none() {
        return Err(ControlError::BadRequest(format!(
            "{:?} is not a version (vMAJOR.MINOR.PATCH)",
            v.version
        )));
    }
    sh.lock()
        .settings
        .insert("current-longhorn-version".into(), v.version);
    Ok(StatusCode::NO_CONTENT)
}

async fn stats(State(sh): State<Arc<Shared>>) -> Json<Stats> {
    Json(sh.lock().stats())
}

/// Typed client of the control endpoint.
#[derive(Clone, Debug)]
pub struct Control {
    base: url::Url,
    http: reqwest::Client,
}

impl Control {
    /// `base` is the emulator's root URL (`http://127.0.0.1:PORT/`).
    pub fn new(base: url::Url) -> Control {
        Control {
            base,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(300))
                .build()
                .unwrap_or_default(),
        }
    }

    fn url(&self, path: &str) -> anyhow::Result<url::Url> {
        self.base
            .join(&format!("emulator/{path}"))
            .with_context(|| format!("joining {path} to {}", self.base))
    }

    async fn check(resp: reqwest::Response, what: &str) -> anyhow::Result<reqwest::Response> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.text().await.unwrap_or_default();
        anyhow::bail!("emulator control {what}: {status}: {body}")
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
    ) -> anyhow::Result<reqwest::Response> {
        let resp = req
            .send()
            .await
            .with_context(|| format!("emulator control {what}"))?;
        Self::check(resp, what).await
    }

    /// Creates a volume of `size` bytes (a multiple of 2 MiB) and waits until it is detached.
    pub async fn create_volume(&self, name: &str, size: u64) -> anyhow::Result<()> {
        let body = CreateVolume {
            name: name.to_owned(),
            size,
        };
        self.send(
            self.http.post(self.url("volumes")?).json(&body),
            "create volume",
        )
        .await?;
        Ok(())
    }

    /// Writes `data` at `offset` into the volume.
    pub async fn write(&self, volume: &str, offset: u64, data: &[u8]) -> anyhow::Result<()> {
        let mut url = self.url(&format!("volumes/{volume}/data"))?;
        url.query_pairs_mut()
            .append_pair("offset", &offset.to_string());
        self.send(self.http.put(url).body(data.to_vec()), "write")
            .await?;
        Ok(())
    }

    /// The whole volume, zeros included.
    pub async fn read(&self, volume: &str) -> anyhow::Result<Vec<u8>> {
        let url = self.url(&format!("volumes/{volume}/data"))?;
        let resp = self.send(self.http.get(url), "read").await?;
        Ok(resp.bytes().await.context("reading volume data")?.to_vec())
    }

    /// Hex SHA-256 of the whole volume.
    pub async fn checksum(&self, volume: &str) -> anyhow::Result<String> {
        let url = self.url(&format!("volumes/{volume}/checksum"))?;
        let resp = self.send(self.http.get(url), "checksum").await?;
        let v: serde_json::Value = resp.json().await.context("decoding checksum")?;
        v["sha256"]
            .as_str()
            .map(str::to_owned)
            .context("checksum answer without sha256")
    }

    /// Sets the fault of `f.operation` (replacing an earlier one).
    pub async fn set_fault(&self, f: Fault) -> anyhow::Result<()> {
        self.send(self.http.put(self.url("faults")?).json(&f), "set fault")
            .await?;
        Ok(())
    }

    /// Removes every fault (hung requests then proceed).
    pub async fn clear_faults(&self) -> anyhow::Result<()> {
        self.send(self.http.delete(self.url("faults")?), "clear faults")
            .await?;
        Ok(())
    }

    /// "Longhorn down": every `/v1` connection is closed without an answer.
    pub async fn set_down(&self, down: bool) -> anyhow::Result<()> {
        self.send(
            self.http.put(self.url("down")?).json(&Down { down }),
            "set down",
        )
        .await?;
        Ok(())
    }

    pub async fn set_timings(&self, t: Timings) -> anyhow::Result<()> {
        self.send(self.http.put(self.url("timings")?).json(&t), "set timings")
            .await?;
        Ok(())
    }

    pub async fn timings(&self) -> anyhow::Result<Timings> {
        let resp = self
            .send(self.http.get(self.url("timings")?), "timings")
            .await?;
        resp.json().await.context("decoding timings")
    }

    /// Restricts the provisioner to PVCs of these namespaces (`None`: every
    /// namespace, the default). Useful when several emulators share a cluster.
    pub async fn set_provisioner_namespaces(
        &self,
        namespaces: Option<Vec<String>>,
    ) -> anyhow::Result<()> {
        self.send(
            self.http
                .put(self.url("provisioner")?)
                .json(&Provisioner { namespaces }),
            "set provisioner namespaces",
        )
        .await?;
        Ok(())
    }

    /// Same effect as `PUT /v1/settings/{name}` with `{"value": value}`
    /// (Longhorn's validation: `snapshot-max-count` must be 2..250...).
    pub async fn set_setting(&self, name: &str, value: &str) -> anyhow::Result<()> {
        let body = SettingValue {
            value: value.to_owned(),
        };
        self.send(
            self.http
                .put(self.url(&format!("settings/{name}"))?)
                .json(&body),
            "set setting",
        )
        .await?;
        Ok(())
    }

    /// Adds backup target `name` backed by `store` (listed by `GET
    /// /v1/backuptargets`, usable with `updateBackupTargetName`); backups
    /// already in its store are synced before this returns.
    pub async fn add_backup_target(
        &self,
        name: &str,
        store: crate::config::StoreConfig,
    ) -> anyhow::Result<()> {
        let body = NewTarget {
            name: name.to_owned(),
            store,
        };
        self.send(
            self.http.post(self.url("backuptargets")?).json(&body),
            "add backup target",
        )
        .await?;
        Ok(())
    }

    /// Attaches the volume as the API's `attach` without an attachment ID
    /// does (ticket `longhorn-ui`) and waits until it is `attached`.
    pub async fn attach(&self, volume: &str) -> anyhow::Result<()> {
        self.send(
            self.http
                .post(self.url(&format!("volumes/{volume}/attach"))?),
            "attach",
        )
        .await?;
        Ok(())
    }

    /// Removes the ticket of [`Control::attach`]; if nothing else holds the
    /// volume (a snapshot or backup in progress, a pod), waits until it is
    /// `detached`.
    pub async fn detach(&self, volume: &str) -> anyhow::Result<()> {
        self.send(
            self.http
                .post(self.url(&format!("volumes/{volume}/detach"))?),
            "detach",
        )
        .await?;
        Ok(())
    }

    /// While `upgrading`, the volume's engine is "upgrading" from
    /// `longhornio/longhorn-engine:v1.12.1` to `...:v1.12.2`: new snapshots
    /// wait with "snapshot creation delayed: ..." until it is cleared.
    pub async fn set_engine_upgrading(&self, volume: &str, upgrading: bool) -> anyhow::Result<()> {
        self.send(
            self.http
                .put(self.url(&format!("volumes/{volume}/engine-upgrading"))?)
                .json(&Upgrading { upgrading }),
            "set engine upgrading",
        )
        .await?;
        Ok(())
    }

    /// How many replicas of each volume created from now on the scheduler
    /// can place (`None`: all, the default). 0: the volume never attaches
    /// (a restore never starts); fewer than `numberOfReplicas`: degraded.
    pub async fn set_schedulable_replicas(&self, n: Option<usize>) -> anyhow::Result<()> {
        self.send(
            self.http
                .put(self.url("schedulable-replicas")?)
                .json(&Schedulable { replicas: n }),
            "set schedulable replicas",
        )
        .await?;
        Ok(())
    }

    /// Sets `current-longhorn-version` (`v1.12.1` at start); below `v1.8.1`
    /// the action `backupListByVolume` does not exist.
    pub async fn set_version(&self, v: &str) -> anyhow::Result<()> {
        let body = Version {
            version: v.to_owned(),
        };
        self.send(
            self.http.put(self.url("version")?).json(&body),
            "set version",
        )
        .await?;
        Ok(())
    }

    pub async fn stats(&self) -> anyhow::Result<Stats> {
        let resp = self
            .send(self.http.get(self.url("stats")?), "stats")
            .await?;
        resp.json().await.context("decoding stats")
    }
}
