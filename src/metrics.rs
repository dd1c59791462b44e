//! Prometheus metrics of `dr serve`, in the text exposition format. Counters
//! live in memory; RPO figures are read from the catalog at scrape time, so
//! they are right even after a restart.

use crate::catalog::{BackupState, PointState, TickOutcome};
use crate::status::PolicyStatus;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// The daemon's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default, Clone)]
struct Inner {
    ticks: BTreeMap<(String, String), u64>,
    tick_errors: BTreeMap<String, u64>,
    points: BTreeMap<(String, String), u64>,
    backups: BTreeMap<(String, String), u64>,
    tick_seconds: BTreeMap<String, (f64, u64)>,
}

/// The final states a tick's point and its backups are counted in.
const FINAL_POINTS: [PointState; 3] = [
    PointState::Complete,
    PointState::Partial,
    PointState::Failed,
];
const FINAL_BACKUPS: [BackupState; 2] = [BackupState::Completed, BackupState::Failed];

impl Inner {
    /// The counters, with a 0 for every policy and final label value not
    /// counted yet.
    fn with_zeros(&self, policies: &[&str]) -> Inner {
        let mut i = self.clone();
        for p in policies {
            for o in TickOutcome::ALL {
                i.ticks.entry((p.to_string(), o.to_string())).or_default();
            }
            i.tick_errors.entry(p.to_string()).or_default();
            for st in FINAL_POINTS {
                i.points.entry((p.to_string(), st.to_string())).or_default();
            }
            for st in FINAL_BACKUPS {
                i.backups
                    .entry((p.to_string(), st.to_string()))
                    .or_default();
            }
        }
        i
    }
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    fn with(&self, f: impl FnOnce(&mut Inner)) {
        if let Ok(mut g) = self.inner.lock() {
            f(&mut g);
        }
    }
    /// A tick ended with this outcome.
    pub fn tick(&self, policy: &str, outcome: TickOutcome) {
        self.with(|i| {
            *i.ticks
                .entry((policy.into(), outcome.to_string()))
                .or_default() += 1
        });
    }
    /// A tick could not be recorded.
    pub fn tick_error(&self, policy: &str) {
        self.with(|i| *i.tick_errors.entry(policy.into()).or_default() += 1);
    }
    /// A recovery point ended in this state.
    pub fn point(&self, policy: &str, state: PointState) {
        self.with(|i| {
            *i.points
                .entry((policy.into(), state.to_string()))
                .or_default() += 1
        });
    }
    /// A backup ended in this state.
    pub fn backup(&self, policy: &str, state: BackupState) {
        self.with(|i| {
            *i.backups
                .entry((policy.into(), state.to_string()))
                .or_default() += 1
        });
    }
    /// How long a tick took.
    pub fn tick_duration(&self, policy: &str, secs: f64) {
        self.with(|i| {
            let e = i.tick_seconds.entry(policy.into()).or_default();
            e.0 += secs;
            e.1 += 1;
        });
    }

