//! The Kubernetes adapter: which Longhorn volumes a policy protects (PVC →
//! PV → `spec.csi.volumeHandle`) and what a namespace's manifests are.

pub mod leases;
pub mod references;
pub mod restore;
pub mod scratch;
pub mod secrets;

use crate::bundle::{self, BUNDLE_FORMAT, Bundle};
use crate::config::KindsConfig;
use crate::names::{Namespace, Selector, VolumeName};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::discovery::{Discovery, Scope, verbs};
use kube::{Api, Client};
use serde::Serialize;
use std::path::Path;

/// The CSI driver name of Longhorn.
pub const LONGHORN_DRIVER: &str = "driver.longhorn.io";

/// A failed Kubernetes operation.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot load the kubeconfig {path}: {message}")]
    Kubeconfig { path: String, message: String },
    #[error("cannot reach the Kubernetes API server: {0}")]
    Client(String),
    #[error("Kubernetes {op} in namespace {namespace} failed: {source}")]
    Api {
        op: &'static str,
        namespace: String,
        source: kube::Error,
    },
    #[error("{what} did not happen within {waited:?}; last seen: {last}")]
    Deadline {
        what: String,
        waited: std::time::Duration,
        last: String,
    },
    #[error("object {kind}/{name} of the bundle is not valid: {message}")]
    BadObject {
        kind: String,
        name: String,
        message: String,
    },
    #[error("check job {name} failed: {message}")]
    JobFailed { name: String, message: String },
    #[error(
        "dr may not read {resource} (namespace {namespace}): grant get and list on it to dr's ServiceAccount (k8s/rbac.yaml, ClusterRole {role}), or leave the kind out with the policy's kinds.exclude"
    )]
    ListForbidden {
        resource: String,
        namespace: String,
        role: &'static str,
    },
    #[error(
        "policy {policy}: kinds.include names kinds the API server does not serve: {}; check the spelling (Deployment, deployments.apps, widgets.example.com) or install their CRDs",
        kinds.join(", ")
    )]
    UnknownKinds { policy: String, kinds: Vec<String> },
    #[error("cluster-scoped {kind}/{name} was created but {message}")]
    ClusterObject {
        kind: String,
        name: String,
        message: String,
    },
}

impl ClusterError {
    /// Whether a retry may help (the API server was unreachable or overloaded).
    pub fn is_retryable(&self) -> bool {
        match self {
            ClusterError::Api { source, .. } => match source {
                kube::Error::Api(s) => s.code == 429 || s.code >= 500,
                kube::Error::HyperError(_) | kube::Error::Service(_) => true,
                _ => false,
            },
            ClusterError::Client(_) => true,
            ClusterError::Kubeconfig { .. }
            | ClusterError::Deadline { .. }
            | ClusterError::BadObject { .. }
            | ClusterError::JobFailed { .. }
            | ClusterError::ListForbidden { .. }
            | ClusterError::UnknownKinds { .. }
            | ClusterError::ClusterObject { .. } => false,
        }
    }
}

/// A client from a kubeconfig file, or from the in-cluster / default configuration.
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client, ClusterError> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| {
                ClusterError::Kubeconfig {
                    path: path.display().to_string(),
                    message: e.to_string(),
                }
            })?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|e| ClusterError::Kubeconfig {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| ClusterError::Client(e.to_string()))?,
    };
    Client::try_from(config).map_err(|e| ClusterError::Client(e.to_string()))
}

/// A volume a policy protects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProtectedVolume {
    pub pvc: String,
    pub pv: String,
    pub volume: VolumeName,
    pub storage_class: Option<String>,
    pub capacity: Option<String>,
    /// The PV's `spec.csi.fsType` (the filesystem Longhorn's CSI driver
    /// formats and mounts), if it names one.
    pub fs_type: Option<String>,
}

/// A claim that matched the selector but cannot be backed up, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unprotectable {
    pub pvc: String,
    pub reason: String,
}

