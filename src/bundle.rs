//! Manifest bundles: a namespace's objects captured for redeploying them
//! elsewhere. Pure: which kinds a policy captures, the cluster-scoped objects
//! an application depends on, stripping server-set fields and ordering
//! objects for apply are functions of the objects alone.

use crate::names::KindRef;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeSet;

/// The kinds dr captured before it discovered them (format-1 bundles); a
/// restore of such a bundle finds an object's resource here, since the
/// bundle does not record it.
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
        group_of(self.api_version)
    }
    /// The version (`v1`).
    pub fn version(&self) -> &'static str {
        self.api_version
            .rsplit_once('/')
            .map(|(_, v)| v)
            .unwrap_or(self.api_version)
    }
}

/// The group of an `apiVersion` (`""` for the core group's `v1`).
pub fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("")
}

/// What a restore needs to apply an object in a cluster that has never seen
/// its kind: the resource (plural) and whether it lives in a namespace. The
/// bundle records one per captured kind, so a restore needs no discovery
/// (a CRD created a moment ago may not be in the server's discovery yet).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Resource {
    pub api_version: String,
    pub kind: String,
    pub plural: String,
    pub namespaced: bool,
}

impl Resource {
    /// A resource of the given `apiVersion`, kind and plural.
    pub fn new(api_version: &str, kind: &str, plural: &str, namespaced: bool) -> Self {
        Resource {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            plural: plural.to_owned(),
            namespaced,
        }
    }
    /// The API group (`""` for the core group).
    pub fn group(&self) -> &str {
        group_of(&self.api_version)
    }
    /// The version (`v1`).
    pub fn version(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map(|(_, v)| v)
            .unwrap_or(&self.api_version)
    }
    /// `plural.group` (`plural` in the core group), as RBAC and CRDs name it.
    pub fn qualified(&self) -> String {
        match self.group() {
            "" => self.plural.clone(),
            g => format!("{}.{g}", self.plural),
        }
    }
}

/// The namespaced kinds a capture leaves out by default, with the reason:
/// derived or runtime state that the cluster re-makes, or kinds that cannot
/// be listed at all. `(group, plural)`; a `*` plural stands for the whole
/// group. A policy's `kinds.include` can name one of them explicitly.
/// Objects owned by a controller (ReplicaSets of Deployments, Jobs of
/// CronJobs, ControllerRevisions, Pods…) are left out by [`is_generated`]
/// whatever their kind.
pub const DERIVED: &[(&str, &str, &str)] = &[
    ("", "events", "runtime record"),
    ("events.k8s.io", "events", "runtime record"),
    (
        "",
        "pods",
        "made by workloads; their templates are captured",
    ),
    ("", "endpoints", "derived from Services"),
    (
        "discovery.k8s.io",
        "endpointslices",
        "derived from Services",
    ),
    (
        "coordination.k8s.io",
        "leases",
        "leader election and heartbeats",
    ),
    ("metrics.k8s.io", "*", "live metrics (PodMetrics)"),
    (
        "storage.k8s.io",
        "csistoragecapacities",
        "published by CSI drivers",
    ),
    ("", "bindings", "create-only (scheduler)"),
    ("authorization.k8s.io", "*", "create-only access reviews"),
    ("authentication.k8s.io", "*", "create-only token reviews"),
];

/// Whether a resource is in [`DERIVED`].
pub fn is_derived(group: &str, plural: &str) -> bool {
    DERIVED
        .iter()
        .any(|(g, p, _)| *g == group && (*p == "*" || *p == plural))
}

