//! The catalog: dr's record of policies, recovery points, backups, runs and
//! incidents, on SQLite (embedded default, WAL) or PostgreSQL. All of dr's SQL
//! lives in this module. Both databases get the same statements (`$N`
//! placeholders work on both) and their own migrations, applied at open.
//!
//! Every write is idempotent through a unique key: one recovery point per
//! (policy, tick), one backup per (point, volume), one step per (run, seq), and
//! one running run per target namespace.

mod types;

pub use types::*;

use crate::config::{CatalogUrl, PolicyConfig};
use crate::names::{Namespace, PolicyName, VolumeName};
use crate::span::Span;
use chrono::{DateTime, TimeZone, Utc};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};
use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// A failed catalog operation.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot open the catalog at {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("cannot apply the catalog migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("catalog {op} failed: {source}")]
    Query {
        op: &'static str,
        source: sqlx::Error,
    },
    #[error("unknown policy {name:?}; the catalog knows: {}", if known.is_empty() { "none (run `dr serve` or `dr config check` with a configuration to register policies)".to_owned() } else { known.join(", ") })]
    UnknownPolicy { name: String, known: Vec<String> },
    #[error("no {what} with id {id}")]
    NotFound { what: &'static str, id: i64 },
    #[error("{what} {id} cannot move from {from} to {to}")]
    Transition {
        what: &'static str,
        id: i64,
        from: String,
        to: String,
    },
    #[error(
        "namespace {namespace} already has a running {kind} (run {run}); wait for it, or resume it with the same command"
    )]
    TargetBusy {
        namespace: String,
        run: RunId,
        kind: RunKind,
    },
    #[error("incident {id} {why}")]
    Incident { id: IncidentId, why: String },
    #[error("the catalog holds a value dr cannot read: {what} = {value:?}")]
    Corrupt { what: &'static str, value: String },
}

impl CatalogError {
    /// Whether trying again later may succeed (the database was unreachable or busy).
    pub fn is_retryable(&self) -> bool {
        let transient = |e: &sqlx::Error| {
            matches!(
                e,
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed
            ) || e
                .as_database_error()
                .is_some_and(|d| d.message().contains("locked") || d.message().contains("busy"))
        };
        match self {
            CatalogError::Connect { source, .. } | CatalogError::Query { source, .. } => {
                transient(source)
            }
            _ => false,
        }
    }
}

type Result<T, E = CatalogError> = std::result::Result<T, E>;

fn q(op: &'static str) -> impl FnOnce(sqlx::Error) -> CatalogError {
    move |source| CatalogError::Query { op, source }
}

/// Which database is behind the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// An open, migrated catalog.
#[derive(Debug, Clone)]
pub struct Catalog {
    pool: AnyPool,
    backend: Backend,
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(what: &'static str, v: i64) -> Result<DateTime<Utc>> {
    Utc.timestamp_millis_opt(v)
        .single()
        .ok_or_else(|| CatalogError::Corrupt {
            what,
            value: v.to_string(),
        })
}

fn opt_ms(what: &'static str, v: Option<i64>) -> Result<Option<DateTime<Utc>>> {
    v.map(|v| from_ms(what, v)).transpose()
}

fn parse_col<T: FromStr>(what: &'static str, v: String) -> Result<T> {
    v.parse::<T>()
        .map_err(|_| CatalogError::Corrupt { what, value: v })
}

fn get<T>(row: &AnyRow, col: &'static str) -> Result<T>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(col).map_err(|source| CatalogError::Query {
        op: "decode",
        source,
    })
}

/// A query whose text is composed from this module's own constant pieces
/// (column lists, per-backend variants), never from input: values are always bound.
fn composed(sql: String) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
    sqlx::query(sqlx::AssertSqlSafe(sql))
}

const POINT_COLS: &str =
    "id, policy, tick_at, point_at, state, bundle_key, reason, created_at, finished_at, pruned_at";
const BACKUP_COLS: &str = "id, point_id, volume, pvc, snapshot_name, backup_name, backup_url, state, progress, size_bytes, snapshot_at, requested_at, completed_at, error, verification, verified_at, pruned_at, content_checksum";
const RUN_COLS: &str = "id, kind, policy, point_id, target_namespace, target_at, state, incident_id, started_at, finished_at, error, holder, heartbeat_at, summary";
const INCIDENT_COLS: &str = "id, policy, title, source, opened_at, resolved_at, note";

fn point_row(r: &AnyRow) -> Result<PointRecord> {
    Ok(PointRecord {
        id: PointId(get(r, "id")?),
        policy: parse_col("recovery_points.policy", get(r, "policy")?)?,
        tick_at: from_ms("recovery_points.tick_at", get(r, "tick_at")?)?,
        point_at: opt_ms("recovery_points.point_at", get(r, "point_at")?)?,
        state: parse_col("recovery_points.state", get(r, "state")?)?,
        bundle_key: get(r, "bundle_key")?,
        reason: get(r, "reason")?,
        created_at: from_ms("recovery_points.created_at", get(r, "created_at")?)?,
        finished_at: opt_ms("recovery_points.finished_at", get(r, "finished_at")?)?,
        pruned_at: opt_ms("recovery_points.pruned_at", get(r, "pruned_at")?)?,
    })
}

fn backup_row(r: &AnyRow) -> Result<BackupRecord> {
    Ok(BackupRecord {
        id: BackupId(get(r, "id")?),
        point_id: PointId(get(r, "point_id")?),
        volume: parse_col::<VolumeName>("backups.volume", get(r, "volume")?)?,
        pvc: get(r, "pvc")?,
        snapshot_name: get(r, "snapshot_name")?,
        backup_name: get(r, "backup_name")?,
        backup_url: get(r, "backup_url")?,
        state: parse_col("backups.state", get(r, "state")?)?,
        progress: get(r, "progress")?,
        size_bytes: get(r, "size_bytes")?,
        snapshot_at: opt_ms("backups.snapshot_at", get(r, "snapshot_at")?)?,
        requested_at: from_ms("backups.requested_at", get(r, "requested_at")?)?,
        completed_at: opt_ms("backups.completed_at", get(r, "completed_at")?)?,
        error: get(r, "error")?,
        verification: parse_col("backups.verification", get(r, "verification")?)?,
        verified_at: opt_ms("backups.verified_at", get(r, "verified_at")?)?,
        pruned_at: opt_ms("backups.pruned_at", get(r, "pruned_at")?)?,
        content_checksum: get(r, "content_checksum")?,
    })
}

