//! "A year of history, measured" (issue 18, item 4): a catalog holding a
//! year of 15-minute ticks of one policy over 1,000 volumes (35,040 points,
//! 35,040,000 backup rows), on SQLite and on the test bed's PostgreSQL,
//! before and after the history is compacted.
//!
//! The history is seeded inside the database (`Catalog::seed_history`, a
//! month per transaction) as dr leaves it: the 40 newest points complete,
//! every older one pruned by retention (its backups marked pruned), each
//! point verified (`verified_at`), a `ran` tick outcome per point. It ends at
//! the last 15-minute boundary: `dr status` and the report measure from the
//! wall clock.
//!
//! Prints, for the year catalog and again after compaction:
//! - its size on disk (SQLite: file + WAL; PostgreSQL: `pg_database_size`);
//! - `dr restore --to T --dry-run --output json` (T among the live points),
//!   `dr status --config C --output json` (C lists the policy) and
//!   `dr report --since '30d ago' --format json`, each timed from process
//!   start to exit, and one `/metrics` scrape (`dr::serve::router` served in
//!   this process on 127.0.0.1, a real HTTP GET): median, p95 and max over
//!   DR_BENCH_RUNS runs, a first run discarded as warm-up, against the targets
//!   (restore and status < 200 ms, /metrics < 100 ms, report < 2 s; p95);
//! - a tick's catalog statements for 1,000 volumes (see `tick_statements`),
//!   timed on an empty catalog and on this one in turn (so that both see
//!   the same load on the shared machine): medians over DR_BENCH_TICK_RUNS
//!   ticks each; "unchanged" means within 25 % of the empty catalog's.
//!
//! Between the two: `dr::prune::compact_history(&catalog,
//! &HistoryConfig::default(), now)` (500 rows per statement): how long it
//! took, the rows removed, and the longest statement, read from
//! sqlx's own log of each statement it ran (on SQLite, a tick's writes wait
//! at most one statement: each is a transaction of its own on dr's one
//! connection); then the compaction dr serve runs after the next tick's
//! retention (15 minutes later). Then the size again, after `VACUUM` on
//! SQLite (and a checkpoint), after `VACUUM FULL` on PostgreSQL; the figures
//! after compaction are taken there.
//!
//! Every target line ends in "met" or "MISSED"; the bench exits non-zero if
//! one is missed.
//!
//! Run: `cargo bench --bench history` (the test bed must be up for
//! PostgreSQL: `tests/testbed/up`). Env: DR_BENCH_VOLUMES (1000),
//! DR_BENCH_DAYS (365), DR_BENCH_RUNS (20), DR_BENCH_TICK_RUNS (5),
//! DR_BENCH_BACKENDS (`sqlite,postgres`, one after the other),
//! DR_BENCH_DIR (where the SQLite files go; `target/bench`), DR_BENCH_KEEP=1
//! (keep the seeded catalogs; a later run reuses one it left uncompacted),
//! DR_BENCH_COMPACT=0 (stop before compacting), DR_TESTBED_ENV (the test
//! bed's `testbed.env`, when not in this checkout's `target/`). Each seeded
//! catalog is deleted (file, or `DROP DATABASE`) once its figures are printed
//! unless kept; seeding refuses to start without room for it on disk.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use dr::catalog::{
    BackupRecord, BackupState, BackupUpdate, Catalog, Compacted, Consistency, NewBackup,
    PointState, TickOutcome, Verification,
};
use dr::config::{Config, HistoryConfig, PolicyConfig};
use dr::names::{PolicyName, VolumeName};
use futures::TryStreamExt;
use sqlx::Connection;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const EVERY_SECS: i64 = 900;
const TICKS_PER_DAY: i64 = 86_400 / EVERY_SECS;
/// Live (complete) points: about what the default retention keeps.
const KEEP: i64 = 40;
/// Points per seeding transaction: a month.
const CHUNK_DAYS: i64 = 30;
/// dr's default `longhorn.concurrency`: a tick's volumes write 16 at a time.
const CONCURRENCY: usize = 16;
const PROCESS_TARGET: Duration = Duration::from_millis(200);
const SCRAPE_TARGET: Duration = Duration::from_millis(100);
const REPORT_TARGET: Duration = Duration::from_secs(2);
/// A tick's statements on the year catalog: at most this times the empty's.
const UNCHANGED: f64 = 1.25;
/// Bytes on disk per backup row, indexes included, as measured (SQLite
/// ~375, PostgreSQL ~460), rounded up; plus what seeding and compaction need
/// beside it (a month's transaction in SQLite's WAL; PostgreSQL's WAL).
const SQLITE_BYTES_PER_ROW: u64 = 400;
const POSTGRES_BYTES_PER_ROW: u64 = 480;
const SPARE: u64 = 3 << 30;

// ---------------------------------------------------------------- settings

struct Settings {
    volumes: i64,
    days: i64,
    runs: usize,
    tick_runs: usize,
    keep: bool,
    compact: bool,
}

