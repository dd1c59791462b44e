//! dr's RBAC in `k8s/rbac.yaml`, applied to the test bed and used the way dr
//! runs: as its ServiceAccount. A tick's reads (claims → PVs → volumes, the
//! manifest bundle) succeed in a namespace bound to `dr-protect`; the same
//! reads elsewhere, and any write, are forbidden. Leases, the one thing dr
//! writes, can be held in dr's own namespace and nowhere else.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use crate::harness::testbed::{self, TestNamespace, kube_client_from};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolume, PersistentVolumeClaim, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn docs() -> Vec<Value> {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/k8s/rbac.yaml")).unwrap();
    serde_norway::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

/// k8s/rbac.yaml on the bed, for a ServiceAccount `dr` in `sys` (standing
/// for dr-system) protecting `app` (standing for gic-wesago). Cluster-scoped
/// names get the suffix; they are removed by [`Rbac::remove`].
struct Rbac {
    cluster_roles: Vec<String>,
    cluster_bindings: Vec<String>,
}

impl Rbac {
    async fn apply(admin: &kube::Client, sys: &str, app: &str) -> Rbac {
        let sfx = testbed::suffix();
        let pp = PostParams::default();
        let sa: ServiceAccount =
            serde_json::from_value(json!({"metadata": {"name": "dr"}})).unwrap();
        Api::<ServiceAccount>::namespaced(admin.clone(), sys)
            .create(&pp, &sa)
            .await
            .unwrap();
        let mut rbac = Rbac {
            cluster_roles: Vec::new(),
            cluster_bindings: Vec::new(),
        };
        for mut d in docs() {
            let name = format!("{}-{sfx}", d["metadata"]["name"].as_str().unwrap());
            d["metadata"]["name"] = name.clone().into();
            let ns = match d["metadata"]["namespace"].as_str() {
                Some("dr-system") => sys,
                Some("gic-wesago") => app,
                Some(other) => panic!("rbac.yaml names namespace {other}"),
                None => "",
            };
            if !ns.is_empty() {
                d["metadata"]["namespace"] = ns.into();
            }
            if d["roleRef"].is_object() {
                let role = format!("{}-{sfx}", d["roleRef"]["name"].as_str().unwrap());
                d["roleRef"]["name"] = role.into();
                assert_eq!(d["subjects"][0]["namespace"], "dr-system");
                d["subjects"][0]["namespace"] = sys.into();
            }
            match d["kind"].as_str().unwrap() {
                "ClusterRole" => {
                    let api = Api::<ClusterRole>::all(admin.clone());
                    api.create(&pp, &serde_json::from_value(d).unwrap())
                        .await
                        .unwrap();
                    rbac.cluster_roles.push(name);
                }
                "ClusterRoleBinding" => {
                    let api = Api::<ClusterRoleBinding>::all(admin.clone());
                    api.create(&pp, &serde_json::from_value(d).unwrap())
                        .await
                        .unwrap();
                    rbac.cluster_bindings.push(name);
                }
                "Role" => {
                    let api = Api::<Role>::namespaced(admin.clone(), ns);
                    api.create(&pp, &serde_json::from_value(d).unwrap())
                        .await
                        .unwrap();
                }
                "RoleBinding" => {
                    let api = Api::<RoleBinding>::namespaced(admin.clone(), ns);
                    api.create(&pp, &serde_json::from_value(d).unwrap())
                        .await
                        .unwrap();
                }
                kind => panic!("rbac.yaml holds a {kind}"),
            }
        }
        rbac
    }

    async fn remove(self, admin: &kube::Client) {
        let dp = DeleteParams::default();
        for n in self.cluster_bindings {
            Api::<ClusterRoleBinding>::all(admin.clone())
                .delete(&n, &dp)
                .await
                .unwrap();
        }
        for n in self.cluster_roles {
            Api::<ClusterRole>::all(admin.clone())
                .delete(&n, &dp)
                .await
                .unwrap();
        }
    }
}

