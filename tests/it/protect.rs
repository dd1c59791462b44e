//! Protect, on the test bed and the Longhorn emulator: a tick backs up exactly
//! the selected volumes, verifies them in S3 and stores the manifest bundle;
//! running a tick again adopts instead of doubling; injected faults end every
//! tick in a clear state; retention leaves exactly the expected set.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use crate::harness::testbed::{self, TestNamespace};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use dr::backup::{Events, Protect, TickOptions};
use dr::catalog::{BackupState, Catalog, PointState, Verification};
use dr::config::{Config, PolicyConfig};
use dr::longhorn::{ClientConfig, LonghornClient};
use dr::store::Store;
use longhorn_emulator::{Emulator, EmulatorConfig, Fault, Timings};
use std::sync::Arc;
use std::time::Duration;

struct Bed {
    emu: Emulator,
    protect: Protect,
    policy: PolicyConfig,
    ns: TestNamespace,
    _dir: tempfile::TempDir,
}

async fn bed(retain: &str) -> Bed {
    bed_with(retain, &[]).await
}

/// A bed whose Longhorn has `settings` before any volume exists.
async fn bed_with(retain: &str, settings: &[(&str, &str)]) -> Bed {
    bed_full(retain, settings, false).await
}

/// A bed whose policy, with `content`, records the emulator's checksum of
/// each volume before its snapshot.
async fn bed_full(retain: &str, settings: &[(&str, &str)], content: bool) -> Bed {
    let tb = testbed::get();
    let kube = tb.kube_client().await;
    let prefix = format!("protect-{}", testbed::suffix());
    let ns = TestNamespace::create(&kube, "dr-protect").await;
    let mut ecfg = EmulatorConfig::new("127.0.0.1:0".parse().unwrap());
    ecfg.store = Some(tb.emulator_store(&prefix).await);
    ecfg.kube = Some(kube.clone());
    ecfg.timings = Timings::fast();
    ecfg.provision_namespaces = Some(vec![ns.name.clone()]);
    let emu = Emulator::start(ecfg).await.unwrap();
    for (name, value) in settings {
        emu.control().set_setting(name, value).await.unwrap();
    }
    for (name, part_of) in [
        ("web-uploads", "shop"),
        ("db-data", "shop"),
        ("not-mine", "other"),
    ] {
        let labels = serde_json::json!({"app.kubernetes.io/part-of": part_of});
        testbed::longhorn_claim(&kube, &ns.name, name, labels, "8Mi").await;
    }
    for name in ["web-uploads", "db-data", "not-mine"] {
        testbed::wait_bound(&kube, &ns.name, name).await;
    }
    let content = if content {
        format!(
            "    content: {{checksum_url: \"{}/emulator/volumes/{{volume}}/checksum\"}}\n",
            emu.url().as_str().trim_end_matches('/')
        )
    } else {
        String::new()
    };
    let cfg = Config::parse(
        &format!(
            "policies:\n  - name: shop\n    namespace: {}\n    selector: app.kubernetes.io/part-of=shop\n    retain: {retain}\n{content}",
            ns.name
        ),
        "test",
    )
    .unwrap();
    let policy = cfg.policies[0].clone();
    let dir = tempfile::tempdir().unwrap();
    let catalog = Catalog::open(
        &format!("sqlite://{}/c.db", dir.path().display())
            .parse()
            .unwrap(),
    )
    .await
    .unwrap();
    catalog
        .upsert_policy(&(&policy).into(), Utc::now())
        .await
        .unwrap();
    let mut lh = ClientConfig::new(emu.url());
    lh.poll = Duration::from_millis(25);
    lh.follow_interval = Duration::from_millis(100);
    lh.timeout = Duration::from_secs(2);
    lh.backoff_base = Duration::from_millis(10);
    lh.backoff_max = Duration::from_millis(50);
    lh.discover_for = Duration::from_secs(3);
    let s3 = tb.s3_client();
    let protect = Protect {
        catalog,
        longhorn: LonghornClient::new(lh).unwrap(),
        kube,
        store: Store::from_client(s3.clone(), tb.s3_bucket(), &prefix),
        verifier: s3,
        options: TickOptions {
            concurrency: 4,
            snapshot_wait: Duration::from_secs(20),
            backup_wait: Duration::from_secs(60),
            ..TickOptions::default()
        },
    };
    Bed {
        emu,
        protect,
        policy,
        ns,
        _dir: dir,
    }
}

