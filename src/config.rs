//! Configuration: the YAML file (`--config`, `DR_CONFIG`) parsed into typed
//! values. Every key is validated on load and errors name the key path and the
//! accepted form, e.g. `policies[0].rpo: "15 minutes" is not a duration; …`.

use crate::names::{Namespace, PolicyName, Selector};
use crate::span::Span;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The catalog used when neither `--catalog`, `DR_CATALOG` nor the file names one.
pub const DEFAULT_CATALOG: &str = "sqlite://dr.db";

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A key has a bad value or type; `path` is like `policies[0].rpo`.
    #[error("{file}: {path}: {message}")]
    Invalid {
        file: String,
        path: String,
        message: String,
    },
}

/// The whole configuration, with defaults filled in.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Catalog URL: `sqlite://PATH` or `postgres://…`.
    #[serde(default)]
    pub catalog: Option<CatalogUrl>,
    #[serde(default)]
    pub longhorn: LonghornConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub policies: Vec<PolicyConfig>,
    #[serde(default)]
    pub history: HistoryConfig,
}

/// How long the catalog keeps what the report reads (see
/// `catalog::history`): points and tick outcomes for `points`, the backup
/// rows of a pruned point for `pruned_backups` after it was pruned.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryConfig {
    #[serde(default = "default_history_points")]
    pub points: Span,
    #[serde(default = "default_history_pruned_backups")]
    pub pruned_backups: Span,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            points: default_history_points(),
            pruned_backups: default_history_pruned_backups(),
        }
    }
}

fn default_history_points() -> Span {
    Span::from_secs(400 * 86_400)
}

fn default_history_pruned_backups() -> Span {
    Span::from_secs(30 * 86_400)
}

/// How dr reaches Longhorn's manager API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LonghornConfig {
    #[serde(default = "default_longhorn_url")]
    pub url: HttpUrl,
    /// Backups requested at once (1–256).
    #[serde(default = "default_concurrency")]
    pub concurrency: Concurrency,
    /// Deadline of every single API call.
    #[serde(default = "default_timeout")]
    pub timeout: Span,
}

impl Default for LonghornConfig {
    fn default() -> Self {
        LonghornConfig {
            url: default_longhorn_url(),
            concurrency: default_concurrency(),
            timeout: default_timeout(),
        }
    }
}

fn default_longhorn_url() -> HttpUrl {
    HttpUrl(
        url::Url::parse("http://longhorn-backend.longhorn-system:9500")
            .expect("the default Longhorn URL is valid"),
    )
}
fn default_concurrency() -> Concurrency {
    Concurrency(16)
}
fn default_timeout() -> Span {
    Span::from_secs(30)
}

/// Where dr keeps manifest bundles (S3 or any S3-compatible store).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    #[serde(default = "default_bucket")]
    pub bucket: String,
    #[serde(default)]
    pub prefix: String,
    #[serde(default = "default_region")]
    pub region: String,
    /// A custom endpoint (Ceph RGW, SeaweedFS, MinIO, …); `null` for AWS.
    #[serde(default)]
    pub endpoint: Option<HttpUrl>,
    /// Path-style addressing (`endpoint/bucket/key`); on by default with a custom endpoint.
    #[serde(default)]
    pub path_style: Option<bool>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            bucket: default_bucket(),
            prefix: String::new(),
            region: default_region(),
            endpoint: None,
            path_style: None,
        }
    }
}

fn default_bucket() -> String {
    "dr".into()
}
fn default_region() -> String {
    "us-east-1".into()
}

/// One protection policy: what to protect and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    pub name: PolicyName,
    pub namespace: Namespace,
    /// PVCs and workloads to protect; empty selects all in the namespace.
    #[serde(default)]
    pub selector: Selector,
    /// Cron with seconds: `sec min hour day-of-month month day-of-week`.
    #[serde(default = "default_schedule")]
    pub schedule: Schedule,
    #[serde(default = "default_rpo")]
    pub rpo: Positive,
    #[serde(default = "default_rto")]
    pub rto: Positive,
    #[serde(default)]
    pub retain: Retain,
    #[serde(default)]
    pub drill: Option<DrillConfig>,
    /// An optional HTTP probe of the application: failures beyond a threshold
    /// open an incident, recovery resolves it.
    #[serde(default)]
    pub probe: Option<ProbeConfig>,
    /// A content probe: a URL template (`{volume}` = the Longhorn volume)
    /// answering a checksum of a volume's data. dr records its answer before
    /// each snapshot; a runbook's `content: checksums` step compares restored
    /// volumes with it.
    #[serde(default)]
    pub content: Option<ContentConfig>,
    /// The runbook `dr restore` follows (relative paths are read from the
    /// configuration file's directory, then from the working directory).
    #[serde(default = "default_runbook")]
    pub runbook: PathBuf,
}

