//! Seeds a demo catalog through dr's typed catalog API: one policy (`wesago`,
//! namespace `gic-wesago`), three volumes, a recovery point every 15 minutes
//! for the last 24 hours, one of them partial and one failed.
//!
//! `cargo run --example seed_demo -- sqlite://demo.db`

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use dr::catalog::{BackupState, BackupUpdate, Catalog, NewBackup, PointState, Verification};
use dr::config::Config;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "sqlite://demo.db".into());
    let config = Config::parse(
        "policies:\n  - name: wesago\n    namespace: gic-wesago\n    selector: app.kubernetes.io/part-of=wesago\n",
        "demo",
    )?;
    let catalog = Catalog::open(&url.parse().map_err(anyhow::Error::msg)?).await?;
    let now = Utc::now();
    let policy = &config.policies[0];
    catalog.upsert_policy(&policy.into(), now).await?;
    let last_tick = now.duration_trunc(TimeDelta::minutes(15))?;
    let volumes = [
        ("pvc-3f1c0a9e-web-uploads", "web-uploads", 2_147_483_648i64),
        (
            "pvc-8d2e7b41-postgres-data",
            "data-postgres-0",
            10_737_418_240,
        ),
        ("pvc-c04f5a17-redis-data", "data-redis-0", 1_073_741_824),
    ];
    for i in (0..96).rev() {
        let tick: DateTime<Utc> = last_tick - TimeDelta::minutes(15 * i);
        let point = catalog.begin_point(&policy.name, tick, tick).await?;
        let mut states = Vec::new();
        let mut oldest_snapshot = None::<DateTime<Utc>>;
        for (v, (volume, pvc, size)) in volumes.iter().enumerate() {
            let b = catalog
                .record_backup(&NewBackup {
                    point_id: point.id,
                    volume: volume.parse()?,
                    pvc: Some((*pvc).into()),
                    snapshot_name: format!("dr-wesago-{}-{v}", tick.format("%Y%m%dt%H%M")),
                    requested_at: tick,
                })
                .await?;
            if b.state.is_terminal() {
                states.push(b.state);
                continue;
            }
            let snap = tick + TimeDelta::seconds(2 + v as i64);
            catalog
                .update_backup(
                    b.id,
                    &BackupUpdate {
                        state: Some(BackupState::BackingUp),
                        backup_name: Some(format!("backup-{:016x}", (i as u64) << 8 | v as u64)),
                        snapshot_at: Some(snap),
                        ..Default::default()
                    },
                )
                .await?;
            // Two points of the day went wrong: Redis failed once, everything once.
            let fails = (i == 40 && v == 2) || i == 70;
            let end = if fails {
                BackupUpdate {
                    state: Some(BackupState::Failed),
                    error: Some("backup target unreachable: connection reset".into()),
                    ..Default::default()
                }
            } else {
                BackupUpdate {
                    state: Some(BackupState::Completed),
                    progress: Some(100),
                    size_bytes: Some(*size),
                    completed_at: Some(snap + TimeDelta::seconds(40)),
                    backup_url: Some(format!(
                        "s3://dr@us-east-1/?backup=backup-{:016x}&volume={volume}",
                        (i as u64) << 8 | v as u64
                    )),
                    ..Default::default()
                }
            };
            let done = catalog.update_backup(b.id, &end).await?;
            if done.state == BackupState::Completed {
                catalog
                    .set_verification(b.id, Verification::Verified, snap + TimeDelta::seconds(45))
                    .await?;
            }
            states.push(done.state);
            oldest_snapshot = Some(oldest_snapshot.map_or(snap, |o| o.min(snap)));
        }
        let state = PointState::from_backups(&states);
        let current = catalog.point(point.id).await?;
        if current.state == PointState::Pending {
            let reason = (state != PointState::Complete).then_some("a backup failed");
            catalog
                .finish_point(
                    point.id,
                    state,
                    oldest_snapshot,
                    reason,
                    tick + TimeDelta::minutes(1),
                )
                .await?;
        }
    }
    println!("seeded {url}: policy wesago, 96 recovery points of 3 volumes ending {last_tick}");
    Ok(())
}
