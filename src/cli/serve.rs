//! `dr serve`: the daemon.

use super::{Context, Failure};
use crate::daemon::{Daemon, LeaseSettings, LeaseStatus};
use crate::metrics::Metrics;
use crate::serve::AppState;
use crate::span::Span;
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

    /// This replica's identity as the holder of policy Leases [default:
    /// this process's holder id, `<host>:<pid>:<random>`; in a pod, set it
    /// to the pod's name]
    #[arg(long, env = "DR_IDENTITY", value_name = "NAME")]
    pub identity: Option<String>,

    /// Namespace of the policy Leases (`dr-<policy>`), by which replicas
    /// share the policies [default: the pod's namespace in a cluster, else
    /// dr-system]
    #[arg(long, env = "DR_LEASE_NAMESPACE", value_name = "NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// How long a policy's Lease lasts without renewal: a lost replica's
    /// policies move to another within about this (3s to 10m). Renewed
    /// every third of it; a replica that cannot renew for two thirds of it
    /// stops the policy's work.
    #[arg(long, env = "DR_LEASE_DURATION", value_name = "SPAN", default_value = "15s", value_parser = lease_duration)]
    pub lease_duration: Span,

    /// On SIGTERM, how long running ticks, retention and drills get to
    /// finish before they are cut short (a cut tick's point is adopted by
    /// the next leader) and the Leases released; keep the pod's
    /// terminationGracePeriodSeconds above it.
    #[arg(long, env = "DR_SHUTDOWN_GRACE", value_name = "SPAN", default_value = "30s", value_parser = positive_span)]
    pub shutdown_grace: Span,
}

fn positive_span(s: &str) -> Result<Span, String> {
    crate::config::Positive::try_from(s.to_owned()).map(|p| p.0)
}

fn lease_duration(s: &str) -> Result<Span, String> {
    let d = positive_span(s)?;
    let secs = d.as_duration().as_secs();
    if !(3..=600).contains(&secs) {
        return Err(format!(
            "{s:?} is out of range: a lease lasts from 3s to 10m (e.g. 15s)"
        ));
    }
    Ok(d)
}

/// The pod's namespace, as the service account's files say.
const POD_NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

fn lease_settings(a: &ServeArgs, holder: &str) -> LeaseSettings {
    let namespace = a.lease_namespace.clone().unwrap_or_else(|| {
        std::fs::read_to_string(POD_NAMESPACE_FILE)
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "dr-system".into())
    });
    LeaseSettings {
        namespace,
        identity: a.identity.clone().unwrap_or_else(|| holder.to_owned()),
        duration: a.lease_duration.as_duration(),
    }
}

pub async fn run(ctx: &Context, a: ServeArgs) -> Result<(), Failure> {
    let catalog = ctx.catalog().await?;
    let (listener, local) = crate::serve::bind(&a.listen)
        .await
        .map_err(Failure::input)?;
    let metrics = Arc::new(Metrics::default());
    let policies = ctx.config().policies.clone();
    let leases = lease_settings(&a, &ctx.app.holder);
    let lease_status = (!policies.is_empty()).then(|| LeaseStatus::new(&leases));
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
        let status = lease_status
            .clone()
            .unwrap_or_else(|| LeaseStatus::new(&leases));
        let daemon = Daemon::new(
            ctx.app.clone(),
            protect,
            env,
            runbooks,
            metrics.clone(),
            leases.clone(),
            status,
        );
        Some(daemon.start().await?)
    };
    if !policies.is_empty() {
        eprintln!(
            "dr serve: {} competes for the policies' Leases (dr-<policy>) in namespace {}, lasting {}",
            leases.identity, leases.namespace, a.lease_duration
        );
    }
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
        leases: lease_status,
    };
    // On SIGTERM the daemon stops first (work in flight gets its grace,
    // the Leases are released), then the HTTP server.
    let (down_tx, down_rx) = tokio::sync::oneshot::channel::<()>();
    let grace = a.shutdown_grace.as_duration();
    let stopper = tokio::spawn(async move {
        crate::serve::shutdown_signal().await;
        eprintln!("dr serve: stopping (work in flight gets {grace:?})");
        if let Some(r) = running {
            r.stop(grace).await;
        }
        let _ = down_tx.send(());
    });
    crate::serve::run(listener, local, app, async {
        let _ = down_rx.await;
    })
    .await?;
    let _ = stopper.await;
    eprintln!("dr serve: stopped");
    Ok(())
}
