//! "Measured" (issue 16, item 9): capture time and bundle size for a
//! namespace of 1,000 objects across 30 kinds, and the restore's redeploy
//! stage for that bundle, on the test bed's cluster A.
//!
//! Set-up (timed, printed, no target): 10 namespaced CRDs of a group unique
//! to the run (`b<suffix>.bench.dr`, Established before use) and a fresh
//! namespace holding DR_BENCH_OBJECTS objects (default 1,000) of 30 kinds:
//! the 20 built-in namespaced kinds dr captures (ConfigMaps of a few KiB,
//! Secrets, Services, ServiceAccounts, Roles, RoleBindings, Deployments with
//! env, envFrom, volumes and probes, StatefulSets with claim templates,
//! DaemonSets, CronJobs, Jobs, Ingresses, NetworkPolicies, PDBs, HPAs,
//! LimitRanges, ResourceQuotas, PodTemplates, ReplicationControllers,
//! unbound claims of a StorageClass that does not exist) and custom
//! resources of the 10 CRDs; workloads at 0 replicas, Jobs and CronJobs
//! suspended, DaemonSets on no node, so the kwok nodes run no pods. Created
//! 16 at a time (DR_BENCH_CONCURRENCY).
//!
//! Measured with dr's own functions:
//! 1. `dr::cluster::capture` (discovery, one list per served namespaced
//!    kind, the cluster-scoped dependencies) with selector `app=bench`:
//!    median and max over DR_BENCH_RUNS (default 5). It fails unless every
//!    object of every kind was captured. The bundle's size is what
//!    `Store::put_bundle` stores (pretty JSON, uncompressed: the store does
//!    not compress), read back from S3 with a HEAD, and the put's time.
//! 2. The redeploy stage for that bundle, as the runbook's `apply:
//!    recovery-point` runs it: `ensure_cluster_objects` (the CRDs are
//!    present: read, compared, checked Established), `for_redeploy` +
//!    `apply` (server-side apply, one object after another), then the
//!    by-reference Secrets looked up and copied from the source namespace
//!    (a restore beside the source). Each run into a fresh namespace made
//!    beforehand (untimed, as the infrastructure stage makes it); median and
//!    max, and objects applied per second. Afterwards every kind is counted
//!    in the namespace against what was applied: no figure for a redeploy
//!    that did not happen. Each namespace is deleted and waited out before
//!    the next run.
//!
//! Everything made is labelled `dr.bench/capture=true`; leftovers of earlier
//! runs are deleted at the start, and this run's at the end, failed or not.
//!
//! Run: `tests/testbed/up && cargo bench --bench capture`. Env:
//! DR_BENCH_OBJECTS (default 1000, at least 60), DR_BENCH_RUNS (default 5),
//! DR_BENCH_CONCURRENCY (set-up creates at once, default 16).

#[path = "../tests/it/harness/mod.rs"]
mod common;

use common::testbed;
use dr::bundle::{self, Bundle};
use dr::cluster::restore as k8s;
use dr::config::KindsConfig;
use dr::names::{Namespace, Selector};
use dr::store::Store;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace as K8sNamespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, PostParams,
};
use kube::{Api, Client};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const LABEL: &str = "dr.bench/capture";
const SELECTOR: &str = "app=bench";
const CUSTOM_KINDS: usize = 10;
const SIZES: [&str; 3] = ["small", "medium", "large"];

fn env_num(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let kube = testbed::get().kube_client().await;
        eprintln!("removing leftovers of earlier runs (label {LABEL}) …");
        cleanup(&kube).await?;
        let result = run(&kube).await;
        eprintln!("cleaning up …");
        let cleaned = cleanup(&kube).await;
        result.and(cleaned)
    })
}

