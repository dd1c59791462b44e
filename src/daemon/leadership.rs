//! Which policies this replica leads. One task per policy keeps trying for
//! the policy's Lease (`cluster::leases`); having it, the replica claims
//! the Lease's term in the catalog (fencing, `catalog::leaders`) and opens
//! the policy's gate; every piece of the policy's work (ticks, adopted
//! ticks, retention, drills, the probe) runs only through the open gate and
//! is dropped the moment it closes. The gate closes when another replica
//! holds the Lease, and also, on this replica's own clock, when no renewal
//! has succeeded for two thirds of the Lease's duration: another replica
//! may take the Lease only after a whole duration without change, so this
//! one has stopped by then.

use super::Daemon;
use crate::cluster::leases::{Attempt, Elector};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Where the Leases live and how long they last.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub namespace: String,
    pub identity: String,
    pub duration: Duration,
}

impl LeaseSettings {
    /// The name of a policy's Lease.
    pub fn lease_name(policy: &str) -> String {
        format!("dr-{policy}")
    }
    fn renew_every(&self) -> Duration {
        self.duration / 3
    }
    fn renew_deadline(&self) -> Duration {
        self.duration * 2 / 3
    }
}

/// What `/readyz`, `/metrics` and the log say about the leases.
#[derive(Debug)]
pub struct LeaseStatus {
    pub identity: String,
    pub namespace: String,
    /// The Lease API has answered at least once.
    answered: AtomicBool,
    /// Per policy: whether this replica leads it, and the holder last seen.
    seen: std::sync::Mutex<BTreeMap<String, (bool, Option<String>)>>,
    /// Policies whose Lease has been tried at least once.
    tried: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl LeaseStatus {
    pub fn new(settings: &LeaseSettings) -> Arc<LeaseStatus> {
        Arc::new(LeaseStatus {
            identity: settings.identity.clone(),
            namespace: settings.namespace.clone(),
            answered: AtomicBool::new(false),
            seen: Default::default(),
            tried: Default::default(),
        })
    }
    /// A policy this replica competes for (not led until a Lease says so).
    pub fn register(&self, policy: &str) {
        if let Ok(mut s) = self.seen.lock() {
            s.entry(policy.to_owned()).or_insert((false, None));
        }
    }
    /// How many policies' Leases have been tried at least once.
    pub fn tried(&self) -> usize {
        self.tried.lock().map_or(0, |t| t.len())
    }
    fn tried_once(&self, policy: &str) {
        if let Ok(mut t) = self.tried.lock() {
            t.insert(policy.to_owned());
        }
    }
    pub fn answered(&self) -> bool {
        self.answered.load(Ordering::Acquire)
    }
    /// Per policy: (this replica leads it, the holder last seen).
    pub fn policies(&self) -> BTreeMap<String, (bool, Option<String>)> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
    fn note(&self, policy: &str, mine: bool, holder: Option<String>) {
        self.answered.store(true, Ordering::Release);
        if let Ok(mut s) = self.seen.lock() {
            s.insert(policy.to_owned(), (mine, holder));
        }
    }
}

/// While this replica leads a policy: its term, and until when it may act
/// without another renewal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Lead {
    pub term: i64,
    pub until: Instant,
}

/// A policy's gate: open while this replica leads the policy.
pub(super) struct Gate(watch::Sender<Option<Lead>>);

impl Gate {
    pub fn new() -> Gate {
        Gate(watch::channel(None).0)
    }
    fn current(&self) -> Option<Lead> {
        *self.0.borrow()
    }
    /// The term, if the gate is open now.
    pub fn term(&self) -> Option<i64> {
        self.current()
            .filter(|l| l.until > Instant::now())
            .map(|l| l.term)
    }
    fn set(&self, lead: Option<Lead>) {
        self.0.send_replace(lead);
    }
    /// Resolves once the gate is closed (at once if it is).
    pub async fn closed(&self) {
        let mut rx = self.0.subscribe();
        loop {
            let Some(lead) = *rx.borrow_and_update() else {
                return;
            };
            if lead.until <= Instant::now() {
                return;
            }
            tokio::select! {
                biased;
                _ = tokio::time::sleep_until(lead.until) => {}
                changed = rx.changed() => if changed.is_err() { return },
            }
        }
    }
}

impl Daemon {
    /// Runs `work` of `policy` only while this replica leads it: None when
    /// the gate is closed, or closes before the work is done (the work is
    /// dropped there: a tick's point stays pending for the next leader).
    pub(super) async fn gated<F: std::future::Future>(
        &self,
        policy: &str,
        what: &str,
        work: F,
    ) -> Option<F::Output> {
        let gate = self.gates.get(policy)?;
        gate.term()?;
        tokio::select! {
            biased;
            _ = gate.closed() => {
                tracing::warn!(%policy, "{what} stopped: this replica no longer leads the policy");
                None
            }
            out = work => Some(out),
        }
    }

