//! Backups and restores through the test bed's S3 server: the state sequence,
//! the exact keys and `.cfg` contents of Longhorn's backup store, block dedup,
//! deletion GC, and restores that bring back the bytes. Needs tests/testbed/up.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{
    Api, delete_prefix, get_object, list_keys, local, pattern, s3_client, testbed_store, wait,
};
use longhorn_emulator::{
    BackupCfg, Emulator, EmulatorConfig, Fault, StoreConfig, Timings, sha512_hex,
};
use serde_json::{Value, json};

async fn start(store: &StoreConfig, timings: Timings) -> Emulator {
    let mut cfg = EmulatorConfig::new(local());
    cfg.store = Some(store.clone());
    cfg.timings = timings;
    Emulator::start(cfg).await.expect("starting the emulator")
}

/// snapshotCRCreate + wait ready + snapshotBackup; returns the backup name.
async fn backup(api: &Api, vol: &str, snap: &str) -> String {
    api.action("volumes", vol, "snapshotCRCreate", json!({"name": snap}))
        .await;
    wait(10, || async {
        let s = api
            .action("volumes", vol, "snapshotCRGet", json!({"name": snap}))
            .await;
        (s["readyToUse"] == true).then_some(())
    })
    .await
    .expect("snapshot ready");
    let v = api
        .action(
            "volumes",
            vol,
            "snapshotBackup",
            json!({"name": snap, "labels": {"app": "test"}}),
        )
        .await;
    assert_eq!(v["type"], "volume", "snapshotBackup returns the volume");
    let v = api
        .wait_volume(vol, 10, |v| {
            v["backupStatus"]
                .as_array()
                .is_some_and(|a| a.iter().any(|b| b["snapshot"] == snap))
        })
        .await;
    let entry = v["backupStatus"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["snapshot"] == snap)
        .unwrap()
        .clone();
    entry["id"].as_str().unwrap().to_owned()
}

