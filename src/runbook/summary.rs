//! What a run achieved, from its catalog rows: each stage's time against its
//! budget, the RTO verdict and the achieved RPO. Pure.

use crate::catalog::{RunKind, RunRecord, RunState, StepRecord, StepState};
use crate::span::Span;
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// How a stage or a run did against its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Within,
    Over,
    Failed,
    NotRun,
    Running,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Within => "within",
            Verdict::Over => "OVER",
            Verdict::Failed => "FAILED",
            Verdict::NotRun => "not run",
            Verdict::Running => "running",
        }
    }
}

/// One stage of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageSummary {
    pub name: String,
    pub budget_seconds: f64,
    /// From the first step's start to the last step's end (crash gaps included).
    pub actual_seconds: Option<f64>,
    pub verdict: Verdict,
    pub steps: Vec<StepSummary>,
}

/// One step of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepSummary {
    pub seq: i64,
    pub step: String,
    pub state: String,
    pub seconds: Option<f64>,
    pub detail: Option<String>,
}

/// The record of a run, as printed and stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub run_id: i64,
    pub kind: RunKind,
    pub policy: String,
    pub point_id: Option<i64>,
    pub target_namespace: String,
    pub state: RunState,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Run start to its end (or to `now` while running).
    pub total_seconds: f64,
    pub rto_seconds: f64,
    pub rto_verdict: Verdict,
    /// Target time minus the point's time.
    pub data_loss_seconds: f64,
    pub rpo_seconds: f64,
    pub within_rpo: bool,
    pub stages: Vec<StageSummary>,
    pub error: Option<String>,
}

fn secs(d: TimeDelta) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

/// A stage of a run with its budget, and whether the RTO clock runs through
/// it: a drill's teardown comes after the application is back, so it does not.
#[derive(Debug, Clone, PartialEq)]
pub struct StageBudget {
    pub name: String,
    pub budget: Span,
    pub counts_for_rto: bool,
}

impl StageBudget {
    /// A stage of the recovery itself (the runbook's).
    pub fn recovery(name: impl Into<String>, budget: Span) -> StageBudget {
        StageBudget {
            name: name.into(),
            budget,
            counts_for_rto: true,
        }
    }

    /// A stage after the application is back (a drill's teardown).
    pub fn after_recovery(name: impl Into<String>, budget: Span) -> StageBudget {
        StageBudget {
            name: name.into(),
            budget,
            counts_for_rto: false,
        }
    }
}

/// The stages of a run, in order, with their budgets.
pub type StageBudgets = Vec<StageBudget>;

