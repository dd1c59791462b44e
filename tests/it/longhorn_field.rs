//! Longhorn as it really is: dr's client against behaviours of
//! longhorn-manager v1.12.1 that dr's own notes had missed, each modelled by
//! the emulator from Longhorn's source (the file and function are cited in
//! the emulator, and in dr where dr depends on them):
//! - a detached volume's snapshot carries a passing error while Longhorn
//!   attaches it (controller/snapshot_controller.go `reconcile`);
//! - past `snapshot-max-count` the Snapshot CR fails with "too many
//!   snapshots created" (longhorn-engine replicator.go `RemainSnapshots`);
//! - volume names over 40 characters are renamed by the volume mutator
//!   (webhook/resources/volume/mutator.go `Create`, util.AutoCorrectName);
//! - a manager without a route answers gorilla/mux's plain "404 page not
//!   found" (v1.8.0 has no `backupListByVolume`);
//! - `backupDelete` deletes by backup name (api/backup.go `BackupDelete`);
//! - a backup goes to its volume's own backup target;
//! - a restore onto fewer replicas than asked completes, and one onto none
//!   never starts (controller/volume_controller.go `reconcileVolumeCondition`).

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use crate::harness::testbed;
use crate::longhorn_contract::{MIB, backed_up, client, emulator, no_labels, pattern, prefix};
use dr::longhorn::LonghornError;
use std::time::Duration;

