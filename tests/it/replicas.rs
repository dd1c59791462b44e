//! Three replicas of `dr serve` on one PostgreSQL catalog share a policy by
//! its Kubernetes Lease (`dr-<policy>`, 3 s here):
//! - only the leader ticks; every firing is recorded exactly once;
//! - the leader killed with SIGKILL in the middle of a tick: another
//!   replica takes the Lease within its duration (plus one renewal period)
//!   and adopts the tick the kill cut short;
//! - the next leader frozen with SIGSTOP past its Lease, then resumed: a
//!   third replica leads meanwhile, and the resumed one records nothing
//!   (it steps down, and the catalog refuses its writes by term);
//! - the third leader stopped with SIGTERM: it releases the Lease, and the
//!   resumed replica takes the policy at once.
//!
//! Prints the takeover times and the firings missed across each failover.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use crate::harness::testbed::{self, CONVERGE, TestNamespace};
use crate::serve_crash::wait_for;
use dr::catalog::{Catalog, PointState, TickOutcome};
use dr::config::Schedule;
use k8s_openapi::api::coordination::v1::Lease;
use longhorn_emulator::{Emulator, EmulatorConfig, Timings};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MIB: u64 = 1024 * 1024;
const SCHEDULE: &str = "*/2 * * * * *";
const LEASE: Duration = Duration::from_secs(3);
/// A takeover waits for the Lease unchanged for its duration, seen by
/// attempts one renewal period (a third of it) apart; plus the API's time.
const TAKEOVER_BOUND: Duration = Duration::from_millis(3_000 + 1_000 + 1_500);

