//! The emulator's API shapes, error quirks, lifecycles, faults and down mode
//! (reference sections 1-3, 9). No test bed needed.

mod common;

use std::time::{Duration, Instant};

use common::{Api, bare, wait};
use longhorn_emulator::{Fault, Timings};
use serde_json::{Value, json};

fn keys_sorted(v: &Value) -> bool {
    match v {
        Value::Object(m) => {
            let keys: Vec<&String> = m.keys().collect();
            keys.windows(2).all(|w| w[0] < w[1]) && m.values().all(keys_sorted)
        }
        Value::Array(a) => a.iter().all(keys_sorted),
        _ => true,
    }
}

#[tokio::test]
async fn volume_lifecycle_and_envelopes() {
    let emu = bare().await;
    let api = Api::new(&emu);
    emu.control()
        .set_timings(Timings {
            volume_create_ms: 300,
            ..Timings::fast()
        })
        .await
        .unwrap();

    let r = api
        .post("v1/volumes", json!({"name": "vol1", "size": "64Mi"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = &r.json;
    assert_eq!(v["type"], "volume");
    assert_eq!(v["id"], "vol1");
    assert_eq!(v["state"], "");
    assert_eq!(v["robustness"], "");
    assert_eq!(v["size"], "67108864");
    assert!(
        v["links"]["self"]
            .as_str()
            .unwrap()
            .ends_with("/v1/volumes/vol1")
    );
    assert!(
        v["actions"]["snapshotCRCreate"]
            .as_str()
            .unwrap()
            .ends_with("?action=snapshotCRCreate")
    );
    assert!(
        v["actions"].get("snapshotList").is_none(),
        "legacy actions only when attached"
    );
    let created = v["created"].as_str().unwrap();
    assert!(created.ends_with(" +0000 UTC"), "Go time string: {created}");
    assert!(keys_sorted(v));
    assert!(r.text.find("\"actions\"").unwrap() < r.text.find("\"id\"").unwrap());

    let v = api
        .wait_volume("vol1", 5, |v| v["state"] == "creating")
        .await;
    assert_eq!(v["ready"], false);
    let v = api
        .wait_volume("vol1", 5, |v| v["state"] == "detached")
        .await;
    assert_eq!(v["robustness"], "unknown");
    assert_eq!(v["ready"], true);

    let list = api.get("v1/volumes").await;
    assert_eq!(list.json["type"], "collection");
    assert_eq!(list.json["resourceType"], "volume");
    assert_eq!(list.json["data"][0]["name"], "vol1");
    assert!(
        list.json["links"]["self"]
            .as_str()
            .unwrap()
            .ends_with("/v1/volumes")
    );

    // attach is asynchronous; legacy snapshot actions work only once attached.
    let r = api
        .post("v1/volumes/vol1?action=snapshotList", json!({}))
        .await;
    assert_eq!(r.status, 500);
    assert!(
        r.json["message"]
            .as_str()
            .unwrap()
            .contains("engine is not running")
    );
    let v = api
        .action("volumes", "vol1", "attach", json!({"hostId": "node-1"}))
        .await;
    assert_eq!(v["state"], "attaching");
    let v = api
        .wait_volume("vol1", 5, |v| v["state"] == "attached")
        .await;
    assert_eq!(v["robustness"], "healthy");
    assert_eq!(v["controllers"][0]["endpoint"], "/dev/longhorn/vol1");
    let snap = api
        .action("volumes", "vol1", "snapshotCreate", json!({"name": "s1"}))
        .await;
    assert_eq!(snap["type"], "snapshot");
    assert_eq!(snap["usercreated"], true);
    let list = api
        .action("volumes", "vol1", "snapshotList", json!({}))
        .await;
    let names: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"volume-head") && names.contains(&"s1"),
        "{names:?}"
    );
    let r = api
        .post(
            "v1/volumes/vol1?action=snapshotGet",
            json!({"name": "nope"}),
        )
        .await;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.json["message"],
        "cannot find snapshot 'nope' for volume 'vol1'"
    );
    api.action("volumes", "vol1", "detach", json!({})).await;
    api.wait_volume("vol1", 5, |v| v["state"] == "detached")
        .await;

    // delete is asynchronous too
    let r = api
        .call(reqwest::Method::DELETE, "v1/volumes/vol1", None)
        .await;
    assert_eq!((r.status, r.text.as_str()), (200, ""));
    let gone = wait(5, || async {
        (api.get("v1/volumes/vol1").await.status == 404).then_some(())
    })
    .await;
    assert!(gone.is_some(), "volume still there after delete");
    emu.shutdown().await;
}

