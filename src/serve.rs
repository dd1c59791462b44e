//! `dr serve`'s HTTP face: `/healthz` (the process is alive), `/readyz` (the
//! catalog answers) and `/metrics` (Prometheus), until SIGTERM or Ctrl-C.

use crate::catalog::Catalog;
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
}

async fn readyz(State(app): State<AppState>) -> (StatusCode, String) {
    match app.catalog.ping().await {
        Ok(()) => (StatusCode::OK, "ok\n".into()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("catalog: {e}\n")),
    }
}

async fn metrics(
    State(app): State<AppState>,
) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    let now = chrono::Utc::now();
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
    (
        StatusCode::OK,
        [("content-type", "text/plain; version=0.0.4")],
        app.metrics.render(&statuses),
    )
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
