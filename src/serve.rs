//! `dr serve`'s HTTP face: `/healthz` (the process is alive), `/readyz` (the
//! catalog answers) and `/metrics` (Prometheus), until SIGTERM or Ctrl-C.

use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::config::{PolicyConfig, Schedule};
use crate::metrics::Metrics;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// A failure of the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}; choose another address with --listen")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("the HTTP server failed: {0}")]
    Http(std::io::Error),
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// What the HTTP handlers read.
#[derive(Clone)]
pub struct AppState {
    pub catalog: Catalog,
    pub metrics: Arc<Metrics>,
    pub policies: Arc<Vec<PolicyConfig>>,
    /// Where the scrape's "now" comes from.
    pub clock: Clock,
    /// The policy Leases (None without policies).
    pub leases: Option<Arc<crate::daemon::LeaseStatus>>,
}

/// Ready once the catalog answers and (with policies) the Lease API has
/// answered; the body names the policies this replica leads.
async fn readyz(State(app): State<AppState>) -> (StatusCode, String) {
    if let Err(e) = app.catalog.ping().await {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("catalog: {e}\n"));
    }
    let Some(leases) = &app.leases else {
        return (StatusCode::OK, "ok\n".into());
    };
    if !leases.answered() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "leases: the Lease API (namespace {}) has not answered yet\n",
                leases.namespace
            ),
        );
    }
    let led: Vec<String> = leases
        .policies()
        .into_iter()
        .filter(|(_, (mine, _))| *mine)
        .map(|(p, _)| p)
        .collect();
    let led = if led.is_empty() {
        "none".into()
    } else {
        led.join(", ")
    };
    (
        StatusCode::OK,
        format!("ok: {} leads {led}\n", leases.identity),
    )
}

async fn metrics(
    State(app): State<AppState>,
) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    let now = app.clock.now();
    let mut statuses = Vec::new();
    for p in app.policies.iter() {
        let newest = match app.catalog.newest_verified_point(&p.name).await {
            Ok(n) => n,
            Err(e) => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [("content-type", "text/plain")],
                    format!("catalog: {e}\n"),
                );
            }
        };
        statuses.push(crate::status::policy_status(
            p.name.as_str(),
            p.namespace.as_str(),
            p.rpo.0,
            newest.as_ref(),
            Vec::new(),
            Schedule::next_after(&p.schedule, now),
            now,
        ));
    }
    let mut figures = Vec::new();
    for p in app.policies.iter() {
        match run_figures(&app.catalog, p, now).await {
            Ok(f) => figures.push(f),
            Err(e) => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [("content-type", "text/plain")],
                    format!("catalog: {e}\n"),
                );
            }
        }
    }
    let mut text = app.metrics.render(&statuses);
    text.push_str(&crate::metrics::render_runs(&figures));
    if let Some(leases) = &app.leases {
        text.push_str(&crate::metrics::render_leases(leases));
    }
    (
        StatusCode::OK,
        [("content-type", "text/plain; version=0.0.4")],
        text,
    )
}

/// A policy's drill, restore, verification and availability figures, from
/// the catalog.
async fn run_figures(
    catalog: &crate::catalog::Catalog,
    p: &PolicyConfig,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<crate::metrics::RunFigures, crate::catalog::CatalogError> {
    use crate::catalog::{RunKind, RunState};
    let policy = &p.name;
    let summary = crate::runbook::summary::stored;
    let drills = catalog
        .list_runs(Some(RunKind::Drill), Some(policy), 20)
        .await?;
    let drill = drills
        .iter()
        .filter(|r| r.state != RunState::Running)
        .find_map(|r| summary(r).map(|s| (s, r.started_at)));
    let last_drill = drill
        .as_ref()
        .map(|(s, at)| (s.total_seconds, crate::drill::passed(s), *at));
    let last_drill_stages = drill.map_or_else(Vec::new, |(s, _)| {
        s.stages
            .into_iter()
            .map(|st| (st.name, st.budget_seconds, st.actual_seconds))
            .collect()
    });
    let restores = catalog
        .list_runs(Some(RunKind::Restore), Some(policy), 20)
        .await?;
    let last_restore_seconds = restores
        .iter()
        .filter(|r| r.state == RunState::Succeeded)
        .find_map(|r| summary(r).map(|s| s.total_seconds));
    let incidents: Vec<_> = catalog
        .list_incidents(Some(policy), false, 100_000)
        .await?
        .into_iter()
        .map(|i| (i.opened_at, i.resolved_at))
        .collect();
    Ok(crate::metrics::RunFigures {
        policy: policy.to_string(),
        rto_seconds: p.rto.0.as_duration().as_secs_f64(),
        last_drill,
        last_drill_stages,
        last_restore_seconds,
        unverified_backups: unverified_backups(catalog, policy, now).await?,
        availability: crate::report::availability(
            &incidents,
            now - chrono::TimeDelta::days(30),
            now,
            now,
        ),
    })
}

/// Completed backups of the newest complete point not verified in the store
/// (`None`: no complete point yet).
async fn unverified_backups(
    catalog: &crate::catalog::Catalog,
    policy: &crate::names::PolicyName,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<u64>, crate::catalog::CatalogError> {
    use crate::catalog::{BackupState, Verification};
    let Some(point) = catalog.newest_complete_at_or_before(policy, now).await? else {
        return Ok(None);
    };
    let backups = catalog.backups_of(point.id).await?;
    let n = backups
        .iter()
        .filter(|b| b.state == BackupState::Completed && b.verification != Verification::Verified)
        .count();
    Ok(Some(n as u64))
}

/// The HTTP routes of the daemon.
pub fn router(app: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(app)
}

/// Binds `addr`; returns the listener and the address actually bound (port 0 picks one).
pub async fn bind(addr: &str) -> Result<(TcpListener, SocketAddr), ServeError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: addr.to_owned(),
            source,
        })?;
    let local = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: addr.to_owned(),
        source,
    })?;
    Ok((listener, local))
}

/// Resolves when SIGTERM or SIGINT arrives.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Serves until `shutdown` resolves, then drains connections and closes the catalog.
#[tracing::instrument(skip_all, fields(addr = %local))]
pub async fn run(
    listener: TcpListener,
    local: SocketAddr,
    app: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    tracing::info!("serving /healthz, /readyz and /metrics");
    let catalog = app.catalog.clone();
    axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(ServeError::Http)?;
    tracing::info!("shutting down");
    catalog.close().await;
    Ok(())
}
