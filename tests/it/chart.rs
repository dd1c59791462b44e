//! The Helm chart `k8s/chart/dr`, rendered by the test bed's helm (built by
//! `tests/testbed/build`). Its default rendering is the plain manifests of
//! `k8s/`, object by object, so the two cannot drift; opt-in values render
//! `k8s/opt-in/` and the monitoring files; values that cannot work are
//! refused with what to do. `dry_run` applies renderings to the bed's API
//! server; `image` checks the Containerfile against the Deployment.
//!
//! What the comparison ignores, on the chart's side only: Helm's standard
//! labels (`helm.sh/chart`, `app.kubernetes.io/version`,
//! `app.kubernetes.io/managed-by`) and the pod template's `checksum/config`
//! annotation (it rolls the pods when the configuration changes). YAML and
//! JSON held in ConfigMap data are compared parsed, so comments and key order
//! in `k8s/config.yaml` are free. `k8s/namespace.yaml` has no counterpart: the
//! chart installs into the release namespace (`--create-namespace`).

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod dry_run;
mod image;

use crate::harness::testbed;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Labels Helm charts add by convention; `k8s/` has no release to name.
const HELM_LABELS: [&str; 3] = [
    "helm.sh/chart",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
];

/// Files of `k8s/` written with the monitoring work (the PrometheusRule and
/// the dashboard ConfigMap): opt-in in the chart, compared in
/// `monitoring_objects_are_k8s_monitoring_files`.
const MONITORING_FILES: [&str; 2] = ["prometheusrule.yaml", "grafana-dashboard.yaml"];

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn chart_dir() -> PathBuf {
    repo().join("k8s/chart/dr")
}

/// The bed's helm; fails, saying how to build it, when it is missing.
fn helm() -> PathBuf {
    let bin = Path::new(testbed::get().var("DR_TESTBED_BIN")).join("helm");
    assert!(
        bin.is_file(),
        "{} is missing: build it with tests/testbed/build (tests/testbed/up runs it)",
        bin.display()
    );
    bin
}

/// Runs helm; its stdout, or its stderr as the error.
fn run_helm(args: &[&str]) -> Result<String, String> {
    let out = Command::new(helm()).args(args).output().unwrap();
    match out.status.success() {
        true => Ok(String::from_utf8(out.stdout).unwrap()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

/// The YAML documents of a text, empty ones left out.
pub fn documents(text: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// `helm template RELEASE CHART --namespace NS ARGS…`, parsed.
pub fn try_render_chart(
    chart: &Path,
    release: &str,
    ns: &str,
    args: &[&str],
) -> Result<Vec<Value>, String> {
    let chart = chart.to_str().unwrap();
    let mut all = vec!["template", release, chart, "--namespace", ns];
    all.extend_from_slice(args);
    run_helm(&all).map(|text| documents(&text))
}

pub fn render(release: &str, ns: &str, args: &[&str]) -> Vec<Value> {
    try_render_chart(&chart_dir(), release, ns, args)
        .unwrap_or_else(|e| panic!("helm template {args:?}: {e}"))
}

/// Every object of the `.yaml` files directly in `dir`, except `skip`.
fn k8s_objects(dir: &Path, skip: &[&str]) -> Vec<Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml"))
        .filter(|p| !skip.iter().any(|s| p.ends_with(s)))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|p| documents(&std::fs::read_to_string(p).unwrap()))
        .collect()
}

/// apiVersion, kind, namespace and name: what identifies an object.
pub fn key(o: &Value) -> String {
    let m = &o["metadata"];
    format!(
        "{} {} {}/{}",
        o["apiVersion"].as_str().unwrap_or("?"),
        o["kind"].as_str().unwrap_or("?"),
        m["namespace"].as_str().unwrap_or(""),
        m["name"].as_str().unwrap_or("?")
    )
}

/// An object as the comparison sees it (see the module's comment).
fn normalized(mut o: Value) -> Value {
    if let Some(labels) = o["metadata"]["labels"].as_object_mut() {
        HELM_LABELS.iter().for_each(|l| drop(labels.remove(*l)));
    }
    let tmpl = &mut o["spec"]["template"]["metadata"];
    if let Some(a) = tmpl.get_mut("annotations").and_then(Value::as_object_mut) {
        a.remove("checksum/config");
        if a.is_empty() {
            tmpl.as_object_mut().unwrap().remove("annotations");
        }
    }
    if o["kind"] == "ConfigMap"
        && let Some(data) = o.get_mut("data").and_then(Value::as_object_mut)
    {
        for (k, v) in data.iter_mut() {
            let text = v.as_str().unwrap().to_owned();
            if k.ends_with(".yaml") {
                *v = serde_norway::from_str(&text).unwrap();
            } else if k.ends_with(".json") {
                *v = serde_json::from_str(&text).unwrap();
            }
        }
    }
    o
}

fn by_key(objects: Vec<Value>) -> BTreeMap<String, Value> {
    let mut map = BTreeMap::new();
    for o in objects {
        let k = key(&o);
        assert!(map.insert(k.clone(), normalized(o)).is_none(), "{k} twice");
    }
    map
}

/// Fails, listing every object missing on one side or different, when the
/// chart's objects are not the files' objects.
fn assert_same_objects(chart: Vec<Value>, files: Vec<Value>, what: &str) {
    let (chart, files) = (by_key(chart), by_key(files));
    let mut problems = Vec::new();
    for k in chart.keys().filter(|k| !files.contains_key(*k)) {
        problems.push(format!("only in the chart: {k}"));
    }
    for (k, f) in &files {
        match chart.get(k) {
            None => problems.push(format!("only in {what}: {k}")),
            Some(c) if c != f => {
                let mut diffs = Vec::new();
                differences(c, f, String::new(), &mut diffs);
                problems.push(format!(
                    "{k} differs (chart, then {what}):\n  {}",
                    diffs.join("\n  ")
                ));
            }
            Some(_) => {}
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(!files.is_empty(), "no objects in {what}");
}

/// Where two values differ, as `path: a ≠ b` lines.
fn differences(a: &Value, b: &Value, path: String, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let (va, vb) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                differences(va, vb, format!("{path}.{k}"), out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                differences(va, vb, format!("{path}[{i}]"), out);
            }
        }
        _ if a != b => out.push(format!("{path}: {a} ≠ {b}")),
        _ => {}
    }
}

/// The objects of `with` that `base` does not have.
fn added(with: Vec<Value>, base: &[Value]) -> Vec<Value> {
    let keys: Vec<String> = base.iter().map(key).collect();
    with.into_iter()
        .filter(|o| !keys.contains(&key(o)))
        .collect()
}

pub fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} in the rendering"))
}

