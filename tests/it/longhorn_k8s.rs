//! The Kubernetes side of Longhorn, through the emulator on the test bed's
//! real API server, and dr's cluster adapter over it: PVCs of StorageClass
//! `longhorn` get volumes and bound PVs; dr resolves PVC → PV → volume and
//! captures the namespace's manifests; a restored volume gets its PV and PVC
//! through `pvCreate`/`pvcCreate`.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use crate::harness::testbed::{self, CONVERGE, TestNamespace};
use dr::longhorn::{ClientConfig, LonghornClient, VolumeWatch};
use k8s_openapi::api::core::v1::PersistentVolume;
use kube::Api;
use longhorn_emulator::{Emulator, EmulatorConfig, Timings};
use std::collections::BTreeMap;
use std::time::Duration;

async fn emulator(kube: kube::Client, ns: &str) -> Emulator {
    let store = testbed::get()
        .emulator_store(&format!("k8s-{}", testbed::suffix()))
        .await;
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
    let bundle = dr::cluster::capture(
        &kube,
        "shop",
        &ns_name,
        &selector,
        &Default::default(),
        chrono::Utc::now(),
    )
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
    let done = VolumeWatch::new(lh.clone())
        .follow(&volume, &b.backup, Duration::from_secs(30), &mut |_| {})
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

/// Claims the selector matches but dr cannot back up are reported with the
/// reason, next to a statically provisioned Longhorn volume that resolves
/// (with its class and capacity), as the API server hands them out.
#[tokio::test]
async fn claims_dr_cannot_protect_are_reported_with_their_reason() {
    use k8s_openapi::api::core::v1::PersistentVolumeClaim;
    use kube::api::{DeleteParams, PostParams};
    let kube = testbed::get().kube_client().await;
    let ns = TestNamespace::create(&kube, "dr-unprot").await;
    let sfx = testbed::suffix();
    let pvs = Api::<PersistentVolume>::all(kube.clone());
    let pvcs = Api::<PersistentVolumeClaim>::namespaced(kube.clone(), &ns.name);
    let pv = |name: &str, source: (&str, serde_json::Value)| -> PersistentVolume {
        let mut spec = serde_json::json!({
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "manual",
        });
        spec[source.0] = source.1;
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": name}, "spec": spec,
        }))
        .unwrap()
    };
    let (lh_pv, other_pv, host_pv) = (
        format!("pv-lh-{sfx}"),
        format!("pv-other-{sfx}"),
        format!("pv-host-{sfx}"),
    );
    let handle = format!("static-{sfx}");
    for p in [
        pv(
            &lh_pv,
            (
                "csi",
                serde_json::json!({"driver": "driver.longhorn.io", "volumeHandle": handle}),
            ),
        ),
        pv(
            &other_pv,
            (
                "csi",
                serde_json::json!({"driver": "csi.example.com", "volumeHandle": "x"}),
            ),
        ),
        pv(&host_pv, ("hostPath", serde_json::json!({"path": "/tmp"}))),
    ] {
        pvs.create(&PostParams::default(), &p).await.unwrap();
    }
    let claim = |name: &str, class: &str, volume: Option<&str>| -> PersistentVolumeClaim {
        let mut spec = serde_json::json!({
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": class,
            "resources": {"requests": {"storage": "1Gi"}},
        });
        if let Some(v) = volume {
            spec["volumeName"] = v.into();
        }
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "labels": {"app": "unprot"}}, "spec": spec,
        }))
        .unwrap()
    };
    let missing = format!("pv-missing-{sfx}");
    for c in [
        claim("a-static", "manual", Some(&lh_pv)),
        claim("b-pending", &format!("none-{sfx}"), None),
        claim("c-missing", "manual", Some(&missing)),
        claim("d-other", "manual", Some(&other_pv)),
        claim("e-host", "manual", Some(&host_pv)),
    ] {
        pvcs.create(&PostParams::default(), &c).await.unwrap();
    }

    let ns_name: dr::names::Namespace = ns.name.parse().unwrap();
    let selector: dr::names::Selector = "app=unprot".parse().unwrap();
    let resolved = dr::cluster::resolve_volumes(&kube, &ns_name, &selector).await;
    for p in [&lh_pv, &other_pv, &host_pv] {
        let _ = pvs.delete(p, &DeleteParams::default()).await;
    }
    let (vols, mut skipped) = resolved.unwrap();

    assert_eq!(vols.len(), 1, "{vols:?}");
    assert_eq!(vols[0].pvc, "a-static");
    assert_eq!(vols[0].pv, lh_pv);
    assert_eq!(vols[0].volume.as_str(), handle);
    assert_eq!(vols[0].storage_class.as_deref(), Some("manual"));
    assert_eq!(vols[0].capacity.as_deref(), Some("1Gi"));
    skipped.sort_by(|a, b| a.pvc.cmp(&b.pvc));
    let reasons: Vec<(&str, &str)> = skipped
        .iter()
        .map(|u| (u.pvc.as_str(), u.reason.as_str()))
        .collect();
    assert_eq!(
        reasons,
        [
            ("b-pending", "not bound to a PersistentVolume yet"),
            (
                "c-missing",
                &*format!("its PersistentVolume {missing} does not exist")
            ),
            (
                "d-other",
                "its volume is provided by csi.example.com, not Longhorn"
            ),
            ("e-host", "its PersistentVolume is not a CSI volume"),
        ]
    );
}
