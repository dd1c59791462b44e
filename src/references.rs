//! What a recovery point's objects refer to and must find in the namespace
//! they are restored into: the Secrets and ConfigMaps, ServiceAccounts and
//! claims named by pod templates, and the definitions of custom resources.
//! Pure: a function of the objects alone; the runbook checks the answer
//! against the API server after the redeploy stage's apply, so a restore
//! whose application lacks something it needs fails there, with the names,
//! instead of succeeding and never starting.
//!
//! Read from the pod template of Pods, Deployments, StatefulSets,
//! DaemonSets, ReplicaSets, Jobs and CronJobs (`jobTemplate`): `env`
//! (`valueFrom.secretKeyRef` / `configMapKeyRef`), `envFrom`, volumes
//! (`secret`, `configMap`, `projected` sources, `persistentVolumeClaim`),
//! `imagePullSecrets`, `serviceAccountName` (`default` is made by the
//! cluster, so never a reference). References marked `optional: true` are
//! skipped. A StatefulSet's `volumeClaimTemplates` make their own claims
//! (`<template>-<statefulset>-<ordinal>`), so they are no references, and a
//! claim of that form is satisfied by the template.
//!
//! Custom resources: an object whose API group is not a built-in one — a
//! group with a dot that does not end in `.k8s.io` (so `apps`, `batch`,
//! `networking.k8s.io` are built in; `example.com`, `cluster.x-k8s.io` are
//! not) — refers to the definition of its kind. The rule is rough (CRD
//! groups under `.k8s.io` such as `snapshot.storage.k8s.io` are taken for
//! built-ins), so the check asks the API server whether it serves the kind.

use serde::Serialize;
use serde_json::Value;
use std::fmt;

/// What is referred to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(tag = "target", rename_all = "camelCase")]
pub enum Target {
    Secret {
        name: String,
    },
    ConfigMap {
        name: String,
    },
    ServiceAccount {
        name: String,
    },
    PersistentVolumeClaim {
        name: String,
    },
    /// The definition of a custom resource's kind, served at `api_version`.
    CustomResourceDefinition {
        api_version: String,
        kind: String,
    },
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Secret { name } => write!(f, "Secret {name}"),
            Target::ConfigMap { name } => write!(f, "ConfigMap {name}"),
            Target::ServiceAccount { name } => write!(f, "ServiceAccount {name}"),
            Target::PersistentVolumeClaim { name } => write!(f, "PersistentVolumeClaim {name}"),
            Target::CustomResourceDefinition { api_version, kind } => {
                write!(f, "the CustomResourceDefinition of {kind} ({api_version})")
            }
        }
    }
}

/// One reference: what, by which object, and where in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reference {
    pub target: Target,
    /// The referring object, `Kind/name`.
    pub by: String,
    /// Where in it: `env DB_PASSWORD`, `volume config`, `imagePullSecrets`, …
    pub via: String,
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (referenced by {} {})",
            self.target, self.by, self.via
        )
    }
}

/// The pod spec of a workload object, if it has one.
fn pod_spec(obj: &Value) -> Option<&Value> {
    let spec = match obj["kind"].as_str()? {
        "Pod" => &obj["spec"],
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
            &obj["spec"]["template"]["spec"]
        }
        "CronJob" => &obj["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        _ => return None,
    };
    spec.is_object().then_some(spec)
}

fn optional(v: &Value) -> bool {
    v["optional"].as_bool() == Some(true)
}

