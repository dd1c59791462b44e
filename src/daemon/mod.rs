//! The daemon's scheduling: one cron job per policy (tokio-cron-scheduler),
//! run only on the replica that leads the policy (`leadership`: a Lease per
//! policy), at most one running tick per policy (an overlapping firing is
//! recorded as skipped), pending points adopted when this replica takes the
//! policy, and retention after every tick.
//!
//! The tick ledger: every firing of a policy's schedule is recorded once, as
//! `ran` (with its point, also when a crash cut it short and it was adopted),
//! `skipped` or `missed`. On taking the policy and before every tick, the firings since
//! the newest recorded one are recorded: `ran` when a point was begun for
//! them, else `missed`. A firing already recorded is never run (nothing runs
//! late), and the same firing delivered twice runs once.

use crate::app::App;
use crate::backup::{Events, Protect};
use crate::catalog::{BackupState, PointState, TickOutcome};
use crate::config::PolicyConfig;
use crate::metrics::Metrics;
use crate::runbook::engine::Env;
use crate::schedule;
use chrono::{DateTime, TimeDelta, Utc};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio_cron_scheduler::{Job, JobScheduler};

mod leadership;
mod ledger;
use leadership::Gate;
pub use leadership::{LeaseSettings, LeaseStatus};
use ledger::{Claim, NO_FIRING, NO_LEADER, Slot, claim};

/// A failure to start the daemon's scheduling.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("the scheduler failed: {0}")]
    Scheduler(#[from] tokio_cron_scheduler::JobSchedulerError),
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
}

/// How many missed firings are recorded per policy at once (the newest).
const MISSED_CAP: usize = 10_000;

/// The scheduling part of `dr serve`.
pub struct Daemon {
    app: Arc<App>,
    protect: Protect,
    env: Env,
    /// Each drilled policy's runbook (loaded and checked at start).
    runbooks: HashMap<String, crate::runbook::Runbook>,
    drill_locks: HashMap<String, Arc<Mutex<()>>>,
    holder: String,
    policies: HashMap<String, PolicyConfig>,
    slots: HashMap<String, Slot>,
    /// Retention runs apart from ticks (it never touches a pending point),
    /// one at a time per policy, so a slow prune never makes a tick skip.
    retention_locks: HashMap<String, Arc<Mutex<()>>>,
    /// One history compaction at a time, over every policy.
    compaction: Mutex<()>,
    metrics: Arc<Metrics>,
    leases: LeaseSettings,
    lease_status: Arc<LeaseStatus>,
    /// Per policy: open while this replica leads it.
    gates: HashMap<String, Gate>,
    /// The terms this replica's catalog writes are fenced with.
    fence: Arc<crate::catalog::Fence>,
    /// Set when dr serve is stopping: no new work starts.
    stopping: std::sync::atomic::AtomicBool,
}

/// A running scheduler; dropping it does not stop ticks in flight.
pub struct Running {
    scheduler: JobScheduler,
    daemon: Arc<Daemon>,
    stop: tokio::sync::watch::Sender<bool>,
    leaders: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops: no new work starts; work in flight gets `grace` to finish
    /// (a tick cut short stays `pending` and the next leader adopts it);
    /// then every Lease this replica holds is released, so that another
    /// replica takes its policies at once.
    pub async fn stop(mut self, grace: Duration) {
        let d = &self.daemon;
        d.stopping.store(true, std::sync::atomic::Ordering::Release);
        let _ = self.scheduler.shutdown().await;
        let deadline = tokio::time::Instant::now() + grace;
        while d.busy() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if d.busy() {
            tracing::warn!(
                "work still running after the {grace:?} grace: cut short (the next leader adopts it)"
            );
        }
        let _ = self.stop.send(true);
        for l in self.leaders.drain(..) {
            let _ = l.await;
        }
    }
}

