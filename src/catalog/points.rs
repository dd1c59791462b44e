//! The `recovery_points` table: one point per (policy, tick) and its
//! lifecycle, and the queries that seek among points: planning (an index seek
//! on `recovery_points_plan`), the recoverable window, the newest verified
//! point the RPO is measured from, and the points still pending or live.

use super::{
    Backend, Catalog, CatalogError, Consistency, PointId, PointRecord, PointState, PointSummary,
    Result, Window, composed, from_ms, get, ms, opt_ms, parse_col, q,
};
use crate::names::PolicyName;
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;

pub(super) const POINT_COLS: &str = "id, policy, tick_at, point_at, state, bundle_key, reason, created_at, finished_at, pruned_at, consistency";

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
        consistency: get::<Option<String>>(r, "consistency")?
            .map(|c| parse_col("recovery_points.consistency", c))
            .transpose()?,
    })
}

impl Catalog {
    /// The recovery point of (policy, tick), created `pending` if new. Calling it
    /// again for the same tick returns the same point.
    pub async fn begin_point(
        &self,
        policy: &PolicyName,
        tick_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<PointRecord> {
        let mut tx = self.begin_fenced(policy.as_str()).await?;
        sqlx::query(
            "INSERT INTO recovery_points (policy, tick_at, state, created_at)
             VALUES ($1, $2, 'pending', $3) ON CONFLICT (policy, tick_at) DO NOTHING",
        )
        .bind(policy.as_str())
        .bind(ms(tick_at))
        .bind(ms(now))
        .execute(&mut *tx)
        .await
        .map_err(q("begin recovery point"))?;
        tx.commit().await.map_err(q("begin recovery point"))?;
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

    /// Records what a point's data is consistent with.
    pub async fn set_consistency(&self, id: PointId, c: Consistency) -> Result<()> {
        sqlx::query("UPDATE recovery_points SET consistency = $1 WHERE id = $2")
            .bind(c.as_str())
            .bind(id.0)
            .execute(&self.pool)
            .await
            .map_err(q("set consistency"))?;
        Ok(())
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
        let mut tx = self.begin_fenced(current.policy.as_str()).await?;
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
        .execute(&mut *tx)
        .await
        .map_err(q("finish recovery point"))?;
        tx.commit().await.map_err(q("finish recovery point"))?;
        if done.rows_affected() == 0 {
            // Someone else moved it meanwhile: check the rule against what is there now.
            return Box::pin(self.finish_point(id, state, point_at, reason, now)).await;
        }
        if state == PointState::Complete {
            self.mark_verified(id, now).await?;
        }
        self.point(id).await
    }

    /// Dates a complete point's verification once every backup of it has
    /// been verified (the RPO counts from it); a no-op otherwise.
    pub(super) async fn mark_verified(&self, id: PointId, now: DateTime<Utc>) -> Result<()> {
        sqlx::query(
            "UPDATE recovery_points SET verified_at = $2
             WHERE id = $1 AND state = 'complete' AND verified_at IS NULL
               AND NOT EXISTS (SELECT 1 FROM backups b WHERE b.point_id = $1
                               AND b.verification <> 'verified')",
        )
        .bind(id.0)
        .bind(ms(now))
        .execute(&self.pool)
        .await
        .map_err(q("mark a point verified"))?;
        Ok(())
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

    /// The newest complete point all of whose backups were verified in the
    /// store: what the RPO is measured from.
    pub async fn newest_verified_point(&self, policy: &PolicyName) -> Result<Option<PointRecord>> {
        let row = composed(format!(
            "SELECT {POINT_COLS} FROM recovery_points p
             WHERE p.policy = $1 AND p.state = 'complete' AND p.point_at IS NOT NULL
               AND p.verified_at IS NOT NULL
             ORDER BY p.point_at DESC LIMIT 1"
        ))
        .bind(policy.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(q("newest verified point"))?;
        row.as_ref().map(point_row).transpose()
    }

    /// Every point of `policy` that was complete with all its backups
    /// verified (pruned ones too: they counted while they existed; their
    /// backup rows may be compacted away), as (point time, time it became
    /// available), by availability.
    pub async fn verified_point_times(
        &self,
        policy: &PolicyName,
    ) -> Result<Vec<(DateTime<Utc>, DateTime<Utc>)>> {
        let rows = sqlx::query(
            "SELECT p.point_at, COALESCE(p.finished_at, p.point_at) AS available_at
             FROM recovery_points p
             WHERE p.policy = $1 AND p.state IN ('complete', 'pruned')
               AND p.point_at IS NOT NULL AND p.verified_at IS NOT NULL
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

    /// The first and the last tick of `policy`: the earliest and latest of
    /// its recorded ticks and its points' ticks (a point rebuilt by `dr
    /// catalog sync` has no tick row). None: nothing recorded. What the
    /// report measures RPO compliance from (`ticks` lists newest first).
    pub async fn first_and_last_tick(
        &self,
        policy: &PolicyName,
    ) -> Result<Option<(DateTime<Utc>, DateTime<Utc>)>> {
        let row = sqlx::query(
            "SELECT
               (SELECT tick_at FROM ticks WHERE policy = $1 ORDER BY tick_at ASC LIMIT 1) AS first_tick,
               (SELECT tick_at FROM recovery_points WHERE policy = $1 ORDER BY tick_at ASC LIMIT 1) AS first_point,
               (SELECT tick_at FROM ticks WHERE policy = $1 ORDER BY tick_at DESC LIMIT 1) AS last_tick,
               (SELECT tick_at FROM recovery_points WHERE policy = $1 ORDER BY tick_at DESC LIMIT 1) AS last_point",
        )
        .bind(policy.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(q("first and last tick"))?;
        let col = |c: &'static str| -> Result<Option<DateTime<Utc>>> {
            opt_ms("first_and_last_tick", get::<Option<i64>>(&row, c)?)
        };
        let first = [col("first_tick")?, col("first_point")?]
            .into_iter()
            .flatten()
            .min();
        let last = [col("last_tick")?, col("last_point")?]
            .into_iter()
            .flatten()
            .max();
        Ok(first.zip(last))
    }

    /// The manifest bundles of `policy`'s pruned points whose backups are
    /// all gone: retention deletes them from the store next.
    pub async fn bundles_of_pruned_points(
        &self,
        policy: &PolicyName,
    ) -> Result<Vec<(PointId, String)>> {
        let rows = sqlx::query(
            "SELECT p.id, p.bundle_key FROM recovery_points p
             WHERE p.state = 'pruned' AND p.policy = $1 AND p.bundle_key IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM backups b WHERE b.point_id = p.id
                               AND b.state IN ('completed', 'failed'))",
        )
        .bind(policy.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(q("list bundles of pruned points"))?;
        rows.iter()
            .map(|r| Ok((PointId(get(r, "id")?), get(r, "bundle_key")?)))
            .collect()
    }

    /// Forgets a point's bundle once it is deleted from the store.
    pub async fn clear_bundle(&self, id: PointId) -> Result<()> {
        sqlx::query("UPDATE recovery_points SET bundle_key = NULL WHERE id = $1")
            .bind(id.0)
            .execute(&self.pool)
            .await
            .map_err(q("clear a point's bundle"))?;
        Ok(())
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
}
