//! The application context, shared by the CLI and the daemon: built once
//! from the configuration, it holds the resolved policies (the configuration
//! with every default and path filled in, in one place), the clock, this
//! process's holder id, and the adapters — the catalog, and the Longhorn,
//! Kubernetes and S3 clients — each opened on first use, so a command that
//! needs only the catalog never reaches for a cluster.

use crate::backup::{Protect, TickOptions};
use crate::catalog::{Catalog, CatalogError, PolicyRecord};
use crate::clock::Clock;
use crate::cluster::ClusterError;
use crate::config::{CatalogUrl, Config, DEFAULT_DRILL_TTL, DEFAULT_RUNBOOK, PolicyConfig};
use crate::longhorn::{ClientConfig, LonghornClient};
use crate::names::PolicyName;
use crate::runbook::engine::Env;
use crate::runbook::{Runbook, RunbookError};
use crate::store::{Store, s3_client};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::OnceCell;

/// Why the context could not give what was asked.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Kubernetes(#[from] ClusterError),
    #[error(transparent)]
    Runbook(#[from] RunbookError),
    #[error("cannot build the Longhorn client: {0}")]
    LonghornClient(#[from] reqwest::Error),
}

/// A configured policy with everything resolved.
#[derive(Debug, Clone)]
pub struct Policy {
    /// As configured (defaults filled in by the parser).
    pub config: PolicyConfig,
    /// The runbook `dr restore` follows, resolved against the configuration
    /// file's directory.
    pub runbook: PathBuf,
    /// The runbook its drills follow (the drill's own, else the policy's).
    pub drill_runbook: PathBuf,
    /// How long drill leftovers may stay.
    pub drill_ttl: Duration,
    /// The content probe's URL template, for `content: checksums`.
    pub content_url: Option<String>,
}

impl Policy {
    pub fn name(&self) -> &PolicyName {
        &self.config.name
    }
}

/// What the catalog records of a configured policy: the configuration meets
/// the catalog here, so neither knows the other's shape.
impl From<&PolicyConfig> for PolicyRecord {
    fn from(p: &PolicyConfig) -> PolicyRecord {
        PolicyRecord {
            name: p.name.clone(),
            namespace: p.namespace.clone(),
            selector: p.selector.as_str().to_string(),
            schedule: p.schedule.as_str().to_string(),
            rpo: p.rpo.0,
            rto: p.rto.0,
        }
    }
}

/// The clients of Longhorn and of S3 (Kubernetes is apart: `dr catalog
/// sync` and `dr prune` need no cluster).
#[derive(Clone)]
pub struct Clients {
    pub longhorn: LonghornClient,
    /// dr's store (manifest bundles).
    pub store: Store,
    /// Reads Longhorn's backup store, to verify backups.
    pub verifier: aws_sdk_s3::Client,
}

/// The application context.
pub struct App {
    pub config: Config,
    pub catalog_url: CatalogUrl,
    pub policies: Vec<Policy>,
    pub clock: Clock,
    /// This process, as the holder of the runs it executes.
    pub holder: String,
    config_dir: Option<PathBuf>,
    catalog: OnceCell<Catalog>,
    clients: OnceCell<Clients>,
    kube: OnceCell<kube::Client>,
}

impl App {
    /// The context of a configuration (read from `config_path`, if any).
    pub fn new(config: Config, config_path: Option<&Path>, catalog_url: CatalogUrl) -> App {
        let config_dir = config_path.and_then(|p| p.parent()).map(Path::to_path_buf);
        let policies = config
            .policies
            .iter()
            .map(|p| resolve_policy(p, config_dir.as_deref()))
            .collect();
        App {
            config,
            catalog_url,
            policies,
            clock: Clock::System,
            holder: crate::runbook::lease::holder_id(),
            config_dir,
            catalog: OnceCell::new(),
            clients: OnceCell::new(),
            kube: OnceCell::new(),
        }
    }

    /// The same context on another clock (tests on a paused clock).
    pub fn with_clock(mut self, clock: Clock) -> App {
        self.clock = clock;
        self
    }

    /// The catalog, opened on first use with the configured policies
    /// registered in it.
    pub async fn catalog(&self) -> Result<&Catalog, AppError> {
        self.catalog
            .get_or_try_init(|| async {
                let catalog = Catalog::open(&self.catalog_url).await?;
                let now = self.clock.now();
                for p in &self.config.policies {
                    catalog.upsert_policy(&p.into(), now).await?;
                }
                Ok::<_, AppError>(catalog)
            })
            .await
    }

    /// Longhorn and S3 (AWS_* or the usual AWS chain), built on first use.
    pub async fn clients(&self) -> Result<&Clients, AppError> {
        self.clients
            .get_or_try_init(|| async {
                let c = &self.config;
                let mut lh = ClientConfig::new(c.longhorn.url.0.clone());
                lh.timeout = c.longhorn.timeout.as_duration();
                lh.follow_interval = c.longhorn.follow_interval.as_duration();
                let longhorn = LonghornClient::new(lh)?;
                let store = Store::new(&c.store).await;
                let endpoint = c.store.endpoint.as_ref().map(|u| u.0.as_str().to_owned());
                let verifier = s3_client(
                    &c.store.region,
                    endpoint.as_deref(),
                    c.store.path_style.unwrap_or(endpoint.is_some()),
                )
                .await;
                Ok::<_, AppError>(Clients {
                    longhorn,
                    store,
                    verifier,
                })
            })
            .await
    }

    /// The Kubernetes client (KUBECONFIG or in-cluster), built on first use.
    pub async fn kube(&self) -> Result<&kube::Client, AppError> {
        Ok(self
            .kube
            .get_or_try_init(|| crate::cluster::client(None))
            .await?)
    }

    /// What a restore or drill talks to.
    pub async fn env(&self) -> Result<Env, AppError> {
        let catalog = self.catalog().await?.clone();
        let c = self.clients().await?;
        Ok(Env {
            catalog,
            kube: self.kube().await?.clone(),
            longhorn: c.longhorn.clone(),
            store: c.store.clone(),
            clock: self.clock,
        })
    }

    /// What a tick talks to, with the configured concurrency.
    pub async fn protect(&self) -> Result<Protect, AppError> {
        let catalog = self.catalog().await?.clone();
        let c = self.clients().await?;
        Ok(Protect {
            catalog,
            longhorn: c.longhorn.clone(),
            kube: self.kube().await?.clone(),
            store: c.store.clone(),
            verifier: c.verifier.clone(),
            options: TickOptions {
                concurrency: self.config.longhorn.concurrency.0,
                clock: self.clock,
                ..TickOptions::default()
            },
        })
    }

    /// A configured policy by name.
    pub fn policy(&self, name: &str) -> Option<&Policy> {
        self.policies.iter().find(|p| p.name().as_str() == name)
    }

    /// A path from the configuration or a flag: absolute as is; relative to
    /// the configuration file's directory if it exists there; else relative
    /// to the working directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        resolve_path(path, self.config_dir.as_deref())
    }

    /// The runbook a drill of `policy` follows: `flag` if given, else the
    /// policy's drill runbook, else the default.
    pub fn drill_runbook(
        &self,
        policy: &str,
        flag: Option<&Path>,
    ) -> Result<(PathBuf, Runbook), AppError> {
        let path = match (flag, self.policy(policy)) {
            (Some(f), _) => self.resolve(f),
            (None, Some(p)) => p.drill_runbook.clone(),
            (None, None) => self.resolve(Path::new(DEFAULT_RUNBOOK)),
        };
        let rb = Runbook::load(&path)?;
        Ok((path, rb))
    }

    /// The runbook `dr restore` follows for `policy`: `flag` if given, else
    /// the policy's, else the default.
    pub fn restore_runbook(&self, policy: &str, flag: Option<&Path>) -> PathBuf {
        match (flag, self.policy(policy)) {
            (Some(f), _) => self.resolve(f),
            (None, Some(p)) => p.runbook.clone(),
            (None, None) => self.resolve(Path::new(DEFAULT_RUNBOOK)),
        }
    }

    /// The identity that opens sealed Secrets: the file `flag` names
    /// (`--secrets-identity`, `DR_SECRETS_IDENTITY`), else the
    /// configuration's `secrets_identity`, else none.
    pub fn secrets_identity(
        &self,
        flag: Option<&Path>,
    ) -> Result<Option<crate::secrets::Identity>, crate::secrets::SecretsError> {
        let path = match (flag, &self.config.secrets_identity) {
            (Some(f), _) => f.to_owned(),
            (None, Some(c)) => self.resolve(c),
            (None, None) => return Ok(None),
        };
        crate::secrets::Identity::load(&path).map(Some)
    }

    /// How long drill leftovers of `policy` may stay (the default for a
    /// policy that is not configured).
    pub fn drill_ttl(&self, policy: &str) -> Duration {
        self.policy(policy)
            .map_or(DEFAULT_DRILL_TTL.as_duration(), |p| p.drill_ttl)
    }

    /// The shortest drill TTL of the configured policies (the janitor's at start).
    pub fn shortest_drill_ttl(&self) -> Duration {
        self.policies
            .iter()
            .filter(|p| p.config.drill.is_some())
            .map(|p| p.drill_ttl)
            .min()
            .unwrap_or(DEFAULT_DRILL_TTL.as_duration())
    }
}

