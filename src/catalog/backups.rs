//! The `backups` table: one Longhorn backup per (recovery point, volume), its
//! lifecycle, its verification in the store and its content checksum.

use super::{
    BackupId, BackupRecord, BackupState, BackupUpdate, Catalog, CatalogError, NewBackup, PointId,
    Result, Verification, composed, from_ms, get, ms, opt_ms, parse_col, q,
};
use crate::names::{PolicyName, VolumeName};
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;

const BACKUP_COLS: &str = "id, point_id, volume, pvc, snapshot_name, backup_name, backup_url, state, progress, size_bytes, snapshot_at, requested_at, completed_at, error, verification, verified_at, pruned_at, content_checksum, fs_type";

fn backup_row(r: &AnyRow) -> Result<BackupRecord> {
    Ok(BackupRecord {
        id: BackupId(get(r, "id")?),
        point_id: PointId(get(r, "point_id")?),
        volume: parse_col::<VolumeName>("backups.volume", get(r, "volume")?)?,
        pvc: get(r, "pvc")?,
        snapshot_name: get(r, "snapshot_name")?,
        backup_name: get(r, "backup_name")?,
        backup_url: get(r, "backup_url")?,
        state: parse_col("backups.state", get(r, "state")?)?,
        progress: get(r, "progress")?,
        size_bytes: get(r, "size_bytes")?,
        snapshot_at: opt_ms("backups.snapshot_at", get(r, "snapshot_at")?)?,
        requested_at: from_ms("backups.requested_at", get(r, "requested_at")?)?,
        completed_at: opt_ms("backups.completed_at", get(r, "completed_at")?)?,
        error: get(r, "error")?,
        verification: parse_col("backups.verification", get(r, "verification")?)?,
        verified_at: opt_ms("backups.verified_at", get(r, "verified_at")?)?,
        pruned_at: opt_ms("backups.pruned_at", get(r, "pruned_at")?)?,
        content_checksum: get(r, "content_checksum")?,
        fs_type: get(r, "fs_type")?,
    })
}

