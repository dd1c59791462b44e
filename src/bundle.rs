//! Manifest bundles: a namespace's objects captured for redeploying them
//! elsewhere. Pure: stripping server-set fields and ordering kinds for
//! apply are functions of the objects alone.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The kinds dr captures, in the order a restore applies them (dependencies
/// first, workloads last; like Velero's restore priorities).
pub const KINDS: &[Kind] = &[
    Kind::new("v1", "ServiceAccount", "serviceaccounts"),
    Kind::new("v1", "Secret", "secrets"),
    Kind::new("v1", "ConfigMap", "configmaps"),
    Kind::new("rbac.authorization.k8s.io/v1", "Role", "roles"),
    Kind::new(
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        "rolebindings",
    ),
    Kind::new("v1", "PersistentVolumeClaim", "persistentvolumeclaims"),
    Kind::new("v1", "Service", "services"),
    Kind::new("apps/v1", "StatefulSet", "statefulsets"),
    Kind::new("apps/v1", "Deployment", "deployments"),
    Kind::new("batch/v1", "CronJob", "cronjobs"),
    Kind::new("networking.k8s.io/v1", "Ingress", "ingresses"),
];

/// A Kubernetes kind dr captures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
}

impl Kind {
    const fn new(api_version: &'static str, kind: &'static str, plural: &'static str) -> Self {
        Kind {
            api_version,
            kind,
            plural,
        }
    }
    /// The API group (`""` for the core group).
    pub fn group(&self) -> &'static str {
        self.api_version
            .rsplit_once('/')
            .map(|(g, _)| g)
            .unwrap_or("")
    }
    /// The version (`v1`).
    pub fn version(&self) -> &'static str {
        self.api_version
            .rsplit_once('/')
            .map(|(_, v)| v)
            .unwrap_or(self.api_version)
    }
}

/// What a tick captured of a namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bundle {
    /// Format version of this document.
    pub format: u32,
    pub policy: String,
    pub namespace: String,
    pub selector: String,
    /// The tick (RFC 3339).
    pub tick: String,
    /// Objects in apply order, stripped of server-set fields.
    pub objects: Vec<Value>,
    /// Secrets captured by name only (their data is not in the bundle).
    pub secrets_by_reference: Vec<String>,
    /// The same Secrets whole (data intact, server fields stripped), sealed
    /// with age to the policy's recipients (`crate::secrets::seal_objects`):
    /// armored age text, never plain. Absent when the policy names no
    /// recipients, or has no Secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_secrets: Option<String>,
}

/// Bundle format version written by this dr.
pub const BUNDLE_FORMAT: u32 = 1;

const STRIPPED_METADATA: &[&str] = &[
    "uid",
    "resourceVersion",
    "managedFields",
    "creationTimestamp",
    "generation",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "ownerReferences",
    "finalizers",
    "namespace",
];

const STRIPPED_ANNOTATIONS: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    "deployment.kubernetes.io/revision",
    "pv.kubernetes.io/bind-completed",
    "pv.kubernetes.io/bound-by-controller",
    "volume.beta.kubernetes.io/storage-provisioner",
    "volume.kubernetes.io/storage-provisioner",
    "volume.kubernetes.io/selected-node",
];

/// Whether an object is made by a controller and re-made on restore
/// (service-account tokens, the root CA ConfigMap, objects owned by others).
pub fn is_generated(kind: &str, obj: &Value) -> bool {
    let meta = &obj["metadata"];
    if meta["ownerReferences"]
        .as_array()
        .is_some_and(|o| !o.is_empty())
    {
        return true;
    }
    match kind {
        "ConfigMap" => meta["name"] == "kube-root-ca.crt",
        "ServiceAccount" => meta["name"] == "default",
        "Secret" => {
            obj["type"] == "kubernetes.io/service-account-token"
                || obj["type"] == "helm.sh/release.v1"
        }
        _ => false,
    }
}