/// Whether a policy captures a resource: with `include`, only the kinds it
/// names (derived kinds too, if named); otherwise every kind but the derived
/// ones; `exclude` always wins.
pub fn selected(
    kind: &str,
    plural: &str,
    group: &str,
    include: &[KindRef],
    exclude: &[KindRef],
) -> bool {
    if exclude.iter().any(|k| k.matches(kind, plural, group)) {
        return false;
    }
    if include.is_empty() {
        !is_derived(group, plural)
    } else {
        include.iter().any(|k| k.matches(kind, plural, group))
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
    /// The resource of every kind in `objects` and `cluster_objects`
    /// (format 2; empty in format 1, whose kinds are [`KINDS`]).
    #[serde(default)]
    pub resources: Vec<Resource>,
    /// The cluster-scoped objects the application depends on (its CRDs,
    /// StorageClasses, PriorityClasses, IngressClasses, and the ClusterRoles
    /// and ClusterRoleBindings of its ServiceAccounts), stripped, in apply
    /// order; a restore creates those missing and reports those that differ
    /// (format 2).
    #[serde(default)]
    pub cluster_objects: Vec<Value>,
}

impl Bundle {
    /// The recorded resource of an object's `apiVersion` and kind
    /// ([`find_resource`]).
    pub fn resource_of(&self, api_version: &str, kind: &str) -> Option<Resource> {
        find_resource(&self.resources, api_version, kind)
    }
}

/// The resource of an object's `apiVersion` and kind: from `recorded` (a
/// format-2 bundle's table), else the cluster-scoped kinds dr records
/// ([`CLUSTER_KINDS`]), else, for format-1 bundles, [`KINDS`].
pub fn find_resource(recorded: &[Resource], api_version: &str, kind: &str) -> Option<Resource> {
    recorded
        .iter()
        .find(|r| r.api_version == api_version && r.kind == kind)
        .cloned()
        .or_else(|| {
            CLUSTER_KINDS
                .iter()
                .find(|r| r.1 == kind && r.0 == api_version)
                .map(|r| Resource::new(r.0, r.1, r.2, false))
        })
        .or_else(|| {
            KINDS
                .iter()
                .find(|k| {
                    k.kind == kind && (api_version.is_empty() || k.api_version == api_version)
                })
                .map(|k| Resource::new(k.api_version, k.kind, k.plural, true))
        })
}

/// Bundle format version written by this dr: 2 records every discovered
/// kind's resource and the cluster-scoped dependencies; format-1 bundles
/// (no `resources`, no `cluster_objects`) are still read.
pub const BUNDLE_FORMAT: u32 = 2;

/// The cluster-scoped kinds a bundle may hold, in the order a restore
/// creates them: definitions and classes before the RBAC that may name them.
/// `(apiVersion, kind, plural)`.
pub const CLUSTER_KINDS: &[(&str, &str, &str)] = &[
    (
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
    ),
    ("storage.k8s.io/v1", "StorageClass", "storageclasses"),
    ("scheduling.k8s.io/v1", "PriorityClass", "priorityclasses"),
    ("networking.k8s.io/v1", "IngressClass", "ingressclasses"),
    (
        "rbac.authorization.k8s.io/v1",
        "ClusterRole",
        "clusterroles",
    ),
    (
        "rbac.authorization.k8s.io/v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
    ),
];

/// The names of the cluster-scoped objects an application's objects name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterDependencies {
    /// StorageClasses of claims and StatefulSet volumeClaimTemplates.
    pub storage_classes: BTreeSet<String>,
    /// PriorityClasses of pod templates.
    pub priority_classes: BTreeSet<String>,
    /// IngressClasses of Ingresses.
    pub ingress_classes: BTreeSet<String>,
    /// ClusterRoles that RoleBindings of the namespace refer to.
    pub cluster_roles: BTreeSet<String>,
    /// ServiceAccounts of the namespace: captured ones, those pod templates
    /// run as, and `default`.
    pub service_accounts: BTreeSet<String>,
}

/// The pod spec of a workload's template (CronJobs: their job template's).
pub fn pod_spec(obj: &Value) -> Option<&Value> {
    let spec = match obj["kind"].as_str()? {
        "CronJob" => obj.pointer("/spec/jobTemplate/spec/template/spec"),
        "Pod" => obj.get("spec"),
        _ => obj.pointer("/spec/template/spec"),
    }?;
    spec.is_object().then_some(spec)
}

