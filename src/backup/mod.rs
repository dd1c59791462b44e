//! One tick of a policy: resolve its volumes, capture its manifests, and get
//! one verified Longhorn backup per volume into a recovery point. The start
//! and end of the tick are here; `fan_out.rs` runs its volumes side by side,
//! and `volume.rs` runs one volume's phases.
//!
//! Every step is idempotent, so running the same tick again (after a crash,
//! or by `dr serve` adopting a pending point at start) picks up what exists:
//! the point and backup rows by their unique keys, the snapshot by its
//! deterministic name, the backup by its snapshot.

mod fan_out;
mod snapshots;
mod targets;
mod volume;

use crate::catalog::{BackupState, Catalog, CatalogError, PointId, PointState, Verification};
use crate::clock::Clock;
use crate::cluster::{self, ClusterError, Unprotectable};
use crate::config::PolicyConfig;
use crate::longhorn::{LonghornClient, LonghornError};
use crate::point_file::{PointFile, Verdict};
use crate::store::Store;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

/// Labels dr puts on its snapshots and backups, so `dr catalog sync` can
/// rebuild the catalog from Longhorn's own list.
pub const LABEL_POLICY: &str = "dr.longhorn.io/policy";
pub const LABEL_TICK: &str = "dr.longhorn.io/tick";
pub const LABEL_PVC: &str = "dr.longhorn.io/pvc";
/// The PV's filesystem, when it names one.
pub const LABEL_FS_TYPE: &str = "dr.longhorn.io/fs-type";

/// The snapshot name of (policy, tick, volume): deterministic, so a retry
/// finds the snapshot (and through it the backup) instead of making another.
pub fn snapshot_name(policy: &str, tick: DateTime<Utc>, volume: &str) -> String {
    let h = hex::encode(Sha256::digest(volume.as_bytes()));
    format!("dr-{policy}-{}-{}", tick.format("%Y%m%dt%H%M%S"), &h[..8])
}

/// A failure that stops a tick as a whole (a volume's failure does not).
#[derive(Debug, thiserror::Error)]
pub enum TickError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// What a tick needs to act.
#[derive(Clone)]
pub struct Protect {
    pub catalog: Catalog,
    pub longhorn: LonghornClient,
    pub kube: kube::Client,
    pub store: Store,
    /// Reads Longhorn's backup store (its bucket may differ from dr's).
    pub verifier: aws_sdk_s3::Client,
    pub options: TickOptions,
}

/// Limits of one tick.
#[derive(Debug, Clone)]
pub struct TickOptions {
    /// Backups requested at once (`snapshotBackup` calls in flight).
    /// Snapshots are prepared up to three times as many ahead, so requests
    /// never wait for a snapshot to become ready.
    pub concurrency: usize,
    /// How long a snapshot may take to become ready.
    pub snapshot_wait: Duration,
    /// How long a backup may take to complete.
    pub backup_wait: Duration,
    /// Where the tick's timestamps come from.
    pub clock: Clock,
}

impl Default for TickOptions {
    fn default() -> Self {
        TickOptions {
            concurrency: 16,
            snapshot_wait: Duration::from_secs(300),
            backup_wait: Duration::from_secs(3600),
            clock: Clock::System,
        }
    }
}

/// Progress of a tick, for `dr backup now`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Resolved {
        volumes: usize,
        unprotectable: Vec<Unprotectable>,
    },
    Bundle {
        key: Option<String>,
        error: Option<String>,
    },
    Volume {
        volume: String,
        pvc: String,
        stage: String,
        progress: i64,
    },
    /// `snapshotBackup` was sent (or left unanswered) for this volume; the
    /// call `took` this long.
    Requested {
        volume: String,
        took: std::time::Duration,
    },
    /// Longhorn's completion of the volume's backup is recorded in the catalog.
    Completed { volume: String },
    VolumeDone {
        volume: String,
        state: BackupState,
        verification: Verification,
        error: Option<String>,
    },
}

/// Where progress goes.
pub type Events = Arc<dyn Fn(Event) + Send + Sync>;

/// The result of one volume in a tick.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeOutcome {
    pub volume: String,
    pub pvc: String,
    pub backup: Option<String>,
    pub state: BackupState,
    pub verification: Verification,
    pub error: Option<String>,
}