/// Removes what the server set (status, ids, timestamps, managed fields,
/// allocated IPs and ports, bindings) so the object applies cleanly into
/// another namespace or cluster.
pub fn strip(kind: &str, mut obj: Value) -> Value {
    if let Some(o) = obj.as_object_mut() {
        o.remove("status");
    }
    if let Some(meta) = obj["metadata"].as_object_mut() {
        for k in STRIPPED_METADATA {
            meta.remove(*k);
        }
        if let Some(ann) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            for k in STRIPPED_ANNOTATIONS {
                ann.remove(*k);
            }
            if ann.is_empty() {
                meta.remove("annotations");
            }
        }
    }
    match kind {
        "Service" => {
            if let Some(spec) = obj["spec"].as_object_mut() {
                // Headless services keep "None"; allocated addresses go.
                if spec.get("clusterIP").and_then(Value::as_str) != Some("None") {
                    spec.remove("clusterIP");
                    spec.remove("clusterIPs");
                }
                spec.remove("healthCheckNodePort");
                if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                    for p in ports {
                        if let Some(p) = p.as_object_mut() {
                            p.remove("nodePort");
                        }
                    }
                }
            }
        }
        "PersistentVolumeClaim" => {
            if let Some(spec) = obj["spec"].as_object_mut() {
                // Bound on restore to the restored volume's PV, not the old one.
                spec.remove("volumeName");
            }
        }
        "Job" => {
            if let Some(spec) = obj["spec"].as_object_mut() {
                spec.remove("selector");
                if let Some(labels) = spec
                    .get_mut("template")
                    .and_then(|t| t.get_mut("metadata"))
                    .and_then(|m| m.get_mut("labels"))
                    .and_then(Value::as_object_mut)
                {
                    labels.remove("controller-uid");
                    labels.remove("batch.kubernetes.io/controller-uid");
                }
            }
        }
        _ => {}
    }
    obj
}

/// Replaces a Secret's data by nothing: the bundle keeps its name, type and
/// keys so a restore can tell which Secrets must exist, never the values.
pub fn secret_by_reference(obj: &Value) -> Value {
    let mut o = obj.clone();
    let keys: Vec<Value> = ["data", "stringData"]
        .iter()
        .filter_map(|f| o[*f].as_object())
        .flat_map(|m| m.keys().cloned().map(Value::String))
        .collect();
    if let Some(m) = o.as_object_mut() {
        m.remove("data");
        m.remove("stringData");
        m.insert("dataKeys".into(), Value::Array(keys));
    }
    o
}

/// A workload of a bundle and the replica count it was captured with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    pub kind: String,
    pub name: String,
    pub replicas: i32,
}

/// The kinds whose replicas a restore holds at zero until the data is back.
pub const SCALABLE: &[&str] = &["Deployment", "StatefulSet"];

/// The Deployments and StatefulSets of a bundle with their captured replicas
/// (a missing `spec.replicas` means 1, as Kubernetes defaults it).
pub fn workloads(objects: &[Value]) -> Vec<Workload> {
    objects
        .iter()
        .filter_map(|o| {
            let kind = o["kind"].as_str()?;
            if !SCALABLE.contains(&kind) {
                return None;
            }
            Some(Workload {
                kind: kind.to_owned(),
                name: o["metadata"]["name"].as_str()?.to_owned(),
                replicas: o["spec"]["replicas"]
                    .as_i64()
                    .map(|r| i32::try_from(r).unwrap_or(i32::MAX))
                    .unwrap_or(1),
            })
        })
        .collect()
}

/// What the redeploy stage applies: every object but claims (bound later to
/// the restored volumes) and Secrets (captured by reference only), placed in
/// `namespace`, with workloads held at zero replicas and CronJobs suspended
/// until verification.
pub fn for_redeploy(objects: &[Value], namespace: &str) -> Vec<Value> {
    objects
        .iter()
        .filter(|o| {
            !matches!(
                o["kind"].as_str(),
                Some("PersistentVolumeClaim") | Some("Secret") | None
            )
        })
        .map(|o| {
            let mut o = o.clone();
            o["metadata"]["namespace"] = Value::String(namespace.to_owned());
            if o["kind"].as_str().is_some_and(|k| SCALABLE.contains(&k)) {
                o["spec"]["replicas"] = Value::from(0);
            }
            o
        })
        .collect()
}

/// A captured claim made to bind to the PV of its restored volume.
pub fn claim_for(claim: &Value, namespace: &str, pv: &str) -> Value {
    let mut c = claim.clone();
    c["metadata"]["namespace"] = Value::String(namespace.to_owned());
    c["spec"]["volumeName"] = Value::String(pv.to_owned());
    c
}

/// The claims of a bundle by name.
pub fn claims(objects: &[Value]) -> Vec<&Value> {
    objects
        .iter()
        .filter(|o| o["kind"] == "PersistentVolumeClaim")
        .collect()
}

