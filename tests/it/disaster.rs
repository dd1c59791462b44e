//! The disaster dr exists for: the cluster is gone, with its Longhorn and
//! dr's catalog; nothing is left but the bucket (Longhorn's backup store and
//! dr's bundles and point files). On the test bed's second cluster, with a
//! fresh Longhorn (emulator) on the same backup store and an empty catalog,
//! `dr catalog sync` rebuilds the points from the bucket and `dr restore`
//! with the operator's age identity brings the application back: every
//! object, the Secret's value (sealed in the bundle), the volumes byte for byte,
//! Ready workloads, the content checksums checked, each stage timed.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use crate::harness::app::{
    BedOptions, CLAIMS, SECRET, SECRET_VALUE, bed_with, claim_checksum_on, dr_command, json_of,
};
use crate::harness::testbed;
use dr::bundle::Resource;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, PersistentVolume, Secret, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use longhorn_emulator::{Emulator, EmulatorConfig, Timings};
use serde_json::json;
use std::process::Output;
use std::time::Duration;

/// `dr` against cluster B, with `config` and `catalog`.
fn dr_on_b(config: &std::path::Path, catalog: &str, args: &[&str]) -> Output {
    let kubeconfig = testbed::get().kubeconfig_b();
    let out = dr_command(&kubeconfig, config, catalog, args)
        .output()
        .unwrap();
    eprintln!(
        "$ dr {} (cluster B)\n--- stdout\n{}--- stderr\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_is_lost_and_the_application_comes_back_in_another_from_the_bucket() {
    // Cluster A: the application protected, two points; its Secret sealed
    // to the operator's identity, which is all that is kept outside.
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("age-key.txt");
    let (id, text) = dr::secrets::Identity::generate(&key);
    std::fs::write(&key, text).unwrap();
    let b = bed_with(
        2,
        &BedOptions {
            secret: true,
            recipients: id.recipients().iter().map(|r| r.to_string()).collect(),
        },
    )
    .await;
    let (_, _, sums) = b.points[1].clone();
    // The application also has a custom resource, whose definition cluster
    // B has never seen; a third point (the data unchanged) captures both.
    let group = format!("d{}.dr.test", testbed::suffix());
    let crd_name = format!("widgets.{group}");
    let crd_rs = [Resource::new(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
    )];
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": crd_name},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                               "schema": {"openAPIV3Schema": {"type": "object",
                                   "x-kubernetes-preserve-unknown-fields": true}}}]}});
    dr::cluster::restore::apply(&b.kube, &b.ns_name, &[crd], &crd_rs)
        .await
        .unwrap();
    dr::cluster::restore::wait_established(&b.kube, &crd_name, Duration::from_secs(60))
        .await
        .unwrap();
    let widget_r = [Resource::new(
        &format!("{group}/v1"),
        "Widget",
        "widgets",
        true,
    )];
    let widget = json!({"apiVersion": format!("{group}/v1"), "kind": "Widget",
        "metadata": {"name": "gear", "labels": {"app.kubernetes.io/part-of": "shop"}},
        "spec": {"teeth": 42}});
    dr::cluster::restore::apply(&b.kube, &b.ns_name, &[widget], &widget_r)
        .await
        .unwrap();
    let out = b.run(&["backup", "now"]);
    assert_eq!(out.status.code(), Some(0));
    let config_text = std::fs::read_to_string(&b.config).unwrap();
    let cfg = dr::config::Config::parse(&config_text, "dr.yaml").unwrap();
    let prefix = cfg.store.prefix.clone();
    let ns = b.ns_name.clone();

    // The disaster: Longhorn A and dr's catalog are gone (cluster A is never
    // spoken to again; its objects and volumes are as good as lost).
    let url_a = b.emu.url().to_string();
    b.emu.shutdown().await;

    // Cluster B: a fresh Longhorn on the same backup store, an empty catalog.
    let tb = testbed::get();
    let kube_b = tb.kube_client_b().await;
    let mut ecfg = EmulatorConfig::new("127.0.0.1:0".parse().unwrap());
    ecfg.store = Some(tb.emulator_store(&prefix).await);
    ecfg.kube = Some(kube_b.clone());
    ecfg.timings = Timings::fast();
    ecfg.provision_namespaces = Some(vec![ns.clone()]);
    let emu_b = Emulator::start(ecfg).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config_b = dir.path().join("dr.yaml");
    std::fs::write(&config_b, config_text.replace(&url_a, emu_b.url().as_str())).unwrap();
    let catalog = format!("sqlite://{}/new.db", dir.path().display());

    let out = dr_on_b(
        &config_b,
        &catalog,
        &["--output", "json", "catalog", "sync"],
    );
    assert_eq!(out.status.code(), Some(0));
    let doc = json_of(&out);
    let report = &doc["policies"][0]["report"];
    assert_eq!(report["recovered"].as_array().unwrap().len(), 3, "{doc}");
    assert_eq!(report["differences"], serde_json::json!([]), "{doc}");

    let out = dr_on_b(
        &config_b,
        &catalog,
        &[
            "--output",
            "json",
            "restore",
            "--to",
            "latest",
            "--secrets-identity",
            key.to_str().unwrap(),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "the restore on cluster B succeeds"
    );
    let run = &json_of(&out)["run"];
    assert_eq!(run["state"], "succeeded", "{run}");
    let stages: Vec<&str> = run["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        stages,
        ["infrastructure", "redeploy", "data", "verification"]
    );
    assert!(
        run["stages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["actual_seconds"].as_f64().is_some() && s["verdict"] == "within"),
        "every stage timed against its budget: {run}"
    );

    // The content step compared each restored volume with the checksum
    // taken before its snapshot: known again only through the point files.
    let content = run["stages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["steps"].as_array().unwrap())
        .find(|s| s["step"] == "content checksums")
        .unwrap();
    assert_eq!(content["state"], "succeeded", "{content}");
    assert!(
        content["detail"]
            .as_str()
            .unwrap()
            .contains("2 volumes hold the bytes"),
        "{content}"
    );

    // Everything is back on B: the objects, the bytes of the newest point,
    // the workload Ready.
    Api::<ConfigMap>::namespaced(kube_b.clone(), &ns)
        .get("settings")
        .await
        .unwrap();
    Api::<Service>::namespaced(kube_b.clone(), &ns)
        .get("web")
        .await
        .unwrap();
    let widgets: Api<DynamicObject> = Api::namespaced_with(
        kube_b.clone(),
        &ns,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(&group, "v1", "Widget"),
            "widgets",
        ),
    );
    let gear = widgets.get("gear").await.unwrap();
    assert_eq!(
        gear.data["spec"]["teeth"], 42,
        "the custom resource came back"
    );
    let secret = Api::<Secret>::namespaced(kube_b.clone(), &ns)
        .get(SECRET)
        .await
        .unwrap();
    assert_eq!(
        secret.data.unwrap()["password"].0,
        SECRET_VALUE.as_bytes(),
        "the Secret's value, from the sealed copy in the bucket"
    );
    for c in CLAIMS {
        assert_eq!(
            claim_checksum_on(&emu_b, &kube_b, &ns, c).await.1,
            sums[c],
            "{c}"
        );
    }
    let ready = Api::<Deployment>::namespaced(kube_b.clone(), &ns)
        .get("web")
        .await
        .unwrap()
        .status
        .unwrap()
        .ready_replicas
        .unwrap_or(0);
    assert_eq!(ready, 2);

    // Cleanup on B: the namespace and the restored PVs.
    let _ = Api::<Namespace>::all(kube_b.clone())
        .delete(&ns, &Default::default())
        .await;
    let pvs = Api::<PersistentVolume>::all(kube_b.clone());
    for v in emu_b.control().stats().await.unwrap().volumes {
        let _ = pvs.delete(&v, &Default::default()).await;
    }
    for k in [&b.kube, &kube_b] {
        let _ = Api::<CustomResourceDefinition>::all(k.clone())
            .delete(&crd_name, &Default::default())
            .await;
    }
    emu_b.shutdown().await;
}
