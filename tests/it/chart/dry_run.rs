//! Renderings of the chart sent to the test bed's API server (cluster A) as
//! server-side applies with dry run and strict field validation: every
//! object must be one the API server accepts as written (a misspelt field,
//! a wrong type, an unserved kind fails), nothing is stored. The
//! ServiceMonitor and PrometheusRule are checked against prometheus-operator's
//! own CRDs (fetched by tests/testbed/build, installed here for real: they
//! stay, as CRDs other tests may have discovered meanwhile).

use super::compare::{MONITORING_ON, chart_with_own_monitoring_files, key};
use super::values::OTHER_VALUES;
use super::{documents, render, render_in_repo, repo, try_render_chart};
use crate::harness::testbed::{self, TestNamespace};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::discovery::{Discovery, Scope};
use kube::runtime::wait::{await_condition, conditions};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

const MANAGER: &str = "dr-chart-test";

fn gvk(o: &Value) -> GroupVersionKind {
    let api_version = o["apiVersion"].as_str().unwrap();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    GroupVersionKind::gvk(group, version, o["kind"].as_str().unwrap())
}

/// Server-side applies every object with dry run; the refusals.
async fn refusals(client: &kube::Client, objects: &[Value]) -> Vec<String> {
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let pp = PatchParams::apply(MANAGER)
        .force()
        .dry_run()
        .validation_strict();
    let mut refused = Vec::new();
    for o in objects {
        let (ar, caps) = discovery
            .resolve_gvk(&gvk(o))
            .unwrap_or_else(|| panic!("the API server does not serve {}", key(o)));
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Namespaced => {
                let ns = o["metadata"]["namespace"].as_str().unwrap();
                Api::namespaced_with(client.clone(), ns, &ar)
            }
            Scope::Cluster => Api::all_with(client.clone(), &ar),
        };
        let name = o["metadata"]["name"].as_str().unwrap();
        let obj: DynamicObject = serde_json::from_value(o.clone()).unwrap();
        if let Err(e) = api.patch(name, &pp, &Patch::Apply(&obj)).await {
            refused.push(format!("{}: {e}", key(o)));
        }
    }
    refused
}

/// [`refusals`], failing with them.
async fn dry_run_apply(client: &kube::Client, objects: &[Value]) {
    assert!(!objects.is_empty());
    let refused = refusals(client, objects).await;
    assert!(refused.is_empty(), "refused:\n{}", refused.join("\n"));
}

/// Creates a namespace for real when it is absent (a namespaced dry run needs
/// its namespace). It is left in place: another test may be using it.
async fn ensure_namespace(client: &kube::Client, name: &str) {
    let ns: Namespace = serde_json::from_value(
        json!({"metadata": {"name": name, "labels": {"dr.test/testbed": "true"}}}),
    )
    .unwrap();
    match Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("creating namespace {name}: {e}"),
    }
}

/// Installs prometheus-operator's ServiceMonitor and PrometheusRule CRDs and
/// waits until both are served.
async fn install_monitoring_crds(client: &kube::Client) {
    let dir = Path::new(testbed::get().var("DR_TESTBED_BIN")).join("prometheus-operator-crds");
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    for file in ["servicemonitors.yaml", "prometheusrules.yaml"] {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!("{}: {e}: fetch it with tests/testbed/build", path.display())
        });
        let crd: CustomResourceDefinition = serde_norway::from_str(&text).unwrap();
        let name = crd.metadata.name.clone().unwrap();
        api.patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("installing CRD {name}: {e}"));
        tokio::time::timeout(
            Duration::from_secs(30),
            await_condition(api.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .unwrap_or_else(|_| panic!("CRD {name} not Established within 30 s"))
        .unwrap();
    }
}

/// The default rendering and `k8s/namespace.yaml`: exactly what
/// `kubectl apply -f k8s/` would send, since the two are the same objects.
#[tokio::test]
async fn the_default_rendering_is_accepted_by_the_api_server() {
    let client = testbed::get().kube_client().await;
    for ns in ["dr-system", "gic-wesago"] {
        ensure_namespace(&client, ns).await;
    }
    let mut objects =
        documents(&std::fs::read_to_string(repo().join("k8s/namespace.yaml")).unwrap());
    objects.extend(render(
        "dr",
        "dr-system",
        &["--set", "rbac.restore.enabled=true"],
    ));
    let kinds: Vec<&str> = objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "Deployment",
        "PodDisruptionBudget",
        "Role",
        "ClusterRole",
        "Service",
    ] {
        assert!(kinds.contains(&kind), "{kind} not rendered: {kinds:?}");
    }
    dry_run_apply(&client, &objects).await;
}

/// Other values: a release of another name in a namespace of its own, three
/// replicas, existing Secrets, runbooks, the ServiceMonitor; the one-replica
/// SQLite rendering; and the PrometheusRule and dashboard ConfigMap (with
/// rules of our own, see `chart_with_own_monitoring_files`).
#[tokio::test]
async fn other_renderings_are_accepted_by_the_api_server() {
    let client = testbed::get().kube_client().await;
    install_monitoring_crds(&client).await;
    ensure_namespace(&client, "gic-wesago").await;
    let ns = TestNamespace::create(&client, "dr-chart").await;
    let mut objects = render_in_repo("prod", &ns.name, OTHER_VALUES);
    assert!(objects.iter().any(|o| o["kind"] == "ServiceMonitor"));
    let sqlite = ["--set", "catalog.sqlite.enabled=true,replicas=1"];
    objects.extend(render("lite", &ns.name, &sqlite));
    let copy = chart_with_own_monitoring_files();
    let chart = copy.path().join("dr");
    let monitoring = try_render_chart(&chart, "mon", &ns.name, &["--set", MONITORING_ON]).unwrap();
    let wanted = |o: &&Value| {
        o["kind"] == "PrometheusRule" || o["metadata"]["name"] == "mon-dr-grafana-dashboard"
    };
    let monitoring: Vec<Value> = monitoring.iter().filter(wanted).cloned().collect();
    assert_eq!(monitoring.len(), 2, "{monitoring:?}");
    objects.extend(monitoring);
    dry_run_apply(&client, &objects).await;
    ns.delete().await;
}

/// The dry run refuses what the API server would: the check can fail.
#[tokio::test]
async fn a_misspelt_field_is_refused_by_the_dry_run() {
    let client = testbed::get().kube_client().await;
    for ns in ["dr-system", "gic-wesago"] {
        ensure_namespace(&client, ns).await;
    }
    let mut objects = render("dr", "dr-system", &[]);
    let d = objects
        .iter_mut()
        .find(|o| o["kind"] == "Deployment")
        .unwrap();
    d["spec"]["template"]["spec"]["enableServiceLink"] = json!(false);
    let refused = refusals(&client, &objects).await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0].starts_with("apps/v1 Deployment dr-system/dr:")
            && refused[0].contains("enableServiceLink"),
        "{refused:?}"
    );
}