fn default_schedule() -> Schedule {
    Schedule::from_str("0 */15 * * * *").expect("the default schedule is valid")
}
fn default_rpo() -> Positive {
    Positive(Span::from_secs(15 * 60))
}
fn default_rto() -> Positive {
    Positive(Span::from_secs(3600))
}

/// GFS retention: how many points to keep in each class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retain {
    #[serde(default = "d8")]
    pub last: u32,
    #[serde(default = "d24")]
    pub hourly: u32,
    #[serde(default = "d7")]
    pub daily: u32,
    #[serde(default = "d4")]
    pub weekly: u32,
    #[serde(default = "d6")]
    pub monthly: u32,
}
fn d8() -> u32 {
    8
}
fn d24() -> u32 {
    24
}
fn d7() -> u32 {
    7
}
fn d4() -> u32 {
    4
}
fn d6() -> u32 {
    6
}
impl Default for Retain {
    fn default() -> Self {
        Retain {
            last: 8,
            hourly: 24,
            daily: 7,
            weekly: 4,
            monthly: 6,
        }
    }
}

/// How to read a checksum of a volume's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentConfig {
    /// e.g. `http://checksummer.ops.svc/volumes/{volume}/checksum`; the answer
    /// is compared as text, or as the `sha256` field of a JSON object.
    pub checksum_url: String,
}

/// The application's health check, run by `dr serve`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    pub url: HttpUrl,
    #[serde(default = "default_probe_interval")]
    pub interval: Positive,
    /// Failures in a row that make an outage.
    #[serde(default = "default_probe_failures")]
    pub failures: u32,
    #[serde(default = "default_probe_timeout")]
    pub timeout: Positive,
}
fn default_probe_interval() -> Positive {
    Positive(Span::from_secs(30))
}
fn default_probe_failures() -> u32 {
    3
}
fn default_probe_timeout() -> Positive {
    Positive(Span::from_secs(5))
}

/// When restore drills run and which runbook they follow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillConfig {
    pub schedule: Schedule,
    #[serde(default = "default_runbook")]
    pub runbook: PathBuf,
    /// Leftovers of a drill (its namespace, volumes, PVs) older than this are
    /// removed when dr serve starts, even after a crash.
    #[serde(default = "default_drill_ttl")]
    pub ttl: Positive,
}
/// The runbook a policy follows when it names none.
pub const DEFAULT_RUNBOOK: &str = "runbooks/standard.yaml";
/// How long drill leftovers may stay when the policy says nothing.
pub const DEFAULT_DRILL_TTL: Span = Span::from_secs(2 * 3600);

fn default_drill_ttl() -> Positive {
    Positive(DEFAULT_DRILL_TTL)
}
fn default_runbook() -> PathBuf {
    PathBuf::from(DEFAULT_RUNBOOK)
}

/// A validated cron expression with seconds, as tokio-cron-scheduler reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Schedule(String);

impl Schedule {
    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// Parses with the same rules as the scheduler (seconds required, day-of-month and
    /// day-of-week combined with AND).
    fn parser() -> croner::parser::CronParser {
        croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Required)
            .dom_and_dow(true)
            .build()
    }
    /// The next firing strictly after `after`.
    pub fn next_after(
        &self,
        after: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        // Schedules have whole seconds; so must the ticks they name, whatever
        // fraction of a second `after` carries.
        let after =
            chrono::DurationRound::duration_trunc(after, chrono::TimeDelta::seconds(1)).ok()?;
        Self::parser()
            .parse(&self.0)
            .ok()?
            .find_next_occurrence(&after, false)
            .ok()
    }
}

impl FromStr for Schedule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match Self::parser().parse(s) {
            Ok(_) => Ok(Schedule(s.to_owned())),
            Err(e) => Err(format!(
                "{s:?} is not a cron schedule ({e}); use six fields \"sec min hour day-of-month month day-of-week\", e.g. \"0 */15 * * * *\""
            )),
        }
    }
}
impl TryFrom<String> for Schedule {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}
impl From<Schedule> for String {
    fn from(s: Schedule) -> String {
        s.0
    }
}