#[tokio::test]
async fn a_detached_volumes_snapshot_waits_through_the_attachment() {
    let emu = emulator().await;
    let lh = client(&emu, Duration::from_secs(5));
    let ctl = emu.control();
    let mut t = ctl.timings().await.unwrap();
    t.attach_ms = 400;
    ctl.set_timings(t).await.unwrap();
    ctl.create_volume("vol-det", 8 * MIB).await.unwrap();
    assert_eq!(
        lh.volume("vol-det").await.unwrap().unwrap().state,
        "detached"
    );
    let waiting = tokio::spawn({
        let lh = lh.clone();
        async move {
            lh.ensure_snapshot("vol-det", "snap-det", &no_labels(), Duration::from_secs(10))
                .await
        }
    });
    // While Longhorn attaches the volume, the CR says it waits.
    let mut seen = String::new();
    for _ in 0..40 {
        if let Some(s) = lh.snapshot("vol-det", "snap-det").await.unwrap()
            && !s.error.is_empty()
        {
            seen = s.error;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        seen.contains("Waiting for the volume to be attached"),
        "the passing error was shown: {seen:?}"
    );
    let s = waiting.await.unwrap().unwrap();
    assert!(s.ready_to_use && s.error.is_empty(), "{s:?}");
    emu.shutdown().await;
}

#[tokio::test]
async fn a_snapshot_past_the_limit_fails_as_the_limit() {
    let emu = emulator().await;
    let lh = client(&emu, Duration::from_secs(5));
    let ctl = emu.control();
    ctl.set_setting("snapshot-max-count", "2").await.unwrap();
    ctl.create_volume("vol-lim", 8 * MIB).await.unwrap();
    for snap in ["s1", "s2"] {
        lh.ensure_snapshot("vol-lim", snap, &no_labels(), Duration::from_secs(5))
            .await
            .unwrap();
    }
    match lh
        .ensure_snapshot("vol-lim", "s3", &no_labels(), Duration::from_secs(5))
        .await
    {
        Err(LonghornError::SnapshotFailed { message, .. }) => {
            assert!(dr::longhorn::snapshot_error_is_limit(&message), "{message}")
        }
        other => panic!("{other:?}"),
    }
    // Deleting one of dr's makes room: the same CR is retried by Longhorn
    // once deleted and made again.
    lh.delete_snapshot("vol-lim", "s3").await.unwrap();
    lh.delete_snapshot("vol-lim", "s1").await.unwrap();
    lh.ensure_snapshot("vol-lim", "s3", &no_labels(), Duration::from_secs(5))
        .await
        .unwrap();
    let names: Vec<String> = lh
        .list_snapshots("vol-lim")
        .await
        .unwrap()
        .into_iter()
        .filter(|s| !s.mark_removed)
        .map(|s| s.name)
        .collect();
    assert!(
        names.contains(&"s2".into()) && names.contains(&"s3".into()),
        "{names:?}"
    );
    assert!(!names.contains(&"s1".into()), "{names:?}");
    emu.shutdown().await;
}

#[tokio::test]
async fn a_restored_volume_renamed_by_longhorn_is_refused_and_removed() {
    let emu = emulator().await;
    let lh = client(&emu, Duration::from_secs(5));
    let (_, url) = backed_up(&lh, &emu, "vol-nm", 3).await;
    let long = "restore-of-a-very-long-backup-volume-name-0001";
    match lh.create_restored_volume(long, &url, Some(1)).await {
        Err(LonghornError::Renamed { asked, got, .. }) => {
            assert_eq!(asked, long);
            // util.AutoCorrectName: 31 characters, "-", 8 hex of SHA-512.
            assert_eq!(got, "restore-of-a-very-long-backup-v-c227dc26");
        }
        other => panic!("{other:?}"),
    }
    let left: Vec<String> = lh
        .list_volumes()
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .filter(|n| n.starts_with("restore-of"))
        .collect();
    let mut gone = left.is_empty();
    for _ in 0..50 {
        if gone {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        gone = !lh
            .list_volumes()
            .await
            .unwrap()
            .iter()
            .any(|v| v.name.starts_with("restore-of"));
    }
    assert!(gone, "the renamed volume is not left behind: {left:?}");
    // dr's own names fit.
    let ok = "dr-r123456-abcdef-data-postgres-0";
    assert!(ok.len() <= dr::runbook::steps::MAX_VOLUME_NAME);
    assert_eq!(
        lh.create_restored_volume(ok, &url, Some(1))
            .await
            .unwrap()
            .name,
        ok
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn a_manager_without_backup_list_by_volume_is_refused_not_read_as_empty() {
    let emu = emulator().await;
    let lh = client(&emu, Duration::from_secs(5));
    let (name, _) = backed_up(&lh, &emu, "vol-ver", 4).await;
    assert_eq!(lh.check_supported().await.unwrap().text, "v1.12.1");
    emu.control().set_version("v1.8.0").await.unwrap();
    match lh.backups_of("vol-ver").await {
        Err(LonghornError::NoSuchRoute { op }) => assert_eq!(op, "backupListByVolume"),
        other => panic!("a missing route is no empty list: {other:?}"),
    }
    match lh.backup("vol-ver", &name).await {
        Err(LonghornError::NoSuchRoute { .. }) => {}
        other => panic!("{other:?}"),
    }
    let e = lh.check_supported().await.unwrap_err();
    assert!(matches!(e, LonghornError::Unsupported { .. }), "{e:?}");
    assert!(e.to_string().contains("v1.8.1 or later"), "{e}");
    emu.control().set_version("v1.8.1").await.unwrap();
    assert_eq!(lh.backups_of("vol-ver").await.unwrap().len(), 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn deleting_a_backup_always_sends_the_request() {
    let emu = emulator().await;
    let lh = client(&emu, Duration::from_secs(5));
    let (name, _) = backed_up(&lh, &emu, "vol-bd", 5).await;
    let sent = |s: &longhorn_emulator::Stats| s.requests.get("backupDelete").copied();
    lh.delete_backup("vol-bd", &name, Duration::from_secs(30))
        .await
        .unwrap();
    let stats = emu.control().stats().await.unwrap();
    assert_eq!(sent(&stats), Some(1), "{stats:?}");
    assert!(!stats.backups.contains(&name));
    assert_eq!(
        stats.requests.get("listBackupVolumes"),
        None,
        "no backup volume lookup: {stats:?}"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn a_backup_on_the_volumes_own_target_is_found_verified_and_deleted() {
    let emu = emulator().await;
    let lh = client(&emu, Duration::from_secs(5));
    let ctl = emu.control();
    let offsite = testbed::get().emulator_store(&prefix()).await;
    ctl.add_backup_target("offsite", offsite).await.unwrap();
    ctl.create_volume("vol-off", 8 * MIB).await.unwrap();
    let http = reqwest::Client::new();
    let set_target = http
        .post(format!(
            "{}v1/volumes/vol-off?action=updateBackupTargetName",
            emu.url()
        ))
        .json(&serde_json::json!({"backupTargetName": "offsite"}))
        .send()
        .await
        .unwrap();
    assert!(set_target.status().is_success());
    let (name, url) = backed_up(&lh, &emu, "vol-off", 6).await;
    let on = lh.backup("vol-off", &name).await.unwrap().unwrap();
    assert_eq!(on.backup_target_name, "offsite");
    // Verified where it is, through its own URL.
    let target = dr::store::BackupTargetUrl::parse(&url).unwrap();
    let check = dr::store::verify_backup(&testbed::get().s3_client(), &target, "vol-off", &name)
        .await
        .unwrap();
    assert!(
        matches!(check, dr::store::Check::Intact { .. }),
        "{check:?}"
    );
    lh.delete_backup("vol-off", &name, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(lh.backup("vol-off", &name).await.unwrap().is_none());
    emu.shutdown().await;
}

/// Longhorn's volume controller resets `Scheduled` to True for a detached
/// volume with at least one replica placed when degraded availability is
/// allowed (the default; controller/volume_controller.go
/// `reconcileVolumeCondition`), so a restore onto fewer replicas than asked
/// ends `ready` like any other; with no replica placed it never starts.
#[tokio::test]
async fn a_restore_onto_fewer_replicas_completes_and_one_onto_none_never_does() {
    let emu = emulator().await;
    let lh = client(&emu, Duration::from_secs(5));
    let ctl = emu.control();
    let (_, url) = backed_up(&lh, &emu, "vol-dg", 7).await;
    let at_backup = ctl.checksum("vol-dg").await.unwrap();
    ctl.set_schedulable_replicas(Some(1)).await.unwrap();
    lh.create_restored_volume("vol-dg-r", &url, Some(3))
        .await
        .unwrap();
    let v = lh
        .wait_restored("vol-dg-r", Duration::from_secs(30), &mut |_| {})
        .await
        .unwrap();
    assert!(v.restore_done(), "{v:?}");
    assert_eq!(ctl.checksum("vol-dg-r").await.unwrap(), at_backup);
    ctl.set_schedulable_replicas(Some(0)).await.unwrap();
    lh.create_restored_volume("vol-dg-0", &url, Some(3))
        .await
        .unwrap();
    let e = lh
        .wait_restored("vol-dg-0", Duration::from_secs(2), &mut |_| {})
        .await
        .unwrap_err();
    match e {
        LonghornError::Deadline { last, .. } => {
            assert!(last.contains("restoreRequired true"), "{last}")
        }
        other => panic!("{other:?}"),
    }
    let v = lh.volume("vol-dg-0").await.unwrap().unwrap();
    assert!(!v.restore_done() && v.unschedulable().is_some(), "{v:?}");
    emu.shutdown().await;
}

#[tokio::test]
async fn a_backup_request_without_its_snapshot_is_refused() {
    let emu = emulator().await;
    let lh = client(&emu, Duration::from_secs(5));
    emu.control()
        .create_volume("vol-ns", 8 * MIB)
        .await
        .unwrap();
    emu.control()
        .write("vol-ns", 0, &pattern(1, MIB as usize))
        .await
        .unwrap();
    match lh
        .start_backup("vol-ns", "no-such-snapshot", &no_labels())
        .await
    {
        Err(LonghornError::Refused {
            status, message, ..
        }) => {
            assert_eq!(status, 500);
            assert!(message.contains("snapshot <nil> is invalid"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    emu.shutdown().await;
}