    /// The exposition text, with the catalog-derived per-policy figures.
    /// Every counter has a series, at 0, for each policy of `statuses` and
    /// each final label value: an alert on `increase()` sees the first
    /// failure after a start, which a series born at 1 would hide.
    pub fn render(&self, statuses: &[PolicyStatus]) -> String {
        let mut s = String::new();
        let Ok(guard) = self.inner.lock() else {
            return s;
        };
        let policies: Vec<&str> = statuses.iter().map(|st| st.policy.as_str()).collect();
        let i = guard.with_zeros(&policies);
        let _ = writeln!(
            s,
            "# HELP dr_ticks_total Ticks by outcome (ran, skipped, missed)."
        );
        let _ = writeln!(s, "# TYPE dr_ticks_total counter");
        for ((p, o), n) in &i.ticks {
            let _ = writeln!(
                s,
                "dr_ticks_total{{policy=\"{}\",outcome=\"{}\"}} {n}",
                esc(p),
                esc(o)
            );
        }
        let _ = writeln!(
            s,
            "# HELP dr_tick_errors_total Ticks that could not be recorded (catalog failure)."
        );
        let _ = writeln!(s, "# TYPE dr_tick_errors_total counter");
        for (p, n) in &i.tick_errors {
            let _ = writeln!(s, "dr_tick_errors_total{{policy=\"{}\"}} {n}", esc(p));
        }
        let _ = writeln!(
            s,
            "# HELP dr_recovery_points_total Recovery points by final state."
        );
        let _ = writeln!(s, "# TYPE dr_recovery_points_total counter");
        for ((p, st), n) in &i.points {
            let _ = writeln!(
                s,
                "dr_recovery_points_total{{policy=\"{}\",state=\"{}\"}} {n}",
                esc(p),
                esc(st)
            );
        }
        let _ = writeln!(s, "# HELP dr_backups_total Backups by final state.");
        let _ = writeln!(s, "# TYPE dr_backups_total counter");
        for ((p, st), n) in &i.backups {
            let _ = writeln!(
                s,
                "dr_backups_total{{policy=\"{}\",state=\"{}\"}} {n}",
                esc(p),
                esc(st)
            );
        }
        let _ = writeln!(
            s,
            "# HELP dr_tick_duration_seconds Time from a tick's start to its point's final state."
        );
        let _ = writeln!(s, "# TYPE dr_tick_duration_seconds summary");
        for (p, (sum, count)) in &i.tick_seconds {
            let _ = writeln!(
                s,
                "dr_tick_duration_seconds_sum{{policy=\"{}\"}} {sum}",
                esc(p)
            );
            let _ = writeln!(
                s,
                "dr_tick_duration_seconds_count{{policy=\"{}\"}} {count}",
                esc(p)
            );
        }
        let _ = writeln!(
            s,
            "# HELP dr_rpo_exposure_seconds Now minus the newest complete and verified recovery point (absent: none yet, or it is dated after now)."
        );
        let _ = writeln!(s, "# TYPE dr_rpo_exposure_seconds gauge");
        for st in statuses {
            if let Some(e) = st.exposure {
                let _ = writeln!(
                    s,
                    "dr_rpo_exposure_seconds{{policy=\"{}\"}} {}",
                    esc(&st.policy),
                    e.num_milliseconds() as f64 / 1000.0
                );
            }
        }
        let _ = writeln!(s, "# HELP dr_rpo_seconds The policy's RPO.");
        let _ = writeln!(s, "# TYPE dr_rpo_seconds gauge");
        for st in statuses {
            let _ = writeln!(
                s,
                "dr_rpo_seconds{{policy=\"{}\"}} {}",
                esc(&st.policy),
                st.rpo.as_duration().as_secs_f64()
            );
        }
        let _ = writeln!(
            s,
            "# HELP dr_last_complete_point_timestamp_seconds Time of the newest complete and verified point."
        );
        let _ = writeln!(s, "# TYPE dr_last_complete_point_timestamp_seconds gauge");
        for st in statuses {
            if let Some(t) = st.newest_verified {
                let _ = writeln!(
                    s,
                    "dr_last_complete_point_timestamp_seconds{{policy=\"{}\"}} {}",
                    esc(&st.policy),
                    t.timestamp_millis() as f64 / 1000.0
                );
            }
        }
        s
    }
}

/// What `/metrics` says of a policy's drills, restores and availability.
#[derive(Debug, Clone)]
pub struct RunFigures {
    pub policy: String,
    /// The policy's RTO, which drill and restore durations are held against.
    pub rto_seconds: f64,
    /// The last finished drill: its time to a verified restore, whether it
    /// passed, and when it started.
    pub last_drill: Option<(f64, bool, chrono::DateTime<chrono::Utc>)>,
    /// That drill's stages: name, budget, and time taken (`None`: not run).
    pub last_drill_stages: Vec<(String, f64, Option<f64>)>,
    /// The last successful restore's duration.
    pub last_restore_seconds: Option<f64>,
    /// Completed backups of the newest complete point that are not verified
    /// in the store (`None`: no complete point yet).
    pub unverified_backups: Option<u64>,
    /// Over the last 30 days.
    pub availability: crate::report::Availability,
}