fn env_num(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

impl Settings {
    fn from_env() -> Settings {
        Settings {
            volumes: env_num("DR_BENCH_VOLUMES", 1000).max(1) as i64,
            days: env_num("DR_BENCH_DAYS", 365).max(1) as i64,
            runs: env_num("DR_BENCH_RUNS", 20).max(1) as usize,
            tick_runs: env_num("DR_BENCH_TICK_RUNS", 5).max(1) as usize,
            keep: std::env::var("DR_BENCH_KEEP").is_ok_and(|v| v == "1"),
            compact: std::env::var("DR_BENCH_COMPACT").map_or(true, |v| v != "0"),
        }
    }
    fn points(&self) -> i64 {
        self.days * TICKS_PER_DAY
    }
    fn rows(&self) -> i64 {
        self.points() * self.volumes
    }
}

/// A test bed setting: the environment, else `DR_TESTBED_ENV`, else this
/// checkout's `target/testbed.env`.
fn testbed_var(key: &str) -> Option<String> {
    if let Ok(v) = std::env::var(key) {
        return Some(v);
    }
    let path = std::env::var("DR_TESTBED_ENV").map_or_else(
        |_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/testbed.env"),
        PathBuf::from,
    );
    std::fs::read_to_string(path).ok()?.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim().to_owned())
    })
}

// ------------------------------------------------------------- formatting

