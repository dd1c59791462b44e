//! "A month in an afternoon": thousands of ticks of one policy back to back,
//! with retention after each as `dr serve` applies it, on the test bed with
//! the Longhorn emulator at its fast timings and a small snapshot limit
//! (`snapshot-max-count` 4, set before the volumes exist). It proves that dr
//! keeps Longhorn bounded: its snapshots (deleted after each completed
//! backup), its backups (deleted by retention) and the backup store.
//!
//! Ticks are simulated times 15 minutes apart, the month before a fixed base
//! (2026-11-01T00:00Z), run one after the other; each tick's timestamps
//! follow its simulated time (`Clock::tokio_from(tick)`), and retention runs
//! after it with that clock's time as `now` (`prune::plan`, then
//! `prune::execute`, as `src/daemon.rs` does). A point's time is its oldest
//! snapshot's creation time as Longhorn reports it, which the emulator takes
//! from the wall clock; so after each tick the bench dates the point at its
//! simulated tick plus the real time the snapshot took to come, through the
//! catalog's own `finish_point` (same state, `point_at` given), as a
//! Longhorn living the simulated month would have. Each tick also writes
//! 4 KiB into every volume, so backups change blocks and deleting them
//! leaves blocks to clean up.
//!
//! Asserts (exits non-zero naming what failed):
//! - every tick's point is `complete`;
//! - after every tick, no volume holds more than 2 of dr's snapshots
//!   (`dr-…`, not marked removed, by `snapshotCRList`);
//! - at the end nothing leaks: the Longhorn backups of each volume
//!   (`backupListByVolume`) are exactly the catalog's non-pruned backups of
//!   live points; the live points are exactly what retention keeps of every
//!   point made (decided again here over all of them); the backup store holds
//!   a `backup_<name>.cfg` for exactly those backups, and dr's bucket the
//!   manifest bundles of exactly the live points; each volume ends with one
//!   snapshot of dr's, the last tick's.
//!
//! Prints: ticks per second and wall time (and the time per tick: median,
//! p95, max, of which retention), points made, kept and pruned, backups
//! deleted, the largest number of dr's snapshots seen on a volume, Longhorn
//! calls per tick by operation (from the emulator's stats, the bench's own
//! checks taken out), and the manifest bundles in S3 against the live points.
//!
//! Run: `tests/testbed/up && cargo bench --bench month`. Env: DR_BENCH_TICKS
//! (default 2880: a month of 15-minute ticks), DR_BENCH_VOLUMES (default 4).

#[path = "../tests/it/harness/mod.rs"]
mod common;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use common::testbed::{self, TestNamespace};
use dr::backup::{Events, Protect, TickOptions};
use dr::catalog::{BackupState, Catalog, PointId, PointState};
use dr::clock::Clock;
use dr::longhorn::{ClientConfig, LonghornClient};
use dr::retention::{self, Candidate};
use dr::store::{BackupTargetUrl, Store};
use longhorn_emulator::{Emulator, EmulatorConfig, Timings};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most snapshots of dr's a volume may hold after a tick: the newest, and
/// one older left by a tidy that could not finish (Longhorn's limit here is 4).
const MAX_DR_SNAPSHOTS: usize = 2;
const SNAPSHOT_MAX_COUNT: &str = "4";
const RETAIN: &str = "{last: 8, hourly: 24, daily: 7, weekly: 4, monthly: 1}";
/// Non-complete ticks after which the run stops (the verdict is already known).
const GIVE_UP_AFTER: usize = 20;

fn env_num(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let failures = rt.block_on(run())?;
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("month: FAILED: {f}");
        }
        anyhow::bail!("{} check(s) failed", failures.len());
    }
    println!("month: every check passed");
    Ok(())
}

/// The simulated time of tick `i` of `n`: the last one 15 minutes before the base.
fn tick_at(i: usize, n: usize) -> DateTime<Utc> {
    let base = Utc
        .with_ymd_and_hms(2026, 11, 1, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::UNIX_EPOCH);
    base - TimeDelta::minutes(15 * (n - i) as i64)
}

