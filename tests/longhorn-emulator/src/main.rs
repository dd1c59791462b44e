//! `longhorn-emulator`: the Longhorn manager API emulator as a process (for the demo).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use longhorn_emulator::{Cluster, Emulator, EmulatorConfig, TestbedEnv, Timings};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Speed {
    Fast,
    Realistic,
}

/// The test bed's cluster: `a` (`KUBECONFIG` of the env file) or `b`
/// (`DR_TEST_KUBECONFIG_B`, the cluster to recover into).
#[derive(Clone, Copy, Debug, ValueEnum)]
enum ClusterArg {
    A,
    B,
}

/// Emulates the Longhorn v1.12 manager REST API (port 9500), with real data in S3.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Address to serve the API (/v1) and the control endpoint (/emulator) on.
    #[arg(long, env = "DR_EMULATOR_LISTEN", default_value = "127.0.0.1:9500")]
    listen: SocketAddr,
    /// The test bed's env file: S3 target and KUBECONFIG come from it.
    #[arg(long, env = "DR_TESTBED_ENV")]
    testbed_env: Option<PathBuf>,
    /// Key prefix of the backup store in the bucket.
    #[arg(long, env = "DR_EMULATOR_PREFIX", default_value = "longhorn")]
    prefix: String,
    /// Delays and speeds of the asynchronous operations.
    #[arg(long, value_enum, default_value = "fast")]
    timings: Speed,
    /// Do not use the test bed's Kubernetes cluster.
    #[arg(long)]
    no_kube: bool,
    /// Which of the test bed's clusters the CSI side (StorageClasses,
    /// provisioner, PVs) works in; the backup store is the same for both.
    #[arg(long, value_enum, default_value = "a", env = "DR_EMULATOR_CLUSTER")]
    cluster: ClusterArg,
    /// Serve only PVCs of these namespaces (default: every namespace).
    #[arg(long, value_delimiter = ',')]
    namespaces: Option<Vec<String>>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let mut cfg = EmulatorConfig::new(args.listen);
    cfg.timings = match args.timings {
        Speed::Fast => Timings::fast(),
        Speed::Realistic => Timings::realistic(),
    };
    if let Some(path) = &args.testbed_env {
        let env = TestbedEnv::load_from(path)?;
        cfg.store = Some(env.store(&args.prefix)?);
        if !args.no_kube {
            let cluster = match args.cluster {
                ClusterArg::A => Cluster::A,
                ClusterArg::B => Cluster::B,
            };
            cfg.kube = Some(env.kube_client_of(cluster).await?);
        }
    }
    let emulator = Emulator::start(cfg)
        .await
        .context("starting the emulator")?;
    if args.namespaces.is_some() {
        emulator
            .control()
            .set_provisioner_namespaces(args.namespaces.clone())
            .await?;
    }
    eprintln!("listening on http://{}", emulator.addr());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    emulator.shutdown().await;
    Ok(())
}
