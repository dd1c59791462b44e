//! The `runs` and `run_steps` tables: restores and drills (one running run per
//! target namespace, held by one process that heartbeats, taken over when it
//! goes quiet) and their steps, one per (run, seq).

use super::{
    Backend, Catalog, CatalogError, IncidentId, NewRun, PointId, Result, RunId, RunKind, RunRecord,
    RunState, StepRecord, composed, from_ms, get, ms, opt_ms, parse_col, q,
};
use crate::names::{Namespace, PolicyName};
use crate::span::Span;
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;

const RUN_COLS: &str = "id, kind, policy, point_id, target_namespace, target_at, state, incident_id, started_at, finished_at, error, holder, heartbeat_at, summary";

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

impl Catalog {
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

    /// The newest `limit` finished runs of `kind` and `policy` that started
    /// in [since, until) and have a stored summary, newest first: what the
    /// report's RTO figures read, however many runs came after the window.
    pub async fn finished_runs_between(
        &self,
        kind: RunKind,
        policy: &PolicyName,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<RunRecord>> {
        let rows = composed(format!(
            "SELECT {RUN_COLS} FROM runs
             WHERE kind = $1 AND policy = $2 AND state <> 'running' AND summary IS NOT NULL
               AND started_at >= $3 AND started_at < $4
             ORDER BY started_at DESC, id DESC LIMIT $5"
        ))
        .bind(kind.as_str())
        .bind(policy.as_str())
        .bind(ms(since))
        .bind(ms(until))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(q("list finished runs"))?;
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
}
