//! `dr serve`: the long-lived daemon. For now it opens the catalog and serves
//! `/healthz` (the process is alive) and `/readyz` (the catalog answers) until
//! SIGTERM or Ctrl-C, then shuts down cleanly.

use crate::catalog::Catalog;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use std::net::SocketAddr;
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

async fn readyz(State(catalog): State<Catalog>) -> (StatusCode, String) {
    match catalog.ping().await {
        Ok(()) => (StatusCode::OK, "ok\n".into()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("catalog: {e}\n")),
    }
}

/// The HTTP routes of the daemon.
pub fn router(catalog: Catalog) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(catalog)
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
    catalog: Catalog,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    tracing::info!("serving /healthz and /readyz");
    axum::serve(listener, router(catalog.clone()))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(ServeError::Http)?;
    tracing::info!("shutting down");
    catalog.close().await;
    Ok(())
}
