//! The manager REST API under `/v1`: routing with gorilla-mux's quirks
//! (plain-text 404/405, 301 on a trailing slash), fault injection, and the
//! handlers. Handlers change state and start tasks; nothing asynchronous
//! completes inside a request.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::Utc;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tracing::debug;

use crate::render::{self, bv_name, rfc3339};
use crate::state::{
    BLOCK, Backup, Condition, KubeStatus, Restore, Shared, Snapshot, State, Ticket, VolState,
    Volume, hex8, hex16, uuid,
};
use crate::worker;

/// A failed API call, rendered as Longhorn renders it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 404 with the error envelope.
    #[error("{0}")]
    NotFound(String),
    /// 404 with an empty body (`GET /v1/volumes/{missing}`).
    #[error("not found")]
    NotFoundEmpty,
    /// 500 with the error envelope: validation, conflicts, everything else.
    #[error("{0}")]
    Internal(String),
}

fn internal(msg: impl Into<String>) -> ApiError {
    ApiError::Internal(msg.into())
}

/// What a handler answers.
pub enum Reply {
    Json(Value),
    /// 200 with JSON already encoded.
    Encoded(Vec<u8>),
    /// 200 with an empty body.
    Empty,
}

type Result<T, E = ApiError> = std::result::Result<T, E>;

/// Everything a handler needs about the request.
pub struct Ctx {
    pub sh: Arc<Shared>,
    /// `http://host:port`, from the Host header.
    pub base: String,
    /// The request URL without its query (error and collection `links.self`).
    pub url: String,
    pub body: Bytes,
}

impl Ctx {
    fn input<T: DeserializeOwned>(&self) -> Result<T> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Err(internal("EOF"));
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| internal(format!("failed to decode the request body: {e}")))
    }

    /// For actions whose body is optional.
    fn input_or_default<T: DeserializeOwned + Default>(&self) -> Result<T> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(T::default());
        }
        self.input()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Root,
    ApiVersion,
    Schemas,
    GetSchema(String),
    ListVolumes,
    CreateVolume,
    GetVolume(String),
    DeleteVolume(String),
    VolumeAction(String, String),
    ListBackupVolumes,
    SyncBackupVolumes,
    GetBackupVolume(String),
    DeleteBackupVolume(String),
    BackupVolumeAction(String, String),
    ListBackupTargets,
    SyncBackupTargets,
    CreateBackupTarget,
    GetBackupTarget(String),
    DeleteBackupTarget(String),
    BackupTargetAction(String, String),
    ListSettings,
    GetSetting(String),
    UpdateSetting(String),
}

impl Route {
    /// The operation name used by faults and stats.
    fn op(&self) -> String {
        match self {
            Route::Root | Route::ApiVersion => "apiVersion".into(),
            Route::Schemas => "listSchemas".into(),
            Route::GetSchema(_) => "getSchema".into(),
            Route::ListVolumes => "listVolumes".into(),
            Route::CreateVolume => "createVolume".into(),
            Route::GetVolume(_) => "getVolume".into(),
            Route::DeleteVolume(_) => "deleteVolume".into(),
            Route::ListBackupVolumes => "listBackupVolumes".into(),
            Route::SyncBackupVolumes => "syncBackupVolumes".into(),
            Route::GetBackupVolume(_) => "getBackupVolume".into(),
            Route::DeleteBackupVolume(_) => "deleteBackupVolume".into(),
            Route::ListBackupTargets => "listBackupTargets".into(),
            Route::SyncBackupTargets => "syncBackupTargets".into(),
            Route::CreateBackupTarget => "createBackupTarget".into(),
            Route::GetBackupTarget(_) => "getBackupTarget".into(),
            Route::DeleteBackupTarget(_) => "deleteBackupTarget".into(),
            Route::ListSettings => "listSettings".into(),
            Route::GetSetting(_) => "getSetting".into(),
            Route::UpdateSetting(_) => "updateSetting".into(),
            Route::VolumeAction(_, a)
            | Route::BackupVolumeAction(_, a)
            | Route::BackupTargetAction(_, a) => a.clone(),
        }
    }
}

/// Every volume action api/router.go routes (`volumeActions`); those the
/// emulator does not model answer 500 "not supported".
const VOLUME_ACTIONS: &[&str] = &[
    "activate",
    "attach",
    "cancelExpansion",
    "detach",
    "engineUpgrade",
    "expand",
    "offlineReplicaRebuilding",
    "pvCreate",
    "pvcCreate",
    "recurringJobAdd",
    "recurringJobDelete",
    "recurringJobList",
    "replicaRemove",
    "salvage",
    "snapshotBackup",
    "snapshotCRCreate",
    "snapshotCRDelete",
    "snapshotCRGet",
    "snapshotCRList",
    "snapshotCreate",
    "snapshotDelete",
    "snapshotGet",
    "snapshotList",
    "snapshotPurge",
    "snapshotRevert",
    "trimFilesystem",
    "updateAccessMode",
    "updateBackupCompressionMethod",
    "updateBackupTargetName",
    "updateDataLocality",
    "updateFreezeFilesystemForSnapshot",
    "updateRebuildConcurrentSyncLimit",
    "updateReplicaAutoBalance",
    "updateReplicaCount",
    "updateReplicaDiskSoftAntiAffinity",
    "updateReplicaRebuildingBandwidthLimit",
    "updateReplicaSoftAntiAffinity",
    "updateReplicaZoneSoftAntiAffinity",
    "updateSnapshotDataIntegrity",
    "updateSnapshotMaxCount",
    "updateSnapshotMaxSize",
    "updateUblkNumberOfQueue",
    "updateUblkQueueDepth",
    "updateUnmapMarkSnapChainRemoved",
];

/// Why a request did not reach a handler.
enum Miss {
    NotFound,
    MethodNotAllowed,
    Redirect(String),
}

fn resolve(method: &Method, path: &str, query: Option<&str>) -> Result<Route, Miss> {
    if path.len() > 1 && path.ends_with('/') {
        let mut loc = path.trim_end_matches('/').to_owned();
        if loc.is_empty() {
            loc.push('/');
        }
        if let Some(q) = query {
            loc.push('?');
            loc.push_str(q);
        }
        return Err(Miss::Redirect(loc));
    }
    let action: Option<String> = query.and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "action")
            .map(|(_, v)| v.into_owned())
    });
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let get = method == Method::GET;
    let post = method == Method::POST;
    let delete = method == Method::DELETE;
    let put = method == Method::PUT;
    let pick = |ok: bool, r: Route| {
        if ok {
            Ok(r)
        } else {
            Err(Miss::MethodNotAllowed)
        }
    };
    let act = |allowed: &[&str], make: fn(String, String) -> Route, id: &str| match &action {
        Some(a) if allowed.contains(&a.as_str()) => Ok(make(id.to_owned(), a.clone())),
        _ => Err(Miss::NotFound),
    };
    match segs.as_slice() {
        [""] => pick(get, Route::Root),
        ["v1"] => pick(get, Route::ApiVersion),
        ["v1", "schemas"] => pick(get, Route::Schemas),
        ["v1", "schemas", id] if !id.is_empty() => pick(get, Route::GetSchema((*id).to_owned())),
        ["v1", "volumes"] => match *method {
            Method::GET => Ok(Route::ListVolumes),
            Method::POST => Ok(Route::CreateVolume),
            _ => Err(Miss::MethodNotAllowed),
        },
        ["v1", "volumes", id] if !id.is_empty() => {
            if post {
                act(VOLUME_ACTIONS, Route::VolumeAction, id)
            } else if get {
                Ok(Route::GetVolume((*id).to_owned()))
            } else if delete {
                Ok(Route::DeleteVolume((*id).to_owned()))
            } else {
                Err(Miss::MethodNotAllowed)
            }
        }
        ["v1", "backupvolumes"] => {
            if get {
                Ok(Route::ListBackupVolumes)
            } else {
                pick(put, Route::SyncBackupVolumes)
            }
        }
        ["v1", "backupvolumes", id] if !id.is_empty() => {
            if post {
                act(render::BV_ACTIONS, Route::BackupVolumeAction, id)
            } else if get {
                Ok(Route::GetBackupVolume((*id).to_owned()))
            } else if delete {
                Ok(Route::DeleteBackupVolume((*id).to_owned()))
            } else {
                Err(Miss::MethodNotAllowed)
            }
        }
        ["v1", "backuptargets"] => match *method {
            Method::GET => Ok(Route::ListBackupTargets),
            Method::POST => Ok(Route::CreateBackupTarget),
            Method::PUT => Ok(Route::SyncBackupTargets),
            _ => Err(Miss::MethodNotAllowed),
        },
        ["v1", "backuptargets", id] if !id.is_empty() => {
            if post {
                act(
                    &["backupTargetSync", "backupTargetUpdate"],
                    Route::BackupTargetAction,
                    id,
                )
            } else if get {
                Ok(Route::GetBackupTarget((*id).to_owned()))
            } else if delete {
                Ok(Route::DeleteBackupTarget((*id).to_owned()))
            } else {
                Err(Miss::MethodNotAllowed)
            }
        }
        ["v1", "settings"] => pick(get, Route::ListSettings),
        ["v1", "settings", id] if !id.is_empty() => {
            if get {
                Ok(Route::GetSetting((*id).to_owned()))
            } else {
                pick(put, Route::UpdateSetting((*id).to_owned()))
            }
        }
        _ => Err(Miss::NotFound),
    }
}

fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    let mut resp = (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response();
    if status == StatusCode::NOT_FOUND {
        // Go's http.NotFound (http.Error) sets it.
        resp.headers_mut().insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
    }
    resp
}

fn json_response(status: StatusCode, base: &str, value: &Value) -> Response {
    encoded_response(status, base, serde_json::to_vec(value).unwrap_or_default())
}

fn encoded_response(status: StatusCode, base: &str, body: Vec<u8>) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("{base}/v1/schemas")) {
        h.insert("X-API-Schemas", v);
    }
    resp
}

fn error_response(err: &ApiError, base: &str, url: &str) -> Response {
    match err {
        ApiError::NotFoundEmpty => StatusCode::NOT_FOUND.into_response(),
        ApiError::NotFound(m) => json_response(
            StatusCode::NOT_FOUND,
            base,
            &render::error(404, "Not Found", m, url),
        ),
        ApiError::Internal(m) => json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            base,
            &render::error(500, "Internal Server Error", m, url),
        ),
    }
}

/// The axum fallback: every request that is not for `/emulator`.
pub async fn handle(AxumState(sh): AxumState<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let base = base_url(&parts.headers);
    // go-rancher api/url.go parseRequestUrl (`UrlBuilder.Current()`):
    // `http://<Host><path>`, the query string dropped; collections and
    // errors carry it as `links.self`.
    let url = format!("{base}{}", parts.uri.path());
    let route = match resolve(&parts.method, parts.uri.path(), parts.uri.query()) {
        Ok(r) => r,
        Err(Miss::NotFound) => return plain(StatusCode::NOT_FOUND, "404 page not found\n"),
        Err(Miss::MethodNotAllowed) => return plain(StatusCode::METHOD_NOT_ALLOWED, ""),
        Err(Miss::Redirect(loc)) => {
            let mut r = StatusCode::MOVED_PERMANENTLY.into_response();
            if let Ok(v) = HeaderValue::from_str(&loc) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            return r;
        }
    };
    // `backupListByVolume` came with longhorn-manager v1.8.1 (commit "fix(api):
    // add a new API `backupListByVolume`", api/router.go); before it the
    // action matches no route and gorilla/mux answers with its NotFoundHandler.
    if matches!(&route, Route::BackupVolumeAction(_, a) if a == "backupListByVolume")
        && !sh.lock().version_at_least((1, 8, 1))
    {
        return plain(StatusCode::NOT_FOUND, "404 page not found\n");
    }
    let op = route.op();
    *sh.lock().requests.entry(op.clone()).or_default() += 1;
    let resp = answer(&sh, &op, route, body, &base, &url).await;
    // What the answer cost: its body's bytes (every body here is in memory).
    let sent = axum::body::HttpBody::size_hint(resp.body())
        .exact()
        .unwrap_or_default();
    *sh.lock().response_bytes.entry(op).or_default() += sent;
    resp
}

/// The answer to a routed request, faults included; its request body's
/// bytes are counted for `op`.
async fn answer(
    sh: &Arc<Shared>,
    op: &str,
    route: Route,
    body: Body,
    base: &str,
    url: &str,
) -> Response {
    // Without after_effect the fault strikes before the handler runs; with it,
    // latency, hang and the 500 all come after the operation took effect.
    let after_effect = sh.fault_for(op).is_some_and(|f| f.after_effect);
    if !after_effect && sh.apply_fault(op).await.is_some() {
        debug!(%op, "injected fault (no effect)");
        return error_response(&internal("injected fault"), base, url);
    }
    let body = match axum::body::to_bytes(body, 16 << 20).await {
        Ok(b) => b,
        Err(e) => {
            return error_response(
                &internal(format!("reading the request body: {e}")),
                base,
                url,
            );
        }
    };
    *sh.lock().request_bytes.entry(op.to_owned()).or_default() += body.len() as u64;
    let ctx = Ctx {
        sh: sh.clone(),
        base: base.to_owned(),
        url: url.to_owned(),
        body,
    };
    let result = dispatch(&ctx, route).await;
    if after_effect && ctx.sh.apply_fault(op).await.is_some() {
        debug!(%op, "injected fault (after effect)");
        return error_response(&internal("injected fault"), base, url);
    }
    match result {
        Ok(Reply::Json(v)) => json_response(StatusCode::OK, base, &v),
        Ok(Reply::Encoded(b)) => encoded_response(StatusCode::OK, base, b),
        Ok(Reply::Empty) => StatusCode::OK.into_response(),
        Err(e) => error_response(&e, base, url),
    }
}

/// Every volume, rendered a few dozen per hold of the state lock: a thousand
/// at once held it long enough to delay every other call by tens of
/// milliseconds. (Longhorn lists from an informer cache, which is not one
/// snapshot either.)
fn list_volumes(sh: &Shared, base: &str, url: &str) -> Value {
    let names: Vec<String> = sh.lock().volumes.keys().cloned().collect();
    let mut data = Vec::with_capacity(names.len());
    for chunk in names.chunks(32) {
        let st = sh.lock();
        let wanted: std::collections::HashSet<&str> = chunk.iter().map(String::as_str).collect();
        let mut by_volume: HashMap<&str, Vec<&crate::state::Backup>> = HashMap::new();
        for b in st.backups.values() {
            if wanted.contains(b.volume_name.as_str()) {
                by_volume.entry(b.volume_name.as_str()).or_default().push(b);
            }
        }
        data.extend(chunk.iter().filter_map(|name| {
            let v = st.volumes.get(name)?;
            let backups = by_volume.get(name.as_str()).map(Vec::as_slice);
            Some(render::volume_with(
                base,
                v,
                backups.unwrap_or_default(),
                render::allow_degraded(&st),
            ))
        }));
        drop(st);
        std::thread::yield_now();
    }
    let mut c = render::collection("volume", url, data);
    c["createTypes"] = json!({ "volume": format!("{base}/v1/volumes") });
    c
}

