//! Contract tests of Longhorn's asynchronous lifecycles, as dr's client
//! meets them through the emulator (each modelled from longhorn-manager
//! v1.12.1, the file and function cited in the emulator):
//! - the volume condition `TooManySnapshots`, set at the smaller of
//!   `snapshot-count-warning-threshold` and the volume's `snapshotMaxCount`
//!   and cleared once the snapshots are purged (controller/volume_controller.go
//!   `reconcileTooManySnapshotsCondition`);
//! - a deleted Snapshot CR stays listed until the engine purged its
//!   snapshot, the volume attached for it meanwhile
//!   (controller/snapshot_controller.go `reconcile`, deletion branch);
//! - new xfs volumes below 300 MiB are refused by the CSI driver, and xfs
//!   PVs of such volumes by `pvCreate` (csi/controller_server.go
//!   `CreateVolume`, manager/kubernetes.go `PVCreate`); claims below
//!   10 MiB get 10 MiB;
//! - a backup is seen only at the backup monitor's polls: `""` until the
//!   first, `Pending` only while its snapshot is not ready
//!   (controller/backup_controller.go `checkMonitor`,
//!   engineapi/backup_monitor.go `linerTimer`).
//!
//! All at the emulator's fast timings, which run Longhorn's whole sequence
//! (attach for the snapshot, the monitor's polls) in milliseconds.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use crate::harness::testbed::{self, CONVERGE, TestNamespace};
use crate::longhorn_contract::{MIB, client, emulator, emulator_with, no_labels, pattern};
use dr::longhorn::{LhBackupState, LonghornClient, LonghornError};
use k8s_openapi::api::core::v1::{Event, PersistentVolume, PersistentVolumeClaim};
use kube::Api;
use kube::api::ListParams;
use longhorn_emulator::{Emulator, EmulatorConfig, Timings};
use std::time::{Duration, Instant};

async fn too_many(lh: &LonghornClient, vol: &str) -> (String, String, String) {
    let v = lh.volume(vol).await.unwrap().unwrap();
    let c = v.conditions.get("TooManySnapshots").cloned().unwrap();
    (c.status, c.reason, c.message)
}