/// A span that must be greater than zero (RPO, RTO).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Positive(pub Span);
impl TryFrom<String> for Positive {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let span: Span = s
            .parse()
            .map_err(|e: crate::span::SpanError| e.to_string())?;
        if span.is_zero() {
            return Err(format!("{s:?} must be greater than zero; e.g. 15m"));
        }
        Ok(Positive(span))
    }
}
impl From<Positive> for String {
    fn from(p: Positive) -> String {
        p.0.to_string()
    }
}

/// Requests in flight at once, 1–256.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Concurrency(pub usize);
impl TryFrom<i64> for Concurrency {
    type Error = String;
    fn try_from(n: i64) -> Result<Self, String> {
        match usize::try_from(n) {
            Ok(v) if (1..=256).contains(&v) => Ok(Concurrency(v)),
            _ => Err(format!(
                "{n} is out of range; use a whole number from 1 to 256"
            )),
        }
    }
}
impl From<Concurrency> for i64 {
    fn from(c: Concurrency) -> i64 {
        c.0 as i64
    }
}

/// An absolute `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HttpUrl(pub url::Url);
impl TryFrom<String> for HttpUrl {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match url::Url::parse(&s) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(HttpUrl(u)),
            _ => Err(format!(
                "{s:?} is not an http(s) URL; use e.g. http://longhorn-backend.longhorn-system:9500"
            )),
        }
    }
}
impl From<HttpUrl> for String {
    fn from(u: HttpUrl) -> String {
        u.0.to_string()
    }
}
impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A catalog location: `sqlite://PATH[?…]` or `postgres://…` / `postgresql://…`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CatalogUrl(String);