/// The dr container of a rendered Deployment.
pub fn container(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]["containers"][0]
}

/// An environment variable of a container, as rendered.
pub fn env<'a>(c: &'a Value, name: &str) -> &'a Value {
    c["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in the container's env"))
}

#[test]
fn the_default_rendering_is_the_manifests_of_k8s() {
    let chart = render("dr", "dr-system", &[]);
    let mut skip = vec!["namespace.yaml"];
    skip.extend(MONITORING_FILES);
    assert_same_objects(chart, k8s_objects(&repo().join("k8s"), &skip), "k8s/");
}

#[test]
fn the_opt_in_restore_role_is_k8s_opt_in() {
    let base = render("dr", "dr-system", &[]);
    let with = render("dr", "dr-system", &["--set", "rbac.restore.enabled=true"]);
    let files = k8s_objects(&repo().join("k8s/opt-in"), &[]);
    assert_same_objects(added(with, &base), files, "k8s/opt-in/");
}

/// The PrometheusRule and the dashboard ConfigMap come from the same files as
/// `k8s/prometheusrule.yaml` and `k8s/grafana-dashboard.yaml`: the chart's
/// `files/` links to `k8s/monitoring/` (helm follows links when it renders or
/// packages a chart; a chart cannot read files outside its directory).
#[test]
fn monitoring_objects_are_k8s_monitoring_files() {
    for (file, canonical) in [
        ("dr.rules.yaml", "k8s/monitoring/dr.rules.yaml"),
        ("dashboard.json", "k8s/monitoring/dashboard.json"),
    ] {
        let linked = chart_dir().join("files").join(file);
        let (Ok(ours), Ok(theirs)) = (
            std::fs::read(&linked),
            std::fs::read(repo().join(canonical)),
        ) else {
            panic!(
                "{} must be {canonical}: once that exists, link it with \
                 `ln -s ../../../monitoring/{file} k8s/chart/dr/files/{file}`",
                linked.display()
            );
        };
        assert!(
            ours == theirs,
            "{} differs from {canonical}",
            linked.display()
        );
    }
    let base = render("dr", "dr-system", &[]);
    let with = render("dr", "dr-system", &["--set", MONITORING_ON]);
    let files: Vec<Value> = MONITORING_FILES
        .iter()
        .flat_map(|f| documents(&std::fs::read_to_string(repo().join("k8s").join(f)).unwrap()))
        .collect();
    assert_same_objects(added(with, &base), files, "k8s/ monitoring files");
}