async fn dispatch(ctx: &Ctx, route: Route) -> Result<Reply> {
    let base = ctx.base.as_str();
    if matches!(route, Route::SyncBackupVolumes) {
        for (name, _) in ctx.sh.targets() {
            spawn_sync(&ctx.sh, &name, None);
        }
    }
    match route {
        Route::Root => Ok(Reply::Json(render::api_versions(base, &ctx.url))),
        Route::ApiVersion => Ok(Reply::Json(crate::schema::api_version(base))),
        Route::Schemas => Ok(Reply::Json(crate::schema::list(base, &ctx.url))),
        Route::GetSchema(id) => Ok(Reply::Json(crate::schema::one(base, &ctx.url, &id))),
        Route::ListVolumes => {
            // Rendered and encoded on a blocking thread: a thousand volumes
            // are megabytes of JSON, and on the runtime's workers they held
            // up every call in flight for tens of milliseconds. Longhorn
            // (Go) serves each request on a goroutine of its own, which the
            // runtime preempts.
            let (sh, base, url) = (ctx.sh.clone(), base.to_owned(), ctx.url.clone());
            let body = tokio::task::spawn_blocking(move || {
                let c = list_volumes(&sh, &base, &url);
                serde_json::to_vec(&c).unwrap_or_default()
            })
            .await
            .map_err(|e| internal(format!("listing volumes: {e}")))?;
            Ok(Reply::Encoded(body))
        }
        Route::GetVolume(name) => {
            let st = ctx.sh.lock();
            let v = st.volumes.get(&name).ok_or(ApiError::NotFoundEmpty)?;
            Ok(Reply::Json(render::volume(base, &st, v)))
        }
        Route::CreateVolume => create_volume(ctx),
        Route::DeleteVolume(name) => {
            if worker::start_volume_deletion(&ctx.sh, &name) {
                Ok(Reply::Empty)
            } else {
                Err(not_found_volume(&name))
            }
        }
        Route::VolumeAction(name, action) => volume_action(ctx, &name, &action).await,
        Route::ListBackupVolumes | Route::SyncBackupVolumes => {
            let st = ctx.sh.lock();
            // Keyed by CR name: sorted as ListBackupVolumesSorted sorts them.
            let data = st
                .backup_volumes
                .values()
                .map(|bv| render::backup_volume(base, &st, bv))
                .collect();
            Ok(Reply::Json(render::collection(
                "backupVolume",
                &ctx.url,
                data,
            )))
        }
        Route::GetBackupVolume(id) => {
            let st = ctx.sh.lock();
            Ok(Reply::Json(match st.backup_volumes.get(&id) {
                Some(bv) => render::backup_volume(base, &st, bv),
                None => render::backup_volume_placeholder(base, &id),
            }))
        }
        Route::DeleteBackupVolume(id) => {
            let mut st = ctx.sh.lock();
            if let Some(bv) = st.backup_volumes.get(&id).cloned() {
                for b in st
                    .backups
                    .values_mut()
                    .filter(|b| b.volume_name == bv.volume && b.target == bv.target)
                {
                    b.state = "Deleting".into();
                }
                drop(st);
                let sh = ctx.sh.clone();
                ctx.sh
                    .spawn(async move { worker::run_delete_backup_volume(sh, id).await });
            }
            Ok(Reply::Empty)
        }
        Route::BackupVolumeAction(id, action) => backup_volume_action(ctx, &id, &action),
        Route::ListBackupTargets | Route::SyncBackupTargets => {
            // PUT: api/backup.go BackupTargetSyncAll, each target's
            // SyncBackupTarget (a refusal is only logged).
            if matches!(route, Route::SyncBackupTargets) {
                #[derive(Deserialize, Default)]
                #[serde(default, rename_all = "camelCase")]
                struct SyncAll {
                    sync_all_backup_targets: bool,
                }
                let input: SyncAll = ctx.input()?;
                if input.sync_all_backup_targets {
                    for (name, _) in ctx.sh.targets() {
                        if request_target_sync(&ctx.sh, &name).is_ok() {
                            spawn_sync(&ctx.sh, &name, None);
                        }
                    }
                }
            }
            Ok(Reply::Json(render::collection(
                "backupTarget",
                &ctx.url,
                ctx.sh
                    .targets()
                    .iter()
                    .map(|(n, s)| render::backup_target(base, n, s.as_deref()))
                    .collect(),
            )))
        }
        Route::GetBackupTarget(id) => {
            let store = target_store(&ctx.sh, &id)?;
            Ok(Reply::Json(render::backup_target(
                base,
                &id,
                store.as_deref(),
            )))
        }
        Route::BackupTargetAction(id, action) => {
            let store = target_store(&ctx.sh, &id)?;
            if action == "backupTargetSync" {
                // api/backup.go BackupTargetSync -> manager/engine.go SyncBackupTarget.
                #[derive(Deserialize, Default)]
                #[serde(default, rename_all = "camelCase")]
                struct SyncOne {
                    sync_backup_target: bool,
                }
                let input: SyncOne = ctx.input()?;
                if input.sync_backup_target {
                    request_target_sync(&ctx.sh, &id).map_err(|e| {
                        internal(format!("failed to synchronize backup target {id}: {e}"))
                    })?;
                    spawn_sync(&ctx.sh, &id, None);
                }
                Ok(Reply::Json(render::backup_target(
                    base,
                    &id,
                    store.as_deref(),
                )))
            } else {
                Err(internal(
                    "updating the backup target is not supported by the emulator",
                ))
            }
        }
        Route::CreateBackupTarget => {
            let input: NameInput = ctx.input()?;
            match target_store(&ctx.sh, &input.name) {
                // An existing name returns the existing target unchanged.
                Ok(store) => Ok(Reply::Json(render::backup_target(
                    base,
                    &input.name,
                    store.as_deref(),
                ))),
                Err(_) => Err(internal(
                    "creating backup targets through the API is not supported by the emulator (use its control endpoint)",
                )),
            }
        }
        Route::DeleteBackupTarget(id) => Err(internal(format!(
            "cannot delete backup target {id}: deleting backup targets is not supported"
        ))),
        Route::ListSettings => {
            let st = ctx.sh.lock();
            Ok(Reply::Json(render::collection(
                "setting",
                &ctx.url,
                render::SETTINGS
                    .iter()
                    .map(|d| render::setting(base, d, st.setting(d.name)))
                    .collect(),
            )))
        }
        Route::GetSetting(name) => {
            let d = find_setting(&name)?;
            let st = ctx.sh.lock();
            Ok(Reply::Json(render::setting(base, d, st.setting(d.name))))
        }
        Route::UpdateSetting(name) => {
            #[derive(Deserialize, Default)]
            #[serde(default)]
            struct SettingInput {
                value: String,
            }
            let input: SettingInput = ctx.input()?;
            let d = find_setting(&name)?;
            let value = set_setting(&ctx.sh, &name, &input.value)?;
            Ok(Reply::Json(render::setting(base, d, &value)))
        }
    }
}

fn find_setting(name: &str) -> Result<&'static render::SettingDef> {
    if matches!(
        name,
        "backup-target" | "backup-target-credential-secret" | "backupstore-poll-interval"
    ) {
        // Since v1.8 these are fields of the BackupTarget CR, no longer settings.
        return Err(internal(format!("setting {name} is not supported")));
    }
    render::setting_def(name)
        .ok_or_else(|| ApiError::NotFound(format!("settings.longhorn.io \"{name}\" not found")))
}

/// `PUT /v1/settings/{name}` (longhorn-manager api/setting.go
/// (*Server).SettingSet -> manager/setting.go CreateOrUpdateSetting):
/// the value is trimmed, validated by datastore/longhorn.go
/// (*DataStore).ValidateSetting (types.ValidateSetting's type check, then
/// the per-setting checks), and stored. Read-only settings are written too:
/// `ds.UpdateSetting` marks the update as Longhorn's own, which the
/// setting webhook's read-only check lets through. Returns the stored value.
pub fn set_setting(sh: &Shared, name: &str, value: &str) -> Result<String> {
    let d = find_setting(name)?;
    let value = value.trim().to_owned();
    let invalid = |why: String| {
        internal(format!(
            "failed to validate setting {name} with invalid value {value}: {why}"
        ))
    };
    let type_error = |why: String| {
        invalid(format!(
            "value {value} of settings {name} is invalid: failed to parse value {value} for setting {}: {why}",
            d.display_name
        ))
    };
    if value.is_empty() && d.name != "current-longhorn-version" {
        return Err(invalid(format!(
            "value  of settings {name} is invalid: required setting {name} shouldn't be empty"
        )));
    }
    let engine_specific = d.default.starts_with('{') && value.starts_with('{');
    let bool_ok = matches!(
        value.as_str(),
        "1" | "t" | "T" | "TRUE" | "true" | "True" | "0" | "f" | "F" | "FALSE" | "false" | "False"
    );
    match d.kind {
        "int" if !engine_specific && value.parse::<i64>().is_err() => {
            return Err(type_error(format!(
                "failed to parse single int value {value}: strconv.ParseInt: parsing {value:?}: invalid syntax"
            )));
        }
        "bool" if !engine_specific && !bool_ok => {
            return Err(type_error(format!(
                "failed to parse single bool value {value}: strconv.ParseBool: parsing {value:?}: invalid syntax"
            )));
        }
        _ => {}
    }
    // types/setting.go validateSettingIntValues: the definition's
    // ValueIntRange, for the single value of a setting that is not
    // data-engine specific (DataEngineTypeAll, "all").
    if d.kind == "int"
        && !d.default.starts_with('{')
        && let (Ok(range), Ok(n)) = (
            serde_json::from_str::<BTreeMap<String, i64>>(d.range),
            value.parse::<i64>(),
        )
    {
        let out = if range.get("minimum").is_some_and(|m| n < *m) {
            range
                .get("minimum")
                .map(|m| format!("should be larger than or equal to {m}"))
        } else {
            range
                .get("maximum")
                .filter(|m| n > **m)
                .map(|m| format!("should be less than or equal to {m}"))
        };
        if let Some(why) = out {
            return Err(invalid(format!(
                "value {value} of settings {name} is invalid: value {n} for data engine all {why}"
            )));
        }
    }
    if name == "snapshot-max-count" {
        // datastore/longhorn.go ValidateSetting, case SettingNameSnapshotMaxCount.
        let n: i64 = value.parse().unwrap_or(0);
        if !(2..=250).contains(&n) {
            return Err(invalid(format!("{name} should be between 2 and 250")));
        }
    }
    let mut st = sh.lock();
    st.settings.insert(name.to_owned(), value.clone());
    if name == "snapshot-count-warning-threshold" {
        // Every volume's next reconcile sees the new threshold.
        let volumes: Vec<String> = st.volumes.keys().cloned().collect();
        for v in volumes {
            worker::sync_too_many_snapshots(&mut st, &v);
        }
    }
    Ok(value)
}