fn run_row(r: &AnyRow) -> Result<RunRecord> {
    Ok(RunRecord {
        id: RunId(get(r, "id")?),
        kind: parse_col("runs.kind", get(r, "kind")?)?,
        policy: parse_col("runs.policy", get(r, "policy")?)?,
        point_id: get::<Option<i64>>(r, "point_id")?.map(PointId),
        target_namespace: parse_col::<Namespace>(
            "runs.target_namespace",
            get(r, "target_namespace")?,
        )?,
        target_at: opt_ms("runs.target_at", get(r, "target_at")?)?,
        state: parse_col("runs.state", get(r, "state")?)?,
        incident_id: get::<Option<i64>>(r, "incident_id")?.map(IncidentId),
        started_at: from_ms("runs.started_at", get(r, "started_at")?)?,
        finished_at: opt_ms("runs.finished_at", get(r, "finished_at")?)?,
        error: get(r, "error")?,
        holder: get(r, "holder")?,
        heartbeat_at: opt_ms("runs.heartbeat_at", get(r, "heartbeat_at")?)?,
        summary: get(r, "summary")?,
    })
}

fn incident_row(r: &AnyRow) -> Result<IncidentRecord> {
    Ok(IncidentRecord {
        id: IncidentId(get(r, "id")?),
        policy: get::<Option<String>>(r, "policy")?
            .map(|p| parse_col("incidents.policy", p))
            .transpose()?,
        title: get(r, "title")?,
        source: parse_col("incidents.source", get(r, "source")?)?,
        opened_at: from_ms("incidents.opened_at", get(r, "opened_at")?)?,
        resolved_at: opt_ms("incidents.resolved_at", get(r, "resolved_at")?)?,
        note: get(r, "note")?,
    })
}

