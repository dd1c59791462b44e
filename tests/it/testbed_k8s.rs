//! Proof that the test bed's control plane behaves like a cluster for what dr
//! needs: namespaces, Deployments whose pods become Ready (scheduler + kwok),
//! Jobs that complete, PVCs that bind to pre-created PVs, garbage collection,
//! namespace finalization, server-side apply and RBAC for a ServiceAccount.
//! Every test works in a namespace of its own. Needs `tests/testbed/up`.

use std::time::Duration;

use crate::harness::testbed::{self, CONVERGE, TestNamespace};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod, Secret,
    ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use serde::de::DeserializeOwned;
use serde_json::json;

fn obj<T: DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("test manifest matches its type")
}

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(CONVERGE, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {CONVERGE:?}: {what}"))
}

/// Polls `check` every 200 ms until it returns true (for conditions on lists,
/// which `await_condition` does not watch).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    within(what, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
}

fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn api_code(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

#[tokio::test]
async fn namespace_finalizes_on_delete() {
    let client = testbed::get().kube_client().await;
    let ns = TestNamespace::create(&client, "tb-ns").await;
    let name = ns.name.clone();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &name);
    cms.create(
        &PostParams::default(),
        &obj(json!({"metadata": {"name": "content"}, "data": {"k": "v"}})),
    )
    .await
    .expect("ConfigMap in the namespace");
    // The root-CA publisher (KCM) puts kube-root-ca.crt into every namespace.
    eventually("kube-root-ca.crt is published", || async {
        cms.get_opt("kube-root-ca.crt")
            .await
            .expect("get")
            .is_some()
    })
    .await;

    ns.delete_and_wait().await;
    let gone = Api::<Namespace>::all(client)
        .get_opt(&name)
        .await
        .expect("get namespace");
    assert!(gone.is_none(), "namespace {name} still exists");
}

#[tokio::test]
async fn deployment_pods_become_ready_and_are_garbage_collected() {
    let client = testbed::get().kube_client().await;
    let ns = TestNamespace::create(&client, "tb-deploy").await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let replicasets: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns.name);
    let deployment: Deployment = obj(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "registry.invalid/web:1"}]}
            }
        }
    }));
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .expect("create Deployment");

    let all_ready = |d: Option<&Deployment>| {
        d.and_then(|d| d.status.as_ref())
            .is_some_and(|s| s.ready_replicas == Some(3) && s.updated_replicas == Some(3))
    };
    within(
        "Deployment web has 3 ready replicas",
        await_condition(deployments.clone(), "web", all_ready),
    )
    .await
    .expect("watching the Deployment");
    within(
        "Deployment web is complete",
        await_condition(
            deployments.clone(),
            "web",
            conditions::is_deployment_completed(),
        ),
    )
    .await
    .expect("watching the Deployment");

    let listed = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("list pods");
    assert_eq!(listed.items.len(), 3);
    for p in &listed.items {
        assert!(pod_ready(p), "pod {:?} is not Ready", p.metadata.name);
        let node = p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or_default();
        assert!(node.starts_with("kwok-node-"), "pod scheduled to {node:?}");
    }

    // Garbage collection: the ReplicaSet and its pods follow the Deployment.
    deployments
        .delete("web", &DeleteParams::background())
        .await
        .expect("delete Deployment");
    eventually(
        "ReplicaSets and pods of web are garbage-collected",
        || async {
            replicasets
                .list(&ListParams::default())
                .await
                .expect("list rs")
                .items
                .is_empty()
                && pods
                    .list(&ListParams::default())
                    .await
                    .expect("list pods")
                    .items
                    .is_empty()
        },
    )
    .await;
    ns.delete().await;
}

#[tokio::test]
async fn job_completes() {
    let client = testbed::get().kube_client().await;
    let ns = TestNamespace::create(&client, "tb-job").await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns.name);
    let job: Job = obj(json!({
        "metadata": {"name": "once"},
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "once", "image": "registry.invalid/mover:1", "command": ["true"]}]
            }}
        }
    }));
    jobs.create(&PostParams::default(), &job)
        .await
        .expect("create Job");
    let done = within(
        "Job once completes",
        await_condition(jobs.clone(), "once", conditions::is_job_completed()),
    )
    .await
    .expect("watching the Job")
    .expect("Job exists");
    assert_eq!(done.status.and_then(|s| s.succeeded), Some(1));
    ns.delete().await;
}

