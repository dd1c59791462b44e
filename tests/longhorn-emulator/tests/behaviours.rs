//! Behaviours modelled from longhorn-manager v1.12.1's source (each test
//! cites what it follows): snapshot limits, snapshots of detached volumes,
//! name auto-correction, the manager version, unschedulable replicas.
//! No test bed needed.

mod common;

use std::time::Duration;

use common::{Api, bare, wait};
use longhorn_emulator::Timings;
use serde_json::{Value, json};

async fn snap_cr(api: &Api, vol: &str, snap: &str) -> Value {
    api.action("volumes", vol, "snapshotCRGet", json!({ "name": snap }))
        .await
}

async fn wait_snap(
    api: &Api,
    vol: &str,
    snap: &str,
    secs: u64,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let s = snap_cr(api, vol, snap).await;
        if pred(&s) {
            return s;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("snapshot {snap} of {vol} never reached the condition: {s:#}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// webhook/resources/volume/mutator.go Create -> util.AutoCorrectName(name, 40).
#[tokio::test]
async fn volume_names_are_auto_corrected() {
    let emu = bare().await;
    let api = Api::new(&emu);
    let long = "Restore-Of-A-Very-Long-Backup-Volume-Name-0001";
    let r = api
        .post("v1/volumes", json!({"name": long, "size": "8Mi"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // sha512("Restore-Of-...")[:8] of the ORIGINAL name, prefix lowercased.
    let id = r.json["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 40, "{id}");
    assert!(id.starts_with("restore-of-a-very-long-backup-v-"), "{id}");
    assert_eq!(r.json["name"], id.as_str());
    api.wait_volume(&id, 5, |v| v["state"] == "detached").await;
    // the lowercase example of the facts: its checksum is fixed
    let r = api
        .post(
            "v1/volumes",
            json!({"name": "restore-of-a-very-long-backup-volume-name-0001", "size": "8Mi"}),
        )
        .await;
    assert_eq!(r.json["id"], "restore-of-a-very-long-backup-v-c227dc26");
    // short names are only lowercased
    let r = api
        .post("v1/volumes", json!({"name": "MiXed", "size": "8Mi"}))
        .await;
    assert_eq!((r.status, r.json["id"].as_str()), (200, Some("mixed")));
    emu.shutdown().await;
}

/// api/router.go: `backupListByVolume` exists from v1.8.1; gorilla/mux's
/// NotFoundHandler answers for a route that does not exist.
#[tokio::test]
async fn backup_list_by_volume_needs_v1_8_1() {
    let emu = bare().await;
    let api = Api::new(&emu);
    let ctl = emu.control();
    let path = "v1/backupvolumes/x?action=backupListByVolume";
    let r = api.post(path, json!({"name": "x"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    ctl.set_version("v1.8.0").await.unwrap();
    let r = api.get("v1/settings/current-longhorn-version").await;
    assert_eq!(r.json["value"], "v1.8.0");
    assert_eq!(r.json["definition"]["readOnly"], true);
    let r = api.post(path, json!({"name": "x"})).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.content_type, "text/plain; charset=utf-8");
    assert_eq!(r.text, "404 page not found\n");
    // backupList is older
    let r = api
        .post("v1/backupvolumes/x?action=backupList", json!({}))
        .await;
    assert_eq!(r.status, 200);
    ctl.set_version("v1.8.1").await.unwrap();
    assert_eq!(api.post(path, json!({"name": "x"})).await.status, 200);
    emu.shutdown().await;
}

/// api/setting.go SettingSet -> datastore ValidateSetting.
#[tokio::test]
async fn settings_are_writable_with_longhorn_validation() {
    let emu = bare().await;
    let api = Api::new(&emu);
    let r = api.get("v1/settings/snapshot-max-count").await;
    assert_eq!(r.json["value"], "250");
    let put = |v: &str| {
        let body = json!({ "value": v });
        let api = &api;
        async move {
            api.call(
                reqwest::Method::PUT,
                "v1/settings/snapshot-max-count",
                Some(body),
            )
            .await
        }
    };
    let r = put("300").await;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.json["message"],
        "failed to validate setting snapshot-max-count with invalid value 300: snapshot-max-count should be between 2 and 250"
    );
    let r = put("many").await;
    assert_eq!(r.status, 500);
    assert!(
        r.json["message"]
            .as_str()
            .unwrap()
            .contains("strconv.ParseInt: parsing \"many\": invalid syntax"),
        "{}",
        r.text
    );
    let r = put(" 5 ").await;
    assert_eq!(
        (r.status, r.json["value"].as_str()),
        (200, Some("5")),
        "{}",
        r.text
    );
    assert_eq!(
        api.get("v1/settings/snapshot-max-count").await.json["value"],
        "5"
    );
    let r = api
        .call(
            reqwest::Method::PUT,
            "v1/settings/no-such-setting",
            Some(json!({"value": "1"})),
        )
        .await;
    assert_eq!(r.status, 404);
    // the control does the same
    let ctl = emu.control();
    assert!(ctl.set_setting("snapshot-max-count", "1").await.is_err());
    ctl.set_setting("snapshot-max-count", "7").await.unwrap();
    ctl.create_volume("v", 8 << 20).await.unwrap();
    assert_eq!(api.volume("v").await["snapshotMaxCount"], 7);
    emu.shutdown().await;
}

/// The engine refuses a snapshot beyond snapshotMaxCount (longhorn-engine
/// replicator.go RemainSnapshots); the CR is created anyway, carries the
/// error, and is retried until snapshots are removed.
#[tokio::test]
async fn snapshot_limit_is_enforced_by_the_engine_and_retried() {
    let emu = bare().await;
    let api = Api::new(&emu);
    let ctl = emu.control();
    ctl.create_volume("old", 8 << 20).await.unwrap();
    ctl.set_setting("snapshot-max-count", "2").await.unwrap();
    ctl.create_volume("v", 8 << 20).await.unwrap();
    assert_eq!(api.volume("v").await["snapshotMaxCount"], 2);
    assert_eq!(
        api.volume("old").await["snapshotMaxCount"],
        250,
        "existing volumes keep theirs"
    );
    ctl.attach("v").await.unwrap();
    for s in ["s1", "s2"] {
        api.action("volumes", "v", "snapshotCRCreate", json!({"name": s}))
            .await;
        wait_snap(&api, "v", s, 5, |s| s["readyToUse"] == true).await;
    }
    let s3 = api
        .action("volumes", "v", "snapshotCRCreate", json!({"name": "s3"}))
        .await;
    assert_eq!(s3["readyToUse"], false);
    let s3 = wait_snap(&api, "v", "s3", 5, |s| {
        s["error"]
            .as_str()
            .is_some_and(|e| e.contains("too many snapshots created"))
    })
    .await;
    assert_eq!(s3["creationTime"], "");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(snap_cr(&api, "v", "s3").await["readyToUse"], false);
    api.action("volumes", "v", "snapshotCRDelete", json!({"name": "s1"}))
        .await;
    let s3 = wait_snap(&api, "v", "s3", 5, |s| s["readyToUse"] == true).await;
    // `error` is omitempty (api/model.go SnapshotCR): absent once cleared.
    assert!(s3.get("error").is_none(), "{s3}");
    emu.shutdown().await;
}

/// controller/snapshot_controller.go reconcile: a detached volume is
/// attached for the snapshot (ticket snapshot-controller-<snap>), then
/// detached again.
#[tokio::test]
async fn snapshot_of_a_detached_volume_attaches_it() {
    let emu = bare().await;
    let api = Api::new(&emu);
    let ctl = emu.control();
    ctl.set_timings(Timings {
        attach_ms: 400,
        ..Timings::fast()
    })
    .await
    .unwrap();
    ctl.create_volume("d", 8 << 20).await.unwrap();
    let s = api
        .action("volumes", "d", "snapshotCRCreate", json!({"name": "ds"}))
        .await;
    assert_eq!(s["readyToUse"], false);
    let v = api.volume("d").await;
    let ticket = &v["volumeAttachment"]["attachments"]["snapshot-controller-ds"];
    assert_eq!(ticket["attachmentType"], "snapshot-controller", "{v:#}");
    assert_eq!(ticket["parameters"]["disableFrontend"], "any");
    let s = snap_cr(&api, "d", "ds").await;
    assert_eq!(
        s["error"],
        "failed to take snapshot because the volume engine d-e-0 is not running. Waiting for the volume to be attached"
    );
    let s = wait_snap(&api, "d", "ds", 5, |s| s["readyToUse"] == true).await;
    assert!(s.get("error").is_none(), "{s}");
    let v = api.wait_volume("d", 5, |v| v["state"] == "detached").await;
    assert_eq!(v["volumeAttachment"]["attachments"], json!({}));

    // an upgrading engine delays the snapshot until the upgrade ends
    ctl.attach("d").await.unwrap();
    ctl.set_engine_upgrading("d", true).await.unwrap();
    api.action("volumes", "d", "snapshotCRCreate", json!({"name": "du"}))
        .await;
    let s = wait_snap(&api, "d", "du", 5, |s| s.get("error").is_some()).await;
    assert_eq!(
        s["error"],
        "snapshot creation delayed: volume engine d-e-0 is upgrading from image longhornio/longhorn-engine:v1.12.1 to longhornio/longhorn-engine:v1.12.2"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(snap_cr(&api, "d", "du").await["readyToUse"], false);
    ctl.set_engine_upgrading("d", false).await.unwrap();
    wait_snap(&api, "d", "du", 5, |s| {
        s["readyToUse"] == true && s.get("error").is_none()
    })
    .await;
    ctl.detach("d").await.unwrap();
    emu.shutdown().await;
}

/// Restored volumes whose replicas cannot all be scheduled
/// (volume_controller.go reconcileVolumeCondition, types IsVolumeReady).
/// Restores need a store: see behaviours_store.rs. Here: a plain volume
/// with no schedulable replica cannot attach.
#[tokio::test]
async fn a_volume_without_scheduled_replicas_stays_detached() {
    let emu = bare().await;
    let api = Api::new(&emu);
    let ctl = emu.control();
    ctl.set_schedulable_replicas(Some(0)).await.unwrap();
    ctl.create_volume("u", 8 << 20).await.unwrap();
    let v = api.volume("u").await;
    assert_eq!(v["conditions"]["Scheduled"]["status"], "False");
    assert_eq!(
        v["conditions"]["Scheduled"]["reason"],
        "ReplicaSchedulingFailure"
    );
    assert_eq!(v["ready"], false);
    assert_eq!(
        v["notReadyMessage"],
        "volume is currently in detached state with some un-schedulable replicas"
    );
    assert_eq!(v["replicas"][0]["hostId"], "");
    assert!(ctl.attach("u").await.is_err());
    ctl.set_schedulable_replicas(None).await.unwrap();
    ctl.create_volume("ok", 8 << 20).await.unwrap();
    let v = api.volume("ok").await;
    assert_eq!(v["conditions"]["Scheduled"]["status"], "True");
    assert_eq!(v["ready"], true);
    emu.shutdown().await;
}

/// The names of a volume's Snapshot CRs, sorted.
async fn listed(api: &Api, vol: &str) -> Vec<String> {
    let l = api
        .action("volumes", vol, "snapshotCRList", json!({}))
        .await;
    let mut names: Vec<String> = l["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

/// controller/snapshot_controller.go reconcile, deletion branch: a deleted
/// CR of a taken snapshot stays listed (marked removed, not ready) until
/// the engine purged it, the volume attached for it meanwhile; the volume
/// head's parent cannot be purged, so its CR stays until a newer snapshot
/// is taken; a CR the engine never took goes at once.
#[tokio::test]
async fn snapshot_cr_deletion_is_asynchronous() {
    let emu = bare().await;
    let api = Api::new(&emu);
    let ctl = emu.control();
    ctl.set_timings(Timings {
        snapshot_delete_ms: 400,
        attach_ms: 100,
        ..Timings::fast()
    })
    .await
    .unwrap();
    ctl.create_volume("v", 8 << 20).await.unwrap();
    for s in ["s1", "s2"] {
        api.action("volumes", "v", "snapshotCRCreate", json!({"name": s}))
            .await;
        wait_snap(&api, "v", s, 5, |s| s["readyToUse"] == true).await;
    }
    api.wait_volume("v", 5, |v| v["state"] == "detached").await;
    let t0 = std::time::Instant::now();
    let r = api
        .action("volumes", "v", "snapshotCRDelete", json!({"name": "s1"}))
        .await;
    assert_eq!(r["type"], "empty");
    assert_eq!(
        listed(&api, "v").await,
        ["s1", "s2"],
        "still listed once answered"
    );
    // Until the engine runs the deletion passes fail before the status
    // update: the CR still says ready, not removed.
    let s1 = snap_cr(&api, "v", "s1").await;
    assert_eq!(
        (s1["readyToUse"].clone(), s1["markRemoved"].clone()),
        (json!(true), json!(false)),
        "{s1}"
    );
    // Attached for the deletion (ticket snapshot-controller-s1).
    let v = api.volume("v").await;
    assert_eq!(
        v["volumeAttachment"]["attachments"]["snapshot-controller-s1"]["attachmentType"],
        "snapshot-controller",
        "{v:#}"
    );
    let s1 = wait_snap(&api, "v", "s1", 5, |s| s["markRemoved"] == true).await;
    assert_eq!(s1["readyToUse"], false);
    wait(5, || async {
        (listed(&api, "v").await == ["s2"]).then_some(())
    })
    .await
    .expect("s1 purged");
    assert!(
        t0.elapsed() >= Duration::from_millis(500),
        "attach (100 ms) then purge (400 ms): {:?}",
        t0.elapsed()
    );
    api.wait_volume("v", 5, |v| v["state"] == "detached").await;

    // s2 is the volume head's parent: marked removed, never purged...
    api.action("volumes", "v", "snapshotCRDelete", json!({"name": "s2"}))
        .await;
    wait_snap(&api, "v", "s2", 5, |s| s["markRemoved"] == true).await;
    api.wait_volume("v", 5, |v| v["state"] == "detached").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(listed(&api, "v").await, ["s2"], "the head's parent stays");
    // ... until a newer snapshot is its child.
    api.action("volumes", "v", "snapshotCRCreate", json!({"name": "s3"}))
        .await;
    wait(5, || async {
        (listed(&api, "v").await == ["s3"]).then_some(())
    })
    .await
    .expect("s2 purged once s3 was taken");
    assert_eq!(snap_cr(&api, "v", "s3").await["parent"], "");

    // Never taken (a volume that cannot attach): gone at once.
    ctl.set_schedulable_replicas(Some(0)).await.unwrap();
    ctl.create_volume("u", 8 << 20).await.unwrap();
    api.action("volumes", "u", "snapshotCRCreate", json!({"name": "n1"}))
        .await;
    api.action("volumes", "u", "snapshotCRDelete", json!({"name": "n1"}))
        .await;
    let l = api
        .action("volumes", "u", "snapshotCRList", json!({}))
        .await;
    assert_eq!(l["data"], json!([]));
    let v = api.volume("u").await;
    assert_eq!(v["volumeAttachment"]["attachments"], json!({}));
    emu.shutdown().await;
}

/// controller/volume_controller.go reconcileTooManySnapshotsCondition:
/// True at min(snapshot-count-warning-threshold, snapshotMaxCount), counting
/// removed snapshots until purged; False again below it.
#[tokio::test]
async fn too_many_snapshots_condition() {
    let emu = bare().await;
    let api = Api::new(&emu);
    let ctl = emu.control();
    ctl.create_volume("v", 8 << 20).await.unwrap();
    ctl.attach("v").await.unwrap();
    let cond = |v: &Value| v["conditions"]["TooManySnapshots"].clone();
    let c = cond(&api.volume("v").await);
    assert_eq!(c["status"], "False");
    assert_eq!(c["reason"], "");
    let r = api
        .call(
            reqwest::Method::PUT,
            "v1/settings/snapshot-count-warning-threshold",
            Some(json!({"value": "1"})),
        )
        .await;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.json["message"],
        "failed to validate setting snapshot-count-warning-threshold with invalid value 1: value 1 of settings snapshot-count-warning-threshold is invalid: value 1 for data engine all should be larger than or equal to 2"
    );
    ctl.set_setting("snapshot-count-warning-threshold", "2")
        .await
        .unwrap();
    for s in ["s1", "s2"] {
        api.action("volumes", "v", "snapshotCRCreate", json!({"name": s}))
            .await;
        wait_snap(&api, "v", s, 5, |s| s["readyToUse"] == true).await;
    }
    let c = cond(&api.volume("v").await);
    assert_eq!(c["status"], "True", "{c}");
    assert_eq!(c["reason"], "TooManySnapshots");
    assert_eq!(
        c["message"],
        "Snapshots count is 2 at or over the warning threshold 2"
    );
    let since = c["lastTransitionTime"].clone();
    // Marked removed, it still counts; purged, it does not.
    ctl.set_timings(Timings {
        snapshot_delete_ms: 300,
        ..Timings::fast()
    })
    .await
    .unwrap();
    api.action("volumes", "v", "snapshotCRDelete", json!({"name": "s1"}))
        .await;
    assert_eq!(cond(&api.volume("v").await)["status"], "True");
    let v = api
        .wait_volume("v", 5, |v| {
            v["conditions"]["TooManySnapshots"]["status"] == "False"
        })
        .await;
    let c = cond(&v);
    assert_eq!(
        (c["reason"].clone(), c["message"].clone()),
        (json!(""), json!(""))
    );
    assert!(c["lastTransitionTime"].as_str() >= since.as_str(), "{c}");
    // The volume's own maximum counts too: the smaller one applies.
    ctl.set_setting("snapshot-count-warning-threshold", "100")
        .await
        .unwrap();
    ctl.set_setting("snapshot-max-count", "2").await.unwrap();
    ctl.create_volume("w", 8 << 20).await.unwrap();
    ctl.attach("w").await.unwrap();
    for s in ["w1", "w2"] {
        api.action("volumes", "w", "snapshotCRCreate", json!({"name": s}))
            .await;
        wait_snap(&api, "w", s, 5, |s| s["readyToUse"] == true).await;
    }
    assert_eq!(
        cond(&api.volume("w").await)["message"],
        "Snapshots count is 2 at or over the warning threshold 2"
    );
    emu.shutdown().await;
}

/// The control's stats count each operation's requests and the bytes of
/// its request and response bodies.
#[tokio::test]
async fn stats_count_bytes_per_operation() {
    let emu = bare().await;
    let api = Api::new(&emu);
    let ctl = emu.control();
    ctl.create_volume("v", 8 << 20).await.unwrap();
    let before = ctl.stats().await.unwrap();
    let got = api.get("v1/volumes/v").await;
    let body = json!({"name": "s1"});
    let made = api
        .post("v1/volumes/v?action=snapshotCRCreate", body.clone())
        .await;
    let missing = api.get("v1/volumes/nope").await;
    assert_eq!(missing.status, 404);
    let after = ctl.stats().await.unwrap();
    let diff =
        |m: &std::collections::BTreeMap<String, u64>,
         b: &std::collections::BTreeMap<String, u64>,
         op: &str| { m.get(op).copied().unwrap_or(0) - b.get(op).copied().unwrap_or(0) };
    assert_eq!(diff(&after.requests, &before.requests, "getVolume"), 2);
    assert_eq!(
        diff(&after.response_bytes, &before.response_bytes, "getVolume"),
        (got.text.len() + missing.text.len()) as u64
    );
    assert_eq!(
        diff(
            &after.response_bytes,
            &before.response_bytes,
            "snapshotCRCreate"
        ),
        made.text.len() as u64
    );
    assert_eq!(
        diff(
            &after.request_bytes,
            &before.request_bytes,
            "snapshotCRCreate"
        ),
        serde_json::to_vec(&body).unwrap().len() as u64
    );
    assert_eq!(
        diff(&after.request_bytes, &before.request_bytes, "getVolume"),
        0
    );
    emu.shutdown().await;
}
