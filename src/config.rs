//! Configuration: the YAML file (`--config`, `DR_CONFIG`) parsed into typed
//! values. Every key is validated on load and errors name the key path and the
//! accepted form, e.g. `policies[0].rpo: "15 minutes" is not a duration; …`.

use crate::names::{KindRef, Namespace, PolicyName, Selector};
use crate::span::Span;
use serde::{Deserialize, Deserializer, Serialize, de};
use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The catalog used when neither `--catalog`, `DR_CATALOG` nor the file names one.
pub const DEFAULT_CATALOG: &str = "sqlite://dr.db";

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The reason follows as the error's source (printed once after it).
    #[error("cannot read configuration file {}", path.display())]
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
    /// The age identity file `dr serve`'s drills (and `dr restore` / `dr
    /// drill run` without `--secrets-identity`) open sealed Secrets with;
    /// relative to the configuration file's directory. Without it, drills
    /// copy Secrets from the live namespace.
    #[serde(default)]
    pub secrets_identity: Option<PathBuf>,
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
    /// Deadline of every single API call (more than zero).
    #[serde(default = "default_timeout", deserialize_with = "positive_span")]
    pub timeout: Span,
    /// How often a tick's backups are followed in the volume listing (more
    /// than zero; `longhorn::ClientConfig::follow_interval` says why 500 ms).
    #[serde(
        default = "default_follow_interval",
        deserialize_with = "positive_span"
    )]
    pub follow_interval: Span,
}

impl Default for LonghornConfig {
    fn default() -> Self {
        LonghornConfig {
            url: default_longhorn_url(),
            concurrency: default_concurrency(),
            timeout: default_timeout(),
            follow_interval: default_follow_interval(),
        }
    }
}

fn default_follow_interval() -> Span {
    Span::from_millis(500)
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
    /// Secrets kept sealed in each recovery point (see `crate::secrets`);
    /// without it they are kept by reference only and do not survive the
    /// loss of the cluster.
    #[serde(default)]
    pub secrets: Option<SecretsConfig>,
    /// Which kinds a recovery point captures (default: every namespaced
    /// kind the API server serves but the derived ones, `bundle::DERIVED`).
    #[serde(default)]
    pub kinds: KindsConfig,
}

/// What a policy says of its Secrets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {
    /// The age X25519 recipients (`age1…`) every point's Secrets are sealed
    /// to; at least one.
    #[serde(deserialize_with = "recipients")]
    pub recipients: Vec<crate::secrets::Recipient>,
}

fn recipients<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<crate::secrets::Recipient>, D::Error> {
    let r = Vec::<crate::secrets::Recipient>::deserialize(d)?;
    if r.is_empty() {
        return Err(de::Error::custom(format!(
            "name at least one recipient ({}), or leave out `secrets` to keep Secrets by reference only",
            crate::secrets::RECIPIENT_FORM
        )));
    }
    Ok(r)
}

/// What `dr config check`, `dr status` and the report say of a policy
/// whose Secrets are kept by reference only.
pub const SECRETS_BY_REFERENCE_NOTE: &str = "its Secrets are kept by reference only and will not survive the loss of the cluster; add secrets: {recipients: [age1…]} to the policy";

/// How a policy's recovery points keep its Secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretsMode {
    /// Whole, sealed to the policy's recipients: they survive the cluster.
    Sealed,
    /// Name, type and keys only: restored from the live namespace, or not at all.
    ByReference,
}

impl SecretsMode {
    /// What to say of a policy's Secrets, if anything
    /// ([`SECRETS_BY_REFERENCE_NOTE`] for `ByReference`).
    pub fn note(self) -> Option<&'static str> {
        match self {
            SecretsMode::Sealed => None,
            SecretsMode::ByReference => Some(SECRETS_BY_REFERENCE_NOTE),
        }
    }
}

