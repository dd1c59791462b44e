//! The `incidents` table: outages opened (declared, or seen by a probe or a
//! restore) and resolved.

use super::{
    Backend, Catalog, CatalogError, IncidentId, IncidentRecord, IncidentSource, Result, composed,
    from_ms, get, ms, opt_ms, parse_col, q,
};
use crate::names::PolicyName;
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;

const INCIDENT_COLS: &str = "id, policy, title, source, opened_at, resolved_at, note";

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

impl Catalog {
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
}
