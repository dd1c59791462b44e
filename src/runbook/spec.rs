//! Runbooks: the recovery procedure a restore or a drill follows, as data.
//!
//! A runbook is a YAML file of stages in order (infrastructure, redeploy,
//! data, verification, …), each with a time budget and typed steps:
//!
//! ```yaml
//! name: standard
//! stages:
//!   - name: infrastructure
//!     budget: 5m
//!     steps:
//!       - check: kubernetes
//!       - check: longhorn
//!       - check: backup-target
//!       - ensure: namespace
//!   - name: redeploy
//!     budget: 5m
//!     steps:
//!       - apply: recovery-point
//!   - name: data
//!     budget: 35m
//!     steps:
//!       - restore-volumes: {concurrency: 16, timeout: 30m}
//!       - bind-claims: {timeout: 5m}
//!   - name: verification
//!     budget: 15m
//!     steps:
//!       - scale: restore
//!       - wait-ready: {timeout: 10m}
//!       - http: {url: "http://web.{namespace}.svc/healthz", expect: 200}
//!       - job: {name: row-count, image: postgres:16, command: [psql, -c, "select 1"]}
//!       - manual: Place a test order in the shop
//! ```
//!
//! Parsing and validation are pure; errors name the step (`stages[2].steps[1]
//! (http)`) and what would be accepted.

use crate::span::Span;
use serde::Serialize;
use serde_json::{Map, Value};
use std::ops::RangeInclusive;
use std::path::Path;

/// Why a runbook was refused.
#[derive(Debug, thiserror::Error)]
pub enum RunbookError {
    #[error("cannot read runbook {file}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: not valid YAML: {message}")]
    Yaml { file: String, message: String },
    #[error("{file}: {at}: {message}")]
    Invalid {
        file: String,
        at: String,
        message: String,
    },
}

/// What a `check` step checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    /// The Kubernetes API server answers.
    Kubernetes,
    /// The Longhorn manager answers.
    Longhorn,
    /// Longhorn's backup target is available and dr's bucket is readable.
    BackupTarget,
    /// The cluster-scoped objects the point needs (CRDs, StorageClasses,
    /// PriorityClasses, IngressClasses, ClusterRoles and their bindings):
    /// those missing are created from the point (CRDs until Established),
    /// those that differ are reported and left as they are.
    ClusterObjects,
}

/// One typed step.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Action {
    Check {
        check: Check,
    },
    /// The target namespace exists (created if missing).
    EnsureNamespace,
    /// The recovery point's manifests applied with server-side apply,
    /// workloads held at zero replicas.
    ApplyRecoveryPoint,
    /// Volumes created from the point's backups, in parallel (bounded),
    /// followed until really restored.
    RestoreVolumes {
        concurrency: usize,
        timeout: Span,
    },
    /// PVs and PVCs for the restored volumes, bound under the original claim names.
    BindClaims {
        timeout: Span,
    },
    /// Workloads scaled back to their captured replica counts.
    ScaleRestore,
    /// Every workload of the point Ready.
    WaitReady {
        timeout: Span,
    },
    /// Every restored volume's content checksum (the policy's content probe)
    /// equals the one recorded before its backup's snapshot.
    ContentChecksums,
    /// An HTTP GET that must answer `expect` (and contain `contains`).
    Http {
        url: String,
        expect: u16,
        contains: Option<String>,
        timeout: Span,
    },
    /// A Kubernetes Job in the target namespace that must succeed.
    Job {
        name: String,
        image: String,
        command: Vec<String>,
        timeout: Span,
    },
    /// Something a human does; a restore waits for confirmation, a drill skips it.
    Manual {
        instruction: String,
    },
}

impl Action {
    /// The step's kind as written in YAML.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Check { .. } => "check",
            Action::EnsureNamespace => "ensure",
            Action::ApplyRecoveryPoint => "apply",
            Action::RestoreVolumes { .. } => "restore-volumes",
            Action::BindClaims { .. } => "bind-claims",
            Action::ScaleRestore => "scale",
            Action::WaitReady { .. } => "wait-ready",
            Action::ContentChecksums => "content",
            Action::Http { .. } => "http",
            Action::Job { .. } => "job",
            Action::Manual { .. } => "manual",
        }
    }

    /// A one-line label for tables and the catalog.
    pub fn label(&self) -> String {
        match self {
            Action::Check { check } => format!(
                "check {}",
                match check {
                    Check::Kubernetes => "kubernetes",
                    Check::Longhorn => "longhorn",
                    Check::BackupTarget => "backup-target",
                    Check::ClusterObjects => "cluster-objects",
                }
            ),
            Action::EnsureNamespace => "ensure namespace".into(),
            Action::ApplyRecoveryPoint => "apply recovery-point".into(),
            Action::RestoreVolumes { .. } => "restore-volumes".into(),
            Action::BindClaims { .. } => "bind-claims".into(),
            Action::ScaleRestore => "scale restore".into(),
            Action::WaitReady { .. } => "wait-ready".into(),
            Action::ContentChecksums => "content checksums".into(),
            Action::Http { url, .. } => format!("http {url}"),
            Action::Job { name, .. } => format!("job {name}"),
            Action::Manual { instruction } => {
                let short: String = instruction.chars().take(40).collect();
                if short.len() < instruction.len() {
                    format!("manual: {short}…")
                } else {
                    format!("manual: {short}")
                }
            }
        }
    }
}

