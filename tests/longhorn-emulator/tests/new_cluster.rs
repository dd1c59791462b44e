//! The disaster of issue 16: Longhorn on cluster A made a backup, then
//! cluster A and its Longhorn were lost; a fresh Longhorn on cluster B,
//! whose default backup target is the same store, lists that backup and
//! restores its bytes. Both clusters are the test bed's (tests/testbed/up).
//!
//! When a fresh Longhorn lists what a store already holds (longhorn-manager
//! v1.12.1): at start, with no sync request and no wait for the poll
//! interval. controller/backup_target_controller.go `reconcile` syncs
//! whenever `isBackupTargetSyncRequired` holds, and it holds for a target
//! whose `Status.LastSyncedAt` is zero, as a fresh one's is; the first
//! reconcile only marks the target available and returns (longhorn#11337),
//! its status update re-queues the target (the informer's `UpdateFunc`) and
//! the second reconcile's `syncBackupVolume` / `pullBackupVolumeFromBackupTarget`
//! creates a BackupVolume CR per volume in the store; a new BackupVolume's
//! `LastSyncedAt` is zero too, so controller/backup_volume_controller.go
//! `reconcile` lists its backups and creates their Backup CRs, which
//! controller/backup_controller.go `reconcile` fills from the store
//! (`backup.Status.URL = backupInfo.URL`...). The `BackupStoreTimer` only
//! adds a sync every `pollInterval` (5 min), the first one an interval
//! after the start (`wait.PollUntilContextCancel(..., false, ...)`).

mod common;

use common::{Api, HINT, delete_prefix, local, pattern, s3_client, testbed_store, wait};
use k8s_openapi::api::storage::v1::StorageClass;
use longhorn_emulator::{Emulator, EmulatorConfig, StoreConfig, TestbedEnv};
use serde_json::{Value, json};

/// An emulator whose CSI side works in `kube`, serving the claims of a
/// namespace nobody uses (so it takes no other test's claims).
async fn emulator(store: &StoreConfig, kube: kube::Client) -> Emulator {
    let mut cfg = EmulatorConfig::new(local());
    cfg.store = Some(store.clone());
    cfg.kube = Some(kube);
    cfg.provision_namespaces = Some(vec![format!("new-cluster-{}", common::suffix())]);
    Emulator::start(cfg).await.expect("starting the emulator")
}

/// The backup volume of `volume` as the API lists it, if any.
async fn backup_volume_of(api: &Api, volume: &str) -> Option<Value> {
    let list = api.get("v1/backupvolumes").await;
    assert_eq!(list.status, 200, "{}", list.text);
    list.json["data"]
        .as_array()?
        .iter()
        .find(|bv| bv["volumeName"] == volume)
        .cloned()
}

#[tokio::test]
async fn a_fresh_longhorn_on_cluster_b_lists_and_restores_a_backup_made_on_cluster_a() {
    let store = testbed_store().await;
    let s3 = s3_client(&store);
    let env = TestbedEnv::load().unwrap_or_else(|e| panic!("{e:#}: {HINT}"));
    let kube_a = env
        .kube_client()
        .await
        .unwrap_or_else(|e| panic!("{e:#}: {HINT}"));
    let kube_b = env
        .kube_client_b()
        .await
        .unwrap_or_else(|e| panic!("{e:#}: {HINT}"));

    // Longhorn on cluster A: a volume with data, a snapshot, a backup.
    let emu_a = emulator(&store, kube_a).await;
    let api_a = Api::new(&emu_a);
    let ctl_a = emu_a.control();
    ctl_a.create_volume("data", 16 << 20).await.unwrap();
    ctl_a
        .write("data", 4096, &pattern(3 << 20, 7))
        .await
        .unwrap();
    let at_backup = ctl_a.checksum("data").await.unwrap();
    api_a
        .action(
            "volumes",
            "data",
            "snapshotCRCreate",
            json!({"name": "snap-a"}),
        )
        .await;
    wait(10, || async {
        let s = api_a
            .action(
                "volumes",
                "data",
                "snapshotCRGet",
                json!({"name": "snap-a"}),
            )
            .await;
        (s["readyToUse"] == true).then_some(())
    })
    .await
    .expect("snapshot ready");
    api_a
        .action(
            "volumes",
            "data",
            "snapshotBackup",
            json!({"name": "snap-a", "labels": {"app": "new-cluster"}}),
        )
        .await;
    let bv_a = wait(10, || backup_volume_of(&api_a, "data"))
        .await
        .expect("backup volume on A");
    let bv_name = bv_a["name"].as_str().unwrap().to_owned();
    let made = wait(30, || async {
        let list = api_a
            .action("backupvolumes", &bv_name, "backupList", json!({}))
            .await;
        list["data"]
            .as_array()
            .and_then(|a| a.iter().find(|b| b["state"] == "Completed").cloned())
    })
    .await
    .expect("backup Completed on A");
    // Whatever happens to the volume afterwards is not in the backup.
    ctl_a.write("data", 0, b"after the backup").await.unwrap();
    let bv_a = backup_volume_of(&api_a, "data").await.unwrap();

    // Cluster A and its Longhorn are lost.
    emu_a.shutdown().await;

    // A fresh Longhorn on cluster B, its default target the same store.
    let emu_b = emulator(&store, kube_b.clone()).await;
    let api_b = Api::new(&emu_b);
    // Its CSI side is in cluster B.
    kube::Api::<StorageClass>::all(kube_b)
        .get("longhorn")
        .await
        .expect("StorageClass longhorn in cluster B");

    // Listed at start: no backupTargetSync, no poll tick (5 min) needed.
    let bv_b = backup_volume_of(&api_b, "data")
        .await
        .expect("a fresh Longhorn lists the store's backup volumes at start");
    for field in [
        "name",
        "size",
        "lastBackupName",
        "lastBackupAt",
        "created",
        "storageClassName",
    ] {
        assert_eq!(bv_b[field], bv_a[field], "backup volume field {field}");
    }
    let listed = api_b
        .action("backupvolumes", &bv_name, "backupList", json!({}))
        .await;
    let backups = listed["data"].as_array().expect("backup list");
    assert_eq!(backups.len(), 1, "{listed:#}");
    let pulled = &backups[0];
    for field in [
        "name",
        "state",
        "url",
        "snapshotName",
        "snapshotCreated",
        "created",
        "size",
        "labels",
        "volumeName",
        "volumeSize",
        "volumeCreated",
        "newlyUploadDataSize",
        "reUploadedDataSize",
    ] {
        assert_eq!(pulled[field], made[field], "backup field {field}");
    }
    assert_eq!(pulled["state"], "Completed");

    // The sync dr asks for is accepted right after the start: a fresh
    // target's spec.syncRequestedAt is zero (manager/engine.go
    // SyncBackupTarget refuses only within 10 s of the last request).
    let r = api_b
        .post(
            "v1/backuptargets/default?action=backupTargetSync",
            json!({"syncBackupTarget": true}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // Restored on cluster B: the bytes of the backup.
    let url = made["url"].as_str().unwrap();
    let r = api_b
        .post(
            "v1/volumes",
            json!({"name": "data-restored", "fromBackup": url, "size": "16Mi"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    api_b
        .wait_volume("data-restored", 30, |v| {
            v["restoreRequired"] == false && v["state"] == "detached" && v["ready"] == true
        })
        .await;
    let restored = emu_b.control().checksum("data-restored").await.unwrap();
    assert_eq!(restored, at_backup, "restored bytes are the backup's");

    emu_b.shutdown().await;
    delete_prefix(&s3, &store.bucket, &format!("{}/", store.prefix)).await;
}
