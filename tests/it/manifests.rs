//! Manifests. Those in `k8s/` are valid Kubernetes objects, their dr
//! configuration passes `dr config check`, and the Deployment runs a dr
//! command line that parses and probes paths that `dr serve` serves. And a
//! recovery point's manifests on the test bed's API server: captured by
//! discovery with the cluster-scoped objects they need, restored in order
//! into a new namespace after the originals and their CRD are gone.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use clap::Parser;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use std::path::PathBuf;

fn k8s_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("k8s")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(k8s_dir().join(name)).unwrap()
}

/// Every document of every manifest in k8s/ (not k8s/monitoring/: plain
/// Prometheus and Grafana files, tested in monitoring.rs).
fn documents() -> Vec<(PathBuf, serde_json::Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(k8s_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_norway::Deserializer::from_str(&text) {
            let obj: serde_json::Value = serde::Deserialize::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            out.push((path.clone(), obj));
        }
    }
    out
}

#[test]
fn every_manifest_is_a_dr_object_in_its_namespace() {
    let mut kinds = Vec::new();
    for (path, obj) in documents() {
        let kind = obj["kind"].as_str().unwrap().to_owned();
        assert!(obj["apiVersion"].is_string(), "{}", path.display());
        assert_eq!(
            obj["metadata"]["labels"]["app.kubernetes.io/name"],
            "dr",
            "{}",
            path.display()
        );
        match kind.as_str() {
            "Namespace" | "ClusterRole" | "ClusterRoleBinding" => {}
            // The example binding lives in the protected namespace.
            "RoleBinding" => assert_eq!(obj["metadata"]["namespace"], "gic-wesago"),
            _ => assert_eq!(
                obj["metadata"]["namespace"],
                "dr-system",
                "{}",
                path.display()
            ),
        }
        kinds.push(kind);
    }
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRole",
            "ClusterRole",
            "ClusterRoleBinding",
            "ClusterRoleBinding",
            "ConfigMap",
            "ConfigMap",
            "Deployment",
            "Namespace",
            "PersistentVolumeClaim",
            "PrometheusRule",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ]
    );
}

fn cluster_role_rules(file: &str) -> Vec<serde_json::Value> {
    documents()
        .into_iter()
        .filter(|(p, o)| p.ends_with(file) && o["kind"] == "ClusterRole")
        .flat_map(|(_, o)| o["rules"].as_array().unwrap().clone())
        .collect()
}