    /// Keeps trying for `policy`'s Lease until `stop` says so, then gives
    /// the Lease up.
    pub(super) async fn lead(
        self: Arc<Self>,
        policy: String,
        mut elector: Elector,
        mut stop: watch::Receiver<bool>,
    ) {
        let Some(gate) = self.gates.get(&policy) else {
            return;
        };
        let settings = &self.leases;
        let mut floor = 0;
        let mut warned = false;
        while !*stop.borrow() {
            let started = Instant::now();
            let every = settings.renew_every();
            match tokio::time::timeout(every, elector.attempt(floor)).await {
                Ok(Ok(Attempt::Held { term })) => {
                    warned = false;
                    let lead = Lead {
                        term,
                        until: started + settings.renew_deadline(),
                    };
                    if gate.current().is_some_and(|l| l.term == term) {
                        gate.set(Some(lead));
                    } else {
                        floor = self.take(&policy, lead, floor).await;
                    }
                    self.lease_status.note(
                        &policy,
                        gate.term().is_some(),
                        Some(settings.identity.clone()),
                    );
                }
                Ok(Ok(Attempt::Other { holder })) => {
                    warned = false;
                    if gate.current().is_some() {
                        let who = holder.clone().unwrap_or_else(|| "another replica".into());
                        self.step_down(&policy, &format!("{who} holds its Lease now"));
                    }
                    self.lease_status.note(&policy, false, holder);
                }
                Ok(Err(e)) if !warned => {
                    warned = true;
                    tracing::warn!(%policy, error = %e, "cannot read or renew the policy's Lease (retrying)");
                }
                Ok(Err(_)) => {}
                Err(_) if !warned => {
                    warned = true;
                    tracing::warn!(%policy, "the Lease API did not answer within {every:?} (retrying)");
                }
                Err(_) => {}
            }
            self.lease_status.tried_once(&policy);
            if gate.current().is_some_and(|l| l.until <= Instant::now()) {
                self.step_down(&policy, "its Lease could not be renewed in time");
            }
            let next = started + every;
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = stop.changed() => {}
            }
        }
        self.step_down(&policy, "dr serve is stopping");
        match tokio::time::timeout(settings.renew_every(), elector.release()).await {
            Ok(Ok(())) => tracing::info!(%policy, lease = elector.name(), "Lease released"),
            Ok(Err(e)) => {
                tracing::warn!(%policy, error = %e, "Lease not released (it runs out by itself)")
            }
            Err(_) => tracing::warn!(%policy, "Lease not released in time (it runs out by itself)"),
        }
    }

    /// This replica holds `policy`'s Lease in `lead.term`: claims the term
    /// in the catalog, opens the gate and starts the policy's work. Returns
    /// the floor for the next attempt: above the catalog's term when the
    /// catalog knows a newer one (the Lease was recreated).
    async fn take(self: &Arc<Self>, policy: &str, lead: Lead, floor: i64) -> i64 {
        let catalog = &self.protect.catalog;
        let now = self.app.clock.now();
        let identity = &self.leases.identity;
        match catalog.claim_term(policy, identity, lead.term, now).await {
            Ok(true) => {
                self.fence.lead(policy, lead.term);
                if let Some(gate) = self.gates.get(policy) {
                    gate.set(Some(lead));
                }
                tracing::info!(%policy, term = lead.term, "this replica leads the policy");
                let me = self.clone();
                let policy = policy.to_owned();
                tokio::spawn(async move { me.on_lead(&policy).await });
                floor
            }
            Ok(false) => {
                let newer = catalog
                    .leaders()
                    .await
                    .ok()
                    .and_then(|ls| ls.into_iter().find(|l| l.policy == policy).map(|l| l.term));
                tracing::warn!(%policy, term = lead.term, catalog_term = ?newer, "the catalog knows a newer term of this policy: moving the Lease past it");
                newer.map_or(floor, |t| t + 1)
            }
            Err(e) => {
                tracing::warn!(%policy, error = %e, "cannot claim the policy in the catalog (retrying)");
                floor
            }
        }
    }

    fn step_down(&self, policy: &str, why: &str) {
        let Some(gate) = self.gates.get(policy) else {
            return;
        };
        self.fence.step_down(policy);
        if gate.current().is_some() {
            gate.set(None);
            tracing::warn!(%policy, "this replica no longer leads the policy: {why}");
        }
        self.lease_status.note(policy, false, None);
    }
}
