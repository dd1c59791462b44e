//! dr's alerts and dashboard (`k8s/monitoring/`, `k8s/opt-in/monitoring/prometheusrule.yaml`,
//! `k8s/opt-in/monitoring/grafana-dashboard.yaml`):
//! - `promtool check rules` and `promtool test rules`: every alert fires in
//!   one case and stays quiet in another, with its labels and annotations;
//! - the PrometheusRule and the dashboard ConfigMap hold exactly the plain
//!   files; every alert has a severity and a runbook section in the README;
//! - on the test bed, a real Prometheus scrapes `dr serve` protecting an
//!   application on the Longhorn emulator: every dashboard panel's query
//!   returns data, and with the emulator down the RPO alert goes pending
//!   and then firing when the RPO and its `for:` say, and resolves once the
//!   emulator is back.
//!
//! Prometheus and promtool come from Debian's `prometheus` package
//! (`tests/testbed/up` installs it); a test fails saying so when missing.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod dashboard;
mod prometheus;
mod real;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn monitoring(file: &str) -> PathBuf {
    repo().join("k8s/monitoring").join(file)
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every alerting rule of the plain rules file.
fn alert_rules() -> Vec<Value> {
    yaml(&monitoring("dr.rules.yaml"))["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .filter(|r| r["alert"].is_string())
        .collect()
}

/// Runs promtool with `args` in k8s/monitoring; asserts it succeeds.
fn promtool(args: &[&str]) -> String {
    let out = Command::new(prometheus::tool("promtool"))
        .args(args)
        .current_dir(repo().join("k8s/monitoring"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {}:\n{text}", args.join(" "));
    text
}

#[test]
fn promtool_checks_the_rules_and_their_unit_tests_pass() {
    let check = promtool(&["check", "rules", "dr.rules.yaml"]);
    let n = alert_rules().len();
    assert!(
        check.contains(&format!("SUCCESS: {n} rules found")),
        "{check}"
    );
    let test = promtool(&["test", "rules", "dr.rules.test.yaml"]);
    assert!(test.contains("SUCCESS"), "{test}");
    eprintln!("{check}{test}");
}

#[test]
fn every_alert_is_tested_firing_and_quiet_and_has_a_severity_and_a_runbook() {
    let tests = yaml(&monitoring("dr.rules.test.yaml"));
    let cases: Vec<&Value> = tests["tests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().unwrap())
        .collect();
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let anchors: Vec<String> = readme
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(github_anchor)
        .collect();
    let rules = alert_rules();
    assert!(rules.len() >= 10, "{} alerts", rules.len());
    for r in &rules {
        let name = r["alert"].as_str().unwrap();
        let of_it = || cases.iter().filter(|c| c["alertname"] == name);
        let fires = of_it().any(|c| c["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()));
        let quiet = of_it().any(|c| c["exp_alerts"].as_array().is_some_and(|a| a.is_empty()));
        assert!(fires, "{name}: no promtool case where it fires");
        assert!(quiet, "{name}: no promtool case where it does not fire");
        let severity = r["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            ["critical", "warning"].contains(&severity),
            "{name}: severity {severity:?}"
        );
        for key in ["summary", "description", "runbook_url"] {
            assert!(r["annotations"][key].is_string(), "{name}: no {key}");
        }
        let url = r["annotations"]["runbook_url"].as_str().unwrap();
        let anchor = url
            .split_once("/README.md#")
            .map(|(_, a)| a)
            .unwrap_or_else(|| panic!("{name}: runbook_url {url} is no README section"));
        assert!(
            anchors.iter().any(|a| a == anchor),
            "{name}: README.md has no heading for #{anchor}"
        );
    }
}

/// The anchor GitHub gives a Markdown heading.
fn github_anchor(heading: &str) -> String {
    heading
        .trim_start_matches('#')
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn the_prometheus_rule_holds_exactly_the_plain_files_groups() {
    let cr = yaml(&repo().join("k8s/opt-in/monitoring/prometheusrule.yaml"));
    assert_eq!(cr["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(cr["kind"], "PrometheusRule");
    let plain = yaml(&monitoring("dr.rules.yaml"));
    assert_eq!(
        cr["spec"]["groups"], plain["groups"],
        "k8s/opt-in/monitoring/prometheusrule.yaml and k8s/monitoring/dr.rules.yaml differ"
    );
}

#[test]
fn the_dashboard_configmap_embeds_dashboard_json_and_it_is_importable() {
    let json_text = std::fs::read_to_string(monitoring("dashboard.json")).unwrap();
    let cm = yaml(&repo().join("k8s/opt-in/monitoring/grafana-dashboard.yaml"));
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    assert!(
        cm["data"]["dr.json"].as_str() == Some(json_text.as_str()),
        "k8s/opt-in/monitoring/grafana-dashboard.yaml does not embed k8s/monitoring/dashboard.json as it is"
    );
    let d: Value = serde_json::from_str(&json_text).unwrap();
    assert!(d["schemaVersion"].as_i64().unwrap() >= 36);
    let vars = d["templating"]["list"].as_array().unwrap();
    let var = |name: &str| vars.iter().find(|v| v["name"] == name).unwrap();
    assert_eq!(var("datasource")["type"], "datasource");
    assert_eq!(var("datasource")["query"], "prometheus");
    assert_eq!(
        var("policy")["query"]["query"],
        "label_values(dr_rpo_seconds, policy)"
    );
    let panels = d["panels"].as_array().unwrap();
    for p in panels.iter().filter(|p| p["type"] != "row") {
        let title = p["title"].as_str().unwrap();
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        for t in p["targets"].as_array().unwrap() {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}");
        }
    }
    let queries = dashboard::exprs(&d);
    assert!(queries.len() >= 15, "{} queries", queries.len());
    for (title, expr) in &queries {
        if expr.contains("dr_") {
            assert!(
                expr.contains("$policy") || expr.contains("${policy}"),
                "{title}: {expr} ignores the policy variable"
            );
        }
    }
}