struct Replica {
    id: String,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Replica {
    fn spawn(id: &str, config: &std::path::Path, catalog: &str, ns: &str) -> Replica {
        let tb = testbed::get();
        let mut child = Command::new(env!("CARGO_BIN_EXE_dr"))
            .arg("--config")
            .arg(config)
            .args(["--catalog", catalog, "--log", "info", "serve"])
            .args(["--listen", "127.0.0.1:0", "--lease-duration", "3s"])
            .env("KUBECONFIG", tb.kubeconfig())
            .env("AWS_ACCESS_KEY_ID", tb.var("AWS_ACCESS_KEY_ID"))
            .env("AWS_SECRET_ACCESS_KEY", tb.var("AWS_SECRET_ACCESS_KEY"))
            .env("DR_LEASE_NAMESPACE", ns)
            .env("DR_IDENTITY", id)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (err, sink, tag) = (child.stderr.take().unwrap(), log.clone(), id.to_owned());
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("[{tag}] {line}");
                sink.lock().unwrap().push(line);
            }
        });
        Replica {
            id: id.to_owned(),
            child,
            log,
        }
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args([sig, &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    /// GET `path` from this replica's HTTP server (its address as logged).
    async fn get(&self, path: &str) -> String {
        let addr = self
            .log
            .lock()
            .unwrap()
            .iter()
            .find_map(|l| l.split("listening on ").nth(1).map(str::to_owned))
            .unwrap();
        reqwest::get(format!("{addr}{path}"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    fn logged(&self, text: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(text))
    }
}

async fn holder(leases: &kube::Api<Lease>) -> Option<String> {
    leases
        .get_opt("dr-rep")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty())
}

/// Waits until the Lease names a holder other than `old`; how long it took.
async fn takeover(leases: &kube::Api<Lease>, old: &str, since: Instant) -> (String, Duration) {
    loop {
        if let Some(h) = holder(leases).await.filter(|h| h != old) {
            return (h, since.elapsed());
        }
        assert!(
            since.elapsed() < CONVERGE,
            "no replica took the Lease from {old}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn pending_point(c: &Catalog) -> Option<dr::catalog::PointRecord> {
    c.pending_points().await.ok()?.into_iter().next()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_a_policy_and_fail_over_without_a_double_record() {
    let tb = testbed::get();
    let kube = tb.kube_client().await;
    let db = tb.fresh_database().await;
    let prefix = format!("replicas-{}", testbed::suffix());
    let mut t = Timings::fast();
    t.backup_bytes_per_sec = 4 * MIB; // 2 MiB per volume: half a second
    let mut ecfg = EmulatorConfig::new("127.0.0.1:0".parse().unwrap());
    ecfg.store = Some(tb.emulator_store(&prefix).await);
    ecfg.kube = Some(kube.clone());
    ecfg.timings = t;
    let ns = TestNamespace::create(&kube, "dr-replicas").await;
    ecfg.provision_namespaces = Some(vec![ns.name.clone()]);
    let emu = Emulator::start(ecfg).await.unwrap();
    for name in ["a", "b"] {
        let labels = serde_json::json!({"app": "rep"});
        testbed::longhorn_claim(&kube, &ns.name, name, labels, "4Mi").await;
    }
    for name in ["a", "b"] {
        let pv = testbed::wait_bound(&kube, &ns.name, name).await;
        let pv = pv.spec.and_then(|s| s.volume_name).unwrap();
        let handle = crate::serve_kill::volume_handle(&kube, &pv).await;
        emu.control()
            .write(&handle, 0, &vec![7u8; 2 * MIB as usize])
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dr.yaml");
    crate::serve_crash::write_serve_config(
        &config,
        emu.url().as_str(),
        &prefix,
        &[
            ("name", "rep".into()),
            ("namespace", ns.name.clone()),
            ("selector", "app=rep".into()),
            ("schedule", format!("\"{SCHEDULE}\"")),
            ("retain", "{last: 4}".into()),
        ],
    );

    let mut replicas: Vec<Replica> = ["r0", "r1", "r2"]
        .iter()
        .map(|id| Replica::spawn(id, &config, &db.url, &ns.name))
        .collect();
    let catalog = Catalog::open(&db.url.parse().unwrap()).await.unwrap();
    let leases = kube::Api::<Lease>::namespaced(kube.clone(), &ns.name);
    let policy: dr::names::PolicyName = "rep".parse().unwrap();
    wait_for("a first complete point", || {
        let c = catalog.clone();
        async move {
            c.list_points(None, 100)
                .await
                .is_ok_and(|p| p.iter().any(|p| p.point.state == PointState::Complete))
        }
    })
    .await;
    let first = holder(&leases).await.unwrap();
    eprintln!("leader: {first}");

    // 1. The leader killed mid-tick.
    wait_for("a tick in flight", || {
        let c = catalog.clone();
        async move { pending_point(&c).await.is_some() }
    })
    .await;
    let cut = pending_point(&catalog).await.unwrap();
    let killed_at = Instant::now();
    let r = replicas.iter_mut().find(|r| r.id == first).unwrap();
    r.child.kill().unwrap(); // SIGKILL
    r.child.wait().unwrap();
    let (second, took) = takeover(&leases, &first, killed_at).await;
    eprintln!("SIGKILL of {first}: {second} took the Lease in {took:?} (bound {TAKEOVER_BOUND:?})");
    assert!(took <= TAKEOVER_BOUND, "takeover took {took:?}");
    wait_for("the cut tick adopted and finished", || {
        let c = catalog.clone();
        async move {
            c.point(cut.id)
                .await
                .is_ok_and(|p| p.state != PointState::Pending)
        }
    })
    .await;
    let r2 = replicas.iter().find(|r| r.id == second).unwrap();
    assert!(
        r2.logged("adopting an unfinished tick"),
        "{second} adopted the cut tick"
    );

    // 2. The new leader frozen past its Lease, then resumed.
    wait_for("a tick in flight on the new leader", || {
        let c = catalog.clone();
        async move { pending_point(&c).await.is_some() }
    })
    .await;
    let frozen_at = Instant::now();
    r2.signal("-STOP");
    let (third, took2) = takeover(&leases, &second, frozen_at).await;
    eprintln!("SIGSTOP of {second}: {third} took the Lease in {took2:?}");
    assert!(took2 <= TAKEOVER_BOUND, "takeover took {took2:?}");
    tokio::time::sleep(LEASE).await;
    r2.signal("-CONT");
    let resumed_at = chrono::Utc::now();
    // Three more firings with the resumed replica alive.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(holder(&leases).await.as_deref(), Some(third.as_str()));
    assert!(
        r2.logged("no longer leads the policy"),
        "the resumed replica stepped down"
    );

    // 3. SIGTERM of the leader: it releases the Lease on its way out, so
    // the resumed replica takes over at once, not after the Lease's time.
    let termed_at = Instant::now();
    let r3 = replicas.iter_mut().find(|r| r.id == third).unwrap();
    r3.signal("-TERM");
    assert!(
        r3.child.wait().unwrap().success(),
        "dr serve exits 0 on SIGTERM"
    );
    // (Its tick in flight first gets to finish: the time from SIGTERM to
    // the exit is that tick's; the takeover is counted from the exit.)
    let exited_at = Instant::now();
    let (fourth, took3) = takeover(&leases, &third, exited_at).await;
    eprintln!(
        "SIGTERM of {third}: exited {:?} later, its Lease released; {fourth} held it {took3:?} after the exit",
        exited_at - termed_at
    );
    assert!(r3.logged("Lease released"));
    assert!(
        took3 < LEASE,
        "a released Lease is taken before it would run out: {took3:?}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Who leads what, as /readyz and /metrics say it.
    for r in replicas.iter().filter(|r| r.id != first && r.id != third) {
        let (ready, metrics) = (r.get("/readyz").await, r.get("/metrics").await);
        let leads = r.id == fourth;
        assert_eq!(
            ready,
            format!(
                "ok: {} leads {}\n",
                r.id,
                if leads { "rep" } else { "none" }
            )
        );
        assert!(
            metrics.contains(&format!("dr_info{{identity=\"{}\"", r.id)),
            "{metrics}"
        );
        let line = format!("dr_policy_leader{{policy=\"rep\"}} {}", u8::from(leads));
        assert!(metrics.contains(&line), "{metrics}");
    }

    let status = Command::new(env!("CARGO_BIN_EXE_dr"))
        .args(["--catalog", &db.url, "status", "--output", "json"])
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["leaders"][0]["holder"], fourth.as_str(), "{status}");

    for r in replicas.iter_mut() {
        if r.child.try_wait().unwrap().is_none() {
            r.signal("-TERM");
            r.child.wait().unwrap();
        }
    }
    assert_ledger_once(&catalog, &policy, resumed_at).await;
    let leaders = catalog.leaders().await.unwrap();
    assert_eq!(leaders.len(), 1);
    assert!(leaders[0].term >= 3, "three takeovers: {leaders:?}");
    ns.delete().await;
    emu.shutdown().await;
    catalog.close().await;
    db.drop_db().await;
}

/// Every firing from the first recorded to the last is recorded once; a
/// `ran` one names its point and every point its firing; prints the
/// missed ones (the failovers' cost).
async fn assert_ledger_once(
    catalog: &Catalog,
    policy: &dr::names::PolicyName,
    resumed_at: chrono::DateTime<chrono::Utc>,
) {
    let mut ticks = catalog.ticks(policy, 100_000).await.unwrap();
    ticks.reverse();
    let (first, last) = (ticks.first().unwrap(), ticks.last().unwrap());
    let schedule: Schedule = SCHEDULE.parse().unwrap();
    let after = first.tick_at - chrono::TimeDelta::milliseconds(1);
    let firings = dr::schedule::firings(&schedule, after, last.tick_at, usize::MAX);
    let recorded: Vec<_> = ticks.iter().map(|t| t.tick_at).collect();
    assert_eq!(recorded, firings, "every firing recorded exactly once");
    let points: BTreeMap<_, _> = catalog
        .list_points(Some(policy), 100_000)
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.point.tick_at, p.point.id))
        .collect();
    for t in &ticks {
        let expected = match t.outcome {
            TickOutcome::Ran => points.get(&t.tick_at).copied(),
            _ => None,
        };
        assert_eq!(t.point_id, expected, "{t:?}");
    }
    assert!(points.keys().all(|t| recorded.contains(t)));
    let missed: Vec<_> = ticks
        .iter()
        .filter(|t| t.outcome == TickOutcome::Missed)
        .map(|t| t.tick_at.format("%H:%M:%S").to_string())
        .collect();
    let after_resume = ticks
        .iter()
        .filter(|t| t.tick_at > resumed_at && t.outcome == TickOutcome::Ran)
        .count();
    eprintln!(
        "ledger: {} firings, {} missed across the failovers ({missed:?}), {after_resume} ran after the resume",
        firings.len(),
        missed.len()
    );
    assert!(after_resume >= 2, "the third leader went on ticking");
}