#[tokio::test]
async fn a_volume_at_its_snapshot_limit_shows_too_many_snapshots_until_they_are_purged() {
    let emu = emulator().await;
    let lh = client(&emu, Duration::from_secs(5));
    let ctl = emu.control();
    ctl.set_setting("snapshot-max-count", "2").await.unwrap();
    ctl.create_volume("vol-tms", 8 * MIB).await.unwrap();
    assert_eq!(too_many(&lh, "vol-tms").await.0, "False");
    for snap in ["s1", "s2"] {
        lh.ensure_snapshot("vol-tms", snap, &no_labels(), Duration::from_secs(5))
            .await
            .unwrap();
    }
    // At snapshotMaxCount (below the setting's default threshold of 100).
    assert_eq!(
        too_many(&lh, "vol-tms").await,
        (
            "True".into(),
            "TooManySnapshots".into(),
            "Snapshots count is 2 at or over the warning threshold 2".into()
        )
    );
    // A third snapshot fails as the limit; deleting its CR (as dr does)
    // and an older snapshot brings the count below the threshold once
    // Longhorn purged it.
    match lh
        .ensure_snapshot("vol-tms", "s3", &no_labels(), Duration::from_secs(5))
        .await
    {
        Err(LonghornError::SnapshotFailed { message, .. }) => {
            assert!(dr::longhorn::snapshot_error_is_limit(&message), "{message}")
        }
        other => panic!("{other:?}"),
    }
    lh.delete_snapshot("vol-tms", "s3").await.unwrap();
    lh.delete_snapshot("vol-tms", "s1").await.unwrap();
    assert_eq!(
        too_many(&lh, "vol-tms").await.0,
        "True",
        "a snapshot being deleted still counts"
    );
    let t0 = Instant::now();
    while too_many(&lh, "vol-tms").await.0 == "True" {
        assert!(t0.elapsed() < Duration::from_secs(5), "never cleared");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        too_many(&lh, "vol-tms").await,
        ("False".into(), String::new(), String::new())
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn a_deleted_snapshot_is_listed_until_longhorn_purged_it() {
    let emu = emulator_with(Timings {
        attach_ms: 200,
        snapshot_delete_ms: 600,
        ..Timings::fast()
    })
    .await;
    let lh = client(&emu, Duration::from_secs(5));
    let ctl = emu.control();
    ctl.create_volume("vol-sdel", 8 * MIB).await.unwrap();
    for snap in ["s1", "s2"] {
        lh.ensure_snapshot("vol-sdel", snap, &no_labels(), Duration::from_secs(5))
            .await
            .unwrap();
    }
    while lh.volume("vol-sdel").await.unwrap().unwrap().state != "detached" {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let t0 = Instant::now();
    lh.delete_snapshot("vol-sdel", "s1").await.unwrap();
    // Answered, still listed, and still ready as far as its CR says: the
    // snapshot controller updates its status only once the engine runs
    // (the volume attached for it); then it is marked removed, not ready.
    let s1 = lh.snapshot("vol-sdel", "s1").await.unwrap().unwrap();
    assert!(s1.ready_to_use && !s1.mark_removed, "{s1:?}");
    let names =
        |l: Vec<dr::longhorn::SnapshotCr>| l.into_iter().map(|s| s.name).collect::<Vec<_>>();
    assert!(names(lh.list_snapshots("vol-sdel").await.unwrap()).contains(&"s1".into()));
    let mut attached_for_it = false;
    let mut marked = false;
    while let Some(s1) = lh.snapshot("vol-sdel", "s1").await.unwrap() {
        marked |= s1.mark_removed;
        assert!(!(s1.mark_removed && s1.ready_to_use), "{s1:?}");
        attached_for_it |= lh.volume("vol-sdel").await.unwrap().unwrap().state == "attached";
        assert!(t0.elapsed() < Duration::from_secs(5), "never purged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = t0.elapsed();
    assert!(
        marked && attached_for_it,
        "marked {marked}, attached {attached_for_it}"
    );
    assert!(
        took >= Duration::from_millis(800),
        "attached (200 ms), then purged (600 ms): gone after {took:?}"
    );
    assert_eq!(names(lh.list_snapshots("vol-sdel").await.unwrap()), ["s2"]);
    emu.shutdown().await;
}

/// The emulator's provisioner and `pvCreate` on the bed's cluster.
async fn emulator_on(kube: kube::Client, ns: &str) -> Emulator {
    let store = testbed::get()
        .emulator_store(&format!("lifecycle-{}", testbed::suffix()))
        .await;
    let mut cfg = EmulatorConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.store = Some(store);
    cfg.kube = Some(kube);
    cfg.timings = Timings::fast();
    cfg.provision_namespaces = Some(vec![ns.to_owned()]);
    Emulator::start(cfg).await.unwrap()
}

#[tokio::test]
async fn new_xfs_volumes_below_300_mib_are_refused_and_small_claims_get_10_mib() {
    let kube = testbed::get().kube_client().await;
    let ns = TestNamespace::create(&kube, "dr-xfs").await;
    let emu = emulator_on(kube.clone(), &ns.name).await;
    let lh = client(&emu, Duration::from_secs(5));
    let labels = serde_json::json!({"app": "xfs"});
    testbed::longhorn_claim_of(
        &kube,
        &ns.name,
        "small",
        labels.clone(),
        "10Mi",
        "longhorn-xfs",
    )
    .await;
    testbed::longhorn_claim_of(
        &kube,
        &ns.name,
        "big",
        labels.clone(),
        "300Mi",
        "longhorn-xfs",
    )
    .await;
    testbed::longhorn_claim_of(&kube, &ns.name, "tiny", labels, "2Mi", "longhorn").await;

    // 300 MiB is enough for xfs; 2 MiB of ext4 becomes 10 MiB.
    let big = testbed::wait_bound(&kube, &ns.name, "big").await;
    let pv = Api::<PersistentVolume>::all(kube.clone())
        .get(big.spec.unwrap().volume_name.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(
        pv.spec.unwrap().csi.unwrap().fs_type.as_deref(),
        Some("xfs")
    );
    let tiny = testbed::wait_bound(&kube, &ns.name, "tiny").await;
    let tiny_vol = format!("pvc-{}", tiny.metadata.uid.unwrap());
    assert_eq!(
        lh.volume(&tiny_vol).await.unwrap().unwrap().size,
        Some(10 * MIB),
        "MinimalVolumeSize"
    );

    // 10 MiB of xfs: the claim stays Pending, with the provisioner's event.
    let events = Api::<Event>::namespaced(kube.clone(), &ns.name);
    let start = Instant::now();
    let event = loop {
        let found = events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .find(|e| {
                e.involved_object.name.as_deref() == Some("small")
                    && e.reason.as_deref() == Some("ProvisioningFailed")
            });
        if let Some(e) = found {
            break e;
        }
        assert!(start.elapsed() < CONVERGE, "no event on the refused claim");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    let message = event.message.unwrap_or_default();
    assert!(
        message.contains(
            "XFS filesystems with size 10485760, smaller than 314572800, are not supported"
        ),
        "{message}"
    );
    let small = Api::<PersistentVolumeClaim>::namespaced(kube.clone(), &ns.name)
        .get("small")
        .await
        .unwrap();
    assert_eq!(
        small.status.and_then(|s| s.phase).as_deref(),
        Some("Pending")
    );

    // pvCreate (as a restore does) refuses an xfs PV for a small volume.
    // (PVs are cluster-wide: the name is the test's own.)
    let vol = format!("vol-small-xfs-{}", testbed::suffix());
    emu.control().create_volume(&vol, 10 * MIB).await.unwrap();
    let refused = lh.pv_create(&vol, &vol, "xfs", "").await;
    let made = lh.pv_create(&vol, &vol, "ext4", "").await;
    let _ = Api::<PersistentVolume>::all(kube.clone())
        .delete(&vol, &Default::default())
        .await;
    match refused {
        Err(LonghornError::Refused { message, .. }) => assert_eq!(
            message,
            format!(
                "unable to create PV for volume {vol}: XFS filesystems with size 10485760, smaller than 314572800, are not supported"
            )
        ),
        other => panic!("{other:?}"),
    }
    made.unwrap();
    ns.delete().await;
    emu.shutdown().await;
}

/// The backup's states in the volume listing, each with when it was first seen.
async fn watch_states(
    lh: &LonghornClient,
    vol: &str,
    snap: &str,
    t0: Instant,
) -> Vec<(LhBackupState, i64, Duration)> {
    let mut seen: Vec<(LhBackupState, i64, Duration)> = Vec::new();
    loop {
        let listed = lh.list_volume_backups().await.unwrap();
        let b = listed
            .iter()
            .filter(|v| v.name == vol)
            .flat_map(|v| v.backup_status.iter())
            .next()
            .cloned();
        if let Some(b) = b {
            let now = (b.state.clone(), b.progress);
            if seen
                .last()
                .is_none_or(|(s, p, _)| (s, p) != (&now.0, &now.1))
            {
                seen.push((now.0, now.1, t0.elapsed()));
            }
            if b.state == LhBackupState::Completed {
                assert!(!b.backup_url.is_empty(), "{b:?}");
                return seen;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "backup of {snap} never completed: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn states(seen: &[(LhBackupState, i64, Duration)]) -> Vec<LhBackupState> {
    let mut out: Vec<LhBackupState> = Vec::new();
    for (s, _, _) in seen {
        if out.last() != Some(s) {
            out.push(s.clone());
        }
    }
    out
}

#[tokio::test]
async fn a_backup_changes_only_at_the_backup_monitors_polls() {
    let emu = emulator_with(Timings {
        backup_start_ms: 200,
        backup_monitor_ms: 400,
        backup_bytes_per_sec: 4 * MIB, // 4 MiB: about a second
        ..Timings::fast()
    })
    .await;
    let lh = client(&emu, Duration::from_secs(5));
    let ctl = emu.control();
    ctl.create_volume("vol-mon", 8 * MIB).await.unwrap();
    ctl.write("vol-mon", 0, &pattern(5, 4 * MIB as usize))
        .await
        .unwrap();
    lh.ensure_snapshot("vol-mon", "s-mon", &no_labels(), Duration::from_secs(5))
        .await
        .unwrap();
    let t0 = Instant::now();
    lh.start_backup("vol-mon", "s-mon", &no_labels())
        .await
        .unwrap();
    let seen = watch_states(&lh, "vol-mon", "s-mon", t0).await;
    // The snapshot was ready: "" until the monitor's first poll, no Pending.
    assert_eq!(
        states(&seen),
        [
            LhBackupState::New,
            LhBackupState::InProgress,
            LhBackupState::Completed
        ],
        "{seen:?}"
    );
    let first = seen
        .iter()
        .find(|(s, _, _)| *s == LhBackupState::InProgress)
        .map(|(_, _, at)| *at)
        .unwrap();
    assert!(
        first >= Duration::from_millis(600),
        "monitor started after 200 ms, first poll 400 ms later: InProgress at {first:?}"
    );
    // Every change after that came with a poll, 400 ms apart.
    for w in seen.windows(2).skip(1) {
        let gap = w[1].2 - w[0].2;
        assert!(gap >= Duration::from_millis(300), "{seen:?}");
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn a_backup_of_a_snapshot_not_ready_yet_is_pending_until_it_is() {
    let emu = emulator_with(Timings {
        snapshot_ready_ms: 300,
        resync_ms: 200,
        // InProgress for about 2 s: long enough for the listing polls to
        // see it on a loaded machine.
        backup_bytes_per_sec: 4 * MIB,
        ..Timings::fast()
    })
    .await;
    let lh = client(&emu, Duration::from_secs(5));
    emu.control()
        .create_volume("vol-pend", 8 * MIB)
        .await
        .unwrap();
    // Asked for, not waited for.
    let asked = lh
        .ensure_snapshot("vol-pend", "s-pend", &no_labels(), Duration::ZERO)
        .await;
    assert!(
        matches!(asked, Err(LonghornError::Deadline { .. })),
        "{asked:?}"
    );
    let t0 = Instant::now();
    lh.start_backup("vol-pend", "s-pend", &no_labels())
        .await
        .unwrap();
    // While it is Pending, the backup says why.
    let mut why = String::new();
    for _ in 0..100 {
        if let Some(b) = lh.backups_of("vol-pend").await.unwrap().first()
            && b.state == LhBackupState::Pending
        {
            why = b.messages.get("info").cloned().unwrap_or_default();
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(why, "Waiting for the snapshot s-pend to be ready");
    let seen = watch_states(&lh, "vol-pend", "s-pend", t0).await;
    let seen = states(&seen);
    assert!(
        seen.ends_with(&[
            LhBackupState::Pending,
            LhBackupState::InProgress,
            LhBackupState::Completed
        ]),
        "{seen:?}"
    );
    emu.shutdown().await;
}
