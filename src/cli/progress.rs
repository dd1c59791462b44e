//! What the CLI shows of a running restore or drill: progress on stderr (a
//! bar per volume on a terminal, plain lines otherwise), confirmation of
//! manual steps, and the run's summary table. Shared by `dr restore` and
//! `dr drill run`.

use super::output::Table;
use crate::runbook::engine::{Observer, RunEvent};
use crate::runbook::summary::RunSummary;
use crate::span::human_secs;
use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::sync::Mutex;

/// Progress on stderr: a bar per volume on a terminal, plain lines otherwise.
pub struct Terminal {
    bars: Option<indicatif::MultiProgress>,
    volumes: Mutex<HashMap<String, indicatif::ProgressBar>>,
    last_line: Mutex<HashMap<String, i64>>,
}

impl Default for Terminal {
    fn default() -> Self {
        Self::new()
    }
}

impl Terminal {
    pub fn new() -> Self {
        Terminal {
            bars: std::io::stderr()
                .is_terminal()
                .then(indicatif::MultiProgress::new),
            volumes: Mutex::new(HashMap::new()),
            last_line: Mutex::new(HashMap::new()),
        }
    }

    fn line(&self, s: &str) {
        match &self.bars {
            Some(m) => {
                let _ = m.println(s);
            }
            None => eprintln!("{s}"),
        }
    }

    pub fn finish(&self) {
        if let Ok(v) = self.volumes.lock() {
            for b in v.values() {
                b.finish();
            }
        }
    }
}

impl Observer for Terminal {
    fn event(&self, e: &RunEvent) {
        let ts = chrono::Utc::now().format("%H:%M:%S");
        match e {
            RunEvent::Started { run, resumed } => self.line(&format!(
                "{ts} run {run} {}",
                if *resumed {
                    "resumed: steps already done are skipped"
                } else {
                    "started"
                }
            )),
            RunEvent::StepStarted { step } => {
                self.line(&format!("{ts} [{}] {} …", step.stage, step.label))
            }
            RunEvent::StepSkipped { step, why } => self.line(&format!(
                "{ts} [{}] {}: skipped ({why})",
                step.stage, step.label
            )),
            RunEvent::StepDone {
                step,
                state,
                seconds,
                detail,
            } => {
                let d = detail
                    .as_deref()
                    .filter(|d| !d.starts_with('{'))
                    .map(|d| format!(" — {d}"))
                    .unwrap_or_default();
                self.line(&format!(
                    "{ts} [{}] {}: {state} in {seconds:.1}s{d}",
                    step.stage, step.label
                ))
            }
            RunEvent::Volume {
                pvc,
                volume,
                percent,
            } => match &self.bars {
                Some(m) => {
                    let Ok(mut v) = self.volumes.lock() else {
                        return;
                    };
                    let bar = v.entry(pvc.clone()).or_insert_with(|| {
                        let b = m.add(indicatif::ProgressBar::new(100));
                        if let Ok(style) = indicatif::ProgressStyle::with_template(
                            "  {prefix:30} [{bar:30}] {pos:>3}% {elapsed}",
                        ) {
                            b.set_style(style.progress_chars("=> "));
                        }
                        b.set_prefix(format!("{pvc} ← {volume}"));
                        b
                    });
                    bar.set_position((*percent).clamp(0, 100) as u64);
                    if *percent >= 100 {
                        bar.finish();
                    }
                }
                None => {
                    // Plain lines at 0, 25, 50, 75 and 100 %.
                    let Ok(mut last) = self.last_line.lock() else {
                        return;
                    };
                    let q = percent / 25;
                    if last.get(pvc).is_none_or(|l| *l < q) {
                        last.insert(pvc.clone(), q);
                        eprintln!("{ts}   volume {pvc} ({volume}): {percent}%");
                    }
                }
            },
            RunEvent::Notice(n) => self.line(&format!("{ts} NOTE: {n}")),
        }
    }

    fn confirm(&self, instruction: &str) -> bool {
        self.line(&format!(
            "MANUAL STEP: {instruction}\nPress Enter when done, or type `skip` and Enter to record it as skipped:"
        ));
        let mut answer = String::new();
        if std::io::stdin().read_line(&mut answer).is_err() {
            return false;
        }
        answer.trim() != "skip"
    }
}

pub fn render_summary(s: &RunSummary) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "\nRun {} ({} of policy {} into {}): {}\n",
        s.run_id, s.kind, s.policy, s.target_namespace, s.state
    ));
    let mut t = Table::new(&["STAGE", "BUDGET", "ACTUAL", "VERDICT"]);
    for st in &s.stages {
        t.row(vec![
            st.name.clone(),
            secs(st.budget_seconds),
            st.actual_seconds.map(secs).unwrap_or_else(|| "-".into()),
            st.verdict.as_str().to_owned(),
        ]);
    }
    t.row(vec![
        "TOTAL (RTO)".into(),
        secs(s.rto_seconds),
        secs(s.total_seconds),
        s.rto_verdict.as_str().to_owned(),
    ]);
    out.push_str(&t.render());
    out.push_str(&format!(
        "Achieved RPO (data loss): {} against RPO {}: {}\n",
        secs(s.data_loss_seconds),
        secs(s.rpo_seconds),
        if s.within_rpo { "within" } else { "OVER" }
    ));
    if let Some(e) = &s.error {
        out.push_str(&format!("Error: {e}\n"));
    }
    out
}

fn secs(x: f64) -> String {
    if x < 60.0 {
        format!("{x:.1}s")
    } else {
        human_secs(x)
    }
}
