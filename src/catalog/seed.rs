//! Bulk seeding and query-plan inspection for benchmarks, demos and tests
//! (feature `seed`): writes `recovery_points` and `backups` wholesale inside
//! the database, bypassing the lifecycle that production rows go through.

use super::points::POINT_COLS;
use super::{Backend, Catalog, Result, composed, get, ms, q};
use crate::names::PolicyName;
use crate::span::Span;
use chrono::{DateTime, Utc};
use sqlx::Executor;

impl Catalog {
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
             INSERT INTO recovery_points (policy, tick_at, point_at, state, created_at, finished_at, verified_at)
             SELECT $1, $3 + i * $4, $3 + i * $4 - 1000, 'complete', $3 + i * $4, $3 + i * $4 + 60000,
                    $3 + i * $4 + 60000 FROM s
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

    /// Seeds part of a history as dr's ticks, retention and verification
    /// leave it, generated inside the database, in one transaction: the
    /// points of `policy` aged `ages` ticks (0 is the newest, ticking at
    /// `last`; one tick every `every`), each with a backup of every one of
    /// `volumes` volumes and a `ran` tick outcome. Seed the oldest part
    /// first, so that ids grow with time as ticks make them.
    ///
    /// The `keep` newest points are complete, their backups completed; an
    /// older point was pruned by retention one minute after the tick that
    /// made `keep` newer ones, and its backups marked pruned five seconds
    /// later. Every point is verified: its backups at 80 s, the point when
    /// it finished (90 s after its tick; `finish_point` dates it then).
    /// Volumes are named like Longhorn's (`pvc-` and 36 characters). For
    /// benchmarks; the catalog must hold none of these points yet.
    #[doc(hidden)]
    pub async fn seed_history(
        &self,
        policy: &PolicyName,
        volumes: i64,
        last: DateTime<Utc>,
        every: Span,
        ages: std::ops::Range<i64>,
        keep: i64,
    ) -> Result<()> {
        if ages.is_empty() {
            return Ok(());
        }
        let step = every.as_millis_i64();
        let (oldest, newest) = (
            ms(last) - step * (ages.end - 1),
            ms(last) - step * ages.start,
        );
        let mut tx = self.pool.begin().await.map_err(q("seed history"))?;
        // Point i of the chunk is aged $3 - 1 - i: the oldest first.
        let series = match self.backend {
            Backend::Sqlite => {
                "WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i + 1 < $2)"
            }
            Backend::Postgres => "WITH s(i) AS (SELECT generate_series(0, $2 - 1))",
        };
        composed(format!(
            "{series}
             INSERT INTO recovery_points (policy, tick_at, point_at, state, bundle_key, created_at,
                                          finished_at, pruned_at, consistency, verified_at)
             SELECT $1, t, t + 2000, CASE WHEN a < $6 THEN 'complete' ELSE 'pruned' END,
                    'dr/bundles/' || $1 || '/' || CAST(t AS TEXT) || '.json', t, t + 90000,
                    CASE WHEN a < $6 THEN NULL ELSE t + $6 * $5 + 60000 END,
                    'crash-consistent', t + 90000
             FROM (SELECT $3 - 1 - i AS a, $4 - ($3 - 1 - i) * $5 AS t FROM s) x"
        ))
        .bind(policy.as_str())
        .bind(ages.end - ages.start)
        .bind(ages.end)
        .bind(ms(last))
        .bind(step)
        .bind(keep)
        .execute(&mut *tx)
        .await
        .map_err(q("seed history points"))?;
        sqlx::query(
            "INSERT INTO ticks (policy, tick_at, outcome, point_id, reason, recorded_at)
             SELECT policy, tick_at, 'ran', id, NULL, finished_at + 500 FROM recovery_points
             WHERE policy = $1 AND tick_at >= $2 AND tick_at <= $3 ORDER BY tick_at",
        )
        .bind(policy.as_str())
        .bind(oldest)
        .bind(newest)
        .execute(&mut *tx)
        .await
        .map_err(q("seed history ticks"))?;
        // Point by point, volume by volume, as a tick writes them (on
        // SQLite, CROSS JOIN keeps the points as the outer loop).
        let (with, from) = match self.backend {
            Backend::Sqlite => (
                "WITH RECURSIVE v(j) AS (SELECT 0 UNION ALL SELECT j + 1 FROM v WHERE j + 1 < $2)",
                "recovery_points p CROSS JOIN v
                 WHERE p.policy = $1 AND p.tick_at >= $3 AND p.tick_at <= $4",
            ),
            Backend::Postgres => (
                "",
                "(SELECT * FROM recovery_points
                  WHERE policy = $1 AND tick_at >= $3 AND tick_at <= $4 ORDER BY id) p
                 CROSS JOIN LATERAL generate_series(0, $2 - 1) AS v(j)",
            ),
        };
        composed(format!(
            "{with}
             INSERT INTO backups (point_id, volume, pvc, snapshot_name, backup_name, backup_url,
                                  state, progress, size_bytes, snapshot_at, requested_at,
                                  completed_at, verification, verified_at, pruned_at, fs_type)
             SELECT id, vol, 'data-' || CAST(j AS TEXT),
                    'dr-' || policy || '-' || CAST(tick_at AS TEXT) || '-' || CAST(j AS TEXT),
                    bname, 's3://dr@us-east-1/?backup=' || bname || '&volume=' || vol,
                    CASE WHEN state = 'pruned' THEN 'pruned' ELSE 'completed' END, 100,
                    1073741824 + j * 4096, point_at, tick_at, tick_at + 60000, 'verified',
                    tick_at + 80000, pruned_at + 5000, 'ext4'
             FROM (SELECT p.id, p.policy, p.tick_at, p.point_at, p.state, p.pruned_at, v.j,
                     'pvc-' || substr('00000000-0000-4000-8000-000000000000', 1,
                                      36 - length(CAST(v.j AS TEXT))) || CAST(v.j AS TEXT) AS vol,
                     'backup-' || substr('0000000000000000', 1,
                                         16 - length(CAST(p.id * 100000 + v.j AS TEXT)))
                               || CAST(p.id * 100000 + v.j AS TEXT) AS bname
                   FROM {from}) x"
        ))
        .bind(policy.as_str())
        .bind(volumes)
        .bind(oldest)
        .bind(newest)
        .execute(&mut *tx)
        .await
        .map_err(q("seed history backups"))?;
        tx.commit().await.map_err(q("seed history"))?;
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
