//! Benchmark of the RTO overhead of a restore, on the test bed with the
//! Longhorn emulator: 20 volumes of different sizes whose restores take T_i
//! each at the emulator's restore speed; the whole runbook (infrastructure,
//! redeploy, data, verification) into a fresh namespace.
//!
//! Prints max(T_i), Σ T_i, the data stage and the whole run, against the
//! target total ≤ 1.05 × max(T_i) + 10 s (parallel restores, not Σ T_i).
//! T_i is each volume's restore as dr measured it (create → really restored),
//! and also as the emulator's timings predict it.
//!
//! Run: `tests/testbed/up && cargo bench --bench restore`. Env:
//! DR_BENCH_RESTORE_VOLUMES (default 20), DR_BENCH_RESTORE_KIBPS (restore
//! speed, default 4096 KiB/s; volume i has (i+1) × 4 MiB, so T_i ≈ 1 … 20 s).

#[path = "../tests/it/harness/mod.rs"]
mod common;

use chrono::{DurationRound, TimeDelta, Utc};
use common::testbed::{self, TestNamespace};
use dr::backup::{Events, Protect, TickOptions};
use dr::catalog::{Catalog, PointState, RunKind};
use dr::longhorn::{ClientConfig, LonghornClient};
use dr::runbook::Runbook;
use dr::runbook::engine::{self as exec, Env, Quiet, RunSpec};
use dr::store::Store;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::Api;
use longhorn_emulator::{Emulator, EmulatorConfig, StoreConfig, Timings};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MIB: u64 = 1024 * 1024;