/// A step: an action and an optional display name.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub name: Option<String>,
    pub action: Action,
}

impl Step {
    /// The name given in the runbook, else the action's label.
    pub fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.action.label())
    }
}

/// A stage: steps with a time budget.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stage {
    pub name: String,
    pub budget: Span,
    pub steps: Vec<Step>,
}

/// A parsed, validated runbook.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Runbook {
    pub name: String,
    pub description: Option<String>,
    pub stages: Vec<Stage>,
}

/// A step with its place in the runbook: `seq` is its key within a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedStep {
    pub seq: i64,
    pub stage: String,
    pub stage_budget: Span,
    pub label: String,
    pub action: Action,
}

impl Runbook {
    /// Reads and validates a runbook file.
    pub fn load(path: &Path) -> Result<Runbook, RunbookError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| RunbookError::Read {
            file: file.clone(),
            source,
        })?;
        Runbook::parse(&file, &text)
    }

    /// Parses and validates runbook text (`file` names it in errors).
    pub fn parse(file: &str, text: &str) -> Result<Runbook, RunbookError> {
        let Tree(v) = serde_norway::from_str(text).map_err(|e| RunbookError::Yaml {
            file: file.into(),
            message: e.to_string(),
        })?;
        let p = Parser { file };
        p.runbook(&v)
    }

    /// The sum of the stage budgets, `None` past [`Span::MAX`] (which no
    /// RTO reaches: [`Runbook::check_rto`] refuses such a runbook).
    pub fn checked_total_budget(&self) -> Option<Span> {
        self.stages
            .iter()
            .try_fold(Span::from_secs(0), |sum, s| sum.checked_add(s.budget))
    }

    /// The sum of the stage budgets; [`Span::MAX`] stands for any longer
    /// sum (shown only for a runbook [`Runbook::check_rto`] refuses).
    pub fn total_budget(&self) -> Span {
        self.checked_total_budget().unwrap_or(Span::MAX)
    }

    /// Checks the budgets against an RTO: they must sum to at most it.
    pub fn check_rto(&self, file: &str, rto: Span) -> Result<(), RunbookError> {
        let Some(total) = self.checked_total_budget() else {
            return Err(RunbookError::Invalid {
                file: file.into(),
                at: "stages[*].budget".into(),
                message: format!(
                    "the stage budgets sum to more than {}, more than any RTO (the RTO is {rto}); shorten the budgets",
                    Span::MAX
                ),
            });
        };
        if total.as_duration() > rto.as_duration() {
            return Err(RunbookError::Invalid {
                file: file.into(),
                at: "stages[*].budget".into(),
                message: format!(
                    "the stage budgets sum to {total} ({}), more than the RTO {rto}; shorten a budget or raise the policy's rto",
                    self.stages
                        .iter()
                        .map(|s| format!("{} {}", s.name, s.budget))
                        .collect::<Vec<_>>()
                        .join(" + ")
                ),
            });
        }
        Ok(())
    }

    /// Every step in order with its sequence number.
    pub fn planned(&self) -> Vec<PlannedStep> {
        let mut out = Vec::new();
        for stage in &self.stages {
            for step in &stage.steps {
                out.push(PlannedStep {
                    seq: out.len() as i64 + 1,
                    stage: stage.name.clone(),
                    stage_budget: stage.budget,
                    label: step.label(),
                    action: step.action.clone(),
                });
            }
        }
        out
    }
}

/// Expands `{namespace}` and `{policy}` in a runbook string.
pub fn expand(template: &str, namespace: &str, policy: &str) -> String {
    template
        .replace("{namespace}", namespace)
        .replace("{policy}", policy)
}

const STEP_KINDS: &[&str] = &[
    "check",
    "ensure",
    "apply",
    "restore-volumes",
    "bind-claims",
    "scale",
    "wait-ready",
    "content",
    "http",
    "job",
    "manual",
];

struct Parser<'a> {
    file: &'a str,
}