/// The PVCs of `ns` matching `selector`, resolved to their Longhorn volumes.
/// Claims that are unbound or not on Longhorn are returned apart, with the
/// reason, so a tick can report them instead of silently skipping them.
pub async fn resolve_volumes(
    client: &Client,
    ns: &Namespace,
    selector: &Selector,
) -> Result<(Vec<ProtectedVolume>, Vec<Unprotectable>), ClusterError> {
    let lp = ListParams::default().labels(selector.as_str());
    // One list of PVs instead of a GET per claim: a thousand claims cost two
    // calls, made together. Only the fields used here are decoded: the rest
    // (managed fields, annotations, status) is skipped unread.
    let every = ListParams::default();
    let claims = format!("/api/v1/namespaces/{}/persistentvolumeclaims", ns.as_str());
    let (list, all_pvs) = tokio::join!(
        lean_list::<lean::Claim>(client, &claims, &lp),
        lean_list::<lean::Volume>(client, "/api/v1/persistentvolumes", &every)
    );
    let list = list.map_err(|source| ClusterError::Api {
        op: "list PersistentVolumeClaims",
        namespace: ns.to_string(),
        source,
    })?;
    let all_pvs: std::collections::HashMap<String, lean::Volume> = all_pvs
        .map_err(|source| ClusterError::Api {
            op: "list PersistentVolumes",
            namespace: ns.to_string(),
            source,
        })?
        .items
        .into_iter()
        .filter_map(|pv| pv.metadata.name.clone().map(|n| (n, pv)))
        .collect();
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for pvc in list.items {
        let name = pvc.metadata.name.clone().unwrap_or_default();
        let Some(pv_name) = pvc.spec.as_ref().and_then(|s| s.volume_name.clone()) else {
            skipped.push(Unprotectable {
                pvc: name,
                reason: "not bound to a PersistentVolume yet".into(),
            });
            continue;
        };
        let Some(pv) = all_pvs.get(&pv_name).cloned() else {
            skipped.push(Unprotectable {
                pvc: name,
                reason: format!("its PersistentVolume {pv_name} does not exist"),
            });
            continue;
        };
        let spec = pv.spec.unwrap_or_default();
        let csi = spec.csi.as_ref();
        match csi {
            Some(c) if c.driver == LONGHORN_DRIVER => match c.volume_handle.parse::<VolumeName>() {
                Ok(volume) => out.push(ProtectedVolume {
                    pvc: name,
                    pv: pv_name,
                    volume,
                    storage_class: spec.storage_class_name.clone(),
                    capacity: spec.capacity.get("storage").cloned(),
                    fs_type: c.fs_type.clone().filter(|f| !f.is_empty()),
                }),
                Err(e) => skipped.push(Unprotectable {
                    pvc: name,
                    reason: format!("volume handle: {e}"),
                }),
            },
            Some(c) => skipped.push(Unprotectable {
                pvc: name,
                reason: format!("its volume is provided by {}, not Longhorn", c.driver),
            }),
            None => skipped.push(Unprotectable {
                pvc: name,
                reason: "its PersistentVolume is not a CSI volume".into(),
            }),
        }
    }
    out.sort_by(|a, b| a.pvc.cmp(&b.pvc));
    Ok((out, skipped))
}

/// A list read from `path` and decoded as `lean::List<T>`.
async fn lean_list<T: serde::de::DeserializeOwned>(
    client: &Client,
    path: &str,
    lp: &ListParams,
) -> Result<lean::List<T>, kube::Error> {
    let req = kube::core::Request::new(path)
        .list(lp)
        .map_err(kube::Error::BuildRequest)?;
    client.request(req).await
}

/// The parts of claims and volumes that resolving reads.
mod lean {
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Deserialize)]
    pub struct List<T> {
        #[serde(default = "Vec::new")]
        pub items: Vec<T>,
    }

    #[derive(Deserialize, Default, Clone)]
    pub struct Meta {
        pub name: Option<String>,
    }

    #[derive(Deserialize)]
    pub struct Claim {
        #[serde(default)]
        pub metadata: Meta,
        pub spec: Option<ClaimSpec>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct ClaimSpec {
        pub volume_name: Option<String>,
    }

    #[derive(Deserialize, Clone)]
    pub struct Volume {
        #[serde(default)]
        pub metadata: Meta,
        pub spec: Option<VolumeSpec>,
    }

    #[derive(Deserialize, Clone, Default)]
    #[serde(rename_all = "camelCase")]
    pub struct VolumeSpec {
        pub csi: Option<Csi>,
        pub storage_class_name: Option<String>,
        #[serde(default)]
        pub capacity: BTreeMap<String, String>,
    }

    #[derive(Deserialize, Clone)]
    #[serde(rename_all = "camelCase")]
    pub struct Csi {
        pub driver: String,
        pub volume_handle: String,
        #[serde(default)]
        pub fs_type: Option<String>,
    }
}

