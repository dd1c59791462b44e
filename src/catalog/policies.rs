//! The `policies` table: the configured policies dr has registered, by name.

use super::{Catalog, CatalogError, PolicyRecord, Result, get, ms, parse_col, q};
use crate::span::Span;
use chrono::{DateTime, Utc};

impl Catalog {
    /// Registers or updates a policy (the caller turns its configuration
    /// into the record: the catalog knows nothing of the YAML's shape).
    pub async fn upsert_policy(&self, p: &PolicyRecord, now: DateTime<Utc>) -> Result<()> {
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
        .bind(p.rpo.as_millis_i64())
        .bind(p.rto.as_millis_i64())
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
}
