//! A small protected application on the test bed and the Longhorn emulator,
//! for the restore and drill tests: two Longhorn claims and a Deployment in
//! a fresh namespace, policy `shop`, and ticks with different data written
//! before each (their checksums kept per point).

#![allow(dead_code)] // each test binary uses a different part of this module
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use super::testbed::{self, TestNamespace};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use dr::backup::{Events, Protect, TickOptions};
use dr::catalog::{Catalog, PointId, PointState};
use dr::config::Config;
use dr::longhorn::{ClientConfig, LonghornClient};
use dr::store::Store;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::Api;
use longhorn_emulator::{Emulator, EmulatorConfig, Timings};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

pub const CLAIMS: [&str; 2] = ["web-uploads", "db-data"];
/// The claim of [`CLAIMS`] whose volume is formatted xfs.
pub const XFS_CLAIM: &str = "db-data";

pub struct Bed {
    pub emu: Emulator,
    pub kube: kube::Client,
    pub ns: Option<TestNamespace>,
    pub ns_name: String,
    pub dir: tempfile::TempDir,
    pub config: std::path::PathBuf,
    pub catalog: Catalog,
    /// Per point (oldest first): its id, time, and each claim's checksum.
    pub points: Vec<(PointId, DateTime<Utc>, BTreeMap<String, String>)>,
    pub extra: Vec<String>,
}

impl Bed {
    pub fn catalog_url(&self) -> String {
        format!("sqlite://{}/c.db", self.dir.path().display())
    }