impl PolicyConfig {
    /// How its recovery points keep its Secrets.
    pub fn secrets_mode(&self) -> SecretsMode {
        if self.secrets.is_some() {
            SecretsMode::Sealed
        } else {
            SecretsMode::ByReference
        }
    }
}

/// `kinds: {include: [...], exclude: [...]}` of a policy. Entries name a
/// kind (`Deployment`), a resource (`deployments`) or either with its API
/// group (`deployments.apps`, `widgets.example.com`). `include` captures
/// only the kinds it names (derived kinds too, if named); `exclude` leaves
/// kinds out and wins over `include`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindsConfig {
    #[serde(default)]
    pub include: Vec<KindRef>,
    #[serde(default)]
    pub exclude: Vec<KindRef>,
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
    #[serde(default = "d8", deserialize_with = "count")]
    pub last: u32,
    #[serde(default = "d24", deserialize_with = "count")]
    pub hourly: u32,
    #[serde(default = "d7", deserialize_with = "count")]
    pub daily: u32,
    #[serde(default = "d4", deserialize_with = "count")]
    pub weekly: u32,
    #[serde(default = "d6", deserialize_with = "count")]
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
    /// Failures in a row that make an outage (at least 1).
    #[serde(default = "default_probe_failures", deserialize_with = "threshold")]
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

const CRON_FORM: &str =
    "use six fields \"sec min hour day-of-month month day-of-week\", e.g. \"0 */15 * * * *\"";

impl FromStr for Schedule {
    type Err = String;
    /// A valid expression that fires at least once: cron has no year, so
    /// one that fires at all fires within 400 years of any date (the
    /// Gregorian cycle); one that never does (`0 0 0 30 2 *`) is refused.
    fn from_str(s: &str) -> Result<Self, String> {
        let cron = Self::parser()
            .parse(s)
            .map_err(|e| format!("{s:?} is not a cron schedule ({e}); {CRON_FORM}"))?;
        let epoch = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
        if cron.find_next_occurrence(&epoch, false).is_err() {
            return Err(format!(
                "{s:?} never fires (no date matches its day-of-month, month and day-of-week together); {CRON_FORM}"
            ));
        }
        Ok(Schedule(s.to_owned()))
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct Positive(pub Span);
impl<'de> Deserialize<'de> for Positive {
    /// From a string; a bare number is refused with the duration message.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Positive::try_from(crate::span::duration_text(d)?).map_err(de::Error::custom)
    }
}
/// A [`Positive`] read into a plain span (`longhorn.timeout`).
fn positive_span<'de, D: Deserializer<'de>>(d: D) -> Result<Span, D::Error> {
    Positive::deserialize(d).map(|p| p.0)
}
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "i64")]
pub struct Concurrency(pub usize);
impl<'de> Deserialize<'de> for Concurrency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = whole(d, 1, 256)?;
        usize::try_from(n)
            .map(Concurrency)
            .map_err(de::Error::custom)
    }
}
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
        // At most 256: always exact.
        i64::try_from(c.0).unwrap_or(i64::MAX)
    }
}

/// A whole number in `min..=max` from any scalar. Anything else (a
/// negative or too large number, a fraction, text) is refused naming the
/// value and the range, not with serde's "expected u32".
struct Whole {
    min: u64,
    max: u64,
}

impl Whole {
    fn out_of_range<E: de::Error>(&self, v: impl fmt::Display) -> E {
        E::custom(format!(
            "{v} is out of range; use a whole number from {} to {}",
            self.min, self.max
        ))
    }
    fn not_whole<E: de::Error>(&self, v: impl fmt::Debug) -> E {
        E::custom(format!(
            "{v:?} is not a whole number; use a whole number from {} to {}",
            self.min, self.max
        ))
    }
}

