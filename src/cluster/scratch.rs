//! Scratch namespaces and what is bound in them: the Kubernetes side of a
//! drill's teardown and of the janitor (namespaces by label and age, the PVs
//! bound in a namespace or backed by given volumes, deletions that treat
//! "already gone" as done).

use super::ClusterError;
use super::restore::api_err;
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Namespace as K8sNamespace, PersistentVolume};
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client};
use std::collections::BTreeSet;

type Result<T, E = ClusterError> = std::result::Result<T, E>;

/// A PV found for a namespace: its name and its CSI volume handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundPv {
    pub name: String,
    pub handle: String,
}

/// Deletes a namespace; one already gone is fine.
pub async fn delete_namespace(client: &Client, ns: &str) -> Result<()> {
    let api = Api::<K8sNamespace>::all(client.clone());
    match api.delete(ns, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(api_err("delete namespace", ns)(e)),
    }
}

/// Whether a namespace still exists (terminating counts).
pub async fn namespace_exists(client: &Client, ns: &str) -> Result<bool> {
    let api = Api::<K8sNamespace>::all(client.clone());
    Ok(api
        .get_opt(ns)
        .await
        .map_err(api_err("read namespace", ns))?
        .is_some())
}

/// The PVs claimed from `ns`, or backed by one of `volumes`.
pub async fn pvs_for(
    client: &Client,
    ns: &str,
    volumes: &BTreeSet<String>,
) -> Result<Vec<BoundPv>> {
    let api = Api::<PersistentVolume>::all(client.clone());
    let mut out = Vec::new();
    for pv in api
        .list(&ListParams::default())
        .await
        .map_err(api_err("list PVs", ns))?
    {
        let spec = pv.spec.unwrap_or_default();
        let claim_ns = spec
            .claim_ref
            .as_ref()
            .and_then(|c| c.namespace.as_deref())
            .unwrap_or_default();
        let handle = spec
            .csi
            .as_ref()
            .map(|c| c.volume_handle.clone())
            .unwrap_or_default();
        if (claim_ns == ns || volumes.contains(&handle))
            && let Some(name) = pv.metadata.name
        {
            out.push(BoundPv { name, handle });
        }
    }
    Ok(out)
}

/// Deletes a PV; one already gone is fine. `ns` names the namespace the PV
/// belonged to, for the error.
pub async fn delete_pv(client: &Client, ns: &str, name: &str) -> Result<()> {
    let api = Api::<PersistentVolume>::all(client.clone());
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(api_err("delete PV", ns)(e)),
    }
}

/// Whether a PV still exists.
pub async fn pv_exists(client: &Client, ns: &str, name: &str) -> Result<bool> {
    let api = Api::<PersistentVolume>::all(client.clone());
    Ok(api
        .get_opt(name)
        .await
        .map_err(api_err("read PV", ns))?
        .is_some())
}

/// The namespaces carrying `label`, with their creation times.
pub async fn labelled_namespaces(
    client: &Client,
    label: &str,
) -> Result<Vec<(String, Option<DateTime<Utc>>)>> {
    let api = Api::<K8sNamespace>::all(client.clone());
    let list = api
        .list(&ListParams::default().labels(label))
        .await
        .map_err(api_err("list namespaces", ""))?;
    Ok(list
        .into_iter()
        .filter_map(|n| {
            let created = n
                .metadata
                .creation_timestamp
                .as_ref()
                .and_then(|t| DateTime::<Utc>::from_timestamp(t.0.as_second(), 0));
            n.metadata.name.map(|name| (name, created))
        })
        .collect())
}
