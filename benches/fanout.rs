//! Benchmark of a tick's fan-out and of the daemon's footprint, on the test
//! bed with the Longhorn emulator: 1,000 volumes (PVCs bound through the
//! emulator's provisioner, then attached, as a protected workload's are),
//! 50 ms added to every Longhorn call, concurrency 16.
//!
//! Prints: time from tick start to the last `snapshotBackup` sent, against the
//! floor N × latency / concurrency (target ≤ 1.2×) and, with the realistic
//! profile, against the floor that applies there (Longhorn's snapshot-ready
//! wait is no API latency); the lag between Longhorn completing a backup and
//! dr recording it (target ≤ 1 s); what the tick cost the Longhorn manager
//! (its API requests per backup by operation, list calls and bytes per
//! backup, the follow listings' rate); and `dr serve`'s resident memory
//! after a tick over the 1,000 volumes (target < 30 MB) and its CPU between
//! ticks.
//!
//! Run: `tests/testbed/up && cargo bench --bench fanout`. Env: DR_BENCH_VOLUMES
//! (default 1000), DR_BENCH_LATENCY_MS (50), DR_BENCH_CONCURRENCY (16),
//! DR_BENCH_PROFILE (`realistic`, the default: the emulator's
//! `Timings::realistic()`, Longhorn's attach, engine-monitor and
//! backup-monitor periods; `fast`: `Timings::fast()`, tens of milliseconds
//! per step, the timings of the figures before this profile existed),
//! DR_BENCH_FOLLOW_MS (dr's `longhorn.follow_interval` for the measured
//! tick, in ms; its default when unset),
//! DR_BENCH_REPEAT (1: ticks measured in a row over the same volumes),
//! DR_BENCH_DAEMON_ONLY (set: only `dr serve`'s memory and CPU),
//! DR_BENCH_NICE (19: the CPU priority of the bed's data path, the S3
//! server while ticks are measured and the emulator's uploads; 0 leaves
//! both as they are; see [`S3Priority`]).

#[path = "../tests/it/harness/mod.rs"]
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
use longhorn_emulator::{Control, Emulator, EmulatorConfig, Fault, Stats, StoreConfig, Timings};
use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};
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

/// An optional numeric setting: absent or empty is `None`, anything else
/// must be a number.
fn env_opt(key: &str) -> anyhow::Result<Option<u64>> {
    match std::env::var(key).as_deref() {
        Err(_) | Ok("") => Ok(None),
        Ok(v) => v
            .parse()
            .map(Some)
            .map_err(|_| anyhow::anyhow!("{key}={v}: a whole number of milliseconds")),
    }
}

/// The emulator's timings, by `DR_BENCH_PROFILE`: `realistic` (the
/// default) or `fast`.
fn profile() -> anyhow::Result<(&'static str, Timings)> {
    match std::env::var("DR_BENCH_PROFILE").as_deref() {
        Err(_) | Ok("") | Ok("realistic") => Ok(("realistic", Timings::realistic())),
        Ok("fast") => Ok(("fast", Timings::fast())),
        Ok(other) => anyhow::bail!("DR_BENCH_PROFILE={other}: realistic or fast"),
    }
}

/// How long binding the claims may take.
const BIND_DEADLINE: Duration = Duration::from_secs(1200);

/// Volumes attached at once before measuring.
const ATTACH_AT_ONCE: usize = 100;

/// The API operations that list (a collection per call).
const LIST_OPS: &[&str] = &[
    "listVolumes",
    "listBackupVolumes",
    "listBackupTargets",
    "listSettings",
    "listSchemas",
    "snapshotCRList",
    "snapshotList",
    "backupList",
    "backupListByVolume",
    "recurringJobList",
];