impl de::Visitor<'_> for Whole {
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a whole number from {} to {}", self.min, self.max)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        if (self.min..=self.max).contains(&v) {
            Ok(v)
        } else {
            Err(self.out_of_range(v))
        }
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(self.out_of_range(v)),
        }
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<u64, E> {
        Err(self.out_of_range(v))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<u64, E> {
        Err(self.out_of_range(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<u64, E> {
        Err(self.not_whole(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        Err(self.not_whole(v))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<u64, E> {
        Err(self.not_whole(v))
    }
}

fn whole<'de, D: Deserializer<'de>>(d: D, min: u64, max: u64) -> Result<u64, D::Error> {
    d.deserialize_any(Whole { min, max })
}

/// A retention count: 0 to `u32::MAX`.
fn count<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = whole(d, 0, u32::MAX.into())?;
    u32::try_from(n).map_err(de::Error::custom)
}

/// A threshold of events in a row: 1 to `u32::MAX` (0 would mean "never").
fn threshold<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = whole(d, 1, u32::MAX.into())?;
    u32::try_from(n).map_err(de::Error::custom)
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
                "{:?} is not an http(s) URL; use e.g. http://longhorn-backend.longhorn-system:9500",
                redacted(&s)
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

/// A URL with any password replaced by `***`, for printing.
fn redacted(s: &str) -> String {
    match url::Url::parse(s) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => s.to_owned(),
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
        redacted(&self.0)
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
    fn secrets_recipients_are_validated_by_path() {
        let base = "policies:\n  - name: a\n    namespace: b\n";
        let r = crate::secrets::Identity::generate(Path::new("k"))
            .0
            .recipients()[0]
            .to_string();
        let c = Config::parse(&format!("{base}    secrets: {{recipients: [{r}]}}\n"), "x").unwrap();
        let p = &c.policies[0];
        assert_eq!(p.secrets_mode(), SecretsMode::Sealed);
        assert_eq!(p.secrets.as_ref().unwrap().recipients[0].to_string(), r);
        // It reads back as written (dr config check prints it).
        let back = Config::parse(&serde_norway::to_string(&c).unwrap(), "x").unwrap();
        assert_eq!(back, c);

        let e = err(&format!(
            "{base}    secrets: {{recipients: [{r}, age1bad]}}\n"
        ));
        assert!(e.contains("policies[0].secrets.recipients[1]"), "{e}");
        assert!(
            e.contains("\"age1bad\" is not an age recipient") && e.contains("age1"),
            "{e}"
        );
        let e = err(&format!("{base}    secrets: {{recipients: []}}\n"));
        assert!(
            e.contains("policies[0].secrets.recipients") && e.contains("at least one"),
            "{e}"
        );
        let e = err(&format!(
            "{base}    secrets: {{recipients: [{r}], identity: k.txt}}\n"
        ));
        assert!(
            e.contains("policies[0].secrets") && e.contains("identity"),
            "{e}"
        );

        let c = Config::parse(&format!("secrets_identity: keys/dr.txt\n{base}"), "x").unwrap();
        assert_eq!(
            c.secrets_identity.as_deref(),
            Some(Path::new("keys/dr.txt"))
        );
        assert_eq!(c.policies[0].secrets_mode(), SecretsMode::ByReference);
        assert!(
            SecretsMode::ByReference
                .note()
                .is_some_and(|n| n.contains("will not survive the loss of the cluster"))
        );
        assert_eq!(SecretsMode::Sealed.note(), None);
    }

    #[test]
    fn kinds_are_validated_by_key_path() {
        let base = "policies:\n  - name: a\n    namespace: b\n";
        let c = Config::parse(
            &format!("{base}    kinds: {{include: [Deployment, widgets.example.com], exclude: [cronjobs.batch]}}\n"),
            "x",
        )
        .unwrap();
        let k = &c.policies[0].kinds;
        assert_eq!(k.include.len(), 2);
        assert!(k.include[1].matches("Widget", "widgets", "example.com"));
        assert!(k.exclude[0].matches("CronJob", "cronjobs", "batch"));
        assert!(Config::parse(base, "x").unwrap().policies[0].kinds == KindsConfig::default());

        let e = err(&format!(
            "{base}    kinds: {{include: [\"Deploy ment\"]}}\n"
        ));
        assert!(e.contains("policies[0].kinds.include[0]"), "{e}");
        assert!(e.contains("deployments.apps"), "{e}");
        let e = err(&format!("{base}    kinds: {{exclude: [x.Bad_Group]}}\n"));
        assert!(e.contains("policies[0].kinds.exclude[0]"), "{e}");
        let e = err(&format!("{base}    kinds: {{only: [Deployment]}}\n"));
        assert!(e.contains("policies[0].kinds") && e.contains("only"), "{e}");
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

#[cfg(test)]
mod props {
    //! Whole configuration files with extreme, wrong and right values in
    //! every field: parsed exactly as given, or refused at the first bad
    //! field, by its path, quoting its value.

    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// One key's value as written, and what parsing must make of it.
    #[derive(Debug, Clone)]
    struct Value {
        yaml: String,
        ok: bool,
        /// Accepted: the field's display after parsing. Refused: text the
        /// error must contain.
        shows: String,
    }

    fn good(yaml: impl Into<String>, shows: impl Into<String>) -> Value {
        Value {
            yaml: yaml.into(),
            ok: true,
            shows: shows.into(),
        }
    }
    fn bad(yaml: impl Into<String>, shows: impl Into<String>) -> Value {
        Value {
            yaml: yaml.into(),
            ok: false,
            shows: shows.into(),
        }
    }
    /// A YAML double-quoted string (JSON's escapes are YAML's).
    fn quoted(s: &str) -> String {
        serde_json::to_string(s).unwrap()
    }

    /// Spans that must be more than zero: every length up to the longest,
    /// zero, longer than the longest, bare numbers, words.
    fn span(bad_w: u32) -> impl Strategy<Value = Value> {
        prop_oneof![
            4 => (1..=MAX_SPAN_MS).prop_map(|ms| {
                let t = Span::from_millis(ms).to_string();
                good(t.clone(), t)
            }),
            bad_w => prop::sample::select(vec!["0s", "0ms", "0d0h"]).prop_map(|t| bad(t, format!("{t:?} must be greater than zero"))),
            bad_w => (106_751_991_168u64..).prop_map(|n| bad(format!("{n}d"), format!("\"{n}d\" is not a duration dr can use"))),
            bad_w => any::<i64>().prop_map(|n| bad(n.to_string(), format!("\"{n}\" is not a duration"))),
            bad_w => "[A-Za-z ]{1,10}".prop_map(|t| bad(quoted(&t), format!("{t:?} is not a duration"))),
        ]
    }
    const MAX_SPAN_MS: u64 = i64::MAX.unsigned_abs();

    /// Whole numbers in `min..=max` and every way to miss them.
    fn whole(min: u64, max: u64, bad_w: u32) -> impl Strategy<Value = Value> {
        let range = format!("use a whole number from {min} to {max}");
        let (r1, r2, r3, r4) = (range.clone(), range.clone(), range.clone(), range);
        prop_oneof![
            4 => (min..=max).prop_map(|n| good(n.to_string(), n.to_string())),
            bad_w => (i64::MIN..0).prop_map(move |n| bad(n.to_string(), format!("{n} is out of range; {r1}"))),
            bad_w => (max + 1..).prop_map(move |n| bad(n.to_string(), format!("{n} is out of range; {r2}"))),
            bad_w => Just("99999999999999999999999").prop_map(move |n| bad(n, format!("{n} is out of range; {r3}"))),
            bad_w => prop_oneof![Just("1.5"), Just("\"8\""), Just("true"), Just("[]")].prop_map(move |t| bad(t, r4.replace("use a whole", "a whole"))),
        ]
    }

    fn http_url(bad_w: u32) -> impl Strategy<Value = Value> {
        prop_oneof![
            3 => ("[a-z][a-z0-9]{0,10}", 1000u16..).prop_map(|(h, p)| {
                let u = format!("http://{h}.example:{p}/v1");
                good(quoted(&u), u)
            }),
            bad_w => prop::sample::select(vec!["ftp://x", "not a url", "http://", "/relative", ""])
                .prop_map(|t| bad(quoted(t), format!("{t:?} is not an http(s) URL"))),
        ]
    }

    fn label(max: usize, bad_w: u32) -> impl Strategy<Value = Value> {
        prop_oneof![
            3 => prop::sample::select(vec!["shop", "a", "web-2", "x0"]).prop_map(|t| good(t, t)),
            1 => Just("a".repeat(max)).prop_map(|t| good(t.clone(), t)),
            bad_w => prop_oneof![
                Just("a".repeat(max + 1)),
                Just("Shop".to_owned()),
                Just("-x".to_owned()),
                Just("ünï".to_owned()),
                Just(String::new()),
            ]
            .prop_map(move |t| bad(quoted(&t), format!("{t:?} is not a valid"))),
        ]
    }

    fn one_of(
        goods: &'static [&'static str],
        bads: &'static [&'static str],
        says: &'static str,
        bad_w: u32,
    ) -> impl Strategy<Value = Value> {
        prop_oneof![
            3 => prop::sample::select(goods).prop_map(|t| good(quoted(t), t)),
            bad_w => prop::sample::select(bads).prop_map(move |t| bad(quoted(t), format!("{t:?} {says}"))),
        ]
    }

    /// A schedule that never fires takes croner ~0.3 s (debug) to search to
    /// its year limit: rarer than the other refusals, to keep the run short.
    fn schedule(bad_w: u32) -> impl Strategy<Value = Value> {
        prop_oneof![
            12 => prop::sample::select(&["0 */15 * * * *", "0 0 3 * * SUN", "*/5 * * * * *", "0 0 0 29 2 *"][..]).prop_map(|t| good(quoted(t), t)),
            3 * bad_w => prop::sample::select(&["every day", "* * * * *", "61 * * * * *", ""][..]).prop_map(|t| bad(quoted(t), format!("{t:?} is not a cron schedule"))),
            bad_w => prop::sample::select(&["0 0 0 30 2 *", "0 0 0 31 4 *"][..]).prop_map(|t| bad(quoted(t), format!("{t:?} never fires"))),
        ]
    }

    fn any_text() -> impl Strategy<Value = Value> {
        "[ -~]{0,12}|[a-zé∞😀]{0,6}".prop_map(|t| good(quoted(&t), t))
    }

    type Section = Vec<(&'static str, Value)>;

    fn policy(bad_w: u32) -> impl Strategy<Value = Section> {
        let retain = (
            whole(0, u32::MAX.into(), bad_w),
            whole(0, u32::MAX.into(), bad_w),
            whole(0, u32::MAX.into(), bad_w),
            whole(0, u32::MAX.into(), bad_w),
            whole(0, u32::MAX.into(), bad_w),
        );
        let drill = prop::option::of((schedule(bad_w), span(bad_w), any_text()));
        let probe = prop::option::of((
            http_url(bad_w),
            span(bad_w),
            whole(1, u32::MAX.into(), bad_w),
            span(bad_w),
        ));
        (
            (
                label(40, bad_w),
                label(63, bad_w),
                one_of(
                    &["", "app=web", "tier in (db, cache)", "!legacy"],
                    &["a=b,", "=x", "a b c"],
                    "is not a valid label selector",
                    bad_w,
                ),
            ),
            (schedule(bad_w), span(bad_w), span(bad_w)),
            retain,
            (drill, probe, prop::option::of(any_text()), any_text()),
        )
            .prop_map(
                |(
                    (name, ns, sel),
                    (sched, rpo, rto),
                    (l, h, d, w, m),
                    (drill, probe, content, runbook),
                )| {
                    let mut f: Section = vec![
                        ("name", name),
                        ("namespace", ns),
                        ("selector", sel),
                        ("schedule", sched),
                        ("rpo", rpo),
                        ("rto", rto),
                        ("retain.last", l),
                        ("retain.hourly", h),
                        ("retain.daily", d),
                        ("retain.weekly", w),
                        ("retain.monthly", m),
                    ];
                    if let Some((s, ttl, rb)) = drill {
                        f.extend([
                            ("drill.schedule", s),
                            ("drill.ttl", ttl),
                            ("drill.runbook", rb),
                        ]);
                    }
                    if let Some((u, i, n, t)) = probe {
                        f.extend([
                            ("probe.url", u),
                            ("probe.interval", i),
                            ("probe.failures", n),
                            ("probe.timeout", t),
                        ]);
                    }
                    if let Some(c) = content {
                        f.push(("content.checksum_url", c));
                    }
                    f.push(("runbook", runbook));
                    f
                },
            )
    }

    fn top(bad_w: u32) -> impl Strategy<Value = Section> {
        (
            prop::option::of(one_of(
                &["sqlite://dr.db", "postgres://dr@db/dr"],
                &["mysql://x", "sqlite:", "dr.db"],
                "is not a catalog URL",
                bad_w,
            )),
            (http_url(bad_w), whole(1, 256, bad_w), span(bad_w)),
            (
                prop_oneof![3 => Just(good("dr", "dr")), 1 => Just(good("\"\"", ""))],
                any_text(),
                any_text(),
                prop::option::of(http_url(bad_w)),
                any::<bool>(),
            ),
        )
            .prop_map(
                |(
                    catalog,
                    (url, conc, timeout),
                    (bucket, prefix, region, endpoint, path_style),
                )| {
                    let mut f: Section = Vec::new();
                    if let Some(c) = catalog {
                        f.push(("catalog", c));
                    }
                    f.extend([
                        ("longhorn.url", url),
                        ("longhorn.concurrency", conc),
                        ("longhorn.timeout", timeout),
                    ]);
                    f.extend([
                        ("store.bucket", bucket),
                        ("store.prefix", prefix.clone()),
                        ("store.region", region),
                    ]);
                    if let Some(e) = endpoint {
                        f.push(("store.endpoint", e));
                    }
                    f.push((
                        "store.path_style",
                        good(path_style.to_string(), path_style.to_string()),
                    ));
                    f
                },
            )
    }

    /// YAML of a section: `a.b` keys nest under `a` (kept together, in order).
    fn yaml(fields: &[(&str, Value)], indent: &str) -> String {
        let mut out = String::new();
        let mut open: Option<&str> = None;
        for (key, v) in fields {
            match key.split_once('.') {
                Some((outer, inner)) => {
                    if open != Some(outer) {
                        out.push_str(&format!("{indent}{outer}:\n"));
                        open = Some(outer);
                    }
                    out.push_str(&format!("{indent}  {inner}: {}\n", v.yaml));
                }
                None => {
                    open = None;
                    out.push_str(&format!("{indent}{key}: {}\n", v.yaml));
                }
            }
        }
        out
    }

    /// What each generated key reads as in a parsed configuration.
    fn shown(c: &Config) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        let mut put = |k: String, v: String| {
            m.insert(k, v);
        };
        if let Some(u) = &c.catalog {
            put("catalog".into(), u.as_str().into());
        }
        put("longhorn.url".into(), c.longhorn.url.to_string());
        put(
            "longhorn.concurrency".into(),
            c.longhorn.concurrency.0.to_string(),
        );
        put("longhorn.timeout".into(), c.longhorn.timeout.to_string());
        put("store.bucket".into(), c.store.bucket.clone());
        put("store.prefix".into(), c.store.prefix.clone());
        put("store.region".into(), c.store.region.clone());
        if let Some(e) = &c.store.endpoint {
            put("store.endpoint".into(), e.to_string());
        }
        if let Some(p) = c.store.path_style {
            put("store.path_style".into(), p.to_string());
        }
        for (i, p) in c.policies.iter().enumerate() {
            let mut put = |k: &str, v: String| put(format!("policies[{i}].{k}"), v);
            put("name", p.name.to_string());
            put("namespace", p.namespace.to_string());
            put("selector", p.selector.to_string());
            put("schedule", p.schedule.as_str().into());
            put("rpo", p.rpo.0.to_string());
            put("rto", p.rto.0.to_string());
            let r = &p.retain;
            for (k, v) in [
                ("last", r.last),
                ("hourly", r.hourly),
                ("daily", r.daily),
                ("weekly", r.weekly),
                ("monthly", r.monthly),
            ] {
                put(&format!("retain.{k}"), v.to_string());
            }
            if let Some(d) = &p.drill {
                put("drill.schedule", d.schedule.as_str().into());
                put("drill.ttl", d.ttl.0.to_string());
                put("drill.runbook", d.runbook.display().to_string());
            }
            if let Some(pr) = &p.probe {
                put("probe.url", pr.url.to_string());
                put("probe.interval", pr.interval.0.to_string());
                put("probe.failures", pr.failures.to_string());
                put("probe.timeout", pr.timeout.0.to_string());
            }
            if let Some(ct) = &p.content {
                put("content.checksum_url", ct.checksum_url.clone());
            }
            put("runbook", p.runbook.display().to_string());
        }
        m
    }

    /// Where the first refusal must be: the first bad value in the file,
    /// else a repeated policy name, else an empty bucket.
    fn first_refusal(fields: &[(String, Value)]) -> Option<(String, String)> {
        if let Some((path, v)) = fields.iter().find(|(_, v)| !v.ok) {
            return Some((path.clone(), v.shows.clone()));
        }
        let names: Vec<&(String, Value)> = fields
            .iter()
            .filter(|(p, _)| p.ends_with("].name"))
            .collect();
        for (j, (path, v)) in names.iter().enumerate() {
            if names[..j].iter().any(|(_, w)| w.shows == v.shows) {
                return Some((path.clone(), "policy names must be unique".into()));
            }
        }
        fields
            .iter()
            .find(|(p, v)| p == "store.bucket" && v.shows.is_empty())
            .map(|(p, _)| (p.clone(), "must not be empty".into()))
    }

    fn check_file(top: &Section, policies: &[Section]) -> Result<(), TestCaseError> {
        let mut text = yaml(top, "");
        let mut fields: Vec<(String, Value)> = top
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        if !policies.is_empty() {
            text.push_str("policies:\n");
        }
        for (i, p) in policies.iter().enumerate() {
            let body = yaml(p, "    ");
            text.push_str(&format!("  - {}", &body[4..]));
            fields.extend(
                p.iter()
                    .map(|(k, v)| (format!("policies[{i}].{k}"), v.clone())),
            );
        }
        match (Config::parse(&text, "dr.yaml"), first_refusal(&fields)) {
            (Ok(c), None) => {
                let got = shown(&c);
                for (path, v) in &fields {
                    prop_assert_eq!(got.get(path), Some(&v.shows), "{}\n{}", path, text);
                }
                // What `dr config check` prints reads back as the same configuration.
                let printed = serde_norway::to_string(&c).unwrap();
                prop_assert_eq!(
                    Config::parse(&printed, "printed").ok(),
                    Some(c),
                    "{}",
                    printed
                );
            }
            (Err(ConfigError::Invalid { path, message, .. }), Some((want_path, shows))) => {
                prop_assert_eq!(&path, &want_path, "{}\n{}", message, text);
                prop_assert!(
                    message.contains(&shows),
                    "{} lacks {:?}\n{}",
                    message,
                    shows,
                    text
                );
            }
            (got, want) => prop_assert!(false, "{got:?}, want {want:?}\n{text}"),
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Only valid values: every one is kept exactly as written.
        #[test]
        fn valid_files_are_kept_exactly(top in top(0), policies in prop::collection::vec(policy(0), 0..3)) {
            check_file(&top, &policies)?;
        }

        /// Valid and bad values mixed: refused at the first bad one.
        #[test]
        fn every_field_is_kept_exactly_or_refused_by_path(top in top(1), policies in prop::collection::vec(policy(1), 0..3)) {
            check_file(&top, &policies)?;
        }

        /// Any text at all: a configuration or a refusal, never a panic.
        #[test]
        fn any_text_is_a_configuration_or_refused(text in "\\PC{0,60}|([a-z_.]{1,12}: [ -~]{0,12}\n){0,4}") {
            if let Err(e) = Config::parse(&text, "dr.yaml") {
                prop_assert!(e.to_string().starts_with("dr.yaml: "), "{e}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Catalog URLs: kept exactly as given, or refused saying the forms.
        #[test]
        fn catalog_urls_are_kept_as_given_or_refused(
            s in "\\PC{0,30}|(sqlite|postgres|postgresql|mysql)://[ -~]{0,20}|sqlite:[ -~]{0,10}",
        ) {
            match s.parse::<CatalogUrl>() {
                Ok(c) => {
                    prop_assert_eq!(c.as_str(), s.as_str());
                    prop_assert_eq!(String::from(c.clone()), s.clone());
                    let _ = c.to_string();
                }
                Err(e) => prop_assert!(e.contains("is not a catalog URL") && e.contains("sqlite://PATH"), "{e}"),
            }
        }

        /// A password is never printed: in a catalog URL, or in the refusal
        /// of a catalog or http(s) URL.
        #[test]
        fn passwords_are_never_shown(scheme in "postgres|postgresql|mysql|http|ftp", pw in "[A-Za-z0-9]{8,16}") {
            let url = format!("{scheme}://dr:{pw}@db.example/dr");
            let shown = match url.parse::<CatalogUrl>() {
                Ok(c) => c.to_string(),
                Err(e) => e,
            };
            prop_assert!(!shown.contains(&pw), "{shown}");
            if let Err(e) = HttpUrl::try_from(url) {
                prop_assert!(!e.contains(&pw), "{e}");
            }
        }

        /// http(s) URLs read back from their printed form as the same URL.
        #[test]
        fn http_urls_read_back(s in "\\PC{0,30}|https?://[ -~]{0,20}") {
            match HttpUrl::try_from(s.clone()) {
                Ok(u) => prop_assert_eq!(HttpUrl::try_from(String::from(u.clone())), Ok(u)),
                Err(e) => prop_assert!(e.contains(&format!("{s:?}")) && e.contains("http(s) URL"), "{e}"),
            }
        }
    }

    /// Cron expressions of every shape: a schedule that fires, or refused quoting it.
    #[test]
    fn any_cron_text_is_a_schedule_that_fires_or_refused() {
        let field = "(\\*|[0-9]{1,3}|\\*/[0-9]{1,2}|[0-9]{1,2}-[0-9]{1,2}|[0-9]{1,2},[0-9]{1,2}|[A-Z]{3}|L|\\?|[0-9]W|[0-9]#[0-9])";
        let re = format!("{field}( {field}){{4,6}}|\\PC{{0,20}}");
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(64));
        runner
            .run(&re.as_str(), |s| {
                match s.parse::<Schedule>() {
                    Ok(sched) => {
                        prop_assert_eq!(sched.as_str(), s.as_str());
                        let at = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
                        prop_assert!(sched.next_after(at).is_some(), "{s:?} never fires");
                        let _ = sched.next_after(chrono::DateTime::<chrono::Utc>::MAX_UTC);
                        let _ = sched.next_after(chrono::DateTime::<chrono::Utc>::MIN_UTC);
                    }
                    Err(e) => prop_assert!(
                        e.contains(&format!("{s:?}")) && e.contains("six fields"),
                        "{e}"
                    ),
                }
                Ok(())
            })
            .unwrap();
    }
}
