//! `dr restore`, end to end on the test bed and the Longhorn emulator: ticks
//! with different data between them, the namespace deleted, `restore --to` a
//! time between two points; the right point, the right bytes, Ready
//! workloads, a recorded run; `kill -9` mid-restore then the same command
//! again; a restore into another namespace leaves the original alone; bad
//! times, unknown policies, busy targets and live data are refused clearly.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use crate::harness::app::{
    BedOptions, CLAIMS, SECRET, SECRET_VALUE, XFS_CLAIM, bed, bed_with, between, cleanup, json_of,
    ready_replicas,
};
use crate::harness::testbed;
use chrono::{TimeDelta, Utc};
use dr::catalog::{NewRun, PointState, RunId, RunKind, RunState, StepState};
use std::process::Stdio;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_namespace_comes_back_at_the_chosen_point() {
    let mut b = bed(3).await;
    let (p1, t1, sums1) = b.points[1].clone();
    let (_, t2, _) = b.points[2].clone();
    b.ns.take().unwrap().delete_and_wait().await;
    // The namespace the test created is gone; the restore makes it again and
    // TestNamespace would not clean it up, so remember it.
    b.extra.push(b.ns_name.clone());

    let to = between(t1, t2);
    let out = b.run(&["--output", "json", "restore", "--to", &to]);
    assert_eq!(out.status.code(), Some(0), "restore within RTO exits 0");
    let doc = json_of(&out);
    assert_eq!(
        doc["plan"]["point"]["id"], p1.0,
        "the point at or before the target"
    );
    let run = &doc["run"];
    assert_eq!(run["state"], "succeeded");
    assert_eq!(run["rto_verdict"], "within");
    assert_eq!(run["within_rpo"], true);
    let stages: Vec<&str> = run["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        stages,
        ["infrastructure", "redeploy", "data", "verification"]
    );
    assert!(
        run["stages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["verdict"] == "within" && s["actual_seconds"].as_f64().is_some()),
        "{run}"
    );

    // The bytes are those of the chosen point, under the original claim names.
    for c in CLAIMS {
        let (vol, sum) = b.claim_checksum(&b.ns_name, c).await;
        assert_eq!(sum, sums1[c], "{c} holds the bytes of point {p1}");
        assert!(vol.starts_with("dr-r"), "{vol} is a restored volume");
    }
    // Each restored PV has its original's filesystem (Longhorn's pvCreate
    // would make ext4 of everything).
    for c in CLAIMS {
        let (vol, _) = b.claim_checksum(&b.ns_name, c).await;
        let pv = kube::Api::<k8s_openapi::api::core::v1::PersistentVolume>::all(b.kube.clone())
            .get(&vol)
            .await
            .unwrap();
        let fs = pv.spec.and_then(|s| s.csi).and_then(|c| c.fs_type);
        let want = if c == XFS_CLAIM { "xfs" } else { "ext4" };
        assert_eq!(fs.as_deref(), Some(want), "{c}");
    }
    // The workload is back, Ready, with its captured replicas.
    assert_eq!(ready_replicas(&b.kube, &b.ns_name).await, 2);

    // The run and every step are in the catalog, timed.
    let run_id = RunId(run["run_id"].as_i64().unwrap());
    let rec = b.catalog.run(run_id).await.unwrap();
    assert_eq!(rec.state, RunState::Succeeded);
    assert_eq!(rec.point_id, Some(p1));
    assert!(rec.summary.is_some());
    let steps = b.catalog.steps(run_id).await.unwrap();
    assert_eq!(steps.len(), 12);
    let content = steps
        .iter()
        .find(|s| s.step == "content checksums")
        .unwrap();
    assert!(
        content
            .detail
            .as_deref()
            .unwrap()
            .contains("2 volumes hold the bytes")
    );
    assert!(steps.iter().all(|s| s.state == StepState::Succeeded
        && s.started_at.is_some()
        && s.finished_at >= s.started_at));

    // Again into the same namespace: now it is live data.
    let out = b.run(&["restore", "--to", &to]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("live data") && err.contains("Deployment/web") && err.contains("--replace"),
        "{err}"
    );

    // With --replace, the newest point replaces it in place.
    let (p2, _, sums2) = b.points[2].clone();
    let out = b.run(&["--output", "json", "restore", "--to", "latest", "--replace"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json_of(&out)["plan"]["point"]["id"], p2.0);
    for c in CLAIMS {
        assert_eq!(b.claim_checksum(&b.ns_name, c).await.1, sums2[c]);
    }
    assert_eq!(ready_replicas(&b.kube, &b.ns_name).await, 2);
    cleanup(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_into_another_namespace_leaves_the_original_alone() {
    let mut b = bed(2).await;
    let (p0, t0, sums0) = b.points[0].clone();
    let (_, t1, _) = b.points[1].clone();
    let before: Vec<(String, String)> = {
        let mut v = Vec::new();
        for c in CLAIMS {
            v.push(b.claim_checksum(&b.ns_name, c).await);
        }
        v
    };
    let target = format!("dr-restore-copy-{}", testbed::suffix());
    b.extra.push(target.clone());
    let out = b.run(&["restore", "--to", &between(t0, t1), "--namespace", &target]);
    assert_eq!(out.status.code(), Some(0));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("TOTAL (RTO)") && table.contains("Achieved RPO"),
        "{table}"
    );
    for c in CLAIMS {
        assert_eq!(b.claim_checksum(&target, c).await.1, sums0[c]);
    }
    assert_eq!(ready_replicas(&b.kube, &target).await, 2);
    // The original: same volumes, same bytes, still running.
    for (c, (vol, sum)) in CLAIMS.iter().zip(&before) {
        assert_eq!(
            &b.claim_checksum(&b.ns_name, c).await,
            &(vol.clone(), sum.clone())
        );
    }
    assert_eq!(ready_replicas(&b.kube, &b.ns_name).await, 2);
    assert_eq!(
        b.catalog.point(p0).await.unwrap().state,
        PointState::Complete
    );
    cleanup(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_the_data_stage_then_the_same_command_resumes() {
    let mut b = bed(1).await;
    let target = format!("dr-restore-kill-{}", testbed::suffix());
    b.extra.push(target.clone());
    // Slow restores: 4 MiB at 512 KiB/s is about 8 s per volume.
    let mut t = b.emu.control().timings().await.unwrap();
    t.restore_bytes_per_sec = 512 * 1024;
    b.emu.control().set_timings(t).await.unwrap();

    let args = ["restore", "--to", "latest", "--namespace", &target];
    let mut child = b
        .dr(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the data stage is under way: restored volumes exist.
    let start = Instant::now();
    let run_id = loop {
        let runs = b
            .catalog
            .list_runs(Some(RunKind::Restore), None, 1)
            .await
            .unwrap();
        if let Some(r) = runs.first() {
            let steps = b.catalog.steps(r.id).await.unwrap();
            let restoring = steps
                .iter()
                .any(|s| s.step == "restore-volumes" && s.state == StepState::Running);
            let vols = b.emu.control().stats().await.unwrap().volumes;
            if restoring && vols.iter().filter(|v| v.starts_with("dr-r")).count() == 2 {
                break r.id;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the data stage never started"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(
        b.catalog.run(run_id).await.unwrap().state,
        RunState::Running
    );

    let out = b.run(&[
        "--output",
        "json",
        "restore",
        "--to",
        "latest",
        "--namespace",
        &target,
    ]);
    assert_eq!(out.status.code(), Some(0));
    let doc = json_of(&out);
    assert_eq!(doc["run"]["run_id"], run_id.0, "the same run, resumed");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("resumed"), "{err}");
    assert!(
        err.contains("already succeeded"),
        "done steps are skipped: {err}"
    );
    let restored: Vec<String> = b
        .emu
        .control()
        .stats()
        .await
        .unwrap()
        .volumes
        .into_iter()
        .filter(|v| v.starts_with("dr-r"))
        .collect();
    assert_eq!(restored.len(), 2, "no volume created twice: {restored:?}");
    let (_, _, sums) = b.points[0].clone();
    for c in CLAIMS {
        assert_eq!(b.claim_checksum(&target, c).await.1, sums[c]);
    }
    cleanup(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_times_unknown_policies_and_busy_targets_are_refused() {
    let b = bed(1).await;
    let future = (Utc::now() + TimeDelta::hours(3)).to_rfc3339();
    let out = b.run(&["restore", "--to", &future]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("in the future") && err.contains("nearest candidates"),
        "{err}"
    );

    let out = b.run(&["restore", "--to", "yesterday-ish"]);
    assert_eq!(out.status.code(), Some(2));

    let out = b.run(&["restore", "--to", "latest", "--policy", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));

    // A run in progress, held by a live process (this test), makes the target busy.
    let target: dr::names::Namespace = format!("dr-busy-{}", testbed::suffix()).parse().unwrap();
    let held = b
        .catalog
        .start_run(&NewRun {
            kind: RunKind::Restore,
            policy: "shop".parse().unwrap(),
            point_id: Some(b.points[0].0),
            target_namespace: target.clone(),
            target_at: None,
            incident_id: None,
            started_at: Utc::now(),
            holder: dr::runbook::lease::holder_id(),
        })
        .await
        .unwrap();
    let out = b.run(&["restore", "--to", "latest", "--namespace", target.as_str()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "run {} into namespace {target} is in progress",
            held.id
        )),
        "{err}"
    );
    // Nothing was created for the refused restore.
    assert!(
        dr::cluster::restore::namespace_state(&b.kube, target.as_str())
            .await
            .unwrap()
            == dr::cluster::restore::NamespaceState::Absent
    );

    // Longhorn's backup target points at another store than the point's
    // backups: the infrastructure stage says so, names both, and stops.
    for r in b.catalog.backups_of(b.points[0].0).await.unwrap() {
        let url = r.backup_url.clone().unwrap();
        let moved = url.replacen("s3://", "s3://elsewhere-", 1);
        let upd = dr::catalog::BackupUpdate {
            backup_url: Some(moved),
            ..Default::default()
        };
        b.catalog.update_backup(r.id, &upd).await.unwrap();
    }
    let target = format!("dr-moved-{}", testbed::suffix());
    let out = b.run(&["restore", "--to", "latest", "--namespace", &target]);
    assert_ne!(out.status.code(), Some(0));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        all.contains("backups are in s3://elsewhere-") && all.contains("point the backup target"),
        "{all}"
    );
    let ns = dr::cluster::restore::namespace_state(&b.kube, &target)
        .await
        .unwrap();
    assert!(ns == dr::cluster::restore::NamespaceState::Absent, "{ns:?}");
    cleanup(&b).await;
}

/// The Secret's value in `ns`, if the Secret is there.
async fn secret_value(kube: &kube::Client, ns: &str) -> Option<String> {
    let s = kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(kube.clone(), ns)
        .get_opt(SECRET)
        .await
        .unwrap()?;
    let v = s.data.unwrap_or_default().get("password").cloned()?;
    Some(String::from_utf8(v.0).unwrap())
}

async fn namespace_exists(kube: &kube::Client, ns: &str) -> bool {
    kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(kube.clone())
        .get_opt(ns)
        .await
        .unwrap()
        .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_secrets_come_back_with_the_identity_and_only_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("dr-key.txt");
    let (id, text) = dr::secrets::Identity::generate(&key);
    std::fs::write(&key, text).unwrap();
    let wrong = dir.path().join("other-key.txt");
    std::fs::write(&wrong, dr::secrets::Identity::generate(&wrong).1).unwrap();
    let mut b = bed_with(
        1,
        &BedOptions {
            secret: true,
            recipients: id.recipients().iter().map(|r| r.to_string()).collect(),
        },
    )
    .await;
    let (p0, _, _) = b.points[0].clone();

    // The bucket holds the Secret sealed, never its value.
    let bundle_key = b.catalog.point(p0).await.unwrap().bundle_key.unwrap();
    let tb = testbed::get();
    let s3 = tb.s3_client();
    let (folder, _) = bundle_key.rsplit_once('/').unwrap();
    let listed = s3
        .list_objects_v2()
        .bucket(tb.s3_bucket())
        .prefix(folder)
        .send()
        .await
        .unwrap();
    let keys: Vec<String> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect();
    assert!(keys.contains(&bundle_key), "{keys:?}");
    let b64 = serde_json::to_value(k8s_openapi::ByteString(SECRET_VALUE.into()))
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned();
    for k in &keys {
        let body = s3
            .get_object()
            .bucket(tb.s3_bucket())
            .key(k)
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes();
        let text = String::from_utf8_lossy(&body);
        assert!(
            !text.contains(SECRET_VALUE) && !text.contains(&b64),
            "{k}: {text}"
        );
        assert!(text.contains("BEGIN AGE ENCRYPTED FILE"), "{k}: {text}");
    }

    b.ns.take().unwrap().delete_and_wait().await;
    b.extra.push(b.ns_name.clone());
    let runs_before = b.catalog.list_runs(None, None, 100).await.unwrap().len();

    // Without an identity: refused before anything is applied, naming it.
    let out = b.run(&["restore", "--to", "latest"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(SECRET)
            && err.contains("--secrets-identity")
            && err.contains("Nothing was applied"),
        "{err}"
    );
    assert!(
        !namespace_exists(&b.kube, &b.ns_name).await,
        "nothing applied"
    );

    // With an identity the Secrets were not sealed to: the same.
    let out = b.run(&[
        "restore",
        "--to",
        "latest",
        "--secrets-identity",
        wrong.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(SECRET) && err.contains("not one the Secrets were sealed to"),
        "{err}"
    );
    assert!(
        !namespace_exists(&b.kube, &b.ns_name).await,
        "nothing applied"
    );
    assert_eq!(
        b.catalog.list_runs(None, None, 100).await.unwrap().len(),
        runs_before,
        "no run recorded"
    );

    // With the identity (from the environment): the Secret is back, value and all.
    let out = b
        .dr(&["--output", "json", "restore", "--to", "latest"])
        .env("DR_SECRETS_IDENTITY", &key)
        .output()
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0));
    let doc = json_of(&out);
    assert_eq!(doc["run"]["state"], "succeeded");
    assert_eq!(
        secret_value(&b.kube, &b.ns_name).await.as_deref(),
        Some(SECRET_VALUE)
    );
    assert_eq!(ready_replicas(&b.kube, &b.ns_name).await, 2);
    cleanup(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_kept_by_reference_and_lost_fails_the_restore_by_name() {
    let mut b = bed_with(
        1,
        &BedOptions {
            secret: true,
            recipients: vec![],
        },
    )
    .await;
    b.ns.take().unwrap().delete_and_wait().await;
    b.extra.push(b.ns_name.clone());
    let out = b.run(&["restore", "--to", "latest"]);
    assert_eq!(out.status.code(), Some(1), "no false success");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "Secret {SECRET} (referenced by Deployment/web env DB_PASSWORD"
        )) && err.contains("by reference only")
            && err.contains("secrets: {recipients"),
        "{err}"
    );
    let runs = b.catalog.list_runs(None, None, 10).await.unwrap();
    assert_eq!(runs[0].state, RunState::Failed);
    let steps = b.catalog.steps(runs[0].id).await.unwrap();
    let failed = steps.iter().find(|s| s.state == StepState::Failed).unwrap();
    assert_eq!(failed.stage, "redeploy", "{failed:?}");
    // Nothing was scaled up: the workload is still held at zero.
    let web =
        kube::Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(b.kube.clone(), &b.ns_name)
            .get("web")
            .await
            .unwrap();
    assert_eq!(web.spec.unwrap().replicas, Some(0));

    // Created by hand, the same command again succeeds.
    let secret = serde_json::json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": SECRET, "namespace": b.ns_name},
        "stringData": {"password": SECRET_VALUE}});
    kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(b.kube.clone(), &b.ns_name)
        .create(
            &Default::default(),
            &serde_json::from_value(secret).unwrap(),
        )
        .await
        .unwrap();
    let out = b.run(&["restore", "--to", "latest"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(ready_replicas(&b.kube, &b.ns_name).await, 2);
    cleanup(&b).await;
}