/// Rules and a dashboard of our own, with the characters YAML and JSON
/// quoting must carry through.
pub const RULES: &str = r#"groups:
  - name: dr
    rules:
      - alert: DrDown
        expr: up{job="dr"} == 0
        for: 5m
        labels: {severity: critical}
        annotations: {summary: "dr <down> & \"out\""}
"#;
pub const DASHBOARD: &str = r#"{"title": "dr <x> & \"y\"", "panels": [{"id": 1}]}
"#;
pub const MONITORING_ON: &str =
    "monitoring.prometheusRule.enabled=true,monitoring.dashboard.enabled=true";

/// A copy of the chart (in the returned directory's `dr/`) whose `files/`
/// holds [`RULES`] and [`DASHBOARD`]; without them it refuses to render the
/// monitoring objects, naming the missing file.
pub fn chart_with_own_monitoring_files() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("dr");
    copy_chart(&chart_dir(), &copy);
    let e = try_render_chart(&copy, "dr", "dr-system", &["--set", MONITORING_ON]).unwrap_err();
    assert!(e.contains("the chart has no files/dr.rules.yaml"), "{e}");
    std::fs::create_dir_all(copy.join("files")).unwrap();
    std::fs::write(copy.join("files/dr.rules.yaml"), RULES).unwrap();
    std::fs::write(copy.join("files/dashboard.json"), DASHBOARD).unwrap();
    dir
}

/// The monitoring templates carry the rule groups and the dashboard's JSON
/// through unchanged.
#[test]
fn monitoring_templates_carry_the_files_unchanged() {
    let dir = chart_with_own_monitoring_files();
    let args = ["--set", MONITORING_ON];
    let objects = try_render_chart(&dir.path().join("dr"), "dr", "dr-system", &args).unwrap();
    let rule = find(&objects, "PrometheusRule", "dr");
    let groups: Value = serde_norway::from_str(RULES).unwrap();
    assert_eq!(rule["spec"]["groups"], groups["groups"]);
    let cm = find(&objects, "ConfigMap", "dr-grafana-dashboard");
    assert_eq!(cm["data"]["dr.json"], DASHBOARD);
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
}

/// Copies a chart's regular files; its `files/` (links to k8s/monitoring/)
/// is left behind.
fn copy_chart(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap();
        if p.is_dir() && name != "files" {
            copy_chart(&p, &to.join(name));
        } else if p.is_file() && !p.is_symlink() {
            std::fs::copy(&p, to.join(name)).unwrap();
        }
    }
}

#[test]
fn helm_lint_passes_with_default_and_other_values() {
    let chart = chart_dir();
    let chart = chart.to_str().unwrap();
    for set in [
        "replicas=2",
        "replicas=3,catalog.url=postgres://dr:pw@pg:5432/dr,s3.accessKeyId=a,s3.secretAccessKey=b",
        "replicas=1,catalog.sqlite.enabled=true,monitoring.serviceMonitor.enabled=true",
    ] {
        let out = run_helm(&[
            "lint",
            "--strict",
            chart,
            "--namespace",
            "dr-system",
            "--set",
            set,
        ])
        .unwrap_or_else(|e| panic!("helm lint --set {set}: {e}"));
        assert!(out.contains("0 chart(s) failed"), "{out}");
    }
}

/// Values that would install something that cannot work are refused, and
/// the refusal says why and what to do.
#[test]
fn values_that_cannot_work_are_refused() {
    for (set, says) in [
        ("replica=3", "additional properties 'replica' not allowed"),
        ("catalog.sqlite.enabled=true", "needs replicas: 1 (got 2)"),
        ("catalog.secret.name=", "catalog URL is read from a Secret"),
        ("config.catalog=postgres://x", "never in the ConfigMap"),
        ("s3.accessKeyId=a", "set both"),
        ("shutdownGraceSeconds=45", "kubelet would kill dr"),
        ("leaseDuration=15", "want string"),
        ("catalog.url=sqlite:///x.db", "does not match pattern"),
    ] {
        let e = try_render_chart(&chart_dir(), "dr", "dr-system", &["--set", set])
            .err()
            .unwrap_or_else(|| panic!("--set {set} was accepted"));
        assert!(e.contains(says), "--set {set}: {e}");
    }
}