impl Daemon {
    /// A daemon for the context's policies, with the clients it built.
    pub fn new(
        app: Arc<App>,
        protect: Protect,
        env: Env,
        runbooks: HashMap<String, crate::runbook::Runbook>,
        metrics: Arc<Metrics>,
        leases: LeaseSettings,
        lease_status: Arc<LeaseStatus>,
    ) -> Arc<Self> {
        let policies: Vec<PolicyConfig> = app.policies.iter().map(|p| p.config.clone()).collect();
        let holder = app.holder.clone();
        // Every policy write of the daemon's is fenced by its terms.
        let fence = crate::catalog::Fence::new(leases.identity.clone());
        for p in &policies {
            lease_status.register(p.name.as_str());
        }
        let mut protect = protect;
        protect.catalog = protect.catalog.fenced(fence.clone());
        let mut env = env;
        env.catalog = env.catalog.fenced(fence.clone());
        Arc::new(Daemon {
            app,
            protect,
            env,
            runbooks,
            drill_locks: policies
                .iter()
                .map(|p| (p.name.to_string(), Arc::new(Mutex::new(()))))
                .collect(),
            holder,
            policies: policies
                .iter()
                .map(|p| (p.name.to_string(), p.clone()))
                .collect(),
            slots: policies
                .iter()
                .map(|p| (p.name.to_string(), Slot::default()))
                .collect(),
            retention_locks: policies
                .iter()
                .map(|p| (p.name.to_string(), Arc::new(Mutex::new(()))))
                .collect(),
            compaction: Mutex::new(()),
            metrics,
            leases,
            lease_status,
            gates: policies
                .iter()
                .map(|p| (p.name.to_string(), Gate::new()))
                .collect(),
            fence,
            stopping: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Whether any tick, retention or drill is running.
    fn busy(&self) -> bool {
        let locked = |m: &Arc<Mutex<()>>| m.try_lock().is_err();
        self.slots
            .values()
            .any(|s| s.lock().is_ok_and(|g| g.is_some()))
            || self.retention_locks.values().any(locked)
            || self.drill_locks.values().any(locked)
    }

    fn stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Once this replica leads a policy: brings its ledger up to date,
    /// adopts its pending points (a tick a crash or a lost leader cut short)
    /// and starts its probe, all under the policy's gate.
    async fn on_lead(self: &Arc<Self>, policy: &str) {
        let Some(p) = self.policies.get(policy) else {
            return;
        };
        let work = async {
            let now = self.app.clock.now();
            let pending = self.protect.catalog.pending_points().await?;
            let pending: Vec<_> = pending.into_iter().filter(|x| x.policy == p.name).collect();
            self.record_unrecorded(p, now, NO_LEADER).await?;
            // A tick cut short before the newest record ran all the same.
            for point in &pending {
                self.record(p, point.tick_at, TickOutcome::Ran, Some(point.id), None)
                    .await?;
            }
            Ok::<_, crate::catalog::CatalogError>(pending)
        };
        let pending = match self
            .gated(policy, "bringing the ledger up to date", work)
            .await
        {
            Some(Ok(pending)) => pending,
            Some(Err(e)) => {
                tracing::error!(%policy, error = %e, "cannot bring the ledger up to date (tried again at the next tick)");
                Vec::new()
            }
            None => return,
        };
        if let Some(probe) = p.probe.clone() {
            let me = self.clone();
            let name = p.name.clone();
            tokio::spawn(async move {
                let run = crate::probe::run(
                    me.protect.catalog.clone(),
                    me.app.clock,
                    name.clone(),
                    probe,
                );
                me.gated(name.as_str(), "the probe", run).await;
            });
        }
        for point in pending {
            tracing::info!(%policy, tick = %point.tick_at, "adopting an unfinished tick");
            self.run(policy, point.tick_at, true).await;
        }
    }

    /// Starts the cron jobs and the competition for each policy's Lease
    /// (a policy's ledger is brought up to date and its pending points
    /// adopted when this replica takes it, see `on_lead`).
    pub async fn start(self: &Arc<Self>) -> Result<Running, DaemonError> {
        // Drill leftovers (an interrupted drill, a namespace past its TTL) go
        // first, on their own task: a slow teardown never delays ticks.
        {
            let me = self.clone();
            let ttl = self.app.shortest_drill_ttl();
            tokio::spawn(async move {
                let j = crate::drill::janitor(&me.env, &me.holder, ttl, me.env.clock.now()).await;
                if !j.interrupted_runs.is_empty() || !j.stale_namespaces.is_empty() {
                    tracing::info!(runs = ?j.interrupted_runs, namespaces = ?j.stale_namespaces, "drill leftovers removed");
                }
                for e in &j.errors {
                    tracing::warn!(error = %e, "drill leftovers not removed (tried again at the next start)");
                }
            });
        }
        let scheduler = JobScheduler::new().await?;
        for p in self.policies.values() {
            let Some(d) = &p.drill else { continue };
            let me = self.clone();
            let name = p.name.to_string();
            let job = Job::new_async(d.schedule.as_str(), move |_id, _lock| {
                let me = me.clone();
                let name = name.clone();
                Box::pin(async move {
                    tokio::spawn(async move { me.drill(&name).await });
                })
            })?;
            scheduler.add(job).await?;
        }
        for p in self.policies.values() {
            let me = self.clone();
            let name = p.name.to_string();
            let sched = p.schedule.clone();
            let job = Job::new_async(p.schedule.as_str(), move |_id, _lock| {
                let me = me.clone();
                let name = name.clone();
                let tick = schedule::tick_of(&sched, me.app.clock.now());
                Box::pin(async move {
                    // The job returns at once; the tick runs on its own task so
                    // a long tick never delays the scheduler.
                    tokio::spawn(async move { me.fire(&name, tick).await });
                })
            })?;
            scheduler.add(job).await?;
        }
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut leaders = Vec::new();
        for p in self.policies.values() {
            let elector = crate::cluster::leases::Elector::new(
                self.protect.kube.clone(),
                &self.leases.namespace,
                LeaseSettings::lease_name(p.name.as_str()),
                self.leases.identity.clone(),
                self.leases.duration,
            );
            let me = self.clone();
            let name = p.name.to_string();
            leaders.push(tokio::spawn(me.lead(name, elector, stopped.clone())));
        }
        // Each Lease tried once before the first firing, so that a replica
        // alone leads its policies from its first tick (bounded: an API
        // server that does not answer does not hold the start up).
        let tried = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.lease_status.tried() < self.policies.len() && tokio::time::Instant::now() < tried
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        scheduler.start().await?;
        Ok(Running {
            scheduler,
            daemon: self.clone(),
            stop,
            leaders,
        })
    }

    /// One firing from the scheduler: the ledger first, then the tick.
    pub async fn fire(self: &Arc<Self>, policy: &str, tick: DateTime<Utc>) {
        // Another replica leads the policy: its firing is that one's to run
        // and record.
        if self.stopping() || self.gates.get(policy).and_then(Gate::term).is_none() {
            return;
        }
        self.run(policy, tick, false).await;
    }

    /// Runs the tick of `tick` unless the policy is running another one (then
    /// it is `skipped`) or, for a new firing, the ledger already has it.
    /// `adopted`: a tick a crash cut short, recorded `ran` at start.
    async fn run(self: &Arc<Self>, policy: &str, tick: DateTime<Utc>, adopted: bool) {
        self.gated(policy, "the tick", self.run_tick(policy, tick, adopted))
            .await;
    }

    async fn run_tick(self: &Arc<Self>, policy: &str, tick: DateTime<Utc>, adopted: bool) {
        let (Some(p), Some(slot)) = (self.policies.get(policy), self.slots.get(policy)) else {
            return;
        };
        let catalog = &self.protect.catalog;
        let guard = match claim(slot, tick) {
            Claim::Mine(g) => g,
            Claim::Same => return,
            Claim::Busy => {
                tracing::warn!(%policy, %tick, "previous tick still running: skipped");
                let why = Some("the previous tick was still running");
                if let Err(e) = self.record(p, tick, TickOutcome::Skipped, None, why).await {
                    tracing::error!(%policy, %tick, error = %e, "cannot record a skipped tick");
                }
                return;
            }
        };
        if !adopted {
            let before = tick - TimeDelta::milliseconds(1);
            let ledger = match self.record_unrecorded(p, before, NO_FIRING).await {
                Ok(_) => catalog.tick_recorded(&p.name, tick).await,
                Err(e) => Err(e),
            };
            match ledger {
                Ok(false) => {}
                Ok(true) => {
                    tracing::warn!(%policy, %tick, "this firing is recorded already: not run late");
                    return;
                }
                Err(e) => {
                    // Recorded `missed` (or `ran`, if begun) by the next firing.
                    tracing::error!(%policy, %tick, error = %e, "tick not run: the catalog failed");
                    self.metrics.tick_error(policy);
                    return;
                }
            }
        }
        let started = tokio::time::Instant::now();
        let events: Events = Arc::new(|_| {});
        let outcome = self.protect.tick(p, tick, events).await;
        drop(guard);
        match outcome {
            Ok(report) => {
                let _ = self
                    .record(
                        p,
                        tick,
                        TickOutcome::Ran,
                        Some(report.point_id),
                        report.reason.as_deref(),
                    )
                    .await;
                self.metrics.point(policy, report.state);
                for v in &report.volumes {
                    self.metrics.backup(policy, v.state);
                }
                self.metrics
                    .tick_duration(policy, started.elapsed().as_secs_f64());
                tracing::info!(%policy, %tick, state = %report.state, "tick finished");
                if report.state != PointState::Pending {
                    let me = self.clone();
                    let policy = policy.to_owned();
                    tokio::spawn(async move { me.retain(&policy).await });
                }
                if report
                    .volumes
                    .iter()
                    .any(|v| v.state == BackupState::Failed)
                {
                    tracing::warn!(%policy, %tick, reason = ?report.reason, "some backups failed");
                }
            }
            Err(e) => {
                // The catalog failed: the point stays pending and is adopted later.
                tracing::error!(%policy, %tick, error = %e, "tick failed");
                self.metrics.tick_error(policy);
            }
        }
    }

    /// One scheduled drill of the newest complete point (none if one runs).
    pub async fn drill(self: &Arc<Self>, policy: &str) {
        if self.stopping() {
            return;
        }
        self.gated(policy, "the drill", self.drill_now(policy))
            .await;
    }

    async fn drill_now(self: &Arc<Self>, policy: &str) {
        let (Some(lock), Some(runbook)) = (self.drill_locks.get(policy), self.runbooks.get(policy))
        else {
            return;
        };
        let Ok(_guard) = lock.clone().try_lock_owned() else {
            tracing::warn!(%policy, "previous drill still running: this one skipped");
            return;
        };
        let env = &self.env;
        let now = env.clock.now();
        let plan = latest_plan(env.catalog.clone(), policy.to_owned(), now).await;
        let (record, plan) = match plan {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(%policy, error = %e, "drill not run: nothing to restore");
                return;
            }
        };
        // The configured identity opens sealed Secrets; without one the
        // drill copies them from the live namespace.
        let identity = match self.app.secrets_identity(None) {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!(%policy, error = %e, "drill not run: the secrets identity cannot be read");
                return;
            }
        };
        tracing::info!(%policy, point = %plan.point.id, "drill started");
        match crate::drill::start(
            &self.app,
            env,
            &record,
            runbook.clone(),
            &plan,
            identity,
            &crate::runbook::engine::Quiet,
        )
        .await
        {
            Ok(out) => {
                let passed = crate::drill::passed(&out.summary);
                tracing::info!(%policy, run = out.summary.run_id, passed, seconds = out.summary.total_seconds, "drill finished");
            }
            Err(e) => tracing::warn!(%policy, error = %e, "drill could not run"),
        }
    }

    async fn retain(&self, policy: &str) {
        self.gated(policy, "retention", self.retain_now(policy))
            .await;
    }

    async fn retain_now(&self, policy: &str) {
        let (Some(p), Some(lock)) = (self.policies.get(policy), self.retention_locks.get(policy))
        else {
            return;
        };
        // A prune already running will see this tick's points next time.
        let Ok(_guard) = lock.clone().try_lock_owned() else {
            return;
        };
        let verdicts =
            match crate::prune::plan(&self.protect.catalog, p, self.app.clock.now()).await {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(policy = %p.name, error = %e, "retention skipped");
                    return;
                }
            };
        // Run even with nothing new to prune: it finishes what a crash or a
        // refusal left of earlier prunes.
        match crate::prune::execute(
            &self.protect.catalog,
            &self.protect.longhorn,
            &self.protect.store,
            &p.name,
            &verdicts,
            Duration::from_secs(600),
            &self.app.clock,
        )
        .await
        {
            Ok(r)
                if r.points_pruned + r.backups_deleted + r.bundles_deleted + r.errors.len()
                    == 0 => {}
            Ok(r) => {
                tracing::info!(policy = %p.name, points = r.points_pruned, backups = r.backups_deleted, bundles = r.bundles_deleted, errors = r.errors.len(), "retention applied")
            }
            Err(e) => tracing::warn!(policy = %p.name, error = %e, "retention failed"),
        }
        self.compact().await;
    }

    /// Compacts the catalog's history (one compaction at a time).
    async fn compact(&self) {
        let Ok(_guard) = self.compaction.try_lock() else {
            return;
        };
        let history = self.app.config.history;
        let now = self.app.clock.now();
        match crate::prune::compact_history(&self.protect.catalog, &history, now).await {
            Ok(c) if c.total() == 0 => {}
            Ok(c) => {
                tracing::info!(
                    backup_rows = c.backup_rows,
                    points = c.points,
                    ticks = c.ticks,
                    "history compacted"
                )
            }
            Err(e) => {
                tracing::warn!(error = %e, "history not compacted (tried again after the next retention)")
            }
        }
    }
}

async fn latest_plan(
    catalog: crate::catalog::Catalog,
    policy: String,
    now: DateTime<Utc>,
) -> Result<(crate::catalog::PolicyRecord, crate::restore::RestorePlan), crate::restore::PlanError>
{
    let record = catalog.policy(&policy).await?;
    let plan =
        crate::restore::plan(&catalog, &record, crate::timespec::Target::Latest, now).await?;
    Ok((record, plan))
}