/// A built-in kind: (apiVersion, kind, plural, objects per 1,000).
const BUILTIN: &[(&str, &str, &str, usize)] = &[
    ("v1", "ConfigMap", "configmaps", 150),
    ("v1", "Secret", "secrets", 100),
    ("v1", "Service", "services", 80),
    ("v1", "ServiceAccount", "serviceaccounts", 50),
    ("rbac.authorization.k8s.io/v1", "Role", "roles", 30),
    (
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        "rolebindings",
        30,
    ),
    ("apps/v1", "Deployment", "deployments", 80),
    ("apps/v1", "StatefulSet", "statefulsets", 20),
    ("apps/v1", "DaemonSet", "daemonsets", 10),
    ("batch/v1", "CronJob", "cronjobs", 20),
    ("batch/v1", "Job", "jobs", 20),
    ("networking.k8s.io/v1", "Ingress", "ingresses", 30),
    (
        "networking.k8s.io/v1",
        "NetworkPolicy",
        "networkpolicies",
        30,
    ),
    (
        "policy/v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        30,
    ),
    (
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        20,
    ),
    ("v1", "LimitRange", "limitranges", 5),
    ("v1", "ResourceQuota", "resourcequotas", 5),
    ("v1", "PodTemplate", "podtemplates", 10),
    ("v1", "ReplicationController", "replicationcontrollers", 10),
    ("v1", "PersistentVolumeClaim", "persistentvolumeclaims", 40),
];
/// Objects per 1,000 of each custom kind (20 built-in kinds make 770).
const CUSTOM_SHARE: usize = 23;

/// One kind of the bench's namespace and how many objects it gets.
#[derive(Clone)]
struct KindSpec {
    api_version: String,
    kind: String,
    plural: String,
    count: usize,
}

impl KindSpec {
    fn resource(&self) -> ApiResource {
        let (group, version) = match self.api_version.rsplit_once('/') {
            Some((g, v)) => (g, v),
            None => ("", self.api_version.as_str()),
        };
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(group, version, &self.kind),
            &self.plural,
        )
    }
}

/// The 30 kinds and their shares of `n` objects (ConfigMaps take the
/// remainder).
fn kinds(n: usize, group: &str) -> Vec<KindSpec> {
    let mut out: Vec<KindSpec> = BUILTIN
        .iter()
        .map(|(av, k, p, share)| KindSpec {
            api_version: (*av).into(),
            kind: (*k).into(),
            plural: (*p).into(),
            count: (share * n / 1000).max(1),
        })
        .collect();
    for i in 0..CUSTOM_KINDS {
        out.push(KindSpec {
            api_version: format!("{group}/v1"),
            kind: format!("BenchKind{i}"),
            plural: format!("benchkind{i}s"),
            count: (CUSTOM_SHARE * n / 1000).max(1),
        });
    }
    let others: usize = out[1..].iter().map(|k| k.count).sum();
    out[0].count = n - others;
    out
}

fn crd(group: &str, k: &KindSpec) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{}.{group}", k.plural), "labels": {LABEL: "true"}},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {
                "kind": k.kind,
                "plural": k.plural,
                "singular": k.kind.to_lowercase(),
                "listKind": format!("{}List", k.kind),
            },
            "versions": [{
                "name": "v1",
                "served": true,
                "storage": true,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {"spec": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": true
                    }}
                }}
            }]
        }
    })
}

/// Some text of about `bytes` bytes, different for each `seed`.
fn text(seed: usize, bytes: usize) -> String {
    let mut s = String::with_capacity(bytes + 64);
    let mut i = 0;
    while s.len() < bytes {
        s.push_str(&format!(
            "setting.{seed}.{i} = value-{:08x}-{}\n",
            (seed * 2_654_435_761 + i * 40_503) & 0xffff_ffff,
            "x".repeat(i % 17)
        ));
        i += 1;
    }
    s
}

