//! `dr serve`: the daemon.

use super::{Context, Failure};
use crate::daemon::Daemon;
use crate::metrics::Metrics;
use crate::serve::AppState;
use clap::Args;
use std::sync::Arc;

/// Arguments of `dr serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address for /healthz, /readyz and /metrics (port 0 picks a free port;
    /// the bound address is printed on stderr).
    #[arg(
        long,
        env = "DR_LISTEN",
        default_value = "0.0.0.0:8080",
        value_name = "ADDR"
    )]
    pub listen: String,
}

pub async fn run(ctx: &Context, a: ServeArgs) -> Result<(), Failure> {
    let catalog = ctx.catalog().await?;
    let (listener, local) = crate::serve::bind(&a.listen)
        .await
        .map_err(Failure::input)?;
    let metrics = Arc::new(Metrics::default());
    let policies = ctx.config().policies.clone();
    // Without policies there is nothing to schedule: dr serve serves its
    // catalog's health only (and needs neither Longhorn nor Kubernetes).
    let running = if policies.is_empty() {
        None
    } else {
        let protect = ctx.app.protect().await?;
        // An unsupported Longhorn stops the start with what is supported; an
        // unreachable or slow one does not (each tick checks again, and
        // fails its point with the reason while it is unsupported).
        let version = protect.longhorn.check_supported_once();
        match tokio::time::timeout(std::time::Duration::from_secs(5), version).await {
            Ok(Ok(v)) => eprintln!("dr serve: Longhorn {v}"),
            Ok(Err(e @ crate::longhorn::LonghornError::Unsupported { .. })) => {
                return Err(Failure::failed(e));
            }
            Ok(Err(e)) => eprintln!("dr serve: cannot read Longhorn's version yet: {e}"),
            Err(_) => eprintln!("dr serve: Longhorn did not say its version within 5s"),
        }
        let env = ctx.app.env().await?;
        // Drill runbooks are read and checked now: a broken one stops the
        // start with its error instead of failing at 3 a.m. on Sunday.
        let mut runbooks = std::collections::HashMap::new();
        for p in policies.iter().filter(|p| p.drill.is_some()) {
            let (path, rb) = ctx
                .app
                .drill_runbook(p.name.as_str(), None)
                .map_err(Failure::input)?;
            rb.check_rto(&path.display().to_string(), p.rto.0)
                .map_err(Failure::input)?;
            runbooks.insert(p.name.to_string(), rb);
        }
        let daemon = Daemon::new(ctx.app.clone(), protect, env, runbooks, metrics.clone());
        Some(daemon.start().await?)
    };
    eprintln!(
        "dr serve: catalog {}, {} polic{}, listening on http://{local}",
        ctx.app.catalog_url,
        policies.len(),
        if policies.len() == 1 { "y" } else { "ies" }
    );
    let app = AppState {
        catalog,
        metrics,
        policies: Arc::new(policies),
        clock: ctx.app.clock,
    };
    crate::serve::run(listener, local, app, crate::serve::shutdown_signal()).await?;
    if let Some(r) = running {
        r.stop().await;
    }
    eprintln!("dr serve: stopped");
    Ok(())
}