impl Parser<'_> {
    fn err(&self, at: &str, message: impl Into<String>) -> RunbookError {
        RunbookError::Invalid {
            file: self.file.into(),
            at: at.into(),
            message: message.into(),
        }
    }

    fn map<'v>(
        &self,
        v: &'v Value,
        at: &str,
        what: &str,
    ) -> Result<&'v Map<String, Value>, RunbookError> {
        v.as_object()
            .ok_or_else(|| self.err(at, format!("{what} must be a mapping, found {}", shape(v))))
    }

    fn only_keys(
        &self,
        m: &Map<String, Value>,
        at: &str,
        allowed: &[&str],
    ) -> Result<(), RunbookError> {
        for k in m.keys() {
            if !allowed.contains(&k.as_str()) {
                return Err(self.err(
                    at,
                    format!("unknown key {k:?}; accepted: {}", allowed.join(", ")),
                ));
            }
        }
        Ok(())
    }

    fn string(&self, v: Option<&Value>, at: &str, what: &str) -> Result<String, RunbookError> {
        match v {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
            Some(other) => Err(self.err(
                at,
                format!("{what} must be a non-empty string, found {}", shape(other)),
            )),
            None => Err(self.err(at, format!("{what} is missing"))),
        }
    }

    fn span(
        &self,
        v: Option<&Value>,
        at: &str,
        what: &str,
        default: Option<Span>,
    ) -> Result<Span, RunbookError> {
        let s = match (v, default) {
            (None, Some(d)) => return Ok(d),
            (None, None) => {
                return Err(self.err(
                    at,
                    format!("{what} is missing; give a duration such as 5m or 1h30m"),
                ));
            }
            (Some(Value::String(s)), _) => s.clone(),
            (Some(other), _) => {
                return Err(self.err(
                    at,
                    format!(
                        "{what} must be a duration such as 5m, 90s or 1h30m, found {}",
                        shape(other)
                    ),
                ));
            }
        };
        let span: Span = s
            .parse()
            .map_err(|e: crate::span::SpanError| self.err(at, format!("{what}: {e}")))?;
        if span.is_zero() {
            return Err(self.err(at, format!("{what} {s:?} must be more than zero")));
        }
        Ok(span)
    }

    /// A whole-number option within `range` (`default` when absent); `rule`
    /// says what is accepted.
    fn whole(
        &self,
        v: Option<&Value>,
        at: &str,
        rule: &str,
        range: RangeInclusive<u64>,
        default: u64,
    ) -> Result<u64, RunbookError> {
        match v {
            None => Ok(default),
            Some(v) => match v.as_u64() {
                Some(n) if range.contains(&n) => Ok(n),
                _ => Err(self.err(at, format!("{rule}, found {}", shape(v)))),
            },
        }
    }

    fn runbook(&self, v: &Value) -> Result<Runbook, RunbookError> {
        let m = self.map(v, "(top level)", "a runbook")?;
        self.only_keys(m, "(top level)", &["name", "description", "stages"])?;
        let name = self.string(m.get("name"), "name", "the runbook's name")?;
        let description = match m.get("description") {
            None | Some(Value::Null) => None,
            Some(_) => Some(self.string(m.get("description"), "description", "description")?),
        };
        let stages_v = m.get("stages").and_then(Value::as_array).ok_or_else(|| {
            self.err(
                "stages",
                "stages must be a list of stages (name, budget, steps)",
            )
        })?;
        if stages_v.is_empty() {
            return Err(self.err("stages", "a runbook needs at least one stage"));
        }
        let mut stages: Vec<Stage> = Vec::new();
        for (i, sv) in stages_v.iter().enumerate() {
            let at = format!("stages[{i}]");
            let sm = self.map(sv, &at, "a stage")?;
            self.only_keys(sm, &at, &["name", "budget", "steps"])?;
            let name = self.string(sm.get("name"), &format!("{at}.name"), "the stage's name")?;
            if stages.iter().any(|s| s.name == name) {
                return Err(self.err(
                    &format!("{at}.name"),
                    format!("stage {name:?} appears twice; stage names must be unique"),
                ));
            }
            let at = format!("stages[{i}] ({name})");
            let budget = self.span(sm.get("budget"), &format!("{at}.budget"), "budget", None)?;
            let steps_v = sm
                .get("steps")
                .and_then(Value::as_array)
                .ok_or_else(|| self.err(&format!("{at}.steps"), "steps must be a list"))?;
            if steps_v.is_empty() {
                return Err(self.err(&format!("{at}.steps"), "a stage needs at least one step"));
            }
            let mut steps = Vec::new();
            for (j, st) in steps_v.iter().enumerate() {
                steps.push(self.step(st, &format!("stages[{i}].steps[{j}]"))?);
            }
            stages.push(Stage {
                name,
                budget,
                steps,
            });
        }
        let rb = Runbook {
            name,
            description,
            stages,
        };
        self.order(&rb)?;
        Ok(rb)
    }

    fn step(&self, v: &Value, at: &str) -> Result<Step, RunbookError> {
        // A bare string is a step without options: `- bind-claims`.
        let owned;
        let m = match v {
            Value::String(s) => {
                let mut m = Map::new();
                m.insert(s.clone(), Value::Null);
                owned = m;
                &owned
            }
            _ => self.map(v, at, "a step")?,
        };
        let kinds: Vec<&String> = m.keys().filter(|k| k.as_str() != "name").collect();
        let kind = match kinds.as_slice() {
            [k] => k.as_str(),
            [] => {
                return Err(self.err(
                    at,
                    format!(
                        "the step has no kind; give one of: {}",
                        STEP_KINDS.join(", ")
                    ),
                ));
            }
            many => {
                return Err(self.err(
                    at,
                    format!(
                        "a step has exactly one kind, found {}; accepted kinds: {}",
                        many.iter()
                            .map(|k| k.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                        STEP_KINDS.join(", ")
                    ),
                ));
            }
        };
        let at = format!("{at} ({kind})");
        let name = match m.get("name") {
            None | Some(Value::Null) => None,
            v => Some(self.string(v, &at, "name")?),
        };
        let arg = &m[kind];
        let opts = |allowed: &[&str]| -> Result<Map<String, Value>, RunbookError> {
            match arg {
                Value::Null => Ok(Map::new()),
                Value::Object(o) => {
                    self.only_keys(o, &at, allowed)?;
                    Ok(o.clone())
                }
                other => Err(self.err(
                    &at,
                    format!(
                        "options must be a mapping ({}), found {}",
                        allowed.join(", "),
                        shape(other)
                    ),
                )),
            }
        };
        let word = |accepted: &[&str]| -> Result<String, RunbookError> {
            match arg {
                Value::String(s) if accepted.contains(&s.as_str()) => Ok(s.clone()),
                other => Err(self.err(
                    &at,
                    format!(
                        "{kind}: {} is not accepted; use {}",
                        shape(other),
                        accepted.join(" or ")
                    ),
                )),
            }
        };
        let action = match kind {
            "check" => Action::Check {
                check: match word(&["kubernetes", "longhorn", "backup-target", "cluster-objects"])?
                    .as_str()
                {
                    "kubernetes" => Check::Kubernetes,
                    "longhorn" => Check::Longhorn,
                    "backup-target" => Check::BackupTarget,
                    _ => Check::ClusterObjects,
                },
            },
            "ensure" => {
                word(&["namespace"])?;
                Action::EnsureNamespace
            }
            "apply" => {
                word(&["recovery-point"])?;
                Action::ApplyRecoveryPoint
            }
            "scale" => {
                word(&["restore"])?;
                Action::ScaleRestore
            }
            "content" => {
                word(&["checksums"])?;
                Action::ContentChecksums
            }
            "restore-volumes" => {
                let o = opts(&["concurrency", "timeout"])?;
                let concurrency = self.whole(
                    o.get("concurrency"),
                    &at,
                    "concurrency must be a whole number from 1 to 256",
                    1..=256,
                    16,
                )?;
                Action::RestoreVolumes {
                    concurrency: usize::try_from(concurrency).unwrap_or(16),
                    timeout: self.span(
                        o.get("timeout"),
                        &at,
                        "timeout",
                        Some(Span::from_secs(30 * 60)),
                    )?,
                }
            }
            "bind-claims" => {
                let o = opts(&["timeout"])?;
                Action::BindClaims {
                    timeout: self.span(
                        o.get("timeout"),
                        &at,
                        "timeout",
                        Some(Span::from_secs(5 * 60)),
                    )?,
                }
            }
            "wait-ready" => {
                let o = opts(&["timeout"])?;
                Action::WaitReady {
                    timeout: self.span(
                        o.get("timeout"),
                        &at,
                        "timeout",
                        Some(Span::from_secs(10 * 60)),
                    )?,
                }
            }
            "http" => {
                let o = opts(&["url", "expect", "contains", "timeout"])?;
                let url = self.string(o.get("url"), &at, "url")?;
                let probe = expand(&url, "namespace", "policy");
                match url::Url::parse(&probe) {
                    Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
                    Ok(u) => return Err(self.err(&at, format!("url {url:?} has scheme {:?}; use http or https", u.scheme()))),
                    Err(e) => return Err(self.err(&at, format!("url {url:?} is not a URL ({e}); e.g. http://web.{{namespace}}.svc/healthz"))),
                }
                let expect = self.whole(
                    o.get("expect"),
                    &at,
                    "expect must be an HTTP status from 100 to 599",
                    100..=599,
                    200,
                )?;
                let expect = u16::try_from(expect).unwrap_or(200);
                let contains = match o.get("contains") {
                    None => None,
                    v => Some(self.string(v, &at, "contains")?),
                };
                Action::Http {
                    url,
                    expect,
                    contains,
                    timeout: self.span(
                        o.get("timeout"),
                        &at,
                        "timeout",
                        Some(Span::from_secs(120)),
                    )?,
                }
            }
            "job" => {
                let o = opts(&["name", "image", "command", "timeout"])?;
                let jname = self.string(o.get("name"), &at, "job name")?;
                if jname.len() > 40
                    || !jname
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    || jname.starts_with('-')
                    || jname.ends_with('-')
                {
                    return Err(self.err(&at, format!("job name {jname:?} must be a DNS label of at most 40 characters (a-z, 0-9, -)")));
                }
                let image = self.string(o.get("image"), &at, "image")?;
                let command = match o.get("command") {
                    Some(Value::Array(a)) if !a.is_empty() && a.iter().all(|x| x.is_string()) => {
                        a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect()
                    }
                    Some(other) => return Err(self.err(&at, format!("command must be a non-empty list of strings, found {}", shape(other)))),
                    None => return Err(self.err(&at, "command is missing; give the container's command as a list, e.g. [sh, -c, \"test -s /data/ok\"]")),
                };
                Action::Job {
                    name: jname,
                    image,
                    command,
                    timeout: self.span(
                        o.get("timeout"),
                        &at,
                        "timeout",
                        Some(Span::from_secs(5 * 60)),
                    )?,
                }
            }
            "manual" => Action::Manual {
                instruction: self.string(Some(arg), &at, "the instruction")?,
            },
            other => {
                return Err(self.err(
                    &at,
                    format!(
                        "unknown step kind {other:?}; accepted kinds: {}",
                        STEP_KINDS.join(", ")
                    ),
                ));
            }
        };
        Ok(Step { name, action })
    }

    /// Order rules: what a restore needs, in an order that can work.
    fn order(&self, rb: &Runbook) -> Result<(), RunbookError> {
        let mut seen: Vec<(&'static str, String)> = Vec::new();
        for (i, stage) in rb.stages.iter().enumerate() {
            for (j, step) in stage.steps.iter().enumerate() {
                let kind = step.action.kind();
                let at = format!("stages[{i}].steps[{j}] ({kind})");
                let before = |k: &str| seen.iter().any(|(s, _)| *s == k);
                let once = ["ensure", "apply", "restore-volumes", "bind-claims", "scale"];
                if once.contains(&kind) && before(kind) {
                    return Err(self.err(
                        &at,
                        format!("{kind} appears twice; a runbook has at most one"),
                    ));
                }
                let needs: &[&str] = match kind {
                    "bind-claims" => &["restore-volumes"],
                    "scale" => &["apply", "bind-claims"],
                    "wait-ready" => &["scale"],
                    "content" => &["restore-volumes"],
                    "apply" => &["ensure"],
                    "restore-volumes" => &["ensure"],
                    _ => &[],
                };
                for n in needs {
                    if !before(n) {
                        return Err(self.err(&at, format!("{kind} must come after the {n} step")));
                    }
                }
                if let Action::Job { name, .. } = &step.action
                    && seen.iter().any(|(k, l)| *k == "job" && l == name)
                {
                    return Err(self.err(
                        &at,
                        format!("job name {name:?} is used twice; job names must be unique"),
                    ));
                }
                let key = match &step.action {
                    Action::Job { name, .. } => name.clone(),
                    _ => String::new(),
                };
                seen.push((kind, key));
            }
        }
        for required in ["ensure", "apply", "restore-volumes", "bind-claims", "scale"] {
            if !seen.iter().any(|(k, _)| *k == required) {
                let hint = match required {
                    "ensure" => "`ensure: namespace` (infrastructure)",
                    "apply" => "`apply: recovery-point` (redeploy)",
                    "restore-volumes" => "`restore-volumes` (data)",
                    "bind-claims" => "`bind-claims` (data)",
                    _ => "`scale: restore` (verification)",
                };
                return Err(self.err(
                    "stages",
                    format!("the runbook has no {required} step; a restore needs {hint}"),
                ));
            }
        }
        Ok(())
    }
}

/// YAML read into a JSON value. Unlike `serde_json::Value`'s own reading,
/// a number JSON cannot hold is refused naming it (with its path and line),
/// not reported as "JSON number out of range", and NaN or infinity is not
/// turned into null (which would make `description: .nan` no description).
struct Tree(Value);

impl<'de> serde::Deserialize<'de> for Tree {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TreeVisitor).map(Tree)
    }
}

