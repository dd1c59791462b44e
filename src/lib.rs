//! dr — disaster recovery and backup orchestration for stateful Kubernetes
//! applications on Longhorn volumes.
//!
//! ```text
//!  config ─► app (one context: resolved policies, clock, adapters)
//!               │
//!  schedule ─► backup (a tick: Longhorn snapshot + backup per volume, the bundle to S3)
//!               │
//!               ▼
//!            catalog (SQLite | PostgreSQL) ─► retention ─► prune
//!               │
//!  restore --to T ─► restore (plan, pure: the newest complete point ≤ T)
//!               │
//!               ▼
//!            runbook (engine: infrastructure → redeploy → data → verification)
//!               │                        drill (the same runbook into a scratch
//!               ▼                               namespace, then teardown)
//!            report (RPO / RTO, MTBF / MTTR, availability)
//!
//!  adapters, the only doors out: longhorn (manager API), cluster (Kubernetes),
//!  store (S3), catalog (SQL); the clock
//! ```
//!
//! Modules in flow order: [`config`] and the value types ([`names`],
//! [`span`], [`timespec`]); [`app`], the context the CLI and the daemon share;
//! [`schedule`] (when, pure); [`backup`] (a tick) with [`bundle`] (the captured
//! objects and their pure transforms), [`secrets`] (Secrets sealed with age),
//! [`references`] (what the objects refer to, pure) and [`point_file`] (what
//! the bucket keeps of a point beside its bundle); [`catalog`] (what was protected);
//! [`retention`] (pure) and [`prune`]; [`sync`] (the catalog rebuilt from the
//! bucket); [`restore`] (planning only); [`runbook`] (executing: spec, engine,
//! steps, lease, summary); [`drill`]; [`report`]; [`status`], [`probe`],
//! [`metrics`], [`daemon`] and [`serve`] (dr serve); the adapters
//! [`longhorn`], [`cluster`], [`store`] and [`clock`]; the command line in
//! [`cli`].

// Flow order.
pub mod config;
pub mod names;
pub mod span;
pub mod timespec;

pub mod app;
pub mod schedule;
pub mod backup;
pub mod bundle;
pub mod secrets;
pub mod references;
pub mod point_file;
pub mod catalog;
pub mod retention;
pub mod prune;
pub mod sync;
pub mod restore;
pub mod runbook;
pub mod drill;
pub mod report;
pub mod status;
pub mod probe;
pub mod metrics;
pub mod daemon;
pub mod serve;

// Adapters.
pub mod clock;
pub mod cluster;
pub mod longhorn;
pub mod store;

pub mod cli;