/// Renders drill, restore and availability gauges. Availability and MTTR
/// are left out where no incident gives them a basis.
pub fn render_runs(figures: &[RunFigures]) -> String {
    let mut s = String::new();
    let gauge = |s: &mut String, name: &str, help: &str, rows: Vec<(String, f64)>| {
        let _ = writeln!(s, "# HELP {name} {help}");
        let _ = writeln!(s, "# TYPE {name} gauge");
        for (p, v) in rows {
            let _ = writeln!(s, "{name}{{policy=\"{}\"}} {v}", esc(&p));
        }
    };
    let rows = |f: &dyn Fn(&RunFigures) -> Option<f64>| -> Vec<(String, f64)> {
        figures
            .iter()
            .filter_map(|x| f(x).map(|v| (x.policy.clone(), v)))
            .collect()
    };
    gauge(
        &mut s,
        "dr_rto_seconds",
        "The policy's RTO.",
        rows(&|x| Some(x.rto_seconds)),
    );
    gauge(
        &mut s,
        "dr_unverified_backups",
        "Completed backups of the newest complete point not verified in the backup store (absent: no complete point).",
        rows(&|x| x.unverified_backups.map(|n| n as f64)),
    );
    gauge(
        &mut s,
        "dr_drill_duration_seconds",
        "The last drill's time to a verified restore.",
        rows(&|x| x.last_drill.map(|d| d.0)),
    );
    gauge(
        &mut s,
        "dr_drill_last_passed",
        "Whether the last drill passed (1) or failed (0).",
        rows(&|x| x.last_drill.map(|d| if d.1 { 1.0 } else { 0.0 })),
    );
    gauge(
        &mut s,
        "dr_drill_last_timestamp_seconds",
        "When the last drill started (Unix time).",
        rows(&|x| x.last_drill.map(|d| d.2.timestamp() as f64)),
    );
    gauge(
        &mut s,
        "dr_restore_duration_seconds",
        "The last successful restore's duration.",
        rows(&|x| x.last_restore_seconds),
    );
    gauge(
        &mut s,
        "dr_incidents_30d",
        "Incidents that began in the last 30 days.",
        rows(&|x| Some(x.availability.failures as f64)),
    );
    gauge(
        &mut s,
        "dr_availability_ratio",
        "Availability U / (U + D) over the last 30 days (absent without incidents).",
        rows(&|x| x.availability.availability),
    );
    gauge(
        &mut s,
        "dr_mttr_seconds",
        "Mean time to recovery over the last 30 days (absent without incidents).",
        rows(&|x| x.availability.mttr_seconds),
    );
    render_stages(&mut s, figures);
    s
}

/// Who this replica is, and which policies it leads: `dr_info` and
/// `dr_policy_leader` (1 on the replica that leads the policy, 0 on the
/// others; `max by (policy)` of it is 0 when no replica leads it).
pub fn render_leases(leases: &crate::daemon::LeaseStatus) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# HELP dr_info This replica of dr serve.");
    let _ = writeln!(s, "# TYPE dr_info gauge");
    let _ = writeln!(
        s,
        "dr_info{{identity=\"{}\",version=\"{}\"}} 1",
        esc(&leases.identity),
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(
        s,
        "# HELP dr_policy_leader 1 if this replica leads the policy (holds its Lease), else 0."
    );
    let _ = writeln!(s, "# TYPE dr_policy_leader gauge");
    for (policy, (mine, _)) in leases.policies() {
        let _ = writeln!(
            s,
            "dr_policy_leader{{policy=\"{}\"}} {}",
            esc(&policy),
            u8::from(mine)
        );
    }
    s
}

