//! Whether what a recovery point's objects refer to exists in a namespace
//! (`crate::references` finds the references, purely; this looks them up).

use super::ClusterError;
use super::restore::api_err;
use crate::references::Target;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret, ServiceAccount};
use kube::{Api, Client};
use std::collections::BTreeSet;

/// The targets of `targets` that exist in `ns` (custom resource
/// definitions: whose kind the API server serves at that version).
pub async fn present(
    client: &Client,
    ns: &str,
    targets: &BTreeSet<Target>,
) -> Result<BTreeSet<Target>, ClusterError> {
    let mut out = BTreeSet::new();
    for t in targets {
        let found = match t {
            Target::Secret { name } => Api::<Secret>::namespaced(client.clone(), ns)
                .get_metadata_opt(name)
                .await
                .map_err(api_err("read Secret", ns))?
                .is_some(),
            Target::ConfigMap { name } => Api::<ConfigMap>::namespaced(client.clone(), ns)
                .get_metadata_opt(name)
                .await
                .map_err(api_err("read ConfigMap", ns))?
                .is_some(),
            Target::ServiceAccount { name } => {
                Api::<ServiceAccount>::namespaced(client.clone(), ns)
                    .get_metadata_opt(name)
                    .await
                    .map_err(api_err("read ServiceAccount", ns))?
                    .is_some()
            }
            Target::PersistentVolumeClaim { name } => {
                Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
                    .get_metadata_opt(name)
                    .await
                    .map_err(api_err("read PersistentVolumeClaim", ns))?
                    .is_some()
            }
            Target::CustomResourceDefinition { api_version, kind } => {
                match client.list_api_group_resources(api_version).await {
                    Ok(list) => list.resources.iter().any(|r| &r.kind == kind),
                    Err(kube::Error::Api(s)) if s.code == 404 => false,
                    Err(e) => return Err(api_err("discover API resources", ns)(e)),
                }
            }
        };
        if found {
            out.insert(t.clone());
        }
    }
    Ok(out)
}