fn pod_spec(i: usize, counts: &BTreeMap<String, usize>) -> Value {
    let cm = format!("configmap-{:04}", i % counts["ConfigMap"]);
    let secret = format!("secret-{:04}", i % counts["Secret"]);
    let sa = format!("serviceaccount-{:04}", i % counts["ServiceAccount"]);
    json!({
        "serviceAccountName": sa,
        "containers": [{
            "name": "app",
            "image": format!("registry.example.com/bench/app:1.{}", i % 7),
            "args": ["--config=/etc/app/app.properties", "--port=8080"],
            "ports": [{"name": "http", "containerPort": 8080}, {"name": "metrics", "containerPort": 9090}],
            "env": [
                {"name": "APP_NAME", "value": format!("app-{i}")},
                {"name": "LOG_LEVEL", "value": "info"},
                {"name": "DB_HOST", "valueFrom": {"configMapKeyRef": {"name": cm, "key": "db.host"}}},
                {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": secret, "key": "password"}}},
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
            ],
            "envFrom": [{"configMapRef": {"name": cm}}],
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
            "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 5},
            "livenessProbe": {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 10},
            "volumeMounts": [
                {"name": "config", "mountPath": "/etc/app"},
                {"name": "creds", "mountPath": "/var/run/creds", "readOnly": true},
                {"name": "cache", "mountPath": "/cache"}
            ]
        }],
        "volumes": [
            {"name": "config", "configMap": {"name": cm}},
            {"name": "creds", "secret": {"secretName": secret}},
            {"name": "cache", "emptyDir": {"sizeLimit": "1Gi"}}
        ]
    })
}

fn template(i: usize, app: &str, counts: &BTreeMap<String, usize>) -> Value {
    json!({
        "metadata": {"labels": {"app": "bench", "component": app}},
        "spec": pod_spec(i, counts)
    })
}

/// Object `i` of a kind, in namespace `ns`.
fn object(k: &KindSpec, i: usize, ns: &str, counts: &BTreeMap<String, usize>) -> Value {
    let name = format!("{}-{i:04}", k.kind.to_lowercase());
    let mut meta = json!({
        "name": name,
        "namespace": ns,
        "labels": {"app": "bench", "component": format!("c{}", i % 10), LABEL: "true"},
        "annotations": {"bench.dr/owner": "team-a", "bench.dr/description": format!("{} number {i} of the capture benchmark", k.kind)}
    });
    let deploy = format!("deployment-{:04}", i % counts["Deployment"]);
    let svc = format!("service-{:04}", i % counts["Service"]);
    let sel = json!({"matchLabels": {"app": "bench", "component": name}});
    let body = match k.kind.as_str() {
        "ConfigMap" => json!({"data": {
            "app.properties": text(i, 2048),
            "logging.yaml": text(i + 1, 768),
            "db.host": format!("db-{}.bench.svc", i % 5),
            "feature.flags": "a=true\nb=false\nc=true\n"
        }}),
        "Secret" => json!({"type": "Opaque", "stringData": {
            "username": format!("user{i}"),
            "password": format!("{:032x}", (i as u128 + 1) * 0x9e37_79b9_7f4a_7c15),
            "token": text(i, 200)
        }}),
        "Service" => {
            if i.is_multiple_of(10) {
                json!({"spec": {"clusterIP": "None", "selector": {"app": "bench", "component": name},
                    "ports": [{"name": "peer", "port": 7000}]}})
            } else {
                json!({"spec": {"type": "ClusterIP", "selector": {"app": "bench", "component": name},
                    "ports": [{"name": "http", "port": 80, "targetPort": "http"}, {"name": "metrics", "port": 9090}]}})
            }
        }
        "ServiceAccount" => json!({"automountServiceAccountToken": false}),
        "Role" => json!({"rules": [
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [format!("secret-{:04}", i % counts["Secret"])], "verbs": ["get"]},
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list"]}
        ]}),
        "RoleBinding" => {
            // Most bind the namespace's Roles; every fifth the built-in ClusterRole view.
            let role_ref = if i.is_multiple_of(5) {
                json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"})
            } else {
                json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": format!("role-{:04}", i % counts["Role"])})
            };
            json!({"subjects": [{"kind": "ServiceAccount", "name": format!("serviceaccount-{:04}", i % counts["ServiceAccount"]), "namespace": ns}],
                "roleRef": role_ref})
        }
        "Deployment" => json!({"spec": {"replicas": 0, "selector": sel,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": template(i, &name, counts)}}),
        "StatefulSet" => {
            json!({"spec": {"replicas": 0, "selector": sel, "serviceName": format!("service-{:04}", (i * 10) % counts["Service"]),
            "template": template(i, &name, counts),
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
                "storageClassName": "dr-bench-none", "resources": {"requests": {"storage": "2Gi"}}}}]}})
        }
        "DaemonSet" => {
            let mut t = template(i, &name, counts);
            t["spec"]["nodeSelector"] = json!({"dr.bench/no-such-node": "true"});
            json!({"spec": {"selector": sel, "template": t}})
        }
        "CronJob" => {
            let mut t = template(i, &name, counts);
            t["spec"]["restartPolicy"] = "OnFailure".into();
            json!({"spec": {"schedule": format!("{} 3 * * *", i % 60), "suspend": true, "concurrencyPolicy": "Forbid",
                "jobTemplate": {"spec": {"backoffLimit": 2, "template": t}}}})
        }
        "Job" => {
            let mut t = template(i, &name, counts);
            t["spec"]["restartPolicy"] = "Never".into();
            json!({"spec": {"suspend": true, "backoffLimit": 1, "template": t}})
        }
        "Ingress" => {
            json!({"spec": {"rules": [{"host": format!("app{i}.bench.example.com"), "http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": svc, "port": {"number": 80}}}},
                {"path": "/metrics", "pathType": "Exact", "backend": {"service": {"name": svc, "port": {"number": 9090}}}}
            ]}}]}})
        }
        "NetworkPolicy" => {
            json!({"spec": {"podSelector": {"matchLabels": {"component": format!("c{}", i % 10)}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "bench"}}}], "ports": [{"protocol": "TCP", "port": 8080}]}],
            "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}], "ports": [{"protocol": "UDP", "port": 53}]}]}})
        }
        "PodDisruptionBudget" => json!({"spec": {"minAvailable": 1,
            "selector": {"matchLabels": {"app": "bench", "component": deploy}}}}),
        "HorizontalPodAutoscaler" => json!({"spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deploy},
            "minReplicas": 1, "maxReplicas": 5,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]}}),
        "LimitRange" => json!({"spec": {"limits": [{"type": "Container",
            "default": {"cpu": "500m", "memory": "512Mi"}, "defaultRequest": {"cpu": "100m", "memory": "128Mi"},
            "max": {"cpu": "4", "memory": "8Gi"}}]}}),
        // Pods only (none run): a quota on counted kinds would make the
        // apply order matter for quota admission, not what is measured.
        "ResourceQuota" => {
            json!({"spec": {"hard": {"pods": "500", "requests.cpu": "64", "requests.memory": "128Gi", "limits.memory": "256Gi"}}})
        }
        "PodTemplate" => json!({"template": template(i, &name, counts)}),
        "ReplicationController" => json!({"spec": {"replicas": 0,
            "selector": {"app": "bench", "component": name},
            "template": template(i, &name, counts)}}),
        "PersistentVolumeClaim" => json!({"spec": {"accessModes": ["ReadWriteOnce"],
            "storageClassName": "dr-bench-none", "resources": {"requests": {"storage": format!("{}Gi", 1 + i % 8)}}}}),
        _ => json!({"spec": {
            "size": SIZES[i % 3],
            "replicas": i % 4,
            "owner": format!("team-{}", i % 6),
            "config": {"retention": format!("{}d", 7 + i % 23), "endpoints": [format!("http://{svc}:80"), format!("http://{svc}:9090")]},
            "notes": text(i, 300)
        }}),
    };
    meta["namespace"] = ns.into();
    let mut obj = json!({"apiVersion": k.api_version, "kind": k.kind, "metadata": meta});
    for (f, v) in body.as_object().into_iter().flatten() {
        obj[f] = v.clone();
    }
    obj
}

