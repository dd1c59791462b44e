//! The opt-in `k8s/opt-in/rbac-restore.yaml`, applied to the test bed: a restore
//! into a new namespace run as dr's ServiceAccount with only that role
//! succeeds and brings back the right bytes.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use crate::harness::app::{CLAIMS, bed, cleanup, json_of};
use crate::harness::testbed::{self, TestNamespace};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};

fn docs() -> Vec<Value> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/k8s/opt-in/rbac-restore.yaml"
    ))
    .unwrap();
    serde_norway::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_runs_as_the_service_account_with_the_restore_role() {
    let tb = testbed::get();
    let mut b = bed(1).await;
    let admin = b.kube.clone();
    let sys = TestNamespace::create(&admin, "dr-rbac-restore-sys").await;
    let sfx = testbed::suffix();
    let pp = PostParams::default();
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "dr"}})).unwrap();
    Api::<ServiceAccount>::namespaced(admin.clone(), &sys.name)
        .create(&pp, &sa)
        .await
        .unwrap();
    let (mut roles, mut bindings) = (Vec::new(), Vec::new());
    for mut d in docs() {
        let name = format!("{}-{sfx}", d["metadata"]["name"].as_str().unwrap());
        d["metadata"]["name"] = name.clone().into();
        if d["kind"] == "ClusterRole" {
            Api::<ClusterRole>::all(admin.clone())
                .create(&pp, &serde_json::from_value(d).unwrap())
                .await
                .unwrap();
            roles.push(name);
        } else {
            let role = format!("{}-{sfx}", d["roleRef"]["name"].as_str().unwrap());
            d["roleRef"]["name"] = role.into();
            d["subjects"][0]["namespace"] = sys.name.clone().into();
            Api::<ClusterRoleBinding>::all(admin.clone())
                .create(&pp, &serde_json::from_value(d).unwrap())
                .await
                .unwrap();
            bindings.push(name);
        }
    }
    let kubeconfig = tb.sa_kubeconfig(&sys.name, "dr", &b.dir.path().join("sa.kubeconfig"));

    let target = format!("dr-rbac-restored-{sfx}");
    b.extra.push(target.clone());
    let out = b
        .dr(&[
            "--output",
            "json",
            "restore",
            "--to",
            "latest",
            "--namespace",
            &target,
        ])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "the restore role is enough");
    assert_eq!(json_of(&out)["run"]["state"], "succeeded");
    let (_, _, sums) = b.points[0].clone();
    for c in CLAIMS {
        assert_eq!(b.claim_checksum(&target, c).await.1, sums[c]);
    }

    // The role is what the restore needed, not everything: no namespace deletion.
    let as_dr = testbed::kube_client_from(&kubeconfig).await;
    match Api::<k8s_openapi::api::core::v1::Namespace>::all(as_dr)
        .delete(&target, &Default::default())
        .await
    {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{s:?}"),
        other => panic!("dr's restore role may delete namespaces: {other:?}"),
    }

    cleanup(&b).await;
    for n in bindings {
        let _ = Api::<ClusterRoleBinding>::all(admin.clone())
            .delete(&n, &Default::default())
            .await;
    }
    for n in roles {
        let _ = Api::<ClusterRole>::all(admin.clone())
            .delete(&n, &Default::default())
            .await;
    }
}