/// Summarizes a run from its rows. Pure.
#[allow(clippy::too_many_arguments)]
pub fn summarize(
    run: &RunRecord,
    steps: &[StepRecord],
    stages: &StageBudgets,
    rto: Span,
    data_loss: TimeDelta,
    rpo: Span,
    now: DateTime<Utc>,
) -> RunSummary {
    let mut out = Vec::new();
    for StageBudget { name, budget, .. } in stages {
        let mine: Vec<&StepRecord> = steps.iter().filter(|s| &s.stage == name).collect();
        let start = mine.iter().filter_map(|s| s.started_at).min();
        let end = mine.iter().filter_map(|s| s.finished_at).max();
        let any_failed = mine.iter().any(|s| s.state == StepState::Failed);
        let all_done = !mine.is_empty()
            && mine
                .iter()
                .all(|s| matches!(s.state, StepState::Succeeded | StepState::Skipped));
        let any_running = mine.iter().any(|s| s.state == StepState::Running);
        let actual = match (start, end, any_running || !all_done) {
            (Some(s), Some(e), false) => Some(e - s),
            (Some(s), _, true) if run.state == RunState::Running => Some(now - s),
            (Some(s), Some(e), true) => Some(e - s),
            _ => None,
        };
        let verdict = if any_failed {
            Verdict::Failed
        } else if all_done {
            match actual {
                Some(a) if a > budget.as_chrono() => Verdict::Over,
                _ => Verdict::Within,
            }
        } else if start.is_some() && run.state == RunState::Running {
            Verdict::Running
        } else {
            Verdict::NotRun
        };
        out.push(StageSummary {
            name: name.clone(),
            budget_seconds: budget.as_duration().as_secs_f64(),
            actual_seconds: actual.map(secs),
            verdict,
            steps: mine
                .iter()
                .map(|s| StepSummary {
                    seq: s.seq,
                    step: s.step.clone(),
                    state: s.state.to_string(),
                    seconds: match (s.started_at, s.finished_at) {
                        (Some(a), Some(b)) => Some(secs(b - a)),
                        _ => None,
                    },
                    detail: s.detail.clone(),
                })
                .collect(),
        });
    }
    // The RTO clock stops when the application is back: a stage after that
    // (a drill's teardown) is not part of it.
    let after: Vec<&str> = stages
        .iter()
        .filter(|s| !s.counts_for_rto)
        .map(|s| s.name.as_str())
        .collect();
    let end = match run.finished_at {
        Some(f) if !after.is_empty() => steps
            .iter()
            .filter(|s| !after.contains(&s.stage.as_str()))
            .filter_map(|s| s.finished_at)
            .max()
            .map_or(f, |e| e.min(f)),
        Some(f) => f,
        None => now,
    };
    let total = end - run.started_at;
    let rto_verdict = match run.state {
        RunState::Failed => Verdict::Failed,
        RunState::Running => Verdict::Running,
        RunState::Succeeded if total > rto.as_chrono() => Verdict::Over,
        RunState::Succeeded => Verdict::Within,
    };
    RunSummary {
        run_id: run.id.0,
        kind: run.kind,
        policy: run.policy.to_string(),
        point_id: run.point_id.map(|p| p.0),
        target_namespace: run.target_namespace.to_string(),
        state: run.state,
        started_at: run.started_at,
        finished_at: run.finished_at,
        total_seconds: secs(total),
        rto_seconds: rto.as_duration().as_secs_f64(),
        rto_verdict,
        data_loss_seconds: secs(data_loss),
        rpo_seconds: rpo.as_duration().as_secs_f64(),
        within_rpo: data_loss <= rpo.as_chrono(),
        stages: out,
        error: run.error.clone(),
    }
}

/// The summary stored with a finished run, if it has one (runs recorded by
/// older versions, and running ones, have none).
pub fn stored(run: &RunRecord) -> Option<RunSummary> {
    run.summary
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok())
}