impl Catalog {
    /// Records a backup about to be requested; returns the existing row if one
    /// was already recorded for this (point, volume).
    pub async fn record_backup(&self, b: &NewBackup) -> Result<BackupRecord> {
        sqlx::query(
            "INSERT INTO backups (point_id, volume, pvc, snapshot_name, state, requested_at)
             VALUES ($1, $2, $3, $4, 'pending', $5) ON CONFLICT (point_id, volume) DO NOTHING",
        )
        .bind(b.point_id.0)
        .bind(b.volume.as_str())
        .bind(b.pvc.as_deref())
        .bind(b.snapshot_name.as_str())
        .bind(ms(b.requested_at))
        .execute(&self.pool)
        .await
        .map_err(q("record backup"))?;
        let row = composed(format!(
            "SELECT {BACKUP_COLS} FROM backups WHERE point_id = $1 AND volume = $2"
        ))
        .bind(b.point_id.0)
        .bind(b.volume.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(q("read backup"))?;
        backup_row(&row)
    }

    /// Records many backups about to be requested, in one transaction and a
    /// few multi-row statements; existing rows are kept. Returns every row of
    /// the point for those volumes.
    pub async fn record_backups(&self, bs: &[NewBackup]) -> Result<Vec<BackupRecord>> {
        let Some(first) = bs.first() else {
            return Ok(Vec::new());
        };
        let point = first.point_id;
        let mut tx = match &self.fence {
            Some(_) => {
                self.begin_fenced(self.point(point).await?.policy.as_str())
                    .await?
            }
            None => self.pool.begin().await.map_err(q("record backups"))?,
        };
        for chunk in bs.chunks(100) {
            let values: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let b = i * 5;
                    format!(
                        "(${}, ${}, ${}, ${}, 'pending', ${})",
                        b + 1,
                        b + 2,
                        b + 3,
                        b + 4,
                        b + 5
                    )
                })
                .collect();
            let mut query = composed(format!(
                "INSERT INTO backups (point_id, volume, pvc, snapshot_name, state, requested_at)
                 VALUES {} ON CONFLICT (point_id, volume) DO NOTHING",
                values.join(", ")
            ));
            for b in chunk {
                query = query
                    .bind(b.point_id.0)
                    .bind(b.volume.as_str().to_owned())
                    .bind(b.pvc.clone())
                    .bind(b.snapshot_name.clone())
                    .bind(ms(b.requested_at));
            }
            query.execute(&mut *tx).await.map_err(q("record backups"))?;
        }
        tx.commit().await.map_err(q("record backups"))?;
        let wanted: std::collections::HashSet<&str> =
            bs.iter().map(|b| b.volume.as_str()).collect();
        Ok(self
            .backups_of(point)
            .await?
            .into_iter()
            .filter(|r| wanted.contains(r.volume.as_str()))
            .collect())
    }

    /// One backup.
    pub async fn backup(&self, id: BackupId) -> Result<BackupRecord> {
        let row = composed(format!("SELECT {BACKUP_COLS} FROM backups WHERE id = $1"))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("read backup"))?;
        match row {
            Some(r) => backup_row(&r),
            None => Err(CatalogError::NotFound {
                what: "backup",
                id: id.0,
            }),
        }
    }

    /// Applies an update, refusing moves the backup lifecycle does not allow.
    /// One statement: the row changes only if its current state may move to
    /// the new one (the states that may are listed in the WHERE clause), so
    /// concurrent updates cannot skip a rule; the row is read back only to
    /// explain a refusal.
    pub async fn update_backup(&self, id: BackupId, u: &BackupUpdate) -> Result<BackupRecord> {
        let allowed = match u.state {
            Some(to) => {
                let from: Vec<String> = BackupState::ALL
                    .iter()
                    .filter(|s| s.can_move_to(to))
                    .map(|s| format!("'{}'", s.as_str()))
                    .collect();
                format!("AND state IN ({})", from.join(", "))
            }
            None => String::new(),
        };
        let row = composed(format!(
            "UPDATE backups SET state = COALESCE($1, state),
               backup_name = COALESCE($2, backup_name), backup_url = COALESCE($3, backup_url),
               progress = COALESCE($4, progress), size_bytes = COALESCE($5, size_bytes),
               snapshot_at = COALESCE($6, snapshot_at), completed_at = COALESCE($7, completed_at),
               error = COALESCE($8, error), fs_type = COALESCE($10, fs_type),
               pruned_at = COALESCE($11, pruned_at)
             WHERE id = $9 {allowed} RETURNING {BACKUP_COLS}"
        ))
        .bind(u.state.map(|s| s.as_str()))
        .bind(u.backup_name.as_deref())
        .bind(u.backup_url.as_deref())
        .bind(u.progress.map(|p| p.clamp(0, 100)))
        .bind(u.size_bytes)
        .bind(u.snapshot_at.map(ms))
        .bind(u.completed_at.map(ms))
        .bind(u.error.as_deref())
        .bind(id.0)
        .bind(u.fs_type.as_deref())
        .bind(u.pruned_at.map(ms))
        .fetch_optional(&self.pool)
        .await
        .map_err(q("update backup"))?;
        match row {
            Some(r) => backup_row(&r),
            None => {
                let current = self.backup(id).await?;
                Err(CatalogError::Transition {
                    what: "backup",
                    id: id.0,
                    from: current.state.to_string(),
                    to: u.state.map(|s| s.to_string()).unwrap_or_default(),
                })
            }
        }
    }

    /// Records the outcome of checking a backup's objects in the store.
    pub async fn set_verification(
        &self,
        id: BackupId,
        v: Verification,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let done = sqlx::query(
            "UPDATE backups SET verification = $1, verified_at = $2 WHERE id = $3 AND state = 'completed'",
        )
        .bind(v.as_str())
        .bind(ms(now))
        .bind(id.0)
        .execute(&self.pool)
        .await
        .map_err(q("set verification"))?;
        if done.rows_affected() == 0 {
            let b = self.backup(id).await?;
            return Err(CatalogError::Transition {
                what: "backup",
                id: id.0,
                from: b.state.to_string(),
                to: format!("verification {v} (only completed backups are verified)"),
            });
        }
        // The point's own verification date follows (one statement: this
        // runs once per backup of every tick).
        let query = if v == Verification::Verified {
            sqlx::query(
                "UPDATE recovery_points SET verified_at = $2
                 WHERE id = (SELECT point_id FROM backups WHERE id = $1)
                   AND state = 'complete' AND verified_at IS NULL
                   AND NOT EXISTS (SELECT 1 FROM backups b WHERE b.point_id = recovery_points.id
                                   AND b.verification <> 'verified')",
            )
            .bind(id.0)
            .bind(ms(now))
        } else {
            sqlx::query(
                "UPDATE recovery_points SET verified_at = NULL
                 WHERE id = (SELECT point_id FROM backups WHERE id = $1)",
            )
            .bind(id.0)
        };
        query
            .execute(&self.pool)
            .await
            .map_err(q("date the point's verification"))?;
        Ok(())
    }

    /// The backups of a point, by volume name.
    pub async fn backups_of(&self, point: PointId) -> Result<Vec<BackupRecord>> {
        let rows = composed(format!(
            "SELECT {BACKUP_COLS} FROM backups WHERE point_id = $1 ORDER BY volume"
        ))
        .bind(point.0)
        .fetch_all(&self.pool)
        .await
        .map_err(q("list backups"))?;
        rows.iter().map(backup_row).collect()
    }

    /// The backups still to delete of `policy`'s pruned points: retention
    /// marked the point before deleting anything, so these are what a crash
    /// or a refusal left (or what this prune is about to delete).
    pub async fn backups_left_of_pruned_points(
        &self,
        policy: &PolicyName,
    ) -> Result<Vec<BackupRecord>> {
        let cols = BACKUP_COLS
            .split(", ")
            .map(|c| format!("b.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = composed(format!(
            "SELECT {cols} FROM backups b JOIN recovery_points p ON p.id = b.point_id
             WHERE p.policy = $1 AND p.state = 'pruned' AND b.state IN ('completed', 'failed')
             ORDER BY b.id"
        ))
        .bind(policy.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(q("list backups of pruned points"))?;
        rows.iter().map(backup_row).collect()
    }

    /// Backups not yet in a terminal state (to adopt after a restart).
    pub async fn unfinished_backups(&self) -> Result<Vec<BackupRecord>> {
        let rows = composed(format!(
            "SELECT {BACKUP_COLS} FROM backups
             WHERE state IN ('pending', 'snapshotting', 'backing_up') ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(q("list unfinished backups"))?;
        rows.iter().map(backup_row).collect()
    }

    /// Records what the content probe said of a backup's volume before its snapshot.
    pub async fn set_content_checksum(&self, id: BackupId, checksum: &str) -> Result<()> {
        sqlx::query("UPDATE backups SET content_checksum = $1 WHERE id = $2")
            .bind(checksum)
            .bind(id.0)
            .execute(&self.pool)
            .await
            .map_err(q("record content checksum"))?;
        Ok(())
    }
}