/// Captures what the application in `ns` is: every namespaced resource the
/// API server serves and can list (found by discovery, so custom resources
/// are included), but the derived kinds ([`bundle::DERIVED`]) and objects a
/// controller owns, as the policy's `kinds` narrow it; objects matching
/// `selector`, stripped for re-applying; Secrets by reference only. Also
/// the cluster-scoped objects the application depends on
/// ([`bundle::cluster_dependencies`]), and the resource of every kind
/// captured, so a restore needs no discovery.
pub async fn capture(
    client: &Client,
    policy: &str,
    ns: &Namespace,
    selector: &Selector,
    kinds: &KindsConfig,
    tick: chrono::DateTime<chrono::Utc>,
) -> Result<Bundle, ClusterError> {
    let served = discover(client, ns).await?;
    let unknown: Vec<String> = kinds
        .include
        .iter()
        .filter(|k| {
            !served
                .iter()
                .any(|(r, _)| k.matches(&r.kind, &r.plural, r.group()))
        })
        .map(|k| k.to_string())
        .collect();
    if !unknown.is_empty() {
        return Err(ClusterError::UnknownKinds {
            policy: policy.to_owned(),
            kinds: unknown,
        });
    }
    let mut objects = Vec::new();
    let mut secrets = Vec::new();
    let mut resources = Vec::new();
    let lp = ListParams::default().labels(selector.as_str());
    for (res, ar) in served.iter().filter(|(r, _)| {
        r.namespaced
            && bundle::selected(
                &r.kind,
                &r.plural,
                r.group(),
                &kinds.include,
                &kinds.exclude,
            )
    }) {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns.as_str(), ar);
        let list = match api.list(&lp).await {
            Ok(l) => l,
            // Gone since discovery (a CRD deleted meanwhile): nothing to capture.
            Err(kube::Error::Api(s)) if s.code == 404 => continue,
            Err(kube::Error::Api(s)) if s.code == 403 => {
                return Err(ClusterError::ListForbidden {
                    resource: res.qualified(),
                    namespace: ns.to_string(),
                    role: "dr-protect",
                });
            }
            Err(source) => {
                return Err(ClusterError::Api {
                    op: "list objects for the manifest bundle",
                    namespace: ns.to_string(),
                    source,
                });
            }
        };
        let mut items: Vec<serde_json::Value> = list
            .items
            .into_iter()
            .filter_map(|o| serde_json::to_value(o).ok())
            .collect();
        items.sort_by(|a, b| {
            a["metadata"]["name"]
                .as_str()
                .cmp(&b["metadata"]["name"].as_str())
        });
        let before = objects.len();
        for mut obj in items {
            if bundle::is_generated(&res.kind, &obj) {
                continue;
            }
            obj["apiVersion"] = res.api_version.clone().into();
            obj["kind"] = res.kind.clone().into();
            if res.kind == "Secret" && res.group().is_empty() {
                secrets.push(obj["metadata"]["name"].as_str().unwrap_or("").to_owned());
                obj = bundle::secret_by_reference(&obj);
            }
            objects.push(bundle::strip(&res.kind, obj));
        }
        if objects.len() > before {
            resources.push(res.clone());
        }
    }
    let objects = bundle::in_apply_order(&objects);
    let cluster_objects = cluster_dependencies(client, ns, &objects, &resources).await?;
    for (api_version, kind, plural) in bundle::CLUSTER_KINDS {
        if cluster_objects.iter().any(|o| o["kind"] == *kind) {
            resources.push(bundle::Resource::new(api_version, kind, plural, false));
        }
    }
    Ok(Bundle {
        format: BUNDLE_FORMAT,
        policy: policy.to_owned(),
        namespace: ns.to_string(),
        selector: selector.to_string(),
        tick: crate::timespec::fmt_time(tick),
        objects,
        secrets_by_reference: secrets,
        sealed_secrets: None,
        resources,
        cluster_objects,
    })
}

/// Every resource the API server serves that supports list, at its group's
/// preferred version, sorted by `plural.group`; subresources left out.
/// Aggregated discovery (one request per root, Kubernetes 1.30+) first, the
/// per-group walk where the server lacks it.
async fn discover(
    client: &Client,
    ns: &Namespace,
) -> Result<Vec<(bundle::Resource, ApiResource)>, ClusterError> {
    // metrics.k8s.io is derived (never captured) and served by an aggregated
    // API server that is often down: the per-group walk would fail on it.
    let skip = &["metrics.k8s.io"];
    let d = match Discovery::new(client.clone())
        .exclude(skip)
        .run_aggregated()
        .await
    {
        Ok(d) => d,
        Err(_) => Discovery::new(client.clone())
            .exclude(skip)
            .run()
            .await
            .map_err(|source| ClusterError::Api {
                op: "discover the served resources",
                namespace: ns.to_string(),
                source,
            })?,
    };
    let mut out: Vec<(bundle::Resource, ApiResource)> = d
        .groups()
        .flat_map(|g| g.recommended_resources())
        .filter(|(ar, caps)| caps.supports_operation(verbs::LIST) && !ar.plural.contains('/'))
        .map(|(ar, caps)| {
            let r = bundle::Resource::new(
                &ar.api_version,
                &ar.kind,
                &ar.plural,
                matches!(caps.scope, Scope::Namespaced),
            );
            (r, ar)
        })
        .collect();
    out.sort_by_key(|(r, _)| r.qualified());
    Ok(out)
}

