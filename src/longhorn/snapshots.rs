//! Snapshot CRs: asking for one and waiting until it is ready (paced within
//! a tick), what a snapshot's error means, listing a volume's snapshots and
//! deleting one.

use super::{LonghornClient, LonghornError, Result, SnapshotCr};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// Whether a Snapshot CR's `status.error` is a passing state that Longhorn
/// clears by itself, not a failure.
///
/// longhorn-manager controller/snapshot_controller.go
/// `(*SnapshotController).reconcile`: for a detached volume it first asks
/// for an attachment (ticket `snapshot-controller-<snapshot>`) and, until
/// the engine runs, sets "failed to take snapshot because the volume engine
/// <e> is not running. Waiting for the volume to be attached"; during an
/// engine upgrade, "snapshot creation delayed: volume engine <e> is
/// upgrading from image <a> to <b>". Both are cleared in
/// `syncSnapshotWithSnapshotInfo` once the engine reports the snapshot.
pub fn snapshot_error_is_transient(error: &str) -> bool {
    error.contains("Waiting for the volume to be attached")
        || error.starts_with("snapshot creation delayed")
}

/// Whether a Snapshot CR's error is the snapshot limit: the engine refuses
/// past the volume's `snapshotMaxCount` (setting `snapshot-max-count`,
/// default 250) with "too many snapshots created" (longhorn-engine
/// pkg/controller/replicator.go `RemainSnapshots`), and the snapshot
/// controller keeps retrying the CR, and keeps the volume attached for it.
pub fn snapshot_error_is_limit(error: &str) -> bool {
    error.contains("too many snapshots created")
}

/// Whether Longhorn freezes a volume's filesystem for its snapshots.
/// datastore/longhorn.go `GetFreezeFilesystemForSnapshotSetting`: never for
/// the v2 data engine; the volume's `freezeFilesystemForSnapshot` when it is
/// not `ignored`; else the setting `freeze-filesystem-for-snapshot` (1.7+,
/// off by default) for the volume's data engine, a plain `true`/`false`
/// before 1.10 and a per-engine JSON object (`{"v1":"false"}`) since
/// (`GetSettingAsBoolByDataEngine`). No setting (before 1.7): never.
pub fn freezes_filesystem(setting: Option<&str>, volume: &str, data_engine: &str) -> bool {
    let engine = if data_engine.is_empty() {
        "v1"
    } else {
        data_engine
    };
    if engine == "v2" {
        return false;
    }
    match volume {
        "enabled" => return true,
        "disabled" => return false,
        _ => {}
    }
    let Some(value) = setting.map(str::trim) else {
        return false;
    };
    if value.starts_with('{') {
        return serde_json::from_str::<std::collections::BTreeMap<String, String>>(value)
            .ok()
            .and_then(|m| m.get(engine).cloned())
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    }
    value.eq_ignore_ascii_case("true")
}

/// What the snapshots of one tick share while they wait to be ready: a
/// bound on their calls in flight, held per call and not while waiting, and
/// how long readiness has taken so far in the tick.
///
/// Readiness comes late on a real cluster: the snapshot controller sets
/// `readyToUse` only once the engine's status lists the snapshot
/// (controller/snapshot_controller.go `reconcile`: "wait for the
/// snapshotInfo to be appeared inside engine.Status.Snapshot"), and the
/// engine monitor refreshes that status every `EnginePollInterval`, 5 s
/// (controller/engine_controller.go `(*EngineMonitor).Run`). A look before
/// then is a call for nothing, and there is no listing of many volumes'
/// snapshots to share. So each wait first sleeps about as long as readiness
/// has taken in the tick so far (a running mean, at most that period), then
/// looks as [`LonghornClient::await_snapshot`] does without a pace.
#[derive(Debug)]
pub struct SnapshotPace {
    calls: std::sync::Arc<Semaphore>,
    /// The running mean of the time to readiness, in ms (0: none seen yet).
    ready_ms: AtomicU64,
}

/// The engine monitor's period, which bounds the time to readiness of an
/// attached volume's snapshot (see [`SnapshotPace`]).
const ENGINE_POLL_INTERVAL: Duration = Duration::from_secs(5);

impl SnapshotPace {
    /// A pace whose looks take a permit of `calls` each.
    pub fn new(calls: std::sync::Arc<Semaphore>) -> Self {
        SnapshotPace {
            calls,
            ready_ms: AtomicU64::new(0),
        }
    }