/// Whether a rule grants `verb` on `resource` of `group` (`*` matches any,
/// as in RBAC).
fn grants(rules: &[serde_json::Value], group: &str, resource: &str, verb: &str) -> bool {
    rules.iter().any(|r| {
        r["apiGroups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g == group || g == "*")
            && r["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x == resource || x == "*")
            && r["verbs"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v == verb || v == "*")
    })
}

#[test]
fn the_opt_in_restore_role_grants_what_a_restore_writes() {
    let rules = cluster_role_rules("rbac-restore.yaml");
    for kind in dr::bundle::KINDS {
        assert!(
            grants(&rules, kind.group(), kind.plural, "patch"),
            "{} cannot be server-side applied",
            kind.kind
        );
    }
    for (api_version, kind, plural) in dr::bundle::CLUSTER_KINDS {
        let group = dr::bundle::group_of(api_version);
        assert!(grants(&rules, group, plural, "get"), "{kind}");
        assert!(grants(&rules, group, plural, "create"), "{kind}");
    }
    assert!(grants(&rules, "example.com", "widgets", "patch"));
    for (group, resource, verb) in [
        ("", "namespaces", "create"),
        ("", "persistentvolumeclaims", "create"),
        ("", "persistentvolumeclaims", "delete"),
        ("", "secrets", "create"),
        ("", "pods", "list"),
        ("batch", "jobs", "create"),
        ("apps", "deployments", "patch"),
        ("apps", "statefulsets", "patch"),
    ] {
        assert!(grants(&rules, group, resource, verb), "{verb} {resource}");
    }
}

#[test]
fn rbac_grants_what_a_tick_reads_and_nothing_that_writes() {
    let rules = cluster_role_rules("rbac.yaml");
    let allowed = |group: &str, resource: &str| grants(&rules, group, resource, "list");
    assert!(allowed("", "persistentvolumes"));
    for kind in dr::bundle::KINDS {
        assert!(
            allowed(kind.group(), kind.plural),
            "{} cannot be captured",
            kind.kind
        );
    }
    // Discovery finds kinds no list can name: custom resources too.
    assert!(allowed("example.com", "widgets"));
    for (api_version, kind, plural) in dr::bundle::CLUSTER_KINDS {
        assert!(
            allowed(dr::bundle::group_of(api_version), plural),
            "the {kind}s an application depends on cannot be captured"
        );
    }
    for r in &rules {
        for v in r["verbs"].as_array().unwrap() {
            assert!(v == "get" || v == "list", "dr only reads: {r}");
        }
    }
}

#[test]
fn configmap_holds_a_valid_configuration() {
    let cm: ConfigMap = serde_norway::from_str(&read("config.yaml")).unwrap();
    let text = cm.data.unwrap().remove("dr.yaml").unwrap();
    let cfg = dr::config::Config::parse(&text, "k8s/config.yaml").unwrap();
    assert_eq!(cfg.policies.len(), 1);
}

#[test]
fn deployment_runs_a_valid_dr_command_and_probes_served_paths() {
    let d: Deployment = serde_norway::from_str(&read("deployment.yaml")).unwrap();
    let pod = d.spec.unwrap().template.spec.unwrap();
    let c = &pod.containers[0];
    let mut argv = vec!["dr".to_owned()];
    argv.extend(c.args.clone().unwrap());
    let cli = dr::cli::Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    assert!(matches!(cli.command, dr::cli::Command::Serve(_)));
    let path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .path
            .clone()
            .unwrap()
    };
    assert_eq!(path(&c.liveness_probe), "/healthz");
    assert_eq!(path(&c.readiness_probe), "/readyz");
    let catalog = c
        .env
        .as_ref()
        .unwrap()
        .iter()
        .find(|e| e.name == "DR_CATALOG")
        .unwrap();
    let url: dr::config::CatalogUrl = catalog.value.clone().unwrap().parse().unwrap();
    assert!(url.is_sqlite());
}

// ---------------------------------------------------------------------------
// Recovery-point manifests on the test bed's API server: what a capture
// holds (every served kind by discovery, custom resources included, derived
// kinds left out, the cluster-scoped objects the application depends on),
// and a restore through the runbook's own functions into a namespace, after
// the original and its CRD are gone.

use dr::bundle::{self, Bundle, Resource};
use dr::cluster::restore as k8s;
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

fn ar(r: &Resource) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(r.group(), r.version(), &r.kind),
        &r.plural,
    )
}

/// The objects of `ns` of every resource the bundle records, as `Kind/name`.
async fn live_objects(client: &kube::Client, ns: &str, b: &Bundle) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for r in b.resources.iter().filter(|r| r.namespaced) {
        let api: kube::Api<DynamicObject> = kube::Api::namespaced_with(client.clone(), ns, &ar(r));
        for o in api.list(&ListParams::default()).await.unwrap() {
            out.insert(format!("{}/{}", r.kind, o.metadata.name.unwrap()));
        }
    }
    out
}

fn kinds_of(objects: &[Value]) -> BTreeSet<String> {
    objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap().to_owned())
        .collect()
}

fn named<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind}/{name} is not in the bundle"))
}

async fn delete_cluster(client: &kube::Client, r: &Resource, name: &str) {
    let api: kube::Api<DynamicObject> = kube::Api::all_with(client.clone(), &ar(r));
    let _ = api.delete(name, &DeleteParams::default()).await;
}

