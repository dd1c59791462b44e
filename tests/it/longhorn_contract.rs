//! Contract tests: dr's Longhorn client against the project's Longhorn
//! emulator (tests/longhorn-emulator), which writes real backups to the test
//! bed's S3 server. Every happy path, each fault kind, slow and failed
//! backups, a timeout followed by a retry that does not make a second backup,
//! and restores whose bytes equal the bytes at backup time. Backups are
//! followed as a tick follows them, through a `VolumeWatch` (one shared
//! volume listing), whose contract has tests of its own here.
//!
//! The emulator runs at `Timings::fast()`: Longhorn's whole sequence in
//! milliseconds. A volume made by the control is detached, so its snapshot
//! waits for an attachment and its backup for another; a backup shows `""`
//! until the backup monitor's first poll (`Pending` only while its snapshot
//! is not ready), then changes only at the monitor's polls; a deleted
//! snapshot stays listed until it is purged (longhorn_lifecycle.rs tests
//! these steps themselves).

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use crate::harness::testbed;
use dr::longhorn::{
    ClientConfig, CompletedBackup, LhBackupState, LonghornClient, LonghornError, VolumeWatch,
};
use longhorn_emulator::{Emulator, EmulatorConfig, Fault, Timings};
use std::collections::BTreeMap;
use std::time::Duration;

pub(crate) const MIB: u64 = 1024 * 1024;

pub(crate) fn prefix() -> String {
    format!("contract-{:016x}", rand::random::<u64>())
}

pub(crate) async fn emulator_with(timings: Timings) -> Emulator {
    let store = testbed::get().emulator_store(&prefix()).await;
    let mut cfg = EmulatorConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.store = Some(store);
    cfg.timings = timings;
    Emulator::start(cfg).await.expect("emulator starts")
}

pub(crate) async fn emulator() -> Emulator {
    emulator_with(Timings::fast()).await
}

pub(crate) fn client(emu: &Emulator, timeout: Duration) -> LonghornClient {
    let mut cfg = ClientConfig::new(emu.url());
    cfg.timeout = timeout;
    cfg.poll = Duration::from_millis(25);
    cfg.backoff_base = Duration::from_millis(20);
    cfg.backoff_max = Duration::from_millis(100);
    cfg.discover_for = Duration::from_secs(5);
    cfg.follow_interval = Duration::from_millis(100);
    LonghornClient::new(cfg).unwrap()
}

/// Follows a backup to its end through a watch of its own, as a tick does.
pub(crate) async fn follow(
    lh: &LonghornClient,
    vol: &str,
    backup: &str,
    wait: Duration,
    seen: &mut Vec<i64>,
) -> Result<CompletedBackup, LonghornError> {
    VolumeWatch::new(lh.clone())
        .follow(vol, backup, wait, &mut |p| seen.push(p))
        .await
}

pub(crate) fn no_labels() -> BTreeMap<String, String> {
    BTreeMap::new()
}

/// Data that differs per block and per `seed`, with a sparse hole in the middle.
pub(crate) fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            if (3 * MIB as usize..4 * MIB as usize).contains(&i) {
                0
            } else {
                (i as u8) ^ seed ^ ((i >> 12) as u8)
            }
        })
        .collect()
}

/// A volume with data, snapshotted and backed up; returns the backup's name and URL.
/// An 8 MiB volume with `written` bytes of pattern `seed` and a ready snapshot `snap`.
async fn snapshotted(
    lh: &LonghornClient,
    emu: &Emulator,
    vol: &str,
    written: u64,
    seed: u8,
    snap: &str,
) {
    let ctl = emu.control();
    ctl.create_volume(vol, 8 * MIB).await.unwrap();
    ctl.write(vol, 0, &pattern(seed, written as usize))
        .await
        .unwrap();
    lh.ensure_snapshot(vol, snap, &no_labels(), Duration::from_secs(5))
        .await
        .unwrap();
}