/// The volume, or the 404 error (lookups after an existence check use it too,
/// so that no request can panic the server).
fn vol_ref<'a>(st: &'a State, name: &str) -> Result<&'a Volume> {
    st.volumes.get(name).ok_or_else(|| not_found_volume(name))
}

fn not_found_volume(name: &str) -> ApiError {
    ApiError::NotFound(format!("volumes.longhorn.io \"{name}\" not found"))
}

/// A backup target's store: `Ok(None)` for `default` without a URL, the
/// 404 for a target that does not exist.
fn target_store(sh: &Shared, id: &str) -> Result<Option<Arc<crate::store::Store>>> {
    if id == crate::state::TARGET {
        return Ok(sh.store.clone());
    }
    sh.store_for(id)
        .map(Some)
        .ok_or_else(|| ApiError::NotFound(format!("backuptargets.longhorn.io \"{id}\" not found")))
}

/// manager/engine.go (*VolumeManager).SyncBackupTarget: refused within
/// minSyncBackupTargetIntervalSec (10 s) of the last request (a manual one
/// or the poll timer's), else `spec.syncRequestedAt = now`.
pub fn request_target_sync(sh: &Shared, target: &str) -> std::result::Result<(), String> {
    let now = std::time::Instant::now();
    let mut st = sh.lock();
    if st
        .target_syncs
        .get(target)
        .is_some_and(|t| now.duration_since(*t) < std::time::Duration::from_secs(10))
    {
        return Err(format!(
            "cannot synchronize backup target '{target}' in 10 seconds"
        ));
    }
    st.target_syncs.insert(target.to_owned(), now);
    Ok(())
}

/// `^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`, at most 40 characters.
pub fn valid_volume_name(name: &str) -> bool {
    let b = name.as_bytes();
    let ok = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.len() <= 40
        && b.first().is_some_and(ok)
        && b.last().is_some_and(ok)
        && b.iter().all(|c| ok(c) || *c == b'-')
}

/// `^[a-z0-9][a-z0-9_.-]+$` (backup and snapshot names).
pub fn valid_object_name(name: &str) -> bool {
    let b = name.as_bytes();
    let ok = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    b.len() >= 2
        && b.first().is_some_and(ok)
        && b.iter().all(|c| ok(c) || matches!(c, b'_' | b'.' | b'-'))
}