async fn wait_gone(client: &kube::Client, r: &Resource, name: &str) {
    let api: kube::Api<DynamicObject> = kube::Api::all_with(client.clone(), &ar(r));
    let start = std::time::Instant::now();
    while api.get_opt(name).await.unwrap().is_some() {
        assert!(
            start.elapsed() < crate::harness::testbed::CONVERGE,
            "{name} still exists"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_holds_every_kind_and_restores_into_a_new_namespace_in_order() {
    use crate::harness::testbed::{self, TestNamespace};
    let tb = testbed::get();
    let admin = tb.kube_client().await;
    let sfx = testbed::suffix();
    let src = TestNamespace::create(&admin, "dr-cap").await;
    let ns = src.name.clone();
    let part = json!({"app.kubernetes.io/part-of": "cap"});
    let cluster = |k: &str| {
        let (v, kind, p) = *bundle::CLUSTER_KINDS.iter().find(|c| c.1 == k).unwrap();
        Resource::new(v, kind, p, false)
    };
    let crd_r = cluster("CustomResourceDefinition");
    let group = format!("t{sfx}.example.com");
    let crd_name = format!("widgets.{group}");
    let widget = Resource::new(&format!("{group}/v1"), "Widget", "widgets", true);
    let uniq = format!("dr-cap-{sfx}");

    // Cluster-scoped objects the application depends on, named uniquely (the
    // API server is shared).
    let cluster_objs = vec![
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
               "metadata": {"name": crd_name},
               "spec": {"group": group, "scope": "Namespaced",
                        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                        "versions": [{"name": "v1", "served": true, "storage": true,
                                      "schema": {"openAPIV3Schema": {"type": "object",
                                          "x-kubernetes-preserve-unknown-fields": true}}}]}}),
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
               "metadata": {"name": uniq}, "provisioner": "example.com/none"}),
        json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
               "metadata": {"name": uniq}, "value": 1000}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": uniq},
               "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": uniq},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": uniq},
               "subjects": [{"kind": "ServiceAccount", "name": "cap-sa", "namespace": ns}]}),
    ];
    let cluster_rs: Vec<Resource> = bundle::CLUSTER_KINDS
        .iter()
        .map(|(v, k, p)| Resource::new(v, k, p, false))
        .collect();
    k8s::apply(&admin, &ns, &cluster_objs, &cluster_rs)
        .await
        .unwrap();
    k8s::wait_established(&admin, &crd_name, std::time::Duration::from_secs(60))
        .await
        .unwrap();

    let tmpl = |app: &str| {
        json!({"metadata": {"labels": {"app": app, "app.kubernetes.io/part-of": "cap"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    };
    let mut web_tmpl = tmpl("web");
    web_tmpl["spec"]["serviceAccountName"] = json!("cap-sa");
    web_tmpl["spec"]["priorityClassName"] = json!(uniq);
    let mut job_tmpl = tmpl("once");
    job_tmpl["spec"]["restartPolicy"] = json!("Never");
    let mut agent_tmpl = tmpl("agent");
    agent_tmpl["spec"]["nodeSelector"] = json!({"disk": "ssd"});
    let app = vec![
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "cap-sa", "labels": part}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "labels": part},
               "data": {"MODE": "production"}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "labels": part},
               "spec": {"type": "NodePort", "selector": {"app": "web"},
                        "ports": [{"port": 80, "nodePort": 31880}]}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": part},
               "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": web_tmpl}}),
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "labels": part},
               "spec": {"replicas": 0, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                        "template": tmpl("db"),
                        "volumeClaimTemplates": [{"metadata": {"name": "data"},
                            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": uniq,
                                     "resources": {"requests": {"storage": "1Gi"}}}}]}}),
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "labels": part},
               "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": agent_tmpl}}),
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "once", "labels": part},
               "spec": {"template": job_tmpl}}),
        json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web", "labels": part},
               "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}}),
        json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
               "metadata": {"name": "web", "labels": part},
               "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                        "minReplicas": 1, "maxReplicas": 3,
                        "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                                     "target": {"type": "Utilization", "averageUtilization": 80}}}]}}),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
               "metadata": {"name": "deny-all", "labels": part},
               "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}),
        json!({"apiVersion": widget.api_version, "kind": "Widget", "metadata": {"name": "w1", "labels": part},
               "spec": {"size": 3}}),
        // Runtime state, labelled like the application: never captured.
        json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e1", "labels": part},
               "involvedObject": {"kind": "ConfigMap", "name": "settings", "namespace": ns},
               "reason": "Test", "message": "runtime"}),
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
               "metadata": {"name": "leader", "labels": part}, "spec": {"holderIdentity": "x"}}),
    ];
    let app_rs = vec![
        widget.clone(),
        Resource::new("apps/v1", "DaemonSet", "daemonsets", true),
        Resource::new("batch/v1", "Job", "jobs", true),
        Resource::new(
            "policy/v1",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
            true,
        ),
        Resource::new(
            "autoscaling/v2",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
            true,
        ),
        Resource::new(
            "networking.k8s.io/v1",
            "NetworkPolicy",
            "networkpolicies",
            true,
        ),
        Resource::new("v1", "Event", "events", true),
        Resource::new("coordination.k8s.io/v1", "Lease", "leases", true),
    ];
    k8s::apply(&admin, &ns, &app, &app_rs).await.unwrap();

    // Wait for the Deployment's ReplicaSet (owned, labelled like the app).
    let rs_r = Resource::new("apps/v1", "ReplicaSet", "replicasets", true);
    let rs_api: kube::Api<DynamicObject> =
        kube::Api::namespaced_with(admin.clone(), &ns, &ar(&rs_r));
    let start = std::time::Instant::now();
    while rs_api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty()
    {
        assert!(start.elapsed() < testbed::CONVERGE, "no ReplicaSet for web");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    // Capture.
    let ns_name: dr::names::Namespace = ns.parse().unwrap();
    let sel: dr::names::Selector = "app.kubernetes.io/part-of=cap".parse().unwrap();
    let b = dr::cluster::capture(
        &admin,
        "cap",
        &ns_name,
        &sel,
        &Default::default(),
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    assert_eq!(b.format, bundle::BUNDLE_FORMAT);
    let kinds = kinds_of(&b.objects);
    let want: BTreeSet<String> = [
        "ConfigMap",
        "DaemonSet",
        "Deployment",
        "HorizontalPodAutoscaler",
        "Job",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
        "StatefulSet",
        "Widget",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(kinds, want, "captured kinds");
    // Derived kinds (Events, Leases, Endpoints, EndpointSlices, Pods, the
    // owned ReplicaSet) are not in it, though labelled like the app.
    for k in [
        "Event",
        "Lease",
        "Endpoints",
        "EndpointSlice",
        "Pod",
        "ReplicaSet",
    ] {
        assert!(!kinds.contains(k), "{k} was captured");
    }
    assert_eq!(
        b.objects.last().unwrap()["kind"],
        "Widget",
        "custom resources last"
    );
    assert_eq!(
        named(&b.objects, "Service", "web")["spec"]["ports"][0]["nodePort"],
        31880
    );
    let job = named(&b.objects, "Job", "once");
    assert!(job["spec"].get("selector").is_none(), "{job}");
    assert!(
        job["status"].is_null()
            && named(&b.objects, "HorizontalPodAutoscaler", "web")["status"].is_null()
    );
    assert!(b.resources.contains(&widget), "{:?}", b.resources);
    assert_eq!(
        kinds_of(&b.cluster_objects),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "PriorityClass",
            "StorageClass"
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    );
    let crd = named(&b.cluster_objects, "CustomResourceDefinition", &crd_name);
    assert!(crd["status"].is_null() && crd["spec"]["group"] == group.as_str());
    assert_eq!(b.cluster_objects[0]["kind"], "CustomResourceDefinition");
    // Read back as stored.
    let b: Bundle = serde_json::from_str(&serde_json::to_string(&b).unwrap()).unwrap();

    // The policy narrows the kinds.
    let narrowed = dr::cluster::capture(
        &admin,
        "cap",
        &ns_name,
        &sel,
        &dr::config::KindsConfig {
            include: vec![],
            exclude: vec!["Widget".parse().unwrap(), "jobs.batch".parse().unwrap()],
        },
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    let nk = kinds_of(&narrowed.objects);
    assert!(!nk.contains("Widget") && !nk.contains("Job") && nk.contains("Deployment"));
    let only = dr::cluster::capture(
        &admin,
        "cap",
        &ns_name,
        &sel,
        &dr::config::KindsConfig {
            include: vec!["deployments.apps".parse().unwrap()],
            exclude: vec![],
        },
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    assert_eq!(
        kinds_of(&only.objects),
        BTreeSet::from(["Deployment".to_owned()])
    );
    let e = dr::cluster::capture(
        &admin,
        "cap",
        &ns_name,
        &sel,
        &dr::config::KindsConfig {
            include: vec!["gadgets.example.com".parse().unwrap()],
            exclude: vec![],
        },
        chrono::Utc::now(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("gadgets.example.com"), "{e}");

    // The disaster: the namespace and the CRD gone (its Widgets with it), the
    // PriorityClass gone; the ClusterRole changed by someone since.
    src.delete_and_wait().await;
    delete_cluster(&admin, &crd_r, &crd_name).await;
    delete_cluster(&admin, &cluster("PriorityClass"), &uniq).await;
    wait_gone(&admin, &crd_r, &crd_name).await;
    wait_gone(&admin, &cluster("PriorityClass"), &uniq).await;
    let mut changed = cluster_objs[3].clone();
    changed["rules"][0]["verbs"] = json!(["get", "list"]);
    k8s::apply(&admin, "-", &[changed], &cluster_rs)
        .await
        .unwrap();

    // Restore as the runbook's apply step does, into a fresh namespace.
    let target = format!("dr-cap-r-{sfx}");
    k8s::ensure_namespace(
        &admin,
        &target,
        &BTreeMap::from([("dr.test/testbed".to_owned(), "true".to_owned())]),
        std::time::Duration::from_secs(60),
    )
    .await
    .unwrap();
    let outcome = k8s::ensure_cluster_objects(&admin, &b).await.unwrap();
    assert_eq!(
        outcome.created,
        [
            format!("CustomResourceDefinition/{crd_name}"),
            format!("PriorityClass/{uniq}")
        ]
    );
    assert_eq!(outcome.differing, [format!("ClusterRole/{uniq} (rules)")]);
    assert!(outcome.present.contains(&format!("StorageClass/{uniq}")));
    assert!(
        outcome
            .present
            .contains(&format!("ClusterRoleBinding/{uniq}"))
    );
    let live_role: kube::Api<DynamicObject> =
        kube::Api::all_with(admin.clone(), &ar(&cluster("ClusterRole")));
    let live_role = serde_json::to_value(live_role.get(&uniq).await.unwrap()).unwrap();
    assert_eq!(
        live_role["rules"][0]["verbs"],
        json!(["get", "list"]),
        "left as it was"
    );
    // Established: already waited on by ensure_cluster_objects.
    let crds = kube::Api::<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>::all(admin.clone());
    let conds = crds
        .get(&crd_name)
        .await
        .unwrap()
        .status
        .unwrap()
        .conditions
        .unwrap();
    assert!(
        conds
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
    );

    let objects = bundle::for_redeploy(&b.objects, &target);
    let applied = k8s::apply(&admin, &target, &objects, &b.resources)
        .await
        .unwrap();
    assert!(applied.notes.is_empty(), "{:?}", applied.notes);
    let back = live_objects(&admin, &target, &b).await;
    for o in &b.objects {
        let id = format!(
            "{}/{}",
            o["kind"].as_str().unwrap(),
            o["metadata"]["name"].as_str().unwrap()
        );
        assert!(back.contains(&id), "{id} did not come back: {back:?}");
    }
    let get = |r: Resource, name: &'static str| {
        let api: kube::Api<DynamicObject> =
            kube::Api::namespaced_with(admin.clone(), &target, &ar(&r));
        async move { serde_json::to_value(api.get(name).await.unwrap()).unwrap() }
    };
    let svc = get(Resource::new("v1", "Service", "services", true), "web").await;
    assert_eq!(
        svc["spec"]["ports"][0]["nodePort"], 31880,
        "the explicit nodePort survives"
    );
    let w1 = get(widget.clone(), "w1").await;
    assert_eq!(w1["spec"]["size"], 3);
    let ds_r = Resource::new("apps/v1", "DaemonSet", "daemonsets", true);
    let ds = get(ds_r.clone(), "agent").await;
    assert_eq!(
        ds["spec"]["template"]["spec"]["nodeSelector"],
        json!({bundle::HELD_NODE_LABEL: "true"})
    );
    let deploy = get(
        Resource::new("apps/v1", "Deployment", "deployments", true),
        "web",
    )
    .await;
    assert_eq!(deploy["spec"]["replicas"], 0, "held until the data is back");

    // scale: restore puts everything back as captured.
    k8s::scale(&admin, &target, &bundle::workloads(&b.objects))
        .await
        .unwrap();
    let ds = get(ds_r, "agent").await;
    assert_eq!(
        ds["spec"]["template"]["spec"]["nodeSelector"],
        json!({"disk": "ssd"})
    );
    assert!(ds["metadata"]["annotations"][bundle::HELD_ANNOTATION].is_null());
    let deploy = get(
        Resource::new("apps/v1", "Deployment", "deployments", true),
        "web",
    )
    .await;
    assert_eq!(deploy["spec"]["replicas"], 1);

    // A second copy beside the first: the port is taken, so it gets another.
    let copy = format!("dr-cap-c-{sfx}");
    k8s::ensure_namespace(
        &admin,
        &copy,
        &BTreeMap::from([("dr.test/testbed".to_owned(), "true".to_owned())]),
        std::time::Duration::from_secs(60),
    )
    .await
    .unwrap();
    let applied = k8s::apply(
        &admin,
        &copy,
        &bundle::for_redeploy(&b.objects, &copy),
        &b.resources,
    )
    .await
    .unwrap();
    assert_eq!(applied.notes.len(), 1, "{:?}", applied.notes);
    assert!(
        applied.notes[0].contains("Service/web"),
        "{:?}",
        applied.notes
    );
    let svc_api: kube::Api<DynamicObject> = kube::Api::namespaced_with(
        admin.clone(),
        &copy,
        &ar(&Resource::new("v1", "Service", "services", true)),
    );
    let svc2 = serde_json::to_value(svc_api.get("web").await.unwrap()).unwrap();
    let port2 = svc2["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    assert!(port2 != 31880 && port2 > 0, "{port2}");

    // Clean up what this test made (the API server is shared).
    let ns_api = kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(admin.clone());
    for n in [&target, &copy] {
        let _ = ns_api.delete(n, &DeleteParams::default()).await;
    }
    for (kind, name) in [
        ("ClusterRoleBinding", uniq.as_str()),
        ("ClusterRole", uniq.as_str()),
        ("PriorityClass", uniq.as_str()),
        ("StorageClass", uniq.as_str()),
        ("CustomResourceDefinition", crd_name.as_str()),
    ] {
        delete_cluster(&admin, &cluster(kind), name).await;
    }
}

/// A restored PV is reserved for its claim before the claim exists: another
/// Pending claim of the same class and size does not take it (Kubernetes'
/// PV controller would bind an unreserved Available PV to it), the claim it
/// is reserved for binds it, and reserving it for a third is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reserved_pv_waits_for_its_own_claim() {
    use crate::harness::testbed::{self, TestNamespace};
    use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
    use kube::Api;
    use serde_json::json;
    let tb = testbed::get();
    let kube = tb.kube_client().await;
    let ns = TestNamespace::create(&kube, "dr-reserve").await;
    let class = format!("dr-reserve-{}", testbed::suffix());
    let pv_name = class.clone();
    let pv: PersistentVolume = serde_json::from_value(json!({
        "metadata": {"name": pv_name},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "storageClassName": class, "persistentVolumeReclaimPolicy": "Retain",
                 "csi": {"driver": "driver.longhorn.io", "volumeHandle": pv_name}}}))
    .unwrap();
    let pvs = Api::<PersistentVolume>::all(kube.clone());
    pvs.create(&Default::default(), &pv).await.unwrap();
    dr::cluster::restore::reserve_pv(&kube, &pv_name, &ns.name, "mine")
        .await
        .unwrap();
    // Reserving again for the same claim is a no-op (a resumed run).
    dr::cluster::restore::reserve_pv(&kube, &pv_name, &ns.name, "mine")
        .await
        .unwrap();
    let claim = |name: &str| -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": class,
                     "resources": {"requests": {"storage": "1Gi"}}}}))
        .unwrap()
    };
    let claims = Api::<PersistentVolumeClaim>::namespaced(kube.clone(), &ns.name);
    claims
        .create(&Default::default(), &claim("intruder"))
        .await
        .unwrap();
    // Give the PV controller time to (wrongly) bind it.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let intruder = claims.get("intruder").await.unwrap();
    assert_ne!(
        intruder.status.and_then(|s| s.phase).as_deref(),
        Some("Bound"),
        "a claim the PV is not reserved for must not bind it"
    );
    claims
        .create(&Default::default(), &claim("mine"))
        .await
        .unwrap();
    let bound = testbed::wait_bound(&kube, &ns.name, "mine").await;
    assert_eq!(
        bound.spec.unwrap().volume_name.as_deref(),
        Some(pv_name.as_str())
    );
    let refused = dr::cluster::restore::reserve_pv(&kube, &pv_name, &ns.name, "other").await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains(&format!("{}/mine", ns.name))),
        "{refused:?}"
    );
    let _ = pvs.delete(&pv_name, &Default::default()).await;
    ns.delete().await;
}
