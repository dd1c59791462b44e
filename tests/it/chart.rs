//! The Helm chart `k8s/chart/dr`, rendered by the test bed's helm (built by
//! `tests/testbed/build`): `compare` holds it to the plain manifests of
//! `k8s/` (its default rendering is them, object by object, so the two cannot
//! drift) and to the monitoring files; `values` checks what other values
//! render and what is refused; `dry_run` sends renderings to the bed's API
//! server; `image` checks the Containerfile against the Deployment.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod compare;
mod dry_run;
mod image;
mod values;

use crate::harness::testbed;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

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