/// The Secrets a bundle needs (captured by reference).
pub fn secret_names(objects: &[Value]) -> Vec<String> {
    objects
        .iter()
        .filter(|o| o["kind"] == "Secret")
        .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_owned))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strips_server_fields() {
        let svc = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "shop", "uid": "u", "resourceVersion": "9",
                         "creationTimestamp": "t", "managedFields": [{}], "labels": {"a": "b"},
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {"clusterIP": "10.96.0.7", "clusterIPs": ["10.96.0.7"], "type": "NodePort",
                     "ports": [{"port": 80, "nodePort": 30080}]},
            "status": {"loadBalancer": {}}
        });
        let s = strip("Service", svc);
        assert_eq!(
            s,
            json!({"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": "web", "labels": {"a": "b"}},
                   "spec": {"type": "NodePort", "ports": [{"port": 80}]}})
        );
    }

    #[test]
    fn headless_services_stay_headless() {
        let svc =
            json!({"kind": "Service", "metadata": {"name": "db"}, "spec": {"clusterIP": "None"}});
        assert_eq!(strip("Service", svc)["spec"]["clusterIP"], "None");
    }

    #[test]
    fn claims_lose_their_binding() {
        let pvc = json!({"kind": "PersistentVolumeClaim",
            "metadata": {"name": "data", "annotations": {"pv.kubernetes.io/bind-completed": "yes"}},
            "spec": {"volumeName": "pvc-123", "storageClassName": "longhorn"}});
        let s = strip("PersistentVolumeClaim", pvc);
        assert!(s["spec"].get("volumeName").is_none());
        assert!(s["metadata"].get("annotations").is_none());
        assert_eq!(s["spec"]["storageClassName"], "longhorn");
    }

    #[test]
    fn generated_objects_are_recognised() {
        assert!(is_generated(
            "ConfigMap",
            &json!({"metadata": {"name": "kube-root-ca.crt"}})
        ));
        assert!(is_generated(
            "ServiceAccount",
            &json!({"metadata": {"name": "default"}})
        ));
        assert!(is_generated(
            "Secret",
            &json!({"metadata": {"name": "t"}, "type": "kubernetes.io/service-account-token"})
        ));
        assert!(is_generated(
            "Deployment",
            &json!({"metadata": {"name": "x", "ownerReferences": [{"kind": "HelmRelease"}]}})
        ));
        assert!(!is_generated(
            "ConfigMap",
            &json!({"metadata": {"name": "settings"}})
        ));
    }

    #[test]
    fn secrets_keep_keys_not_values() {
        let s = json!({"kind": "Secret", "metadata": {"name": "db"}, "type": "Opaque",
                       "data": {"password": "aHVudGVyMg=="}, "stringData": {"user": "app"}});
        let r = secret_by_reference(&s);
        assert!(r.get("data").is_none() && r.get("stringData").is_none());
        assert_eq!(r["dataKeys"], json!(["password", "user"]));
        assert!(!r.to_string().contains("aHVudGVyMg"));
    }

    #[test]
    fn redeploy_holds_workloads_and_leaves_claims_and_secrets() {
        let objs = vec![
            json!({"kind": "Secret", "metadata": {"name": "db"}, "dataKeys": ["pw"]}),
            json!({"kind": "PersistentVolumeClaim", "metadata": {"name": "data"}, "spec": {}}),
            json!({"kind": "Service", "metadata": {"name": "web"}, "spec": {}}),
            json!({"kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 3}}),
            json!({"kind": "StatefulSet", "metadata": {"name": "db"}, "spec": {}}),
        ];
        let out = for_redeploy(&objs, "shop-2");
        assert_eq!(
            out.iter()
                .map(|o| o["kind"].as_str().unwrap())
                .collect::<Vec<_>>(),
            ["Service", "Deployment", "StatefulSet"]
        );
        assert!(out.iter().all(|o| o["metadata"]["namespace"] == "shop-2"));
        assert_eq!(out[1]["spec"]["replicas"], 0);
        assert_eq!(out[2]["spec"]["replicas"], 0);
        assert_eq!(
            workloads(&objs),
            vec![
                Workload {
                    kind: "Deployment".into(),
                    name: "web".into(),
                    replicas: 3
                },
                Workload {
                    kind: "StatefulSet".into(),
                    name: "db".into(),
                    replicas: 1
                },
            ]
        );
        let c = claim_for(claims(&objs)[0], "shop-2", "dr-r1-data");
        assert_eq!(c["spec"]["volumeName"], "dr-r1-data");
        assert_eq!(c["metadata"]["namespace"], "shop-2");
        assert_eq!(secret_names(&objs), ["db"]);
    }

    #[test]
    fn kinds_split_group_and_version() {
        let d = KINDS.iter().find(|k| k.kind == "Deployment").unwrap();
        assert_eq!((d.group(), d.version()), ("apps", "v1"));
        let s = KINDS.iter().find(|k| k.kind == "Secret").unwrap();
        assert_eq!((s.group(), s.version()), ("", "v1"));
    }
}
