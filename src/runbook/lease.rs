//! Who holds a run: the holder id of this process, the heartbeat that keeps
//! a run held, and the judgement of a holder as alive or gone (stale
//! heartbeat, or its process dead on this host), which decides whether a run
//! may be taken over and resumed.

use crate::catalog::{Catalog, CatalogError, RunId, RunRecord};
use crate::clock::Clock;
use chrono::{DateTime, TimeDelta, Utc};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A running run's holder refreshes its heartbeat this often…
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// …and is presumed dead after this long without one.
pub const STALE_AFTER: Duration = Duration::from_secs(30);

/// A unique holder id for this process: `host:pid:nonce`.
pub fn holder_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    format!(
        "{host}:{}:{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// Whether a holder is certainly dead: same host and its process is gone
/// (or a zombie). Another host's holder is judged by its heartbeat alone.
pub fn holder_dead(holder: &str) -> bool {
    let mut parts = holder.split(':');
    let (Some(host), Some(pid)) = (parts.next(), parts.next()) else {
        return false;
    };
    let here = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    if host != here || pid.parse::<u32>().is_err() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Err(_) => true,
        Ok(s) => s
            .lines()
            .find(|l| l.starts_with("State:"))
            .is_some_and(|l| l.contains("Z") || l.contains("X")),
    }
}

/// What a running run's holder is, judged at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// Heartbeat fresh and the process not known dead: the run is busy.
    Alive,
    /// Gone: the run may be taken over by a holder whose heartbeat row
    /// still reads older than `cutoff` (the catalog checks it atomically).
    Gone { cutoff: DateTime<Utc> },
}

/// Judges a running run's holder. Pure given `dead` (whether its process is
/// known to be gone, from [`holder_dead`]).
pub fn judge(run: &RunRecord, dead: bool, now: DateTime<Utc>) -> Holder {
    let stale_after = TimeDelta::from_std(STALE_AFTER).unwrap_or(TimeDelta::MAX);
    let hb = run.heartbeat_at.unwrap_or(run.started_at);
    if dead {
        // Its process is gone: take it over whatever its heartbeat says.
        return Holder::Gone {
            cutoff: now + TimeDelta::seconds(1),
        };
    }
    if now - hb > stale_after {
        return Holder::Gone {
            cutoff: now - stale_after,
        };
    }
    Holder::Alive
}

/// Judges a run's holder now, looking up whether its process is gone.
pub fn judge_now(run: &RunRecord, now: DateTime<Utc>) -> Holder {
    judge(run, run.holder.as_deref().is_some_and(holder_dead), now)
}

/// Where a heartbeat is written: the catalog (an in-memory fake in unit
/// tests of the lease's timing).
pub trait Heartbeats: Clone + Send + Sync + 'static {
    /// Refreshes `run`'s heartbeat to `now`; false if `holder` no longer holds it.
    fn beat(
        &self,
        run: RunId,
        holder: &str,
        now: DateTime<Utc>,
    ) -> impl std::future::Future<Output = Result<bool, CatalogError>> + Send;
}