/// Adds `mode=rwc` to a SQLite URL so the file is created when missing.
fn sqlite_url_creating(url: &str) -> String {
    if url.contains("mode=") || url.contains(":memory:") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

impl Catalog {
    /// Opens (creating a SQLite file if missing) and migrates the catalog.
    pub async fn open(url: &CatalogUrl) -> Result<Catalog> {
        sqlx::any::install_default_drivers();
        let (backend, connect_url) = if url.is_sqlite() {
            (Backend::Sqlite, sqlite_url_creating(url.as_str()))
        } else {
            (Backend::Postgres, url.as_str().to_owned())
        };
        // An in-memory SQLite database lives and dies with its connection:
        // one connection, never recycled, or tables vanish between queries.
        // A file gets one connection too: SQLite has one writer at a time,
        // and writers on several connections wait for each other in its busy
        // handler, which sleeps 1 to 100 ms per try; queued on one
        // connection, a tick's thousands of small writes each take well
        // under a millisecond. (Other processes still read beside it: WAL.)
        let memory = backend == Backend::Sqlite && url.as_str().contains(":memory:");
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite => 1,
                Backend::Postgres => 8,
            })
            .min_connections(u32::from(memory))
            .idle_timeout(if memory { None } else { Some(Duration::from_secs(600)) })
            .max_lifetime(if memory { None } else { Some(Duration::from_secs(1800)) })
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    if conn.backend_name().eq_ignore_ascii_case("sqlite") {
                        // WAL lets readers run beside the writer; NORMAL is durable in WAL mode
                        // up to the last checkpointed transaction and much faster.
                        conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;")
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&connect_url)
            .await
            .map_err(|source| CatalogError::Connect {
                url: url.redacted(),
                source,
            })?;
        match backend {
            Backend::Sqlite => {
                // SQLite has no migration lock: two processes opening a new
                // catalog at once (`dr serve` starting while `dr status`
                // runs) can both try the first migration, and one fails.
                // Each migration is one transaction, so trying again after
                // the other finished sees it applied.
                let mut attempt = 0;
                loop {
                    match SQLITE_MIGRATIONS.run(&pool).await {
                        Ok(()) => break,
                        Err(_) if attempt < 5 => {
                            attempt += 1;
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        Ok(Catalog { pool, backend })
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Cheap liveness check (for `/readyz`).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(q("ping"))?;
        Ok(())
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    // ---- policies -------------------------------------------------------

    /// Registers or updates a configured policy.
    pub async fn upsert_policy(&self, p: &PolicyConfig, now: DateTime<Utc>) -> Result<()> {
        sqlx::query(
            "INSERT INTO policies (name, namespace, selector, schedule, rpo_ms, rto_ms, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (name) DO UPDATE SET namespace = excluded.namespace,
               selector = excluded.selector, schedule = excluded.schedule,
               rpo_ms = excluded.rpo_ms, rto_ms = excluded.rto_ms, updated_at = excluded.updated_at",
        )
        .bind(p.name.as_str())
        .bind(p.namespace.as_str())
        .bind(p.selector.as_str())
        .bind(p.schedule.as_str())
        .bind(p.rpo.0.as_millis_i64())
        .bind(p.rto.0.as_millis_i64())
        .bind(ms(now))
        .execute(&self.pool)
        .await
        .map_err(q("upsert policy"))?;
        Ok(())
    }

    /// Every registered policy, by name.
    pub async fn policies(&self) -> Result<Vec<PolicyRecord>> {
        let rows = sqlx::query(
            "SELECT name, namespace, selector, schedule, rpo_ms, rto_ms FROM policies ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(q("list policies"))?;
        rows.iter()
            .map(|r| {
                Ok(PolicyRecord {
                    name: parse_col("policies.name", get(r, "name")?)?,
                    namespace: parse_col("policies.namespace", get(r, "namespace")?)?,
                    selector: get(r, "selector")?,
                    schedule: get(r, "schedule")?,
                    rpo: Span::from_millis(get::<i64>(r, "rpo_ms")?.max(0) as u64),
                    rto: Span::from_millis(get::<i64>(r, "rto_ms")?.max(0) as u64),
                })
            })
            .collect()
    }

    /// The named policy, or an error listing the known ones.
    pub async fn policy(&self, name: &str) -> Result<PolicyRecord> {
        let all = self.policies().await?;
        match all.iter().find(|p| p.name.as_str() == name) {
            Some(p) => Ok(p.clone()),
            None => Err(CatalogError::UnknownPolicy {
                name: name.to_owned(),
                known: all.iter().map(|p| p.name.to_string()).collect(),
            }),
        }
    }

    // ---- recovery points -------------------------------------------------

    /// The recovery point of (policy, tick), created `pending` if new. Calling it
    /// again for the same tick returns the same point.
    pub async fn begin_point(
        &self,
        policy: &PolicyName,
        tick_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<PointRecord> {
        sqlx::query(
            "INSERT INTO recovery_points (policy, tick_at, state, created_at)
             VALUES ($1, $2, 'pending', $3) ON CONFLICT (policy, tick_at) DO NOTHING",
        )
        .bind(policy.as_str())
        .bind(ms(tick_at))
        .bind(ms(now))
        .execute(&self.pool)
        .await
        .map_err(q("begin recovery point"))?;
        let row = composed(format!(
            "SELECT {POINT_COLS} FROM recovery_points WHERE policy = $1 AND tick_at = $2"
        ))
        .bind(policy.as_str())
        .bind(ms(tick_at))
        .fetch_one(&self.pool)
        .await
        .map_err(q("read recovery point"))?;
        point_row(&row)
    }

    /// Records that a point's manifest bundle is stored under `key`.
    pub async fn set_bundle(&self, id: PointId, key: &str) -> Result<()> {
        let done = sqlx::query("UPDATE recovery_points SET bundle_key = $1 WHERE id = $2")
            .bind(key)
            .bind(id.0)
            .execute(&self.pool)
            .await
            .map_err(q("set bundle"))?;
        if done.rows_affected() == 0 {
            return Err(CatalogError::NotFound {
                what: "recovery point",
                id: id.0,
            });
        }
        Ok(())
    }

    /// Moves a point to its final (or pruned) state.
    pub async fn finish_point(
        &self,
        id: PointId,
        state: PointState,
        point_at: Option<DateTime<Utc>>,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<PointRecord> {
        let current = self.point(id).await?;
        if !current.state.can_move_to(state) {
            return Err(CatalogError::Transition {
                what: "recovery point",
                id: id.0,
                from: current.state.to_string(),
                to: state.to_string(),
            });
        }
        let pruned_at = (state == PointState::Pruned).then_some(ms(now));
        let finished_at = (state != PointState::Pruned).then_some(ms(now));
        let done = sqlx::query(
            "UPDATE recovery_points SET state = $1,
               point_at = COALESCE($2, point_at), reason = COALESCE($3, reason),
               finished_at = COALESCE(finished_at, $4), pruned_at = COALESCE($5, pruned_at)
             WHERE id = $6 AND state = $7",
        )
        .bind(state.as_str())
        .bind(point_at.map(ms))
        .bind(reason)
        .bind(finished_at)
        .bind(pruned_at)
        .bind(id.0)
        .bind(current.state.as_str())
        .execute(&self.pool)
        .await
        .map_err(q("finish recovery point"))?;
        if done.rows_affected() == 0 {
            // Someone else moved it meanwhile: check the rule against what is there now.
            return Box::pin(self.finish_point(id, state, point_at, reason, now)).await;
        }
        self.point(id).await
    }

    /// One recovery point.
    pub async fn point(&self, id: PointId) -> Result<PointRecord> {
        let row = composed(format!(
            "SELECT {POINT_COLS} FROM recovery_points WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(q("read recovery point"))?;
        match row {
            Some(r) => point_row(&r),
            None => Err(CatalogError::NotFound {
                what: "recovery point",
                id: id.0,
            }),
        }
    }

    /// Recovery points, newest tick first, with their backup counts.
    pub async fn list_points(
        &self,
        policy: Option<&PolicyName>,
        limit: i64,
    ) -> Result<Vec<PointSummary>> {
        let sql = format!(
            "SELECT {cols},
               (SELECT COUNT(*) FROM backups b WHERE b.point_id = p.id) AS n_backups,
               (SELECT COUNT(*) FROM backups b WHERE b.point_id = p.id AND b.state = 'completed') AS n_completed,
               (SELECT COALESCE(SUM(b.size_bytes), 0) FROM backups b WHERE b.point_id = p.id) AS total_size
             FROM recovery_points p
             WHERE ($1 IS NULL OR p.policy = $1)
             ORDER BY p.tick_at DESC, p.id DESC LIMIT $2",
            cols = POINT_COLS
                .split(", ")
                .map(|c| format!("p.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let sql = if self.backend == Backend::Postgres {
            // PostgreSQL needs the parameter's type where it cannot infer it,
            // and SUM(bigint) is numeric there.
            sql.replace("$1 IS NULL", "$1::text IS NULL").replace(
                "COALESCE(SUM(b.size_bytes), 0)",
                "COALESCE(SUM(b.size_bytes), 0)::bigint",
            )
        } else {
            sql
        };
        let rows = composed(sql)
            .bind(policy.map(|p| p.as_str().to_owned()))
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(q("list recovery points"))?;
        rows.iter()
            .map(|r| {
                Ok(PointSummary {
                    point: point_row(r)?,
                    backups: get(r, "n_backups")?,
                    completed: get(r, "n_completed")?,
                    size_bytes: get(r, "total_size")?,
                })
            })
            .collect()
    }

    /// The planning query: the newest complete point of `policy` at or before
    /// `t` (an index seek on `recovery_points_plan`).
    pub async fn newest_complete_at_or_before(
        &self,
        policy: &PolicyName,
        t: DateTime<Utc>,
    ) -> Result<Option<PointRecord>> {
        self.seek(
            "newest complete point at or before",
            "point_at <= $2 ORDER BY point_at DESC",
            policy,
            t,
        )
        .await
    }

    /// The oldest complete point of `policy` strictly after `t` (the nearest
    /// candidate on the other side of a refused target).
    pub async fn oldest_complete_after(
        &self,
        policy: &PolicyName,
        t: DateTime<Utc>,
    ) -> Result<Option<PointRecord>> {
        self.seek(
            "oldest complete point after",
            "point_at > $2 ORDER BY point_at ASC",
            policy,
            t,
        )
        .await
    }

    /// The newest partial point of `policy` at or before `t` (`--allow-partial`).
    pub async fn newest_partial_at_or_before(
        &self,
        policy: &PolicyName,
        t: DateTime<Utc>,
    ) -> Result<Option<PointRecord>> {
        self.seek_state(
            "newest partial point at or before",
            "partial",
            "point_at <= $2 ORDER BY point_at DESC",
            policy,
            t,
        )
        .await
    }

    async fn seek(
        &self,
        op: &'static str,
        tail: &str,
        policy: &PolicyName,
        t: DateTime<Utc>,
    ) -> Result<Option<PointRecord>> {
        self.seek_state(op, "complete", tail, policy, t).await
    }

    async fn seek_state(
        &self,
        op: &'static str,
        state: &'static str,
        tail: &str,
        policy: &PolicyName,
        t: DateTime<Utc>,
    ) -> Result<Option<PointRecord>> {
        let row = composed(format!(
            "SELECT {POINT_COLS} FROM recovery_points
             WHERE policy = $1 AND state = '{state}' AND {tail} LIMIT 1"
        ))
        .bind(policy.as_str())
        .bind(ms(t))
        .fetch_optional(&self.pool)
        .await
        .map_err(q(op))?;
        row.as_ref().map(point_row).transpose()
    }

    /// The recoverable window: oldest and newest complete points (two index seeks).
    pub async fn window(&self, policy: &PolicyName) -> Result<Option<Window>> {
        let row = sqlx::query(
            "SELECT
               (SELECT point_at FROM recovery_points WHERE policy = $1 AND state = 'complete'
                  AND point_at IS NOT NULL ORDER BY point_at ASC LIMIT 1) AS oldest,
               (SELECT point_at FROM recovery_points WHERE policy = $1 AND state = 'complete'
                  AND point_at IS NOT NULL ORDER BY point_at DESC LIMIT 1) AS newest",
        )
        .bind(policy.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(q("recoverable window"))?;
        let oldest = opt_ms("window.oldest", get(&row, "oldest")?)?;
        let newest = opt_ms("window.newest", get(&row, "newest")?)?;
        Ok(match (oldest, newest) {
            (Some(oldest), Some(newest)) => Some(Window { oldest, newest }),
            _ => None,
        })
    }

    // ---- backups -----------------------------------------------------------

    /// Records a backup about to be requested; returns the existing row if one
    /// was already recorded for this (point, volume).
    pub async fn record_backup(&self, b: &NewBackup) -> Result<BackupRecord> {
        sqlx::query(
            "INSERT INTO backups (point_id, volume, pvc, snapshot_name, state, requested_at)
             VALUES ($1, $2, $3, $4, 'pending', $5) ON CONFLICT (point_id, volume) DO NOTHING",
        )
        .bind(b.point_id.0)
        .bind(b.volume.as_str())
        .bind(b.pvc.as_deref())
        .bind(b.snapshot_name.as_str())
        .bind(ms(b.requested_at))
        .execute(&self.pool)
        .await
        .map_err(q("record backup"))?;
        let row = composed(format!(
            "SELECT {BACKUP_COLS} FROM backups WHERE point_id = $1 AND volume = $2"
        ))
        .bind(b.point_id.0)
        .bind(b.volume.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(q("read backup"))?;
        backup_row(&row)
    }

    /// Records many backups about to be requested, in one transaction and a
    /// few multi-row statements; existing rows are kept. Returns every row of
    /// the point for those volumes.
    pub async fn record_backups(&self, bs: &[NewBackup]) -> Result<Vec<BackupRecord>> {
        let Some(first) = bs.first() else {
            return Ok(Vec::new());
        };
        let point = first.point_id;
        let mut tx = self.pool.begin().await.map_err(q("record backups"))?;
        for chunk in bs.chunks(100) {
            let values: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let b = i * 5;
                    format!(
                        "(${}, ${}, ${}, ${}, 'pending', ${})",
                        b + 1,
                        b + 2,
                        b + 3,
                        b + 4,
                        b + 5
                    )
                })
                .collect();
            let mut query = composed(format!(
                "INSERT INTO backups (point_id, volume, pvc, snapshot_name, state, requested_at)
                 VALUES {} ON CONFLICT (point_id, volume) DO NOTHING",
                values.join(", ")
            ));
            for b in chunk {
                query = query
                    .bind(b.point_id.0)
                    .bind(b.volume.as_str().to_owned())
                    .bind(b.pvc.clone())
                    .bind(b.snapshot_name.clone())
                    .bind(ms(b.requested_at));
            }
            query.execute(&mut *tx).await.map_err(q("record backups"))?;
        }
        tx.commit().await.map_err(q("record backups"))?;
        let wanted: std::collections::HashSet<&str> =
            bs.iter().map(|b| b.volume.as_str()).collect();
        Ok(self
            .backups_of(point)
            .await?
            .into_iter()
            .filter(|r| wanted.contains(r.volume.as_str()))
            .collect())
    }

    /// One backup.
    pub async fn backup(&self, id: BackupId) -> Result<BackupRecord> {
        let row = composed(format!("SELECT {BACKUP_COLS} FROM backups WHERE id = $1"))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("read backup"))?;
        match row {
            Some(r) => backup_row(&r),
            None => Err(CatalogError::NotFound {
                what: "backup",
                id: id.0,
            }),
        }
    }

    /// Applies an update, refusing moves the backup lifecycle does not allow.
    /// One statement: the row changes only if its current state may move to
    /// the new one (the states that may are listed in the WHERE clause), so
    /// concurrent updates cannot skip a rule; the row is read back only to
    /// explain a refusal.
    pub async fn update_backup(&self, id: BackupId, u: &BackupUpdate) -> Result<BackupRecord> {
        let allowed = match u.state {
            Some(to) => {
                let from: Vec<String> = BackupState::ALL
                    .iter()
                    .filter(|s| s.can_move_to(to))
                    .map(|s| format!("'{}'", s.as_str()))
                    .collect();
                format!("AND state IN ({})", from.join(", "))
            }
            None => String::new(),
        };
        let row = composed(format!(
            "UPDATE backups SET state = COALESCE($1, state),
               backup_name = COALESCE($2, backup_name), backup_url = COALESCE($3, backup_url),
               progress = COALESCE($4, progress), size_bytes = COALESCE($5, size_bytes),
               snapshot_at = COALESCE($6, snapshot_at), completed_at = COALESCE($7, completed_at),
               error = COALESCE($8, error)
             WHERE id = $9 {allowed} RETURNING {BACKUP_COLS}"
        ))
        .bind(u.state.map(|s| s.as_str()))
        .bind(u.backup_name.as_deref())
        .bind(u.backup_url.as_deref())
        .bind(u.progress.map(|p| p.clamp(0, 100)))
        .bind(u.size_bytes)
        .bind(u.snapshot_at.map(ms))
        .bind(u.completed_at.map(ms))
        .bind(u.error.as_deref())
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(q("update backup"))?;
        match row {
            Some(r) => backup_row(&r),
            None => {
                let current = self.backup(id).await?;
                Err(CatalogError::Transition {
                    what: "backup",
                    id: id.0,
                    from: current.state.to_string(),
                    to: u.state.map(|s| s.to_string()).unwrap_or_default(),
                })
            }
        }
    }

    /// Records the outcome of checking a backup's objects in the store.
    pub async fn set_verification(
        &self,
        id: BackupId,
        v: Verification,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let done = sqlx::query(
            "UPDATE backups SET verification = $1, verified_at = $2 WHERE id = $3 AND state = 'completed'",
        )
        .bind(v.as_str())
        .bind(ms(now))
        .bind(id.0)
        .execute(&self.pool)
        .await
        .map_err(q("set verification"))?;
        if done.rows_affected() == 0 {
            let b = self.backup(id).await?;
            return Err(CatalogError::Transition {
                what: "backup",
                id: id.0,
                from: b.state.to_string(),
                to: format!("verification {v} (only completed backups are verified)"),
            });
        }
        Ok(())
    }

    /// The backups of a point, by volume name.
    pub async fn backups_of(&self, point: PointId) -> Result<Vec<BackupRecord>> {
        let rows = composed(format!(
            "SELECT {BACKUP_COLS} FROM backups WHERE point_id = $1 ORDER BY volume"
        ))
        .bind(point.0)
        .fetch_all(&self.pool)
        .await
        .map_err(q("list backups"))?;
        rows.iter().map(backup_row).collect()
    }

    /// Backups not yet in a terminal state (to adopt after a restart).
    pub async fn unfinished_backups(&self) -> Result<Vec<BackupRecord>> {
        let rows = composed(format!(
            "SELECT {BACKUP_COLS} FROM backups
             WHERE state IN ('pending', 'snapshotting', 'backing_up') ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(q("list unfinished backups"))?;
        rows.iter().map(backup_row).collect()
    }

    // ---- runs ------------------------------------------------------------------

    /// Starts a run, or refuses if the target namespace has a running one.
    pub async fn start_run(&self, r: &NewRun) -> Result<RunRecord> {
        if let Some(busy) = self.running_run(&r.target_namespace).await? {
            return Err(CatalogError::TargetBusy {
                namespace: busy.target_namespace.to_string(),
                run: busy.id,
                kind: busy.kind,
            });
        }
        let inserted = sqlx::query(
            "INSERT INTO runs (kind, policy, point_id, target_namespace, target_at, state, incident_id, started_at, holder, heartbeat_at)
             VALUES ($1, $2, $3, $4, $5, 'running', $6, $7, $8, $7) RETURNING id",
        )
        .bind(r.kind.as_str())
        .bind(r.policy.as_str())
        .bind(r.point_id.map(|p| p.0))
        .bind(r.target_namespace.as_str())
        .bind(r.target_at.map(ms))
        .bind(r.incident_id.map(|i| i.0))
        .bind(ms(r.started_at))
        .bind(r.holder.as_str())
        .fetch_one(&self.pool)
        .await;
        match inserted {
            Ok(row) => self.run(RunId(get(&row, "id")?)).await,
            Err(e)
                if e.as_database_error()
                    .is_some_and(|d| d.is_unique_violation()) =>
            {
                // Lost a race with another starter: report who holds the target.
                match self.running_run(&r.target_namespace).await? {
                    Some(busy) => Err(CatalogError::TargetBusy {
                        namespace: busy.target_namespace.to_string(),
                        run: busy.id,
                        kind: busy.kind,
                    }),
                    None => Err(CatalogError::Query {
                        op: "start run",
                        source: e,
                    }),
                }
            }
            Err(e) => Err(CatalogError::Query {
                op: "start run",
                source: e,
            }),
        }
    }

    /// Says that `holder` still runs `run`; false if the run is no longer
    /// running or another process took it over.
    pub async fn heartbeat(&self, run: RunId, holder: &str, now: DateTime<Utc>) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE runs SET heartbeat_at = $1 WHERE id = $2 AND holder = $3 AND state = 'running'",
        )
        .bind(ms(now))
        .bind(run.0)
        .bind(holder)
        .execute(&self.pool)
        .await
        .map_err(q("run heartbeat"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Takes over a running run whose holder has not been heard of since
    /// `stale_before` (its process died): compare-and-swap on the heartbeat,
    /// so of two processes resuming at once exactly one wins.
    pub async fn take_over(
        &self,
        run: &RunRecord,
        holder: &str,
        stale_before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let seen = run.heartbeat_at.map(ms);
        let done = sqlx::query(
            "UPDATE runs SET holder = $1, heartbeat_at = $2
             WHERE id = $3 AND state = 'running' AND COALESCE(heartbeat_at, 0) = COALESCE($4, 0)
               AND COALESCE(heartbeat_at, 0) < $5",
        )
        .bind(holder)
        .bind(ms(now))
        .bind(run.id.0)
        .bind(seen)
        .bind(ms(stale_before))
        .execute(&self.pool)
        .await
        .map_err(q("take over run"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Stores a run's summary document (JSON).
    pub async fn set_run_summary(&self, run: RunId, summary: &str) -> Result<()> {
        sqlx::query("UPDATE runs SET summary = $1 WHERE id = $2")
            .bind(summary)
            .bind(run.0)
            .execute(&self.pool)
            .await
            .map_err(q("store run summary"))?;
        Ok(())
    }

    /// The running run of a target namespace, if any.
    pub async fn running_run(&self, ns: &Namespace) -> Result<Option<RunRecord>> {
        let row = composed(format!(
            "SELECT {RUN_COLS} FROM runs WHERE target_namespace = $1 AND state = 'running'"
        ))
        .bind(ns.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(q("read running run"))?;
        row.as_ref().map(run_row).transpose()
    }

    /// One run.
    pub async fn run(&self, id: RunId) -> Result<RunRecord> {
        let row = composed(format!("SELECT {RUN_COLS} FROM runs WHERE id = $1"))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("read run"))?;
        match row {
            Some(r) => run_row(&r),
            None => Err(CatalogError::NotFound {
                what: "run",
                id: id.0,
            }),
        }
    }

    /// Runs, newest first.
    pub async fn list_runs(
        &self,
        kind: Option<RunKind>,
        policy: Option<&PolicyName>,
        limit: i64,
    ) -> Result<Vec<RunRecord>> {
        let mut sql = format!(
            "SELECT {RUN_COLS} FROM runs WHERE ($1 IS NULL OR kind = $1) AND ($2 IS NULL OR policy = $2)
             ORDER BY started_at DESC, id DESC LIMIT $3"
        );
        if self.backend == Backend::Postgres {
            sql = sql
                .replace("$1 IS NULL", "$1::text IS NULL")
                .replace("$2 IS NULL", "$2::text IS NULL");
        }
        let rows = composed(sql)
            .bind(kind.map(|k| k.as_str().to_owned()))
            .bind(policy.map(|p| p.as_str().to_owned()))
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(q("list runs"))?;
        rows.iter().map(run_row).collect()
    }

    /// Ends a run.
    pub async fn finish_run(
        &self,
        id: RunId,
        state: RunState,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<RunRecord> {
        let current = self.run(id).await?;
        if !current.state.can_move_to(state) {
            return Err(CatalogError::Transition {
                what: "run",
                id: id.0,
                from: current.state.to_string(),
                to: state.to_string(),
            });
        }
        sqlx::query(
            "UPDATE runs SET state = $1, error = COALESCE($2, error), finished_at = COALESCE(finished_at, $3)
             WHERE id = $4 AND state = 'running'",
        )
        .bind(state.as_str())
        .bind(error)
        .bind(ms(now))
        .bind(id.0)
        .execute(&self.pool)
        .await
        .map_err(q("finish run"))?;
        self.run(id).await
    }

    /// Writes a step's current record (keyed by run and seq), refusing moves
    /// the step lifecycle does not allow.
    pub async fn record_step(&self, run: RunId, s: &StepRecord) -> Result<()> {
        let existing = self.steps(run).await?.into_iter().find(|e| e.seq == s.seq);
        if let Some(e) = &existing
            && !e.state.can_move_to(s.state)
        {
            return Err(CatalogError::Transition {
                what: "step",
                id: s.seq,
                from: e.state.to_string(),
                to: s.state.to_string(),
            });
        }
        sqlx::query(
            "INSERT INTO run_steps (run_id, seq, stage, step, state, budget_ms, started_at, finished_at, detail)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (run_id, seq) DO UPDATE SET stage = excluded.stage, step = excluded.step,
               state = excluded.state, budget_ms = excluded.budget_ms,
               started_at = COALESCE(excluded.started_at, run_steps.started_at),
               finished_at = excluded.finished_at, detail = COALESCE(excluded.detail, run_steps.detail)",
        )
        .bind(run.0)
        .bind(s.seq)
        .bind(s.stage.as_str())
        .bind(s.step.as_str())
        .bind(s.state.as_str())
        .bind(s.budget.map(|b| b.as_millis_i64()))
        .bind(s.started_at.map(ms))
        .bind(s.finished_at.map(ms))
        .bind(s.detail.as_deref())
        .execute(&self.pool)
        .await
        .map_err(q("record step"))?;
        Ok(())
    }

    /// A run's steps in order.
    pub async fn steps(&self, run: RunId) -> Result<Vec<StepRecord>> {
        let rows = sqlx::query(
            "SELECT seq, stage, step, state, budget_ms, started_at, finished_at, detail
             FROM run_steps WHERE run_id = $1 ORDER BY seq",
        )
        .bind(run.0)
        .fetch_all(&self.pool)
        .await
        .map_err(q("list steps"))?;
        rows.iter()
            .map(|r| {
                Ok(StepRecord {
                    seq: get(r, "seq")?,
                    stage: get(r, "stage")?,
                    step: get(r, "step")?,
                    state: parse_col("run_steps.state", get(r, "state")?)?,
                    budget: get::<Option<i64>>(r, "budget_ms")?
                        .map(|v| Span::from_millis(v.max(0) as u64)),
                    started_at: opt_ms("run_steps.started_at", get(r, "started_at")?)?,
                    finished_at: opt_ms("run_steps.finished_at", get(r, "finished_at")?)?,
                    detail: get(r, "detail")?,
                })
            })
            .collect()
    }

    // ---- incidents -----------------------------------------------------------

    /// Opens an incident at `at` (which may be in the past).
    pub async fn open_incident(
        &self,
        policy: Option<&PolicyName>,
        title: &str,
        source: IncidentSource,
        at: DateTime<Utc>,
    ) -> Result<IncidentRecord> {
        if let Some(p) = policy {
            self.policy(p.as_str()).await?;
        }
        let row = sqlx::query(
            "INSERT INTO incidents (policy, title, source, opened_at) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(policy.map(|p| p.as_str().to_owned()))
        .bind(title)
        .bind(source.as_str())
        .bind(ms(at))
        .fetch_one(&self.pool)
        .await
        .map_err(q("open incident"))?;
        self.incident(IncidentId(get(&row, "id")?)).await
    }

    /// One incident.
    pub async fn incident(&self, id: IncidentId) -> Result<IncidentRecord> {
        let row = composed(format!(
            "SELECT {INCIDENT_COLS} FROM incidents WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(q("read incident"))?;
        match row {
            Some(r) => incident_row(&r),
            None => Err(CatalogError::NotFound {
                what: "incident",
                id: id.0,
            }),
        }
    }

    /// Resolves an open incident at `at`, which must not precede its opening.
    pub async fn resolve_incident(
        &self,
        id: IncidentId,
        at: DateTime<Utc>,
        note: Option<&str>,
    ) -> Result<IncidentRecord> {
        let inc = self.incident(id).await?;
        if let Some(r) = inc.resolved_at {
            return Err(CatalogError::Incident {
                id,
                why: format!("was already resolved at {}", crate::timespec::fmt_time(r)),
            });
        }
        if at < inc.opened_at {
            return Err(CatalogError::Incident {
                id,
                why: format!(
                    "opened at {}; it cannot be resolved earlier, at {}",
                    crate::timespec::fmt_time(inc.opened_at),
                    crate::timespec::fmt_time(at)
                ),
            });
        }
        sqlx::query(
            "UPDATE incidents SET resolved_at = $1, note = COALESCE($2, note) WHERE id = $3 AND resolved_at IS NULL",
        )
        .bind(ms(at))
        .bind(note)
        .bind(id.0)
        .execute(&self.pool)
        .await
        .map_err(q("resolve incident"))?;
        self.incident(id).await
    }

    /// Incidents, newest first; `open_only` keeps the unresolved ones.
    pub async fn list_incidents(
        &self,
        policy: Option<&PolicyName>,
        open_only: bool,
        limit: i64,
    ) -> Result<Vec<IncidentRecord>> {
        let mut sql = format!(
            "SELECT {INCIDENT_COLS} FROM incidents
             WHERE ($1 IS NULL OR policy = $1) AND ($2 = 0 OR resolved_at IS NULL)
             ORDER BY opened_at DESC, id DESC LIMIT $3"
        );
        if self.backend == Backend::Postgres {
            sql = sql.replace("$1 IS NULL", "$1::text IS NULL");
        }
        let rows = composed(sql)
            .bind(policy.map(|p| p.as_str().to_owned()))
            .bind(i64::from(open_only))
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(q("list incidents"))?;
        rows.iter().map(incident_row).collect()
    }

    // ---- ticks -------------------------------------------------------------

    /// Records what became of a tick; the first record of a tick wins, so a
    /// tick recorded as `ran` is never turned into `missed` by a restart.
    pub async fn record_tick(
        &self,
        policy: &PolicyName,
        tick_at: DateTime<Utc>,
        outcome: TickOutcome,
        point: Option<PointId>,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO ticks (policy, tick_at, outcome, point_id, reason, recorded_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (policy, tick_at) DO NOTHING",
        )
        .bind(policy.as_str())
        .bind(ms(tick_at))
        .bind(outcome.as_str())
        .bind(point.map(|p| p.0))
        .bind(reason)
        .bind(ms(now))
        .execute(&self.pool)
        .await
        .map_err(q("record tick"))?;
        Ok(())
    }

    /// A policy's ticks, newest first.
    pub async fn ticks(&self, policy: &PolicyName, limit: i64) -> Result<Vec<TickRecord>> {
        let rows = sqlx::query(
            "SELECT policy, tick_at, outcome, point_id, reason, recorded_at FROM ticks
             WHERE policy = $1 ORDER BY tick_at DESC LIMIT $2",
        )
        .bind(policy.as_str())
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(q("list ticks"))?;
        rows.iter()
            .map(|r| {
                Ok(TickRecord {
                    policy: parse_col("ticks.policy", get(r, "policy")?)?,
                    tick_at: from_ms("ticks.tick_at", get(r, "tick_at")?)?,
                    outcome: parse_col("ticks.outcome", get(r, "outcome")?)?,
                    point_id: get::<Option<i64>>(r, "point_id")?.map(PointId),
                    reason: get(r, "reason")?,
                    recorded_at: from_ms("ticks.recorded_at", get(r, "recorded_at")?)?,
                })
            })
            .collect()
    }

    /// The newest complete point all of whose backups were verified in the
    /// store: what the RPO is measured from.
    pub async fn newest_verified_point(&self, policy: &PolicyName) -> Result<Option<PointRecord>> {
        let row = composed(format!(
            "SELECT {POINT_COLS} FROM recovery_points p
             WHERE p.policy = $1 AND p.state = 'complete' AND p.point_at IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM backups b WHERE b.point_id = p.id
                               AND b.verification <> 'verified')
             ORDER BY p.point_at DESC LIMIT 1"
        ))
        .bind(policy.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(q("newest verified point"))?;
        row.as_ref().map(point_row).transpose()
    }

    /// Records what the content probe said of a backup's volume before its snapshot.
    pub async fn set_content_checksum(&self, id: BackupId, checksum: &str) -> Result<()> {
        sqlx::query("UPDATE backups SET content_checksum = $1 WHERE id = $2")
            .bind(checksum)
            .bind(id.0)
            .execute(&self.pool)
            .await
            .map_err(q("record content checksum"))?;
        Ok(())
    }

    /// Every complete point of `policy` whose backups were all verified (pruned
    /// ones too: they counted while they existed), as (point time, time it
    /// became available), by availability.
    pub async fn verified_point_times(
        &self,
        policy: &PolicyName,
    ) -> Result<Vec<(DateTime<Utc>, DateTime<Utc>)>> {
        let rows = sqlx::query(
            "SELECT p.point_at, COALESCE(p.finished_at, p.point_at) AS available_at
             FROM recovery_points p
             WHERE p.policy = $1 AND p.state = 'complete' AND p.point_at IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM backups b WHERE b.point_id = p.id
                               AND b.verification <> 'verified')
             ORDER BY available_at, p.point_at",
        )
        .bind(policy.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(q("verified point times"))?;
        rows.iter()
            .map(|r| {
                Ok((
                    from_ms("recovery_points.point_at", get(r, "point_at")?)?,
                    from_ms("recovery_points.finished_at", get(r, "available_at")?)?,
                ))
            })
            .collect()
    }

    /// How many ticks of `policy` in [since, until) had each outcome, and
    /// how many of its points in that span ended in each state.
    pub async fn outcome_counts(
        &self,
        policy: &PolicyName,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<(BTreeMap<String, i64>, BTreeMap<String, i64>)> {
        let ticks = sqlx::query(
            "SELECT outcome, COUNT(*) AS n FROM ticks
             WHERE policy = $1 AND tick_at >= $2 AND tick_at < $3 GROUP BY outcome",
        )
        .bind(policy.as_str())
        .bind(ms(since))
        .bind(ms(until))
        .fetch_all(&self.pool)
        .await
        .map_err(q("count ticks"))?;
        let points = sqlx::query(
            "SELECT state, COUNT(*) AS n FROM recovery_points
             WHERE policy = $1 AND tick_at >= $2 AND tick_at < $3 GROUP BY state",
        )
        .bind(policy.as_str())
        .bind(ms(since))
        .bind(ms(until))
        .fetch_all(&self.pool)
        .await
        .map_err(q("count points"))?;
        fn fold(rows: &[AnyRow], col: &'static str) -> Result<BTreeMap<String, i64>> {
            rows.iter()
                .map(|r| Ok((get::<String>(r, col)?, get::<i64>(r, "n")?)))
                .collect()
        }
        Ok((fold(&ticks, "outcome")?, fold(&points, "state")?))
    }

    /// Points still `pending` (a tick interrupted by a crash), oldest first.
    pub async fn pending_points(&self) -> Result<Vec<PointRecord>> {
        let rows = composed(format!(
            "SELECT {POINT_COLS} FROM recovery_points WHERE state = 'pending' ORDER BY tick_at"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(q("list pending points"))?;
        rows.iter().map(point_row).collect()
    }

    /// Every point of a policy not yet pruned, newest first (retention's input).
    pub async fn live_points(&self, policy: &PolicyName) -> Result<Vec<PointRecord>> {
        let rows = composed(format!(
            "SELECT {POINT_COLS} FROM recovery_points
             WHERE policy = $1 AND state <> 'pruned' ORDER BY tick_at DESC"
        ))
        .bind(policy.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(q("list live points"))?;
        rows.iter().map(point_row).collect()
    }

    // ---- bulk seeding (benchmarks and demos) -----------------------------------

    /// Fills the catalog with a synthetic history, generated inside the
    /// database: `points` complete recovery points of `policy`, one every
    /// `every`, ending at `last`, each with `volumes` completed backups.
    /// For benchmarks and demos; production rows only come from ticks.
    #[doc(hidden)]
    pub async fn seed_synthetic(
        &self,
        policy: &PolicyName,
        points: i64,
        volumes: i64,
        last: DateTime<Utc>,
        every: Span,
    ) -> Result<()> {
        let step = every.as_millis_i64();
        let first = ms(last) - step * (points - 1);
        let (series_points, series_vols) = match self.backend {
            Backend::Sqlite => (
                "WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i + 1 < $2)",
                "WITH RECURSIVE v(j) AS (SELECT 0 UNION ALL SELECT j + 1 FROM v WHERE j + 1 < $2)",
            ),
            Backend::Postgres => (
                "WITH s(i) AS (SELECT generate_series(0, $2 - 1))",
                "WITH v(j) AS (SELECT generate_series(0, $2 - 1))",
            ),
        };
        let mut tx = self.pool.begin().await.map_err(q("seed"))?;
        composed(format!(
            "{series_points}
             INSERT INTO recovery_points (policy, tick_at, point_at, state, created_at, finished_at)
             SELECT $1, $3 + i * $4, $3 + i * $4 - 1000, 'complete', $3 + i * $4, $3 + i * $4 + 60000 FROM s
             WHERE true ON CONFLICT (policy, tick_at) DO NOTHING"
        ))
        .bind(policy.as_str())
        .bind(points)
        .bind(first)
        .bind(step)
        .execute(&mut *tx)
        .await
        .map_err(q("seed points"))?;
        composed(format!(
            "{series_vols}
             INSERT INTO backups (point_id, volume, pvc, snapshot_name, backup_name, backup_url, state,
                                  progress, size_bytes, snapshot_at, requested_at, completed_at, verification)
             SELECT p.id, 'pvc-vol-' || CAST(v.j AS TEXT), 'data-' || CAST(v.j AS TEXT),
                    'dr-' || CAST(p.id AS TEXT) || '-' || CAST(v.j AS TEXT),
                    'backup-' || CAST(p.id AS TEXT) || '-' || CAST(v.j AS TEXT),
                    's3://dr@us-east-1/?backup=backup-' || CAST(p.id AS TEXT) || '-' || CAST(v.j AS TEXT) || '&volume=pvc-vol-' || CAST(v.j AS TEXT),
                    'completed', 100, 1073741824, p.point_at, p.tick_at, p.finished_at, 'verified'
             FROM recovery_points p CROSS JOIN v
             WHERE p.policy = $1 AND p.tick_at >= $3
             ON CONFLICT (point_id, volume) DO NOTHING"
        ))
        .bind(policy.as_str())
        .bind(volumes)
        .bind(first)
        .execute(&mut *tx)
        .await
        .map_err(q("seed backups"))?;
        tx.commit().await.map_err(q("seed"))?;
        if self.backend == Backend::Sqlite {
            sqlx::query("ANALYZE")
                .execute(&self.pool)
                .await
                .map_err(q("analyze"))?;
        } else {
            sqlx::query("ANALYZE recovery_points")
                .execute(&self.pool)
                .await
                .map_err(q("analyze"))?;
            sqlx::query("ANALYZE backups")
                .execute(&self.pool)
                .await
                .map_err(q("analyze"))?;
        }
        Ok(())
    }

    /// The database's plan for the planning query, for tests that prove it is
    /// an index seek.
    #[doc(hidden)]
    pub async fn explain_planning_query(&self, policy: &PolicyName) -> Result<String> {
        let sql = format!(
            "SELECT {POINT_COLS} FROM recovery_points
             WHERE policy = $1 AND state = 'complete' AND point_at <= $2 ORDER BY point_at DESC LIMIT 1"
        );
        let (prefix, col) = match self.backend {
            Backend::Sqlite => ("EXPLAIN QUERY PLAN ", "detail"),
            Backend::Postgres => ("EXPLAIN ", "QUERY PLAN"),
        };
        let mut conn = self.pool.acquire().await.map_err(q("explain"))?;
        if self.backend == Backend::Postgres {
            // Tiny test tables make a sequential scan cheapest; ask whether the
            // index *can* serve the query.
            conn.execute("SET enable_seqscan = off")
                .await
                .map_err(q("explain"))?;
        }
        let rows = composed(format!("{prefix}{sql}"))
            .bind(policy.as_str())
            .bind(0i64)
            .fetch_all(&mut *conn)
            .await
            .map_err(q("explain"))?;
        if self.backend == Backend::Postgres {
            conn.execute("RESET enable_seqscan")
                .await
                .map_err(q("explain"))?;
        }
        rows.iter()
            .map(|r| get::<String>(r, col))
            .collect::<Result<Vec<_>>>()
            .map(|v| v.join("\n"))
    }
}