/// What cluster-scoped objects the namespaced `objects` name.
pub fn cluster_dependencies(objects: &[Value]) -> ClusterDependencies {
    let mut d = ClusterDependencies::default();
    d.service_accounts.insert("default".into());
    let put = |set: &mut BTreeSet<String>, v: &Value| {
        if let Some(s) = v.as_str().filter(|s| !s.is_empty()) {
            set.insert(s.to_owned());
        }
    };
    for o in objects {
        match o["kind"].as_str().unwrap_or_default() {
            "PersistentVolumeClaim" => put(&mut d.storage_classes, &o["spec"]["storageClassName"]),
            "StatefulSet" => {
                for t in o["spec"]["volumeClaimTemplates"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    put(&mut d.storage_classes, &t["spec"]["storageClassName"]);
                }
            }
            "Ingress" => put(&mut d.ingress_classes, &o["spec"]["ingressClassName"]),
            "RoleBinding" if o["roleRef"]["kind"] == "ClusterRole" => {
                put(&mut d.cluster_roles, &o["roleRef"]["name"])
            }
            "ServiceAccount" => put(&mut d.service_accounts, &o["metadata"]["name"]),
            _ => {}
        }
        if let Some(p) = pod_spec(o) {
            put(&mut d.priority_classes, &p["priorityClassName"]);
            put(&mut d.service_accounts, &p["serviceAccountName"]);
        }
    }
    d
}

/// Whether a ClusterRoleBinding names one of `service_accounts` of `ns`
/// among its subjects.
pub fn binds_service_account(
    binding: &Value,
    ns: &str,
    service_accounts: &BTreeSet<String>,
) -> bool {
    binding["subjects"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|s| {
            s["kind"] == "ServiceAccount"
                && s["namespace"] == ns
                && s["name"]
                    .as_str()
                    .is_some_and(|n| service_accounts.contains(n))
        })
}

/// The fields of a bundled cluster-scoped object that differ in the live
/// one: every top-level field the bundle holds but `metadata` and `status`
/// (a CRD's `spec`, a ClusterRole's `rules`, a StorageClass's
/// `provisioner`…), compared as a whole. Fields only the live object has
/// (defaults of a newer server) are not differences.
pub fn differing_fields(bundled: &Value, live: &Value) -> Vec<String> {
    bundled
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| !matches!(k.as_str(), "metadata" | "status" | "apiVersion" | "kind"))
        .filter(|(k, v)| live.get(k.as_str()) != Some(*v))
        .map(|(k, _)| k.clone())
        .collect()
}

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
    "deprecated.daemonset.template.generation",
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
/// allocated IPs, bindings) so the object applies cleanly into another
/// namespace or cluster. A Service's `nodePort`s stay: dr cannot tell an
/// allocated port from one the user chose, and a chosen one is intent (a
/// firewall or load balancer outside the cluster points at it); [`crate::
/// cluster::restore::apply`] drops them only when the port is taken.
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

/// A workload of a bundle and the replica count it was captured with
/// (DaemonSets: 0; their pods follow the nodes, see [`HELD_NODE_LABEL`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    pub kind: String,
    pub name: String,
    pub replicas: i32,
}

/// The kinds whose replicas a restore holds at zero until the data is back.
pub const SCALABLE: &[&str] = &["Deployment", "StatefulSet", "ReplicaSet"];

/// A DaemonSet cannot be scaled: a restore holds it with a node selector no
/// node carries, and keeps the original selector (JSON; `{}` for none) in
/// [`HELD_ANNOTATION`] for `scale: restore` to put back.
pub const HELD_NODE_LABEL: &str = "dr.longhorn.io/held";
/// Where a held DaemonSet keeps its original node selector.
pub const HELD_ANNOTATION: &str = "dr.longhorn.io/held-node-selector";
/// Where a suspended CronJob keeps its original `spec.suspend`.
pub const HELD_SUSPEND_ANNOTATION: &str = "dr.longhorn.io/held-suspend";

/// The workloads of a bundle (Deployments, StatefulSets, ReplicaSets no
/// controller owns, DaemonSets, CronJobs) with their captured replicas (a
/// missing `spec.replicas` means 1, as Kubernetes defaults it; DaemonSets
/// and CronJobs 0).
pub fn workloads(objects: &[Value]) -> Vec<Workload> {
    objects
        .iter()
        .filter_map(|o| {
            let kind = o["kind"].as_str()?;
            let replicas = if kind == "DaemonSet" || kind == "CronJob" {
                0
            } else if SCALABLE.contains(&kind) {
                o["spec"]["replicas"]
                    .as_i64()
                    .map(|r| i32::try_from(r).unwrap_or(i32::MAX))
                    .unwrap_or(1)
            } else {
                return None;
            };
            Some(Workload {
                kind: kind.to_owned(),
                name: o["metadata"]["name"].as_str()?.to_owned(),
                replicas,
            })
        })
        .collect()
}