#[tokio::test]
async fn pvc_binds_to_a_precreated_pv() {
    let client = testbed::get().kube_client().await;
    let ns = TestNamespace::create(&client, "tb-pvc").await;
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns.name);
    // A class name of this test's own, so the PV can only match this claim.
    let class = format!("static-{}", ns.name);
    let pv_name = format!("pv-{}", ns.name);
    let pv: PersistentVolume = obj(json!({
        "metadata": {"name": pv_name},
        "spec": {
            "capacity": {"storage": "2Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": class,
            "volumeMode": "Filesystem",
            "csi": {"driver": "driver.longhorn.io", "volumeHandle": pv_name, "fsType": "ext4"}
        }
    }));
    pvs.create(&PostParams::default(), &pv)
        .await
        .expect("create PV");
    let pvc: PersistentVolumeClaim = obj(json!({
        "metadata": {"name": "data"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": class,
            "resources": {"requests": {"storage": "1Gi"}}
        }
    }));
    pvcs.create(&PostParams::default(), &pvc)
        .await
        .expect("create PVC");

    let bound = |c: Option<&PersistentVolumeClaim>| {
        c.and_then(|c| c.status.as_ref())
            .and_then(|s| s.phase.as_deref())
            == Some("Bound")
    };
    let claim = within(
        "PVC data is Bound",
        await_condition(pvcs.clone(), "data", bound),
    )
    .await
    .expect("watching the PVC")
    .expect("PVC exists");
    assert_eq!(
        claim.spec.and_then(|s| s.volume_name).as_deref(),
        Some(pv_name.as_str())
    );
    let volume = pvs.get(&pv_name).await.expect("get PV");
    let claim_ref = volume
        .spec
        .and_then(|s| s.claim_ref)
        .expect("PV has a claimRef");
    assert_eq!(
        (claim_ref.namespace.as_deref(), claim_ref.name.as_deref()),
        (Some(ns.name.as_str()), Some("data"))
    );

    // Deletion passes the pvc-/pv-protection finalizers (KCM).
    pvcs.delete("data", &DeleteParams::default())
        .await
        .expect("delete PVC");
    let uid = volume.metadata.uid.clone().expect("PV uid");
    pvs.delete(&pv_name, &DeleteParams::default())
        .await
        .expect("delete PV");
    within(
        "PV is deleted",
        await_condition(pvs, &pv_name, conditions::is_deleted(&uid)),
    )
    .await
    .expect("watching the PV");
    ns.delete().await;
}

#[tokio::test]
async fn server_side_apply_tracks_field_managers() {
    let client = testbed::get().kube_client().await;
    let ns = TestNamespace::create(&client, "tb-ssa").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    let manifest = |v: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"mode": v}});
    let as_dr = PatchParams::apply("dr-testbed");

    let first = cms
        .patch("settings", &as_dr, &Patch::Apply(manifest("a")))
        .await
        .expect("first apply");
    let second = cms
        .patch("settings", &as_dr, &Patch::Apply(manifest("b")))
        .await
        .expect("second apply");
    assert_eq!(
        second
            .data
            .as_ref()
            .and_then(|d| d.get("mode"))
            .map(String::as_str),
        Some("b")
    );
    assert_eq!(
        first.metadata.uid, second.metadata.uid,
        "apply must update, not recreate"
    );
    let managers = second.metadata.managed_fields.unwrap_or_default();
    assert!(
        managers
            .iter()
            .any(|m| m.manager.as_deref() == Some("dr-testbed")
                && m.operation.as_deref() == Some("Apply")),
        "no Apply entry for dr-testbed in {managers:?}"
    );

    // Another manager changing a field owned by dr-testbed conflicts, unless forced.
    let conflict = cms
        .patch(
            "settings",
            &PatchParams::apply("someone-else"),
            &Patch::Apply(manifest("c")),
        )
        .await
        .expect_err("conflicting apply");
    assert_eq!(
        api_code(&conflict),
        Some(409),
        "expected a conflict, got {conflict:?}"
    );
    let forced = cms
        .patch(
            "settings",
            &PatchParams::apply("someone-else").force(),
            &Patch::Apply(manifest("c")),
        )
        .await
        .expect("forced apply");
    assert_eq!(
        forced.data.and_then(|d| d.get("mode").cloned()).as_deref(),
        Some("c")
    );
    ns.delete().await;
}

