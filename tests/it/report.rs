//! `dr report` over a catalog seeded with known incidents and runs prints the
//! hand-computed MTBF, MTTR and availability; its HTML renders in headless
//! Chromium (Debian's `chromium`, installed by `tests/testbed/up`) to a
//! non-blank screenshot. A policy a few minutes old, and one the
//! configuration no longer lists, read honestly in `dr report` and `dr status`.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use chrono::{DateTime, TimeZone, Utc};
use dr::catalog::{Catalog, IncidentSource, NewRun, RunKind, RunState};
use dr::config::Config;
use dr::runbook::summary::{RunSummary, StageSummary, Verdict};
use serde_json::Value;
use std::process::Command;

fn t(day: u32, h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 10, day, h, m, 0).unwrap()
}

fn dr() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dr"));
    for k in ["DR_CONFIG", "DR_CATALOG", "DR_OUTPUT", "DR_POLICY", "DR_TZ"] {
        c.env_remove(k);
    }
    c
}

fn summary(run: i64, total: f64, data: f64, state: &str) -> RunSummary {
    let stage = |name: &str, budget: f64, actual: f64| StageSummary {
        name: name.into(),
        budget_seconds: budget,
        actual_seconds: Some(actual),
        verdict: if actual > budget {
            Verdict::Over
        } else {
            Verdict::Within
        },
        steps: vec![],
    };
    RunSummary {
        run_id: run,
        kind: dr::catalog::RunKind::Drill,
        policy: "shop".into(),
        point_id: None,
        target_namespace: "dr-drill-shop-x".into(),
        state: state.parse().expect("a run state"),
        started_at: t(3, 3, 0),
        finished_at: Some(t(3, 3, 30)),
        total_seconds: total,
        rto_seconds: 3600.0,
        rto_verdict: Verdict::Within,
        data_loss_seconds: 0.0,
        rpo_seconds: 900.0,
        within_rpo: true,
        stages: vec![
            stage("infrastructure", 300.0, 20.0),
            stage("data", 1800.0, data),
        ],
        error: None,
    }
}

/// A catalog with policy `shop`, four incidents and three drills.
async fn seeded(dir: &std::path::Path) -> String {
    let url = format!("sqlite://{}/c.db", dir.display());
    let c = Catalog::open(&url.parse().unwrap()).await.unwrap();
    let cfg = Config::parse(
        "policies:\n  - name: shop\n    namespace: shop\n    rpo: 15m\n    rto: 1h\n",
        "t",
    )
    .unwrap();
    c.upsert_policy(&(&cfg.policies[0]).into(), t(1, 0, 0))
        .await
        .unwrap();
    let shop = cfg.policies[0].name.clone();
    for (open, close) in [
        (t(2, 10, 0), Some(t(2, 12, 0))),                              // 2 h
        (t(5, 8, 0), Some(t(5, 8, 30))),                               // 30 min
        (t(1, 0, 0) - chrono::TimeDelta::hours(1), Some(t(1, 0, 30))), // began before the window
        (t(10, 22, 30), None), // open: 1 h 30 min up to the window's end
    ] {
        let i = c
            .open_incident(Some(&shop), "outage", IncidentSource::Declared, open)
            .await
            .unwrap();
        if let Some(close) = close {
            c.resolve_incident(i.id, close, None).await.unwrap();
        }
    }
    for (k, (total, data, state)) in [
        (600.0, 2000.0, "succeeded"),
        (400.0, 1000.0, "succeeded"),
        (90.0, 60.0, "failed"),
    ]
    .into_iter()
    .enumerate()
    {
        let r = c
            .start_run(&NewRun {
                kind: RunKind::Drill,
                policy: shop.clone(),
                point_id: None,
                target_namespace: format!("dr-drill-shop-{k}").parse().unwrap(),
                target_at: None,
                incident_id: None,
                started_at: t(3 + k as u32, 3, 0),
                holder: "seed".into(),
            })
            .await
            .unwrap();
        let s = if state == "succeeded" {
            RunState::Succeeded
        } else {
            RunState::Failed
        };
        c.finish_run(r.id, s, None, t(3 + k as u32, 3, 30))
            .await
            .unwrap();
        let sum = summary(r.id.0, total, data, state);
        c.set_run_summary(r.id, &serde_json::to_string(&sum).unwrap())
            .await
            .unwrap();
    }
    c.close().await;
    url
}