/// Holds a DaemonSet: its pods may only run on nodes labelled
/// [`HELD_NODE_LABEL`], which none is; the original selector goes to
/// [`HELD_ANNOTATION`] (unless the object already holds one).
fn hold_daemonset(o: &mut Value) {
    if o["metadata"]["annotations"][HELD_ANNOTATION].is_string() {
        return;
    }
    let original = o
        .pointer("/spec/template/spec/nodeSelector")
        .filter(|v| v.is_object())
        .cloned()
        .unwrap_or_else(|| Value::Object(Default::default()));
    if !o["metadata"]["annotations"].is_object() {
        o["metadata"]["annotations"] = Value::Object(Default::default());
    }
    o["metadata"]["annotations"][HELD_ANNOTATION] = Value::String(original.to_string());
    o["spec"]["template"]["spec"]["nodeSelector"] = serde_json::json!({ HELD_NODE_LABEL: "true" });
}

/// Suspends a CronJob, keeping its original `spec.suspend` in
/// [`HELD_SUSPEND_ANNOTATION`] (unless the object already holds one).
fn hold_cronjob(o: &mut Value) {
    if o["metadata"]["annotations"][HELD_SUSPEND_ANNOTATION].is_string() {
        return;
    }
    let original = o["spec"]["suspend"].as_bool().unwrap_or(false);
    if !o["metadata"]["annotations"].is_object() {
        o["metadata"]["annotations"] = Value::Object(Default::default());
    }
    o["metadata"]["annotations"][HELD_SUSPEND_ANNOTATION] = Value::String(original.to_string());
    o["spec"]["suspend"] = Value::Bool(true);
}

/// The merge patch that releases a held DaemonSet or CronJob (its live
/// object): the original node selector or `suspend` back, the hold and its
/// annotation gone. `None` if it is not held.
pub fn release_patch(live: &Value) -> Option<Value> {
    if live["kind"] == "CronJob" {
        let saved = live["metadata"]["annotations"][HELD_SUSPEND_ANNOTATION].as_str()?;
        return Some(serde_json::json!({
            "metadata": {"annotations": {HELD_SUSPEND_ANNOTATION: null}},
            "spec": {"suspend": saved == "true"},
        }));
    }
    let saved = live["metadata"]["annotations"][HELD_ANNOTATION].as_str()?;
    let original: serde_json::Map<String, Value> = serde_json::from_str(saved).unwrap_or_default();
    let mut selector = serde_json::Map::new();
    // A merge patch (RFC 7386) merges maps: keys of the live selector that
    // the original lacks are removed by setting them to null.
    if let Some(live_sel) = live
        .pointer("/spec/template/spec/nodeSelector")
        .and_then(Value::as_object)
    {
        for k in live_sel.keys() {
            selector.insert(k.clone(), Value::Null);
        }
    }
    selector.extend(original);
    Some(serde_json::json!({
        "metadata": {"annotations": {HELD_ANNOTATION: null}},
        "spec": {"template": {"spec": {"nodeSelector": selector}}},
    }))
}

/// Where an object goes in a restore's apply order (lower first). Modelled
/// on Velero's default restore priorities (vmware-tanzu/velero
/// pkg/cmd/server/server.go `defaultRestorePriorities`: CRDs, namespaces,
/// storage classes, PVs, PVCs, ServiceAccounts, Secrets, ConfigMaps,
/// LimitRanges, Pods, ReplicaSets, Services, then the rest), with RBAC right
/// after the ServiceAccounts it binds, workloads after everything they
/// mount or run as, and custom resources last: their controllers may act on
/// them at once and expect the application in place. CRDs and the other
/// cluster-scoped objects are created before all of these
/// (`cluster::restore::ensure_cluster_objects`).
pub fn apply_rank(obj: &Value) -> u8 {
    let kind = obj["kind"].as_str().unwrap_or_default();
    let group = group_of(obj["apiVersion"].as_str().unwrap_or_default());
    if !is_builtin_group(group) {
        return 12;
    }
    match kind {
        "Namespace" => 0,
        "ServiceAccount" => 1,
        "Role" => 2,
        "RoleBinding" => 3,
        "ConfigMap" => 4,
        "Secret" => 5,
        "LimitRange" | "ResourceQuota" => 6,
        "PersistentVolumeClaim" => 7,
        "Service" => 8,
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "ReplicationController" => 9,
        "CronJob" => 10,
        _ => 11,
    }
}

