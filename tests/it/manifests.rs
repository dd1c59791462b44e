//! The manifests in `k8s/` are valid Kubernetes objects, their dr
//! configuration passes `dr config check`, and the Deployment runs a dr
//! command line that parses and probes paths that `dr serve` serves.

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

/// Every document of every file in k8s/.
fn documents() -> Vec<(PathBuf, serde_json::Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(k8s_dir()).unwrap() {
        let path = entry.unwrap().path();
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
            "Deployment",
            "Namespace",
            "PersistentVolumeClaim",
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

fn grants(rules: &[serde_json::Value], group: &str, resource: &str, verb: &str) -> bool {
    rules.iter().any(|r| {
        r["apiGroups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g == group)
            && r["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x == resource)
            && r["verbs"].as_array().unwrap().iter().any(|v| v == verb)
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
    let allowed = |group: &str, resource: &str| {
        rules.iter().any(|r| {
            r["apiGroups"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g == group)
                && r["resources"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|x| x == resource)
                && r["verbs"].as_array().unwrap().iter().any(|v| v == "list")
        })
    };
    assert!(allowed("", "persistentvolumes"));
    for kind in dr::bundle::KINDS {
        assert!(
            allowed(kind.group(), kind.plural),
            "{} cannot be captured",
            kind.kind
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