/// The result of a tick.
#[derive(Debug, Clone, Serialize)]
pub struct TickReport {
    pub policy: String,
    pub tick_at: DateTime<Utc>,
    pub point_id: PointId,
    pub state: PointState,
    pub point_at: Option<DateTime<Utc>>,
    pub bundle: Option<String>,
    pub volumes: Vec<VolumeOutcome>,
    pub unprotectable: Vec<Unprotectable>,
    pub reason: Option<String>,
}

impl Protect {
    /// Runs (or resumes) the tick of `policy` at `tick_at`.
    #[tracing::instrument(skip_all, fields(policy = %policy.name, tick = %tick_at))]
    pub async fn tick(
        &self,
        policy: &PolicyConfig,
        tick_at: DateTime<Utc>,
        events: Events,
    ) -> Result<TickReport, TickError> {
        let now = self.options.clock.now();
        let point = self.catalog.begin_point(&policy.name, tick_at, now).await?;
        if point.state != PointState::Pending {
            // Already finished (a resumed tick): report what is recorded.
            return self.report(policy, point.id, Vec::new(), None).await;
        }
        // Longhorn's version is read beside the volumes, not before them.
        let (resolved, version) = tokio::join!(
            cluster::resolve_volumes(&self.kube, &policy.namespace, &policy.selector),
            self.longhorn.check_supported()
        );
        match version {
            Err(e @ LonghornError::Unsupported { .. }) => {
                return self.fail_point(policy, point.id, e.to_string()).await;
            }
            // Unreachable and the like: each volume's calls say so.
            Err(e) => tracing::debug!(error = %e, "cannot read Longhorn's version"),
            Ok(_) => {}
        }
        let (volumes, unprotectable) = match resolved {
            Ok(v) => v,
            Err(e) => {
                return self
                    .fail_point(policy, point.id, format!("cannot resolve volumes: {e}"))
                    .await;
            }
        };
        events(Event::Resolved {
            volumes: volumes.len(),
            unprotectable: unprotectable.clone(),
        });
        // The bundle is captured while the volumes are backed up: it is not
        // on their path, and the manifests are read closer to the snapshots.
        let bundle = async {
            let stored = self.bundle(policy, point.id, tick_at).await;
            events(Event::Bundle {
                key: stored.as_ref().ok().cloned(),
                error: stored.as_ref().err().cloned(),
            });
            stored.err()
        };
        // What Longhorn says of the volumes (targets, filesystem freeze),
        // read on the side: the volumes wait for it only before asking for
        // their backups.
        let targets = targets::read_on_the_side(&self.longhorn);
        let fan_out = self.fan_out(
            policy,
            tick_at,
            point.id,
            &volumes,
            &events,
            targets.clone(),
        );
        let (bundle_error, outcomes) = tokio::join!(bundle, fan_out);
        let outcomes = outcomes?;
        let mut consistency = None;
        if let Some(t) = targets.await {
            let c = t.consistency(volumes.iter().map(|v| v.volume.as_str()));
            self.catalog.set_consistency(point.id, c).await?;
            consistency = Some(c);
        }
        let states: Vec<BackupState> = outcomes.iter().map(|o| o.state).collect();
        let mut state = PointState::from_backups(&states);
        let mut reasons = Vec::new();
        if volumes.is_empty() {
            reasons.push("no protected volume found".to_owned());
        }
        let failed = outcomes
            .iter()
            .filter(|o| o.state != BackupState::Completed)
            .count();
        if failed > 0 {
            reasons.push(format!("{failed} of {} backups failed", outcomes.len()));
        }
        if !unprotectable.is_empty() {
            reasons.push(format!(
                "{} claims cannot be protected: {}",
                unprotectable.len(),
                unprotectable
                    .iter()
                    .map(|u| format!("{} ({})", u.pvc, u.reason))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            if state == PointState::Complete {
                state = PointState::Partial;
            }
        }
        if let Some(e) = &bundle_error {
            reasons.push(format!("manifest bundle not stored: {e}"));
            if state == PointState::Complete {
                state = PointState::Partial;
            }
        }
        let rows = self.catalog.backups_of(point.id).await?;
        let point_at = rows
            .iter()
            .filter(|b| b.state == BackupState::Completed)
            .filter_map(|b| b.snapshot_at)
            .min();
        // The point's file goes to the bucket before the catalog calls the
        // point finished: a crash between leaves it pending, and the resumed
        // tick writes the file again. A point whose file could not be stored
        // is not whole in the bucket, so it is not `complete`.
        let bundle_key = bundle_error
            .is_none()
            .then(|| self.store.bundle_key(policy.name.as_str(), tick_at));
        let joined = (!reasons.is_empty()).then(|| reasons.join("; "));
        let verdict = Verdict {
            state,
            point_at,
            reason: joined.as_deref(),
            consistency,
            bundle: bundle_key.as_deref(),
        };
        // Only a point with a bundle can be restored, so only such a point
        // gets a file (and retention deletes the two together).
        let stored = match bundle_key {
            Some(_) => {
                let file = PointFile::new(policy, tick_at, &verdict, &rows);
                self.store.put_point(&file).await
            }
            None => Ok(()),
        };
        if let Err(e) = stored {
            reasons.push(format!("point file not stored: {e}"));
            if state == PointState::Complete {
                state = PointState::Partial;
            }
        }
        let reason = (!reasons.is_empty()).then(|| reasons.join("; "));
        self.catalog
            .finish_point(
                point.id,
                state,
                point_at,
                reason.as_deref(),
                self.options.clock.now(),
            )
            .await?;
        self.report(policy, point.id, unprotectable, None).await
    }

    async fn fail_point(
        &self,
        policy: &PolicyConfig,
        id: PointId,
        reason: String,
    ) -> Result<TickReport, TickError> {
        self.catalog
            .finish_point(
                id,
                PointState::Failed,
                None,
                Some(&reason),
                self.options.clock.now(),
            )
            .await?;
        self.report(policy, id, Vec::new(), Some(reason)).await
    }

    async fn report(
        &self,
        policy: &PolicyConfig,
        id: PointId,
        unprotectable: Vec<Unprotectable>,
        reason: Option<String>,
    ) -> Result<TickReport, TickError> {
        let point = self.catalog.point(id).await?;
        let volumes = self
            .catalog
            .backups_of(id)
            .await?
            .into_iter()
            .map(|b| VolumeOutcome {
                volume: b.volume.to_string(),
                pvc: b.pvc.unwrap_or_default(),
                backup: b.backup_name,
                state: b.state,
                verification: b.verification,
                error: b.error,
            })
            .collect();
        Ok(TickReport {
            policy: policy.name.to_string(),
            tick_at: point.tick_at,
            point_id: id,
            state: point.state,
            point_at: point.point_at,
            bundle: point.bundle_key,
            volumes,
            unprotectable,
            reason: reason.or(point.reason),
        })
    }

    async fn bundle(
        &self,
        policy: &PolicyConfig,
        id: PointId,
        tick_at: DateTime<Utc>,
    ) -> Result<String, String> {
        let mut bundle = cluster::capture(
            &self.kube,
            policy.name.as_str(),
            &policy.namespace,
            &policy.selector,
            &policy.kinds,
            tick_at,
        )
        .await
        .map_err(|e: ClusterError| e.to_string())?;
        if let Some(s) = &policy.secrets
            && !bundle.secrets_by_reference.is_empty()
        {
            // The values go from the API server into age and nowhere else.
            let whole = cluster::secrets::whole(
                &self.kube,
                &policy.namespace,
                &policy.selector,
                &bundle.secrets_by_reference,
            )
            .await
            .map_err(|e| e.to_string())?;
            bundle.sealed_secrets = Some(
                crate::secrets::seal_objects(&whole, &s.recipients).map_err(|e| e.to_string())?,
            );
        }
        let key = self.store.bundle_key(policy.name.as_str(), tick_at);
        self.store
            .put_bundle(&bundle, &key)
            .await
            .map_err(|e| e.to_string())?;
        self.catalog
            .set_bundle(id, &key)
            .await
            .map_err(|e| e.to_string())?;
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn snapshot_names_are_deterministic_and_valid() {
        let t = Utc.with_ymd_and_hms(2026, 11, 24, 9, 45, 0).unwrap();
        let a = snapshot_name("wesago", t, "pvc-0b6c");
        assert_eq!(a, snapshot_name("wesago", t, "pvc-0b6c"));
        assert_ne!(a, snapshot_name("wesago", t, "pvc-0b6d"));
        assert!(a.starts_with("dr-wesago-20261124t094500-"), "{a}");
        let ok = |s: &str| {
            s.chars()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c))
        };
        assert!(ok(&a), "{a} must match ^[a-z0-9][a-z0-9_.-]+$");
    }
}
