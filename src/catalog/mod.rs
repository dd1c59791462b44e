//! The catalog: dr's record of policies, recovery points, backups, runs and
//! incidents, on SQLite (embedded default, WAL) or PostgreSQL. All of dr's SQL
//! lives in this module. Both databases get the same statements (`$N`
//! placeholders work on both) and their own migrations, applied at open.
//!
//! Every write is idempotent through a unique key: one recovery point per
//! (policy, tick), one backup per (point, volume), one step per (run, seq), and
//! one running run per target namespace.
//!
//! This file opens the catalog and holds the helpers every table shares; each
//! table's statements are one more `impl Catalog` in a file of its own
//! (`policies`, `points`, `backups`, `runs`, `incidents`, `ticks`). The bulk
//! seeding that benchmarks and tests use is in `seed`, behind the `seed` feature.

mod backups;
mod history;
mod incidents;
mod leaders;
mod points;
mod policies;
mod runs;
#[cfg(feature = "seed")]
mod seed;
mod ticks;
mod types;

pub use history::Compacted;
pub use leaders::{Fence, LeaderRecord};
pub use types::*;

use crate::config::CatalogUrl;
use chrono::{DateTime, TimeZone, Utc};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};
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
    #[error("refused to record for policy {policy}: {holder} no longer leads it ({why})")]
    Fenced {
        policy: String,
        holder: String,
        why: String,
    },
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
    /// Set in `dr serve`: policy writes are refused unless this replica
    /// still leads the policy (`leaders`).
    fence: Option<std::sync::Arc<Fence>>,
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
        Ok(Catalog {
            pool,
            backend,
            fence: None,
        })
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
}
