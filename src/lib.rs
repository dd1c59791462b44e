//! dr — disaster recovery and backup orchestration for stateful Kubernetes
//! applications on Longhorn volumes.
//!
//! ```text
//!  config ──► schedule tick ──► backup (Longhorn snapshot + backup, manifests to S3)
//!                                  │
//!                                  ▼
//!                               catalog (SQLite | PostgreSQL)
//!                                  │
//!  restore --to T ──► restore::plan (pure: newest complete point ≤ T)
//!                                  │
//!                                  ▼
//!                     runbook (infrastructure → redeploy → data → verification)
//!                                  │
//!                                  ▼
//!                               report (RPO / RTO, MTBF / MTTR)
//! ```
//!
//! Modules, in flow order: [`config`] (what to protect), [`catalog`] (what was
//! protected), [`restore`] (what to bring back), [`serve`] (the daemon's HTTP
//! face); value types in [`names`], [`span`] and [`timespec`]; the command line
//! in [`cli`].

pub mod app;
pub mod backup;
pub mod bundle;
pub mod catalog;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod drill;
pub mod longhorn;
pub mod metrics;
pub mod names;
pub mod probe;
pub mod prune;
pub mod report;
pub mod restore;
pub mod retention;
pub mod runbook;
pub mod schedule;
pub mod serve;
pub mod span;
pub mod status;
pub mod store;
pub mod sync;
pub mod timespec;
