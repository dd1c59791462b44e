//! A real Prometheus scraping `dr serve` on the test bed, with
//! k8s/monitoring/dr.rules.yaml as it is. The application (policy `shop`,
//! two Longhorn claims on the emulator) gets a tick every 2 s and a 15 s RPO;
//! a drill, a restore and a resolved incident are recorded first through the
//! CLI, so that every dashboard panel has something to show.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use super::prometheus::{Prometheus, free_port, spawn_logged};
use super::{dashboard, monitoring};
use crate::harness::app::{self, Bed, json_of};
use crate::harness::testbed;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;
use std::time::{Duration, Instant};

const SCHEDULE: &str = "*/2 * * * * *";
const RPO_SECS: i64 = 15;
const RPO_ALERT: &str = "DrRpoExposureOverRpo";
/// Prometheus' scrape and evaluation intervals (prometheus.rs).
const INTERVAL: TimeDelta = TimeDelta::seconds(1);
/// What a loaded 2-core machine may add to a step that should be instant.
const SLACK: TimeDelta = TimeDelta::seconds(3);

/// Series dr does not export on the test bed, with why: the panels
/// querying them are checked to return nothing, so that the day they do,
/// this test says to check them like the others. (None today: the leader
/// panel's `dr_policy_leader` comes with the Leases.)
const NO_DATA_HERE: &[(&str, &str)] = &[];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_fires_the_rpo_alert_and_every_panel_returns_data() {
    let mut b = app::bed(1).await;
    record_history(&mut b);
    let mut config = std::fs::read_to_string(&b.config).unwrap();
    config.push_str(&format!(
        "    schedule: \"{SCHEDULE}\"\n    rpo: {RPO_SECS}s\n"
    ));
    std::fs::write(&b.config, config).unwrap();

    let addr = format!("127.0.0.1:{}", free_port());
    let tb = testbed::get();
    // dr serve runs the policy only under its Lease: in the test's namespace.
    let mut cmd = app::dr_command(
        &tb.kubeconfig(),
        &b.config,
        &b.catalog_url(),
        &["--log", "info", "serve", "--listen", &addr],
    );
    cmd.env("DR_LEASE_NAMESPACE", &b.ns_name);
    let serve = spawn_logged(cmd, "dr serve");
    wait_ready(&addr).await;
    let prom = Prometheus::start(&addr, &monitoring("dr.rules.yaml")).await;
    eprintln!("Prometheus at {} scraping dr serve at {addr}", prom.url);

    wait_until(
        "dr within its RPO, seen by Prometheus",
        Duration::from_secs(60),
        || within_rpo(&prom),
    )
    .await;
    every_panel_returns_data(&prom).await;
    rpo_alert_fires_and_resolves(&b, &prom).await;

    drop(serve);
    app::cleanup(&b).await;
}