impl Heartbeats for Catalog {
    async fn beat(
        &self,
        run: RunId,
        holder: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, CatalogError> {
        self.heartbeat(run, holder, now).await
    }
}

/// The heartbeat of a held run: refreshed every [`HEARTBEAT`] on tokio's
/// clock with the clock's time; `lost()` turns true once another holder has
/// taken the run over. Stops when dropped.
pub struct Lease {
    lost: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Lease {
    /// Starts the heartbeat of `run` for `holder`.
    pub fn hold(beats: impl Heartbeats, clock: Clock, run: RunId, holder: String) -> Lease {
        let lost = Arc::new(AtomicBool::new(false));
        let flag = lost.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(HEARTBEAT).await;
                match beats.beat(run, &holder, clock.now()).await {
                    Ok(true) => {}
                    Ok(false) => {
                        flag.store(true, Ordering::SeqCst);
                        return;
                    }
                    Err(e) => tracing::warn!(error = %e, "run heartbeat failed (will retry)"),
                }
            }
        });
        Lease { lost, task }
    }

    /// Whether another holder took the run over.
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{RunKind, RunState};

    fn run_at(hb: Option<DateTime<Utc>>, started: DateTime<Utc>) -> RunRecord {
        RunRecord {
            id: RunId(1),
            kind: RunKind::Restore,
            policy: "shop".parse().expect("a policy name"),
            point_id: None,
            target_namespace: "shop".parse().expect("a namespace"),
            target_at: None,
            state: RunState::Running,
            incident_id: None,
            started_at: started,
            finished_at: None,
            error: None,
            holder: Some("elsewhere:1:x".into()),
            heartbeat_at: hb,
            summary: None,
        }
    }

    #[test]
    fn a_live_local_holder_is_alive_and_a_gone_one_is_dead() {
        let me = holder_id();
        assert!(!holder_dead(&me));
        let host = me.split(':').next().unwrap_or_default();
        assert!(holder_dead(&format!("{host}:4000000:x")));
        assert!(
            !holder_dead("elsewhere:1:x"),
            "other hosts are judged by heartbeat"
        );
    }

    /// Records each beat; answers false (taken over) from the `lose_at`th on.
    #[derive(Clone)]
    struct Beats {
        seen: Arc<std::sync::Mutex<Vec<DateTime<Utc>>>>,
        lose_at: usize,
    }

    impl Heartbeats for Beats {
        async fn beat(&self, _: RunId, _: &str, now: DateTime<Utc>) -> Result<bool, CatalogError> {
            let mut seen = self.seen.lock().expect("not poisoned");
            seen.push(now);
            Ok(seen.len() < self.lose_at)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_heartbeat_beats_every_period_and_notices_a_takeover() {
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).expect("a time");
        let beats = Beats {
            seen: Arc::default(),
            lose_at: 3,
        };
        let lease = Lease::hold(beats.clone(), Clock::tokio_from(t0), RunId(1), "me".into());
        tokio::time::sleep(HEARTBEAT * 2 + Duration::from_millis(10)).await;
        let seen = beats.seen.lock().expect("not poisoned").clone();
        assert_eq!(
            seen,
            vec![t0 + TimeDelta::seconds(5), t0 + TimeDelta::seconds(10)]
        );
        assert!(!lease.lost());
        tokio::time::sleep(HEARTBEAT).await;
        assert!(lease.lost(), "the third beat found the run taken over");
        tokio::time::sleep(HEARTBEAT * 3).await;
        assert_eq!(
            beats.seen.lock().expect("not poisoned").len(),
            3,
            "it stops beating"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_lease_beats_no_more() {
        let beats = Beats {
            seen: Arc::default(),
            lose_at: usize::MAX,
        };
        let lease = Lease::hold(
            beats.clone(),
            Clock::tokio_from(Utc::now()),
            RunId(1),
            "me".into(),
        );
        tokio::time::sleep(HEARTBEAT + Duration::from_millis(10)).await;
        drop(lease);
        tokio::time::sleep(HEARTBEAT * 4).await;
        assert_eq!(beats.seen.lock().expect("not poisoned").len(), 1);
    }

    #[test]
    fn a_holder_is_gone_after_stale_after_without_a_heartbeat_or_when_dead() {
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).expect("a time");
        let r = run_at(Some(t0), t0);
        assert_eq!(judge(&r, false, t0 + TimeDelta::seconds(30)), Holder::Alive);
        let later = t0 + TimeDelta::seconds(31);
        assert_eq!(
            judge(&r, false, later),
            Holder::Gone {
                cutoff: later - TimeDelta::seconds(30)
            }
        );
        // A dead process is gone at once, with a cutoff past any heartbeat.
        assert_eq!(
            judge(&r, true, t0),
            Holder::Gone {
                cutoff: t0 + TimeDelta::seconds(1)
            }
        );
        // No heartbeat yet: judged from the start.
        let r = run_at(None, t0);
        assert_eq!(judge(&r, false, t0 + TimeDelta::seconds(10)), Holder::Alive);
    }
}
