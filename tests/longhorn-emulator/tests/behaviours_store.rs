//! Behaviours modelled from longhorn-manager v1.12.1 that need a backup
//! store: the backup webhook, backupDelete by name, backups of detached
//! volumes, restores with unschedulable replicas, several backup targets.
//! Needs tests/testbed/up.

mod common;

use std::time::Duration;

use common::{Api, delete_prefix, local, pattern, s3_client, testbed_store, wait};
use longhorn_emulator::{Emulator, EmulatorConfig, StoreConfig, Timings};
use serde_json::{Value, json};

async fn start(store: &StoreConfig, timings: Timings) -> Emulator {
    let mut cfg = EmulatorConfig::new(local());
    cfg.store = Some(store.clone());
    cfg.timings = timings;
    Emulator::start(cfg).await.expect("starting the emulator")
}

/// snapshotCRCreate + snapshotBackup; the backup's name once it shows in backupStatus.
async fn backup(api: &Api, vol: &str, snap: &str) -> String {
    api.action("volumes", vol, "snapshotCRCreate", json!({"name": snap}))
        .await;
    api.action("volumes", vol, "snapshotBackup", json!({"name": snap}))
        .await;
    let v = api
        .wait_volume(vol, 10, |v| {
            v["backupStatus"]
                .as_array()
                .is_some_and(|a| a.iter().any(|b| b["snapshot"] == snap))
        })
        .await;
    v["backupStatus"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["snapshot"] == snap)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn wait_completed(api: &Api, name: &str) -> Value {
    wait(30, || async {
        let r = api
            .post(
                "v1/backupvolumes/any?action=backupGet",
                json!({ "name": name }),
            )
            .await;
        (r.json["state"] == "Completed").then_some(r.json)
    })
    .await
    .unwrap_or_else(|| panic!("backup {name} never completed"))
}

fn bv_name(volume: &str, target: &str) -> String {
    use sha2::{Digest, Sha256};
    let h = hex::encode(Sha256::digest(format!("{volume}-{target}").as_bytes()));
    format!("{volume}-{}", &h[..8])
}

/// Backup webhook (validator.go Create), backupDelete by name (api/backup.go
/// BackupDelete), and a backup of a detached volume attaching it
/// (backup_controller.go, ticket backup-controller-<backup>).
#[tokio::test]
async fn backup_webhook_delete_by_name_and_detached_backups() {
    let store = testbed_store().await;
    let s3 = s3_client(&store);
    let emu = start(
        &store,
        Timings {
            attach_ms: 300,
            ..Timings::fast()
        },
    )
    .await;
    let api = Api::new(&emu);
    let ctl = emu.control();
    ctl.create_volume("bw", 8 << 20).await.unwrap();
    ctl.write("bw", 0, &pattern(2 << 20, 1)).await.unwrap();

    let r = api
        .post(
            "v1/volumes/bw?action=snapshotBackup",
            json!({"name": "nope"}),
        )
        .await;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.json["message"],
        "failed to backup snapshot: admission webhook \"validator.longhorn.io\" denied the request: snapshot <nil> is invalid"
    );

    let name = backup(&api, "bw", "s1").await;
    let v = api.volume("bw").await;
    assert!(
        v["volumeAttachment"]["attachments"]
            .get(format!("backup-controller-{name}"))
            .is_some(),
        "{v:#}"
    );
    assert_ne!(v["state"], "detached");
    wait_completed(&api, &name).await;
    let v = api
        .wait_volume("bw", 10, |v| v["state"] == "detached")
        .await;
    assert_eq!(v["volumeAttachment"]["attachments"], json!({}));

    // delete by name through a backup volume that does not exist
    let r = api
        .post(
            "v1/backupvolumes/wrong-00000000?action=backupDelete",
            json!({ "name": name }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["name"], "wrong-00000000");
    assert_eq!(r.json["volumeName"], "");
    wait(10, || async {
        let r = api
            .post(
                "v1/backupvolumes/x?action=backupGet",
                json!({ "name": name }),
            )
            .await;
        (r.status == 404).then_some(())
    })
    .await
    .expect("backup deleted");
    emu.shutdown().await;
    delete_prefix(&s3, &store.bucket, &format!("{}/", store.prefix)).await;
}

/// volume_controller.go reconcileVolumeCondition + IsVolumeReady on restores.
#[tokio::test]
async fn restores_with_unschedulable_replicas() {
    let store = testbed_store().await;
    let s3 = s3_client(&store);
    let emu = start(&store, Timings::fast()).await;
    let api = Api::new(&emu);
    let ctl = emu.control();
    ctl.create_volume("src", 8 << 20).await.unwrap();
    ctl.write("src", 0, &pattern(2 << 20, 3)).await.unwrap();
    let name = backup(&api, "src", "s1").await;
    let b = wait_completed(&api, &name).await;
    let url = b["url"].as_str().unwrap().to_owned();

    // none schedulable: never restores
    ctl.set_schedulable_replicas(Some(0)).await.unwrap();
    let r = api
        .post("v1/volumes", json!({"name": "r0", "fromBackup": url}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let v = api.volume("r0").await;
    assert_eq!(v["state"], "detached");
    assert_eq!(v["restoreRequired"], true);
    assert_eq!(v["robustness"], "unknown");
    assert_eq!(v["ready"], false);
    assert_eq!(v["conditions"]["Scheduled"]["status"], "False");
    assert_eq!(
        v["conditions"]["Scheduled"]["reason"],
        "ReplicaSchedulingFailure"
    );

    // one of three: restores degraded; detached afterwards, Scheduled is
    // reset to True (degraded availability allowed) and the volume is ready
    ctl.set_schedulable_replicas(Some(1)).await.unwrap();
    api.post("v1/volumes", json!({"name": "r1", "fromBackup": url}))
        .await;
    let v = api
        .wait_volume("r1", 30, |v| {
            v["restoreRequired"] == false && v["state"] == "detached"
        })
        .await;
    assert_eq!(v["conditions"]["Scheduled"]["status"], "True");
    assert_eq!(v["ready"], true);
    assert_eq!(
        v["restoreStatus"].as_array().unwrap().len(),
        1,
        "only the placed replica restored"
    );
    ctl.set_schedulable_replicas(None).await.unwrap();
    emu.shutdown().await;
    delete_prefix(&s3, &store.bucket, &format!("{}/", store.prefix)).await;
}

/// Several backup targets (backup_target_controller.go, types
/// GetBackupVolumeNameFromVolumeName, manager ListBackupsForVolumeName).
#[tokio::test]
async fn several_backup_targets() {
    let store = testbed_store().await;
    let other = StoreConfig {
        prefix: format!("{}-other", store.prefix),
        ..store.clone()
    };
    let s3 = s3_client(&store);
    let emu = start(&store, Timings::fast()).await;
    let api = Api::new(&emu);
    let ctl = emu.control();
    ctl.add_backup_target("second", other.clone())
        .await
        .unwrap();
    let r = api.get("v1/backuptargets").await;
    let names: Vec<&str> = r.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["default", "second"]);
    assert_eq!(
        api.get("v1/backuptargets/second").await.json["available"],
        true
    );

    ctl.create_volume("mt", 8 << 20).await.unwrap();
    ctl.write("mt", 0, &pattern(2 << 20, 9)).await.unwrap();
    assert_eq!(api.volume("mt").await["backupTargetName"], "default");
    let b1 = backup(&api, "mt", "s1").await;
    wait_completed(&api, &b1).await;
    let v = api
        .action(
            "volumes",
            "mt",
            "updateBackupTargetName",
            json!({"backupTargetName": "second"}),
        )
        .await;
    assert_eq!(v["backupTargetName"], "second");
    let b2 = backup(&api, "mt", "s2").await;
    let b = wait_completed(&api, &b2).await;
    assert_eq!(b["backupTargetName"], "second");
    assert!(b["url"].as_str().unwrap().contains(&other.prefix), "{b}");

    let bvs = api.get("v1/backupvolumes").await.json;
    let mut got: Vec<(String, String, String)> = bvs["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|bv| {
            (
                bv["name"].as_str().unwrap().to_owned(),
                bv["volumeName"].as_str().unwrap().to_owned(),
                bv["backupTargetName"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    got.sort();
    let mut want = vec![
        (
            bv_name("mt", "default"),
            "mt".to_owned(),
            "default".to_owned(),
        ),
        (
            bv_name("mt", "second"),
            "mt".to_owned(),
            "second".to_owned(),
        ),
    ];
    want.sort();
    assert_eq!(got, want);
    // by volume: the volume's target only, while it exists
    let l = api
        .action(
            "backupvolumes",
            "ignored",
            "backupListByVolume",
            json!({"name": "mt"}),
        )
        .await;
    let names: Vec<&str> = l["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [b2.as_str()]);
    let l = api
        .action(
            "backupvolumes",
            &bv_name("mt", "default"),
            "backupList",
            json!({}),
        )
        .await;
    assert_eq!(l["data"].as_array().unwrap().len(), 1);

    // another emulator writes to the second store: seen after a target sync
    let emu2 = start(&other, Timings::fast()).await;
    let api2 = Api::new(&emu2);
    emu2.control().create_volume("ext", 8 << 20).await.unwrap();
    let b3 = backup(&api2, "ext", "e1").await;
    wait_completed(&api2, &b3).await;
    emu2.shutdown().await;
    let r = api
        .post("v1/backupvolumes/x?action=backupGet", json!({ "name": b3 }))
        .await;
    assert_eq!(r.status, 404, "not synced yet");
    let sync = "v1/backuptargets/second?action=backupTargetSync";
    let r = api.post(sync, json!({"syncBackupTarget": true})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = api.post(sync, json!({"syncBackupTarget": true})).await;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.json["message"],
        "failed to synchronize backup target second: cannot synchronize backup target 'second' in 10 seconds"
    );
    let b = wait(10, || async {
        let r = api
            .post("v1/backupvolumes/x?action=backupGet", json!({ "name": b3 }))
            .await;
        (r.status == 200).then_some(r.json)
    })
    .await
    .expect("synced");
    assert_eq!(b["backupTargetName"], "second");
    // a volume that does not exist here: every target
    let l = api
        .action(
            "backupvolumes",
            "x",
            "backupListByVolume",
            json!({"name": "ext"}),
        )
        .await;
    assert_eq!(l["data"].as_array().unwrap().len(), 1);
    emu.shutdown().await;
    delete_prefix(&s3, &store.bucket, &format!("{}/", store.prefix)).await;
    delete_prefix(&s3, &store.bucket, &format!("{}/", other.prefix)).await;
}