struct TreeVisitor;

fn unusable<E: serde::de::Error>(n: impl std::fmt::Display) -> E {
    E::custom(format!(
        "{n} is not a number a runbook can use; numbers here are whole numbers such as 16 or 200"
    ))
}

impl<'de> serde::de::Visitor<'de> for TreeVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<Value, E> {
        i64::try_from(v).map(Value::from).map_err(|_| unusable(v))
    }
    fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Value, E> {
        u64::try_from(v).map(Value::from).map_err(|_| unusable(v))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| unusable(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Tree(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some((k, Tree(v))) = map.next_entry::<String, Tree>()? {
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

fn shape(v: &Value) -> String {
    match v {
        Value::Null => "nothing".into(),
        Value::Bool(b) => format!("{b}"),
        Value::Number(n) => format!("{n}"),
        Value::String(s) => format!("{s:?}"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a mapping".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name: standard
description: the default
stages:
  - name: infrastructure
    budget: 5m
    steps:
      - check: kubernetes
      - check: longhorn
      - check: backup-target
      - ensure: namespace
  - name: redeploy
    budget: 5m
    steps:
      - apply: recovery-point
  - name: data
    budget: 35m
    steps:
      - restore-volumes: {concurrency: 8, timeout: 30m}
      - bind-claims
  - name: verification
    budget: 15m
    steps:
      - scale: restore
      - wait-ready: {timeout: 10m}
      - http: {url: "http://web.{namespace}.svc/healthz", expect: 204}
        name: front page
      - job: {name: row-count, image: "postgres:16", command: [psql, -c, "select 1"]}
      - manual: Place a test order
"#;

    fn err(text: &str) -> String {
        Runbook::parse("rb.yaml", text).unwrap_err().to_string()
    }

    fn with(stage_steps: &str) -> String {
        GOOD.replace("      - manual: Place a test order\n", stage_steps)
    }

    #[test]
    fn parses_a_full_runbook() {
        let rb = Runbook::parse("rb.yaml", GOOD).unwrap();
        assert_eq!(rb.stages.len(), 4);
        assert_eq!(rb.total_budget(), Span::from_secs(60 * 60));
        let planned = rb.planned();
        assert_eq!(planned.len(), 12);
        assert_eq!(planned[0].seq, 1);
        assert_eq!(planned[0].label, "check kubernetes");
        assert_eq!(
            planned[5].action,
            Action::RestoreVolumes {
                concurrency: 8,
                timeout: Span::from_secs(1800)
            }
        );
        assert_eq!(
            planned[6].action,
            Action::BindClaims {
                timeout: Span::from_secs(300)
            }
        );
        assert_eq!(planned[9].label, "front page");
        assert!(matches!(
            &planned[9].action,
            Action::Http { expect: 204, .. }
        ));
        assert_eq!(planned[11].stage, "verification");
        assert!(rb.check_rto("rb.yaml", Span::from_secs(3600)).is_ok());
    }

    #[test]
    fn budgets_over_the_rto_are_refused_with_the_sum() {
        let rb = Runbook::parse("rb.yaml", GOOD).unwrap();
        let e = rb
            .check_rto("rb.yaml", Span::from_secs(45 * 60))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("sum to 1h") && e.contains("more than the RTO 45m"),
            "{e}"
        );
        assert!(
            e.contains("infrastructure 5m + redeploy 5m + data 35m + verification 15m"),
            "{e}"
        );
    }

    #[test]
    fn errors_name_the_step() {
        let e = err(&with("      - http: {url: \"ftp://x\"}\n"));
        assert!(
            e.contains("stages[3].steps[4] (http)") && e.contains("use http or https"),
            "{e}"
        );
        let e = err(&with("      - reboot: everything\n"));
        assert!(
            e.contains("stages[3].steps[4] (reboot)")
                && e.contains("unknown step kind")
                && e.contains("wait-ready"),
            "{e}"
        );
        let e = err(&with("      - check: dns\n"));
        assert!(
            e.contains("(check)")
                && e.contains(
                    "\"dns\" is not accepted; use kubernetes or longhorn or backup-target or cluster-objects"
                ),
            "{e}"
        );
        let e = err(&with("      - job: {name: x, image: busybox}\n"));
        assert!(
            e.contains("steps[4] (job)") && e.contains("command is missing"),
            "{e}"
        );
        let e = err(&with("      - wait-ready: {timeout: soon}\n"));
        assert!(
            e.contains("steps[4] (wait-ready)") && e.contains("timeout"),
            "{e}"
        );
        let e = err(&with("      - http: {url: \"http://x\", expect: 700}\n"));
        assert!(e.contains("expect must be an HTTP status"), "{e}");
        let e = err(&with(
            "      - {http: {url: \"http://x\"}, job: {name: y}}\n",
        ));
        assert!(e.contains("exactly one kind"), "{e}");
        let e = err(&with("      - restore-volumes: {concurrency: 0}\n"));
        assert!(
            e.contains("concurrency must be a whole number from 1 to 256"),
            "{e}"
        );
        let e = err(&with("      - http: {url: \"http://x\", retries: 3}\n"));
        assert!(e.contains("unknown key \"retries\""), "{e}");
    }

    #[test]
    fn stage_errors_name_the_stage() {
        let e = err(&GOOD.replace("budget: 35m", "budget: 0s"));
        assert!(
            e.contains("stages[2] (data).budget") && e.contains("more than zero"),
            "{e}"
        );
        let e = err(&GOOD.replace("name: redeploy", "name: infrastructure"));
        assert!(
            e.contains("stages[1].name") && e.contains("appears twice"),
            "{e}"
        );
        let e = err(&GOOD.replace(
            "    budget: 5m\n    steps:\n      - apply",
            "    steps:\n      - apply",
        ));
        assert!(
            e.contains("stages[1] (redeploy).budget") && e.contains("budget is missing"),
            "{e}"
        );
        let e = err(&GOOD.replace("stages:", "stagez:"));
        assert!(e.contains("unknown key \"stagez\""), "{e}");
        let e = err("name: x\nstages: [\n");
        assert!(e.contains("not valid YAML"), "{e}");
    }

    #[test]
    fn order_and_completeness_are_checked() {
        // bind-claims before restore-volumes
        let e = err(&GOOD.replace(
            "      - restore-volumes: {concurrency: 8, timeout: 30m}\n      - bind-claims\n",
            "      - bind-claims\n      - restore-volumes: {concurrency: 8, timeout: 30m}\n",
        ));
        assert!(
            e.contains("stages[2].steps[0] (bind-claims)")
                && e.contains("after the restore-volumes step"),
            "{e}"
        );
        // wait-ready without scale
        let e = err(&GOOD.replace("      - scale: restore\n", ""));
        assert!(
            e.contains("wait-ready must come after the scale step"),
            "{e}"
        );
        // missing apply
        let e = err(&GOOD.replace(
            "      - apply: recovery-point\n",
            "      - check: kubernetes\n",
        ));
        assert!(
            e.contains("scale must come after the apply step") || e.contains("no apply step"),
            "{e}"
        );
        // two jobs with one name
        let e = err(&with(
            "      - job: {name: a, image: i, command: [x]}\n      - job: {name: a, image: i, command: [y]}\n",
        ));
        assert!(e.contains("used twice"), "{e}");
    }

    #[test]
    fn templates_expand() {
        assert_eq!(
            expand("http://web.{namespace}.svc/{policy}", "shop-2", "shop"),
            "http://web.shop-2.svc/shop"
        );
    }

    #[test]
    fn the_shipped_runbooks_are_valid() {
        for f in [
            "runbooks/standard.yaml",
            "runbooks/wesago.yaml",
            "runbooks/testbed.yaml",
        ] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(f);
            let rb = Runbook::load(&path).unwrap_or_else(|e| panic!("{e}"));
            rb.check_rto(f, Span::from_secs(3600)).unwrap();
        }
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    const TEMPLATE: &str = r#"
name: @NAME@
stages:
  - name: infrastructure
    budget: @B0@
    steps:
      - check: kubernetes
      - ensure: namespace
  - name: redeploy
    budget: @B1@
    steps:
      - apply: recovery-point
  - name: data
    budget: @B2@
    steps:
      - restore-volumes: {concurrency: @CONC@, timeout: @T0@}
      - bind-claims
  - name: verification
    budget: @B3@
    steps:
      - scale: restore
      - wait-ready: {timeout: @T1@}
      - http: {url: "http://web.{namespace}.svc/healthz", expect: @EXPECT@}
      - manual: @MANUAL@
"#;

    /// The knobs in the order the parser meets them, and where a bad value
    /// in each is reported.
    const KNOBS: [(&str, &str); 10] = [
        ("@NAME@", "name"),
        ("@B0@", "stages[0] (infrastructure).budget"),
        ("@B1@", "stages[1] (redeploy).budget"),
        ("@B2@", "stages[2] (data).budget"),
        ("@CONC@", "stages[2].steps[0] (restore-volumes)"),
        ("@T0@", "stages[2].steps[0] (restore-volumes)"),
        ("@B3@", "stages[3] (verification).budget"),
        ("@T1@", "stages[3].steps[1] (wait-ready)"),
        ("@EXPECT@", "stages[3].steps[2] (http)"),
        ("@MANUAL@", "stages[3].steps[3] (manual)"),
    ];

    /// A value as written; `ok` whether it is valid, `shows` the text an
    /// error must contain.
    #[derive(Debug, Clone)]
    struct Knob {
        yaml: String,
        ok: bool,
        shows: String,
        /// Refused while reading the YAML, before any other check.
        early: bool,
    }

    fn quoted(s: &str) -> String {
        serde_json::to_string(s).unwrap()
    }

    fn span(bad_w: u32) -> impl Strategy<Value = Knob> {
        prop_oneof![
            3 => (1..=i64::MAX.unsigned_abs()).prop_map(|ms| {
                let t = Span::from_millis(ms).to_string();
                Knob { yaml: t.clone(), ok: true, shows: t, early: false }
            }),
            bad_w => prop::sample::select(&["0s", "0ms"][..]).prop_map(|t| Knob { yaml: t.into(), ok: false, shows: format!("{t:?} must be more than zero"), early: false }),
            bad_w => (106_751_991_168u64..).prop_map(|n| Knob { yaml: format!("{n}d"), ok: false, shows: format!("\"{n}d\" is not a duration dr can use"), early: false }),
            bad_w => any::<i64>().prop_map(|n| Knob { yaml: n.to_string(), ok: false, shows: format!("found {n}"), early: false }),
            bad_w => "[A-Za-z ]{1,8}".prop_map(|t| Knob { yaml: quoted(&t), ok: false, shows: format!("{t:?} is not a duration"), early: false }),
        ]
    }

    fn whole(min: u64, max: u64, bad_w: u32) -> impl Strategy<Value = Knob> {
        prop_oneof![
            3 => (min..=max).prop_map(|n| Knob { yaml: n.to_string(), ok: true, shows: n.to_string(), early: false }),
            bad_w => any::<i64>().prop_filter("out of range", move |n| u64::try_from(*n).map_or(true, |n| !(min..=max).contains(&n)))
                .prop_map(|n| Knob { yaml: n.to_string(), ok: false, shows: format!("found {n}"), early: false }),
            bad_w => prop::sample::select(&["1.5", "\"8\"", "true", "[]", "-0.0"][..])
                .prop_map(|t| Knob { yaml: t.into(), ok: false, shows: "found".into(), early: false }),
            bad_w => prop::sample::select(&["99999999999999999999999", "-99999999999999999999", ".nan", "-.inf"][..])
                .prop_map(|t| Knob { yaml: t.into(), ok: false, shows: "is not a number a runbook can use".into(), early: true }),
        ]
    }

    fn text(bad_w: u32) -> impl Strategy<Value = Knob> {
        let blank = if bad_w == 0 { "[a-z]" } else { "" };
        proptest::string::string_regex(&format!("{blank}[ -~]{{0,12}}|{blank}[a-zé∞😀 ]{{0,6}}"))
            .unwrap()
            .prop_map(|t| Knob {
                yaml: quoted(&t),
                ok: !t.trim().is_empty(),
                shows: if t.trim().is_empty() {
                    "must be a non-empty string".into()
                } else {
                    t
                },
                early: false,
            })
    }

    fn knobs(bad_w: u32) -> impl Strategy<Value = Vec<Knob>> {
        (
            (text(bad_w), span(bad_w), span(bad_w), span(bad_w)),
            (whole(1, 256, bad_w), span(bad_w), span(bad_w), span(bad_w)),
            (whole(100, 599, bad_w), text(bad_w)),
        )
            .prop_map(|((n, b0, b1, b2), (c, t0, b3, t1), (e, m))| {
                vec![n, b0, b1, b2, c, t0, b3, t1, e, m]
            })
    }

    /// What a parsed runbook holds at each knob.
    fn shown(rb: &Runbook) -> Vec<String> {
        let steps = rb.planned();
        let mut out = vec![rb.name.clone()];
        out.extend(rb.stages[..3].iter().map(|s| s.budget.to_string()));
        if let Action::RestoreVolumes {
            concurrency,
            timeout,
        } = &steps[3].action
        {
            out.extend([concurrency.to_string(), timeout.to_string()]);
        }
        out.push(rb.stages[3].budget.to_string());
        if let Action::WaitReady { timeout } = &steps[6].action {
            out.push(timeout.to_string());
        }
        if let Action::Http { expect, .. } = &steps[7].action {
            out.push(expect.to_string());
        }
        if let Action::Manual { instruction } = &steps[8].action {
            out.push(instruction.clone());
        }
        out
    }

    /// A JSON-like tree of the shapes a runbook has, with the words it uses.
    fn tree() -> impl Strategy<Value = serde_json::Value> {
        let word = prop::sample::select(
            &[
                "name",
                "stages",
                "budget",
                "steps",
                "check",
                "ensure",
                "apply",
                "restore-volumes",
                "bind-claims",
                "scale",
                "wait-ready",
                "content",
                "http",
                "job",
                "manual",
                "timeout",
                "concurrency",
                "url",
                "expect",
                "command",
                "image",
                "namespace",
                "restore",
                "5m",
                "0s",
                "http://x/{namespace}",
                "recovery-point",
                "kubernetes",
            ][..],
        );
        let leaf = prop_oneof![
            word.clone().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(serde_json::Value::from),
            Just(serde_json::Value::Null),
        ];
        leaf.prop_recursive(5, 48, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                prop::collection::btree_map(word.clone(), inner, 0..5).prop_map(|m| {
                    serde_json::Value::Object(
                        m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
                    )
                }),
            ]
        })
    }

    /// Extreme and wrong values in every knob: kept exactly, or refused
    /// at the first bad one, naming it and quoting the value.
    fn check_knobs(knobs: &[Knob]) -> Result<(), TestCaseError> {
        let mut text = TEMPLATE.to_owned();
        for ((marker, _), k) in KNOBS.iter().zip(knobs) {
            text = text.replace(marker, &k.yaml);
        }
        let first_bad = KNOBS
            .iter()
            .zip(knobs)
            .find(|(_, k)| k.early)
            .or_else(|| KNOBS.iter().zip(knobs).find(|(_, k)| !k.ok));
        match (Runbook::parse("rb.yaml", &text), first_bad) {
            (Ok(rb), None) => {
                let want: Vec<String> = knobs.iter().map(|k| k.shows.clone()).collect();
                prop_assert_eq!(shown(&rb), want);
                // Budgets of any length are checked against any RTO without overflow.
                match (
                    rb.check_rto("rb.yaml", Span::MAX),
                    rb.checked_total_budget(),
                ) {
                    (Ok(()), Some(total)) => prop_assert_eq!(total, rb.total_budget()),
                    (Err(e), None) => {
                        prop_assert!(e.to_string().contains("more than any RTO"), "{e}")
                    }
                    (got, total) => prop_assert!(false, "{got:?} with total {total:?}"),
                }
            }
            (Err(e), Some(((_, at), k))) => {
                let e = e.to_string();
                let at = if k.early { "not valid YAML" } else { at };
                prop_assert!(
                    e.starts_with(&format!("rb.yaml: {at}: ")),
                    "{e}, want at {at}\n{text}"
                );
                prop_assert!(e.contains(&k.shows), "{e} lacks {:?}", k.shows);
            }
            (got, want) => prop_assert!(false, "{got:?}, want {want:?}\n{text}"),
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Only valid values (of any length): kept exactly.
        #[test]
        fn valid_values_are_kept_exactly(knobs in knobs(0)) {
            check_knobs(&knobs)?;
        }

        /// Valid and bad values mixed: refused at the first bad one.
        #[test]
        fn every_value_is_kept_exactly_or_refused_where_it_is(knobs in knobs(1)) {
            check_knobs(&knobs)?;
        }

        /// Any text: a runbook or a refusal naming the file, never a panic.
        #[test]
        fn any_text_is_a_runbook_or_refused(text in "\\PC{0,80}|([a-z -]{1,10}:[ -~]{0,12}\n){0,6}") {
            if let Err(e) = Runbook::parse("rb.yaml", &text) {
                prop_assert!(e.to_string().starts_with("rb.yaml: "), "{e}");
            }
        }

        /// Any tree of runbook-like shapes: a runbook or a refusal, never a panic.
        #[test]
        fn any_shape_is_a_runbook_or_refused(v in tree()) {
            let text = serde_norway::to_string(&v).unwrap();
            if let Err(e) = Runbook::parse("rb.yaml", &text) {
                prop_assert!(e.to_string().starts_with("rb.yaml: "), "{e}");
            }
        }
    }

    /// More stages of the longest budget than a std duration can sum.
    #[test]
    fn budgets_past_any_duration_are_refused_not_a_panic() {
        let mut text = TEMPLATE.to_owned();
        for (marker, v) in [
            ("@NAME@", "long"),
            ("@B0@", "106751991167d"),
            ("@B1@", "106751991167d"),
            ("@B2@", "106751991167d"),
            ("@CONC@", "1"),
            ("@T0@", "1m"),
            ("@B3@", "106751991167d"),
            ("@T1@", "1m"),
            ("@EXPECT@", "200"),
            ("@MANUAL@", "x"),
        ] {
            text = text.replace(marker, v);
        }
        for i in 0..2100 {
            text.push_str(&format!(
                "  - name: extra-{i}\n    budget: 106751991167d\n    steps:\n      - manual: wait\n"
            ));
        }
        let rb = Runbook::parse("rb.yaml", &text).unwrap();
        assert_eq!(rb.checked_total_budget(), None);
        assert_eq!(rb.total_budget(), Span::MAX);
        let e = rb.check_rto("rb.yaml", Span::MAX).unwrap_err().to_string();
        assert!(e.contains("more than any RTO"), "{e}");
    }
}