#[tokio::test]
async fn error_quirks() {
    let emu = bare().await;
    let api = Api::new(&emu);

    // missing volume: 404 with an empty body
    let r = api.get("v1/volumes/missing").await;
    assert_eq!((r.status, r.text.as_str()), (404, ""));
    // unknown route and unknown action: plain-text 404
    let r = api.get("v1/nothing").await;
    assert_eq!(r.status, 404);
    assert!(
        r.content_type.starts_with("text/plain"),
        "{}",
        r.content_type
    );
    assert_eq!(r.text, "404 page not found\n");
    emu.control().create_volume("v", 8 << 20).await.unwrap();
    let r = api.post("v1/volumes/v?action=fly", json!({})).await;
    assert_eq!((r.status, r.text.as_str()), (404, "404 page not found\n"));
    // trailing slash: redirect
    let r = api.get("v1/volumes/").await;
    assert_eq!(r.status, 301);
    // no body on an action: 500 ... EOF, in the error envelope
    let url = api
        .base
        .join("v1/volumes/v?action=snapshotCRCreate")
        .unwrap();
    let resp = api.http.post(url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 500);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["type"], "error");
    assert_eq!(e["status"], 500);
    assert_eq!(e["code"], "Internal Server Error");
    assert!(e["message"].as_str().unwrap().ends_with("EOF"), "{e}");
    assert_eq!(e["detail"], "");
    assert_eq!(e["actions"], json!({}));
    // go-rancher parseRequestUrl: the request URL without its query.
    let self_link = e["links"]["self"].as_str().unwrap();
    assert!(self_link.ends_with("/v1/volumes/v"), "{self_link}");
    // validation: 500, never 4xx
    for body in [
        json!({"name": "Bad_Name", "size": "8Mi"}),
        json!({"name": "odd", "size": "3Mi"}),
        json!({"name": "v", "size": "8Mi"}),
        json!({"name": "r", "fromBackup": "s3://b@r/?backup=backup-0000000000000000&volume=x"}),
    ] {
        let r = api.post("v1/volumes", body.clone()).await;
        assert_eq!(r.status, 500, "{body}: {}", r.text);
        assert_eq!(r.json["type"], "error");
    }
    let r = api
        .post("v1/volumes", json!({"name": "v", "size": "8Mi"}))
        .await;
    assert!(
        r.json["message"]
            .as_str()
            .unwrap()
            .contains("already exists")
    );
    let r = api
        .post(
            "v1/volumes",
            json!({"name": "r", "fromBackup": "s3://b@r/?backup=backup-0000000000000000&volume=x"}),
        )
        .await;
    assert!(
        r.json["message"]
            .as_str()
            .unwrap()
            .starts_with("cannot get backup")
    );
    // backup target unavailable without a store
    let r = api.get("v1/backuptargets/default").await;
    assert_eq!(r.json["available"], false);
    assert_eq!(r.json["pollInterval"], "5m0s");
    let r = api
        .post("v1/volumes/v?action=snapshotBackup", json!({"name": "s"}))
        .await;
    assert_eq!(r.status, 500);
    // api/snapshot.go wraps the backup webhook's refusal.
    assert_eq!(
        r.json["message"],
        "failed to backup snapshot: admission webhook \"validator.longhorn.io\" denied the request: backup target default is not available"
    );
    // backup volumes: the 200 placeholder, 404 backupGet, 500 on an empty name
    let r = api.get("v1/backupvolumes/nope-12345678").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["name"], "nope-12345678");
    let r = api
        .post(
            "v1/backupvolumes/x?action=backupGet",
            json!({"name": "backup-1"}),
        )
        .await;
    assert_eq!(
        (r.status, r.json["code"].as_str()),
        (404, Some("Not Found"))
    );
    let r = api
        .post("v1/backupvolumes/x?action=backupGet", json!({"name": ""}))
        .await;
    assert_eq!(r.status, 500);
    assert_eq!(r.json["message"], "empty backup name is not allowed");
    let r = api
        .post(
            "v1/backupvolumes/x?action=backupDelete",
            json!({"name": "backup-1"}),
        )
        .await;
    assert_eq!(r.status, 200, "deleting a missing backup is a no-op");
    let r = api.get("v1/backupvolumes").await;
    assert_eq!(r.json["data"], json!([]));
    emu.shutdown().await;
}

