//! The Kubernetes side of Longhorn, through the emulator on the test bed's
//! real API server, and dr's cluster adapter over it: PVCs of StorageClass
//! `longhorn` get volumes and bound PVs; dr resolves PVC → PV → volume and
//! captures the namespace's manifests; a restored volume gets its PV and PVC
//! through `pvCreate`/`pvcCreate`.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use common::testbed::{self, CONVERGE, TestNamespace};
use dr::longhorn::{ClientConfig, LonghornClient};
use k8s_openapi::api::core::v1::PersistentVolume;
use kube::Api;
use longhorn_emulator::{Emulator, EmulatorConfig, StoreConfig, Timings};
use std::collections::BTreeMap;
use std::time::Duration;

async fn emulator(kube: kube::Client, ns: &str) -> Emulator {
    let store = StoreConfig::from_testbed_env_with_prefix(&format!("k8s-{}", testbed::suffix()))
        .expect("start the test bed: tests/testbed/up");
    let mut cfg = EmulatorConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.store = Some(store);
    cfg.kube = Some(kube);
    cfg.timings = Timings::fast();
    cfg.provision_namespaces = Some(vec![ns.to_owned()]);
    Emulator::start(cfg).await.unwrap()
}

fn client(emu: &Emulator) -> LonghornClient {
    let mut cfg = ClientConfig::new(emu.url());
    cfg.poll = Duration::from_millis(50);
    LonghornClient::new(cfg).unwrap()
}

#[tokio::test]
async fn claims_get_volumes_dr_resolves_and_restores_bind() {
    let kube = testbed::get().kube_client().await;
    let ns = TestNamespace::create(&kube, "dr-lh").await;
    let emu = emulator(kube.clone(), &ns.name).await;
    let lh = client(&emu);
    let app = serde_json::json!({"app.kubernetes.io/part-of": "shop"});
    testbed::longhorn_claim(&kube, &ns.name, "data", app.clone(), "16Mi").await;
    testbed::longhorn_claim(&kube, &ns.name, "cache", app, "16Mi").await;
    testbed::longhorn_claim(
        &kube,
        &ns.name,
        "scratch",
        serde_json::json!({"app.kubernetes.io/part-of": "other"}),
        "16Mi",
    )
    .await;
    let pvc = testbed::wait_bound(&kube, &ns.name, "data").await;
    testbed::wait_bound(&kube, &ns.name, "cache").await;

    // The PV is Longhorn's CSI volume, named after the claim's uid.
    let pv_name = pvc.spec.unwrap().volume_name.unwrap();
    let pv = Api::<PersistentVolume>::all(kube.clone())
        .get(&pv_name)
        .await
        .unwrap();
    let csi = pv.spec.unwrap().csi.unwrap();
    assert_eq!(csi.driver, "driver.longhorn.io");
    let volume = csi.volume_handle.clone();
    assert_eq!(volume, format!("pvc-{}", pvc.metadata.uid.unwrap()));
    let v = lh
        .volume(&volume)
        .await
        .unwrap()
        .expect("the emulated volume exists");
    assert_eq!(v.size, Some(16 * 1024 * 1024));

    // dr's adapter: exactly the selected claims, resolved to their volumes.
    let ns_name: dr::names::Namespace = ns.name.parse().unwrap();
    let selector: dr::names::Selector = "app.kubernetes.io/part-of=shop".parse().unwrap();
    let (vols, skipped) = dr::cluster::resolve_volumes(&kube, &ns_name, &selector)
        .await
        .unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(
        vols.iter().map(|v| v.pvc.as_str()).collect::<Vec<_>>(),
        ["cache", "data"]
    );
    assert_eq!(vols[1].volume.as_str(), volume);

    // kubernetesStatus is filled from the cluster.
    let start = std::time::Instant::now();
    loop {
        let v = lh.volume(&volume).await.unwrap().unwrap();
        if v.kubernetes_status.pvc_name == "data" {
            assert_eq!(v.kubernetes_status.namespace, ns.name);
            assert_eq!(v.kubernetes_status.pv_name, pv_name);
            break;
        }
        assert!(
            start.elapsed() < CONVERGE,
            "kubernetesStatus never filled: {:?}",
            v.kubernetes_status
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The bundle holds the claims without their binding.
    let bundle = dr::cluster::capture(&kube, "shop", &ns_name, &selector, chrono::Utc::now())
        .await
        .unwrap();
    let claims: Vec<_> = bundle
        .objects
        .iter()
        .filter(|o| o["kind"] == "PersistentVolumeClaim")
        .collect();
    assert_eq!(claims.len(), 2);
    assert!(claims.iter().all(|c| c["spec"].get("volumeName").is_none()));
    assert!(claims.iter().all(|c| c["metadata"].get("uid").is_none()));

    // Back up, restore to a new volume, give it a PV and a claim elsewhere.
    let ctl = emu.control();
    ctl.write(&volume, 0, b"the data of the shop")
        .await
        .unwrap();
    let labels = BTreeMap::new();
    lh.ensure_snapshot(&volume, "snap-k8s", &labels, Duration::from_secs(10))
        .await
        .unwrap();
    let b = lh
        .request_backup(&volume, "snap-k8s", &labels)
        .await
        .unwrap();
    let done = lh
        .follow_backup(&volume, &b.backup, Duration::from_secs(30), &mut |_| {})
        .await
        .unwrap();
    let restored = format!("r-{}", testbed::suffix());
    lh.create_restored_volume(&restored, &done.url, None)
        .await
        .unwrap();
    let rv = lh
        .wait_restored(&restored, Duration::from_secs(60), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(
        rv.kubernetes_status.pvc_name, "data",
        "copied from the backup's labels"
    );
    assert_eq!(
        ctl.checksum(&restored).await.unwrap(),
        ctl.checksum(&volume).await.unwrap()
    );
    let target = TestNamespace::create(&kube, "dr-lh-target").await;
    lh.pv_create(&restored, &restored, "ext4", "longhorn")
        .await
        .unwrap();
    lh.pvc_create(&restored, &target.name, "data")
        .await
        .unwrap();
    let rpvc = testbed::wait_bound(&kube, &target.name, "data").await;
    assert_eq!(
        rpvc.spec.unwrap().volume_name.as_deref(),
        Some(restored.as_str())
    );
    // A second PV for the same volume is refused.
    assert!(
        lh.pv_create(&restored, &restored, "ext4", "longhorn")
            .await
            .is_err()
    );

    target.delete().await;
    ns.delete().await;
    emu.shutdown().await;
}