/// The last drill's stage times and their budgets, per policy and stage.
fn render_stages(s: &mut String, figures: &[RunFigures]) {
    let _ = writeln!(
        s,
        "# HELP dr_drill_stage_seconds Time the last drill's stage took (absent: not run)."
    );
    let _ = writeln!(s, "# TYPE dr_drill_stage_seconds gauge");
    for f in figures {
        for (stage, _, actual) in &f.last_drill_stages {
            if let Some(a) = actual {
                let (p, st) = (esc(&f.policy), esc(stage));
                let _ = writeln!(
                    s,
                    "dr_drill_stage_seconds{{policy=\"{p}\",stage=\"{st}\"}} {a}"
                );
            }
        }
    }
    let _ = writeln!(
        s,
        "# HELP dr_drill_stage_budget_seconds The budget of the last drill's stage."
    );
    let _ = writeln!(s, "# TYPE dr_drill_stage_budget_seconds gauge");
    for f in figures {
        for (stage, budget, _) in &f.last_drill_stages {
            let (p, st) = (esc(&f.policy), esc(stage));
            let _ = writeln!(
                s,
                "dr_drill_stage_budget_seconds{{policy=\"{p}\",stage=\"{st}\"}} {budget}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_run_gauges_and_leaves_out_what_has_no_basis() {
        let at = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let f = RunFigures {
            policy: "shop".into(),
            rto_seconds: 3600.0,
            last_drill: Some((42.5, true, at)),
            last_drill_stages: vec![
                ("data".into(), 600.0, Some(12.5)),
                ("teardown".into(), 300.0, None),
            ],
            last_restore_seconds: None,
            unverified_backups: Some(1),
            availability: crate::report::availability(
                &[],
                at,
                at + chrono::TimeDelta::days(30),
                at + chrono::TimeDelta::days(30),
            ),
        };
        let text = render_runs(&[f]);
        assert!(
            text.contains("dr_drill_duration_seconds{policy=\"shop\"} 42.5"),
            "{text}"
        );
        assert!(text.contains("dr_drill_last_passed{policy=\"shop\"} 1"));
        assert!(text.contains("dr_drill_last_timestamp_seconds{policy=\"shop\"} 1700000000"));
        assert!(text.contains("dr_incidents_30d{policy=\"shop\"} 0"));
        assert!(!text.contains("dr_availability_ratio{"), "{text}");
        assert!(!text.contains("dr_restore_duration_seconds{"));
        assert!(text.contains("dr_rto_seconds{policy=\"shop\"} 3600"));
        assert!(text.contains("dr_unverified_backups{policy=\"shop\"} 1"));
        assert!(text.contains("dr_drill_stage_seconds{policy=\"shop\",stage=\"data\"} 12.5"));
        assert!(!text.contains("dr_drill_stage_seconds{policy=\"shop\",stage=\"teardown\"}"));
        assert!(
            text.contains("dr_drill_stage_budget_seconds{policy=\"shop\",stage=\"teardown\"} 300"),
            "{text}"
        );
    }

    #[test]
    fn renders_counters_with_labels() {
        let m = Metrics::default();
        m.tick("shop", TickOutcome::Ran);
        m.tick("shop", TickOutcome::Ran);
        m.tick("shop", TickOutcome::Skipped);
        m.backup("shop", BackupState::Completed);
        let text = m.render(&[]);
        assert!(
            text.contains("dr_ticks_total{policy=\"shop\",outcome=\"ran\"} 2"),
            "{text}"
        );
        assert!(text.contains("dr_ticks_total{policy=\"shop\",outcome=\"skipped\"} 1"));
        assert!(text.contains("dr_backups_total{policy=\"shop\",state=\"completed\"} 1"));
        assert!(text.contains("# TYPE dr_rpo_exposure_seconds gauge"));
    }

    #[test]
    fn every_policy_has_every_final_counter_series_from_the_start() {
        let m = Metrics::default();
        m.tick("shop", TickOutcome::Ran);
        let st = crate::status::policy_status(
            "blog",
            "blog",
            crate::span::Span::from_secs(900),
            None,
            Vec::new(),
            None,
            chrono::Utc::now(),
        );
        let text = m.render(&[st]);
        for line in [
            "dr_ticks_total{policy=\"shop\",outcome=\"ran\"} 1",
            "dr_ticks_total{policy=\"blog\",outcome=\"missed\"} 0",
            "dr_ticks_total{policy=\"blog\",outcome=\"skipped\"} 0",
            "dr_tick_errors_total{policy=\"blog\"} 0",
            "dr_recovery_points_total{policy=\"blog\",state=\"failed\"} 0",
            "dr_recovery_points_total{policy=\"blog\",state=\"partial\"} 0",
            "dr_backups_total{policy=\"blog\",state=\"failed\"} 0",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        // Counters of a policy the scrape does not list stay as counted.
        assert!(!text.contains("dr_ticks_total{policy=\"shop\",outcome=\"missed\"}"));
    }
}