fn env_num(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
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
    let n = env_num("DR_BENCH_RESTORE_VOLUMES", 20) as usize;
    let kibps = env_num("DR_BENCH_RESTORE_KIBPS", 4096);
    let tb = testbed::get();
    let kube = tb.kube_client().await;
    let ns = TestNamespace::create(&kube, "dr-bench-restore").await;
    let prefix = format!("bench-restore-{}", testbed::suffix());
    let mut ecfg = EmulatorConfig::new("127.0.0.1:0".parse()?);
    ecfg.store = Some(StoreConfig::from_testbed_env_with_prefix(&prefix)?);
    ecfg.kube = Some(kube.clone());
    ecfg.timings = Timings::fast();
    ecfg.provision_namespaces = Some(vec![ns.name.clone()]);
    let emu = Emulator::start(ecfg).await?;

    eprintln!("creating {n} claims in {} …", ns.name);
    let labels = serde_json::json!({"app": "bench"});
    let sizes: Vec<u64> = (0..n as u64).map(|i| (i + 1) * 4 * MIB).collect();
    for (i, size) in sizes.iter().enumerate() {
        testbed::longhorn_claim(
            &kube,
            &ns.name,
            &format!("data-{i:02}"),
            labels.clone(),
            &format!("{}Mi", size / MIB),
        )
        .await;
    }
    for i in 0..n {
        let pvc = testbed::wait_bound(&kube, &ns.name, &format!("data-{i:02}")).await;
        let pv = Api::<PersistentVolume>::all(kube.clone())
            .get(&pvc.spec.and_then(|s| s.volume_name).unwrap_or_default())
            .await?;
        let handle = pv
            .spec
            .and_then(|s| s.csi)
            .map(|c| c.volume_handle)
            .unwrap_or_default();
        emu.control()
            .write(&handle, 0, &vec![i as u8 + 1; 64 * 1024])
            .await?;
    }

    let runbook_path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/testbed.yaml");
    let cfg = dr::config::Config::parse(
        &format!(
            "policies:\n  - name: bench\n    namespace: {}\n    selector: app=bench\n    content: {{checksum_url: \"{}emulator/volumes/{{volume}}/checksum\"}}\n",
            ns.name,
            emu.url()
        ),
        "bench",
    )?;
    let policy = cfg.policies[0].clone();
    let dir = tempfile::tempdir()?;
    let catalog = Catalog::open(
        &format!("sqlite://{}/c.db", dir.path().display())
            .parse()
            .map_err(anyhow::Error::msg)?,
    )
    .await?;
    catalog.upsert_policy(&(&policy).into(), Utc::now()).await?;
    let mut lh = ClientConfig::new(emu.url());
    lh.poll = Duration::from_millis(200);
    let longhorn = LonghornClient::new(lh)?;
    let s3 = tb.s3_client();
    let store = Store::from_client(s3.clone(), tb.s3_bucket(), &prefix);
    let protect = Protect {
        catalog: catalog.clone(),
        longhorn: longhorn.clone(),
        kube: kube.clone(),
        store: store.clone(),
        verifier: s3,
        options: TickOptions::default(),
    };
    let quiet: Events = Arc::new(|_| {});
    let tick = Utc::now().duration_trunc(TimeDelta::minutes(15))?;
    let r = protect.tick(&policy, tick, quiet).await?;
    anyhow::ensure!(
        r.state == PointState::Complete,
        "the tick ended {:?}",
        r.state
    );

    // Restores at the benchmark's speed.
    let mut t = emu.control().timings().await?;
    t.restore_bytes_per_sec = kibps * 1024;
    emu.control().set_timings(t.clone()).await?;
    let predicted: Vec<f64> = sizes
        .iter()
        .map(|s| {
            (t.restore_start_ms as f64 + *s as f64 * 1000.0 / t.restore_bytes_per_sec as f64)
                / 1000.0
        })
        .collect();

    let target = format!("{}-r", ns.name);
    let record = catalog.policy("bench").await?;
    let plan =
        dr::restore::plan(&catalog, &record, dr::timespec::Target::Latest, Utc::now()).await?;
    let env = Env {
        catalog: catalog.clone(),
        kube: kube.clone(),
        longhorn,
        store,
        clock: dr::clock::Clock::System,
    };
    let spec = RunSpec {
        kind: RunKind::Restore,
        source: record.namespace.clone(),
        target: target.parse().map_err(anyhow::Error::msg)?,
        runbook: Runbook::load(&runbook_path)?,
        replace: false,
        interactive: false,
        volume_prefix: "dr-r".into(),
        namespace_labels: Default::default(),
        incident: None,
        // The runbook's content step compares each restored volume with the
        // checksum the tick recorded through the policy's content probe.
        content_url: policy.content.as_ref().map(|c| c.checksum_url.clone()),
        holder: dr::runbook::lease::holder_id(),
        secrets_identity: None,
    };
    eprintln!("restoring {n} volumes into {target} …");
    let start = Instant::now();
    let begun = exec::begin(&env, &spec, &plan).await?;
    let out = exec::execute(&env, &spec, &plan, &begun, &Quiet).await?;
    let total = start.elapsed().as_secs_f64();
    anyhow::ensure!(
        out.summary.state == dr::catalog::RunState::Succeeded,
        "the run ended {}: {:?}",
        out.summary.state,
        out.summary.error
    );

    let data = out.summary.stages.iter().find(|s| s.name == "data");
    let restore_step = data.and_then(|d| d.steps.iter().find(|s| s.step == "restore-volumes"));
    let measured: Vec<f64> = restore_step
        .and_then(|s| s.detail.as_deref())
        .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .and_then(|v| v["volumes"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v["seconds"].as_f64())
        .collect();
    anyhow::ensure!(
        measured.len() == n,
        "expected {n} timed volumes, got {}",
        measured.len()
    );
    let max_t = measured.iter().cloned().fold(0.0, f64::max);
    let sum_t: f64 = measured.iter().sum();
    let max_p = predicted.iter().cloned().fold(0.0, f64::max);
    let sum_p: f64 = predicted.iter().sum();
    let bound = 1.05 * max_t + 10.0;
    println!(
        "restore benchmark: {n} volumes, {}…{} MiB, restore speed {kibps} KiB/s",
        sizes[0] / MIB,
        sizes[n - 1] / MIB
    );
    println!("  T_i predicted by the emulator's timings: max {max_p:.1} s, sum {sum_p:.1} s");
    println!("  T_i as dr measured them:                 max {max_t:.1} s, sum {sum_t:.1} s");
    println!(
        "  data stage: {:.1} s (restore-volumes {:.1} s)",
        data.and_then(|d| d.actual_seconds).unwrap_or(0.0),
        restore_step.and_then(|s| s.seconds).unwrap_or(0.0)
    );
    for s in &out.summary.stages {
        println!(
            "  stage {:15} {:6.1} s (budget {:.0} s)",
            s.name,
            s.actual_seconds.unwrap_or(0.0),
            s.budget_seconds
        );
    }
    println!(
        "  total restore {total:.1} s; target ≤ 1.05 × max(T_i) + 10 s = {bound:.1} s: {}; ratio to Σ T_i {:.2}",
        if total <= bound { "MET" } else { "MISSED" },
        total / sum_t
    );

    // Clean up: the restored namespace, its PVs, the source namespace.
    let _ = Api::<k8s_openapi::api::core::v1::Namespace>::all(kube.clone())
        .delete(&target, &Default::default())
        .await;
    let pvs = Api::<PersistentVolume>::all(kube.clone());
    for v in emu.control().stats().await?.volumes {
        if v.starts_with("dr-r") {
            let _ = pvs.delete(&v, &Default::default()).await;
        }
    }
    let _ = Api::<PersistentVolumeClaim>::namespaced(kube.clone(), &ns.name);
    ns.delete().await;
    Ok(())
}
