//! Policy leaders and fencing. `dr serve` replicas share the policies by
//! Kubernetes Leases (`crate::election`); each Lease's term (its
//! `leaseTransitions`) is claimed here when a replica takes the policy. A
//! catalog opened with a [`Fence`] refuses to record a tick, begin or end a
//! point, or record backups for a policy unless the `policy_leaders` row
//! still names this replica and its term, checked in the same transaction
//! as the write (on PostgreSQL with the row locked `FOR SHARE`, so a claim
//! by a new leader waits for the write or comes before it). A paused or
//! partitioned replica that wakes up after another took over records
//! nothing, whatever its tasks believe.

use super::{Catalog, CatalogError, Result, from_ms, get, ms, q};
use chrono::{DateTime, Utc};
use sqlx::{Any, Transaction};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// This replica's identity and the terms of the policies it leads.
#[derive(Debug, Default)]
pub struct Fence {
    holder: String,
    terms: Mutex<HashMap<String, i64>>,
}

impl Fence {
    pub fn new(holder: impl Into<String>) -> Arc<Fence> {
        Arc::new(Fence {
            holder: holder.into(),
            terms: Mutex::default(),
        })
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// This replica leads `policy` in `term` from now on.
    pub fn lead(&self, policy: &str, term: i64) {
        if let Ok(mut t) = self.terms.lock() {
            t.insert(policy.to_owned(), term);
        }
    }

    /// This replica no longer leads `policy`.
    pub fn step_down(&self, policy: &str) {
        if let Ok(mut t) = self.terms.lock() {
            t.remove(policy);
        }
    }

    fn term(&self, policy: &str) -> Option<i64> {
        self.terms.lock().ok()?.get(policy).copied()
    }
}

/// Who the catalog says leads a policy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LeaderRecord {
    pub policy: String,
    pub holder: String,
    pub term: i64,
    pub since: DateTime<Utc>,
}

impl Catalog {
    /// The same catalog, whose policy writes are fenced by `fence`.
    pub fn fenced(&self, fence: Arc<Fence>) -> Catalog {
        Catalog {
            fence: Some(fence),
            ..self.clone()
        }
    }

    /// Claims `policy` for `holder` in `term`. False when the catalog already
    /// has a newer term (or the same term for another holder): the claimant
    /// must not lead.
    pub async fn claim_term(
        &self,
        policy: &str,
        holder: &str,
        term: i64,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO policy_leaders (policy, holder, term, since) VALUES ($1, $2, $3, $4)
             ON CONFLICT (policy) DO UPDATE SET holder = excluded.holder, term = excluded.term,
               since = CASE WHEN policy_leaders.holder = excluded.holder
                             AND policy_leaders.term = excluded.term
                            THEN policy_leaders.since ELSE excluded.since END
             WHERE policy_leaders.term < excluded.term
                OR (policy_leaders.term = excluded.term AND policy_leaders.holder = excluded.holder)",
        )
        .bind(policy)
        .bind(holder)
        .bind(term)
        .bind(ms(now))
        .execute(&self.pool)
        .await
        .map_err(q("claim a policy"))?;
        Ok(done.rows_affected() > 0)
    }

    /// Every policy's leader as last claimed.
    pub async fn leaders(&self) -> Result<Vec<LeaderRecord>> {
        let rows =
            sqlx::query("SELECT policy, holder, term, since FROM policy_leaders ORDER BY policy")
                .fetch_all(&self.pool)
                .await
                .map_err(q("read policy leaders"))?;
        rows.iter()
            .map(|r| {
                Ok(LeaderRecord {
                    policy: get(r, "policy")?,
                    holder: get(r, "holder")?,
                    term: get(r, "term")?,
                    since: from_ms("policy_leaders.since", get(r, "since")?)?,
                })
            })
            .collect()
    }

    /// A transaction for a write of `policy`'s, begun after checking the
    /// fence (when this catalog has one): the write is refused unless this
    /// replica still leads the policy in its term.
    pub(super) async fn begin_fenced(&self, policy: &str) -> Result<Transaction<'static, Any>> {
        let mut tx = self.pool.begin().await.map_err(q("begin a write"))?;
        let Some(fence) = &self.fence else {
            return Ok(tx);
        };
        let refused = |why: String| CatalogError::Fenced {
            policy: policy.to_owned(),
            holder: fence.holder.clone(),
            why,
        };
        let Some(term) = fence.term(policy) else {
            return Err(refused("this replica does not lead it".into()));
        };
        let sql = match self.backend {
            super::Backend::Postgres => {
                "SELECT holder, term FROM policy_leaders WHERE policy = $1 FOR SHARE"
            }
            super::Backend::Sqlite => "SELECT holder, term FROM policy_leaders WHERE policy = $1",
        };
        let row = sqlx::query(sql)
            .bind(policy)
            .fetch_optional(&mut *tx)
            .await
            .map_err(q("check the policy's leader"))?;
        let Some(row) = row else {
            return Err(refused("the catalog names no leader".into()));
        };
        let (holder, now_term): (String, i64) = (get(&row, "holder")?, get(&row, "term")?);
        if holder != fence.holder || now_term != term {
            return Err(refused(format!(
                "{holder} leads it now (term {now_term}; this replica's was {term})"
            )));
        }
        Ok(tx)
    }
}
