//! Benchmark of a tick's fan-out and of the daemon's footprint, on the test
//! bed with the Longhorn emulator: 1,000 volumes (PVCs bound through the
//! emulator's provisioner), 50 ms added to every Longhorn call, concurrency 16.
//!
//! Prints: time from tick start to the last `snapshotBackup` sent, against the
//! floor N × latency / concurrency (target ≤ 1.2×); the lag between Longhorn
//! completing a backup and dr recording it (target ≤ 1 s); and `dr serve`'s
//! resident memory after a tick over the 1,000 volumes (target < 30 MB) and
//! its CPU between ticks.
//!
//! Run: `tests/testbed/up && cargo bench --bench fanout`. Env: DR_BENCH_VOLUMES
//! (default 1000), DR_BENCH_LATENCY_MS (50), DR_BENCH_CONCURRENCY (16).

#[path = "../tests/common/mod.rs"]
mod common;

use chrono::{DurationRound, TimeDelta, Timelike, Utc};
use common::testbed::{self, TestNamespace};
use dr::backup::{Event, Events, Protect, TickOptions};
use dr::catalog::{Catalog, PointState};
use dr::longhorn::{ClientConfig, LonghornClient};
use dr::store::Store;
use futures::StreamExt;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::Api;
use kube::api::{ListParams, PostParams};
use longhorn_emulator::{Emulator, EmulatorConfig, Fault, StoreConfig, Timings};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A volume and when dr recorded its backup's end.
type Recorded = (String, chrono::DateTime<Utc>);