/// Whether an API group is Kubernetes' own (the core group, the unqualified
/// groups like `apps`, and `*.k8s.io`) rather than a custom resource's.
/// Custom groups under `k8s.io` (e.g. `snapshot.storage.k8s.io`) count as
/// built in: they are ordered with the built-in kinds, before other custom
/// resources.
pub fn is_builtin_group(group: &str) -> bool {
    !group.contains('.') || group.ends_with(".k8s.io") || group == "k8s.io"
}

/// Objects sorted into apply order ([`apply_rank`]); the capture order
/// (kind, then name) within a rank.
pub fn in_apply_order(objects: &[Value]) -> Vec<Value> {
    let mut out = objects.to_vec();
    out.sort_by_key(apply_rank);
    out
}

/// What the redeploy stage applies, in apply order ([`apply_rank`]): every
/// object but claims (bound later to the restored volumes) and Secrets
/// (captured by reference only), placed in `namespace`, with workloads held
/// (replicas at zero, DaemonSets on no node) and CronJobs suspended until
/// verification.
pub fn for_redeploy(objects: &[Value], namespace: &str) -> Vec<Value> {
    in_apply_order(objects)
        .into_iter()
        .filter(|o| {
            !matches!(
                o["kind"].as_str(),
                Some("PersistentVolumeClaim") | Some("Secret") | None
            )
        })
        .map(|mut o| {
            o["metadata"]["namespace"] = Value::String(namespace.to_owned());
            match o["kind"].as_str() {
                Some(k) if SCALABLE.contains(&k) => o["spec"]["replicas"] = Value::from(0),
                Some("DaemonSet") => hold_daemonset(&mut o),
                Some("CronJob") => hold_cronjob(&mut o),
                _ => {}
            }
            o
        })
        .collect()
}

