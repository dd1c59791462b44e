//! The chart against the files of `k8s/`. What the comparison ignores, on
//! the chart's side only: Helm's standard labels (`helm.sh/chart`,
//! `app.kubernetes.io/version`, `app.kubernetes.io/managed-by`) and the pod
//! template's `checksum/config` annotation (it rolls the pods when the
//! configuration changes). YAML and JSON held in ConfigMap data are compared
//! parsed, so comments and key order in `k8s/config.yaml` are free.
//! `k8s/namespace.yaml` has no counterpart: the chart installs into the
//! release namespace (`--create-namespace`).

use super::{chart_dir, documents, find, render, repo, try_render_chart};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Labels Helm charts add by convention; `k8s/` has no release to name.
const HELM_LABELS: [&str; 3] = [
    "helm.sh/chart",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
];

/// The monitoring objects (the PrometheusRule and the dashboard ConfigMap),
/// in `k8s/opt-in/monitoring/` since a PrometheusRule needs
/// prometheus-operator's CRD: opt-in in the chart too, compared in
/// `monitoring_objects_are_k8s_monitoring_files`.
const MONITORING_FILES: [&str; 2] = [
    "opt-in/monitoring/prometheusrule.yaml",
    "opt-in/monitoring/grafana-dashboard.yaml",
];
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

#[test]
fn the_default_rendering_is_the_manifests_of_k8s() {
    let chart = render("dr", "dr-system", &[]);
    let skip = vec!["namespace.yaml"];
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
/// `k8s/opt-in/monitoring/prometheusrule.yaml` and `k8s/opt-in/monitoring/grafana-dashboard.yaml`: the chart's
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
