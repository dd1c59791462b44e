//! Benchmark: `dr restore --to T --dry-run --output json` on a catalog of
//! 1,000,000 backups (1,000 recovery points × 1,000 volumes), timed from process
//! start to exit, on SQLite and on the test bed's PostgreSQL. Target: < 200 ms.
//!
//! Run: `cargo bench --bench plan` (the test bed must be up for PostgreSQL:
//! `tests/testbed/up`). Env: DR_BENCH_RUNS (default 20), DR_BENCH_BACKENDS
//! (default `sqlite,postgres`). Seeded catalogs are kept and reused.

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use dr::catalog::Catalog;
use dr::config::Config;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const POINTS: i64 = 1_000;
const VOLUMES: i64 = 1_000;
const TARGET: Duration = Duration::from_millis(200);

fn last_tick() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap()
}

fn testbed_var(key: &str) -> Option<String> {
    if let Ok(v) = std::env::var(key) {
        return Some(v);
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/testbed.env");
    std::fs::read_to_string(path).ok()?.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim().to_owned())
    })
}

async fn ensure_seeded(url: &str) -> anyhow::Result<()> {
    let catalog = Catalog::open(&url.parse().map_err(anyhow::Error::msg)?).await?;
    let cfg = Config::parse(
        "policies:\n  - name: bench\n    namespace: bench\n",
        "bench",
    )?;
    catalog
        .upsert_policy(&(&cfg.policies[0]).into(), Utc::now())
        .await?;
    let have = catalog.list_points(Some(&cfg.policies[0].name), 1).await?;
    let complete = match have.first() {
        Some(p) => {
            p.backups == VOLUMES
                && catalog
                    .list_points(Some(&cfg.policies[0].name), POINTS)
                    .await?
                    .len() as i64
                    == POINTS
        }
        None => false,
    };
    if !complete {
        let t0 = Instant::now();
        eprintln!("seeding {POINTS} points × {VOLUMES} volumes into {url} …");
        catalog
            .seed_synthetic(
                &cfg.policies[0].name,
                POINTS,
                VOLUMES,
                last_tick(),
                dr::span::Span::from_secs(900),
            )
            .await?;
        eprintln!("seeded in {:.1} s", t0.elapsed().as_secs_f64());
    }
    catalog.close().await;
    Ok(())
}

fn time_runs(url: &str, runs: usize) -> anyhow::Result<Vec<Duration>> {
    // Halfway through the history: a real seek, not the newest row.
    let to = (last_tick() - TimeDelta::minutes(15 * POINTS / 2) + TimeDelta::minutes(7))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let exe = env!("CARGO_BIN_EXE_dr");
    let mut times = Vec::with_capacity(runs);
    for i in 0..=runs {
        let t0 = Instant::now();
        let out = Command::new(exe)
            .args([
                "--catalog",
                url,
                "restore",
                "--to",
                &to,
                "--dry-run",
                "--output",
                "json",
            ])
            .stdin(Stdio::null())
            .output()?;
        let took = t0.elapsed();
        anyhow::ensure!(
            out.status.success(),
            "dr failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let n = v["plan"]["backups"].as_array().map_or(0, |b| b.len());
        anyhow::ensure!(n as i64 == VOLUMES, "plan has {n} backups, want {VOLUMES}");
        if i > 0 {
            // The first run warms the page cache; it is not counted.
            times.push(took);
        }
    }
    times.sort();
    Ok(times)
}

fn report(name: &str, times: &[Duration]) -> bool {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = times[times.len() / 2];
    let p95 = times[(times.len() * 95 / 100).min(times.len() - 1)];
    let max = times[times.len() - 1];
    let ok = p95 < TARGET;
    println!(
        "plan/{name}: restore --dry-run over 1,000,000 backups, process start to exit: median {:.1} ms, p95 {:.1} ms, max {:.1} ms ({} runs) — target < {} ms: {}",
        ms(median),
        ms(p95),
        ms(max),
        times.len(),
        TARGET.as_millis(),
        if ok { "met" } else { "MISSED" }
    );
    ok
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: only run for real.
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let runs: usize = std::env::var("DR_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let backends = std::env::var("DR_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    let rt = tokio::runtime::Runtime::new()?;
    let mut all_ok = true;
    for backend in backends.split(',').map(str::trim) {
        let url = match backend {
            "sqlite" => {
                let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench");
                std::fs::create_dir_all(&dir)?;
                format!("sqlite://{}", dir.join("plan-1m.db").display())
            }
            "postgres" => {
                let admin = testbed_var("DR_TEST_PG_URL").ok_or_else(|| {
                    anyhow::anyhow!(
                        "PostgreSQL is not configured: start the test bed with `tests/testbed/up`, or set DR_BENCH_BACKENDS=sqlite"
                    )
                })?;
                rt.block_on(async {
                    use sqlx::Connection;
                    let mut c = sqlx::PgConnection::connect(&admin).await?;
                    let exists: Option<(i32,)> =
                        sqlx::query_as("SELECT 1 FROM pg_database WHERE datname = 'dr_bench_plan'")
                            .fetch_optional(&mut c)
                            .await?;
                    if exists.is_none() {
                        sqlx::query("CREATE DATABASE dr_bench_plan")
                            .execute(&mut c)
                            .await?;
                    }
                    anyhow::Ok(())
                })?;
                let mut u = url::Url::parse(&admin)?;
                u.set_path("dr_bench_plan");
                u.to_string()
            }
            other => anyhow::bail!(
                "unknown backend {other:?} in DR_BENCH_BACKENDS; use sqlite, postgres"
            ),
        };
        rt.block_on(ensure_seeded(&url))?;
        let times = time_runs(&url, runs)?;
        all_ok &= report(backend, &times);
    }
    if !all_ok {
        std::process::exit(1);
    }
    Ok(())
}
