//! Executing a runbook, for restores and drills alike: its [`spec`] (the
//! YAML procedure, parsed and validated), the [`engine`] (begin, hold, run
//! the steps, finish, resume after a crash), the [`steps`] (one function per
//! kind of step; the backup target's check in [`infra`]), the [`lease`] (holder and heartbeat, stale-holder
//! takeover) and the [`summary`] (pure verdicts against the budgets and the
//! RTO/RPO).

pub mod engine;
pub mod infra;
pub mod lease;
pub mod spec;
pub mod steps;
pub mod summary;

pub use engine::{
    Begun, Env, Held, Observer, Outcome, Quiet, RunError, RunEvent, RunSpec, StepFailed, begin,
    execute,
};
pub use spec::{Action, Check, PlannedStep, Runbook, RunbookError, Stage, Step, expand};
pub use steps::StepError;