impl CatalogUrl {
    /// The URL as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// Whether it names a SQLite database.
    pub fn is_sqlite(&self) -> bool {
        self.0.starts_with("sqlite:")
    }
    /// The URL with any password replaced by `***`, for printing.
    pub fn redacted(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(mut u) if u.password().is_some() => {
                let _ = u.set_password(Some("***"));
                u.to_string()
            }
            _ => self.0.clone(),
        }
    }
}
impl FromStr for CatalogUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let ok = (s.starts_with("sqlite:") && s.len() > "sqlite:".len())
            || s.starts_with("postgres://")
            || s.starts_with("postgresql://");
        if ok {
            Ok(CatalogUrl(s.to_owned()))
        } else {
            Err(format!(
                "{:?} is not a catalog URL; use sqlite://PATH (e.g. sqlite://dr.db) or postgres://USER@HOST/DB",
                CatalogUrl(s.to_owned()).redacted()
            ))
        }
    }
}
impl TryFrom<String> for CatalogUrl {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}
impl From<CatalogUrl> for String {
    fn from(c: CatalogUrl) -> String {
        c.0
    }
}
impl fmt::Display for CatalogUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses and validates configuration text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let invalid = |path: String, message: String| ConfigError::Invalid {
            file: file.to_owned(),
            path,
            message,
        };
        // An empty file is the all-defaults configuration.
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        let de = serde_norway::Deserializer::from_str(text);
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." {
                "(top level)".to_owned()
            } else {
                path
            };
            invalid(path, e.into_inner().to_string())
        })?;
        config.check(file)?;
        Ok(config)
    }

    /// Rules that span several keys.
    fn check(&self, file: &str) -> Result<(), ConfigError> {
        let mut seen = BTreeSet::new();
        for (i, p) in self.policies.iter().enumerate() {
            if !seen.insert(p.name.clone()) {
                return Err(ConfigError::Invalid {
                    file: file.to_owned(),
                    path: format!("policies[{i}].name"),
                    message: format!(
                        "{:?} is used by an earlier policy; policy names must be unique",
                        p.name.as_str()
                    ),
                });
            }
        }
        if self.store.bucket.is_empty() {
            return Err(ConfigError::Invalid {
                file: file.to_owned(),
                path: "store.bucket".into(),
                message: "must not be empty; name the S3 bucket for manifest bundles".into(),
            });
        }
        Ok(())
    }

    /// The policy of that name, if configured.
    pub fn policy(&self, name: &PolicyName) -> Option<&PolicyConfig> {
        self.policies.iter().find(|p| &p.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Config::parse(text, "dr.yaml").unwrap_err().to_string()
    }

    #[test]
    fn minimal_file_gets_defaults() {
        let c = Config::parse("policies:\n  - name: shop\n    namespace: shop\n", "x").unwrap();
        let p = &c.policies[0];
        assert_eq!(p.rpo.0.to_string(), "15m");
        assert_eq!(p.rto.0.to_string(), "1h");
        assert_eq!(p.schedule.as_str(), "0 */15 * * * *");
        assert_eq!(p.retain, Retain::default());
        assert_eq!(c.longhorn.concurrency.0, 16);
        assert_eq!(c.longhorn.timeout.to_string(), "30s");
        assert!(c.catalog.is_none());
    }

    #[test]
    fn empty_file_is_all_defaults() {
        assert_eq!(Config::parse("", "x").unwrap(), Config::default());
    }

    #[test]
    fn design_example_parses() {
        let text = r#"
catalog: sqlite://dr.db
longhorn: {url: "http://longhorn-backend.longhorn-system:9500", concurrency: 16, timeout: 30s}
store: {bucket: dr, prefix: prod, region: eu-west-1, endpoint: null}
policies:
  - name: wesago
    namespace: gic-wesago
    selector: app.kubernetes.io/part-of=wesago
    schedule: "0 */15 * * * *"
    rpo: 15m
    rto: 1h
    retain: {last: 8, hourly: 24, daily: 7, weekly: 4, monthly: 6}
    drill: {schedule: "0 0 3 * * SUN", runbook: runbooks/standard.yaml}
"#;
        let c = Config::parse(text, "x").unwrap();
        assert_eq!(c.policies[0].name.as_str(), "wesago");
        assert_eq!(c.store.region, "eu-west-1");
        assert!(c.policies[0].drill.is_some());
    }

    #[test]
    fn errors_name_the_key_path_and_accepted_form() {
        let base = "policies:\n  - name: a\n    namespace: b\n";
        let e = err(&format!("{base}    rpo: 15 minutes\n"));
        assert!(e.contains("policies[0].rpo"), "{e}");
        assert!(e.contains("\"15 minutes\" is not a duration"), "{e}");
        assert!(e.contains("1h30m"), "{e}");

        let e = err(&format!("{base}    schedule: every day\n"));
        assert!(e.contains("policies[0].schedule"), "{e}");
        assert!(e.contains("0 */15 * * * *"), "{e}");

        let e = err("policies:\n  - name: Bad_Name\n    namespace: b\n");
        assert!(e.contains("policies[0].name"), "{e}");
        assert!(e.contains("a-z, 0-9"), "{e}");

        let e = err("policies:\n  - name: a\n    namespace: b\n  - name: c\n    namespace: -x\n");
        assert!(e.contains("policies[1].namespace"), "{e}");

        let e = err("longhorn: {concurrency: 0}\n");
        assert!(e.contains("longhorn.concurrency"), "{e}");
        assert!(e.contains("1 to 256"), "{e}");

        let e = err("longhorn: {url: ftp://x}\n");
        assert!(e.contains("longhorn.url"), "{e}");

        let e = err(&format!("{base}    rpo: 0s\n"));
        assert!(e.contains("greater than zero"), "{e}");

        let e = err(&format!("{base}    retension: {{}}\n"));
        assert!(e.contains("retension"), "{e}");

        let e = err("catalog: mysql://x\n");
        assert!(e.contains("catalog") && e.contains("sqlite://"), "{e}");

        let e = err(&format!("{base}  - name: a\n    namespace: c\n"));
        assert!(
            e.contains("policies[1].name") && e.contains("unique"),
            "{e}"
        );
    }

    #[test]
    fn schedule_next_after() {
        let s: Schedule = "0 */15 * * * *".parse().unwrap();
        let t = chrono::DateTime::parse_from_rfc3339("2026-11-24T09:44:59Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            s.next_after(t).unwrap().to_rfc3339(),
            "2026-11-24T09:45:00+00:00"
        );
    }

    #[test]
    fn catalog_url_redacts_password() {
        let c: CatalogUrl = "postgres://dr:secret@db/dr".parse().unwrap();
        assert_eq!(c.to_string(), "postgres://dr:***@db/dr");
    }
}
