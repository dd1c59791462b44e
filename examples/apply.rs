//! Applies a multi-document YAML file to the cluster of `$KUBECONFIG` with
//! server-side apply, then waits until every PVC in it is bound — the demo's
//! stand-in for `kubectl apply` (no kubectl on the test bed).
//!
//! `cargo run --example apply -- tests/fixtures/wesago.yaml`
//! `cargo run --example apply -- --delete-namespace NS…` deletes namespaces,
//! waits until they are gone, and deletes the Longhorn PVs their claims held
//! (the demo's reset, and its disaster).

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::{self, Scope};
use serde::Deserialize;
use std::time::{Duration, Instant};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: apply FILE.yaml | apply --delete-namespace NS…"))?;
    let client = dr::cluster::client(None).await?;
    if path == "--delete-namespace" {
        let names: Vec<String> = std::env::args().skip(2).collect();
        return delete_namespaces(&client, &names).await;
    }
    let text = std::fs::read_to_string(&path)?;
    let pp = PatchParams::apply("dr-demo").force();
    let mut claims = Vec::new();
    for doc in serde_norway::Deserializer::from_str(&text) {
        let obj = DynamicObject::deserialize(doc)?;
        let Some(types) = obj.types.clone() else {
            continue;
        };
        let gvk = kube::api::GroupVersionKind::try_from(&types)?;
        let (ar, caps) = discovery::pinned_kind(&client, &gvk).await?;
        let name = obj.metadata.name.clone().unwrap_or_default();
        let api: Api<DynamicObject> = match (caps.scope, obj.metadata.namespace.as_deref()) {
            (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, &ar),
            (Scope::Namespaced, None) => Api::default_namespaced_with(client.clone(), &ar),
            (Scope::Cluster, _) => Api::all_with(client.clone(), &ar),
        };
        api.patch(&name, &pp, &Patch::Apply(&obj)).await?;
        println!("applied {} {name}", types.kind);
        if types.kind == "PersistentVolumeClaim"
            && let Some(ns) = obj.metadata.namespace.clone()
        {
            claims.push((ns, name.clone()));
        }
        if types.kind == "StatefulSet"
            && let Some(ns) = obj.metadata.namespace.clone()
        {
            // One claim per template and replica: <template>-<set>-<ordinal>.
            let templates = obj.data["spec"]["volumeClaimTemplates"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let replicas = obj.data["spec"]["replicas"].as_i64().unwrap_or(1);
            for t in templates {
                for i in 0..replicas {
                    let tn = t["metadata"]["name"].as_str().unwrap_or("data");
                    claims.push((ns.clone(), format!("{tn}-{name}-{i}")));
                }
            }
        }
    }
    let start = Instant::now();
    for (ns, name) in claims {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
        loop {
            let phase = api
                .get_opt(&name)
                .await?
                .and_then(|p| p.status)
                .and_then(|s| s.phase);
            if phase.as_deref() == Some("Bound") {
                println!("claim {ns}/{name} is bound");
                break;
            }
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(120),
                "claim {ns}/{name} was not bound within 2 minutes (is the Longhorn emulator running?)"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    Ok(())
}

async fn delete_namespaces(client: &kube::Client, names: &[String]) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::{Namespace, PersistentVolume};
    let nss: Api<Namespace> = Api::all(client.clone());
    for n in names {
        if nss.get_opt(n).await?.is_some() {
            nss.delete(n, &Default::default()).await?;
            println!("deleting namespace {n}");
        }
    }
    let start = Instant::now();
    for n in names {
        while nss.get_opt(n).await?.is_some() {
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(120),
                "namespace {n} was not deleted within 2 minutes"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    for pv in pvs.list(&Default::default()).await?.items {
        let claim_ns = pv
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .and_then(|c| c.namespace.clone())
            .unwrap_or_default();
        if names.contains(&claim_ns)
            && let Some(name) = pv.metadata.name
        {
            let _ = pvs.delete(&name, &Default::default()).await;
        }
    }
    Ok(())
}
