//! Outage detection: an optional per-policy HTTP probe of the application.
//! Failures beyond a threshold open an incident (source `probe`, opened at
//! the first failure of the run); the first success after that resolves it.
//! The decision is a pure state machine ([`Probe::observe`]); the daemon
//! feeds it one result per interval.

use crate::catalog::{Catalog, IncidentId, IncidentSource};
use crate::clock::Clock;
use crate::config::ProbeConfig;
use crate::names::PolicyName;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// What the probe decided after one observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    None,
    /// Open an incident that began at the first failure of the run.
    Open {
        at: DateTime<Utc>,
    },
    /// Resolve the open incident at this time.
    Resolve {
        id: IncidentId,
        at: DateTime<Utc>,
    },
}

/// The probe's memory between observations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probe {
    pub failures: u32,
    pub first_failure: Option<DateTime<Utc>>,
    pub open: Option<IncidentId>,
}

impl Probe {
    /// One result; `threshold` failures in a row open an incident. Pure.
    pub fn observe(&mut self, ok: bool, at: DateTime<Utc>, threshold: u32) -> Action {
        if ok {
            self.failures = 0;
            self.first_failure = None;
            return match self.open.take() {
                Some(id) => Action::Resolve { id, at },
                None => Action::None,
            };
        }
        self.failures = self.failures.saturating_add(1);
        let first = *self.first_failure.get_or_insert(at);
        if self.open.is_none() && self.failures >= threshold.max(1) {
            return Action::Open { at: first };
        }
        Action::None
    }
}

/// One HTTP check: a 2xx or 3xx answer within the timeout.
pub async fn check(client: &reqwest::Client, url: &str) -> Result<(), String> {
    match client.get(url).send().await {
        Ok(r) if r.status().is_success() || r.status().is_redirection() => Ok(()),
        Ok(r) => Err(format!("status {}", r.status().as_u16())),
        Err(e) => Err(e.to_string()),
    }
}

/// Reads a volume's content checksum from a content probe URL template
/// (`{volume}` expands): the `sha256` field of a JSON answer, else the text.
pub async fn content_checksum(
    client: &reqwest::Client,
    template: &str,
    volume: &str,
) -> Result<String, String> {
    let url = template.replace("{volume}", volume);
    let r = client
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    if !r.status().is_success() {
        return Err(format!("GET {url}: status {}", r.status().as_u16()));
    }
    let body = r.text().await.map_err(|e| format!("GET {url}: {e}"))?;
    Ok(serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("sha256").and_then(|s| s.as_str()).map(str::to_owned))
        .unwrap_or_else(|| body.trim().to_owned()))
}

/// Probes a policy's application until the process ends. An incident the
/// probe opened before a restart is adopted, not opened twice.
pub async fn run(catalog: Catalog, clock: Clock, policy: PolicyName, cfg: ProbeConfig) {
    let client = match reqwest::Client::builder()
        .timeout(cfg.timeout.0.as_duration())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(%policy, error = %e, "probe disabled: no HTTP client");
            return;
        }
    };
    let url = cfg.url.0.to_string();
    let interval = cfg.interval.0.as_duration();
    let checks = || check(&client, &url);
    observe_loop(
        &catalog,
        &clock,
        &policy,
        &url,
        interval,
        cfg.failures,
        checks,
    )
    .await
}

/// Where the probe's loop records outages: the catalog in `dr serve`; a
/// recorder in the paused-clock test of the loop (the catalog path itself
/// is tested on the bed, tests/it/probe.rs).
pub(crate) trait Outages {
    /// The incident this probe opened and left open, if any.
    async fn open_one(&self, policy: &PolicyName) -> Option<IncidentId>;
    async fn open(
        &self,
        policy: &PolicyName,
        title: &str,
        at: DateTime<Utc>,
    ) -> Result<IncidentId, String>;
    async fn resolve(&self, id: IncidentId, at: DateTime<Utc>) -> Result<(), String>;
}

impl Outages for Catalog {
    async fn open_one(&self, policy: &PolicyName) -> Option<IncidentId> {
        let open = self.list_incidents(Some(policy), true, 100).await.ok()?;
        open.iter()
            .find(|i| i.source == IncidentSource::Probe)
            .map(|i| i.id)
    }

    async fn open(
        &self,
        policy: &PolicyName,
        title: &str,
        at: DateTime<Utc>,
    ) -> Result<IncidentId, String> {
        self.open_incident(Some(policy), title, IncidentSource::Probe, at)
            .await
            .map(|i| i.id)
            .map_err(|e| e.to_string())
    }