#[tokio::test]
async fn service_account_is_held_to_its_role() {
    let tb = testbed::get();
    let client = tb.kube_client().await;
    let ns = TestNamespace::create(&client, "tb-rbac").await;
    let other = TestNamespace::create(&client, "tb-rbac-other").await;
    let pp = PostParams::default();
    Api::<ServiceAccount>::namespaced(client.clone(), &ns.name)
        .create(&pp, &obj(json!({"metadata": {"name": "probe"}})))
        .await
        .expect("create ServiceAccount");
    Api::<Role>::namespaced(client.clone(), &ns.name)
        .create(&pp, &obj(json!({
            "metadata": {"name": "read-configmaps"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]
        })))
        .await
        .expect("create Role");
    Api::<RoleBinding>::namespaced(client.clone(), &ns.name)
        .create(&pp, &obj(json!({
            "metadata": {"name": "probe-reads-configmaps"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-configmaps"},
            "subjects": [{"kind": "ServiceAccount", "name": "probe", "namespace": ns.name}]
        })))
        .await
        .expect("create RoleBinding");

    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = tb.sa_kubeconfig(&ns.name, "probe", &dir.path().join("probe.kubeconfig"));
    let sa_client = testbed::kube_client_from(&kubeconfig).await;

    // Allowed. The authorizer sees the new RoleBinding through an informer, so
    // the first calls may still be refused for a moment.
    let own_cms: Api<ConfigMap> = Api::namespaced(sa_client.clone(), &ns.name);
    eventually(
        "the ServiceAccount may list ConfigMaps in its namespace",
        || async {
            match own_cms.list(&ListParams::default()).await {
                Ok(_) => true,
                Err(e) if api_code(&e) == Some(403) => false,
                Err(e) => panic!("listing ConfigMaps as the ServiceAccount: {e}"),
            }
        },
    )
    .await;
    own_cms
        .get("kube-root-ca.crt")
        .await
        .expect("get a ConfigMap as the ServiceAccount");

    // Forbidden: another resource, another namespace, a verb outside the Role.
    let secrets: Api<Secret> = Api::namespaced(sa_client.clone(), &ns.name);
    let err = secrets
        .list(&ListParams::default())
        .await
        .expect_err("listing Secrets");
    assert_eq!(api_code(&err), Some(403), "listing Secrets: {err:?}");
    let elsewhere: Api<ConfigMap> = Api::namespaced(sa_client.clone(), &other.name);
    let err = elsewhere
        .list(&ListParams::default())
        .await
        .expect_err("listing ConfigMaps elsewhere");
    assert_eq!(
        api_code(&err),
        Some(403),
        "listing ConfigMaps in another namespace: {err:?}"
    );
    let err = own_cms
        .create(&pp, &obj(json!({"metadata": {"name": "nope"}})))
        .await
        .expect_err("creating a ConfigMap");
    assert_eq!(api_code(&err), Some(403), "creating a ConfigMap: {err:?}");

    other.delete().await;
    ns.delete().await;
}

fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Cluster B (the one a lost cluster is recovered into) is a cluster of its
/// own: its own etcd (a namespace made on one is absent on the other), its
/// own Ready kwok nodes, and a control plane that runs a Deployment's pods
/// on those nodes.
#[tokio::test]
async fn cluster_b_is_a_separate_cluster_with_its_own_ready_nodes() {
    let tb = testbed::get();
    let a = tb.kube_client().await;
    let b = tb.kube_client_b().await;
    let (ns_a, ns_b) = (
        Api::<Namespace>::all(a.clone()),
        Api::<Namespace>::all(b.clone()),
    );

    let on_a = TestNamespace::create(&a, "tb-on-a").await;
    assert!(ns_a.get_opt(&on_a.name).await.expect("get on A").is_some());
    assert!(
        ns_b.get_opt(&on_a.name).await.expect("get on B").is_none(),
        "namespace {} made on cluster A is visible on cluster B",
        on_a.name
    );
    let on_b = TestNamespace::create_b(&b, "tb-on-b").await;
    assert!(
        ns_a.get_opt(&on_b.name).await.expect("get on A").is_none(),
        "namespace {} made on cluster B is visible on cluster A",
        on_b.name
    );
    // Distinct clusters, not two names of one: their kube-system namespaces differ.
    let uid = |n: Namespace| n.metadata.uid.expect("namespace uid");
    assert_ne!(
        uid(ns_a.get("kube-system").await.expect("kube-system on A")),
        uid(ns_b.get("kube-system").await.expect("kube-system on B")),
    );

    let kwok = ListParams::default().labels("type=kwok");
    let names = |nodes: &[Node]| -> Vec<String> {
        let mut v: Vec<String> = nodes
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        v.sort();
        v
    };
    let nodes_b = Api::<Node>::all(b.clone())
        .list(&kwok)
        .await
        .expect("nodes of B");
    assert_eq!(
        names(&nodes_b.items),
        ["kwok-b-node-0", "kwok-b-node-1", "kwok-b-node-2"]
    );
    let not_ready: Vec<String> = nodes_b
        .items
        .iter()
        .filter(|n| !node_ready(n))
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    assert!(not_ready.is_empty(), "nodes of B not Ready: {not_ready:?}");
    let nodes_a = Api::<Node>::all(a.clone())
        .list(&kwok)
        .await
        .expect("nodes of A");
    assert!(
        names(&nodes_a.items)
            .iter()
            .all(|n| !n.starts_with("kwok-b-")),
        "cluster A has B's nodes: {:?}",
        names(&nodes_a.items)
    );

    // B's own controllers, scheduler and kwok: a Deployment's pods become
    // Ready on B's nodes.
    let deployments: Api<Deployment> = Api::namespaced(b.clone(), &on_b.name);
    deployments
        .create(
            &PostParams::default(),
            &obj(json!({
                "metadata": {"name": "web"},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "web", "image": "registry.invalid/web:1"}]}
                    }
                }
            })),
        )
        .await
        .expect("create Deployment on B");
    within(
        "Deployment web on B has 2 ready replicas",
        await_condition(deployments, "web", |d: Option<&Deployment>| {
            d.and_then(|d| d.status.as_ref())
                .is_some_and(|s| s.ready_replicas == Some(2))
        }),
    )
    .await
    .expect("watching the Deployment");
    let pods = Api::<Pod>::namespaced(b.clone(), &on_b.name)
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("pods on B");
    for p in &pods.items {
        let node = p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        assert!(node.starts_with("kwok-b-node-"), "pod on node {node:?}");
    }

    on_a.delete().await;
    on_b.delete().await;
}