/// `after - before`, per operation, without the zeros.
fn diff(after: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(op, n)| (op.clone(), n - before.get(op).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

fn proc_status(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// (busy, total) jiffies of the whole machine, from /proc/stat.
fn machine_ticks() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu: Vec<u64> = text
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = cpu.iter().sum();
    let idle = cpu.get(3)? + cpu.get(4)?;
    Some((total - idle, total))
}

/// Waits (up to two minutes) until the machine is at most 15 % busy over a
/// second: a previous run's namespace being deleted keeps the API server,
/// etcd and the controllers busy for minutes, which would be measured too.
async fn settle() {
    let t = Instant::now();
    let mut busy = f64::NAN;
    while t.elapsed() < Duration::from_secs(120) {
        let Some(a) = machine_ticks() else { return };
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Some(b) = machine_ticks() else { return };
        busy = (b.0 - a.0) as f64 / (b.1 - a.1).max(1) as f64;
        if busy <= 0.15 {
            break;
        }
    }
    eprintln!(
        "machine {:.0} % busy after waiting {:.0} s for it to settle",
        busy * 100.0,
        t.elapsed().as_secs_f64()
    );
}

fn cpu_ticks(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = text.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// The test bed's S3 server at a lower CPU priority while ticks are
/// measured, restored when dropped. It stands in for the object store and
/// the emulator's uploads for Longhorn's replicas: in a cluster neither
/// runs on dr's CPUs, but on this bed's two cores the S3 server took about
/// a third of the machine during a tick. Niced, it still does all its work,
/// in the time the measured calls leave idle. (The emulator's uploads run at
/// the same niceness: `EmulatorConfig::data_path_nice`.)
struct S3Priority {
    pid: String,
    was: i64,
}

impl S3Priority {
    fn lower(nice: i64) -> Option<Self> {
        if nice == 0 {
            return None;
        }
        let pid_file = testbed::get()
            .kubeconfig()
            .parent()?
            .join("pids/versitygw.pid");
        let pid = std::fs::read_to_string(pid_file).ok()?.trim().to_owned();
        // The pid file may be stale: only the S3 server is reniced.
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        if comm.trim() != "versitygw" {
            return None;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let was = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(16)?
            .parse()
            .ok()?;
        let ok = Command::new("renice")
            .args(["-n", &nice.to_string(), "-p", &pid])
            .stdout(Stdio::null())
            .status()
            .ok()?
            .success();
        ok.then(|| {
            eprintln!("S3 server (pid {pid}) at nice {nice} while ticks are measured (DR_BENCH_NICE=0: as it is)");
            S3Priority { pid, was }
        })
    }
}

impl Drop for S3Priority {
    fn drop(&mut self) {
        let _ = Command::new("renice")
            .args(["-n", &self.was.to_string(), "-p", &self.pid])
            .stdout(Stdio::null())
            .status();
    }
}

/// dr's own allocator (see `src/main.rs`): the tick measured here should
/// allocate as `dr serve` does.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The emulator runs in a process of its own (this binary again, with
/// `--emulator-child PREFIX NAMESPACE`), as Longhorn would: its work and its
/// locks are not in the measured process.
const CHILD: &str = "--emulator-child";

/// The emulator's process; killed when dropped.
struct EmulatorProcess {
    child: std::process::Child,
    url: url::Url,
}

impl EmulatorProcess {
    fn start(prefix: &str, namespace: &str) -> anyhow::Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .args([CHILD, prefix, namespace])
            // This binary has dr's allocator, tuned for a small daemon (one
            // arena, no thread cache); the emulator is not that daemon.
            .env("_RJEM_MALLOC_CONF", "narenas:4,tcache:true")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let mut line = String::new();
        if let Some(out) = child.stdout.as_mut() {
            std::io::BufReader::new(out).read_line(&mut line)?;
        }
        let url = url::Url::parse(line.trim())
            .map_err(|e| anyhow::anyhow!("the emulator process said {line:?}: {e}"))?;
        Ok(EmulatorProcess { child, url })
    }

    fn url(&self) -> url::Url {
        self.url.clone()
    }

    fn control(&self) -> Control {
        Control::new(self.url.clone())
    }
}

impl Drop for EmulatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The child: serves until its stdin closes (the parent is gone).
async fn emulator_child(prefix: String, namespace: String) -> anyhow::Result<()> {
    let tb = testbed::get();
    let mut ecfg = EmulatorConfig::new("127.0.0.1:0".parse()?);
    ecfg.store = Some(StoreConfig::from_testbed_env_with_prefix(&prefix)?);
    ecfg.kube = Some(tb.kube_client().await);
    ecfg.timings = profile()?.1;
    ecfg.provision_namespaces = Some(vec![namespace]);
    // Longhorn's data path runs on other nodes than its manager API.
    ecfg.data_path_nice = match env_num("DR_BENCH_NICE", 19) {
        0 => None,
        n => Some(n as i32),
    };
    let emu = Emulator::start(ecfg).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", emu.url())?;
        out.flush()?;
    }
    tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
    })
    .await?;
    emu.shutdown().await;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if let Some(i) = args.iter().position(|a| a == CHILD) {
        let (Some(prefix), Some(ns)) = (args.get(i + 1), args.get(i + 2)) else {
            anyhow::bail!("{CHILD} PREFIX NAMESPACE");
        };
        return rt.block_on(emulator_child(prefix.clone(), ns.clone()));
    }
    if !args.iter().any(|a| a == "--bench") {
        return Ok(());
    }
    rt.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let n = env_num("DR_BENCH_VOLUMES", 1000) as usize;
    let latency = env_num("DR_BENCH_LATENCY_MS", 50);
    let conc = env_num("DR_BENCH_CONCURRENCY", 16) as usize;
    let (profile_name, timings) = profile()?;
    println!(
        "fanout: profile {profile_name} (DR_BENCH_PROFILE): attach {} ms, snapshot ready {} ms after the engine took it, backup monitor starts {} ms after the request and polls every {} ms",
        timings.attach_ms,
        timings.snapshot_ready_ms,
        timings.backup_start_ms,
        timings.backup_monitor_ms
    );
    let tb = testbed::get();
    let kube = tb.kube_client().await;
    let ns = TestNamespace::create(&kube, "dr-bench").await;
    let prefix = format!("bench-{}", testbed::suffix());
    let emu = EmulatorProcess::start(&prefix, &ns.name)?;

    // A previous run's namespace (or another suite's) being deleted keeps
    // the API server and kube-controller-manager busy: 40 claims once took
    // 333 s to bind right after a test suite's namespaces went.
    settle().await;
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
    let volumes = loop {
        let claims = pvcs.list(&ListParams::default()).await?.items;
        let bound: Vec<String> = claims
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"))
            .filter_map(|p| p.spec.as_ref()?.volume_name.clone())
            .collect();
        if bound.len() == n {
            break bound;
        }
        // kube-controller-manager's PV binder makes about three writes per
        // claim under its client's default limit of 20 requests a second
        // (--kube-api-qps): about 7 claims a second at best on the bed,
        // 150 s for 1,000 when the machine is quiet, much more when not.
        anyhow::ensure!(
            t0.elapsed() < BIND_DEADLINE,
            "only {} of {n} claims bound in {} s",
            bound.len(),
            BIND_DEADLINE.as_secs()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    println!(
        "fanout: {n} claims bound in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    // A protected workload's volumes are attached (its pods use them): so
    // are these, or each snapshot would wait for an attachment first.
    let t1 = Instant::now();
    let ctl = emu.control();
    futures::stream::iter(volumes.iter())
        .map(|v| ctl.attach(v))
        .buffer_unordered(ATTACH_AT_ONCE)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    println!(
        "fanout: {n} volumes attached in {:.1} s, {ATTACH_AT_ONCE} at a time",
        t1.elapsed().as_secs_f64()
    );

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
        let _s3 = S3Priority::lower(env_num("DR_BENCH_NICE", 19) as i64);
        // Each repeat is a new tick over the same volumes (an incremental backup).
        for round in 0..env_num("DR_BENCH_REPEAT", 1).max(1) {
            if round > 0 {
                // Ticks are named by the second.
                tokio::time::sleep(Duration::from_millis(1100)).await;
            }
            fanout(&emu, &kube, &policy, &dir, &prefix, n, latency, conc).await?;
        }
    }
    daemon(&emu, &ns, &dir, &prefix, n, conc).await?;
    ns.delete().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(emu);
    Ok(())
}

/// The fan-out of one tick, in process, with latency added to every call.
#[allow(clippy::too_many_arguments)]
async fn fanout(
    emu: &EmulatorProcess,
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
        &format!("sqlite://{}/fanout.db", dir.path().display())
            .parse()
            .map_err(anyhow::Error::msg)?,
    )
    .await?;
    catalog.upsert_policy(&policy.into(), Utc::now()).await?;
    // dr's defaults (as `dr serve` has them), but for the follow interval
    // when DR_BENCH_FOLLOW_MS sets it (to weigh its cost against its lag).
    let mut lh = ClientConfig::new(emu.url());
    if let Some(ms) = env_opt("DR_BENCH_FOLLOW_MS")? {
        lh.follow_interval = Duration::from_millis(ms);
    }
    let follow_interval = lh.follow_interval;
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
    // How long each snapshotBackup call took, in ms.
    let calls: Arc<Mutex<Vec<f64>>> = Arc::default();
    let c2 = calls.clone();
    let done: Arc<Mutex<Vec<Recorded>>> = Arc::default();
    // When each phase was first reached: resolved, bundle stored, first snapshot asked.
    let phases: Arc<Mutex<Vec<(&'static str, Instant)>>> = Arc::default();
    let (r2, d2, p2) = (requested.clone(), done.clone(), phases.clone());
    let mark = move |what: &'static str| {
        if let Ok(mut v) = p2.lock()
            && !v.iter().any(|(w, _)| *w == what)
        {
            v.push((what, Instant::now()));
        }
    };
    let events: Events = Arc::new(move |e| match e {
        Event::Resolved { .. } => mark("volumes resolved"),
        Event::Bundle { .. } => mark("bundle stored"),
        Event::Volume { stage, .. } if stage == "snapshot" => mark("first snapshot asked"),
        Event::Volume { stage, .. } if stage == "backup" => mark("first backup found"),
        Event::Requested { took, .. } => {
            if let Ok(mut v) = r2.lock() {
                v.push(Instant::now());
            }
            if let Ok(mut v) = c2.lock() {
                v.push(took.as_secs_f64() * 1000.0);
            }
        }
        Event::Completed { volume } => {
            if let Ok(mut v) = d2.lock() {
                v.push((volume, Utc::now()));
            }
        }
        _ => {}
    });
    // The client and the emulator alone, for comparison: 20 × concurrency
    // reads of one volume, `concurrency` at a time.
    {
        let client = LonghornClient::new(ClientConfig::new(emu.url()))?;
        let volume = protect.longhorn.list_volume_backups().await?;
        let name = volume.first().map(|v| v.name.clone()).unwrap_or_default();
        let t = Instant::now();
        futures::stream::iter(0..20 * conc)
            .map(|_| client.volume(&name))
            .buffer_unordered(conc)
            .collect::<Vec<_>>()
            .await;
        println!(
            "fanout: {} reads of one volume, {conc} at a time: {:.2} s (floor {:.2} s)",
            20 * conc,
            t.elapsed().as_secs_f64(),
            20.0 * latency as f64 / 1000.0
        );
    }
    settle().await;
    let timings = emu.control().timings().await?;
    let stats_before = emu.control().stats().await?;
    let tick = Utc::now().duration_trunc(TimeDelta::seconds(1))?;
    let cpu_before = (
        cpu_ticks(std::process::id()),
        cpu_ticks(emu.child.id()),
        machine_ticks(),
    );
    let start = Instant::now();
    let report = protect.tick(policy, tick, events).await?;
    let total = start.elapsed();
    let stats_after = emu.control().stats().await?;
    if let ((Some(d0), Some(e0), Some(m0)), Some(d1), Some(e1), Some(m1)) = (
        cpu_before,
        cpu_ticks(std::process::id()),
        cpu_ticks(emu.child.id()),
        machine_ticks(),
    ) {
        let hz = 100.0;
        println!(
            "fanout: CPU during the tick ({:.1} s): dr {:.2} s, emulator {:.2} s, whole machine {:.2} s busy of {:.2} s",
            total.as_secs_f64(),
            (d1 - d0) as f64 / hz,
            (e1 - e0) as f64 / hz,
            (m1.0 - m0.0) as f64 / hz,
            (m1.1 - m0.1) as f64 / hz,
        );
    }
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
    {
        let mut marks = phases
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .clone();
        let reqs = requested.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        if let Some(first) = reqs.iter().min() {
            marks.push(("first backup requested", *first));
        }
        marks.sort_by_key(|(_, t)| *t);
        let line: Vec<String> = marks
            .iter()
            .map(|(w, t)| format!("{w} {:.2} s", t.duration_since(start).as_secs_f64()))
            .collect();
        println!("fanout: phases after the tick started: {}", line.join(", "));
        let mut took = calls
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .clone();
        took.sort_by(|a, b| a.total_cmp(b));
        let at = |q: f64| {
            took.get(((took.len() as f64 - 1.0) * q) as usize)
                .copied()
                .unwrap_or(f64::NAN)
        };
        println!(
            "fanout: snapshotBackup calls took median {:.1} ms, p90 {:.1} ms, max {:.1} ms (the emulator adds {latency} ms)",
            at(0.5),
            at(0.9),
            at(1.0)
        );
        // Requests per second of the fan-out, in half-second buckets.
        let mut buckets = vec![0u32; (last_request.as_millis() / 500 + 1) as usize];
        for t in reqs.iter() {
            let i = (t.duration_since(start).as_millis() / 500) as usize;
            if let Some(b) = buckets.get_mut(i) {
                *b += 1;
            }
        }
        println!(
            "fanout: backups requested per half second: {:?} (ceiling at concurrency {conc}: {:.0})",
            buckets,
            conc as f64 * 500.0 / latency as f64
        );
    }
    let ratio = last_request.as_secs_f64() / floor.as_secs_f64();
    println!(
        "fanout: {n} volumes, {latency} ms per Longhorn call, concurrency {conc}: all backups requested {:.2} s after the tick started; floor N×latency/concurrency = {:.2} s; ratio {ratio:.2} (target ≤ 1.2: {}); whole tick {:.1} s",
        last_request.as_secs_f64(),
        floor.as_secs_f64(),
        if ratio <= 1.2 { "met" } else { "MISSED" },
        total.as_secs_f64()
    );
    floors(&timings, n, latency, conc, last_request);
    costs(&stats_before, &stats_after, n, total, follow_interval);
    // Completion lag: the instant the emulator completed the backup (to the
    // microsecond; the API's `created` shows whole seconds, which would add up
    // to a second of truncation) to dr's record of it.
    let backups = catalog.backups_of(report.point_id).await?;
    let completed_at = emu.control().stats().await?.completed_at;
    let mut lags: Vec<f64> = Vec::new();
    for (volume, recorded) in done.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.iter() {
        if let Some(b) = backups.iter().find(|b| b.volume.as_str() == volume)
            && let Some(c) = b.backup_name.as_ref().and_then(|n| completed_at.get(n))
        {
            lags.push((*recorded - *c).num_milliseconds() as f64 / 1000.0);
        }
    }
    anyhow::ensure!(
        lags.len() == n,
        "only {} of {n} completions could be matched with the emulator's",
        lags.len()
    );
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

/// The floor that applies when Longhorn's waits are not negligible (the
/// realistic profile): no volume's backup can be asked for before its
/// snapshot is ready, and that wait is no API latency. A volume needs at
/// least a create, the wait and one read that sees it ready
/// (2 × latency + snapshot ready); the requests then need
/// N × latency / concurrency. (dr's snapshot calls, 3 × concurrency at
/// once, are held per call, not through the wait: src/backup/fan_out.rs,
/// longhorn::SnapshotPace.)
fn floors(t: &Timings, n: usize, latency: u64, conc: usize, last_request: Duration) {
    let ms = |v: f64| Duration::from_secs_f64(v / 1000.0);
    let api = n as f64 * latency as f64 / conc as f64;
    let per_volume = 2.0 * latency as f64 + t.snapshot_ready_ms as f64;
    let applies = ms(per_volume + api);
    let took = last_request.as_secs_f64();
    println!(
        "fanout: floor that applies: {:.2} s = one snapshot-ready wait ({} ms, the engine monitor's refresh; no API latency) with its create and read (2 × {latency} ms) + N×latency/concurrency ({:.2} s); ratio {:.2} (target ≤ 1.2: {}). (The backup's start, {} ms to the monitor and {} ms to its first poll, comes after the request: not in this interval.)",
        applies.as_secs_f64(),
        t.snapshot_ready_ms,
        api / 1000.0,
        took / applies.as_secs_f64(),
        if took <= 1.2 * applies.as_secs_f64() {
            "met"
        } else {
            "MISSED"
        },
        t.backup_start_ms,
        t.backup_monitor_ms,
    );
}

/// What the tick cost the Longhorn manager, from the emulator's counters.
fn costs(before: &Stats, after: &Stats, n: usize, tick: Duration, interval: Duration) {
    let per = |v: u64| v as f64 / n.max(1) as f64;
    let requests = diff(&after.requests, &before.requests);
    let sent = diff(&after.response_bytes, &before.response_bytes);
    let received = diff(&after.request_bytes, &before.request_bytes);
    let total: u64 = requests.values().sum();
    let line: Vec<String> = requests
        .iter()
        .map(|(op, c)| format!("{op} {:.2}", per(*c)))
        .collect();
    println!(
        "fanout: Longhorn API requests per backup: {:.2} ({total} in the tick): {}",
        per(total),
        line.join(", ")
    );
    let lists: Vec<(&String, &u64)> = requests
        .iter()
        .filter(|(op, _)| LIST_OPS.contains(&op.as_str()))
        .collect();
    let list_total: u64 = lists.iter().map(|(_, c)| **c).sum();
    println!(
        "fanout: list calls per backup: {:.2} ({})",
        per(list_total),
        lists
            .iter()
            .map(|(op, c)| format!("{op} {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let sent_total: u64 = sent.values().sum();
    let received_total: u64 = received.values().sum();
    let mut by_bytes: Vec<(&String, &u64)> = sent.iter().collect();
    by_bytes.sort_by(|a, b| b.1.cmp(a.1));
    println!(
        "fanout: bytes per backup: responses {:.1} KiB ({:.1} MiB in the tick; {}), requests {:.0} B ({:.1} KiB in the tick)",
        per(sent_total) / 1024.0,
        sent_total as f64 / (1024.0 * 1024.0),
        by_bytes
            .iter()
            .take(4)
            .map(|(op, b)| format!("{op} {:.1} KiB", per(**b) / 1024.0))
            .collect::<Vec<_>>()
            .join(", "),
        per(received_total),
        received_total as f64 / 1024.0
    );
    // The follow: one listing of every volume per interval, shared by the
    // tick's backups (src/longhorn/mod.rs VolumeWatch::poll, interval
    // ClientConfig::follow_interval). One more listing reads the volumes'
    // backup targets at the tick's start (src/backup/targets.rs).
    let listings = requests.get("listVolumes").copied().unwrap_or(0);
    let follows = listings.saturating_sub(1);
    let listing_bytes = sent.get("listVolumes").copied().unwrap_or(0);
    println!(
        "fanout: follow interval {} ms (dr's ClientConfig::follow_interval, VolumeWatch's shared listing): {follows} follow listings (+1 of the volumes' targets) in the {:.1} s tick = {:.2} requests per second of tick (one per interval while following: {:.1}/s), {:.2} MiB each, {:.2} MiB/s of listings",
        interval.as_millis(),
        tick.as_secs_f64(),
        follows as f64 / tick.as_secs_f64(),
        1.0 / interval.as_secs_f64(),
        listing_bytes as f64 / listings.max(1) as f64 / (1024.0 * 1024.0),
        listing_bytes as f64 / tick.as_secs_f64() / (1024.0 * 1024.0),
    );
}

/// dr serve's memory after a tick over the volumes, and its CPU when idle.
async fn daemon(
    emu: &EmulatorProcess,
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
        .env("DR_LEASE_NAMESPACE", &ns.name)
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
        "daemon: resident after 10 s more idle: {:.1} MB ({:.1} MB mapped from files, mostly dr's code; {:.1} MB anonymous)",
        rss_idle as f64 / 1024.0,
        proc_status(pid, "RssFile:").unwrap_or(0) as f64 / 1024.0,
        proc_status(pid, "RssAnon:").unwrap_or(0) as f64 / 1024.0,
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