fn env_num(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn proc_status(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

fn cpu_ticks(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = text.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn main() -> anyhow::Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let n = env_num("DR_BENCH_VOLUMES", 1000) as usize;
    let latency = env_num("DR_BENCH_LATENCY_MS", 50);
    let conc = env_num("DR_BENCH_CONCURRENCY", 16) as usize;
    let tb = testbed::get();
    let kube = tb.kube_client().await;
    let ns = TestNamespace::create(&kube, "dr-bench").await;
    let prefix = format!("bench-{}", testbed::suffix());
    let mut ecfg = EmulatorConfig::new("127.0.0.1:0".parse()?);
    ecfg.store = Some(StoreConfig::from_testbed_env_with_prefix(&prefix)?);
    ecfg.kube = Some(kube.clone());
    ecfg.timings = Timings::fast();
    ecfg.provision_namespaces = Some(vec![ns.name.clone()]);
    let emu = Emulator::start(ecfg).await?;

    eprintln!("creating {n} claims in {} …", ns.name);
    let t0 = Instant::now();
    let pvcs = Api::<PersistentVolumeClaim>::namespaced(kube.clone(), &ns.name);
    futures::stream::iter(0..n)
        .map(|i| {
            let pvcs = pvcs.clone();
            async move {
                let pvc: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
                    "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "metadata": {"name": format!("data-{i:04}"), "labels": {"app": "bench"}},
                    "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "longhorn",
                             "resources": {"requests": {"storage": "2Mi"}}}
                }))
                .expect("claim");
                pvcs.create(&PostParams::default(), &pvc).await.map(|_| ())
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    loop {
        let bound = pvcs
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"))
            .count();
        if bound == n {
            break;
        }
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(600),
            "only {bound} of {n} claims bound"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    eprintln!("{n} claims bound in {:.0} s", t0.elapsed().as_secs_f64());

    let cfg = dr::config::Config::parse(
        &format!(
            "longhorn: {{url: \"{}\", concurrency: {conc}, timeout: 30s}}\nstore: {{bucket: {}, prefix: {prefix}, region: {}, endpoint: \"{}\"}}\npolicies:\n  - name: bench\n    namespace: {}\n    selector: app=bench\n    schedule: \"0 0 0 1 1 *\"\n",
            emu.url(),
            tb.s3_bucket(),
            tb.var("DR_TEST_S3_REGION"),
            tb.var("DR_TEST_S3_ENDPOINT"),
            ns.name
        ),
        "bench",
    )?;
    let policy = cfg.policies[0].clone();
    let dir = tempfile::tempdir()?;
    if std::env::var_os("DR_BENCH_DAEMON_ONLY").is_none() {
        fanout(&emu, &kube, &policy, &dir, &prefix, n, latency, conc).await?;
    }
    daemon(&emu, &ns, &dir, &prefix, n, conc).await?;
    ns.delete().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    emu.shutdown().await;
    Ok(())
}

/// The fan-out of one tick, in process, with latency added to every call.
#[allow(clippy::too_many_arguments)]
async fn fanout(
    emu: &Emulator,
    kube: &kube::Client,
    policy: &dr::config::PolicyConfig,
    dir: &tempfile::TempDir,
    prefix: &str,
    n: usize,
    latency: u64,
    conc: usize,
) -> anyhow::Result<()> {
    let tb = testbed::get();
    let catalog = Catalog::open(
        &format!("sqlite://{}/c.db", dir.path().display())
            .parse()
            .map_err(anyhow::Error::msg)?,
    )
    .await?;
    catalog.upsert_policy(policy, Utc::now()).await?;
    let mut lh = ClientConfig::new(emu.url());
    // Snapshot readiness is polled every 250 ms; the tick's shared volume
    // listing refreshes at least every 500 ms whatever the poll.
    lh.poll = Duration::from_millis(250);
    let s3 = tb.s3_client();
    let protect = Protect {
        catalog: catalog.clone(),
        longhorn: LonghornClient::new(lh)?,
        kube: kube.clone(),
        store: Store::from_client(s3.clone(), tb.s3_bucket(), prefix),
        verifier: s3,
        options: TickOptions {
            concurrency: conc,
            ..TickOptions::default()
        },
    };
    emu.control()
        .set_fault(Fault {
            operation: "*".into(),
            latency_ms: latency,
            ..Default::default()
        })
        .await?;

    let requested: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let done: Arc<Mutex<Vec<Recorded>>> = Arc::default();
    let (r2, d2) = (requested.clone(), done.clone());
    let events: Events = Arc::new(move |e| match e {
        Event::Requested { .. } => {
            if let Ok(mut v) = r2.lock() {
                v.push(Instant::now());
            }
        }
        Event::Completed { volume } => {
            if let Ok(mut v) = d2.lock() {
                v.push((volume, Utc::now()));
            }
        }
        _ => {}
    });
    let tick = Utc::now().duration_trunc(TimeDelta::seconds(1))?;
    let start = Instant::now();
    let report = protect.tick(policy, tick, events).await?;
    let total = start.elapsed();
    anyhow::ensure!(
        report.state == PointState::Complete,
        "tick ended {}: {:?}",
        report.state,
        report.reason
    );
    let last_request = requested
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .iter()
        .max()
        .map(|t| t.duration_since(start))
        .unwrap_or_default();
    let floor = Duration::from_millis(n as u64 * latency) / conc as u32;
    let ratio = last_request.as_secs_f64() / floor.as_secs_f64();
    println!(
        "fanout: {n} volumes, {latency} ms per Longhorn call, concurrency {conc}: all backups requested {:.2} s after the tick started; floor N×latency/concurrency = {:.2} s; ratio {ratio:.2} (target ≤ 1.2: {}); whole tick {:.1} s",
        last_request.as_secs_f64(),
        floor.as_secs_f64(),
        if ratio <= 1.2 { "met" } else { "MISSED" },
        total.as_secs_f64()
    );
    // Completion lag: Longhorn's completion time (backup `created`) to dr's record.
    let backups = catalog.backups_of(report.point_id).await?;
    let mut lags: Vec<f64> = Vec::new();
    for (volume, recorded) in done.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.iter() {
        if let Some(b) = backups.iter().find(|b| b.volume.as_str() == volume)
            && let Some(c) = b.completed_at
        {
            lags.push((*recorded - c).num_milliseconds() as f64 / 1000.0);
        }
    }
    lags.sort_by(|a, b| a.total_cmp(b));
    let max_lag = lags.last().copied().unwrap_or(f64::NAN);
    println!(
        "fanout: completion recorded after Longhorn finished: median {:.2} s, max {max_lag:.2} s over {} backups (target ≤ 1 s: {})",
        lags.get(lags.len() / 2).copied().unwrap_or(f64::NAN),
        lags.len(),
        if max_lag <= 1.0 { "met" } else { "MISSED" }
    );
    emu.control().clear_faults().await?;

    Ok(())
}

/// dr serve's memory after a tick over the volumes, and its CPU when idle.
async fn daemon(
    emu: &Emulator,
    ns: &TestNamespace,
    dir: &tempfile::TempDir,
    prefix: &str,
    n: usize,
    conc: usize,
) -> anyhow::Result<()> {
    let tb = testbed::get();
    // The daemon: one tick over the same volumes, then idle.
    let fire = Utc::now() + TimeDelta::seconds(6);
    let config = dir.path().join("dr.yaml");
    std::fs::write(
        &config,
        format!(
            "longhorn: {{url: \"{}\", concurrency: {conc}}}\nstore: {{bucket: {}, prefix: {prefix}, region: {}, endpoint: \"{}\"}}\npolicies:\n  - name: bench\n    namespace: {}\n    selector: app=bench\n    schedule: \"{} {} {} * * *\"\n",
            emu.url(),
            tb.s3_bucket(),
            tb.var("DR_TEST_S3_REGION"),
            tb.var("DR_TEST_S3_ENDPOINT"),
            ns.name,
            fire.second(),
            fire.minute(),
            fire.hour(),
        ),
    )?;
    let serve_catalog = format!("sqlite://{}/serve.db", dir.path().display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_dr"))
        .arg("--config")
        .arg(&config)
        .args([
            "--catalog",
            &serve_catalog,
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("KUBECONFIG", tb.kubeconfig())
        .env("AWS_ACCESS_KEY_ID", tb.var("AWS_ACCESS_KEY_ID"))
        .env("AWS_SECRET_ACCESS_KEY", tb.var("AWS_SECRET_ACCESS_KEY"))
        .stderr(Stdio::null())
        .spawn()?;
    let pid = child.id();
    let serve_cat = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Ok(c) = Catalog::open(&serve_catalog.parse().map_err(anyhow::Error::msg)?).await {
            break c;
        }
    };
    let waited = Instant::now();
    loop {
        let pts = serve_cat.list_points(None, 1).await?;
        if pts
            .first()
            .is_some_and(|p| p.point.state != PointState::Pending)
        {
            break;
        }
        anyhow::ensure!(
            waited.elapsed() < Duration::from_secs(300),
            "dr serve's tick did not finish"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = proc_status(pid, "VmRSS:").unwrap_or(0);
    let hwm = proc_status(pid, "VmHWM:").unwrap_or(0);
    let c0 = cpu_ticks(pid).unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let c1 = cpu_ticks(pid).unwrap_or(0);
    let rss_idle = proc_status(pid, "VmRSS:").unwrap_or(0);
    println!(
        "daemon: resident after 10 s more idle: {:.1} MB",
        rss_idle as f64 / 1024.0
    );
    let hz = 100.0; // USER_HZ on Linux
    println!(
        "daemon: dr serve after a tick over {n} volumes: resident {:.1} MB (peak {:.1} MB; target < 30 MB: {}); CPU between ticks {:.2}% of one core over 10 s",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
        if (rss as f64 / 1024.0) < 30.0 {
            "met"
        } else {
            "MISSED"
        },
        (c1.saturating_sub(c0)) as f64 / hz / 10.0 * 100.0
    );
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = child.wait();
    Ok(())
}