/// A Service without its `nodePort`s (the server allocates new ones), or
/// `None` if it names none.
pub fn without_node_ports(svc: &Value) -> Option<Value> {
    let mut s = svc.clone();
    let mut any = false;
    for p in s["spec"]["ports"].as_array_mut().into_iter().flatten() {
        if let Some(p) = p.as_object_mut() {
            any |= p.remove("nodePort").is_some();
        }
    }
    any.then_some(s)
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
                   "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}})
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

    #[test]
    fn apply_order_follows_the_priority_table() {
        let o = |api: &str, kind: &str| json!({"apiVersion": api, "kind": kind, "metadata": {"name": "x"}});
        let objs = vec![
            o("example.com/v1", "Widget"),
            o("autoscaling/v2", "HorizontalPodAutoscaler"),
            o("policy/v1", "PodDisruptionBudget"),
            o("networking.k8s.io/v1", "NetworkPolicy"),
            o("batch/v1", "Job"),
            o("batch/v1", "CronJob"),
            o("apps/v1", "DaemonSet"),
            o("apps/v1", "Deployment"),
            o("v1", "Service"),
            o("v1", "PersistentVolumeClaim"),
            o("v1", "Secret"),
            o("v1", "ConfigMap"),
            o("rbac.authorization.k8s.io/v1", "RoleBinding"),
            o("rbac.authorization.k8s.io/v1", "Role"),
            o("v1", "ServiceAccount"),
            // A custom kind named like a built-in one is still custom.
            o("apps.example.com/v1", "Deployment"),
        ];
        let kinds = |v: &[Value]| {
            v.iter()
                .map(|o| {
                    format!(
                        "{}/{}",
                        o["apiVersion"].as_str().unwrap(),
                        o["kind"].as_str().unwrap()
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            kinds(&in_apply_order(&objs)),
            [
                "v1/ServiceAccount",
                "rbac.authorization.k8s.io/v1/Role",
                "rbac.authorization.k8s.io/v1/RoleBinding",
                "v1/ConfigMap",
                "v1/Secret",
                "v1/PersistentVolumeClaim",
                "v1/Service",
                "apps/v1/DaemonSet",
                "apps/v1/Deployment",
                "batch/v1/CronJob",
                "autoscaling/v2/HorizontalPodAutoscaler",
                "policy/v1/PodDisruptionBudget",
                "networking.k8s.io/v1/NetworkPolicy",
                "batch/v1/Job",
                "example.com/v1/Widget",
                "apps.example.com/v1/Deployment",
            ]
        );
        // The redeploy leaves claims and Secrets out, in the same order.
        let r = kinds(&for_redeploy(&objs, "n"));
        assert_eq!(r.len(), objs.len() - 2);
        assert_eq!(r[4], "v1/Service");
    }

    #[test]
    fn derived_kinds_are_left_out_unless_named() {
        let k = |s: &str| s.parse::<KindRef>().unwrap();
        for (group, plural) in [
            ("", "events"),
            ("events.k8s.io", "events"),
            ("", "pods"),
            ("", "endpoints"),
            ("discovery.k8s.io", "endpointslices"),
            ("coordination.k8s.io", "leases"),
            ("metrics.k8s.io", "pods"),
        ] {
            assert!(!selected("X", plural, group, &[], &[]), "{plural}.{group}");
        }
        for (kind, plural, group) in [
            ("Deployment", "deployments", "apps"),
            ("DaemonSet", "daemonsets", "apps"),
            ("Job", "jobs", "batch"),
            ("PodDisruptionBudget", "poddisruptionbudgets", "policy"),
            ("Widget", "widgets", "example.com"),
        ] {
            assert!(selected(kind, plural, group, &[], &[]), "{kind}");
        }
        let exclude = [k("cronjobs.batch"), k("Widget")];
        assert!(!selected("CronJob", "cronjobs", "batch", &[], &exclude));
        assert!(!selected("Widget", "widgets", "example.com", &[], &exclude));
        assert!(selected("Job", "jobs", "batch", &[], &exclude));
        let include = [k("Deployment"), k("widgets.example.com"), k("pods")];
        assert!(selected("Deployment", "deployments", "apps", &include, &[]));
        assert!(selected("Widget", "widgets", "example.com", &include, &[]));
        assert!(!selected("Widget", "widgets", "other.io", &include, &[]));
        assert!(!selected("Service", "services", "", &include, &[]));
        // Named explicitly, a derived kind is captured; exclude still wins.
        assert!(selected("Pod", "pods", "", &include, &[]));
        assert!(!selected("Pod", "pods", "", &include, &[k("Pod")]));
    }

    #[test]
    fn daemonsets_and_cronjobs_are_held_then_released() {
        let objs = vec![
            json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
                   "spec": {"template": {"spec": {"nodeSelector": {"disk": "ssd"}}}}}),
            json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "any"},
                   "spec": {"template": {"spec": {}}}}),
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly"},
                   "spec": {"schedule": "0 3 * * *"}}),
        ];
        let held = for_redeploy(&objs, "n");
        let ds = &held[0];
        assert_eq!(
            ds["spec"]["template"]["spec"]["nodeSelector"],
            json!({HELD_NODE_LABEL: "true"})
        );
        assert_eq!(
            ds["metadata"]["annotations"][HELD_ANNOTATION],
            r#"{"disk":"ssd"}"#
        );
        assert_eq!(held[2]["spec"]["suspend"], true);
        // Held twice (a resumed run) keeps the first original.
        assert_eq!(for_redeploy(&held, "n"), held);
        assert_eq!(
            release_patch(ds).unwrap(),
            json!({"metadata": {"annotations": {HELD_ANNOTATION: null}},
                   "spec": {"template": {"spec": {"nodeSelector": {HELD_NODE_LABEL: null, "disk": "ssd"}}}}})
        );
        assert_eq!(
            release_patch(&held[1]).unwrap()["spec"]["template"]["spec"]["nodeSelector"],
            json!({HELD_NODE_LABEL: null})
        );
        assert_eq!(
            release_patch(&held[2]).unwrap(),
            json!({"metadata": {"annotations": {HELD_SUSPEND_ANNOTATION: null}}, "spec": {"suspend": false}})
        );
        assert_eq!(release_patch(&objs[0]), None);
        assert_eq!(
            workloads(&objs)
                .iter()
                .map(|w| (w.kind.as_str(), w.replicas))
                .collect::<Vec<_>>(),
            [("DaemonSet", 0), ("DaemonSet", 0), ("CronJob", 0)]
        );
    }

    #[test]
    fn cluster_dependencies_are_what_the_objects_name() {
        let objs = vec![
            json!({"kind": "PersistentVolumeClaim", "metadata": {"name": "d"}, "spec": {"storageClassName": "fast"}}),
            json!({"kind": "StatefulSet", "metadata": {"name": "db"},
                   "spec": {"volumeClaimTemplates": [{"spec": {"storageClassName": "slow"}}],
                            "template": {"spec": {"priorityClassName": "critical", "serviceAccountName": "db"}}}}),
            json!({"kind": "CronJob", "metadata": {"name": "c"},
                   "spec": {"jobTemplate": {"spec": {"template": {"spec": {"priorityClassName": "batch"}}}}}}),
            json!({"kind": "Ingress", "metadata": {"name": "i"}, "spec": {"ingressClassName": "nginx"}}),
            json!({"kind": "RoleBinding", "metadata": {"name": "rb"}, "roleRef": {"kind": "ClusterRole", "name": "view"}}),
            json!({"kind": "RoleBinding", "metadata": {"name": "rb2"}, "roleRef": {"kind": "Role", "name": "local"}}),
            json!({"kind": "ServiceAccount", "metadata": {"name": "web"}}),
        ];
        let d = cluster_dependencies(&objs);
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(d.storage_classes, set(&["fast", "slow"]));
        assert_eq!(d.priority_classes, set(&["batch", "critical"]));
        assert_eq!(d.ingress_classes, set(&["nginx"]));
        assert_eq!(d.cluster_roles, set(&["view"]));
        assert_eq!(d.service_accounts, set(&["db", "default", "web"]));
        let crb = |ns: &str, name: &str| json!({"subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]});
        assert!(binds_service_account(
            &crb("shop", "web"),
            "shop",
            &d.service_accounts
        ));
        assert!(!binds_service_account(
            &crb("other", "web"),
            "shop",
            &d.service_accounts
        ));
        assert!(!binds_service_account(
            &crb("shop", "stranger"),
            "shop",
            &d.service_accounts
        ));
    }

    #[test]
    fn differing_fields_compare_what_the_bundle_holds() {
        let bundled = json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": "fast"}, "provisioner": "driver.longhorn.io",
            "parameters": {"numberOfReplicas": "3"}});
        let mut live = bundled.clone();
        live["metadata"]["uid"] = json!("u");
        live["volumeBindingMode"] = json!("Immediate");
        assert!(differing_fields(&bundled, &live).is_empty());
        live["parameters"]["numberOfReplicas"] = json!("1");
        assert_eq!(differing_fields(&bundled, &live), ["parameters"]);
    }

    #[test]
    fn format_1_bundles_are_still_read() {
        let b: Bundle = serde_json::from_value(json!({
            "format": 1, "policy": "p", "namespace": "n", "selector": "", "tick": "t",
            "objects": [], "secrets_by_reference": []
        }))
        .unwrap();
        assert!(b.resources.is_empty() && b.cluster_objects.is_empty());
        assert_eq!(
            b.resource_of("apps/v1", "Deployment"),
            Some(Resource::new("apps/v1", "Deployment", "deployments", true))
        );
        assert_eq!(b.resource_of("example.com/v1", "Widget"), None);
        let crd = b
            .resource_of("apiextensions.k8s.io/v1", "CustomResourceDefinition")
            .unwrap();
        assert!(!crd.namespaced);
        let w = Resource::new("example.com/v1", "Widget", "widgets", true);
        assert_eq!(w.qualified(), "widgets.example.com");
        assert_eq!(
            find_resource(std::slice::from_ref(&w), "example.com/v1", "Widget"),
            Some(w)
        );
    }

    #[test]
    fn node_ports_are_kept_and_can_be_dropped() {
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 31880}, {"port": 81}]}});
        assert_eq!(
            strip("Service", svc.clone())["spec"]["ports"][0]["nodePort"],
            31880
        );
        let without = without_node_ports(&svc).unwrap();
        assert_eq!(
            without["spec"]["ports"],
            json!([{"port": 80}, {"port": 81}])
        );
        assert_eq!(without_node_ports(&without), None);
    }
}
