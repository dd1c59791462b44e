//! The Kubernetes side against the test bed's real API server: the provisioner
//! binds a PVC of class `longhorn`, `kubernetesStatus` follows the cluster,
//! a backup carries it and a restore gets it back, `pvCreate`/`pvcCreate` bind
//! a restored volume, and a released PV takes its volume with it.
//! Needs tests/testbed/up.

mod common;

use std::time::Duration;

use futures::FutureExt as _;

use common::{
    Api, delete_prefix, local, pattern, s3_client, suffix, testbed_kube, testbed_store, wait,
};
use k8s_openapi::api::core::v1::{Namespace, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{Api as KApi, DeleteParams, PostParams};
use longhorn_emulator::{Emulator, EmulatorConfig, Timings};
use serde_json::json;

async fn pvc_phase(api: &KApi<PersistentVolumeClaim>, name: &str) -> Option<String> {
    api.get(name)
        .await
        .ok()
        .and_then(|p| p.status)
        .and_then(|s| s.phase)
}

#[tokio::test]
async fn provisioner_status_backup_restore_and_pv_pvc_create() {
    let kube = testbed_kube().await;
    let store = testbed_store().await;
    let s3 = s3_client(&store);
    let mut cfg = EmulatorConfig::new(local());
    cfg.kube = Some(kube.clone());
    cfg.store = Some(store.clone());
    cfg.timings = Timings::fast();
    let ns = format!("emu-selftest-{}", suffix());
    // Scoped from the start: other tests' claims on the shared cluster are not ours.
    cfg.provision_namespaces = Some(vec![ns.clone()]);
    let emu = Emulator::start(cfg).await.expect("starting the emulator");
    let api = Api::new(&emu);
    let ctl = emu.control();

    let nss = KApi::<Namespace>::all(kube.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(
            json!({"metadata": {"name": ns, "labels": {"dr.test/testbed": "true"}}}),
        )
        .unwrap(),
    )
    .await
    .expect("creating the namespace");
    let pvcs = KApi::<PersistentVolumeClaim>::namespaced(kube.clone(), &ns);
    let pvs = KApi::<PersistentVolume>::all(kube.clone());
    let mut static_pvs: Vec<String> = Vec::new();

    let result = std::panic::AssertUnwindSafe(async {
        // the StorageClass exists
        let sc = KApi::<k8s_openapi::api::storage::v1::StorageClass>::all(kube.clone())
            .get("longhorn")
            .await
            .expect("StorageClass longhorn");
        assert_eq!(sc.provisioner, "driver.longhorn.io");

        // a PVC of class longhorn gets a volume and a bound PV
        let pvc = pvcs
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": "data"},
                    "spec": {
                        "storageClassName": "longhorn",
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "9Mi"}},
                    },
                }))
                .unwrap(),
            )
            .await
            .expect("creating the PVC");
        let uid = pvc.metadata.uid.clone().unwrap();
        let vol = format!("pvc-{uid}");
        wait(60, || async {
            (pvc_phase(&pvcs, "data").await.as_deref() == Some("Bound")).then_some(())
        })
        .await
        .expect("PVC bound within 60 s");
        let pv = pvs
            .get(&vol)
            .await
            .expect("the PV is named after the volume");
        let spec = pv.spec.unwrap();
        let csi = spec.csi.unwrap();
        assert_eq!(csi.driver, "driver.longhorn.io");
        assert_eq!(csi.volume_handle, vol);
        assert_eq!(csi.fs_type.as_deref(), Some("ext4"));
        assert_eq!(
            spec.persistent_volume_reclaim_policy.as_deref(),
            Some("Delete")
        );
        assert_eq!(spec.storage_class_name.as_deref(), Some("longhorn"));
        let v = api.volume(&vol).await;
        assert_eq!(v["size"], (10u64 << 20).to_string(), "rounded up to 2 MiB");

        // a pod using it shows in kubernetesStatus
        let pods = KApi::<Pod>::namespaced(kube.clone(), &ns);
        pods.create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "app-0"},
                "spec": {
                    "containers": [{"name": "c", "image": "busybox"}],
                    "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}],
                    "tolerations": [{"operator": "Exists"}],
                },
            }))
            .unwrap(),
        )
        .await
        .expect("creating the pod");
        let v = api
            .wait_volume(&vol, 60, |v| {
                let ks = &v["kubernetesStatus"];
                ks["pvStatus"] == "Bound"
                    && ks["pvcName"] == "data"
                    && ks["workloadsStatus"][0]["podName"] == "app-0"
            })
            .await;
        assert_eq!(v["kubernetesStatus"]["namespace"], ns.as_str());
        // the CSI attacher attaches the volume to the pod's node
        let v = api
            .wait_volume(&vol, 60, |v| v["state"] == "attached")
            .await;
        let node = pods
            .get("app-0")
            .await
            .unwrap()
            .spec
            .unwrap()
            .node_name
            .unwrap();
        assert_eq!(v["controllers"][0]["hostId"], node.as_str());
        assert_eq!(v["robustness"], "healthy");
        assert_eq!(v["kubernetesStatus"]["pvName"], vol.as_str());

        // a backup carries the status; a restore gets it back
        ctl.write(&vol, 4096, &pattern(3 << 20, 7)).await.unwrap();
        let sum = ctl.checksum(&vol).await.unwrap();
        api.action("volumes", &vol, "snapshotCRCreate", json!({"name": "s1"}))
            .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        api.action("volumes", &vol, "snapshotBackup", json!({"name": "s1"}))
            .await;
        let v = api
            .wait_volume(&vol, 30, |v| v["backupStatus"][0]["state"] == "Completed")
            .await;
        let url = v["backupStatus"][0]["backupURL"]
            .as_str()
            .unwrap()
            .to_owned();
        let restored = format!("r-{}", suffix());
        let r = api
            .post("v1/volumes", json!({"name": restored, "fromBackup": url}))
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.json["kubernetesStatus"]["pvcName"], "data");
        assert_eq!(r.json["kubernetesStatus"]["namespace"], ns.as_str());
        assert_eq!(r.json["kubernetesStatus"]["pvName"], "");
        assert_ne!(r.json["kubernetesStatus"]["lastPVCRefAt"], "");
        api.wait_volume(&restored, 30, |v| {
            v["restoreRequired"] == false && v["state"] == "detached" && v["ready"] == true
        })
        .await;
        assert_eq!(ctl.checksum(&restored).await.unwrap(), sum);

        // pvCreate + pvcCreate bind it under a new claim
        static_pvs.push(restored.clone());
        api.action(
            "volumes",
            &restored,
            "pvCreate",
            json!({"pvName": restored, "fsType": "ext4"}),
        )
        .await;
        let r = api
            .post(
                &format!("v1/volumes/{restored}?action=pvCreate"),
                json!({"pvName": restored}),
            )
            .await;
        assert_eq!(r.status, 500, "a second PV is refused");
        // manager/kubernetes.go PVCreate: before the PV controller updated the
        // status, the PV object's AlreadyExists; after, the status's PV.
        assert_eq!(
            r.json["message"],
            format!(
                "unable to create PV for volume {restored}: persistentvolumes \"{restored}\" already exists"
            )
        );
        assert_eq!(
            api.volume(&restored).await["kubernetesStatus"]["pvName"],
            "",
            "pvName comes after pvStatusMs"
        );
        api.wait_volume(&restored, 10, |v| v["kubernetesStatus"]["pvName"] == restored.as_str())
            .await;
        let r = api
            .post(
                &format!("v1/volumes/{restored}?action=pvCreate"),
                json!({"pvName": "other"}),
            )
            .await;
        assert_eq!(
            (r.status, r.json["message"].clone()),
            (
                500,
                json!(format!(
                    "unable to create PV for volume {restored}: volume already had PV {restored}"
                ))
            )
        );
        api.action(
            "volumes",
            &restored,
            "pvcCreate",
            json!({"namespace": ns, "pvcName": "data-restored"}),
        )
        .await;
        wait(60, || async {
            (pvc_phase(&pvcs, "data-restored").await.as_deref() == Some("Bound")).then_some(())
        })
        .await
        .expect("restored PVC bound");
        let r = api
            .post(
                &format!("v1/volumes/{restored}?action=pvcCreate"),
                json!({"namespace": ns, "pvcName": "again"}),
            )
            .await;
        assert_eq!(r.status, 500);
        assert!(
            r.json["message"]
                .as_str()
                .unwrap()
                .contains("volume already had PVC"),
            "{}",
            r.text
        );
        api.wait_volume(&restored, 30, |v| {
            v["kubernetesStatus"]["pvcName"] == "data-restored"
                && v["kubernetesStatus"]["pvStatus"] == "Bound"
        })
        .await;

        // deleting the PVC releases the PV: PV and volume go away
        pods.delete(
            "app-0",
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            },
        )
        .await
        .expect("deleting the pod");
        api.wait_volume(&vol, 60, |v| v["state"] == "detached")
            .await;
        pvcs.delete("data", &DeleteParams::default())
            .await
            .expect("deleting the PVC");
        wait(90, || async {
            (api.get(&format!("v1/volumes/{vol}")).await.status == 404).then_some(())
        })
        .await
        .expect("volume deleted after its PVC");
        wait(30, || async {
            pvs.get_opt(&vol)
                .await
                .ok()
                .flatten()
                .is_none()
                .then_some(())
        })
        .await
        .expect("PV deleted after its PVC");
    })
    .catch_unwind()
    .await;

    for pv in static_pvs {
        let _ = pvs.delete(&pv, &DeleteParams::default()).await;
    }
    let _ = nss.delete(&ns, &DeleteParams::default()).await;
    emu.shutdown().await;
    delete_prefix(&s3, &store.bucket, &format!("{}/", store.prefix)).await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
