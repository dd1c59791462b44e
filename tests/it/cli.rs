//! The `dr` binary end to end: bad input and its messages, plans from a seeded
//! catalog, incidents, config checks, and `serve` shutting down on SIGTERM.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use crate::harness::catalog as harness;
use assert_cmd::Command;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use dr::catalog::{BackupState, BackupUpdate, Catalog, NewBackup, PointState, Verification};
use dr::config::Config;
use predicates::prelude::*;
use serde_json::Value;

fn dr() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dr"));
    for k in ["DR_CONFIG", "DR_CATALOG", "DR_OUTPUT", "DR_POLICY", "DR_TZ"] {
        c.env_remove(k);
    }
    c
}

/// Seeds `points` complete points of policy `shop` (3 volumes), one every 15
/// minutes, the newest 10 minutes ago; returns their point times, oldest first.
async fn seed(catalog: &Catalog, points: i64) -> Vec<DateTime<Utc>> {
    let cfg = Config::parse(
        "policies:\n  - name: shop\n    namespace: shop\n    rpo: 15m\n",
        "t",
    )
    .unwrap();
    // The catalog keeps milliseconds; whole seconds keep comparisons exact.
    let now = Utc::now().duration_trunc(TimeDelta::seconds(1)).unwrap();
    catalog
        .upsert_policy(&(&cfg.policies[0]).into(), now)
        .await
        .unwrap();
    let mut times = Vec::new();
    for i in (0..points).rev() {
        let tick = now - TimeDelta::minutes(10 + 15 * i);
        let point = catalog
            .begin_point(&cfg.policies[0].name, tick, tick)
            .await
            .unwrap();
        for v in 0..3 {
            let b = catalog
                .record_backup(&NewBackup {
                    point_id: point.id,
                    volume: format!("pvc-{v}").parse().unwrap(),
                    pvc: Some(format!("data-{v}")),
                    snapshot_name: format!("dr-shop-{i}-{v}"),
                    requested_at: tick,
                })
                .await
                .unwrap();
            catalog
                .update_backup(
                    b.id,
                    &BackupUpdate {
                        state: Some(BackupState::BackingUp),
                        snapshot_at: Some(tick),
                        backup_name: Some(format!("backup-{i:08x}{v:08x}")),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            catalog
                .update_backup(
                    b.id,
                    &BackupUpdate {
                        state: Some(BackupState::Completed),
                        size_bytes: Some(4096),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            catalog
                .set_verification(b.id, Verification::Verified, tick)
                .await
                .unwrap();
        }
        catalog
            .finish_point(point.id, PointState::Complete, Some(tick), None, tick)
            .await
            .unwrap();
        times.push(tick);
    }
    times
}

fn json_of(out: &[u8]) -> Value {
    serde_json::from_slice(out)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(out)))
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

async fn restore_plans_from_a_seeded_catalog(db: harness::TestDb) {
    let times = seed(&db.catalog, 5).await;
    // Between the 2nd and 3rd points: the 2nd is chosen.
    let target = times[1] + TimeDelta::minutes(7);
    let out = dr()
        .args([
            "--catalog",
            &db.url,
            "restore",
            "--to",
            &ts(target),
            "--dry-run",
            "--output",
            "json",
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v = json_of(&out);
    let plan = &v["plan"];
    assert_eq!(v["dry_run"], true);
    assert_eq!(plan["policy"], "shop");
    assert_eq!(
        plan["point"]["point_at"]
            .as_str()
            .unwrap()
            .parse::<DateTime<Utc>>()
            .unwrap(),
        times[1]
    );
    assert_eq!(plan["backups"].as_array().unwrap().len(), 3);
    assert_eq!(plan["data_loss_seconds"].as_f64().unwrap(), 420.0);
    assert_eq!(plan["within_rpo"], true);
    assert_eq!(plan["rpo"], "15m");

    // The table form says the same for people.
    dr().args([
        "--catalog",
        &db.url,
        "restore",
        "--to",
        "latest",
        "--dry-run",
    ])
    .assert()
    .success()
    .stdout(predicate::str::contains("data loss"))
    .stdout(predicate::str::contains("within RPO"))
    .stdout(predicate::str::contains("pvc-2"));

    // A future time: refused, with what was understood, the window and candidates.
    let out = dr()
        .args([
            "--catalog",
            &db.url,
            "restore",
            "--to",
            "2999-01-01T00:00:00Z",
            "--dry-run",
            "-o",
            "json",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "understood as 2999-01-01T00:00:00Z",
        ))
        .stderr(predicate::str::contains("in the future"))
        .stderr(predicate::str::contains("recoverable window"))
        .get_output()
        .stdout
        .clone();
    let v = json_of(&out);
    assert_eq!(v["error"]["kind"], "future_time");
    assert_eq!(v["error"]["candidates"].as_array().unwrap().len(), 2);

    // Before the first point.
    dr().args([
        "--catalog",
        &db.url,
        "restore",
        "--to",
        "2h ago",
        "--dry-run",
    ])
    .assert()
    .code(2)
    .stderr(predicate::str::contains(
        "before the oldest complete recovery point",
    ))
    .stderr(predicate::str::contains("nearest candidates: point 1 at"));

    // Garbage.
    dr().args([
        "--catalog",
        &db.url,
        "restore",
        "--to",
        "last tuesday",
        "--dry-run",
    ])
    .assert()
    .code(2)
    .stderr(predicate::str::contains("\"last tuesday\" is not a time"))
    .stderr(predicate::str::contains("RFC 3339"));

    // Unknown policy names the known ones.
    dr().args([
        "--catalog",
        &db.url,
        "restore",
        "--to",
        "latest",
        "--dry-run",
        "--policy",
        "shpo",
    ])
    .assert()
    .code(2)
    .stderr(predicate::str::contains("unknown policy \"shpo\""))
    .stderr(predicate::str::contains("shop"));

    // The catalog commands see the same points.
    let out = dr()
        .args(["--catalog", &db.url, "catalog", "list", "-o", "json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let points = json_of(&out)["points"].as_array().unwrap().clone();
    assert_eq!(points.len(), 5);
    assert_eq!(points[0]["completed"], 3);
    let id = points[0]["id"].to_string();
    dr().args(["--catalog", &db.url, "catalog", "show", &id])
        .assert()
        .success()
        .stdout(predicate::str::contains("Recovery point"))
        .stdout(predicate::str::contains("data-1"));
    dr().args(["--catalog", &db.url, "catalog", "show", "4242"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no recovery point with id 4242"));
    db.cleanup().await;
}

#[tokio::test]
async fn restore_plans_sqlite() {
    restore_plans_from_a_seeded_catalog(harness::sqlite().await).await;
}

#[tokio::test]
async fn restore_plans_postgres() {
    restore_plans_from_a_seeded_catalog(harness::postgres().await).await;
}

#[test]
fn restore_without_a_policy_is_refused_before_touching_anything() {
    dr().args(["--catalog", "sqlite::memory:", "restore", "--to", "latest"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("knows no policy"));
}

#[test]
fn runbook_validate_names_the_bad_step() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("rb.yaml");
    let good = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/standard.yaml"),
    )
    .unwrap();
    std::fs::write(&f, good.replace("check: longhorn", "check: dns")).unwrap();
    dr().args(["runbook", "validate"])
        .arg(&f)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("stages[0].steps[1] (check)"))
        .stderr(predicate::str::contains(
            "use kubernetes or longhorn or backup-target",
        ));
    std::fs::write(&f, &good).unwrap();
    dr().args(["runbook", "validate", "--rto", "30m"])
        .arg(&f)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("more than the RTO 30m"));
    dr().args(["--output", "json", "runbook", "validate"])
        .arg(&f)
        .assert()
        .success()
        .stdout(predicate::str::contains("\"valid\": true"));
}

#[test]
fn wall_clock_times_are_read_in_tz() {
    dr().args([
        "--catalog",
        "sqlite::memory:",
        "restore",
        "--to",
        "2026-11-24 09:45",
        "--tz",
        "Mars/Base",
        "--dry-run",
    ])
    .assert()
    .code(2)
    .stderr(predicate::str::contains("\"Mars/Base\" is not a time zone"));
}

#[test]
fn empty_catalog_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/x.db", dir.path().display());
    dr().args(["--catalog", &url, "restore", "--to", "latest", "--dry-run"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("knows no policy yet"));
    assert!(
        dir.path().join("x.db").exists(),
        "the catalog file is created"
    );
}

#[test]
fn config_check_prints_effective_config_and_names_bad_keys() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, "policies:\n  - name: shop\n    namespace: shop\n").unwrap();
    dr().args(["config", "check"])
        .arg(&good)
        .assert()
        .success()
        .stdout(predicate::str::contains("rpo: 15m"))
        .stdout(predicate::str::contains("schedule: 0 */15 * * * *"))
        .stderr(predicate::str::contains("valid (1 policy)"));

    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "policies:\n  - name: shop\n    namespace: shop\n    rpo: 15 minutes\n",
    )
    .unwrap();
    dr().args(["config", "check"])
        .arg(&bad)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("policies[0].rpo"))
        .stderr(predicate::str::contains(
            "\"15 minutes\" is not a duration; use",
        ));

    // The same file given globally is refused before any command runs.
    dr().arg("--config")
        .arg(&bad)
        .args(["--catalog", "sqlite::memory:", "catalog", "list"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("policies[0].rpo"));

    dr().args(["config", "check", "/nonexistent/dr.yaml"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "cannot read configuration file /nonexistent/dr.yaml",
        ));

    let secret = dir.path().join("secret.yaml");
    std::fs::write(&secret, "catalog: postgres://dr:hunter2@db/dr\n").unwrap();
    dr().args(["config", "check"])
        .arg(&secret)
        .assert()
        .success()
        .stdout(predicate::str::contains("hunter2").not())
        .stdout(predicate::str::contains("postgres://dr:***@db/dr"));
}

#[test]
fn incidents_open_resolve_list() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("dr.yaml");
    std::fs::write(&cfg, "policies:\n  - name: shop\n    namespace: shop\n").unwrap();
    let url = format!("sqlite://{}/c.db", dir.path().display());
    let base = |c: &mut Command| {
        c.arg("--config").arg(&cfg).args(["--catalog", &url]);
    };
    let mut open = dr();
    base(&mut open);
    let out = open
        .args([
            "incident", "open", "--title", "web down", "--policy", "shop", "--at", "2h ago", "-o",
            "json",
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let id = json_of(&out)["incident"]["id"].to_string();

    let mut early = dr();
    base(&mut early);
    early
        .args(["incident", "resolve", &id, "--at", "3h ago"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cannot be resolved earlier"));

    let mut future = dr();
    base(&mut future);
    future
        .args([
            "incident",
            "open",
            "--title",
            "x",
            "--at",
            "2999-01-01T00:00:00Z",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("in the future"));

    let mut resolve = dr();
    base(&mut resolve);
    resolve
        .args([
            "incident", "resolve", &id, "--at", "1h ago", "--note", "restored",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("after 1h"));

    let mut list = dr();
    base(&mut list);
    list.args(["incident", "list"])
        .assert()
        .success()
        .stdout(predicate::str::contains("web down"))
        .stdout(predicate::str::contains("declared"));

    let mut unknown = dr();
    base(&mut unknown);
    unknown
        .args(["incident", "open", "--title", "x", "--policy", "blog"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unknown policy \"blog\""));
}

#[test]
fn bad_catalog_url_is_refused() {
    dr().args(["--catalog", "mysql://x/y", "catalog", "list"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("use sqlite://PATH"));
}

#[test]
fn help_describes_every_command() {
    let out = dr()
        .arg("--help")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    for cmd in ["serve", "catalog", "restore", "incident", "config"] {
        assert!(text.contains(cmd), "{cmd} missing from --help:\n{text}");
    }
}

#[test]
fn serve_answers_health_and_stops_on_sigterm() {
    use std::io::{BufRead, BufReader, Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/serve.db", dir.path().display());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_dr"))
        .args(["--catalog", &url, "serve", "--listen", "127.0.0.1:0"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let addr = line
        .split("listening on http://")
        .nth(1)
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .trim()
        .to_owned();
    let get = |path: &str| {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body
    };
    assert!(get("/healthz").starts_with("HTTP/1.1 200"));
    let ready = get("/readyz");
    assert!(
        ready.starts_with("HTTP/1.1 200") && ready.ends_with("ok\n"),
        "{ready}"
    );
    assert!(get("/nope").starts_with("HTTP/1.1 404"));
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = child.wait().unwrap();
    assert!(code.success(), "serve exited with {code:?}");
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("stopped"), "{rest}");
}

#[test]
fn a_policy_without_recipients_is_told_its_secrets_will_not_survive_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.txt");
    let (id, text) = dr::secrets::Identity::generate(&key);
    std::fs::write(&key, text).unwrap();
    let recipient = id.recipients()[0].to_string();
    let file = dir.path().join("dr.yaml");
    std::fs::write(
        &file,
        format!(
            "policies:\n  - name: shop\n    namespace: shop\n  - name: safe\n    namespace: safe\n    secrets: {{recipients: [{recipient}]}}\n"
        ),
    )
    .unwrap();
    let note = "will not survive the loss of the cluster";
    let out = dr().args(["config", "check"]).arg(&file).output().unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "policy shop: its Secrets are kept by reference only and {note}"
        )),
        "{err}"
    );
    assert!(!err.contains("policy safe:"), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&recipient));

    let out = dr()
        .args(["--output", "json", "config", "check"])
        .arg(&file)
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["secrets"][0]["policy"], "shop");
    assert_eq!(doc["secrets"][0]["secrets"], "by_reference");
    assert!(doc["secrets"][0]["note"].as_str().unwrap().contains(note));
    assert_eq!(doc["secrets"][1]["secrets"], "sealed");
    assert!(doc["secrets"][1]["note"].is_null());

    // dr status and dr report say the same, from the configuration.
    let catalog = format!("sqlite://{}/c.db", dir.path().display());
    let out = dr()
        .arg("--config")
        .arg(&file)
        .args(["--catalog", &catalog, "status"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "shop: its Secrets are kept by reference only and {note}"
        )),
        "{text}"
    );
    assert!(!text.contains("safe: its Secrets"), "{text}");
    let out = dr()
        .arg("--config")
        .arg(&file)
        .args(["--catalog", &catalog, "--output", "json", "status"])
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let modes: Vec<(&str, &str)> = doc["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["policy"].as_str().unwrap(),
                p["secrets"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(
        modes.contains(&("shop", "by_reference")) && modes.contains(&("safe", "sealed")),
        "{modes:?}"
    );
    let out = dr()
        .arg("--config")
        .arg(&file)
        .args(["--catalog", &catalog, "report"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert_eq!(text.matches(note).count(), 1, "{text}");

    // A bad recipient names its key path and what is accepted.
    std::fs::write(
        &file,
        "policies:\n  - name: shop\n    namespace: shop\n    secrets: {recipients: [age1nope]}\n",
    )
    .unwrap();
    dr().args(["config", "check"])
        .arg(&file)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "policies[0].secrets.recipients[0]",
        ))
        .stderr(predicate::str::contains("age X25519 recipient"));
}

#[test]
fn restore_and_drill_take_a_secrets_identity() {
    for cmd in [&["restore", "--help"][..], &["drill", "run", "--help"]] {
        dr().args(cmd)
            .assert()
            .success()
            .stdout(predicate::str::contains("--secrets-identity <FILE>"))
            .stdout(predicate::str::contains("DR_SECRETS_IDENTITY"));
    }
}

#[test]
fn serve_refuses_a_lease_duration_out_of_range_naming_the_range() {
    for bad in ["1s", "11m", "soon"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dr"))
            .args(["serve", "--lease-duration", bad])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert!(err.contains("--lease-duration"), "{bad}: {err}");
        if bad != "soon" {
            assert!(err.contains("from 3s to 10m"), "{bad}: {err}");
        }
    }
}