#[tokio::test]
async fn snapshot_crs() {
    let emu = bare().await;
    let api = Api::new(&emu);
    let ctl = emu.control();
    ctl.set_timings(Timings {
        snapshot_ready_ms: 200,
        ..Timings::fast()
    })
    .await
    .unwrap();
    ctl.create_volume("v", 8 << 20).await.unwrap();
    let s = api
        .action(
            "volumes",
            "v",
            "snapshotCRCreate",
            json!({"name": "s1", "labels": {"a": "b"}}),
        )
        .await;
    assert_eq!(s["type"], "snapshotCR");
    assert_eq!(s["readyToUse"], false);
    assert_eq!(s["labels"], json!({"a": "b"}));
    let r = api
        .post(
            "v1/volumes/v?action=snapshotCRCreate",
            json!({"name": "s1"}),
        )
        .await;
    assert_eq!(r.status, 500);
    assert!(
        r.json["message"]
            .as_str()
            .unwrap()
            .contains("already exists")
    );
    let ready = wait(5, || async {
        let s = api
            .action("volumes", "v", "snapshotCRGet", json!({"name": "s1"}))
            .await;
        (s["readyToUse"] == true).then_some(s)
    })
    .await
    .expect("snapshot ready");
    assert!(!ready["creationTime"].as_str().unwrap().is_empty());
    let generated = api
        .action("volumes", "v", "snapshotCRCreate", json!({}))
        .await;
    let name = generated["name"].as_str().unwrap();
    assert!(name.starts_with("snap-") && name.len() == 21, "{name}");
    let list = api
        .action("volumes", "v", "snapshotCRList", json!({}))
        .await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    let r = api
        .post("v1/volumes/v?action=snapshotCRGet", json!({"name": "zz"}))
        .await;
    assert_eq!(r.status, 404);
    let e = api
        .action("volumes", "v", "snapshotCRDelete", json!({"name": "s1"}))
        .await;
    assert_eq!(e["type"], "empty");
    api.action("volumes", "v", "snapshotCRDelete", json!({"name": "s1"}))
        .await;
    emu.shutdown().await;
}

#[tokio::test]
async fn control_data_and_checksum() {
    let emu = bare().await;
    let ctl = emu.control();
    ctl.create_volume("d", 8 << 20).await.unwrap();
    let zero = ctl.checksum("d").await.unwrap();
    ctl.write("d", (2 << 20) - 3, b"hello world").await.unwrap();
    let data = ctl.read("d").await.unwrap();
    assert_eq!(data.len(), 8 << 20);
    assert_eq!(&data[(2 << 20) - 3..(2 << 20) + 8], b"hello world");
    assert_ne!(ctl.checksum("d").await.unwrap(), zero);
    assert!(ctl.write("d", (8 << 20) - 1, b"xx").await.is_err());
    ctl.write("d", (2 << 20) - 3, &[0u8; 11]).await.unwrap();
    assert_eq!(ctl.checksum("d").await.unwrap(), zero);
    let stats = ctl.stats().await.unwrap();
    assert_eq!(stats.volumes, vec!["d".to_owned()]);
    emu.shutdown().await;
}