#[tokio::test]
async fn dr_reads_what_a_tick_needs_as_its_service_account_and_nothing_more() {
    let tb = testbed::get();
    let admin = tb.kube_client().await;
    let app = TestNamespace::create(&admin, "dr-rbac-app").await;
    let sys = TestNamespace::create(&admin, "dr-rbac-sys").await;
    let sfx = testbed::suffix();
    let pp = PostParams::default();

    let rbac = Rbac::apply(&admin, &sys.name, &app.name).await;

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
    rbac.remove(&admin).await;
    app.delete().await;
    sys.delete().await;
    Api::<PersistentVolume>::all(admin.clone())
        .delete(&pv_name, &dp)
        .await
        .unwrap();
}

/// A Lease as dr holds a policy's: `dr-<policy>`, its holder and duration.
fn lease(name: &str, holder: &str) -> Lease {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                 "acquireTime": "2026-01-01T00:00:00.000000Z",
                 "renewTime": "2026-01-01T00:00:00.000000Z", "leaseTransitions": 0}
    }))
    .unwrap()
}

#[tokio::test]
async fn dr_holds_leases_in_its_namespace_and_nowhere_else() {
    let tb = testbed::get();
    let admin = tb.kube_client().await;
    let app = TestNamespace::create(&admin, "dr-lease-app").await;
    let sys = TestNamespace::create(&admin, "dr-lease-sys").await;
    let rbac = Rbac::apply(&admin, &sys.name, &app.name).await;
    let dir = tempfile::tempdir().unwrap();
    let path = tb.sa_kubeconfig(&sys.name, "dr", &dir.path().join("sa.kubeconfig"));
    let as_dr = kube_client_from(&path).await;
    let pp = PostParams::default();

    // In dr's namespace: taken, listed, renewed, handed over, released.
    let leases = Api::<Lease>::namespaced(as_dr.clone(), &sys.name);
    let start = Instant::now();
    loop {
        // RBAC objects take a moment to reach the authorizer's cache.
        match leases.create(&pp, &lease("dr-wesago", "dr-0")).await {
            Ok(_) => break,
            Err(e) => {
                assert!(start.elapsed() < Duration::from_secs(30), "{e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let mut held = leases.get("dr-wesago").await.unwrap();
    let listed = leases.list(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    held.spec.as_mut().unwrap().renew_time =
        Some(serde_json::from_value(json!("2026-01-01T00:00:05.000000Z")).unwrap());
    leases.replace("dr-wesago", &pp, &held).await.unwrap();
    let over = json!({"spec": {"holderIdentity": "dr-1", "leaseTransitions": 1}});
    leases
        .patch("dr-wesago", &PatchParams::default(), &Patch::Merge(&over))
        .await
        .unwrap();
    let now = leases.get("dr-wesago").await.unwrap().spec.unwrap();
    assert_eq!(now.holder_identity.as_deref(), Some("dr-1"));
    leases
        .delete("dr-wesago", &DeleteParams::default())
        .await
        .unwrap();

    // Anywhere else: no Lease is taken. (In a protected namespace dr reads
    // every kind, Leases too, as a capture lists what it may; elsewhere not
    // even that.)
    for ns in [app.name.as_str(), "default", "kube-system"] {
        let elsewhere = Api::<Lease>::namespaced(as_dr.clone(), ns);
        let e = elsewhere
            .create(&pp, &lease("dr-wesago", "dr-0"))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, kube::Error::Api(s) if s.code == 403),
            "{ns}: {e:?}"
        );
        if ns != app.name {
            let e = elsewhere.list(&ListParams::default()).await.unwrap_err();
            assert!(
                matches!(&e, kube::Error::Api(s) if s.code == 403),
                "{ns}: {e:?}"
            );
        }
    }

    rbac.remove(&admin).await;
    app.delete().await;
    sys.delete().await;
}