fn resolve_path(path: &Path, dir: Option<&Path>) -> PathBuf {
    if path.is_absolute() {
        return path.to_owned();
    }
    if let Some(dir) = dir {
        let p = dir.join(path);
        if p.exists() {
            return p;
        }
    }
    path.to_owned()
}

fn resolve_policy(p: &PolicyConfig, dir: Option<&Path>) -> Policy {
    let runbook = resolve_path(&p.runbook, dir);
    let drill_runbook = p
        .drill
        .as_ref()
        .map_or_else(|| runbook.clone(), |d| resolve_path(&d.runbook, dir));
    Policy {
        config: p.clone(),
        runbook,
        drill_runbook,
        drill_ttl: p
            .drill
            .as_ref()
            .map_or(DEFAULT_DRILL_TTL.as_duration(), |d| d.ttl.0.as_duration()),
        content_url: p.content.as_ref().map(|c| c.checksum_url.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_are_resolved_with_every_default_in_one_place() {
        let dir = tempfile::tempdir().expect("a temp dir");
        std::fs::create_dir_all(dir.path().join("runbooks")).expect("a dir");
        std::fs::write(dir.path().join("runbooks/drill.yaml"), "").expect("a file");
        let cfg = Config::parse(
            "policies:\n  - {name: a, namespace: a}\n  - name: b\n    namespace: b\n    drill: {schedule: \"0 0 3 * * SUN\", runbook: runbooks/drill.yaml, ttl: 30m}\n    content: {checksum_url: \"http://x/{volume}\"}\n",
            "t.yaml",
        )
        .expect("a valid configuration");
        let path = dir.path().join("dr.yaml");
        let app = App::new(cfg, Some(&path), "sqlite://x.db".parse().expect("a url"));
        let a = app.policy("a").expect("policy a");
        assert_eq!(a.runbook, PathBuf::from(DEFAULT_RUNBOOK));
        assert_eq!(a.drill_runbook, a.runbook);
        assert_eq!(a.drill_ttl, DEFAULT_DRILL_TTL.as_duration());
        assert_eq!(a.content_url, None);
        let b = app.policy("b").expect("policy b");
        assert_eq!(b.drill_runbook, dir.path().join("runbooks/drill.yaml"));
        assert_eq!(b.drill_ttl, Duration::from_secs(1800));
        assert_eq!(b.content_url.as_deref(), Some("http://x/{volume}"));
        assert_eq!(app.shortest_drill_ttl(), Duration::from_secs(1800));
        assert_eq!(app.drill_ttl("nope"), DEFAULT_DRILL_TTL.as_duration());
    }
}