#[tokio::test]
async fn faults_latency_hang_and_down() {
    let emu = bare().await;
    let api = Api::new(&emu);
    let ctl = emu.control();
    ctl.create_volume("f", 8 << 20).await.unwrap();

    ctl.set_fault(Fault {
        operation: "getVolume".into(),
        error_rate: 1.0,
        ..Fault::default()
    })
    .await
    .unwrap();
    let r = api.get("v1/volumes/f").await;
    assert_eq!(r.status, 500);
    assert_eq!(r.json["message"], "injected fault");
    assert_eq!(
        api.get("v1/volumes").await.status,
        200,
        "other operations unaffected"
    );

    ctl.set_fault(Fault {
        operation: "*".into(),
        latency_ms: 300,
        ..Fault::default()
    })
    .await
    .unwrap();
    let t = Instant::now();
    assert_eq!(api.get("v1/volumes").await.status, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
    ctl.clear_faults().await.unwrap();

    // after_effect: the snapshot is taken although the answer is 500
    ctl.set_fault(Fault {
        operation: "snapshotCRCreate".into(),
        error_rate: 1.0,
        after_effect: true,
        ..Fault::default()
    })
    .await
    .unwrap();
    let r = api
        .post(
            "v1/volumes/f?action=snapshotCRCreate",
            json!({"name": "s1"}),
        )
        .await;
    assert_eq!(r.status, 500);
    ctl.clear_faults().await.unwrap();
    api.action("volumes", "f", "snapshotCRGet", json!({"name": "s1"}))
        .await;

    // hang: no answer until the faults are cleared
    ctl.set_fault(Fault {
        operation: "listVolumes".into(),
        hang: true,
        ..Fault::default()
    })
    .await
    .unwrap();
    let url = api.base.join("v1/volumes").unwrap();
    let hung =
        tokio::time::timeout(Duration::from_millis(300), api.http.get(url.clone()).send()).await;
    assert!(hung.is_err(), "a hung request answered");
    let pending = tokio::spawn({
        let http = api.http.clone();
        let url = url.clone();
        async move { http.get(url).send().await.map(|r| r.status().as_u16()) }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    ctl.clear_faults().await.unwrap();
    assert_eq!(pending.await.unwrap().unwrap(), 200);

    // down: connections closed with no answer; control still works
    ctl.set_down(true).await.unwrap();
    let err = api.http.get(url.clone()).send().await;
    assert!(err.is_err(), "down Longhorn answered: {err:?}");
    assert!(ctl.stats().await.is_ok());
    ctl.set_down(false).await.unwrap();
    assert_eq!(api.get("v1/volumes").await.status, 200);

    let stats = ctl.stats().await.unwrap();
    assert!(stats.requests["getVolume"] >= 1);
    assert!(stats.requests["listVolumes"] >= 3);
    emu.shutdown().await;
}

#[tokio::test]
async fn settings_and_api_root() {
    let emu = bare().await;
    let api = Api::new(&emu);
    let r = api.get("v1/settings/current-longhorn-version").await;
    assert_eq!(r.json["value"], "v1.12.1");
    let r = api.get("v1/settings/backup-target").await;
    assert_eq!(r.status, 500);
    let r = api.get("v1").await;
    assert_eq!(r.json["type"], "apiVersion");
    let r = api.get("v1/backuptargets").await;
    assert_eq!(r.json["data"][0]["name"], "default");
    emu.shutdown().await;
}

#[tokio::test]
async fn hang_after_effect_does_the_work_then_never_answers() {
    let emu = bare().await;
    let api = Api::new(&emu);
    let ctl = emu.control();
    ctl.create_volume("h", 8 << 20).await.unwrap();
    ctl.set_fault(Fault {
        operation: "snapshotCRCreate".into(),
        hang: true,
        after_effect: true,
        ..Fault::default()
    })
    .await
    .unwrap();
    let url = api
        .base
        .join("v1/volumes/h?action=snapshotCRCreate")
        .unwrap();
    let r = tokio::time::timeout(
        Duration::from_millis(300),
        api.http.post(url).json(&json!({"name": "s1"})).send(),
    )
    .await;
    assert!(r.is_err(), "the request answered");
    ctl.clear_faults().await.unwrap();
    api.action("volumes", "h", "snapshotCRGet", json!({"name": "s1"}))
        .await;
    emu.shutdown().await;
}