fn quiet() -> Events {
    Arc::new(|_| {})
}

/// The tick `n` quarters before the quarter hour the tests started in: one
/// base for the whole run, so two ticks asked for apart stay apart even when
/// the clock crosses a quarter hour between them.
fn tick(n: i64) -> DateTime<Utc> {
    static BASE: std::sync::OnceLock<DateTime<Utc>> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| Utc::now().duration_trunc(TimeDelta::minutes(15)).unwrap())
        - TimeDelta::minutes(15 * n)
}

#[tokio::test]
async fn a_tick_backs_up_exactly_the_selected_volumes_and_verifies_them() {
    let b = bed("{}").await;
    let t = tick(0);
    let report = b.protect.tick(&b.policy, t, quiet()).await.unwrap();
    assert_eq!(report.state, PointState::Complete, "{report:?}");
    let mut pvcs: Vec<&str> = report.volumes.iter().map(|v| v.pvc.as_str()).collect();
    pvcs.sort();
    assert_eq!(pvcs, ["db-data", "web-uploads"]);
    assert!(
        report
            .volumes
            .iter()
            .all(|v| v.state == BackupState::Completed && v.verification == Verification::Verified),
        "{report:?}"
    );
    let stats = b.emu.control().stats().await.unwrap();
    assert_eq!(stats.backups_created, 2, "{stats:?}");
    // Each backup was found, and its end seen, in the shared volume listing:
    // one request per backup, no backup list read per volume.
    assert_eq!(stats.requests.get("snapshotBackup"), Some(&2), "{stats:?}");
    assert_eq!(stats.requests.get("backupListByVolume"), None, "{stats:?}");

    // The bundle is in S3 and holds the selected claims only.
    let key = report.bundle.clone().unwrap();
    let bundle = b.protect.store.get_bundle(&key).await.unwrap();
    let claims: Vec<&str> = bundle
        .objects
        .iter()
        .filter(|o| o["kind"] == "PersistentVolumeClaim")
        .map(|o| o["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(claims, ["db-data", "web-uploads"]);

    // The point counts for the RPO.
    let newest = b
        .protect
        .catalog
        .newest_verified_point(&b.policy.name)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(newest.id, report.point_id);

    // The same tick again (a restart): adopted, nothing new in Longhorn.
    let again = b.protect.tick(&b.policy, t, quiet()).await.unwrap();
    assert_eq!(again.point_id, report.point_id);
    assert_eq!(b.emu.control().stats().await.unwrap().backups_created, 2);
    b.ns.delete().await;
    b.emu.shutdown().await;
}

#[tokio::test]
async fn an_interrupted_tick_resumes_without_doubles() {
    let b = bed("{}").await;
    let t = tick(0);
    // Longhorn hangs on backups: the first attempt is cut short (as by a crash).
    b.emu
        .control()
        .set_fault(Fault {
            operation: "snapshotBackup".into(),
            hang: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let first = tokio::time::timeout(
        Duration::from_secs(1),
        b.protect.tick(&b.policy, t, quiet()),
    )
    .await;
    assert!(first.is_err(), "the tick was cut short");
    b.emu.control().clear_faults().await.unwrap();
    let pending = b.protect.catalog.pending_points().await.unwrap();
    assert_eq!(
        pending.len(),
        1,
        "the interrupted tick left its point pending"
    );
    let report = b.protect.tick(&b.policy, t, quiet()).await.unwrap();
    assert_eq!(report.state, PointState::Complete, "{report:?}");
    let stats = b.emu.control().stats().await.unwrap();
    assert_eq!(stats.backups_created, 2, "no doubles: {stats:?}");
    assert_eq!(
        b.protect
            .catalog
            .backups_of(report.point_id)
            .await
            .unwrap()
            .len(),
        2
    );
    b.ns.delete().await;
    b.emu.shutdown().await;
}

/// A crash after the first volumes' rows were written and before the rest
/// (the tick writes them in two transactions) leaves a pending point with
/// some rows: resuming it writes the missing rows and backs up every volume.
#[tokio::test]
async fn a_tick_cut_short_between_its_row_writes_resumes_with_every_volume() {
    let b = bed("{}").await;
    let t = tick(0);
    let catalog = &b.protect.catalog;
    let point = catalog
        .begin_point(&b.policy.name, t, Utc::now())
        .await
        .unwrap();
    let (volumes, _) =
        dr::cluster::resolve_volumes(&b.protect.kube, &b.policy.namespace, &b.policy.selector)
            .await
            .unwrap();
    assert_eq!(volumes.len(), 2);
    let first = &volumes[0];
    catalog
        .record_backups(&[dr::catalog::NewBackup {
            point_id: point.id,
            volume: first.volume.clone(),
            pvc: Some(first.pvc.clone()),
            snapshot_name: dr::backup::snapshot_name(
                b.policy.name.as_str(),
                t,
                first.volume.as_str(),
            ),
            requested_at: Utc::now(),
        }])
        .await
        .unwrap();

    let report = b.protect.tick(&b.policy, t, quiet()).await.unwrap();
    assert_eq!(report.point_id, point.id);
    assert_eq!(report.state, PointState::Complete, "{report:?}");
    let rows = catalog.backups_of(point.id).await.unwrap();
    let mut pvcs: Vec<&str> = rows.iter().filter_map(|r| r.pvc.as_deref()).collect();
    pvcs.sort();
    assert_eq!(pvcs, ["db-data", "web-uploads"]);
    assert!(rows.iter().all(|r| r.state == BackupState::Completed));
    assert_eq!(b.emu.control().stats().await.unwrap().backups_created, 2);
    b.ns.delete().await;
    b.emu.shutdown().await;
}

#[tokio::test]
async fn with_faults_every_tick_ends_in_a_clear_state() {
    let b = bed("{}").await;
    let ctl = b.emu.control();
    ctl.set_fault(Fault {
        operation: "*".into(),
        error_rate: 0.2,
        latency_ms: 20,
        ..Default::default()
    })
    .await
    .unwrap();
    for n in 0..4 {
        let report = b.protect.tick(&b.policy, tick(n), quiet()).await.unwrap();
        assert_ne!(report.state, PointState::Pending);
        let states: Vec<BackupState> = report.volumes.iter().map(|v| v.state).collect();
        assert!(states.iter().all(|s| s.is_terminal()), "{report:?}");
        assert_eq!(
            report.state,
            PointState::from_backups(&states),
            "{report:?}"
        );
        if report.state != PointState::Complete {
            assert!(
                report.reason.is_some(),
                "a point that is not complete says why: {report:?}"
            );
            assert!(
                report
                    .volumes
                    .iter()
                    .filter(|v| v.state == BackupState::Failed)
                    .all(|v| v.error.is_some())
            );
        }
    }
    ctl.clear_faults().await.unwrap();
    // A hung call: backup requests never answer. Each is cut by the client's
    // timeout, nothing is found, and the tick ends failed with the reason.
    ctl.set_fault(Fault {
        operation: "snapshotBackup".into(),
        hang: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let report = b.protect.tick(&b.policy, tick(4), quiet()).await.unwrap();
    assert_eq!(report.state, PointState::Failed, "{report:?}");
    assert!(
        report.volumes.iter().all(|v| v
            .error
            .as_deref()
            .is_some_and(|e| e.contains("could not confirm"))),
        "{report:?}"
    );
    ctl.clear_faults().await.unwrap();
    // Longhorn down: the tick fails clearly, and nothing is left pending.
    ctl.set_down(true).await.unwrap();
    let report = b.protect.tick(&b.policy, tick(5), quiet()).await.unwrap();
    assert_eq!(report.state, PointState::Failed, "{report:?}");
    assert!(
        report.volumes.iter().all(|v| v
            .error
            .as_deref()
            .is_some_and(|e| e.contains("unreachable"))),
        "{report:?}"
    );
    ctl.set_down(false).await.unwrap();
    assert!(b.protect.catalog.pending_points().await.unwrap().is_empty());
    b.ns.delete().await;
    b.emu.shutdown().await;
}

#[tokio::test]
async fn retention_leaves_exactly_the_expected_set() {
    let b = bed("{last: 2, hourly: 0, daily: 0, weekly: 0, monthly: 0}").await;
    let mut ids = Vec::new();
    for n in (0..4).rev() {
        ids.push(
            b.protect
                .tick(&b.policy, tick(n), quiet())
                .await
                .unwrap()
                .point_id,
        );
    }
    assert_eq!(b.emu.control().stats().await.unwrap().backups_created, 8);
    let verdicts = dr::prune::plan(&b.protect.catalog, &b.policy, Utc::now())
        .await
        .unwrap();
    let pruned: Vec<_> = verdicts
        .iter()
        .filter(|v| v.prune())
        .map(|v| v.id)
        .collect();
    assert_eq!(pruned, vec![ids[1], ids[0]], "the two oldest go");
    let r = dr::prune::execute(
        &b.protect.catalog,
        &b.protect.longhorn,
        &b.protect.store,
        &b.policy.name,
        &verdicts,
        Duration::from_secs(30),
        &dr::clock::Clock::System,
    )
    .await
    .unwrap();
    assert_eq!((r.points_pruned, r.backups_deleted), (2, 4), "{r:?}");
    let live: Vec<_> = b
        .protect
        .catalog
        .live_points(&b.policy.name)
        .await
        .unwrap()
        .iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(live, vec![ids[3], ids[2]]);
    let stats = b.emu.control().stats().await.unwrap();
    assert_eq!(
        stats.backups.len(),
        4,
        "Longhorn keeps the 4 backups of the 2 kept points: {stats:?}"
    );
    // The pruned points' manifest bundles go too; the kept points' stay.
    assert_eq!(r.bundles_deleted, 2, "{r:?}");
    let mut kept = Vec::new();
    for id in &ids[2..] {
        let key = b.protect.catalog.point(*id).await.unwrap().bundle_key;
        kept.push(key.unwrap());
    }
    kept.sort();
    let in_store = b
        .protect
        .store
        .list_bundles(b.policy.name.as_str())
        .await
        .unwrap();
    assert_eq!(
        in_store, kept,
        "the store holds the kept points' bundles only"
    );
    // And the kept points' files only.
    for (i, id) in ids.iter().enumerate() {
        let p = b.protect.catalog.point(*id).await.unwrap();
        let file = b
            .protect
            .store
            .get_point(b.policy.name.as_str(), p.tick_at)
            .await
            .unwrap();
        assert_eq!(file.is_some(), i >= 2, "point {id}'s file: {file:?}");
    }
    // Pruning again changes nothing.
    let verdicts = dr::prune::plan(&b.protect.catalog, &b.policy, Utc::now())
        .await
        .unwrap();
    assert!(verdicts.iter().all(|v| !v.prune()));
    b.ns.delete().await;
    b.emu.shutdown().await;
}

/// A point's (backup name, content checksum) pairs, by backup name.
async fn checksums(
    catalog: &Catalog,
    point: dr::catalog::PointId,
) -> Vec<(String, Option<String>)> {
    let mut v: Vec<_> = catalog
        .backups_of(point)
        .await
        .unwrap()
        .into_iter()
        .map(|b| (b.backup_name.unwrap_or_default(), b.content_checksum))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn catalog_sync_after_losing_the_catalog_brings_back_the_same_points() {
    let b = bed_full("{}", &[], true).await;
    let mut before = Vec::new();
    let mut sums_before = Vec::new();
    for n in (0..3).rev() {
        let r = b.protect.tick(&b.policy, tick(n), quiet()).await.unwrap();
        assert_eq!(r.state, PointState::Complete);
        let mut names: Vec<String> = r.volumes.iter().filter_map(|v| v.backup.clone()).collect();
        names.sort();
        before.push((r.tick_at, r.point_at, names));
        sums_before.push(checksums(&b.protect.catalog, r.point_id).await);
    }
    assert!(
        sums_before.iter().flatten().all(|(_, s)| s.is_some()),
        "the content probe answered for every backup: {sums_before:?}"
    );
    // The catalog is lost: a new, empty one.
    let dir = tempfile::tempdir().unwrap();
    let fresh = Catalog::open(
        &format!("sqlite://{}/new.db", dir.path().display())
            .parse()
            .unwrap(),
    )
    .await
    .unwrap();
    fresh
        .upsert_policy(&(&b.policy).into(), Utc::now())
        .await
        .unwrap();
    let dry = dr::sync::sync_policy(
        &fresh,
        &b.protect.longhorn,
        &b.protect.store,
        &b.protect.verifier,
        &b.policy,
        false,
        &dr::clock::Clock::System,
    )
    .await
    .unwrap();
    assert_eq!(dry.recovered.len(), 3);
    assert!(
        fresh.live_points(&b.policy.name).await.unwrap().is_empty(),
        "a dry run records nothing"
    );
    let r = dr::sync::sync_policy(
        &fresh,
        &b.protect.longhorn,
        &b.protect.store,
        &b.protect.verifier,
        &b.policy,
        true,
        &dr::clock::Clock::System,
    )
    .await
    .unwrap();
    assert!(r.differences.is_empty(), "{r:?}");
    let mut after = Vec::new();
    let mut sums_after = Vec::new();
    for p in fresh
        .live_points(&b.policy.name)
        .await
        .unwrap()
        .into_iter()
        .rev()
    {
        assert_eq!(p.state, PointState::Complete, "{p:?}");
        assert!(p.bundle_key.is_some());
        sums_after.push(checksums(&fresh, p.id).await);
        let backups = fresh.backups_of(p.id).await.unwrap();
        assert!(
            backups
                .iter()
                .all(|x| x.verification == Verification::Verified && x.pvc.is_some())
        );
        let mut names: Vec<String> = backups.into_iter().filter_map(|x| x.backup_name).collect();
        names.sort();
        after.push((p.tick_at, p.point_at, names));
    }
    assert_eq!(after, before);
    // The point files in the bucket brought back what Longhorn does not
    // keep: the content checksums taken before each snapshot.
    assert_eq!(sums_after, sums_before);
    // Now they agree; a second sync recovers nothing and reports nothing.
    let again = dr::sync::sync_policy(
        &fresh,
        &b.protect.longhorn,
        &b.protect.store,
        &b.protect.verifier,
        &b.policy,
        true,
        &dr::clock::Clock::System,
    )
    .await
    .unwrap();
    assert!(
        again.recovered.is_empty() && again.differences.is_empty(),
        "{again:?}"
    );
    // A backup deleted behind dr's back is reported, not silently dropped.
    let victim = &before[0].2[0];
    let point = fresh
        .live_points(&b.policy.name)
        .await
        .unwrap()
        .pop()
        .unwrap();
    let vol = fresh
        .backups_of(point.id)
        .await
        .unwrap()
        .into_iter()
        .find(|x| x.backup_name.as_deref() == Some(victim.as_str()))
        .unwrap()
        .volume;
    b.protect
        .longhorn
        .delete_backup(vol.as_str(), victim, Duration::from_secs(30))
        .await
        .unwrap();
    let r = dr::sync::sync_policy(
        &fresh,
        &b.protect.longhorn,
        &b.protect.store,
        &b.protect.verifier,
        &b.policy,
        true,
        &dr::clock::Clock::System,
    )
    .await
    .unwrap();
    assert_eq!(r.differences.len(), 1, "{r:?}");
    assert!(
        r.differences[0].what.contains(victim.as_str())
            && r.differences[0].what.contains("missing from the store")
    );
    b.ns.delete().await;
    b.emu.shutdown().await;
}

/// dr's snapshots of a volume, newest last (by name: they carry the tick).
async fn dr_snapshots(b: &Bed, volume: &str) -> Vec<String> {
    let mut names: Vec<String> = b
        .protect
        .longhorn
        .list_snapshots(volume)
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.name.starts_with("dr-") && !s.mark_removed)
        .map(|s| s.name)
        .collect();
    names.sort();
    names
}

/// dr's snapshots of `volume` once Longhorn has finished deleting what dr
/// asked it to: a Snapshot CR's deletion is asynchronous (the CR is listed
/// until the engine removes the snapshot), so this waits, up to 10 s, until
/// `done` holds of the list.
async fn settled_dr_snapshots(
    b: &Bed,
    volume: &str,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let names = dr_snapshots(b, volume).await;
        if done(&names) || std::time::Instant::now() > deadline {
            return names;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Longhorn keeps every snapshot of an on-demand backup (the cleanup setting
/// is off by default): dr deletes its older ones after each completed
/// backup, keeping the newest, and never touches a snapshot it did not make.
#[tokio::test]
async fn dr_keeps_one_snapshot_of_its_own_per_volume_and_no_one_elses_goes() {
    let b = bed("{}").await;
    let (volumes, _) =
        dr::cluster::resolve_volumes(&b.protect.kube, &b.policy.namespace, &b.policy.selector)
            .await
            .unwrap();
    let lh = &b.protect.longhorn;
    let first = volumes[0].volume.to_string();
    let labels = std::collections::BTreeMap::new();
    lh.ensure_snapshot(&first, "before-upgrade", &labels, Duration::from_secs(20))
        .await
        .unwrap();
    for n in (0..4).rev() {
        let r = b.protect.tick(&b.policy, tick(n), quiet()).await.unwrap();
        assert_eq!(r.state, PointState::Complete, "{r:?}");
    }
    for v in &volumes {
        let vol = v.volume.as_str();
        let newest = dr::backup::snapshot_name(b.policy.name.as_str(), tick(0), vol);
        let want = vec![newest];
        let left = settled_dr_snapshots(&b, vol, |names| names == want.as_slice()).await;
        assert_eq!(left, want, "{vol}");
    }
    let kept = lh.snapshot(&first, "before-upgrade").await.unwrap();
    assert!(
        kept.is_some_and(|s| !s.mark_removed),
        "the user's snapshot stays"
    );
    b.ns.delete().await;
    b.emu.shutdown().await;
}

/// With a snapshot limit of 2 (Longhorn refuses a third snapshot), every
/// tick still completes: dr never holds more than the newest of its own and
/// the one being made.
#[tokio::test]
async fn ticks_go_on_under_a_snapshot_limit_of_two() {
    let b = bed_with("{}", &[("snapshot-max-count", "2")]).await;
    for n in (0..6).rev() {
        let r = b.protect.tick(&b.policy, tick(n), quiet()).await.unwrap();
        assert_eq!(r.state, PointState::Complete, "tick {n}: {r:?}");
    }
    let (volumes, _) =
        dr::cluster::resolve_volumes(&b.protect.kube, &b.policy.namespace, &b.policy.selector)
            .await
            .unwrap();
    for v in &volumes {
        let left = settled_dr_snapshots(&b, v.volume.as_str(), |names| names.len() == 1).await;
        assert_eq!(left.len(), 1, "{left:?}");
    }
    b.ns.delete().await;
    b.emu.shutdown().await;
}

/// Longhorn freezes the filesystem for a snapshot when the setting says so
/// (or the volume overrides it): the point records which it was.
#[tokio::test]
async fn a_point_records_whether_its_filesystems_were_frozen() {
    let b = bed_with(
        "{}",
        &[("freeze-filesystem-for-snapshot", "{\"v1\":\"true\"}")],
    )
    .await;
    let r = b.protect.tick(&b.policy, tick(0), quiet()).await.unwrap();
    assert_eq!(r.state, PointState::Complete, "{r:?}");
    let point = b.protect.catalog.point(r.point_id).await.unwrap();
    assert_eq!(
        point.consistency,
        Some(dr::catalog::Consistency::FilesystemFrozen)
    );
    b.emu
        .control()
        .set_setting("freeze-filesystem-for-snapshot", "{\"v1\":\"false\"}")
        .await
        .unwrap();
    let r = b.protect.tick(&b.policy, tick(1), quiet()).await.unwrap();
    let point = b.protect.catalog.point(r.point_id).await.unwrap();
    assert_eq!(
        point.consistency,
        Some(dr::catalog::Consistency::CrashConsistent)
    );
    b.ns.delete().await;
    b.emu.shutdown().await;
}

/// A Longhorn older than dr supports fails the tick with what is supported,
/// before anything is asked of it.
#[tokio::test]
async fn a_tick_against_an_unsupported_longhorn_fails_with_what_is_supported() {
    let b = bed("{}").await;
    b.emu.control().set_version("v1.8.0").await.unwrap();
    let r = b.protect.tick(&b.policy, tick(0), quiet()).await.unwrap();
    assert_eq!(r.state, PointState::Failed, "{r:?}");
    let reason = r.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("v1.8.0") && reason.contains("v1.8.1 or later"),
        "{reason}"
    );
    let stats = b.emu.control().stats().await.unwrap();
    assert_eq!(stats.requests.get("snapshotCRCreate"), None, "{stats:?}");
    b.ns.delete().await;
    b.emu.shutdown().await;
}

/// Retention records its intent before it deletes: a prune cut short while
/// deleting (as by a crash) leaves its points pruned, never planned again,
/// and the next prune deletes what is left, marking each row with its time.
#[tokio::test]
async fn a_prune_cut_short_never_leaves_a_plannable_point_and_the_next_finishes_it() {
    let b = bed("{last: 1, hourly: 0, daily: 0, weekly: 0, monthly: 0}").await;
    let mut ids = Vec::new();
    for n in (0..3).rev() {
        let r = b.protect.tick(&b.policy, tick(n), quiet()).await.unwrap();
        assert_eq!(r.state, PointState::Complete, "{r:?}");
        ids.push(r.point_id);
    }
    let catalog = &b.protect.catalog;
    let ctl = b.emu.control();
    ctl.set_fault(Fault {
        operation: "backupDelete".into(),
        hang: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let verdicts = dr::prune::plan(catalog, &b.policy, Utc::now())
        .await
        .unwrap();
    let (lh, store, policy) = (&b.protect.longhorn, &b.protect.store, &b.policy.name);
    let execute = |verdicts: Vec<dr::retention::Verdict>| async move {
        dr::prune::execute(
            catalog,
            lh,
            store,
            policy,
            &verdicts,
            Duration::from_secs(30),
            &dr::clock::Clock::System,
        )
        .await
    };
    let cut = tokio::time::timeout(Duration::from_secs(1), execute(verdicts)).await;
    assert!(cut.is_err(), "the prune was cut short while deleting");
    for id in &ids[..2] {
        let p = catalog.point(*id).await.unwrap();
        assert_eq!(p.state, PointState::Pruned, "intent first: {p:?}");
        assert!(p.pruned_at.is_some());
    }
    // The plan never offers a point whose backups are going.
    let planned = catalog
        .newest_complete_at_or_before(&b.policy.name, tick(1) + chrono::TimeDelta::minutes(1))
        .await
        .unwrap();
    assert_eq!(planned, None, "{planned:?}");
    assert_eq!(
        ctl.stats().await.unwrap().backups.len(),
        6,
        "nothing deleted yet"
    );

    ctl.clear_faults().await.unwrap();
    let r = execute(Vec::new()).await.unwrap();
    assert_eq!((r.points_pruned, r.backups_deleted), (0, 4), "{r:?}");
    assert!(r.errors.is_empty(), "{r:?}");
    for id in &ids[..2] {
        for row in catalog.backups_of(*id).await.unwrap() {
            assert_eq!(row.state, BackupState::Pruned, "{row:?}");
            assert!(row.pruned_at.is_some(), "{row:?}");
        }
    }
    assert_eq!(
        ctl.stats().await.unwrap().backups.len(),
        2,
        "the kept point's"
    );
    b.ns.delete().await;
    b.emu.shutdown().await;
}

/// A tick killed after its backups completed but before they were checked
/// in the store is adopted at the next start: the adopted tick checks them
/// before its point counts for the RPO (it did not, and the RPO basis aged).
#[tokio::test]
async fn an_adopted_tick_verifies_the_backups_it_finds_unverified() {
    let b = bed("{}").await;
    let catalog = &b.protect.catalog;
    let done = b.protect.tick(&b.policy, tick(1), quiet()).await.unwrap();
    assert_eq!(done.state, PointState::Complete, "{done:?}");
    // The state a kill leaves: tick(0)'s point pending, its backups completed
    // in Longhorn and recorded so, never checked.
    let point = catalog
        .begin_point(&b.policy.name, tick(0), Utc::now())
        .await
        .unwrap();
    let made = catalog.backups_of(done.point_id).await.unwrap();
    for m in &made {
        let row = catalog
            .record_backup(&dr::catalog::NewBackup {
                point_id: point.id,
                volume: m.volume.clone(),
                pvc: m.pvc.clone(),
                snapshot_name: dr::backup::snapshot_name(
                    b.policy.name.as_str(),
                    tick(0),
                    m.volume.as_str(),
                ),
                requested_at: Utc::now(),
            })
            .await
            .unwrap();
        for state in [BackupState::BackingUp, BackupState::Completed] {
            let u = dr::catalog::BackupUpdate {
                state: Some(state),
                backup_name: m.backup_name.clone(),
                backup_url: m
                    .backup_url
                    .clone()
                    .filter(|_| state == BackupState::Completed),
                snapshot_at: m.snapshot_at,
                ..Default::default()
            };
            catalog.update_backup(row.id, &u).await.unwrap();
        }
    }
    let adopted = b.protect.tick(&b.policy, tick(0), quiet()).await.unwrap();
    assert_eq!(adopted.point_id, point.id);
    assert!(
        adopted
            .volumes
            .iter()
            .all(|v| v.verification == Verification::Verified),
        "{adopted:?}"
    );
    let newest = catalog
        .newest_verified_point(&b.policy.name)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(newest.id, point.id, "the adopted point counts for the RPO");
    b.ns.delete().await;
    b.emu.shutdown().await;
}