const WINDOW: [&str; 4] = [
    "--since",
    "2026-10-01T00:00:00Z",
    "--until",
    "2026-10-11T00:00:00Z",
];

#[tokio::test]
async fn the_report_prints_hand_computed_mtbf_mttr_and_availability() {
    let dir = tempfile::tempdir().unwrap();
    let url = seeded(dir.path()).await;
    let out = dr()
        .args(["--catalog", &url, "--output", "json", "report"])
        .args(WINDOW)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let a = &r["policies"][0]["availability"];
    // n = 3 (the one that began before the window is not a failure of it,
    // but its 30 min inside the window are downtime);
    // D = 2 h + 30 min + 30 min + 1 h 30 min = 4 h 30 min; window 10 days;
    // U = 235 h 30 min.
    assert_eq!(a["failures"], 3);
    assert_eq!(a["incidents"], 4);
    assert_eq!(a["downtime_seconds"], 16_200.0);
    assert_eq!(a["uptime_seconds"], 847_800.0);
    assert_eq!(a["mtbf_seconds"], 282_600.0); // 235.5 h / 3 = 78 h 30 min
    assert_eq!(a["mttr_seconds"], 4_800.0); // the three were open 4 h: 80 min each
    let av = a["availability"].as_f64().unwrap();
    assert!((av - 0.981_25).abs() < 1e-12, "{av}");
    // RTO: two passed drills of 600 s and 400 s, one failed; data over its
    // 1800 s budget once.
    let rto = &r["policies"][0]["rto"];
    assert_eq!(rto["drills"]["count"], 2);
    assert_eq!(rto["drills_failed"], 1);
    assert_eq!(rto["drills"]["median_seconds"], 500.0);
    assert_eq!(rto["drills"]["worst_seconds"], 600.0);
    assert_eq!(rto["most_over_budget"], "data");
    // The definitions come with the figures.
    assert!(r["definitions"].as_str().unwrap().contains("MTBF = U / n"));

    let out = dr()
        .args(["--catalog", &url, "report"])
        .args(WINDOW)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("MTBF") && text.contains("3d 6h"), "{text}");
    assert!(text.contains("MTTR") && text.contains("1h 20m"), "{text}");
    assert!(text.contains("98.1250%"), "{text}");
    assert!(text.contains("availability = U / (U + D)"), "{text}");

    // Bad windows are refused and say why.
    let out = dr()
        .args(["--catalog", &url, "report", "--since", "tomorrow-ish"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--since"));
}

/// A catalog whose policy `shop` (RPO 15 min) began 5 minutes ago: one
/// tick and its verified point.
async fn five_minutes_old(dir: &std::path::Path) -> (String, DateTime<Utc>) {
    let url = format!("sqlite://{}/c.db", dir.display());
    let c = Catalog::open(&url.parse().unwrap()).await.unwrap();
    let cfg = Config::parse(
        "policies:\n  - name: shop\n    namespace: shop\n    rpo: 15m\n",
        "t",
    )
    .unwrap();
    let now = Utc::now();
    let first = now - chrono::TimeDelta::minutes(5);
    c.upsert_policy(&(&cfg.policies[0]).into(), first)
        .await
        .unwrap();
    let shop = &cfg.policies[0].name;
    let point = c.begin_point(shop, first, first).await.unwrap();
    c.finish_point(
        point.id,
        dr::catalog::PointState::Complete,
        Some(first),
        None,
        first + chrono::TimeDelta::seconds(30),
    )
    .await
    .unwrap();
    c.record_tick(
        shop,
        first,
        dr::catalog::TickOutcome::Ran,
        Some(point.id),
        None,
        first,
    )
    .await
    .unwrap();
    c.close().await;
    (url, first)
}

#[tokio::test]
async fn a_new_policy_is_measured_from_its_first_tick() {
    // Issue 18: the first report of a policy a few minutes old said "time
    // within RPO 1.78%", the hour before its first tick counted as exposure.
    let dir = tempfile::tempdir().unwrap();
    let (url, first) = five_minutes_old(dir.path()).await;
    let out = dr()
        .args(["--catalog", &url, "--output", "json", "report"])
        .args(["--since", "1 hour ago"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rpo = &r["policies"][0]["rpo"];
    assert!(rpo["within_rpo_percent"].is_null(), "{rpo}");
    assert_eq!(rpo["within_rpo_why"], "less_than_one_rpo");
    let since: DateTime<Utc> = serde_json::from_value(rpo["protected_since"].clone()).unwrap();
    assert_eq!(since.timestamp_millis(), first.timestamp_millis());
    assert_eq!(rpo["ticks"], 1);
    let e = rpo["exposure_now_seconds"].as_f64().unwrap();
    assert!((299.0..400.0).contains(&e), "{e}");
    assert_eq!(r["policies"][0]["configured"], Value::Null);

    // With a configuration that no longer lists it, the report says so.
    let cfg = dir.path().join("dr.yaml");
    std::fs::write(
        &cfg,
        format!("catalog: {url}\npolicies:\n  - name: blog\n    namespace: blog\n    rpo: 15m\n"),
    )
    .unwrap();
    let out = dr()
        .arg("--config")
        .arg(&cfg)
        .args(["report", "--since", "1 hour ago", "--policy", "shop"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Policy shop (no longer configured")
            && text.contains("not enough data (less than one RPO"),
        "{text}"
    );
}

#[tokio::test]
async fn status_tells_a_policy_no_longer_configured_apart() {
    let dir = tempfile::tempdir().unwrap();
    let (url, _) = five_minutes_old(dir.path()).await;
    let out = dr().args(["--catalog", &url, "status"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("within RPO"),
        "{text}"
    );
    let cfg = dir.path().join("dr.yaml");
    std::fs::write(
        &cfg,
        format!("catalog: {url}\npolicies:\n  - name: blog\n    namespace: blog\n    rpo: 15m\n"),
    )
    .unwrap();
    let out = dr()
        .arg("--config")
        .arg(&cfg)
        .args(["--output", "json", "status"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let verdicts: Vec<(String, String)> = r["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["policy"].as_str().unwrap().to_owned(),
                p["verdict"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        verdicts,
        vec![
            ("blog".into(), "unprotected".into()),
            ("shop".into(), "not_configured".into())
        ]
    );
    let out = dr()
        .arg("--config")
        .arg(&cfg)
        .arg("status")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("not configured") && text.contains("shop: not in the configuration"),
        "{text}"
    );
}

#[tokio::test]
async fn the_html_report_renders_in_headless_chromium() {
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or_else(|| {
            panic!(
                "Chromium is not installed: run tests/testbed/up (it installs Debian's chromium)"
            )
        });
    let dir = tempfile::tempdir().unwrap();
    let url = seeded(dir.path()).await;
    let html = dir.path().join("report.html");
    let out = dr()
        .args(["--catalog", &url, "report", "--format", "html", "--out"])
        .arg(&html)
        .args(WINDOW)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("<svg") && !page.contains("<script"),
        "self-contained, no scripts"
    );
    assert!(
        !page.contains("src=\"http") && !page.contains("href=\"http"),
        "nothing fetched"
    );

    let png = dir.path().join("shot.png");
    let status = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1000,1600",
        ])
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", html.display()))
        .env("HOME", dir.path())
        .output()
        .unwrap();
    assert!(
        png.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let bytes = &buf[..info.buffer_size()];
    let channels = info.color_type.samples();
    let pixels = bytes.len() / channels;
    let mut colors = std::collections::HashSet::new();
    let mut non_white = 0usize;
    for px in bytes.chunks(channels) {
        if px[..3].iter().any(|c| *c < 240) {
            non_white += 1;
        }
        colors.insert((px[0] / 16, px[1] / 16, px[2] / 16));
    }
    assert_eq!((info.width, info.height), (1000, 1600));
    assert!(
        non_white * 100 > pixels,
        "the screenshot is nearly blank: {non_white} of {pixels} pixels drawn"
    );
    // Text, the blue exposure line, the red RPO line and worst bars.
    assert!(colors.len() >= 8, "only {} colours", colors.len());
    let blue = bytes
        .chunks(channels)
        .filter(|p| p[2] > 200 && p[0] < 80 && p[1] > 80 && p[1] < 140)
        .count();
    assert!(blue > 50, "the charts were not drawn ({blue} blue pixels)");
}