fn name_of(v: &Value, field: &str) -> Option<String> {
    v[field]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Whether an API group is one Kubernetes serves itself (see the module
/// documentation for the rule and its limits).
pub fn is_builtin_group(group: &str) -> bool {
    !group.contains('.') || group.ends_with(".k8s.io")
}

/// Everything the objects refer to, in object order.
pub fn references(objects: &[Value]) -> Vec<Reference> {
    let mut out = Vec::new();
    for obj in objects {
        let kind = obj["kind"].as_str().unwrap_or("");
        let by = format!("{kind}/{}", obj["metadata"]["name"].as_str().unwrap_or(""));
        if let Some((group, _)) = obj["apiVersion"].as_str().and_then(|a| a.rsplit_once('/'))
            && !is_builtin_group(group)
        {
            out.push(Reference {
                target: Target::CustomResourceDefinition {
                    api_version: obj["apiVersion"].as_str().unwrap_or("").to_owned(),
                    kind: kind.to_owned(),
                },
                by: by.clone(),
                via: "apiVersion".into(),
            });
        }
        if let Some(spec) = pod_spec(obj) {
            pod_references(spec, &by, &mut out);
        }
    }
    out
}

fn pod_references(spec: &Value, by: &str, out: &mut Vec<Reference>) {
    let mut push = |target: Target, via: String| {
        out.push(Reference {
            target,
            by: by.to_owned(),
            via,
        })
    };
    let sa = name_of(spec, "serviceAccountName").or_else(|| name_of(spec, "serviceAccount"));
    if let Some(name) = sa.filter(|n| n != "default") {
        push(Target::ServiceAccount { name }, "serviceAccountName".into());
    }
    for s in spec["imagePullSecrets"].as_array().into_iter().flatten() {
        if let Some(name) = name_of(s, "name") {
            push(Target::Secret { name }, "imagePullSecrets".into());
        }
    }
    let containers = ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|f| spec[*f].as_array().into_iter().flatten());
    for c in containers {
        let cname = c["name"].as_str().unwrap_or("");
        for e in c["env"].as_array().into_iter().flatten() {
            let var = e["name"].as_str().unwrap_or("");
            let from = &e["valueFrom"];
            let s = &from["secretKeyRef"];
            if let Some(name) = name_of(s, "name").filter(|_| !optional(s)) {
                push(Target::Secret { name }, format!("env {var}"));
            }
            let m = &from["configMapKeyRef"];
            if let Some(name) = name_of(m, "name").filter(|_| !optional(m)) {
                push(Target::ConfigMap { name }, format!("env {var}"));
            }
        }
        for e in c["envFrom"].as_array().into_iter().flatten() {
            let s = &e["secretRef"];
            if let Some(name) = name_of(s, "name").filter(|_| !optional(s)) {
                push(
                    Target::Secret { name },
                    format!("envFrom of container {cname}"),
                );
            }
            let m = &e["configMapRef"];
            if let Some(name) = name_of(m, "name").filter(|_| !optional(m)) {
                push(
                    Target::ConfigMap { name },
                    format!("envFrom of container {cname}"),
                );
            }
        }
    }
    for v in spec["volumes"].as_array().into_iter().flatten() {
        let via = format!("volume {}", v["name"].as_str().unwrap_or(""));
        let s = &v["secret"];
        if let Some(name) = name_of(s, "secretName").filter(|_| !optional(s)) {
            push(Target::Secret { name }, via.clone());
        }
        let m = &v["configMap"];
        if let Some(name) = name_of(m, "name").filter(|_| !optional(m)) {
            push(Target::ConfigMap { name }, via.clone());
        }
        for src in v["projected"]["sources"].as_array().into_iter().flatten() {
            let s = &src["secret"];
            if let Some(name) = name_of(s, "name").filter(|_| !optional(s)) {
                push(Target::Secret { name }, via.clone());
            }
            let m = &src["configMap"];
            if let Some(name) = name_of(m, "name").filter(|_| !optional(m)) {
                push(Target::ConfigMap { name }, via.clone());
            }
        }
        if let Some(name) = name_of(&v["persistentVolumeClaim"], "claimName") {
            push(Target::PersistentVolumeClaim { name }, via.clone());
        }
    }
}

/// Whether a claim is one a StatefulSet of `objects` makes from its
/// `volumeClaimTemplates` (`<template>-<statefulset>-<ordinal>`).
pub fn made_by_template(claim: &str, objects: &[Value]) -> bool {
    objects
        .iter()
        .filter(|o| o["kind"] == "StatefulSet")
        .any(|sts| {
            let Some(name) = sts["metadata"]["name"].as_str() else {
                return false;
            };
            sts["spec"]["volumeClaimTemplates"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t["metadata"]["name"].as_str())
                .any(|tpl| {
                    claim
                        .strip_prefix(&format!("{tpl}-{name}-"))
                        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                })
        })
}

/// The targets that are missing, each with every reference to it, in the
/// order first referred to; `present` says whether a target exists.
pub fn missing(
    refs: &[Reference],
    mut present: impl FnMut(&Target) -> bool,
) -> Vec<(&Target, Vec<&Reference>)> {
    let mut out: Vec<(&Target, Vec<&Reference>)> = Vec::new();
    for r in refs {
        if let Some((_, rs)) = out.iter_mut().find(|(t, _)| *t == &r.target) {
            rs.push(r);
        } else if !present(&r.target) {
            out.push((&r.target, vec![r]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn secret(n: &str) -> Target {
        Target::Secret { name: n.into() }
    }
    fn cm(n: &str) -> Target {
        Target::ConfigMap { name: n.into() }
    }

    /// An expected reference: (target, by, via).
    type Want = (Target, &'static str, &'static str);

    /// (object, the references expected of it)
    fn cases() -> Vec<(Value, Vec<Want>)> {
        let pod = |extra: Value| {
            let mut spec = json!({"containers": [{"name": "app"}]});
            if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
                s.extend(e.clone());
            }
            spec
        };
        vec![
            // env secretKeyRef and configMapKeyRef, optional skipped
            (
                json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "postgres"},
                  "spec": {"template": {"spec": {"containers": [{"name": "pg", "env": [
                    {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "postgres-credentials", "key": "pw"}}},
                    {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
                    {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "maybe", "key": "k", "optional": true}}},
                    {"name": "PLAIN", "value": "x"}]}]}}}}),
                vec![
                    (
                        secret("postgres-credentials"),
                        "StatefulSet/postgres",
                        "env DB_PASSWORD",
                    ),
                    (cm("settings"), "StatefulSet/postgres", "env MODE"),
                ],
            ),
            // envFrom in an init container of a Deployment
            (
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                  "spec": {"template": {"spec": {"initContainers": [{"name": "init", "envFrom": [
                    {"secretRef": {"name": "web-env"}}, {"configMapRef": {"name": "web-cfg"}},
                    {"configMapRef": {"name": "opt", "optional": true}}]}],
                    "containers": [{"name": "web"}]}}}}),
                vec![
                    (
                        secret("web-env"),
                        "Deployment/web",
                        "envFrom of container init",
                    ),
                    (cm("web-cfg"), "Deployment/web", "envFrom of container init"),
                ],
            ),
            // volumes: secret, configMap, projected, claim, in a DaemonSet
            (
                json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
                  "spec": {"template": {"spec": pod(json!({"volumes": [
                    {"name": "tls", "secret": {"secretName": "agent-tls"}},
                    {"name": "cfg", "configMap": {"name": "agent-cfg"}},
                    {"name": "opt", "secret": {"secretName": "o", "optional": true}},
                    {"name": "all", "projected": {"sources": [
                        {"secret": {"name": "p-secret"}}, {"configMap": {"name": "p-cm"}},
                        {"serviceAccountToken": {"path": "t"}}]}},
                    {"name": "data", "persistentVolumeClaim": {"claimName": "agent-data"}},
                    {"name": "tmp", "emptyDir": {}}]}))}}}),
                vec![
                    (secret("agent-tls"), "DaemonSet/agent", "volume tls"),
                    (cm("agent-cfg"), "DaemonSet/agent", "volume cfg"),
                    (secret("p-secret"), "DaemonSet/agent", "volume all"),
                    (cm("p-cm"), "DaemonSet/agent", "volume all"),
                    (
                        Target::PersistentVolumeClaim {
                            name: "agent-data".into(),
                        },
                        "DaemonSet/agent",
                        "volume data",
                    ),
                ],
            ),
            // imagePullSecrets and a ServiceAccount on a bare Pod
            (
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "one"},
                  "spec": pod(json!({"imagePullSecrets": [{"name": "registry"}], "serviceAccountName": "runner"}))}),
                vec![
                    (
                        Target::ServiceAccount {
                            name: "runner".into(),
                        },
                        "Pod/one",
                        "serviceAccountName",
                    ),
                    (secret("registry"), "Pod/one", "imagePullSecrets"),
                ],
            ),
            // the default ServiceAccount is no reference (ReplicaSet)
            (
                json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "rs"},
                  "spec": {"template": {"spec": pod(json!({"serviceAccountName": "default"}))}}}),
                vec![],
            ),
            // Job and CronJob (jobTemplate)
            (
                json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate"},
                  "spec": {"template": {"spec": pod(json!({"serviceAccount": "migrator"}))}}}),
                vec![(
                    Target::ServiceAccount {
                        name: "migrator".into(),
                    },
                    "Job/migrate",
                    "serviceAccountName",
                )],
            ),
            (
                json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "backup"},
                  "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "b",
                    "env": [{"name": "S3_KEY", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "k"}}}]}]}}}}}}),
                vec![(secret("s3"), "CronJob/backup", "env S3_KEY")],
            ),
            // a custom resource refers to its definition; built-in groups do not
            (
                json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}),
                vec![(
                    Target::CustomResourceDefinition {
                        api_version: "example.com/v1".into(),
                        kind: "Widget".into(),
                    },
                    "Widget/w",
                    "apiVersion",
                )],
            ),
            (
                json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "i"}}),
                vec![],
            ),
            // a Service or ConfigMap refers to nothing
            (
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {}}),
                vec![],
            ),
        ]
    }

    #[test]
    fn every_kind_of_reference_is_found() {
        for (obj, want) in cases() {
            let got: Vec<(Target, String, String)> = references(std::slice::from_ref(&obj))
                .into_iter()
                .map(|r| (r.target, r.by, r.via))
                .collect();
            let want: Vec<(Target, String, String)> = want
                .into_iter()
                .map(|(t, b, v)| (t, b.to_owned(), v.to_owned()))
                .collect();
            assert_eq!(got, want, "{obj}");
        }
    }

    #[test]
    fn builtin_groups() {
        for g in [
            "",
            "apps",
            "batch",
            "policy",
            "networking.k8s.io",
            "rbac.authorization.k8s.io",
        ] {
            assert!(is_builtin_group(g), "{g}");
        }
        for g in ["example.com", "cluster.x-k8s.io", "longhorn.io"] {
            assert!(!is_builtin_group(g), "{g}");
        }
    }

    #[test]
    fn claims_of_statefulset_templates_are_satisfied() {
        let objs = [
            json!({"kind": "StatefulSet", "metadata": {"name": "postgres"},
            "spec": {"volumeClaimTemplates": [{"metadata": {"name": "data"}}]}}),
        ];
        assert!(made_by_template("data-postgres-0", &objs));
        assert!(made_by_template("data-postgres-12", &objs));
        assert!(!made_by_template("data-postgres-", &objs));
        assert!(!made_by_template("data-postgres-x", &objs));
        assert!(!made_by_template("logs-postgres-0", &objs));
        // templates are not references of their own
        assert!(references(&objs).is_empty());
    }

    #[test]
    fn missing_groups_references_by_target() {
        let objs = cases().into_iter().map(|(o, _)| o).collect::<Vec<_>>();
        let mut refs = references(&objs);
        refs.push(Reference {
            target: secret("postgres-credentials"),
            by: "Deployment/other".into(),
            via: "env PW".into(),
        });
        let m = missing(
            &refs,
            |t| !matches!(t, Target::Secret { name } if name == "postgres-credentials" || name == "s3"),
        );
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].0, &secret("postgres-credentials"));
        assert_eq!(m[0].1.len(), 2);
        assert_eq!(
            m[0].1[0].to_string(),
            "Secret postgres-credentials (referenced by StatefulSet/postgres env DB_PASSWORD)"
        );
        assert_eq!(m[1].0, &secret("s3"));
    }
}