async fn wait_backup_state(api: &Api, bv: &str, name: &str, state: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..3000 {
        last = api
            .action("backupvolumes", bv, "backupGet", json!({"name": name}))
            .await;
        if last["state"] == state {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("backup {name} never reached {state}: {last:#}");
}

fn vol_dir(store: &StoreConfig, vol: &str) -> String {
    let h = sha512_hex(vol.as_bytes());
    format!(
        "{}/backupstore/volumes/{}/{}/{vol}",
        store.prefix,
        &h[0..2],
        &h[2..4]
    )
}

#[tokio::test]
async fn backup_sequence_layout_dedup_and_delete() {
    let store = testbed_store().await;
    let s3 = s3_client(&store);
    let emu = start(
        &store,
        Timings {
            backup_start_ms: 400,
            backup_monitor_ms: 100,
            backup_bytes_per_sec: 8 << 20, // 2 MiB block = 250 ms: progress is visible
            ..Timings::fast()
        },
    )
    .await;
    let api = Api::new(&emu);
    let ctl = emu.control();
    let vol = "bvol";
    ctl.create_volume(vol, 16 << 20).await.unwrap();
    // blocks 0, 1 and 3 hold data; block 2 stays sparse
    ctl.write(vol, 0, &pattern(2 << 20, 1)).await.unwrap();
    ctl.write(vol, 2 << 20, &pattern(100, 2)).await.unwrap();
    ctl.write(vol, 6 << 20, &pattern(4096, 3)).await.unwrap();

    api.action(
        "volumes",
        vol,
        "snapshotCRCreate",
        json!({"name": "snap-1"}),
    )
    .await;
    wait(10, || async {
        let s = api
            .action("volumes", vol, "snapshotCRGet", json!({"name": "snap-1"}))
            .await;
        (s["readyToUse"] == true).then_some(())
    })
    .await
    .expect("snapshot ready");
    let v = api
        .action(
            "volumes",
            vol,
            "snapshotBackup",
            json!({"name": "snap-1", "labels": {"app": "test"}, "backupMode": "incremental"}),
        )
        .await;
    let asked = std::time::Instant::now();
    let first = &v["backupStatus"][0];
    assert_eq!(first["state"], "");
    assert_eq!(first["snapshot"], "");
    let name = first["id"].as_str().unwrap().to_owned();
    assert!(name.starts_with("backup-") && name.len() == 23, "{name}");
    assert!(name[7..].chars().all(|c| c.is_ascii_hexdigit()));

    // watch the states go by
    let mut seen: Vec<String> = vec![String::new()];
    let mut progress: Vec<i64> = Vec::new();
    let mut in_progress_cfg_seen = false;
    let bcfg_key = format!("{}/backups/backup_{name}.cfg", vol_dir(&store, vol));
    for _ in 0..2000 {
        let v = api.volume(vol).await;
        let e = v["backupStatus"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["id"] == name.as_str())
            .unwrap()
            .clone();
        let state = e["state"].as_str().unwrap().to_owned();
        if seen.last() != Some(&state) {
            seen.push(state.clone());
            if state == "InProgress" {
                // The monitor started after backup_start_ms; its first
                // poll, a period later, shows the engine's state.
                let after = asked.elapsed();
                assert!(after >= Duration::from_millis(500), "{after:?}");
            }
        }
        if state == "InProgress" {
            assert_eq!(e["snapshot"], "snap-1");
            progress.push(e["progress"].as_i64().unwrap());
            if !in_progress_cfg_seen
                && let Ok(obj) = s3
                    .get_object()
                    .bucket(&store.bucket)
                    .key(&bcfg_key)
                    .send()
                    .await
            {
                let body = obj.body.collect().await.unwrap().into_bytes();
                let cfg: Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(cfg["CreatedTime"], "", "in-progress backup .cfg: {cfg}");
                in_progress_cfg_seen = true;
            }
        }
        if state == "Completed" {
            assert_eq!(e["progress"], 100);
            assert!(e["backupURL"].as_str().unwrap().contains(&name));
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The snapshot was ready: no Pending (backup_controller.go checkMonitor
    // sets it only while waiting for the engine, the snapshot or a
    // deletion); "" until the backup monitor's first poll.
    assert_eq!(seen, ["", "InProgress", "Completed"]);
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
    assert!(progress.iter().all(|p| *p <= 95));
    assert!(progress.iter().any(|p| *p > 0), "{progress:?}");
    assert!(in_progress_cfg_seen, "never saw the in-progress .cfg");

    // the backup volume and backup resources
    let bvs = api.get("v1/backupvolumes").await.json;
    let bv = &bvs["data"][0];
    let bv_name = bv["name"].as_str().unwrap().to_owned();
    {
        use sha2::Digest;
        let h = hex::encode(sha2::Sha256::digest(format!("{vol}-default").as_bytes()));
        assert_eq!(bv_name, format!("{vol}-{}", &h[..8]));
    }
    assert_eq!(bv["volumeName"], vol);
    assert_eq!(bv["backupTargetName"], "default");
    assert_eq!(bv["lastBackupName"], name.as_str());
    let b = api
        .action(
            "backupvolumes",
            &bv_name,
            "backupGet",
            json!({"name": name}),
        )
        .await;
    let target = format!("s3://{}@{}/{}/", store.bucket, store.region, store.prefix);
    assert_eq!(b["url"], format!("{target}?backup={name}&volume={vol}"));
    assert_eq!(b["snapshotName"], "snap-1");
    assert_eq!(b["size"], (3u64 * (2 << 20)).to_string());
    assert_eq!(b["volumeSize"], (16u64 << 20).to_string());
    assert_eq!(b["compressionMethod"], "lz4");
    assert_eq!(b["blockSize"], "2097152");
    assert_eq!(b["backupTargetName"], "default");
    assert_eq!(b["labels"]["app"], "test");
    assert!(!b["created"].as_str().unwrap().is_empty());
    let v = api.volume(vol).await;
    assert_eq!(v["lastBackup"], name.as_str());
    assert_eq!(v["lastBackupAt"], b["snapshotCreated"]);
    let target_json = api.get("v1/backuptargets/default").await.json;
    assert_eq!(target_json["backupTargetURL"], target);
    assert_eq!(target_json["available"], true);

    // the store, key by key
    let dir = vol_dir(&store, vol);
    let keys = list_keys(&s3, &store.bucket, &format!("{}/", store.prefix)).await;
    let vcfg_raw =
        String::from_utf8(get_object(&s3, &store.bucket, &format!("{dir}/volume.cfg")).await)
            .unwrap();
    assert!(
        vcfg_raw.contains(r#""CompressionMethod":"\"lz4\"""#),
        "{vcfg_raw}"
    );
    assert!(
        vcfg_raw.contains(r#""StorageClassName":"\"\"""#),
        "{vcfg_raw}"
    );
    assert!(vcfg_raw.contains(r#""DataEngine":"\"v1\"""#), "{vcfg_raw}");
    let vcfg: Value = serde_json::from_str(&vcfg_raw).unwrap();
    assert_eq!(vcfg["Name"], vol);
    assert_eq!(vcfg["Size"], (16u64 << 20).to_string());
    assert_eq!(vcfg["LastBackupName"], name.as_str());
    assert_eq!(vcfg["LastBackupAt"], b["snapshotCreated"]);
    assert_eq!(vcfg["BlockCount"], "3");
    let bcfg_raw = get_object(&s3, &store.bucket, &bcfg_key).await;
    let bcfg: BackupCfg = serde_json::from_slice(&bcfg_raw).unwrap();
    let bcfg_json: Value = serde_json::from_slice(&bcfg_raw).unwrap();
    assert_eq!(bcfg.name, name);
    assert_eq!(bcfg.volume_name, vol);
    assert_eq!(bcfg.snapshot_name, "snap-1");
    assert_eq!(
        bcfg.snapshot_created_at,
        b["snapshotCreated"].as_str().unwrap()
    );
    assert!(!bcfg.created_time.is_empty());
    assert_eq!(bcfg.size, (3u64 * (2 << 20)).to_string());
    assert_eq!(bcfg.compression_method, "lz4");
    assert_eq!(bcfg_json["Parameters"]["backup-block-size"], "2097152");
    assert_eq!(bcfg_json["Parameters"]["backup-mode"], "incremental");
    assert_eq!(bcfg_json["SingleFile"], json!({"FilePath": ""}));
    assert_eq!(bcfg_json["Labels"]["app"], "test");
    let data = ctl.read(vol).await.unwrap();
    let mut expected_blocks = Vec::new();
    for idx in [0u64, 1, 3] {
        let chunk = &data[(idx as usize) << 21..((idx as usize) + 1) << 21];
        expected_blocks.push((idx << 21, sha512_hex(chunk)[..64].to_owned()));
    }
    let got: Vec<(u64, String)> = bcfg
        .blocks
        .clone()
        .unwrap()
        .into_iter()
        .map(|m| (m.offset, m.block_checksum))
        .collect();
    assert_eq!(got, expected_blocks);
    let mut expected_keys: BTreeSet<String> = expected_blocks
        .iter()
        .map(|(_, c)| format!("{dir}/blocks/{}/{}/{c}.blk", &c[0..2], &c[2..4]))
        .collect();
    expected_keys.insert(format!("{dir}/volume.cfg"));
    expected_keys.insert(bcfg_key.clone());
    assert_eq!(keys.into_iter().collect::<BTreeSet<_>>(), expected_keys);
    // blocks are lz4 frames of the data
    let (_, c0) = &expected_blocks[0];
    let blk = get_object(
        &s3,
        &store.bucket,
        &format!("{dir}/blocks/{}/{}/{c0}.blk", &c0[0..2], &c0[2..4]),
    )
    .await;
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut lz4_flex::frame::FrameDecoder::new(&blk[..]), &mut raw)
        .unwrap();
    assert_eq!(raw, &data[..2 << 20]);

    // second backup: one block changed; the others are not uploaded again
    ctl.write(vol, 0, &pattern(10, 9)).await.unwrap();
    let second = backup(&api, vol, "snap-2").await;
    assert_ne!(second, name, "each snapshotBackup makes a new backup");
    let b2 = wait_backup_state(&api, &bv_name, &second, "Completed").await;
    let b2cfg: BackupCfg = serde_json::from_slice(
        &get_object(
            &s3,
            &store.bucket,
            &format!("{dir}/backups/backup_{second}.cfg"),
        )
        .await,
    )
    .unwrap();
    assert_eq!(
        b2cfg.blocks.as_ref().unwrap().len(),
        3,
        "every non-empty block listed"
    );
    assert!(b2cfg.is_incremental);
    let new_block = &b2cfg.blocks.as_ref().unwrap()[0].block_checksum;
    let blk_new = get_object(
        &s3,
        &store.bucket,
        &format!(
            "{dir}/blocks/{}/{}/{new_block}.blk",
            &new_block[0..2],
            &new_block[2..4]
        ),
    )
    .await;
    assert_eq!(
        b2["newlyUploadDataSize"],
        blk_new.len().to_string(),
        "only the changed block was uploaded"
    );
    assert_eq!(b2cfg.newly_uploaded_data_size, blk_new.len().to_string());
    let blocks = list_keys(&s3, &store.bucket, &format!("{dir}/blocks/")).await;
    assert_eq!(blocks.len(), 4);
    let vcfg: Value =
        serde_json::from_slice(&get_object(&s3, &store.bucket, &format!("{dir}/volume.cfg")).await)
            .unwrap();
    assert_eq!(vcfg["LastBackupName"], second.as_str());
    assert_eq!(vcfg["BlockCount"], "4");
    let list = api
        .action("backupvolumes", &bv_name, "backupList", json!({}))
        .await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    let list = api
        .action(
            "backupvolumes",
            "ignored",
            "backupListByVolume",
            json!({"name": vol}),
        )
        .await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2);

    // delete the first: Deleting, then gone; its unique block is collected
    let r = api
        .action(
            "backupvolumes",
            &bv_name,
            "backupDelete",
            json!({"name": name}),
        )
        .await;
    assert_eq!(r["type"], "backupVolume");
    let b = api
        .action(
            "backupvolumes",
            &bv_name,
            "backupGet",
            json!({"name": name}),
        )
        .await;
    assert_eq!(b["state"], "Deleting");
    wait(10, || async {
        let r = api
            .post(
                &format!("v1/backupvolumes/{bv_name}?action=backupGet"),
                json!({"name": name}),
            )
            .await;
        (r.status == 404).then_some(())
    })
    .await
    .expect("backup gone");
    let keys = list_keys(&s3, &store.bucket, &format!("{dir}/")).await;
    assert!(!keys.contains(&bcfg_key));
    assert_eq!(
        list_keys(&s3, &store.bucket, &format!("{dir}/blocks/"))
            .await
            .len(),
        3
    );
    let vcfg: Value =
        serde_json::from_slice(&get_object(&s3, &store.bucket, &format!("{dir}/volume.cfg")).await)
            .unwrap();
    assert_eq!(vcfg["BlockCount"], "3");
    assert_eq!(vcfg["LastBackupName"], second.as_str());

    // a new emulator on the same prefix finds the backup in the store
    emu.shutdown().await;
    let emu2 = start(&store, Timings::fast()).await;
    let api2 = Api::new(&emu2);
    let b = api2
        .action(
            "backupvolumes",
            &bv_name,
            "backupGet",
            json!({"name": second}),
        )
        .await;
    assert_eq!(b["state"], "Completed");
    // a backup deleted behind the cluster's back disappears at the next sync
    s3.delete_object()
        .bucket(&store.bucket)
        .key(format!("{dir}/backups/backup_{second}.cfg"))
        .send()
        .await
        .unwrap();
    api2.action(
        "backupvolumes",
        &bv_name,
        "backupVolumeSync",
        json!({"syncBackupVolume": true}),
    )
    .await;
    let r = api2
        .post(
            &format!("v1/backupvolumes/{bv_name}?action=backupVolumeSync"),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 500, "a second sync within 10 s is refused");
    wait(10, || async {
        let r = api2
            .post(
                &format!("v1/backupvolumes/{bv_name}?action=backupGet"),
                json!({"name": second}),
            )
            .await;
        (r.status == 404).then_some(())
    })
    .await
    .expect("backup gone from the cluster after the sync");
    emu2.shutdown().await;
    delete_prefix(&s3, &store.bucket, &format!("{}/", store.prefix)).await;
}

#[tokio::test]
async fn restore_brings_back_the_bytes_of_the_backup() {
    let store = testbed_store().await;
    let s3 = s3_client(&store);
    let emu = start(&store, Timings::fast()).await;
    let api = Api::new(&emu);
    let ctl = emu.control();
    ctl.create_volume("src", 16 << 20).await.unwrap();
    ctl.write("src", 123, &pattern(5 << 20, 4)).await.unwrap();
    let at_backup = ctl.checksum("src").await.unwrap();
    let name = backup(&api, "src", "snap-r").await;
    // changes after the snapshot are not in the backup
    ctl.write("src", 0, b"later").await.unwrap();
    let bv = api.get("v1/backupvolumes").await.json["data"][0]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = wait_backup_state(&api, &bv, &name, "Completed").await;
    // KubernetesStatus label is only added when the volume has one
    assert_eq!(b["labels"]["longhorn.io/volume-access-mode"], "rwo");

    let url = b["url"].as_str().unwrap();
    // slow enough to see every state of the restore
    ctl.set_timings(Timings {
        volume_create_ms: 400,
        attach_ms: 400,
        restore_start_ms: 300,
        restore_bytes_per_sec: 32 << 20,
        ..Timings::fast()
    })
    .await
    .unwrap();
    let r = api
        .post(
            "v1/volumes",
            json!({"name": "dst", "fromBackup": url, "size": "2Mi"}),
        )
        .await;
    let watcher = {
        let base = api.base.clone();
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            // the POST answered ("", restoreRequired, not ready)
            let mut seen: Vec<(String, bool, bool)> = vec![(String::new(), true, false)];
            let mut progress = Vec::new();
            for _ in 0..3000 {
                let v: Value = http
                    .get(base.join("v1/volumes/dst").unwrap())
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let key = (
                    v["state"].as_str().unwrap().to_owned(),
                    v["restoreRequired"].as_bool().unwrap(),
                    v["ready"].as_bool().unwrap(),
                );
                if seen.last() != Some(&key) {
                    seen.push(key.clone());
                }
                if let Some(p) = v["restoreStatus"][0]["progress"].as_i64() {
                    progress.push(p);
                }
                if key == ("detached".to_owned(), false, true) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (seen, progress)
        })
    };
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json["size"],
        (16u64 << 20).to_string(),
        "size comes from the backup"
    );
    assert_eq!(r.json["fromBackup"], url);
    let v = api
        .wait_volume("dst", 10, |v| {
            v["state"] == "attached" && v["restoreRequired"] == true
        })
        .await;
    assert_eq!(v["restoreInitiated"], true);
    assert_eq!(v["ready"], false);
    let r = api
        .post("v1/volumes/dst?action=attach", json!({"hostId": "node-1"}))
        .await;
    assert_eq!(r.status, 500);
    assert_eq!(r.json["message"], "volume dst is pending restoring");
    let v = api
        .wait_volume("dst", 30, |v| {
            v["restoreRequired"] == false && v["state"] == "detached" && v["ready"] == true
        })
        .await;
    assert_eq!(v["robustness"], "unknown");
    let (seen, progress) = watcher.await.unwrap();
    let states: Vec<(&str, bool, bool)> = seen
        .iter()
        .map(|(s, r, ok)| (s.as_str(), *r, *ok))
        .collect();
    assert_eq!(
        states,
        [
            ("", true, false),
            ("creating", true, false),
            ("detached", true, false),
            ("attaching", true, false),
            ("attached", true, false),
            ("detaching", false, false),
            ("detached", false, true),
        ]
    );
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
    assert!(progress.iter().any(|p| *p > 0 && *p < 100), "{progress:?}");
    ctl.set_timings(Timings::fast()).await.unwrap();
    assert_eq!(v["restoreStatus"][0]["state"], "complete");
    assert_eq!(v["restoreStatus"][0]["progress"], 100);
    assert_eq!(v["conditions"]["Restore"]["status"], "False");
    assert_eq!(ctl.checksum("dst").await.unwrap(), at_backup);

    // a corrupt block in S3: the restore fails
    let dir = vol_dir(&store, "src");
    let blocks = list_keys(&s3, &store.bucket, &format!("{dir}/blocks/")).await;
    s3.put_object()
        .bucket(&store.bucket)
        .key(&blocks[0])
        .body(aws_sdk_s3::primitives::ByteStream::from(
            b"garbage".to_vec(),
        ))
        .send()
        .await
        .unwrap();
    api.post("v1/volumes", json!({"name": "bad", "fromBackup": url}))
        .await;
    let v = api
        .wait_volume("bad", 30, |v| v["robustness"] == "faulted")
        .await;
    assert_eq!(v["conditions"]["Restore"]["reason"], "RestoreFailure");
    assert_eq!(v["conditions"]["Restore"]["status"], "False");

    // an injected restore fault
    ctl.set_fault(Fault {
        operation: "restore".into(),
        error_rate: 1.0,
        ..Fault::default()
    })
    .await
    .unwrap();
    api.post("v1/volumes", json!({"name": "bad2", "fromBackup": url}))
        .await;
    let v = api
        .wait_volume("bad2", 30, |v| v["robustness"] == "faulted")
        .await;
    assert_eq!(v["conditions"]["Restore"]["reason"], "RestoreFailure");
    emu.shutdown().await;
    delete_prefix(&s3, &store.bucket, &format!("{}/", store.prefix)).await;
}

#[tokio::test]
async fn failed_backups() {
    let store = testbed_store().await;
    let s3 = s3_client(&store);
    let emu = start(&store, Timings::fast()).await;
    let api = Api::new(&emu);
    let ctl = emu.control();
    ctl.create_volume("fv", 8 << 20).await.unwrap();
    ctl.write("fv", 0, &pattern(4 << 20, 5)).await.unwrap();

    // no Snapshot CR of that name: the backup webhook refuses the Backup CR
    // (webhook/resources/backup/validator.go Create prints the nil snapshot)
    let r = api
        .post(
            "v1/volumes/fv?action=snapshotBackup",
            json!({"name": "no-such-snap"}),
        )
        .await;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.json["message"],
        "failed to backup snapshot: admission webhook \"validator.longhorn.io\" denied the request: snapshot <nil> is invalid"
    );
    // the snapshot deleted once the backup exists: Pending, then Error
    api.action(
        "volumes",
        "fv",
        "snapshotCRCreate",
        json!({"name": "no-such-snap"}),
    )
    .await;
    api.action(
        "volumes",
        "fv",
        "snapshotBackup",
        json!({"name": "no-such-snap"}),
    )
    .await;
    api.action(
        "volumes",
        "fv",
        "snapshotCRDelete",
        json!({"name": "no-such-snap"}),
    )
    .await;
    let bv = api.get("v1/backupvolumes").await.json["data"][0]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let list = api
        .action("backupvolumes", &bv, "backupList", json!({}))
        .await;
    let name = list["data"][0]["name"].as_str().unwrap().to_owned();
    assert_eq!(list["data"][0]["snapshotName"], "no-such-snap");
    let b = wait_backup_state(&api, &bv, &name, "Error").await;
    assert_eq!(b["error"], "Failed to get the Snapshot no-such-snap");

    // injected upload failure: Error with the message
    ctl.set_fault(Fault {
        operation: "backupUpload".into(),
        error_rate: 1.0,
        ..Fault::default()
    })
    .await
    .unwrap();
    let name = backup(&api, "fv", "snap-f").await;
    let b = wait_backup_state(&api, &bv, &name, "Error").await;
    assert!(
        b["error"].as_str().unwrap().contains("injected fault"),
        "{b}"
    );
    ctl.clear_faults().await.unwrap();

    // snapshotBackup answered 500 after creating the backup (a timeout seen by the client)
    ctl.set_fault(Fault {
        operation: "snapshotBackup".into(),
        error_rate: 1.0,
        after_effect: true,
        ..Fault::default()
    })
    .await
    .unwrap();
    let before = ctl.stats().await.unwrap().backups_created;
    api.action(
        "volumes",
        "fv",
        "snapshotCRCreate",
        json!({"name": "snap-g"}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = api
        .post(
            "v1/volumes/fv?action=snapshotBackup",
            json!({"name": "snap-g"}),
        )
        .await;
    assert_eq!(r.status, 500);
    ctl.clear_faults().await.unwrap();
    let stats = ctl.stats().await.unwrap();
    assert_eq!(stats.backups_created, before + 1);
    let v = api
        .wait_volume("fv", 10, |v| {
            v["backupStatus"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|b| b["snapshot"] == "snap-g" && b["state"] == "Completed")
            })
        })
        .await;
    assert_eq!(v["backupStatus"].as_array().unwrap().len(), 3);

    // deleting the backup volume removes every backup, in the cluster and the store
    let r = api
        .call(
            reqwest::Method::DELETE,
            &format!("v1/backupvolumes/{bv}"),
            None,
        )
        .await;
    assert_eq!((r.status, r.text.as_str()), (200, ""));
    wait(10, || async {
        let bvs = api.get("v1/backupvolumes").await.json;
        (bvs["data"] == json!([])).then_some(())
    })
    .await
    .expect("backup volume gone");
    assert_eq!(api.volume("fv").await["backupStatus"], json!([]));
    let dir = vol_dir(&store, "fv");
    assert_eq!(
        list_keys(&s3, &store.bucket, &format!("{dir}/")).await,
        Vec::<String>::new()
    );
    emu.shutdown().await;
    delete_prefix(&s3, &store.bucket, &format!("{}/", store.prefix)).await;
}

/// Documents the speed dr's tests can count on: a 16 MiB volume full of data
/// backs up in well under a few seconds with `Timings::fast()`.
#[tokio::test]
async fn sixteen_mib_backup_with_fast_timings() {
    let store = testbed_store().await;
    let s3 = s3_client(&store);
    let emu = start(&store, Timings::fast()).await;
    let api = Api::new(&emu);
    let ctl = emu.control();
    ctl.create_volume("big", 16 << 20).await.unwrap();
    ctl.write("big", 0, &pattern(16 << 20, 6)).await.unwrap();
    let t = std::time::Instant::now();
    let name = backup(&api, "big", "snap-big").await;
    let bv = api.get("v1/backupvolumes").await.json["data"][0]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_backup_state(&api, &bv, &name, "Completed").await;
    let backup_took = t.elapsed();
    let b = api
        .action("backupvolumes", &bv, "backupGet", json!({"name": name}))
        .await;
    let t = std::time::Instant::now();
    api.post(
        "v1/volumes",
        json!({"name": "big-r", "fromBackup": b["url"]}),
    )
    .await;
    api.wait_volume("big-r", 30, |v| {
        v["restoreRequired"] == false && v["state"] == "detached" && v["ready"] == true
    })
    .await;
    let restore_took = t.elapsed();
    eprintln!(
        "16 MiB with Timings::fast(): snapshot+backup {backup_took:?}, restore {restore_took:?}"
    );
    assert!(backup_took < Duration::from_secs(5), "{backup_took:?}");
    assert!(restore_took < Duration::from_secs(5), "{restore_took:?}");
    emu.shutdown().await;
    delete_prefix(&s3, &store.bucket, &format!("{}/", store.prefix)).await;
}

/// `data_path_nice`: backups run on threads of their own ("emulator-data"),
/// at the niceness asked for, and still complete.
#[tokio::test]
async fn data_path_on_threads_of_its_own_at_lower_priority() {
    let store = testbed_store().await;
    let s3 = s3_client(&store);
    let mut cfg = EmulatorConfig::new(local());
    cfg.store = Some(store.clone());
    cfg.timings = Timings::fast();
    cfg.data_path_nice = Some(10);
    let emu = Emulator::start(cfg).await.expect("starting the emulator");
    let api = Api::new(&emu);
    let ctl = emu.control();
    ctl.create_volume("niced", 4 << 20).await.unwrap();
    ctl.write("niced", 0, &pattern(4 << 20, 3)).await.unwrap();
    let name = backup(&api, "niced", "snap-niced").await;
    let bv = api.get("v1/backupvolumes").await.json["data"][0]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let done = wait_backup_state(&api, &bv, &name, "Completed").await;
    assert_eq!(done["size"], (4u64 << 20).to_string(), "{done:#}");
    // The data path's threads, as the kernel sees them: name and nice.
    let mut niceness = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let dir = task.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() == "emulator-data" {
            let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
            let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or_default();
            niceness.push(
                after
                    .split_whitespace()
                    .nth(16)
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
    }
    assert!(!niceness.is_empty(), "no emulator-data thread");
    assert!(niceness.iter().all(|n| n == "10"), "{niceness:?}");
    emu.shutdown().await;
    delete_prefix(&s3, &store.bucket, &format!("{}/", store.prefix)).await;
}