/// A Kubernetes quantity (`64Mi`, `1Gi`, `1073741824`, `1G`) in bytes.
pub fn parse_quantity(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, suffix) = s.split_at(digits);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match suffix {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct VolumeInput {
    name: String,
    size: Option<Value>,
    number_of_replicas: i64,
    frontend: String,
    from_backup: String,
    access_mode: String,
    standby: bool,
    snapshot_max_count: i64,
}

fn new_volume(st: &mut State, name: &str, size: u64, replicas: usize) -> Volume {
    Volume {
        uid: st.uid(),
        name: name.to_owned(),
        size,
        state: VolState::New,
        busy: true,
        faulted: false,
        created: Utc::now(),
        frontend: "blockdev".into(),
        replicas: (0..replicas.max(1))
            .map(|_| format!("{name}-r-{}", hex8()))
            .collect(),
        access_mode: "rwo".into(),
        from_backup: String::new(),
        restore: None,
        restore_required: false,
        restore_initiated: false,
        restore_status: Vec::new(),
        restore_condition: Condition::new("False"),
        kubernetes_status: KubeStatus::default(),
        tickets: BTreeMap::new(),
        data: Default::default(),
        snapshots: BTreeMap::new(),
        labels: BTreeMap::new(),
        last_attached_by: String::new(),
        // webhook/resources/volume/mutator.go (*volumeMutator).Create:
        // getSnapshotMaxCount() fills spec.snapshotMaxCount from the setting
        // when it is 0; backupTargetName "" becomes "default".
        snapshot_max_count: st.setting("snapshot-max-count").parse().unwrap_or(250),
        engine_upgrading: None,
        too_many_snapshots: Condition::new("False"),
        backup_target: crate::state::TARGET.to_owned(),
        scheduled: schedulable(st, replicas.max(1)),
        pv_pending: None,
    }
}

/// How many of `n` replicas the scheduler places ([`State::schedulable_replicas`]).
fn schedulable(st: &State, n: usize) -> usize {
    st.schedulable_replicas.map_or(n, |m| m.min(n))
}

/// Creates a plain volume of `size` bytes and starts its lifecycle (control
/// endpoint and provisioner use this too).
pub fn create_plain_volume(sh: &Arc<Shared>, name: &str, size: u64) -> Result<()> {
    if !valid_volume_name(name) {
        return Err(internal(format!("invalid name {name}")));
    }
    if size == 0 || !size.is_multiple_of(BLOCK) {
        return Err(internal(format!(
            "invalid volume size {size}: must be a positive multiple of the backup block size {BLOCK}"
        )));
    }
    let mut st = sh.lock();
    if st.volumes.contains_key(name) {
        return Err(internal(format!(
            "unable to create volume {name}: volumes.longhorn.io \"{name}\" already exists"
        )));
    }
    let v = new_volume(&mut st, name, size, 3);
    let uid = v.uid;
    st.volumes.insert(name.to_owned(), v);
    drop(st);
    let sh2 = sh.clone();
    let name = name.to_owned();
    sh.spawn(async move { worker::run_create(sh2, name, uid).await });
    Ok(())
}

/// longhorn-manager util/util.go AutoCorrectName, as the volume mutator
/// (webhook/resources/volume/mutator.go (*volumeMutator).Create) applies it
/// with datastore.NameMaximumLength = 40: always lowercased; a longer name
/// becomes its first 31 lowercased characters (trailing '-' trimmed), '-',
/// and the first 8 hex digits of SHA-512 of the original name.
pub fn auto_correct_name(name: &str, max_len: usize) -> String {
    let lower = name.to_lowercase();
    if name.len() <= max_len {
        return lower;
    }
    let checksum = crate::store::sha512_hex(name.as_bytes());
    let mut cut = max_len - 9;
    while !lower.is_char_boundary(cut) {
        cut -= 1;
    }
    let prefix = lower[..cut].trim_end_matches('-');
    format!("{prefix}-{}", &checksum[..8])
}

fn create_volume(ctx: &Ctx) -> Result<Reply> {
    let input: VolumeInput = ctx.input()?;
    // The mutating webhook corrects the name before anything else sees it,
    // for restores (fromBackup) too; the answer carries the corrected name.
    let name = auto_correct_name(&input.name, 40);
    if !valid_volume_name(&name) {
        return Err(internal(format!("invalid name {name}")));
    }
    if input.standby {
        return Err(internal(
            "standby (DR) volumes are not supported by the emulator",
        ));
    }
    // webhook/resources/volume/validator.go validateSnapshotMaxCount (0: the
    // mutator fills it from the setting).
    if input.snapshot_max_count != 0 && !(2..=250).contains(&input.snapshot_max_count) {
        return Err(internal(format!(
            "unable to create volume {name}: {}",
            webhook_denied("snapshot max count should be between 2 to 250")
        )));
    }
    let replicas = if input.number_of_replicas > 0 {
        input.number_of_replicas as usize
    } else {
        3
    };
    if input.from_backup.is_empty() {
        let size = match &input.size {
            Some(Value::String(s)) => parse_quantity(s),
            Some(Value::Number(n)) => n.as_u64(),
            _ => None,
        }
        .ok_or_else(|| internal(format!("invalid volume size {:?}", input.size)))?;
        create_plain_volume(&ctx.sh, &name, size)?;
        let mut st = ctx.sh.lock();
        let st = &mut *st;
        let v = st
            .volumes
            .get_mut(&name)
            .ok_or_else(|| not_found_volume(&name))?;
        if input.replicas_given() {
            v.replicas = (0..replicas)
                .map(|_| format!("{name}-r-{}", hex8()))
                .collect();
        }
        let n = v.replicas.len();
        let placed = st.schedulable_replicas.map_or(n, |m| m.min(n));
        let v = st
            .volumes
            .get_mut(&name)
            .ok_or_else(|| not_found_volume(&name))?;
        v.scheduled = placed;
        if input.snapshot_max_count != 0 {
            v.snapshot_max_count = input.snapshot_max_count as u32;
        }
        if !input.frontend.is_empty() {
            v.frontend = input.frontend.clone();
        }
        if !input.access_mode.is_empty() {
            v.access_mode = input.access_mode.clone();
        }
        return Ok(Reply::Json(render::volume(
            &ctx.base,
            st,
            vol_ref(st, &name)?,
        )));
    }

    // Restore: the backup must exist; size, access mode and kubernetesStatus come from it.
    let parsed = url::Url::parse(&input.from_backup).map_err(|e| {
        internal(format!(
            "cannot get backup and volume name from backup URL {}: {e}",
            input.from_backup
        ))
    })?;
    let q: BTreeMap<String, String> = parsed.query_pairs().into_owned().collect();
    let backup_name = q.get("backup").cloned().unwrap_or_default();
    let mut st = ctx.sh.lock();
    let backup = st
        .backups
        .get(&backup_name)
        .filter(|_| !backup_name.is_empty())
        .cloned()
        .ok_or_else(|| {
            internal(format!(
                "cannot get backup {backup_name}: backups.longhorn.io \"{backup_name}\" not found"
            ))
        })?;
    if q.get("volume").is_some_and(|v| v != &backup.volume_name) {
        return Err(internal(format!(
            "cannot get backup volume {} of backup {backup_name}",
            q.get("volume").map(String::as_str).unwrap_or_default()
        )));
    }
    if st.volumes.contains_key(&name) {
        return Err(internal(format!(
            "unable to create volume {name}: volumes.longhorn.io \"{name}\" already exists"
        )));
    }
    let mut v = new_volume(&mut st, &name, backup.volume_size, replicas);
    v.from_backup = input.from_backup.clone();
    if input.snapshot_max_count != 0 {
        v.snapshot_max_count = input.snapshot_max_count as u32;
    }
    v.restore_required = true;
    // The mutator sets spec.backupTargetName from the source Backup's target.
    v.backup_target = backup.target.clone();
    v.restore = Some(Restore {
        backup: backup.name.clone(),
        target: backup.target.clone(),
        source_volume: backup.volume_name.clone(),
        url: input.from_backup.clone(),
        started: false,
        done: false,
    });
    let labels = backup.labels.clone().unwrap_or_default();
    v.access_mode = if input.access_mode.is_empty() {
        labels
            .get("longhorn.io/volume-access-mode")
            .cloned()
            .unwrap_or_else(|| "rwo".into())
    } else {
        input.access_mode.clone()
    };
    if let Some(ks) = labels
        .get("KubernetesStatus")
        .and_then(|j| serde_json::from_str::<KubeStatus>(j).ok())
    {
        let mut ks = ks;
        ks.pv_name.clear();
        ks.pv_status.clear();
        if !ks.pvc_name.is_empty() && ks.last_pvc_ref_at.is_empty() {
            ks.last_pvc_ref_at = rfc3339(Utc::now());
        }
        v.kubernetes_status = ks;
    }
    v.labels
        .insert("backup-volume".into(), backup.volume_name.clone());
    let uid = v.uid;
    st.volumes.insert(name.clone(), v);
    let out = render::volume(&ctx.base, &st, vol_ref(&st, &name)?);
    drop(st);
    let sh = ctx.sh.clone();
    ctx.sh
        .spawn(async move { worker::run_create(sh, name, uid).await });
    Ok(Reply::Json(out))
}

impl VolumeInput {
    fn replicas_given(&self) -> bool {
        self.number_of_replicas > 0
    }
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct NameInput {
    name: String,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct SnapshotInput {
    name: String,
    labels: Option<BTreeMap<String, String>>,
    backup_mode: String,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct AttachInput {
    host_id: String,
    disable_frontend: bool,
    attacher_type: String,
    #[serde(rename = "attachmentID")]
    attachment_id: String,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct DetachInput {
    #[serde(rename = "attachmentID")]
    attachment_id: String,
    force_detach: bool,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct PvInput {
    pub pv_name: String,
    pub fs_type: String,
    pub storage_class_name: String,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct PvcInput {
    pub namespace: String,
    pub pvc_name: String,
}

/// An error of `snapshotBackup` (api/snapshot.go (*Server).SnapshotBackup:
/// `errors.Wrap(err, "failed to backup snapshot")`).
fn backup_failed(msg: &str) -> ApiError {
    internal(format!("failed to backup snapshot: {msg}"))
}

/// A rejection by Longhorn's validating webhook, as the apiserver words it
/// (webhook/server/server.go registers it as `validator.longhorn.io`).
pub fn webhook_denied(msg: &str) -> String {
    format!("admission webhook \"validator.longhorn.io\" denied the request: {msg}")
}

fn engine_not_running(name: &str) -> ApiError {
    internal(format!(
        "cannot get {name} volume engine: engine is not running"
    ))
}

fn check_labels(labels: &BTreeMap<String, String>) -> Result<()> {
    for (k, v) in labels {
        if k.contains('=') || v.contains('=') {
            return Err(internal(format!(
                "invalid label {k}={v}: keys and values may not contain '='"
            )));
        }
    }
    Ok(())
}

async fn volume_action(ctx: &Ctx, name: &str, action: &str) -> Result<Reply> {
    match action {
        "pvCreate" => {
            let input: PvInput = ctx.input()?;
            crate::cluster::pv_create(&ctx.sh, name, input).await?;
            return volume_reply(ctx, name);
        }
        "pvcCreate" => {
            let input: PvcInput = ctx.input()?;
            crate::cluster::pvc_create(&ctx.sh, name, input).await?;
            return volume_reply(ctx, name);
        }
        _ => {}
    }
    let sh = &ctx.sh;
    let base = ctx.base.as_str();
    let mut guard = sh.lock();
    let st = &mut *guard;
    if !st.volumes.contains_key(name) {
        return Err(not_found_volume(name));
    }
    let attached = vol_ref(st, name)?.state == VolState::Attached;
    match action {
        "attach" => {
            let input: AttachInput = ctx.input()?;
            let v = st
                .volumes
                .get_mut(name)
                .ok_or_else(|| not_found_volume(name))?;
            if v.restore_required {
                return Err(internal(format!("volume {name} is pending restoring")));
            }
            if v.state == VolState::Deleting {
                return Err(internal(format!("volume {name} is being deleted")));
            }
            let id = if input.attachment_id.is_empty() {
                "longhorn-ui".to_owned()
            } else {
                input.attachment_id
            };
            v.tickets.insert(
                id,
                Ticket {
                    kind: if input.attacher_type.is_empty() {
                        "longhorn-api".into()
                    } else {
                        input.attacher_type
                    },
                    node: if input.host_id.is_empty() {
                        "node-1".into()
                    } else {
                        input.host_id
                    },
                    disable_frontend: input.disable_frontend,
                    any_frontend: false,
                },
            );
            worker::kick(sh, st, name);
            Ok(Reply::Json(render::volume(base, st, vol_ref(st, name)?)))
        }
        "detach" => {
            let input: DetachInput = ctx.input_or_default()?;
            let v = st
                .volumes
                .get_mut(name)
                .ok_or_else(|| not_found_volume(name))?;
            let restore = worker::restore_ticket(name);
            if input.force_detach {
                v.tickets.clear();
            } else if !input.attachment_id.is_empty() {
                v.tickets.remove(&input.attachment_id);
            } else {
                // The controllers' own tickets stay (they remove them when done).
                v.tickets.retain(|id, _| {
                    *id == restore
                        || id.starts_with("snapshot-controller-")
                        || id.starts_with("backup-controller-")
                });
            }
            worker::kick(sh, st, name);
            Ok(Reply::Json(render::volume(base, st, vol_ref(st, name)?)))
        }
        "snapshotCRCreate" => {
            let input: SnapshotInput = ctx.input()?;
            let labels = input.labels.unwrap_or_default();
            check_labels(&labels)?;
            let snap = if input.name.is_empty() {
                format!("snap-{}", hex16())
            } else {
                input.name
            };
            if !valid_object_name(&snap) {
                return Err(internal(format!("invalid snapshot name {snap}")));
            }
            let seq = st.uid();
            let v = st
                .volumes
                .get_mut(name)
                .ok_or_else(|| not_found_volume(name))?;
            if v.state == VolState::Deleting {
                return Err(internal(format!("volume {name} is being deleted")));
            }
            if v.snapshots.contains_key(&snap) {
                return Err(internal(format!(
                    "snapshots.longhorn.io \"{snap}\" already exists"
                )));
            }
            // api/snapshot.go SnapshotCRCreate -> manager/snapshot.go
            // CreateSnapshotCR: the CR is created and returned; the snapshot
            // controller takes it later (worker::run_snapshot_controller),
            // so nothing about the engine (detached, too many snapshots) fails here.
            let s = Snapshot {
                name: snap.clone(),
                seq,
                cr_creation_time: Utc::now(),
                creation_time: None,
                labels,
                data: Default::default(),
                ready: false,
                taken: false,
                error: String::new(),
                mark_removed: false,
                user_created: true,
                parent: String::new(),
                deleting: false,
                deletion_synced: false,
            };
            let uid = v.uid;
            // The answer is the CR as created, before the controller saw it.
            let out = render::snapshot_cr(base, v, &s);
            v.snapshots.insert(snap.clone(), s);
            // Attached: the engine takes it at once (its data is the volume's now).
            worker::reconcile_snapshot(sh, st, name, &snap);
            let sh2 = sh.clone();
            let vol = name.to_owned();
            sh.spawn(
                async move { worker::run_snapshot_controller(sh2, vol, uid, snap, seq).await },
            );
            Ok(Reply::Json(out))
        }
        "snapshotCRGet" => {
            let input: NameInput = ctx.input()?;
            let v = vol_ref(st, name)?;
            let s = v.snapshots.get(&input.name).ok_or_else(|| {
                ApiError::NotFound(format!(
                    "snapshots.longhorn.io \"{}\" not found",
                    input.name
                ))
            })?;
            Ok(Reply::Json(render::snapshot_cr(base, v, s)))
        }
        "snapshotCRList" => {
            let v = vol_ref(st, name)?;
            let data = v
                .snapshots
                .values()
                .map(|s| render::snapshot_cr(base, v, s))
                .collect();
            Ok(Reply::Json(render::collection(
                "snapshotCR",
                &ctx.url,
                data,
            )))
        }
        "snapshotCRDelete" => {
            let input: NameInput = ctx.input()?;
            // The CR is marked deleted; the snapshot controller removes it
            // (worker::delete_snapshot_cr).
            worker::delete_snapshot_cr(sh, st, name, &input.name);
            Ok(Reply::Json(json!({
                "type": "empty",
                "links": { "self": ctx.url },
                "actions": {},
            })))
        }
        "snapshotCreate" => {
            if !attached {
                return Err(engine_not_running(name));
            }
            let input: SnapshotInput = ctx.input()?;
            let labels = input.labels.unwrap_or_default();
            check_labels(&labels)?;
            let snap = if input.name.is_empty() {
                uuid()
            } else {
                input.name
            };
            let seq = st.uid();
            let v = st
                .volumes
                .get_mut(name)
                .ok_or_else(|| not_found_volume(name))?;
            if v.snapshots.contains_key(&snap) {
                return Err(internal(format!(
                    "snapshot volume-snap-{snap}.img is already existing"
                )));
            }
            if let Some(e) = worker::snapshot_limit_error(v) {
                return Err(internal(format!("failed to create snapshot: {e}")));
            }
            let now = Utc::now();
            let parent = v.head_parent().map(|p| p.name.clone()).unwrap_or_default();
            let s = Snapshot {
                name: snap.clone(),
                seq,
                cr_creation_time: now,
                creation_time: Some(now),
                labels,
                data: v.data.clone(),
                ready: true,
                taken: true,
                error: String::new(),
                mark_removed: false,
                user_created: true,
                parent,
                deleting: false,
                deletion_synced: false,
            };
            let out = render::snapshot(base, v, &s);
            v.snapshots.insert(snap, s);
            worker::sync_too_many_snapshots(st, name);
            Ok(Reply::Json(out))
        }
        "snapshotList" => {
            if !attached {
                return Err(engine_not_running(name));
            }
            let v = vol_ref(st, name)?;
            let mut data: Vec<Value> = v
                .snapshots
                .values()
                .filter(|s| s.ready)
                .map(|s| render::snapshot(base, v, s))
                .collect();
            data.push(render::volume_head(base, v));
            Ok(Reply::Json(render::collection("snapshot", &ctx.url, data)))
        }
        "snapshotGet" => {
            if !attached {
                return Err(engine_not_running(name));
            }
            let input: NameInput = ctx.input()?;
            let v = vol_ref(st, name)?;
            if input.name == "volume-head" {
                return Ok(Reply::Json(render::volume_head(base, v)));
            }
            let s = v
                .snapshots
                .get(&input.name)
                .filter(|s| s.ready)
                .ok_or_else(|| {
                    internal(format!(
                        "cannot find snapshot '{}' for volume '{name}'",
                        input.name
                    ))
                })?;
            Ok(Reply::Json(render::snapshot(base, v, s)))
        }
        "snapshotDelete" => {
            if !attached {
                return Err(engine_not_running(name));
            }
            let input: NameInput = ctx.input()?;
            if input.name == "volume-head" {
                return Err(internal("cannot remove the volume head"));
            }
            let v = st
                .volumes
                .get_mut(name)
                .ok_or_else(|| not_found_volume(name))?;
            let s = v.snapshots.get_mut(&input.name).ok_or_else(|| {
                internal(format!(
                    "cannot find snapshot '{}' for volume '{name}'",
                    input.name
                ))
            })?;
            s.mark_removed = true;
            Ok(Reply::Json(render::volume(base, st, vol_ref(st, name)?)))
        }
        "snapshotPurge" => {
            if !attached {
                return Err(engine_not_running(name));
            }
            let v = st
                .volumes
                .get_mut(name)
                .ok_or_else(|| not_found_volume(name))?;
            // The volume head's parent stays (worker::purgeable).
            let removed: Vec<String> = v
                .snapshots
                .values()
                .filter(|s| s.mark_removed && worker::purgeable(v, &s.name))
                .map(|s| s.name.clone())
                .collect();
            for s in removed {
                worker::remove_snapshot(v, &s);
            }
            worker::sync_too_many_snapshots(st, name);
            Ok(Reply::Json(render::volume(base, st, vol_ref(st, name)?)))
        }
        "snapshotRevert" => {
            if !attached {
                return Err(engine_not_running(name));
            }
            let input: NameInput = ctx.input()?;
            let v = st
                .volumes
                .get_mut(name)
                .ok_or_else(|| not_found_volume(name))?;
            if !v.tickets.values().any(|t| t.disable_frontend) {
                return Err(internal(format!(
                    "volume {name} frontend enabled: revert needs the volume attached in maintenance mode"
                )));
            }
            let data = v
                .snapshots
                .get(&input.name)
                .filter(|s| s.ready && !s.mark_removed)
                .map(|s| s.data.clone())
                .ok_or_else(|| {
                    internal(format!(
                        "cannot find snapshot '{}' for volume '{name}'",
                        input.name
                    ))
                })?;
            v.data = data;
            Ok(Reply::Empty)
        }
        "snapshotBackup" => {
            let input: SnapshotInput = ctx.input()?;
            // longhorn-manager api/snapshot.go (*Server).SnapshotBackup wraps
            // every error "failed to backup snapshot"; manager/engine.go
            // (*VolumeManager).BackupSnapshot checks only the empty name.
            if input.name.is_empty() {
                return Err(backup_failed("volume and snapshot name required"));
            }
            // The Backup CR then meets the validating webhook
            // (webhook/resources/backup/validator.go (*backupValidator).Create),
            // in this order: mode, target available, Snapshot CR.
            let mode = match input.backup_mode.as_str() {
                "" | "incremental" => "incremental",
                "full" => "full",
                m => {
                    return Err(backup_failed(&webhook_denied(&format!(
                        "BackupMode {m} is not a valid option"
                    ))));
                }
            };
            // api/snapshot.go SnapshotBackup: the target is always the
            // volume's spec.backupTargetName (label longhorn.io/backup-target).
            let target = vol_ref(st, name)?.backup_target.clone();
            if sh.store_for(&target).is_none() {
                return Err(backup_failed(&webhook_denied(&format!(
                    "backup target {target} is not available"
                ))));
            }
            // `ds.GetSnapshotRO` fails, the nil pointer is printed: the
            // requested name is not in the message.
            let owner = if vol_ref(st, name)?.snapshots.contains_key(&input.name) {
                Some(name.to_owned())
            } else {
                st.volumes
                    .values()
                    .find(|v| v.snapshots.contains_key(&input.name))
                    .map(|v| v.name.clone())
            };
            match owner {
                None => {
                    return Err(backup_failed(&webhook_denied("snapshot <nil> is invalid")));
                }
                Some(o) if o != name => {
                    return Err(backup_failed(&webhook_denied(&format!(
                        "snapshot volume name {o} and label volume name {name} does not match"
                    ))));
                }
                Some(_) => {}
            }
            let mut labels = input.labels.unwrap_or_default();
            for (k, v) in &labels {
                if k == "KubernetesStatus" || k == "ranchervm-base-image" {
                    return Err(internal(format!("label key {k} is reserved")));
                }
                if v.is_empty() {
                    return Err(internal(format!("label {k} has an empty value")));
                }
            }
            check_labels(&labels)?;
            let uid = st.uid();
            let v = vol_ref(st, name)?;
            if v.state == VolState::Deleting {
                return Err(internal(format!("volume {name} is being deleted")));
            }
            let ks = &v.kubernetes_status;
            if !ks.pv_name.is_empty() || !ks.pvc_name.is_empty() {
                labels.insert(
                    "KubernetesStatus".into(),
                    serde_json::to_string(ks).unwrap_or_default(),
                );
            }
            labels.insert(
                "longhorn.io/volume-access-mode".into(),
                v.access_mode.clone(),
            );
            let backup_name = format!("backup-{}", hex16());
            let b = Backup {
                uid,
                name: backup_name.clone(),
                volume_name: name.to_owned(),
                target: target.clone(),
                snapshot_name: input.name,
                status_snapshot: String::new(),
                state: String::new(),
                progress: 0,
                error: String::new(),
                messages: BTreeMap::new(),
                url: String::new(),
                snapshot_created: String::new(),
                snapshot_at: None,
                created: String::new(),
                size: 0,
                spec_labels: labels,
                labels: None,
                backup_mode: mode.to_owned(),
                volume_size: v.size,
                volume_created: rfc3339(v.created),
                newly_uploaded: 0,
                reuploaded: 0,
                replica: String::new(),
                completed_seq: 0,
                completed_at: None,
            };
            st.backups.insert(backup_name.clone(), b);
            st.backup_volumes
                .entry(bv_name(name, &target))
                .or_insert_with(|| crate::state::BackupVolumeState {
                    volume: name.to_owned(),
                    target: target.clone(),
                    ..Default::default()
                });
            st.backups_created += 1;
            let sh2 = sh.clone();
            sh.spawn_data(async move { worker::run_backup(sh2, backup_name, uid).await });
            Ok(Reply::Json(render::volume(base, st, vol_ref(st, name)?)))
        }
        "recurringJobList" | "recurringJobAdd" | "recurringJobDelete" => {
            if action != "recurringJobList" {
                let _: NameInput = ctx.input()?;
            }
            Ok(Reply::Json(render::collection(
                "volumeRecurringJob",
                &ctx.url,
                vec![],
            )))
        }
        // api/volume.go UpdateBackupTargetName: spec.backupTargetName (input
        // `backupTargetName`); later backups of the volume go there.
        "updateBackupTargetName" => {
            #[derive(Deserialize, Default)]
            #[serde(default, rename_all = "camelCase")]
            struct TargetInput {
                backup_target_name: String,
            }
            let input: TargetInput = ctx.input()?;
            let target = if input.backup_target_name.is_empty() {
                crate::state::TARGET.to_owned()
            } else {
                input.backup_target_name
            };
            if target != crate::state::TARGET && sh.store_for(&target).is_none() {
                return Err(internal(format!(
                    "failed to update backup target name of volume {name}: backuptargets.longhorn.io \"{target}\" not found"
                )));
            }
            let v = st
                .volumes
                .get_mut(name)
                .ok_or_else(|| not_found_volume(name))?;
            v.backup_target = target;
            Ok(Reply::Json(render::volume(base, st, vol_ref(st, name)?)))
        }
        other => Err(internal(format!(
            "action {other} is not supported by the Longhorn emulator"
        ))),
    }
}

fn volume_reply(ctx: &Ctx, name: &str) -> Result<Reply> {
    let st = ctx.sh.lock();
    let v = st.volumes.get(name).ok_or_else(|| not_found_volume(name))?;
    Ok(Reply::Json(render::volume(&ctx.base, &st, v)))
}

fn backup_volume_action(ctx: &Ctx, id: &str, action: &str) -> Result<Reply> {
    let base = ctx.base.as_str();
    let mut guard = ctx.sh.lock();
    let st = &mut *guard;
    let bv = st.backup_volumes.get(id).cloned();
    let list = |st: &State, keep: &dyn Fn(&Backup) -> bool| {
        let data = st
            .backups
            .values()
            .filter(|b| keep(b))
            .map(|b| render::backup(base, b))
            .collect();
        render::collection("backup", &ctx.url, data)
    };
    // manager/engine.go GetBackupVolume: a stub for a name that does not exist.
    let bv_reply = |st: &State, bv: &Option<crate::state::BackupVolumeState>| match bv {
        Some(bv) => render::backup_volume(base, st, bv),
        None => render::backup_volume_placeholder(base, id),
    };
    match action {
        // manager/engine.go ListBackupsForBackupVolumeSorted: the BV's target
        // and volume; empty when the BV does not exist.
        "backupList" => Ok(Reply::Json(list(st, &|b: &Backup| {
            bv.as_ref()
                .is_some_and(|bv| b.volume_name == bv.volume && b.target == bv.target)
        }))),
        // manager/engine.go ListBackupsForVolumeName: the path is ignored;
        // label backup-volume=<name>, and backup-target=<the volume's
        // target> when the volume exists in the cluster.
        "backupListByVolume" => {
            let input: NameInput = ctx.input()?;
            let target = st.volumes.get(&input.name).map(|v| v.backup_target.clone());
            Ok(Reply::Json(list(st, &|b: &Backup| {
                b.volume_name == input.name && target.as_ref().is_none_or(|t| *t == b.target)
            })))
        }
        "backupGet" => {
            let input: NameInput = ctx.input()?;
            if input.name.is_empty() {
                return Err(internal("empty backup name is not allowed"));
            }
            let b = st.backups.get(&input.name).ok_or_else(|| {
                ApiError::NotFound(format!("backups.longhorn.io \"{}\" not found", input.name))
            })?;
            Ok(Reply::Json(render::backup(base, b)))
        }
        // api/backup.go BackupDelete: deletes the Backup CR by name only;
        // the path's backup volume is used for the answer alone.
        "backupDelete" => {
            let input: NameInput = ctx.input()?;
            if input.name.is_empty() {
                return Err(internal("empty backup name is not allowed"));
            }
            let start = match st.backups.get_mut(&input.name) {
                Some(b) if b.state != "Deleting" => {
                    b.state = "Deleting".into();
                    Some(b.uid)
                }
                _ => None,
            };
            if let Some(uid) = start {
                let sh2 = ctx.sh.clone();
                let name = input.name.clone();
                ctx.sh
                    .spawn_data(async move { worker::run_delete_backup(sh2, name, uid).await });
            }
            Ok(Reply::Json(bv_reply(st, &bv)))
        }
        "backupVolumeSync" => {
            let _: Value = ctx.input()?;
            let Some(found) = bv.clone() else {
                return Err(ApiError::NotFound(format!(
                    "backupvolumes.longhorn.io \"{id}\" not found"
                )));
            };
            let now = std::time::Instant::now();
            if let Some(state) = st.backup_volumes.get_mut(id) {
                if state
                    .last_sync
                    .is_some_and(|t| now.duration_since(t) < std::time::Duration::from_secs(10))
                {
                    return Err(internal(format!(
                        "failed to synchronize backup volume '{id}' in 10 seconds"
                    )));
                }
                state.last_sync = Some(now);
            }
            spawn_sync(&ctx.sh, &found.target, Some(found.volume.clone()));
            Ok(Reply::Json(bv_reply(st, &bv)))
        }
        other => Err(internal(format!(
            "action {other} is not supported by the Longhorn emulator"
        ))),
    }
}

/// Brings the cluster's view of one backup target in line with its store, as
/// a target or backup volume sync does (backup_target_controller.go
/// syncBackupVolume, backup_volume_controller.go): completed backups found in
/// the store appear, completed backups whose `.cfg` is gone disappear.
/// `volume`: only that one.
pub async fn sync_from_store(
    sh: &Arc<Shared>,
    target: &str,
    volume: Option<&str>,
) -> anyhow::Result<()> {
    let Some(store) = sh.store_for(target) else {
        return Ok(());
    };
    let started = sh.lock().completions;
    let found = match volume {
        None => store.scan().await?,
        Some(v) => store.scan_volume(v).await?.into_iter().collect(),
    };
    let mut st = sh.lock();
    let scanned: Vec<String> = match volume {
        Some(v) => vec![v.to_owned()],
        None => st
            .backup_volumes
            .values()
            .filter(|bv| bv.target == target)
            .map(|bv| bv.volume.clone())
            .collect(),
    };
    let in_store: std::collections::HashSet<String> = found
        .iter()
        .flat_map(|(_, bs)| bs.iter().map(|b| b.name.clone()))
        .collect();
    // Completed before the scan started and absent from the store: deleted remotely.
    st.backups.retain(|name, b| {
        !(b.target == target
            && scanned.contains(&b.volume_name)
            && b.state == "Completed"
            && b.completed_seq <= started
            && !in_store.contains(name))
    });
    for (vcfg, backups) in found {
        let volume = vcfg.name.clone();
        let bv = st
            .backup_volumes
            .entry(bv_name(&volume, target))
            .or_insert_with(|| crate::state::BackupVolumeState {
                volume: volume.clone(),
                target: target.to_owned(),
                ..Default::default()
            });
        if bv.created.is_empty() {
            bv.created = vcfg.created_time.clone();
        }
        bv.block_count = vcfg.block_count.parse().unwrap_or(0);
        bv.storage_class_name = crate::store::double_decode(&vcfg.storage_class_name);
        for cfg in backups {
            if st.backups.contains_key(&cfg.name) {
                continue;
            }
            let uid = st.uid();
            let b = Backup {
                uid,
                name: cfg.name.clone(),
                volume_name: volume.clone(),
                target: target.to_owned(),
                snapshot_name: cfg.snapshot_name.clone(),
                status_snapshot: cfg.snapshot_name.clone(),
                state: "Completed".into(),
                progress: 0,
                error: String::new(),
                messages: BTreeMap::new(),
                url: store.backup_url(&cfg.name, &volume),
                snapshot_created: cfg.snapshot_created_at.clone(),
                snapshot_at: chrono::DateTime::parse_from_rfc3339(&cfg.snapshot_created_at)
                    .ok()
                    .map(|t| t.with_timezone(&Utc)),
                created: cfg.created_time.clone(),
                size: cfg.size.parse().unwrap_or(0),
                spec_labels: cfg.labels.clone().unwrap_or_default(),
                labels: cfg.labels.clone().or_else(|| Some(BTreeMap::new())),
                backup_mode: cfg
                    .parameters
                    .as_ref()
                    .and_then(|p| p.get("backup-mode").cloned())
                    .unwrap_or_else(|| "incremental".into()),
                volume_size: vcfg.size.parse().unwrap_or(0),
                // controller/backup_controller.go `reconcile` copies
                // backupInfo.VolumeCreated, which backupstore inspect.go
                // `fillFullBackupInfo` takes from volume.cfg's CreatedTime.
                volume_created: vcfg.created_time.clone(),
                newly_uploaded: cfg.newly_uploaded_data_size.parse().unwrap_or(0),
                reuploaded: cfg.re_uploaded_data_size.parse().unwrap_or(0),
                replica: String::new(),
                completed_seq: 0,
                completed_at: None,
            };
            st.backups.insert(cfg.name, b);
        }
    }
    Ok(())
}

/// Starts a store sync of `target` in the background (the API answers before it is done).
fn spawn_sync(sh: &Arc<Shared>, target: &str, volume: Option<String>) {
    let sh2 = sh.clone();
    let target = target.to_owned();
    sh.spawn(async move {
        if let Err(e) = sync_from_store(&sh2, &target, volume.as_deref()).await {
            tracing::warn!(error = %e, %target, "backup store sync failed");
        }
    });
}

/// The poll timer of a backup target (controller/backup_target_controller.go
/// `(*BackupStoreTimer).Start`: `spec.syncRequestedAt = now` every
/// pollInterval, 5 min, through `wait.PollUntilContextCancel(ctx, interval,
/// false, ...)`, so the first tick is one interval after the start). The
/// start's own sync does not wait for it: see [`crate::Emulator::start`].
pub fn start_target_poll(sh: &Arc<Shared>, target: &str) {
    let sh2 = sh.clone();
    let target = target.to_owned();
    sh.spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(300)).await;
            sh2.lock()
                .target_syncs
                .insert(target.clone(), std::time::Instant::now());
            if let Err(e) = sync_from_store(&sh2, &target, None).await {
                tracing::warn!(error = %e, %target, "backup store poll failed");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("64Mi"), Some(64 << 20));
        assert_eq!(parse_quantity("1073741824"), Some(1 << 30));
        assert_eq!(parse_quantity("1G"), Some(1_000_000_000));
        assert_eq!(parse_quantity("x"), None);
        assert_eq!(parse_quantity("1.5Gi"), None);
    }

    #[test]
    fn auto_corrected_names() {
        // The example computed from Longhorn's algorithm (facts §3).
        assert_eq!(
            auto_correct_name("restore-of-a-very-long-backup-volume-name-0001", 40),
            "restore-of-a-very-long-backup-v-c227dc26"
        );
        assert_eq!(auto_correct_name("MyVol", 40), "myvol");
        let forty = "a".repeat(40);
        assert_eq!(auto_correct_name(&forty, 40), forty);
        // Trailing '-' of the cut prefix is trimmed.
        let n = format!("{}-{}", "b".repeat(30), "c".repeat(20));
        let c = auto_correct_name(&n, 40);
        assert!(
            c.starts_with(&format!("{}-", "b".repeat(30))) && !c.contains("--"),
            "{c}"
        );
        assert_eq!(c.len(), 39);
    }

    #[test]
    fn names() {
        assert!(valid_volume_name("pvc-0123"));
        assert!(!valid_volume_name("-a"));
        assert!(!valid_volume_name("A"));
        assert!(!valid_volume_name(&"a".repeat(41)));
        assert!(valid_object_name("snap-1.a_b"));
        assert!(!valid_object_name("a"));
        assert!(!valid_object_name("Snap"));
    }

    #[test]
    fn routes() {
        let r = |m: Method, p: &str, q: Option<&str>| resolve(&m, p, q);
        assert_eq!(
            r(Method::GET, "/v1/volumes", None).ok(),
            Some(Route::ListVolumes)
        );
        assert_eq!(
            r(Method::POST, "/v1/volumes/v", Some("action=attach")).ok(),
            Some(Route::VolumeAction("v".into(), "attach".into()))
        );
        assert!(matches!(
            r(Method::POST, "/v1/volumes/v", Some("action=nope")),
            Err(Miss::NotFound)
        ));
        assert!(matches!(
            r(Method::GET, "/v1/volumes/", None),
            Err(Miss::Redirect(l)) if l == "/v1/volumes"
        ));
        assert!(matches!(r(Method::GET, "/v2", None), Err(Miss::NotFound)));
        assert!(matches!(
            r(Method::PATCH, "/v1/volumes", None),
            Err(Miss::MethodNotAllowed)
        ));
    }
}