/// A resolved incident, a passed drill and a successful restore, through
/// the CLI (the figures /metrics reads from the catalog).
fn record_history(b: &mut Bed) {
    let out = b.run(&[
        "--output",
        "json",
        "incident",
        "open",
        "--title",
        "shop down",
        "--policy",
        "shop",
        "--at",
        "3h ago",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let id = json_of(&out)["incident"]["id"].to_string();
    let out = b.run(&["incident", "resolve", &id, "--at", "150m ago"]);
    assert_eq!(out.status.code(), Some(0));
    let out = b.run(&["--output", "json", "drill", "run"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json_of(&out)["passed"], true);
    let target = format!("dr-mon-restore-{}", testbed::suffix());
    b.extra.push(target.clone());
    let out = b.run(&["restore", "--to", "latest", "--namespace", &target]);
    assert_eq!(out.status.code(), Some(0));
}

async fn wait_ready(addr: &str) {
    let http = reqwest::Client::new();
    wait_until("dr serve's /readyz", Duration::from_secs(30), || {
        let req = http.get(format!("http://{addr}/readyz")).send();
        async move { req.await.is_ok_and(|r| r.status().is_success()) }
    })
    .await;
}

async fn wait_until<F, Fut>(what: &str, limit: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        assert!(
            start.elapsed() < limit,
            "timed out ({limit:?}) waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn within_rpo(prom: &Prometheus) -> bool {
    let under = prom
        .query(r#"max by (policy) (dr_rpo_exposure_seconds{policy="shop"}) < max by (policy) (dr_rpo_seconds)"#)
        .await;
    !under.is_empty() && prom.rule(RPO_ALERT).await.0 == "inactive"
}

/// Every query of every panel, as Grafana sends it for policy `shop`,
/// returns a non-empty result (polled for up to 30 s: rate windows need
/// a few scrapes); those of [`NO_DATA_HERE`] return nothing.
async fn every_panel_returns_data(prom: &Prometheus) {
    let text = std::fs::read_to_string(monitoring("dashboard.json")).unwrap();
    let d: Value = serde_json::from_str(&text).unwrap();
    let mut left: Vec<(String, String)> = Vec::new();
    for (title, expr) in dashboard::exprs(&d) {
        let q = dashboard::substitute(&expr, "shop", "dr");
        if let Some((series, why)) = NO_DATA_HERE.iter().find(|(s, _)| q.contains(s)) {
            let got = prom.query(&q).await;
            assert!(
                got.is_empty(),
                "panel {title:?} now has data ({series} is exported): remove it from NO_DATA_HERE: {got:?}"
            );
            eprintln!("panel {title:?}: no data here, as expected: {series} is {why}");
            continue;
        }
        left.push((title, q));
    }
    let n = left.len();
    let start = Instant::now();
    while !left.is_empty() && start.elapsed() < Duration::from_secs(30) {
        let mut still = Vec::new();
        for (title, q) in left {
            if prom.query(&q).await.is_empty() {
                still.push((title, q));
            }
        }
        left = still;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(left.is_empty(), "panels without data after 30 s: {left:#?}");
    eprintln!("{n} panel queries return data");
}

/// The `for:` of alert `name` in the rules file.
fn for_of(name: &str) -> TimeDelta {
    let rule = super::alert_rules()
        .into_iter()
        .find(|r| r["alert"] == name)
        .unwrap();
    let text = rule["for"].as_str().unwrap_or("0s");
    let (n, unit) = text.split_at(text.len() - 1);
    let n: i64 = n.parse().unwrap_or_else(|_| panic!("for: {text}"));
    match unit {
        "s" => TimeDelta::seconds(n),
        "m" => TimeDelta::minutes(n),
        "h" => TimeDelta::hours(n),
        _ => panic!("for: {text} (this test reads s, m, h)"),
    }
}

/// The RPO alert of policy `shop` among the active ones: state, activeAt.
async fn rpo_alert(prom: &Prometheus) -> Option<(String, DateTime<Utc>)> {
    prom.alerts()
        .await
        .into_iter()
        .find(|a| a["labels"]["alertname"] == RPO_ALERT && a["labels"]["policy"] == "shop")
        .map(|a| {
            let at = a["activeAt"].as_str().unwrap().parse().unwrap();
            (a["state"].as_str().unwrap().to_owned(), at)
        })
}

/// DrTicksFailing or DrTicksMissed firing. Which one depends on the
/// moment: ticks begun while Longhorn is down fail; a tick whose backup was
/// in flight when it went down follows it until its deadline (Longhorn may
/// still finish it), and the firings meanwhile are skipped.
async fn ticks_failing(prom: &Prometheus) -> bool {
    prom.alerts().await.iter().any(|a| {
        (a["labels"]["alertname"] == "DrTicksFailing"
            || a["labels"]["alertname"] == "DrTicksMissed")
            && a["state"] == "firing"
    })
}

/// Longhorn down: no new verified point, so the exposure crosses the RPO
/// at the newest verified point + RPO; the alert is pending within a scrape
/// and an evaluation of that, firing `for:` later; Longhorn back: the next
/// tick's point resolves it.
async fn rpo_alert_fires_and_resolves(b: &Bed, prom: &Prometheus) {
    let hold = for_of(RPO_ALERT);
    let rpo = TimeDelta::seconds(RPO_SECS);
    let policy = "shop".parse().unwrap();
    let before = b.catalog.newest_verified_point(&policy).await.unwrap();
    let down_at = Utc::now();
    b.emu.control().set_down(true).await.unwrap();
    let limit = rpo + hold + TimeDelta::seconds(30);
    let (mut pending_seen, mut failing_seen) = (None, false);
    let (firing_seen, active_at) = loop {
        let now = Utc::now();
        assert!(
            now - down_at < limit,
            "{RPO_ALERT} not firing {limit} after Longhorn went down"
        );
        failing_seen |= ticks_failing(prom).await;
        match rpo_alert(prom).await {
            Some((state, _)) if state == "pending" => {
                pending_seen.get_or_insert(now);
            }
            // activeAt: when it went pending (the last time, had it reset).
            Some((state, at)) if state == "firing" => break (now, at),
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let pending_seen = pending_seen.expect("the alert fired without being seen pending");
    let newest = b
        .catalog
        .newest_verified_point(&policy)
        .await
        .unwrap()
        .unwrap();
    let crossed = newest.point_at.unwrap() + rpo;
    let rel = |t: DateTime<Utc>| (t - down_at).as_seconds_f64();
    eprintln!(
        "Longhorn down at 0 s; newest verified point at {:.1} s, exposure over the {RPO_SECS} s RPO from {:.1} s; \
         alert active (pending) at {:.1} s (seen {:.1} s), firing seen at {:.1} s (for: {} s)",
        rel(newest.point_at.unwrap()),
        rel(crossed),
        rel(active_at),
        rel(pending_seen),
        rel(firing_seen),
        hold.num_seconds()
    );
    // Pending no earlier than the crossing, and within a scrape and an
    // evaluation of it; firing `for:` after, within an evaluation.
    assert!(
        active_at >= crossed,
        "pending before the exposure was over the RPO"
    );
    assert!(
        active_at <= crossed + INTERVAL * 2 + SLACK,
        "pending {:.1} s after the crossing",
        (active_at - crossed).as_seconds_f64()
    );
    assert!(
        firing_seen - active_at >= hold,
        "firing before its for: {hold}"
    );
    assert!(
        firing_seen - active_at <= hold + INTERVAL + SLACK,
        "firing {:.1} s after pending",
        (firing_seen - active_at).as_seconds_f64()
    );
    assert!(
        failing_seen,
        "neither DrTicksFailing nor DrTicksMissed fired while Longhorn was down"
    );

    let up_at = Utc::now();
    b.emu.control().set_down(false).await.unwrap();
    wait_until(
        "the RPO alert to resolve once Longhorn is back",
        Duration::from_secs(45),
        || async { rpo_alert(prom).await.is_none() },
    )
    .await;
    let resolved = Utc::now();
    let newest = b
        .catalog
        .newest_verified_point(&policy)
        .await
        .unwrap()
        .unwrap();
    // A new point (its data may predate up_at: a backup in flight when
    // Longhorn went down and finished once it was back).
    assert_ne!(
        Some(newest.id),
        before.map(|p| p.id),
        "resolved without a new point"
    );
    eprintln!(
        "Longhorn back: resolved after {:.1} s (next tick's point at {:.1} s)",
        (resolved - up_at).as_seconds_f64(),
        (newest.point_at.unwrap() - up_at).as_seconds_f64()
    );
}