/// Percentile `q` of sorted seconds.
fn pct(sorted: &[f64], q: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 - 1.0) * q).round() as usize)
        .copied()
        .unwrap_or(f64::NAN)
}

/// dr's snapshots on a volume (named `dr-…`, not being removed).
async fn dr_snapshots(lh: &LonghornClient, volume: &str) -> anyhow::Result<Vec<String>> {
    Ok(lh
        .list_snapshots(volume)
        .await?
        .into_iter()
        .filter(|s| s.name.starts_with("dr-") && !s.mark_removed)
        .map(|s| s.name)
        .collect())
}

/// Differences between what should be and what is, as a sentence (None: equal).
fn differ(what: &str, want: &BTreeSet<String>, got: &BTreeSet<String>) -> Option<String> {
    let missing: Vec<_> = want.difference(got).collect();
    let extra: Vec<_> = got.difference(want).collect();
    (!missing.is_empty() || !extra.is_empty()).then(|| {
        format!(
            "{what}: {} expected, {} found; missing {:?}; not expected {:?}",
            want.len(),
            got.len(),
            missing.iter().take(10).collect::<Vec<_>>(),
            extra.iter().take(10).collect::<Vec<_>>()
        )
    })
}

async fn run() -> anyhow::Result<Vec<String>> {
    let n_ticks = env_num("DR_BENCH_TICKS", 2880).max(1) as usize;
    let n_volumes = env_num("DR_BENCH_VOLUMES", 4).max(1) as usize;
    let tb = testbed::get();
    let kube = tb.kube_client().await;
    let ns = TestNamespace::create(&kube, "dr-bench-month").await;
    let prefix = format!("bench-month-{}", testbed::suffix());
    let mut ecfg = EmulatorConfig::new("127.0.0.1:0".parse()?);
    ecfg.store = Some(tb.emulator_store(&prefix).await);
    ecfg.kube = Some(kube.clone());
    ecfg.timings = Timings::fast();
    ecfg.provision_namespaces = Some(vec![ns.name.clone()]);
    let emu = Emulator::start(ecfg).await?;
    // The limit applies to volumes created afterwards.
    emu.control()
        .set_setting("snapshot-max-count", SNAPSHOT_MAX_COUNT)
        .await?;

    let labels = serde_json::json!({"app": "bench"});
    for i in 0..n_volumes {
        testbed::longhorn_claim(&kube, &ns.name, &format!("data-{i}"), labels.clone(), "8Mi").await;
    }
    for i in 0..n_volumes {
        testbed::wait_bound(&kube, &ns.name, &format!("data-{i}")).await;
    }
    let cfg = dr::config::Config::parse(
        &format!(
            "policies:\n  - name: month\n    namespace: {}\n    selector: app=bench\n    retain: {RETAIN}\n",
            ns.name
        ),
        "bench",
    )?;
    let policy = cfg.policies[0].clone();
    let dir = tempfile::tempdir()?;
    let catalog = Catalog::open(
        &format!("sqlite://{}/c.db", dir.path().display())
            .parse()
            .map_err(anyhow::Error::msg)?,
    )
    .await?;
    catalog
        .upsert_policy(&(&policy).into(), tick_at(0, n_ticks))
        .await?;
    // The fast emulator's pace: polls and follows as the tests have them.
    let mut lh = ClientConfig::new(emu.url());
    lh.poll = Duration::from_millis(25);
    lh.follow_interval = Duration::from_millis(100);
    lh.timeout = Duration::from_secs(10);
    lh.backoff_base = Duration::from_millis(10);
    lh.backoff_max = Duration::from_millis(50);
    lh.discover_for = Duration::from_secs(3);
    let longhorn = LonghornClient::new(lh)?;
    let s3 = tb.s3_client();
    let store = Store::from_client(s3.clone(), tb.s3_bucket(), &prefix);
    let protect = Protect {
        catalog: catalog.clone(),
        longhorn: longhorn.clone(),
        kube: kube.clone(),
        store: store.clone(),
        verifier: s3.clone(),
        options: TickOptions {
            concurrency: 4,
            snapshot_wait: Duration::from_secs(30),
            backup_wait: Duration::from_secs(120),
            ..TickOptions::default()
        },
    };
    let (resolved, _) =
        dr::cluster::resolve_volumes(&kube, &policy.namespace, &policy.selector).await?;
    let volumes: Vec<String> = resolved.iter().map(|v| v.volume.to_string()).collect();
    anyhow::ensure!(
        volumes.len() == n_volumes,
        "{} volumes resolved, {n_volumes} claims made",
        volumes.len()
    );

    let quiet: Events = Arc::new(|_| {});
    let mut failures: Vec<String> = Vec::new();
    let mut complete = 0usize;
    let mut not_complete = 0usize;
    // Every point made, with its (simulated) time, for the final retention check.
    let mut made: Vec<Candidate> = Vec::new();
    let (mut pruned, mut deleted, mut prune_errors) = (0usize, 0usize, 0usize);
    let mut max_snapshots = 0usize;
    let mut over_limit = 0usize;
    let mut tick_secs: Vec<f64> = Vec::with_capacity(n_ticks);
    let mut prune_secs: Vec<f64> = Vec::with_capacity(n_ticks);
    let mut own_calls = 0u64; // the bench's snapshotCRList calls
    let mut last_clock = Clock::System;
    let stats_before = emu.control().stats().await?;
    let ctl = emu.control();

    eprintln!(
        "month: {n_ticks} ticks over {n_volumes} volumes, {} … {}, retain {RETAIN}, snapshot-max-count {SNAPSHOT_MAX_COUNT}",
        tick_at(0, n_ticks),
        tick_at(n_ticks - 1, n_ticks)
    );
    let wall = Instant::now();
    for i in 0..n_ticks {
        let at = tick_at(i, n_ticks);
        // New data on every volume, a different 4 KiB each tick.
        let offset = (i as u64 * 4096) % (8 << 20);
        let data = vec![(i % 251) as u8 + 1; 4096];
        futures::future::try_join_all(volumes.iter().map(|v| ctl.write(v, offset, &data))).await?;
        let started = Instant::now();
        let real_start = Utc::now();
        let clock = Clock::tokio_from(at);
        let mut p = protect.clone();
        p.options.clock = clock;
        let report = p.tick(&policy, at, quiet.clone()).await?;
        // Dated at its simulated tick (see the top of this file).
        let point_at = report
            .point_at
            .map(|real| at + (real - real_start).max(TimeDelta::zero()));
        if report.state == PointState::Complete {
            complete += 1;
            catalog
                .finish_point(report.point_id, report.state, point_at, None, clock.now())
                .await?;
        } else {
            not_complete += 1;
            failures.push(format!(
                "tick {i} ({at}) ended {}: {}",
                report.state,
                report.reason.as_deref().unwrap_or("-")
            ));
        }
        made.push(Candidate {
            id: report.point_id,
            at: point_at.unwrap_or(at),
            state: report.state,
        });
        let ticked = started.elapsed();
        // Retention, as dr serve applies it after a tick.
        let verdicts = dr::prune::plan(&catalog, &policy, clock.now()).await?;
        if verdicts.iter().any(|v| v.prune()) {
            let r = dr::prune::execute(
                &catalog,
                &longhorn,
                &store,
                &policy.name,
                &verdicts,
                Duration::from_secs(600),
                &clock,
            )
            .await?;
            pruned += r.points_pruned;
            deleted += r.backups_deleted;
            prune_errors += r.errors.len();
            for e in r.errors.iter().take(3) {
                eprintln!("month: tick {i}: retention could not delete {e}");
            }
        }
        tick_secs.push(ticked.as_secs_f64());
        prune_secs.push((started.elapsed() - ticked).as_secs_f64());
        // dr's snapshots on every volume, after the tick.
        let counts =
            futures::future::try_join_all(volumes.iter().map(|v| dr_snapshots(&longhorn, v)))
                .await?;
        own_calls += volumes.len() as u64;
        for (v, snaps) in volumes.iter().zip(&counts) {
            max_snapshots = max_snapshots.max(snaps.len());
            if snaps.len() > MAX_DR_SNAPSHOTS {
                over_limit += 1;
                failures.push(format!(
                    "tick {i} ({at}): volume {v} holds {} snapshots of dr's (at most {MAX_DR_SNAPSHOTS}): {snaps:?}",
                    snaps.len()
                ));
            }
        }
        last_clock = clock;
        if (i + 1) % 100 == 0 || i + 1 == n_ticks {
            eprintln!(
                "month: {} ticks in {:.0} s; {complete} complete, {pruned} points pruned, most dr snapshots on a volume {max_snapshots}",
                i + 1,
                wall.elapsed().as_secs_f64()
            );
        }
        if not_complete + over_limit >= GIVE_UP_AFTER {
            failures.push(format!("stopped after tick {i}: {GIVE_UP_AFTER} failures"));
            break;
        }
    }
    let ran = made.len();
    let elapsed = wall.elapsed();
    let stats_after = emu.control().stats().await?;

    // Nothing leaks.
    let now = last_clock.now();
    let live: Vec<_> = catalog.live_points(&policy.name).await?;
    let live_ids: BTreeSet<PointId> = live.iter().map(|p| p.id).collect();
    let kept_ids: BTreeSet<PointId> = retention::decide(&made, &policy.retain, now)
        .into_iter()
        .filter(|v| !v.prune())
        .map(|v| v.id)
        .collect();
    let fmt_ids =
        |s: &BTreeSet<PointId>| s.iter().map(|id| id.0.to_string()).collect::<BTreeSet<_>>();
    failures.extend(differ(
        "live points in the catalog against what retention keeps of every point made",
        &fmt_ids(&kept_ids),
        &fmt_ids(&live_ids),
    ));
    // The catalog's non-pruned backups of live points, per volume.
    let mut expected: BTreeMap<String, BTreeSet<String>> = volumes
        .iter()
        .map(|v| (v.clone(), BTreeSet::new()))
        .collect();
    let mut unverified = 0usize;
    for p in &live {
        for b in catalog.backups_of(p.id).await? {
            if b.state == BackupState::Pruned {
                continue;
            }
            if b.verification != dr::catalog::Verification::Verified {
                unverified += 1;
            }
            match b.backup_name {
                Some(name) => {
                    expected
                        .entry(b.volume.to_string())
                        .or_default()
                        .insert(name);
                }
                None => failures.push(format!(
                    "point {} volume {}: a live backup without a name ({})",
                    p.id.0, b.volume, b.state
                )),
            }
        }
    }
    let target = BackupTargetUrl::parse(&format!(
        "s3://{}@{}/{prefix}/",
        tb.s3_bucket(),
        tb.var("DR_TEST_S3_REGION")
    ))?;
    let (mut in_longhorn, mut in_store) = (0usize, 0usize);
    for v in &volumes {
        let want = expected.get(v).cloned().unwrap_or_default();
        let longhorn_has: BTreeSet<String> = longhorn
            .backups_of(v)
            .await?
            .into_iter()
            .map(|b| b.name)
            .collect();
        in_longhorn += longhorn_has.len();
        failures.extend(differ(
            &format!("Longhorn's backups of {v} against the catalog's"),
            &want,
            &longhorn_has,
        ));
        let cfg_dir = format!("{}backups/", target.volume_prefix(v));
        let store_has: BTreeSet<String> = dr::store::list_keys(&s3, &target.bucket, &cfg_dir)
            .await?
            .iter()
            .filter_map(|k| {
                k.rsplit('/')
                    .next()
                    .and_then(|f| f.strip_prefix("backup_"))
                    .and_then(|f| f.strip_suffix(".cfg"))
                    .map(str::to_owned)
            })
            .collect();
        in_store += store_has.len();
        failures.extend(differ(
            &format!("backup .cfg files of {v} in the store ({cfg_dir}) against the catalog's"),
            &want,
            &store_has,
        ));
        // One snapshot of dr's per volume at the end: the last tick's.
        let last = dr::backup::snapshot_name(policy.name.as_str(), tick_at(ran - 1, n_ticks), v);
        let snaps: BTreeSet<String> = dr_snapshots(&longhorn, v).await?.into_iter().collect();
        failures.extend(differ(
            &format!("dr's snapshots on {v} at the end"),
            &BTreeSet::from([last]),
            &snaps,
        ));
    }
    // Retention deletes the bundles of the points it prunes.
    let in_s3: BTreeSet<String> = store
        .list_bundles(policy.name.as_str())
        .await?
        .into_iter()
        .collect();
    let of_live: BTreeSet<String> = live.iter().filter_map(|p| p.bundle_key.clone()).collect();
    failures.extend(differ(
        "manifest bundles in S3 against the live points'",
        &of_live,
        &in_s3,
    ));
    let bundles = in_s3.len();

    // Figures.
    let secs = elapsed.as_secs_f64();
    println!(
        "month: {ran} ticks ({:.1} simulated days) over {n_volumes} volumes in {:.0} s wall time: {:.2} ticks/s",
        ran as f64 / 96.0,
        secs,
        ran as f64 / secs
    );
    let mut t = tick_secs.clone();
    t.sort_by(|a, b| a.total_cmp(b));
    let mut r = prune_secs.clone();
    r.sort_by(|a, b| a.total_cmp(b));
    println!(
        "month: per tick: the tick median {:.3} s, p95 {:.3} s, max {:.3} s; retention after it median {:.3} s, p95 {:.3} s, max {:.3} s",
        pct(&t, 0.5),
        pct(&t, 0.95),
        pct(&t, 1.0),
        pct(&r, 0.5),
        pct(&r, 0.95),
        pct(&r, 1.0)
    );
    println!(
        "month: points complete {complete} / {ran}{}",
        if complete == ran { "" } else { " (NOT ALL)" }
    );
    println!(
        "month: points made {ran}, pruned {pruned}, live {} (retention keeps {}); backups made {}, deleted {deleted}, live {} (verified {}); retention errors {prune_errors}",
        live_ids.len(),
        kept_ids.len(),
        stats_after.backups_created - stats_before.backups_created,
        expected.values().map(BTreeSet::len).sum::<usize>(),
        expected.values().map(BTreeSet::len).sum::<usize>() - unverified,
    );
    println!(
        "month: at the end Longhorn lists {in_longhorn} backups of the volumes and the store holds {in_store} backup .cfg files"
    );
    println!(
        "month: most snapshots of dr's on a volume after a tick: {max_snapshots} (limit checked: {MAX_DR_SNAPSHOTS}; Longhorn's snapshot-max-count {SNAPSHOT_MAX_COUNT})"
    );
    let mut calls: Vec<(String, f64)> = stats_after
        .requests
        .iter()
        .map(|(op, n)| {
            let mut n = n - stats_before.requests.get(op).copied().unwrap_or(0);
            if op == "snapshotCRList" {
                n = n.saturating_sub(own_calls);
            }
            (op.clone(), n as f64 / ran as f64)
        })
        .filter(|(_, n)| *n > 0.0)
        .collect();
    calls.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    println!(
        "month: Longhorn calls per tick (the tick and its retention; the bench's own checks left out): {:.1} in all: {}",
        calls.iter().map(|(_, n)| n).sum::<f64>(),
        calls
            .iter()
            .map(|(op, n)| format!("{op} {n:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "month: manifest bundles in S3: {bundles} for {} live points",
        live_ids.len()
    );

    ns.delete().await;
    emu.shutdown().await;
    Ok(failures)
}
