//! Drills, end to end on the test bed and the Longhorn emulator: a drill
//! restores into its own namespace, passes and leaves nothing behind; a drill
//! whose check fails is recorded failed and still tears down; a drill killed
//! with `kill -9` is cleaned up when `dr serve` next starts; the production
//! namespace is never touched.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use crate::harness::app::{Bed, CLAIMS, bed, json_of, ready_replicas};
use dr::catalog::{RunId, RunKind, RunState, StepState};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolume, PersistentVolumeClaim};
use kube::Api;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// What production looks like: each object's resourceVersion, the claims'
/// volumes and bytes.
async fn production(b: &Bed) -> Vec<String> {
    let mut out = Vec::new();
    let d = Api::<Deployment>::namespaced(b.kube.clone(), &b.ns_name)
        .get("web")
        .await
        .unwrap();
    out.push(format!("web {:?}", d.metadata.resource_version));
    for c in CLAIMS {
        let pvc = Api::<PersistentVolumeClaim>::namespaced(b.kube.clone(), &b.ns_name)
            .get(c)
            .await
            .unwrap();
        out.push(format!("{c} {:?}", pvc.metadata.resource_version));
        let (vol, sum) = b.claim_checksum(&b.ns_name, c).await;
        out.push(format!("{c} {vol} {sum}"));
    }
    out
}

