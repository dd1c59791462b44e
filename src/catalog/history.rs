//! Bounded history: the catalog keeps what restores and the report need and
//! compacts what they do not, a small batch per statement so that ticks
//! writing meanwhile never wait long.
//!
//! Kept: every point that can still be restored (not pruned), runs, run
//! steps and incidents (small, and what RTO and availability are made of),
//! and points and tick outcomes younger than the history's `points` span
//! (the report's RPO needs only a point's times and its `verified_at`).
//! Compacted: the backup rows of points pruned longer ago than the
//! `pruned_backups` span, then pruned or failed points and tick outcomes
//! older than `points`. A point a restore or drill ran from is kept.

use super::{Catalog, Result, ms, q};
use chrono::{DateTime, Utc};

/// What one batch of compaction removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compacted {
    pub backup_rows: u64,
    pub points: u64,
    pub ticks: u64,
}

impl Compacted {
    pub fn total(&self) -> u64 {
        self.backup_rows + self.points + self.ticks
    }
}

impl Catalog {
    /// Removes at most `batch` rows of each kind: backup rows of points
    /// pruned before `backups_before`, and tick outcomes and finished,
    /// unrestorable points that ticked before `points_before`. Call again
    /// until it removes nothing.
    pub async fn compact(
        &self,
        backups_before: DateTime<Utc>,
        points_before: DateTime<Utc>,
        batch: i64,
    ) -> Result<Compacted> {
        Ok(Compacted {
            backup_rows: self.compact_backup_rows(backups_before, batch).await?,
            ticks: self.compact_ticks(points_before, batch).await?,
            points: self.compact_points(points_before, batch).await?,
        })
    }

    /// Removes at most `batch` tick outcomes of firings before `before`.
    pub async fn compact_ticks(&self, before: DateTime<Utc>, batch: i64) -> Result<u64> {
        Ok(sqlx::query(
            "DELETE FROM ticks WHERE (policy, tick_at) IN (
               SELECT policy, tick_at FROM ticks WHERE tick_at < $1 LIMIT $2)",
        )
        .bind(ms(before))
        .bind(batch)
        .execute(&self.pool)
        .await
        .map_err(q("compact tick outcomes"))?
        .rows_affected())
    }

    /// Removes at most `batch` pruned or failed points that ticked before
    /// `before`: only those with no backup rows left (those go first, see
    /// [`Catalog::compact_backup_rows`]), no tick naming them, and no run
    /// that restored from them.
    pub async fn compact_points(&self, before: DateTime<Utc>, batch: i64) -> Result<u64> {
        Ok(sqlx::query(
            "DELETE FROM recovery_points WHERE id IN (
               SELECT p.id FROM recovery_points p
               WHERE p.state IN ('pruned', 'failed') AND p.tick_at < $1
                 AND NOT EXISTS (SELECT 1 FROM backups b WHERE b.point_id = p.id)
                 AND NOT EXISTS (SELECT 1 FROM ticks t WHERE t.point_id = p.id)
                 AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.point_id = p.id)
               LIMIT $2)",
        )
        .bind(ms(before))
        .bind(batch)
        .execute(&self.pool)
        .await
        .map_err(q("compact points"))?
        .rows_affected())
    }

    /// Removes at most `batch` backup rows of points pruned before
    /// `before`, point by point, oldest pruned first, and marks a point
    /// whose rows are all gone (`backups_compacted`), so that no later
    /// statement looks at it again. Without the mark every statement walked
    /// from the oldest pruned point through all those already emptied (on
    /// PostgreSQL through their dead index entries too): 0.6 s a statement
    /// a few thousand points into a year's backlog, and growing.
    pub async fn compact_backup_rows(&self, before: DateTime<Utc>, batch: i64) -> Result<u64> {
        let mut removed = 0u64;
        loop {
            let left = batch - removed as i64;
            if left <= 0 {
                return Ok(removed);
            }
            let point: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM recovery_points
                 WHERE state = 'pruned' AND NOT backups_compacted AND pruned_at < $1
                 ORDER BY pruned_at LIMIT 1",
            )
            .bind(ms(before))
            .fetch_optional(&self.pool)
            .await
            .map_err(q("find a point to compact"))?;
            let Some(point) = point else {
                return Ok(removed);
            };
            let n = sqlx::query(
                "DELETE FROM backups WHERE id IN (
                   SELECT id FROM backups WHERE point_id = $1 LIMIT $2)",
            )
            .bind(point)
            .bind(left)
            .execute(&self.pool)
            .await
            .map_err(q("compact backup rows"))?
            .rows_affected();
            removed += n;
            if (n as i64) < left {
                sqlx::query("UPDATE recovery_points SET backups_compacted = TRUE WHERE id = $1")
                    .bind(point)
                    .execute(&self.pool)
                    .await
                    .map_err(q("mark a point compacted"))?;
            }
        }
    }
}
