//! The Kubernetes side of sealed Secrets: at a tick, the policy's Secrets
//! read whole to be sealed (`crate::secrets`); at a restore, the opened
//! Secrets applied into the target namespace. Values pass through here and
//! are never logged.

use super::ClusterError;
use super::restore::{FIELD_MANAGER, api_err};
use crate::bundle;
use crate::names::{Namespace, Selector};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::Value;

/// The Secrets of `ns` matching `selector` whose names are in `names` (the
/// bundle's Secrets by reference), whole and stripped of server fields, in
/// name order. Read right after the bundle's capture, so a Secret deleted
/// in between is missing here, and the restore's reference check names it.
pub async fn whole(
    client: &Client,
    ns: &Namespace,
    selector: &Selector,
    names: &[String],
) -> Result<Vec<Value>, ClusterError> {
    let api = Api::<Secret>::namespaced(client.clone(), ns.as_str());
    let lp = ListParams::default().labels(selector.as_str());
    let list = api
        .list(&lp)
        .await
        .map_err(api_err("list Secrets to seal", ns.as_str()))?;
    let mut out = Vec::new();
    for s in list.items {
        let Some(name) = s.metadata.name.clone() else {
            continue;
        };
        if !names.contains(&name) {
            continue;
        }
        let mut obj = serde_json::to_value(&s).map_err(|e| ClusterError::BadObject {
            kind: "Secret".into(),
            name: name.clone(),
            message: e.to_string(),
        })?;
        obj["apiVersion"] = "v1".into();
        obj["kind"] = "Secret".into();
        out.push(bundle::strip("Secret", obj));
    }
    out.sort_by(|a, b| {
        a["metadata"]["name"]
            .as_str()
            .cmp(&b["metadata"]["name"].as_str())
    });
    Ok(out)
}

/// Server-side applies opened Secrets into `ns` (their namespace rewritten),
/// as dr's field manager; returns their names.
pub async fn apply(
    client: &Client,
    ns: &str,
    secrets: &[Value],
) -> Result<Vec<String>, ClusterError> {
    let api = Api::<Secret>::namespaced(client.clone(), ns);
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let mut names = Vec::new();
    for s in secrets {
        let name = s["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if name.is_empty() {
            return Err(ClusterError::BadObject {
                kind: "Secret".into(),
                name,
                message: "metadata.name is missing".into(),
            });
        }
        let mut s = s.clone();
        s["metadata"]["namespace"] = Value::String(ns.to_owned());
        api.patch(&name, &pp, &Patch::Apply(&s))
            .await
            .map_err(api_err("server-side apply of a sealed Secret", ns))?;
        names.push(name);
    }
    Ok(names)
}