/// The [`ApiResource`] of a cluster-scoped kind of [`bundle::CLUSTER_KINDS`].
pub(crate) fn cluster_resource(api_version: &str, kind: &str, plural: &str) -> ApiResource {
    let group = bundle::group_of(api_version);
    let version = api_version.rsplit_once('/').map_or(api_version, |(_, v)| v);
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

/// Reads one cluster-scoped object of a kind of [`bundle::CLUSTER_KINDS`],
/// stripped for re-creating; `None` if it does not exist.
async fn cluster_object(
    client: &Client,
    ns: &Namespace,
    (api_version, kind, plural): (&str, &str, &str),
    name: &str,
) -> Result<Option<serde_json::Value>, ClusterError> {
    let api: Api<DynamicObject> =
        Api::all_with(client.clone(), &cluster_resource(api_version, kind, plural));
    match api.get_opt(name).await {
        Ok(o) => Ok(o.and_then(|o| serde_json::to_value(o).ok()).map(|mut v| {
            v["apiVersion"] = api_version.into();
            v["kind"] = kind.into();
            bundle::strip(kind, v)
        })),
        Err(kube::Error::Api(s)) if s.code == 403 => Err(ClusterError::ListForbidden {
            resource: if api_version.contains('/') {
                format!("{plural}.{}", bundle::group_of(api_version))
            } else {
                plural.to_owned()
            },
            namespace: ns.to_string(),
            role: "dr-volumes",
        }),
        Err(source) => Err(ClusterError::Api {
            op: "read a cluster-scoped object the application depends on",
            namespace: ns.to_string(),
            source,
        }),
    }
}

/// The cluster-scoped objects the captured application depends on, in
/// [`bundle::CLUSTER_KINDS`] order: the CRDs of its custom resources, the
/// StorageClasses, PriorityClasses and IngressClasses it names, the
/// ClusterRoleBindings naming its ServiceAccounts and the ClusterRoles they
/// and its RoleBindings refer to. Named objects that do not exist are left
/// out (the restore's checks report what is missing).
async fn cluster_dependencies(
    client: &Client,
    ns: &Namespace,
    objects: &[serde_json::Value],
    resources: &[bundle::Resource],
) -> Result<Vec<serde_json::Value>, ClusterError> {
    let deps = bundle::cluster_dependencies(objects);
    let [crd, sc, pc, ic, cr, crb] = bundle::CLUSTER_KINDS else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    // A CRD is named `<plural>.<group>`; built-in kinds have none.
    for r in resources.iter().filter(|r| !r.group().is_empty()) {
        if let Some(o) = cluster_object(client, ns, *crd, &r.qualified()).await? {
            out.push(o);
        }
    }
    for (kind, names) in [
        (sc, &deps.storage_classes),
        (pc, &deps.priority_classes),
        (ic, &deps.ingress_classes),
    ] {
        for n in names {
            if let Some(o) = cluster_object(client, ns, *kind, n).await? {
                out.push(o);
            }
        }
    }
    let bindings: Api<DynamicObject> =
        Api::all_with(client.clone(), &cluster_resource(crb.0, crb.1, crb.2));
    let all = match bindings.list(&ListParams::default()).await {
        Ok(l) => l,
        Err(kube::Error::Api(s)) if s.code == 403 => {
            return Err(ClusterError::ListForbidden {
                resource: "clusterrolebindings.rbac.authorization.k8s.io".into(),
                namespace: ns.to_string(),
                role: "dr-volumes",
            });
        }
        Err(source) => {
            return Err(ClusterError::Api {
                op: "list ClusterRoleBindings",
                namespace: ns.to_string(),
                source,
            });
        }
    };
    let mut roles = deps.cluster_roles.clone();
    let mut chosen = Vec::new();
    for b in all.items {
        let Ok(mut v) = serde_json::to_value(b) else {
            continue;
        };
        if bundle::binds_service_account(&v, ns.as_str(), &deps.service_accounts) {
            if v["roleRef"]["kind"] == "ClusterRole"
                && let Some(r) = v["roleRef"]["name"].as_str()
            {
                roles.insert(r.to_owned());
            }
            v["apiVersion"] = crb.0.into();
            v["kind"] = crb.1.into();
            chosen.push(bundle::strip(crb.1, v));
        }
    }
    for r in &roles {
        if let Some(o) = cluster_object(client, ns, *cr, r).await? {
            out.push(o);
        }
    }
    chosen.sort_by(|a, b| {
        a["metadata"]["name"]
            .as_str()
            .cmp(&b["metadata"]["name"].as_str())
    });
    out.extend(chosen);
    Ok(out)
}
