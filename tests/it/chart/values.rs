//! Values other than the defaults: what they render, and what is refused.

use super::{
    chart_dir, container, env, find, render, render_in_repo, repo, run_helm, try_render_chart,
};
use serde_json::Value;

#[test]
fn helm_lint_passes_with_default_and_other_values() {
    let chart = chart_dir();
    let chart = chart.to_str().unwrap();
    for set in [
        "replicas=2",
        "replicas=3,catalog.url=postgres://dr:pw@pg:5432/dr,s3.accessKeyId=a,s3.secretAccessKey=b",
        "replicas=1,catalog.sqlite.enabled=true,monitoring.serviceMonitor.enabled=true",
    ] {
        let out = run_helm(&[
            "lint",
            "--strict",
            chart,
            "--namespace",
            "dr-system",
            "--set",
            set,
        ])
        .unwrap_or_else(|e| panic!("helm lint --set {set}: {e}"));
        assert!(out.contains("0 chart(s) failed"), "{out}");
    }
}

/// Values that would install something that cannot work are refused, and
/// the refusal says why and what to do.
#[test]
fn values_that_cannot_work_are_refused() {
    for (set, says) in [
        ("replica=3", "additional properties 'replica' not allowed"),
        ("catalog.sqlite.enabled=true", "needs replicas: 1 (got 2)"),
        ("catalog.secret.name=", "catalog URL is read from a Secret"),
        ("config.catalog=postgres://x", "never in the ConfigMap"),
        ("s3.accessKeyId=a", "set both"),
        ("shutdownGraceSeconds=45", "kubelet would kill dr"),
        ("leaseDuration=15", "want string"),
        ("catalog.url=sqlite:///x.db", "does not match pattern"),
    ] {
        let e = try_render_chart(&chart_dir(), "dr", "dr-system", &["--set", set])
            .err()
            .unwrap_or_else(|| panic!("--set {set} was accepted"));
        assert!(e.contains(says), "--set {set}: {e}");
    }
}

#[test]
fn sqlite_is_one_replica_with_its_claim_and_no_budget() {
    let objects = render(
        "dr",
        "dr-system",
        &["--set", "catalog.sqlite.enabled=true,replicas=1"],
    );
    let d = find(&objects, "Deployment", "dr");
    assert_eq!(d["spec"]["replicas"], 1);
    assert_eq!(d["spec"]["strategy"]["type"], "Recreate");
    let c = container(d);
    assert_eq!(env(c, "DR_CATALOG")["value"], "sqlite:///var/lib/dr/dr.db");
    let claim = find(&objects, "PersistentVolumeClaim", "dr-catalog");
    assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "1Gi");
    let vols = d["spec"]["template"]["spec"]["volumes"].as_array().unwrap();
    assert!(
        vols.iter()
            .any(|v| v["persistentVolumeClaim"]["claimName"] == "dr-catalog")
    );
    assert!(!objects.iter().any(|o| o["kind"] == "PodDisruptionBudget"));
    assert!(!objects.iter().any(|o| o["kind"] == "Secret"));
}

/// A release of another name in another namespace, with existing Secrets of
/// other names, three replicas, runbooks and the ServiceMonitor.
pub const OTHER_VALUES: &[&str] = &[
    "--set",
    "replicas=3,catalog.secret.name=pg-url,catalog.secret.key=dsn,s3.secret.name=s3-keys",
    "--set",
    "monitoring.serviceMonitor.enabled=true,monitoring.serviceMonitor.labels.release=kps",
    "--set",
    "leaseDuration=20s,shutdownGraceSeconds=40,terminationGracePeriodSeconds=60",
    "--set-file",
    "runbooks.standard\\.yaml=runbooks/standard.yaml",
];

#[test]
fn other_values_reach_the_objects() {
    let args: Vec<&str> = OTHER_VALUES.to_vec();
    let objects = render_in_repo("prod", "ops", &args);
    let d = find(&objects, "Deployment", "prod-dr");
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(
        d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
        60
    );
    let c = container(d);
    let from = |name: &str| env(c, name)["valueFrom"]["secretKeyRef"].clone();
    assert_eq!(
        from("DR_CATALOG"),
        serde_json::json!({"name": "pg-url", "key": "dsn"})
    );
    assert_eq!(from("AWS_ACCESS_KEY_ID")["name"], "s3-keys");
    assert_eq!(from("AWS_SECRET_ACCESS_KEY")["name"], "s3-keys");
    assert_eq!(env(c, "DR_LEASE_DURATION")["value"], "20s");
    assert_eq!(env(c, "DR_SHUTDOWN_GRACE")["value"], "40s");
    assert!(
        !objects.iter().any(|o| o["kind"] == "Secret"),
        "existing Secrets are used, not made"
    );
    let sm = find(&objects, "ServiceMonitor", "prod-dr");
    assert_eq!(sm["metadata"]["labels"]["release"], "kps");
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "http");
    let runbooks = find(&objects, "ConfigMap", "prod-dr-runbooks");
    let text = std::fs::read_to_string(repo().join("runbooks/standard.yaml")).unwrap();
    assert_eq!(runbooks["data"]["standard.yaml"], text.as_str());
    let leases = find(&objects, "RoleBinding", "prod-dr-leases");
    assert_eq!(leases["metadata"]["namespace"], "ops");
    assert_eq!(leases["subjects"][0]["namespace"], "ops");
    // Each policy's namespace, and only those, gets the read-only protect role.
    let protect = find(&objects, "RoleBinding", "prod-dr-protect");
    assert_eq!(protect["metadata"]["namespace"], "gic-wesago");
}

#[test]
fn a_policy_namespace_gets_one_protect_binding() {
    let set = "config.policies[0].name=a,config.policies[0].namespace=apps,\
               config.policies[1].name=b,config.policies[1].namespace=apps,\
               config.policies[2].name=c,config.policies[2].namespace=db";
    let objects = render("dr", "dr-system", &["--set", set]);
    let mut namespaces: Vec<&str> = objects
        .iter()
        .filter(|o| o["kind"] == "RoleBinding" && o["metadata"]["name"] == "dr-protect")
        .map(|o| o["metadata"]["namespace"].as_str().unwrap())
        .collect();
    namespaces.sort();
    assert_eq!(namespaces, ["apps", "db"]);
}

#[test]
fn chart_app_version_is_drs_version() {
    let chart: Value =
        serde_norway::from_str(&std::fs::read_to_string(chart_dir().join("Chart.yaml")).unwrap())
            .unwrap();
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(chart["appVersion"], env!("CARGO_PKG_VERSION"));
}