/// Asserts a drill left nothing: no namespace, no dr-d volumes, no PVs for them.
async fn nothing_left(b: &Bed, ns: &str) {
    let start = Instant::now();
    loop {
        let gone = Api::<Namespace>::all(b.kube.clone())
            .get_opt(ns)
            .await
            .unwrap()
            .is_none();
        let vols: Vec<String> = b
            .emu
            .control()
            .stats()
            .await
            .unwrap()
            .volumes
            .into_iter()
            .filter(|v| v.starts_with("dr-d"))
            .collect();
        let pvs: Vec<String> = Api::<PersistentVolume>::all(b.kube.clone())
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .filter(|n| vols.contains(n) || n.starts_with("dr-d"))
            .collect();
        if gone && vols.is_empty() && pvs.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "drill leftovers: namespace gone {gone}, volumes {vols:?}, PVs {pvs:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn runbook(b: &Bed, extra_steps: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/testbed.yaml"),
    )
    .unwrap();
    let path = b.dir.path().join("drill-runbook.yaml");
    std::fs::write(&path, format!("{text}{extra_steps}")).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_restores_into_its_own_namespace_passes_and_leaves_nothing() {
    let b = bed(1).await;
    let before = production(&b).await;
    let rb = runbook(&b, "      - manual: Open the shop and place a test order\n");
    let out = b.run(&[
        "--output",
        "json",
        "drill",
        "run",
        "--runbook",
        rb.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let doc = json_of(&out);
    assert_eq!(doc["passed"], true, "{doc}");
    let ns = doc["run"]["target_namespace"].as_str().unwrap().to_owned();
    assert!(ns.starts_with("dr-drill-shop-"), "{ns}");
    let run = RunId(doc["run"]["run_id"].as_i64().unwrap());

    // Recorded: a drill run with every step, the manual one skipped, the
    // restored volumes under drill names, the teardown done.
    let rec = b.catalog.run(run).await.unwrap();
    assert_eq!((rec.kind, rec.state), (RunKind::Drill, RunState::Succeeded));
    let steps = b.catalog.steps(run).await.unwrap();
    let manual = steps.iter().find(|s| s.step.starts_with("manual")).unwrap();
    assert_eq!(manual.state, StepState::Skipped);
    assert_eq!(manual.detail.as_deref(), Some("drills skip manual steps"));
    let content = steps
        .iter()
        .find(|s| s.step == "content checksums")
        .unwrap();
    assert_eq!(content.state, StepState::Succeeded, "{:?}", content.detail);
    assert!(
        content
            .detail
            .as_deref()
            .unwrap()
            .contains("2 volumes hold the bytes")
    );
    let restored = steps.iter().find(|s| s.step == "restore-volumes").unwrap();
    let detail = restored.detail.as_deref().unwrap();
    assert!(detail.contains("\"volume\":\"dr-d"), "{detail}");
    let teardown = steps.last().unwrap();
    assert_eq!(
        (teardown.stage.as_str(), teardown.state),
        ("teardown", StepState::Succeeded)
    );
    nothing_left(&b, &ns).await;

    // Production untouched: same objects, volumes and bytes; still Ready.
    assert_eq!(production(&b).await, before);
    assert_eq!(ready_replicas(&b.kube, &b.ns_name).await, 2);

    // The drill is listed and shown.
    let out = b.run(&["drill", "list"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("passed"));
    let out = b.run(&["drill", "show", &run.0.to_string()]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("teardown") && shown.contains("TOTAL (RTO)"),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_whose_check_fails_is_failed_and_still_tears_down() {
    let b = bed(1).await;
    // Nothing listens on port 9 of loopback: the check cannot pass.
    let rb = runbook(
        &b,
        "      - http: {url: \"http://127.0.0.1:9/healthz\", expect: 200, timeout: 3s}\n",
    );
    let out = b.run(&[
        "--output",
        "json",
        "drill",
        "run",
        "--runbook",
        rb.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let doc = json_of(&out);
    assert_eq!(doc["passed"], false);
    let ns = doc["run"]["target_namespace"].as_str().unwrap().to_owned();
    let run = RunId(doc["run"]["run_id"].as_i64().unwrap());
    let rec = b.catalog.run(run).await.unwrap();
    assert_eq!(rec.state, RunState::Failed);
    assert!(rec.error.unwrap().contains("127.0.0.1:9"));
    let steps = b.catalog.steps(run).await.unwrap();
    assert_eq!(
        steps
            .iter()
            .find(|s| s.step.starts_with("http"))
            .unwrap()
            .state,
        StepState::Failed
    );
    assert_eq!(steps.last().unwrap().stage, "teardown");
    assert_eq!(steps.last().unwrap().state, StepState::Succeeded);
    nothing_left(&b, &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dr_serve_runs_a_drill_on_the_policys_schedule() {
    use chrono::Timelike as _;
    let b = bed(1).await;
    // One firing, a few seconds from now.
    let at = chrono::Utc::now() + chrono::TimeDelta::seconds(6);
    let rb = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/testbed.yaml");
    let mut text = std::fs::read_to_string(&b.config).unwrap();
    text.push_str(&format!(
        "    schedule: \"0 0 0 1 1 *\"\n    drill: {{schedule: \"{} {} {} * * *\", runbook: {}}}\n",
        at.second(),
        at.minute(),
        at.hour(),
        rb.display()
    ));
    std::fs::write(&b.config, text).unwrap();
    let mut serve = b
        .dr(&["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let run = loop {
        let runs = b
            .catalog
            .list_runs(Some(RunKind::Drill), None, 5)
            .await
            .unwrap();
        if let Some(r) = runs.iter().find(|r| r.state != RunState::Running) {
            break r.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "no scheduled drill finished"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status();
    serve.wait().unwrap();
    assert_eq!(run.state, RunState::Succeeded, "{:?}", run.error);
    let summary: dr::runbook::summary::RunSummary =
        serde_json::from_str(run.summary.as_deref().unwrap()).unwrap();
    assert!(dr::drill::passed(&summary));
    nothing_left(&b, run.target_namespace.as_str()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_whose_content_differs_from_the_backup_fails() {
    let b = bed(1).await;
    // The checksum recorded at backup time says something else than the
    // backed-up bytes (as if the restore had brought back other data).
    let backups = b.catalog.backups_of(b.points[0].0).await.unwrap();
    let victim = backups
        .iter()
        .find(|x| x.pvc.as_deref() == Some("db-data"))
        .unwrap();
    assert!(
        victim.content_checksum.is_some(),
        "the tick recorded the content"
    );
    b.catalog
        .set_content_checksum(victim.id, "not-the-bytes")
        .await
        .unwrap();
    let out = b.run(&["--output", "json", "drill", "run"]);
    assert_eq!(out.status.code(), Some(1));
    let doc = json_of(&out);
    let err = doc["run"]["error"].as_str().unwrap();
    assert!(
        err.contains("content differs") && err.contains("db-data") && !err.contains("web-uploads"),
        "{err}"
    );
    nothing_left(&b, doc["run"]["target_namespace"].as_str().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_killed_mid_way_is_cleaned_up_by_the_next_start() {
    let b = bed(1).await;
    let mut t = b.emu.control().timings().await.unwrap();
    t.restore_bytes_per_sec = 256 * 1024; // about 16 s per 4 MiB volume
    b.emu.control().set_timings(t).await.unwrap();
    let mut child = b
        .dr(&["drill", "run"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let run = loop {
        if let Some(r) = b
            .catalog
            .list_runs(Some(RunKind::Drill), None, 1)
            .await
            .unwrap()
            .first()
        {
            let vols = b.emu.control().stats().await.unwrap().volumes;
            if vols.iter().filter(|v| v.starts_with("dr-d")).count() == CLAIMS.len() {
                break r.clone();
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the drill never restored"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let ns = run.target_namespace.to_string();
    assert!(
        Api::<Namespace>::all(b.kube.clone())
            .get_opt(&ns)
            .await
            .unwrap()
            .is_some(),
        "the killed drill left its namespace"
    );

    // The next `dr serve` start removes it and records the run failed.
    let mut serve = b
        .dr(&["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        let r = b.catalog.run(run.id).await.unwrap();
        if r.state != RunState::Running {
            assert_eq!(r.state, RunState::Failed);
            assert!(r.error.unwrap().contains("janitor"));
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "dr serve did not clean up the interrupted drill"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    nothing_left(&b, &ns).await;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status();
    serve.wait().unwrap();
}

/// The detail of a run's `apply recovery-point` step.
async fn apply_detail(b: &Bed, out: &std::process::Output) -> String {
    let run = RunId(json_of(out)["run"]["run_id"].as_i64().unwrap());
    let steps = b.catalog.steps(run).await.unwrap();
    steps
        .iter()
        .find(|s| s.step == "apply recovery-point")
        .and_then(|s| s.detail.clone())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_opens_sealed_secrets_with_the_identity_or_copies_them_without() {
    use crate::harness::app::{BedOptions, SECRET, bed_with};
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.txt");
    let (id, text) = dr::secrets::Identity::generate(&key);
    std::fs::write(&key, text).unwrap();
    let wrong = dir.path().join("wrong.txt");
    std::fs::write(&wrong, dr::secrets::Identity::generate(&wrong).1).unwrap();
    let b = bed_with(
        1,
        &BedOptions {
            secret: true,
            recipients: id.recipients().iter().map(|r| r.to_string()).collect(),
        },
    )
    .await;

    // With the identity: the Secret comes from the point itself.
    let out = b.run(&[
        "--output",
        "json",
        "drill",
        "run",
        "--secrets-identity",
        key.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let d = apply_detail(&b, &out).await;
    assert!(
        d.contains(&format!("Secrets restored from the sealed copy: {SECRET}"))
            && !d.contains("copied"),
        "{d}"
    );

    // Without one (as dr serve without secrets_identity): copied from the live namespace.
    let out = b.run(&["--output", "json", "drill", "run"]);
    assert_eq!(out.status.code(), Some(0));
    let d = apply_detail(&b, &out).await;
    assert!(
        d.contains(&format!("Secrets copied from {}: {SECRET}", b.ns_name)),
        "{d}"
    );

    // A wrong identity is refused before anything is made, naming the Secret.
    let out = b.run(&[
        "drill",
        "run",
        "--secrets-identity",
        wrong.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(SECRET) && err.contains("wrong.txt"), "{err}");
}