#[test]
fn sqlite_is_one_replica_with_its_claim_and_no_budget() {
    let objects = render(
        "dr",
        "dr-system",
        &["--set", "catalog.sqlite.enabled=true,replicas=1"],
    );
    let d = find(&objects, "Deployment", "dr");
    assert_eq!(d["spec"]["replicas"], 1);
    assert_eq!(d["spec"]["strategy"]["type"], "Recreate");
    let c = container(d);
    assert_eq!(env(c, "DR_CATALOG")["value"], "sqlite:///var/lib/dr/dr.db");
    let claim = find(&objects, "PersistentVolumeClaim", "dr-catalog");
    assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "1Gi");
    let vols = d["spec"]["template"]["spec"]["volumes"].as_array().unwrap();
    assert!(
        vols.iter()
            .any(|v| v["persistentVolumeClaim"]["claimName"] == "dr-catalog")
    );
    assert!(!objects.iter().any(|o| o["kind"] == "PodDisruptionBudget"));
    assert!(!objects.iter().any(|o| o["kind"] == "Secret"));
}

/// A release of another name in another namespace, with existing Secrets of
/// other names, three replicas, runbooks and the ServiceMonitor.
pub const OTHER_VALUES: &[&str] = &[
    "--set",
    "replicas=3,catalog.secret.name=pg-url,catalog.secret.key=dsn,s3.secret.name=s3-keys",
    "--set",
    "monitoring.serviceMonitor.enabled=true,monitoring.serviceMonitor.labels.release=kps",
    "--set",
    "leaseDuration=20s,shutdownGraceSeconds=40,terminationGracePeriodSeconds=60",
    "--set-file",
    "runbooks.standard\\.yaml=runbooks/standard.yaml",
];

#[test]
fn other_values_reach_the_objects() {
    let args: Vec<&str> = OTHER_VALUES.to_vec();
    let objects = render_in_repo("prod", "ops", &args);
    let d = find(&objects, "Deployment", "prod-dr");
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(
        d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
        60
    );
    let c = container(d);
    let from = |name: &str| env(c, name)["valueFrom"]["secretKeyRef"].clone();
    assert_eq!(
        from("DR_CATALOG"),
        serde_json::json!({"name": "pg-url", "key": "dsn"})
    );
    assert_eq!(from("AWS_ACCESS_KEY_ID")["name"], "s3-keys");
    assert_eq!(from("AWS_SECRET_ACCESS_KEY")["name"], "s3-keys");
    assert_eq!(env(c, "DR_LEASE_DURATION")["value"], "20s");
    assert_eq!(env(c, "DR_SHUTDOWN_GRACE")["value"], "40s");
    assert!(
        !objects.iter().any(|o| o["kind"] == "Secret"),
        "existing Secrets are used, not made"
    );
    let sm = find(&objects, "ServiceMonitor", "prod-dr");
    assert_eq!(sm["metadata"]["labels"]["release"], "kps");
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "http");
    let runbooks = find(&objects, "ConfigMap", "prod-dr-runbooks");
    let text = std::fs::read_to_string(repo().join("runbooks/standard.yaml")).unwrap();
    assert_eq!(runbooks["data"]["standard.yaml"], text.as_str());
    let leases = find(&objects, "RoleBinding", "prod-dr-leases");
    assert_eq!(leases["metadata"]["namespace"], "ops");
    assert_eq!(leases["subjects"][0]["namespace"], "ops");
    // Each policy's namespace, and only those, gets the read-only protect role.
    let protect = find(&objects, "RoleBinding", "prod-dr-protect");
    assert_eq!(protect["metadata"]["namespace"], "gic-wesago");
}

/// [`render`] from the repository's root, so that `--set-file` paths are the
/// repository's.
pub fn render_in_repo(release: &str, ns: &str, args: &[&str]) -> Vec<Value> {
    let chart = chart_dir();
    let mut all = vec![
        "template",
        release,
        chart.to_str().unwrap(),
        "--namespace",
        ns,
    ];
    all.extend_from_slice(args);
    let out = Command::new(helm())
        .current_dir(repo())
        .args(&all)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "helm template {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    documents(&String::from_utf8(out.stdout).unwrap())
}

#[test]
fn a_policy_namespace_gets_one_protect_binding() {
    let set = "config.policies[0].name=a,config.policies[0].namespace=apps,\
               config.policies[1].name=b,config.policies[1].namespace=apps,\
               config.policies[2].name=c,config.policies[2].namespace=db";
    let objects = render("dr", "dr-system", &["--set", set]);
    let mut namespaces: Vec<&str> = objects
        .iter()
        .filter(|o| o["kind"] == "RoleBinding" && o["metadata"]["name"] == "dr-protect")
        .map(|o| o["metadata"]["namespace"].as_str().unwrap())
        .collect();
    namespaces.sort();
    assert_eq!(namespaces, ["apps", "db"]);
}

#[test]
fn chart_app_version_is_drs_version() {
    let chart: Value =
        serde_norway::from_str(&std::fs::read_to_string(chart_dir().join("Chart.yaml")).unwrap())
            .unwrap();
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(chart["appVersion"], env!("CARGO_PKG_VERSION"));
}
