//! dr's RBAC in `k8s/rbac.yaml`, applied to the test bed and used the way dr
//! runs: as its ServiceAccount. A tick's reads (claims → PVs → volumes, the
//! manifest bundle) succeed in a namespace bound to `dr-protect`; the same
//! reads elsewhere, and any write, are forbidden.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use crate::harness::testbed::{self, TestNamespace, kube_client_from};
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolume, PersistentVolumeClaim, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn docs() -> Vec<Value> {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/k8s/rbac.yaml")).unwrap();
    serde_norway::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

#[tokio::test]
async fn dr_reads_what_a_tick_needs_as_its_service_account_and_nothing_more() {
    let tb = testbed::get();
    let admin = tb.kube_client().await;
    let app = TestNamespace::create(&admin, "dr-rbac-app").await;
    let sys = TestNamespace::create(&admin, "dr-rbac-sys").await;
    let sfx = testbed::suffix();
    let pp = PostParams::default();

    // dr's ServiceAccount and the manifests' RBAC, renamed for this test.
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "dr"}})).unwrap();
    Api::<ServiceAccount>::namespaced(admin.clone(), &sys.name)
        .create(&pp, &sa)
        .await
        .unwrap();
    let mut cluster_roles = Vec::new();
    let mut cluster_bindings = Vec::new();
    for mut d in docs() {
        let name = format!("{}-{sfx}", d["metadata"]["name"].as_str().unwrap());
        let kind_of = d["kind"].as_str().unwrap().to_owned();
        match kind_of.as_str() {
            "ClusterRole" => {
                d["metadata"]["name"] = name.clone().into();
                Api::<ClusterRole>::all(admin.clone())
                    .create(&pp, &serde_json::from_value(d).unwrap())
                    .await
                    .unwrap();
                cluster_roles.push(name);
            }
            kind => {
                d["metadata"]["name"] = name.clone().into();
                let role = format!("{}-{sfx}", d["roleRef"]["name"].as_str().unwrap());
                d["roleRef"]["name"] = role.into();
                d["subjects"][0]["namespace"] = sys.name.clone().into();
                if kind == "ClusterRoleBinding" {
                    Api::<ClusterRoleBinding>::all(admin.clone())
                        .create(&pp, &serde_json::from_value(d).unwrap())
                        .await
                        .unwrap();
                    cluster_bindings.push(name);
                } else {
                    d["metadata"]["namespace"] = app.name.clone().into();
                    Api::<RoleBinding>::namespaced(admin.clone(), &app.name)
                        .create(&pp, &serde_json::from_value(d).unwrap())
                        .await
                        .unwrap();
                }
            }
        }
    }

    // An application with a Longhorn volume, a ConfigMap and a Secret.
    let pv_name = format!("pv-rbac-{sfx}");
    let pv: PersistentVolume = serde_json::from_value(json!({
        "metadata": {"name": pv_name},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "storageClassName": "rbac-test", "persistentVolumeReclaimPolicy": "Retain",
                 "csi": {"driver": "driver.longhorn.io", "volumeHandle": format!("vol-rbac-{sfx}")}}
    }))
    .unwrap();
    Api::<PersistentVolume>::all(admin.clone())
        .create(&pp, &pv)
        .await
        .unwrap();
    let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": "data", "labels": {"app": "rbac"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "rbac-test",
                 "volumeName": pv_name, "resources": {"requests": {"storage": "1Gi"}}}
    }))
    .unwrap();
    Api::<PersistentVolumeClaim>::namespaced(admin.clone(), &app.name)
        .create(&pp, &pvc)
        .await
        .unwrap();
    let cm: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "settings", "labels": {"app": "rbac"}}, "data": {"a": "b"}}),
    )
    .unwrap();
    Api::<ConfigMap>::namespaced(admin.clone(), &app.name)
        .create(&pp, &cm)
        .await
        .unwrap();
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({"metadata": {"name": "db", "labels": {"app": "rbac"}}, "stringData": {"password": "hunter2"}})).unwrap();
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(admin.clone(), &app.name)
        .create(&pp, &secret)
        .await
        .unwrap();

    // As dr's ServiceAccount.
    let dir = tempfile::tempdir().unwrap();
    let path = tb.sa_kubeconfig(&sys.name, "dr", &dir.path().join("sa.kubeconfig"));
    let as_dr = kube_client_from(&path).await;
    let ns: dr::names::Namespace = app.name.parse().unwrap();
    let sel: dr::names::Selector = "app=rbac".parse().unwrap();
    let start = Instant::now();
    let (vols, skipped) = loop {
        // RBAC objects take a moment to reach the authorizer's cache.
        match dr::cluster::resolve_volumes(&as_dr, &ns, &sel).await {
            Ok(v) => break v,
            Err(e) => {
                assert!(start.elapsed() < Duration::from_secs(30), "{e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(vols.len(), 1);
    assert_eq!(vols[0].volume.as_str(), format!("vol-rbac-{sfx}"));
    let bundle = dr::cluster::capture(
        &as_dr,
        "rbac",
        &ns,
        &sel,
        &Default::default(),
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    assert_eq!(bundle.secrets_by_reference, ["db"]);
    assert!(!serde_json::to_string(&bundle).unwrap().contains("hunter2"));

    // Elsewhere, and writes: forbidden.
    let other: dr::names::Namespace = sys.name.parse().unwrap();
    // A capture that may not list a kind fails naming it and what to do.
    let e = dr::cluster::capture(
        &as_dr,
        "rbac",
        &other,
        &sel,
        &Default::default(),
        chrono::Utc::now(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("dr may not read") && e.contains("dr-protect") && e.contains("kinds.exclude"),
        "{e}"
    );
    let e = dr::cluster::resolve_volumes(&as_dr, &other, &sel)
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("403") || e.to_string().contains("forbidden"),
        "{e}"
    );
    let write = Api::<ConfigMap>::namespaced(as_dr.clone(), &app.name)
        .create(
            &pp,
            &serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&write, kube::Error::Api(s) if s.code == 403),
        "{write:?}"
    );

    let dp = DeleteParams::default();
    for n in cluster_bindings {
        Api::<ClusterRoleBinding>::all(admin.clone())
            .delete(&n, &dp)
            .await
            .unwrap();
    }
    for n in cluster_roles {
        Api::<ClusterRole>::all(admin.clone())
            .delete(&n, &dp)
            .await
            .unwrap();
    }
    app.delete().await;
    sys.delete().await;
    Api::<PersistentVolume>::all(admin.clone())
        .delete(&pv_name, &dp)
        .await
        .unwrap();
}