    async fn resolve(&self, id: IncidentId, at: DateTime<Utc>) -> Result<(), String> {
        self.resolve_incident(id, at, Some("the probe succeeded again"))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// The probe's loop: one check per interval (at least 100 ms), fed to the
/// state machine, its decisions recorded. Checks come from `checks`, so a
/// test on a paused clock can script them.
async fn observe_loop<F, Fut>(
    outages: &impl Outages,
    clock: &Clock,
    policy: &PolicyName,
    url: &str,
    interval: Duration,
    threshold: u32,
    mut checks: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut state = Probe {
        open: outages.open_one(policy).await,
        ..Probe::default()
    };
    let interval = interval.max(Duration::from_millis(100));
    loop {
        let result = checks().await;
        let now = clock.now();
        if let Err(e) = &result {
            tracing::warn!(%policy, %url, error = %e, failures = state.failures + 1, "probe failed");
        }
        match state.observe(result.is_ok(), now, threshold) {
            Action::None => {}
            Action::Open { at } => {
                let title = format!(
                    "{url} failed {} checks in a row ({})",
                    state.failures,
                    result.err().unwrap_or_default()
                );
                match outages.open(policy, &title, at).await {
                    Ok(id) => {
                        tracing::error!(%policy, incident = %id, "outage detected: incident opened");
                        state.open = Some(id);
                    }
                    Err(e) => tracing::error!(%policy, error = %e, "cannot record the outage"),
                }
            }
            Action::Resolve { id, at } => match outages.resolve(id, at).await {
                Ok(()) => {
                    tracing::info!(%policy, incident = %id, "service back: incident resolved")
                }
                Err(e) => {
                    tracing::error!(%policy, error = %e, "cannot resolve the incident");
                    state.open = Some(id);
                }
            },
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, s).unwrap()
    }

    #[test]
    fn failures_beyond_the_threshold_open_from_the_first_and_success_resolves() {
        let mut p = Probe::default();
        assert_eq!(p.observe(true, t(0), 3), Action::None);
        assert_eq!(p.observe(false, t(30), 3), Action::None);
        assert_eq!(p.observe(false, t(31), 3), Action::None);
        assert_eq!(p.observe(false, t(32), 3), Action::Open { at: t(30) });
        p.open = Some(IncidentId(7));
        assert_eq!(p.observe(false, t(33), 3), Action::None, "opened once");
        assert_eq!(
            p.observe(true, t(40), 3),
            Action::Resolve {
                id: IncidentId(7),
                at: t(40)
            }
        );
        assert_eq!(p.observe(true, t(41), 3), Action::None);
    }

    #[test]
    fn a_blip_below_the_threshold_opens_nothing() {
        let mut p = Probe::default();
        assert_eq!(p.observe(false, t(0), 3), Action::None);
        assert_eq!(p.observe(false, t(1), 3), Action::None);
        assert_eq!(p.observe(true, t(2), 3), Action::None);
        assert_eq!(p.observe(false, t(3), 3), Action::None);
        assert_eq!(
            p.first_failure,
            Some(t(3)),
            "a new run of failures starts over"
        );
    }

    /// One recorded incident: (title, opened, resolved).
    type Recorded = (String, DateTime<Utc>, Option<DateTime<Utc>>);

    /// What the loop recorded.
    #[derive(Default)]
    struct Recorder(std::sync::Mutex<Vec<Recorded>>);

    impl Outages for Recorder {
        async fn open_one(&self, _: &PolicyName) -> Option<IncidentId> {
            None
        }
        async fn open(
            &self,
            _: &PolicyName,
            title: &str,
            at: DateTime<Utc>,
        ) -> Result<IncidentId, String> {
            let mut v = self.0.lock().map_err(|e| e.to_string())?;
            v.push((title.to_owned(), at, None));
            Ok(IncidentId(v.len() as i64))
        }
        async fn resolve(&self, id: IncidentId, at: DateTime<Utc>) -> Result<(), String> {
            let mut v = self.0.lock().map_err(|e| e.to_string())?;
            let i = v
                .get_mut(id.0 as usize - 1)
                .ok_or_else(|| "no such incident".to_string())?;
            i.2 = Some(at);
            Ok(())
        }
    }

    /// The loop on a paused clock: one check per interval, an incident
    /// opened after the threshold's failures (dated from the first) and
    /// resolved by the next success.
    #[tokio::test(start_paused = true)]
    async fn the_loop_opens_at_the_threshold_and_resolves_on_success() {
        let clock = Clock::tokio_from(t(0));
        let policy: PolicyName = "app".parse().expect("a policy name");
        let script = [true, false, false, false, false, true];
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let mut done_tx = Some(done_tx);
        let recorder = std::sync::Arc::new(Recorder::default());
        let (seen2, r2) = (seen.clone(), recorder.clone());
        let task = tokio::spawn(async move {
            let checks = move || {
                let mut seen = seen2.lock().expect("not poisoned");
                let i = seen.len();
                seen.push(clock.now());
                if i == script.len()
                    && let Some(tx) = done_tx.take()
                {
                    let _ = tx.send(());
                }
                let ok = script.get(i).copied().unwrap_or(true);
                std::future::ready(if ok {
                    Ok(())
                } else {
                    Err("refused".to_string())
                })
            };
            let interval = Duration::from_secs(30);
            observe_loop(&*r2, &clock, &policy, "http://app", interval, 3, checks).await
        });
        done_rx.await.expect("the script ran to its end");
        task.abort();
        let seen = seen.lock().expect("not poisoned").clone();
        let gaps: Vec<i64> = seen
            .windows(2)
            .map(|w| (w[1] - w[0]).num_seconds())
            .collect();
        assert!(
            gaps.iter().all(|g| *g == 30),
            "one check per interval: {gaps:?}"
        );
        let incidents = recorder.0.lock().expect("not poisoned").clone();
        assert_eq!(incidents.len(), 1, "one outage, opened once");
        let (title, opened, resolved) = &incidents[0];
        assert_eq!(*opened, seen[1], "dated from the first failure");
        assert_eq!(*resolved, Some(seen[5]), "resolved by the first success");
        assert!(title.contains("failed 3 checks"), "{title}");
    }
}