fn thousands(n: impl Into<i128>) -> String {
    let s = n.into().to_string();
    let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

fn bytes(n: u64) -> String {
    let f = n as f64;
    if f >= (1u64 << 30) as f64 {
        format!("{:.2} GiB", f / (1u64 << 30) as f64)
    } else if f >= (1u64 << 20) as f64 {
        format!("{:.1} MiB", f / (1u64 << 20) as f64)
    } else {
        format!("{:.0} KiB", f / 1024.0)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn dur(d: Duration) -> String {
    if d >= Duration::from_secs(10) {
        format!("{:.0} s", d.as_secs_f64())
    } else if d >= Duration::from_secs(1) {
        format!("{:.2} s", d.as_secs_f64())
    } else {
        format!("{:.1} ms", ms(d))
    }
}

/// Median, p95 and max of sorted times.
fn stats(sorted: &[Duration]) -> (Duration, Duration, Duration) {
    let n = sorted.len();
    (
        sorted[n / 2],
        sorted[(n * 95 / 100).min(n - 1)],
        sorted[n - 1],
    )
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

/// One timed figure against its target (on the p95); true if met.
fn timing_line(tag: &str, what: &str, times: &[Duration], target: Duration) -> bool {
    let (median, p95, max) = stats(times);
    let ok = p95 < target;
    println!(
        "{tag}: {what}: median {}, p95 {}, max {} ({} runs) — target p95 < {}: {}",
        dur(median),
        dur(p95),
        dur(max),
        times.len(),
        dur(target),
        verdict(ok)
    );
    ok
}

// ------------------------------------------------- sqlx's statement log

/// A statement as sqlx logs it (target `sqlx::query`): its first words, how
/// long it took, the rows it changed.
#[derive(Debug, Clone, Default)]
struct Stmt {
    summary: String,
    secs: f64,
    rows: u64,
}

/// Collects sqlx's statement log while on.
#[derive(Default)]
struct Capture {
    on: AtomicBool,
    stmts: Mutex<Vec<Stmt>>,
}

impl Capture {
    fn start(&self) {
        if let Ok(mut s) = self.stmts.lock() {
            s.clear();
        }
        self.on.store(true, Ordering::SeqCst);
    }
    fn stop(&self) -> Vec<Stmt> {
        self.on.store(false, Ordering::SeqCst);
        self.stmts
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default()
    }
}

struct CaptureLayer(Arc<Capture>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CaptureLayer {
    fn register_callsite(
        &self,
        m: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if m.target() == "sqlx::query" {
            tracing::subscriber::Interest::sometimes()
        } else {
            tracing::subscriber::Interest::never()
        }
    }
    fn enabled(
        &self,
        m: &tracing::Metadata<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        m.target() == "sqlx::query" && self.0.on.load(Ordering::Relaxed)
    }
    fn on_event(&self, e: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut s = Stmt::default();
        e.record(&mut s);
        if let Ok(mut v) = self.0.stmts.lock() {
            v.push(s);
        }
    }
}

impl tracing::field::Visit for Stmt {
    fn record_str(&mut self, f: &tracing::field::Field, v: &str) {
        if f.name() == "summary" {
            v.clone_into(&mut self.summary);
        }
    }
    fn record_f64(&mut self, f: &tracing::field::Field, v: f64) {
        if f.name() == "elapsed_secs" {
            self.secs = v;
        }
    }
    fn record_u64(&mut self, f: &tracing::field::Field, v: u64) {
        if f.name() == "rows_affected" {
            self.rows = v;
        }
    }
    fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
}

// ------------------------------------------------------------ databases

enum Db {
    Sqlite(PathBuf),
    Postgres { admin: String, name: String },
}

impl Db {
    fn sqlite(dir: &Path, file: &str) -> Db {
        Db::Sqlite(dir.join(file))
    }

    fn postgres(name: &str) -> anyhow::Result<Db> {
        let admin = testbed_var("DR_TEST_PG_URL").ok_or_else(|| {
            anyhow::anyhow!(
                "PostgreSQL is not configured: start the test bed with `tests/testbed/up` (or set DR_TESTBED_ENV to its testbed.env), or set DR_BENCH_BACKENDS=sqlite"
            )
        })?;
        Ok(Db::Postgres {
            admin,
            name: name.to_owned(),
        })
    }

    fn url(&self) -> anyhow::Result<String> {
        Ok(match self {
            Db::Sqlite(p) => format!("sqlite://{}", p.display()),
            Db::Postgres { admin, name } => {
                let mut u = url::Url::parse(admin)?;
                u.set_path(name);
                u.to_string()
            }
        })
    }

    fn wal(p: &Path) -> PathBuf {
        let mut s = p.as_os_str().to_owned();
        s.push("-wal");
        PathBuf::from(s)
    }

    async fn exists(&self) -> anyhow::Result<bool> {
        Ok(match self {
            Db::Sqlite(p) => p.exists(),
            Db::Postgres { admin, name } => {
                let mut c = sqlx::PgConnection::connect(admin).await?;
                let found: Option<(i32,)> =
                    sqlx::query_as("SELECT 1 FROM pg_database WHERE datname = $1")
                        .bind(name)
                        .fetch_optional(&mut c)
                        .await?;
                found.is_some()
            }
        })
    }

    async fn create(&self) -> anyhow::Result<()> {
        if let Db::Postgres { admin, name } = self {
            let mut c = sqlx::PgConnection::connect(admin).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut c)
                .await?;
        }
        Ok(())
    }

    async fn drop_it(&self) -> anyhow::Result<()> {
        match self {
            Db::Sqlite(p) => {
                for f in [p.clone(), Db::wal(p), {
                    let mut s = p.as_os_str().to_owned();
                    s.push("-shm");
                    PathBuf::from(s)
                }] {
                    match std::fs::remove_file(&f) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            Db::Postgres { admin, name } => {
                let mut c = sqlx::PgConnection::connect(admin).await?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut c)
                .await?;
            }
        }
        Ok(())
    }

    /// The catalog's size on disk, and how it is made up.
    async fn size(&self) -> anyhow::Result<(u64, String)> {
        Ok(match self {
            Db::Sqlite(p) => {
                let file = std::fs::metadata(p)?.len();
                let wal = std::fs::metadata(Db::wal(p)).map_or(0, |m| m.len());
                (
                    file + wal,
                    format!("file {} + WAL {}", bytes(file), bytes(wal)),
                )
            }
            Db::Postgres { admin, name } => {
                let mut c = sqlx::PgConnection::connect(admin).await?;
                let (n,): (i64,) = sqlx::query_as("SELECT pg_database_size($1)")
                    .bind(name)
                    .fetch_one(&mut c)
                    .await?;
                (n as u64, "pg_database_size".to_owned())
            }
        })
    }

    /// A connection of its own to the catalog's database, for maintenance.
    async fn sqlite_conn(p: &Path) -> anyhow::Result<sqlx::SqliteConnection> {
        Ok(sqlx::SqliteConnection::connect(&format!("sqlite://{}", p.display())).await?)
    }

    async fn pg_conn(&self) -> anyhow::Result<sqlx::PgConnection> {
        Ok(sqlx::PgConnection::connect(&self.url()?).await?)
    }

    /// After seeding: what a year of small transactions would have left. On
    /// SQLite the WAL the month-sized seeding transactions grew is truncated
    /// (dr's own writes leave a few MB); on PostgreSQL, VACUUM ANALYZE, as
    /// autovacuum does after inserts.
    async fn settle(&self) -> anyhow::Result<String> {
        let t0 = Instant::now();
        match self {
            Db::Sqlite(p) => {
                let mut c = Db::sqlite_conn(p).await?;
                sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                    .execute(&mut c)
                    .await?;
                c.close().await?;
                Ok(format!(
                    "WAL checkpointed and truncated in {}",
                    dur(t0.elapsed())
                ))
            }
            Db::Postgres { .. } => {
                let mut c = self.pg_conn().await?;
                sqlx::query("VACUUM ANALYZE").execute(&mut c).await?;
                c.close().await?;
                Ok(format!(
                    "VACUUM ANALYZE (as autovacuum would) in {}",
                    dur(t0.elapsed())
                ))
            }
        }
    }

    /// Gives the space of removed rows back: SQLite `VACUUM` and a WAL
    /// checkpoint; PostgreSQL `VACUUM FULL` (then ANALYZE).
    async fn vacuum(&self) -> anyhow::Result<(&'static str, Duration)> {
        let t0 = Instant::now();
        match self {
            Db::Sqlite(p) => {
                let mut c = Db::sqlite_conn(p).await?;
                sqlx::query("VACUUM").execute(&mut c).await?;
                sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                    .execute(&mut c)
                    .await?;
                c.close().await?;
                Ok(("VACUUM and a WAL checkpoint (TRUNCATE)", t0.elapsed()))
            }
            Db::Postgres { .. } => {
                let mut c = self.pg_conn().await?;
                sqlx::query("VACUUM FULL").execute(&mut c).await?;
                sqlx::query("ANALYZE").execute(&mut c).await?;
                c.close().await?;
                Ok(("VACUUM FULL (and ANALYZE)", t0.elapsed()))
            }
        }
    }
}

/// Free bytes on the filesystem holding `dir` (`df`).
fn free_bytes(dir: &Path) -> anyhow::Result<u64> {
    let out = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(dir)
        .output()?;
    anyhow::ensure!(out.status.success(), "df {} failed", dir.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("cannot read df's output"))
}

/// Where PostgreSQL keeps its files, to check the room there.
async fn pg_data_dir(admin: &str) -> anyhow::Result<PathBuf> {
    let mut c = sqlx::PgConnection::connect(admin).await?;
    let (d,): (String,) = sqlx::query_as("SELECT current_setting('data_directory')")
        .fetch_one(&mut c)
        .await?;
    Ok(PathBuf::from(d))
}

// ----------------------------------------------------------------- the history

/// The name of volume `j`, as seeded (`pvc-` and 36 characters).
fn volume_name(j: i64) -> anyhow::Result<VolumeName> {
    let j = j.to_string();
    let pad = &"00000000-0000-4000-8000-000000000000"[..36 - j.len()];
    Ok(format!("pvc-{pad}{j}").parse()?)
}

fn bench_policy() -> anyhow::Result<PolicyConfig> {
    let cfg = Config::parse(BENCH_CONFIG, "bench")?;
    Ok(cfg.policies[0].clone())
}

const BENCH_CONFIG: &str = "policies:\n  - name: bench\n    namespace: bench\n";

/// What a kept catalog was seeded with (a file beside the SQLite files).
#[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
struct Seeded {
    days: i64,
    volumes: i64,
    last_ms: i64,
    compacted: bool,
}

fn marker(dir: &Path, backend: &str) -> PathBuf {
    dir.join(format!("history-{backend}.json"))
}

fn read_marker(dir: &Path, backend: &str) -> Option<Seeded> {
    serde_json::from_slice(&std::fs::read(marker(dir, backend)).ok()?).ok()
}

fn write_marker(dir: &Path, backend: &str, s: &Seeded) -> anyhow::Result<()> {
    std::fs::write(marker(dir, backend), serde_json::to_vec(s)?)?;
    Ok(())
}

/// Seeds the history, a month per transaction, oldest first.
async fn seed(
    catalog: &Catalog,
    policy: &PolicyName,
    s: &Settings,
    last: DateTime<Utc>,
    tag: &str,
) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let total = s.points();
    let chunk = CHUNK_DAYS * TICKS_PER_DAY;
    let mut end = total;
    while end > 0 {
        let start = (end - chunk).max(0);
        catalog
            .seed_history(
                policy,
                s.volumes,
                last,
                dr::span::Span::from_secs(EVERY_SECS as u64),
                start..end,
                KEEP,
            )
            .await?;
        let done = total - start;
        let at = |age: i64| last - TimeDelta::seconds(EVERY_SECS * age);
        eprintln!(
            "{tag}: seeded the ticks of {} to {}: {} of {} points, {} backup rows ({:.0} %), {} so far",
            at(end - 1).format("%Y-%m-%d %H:%M"),
            at(start).format("%Y-%m-%d %H:%M"),
            thousands(done),
            thousands(total),
            thousands(done * s.volumes),
            100.0 * done as f64 / total as f64,
            dur(t0.elapsed())
        );
        end = start;
    }
    Ok(t0.elapsed())
}

// ----------------------------------------------------- the timed processes

/// Runs dr `runs + 1` times (the first is a warm-up, not counted), each
/// timed from process start to exit, its output checked.
fn time_dr(
    args: &[&str],
    runs: usize,
    check: impl Fn(&serde_json::Value) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<Duration>> {
    let exe = env!("CARGO_BIN_EXE_dr");
    let mut times = Vec::with_capacity(runs);
    for i in 0..=runs {
        let t0 = Instant::now();
        let out = Command::new(exe).args(args).stdin(Stdio::null()).output()?;
        let took = t0.elapsed();
        anyhow::ensure!(
            out.status.success(),
            "dr {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        check(&v)?;
        if i > 0 {
            times.push(took);
        }
    }
    times.sort();
    Ok(times)
}

/// `/metrics` served by dr's router in this process, scraped over HTTP.
async fn time_scrapes(
    url: &str,
    policy: &PolicyConfig,
    runs: usize,
) -> anyhow::Result<Vec<Duration>> {
    let catalog = Catalog::open(&url.parse().map_err(anyhow::Error::msg)?).await?;
    let app = dr::serve::AppState {
        catalog,
        metrics: Arc::new(dr::metrics::Metrics::default()),
        policies: Arc::new(vec![policy.clone()]),
        clock: dr::clock::Clock::System,
        leases: None,
    };
    let (listener, local) = dr::serve::bind("127.0.0.1:0").await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(dr::serve::run(listener, local, app, async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let target = format!("http://{local}/metrics");
    let mut times = Vec::with_capacity(runs);
    for i in 0..=runs {
        let t0 = Instant::now();
        let resp = client.get(&target).send().await?;
        let status = resp.status();
        let body = resp.text().await?;
        let took = t0.elapsed();
        anyhow::ensure!(
            status.is_success() && body.contains("dr_"),
            "/metrics answered {status}: {body}"
        );
        if i > 0 {
            times.push(took);
        }
    }
    let _ = stop.send(());
    server.await??;
    times.sort();
    Ok(times)
}

// -------------------------------------------------- a tick's statements

/// The catalog statements of one tick of `volumes` volumes as dr serve makes
/// them when every backup completes and is verified (src/daemon.rs `run`,
/// src/backup/mod.rs `tick`, fan_out.rs, volume.rs), in the order they come:
/// the ledger's checks (`last_recorded_tick`, `tick_recorded`);
/// `begin_point`; `record_backups` for the first 3 × concurrency volumes,
/// then for the rest; per volume, 16 at a time, `update_backup` three times
/// (backing up with the snapshot's time and filesystem, the backup's name,
/// completed with URL and size) and `set_verification`; `set_bundle`,
/// `set_consistency`; `backups_of` (the point's time); `finish_point`
/// (complete; it reads the point, updates it, dates its verification and
/// reads it again); the report's `point` and `backups_of`; `record_tick`.
/// Left out: the backup progress saved in 10 % steps while Longhorn backs up
/// (0 to 10 more `update_backup` per volume, as many as the steps dr sees)
/// and the content checksum (only with a content probe).
async fn tick_statements(
    catalog: &Catalog,
    policy: &PolicyName,
    volumes: &[VolumeName],
    tick_at: DateTime<Utc>,
) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    catalog.last_recorded_tick(policy).await?;
    anyhow::ensure!(
        !catalog.tick_recorded(policy, tick_at).await?,
        "tick {tick_at} recorded already"
    );
    let now = Utc::now();
    let point = catalog.begin_point(policy, tick_at, now).await?;
    anyhow::ensure!(point.state == PointState::Pending, "point {tick_at} exists");
    let rows: Vec<NewBackup> = volumes
        .iter()
        .map(|v| NewBackup {
            point_id: point.id,
            volume: v.clone(),
            pvc: Some(format!("data-{}", v.as_str())),
            snapshot_name: dr::backup::snapshot_name(policy.as_str(), tick_at, v.as_str()),
            requested_at: now,
        })
        .collect();
    let (head, tail) = rows.split_at(rows.len().min(CONCURRENCY * 3));
    let mut written = catalog.record_backups(head).await?;
    written.extend(catalog.record_backups(tail).await?);
    anyhow::ensure!(written.len() == volumes.len(), "rows not written");
    let snapshot_at = now + TimeDelta::seconds(2);
    update_each(catalog, &written, &|_| BackupUpdate {
        state: Some(BackupState::BackingUp),
        snapshot_at: Some(snapshot_at),
        fs_type: Some("ext4".into()),
        ..Default::default()
    })
    .await?;
    update_each(catalog, &written, &|b| BackupUpdate {
        state: Some(BackupState::BackingUp),
        backup_name: Some(format!("backup-{:016x}", b.id.0)),
        ..Default::default()
    })
    .await?;
    update_each(catalog, &written, &|b| BackupUpdate {
        state: Some(BackupState::Completed),
        backup_url: Some(format!(
            "s3://dr@us-east-1/?backup=backup-{:016x}&volume={}",
            b.id.0, b.volume
        )),
        progress: Some(100),
        size_bytes: Some(1 << 30),
        snapshot_at: Some(snapshot_at),
        completed_at: Some(Utc::now()),
        ..Default::default()
    })
    .await?;
    futures::stream::iter(written.iter().map(Ok::<_, anyhow::Error>))
        .try_for_each_concurrent(CONCURRENCY, |b| async move {
            catalog
                .set_verification(b.id, Verification::Verified, Utc::now())
                .await?;
            Ok(())
        })
        .await?;
    catalog
        .set_bundle(point.id, &format!("dr/bundles/{policy}/{}.json", tick_at))
        .await?;
    catalog
        .set_consistency(point.id, Consistency::CrashConsistent)
        .await?;
    let point_at = catalog
        .backups_of(point.id)
        .await?
        .iter()
        .filter(|b| b.state == BackupState::Completed)
        .filter_map(|b| b.snapshot_at)
        .min();
    catalog
        .finish_point(point.id, PointState::Complete, point_at, None, Utc::now())
        .await?;
    let done = catalog.point(point.id).await?;
    let report = catalog.backups_of(point.id).await?;
    anyhow::ensure!(
        done.state == PointState::Complete && report.len() == volumes.len(),
        "the tick did not end complete"
    );
    catalog
        .record_tick(
            policy,
            tick_at,
            TickOutcome::Ran,
            Some(point.id),
            None,
            Utc::now(),
        )
        .await?;
    Ok(t0.elapsed())
}

/// `update_backup` of every row, [`CONCURRENCY`] at a time.
async fn update_each(
    catalog: &Catalog,
    rows: &[BackupRecord],
    f: &(dyn Fn(&BackupRecord) -> BackupUpdate + Sync),
) -> anyhow::Result<()> {
    futures::stream::iter(rows.iter().map(Ok::<_, anyhow::Error>))
        .try_for_each_concurrent(CONCURRENCY, |b| async move {
            catalog.update_backup(b.id, &f(b)).await?;
            Ok(())
        })
        .await
}

/// `runs` ticks on the empty catalog and on this one, taken in turn so
/// that both see the same load on the machine (a pair before, not counted:
/// its statements on this catalog are counted from sqlx's log). Their times,
/// sorted, and the statement count.
async fn time_ticks(
    empty_url: &str,
    url: &str,
    policy: &PolicyName,
    volumes: &[VolumeName],
    runs: usize,
    capture: &Capture,
) -> anyhow::Result<(Vec<Duration>, Vec<Duration>, usize)> {
    let open = |u: &str| -> anyhow::Result<_> {
        let u = u.parse().map_err(anyhow::Error::msg)?;
        Ok(async move { Catalog::open(&u).await })
    };
    let empty = open(empty_url)?.await?;
    let catalog = open(url)?.await?;
    let (mut on_empty, mut on_this) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    let mut statements = 0;
    for i in 0..=runs {
        // Each at a time of its own, after every point there is.
        let tick_at = Utc::now().duration_trunc(TimeDelta::milliseconds(1))?;
        let e = tick_statements(&empty, policy, volumes, tick_at).await?;
        if i == 0 {
            capture.start();
        }
        let t = tick_statements(&catalog, policy, volumes, tick_at).await?;
        if i == 0 {
            statements = capture.stop().len();
        } else {
            on_empty.push(e);
            on_this.push(t);
        }
    }
    empty.close().await;
    catalog.close().await;
    on_empty.sort();
    on_this.sort();
    Ok((on_empty, on_this, statements))
}

/// The machine's load (1-minute average) against its CPUs.
fn load() -> String {
    let avg = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("load average {avg} on {cpus} CPUs")
}

// ---------------------------------------------------------- compaction

struct Compaction {
    took: Duration,
    removed: Compacted,
    stmts: Vec<Stmt>,
}

async fn compact(
    catalog: &Catalog,
    now: DateTime<Utc>,
    capture: &Capture,
) -> anyhow::Result<Compaction> {
    capture.start();
    let t0 = Instant::now();
    let removed = dr::prune::compact_history(catalog, &HistoryConfig::default(), now).await;
    let took = t0.elapsed();
    let stmts = capture.stop();
    Ok(Compaction {
        took,
        removed: removed?,
        stmts: stmts
            .into_iter()
            .filter(|s| s.summary.starts_with("DELETE FROM"))
            .collect(),
    })
}

fn print_compaction(tag: &str, what: &str, c: &Compaction, expected_rows: Option<i64>) {
    let n = c.stmts.len();
    let longest = c
        .stmts
        .iter()
        .max_by(|a, b| a.secs.total_cmp(&b.secs))
        .cloned()
        .unwrap_or_default();
    let in_statements: f64 = c.stmts.iter().map(|s| s.secs).sum();
    let by_kind = |table: &str| {
        let of: Vec<&Stmt> = c
            .stmts
            .iter()
            .filter(|s| s.summary.starts_with(&format!("DELETE FROM {table} ")))
            .collect();
        let total: f64 = of.iter().map(|s| s.secs).sum();
        let max = of.iter().map(|s| s.secs).fold(0.0, f64::max);
        // How a statement's time moved through the compaction: the first
        // and the last tenth of them, on average.
        let tenth = (of.len() / 10).max(1);
        let mean = |xs: &[&Stmt]| xs.iter().map(|s| s.secs).sum::<f64>() / xs.len().max(1) as f64;
        let first = mean(&of[..tenth.min(of.len())]);
        let last = mean(&of[of.len().saturating_sub(tenth)..]);
        let empty: Vec<f64> = of.iter().filter(|s| s.rows == 0).map(|s| s.secs).collect();
        let empty_mean = if empty.is_empty() {
            0.0
        } else {
            empty.iter().sum::<f64>() / empty.len() as f64
        };
        format!(
            "{table} {:.1} s (longest {:.1} ms; the first tenth {:.1} ms each, the last tenth {:.1} ms; one removing nothing {:.1} ms on average)",
            total,
            max * 1000.0,
            first * 1000.0,
            last * 1000.0,
            empty_mean * 1000.0
        )
    };
    println!(
        "{tag}: {what}: {} — removed {} backup rows{}, {} points, {} tick outcomes; {} DELETE statements ({} rows per statement at most)",
        dur(c.took),
        thousands(c.removed.backup_rows),
        expected_rows.map_or(String::new(), |e| format!(" (expected {})", thousands(e))),
        thousands(c.removed.points),
        thousands(c.removed.ticks),
        thousands(n as u64),
        500
    );
    println!(
        "{tag}: {what}: longest statement {:.1} ms ({}, {} rows); DELETE statements {:.1} s in all: {}, {}, {}; the rest ({:.1} s) finding and marking points, and on SQLite the 20 ms pauses between statements",
        longest.secs * 1000.0,
        longest.summary,
        longest.rows,
        in_statements,
        by_kind("backups"),
        by_kind("ticks"),
        by_kind("recovery_points"),
        c.took.as_secs_f64() - in_statements,
    );
}

// ------------------------------------------------------------ the phases

/// The figures of one catalog state; true if every target was met.
#[allow(clippy::too_many_arguments)]
async fn measure(
    tag: &str,
    db: &Db,
    s: &Settings,
    last: DateTime<Utc>,
    policy: &PolicyConfig,
    volumes: &[VolumeName],
    empty: &Db,
    capture: &Capture,
) -> anyhow::Result<bool> {
    let url = db.url()?;
    let (size, how) = db.size().await?;
    println!("{tag}: size on disk {} ({how}); {}", bytes(size), load());
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("dr.yaml");
    std::fs::write(&config, BENCH_CONFIG)?;
    let config = config.display().to_string();
    let mut ok = true;

    // Among the live points, halfway: a real seek.
    let to = (last - TimeDelta::seconds(EVERY_SECS * KEEP / 2) + TimeDelta::minutes(7))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let want = s.volumes as usize;
    let times = time_dr(
        &[
            "--catalog",
            &url,
            "restore",
            "--to",
            &to,
            "--dry-run",
            "--output",
            "json",
        ],
        s.runs,
        |v| {
            let n = v["plan"]["backups"].as_array().map_or(0, Vec::len);
            anyhow::ensure!(n == want, "the plan has {n} backups, want {want}");
            Ok(())
        },
    )?;
    ok &= timing_line(
        tag,
        &format!("dr restore --to {to} --dry-run --output json, process start to exit"),
        &times,
        PROCESS_TARGET,
    );

    let times = time_dr(
        &[
            "--catalog",
            &url,
            "--config",
            &config,
            "status",
            "--output",
            "json",
        ],
        s.runs,
        |v| {
            let p = &v["policies"][0];
            anyhow::ensure!(
                p["policy"] == "bench" && !p["newest_verified"].is_null(),
                "status: {v}"
            );
            Ok(())
        },
    )?;
    ok &= timing_line(
        tag,
        "dr status --config C --output json (C lists the policy), process start to exit",
        &times,
        PROCESS_TARGET,
    );

    let times = time_scrapes(&url, policy, s.runs).await?;
    ok &= timing_line(
        tag,
        "one /metrics scrape (dr::serve::router in this process, HTTP GET over 127.0.0.1)",
        &times,
        SCRAPE_TARGET,
    );

    let times = time_dr(
        &[
            "--catalog",
            &url,
            "--config",
            &config,
            "report",
            "--since",
            "30d ago",
            "--format",
            "json",
        ],
        s.runs,
        |v| {
            let ticks = v["policies"][0]["rpo"]["ticks"].as_i64().unwrap_or(0);
            anyhow::ensure!(ticks > 0, "the report counts no ticks: {v}");
            Ok(())
        },
    )?;
    ok &= timing_line(
        tag,
        "dr report --since '30d ago' --format json, process start to exit",
        &times,
        REPORT_TARGET,
    );

    let (on_empty, times, statements) = time_ticks(
        &empty.url()?,
        &url,
        &policy.name,
        volumes,
        s.tick_runs,
        capture,
    )
    .await?;
    let (median, _, max) = stats(&times);
    let (empty_median, _, empty_max) = stats(&on_empty);
    let ratio = median.as_secs_f64() / empty_median.as_secs_f64();
    let met = ratio <= UNCHANGED;
    println!(
        "{tag}: a tick's catalog statements over {} volumes ({} statements): median {} (max {}) against {} (max {}) on an empty catalog, {} ticks each, in turn: × {:.2} — target unchanged (≤ × {UNCHANGED}): {}",
        thousands(s.volumes),
        thousands(statements as u64),
        dur(median),
        dur(max),
        dur(empty_median),
        dur(empty_max),
        times.len(),
        ratio,
        verdict(met)
    );
    ok &= met;
    Ok(ok)
}

/// One backend, from seeding to deleting; true if every target was met.
async fn run_backend(
    backend: &str,
    s: &Settings,
    dir: &Path,
    capture: &Capture,
) -> anyhow::Result<bool> {
    let tag = format!("history/{backend}");
    let (db, empty) = match backend {
        "sqlite" => (
            Db::sqlite(dir, "history.db"),
            Db::sqlite(dir, "history-empty.db"),
        ),
        "postgres" => (
            Db::postgres("dr_bench_history")?,
            Db::postgres("dr_bench_history_empty")?,
        ),
        other => {
            anyhow::bail!("unknown backend {other:?} in DR_BENCH_BACKENDS; use sqlite, postgres")
        }
    };
    let policy = bench_policy()?;
    let volumes: Vec<VolumeName> = (0..s.volumes).map(volume_name).collect::<Result<_, _>>()?;
    let mut ok = true;

    // An empty catalog, a tick's statements timed on it beside the year's.
    empty.drop_it().await?;
    empty.create().await?;
    {
        let c = Catalog::open(&empty.url()?.parse().map_err(anyhow::Error::msg)?).await?;
        c.upsert_policy(&(&policy).into(), Utc::now()).await?;
        c.close().await;
    }

    // The year: reused if kept uncompacted at this scale, else seeded.
    let reuse = read_marker(dir, backend)
        .filter(|m| m.days == s.days && m.volumes == s.volumes && !m.compacted);
    let reuse = match reuse {
        Some(m) if db.exists().await? => Some(m),
        _ => None,
    };
    let last = match &reuse {
        Some(m) => {
            let last = DateTime::<Utc>::from_timestamp_millis(m.last_ms)
                .ok_or_else(|| anyhow::anyhow!("bad marker"))?;
            println!("{tag}: reusing the catalog kept by an earlier run (history ending {last})");
            last
        }
        None => {
            let _ = std::fs::remove_file(marker(dir, backend));
            db.drop_it().await?;
            let (per_row, room_in) = match &db {
                Db::Sqlite(_) => (SQLITE_BYTES_PER_ROW, dir.to_owned()),
                Db::Postgres { admin, .. } => (POSTGRES_BYTES_PER_ROW, pg_data_dir(admin).await?),
            };
            let need = s.rows() as u64 * per_row + SPARE;
            let free = free_bytes(&room_in)?;
            anyhow::ensure!(
                free >= need,
                "not enough room to seed {} backup rows: about {} needed on the filesystem of {} ({} per row and {} to spare), {} free; set DR_BENCH_DAYS or DR_BENCH_VOLUMES lower, or free space",
                thousands(s.rows()),
                bytes(need),
                room_in.display(),
                per_row,
                bytes(SPARE),
                bytes(free)
            );
            eprintln!(
                "{tag}: seeding {} points × {} volumes ({} backup rows, about {} on disk; {} free)",
                thousands(s.points()),
                thousands(s.volumes),
                thousands(s.rows()),
                bytes(s.rows() as u64 * per_row),
                bytes(free)
            );
            db.create().await?;
            // Its newest tick: the last 15-minute boundary two minutes ago
            // (so that even its verification is in the past).
            let last = (Utc::now() - TimeDelta::minutes(2))
                .duration_trunc(TimeDelta::seconds(EVERY_SECS))?;
            let catalog = Catalog::open(&db.url()?.parse().map_err(anyhow::Error::msg)?).await?;
            catalog.upsert_policy(&(&policy).into(), Utc::now()).await?;
            let took = seed(&catalog, &policy.name, s, last, &tag).await?;
            catalog.close().await;
            let settled = db.settle().await?;
            println!(
                "{tag}: seeded {} points ({} days of 15-minute ticks ending {}) × {} volumes: {} backup rows, {} tick outcomes, the {} newest points live, in {}; then {settled}",
                thousands(s.points()),
                s.days,
                last.format("%Y-%m-%d %H:%M UTC"),
                thousands(s.volumes),
                thousands(s.rows()),
                thousands(s.points()),
                KEEP,
                dur(took)
            );
            if s.keep {
                write_marker(
                    dir,
                    backend,
                    &Seeded {
                        days: s.days,
                        volumes: s.volumes,
                        last_ms: last.timestamp_millis(),
                        compacted: false,
                    },
                )?;
            }
            last
        }
    };

    let year = format!("{tag} (before compaction)");
    ok &= measure(&year, &db, s, last, &policy, &volumes, &empty, capture).await?;

    if s.compact {
        if s.keep {
            write_marker(
                dir,
                backend,
                &Seeded {
                    days: s.days,
                    volumes: s.volumes,
                    last_ms: last.timestamp_millis(),
                    compacted: true,
                },
            )?;
        }
        let catalog = Catalog::open(&db.url()?.parse().map_err(anyhow::Error::msg)?).await?;
        let now = Utc::now();
        // Backup rows of the points pruned before now − 30 days: a point
        // aged a ≥ KEEP was pruned at its tick + KEEP ticks + 1 minute.
        let cutoff = now - TimeDelta::days(30);
        let step = TimeDelta::seconds(EVERY_SECS);
        let expected = (KEEP..s.points())
            .filter(|a| {
                last - step * (*a as i32) + step * (KEEP as i32) + TimeDelta::minutes(1) < cutoff
            })
            .count() as i64
            * s.volumes;
        eprintln!(
            "{tag}: compacting (expecting {} backup rows removed) …",
            thousands(expected)
        );
        let c = compact(&catalog, now, capture).await?;
        print_compaction(
            &tag,
            "compaction, dr::prune::compact_history(HistoryConfig::default())",
            &c,
            Some(expected),
        );
        // What dr serve runs after the next tick's retention: by then one
        // more point crossed the 30 days.
        let c = compact(&catalog, now + step, capture).await?;
        print_compaction(&tag, "the next compaction, 15 minutes later", &c, None);
        catalog.close().await;

        let (size, how) = db.size().await?;
        println!(
            "{tag}: size on disk after compaction {} ({how}){}",
            bytes(size),
            match &db {
                Db::Sqlite(_) =>
                    "; the freed pages stay in the file, reused by later writes".to_owned(),
                Db::Postgres { .. } =>
                    "; the deleted rows' space stays in the tables, reused once (auto)vacuum has marked it free".to_owned(),
            }
        );
        let (what, took) = db.vacuum().await?;
        let (size, how) = db.size().await?;
        println!(
            "{tag}: size on disk after {what} ({}): {} ({how})",
            dur(took),
            bytes(size)
        );
        let after = format!("{tag} (after compaction)");
        ok &= measure(&after, &db, s, last, &policy, &volumes, &empty, capture).await?;
    }

    empty.drop_it().await?;
    if s.keep {
        println!("{tag}: catalog kept ({})", db.url()?);
    } else {
        db.drop_it().await?;
        let _ = std::fs::remove_file(marker(dir, backend));
        eprintln!("{tag}: catalog deleted");
    }
    Ok(ok)
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: only run for real.
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let s = Settings::from_env();
    let capture = Arc::new(Capture::default());
    {
        use tracing_subscriber::layer::SubscriberExt;
        tracing::subscriber::set_global_default(
            tracing_subscriber::registry().with(CaptureLayer(capture.clone())),
        )?;
    }
    let dir = std::env::var("DR_BENCH_DIR").map_or_else(
        |_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir)?;
    let backends = std::env::var("DR_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    let rt = tokio::runtime::Runtime::new()?;
    let wall = Instant::now();
    println!(
        "history: {} days of 15-minute ticks ({} points) × {} volumes = {} backup rows per catalog",
        s.days,
        thousands(s.points()),
        thousands(s.volumes),
        thousands(s.rows())
    );
    let mut all_ok = true;
    for backend in backends.split(',').map(str::trim) {
        let t0 = Instant::now();
        all_ok &= rt.block_on(run_backend(backend, &s, &dir, &capture))?;
        println!("history/{backend}: done in {}", dur(t0.elapsed()));
    }
    println!("history: done in {}", dur(wall.elapsed()));
    if !all_ok {
        eprintln!("history: a target was MISSED");
        std::process::exit(1);
    }
    Ok(())
}
