//! The Grafana dashboard's queries, as Prometheus would receive them from
//! Grafana: every panel's target `expr` with the dashboard's variables and
//! Grafana's own (`$__rate_interval` …) replaced by values.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use serde_json::Value;

/// Every panel's queries, as (panel title, expr), rows' nested panels too.
pub fn exprs(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    collect(dashboard["panels"].as_array().unwrap(), &mut out);
    out
}

fn collect(panels: &[Value], out: &mut Vec<(String, String)>) {
    for p in panels {
        let title = p["title"].as_str().unwrap_or_default();
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("a target of panel {title:?} has no expr: {t}"));
            out.push((title.to_owned(), expr.to_owned()));
        }
        if let Some(nested) = p["panels"].as_array() {
            collect(nested, out);
        }
    }
}

/// `expr` with `$policy` as `policy`, `$job` as `job`, and Grafana's
/// interval variables as what Grafana sends for a 1 s scrape interval
/// (`$__rate_interval` is at least four scrape intervals). Panics on a
/// variable it does not know, so a new one is never sent unreplaced.
pub fn substitute(expr: &str, policy: &str, job: &str) -> String {
    let vars = [
        ("${policy}", policy),
        ("$policy", policy),
        ("${job}", job),
        ("$job", job),
        ("$__rate_interval", "30s"),
        ("$__interval", "5s"),
        ("$__range", "5m"),
    ];
    let mut s = expr.to_owned();
    for (var, value) in vars {
        s = s.replace(var, value);
    }
    assert!(
        !s.contains('$'),
        "{expr:?} uses a variable this test does not replace: {s:?}"
    );
    s
}

#[test]
fn substitution_replaces_every_variable_and_refuses_unknown_ones() {
    let e = r#"sum by (outcome) (increase(dr_ticks_total{policy=~"$policy",job="${job}"}[$__rate_interval]))"#;
    assert_eq!(
        substitute(e, "shop", "dr"),
        r#"sum by (outcome) (increase(dr_ticks_total{policy=~"shop",job="dr"}[30s]))"#
    );
    let unknown = std::panic::catch_unwind(|| substitute("x{a=\"$other\"}", "shop", "dr"));
    assert!(unknown.is_err());
}