pub(crate) async fn backed_up(
    lh: &LonghornClient,
    emu: &Emulator,
    vol: &str,
    seed: u8,
) -> (String, String) {
    let ctl = emu.control();
    if lh.volume(vol).await.unwrap().is_none() {
        ctl.create_volume(vol, 8 * MIB).await.unwrap();
    }
    ctl.write(vol, 0, &pattern(seed, 6 * MIB as usize))
        .await
        .unwrap();
    let snap = format!("dr-{vol}-{seed}");
    let s = lh
        .ensure_snapshot(vol, &snap, &no_labels(), Duration::from_secs(10))
        .await
        .unwrap();
    assert!(s.ready_to_use);
    let b = lh.request_backup(vol, &snap, &no_labels()).await.unwrap();
    let mut seen = Vec::new();
    let done = follow(lh, vol, &b.backup, Duration::from_secs(30), &mut seen)
        .await
        .unwrap();
    let full = lh.backup(vol, &b.backup).await.unwrap().unwrap();
    assert_eq!(full.state, LhBackupState::Completed);
    assert_eq!(done.url, full.url, "the listing's URL is the backup's");
    assert_eq!(seen.last(), Some(&100));
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "progress never goes back: {seen:?}"
    );
    (full.name, done.url)
}

#[tokio::test]
async fn happy_path_snapshot_backup_list_and_target() {
    let emu = emulator().await;
    let lh = client(&emu, Duration::from_secs(5));
    let target = lh.backup_target().await.unwrap();
    assert!(target.available, "{target:?}");
    assert!(target.backup_target_url.starts_with("s3://"), "{target:?}");

    let (name, url) = backed_up(&lh, &emu, "vol-happy", 1).await;
    assert!(
        name.starts_with("backup-") && name.len() == "backup-".len() + 16,
        "{name}"
    );
    assert!(
        url.contains(&format!("backup={name}")) && url.contains("volume=vol-happy"),
        "{url}"
    );

    let listed = lh.backups_of("vol-happy").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].snapshot_name, "dr-vol-happy-1");
    assert!(listed[0].size.unwrap_or(0) > 0);
    assert!(!listed[0].created.is_empty());

    let bv = lh.backup_volume_of("vol-happy").await.unwrap().unwrap();
    assert_eq!(bv.volume_name, "vol-happy");
    assert_ne!(
        bv.name, "vol-happy",
        "backup volume names are not volume names since 1.8"
    );
    assert_eq!(bv.last_backup_name, name);

    let v = lh.volume("vol-happy").await.unwrap().unwrap();
    assert_eq!(v.last_backup, name);
    assert!(lh.volume("no-such-volume").await.unwrap().is_none());
    assert!(
        lh.list_volumes()
            .await
            .unwrap()
            .iter()
            .any(|v| v.name == "vol-happy")
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn snapshots_and_backup_requests_are_idempotent() {
    let emu = emulator().await;
    let lh = client(&emu, Duration::from_secs(5));
    let (first, _) = backed_up(&lh, &emu, "vol-idem", 2).await;
    // The same snapshot again: found, not made twice; the same backup adopted.
    lh.ensure_snapshot(
        "vol-idem",
        "dr-vol-idem-2",
        &no_labels(),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let again = lh
        .request_backup("vol-idem", "dr-vol-idem-2", &no_labels())
        .await
        .unwrap();
    assert_eq!(again.backup, first);
    let stats = emu.control().stats().await.unwrap();
    assert_eq!(stats.backups_created, 1, "{stats:?}");
    assert_eq!(stats.requests.get("snapshotBackup"), Some(&1), "{stats:?}");
    emu.shutdown().await;
}

#[tokio::test]
async fn a_timed_out_backup_request_is_found_not_repeated() {
    let emu = emulator().await;
    let lh = client(&emu, Duration::from_millis(400));
    let ctl = emu.control();
    snapshotted(&lh, &emu, "vol-slowreq", 2 * MIB, 3, "snap-a").await;
    // Longhorn does the work but its answer comes after the client's timeout.
    ctl.set_fault(Fault {
        operation: "snapshotBackup".into(),
        latency_ms: 1500,
        after_effect: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let found = lh
        .request_backup("vol-slowreq", "snap-a", &no_labels())
        .await
        .unwrap();
    ctl.clear_faults().await.unwrap();
    // A retry of the whole request (as after a restart) adopts it too.
    let again = lh
        .request_backup("vol-slowreq", "snap-a", &no_labels())
        .await
        .unwrap();
    assert_eq!(found, again);
    follow(
        &lh,
        "vol-slowreq",
        &found.backup,
        Duration::from_secs(30),
        &mut Vec::new(),
    )
    .await
    .unwrap();
    let stats = ctl.stats().await.unwrap();
    assert_eq!(stats.backups_created, 1, "one backup, not two: {stats:?}");
    assert_eq!(stats.requests.get("snapshotBackup"), Some(&1), "{stats:?}");
    emu.shutdown().await;
}

#[tokio::test]
async fn an_error_answer_after_the_backup_was_made_is_adopted() {
    let emu = emulator().await;
    let lh = client(&emu, Duration::from_secs(5));
    let ctl = emu.control();
    snapshotted(&lh, &emu, "vol-500", MIB, 6, "snap-500").await;
    // Longhorn makes the backup, then answers 500.
    ctl.set_fault(Fault {
        operation: "snapshotBackup".into(),
        error_rate: 1.0,
        after_effect: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let found = lh
        .request_backup("vol-500", "snap-500", &no_labels())
        .await
        .unwrap();
    ctl.clear_faults().await.unwrap();
    follow(
        &lh,
        "vol-500",
        &found.backup,
        Duration::from_secs(30),
        &mut Vec::new(),
    )
    .await
    .unwrap();
    let stats = ctl.stats().await.unwrap();
    assert_eq!(stats.backups_created, 1, "{stats:?}");
    assert_eq!(stats.requests.get("snapshotBackup"), Some(&1), "{stats:?}");
    emu.shutdown().await;
}

#[tokio::test]
async fn reads_retry_through_transient_errors_and_report_persistent_ones() {
    let emu = emulator().await;
    let lh = client(&emu, Duration::from_secs(2));
    let ctl = emu.control();
    ctl.create_volume("vol-flaky", 4 * MIB).await.unwrap();
    ctl.set_fault(Fault {
        operation: "getVolume".into(),
        error_rate: 1.0,
        ..Default::default()
    })
    .await
    .unwrap();
    match lh.volume("vol-flaky").await {
        Err(LonghornError::Refused {
            status: 500,
            message,
            ..
        }) => {
            assert!(message.contains("injected"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    let before = ctl
        .stats()
        .await
        .unwrap()
        .requests
        .get("getVolume")
        .copied()
        .unwrap_or(0);
    assert!(
        before >= 5,
        "a read is tried 1 + read_retries times: {before}"
    );
    // Errors that clear while the client backs off are absorbed.
    let ctl2 = ctl.clone();
    let clear = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(60)).await;
        ctl2.clear_faults().await.unwrap();
    });
    let mut slow = ClientConfig::new(emu.url());
    slow.backoff_base = Duration::from_millis(100);
    slow.backoff_max = Duration::from_millis(200);
    let patient = LonghornClient::new(slow).unwrap();
    ctl.set_fault(Fault {
        operation: "getVolume".into(),
        error_rate: 1.0,
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(patient.volume("vol-flaky").await.unwrap().is_some());
    clear.await.unwrap();
    emu.shutdown().await;
}

#[tokio::test]
async fn latency_hang_and_down_are_timeouts_or_unreachable_and_retryable() {
    let emu = emulator().await;
    let mut cfg = ClientConfig::new(emu.url());
    cfg.timeout = Duration::from_millis(300);
    cfg.read_retries = 0;
    let lh = LonghornClient::new(cfg).unwrap();
    let ctl = emu.control();
    ctl.create_volume("vol-net", 4 * MIB).await.unwrap();

    ctl.set_fault(Fault {
        operation: "*".into(),
        latency_ms: 1000,
        ..Default::default()
    })
    .await
    .unwrap();
    let e = lh.volume("vol-net").await.unwrap_err();
    assert!(
        matches!(e, LonghornError::Timeout { .. }) && e.is_retryable(),
        "{e:?}"
    );

    ctl.set_fault(Fault {
        operation: "listVolumes".into(),
        hang: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let e = lh.list_volumes().await.unwrap_err();
    assert!(matches!(e, LonghornError::Timeout { .. }), "{e:?}");
    ctl.clear_faults().await.unwrap();

    ctl.set_down(true).await.unwrap();
    let e = lh.volume("vol-net").await.unwrap_err();
    assert!(
        matches!(e, LonghornError::Unreachable { .. }) && e.is_retryable(),
        "{e:?}"
    );
    ctl.set_down(false).await.unwrap();
    assert!(lh.volume("vol-net").await.unwrap().is_some());

    // Refusals are not retryable and carry Longhorn's message.
    let e = lh
        .pvc_create("no-such-volume", "ns", "claim")
        .await
        .unwrap_err();
    assert!(!e.is_retryable(), "{e:?}");
    emu.shutdown().await;
}

#[tokio::test]
async fn slow_backups_hit_the_deadline_then_complete() {
    let mut t = Timings::fast();
    t.backup_bytes_per_sec = 2 * MIB; // 6 MiB of data: about 3 s
    let emu = emulator_with(t).await;
    let lh = client(&emu, Duration::from_secs(5));
    snapshotted(&lh, &emu, "vol-slow", 6 * MIB, 4, "snap-slow").await;
    let b = lh
        .request_backup("vol-slow", "snap-slow", &no_labels())
        .await
        .unwrap();
    let mut seen = Vec::new();
    let e = follow(
        &lh,
        "vol-slow",
        &b.backup,
        Duration::from_millis(800),
        &mut seen,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(e, LonghornError::Deadline { .. }) && e.is_retryable(),
        "{e:?}"
    );
    assert!(seen.iter().all(|p| *p < 100), "{seen:?}");
    let done = follow(
        &lh,
        "vol-slow",
        &b.backup,
        Duration::from_secs(30),
        &mut seen,
    )
    .await
    .unwrap();
    assert_eq!(
        lh.backup("vol-slow", &b.backup)
            .await
            .unwrap()
            .unwrap()
            .state,
        LhBackupState::Completed
    );
    assert!(!done.url.is_empty(), "{done:?}");
    assert!(
        seen.iter().any(|p| *p > 0 && *p < 100),
        "progress was reported on the way: {seen:?}"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn failed_backups_and_refused_requests_are_reported() {
    let emu = emulator().await;
    let lh = client(&emu, Duration::from_secs(5));
    let ctl = emu.control();
    snapshotted(&lh, &emu, "vol-fail", MIB, 5, "snap-f").await;
    ctl.set_fault(Fault {
        operation: "backupUpload".into(),
        error_rate: 1.0,
        ..Default::default()
    })
    .await
    .unwrap();
    let b = lh
        .request_backup("vol-fail", "snap-f", &no_labels())
        .await
        .unwrap();
    match follow(
        &lh,
        "vol-fail",
        &b.backup,
        Duration::from_secs(30),
        &mut Vec::new(),
    )
    .await
    {
        Err(LonghornError::BackupFailed { state, message, .. }) => {
            assert_eq!(state, LhBackupState::Error);
            assert!(!message.is_empty());
        }
        other => panic!("{other:?}"),
    }
    ctl.clear_faults().await.unwrap();
    // A backup of a snapshot that does not exist is refused or fails: never "completed".
    let r = lh
        .request_backup("vol-fail", "no-such-snapshot", &no_labels())
        .await;
    if let Ok(b) = r {
        let e = follow(
            &lh,
            "vol-fail",
            &b.backup,
            Duration::from_secs(30),
            &mut Vec::new(),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, LonghornError::BackupFailed { .. }), "{e:?}");
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn a_target_without_store_refuses_backups() {
    let mut cfg = EmulatorConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.timings = Timings::fast();
    let emu = Emulator::start(cfg).await.unwrap();
    let lh = client(&emu, Duration::from_secs(5));
    assert!(!lh.backup_target().await.unwrap().available);
    emu.control()
        .create_volume("vol-nt", 4 * MIB)
        .await
        .unwrap();
    lh.ensure_snapshot("vol-nt", "snap-nt", &no_labels(), Duration::from_secs(5))
        .await
        .unwrap();
    match lh.request_backup("vol-nt", "snap-nt", &no_labels()).await {
        Err(LonghornError::Refused { message, .. }) => {
            assert!(message.contains("not available"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn restore_brings_back_the_bytes_of_the_backup() {
    let emu = emulator().await;
    let lh = client(&emu, Duration::from_secs(5));
    let ctl = emu.control();
    let (_, url1) = backed_up(&lh, &emu, "vol-data", 7).await;
    let at_backup = ctl.checksum("vol-data").await.unwrap();
    let bytes_at_backup = ctl.read("vol-data").await.unwrap();
    // The volume changes after the backup; a second backup shares unchanged blocks.
    ctl.write("vol-data", MIB, &pattern(8, MIB as usize))
        .await
        .unwrap();
    let (_, url2) = backed_up(&lh, &emu, "vol-data", 9).await;
    assert_ne!(ctl.checksum("vol-data").await.unwrap(), at_backup);

    let v = lh
        .create_restored_volume("vol-data-r1", &url1, Some(1))
        .await
        .unwrap();
    assert_eq!(v.name, "vol-data-r1");
    // Asking again (a resumed restore) adopts the same volume.
    lh.create_restored_volume("vol-data-r1", &url1, Some(1))
        .await
        .unwrap();
    let mut seen = Vec::new();
    let done = lh
        .wait_restored("vol-data-r1", Duration::from_secs(60), &mut |p| {
            seen.push(p)
        })
        .await
        .unwrap();
    assert!(done.restore_done());
    assert_eq!(done.from_backup, url1);
    assert_eq!(done.size, Some(8 * MIB));
    assert_eq!(ctl.checksum("vol-data-r1").await.unwrap(), at_backup);
    assert!(
        ctl.read("vol-data-r1").await.unwrap() == bytes_at_backup,
        "byte for byte"
    );
    assert_eq!(seen.last(), Some(&100));

    // The same name for another backup is refused, not silently reused.
    let e = lh
        .create_restored_volume("vol-data-r1", &url2, None)
        .await
        .unwrap_err();
    assert!(matches!(e, LonghornError::NameTaken { .. }), "{e:?}");
    // A restore from a backup that does not exist is refused.
    let bogus = url1.replace("backup=backup-", "backup=backup-ffff");
    assert!(
        lh.create_restored_volume("vol-data-r2", &bogus, None)
            .await
            .is_err()
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn failed_restores_are_reported() {
    let emu = emulator().await;
    let lh = client(&emu, Duration::from_secs(5));
    let ctl = emu.control();
    let (_, url) = backed_up(&lh, &emu, "vol-rf", 11).await;
    ctl.set_fault(Fault {
        operation: "restore".into(),
        error_rate: 1.0,
        ..Default::default()
    })
    .await
    .unwrap();
    lh.create_restored_volume("vol-rf-r", &url, None)
        .await
        .unwrap();
    match lh
        .wait_restored("vol-rf-r", Duration::from_secs(60), &mut |_| {})
        .await
    {
        Err(LonghornError::RestoreFailed { message, .. }) => assert!(!message.is_empty()),
        other => panic!("{other:?}"),
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn deleting_backups_is_idempotent() {
    let emu = emulator().await;
    let lh = client(&emu, Duration::from_secs(5));
    let (name, _) = backed_up(&lh, &emu, "vol-del", 12).await;
    lh.delete_backup("vol-del", &name, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(lh.backup("vol-del", &name).await.unwrap().is_none());
    lh.delete_backup("vol-del", &name, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(!emu.control().stats().await.unwrap().backups.contains(&name));
    emu.shutdown().await;
}

// ---- VolumeWatch: the shared listing a tick follows its backups through ----

/// A volume with data and a ready snapshot, its backup asked for once
/// (`start_backup`, as a tick does), not looked for yet.
async fn backup_started(lh: &LonghornClient, emu: &Emulator, vol: &str, seed: u8) -> String {
    let ctl = emu.control();
    ctl.create_volume(vol, 8 * MIB).await.unwrap();
    ctl.write(vol, 0, &pattern(seed, 2 * MIB as usize))
        .await
        .unwrap();
    let snap = format!("dr-{vol}-{seed}");
    lh.ensure_snapshot(vol, &snap, &no_labels(), Duration::from_secs(10))
        .await
        .unwrap();
    lh.start_backup(vol, &snap, &no_labels()).await.unwrap();
    snap
}

fn requests(stats: &longhorn_emulator::Stats, op: &str) -> u64 {
    stats.requests.get(op).copied().unwrap_or(0)
}

#[tokio::test]
async fn a_watch_discovers_a_backup_and_follows_it_to_completion() {
    // Uploads of half a second: the backup is surely still running when the
    // watch starts following it (at the fast timings a loaded machine could
    // see it complete in the listing that discovered it).
    let emu = emulator_with(Timings {
        backup_bytes_per_sec: 4 << 20,
        ..Timings::fast()
    })
    .await;
    let lh = client(&emu, Duration::from_secs(5));
    let snap = backup_started(&lh, &emu, "vol-watch", 21).await;
    let watch = VolumeWatch::new(lh.clone());
    let backup = watch
        .discover("vol-watch", &snap, Duration::from_secs(10))
        .await
        .expect("the backup shows in the listing by its snapshot");
    let by_list = lh
        .find_backup_of_snapshot("vol-watch", &snap)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(backup, by_list.backup, "the backup list agrees");
    let before = emu.control().stats().await.unwrap();
    let mut seen = Vec::new();
    let done = watch
        .follow("vol-watch", &backup, Duration::from_secs(30), &mut |p| {
            seen.push(p)
        })
        .await
        .unwrap();
    let after = emu.control().stats().await.unwrap();
    let full = lh.backup("vol-watch", &backup).await.unwrap().unwrap();
    assert_eq!(full.state, LhBackupState::Completed);
    assert_eq!(done.url, full.url);
    assert_eq!(done.size, full.size);
    assert!(done.size.unwrap_or(0) > 0, "{done:?}");
    assert_eq!(
        done.snapshot_created, None,
        "the listing had the URL: the backup was not read"
    );
    assert_eq!(seen.last(), Some(&100));
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "progress never goes back: {seen:?}"
    );
    // Followed from the volume listing alone: no per-backup reads.
    for op in ["backupListByVolume", "getVolume"] {
        assert_eq!(
            requests(&after, op),
            requests(&before, op),
            "{op} while following: {after:?}"
        );
    }
    assert!(requests(&after, "listVolumes") > requests(&before, "listVolumes"));
    emu.shutdown().await;
}

#[tokio::test]
async fn a_watch_does_not_discover_what_was_not_asked_for() {
    let emu = emulator().await;
    let lh = client(&emu, Duration::from_secs(5));
    let snap = backup_started(&lh, &emu, "vol-nodisc", 22).await;
    let watch = VolumeWatch::new(lh.clone());
    // Another snapshot, and the right snapshot under another volume's name.
    let t0 = std::time::Instant::now();
    assert_eq!(
        watch
            .discover("vol-nodisc", "no-such-snapshot", Duration::from_millis(600))
            .await,
        None
    );
    assert!(
        t0.elapsed() >= Duration::from_millis(600),
        "waited `within`"
    );
    assert_eq!(
        watch
            .discover("other-volume", &snap, Duration::from_millis(600))
            .await,
        None
    );
    assert!(
        watch
            .discover("vol-nodisc", &snap, Duration::from_secs(10))
            .await
            .is_some()
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn a_watch_reports_a_backup_that_errors() {
    let emu = emulator().await;
    let lh = client(&emu, Duration::from_secs(5));
    let ctl = emu.control();
    ctl.set_fault(Fault {
        operation: "backupUpload".into(),
        error_rate: 1.0,
        ..Default::default()
    })
    .await
    .unwrap();
    let snap = backup_started(&lh, &emu, "vol-werr", 23).await;
    let watch = VolumeWatch::new(lh.clone());
    let backup = lh
        .discover_backup("vol-werr", &snap, "test")
        .await
        .unwrap()
        .backup;
    let mut seen = Vec::new();
    match watch
        .follow("vol-werr", &backup, Duration::from_secs(30), &mut |p| {
            seen.push(p)
        })
        .await
    {
        Err(e @ LonghornError::BackupFailed { .. }) => {
            assert!(!e.is_retryable(), "{e:?}");
            let LonghornError::BackupFailed {
                volume,
                backup: b,
                state,
                message,
            } = e
            else {
                unreachable!()
            };
            assert_eq!((volume.as_str(), b.as_str()), ("vol-werr", backup.as_str()));
            assert_eq!(state, LhBackupState::Error);
            assert!(!message.is_empty(), "Longhorn's message is kept");
        }
        other => panic!("{other:?}"),
    }
    assert!(seen.iter().all(|p| *p < 100), "{seen:?}");
    emu.shutdown().await;
}

#[tokio::test]
async fn one_watch_follows_several_volumes_with_one_listing_per_poll() {
    let mut t = Timings::fast();
    t.backup_bytes_per_sec = 4 * MIB; // 2 MiB each: about half a second
    let emu = emulator_with(t).await;
    let lh = client(&emu, Duration::from_secs(5));
    let vols = ["vol-many-a", "vol-many-b", "vol-many-c", "vol-many-d"];
    let mut backups = Vec::new();
    for (i, v) in vols.iter().enumerate() {
        let snap = backup_started(&lh, &emu, v, 30 + i as u8).await;
        let b = lh.discover_backup(v, &snap, "test").await.unwrap().backup;
        backups.push((*v, b));
    }
    let watch = VolumeWatch::new(lh.clone());
    let before = emu.control().stats().await.unwrap();
    let started = std::time::Instant::now();
    let results = futures::future::join_all(backups.iter().map(|(v, b)| {
        let watch = &watch;
        async move {
            let mut seen = Vec::new();
            let r = watch
                .follow(v, b, Duration::from_secs(30), &mut |p| seen.push(p))
                .await;
            (r, seen)
        }
    }))
    .await;
    let took = started.elapsed();
    let after = emu.control().stats().await.unwrap();
    for ((v, b), (r, seen)) in backups.iter().zip(results) {
        let done = r.unwrap_or_else(|e| panic!("{v}: {e}"));
        let full = lh.backup(v, b).await.unwrap().unwrap();
        assert_eq!(done.url, full.url, "{v}");
        assert_eq!(seen.last(), Some(&100), "{v}: {seen:?}");
    }
    // One listing per interval serves every follower: not one per backup.
    let listings = requests(&after, "listVolumes") - requests(&before, "listVolumes");
    let polls = (took.as_millis() / 100) as u64 + 2;
    assert!(
        listings <= polls,
        "{listings} listings in {took:?} for {} backups (interval 100 ms)",
        vols.len()
    );
    for op in ["backupListByVolume", "getVolume"] {
        assert_eq!(requests(&after, op), requests(&before, op), "{op}");
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn a_watch_stops_listing_when_no_one_follows() {
    let emu = emulator().await;
    let lh = client(&emu, Duration::from_secs(5));
    let (name, _) = backed_up(&lh, &emu, "vol-idle", 24).await;
    let watch = VolumeWatch::new(lh.clone());
    watch
        .follow("vol-idle", &name, Duration::from_secs(30), &mut |_| {})
        .await
        .unwrap();
    // The poller ends within an interval of the last follower leaving.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = requests(&emu.control().stats().await.unwrap(), "listVolumes");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        requests(&emu.control().stats().await.unwrap(), "listVolumes"),
        idle,
        "no listing while no one follows"
    );
    // And the same watch starts listing again for the next follower.
    let done = watch
        .follow("vol-idle", &name, Duration::from_secs(30), &mut |_| {})
        .await
        .unwrap();
    assert!(!done.url.is_empty());
    assert!(requests(&emu.control().stats().await.unwrap(), "listVolumes") > idle);
    emu.shutdown().await;
}

#[tokio::test]
async fn a_watch_waits_through_an_unreachable_manager_and_fails_on_refused_listings() {
    let mut t = Timings::fast();
    t.backup_bytes_per_sec = 2 * MIB; // 2 MiB: about a second
    let emu = emulator_with(t).await;
    let mut cfg = ClientConfig::new(emu.url());
    cfg.timeout = Duration::from_millis(500);
    cfg.poll = Duration::from_millis(25);
    cfg.read_retries = 1;
    cfg.backoff_base = Duration::from_millis(10);
    cfg.backoff_max = Duration::from_millis(20);
    cfg.follow_interval = Duration::from_millis(100);
    let lh = LonghornClient::new(cfg).unwrap();
    let ctl = emu.control();
    let snap = backup_started(&lh, &emu, "vol-wdown", 25).await;
    let backup = lh
        .discover_backup("vol-wdown", &snap, "test")
        .await
        .unwrap()
        .backup;

    // Unreachable (retryable): the follower waits, and sees the end once
    // the manager answers again.
    ctl.set_down(true).await.unwrap();
    let watch = VolumeWatch::new(lh.clone());
    let up_again = {
        let ctl = ctl.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            ctl.set_down(false).await.unwrap();
        })
    };
    let done = watch
        .follow("vol-wdown", &backup, Duration::from_secs(30), &mut |_| {})
        .await
        .unwrap();
    up_again.await.unwrap();
    assert!(!done.url.is_empty(), "{done:?}");

    // Refused (not retryable, even after the read's retries): the follower
    // stops with the listing's error instead of waiting out its deadline.
    let snap2 = format!("{snap}-2");
    lh.ensure_snapshot("vol-wdown", &snap2, &no_labels(), Duration::from_secs(10))
        .await
        .unwrap();
    let b2 = lh
        .request_backup("vol-wdown", &snap2, &no_labels())
        .await
        .unwrap()
        .backup;
    ctl.set_fault(Fault {
        operation: "listVolumes".into(),
        error_rate: 1.0,
        ..Default::default()
    })
    .await
    .unwrap();
    let t0 = std::time::Instant::now();
    match watch
        .follow("vol-wdown", &b2, Duration::from_secs(30), &mut |_| {})
        .await
    {
        Err(LonghornError::ListingFailed { backup, message }) => {
            assert_eq!(backup, b2);
            assert!(message.contains("injected"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    ctl.clear_faults().await.unwrap();
    emu.shutdown().await;
}

#[tokio::test]
async fn a_watch_gives_up_on_a_backup_never_listed_at_its_deadline() {
    let emu = emulator().await;
    let lh = client(&emu, Duration::from_secs(5));
    emu.control()
        .create_volume("vol-never", 4 * MIB)
        .await
        .unwrap();
    let watch = VolumeWatch::new(lh.clone());
    let t0 = std::time::Instant::now();
    let e = watch
        .follow(
            "vol-never",
            "backup-0000000000000000",
            Duration::from_millis(700),
            &mut |_| {},
        )
        .await
        .unwrap_err();
    assert!(t0.elapsed() >= Duration::from_millis(700));
    match &e {
        LonghornError::Deadline { last, .. } => {
            assert!(last.contains("not listed"), "{last}");
            assert!(e.is_retryable());
        }
        other => panic!("{other:?}"),
    }
    emu.shutdown().await;
}
