//! The Kubernetes adapter: which Longhorn volumes a policy protects (PVC →
//! PV → `spec.csi.volumeHandle`) and what a namespace's manifests are.

pub mod references;
pub mod restore;
pub mod scratch;
pub mod secrets;

use crate::bundle::{self, BUNDLE_FORMAT, Bundle, KINDS};
use crate::names::{Namespace, Selector, VolumeName};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};
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
            | ClusterError::JobFailed { .. } => false,
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

/// Captures the namespace's objects of the kinds in [`KINDS`] matching
/// `selector`, stripped for re-applying; Secrets by reference only.
pub async fn capture(
    client: &Client,
    policy: &str,
    ns: &Namespace,
    selector: &Selector,
    tick: chrono::DateTime<chrono::Utc>,
) -> Result<Bundle, ClusterError> {
    let mut objects = Vec::new();
    let mut secrets = Vec::new();
    let lp = ListParams::default().labels(selector.as_str());
    for kind in KINDS {
        let gvk = GroupVersionKind::gvk(kind.group(), kind.version(), kind.kind);
        let ar = ApiResource::from_gvk_with_plural(&gvk, kind.plural);
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns.as_str(), &ar);
        let list = api.list(&lp).await.map_err(|source| ClusterError::Api {
            op: "list objects for the manifest bundle",
            namespace: ns.to_string(),
            source,
        })?;
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
        for mut obj in items {
            if bundle::is_generated(kind.kind, &obj) {
                continue;
            }
            obj["apiVersion"] = kind.api_version.into();
            obj["kind"] = kind.kind.into();
            if kind.kind == "Secret" {
                secrets.push(obj["metadata"]["name"].as_str().unwrap_or("").to_owned());
                obj = bundle::secret_by_reference(&obj);
            }
            objects.push(bundle::strip(kind.kind, obj));
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
    })
}