    /// A permit for one call (none once the gate is closed: it limits
    /// nothing any more, and the look goes ahead).
    async fn slot(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.calls.acquire().await.ok()
    }

    /// How long to wait before the first look, once readiness was seen.
    fn first_look(&self) -> Option<Duration> {
        match self.ready_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// Counts one snapshot seen ready `took` after the wait began, into a
    /// running mean weighted 1/8 (a detached volume's attachment, seconds
    /// long, moves it little), capped at the engine monitor's period.
    fn learn(&self, took: Duration) {
        let took = took.min(ENGINE_POLL_INTERVAL).as_millis().max(1) as u64;
        let _ = self
            .ready_ms
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some(match old {
                    0 => took,
                    old => (old * 7 + took) / 8,
                })
            });
    }
}

impl LonghornClient {
    /// The Snapshot CR of that name, if it exists.
    pub async fn snapshot(&self, volume: &str, name: &str) -> Result<Option<SnapshotCr>> {
        self.read(|| async {
            self.volume_action("snapshotCRGet", volume, json!({ "name": name }))
                .await
        })
        .await
    }

    /// Makes sure a snapshot of that name exists (creating it if it does not)
    /// and waits until it is ready to back up.
    #[tracing::instrument(skip(self, labels))]
    pub async fn ensure_snapshot(
        &self,
        volume: &str,
        name: &str,
        labels: &BTreeMap<String, String>,
        wait: Duration,
    ) -> Result<SnapshotCr> {
        self.request_snapshot(volume, name, labels, true).await?;
        self.await_snapshot(volume, name, labels, wait, None).await
    }

    /// Like [`Self::ensure_snapshot`] for a snapshot no earlier attempt can
    /// have asked for (the caller's record says so): creates it without
    /// looking first, saving a round trip per volume.
    pub async fn create_snapshot(
        &self,
        volume: &str,
        name: &str,
        labels: &BTreeMap<String, String>,
        wait: Duration,
    ) -> Result<SnapshotCr> {
        self.request_snapshot(volume, name, labels, false).await?;
        self.await_snapshot(volume, name, labels, wait, None).await
    }

