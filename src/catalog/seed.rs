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