/// Exit code of `dr restore`: 0 restored within the RTO, 3 restored but over
/// it, 1 failed.
pub fn exit_code(s: &RunSummary) -> u8 {
    match s.rto_verdict {
        Verdict::Within => 0,
        Verdict::Over => 3,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::RunId;
    use chrono::TimeZone;

    fn t(m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 10, m, s).unwrap()
    }
    fn run(state: RunState, finished: Option<DateTime<Utc>>) -> RunRecord {
        RunRecord {
            id: RunId(7),
            kind: RunKind::Restore,
            policy: "shop".parse().unwrap(),
            point_id: None,
            target_namespace: "shop".parse().unwrap(),
            target_at: None,
            state,
            incident_id: None,
            started_at: t(0, 0),
            finished_at: finished,
            error: None,
            holder: None,
            heartbeat_at: None,
            summary: None,
        }
    }
    fn step(
        seq: i64,
        stage: &str,
        state: StepState,
        a: DateTime<Utc>,
        b: Option<DateTime<Utc>>,
    ) -> StepRecord {
        StepRecord {
            seq,
            stage: stage.into(),
            step: format!("s{seq}"),
            state,
            budget: None,
            started_at: Some(a),
            finished_at: b,
            detail: None,
        }
    }
    fn stages() -> StageBudgets {
        vec![
            StageBudget::recovery("infrastructure", Span::from_secs(60)),
            StageBudget::recovery("data", Span::from_secs(120)),
            StageBudget::recovery("verification", Span::from_secs(60)),
        ]
    }

    #[test]
    fn stages_are_timed_against_budgets() {
        let steps = vec![
            step(
                1,
                "infrastructure",
                StepState::Succeeded,
                t(0, 0),
                Some(t(0, 10)),
            ),
            step(
                2,
                "infrastructure",
                StepState::Succeeded,
                t(0, 10),
                Some(t(0, 30)),
            ),
            step(3, "data", StepState::Succeeded, t(0, 30), Some(t(3, 0))),
            step(
                4,
                "verification",
                StepState::Skipped,
                t(3, 0),
                Some(t(3, 0)),
            ),
            step(
                5,
                "verification",
                StepState::Succeeded,
                t(3, 0),
                Some(t(3, 20)),
            ),
        ];
        let r = run(RunState::Succeeded, Some(t(3, 20)));
        let s = summarize(
            &r,
            &steps,
            &stages(),
            Span::from_secs(3600),
            TimeDelta::minutes(5),
            Span::from_secs(900),
            t(9, 0),
        );
        assert_eq!(s.stages[0].actual_seconds, Some(30.0));
        assert_eq!(s.stages[0].verdict, Verdict::Within);
        assert_eq!(s.stages[1].actual_seconds, Some(150.0));
        assert_eq!(s.stages[1].verdict, Verdict::Over);
        assert_eq!(s.stages[2].verdict, Verdict::Within);
        assert_eq!(s.total_seconds, 200.0);
        assert_eq!(s.rto_verdict, Verdict::Within);
        assert!(s.within_rpo);
        assert_eq!(exit_code(&s), 0);
    }

    #[test]
    fn over_rto_and_failures_have_their_own_codes() {
        let steps = vec![step(
            1,
            "infrastructure",
            StepState::Succeeded,
            t(0, 0),
            Some(t(0, 1)),
        )];
        let r = run(RunState::Succeeded, Some(t(5, 0)));
        let s = summarize(
            &r,
            &steps,
            &stages(),
            Span::from_secs(120),
            TimeDelta::minutes(20),
            Span::from_secs(900),
            t(9, 0),
        );
        assert_eq!(s.rto_verdict, Verdict::Over);
        assert_eq!(exit_code(&s), 3);
        assert!(!s.within_rpo);
        assert_eq!(s.stages[1].verdict, Verdict::NotRun);

        let steps = vec![
            step(
                1,
                "infrastructure",
                StepState::Succeeded,
                t(0, 0),
                Some(t(0, 1)),
            ),
            step(2, "data", StepState::Failed, t(0, 1), Some(t(0, 9))),
        ];
        let r = run(RunState::Failed, Some(t(0, 9)));
        let s = summarize(
            &r,
            &steps,
            &stages(),
            Span::from_secs(3600),
            TimeDelta::zero(),
            Span::from_secs(900),
            t(9, 0),
        );
        assert_eq!(s.stages[1].verdict, Verdict::Failed);
        assert_eq!(s.stages[2].verdict, Verdict::NotRun);
        assert_eq!(s.rto_verdict, Verdict::Failed);
        assert_eq!(exit_code(&s), 1);
    }

    #[test]
    fn a_drills_rto_clock_stops_before_its_teardown() {
        let steps = vec![
            step(1, "data", StepState::Succeeded, t(0, 0), Some(t(2, 0))),
            step(2, "teardown", StepState::Succeeded, t(2, 0), Some(t(9, 0))),
        ];
        let mut r = run(RunState::Succeeded, Some(t(9, 0)));
        r.kind = RunKind::Drill;
        let mut stages = stages();
        stages.push(StageBudget::after_recovery(
            "teardown",
            Span::from_secs(600),
        ));
        let s = summarize(
            &r,
            &steps,
            &stages,
            Span::from_secs(150),
            TimeDelta::zero(),
            Span::from_secs(900),
            t(9, 0),
        );
        assert_eq!(s.total_seconds, 120.0);
        assert_eq!(s.rto_verdict, Verdict::Within);
        assert_eq!(s.stages[3].actual_seconds, Some(420.0));
    }

    #[test]
    fn a_running_run_counts_to_now() {
        let steps = vec![step(1, "data", StepState::Running, t(0, 0), None)];
        let r = run(RunState::Running, None);
        let s = summarize(
            &r,
            &steps,
            &stages(),
            Span::from_secs(3600),
            TimeDelta::zero(),
            Span::from_secs(900),
            t(1, 0),
        );
        assert_eq!(s.stages[1].verdict, Verdict::Running);
        assert_eq!(s.stages[1].actual_seconds, Some(60.0));
        assert_eq!(s.total_seconds, 60.0);
    }
}