    pub fn dr(&self, args: &[&str]) -> Command {
        let mut c = dr_command(
            &testbed::get().kubeconfig(),
            &self.config,
            &self.catalog_url(),
            args,
        );
        // dr serve's policy Leases: in the test's own namespace, so that
        // tests running at once never compete for the same Lease.
        c.env("DR_LEASE_NAMESPACE", &self.ns_name);
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let out = self.dr(args).output().unwrap();
        eprintln!(
            "$ dr {}\n--- stdout\n{}--- stderr\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// The restored volume behind a claim, and its checksum.
    pub async fn claim_checksum(&self, ns: &str, claim: &str) -> (String, String) {
        claim_checksum_on(&self.emu, &self.kube, ns, claim).await
    }
}

/// `dr` with `config` and `catalog` against the cluster of `kubeconfig`, with
/// the bed's S3 credentials and none of the caller's `DR_OUTPUT`/`DR_POLICY`.
pub fn dr_command(
    kubeconfig: &std::path::Path,
    config: &std::path::Path,
    catalog: &str,
    args: &[&str],
) -> Command {
    let tb = testbed::get();
    let mut c = Command::new(env!("CARGO_BIN_EXE_dr"));
    c.arg("--config")
        .arg(config)
        .args(["--catalog", catalog])
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("AWS_ACCESS_KEY_ID", tb.var("AWS_ACCESS_KEY_ID"))
        .env("AWS_SECRET_ACCESS_KEY", tb.var("AWS_SECRET_ACCESS_KEY"))
        .env_remove("DR_OUTPUT")
        .env_remove("DR_POLICY")
        .stdin(Stdio::null());
    c
}

/// The Longhorn volume behind a bound claim (in `kube`'s cluster, served by
/// `emu`), and its checksum.
pub async fn claim_checksum_on(
    emu: &Emulator,
    kube: &kube::Client,
    ns: &str,
    claim: &str,
) -> (String, String) {
    let pvc = Api::<PersistentVolumeClaim>::namespaced(kube.clone(), ns)
        .get(claim)
        .await
        .unwrap();
    assert_eq!(
        pvc.status.unwrap().phase.as_deref(),
        Some("Bound"),
        "{ns}/{claim} is bound"
    );
    let pv = pvc.spec.unwrap().volume_name.unwrap();
    let handle = Api::<PersistentVolume>::all(kube.clone())
        .get(&pv)
        .await
        .unwrap()
        .spec
        .unwrap()
        .csi
        .unwrap()
        .volume_handle;
    let sum = emu.control().checksum(&handle).await.unwrap();
    (handle, sum)
}

pub fn pattern(seed: u8) -> Vec<u8> {
    (0..256 * 1024u32)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// An application with two Longhorn claims and a Deployment, protected by
/// policy `shop`; three ticks with different data written before each.
pub async fn bed(ticks: usize) -> Bed {
    bed_with(ticks, &BedOptions::default()).await
}

/// What a [`bed`] adds to the plain application.
#[derive(Default)]
pub struct BedOptions {
    /// A Secret [`SECRET`] (key `password` = [`SECRET_VALUE`]) that the
    /// Deployment's env `DB_PASSWORD` refers to.
    pub secret: bool,
    /// The policy's `secrets.recipients`.
    pub recipients: Vec<String>,
}

/// The Secret of [`BedOptions::secret`].
pub const SECRET: &str = "db-credentials";
/// Its value (plain, before Kubernetes' base64).
pub const SECRET_VALUE: &str = "correct-horse-battery-staple-0451";

/// [`bed`] with options.
pub async fn bed_with(ticks: usize, opts: &BedOptions) -> Bed {
    let tb = testbed::get();
    let kube = tb.kube_client().await;
    let prefix = format!("restore-{}", testbed::suffix());
    let ns = TestNamespace::create(&kube, "dr-restore").await;
    let mut ecfg = EmulatorConfig::new("127.0.0.1:0".parse().unwrap());
    ecfg.store = Some(tb.emulator_store(&prefix).await);
    ecfg.kube = Some(kube.clone());
    ecfg.timings = Timings::fast();
    ecfg.provision_namespaces = Some(vec![ns.name.clone()]);
    let emu = Emulator::start(ecfg).await.unwrap();
    let labels = json!({"app.kubernetes.io/part-of": "shop"});
    // One of the claims is on an xfs class: its restored PV must be xfs too.
    // Longhorn's CSI driver refuses a new xfs volume below 300 MiB (the
    // emulator's provisioner too); the emulator's volumes are sparse.
    for c in CLAIMS {
        let (class, size) = if c == XFS_CLAIM {
            ("longhorn-xfs", "300Mi")
        } else {
            ("longhorn", "4Mi")
        };
        testbed::longhorn_claim_of(&kube, &ns.name, c, labels.clone(), size, class).await;
    }
    for c in CLAIMS {
        testbed::wait_bound(&kube, &ns.name, c).await;
    }
    let mut container = json!({"name": "web", "image": "web:1"});
    let mut app = Vec::new();
    if opts.secret {
        app.push(
            json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
               "metadata": {"name": SECRET, "namespace": ns.name, "labels": labels},
               "stringData": {"password": SECRET_VALUE}}),
        );
        container["env"] = json!([{"name": "DB_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": SECRET, "key": "password"}}}]);
    }
    app.extend([
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "settings", "namespace": ns.name, "labels": labels},
               "data": {"MODE": "production"}}),
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "web", "namespace": ns.name, "labels": labels},
               "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "namespace": ns.name, "labels": labels},
               "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}},
                                     "spec": {"containers": [container],
                                              "volumes": [{"name": "u", "persistentVolumeClaim": {"claimName": "web-uploads"}}]}}}}),
    ]);
    dr::cluster::restore::apply(&kube, &ns.name, &app, &[])
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let runbook = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/testbed.yaml");
    let mut config_text = format!(
        "longhorn: {{url: \"{}\", timeout: 5s, follow_interval: 100ms}}\nstore: {{bucket: {}, prefix: {prefix}, region: {}, endpoint: \"{}\"}}\npolicies:\n  - name: shop\n    namespace: {}\n    selector: app.kubernetes.io/part-of=shop\n    runbook: {}\n    content: {{checksum_url: \"{}emulator/volumes/{{volume}}/checksum\"}}\n",
        emu.url(),
        tb.s3_bucket(),
        tb.var("DR_TEST_S3_REGION"),
        tb.var("DR_TEST_S3_ENDPOINT"),
        ns.name,
        runbook.display(),
        emu.url()
    );
    if !opts.recipients.is_empty() {
        config_text.push_str(&format!(
            "    secrets: {{recipients: [{}]}}\n",
            opts.recipients.join(", ")
        ));
    }
    let config = dir.path().join("dr.yaml");
    std::fs::write(&config, &config_text).unwrap();
    let policy = Config::parse(&config_text, "dr.yaml").unwrap().policies[0].clone();
    let catalog = Catalog::open(
        &format!("sqlite://{}/c.db", dir.path().display())
            .parse()
            .unwrap(),
    )
    .await
    .unwrap();
    catalog
        .upsert_policy(&(&policy).into(), Utc::now())
        .await
        .unwrap();
    let mut lh = ClientConfig::new(emu.url());
    lh.poll = Duration::from_millis(25);
    lh.follow_interval = Duration::from_millis(100);
    let s3 = tb.s3_client();
    let protect = Protect {
        catalog: catalog.clone(),
        longhorn: LonghornClient::new(lh).unwrap(),
        kube: kube.clone(),
        store: Store::from_client(s3.clone(), tb.s3_bucket(), &prefix),
        verifier: s3,
        options: TickOptions {
            concurrency: 4,
            snapshot_wait: Duration::from_secs(20),
            backup_wait: Duration::from_secs(60),
            ..TickOptions::default()
        },
    };
    let quiet: Events = Arc::new(|_| {});
    let handles: Vec<String> = {
        let mut h = Vec::new();
        for c in CLAIMS {
            let pvc = Api::<PersistentVolumeClaim>::namespaced(kube.clone(), &ns.name)
                .get(c)
                .await
                .unwrap();
            let pv = Api::<PersistentVolume>::all(kube.clone())
                .get(&pvc.spec.unwrap().volume_name.unwrap())
                .await
                .unwrap();
            h.push(pv.spec.unwrap().csi.unwrap().volume_handle);
        }
        h
    };
    let mut points = Vec::new();
    let base = Utc::now().duration_trunc(TimeDelta::minutes(15)).unwrap();
    for i in 0..ticks {
        let mut sums = BTreeMap::new();
        for (j, (c, h)) in CLAIMS.iter().zip(&handles).enumerate() {
            emu.control()
                .write(h, 0, &pattern((i * 10 + j) as u8))
                .await
                .unwrap();
            sums.insert(c.to_string(), emu.control().checksum(h).await.unwrap());
        }
        let tick = base - TimeDelta::minutes(15 * (ticks - i) as i64);
        let r = protect.tick(&policy, tick, quiet.clone()).await.unwrap();
        assert_eq!(r.state, PointState::Complete, "{r:?}");
        let p = catalog.point(r.point_id).await.unwrap();
        points.push((p.id, p.point_at.unwrap(), sums));
        // Points a second apart, so a time between two is unambiguous.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let ns_name = ns.name.clone();
    Bed {
        emu,
        kube,
        ns: Some(ns),
        ns_name,
        dir,
        config,
        catalog,
        points,
        extra: Vec::new(),
    }
}

pub fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

pub fn between(a: DateTime<Utc>, b: DateTime<Utc>) -> String {
    (a + (b - a) / 2).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub async fn ready_replicas(kube: &kube::Client, ns: &str) -> i32 {
    Api::<Deployment>::namespaced(kube.clone(), ns)
        .get("web")
        .await
        .unwrap()
        .status
        .unwrap()
        .ready_replicas
        .unwrap_or(0)
}

/// Deletes the namespaces and the PVs (reclaim policy Retain) of the restores.
pub async fn cleanup(b: &Bed) {
    let api = Api::<k8s_openapi::api::core::v1::Namespace>::all(b.kube.clone());
    for ns in &b.extra {
        let _ = api.delete(ns, &Default::default()).await;
    }
    let pvs = Api::<PersistentVolume>::all(b.kube.clone());
    for v in b.emu.control().stats().await.unwrap().volumes {
        if v.starts_with("dr-r") {
            let _ = pvs.delete(&v, &Default::default()).await;
        }
    }
}
