//! `dr serve` killed with SIGKILL in the middle of a tick, then started
//! again: the interrupted tick is adopted and finished, and no backup is lost
//! or made twice (checked on the catalog and on the emulator's backup list).

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use crate::harness::testbed::{self, CONVERGE, TestNamespace};
use dr::catalog::{BackupState, Catalog, PointState};
use kube::Api;
use longhorn_emulator::{Emulator, EmulatorConfig, Timings};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MIB: u64 = 1024 * 1024;

/// `dr serve` with `config` and `catalog`, its policy Leases in
/// `lease_ns` (the test's own namespace, so that tests running at once
/// never compete for the same Lease).
pub(crate) fn spawn_serve(config: &std::path::Path, catalog: &str, lease_ns: &str) -> Child {
    let tb = testbed::get();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dr"))
        .args(["--config"])
        .arg(config)
        .args([
            "--catalog",
            catalog,
            "--log",
            "info",
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("KUBECONFIG", tb.kubeconfig())
        .env("AWS_ACCESS_KEY_ID", tb.var("AWS_ACCESS_KEY_ID"))
        .env("AWS_SECRET_ACCESS_KEY", tb.var("AWS_SECRET_ACCESS_KEY"))
        .env("DR_LEASE_NAMESPACE", lease_ns)
        // One identity for every life, as a pod keeps its name across
        // container restarts: a life renews the Lease the killed one held
        // instead of waiting for it to run out.
        .env("DR_IDENTITY", format!("dr-test-{lease_ns}"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drain stderr so the child never blocks on a full pipe.
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            eprintln!("[dr serve] {line}");
        }
    });
    child
}

/// Writes `dr serve`'s configuration for tests on the emulator at `emu_url`:
/// Longhorn (5 s timeout, 100 ms follow), the bed's store under `prefix`,
/// and one policy, `policy` (its YAML mapping's keys, each `key: value`).
pub(crate) fn write_serve_config(
    path: &std::path::Path,
    emu_url: &str,
    prefix: &str,
    policy: &[(&str, String)],
) {
    let tb = testbed::get();
    let mut text = format!(
        "longhorn: {{url: \"{emu_url}\", timeout: 5s, follow_interval: 100ms}}\nstore: {{bucket: {}, prefix: {prefix}, region: {}, endpoint: \"{}\"}}\npolicies:\n",
        tb.s3_bucket(),
        tb.var("DR_TEST_S3_REGION"),
        tb.var("DR_TEST_S3_ENDPOINT"),
    );
    for (i, (k, v)) in policy.iter().enumerate() {
        text.push_str(if i == 0 { "  - " } else { "    " });
        text.push_str(&format!("{k}: {v}\n"));
    }
    std::fs::write(path, text).unwrap();
}

pub(crate) async fn wait_for<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < CONVERGE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn kill_9_mid_tick_then_restart_loses_and_doubles_nothing() {
    let tb = testbed::get();
    let kube = tb.kube_client().await;
    let prefix = format!("crash-{}", testbed::suffix());
    let mut t = Timings::fast();
    t.backup_bytes_per_sec = 4 * MIB; // 8 MiB per volume: about 2 s per backup
    let mut ecfg = EmulatorConfig::new("127.0.0.1:0".parse().unwrap());
    ecfg.store = Some(tb.emulator_store(&prefix).await);
    ecfg.kube = Some(kube.clone());
    ecfg.timings = t;
    let ns = TestNamespace::create(&kube, "dr-crash").await;
    ecfg.provision_namespaces = Some(vec![ns.name.clone()]);
    let emu = Emulator::start(ecfg).await.unwrap();
    for name in ["a", "b", "c"] {
        testbed::longhorn_claim(
            &kube,
            &ns.name,
            name,
            serde_json::json!({"app": "crash"}),
            "8Mi",
        )
        .await;
    }
    let mut volumes = Vec::new();
    for name in ["a", "b", "c"] {
        let vol = testbed::wait_bound(&kube, &ns.name, name)
            .await
            .spec
            .and_then(|s| s.volume_name);
        let pv = vol.unwrap();
        let handle = Api::<k8s_openapi::api::core::v1::PersistentVolume>::all(kube.clone())
            .get(&pv)
            .await
            .unwrap()
            .spec
            .unwrap()
            .csi
            .unwrap()
            .volume_handle;
        emu.control()
            .write(&handle, 0, &vec![7u8; 8 * MIB as usize])
            .await
            .unwrap();
        volumes.push(handle);
    }

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dr.yaml");
    crate::serve_crash::write_serve_config(
        &config,
        emu.url().as_str(),
        &prefix,
        &[
            ("name", "crash".into()),
            ("namespace", ns.name.clone()),
            ("selector", "app=crash".into()),
            ("schedule", "\"*/3 * * * * *\"".into()),
            ("retain", "{last: 100}".into()),
        ],
    );
    let catalog_url = format!("sqlite://{}/c.db", dir.path().display());

    let mut first = spawn_serve(&config, &catalog_url, &ns.name);
    // Wait until a tick is in the middle of its backups, then SIGKILL.
    wait_for("a backup in progress", || {
        let ctl = emu.control();
        async move {
            ctl.stats()
                .await
                .map(|s| s.backups_created >= 1)
                .unwrap_or(false)
        }
    })
    .await;
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();

    let catalog = Catalog::open(&catalog_url.parse().unwrap()).await.unwrap();
    let pending = catalog.pending_points().await.unwrap();
    assert!(!pending.is_empty(), "the kill interrupted a tick");
    let interrupted = pending[0].id;

    let mut second = spawn_serve(&config, &catalog_url, &ns.name);
    wait_for("the interrupted tick to finish", || {
        let c = catalog.clone();
        async move {
            c.point(interrupted)
                .await
                .map(|p| p.state != PointState::Pending)
                .unwrap_or(false)
        }
    })
    .await;
    Command::new("kill")
        .args(["-TERM", &second.id().to_string()])
        .status()
        .unwrap();
    assert!(
        second.wait().unwrap().success(),
        "dr serve stops cleanly on SIGTERM"
    );

    // Let backups that were started finish in the emulator before comparing.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let point = catalog.point(interrupted).await.unwrap();
    assert_eq!(point.state, PointState::Complete, "{point:?}");

    // No doubles: one backup per (point, volume) in the catalog, one backup
    // per snapshot in Longhorn, and every backup in Longhorn is in the catalog.
    let mut catalog_backups = BTreeSet::new();
    for p in catalog.list_points(None, 1000).await.unwrap() {
        let rows = catalog.backups_of(p.point.id).await.unwrap();
        let vols: BTreeSet<_> = rows.iter().map(|r| r.volume.clone()).collect();
        assert_eq!(
            vols.len(),
            rows.len(),
            "one row per volume in point {}",
            p.point.id
        );
        for r in rows {
            if let Some(n) = r.backup_name {
                catalog_backups.insert(n);
            }
            if p.point.state == PointState::Complete {
                assert_eq!(r.state, BackupState::Completed);
            }
        }
    }
    let lh = dr::longhorn::LonghornClient::new(dr::longhorn::ClientConfig::new(emu.url())).unwrap();
    let mut per_snapshot: BTreeMap<String, usize> = BTreeMap::new();
    let mut in_longhorn = BTreeSet::new();
    for v in &volumes {
        for b in lh.backups_of(v).await.unwrap() {
            *per_snapshot.entry(b.snapshot_name.clone()).or_default() += 1;
            in_longhorn.insert(b.name);
        }
    }
    assert!(
        per_snapshot.values().all(|n| *n == 1),
        "a snapshot backed up twice: {per_snapshot:?}"
    );
    let stats = emu.control().stats().await.unwrap();
    assert_eq!(
        stats.backups_created as usize,
        in_longhorn.len(),
        "{stats:?}"
    );
    assert_eq!(
        in_longhorn, catalog_backups,
        "Longhorn and the catalog list the same backups"
    );

    ns.delete().await;
    emu.shutdown().await;
}