async fn create_namespace(kube: &Client, name: &str) -> anyhow::Result<()> {
    let ns: K8sNamespace = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": {LABEL: "true", "dr.test/testbed": "true"}}
    }))?;
    Api::<K8sNamespace>::all(kube.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    Ok(())
}

/// Deletes a namespace and waits until it is gone (at most 5 minutes).
async fn delete_namespace_and_wait(kube: &Client, name: &str) -> anyhow::Result<Duration> {
    let api = Api::<K8sNamespace>::all(kube.clone());
    let start = Instant::now();
    let _ = api.delete(name, &DeleteParams::default()).await;
    while api.get_opt(name).await?.is_some() {
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(300),
            "namespace {name} still exists 5 minutes after its deletion"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(start.elapsed())
}

/// Deletes every namespace and CRD labelled [`LABEL`], waiting for the namespaces.
async fn cleanup(kube: &Client) -> anyhow::Result<()> {
    let lp = ListParams::default().labels(&format!("{LABEL}=true"));
    let namespaces = Api::<K8sNamespace>::all(kube.clone()).list(&lp).await?;
    let names: Vec<String> = namespaces
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    futures::future::try_join_all(names.iter().map(|n| delete_namespace_and_wait(kube, n))).await?;
    let crds = Api::<CustomResourceDefinition>::all(kube.clone());
    for c in crds.list(&lp).await?.items {
        if let Some(n) = c.metadata.name {
            let _ = crds.delete(&n, &DeleteParams::default()).await;
        }
    }
    Ok(())
}

fn stats(v: &[f64]) -> (f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let median = if s.len() % 2 == 1 {
        s[s.len() / 2]
    } else {
        (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
    };
    (median, s[s.len() - 1])
}

/// Objects of each kind in `ns` carrying the bench's label, `Kind` → count.
async fn count_kinds(
    kube: &Client,
    ns: &str,
    specs: &[KindSpec],
) -> anyhow::Result<BTreeMap<String, usize>> {
    let lp = ListParams::default().labels(SELECTOR);
    let mut out = BTreeMap::new();
    for k in specs {
        let api: Api<DynamicObject> = Api::namespaced_with(kube.clone(), ns, &k.resource());
        out.insert(k.kind.clone(), api.list(&lp).await?.items.len());
    }
    Ok(out)
}

async fn run(kube: &Client) -> anyhow::Result<()> {
    let n = env_num("DR_BENCH_OBJECTS", 1000) as usize;
    let runs = env_num("DR_BENCH_RUNS", 5).max(1) as usize;
    let concurrency = env_num("DR_BENCH_CONCURRENCY", 16).max(1) as usize;
    anyhow::ensure!(n >= 60, "DR_BENCH_OBJECTS must be at least 60 (30 kinds)");
    let suffix = testbed::suffix();
    let group = format!("b{suffix}.bench.dr");
    let source = format!("dr-bench-capture-{suffix}");
    let specs = kinds(n, &group);
    let counts: BTreeMap<String, usize> = specs.iter().map(|k| (k.kind.clone(), k.count)).collect();
    assert_eq!(specs.len(), 30);
    assert_eq!(specs.iter().map(|k| k.count).sum::<usize>(), n);

    // Set-up: CRDs Established, the namespace, its objects.
    let t0 = Instant::now();
    let crds = Api::<DynamicObject>::all_with(
        kube.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            "customresourcedefinitions",
        ),
    );
    for k in specs.iter().filter(|k| k.api_version.starts_with(&group)) {
        let obj: DynamicObject = serde_json::from_value(crd(&group, k))?;
        crds.create(&PostParams::default(), &obj).await?;
    }
    for k in specs.iter().filter(|k| k.api_version.starts_with(&group)) {
        k8s::wait_established(
            kube,
            &format!("{}.{group}", k.plural),
            Duration::from_secs(60),
        )
        .await?;
    }
    let crd_secs = t0.elapsed().as_secs_f64();
    create_namespace(kube, &source).await?;
    let objects: Vec<(KindSpec, Value)> = specs
        .iter()
        .flat_map(|k| (0..k.count).map(move |i| (k.clone(), i)))
        .map(|(k, i)| {
            let o = object(&k, i, &source, &counts);
            (k, o)
        })
        .collect();
    let t1 = Instant::now();
    futures::stream::iter(objects.iter().map(|(k, o)| {
        let api: Api<DynamicObject> = Api::namespaced_with(kube.clone(), &source, &k.resource());
        async move {
            let obj: DynamicObject = serde_json::from_value(o.clone())?;
            api.create(&PostParams::default(), &obj)
                .await
                .map_err(|e| anyhow::anyhow!("creating {}/{}: {e}", k.kind, o["metadata"]["name"]))
        }
    }))
    .buffer_unordered(concurrency)
    .try_collect::<Vec<_>>()
    .await?;
    let create_secs = t1.elapsed().as_secs_f64();
    println!(
        "capture benchmark: {n} objects of {} kinds ({} built-in, {CUSTOM_KINDS} custom) in {source}; {runs} runs",
        specs.len(),
        specs.len() - CUSTOM_KINDS
    );
    println!(
        "  set-up: {CUSTOM_KINDS} CRDs created and Established in {crd_secs:.2} s; {n} objects created {concurrency} at a time in {create_secs:.2} s ({:.0} objects/s)",
        n as f64 / create_secs
    );

    // 1. Capture.
    let ns: Namespace = source.parse().map_err(anyhow::Error::msg)?;
    let selector: Selector = SELECTOR.parse().map_err(anyhow::Error::msg)?;
    let kinds_cfg = KindsConfig::default();
    let mut capture_secs = Vec::new();
    let mut bundle: Option<Bundle> = None;
    for _ in 0..runs {
        let t = Instant::now();
        let b = dr::cluster::capture(
            kube,
            "bench",
            &ns,
            &selector,
            &kinds_cfg,
            chrono::Utc::now(),
        )
        .await?;
        capture_secs.push(t.elapsed().as_secs_f64());
        bundle = Some(b);
    }
    let bundle = bundle.expect("at least one run");
    let mut captured: BTreeMap<String, usize> = BTreeMap::new();
    for o in &bundle.objects {
        *captured
            .entry(o["kind"].as_str().unwrap_or_default().to_owned())
            .or_default() += 1;
    }
    anyhow::ensure!(
        captured == counts,
        "the capture does not hold what the namespace holds:\n  captured {captured:?}\n  created  {counts:?}"
    );
    anyhow::ensure!(
        bundle.secrets_by_reference.len() == counts["Secret"],
        "{} Secrets by reference, {} created",
        bundle.secrets_by_reference.len(),
        counts["Secret"]
    );
    // Where a capture's time goes: its discovery, then one list per served
    // namespaced kind it selects, one after another (timed here the same way,
    // apart from the capture).
    let t = Instant::now();
    let discovery = kube::discovery::Discovery::new(kube.clone())
        .exclude(&["metrics.k8s.io"])
        .run_aggregated()
        .await?;
    let discovery_secs = t.elapsed().as_secs_f64();
    let listed: Vec<ApiResource> = discovery
        .groups()
        .flat_map(|g| g.recommended_resources())
        .filter(|(ar, caps)| {
            matches!(caps.scope, kube::discovery::Scope::Namespaced)
                && caps.supports_operation(kube::discovery::verbs::LIST)
                && !ar.plural.contains('/')
                && bundle::selected(&ar.kind, &ar.plural, &ar.group, &[], &[])
        })
        .map(|(ar, _)| ar)
        .collect();
    let lp = ListParams::default().labels(SELECTOR);
    let mut list_secs = Vec::new();
    let mut empty_secs = Vec::new();
    for ar in &listed {
        let api: Api<DynamicObject> = Api::namespaced_with(kube.clone(), &source, ar);
        let t = Instant::now();
        let items = api.list(&lp).await?.items.len();
        let secs = t.elapsed().as_secs_f64();
        list_secs.push((secs, ar.kind.clone(), items));
        if items == 0 {
            empty_secs.push(secs);
        }
    }
    list_secs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (cap_med, cap_max) = stats(&capture_secs);
    println!(
        "  capture: {} objects of {} kinds, {} cluster-scoped objects ({} CRDs), {} Secrets by reference",
        bundle.objects.len(),
        captured.len(),
        bundle.cluster_objects.len(),
        bundle
            .cluster_objects
            .iter()
            .filter(|o| o["kind"] == "CustomResourceDefinition")
            .count(),
        bundle.secrets_by_reference.len()
    );
    println!("  capture time: median {cap_med:.3} s");
    println!("  capture time: max {cap_max:.3} s");
    let lists_total: f64 = list_secs.iter().map(|l| l.0).sum();
    println!(
        "  capture's requests, timed apart: discovery {:.1} ms; {} lists one after another {:.1} ms in all ({:.1} ms per list on average; {} of them empty, {:.1} ms each at the median)",
        discovery_secs * 1000.0,
        listed.len(),
        lists_total * 1000.0,
        lists_total * 1000.0 / listed.len() as f64,
        empty_secs.len(),
        if empty_secs.is_empty() {
            0.0
        } else {
            stats(&empty_secs).0 * 1000.0
        }
    );
    println!(
        "  slowest lists: {}",
        list_secs
            .iter()
            .take(4)
            .map(|(s, k, n)| format!("{k} ({n} objects) {:.1} ms", s * 1000.0))
            .collect::<Vec<_>>()
            .join(", ")
    );

    // The bundle as the store keeps it.
    let tb = testbed::get();
    let s3 = tb.s3_client();
    let store = Store::from_client(
        s3.clone(),
        tb.s3_bucket(),
        &format!("bench-capture-{suffix}"),
    );
    let key = store.bundle_key("bench", chrono::Utc::now());
    let t = Instant::now();
    store.put_bundle(&bundle, &key).await?;
    let put_secs = t.elapsed().as_secs_f64();
    let stored = s3
        .head_object()
        .bucket(tb.s3_bucket())
        .key(&key)
        .send()
        .await?
        .content_length()
        .unwrap_or_default();
    let t = Instant::now();
    let back = store.get_bundle(&key).await?;
    let get_secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(back == bundle, "the bundle read back differs");
    store.delete_bundle(&key).await?;
    let compact = serde_json::to_vec(&bundle)?.len();
    println!(
        "  bundle size: {stored} bytes stored ({:.1} KiB; pretty JSON, uncompressed: the store does not compress; compact JSON would be {compact} bytes)",
        stored as f64 / 1024.0
    );
    println!("  bundle put: {put_secs:.3} s; get and decode: {get_secs:.3} s");

    // 2. The redeploy stage, each run into a fresh namespace.
    let mut stage_secs = Vec::new();
    let mut parts = Vec::new();
    let mut applied_n = 0;
    let mut deletions = Vec::new();
    for r in 0..runs {
        let target = format!("{source}-r{r}");
        create_namespace(kube, &target).await?;
        let t = Instant::now();
        let cluster = k8s::ensure_cluster_objects(kube, &bundle).await?;
        let t_cluster = t.elapsed().as_secs_f64();
        let objects = bundle::for_redeploy(&bundle.objects, &target);
        let applied = k8s::apply(kube, &target, &objects, &bundle.resources).await?;
        let t_apply = t.elapsed().as_secs_f64() - t_cluster;
        let wanted = bundle::secret_names(&bundle.objects);
        let missing = k8s::missing_secrets(kube, &target, &wanted).await?;
        let mut copied = 0;
        for name in &missing {
            if k8s::copy_secret(kube, &source, &target, name).await? {
                copied += 1;
            }
        }
        let total = t.elapsed().as_secs_f64();
        let t_secrets = total - t_cluster - t_apply;
        // Every object is there.
        let mut expected: BTreeMap<String, usize> = BTreeMap::new();
        for o in &objects {
            *expected
                .entry(o["kind"].as_str().unwrap_or_default().to_owned())
                .or_default() += 1;
        }
        *expected.entry("Secret".into()).or_default() += copied;
        expected.insert(
            "PersistentVolumeClaim".into(),
            0, // bound to restored volumes by the data stage, not redeployed
        );
        let live = count_kinds(kube, &target, &specs).await?;
        anyhow::ensure!(
            live == expected && applied.objects.len() == objects.len() && copied == wanted.len(),
            "the redeploy into {target} is incomplete:\n  live     {live:?}\n  expected {expected:?}\n  applied {} of {}, Secrets copied {copied} of {}",
            applied.objects.len(),
            objects.len(),
            wanted.len()
        );
        eprintln!(
            "  run {r}: {total:.2} s (cluster objects {t_cluster:.2} s: {}; apply {} objects {t_apply:.2} s; Secrets {t_secrets:.2} s)",
            cluster.summary(),
            applied.objects.len()
        );
        stage_secs.push(total);
        parts.push((t_cluster, t_apply, t_secrets));
        applied_n = applied.objects.len() + copied;
        deletions.push(
            delete_namespace_and_wait(kube, &target)
                .await?
                .as_secs_f64(),
        );
    }
    let (st_med, st_max) = stats(&stage_secs);
    let med_of = |f: fn(&(f64, f64, f64)) -> f64| stats(&parts.iter().map(f).collect::<Vec<_>>()).0;
    let (c_med, a_med, s_med) = (med_of(|p| p.0), med_of(|p| p.1), med_of(|p| p.2));
    println!(
        "  redeploy: {applied_n} objects into a fresh namespace ({} applied, {} Secrets copied; {} claims left to the data stage), counted back per kind",
        applied_n - counts["Secret"],
        counts["Secret"],
        counts["PersistentVolumeClaim"]
    );
    println!("  redeploy time: median {st_med:.3} s");
    println!("  redeploy time: max {st_max:.3} s");
    println!(
        "  redeploy rate: {:.0} objects/s at the median",
        applied_n as f64 / st_med
    );
    println!(
        "  redeploy parts (medians): cluster objects {c_med:.3} s, apply {a_med:.3} s ({:.1} ms per object), Secrets check and copy {s_med:.3} s",
        a_med * 1000.0 / (applied_n - counts["Secret"]) as f64
    );
    println!(
        "  (untimed: each redeployed namespace deleted in {:.1} s at the median)",
        stats(&deletions).0
    );
    Ok(())
}