    /// Asks for the snapshot (`snapshotCRCreate`), after looking for it first
    /// if `look_first`. One that exists already is fine; an unanswered
    /// request is found out by [`Self::await_snapshot`].
    pub async fn request_snapshot(
        &self,
        volume: &str,
        name: &str,
        labels: &BTreeMap<String, String>,
        look_first: bool,
    ) -> Result<()> {
        if look_first && self.snapshot(volume, name).await?.is_some() {
            return Ok(());
        }
        let created: Result<Option<SnapshotCr>> = self
            .volume_action(
                "snapshotCRCreate",
                volume,
                json!({ "name": name, "labels": labels }),
            )
            .await;
        match created {
            Ok(_) => Ok(()),
            // A previous attempt made it.
            Err(LonghornError::Refused { message, .. }) if message.contains("already exists") => {
                Ok(())
            }
            // No answer: whether it was made is found out while waiting.
            Err(e) if e.is_retryable() => {
                tracing::warn!(error = %e, "snapshotCRCreate unanswered; checking for the snapshot");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Waits until the requested snapshot is ready to back up, pacing its
    /// looks by `pace` when given (see [`SnapshotPace`]).
    pub async fn await_snapshot(
        &self,
        volume: &str,
        name: &str,
        labels: &BTreeMap<String, String>,
        wait: Duration,
        pace: Option<&SnapshotPace>,
    ) -> Result<SnapshotCr> {
        let start = Instant::now();
        if let Some(first) = pace.and_then(SnapshotPace::first_look) {
            tokio::time::sleep(first.min(wait)).await;
        }
        let mut created_again = false;
        let mut last = String::from("not ready");
        // A snapshot is often ready at the first look (or soon after); the
        // pause doubles from 100 ms up to the poll interval.
        let mut pause = Duration::from_millis(100).min(self.cfg.poll);
        loop {
            let permit = match pace {
                Some(p) => p.slot().await,
                None => None,
            };
            match self.snapshot(volume, name).await? {
                Some(s) if s.ready_to_use => {
                    if let Some(p) = pace {
                        p.learn(start.elapsed());
                    }
                    return Ok(s);
                }
                // A detached volume being attached for the snapshot, or an
                // engine upgrade: Longhorn clears it (see above).
                Some(s) if snapshot_error_is_transient(&s.error) => {
                    last = s.error;
                }
                Some(s) if !s.error.is_empty() => {
                    return Err(LonghornError::SnapshotFailed {
                        volume: volume.into(),
                        snapshot: name.into(),
                        message: s.error,
                    });
                }
                Some(_) => {}
                None if !created_again => {
                    // An unanswered create did not happen: ask once more (a
                    // duplicate is refused by name, so this cannot double it).
                    created_again = true;
                    self.request_snapshot(volume, name, labels, false).await?;
                }
                None => {}
            }
            drop(permit);
            if start.elapsed() >= wait {
                return Err(LonghornError::Deadline {
                    what: format!("snapshot {name} of volume {volume} to be ready"),
                    waited: start.elapsed(),
                    last,
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(self.cfg.poll);
        }
    }

    /// Every Snapshot CR of a volume (`snapshotCRList`).
    pub async fn list_snapshots(&self, volume: &str) -> Result<Vec<SnapshotCr>> {
        self.read(|| async {
            let c: Option<super::Collection<SnapshotCr>> = self
                .volume_action("snapshotCRList", volume, json!({}))
                .await?;
            Ok(c.map(|c| c.data).unwrap_or_default())
        })
        .await
    }

    /// Deletes a Snapshot CR (`snapshotCRDelete`); Longhorn removes the
    /// snapshot from the replicas asynchronously (the snapshot controller's
    /// deletion path). A missing one is fine.
    pub async fn delete_snapshot(&self, volume: &str, name: &str) -> Result<()> {
        let deleted: Result<Option<serde::de::IgnoredAny>> = self
            .volume_action("snapshotCRDelete", volume, json!({ "name": name }))
            .await;
        match deleted {
            Ok(_) => Ok(()),
            Err(LonghornError::Refused { message, .. }) if message.contains("not found") => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_look_waits_as_long_as_readiness_has_taken() {
        let pace = SnapshotPace::new(std::sync::Arc::new(Semaphore::new(1)));
        assert_eq!(pace.first_look(), None, "nothing seen: look at once");
        pace.learn(Duration::from_millis(2_500));
        assert_eq!(pace.first_look(), Some(Duration::from_millis(2_500)));
        // One slow attachment moves the mean by an eighth, capped at the
        // engine monitor's period.
        pace.learn(Duration::from_secs(60));
        assert_eq!(pace.first_look(), Some(Duration::from_millis(2_812)));
        for _ in 0..40 {
            pace.learn(Duration::from_millis(100));
        }
        assert!(pace.first_look() < Some(Duration::from_millis(120)));
    }

    #[test]
    fn the_volume_overrides_the_setting_and_v2_never_freezes() {
        let cases = [
            (None, "ignored", "v1", false),
            (Some("false"), "ignored", "v1", false),
            (Some("true"), "ignored", "v1", true),
            (Some("true"), "", "", true),
            (Some(r#"{"v1":"true"}"#), "ignored", "v1", true),
            (Some(r#"{"v1":"false"}"#), "ignored", "v1", false),
            (Some(r#"{"v1":"false"}"#), "enabled", "v1", true),
            (Some("true"), "disabled", "v1", false),
            (Some("true"), "enabled", "v2", false),
            (Some("not json {"), "ignored", "v1", false),
        ];
        for (setting, volume, engine, want) in cases {
            assert_eq!(
                freezes_filesystem(setting, volume, engine),
                want,
                "{setting:?} {volume} {engine}"
            );
        }
    }

    #[test]
    fn waiting_for_an_attachment_or_an_upgrade_is_not_a_failure() {
        let detached = "failed to take snapshot because the volume engine pvc-1-e-0 is not running. Waiting for the volume to be attached";
        let upgrading =
            "snapshot creation delayed: volume engine pvc-1-e-0 is upgrading from image a to b";
        let limit = "proxyServer=10.0.0.1:8501 destination=10.0.0.2:10000: failed to snapshot volume: rpc error: code = Unknown desc = too many snapshots created";
        assert!(snapshot_error_is_transient(detached));
        assert!(snapshot_error_is_transient(upgrading));
        assert!(!snapshot_error_is_transient(limit));
        assert!(!snapshot_error_is_transient(
            "lost track of the corresponding snapshot info inside volume engine"
        ));
        assert!(snapshot_error_is_limit(limit));
        assert!(!snapshot_error_is_limit(detached));
    }
}
