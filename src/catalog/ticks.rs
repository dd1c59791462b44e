//! The `ticks` table: what became of each firing of a policy's schedule, and
//! the tick and point outcome counts reports are made of.

use super::{Catalog, PointId, Result, TickOutcome, TickRecord, from_ms, get, ms, parse_col, q};
use crate::names::PolicyName;
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use std::collections::BTreeMap;

impl Catalog {
    /// Records what became of a tick; the first record of a tick wins, so a
    /// tick recorded as `ran` is never turned into `missed` by a restart.
    /// True when this call recorded it.
    pub async fn record_tick(
        &self,
        policy: &PolicyName,
        tick_at: DateTime<Utc>,
        outcome: TickOutcome,
        point: Option<PointId>,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let mut tx = self.begin_fenced(policy.as_str()).await?;
        let done = sqlx::query(
            "INSERT INTO ticks (policy, tick_at, outcome, point_id, reason, recorded_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (policy, tick_at) DO NOTHING",
        )
        .bind(policy.as_str())
        .bind(ms(tick_at))
        .bind(outcome.as_str())
        .bind(point.map(|p| p.0))
        .bind(reason)
        .bind(ms(now))
        .execute(&mut *tx)
        .await
        .map_err(q("record tick"))?;
        tx.commit().await.map_err(q("record tick"))?;
        Ok(done.rows_affected() > 0)
    }

    /// The newest firing of `policy` the ledger has recorded, if any.
    pub async fn last_recorded_tick(&self, policy: &PolicyName) -> Result<Option<DateTime<Utc>>> {
        let row = sqlx::query("SELECT MAX(tick_at) AS t FROM ticks WHERE policy = $1")
            .bind(policy.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(q("read the last tick"))?;
        get::<Option<i64>>(&row, "t")?
            .map(|t| from_ms("ticks.tick_at", t))
            .transpose()
    }

    /// Whether the ledger has a record of this firing.
    pub async fn tick_recorded(&self, policy: &PolicyName, tick_at: DateTime<Utc>) -> Result<bool> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM ticks WHERE policy = $1 AND tick_at = $2")
            .bind(policy.as_str())
            .bind(ms(tick_at))
            .fetch_one(&self.pool)
            .await
            .map_err(q("read a tick"))?;
        Ok(get::<i64>(&row, "n")? > 0)
    }

    /// The points begun for firings of `policy` in (after, until]: a firing
    /// with a point ran, even when a crash cut it short.
    pub async fn points_of_ticks(
        &self,
        policy: &PolicyName,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<BTreeMap<DateTime<Utc>, PointId>> {
        let rows = sqlx::query(
            "SELECT id, tick_at FROM recovery_points
             WHERE policy = $1 AND tick_at > $2 AND tick_at <= $3",
        )
        .bind(policy.as_str())
        .bind(ms(after))
        .bind(ms(until))
        .fetch_all(&self.pool)
        .await
        .map_err(q("list the points of ticks"))?;
        rows.iter()
            .map(|r| {
                Ok((
                    from_ms("recovery_points.tick_at", get(r, "tick_at")?)?,
                    PointId(get(r, "id")?),
                ))
            })
            .collect()
    }

    /// The points of `policy` that ticked after `since` and have no ledger
    /// record: a crash cut their tick short before it was recorded.
    pub async fn unrecorded_points(
        &self,
        policy: &PolicyName,
        since: DateTime<Utc>,
    ) -> Result<BTreeMap<DateTime<Utc>, PointId>> {
        let rows = sqlx::query(
            "SELECT p.id, p.tick_at FROM recovery_points p
             WHERE p.policy = $1 AND p.tick_at > $2
               AND NOT EXISTS (SELECT 1 FROM ticks t
                               WHERE t.policy = p.policy AND t.tick_at = p.tick_at)",
        )
        .bind(policy.as_str())
        .bind(ms(since))
        .fetch_all(&self.pool)
        .await
        .map_err(q("list unrecorded points"))?;
        rows.iter()
            .map(|r| {
                Ok((
                    from_ms("recovery_points.tick_at", get(r, "tick_at")?)?,
                    PointId(get(r, "id")?),
                ))
            })
            .collect()
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
}
