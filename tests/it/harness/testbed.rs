//! Access to the test bed of real components started by `tests/testbed/up`:
//! a Kubernetes control plane with kwok nodes, versitygw (S3) and PostgreSQL.
//!
//! The bed is described by the env file that `up` writes (`target/testbed.env`,
//! or the path in `DR_TESTBED_ENV`). When the file is missing or a service does
//! not answer, the helpers panic with instructions: tests never skip.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};

const HINT: &str =
    "start the test bed first: `tests/testbed/up` (stop it with `tests/testbed/down`)";

/// How long a test waits for the cluster to converge (pods Ready, PVC Bound…).
pub const CONVERGE: Duration = Duration::from_secs(90);

/// The parsed env file.
pub struct Testbed {
    path: PathBuf,
    vars: HashMap<String, String>,
}

/// The test bed of this run; panics if `tests/testbed/up` has not written its env file.
pub fn get() -> &'static Testbed {
    static TESTBED: OnceLock<Testbed> = OnceLock::new();
    TESTBED.get_or_init(|| Testbed::load(&env_path()))
}

fn env_path() -> PathBuf {
    match std::env::var_os("DR_TESTBED_ENV") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("target/testbed.env"),
    }
}

/// Parses `KEY=VALUE` lines; blank lines and `#` comments are skipped.
pub fn parse_env(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

impl Testbed {
    fn load(path: &Path) -> Testbed {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
            panic!(
                "test bed env file {} is unreadable ({e}): {HINT}",
                path.display()
            )
        });
        Testbed {
            path: path.to_owned(),
            vars: parse_env(&text),
        }
    }

    /// A variable of the env file; panics if it is absent.
    pub fn var(&self, key: &str) -> &str {
        self.vars.get(key).map(String::as_str).unwrap_or_else(|| {
            panic!(
                "{key} is missing from {}: re-run tests/testbed/up",
                self.path.display()
            )
        })
    }

    pub fn kubeconfig(&self) -> PathBuf {
        PathBuf::from(self.var("KUBECONFIG"))
    }

    /// A client with cluster-admin rights (certificate in group system:masters).
    pub async fn kube_client(&self) -> kube::Client {
        kube_client_from(&self.kubeconfig()).await
    }

    /// The kubeconfig of cluster B: a second cluster of the bed, with its
    /// own etcd, PKI and kwok nodes, the one a lost cluster A is recovered
    /// into. It shares the bed's S3 and PostgreSQL.
    pub fn kubeconfig_b(&self) -> PathBuf {
        match self.vars.get("DR_TEST_KUBECONFIG_B") {
            Some(p) => PathBuf::from(p),
            None => panic!(
                "DR_TEST_KUBECONFIG_B is missing from {}: the bed was started before it had a \
                 cluster B; run tests/testbed/up again (it adds cluster B to a running bed)",
                self.path.display()
            ),
        }
    }

    /// A cluster-admin client of cluster B (see [`Testbed::kubeconfig_b`]).
    pub async fn kube_client_b(&self) -> kube::Client {
        kube_client_from(&self.kubeconfig_b()).await
    }

    /// Writes a kubeconfig for ServiceAccount `ns/sa` (bearer token from the
    /// TokenRequest API, via `tests/testbed/sa-kubeconfig`) and returns its path.
    pub fn sa_kubeconfig(&self, ns: &str, sa: &str, out: &Path) -> PathBuf {
        self.sa_kubeconfig_in("a", ns, sa, out)
    }

    /// [`Testbed::sa_kubeconfig`] for a ServiceAccount of cluster B.
    pub fn sa_kubeconfig_b(&self, ns: &str, sa: &str, out: &Path) -> PathBuf {
        self.sa_kubeconfig_in("b", ns, sa, out)
    }

    fn sa_kubeconfig_in(&self, cluster: &str, ns: &str, sa: &str, out: &Path) -> PathBuf {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testbed/sa-kubeconfig");
        let output = Command::new("bash")
            .arg(&script)
            .args(["--cluster", cluster, ns, sa])
            .arg(out)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        assert!(
            output.status.success(),
            "{} {ns} {sa} failed: {}",
            script.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        out.to_owned()
    }

    /// An S3 client for the test bed's versitygw: custom endpoint, path-style
    /// addressing, static root credentials.
    pub fn s3_client(&self) -> aws_sdk_s3::Client {
        use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
        let creds = Credentials::new(
            self.var("AWS_ACCESS_KEY_ID"),
            self.var("AWS_SECRET_ACCESS_KEY"),
            None,
            None,
            "dr-testbed",
        );
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(self.var("DR_TEST_S3_REGION").to_owned()))
            .endpoint_url(self.var("DR_TEST_S3_ENDPOINT"))
            .credentials_provider(creds)
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// The S3 client, after checking that the server answers and the test
    /// bucket exists.
    pub async fn s3_checked(&self) -> aws_sdk_s3::Client {
        let s3 = self.s3_client();
        let bucket = self.var("DR_TEST_S3_BUCKET");
        let probe = tokio::time::timeout(
            Duration::from_secs(10),
            s3.head_bucket().bucket(bucket).send(),
        )
        .await;
        match probe {
            Ok(Ok(_)) => s3,
            Ok(Err(e)) => panic!(
                "S3 at {} does not serve bucket {bucket}: {:?}: {HINT}",
                self.var("DR_TEST_S3_ENDPOINT"),
                e
            ),
            Err(_) => panic!(
                "S3 at {} did not answer in 10 s: {HINT}",
                self.var("DR_TEST_S3_ENDPOINT")
            ),
        }
    }

    /// The Longhorn emulator's backup store: the bed's S3 server under the
    /// caller's key prefix, from this same env file, once S3 has answered
    /// (else a panic naming `tests/testbed/up`, like every other service).
    pub async fn emulator_store(&self, prefix: &str) -> longhorn_emulator::StoreConfig {
        self.s3_checked().await;
        longhorn_emulator::StoreConfig {
            endpoint: self.var("DR_TEST_S3_ENDPOINT").to_owned(),
            region: self.var("DR_TEST_S3_REGION").to_owned(),
            bucket: self.var("DR_TEST_S3_BUCKET").to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
            access_key: self.var("AWS_ACCESS_KEY_ID").to_owned(),
            secret_key: self.var("AWS_SECRET_ACCESS_KEY").to_owned(),
        }
    }

    pub fn s3_bucket(&self) -> &str {
        self.var("DR_TEST_S3_BUCKET")
    }

    /// The admin URL of PostgreSQL (database `postgres`, superuser `dr`).
    pub fn pg_url(&self) -> &str {
        self.var("DR_TEST_PG_URL")
    }

    /// The URL of another database on the same server.
    pub fn pg_url_for(&self, database: &str) -> String {
        let mut url = url::Url::parse(self.pg_url()).expect("DR_TEST_PG_URL is a URL");
        url.set_path(&format!("/{database}"));
        url.to_string()
    }

    /// A connection to the admin database.
    pub async fn pg_admin(&self) -> sqlx::PgConnection {
        use sqlx::Connection;
        let connect = sqlx::PgConnection::connect(self.pg_url());
        match tokio::time::timeout(Duration::from_secs(10), connect).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => panic!("PostgreSQL at {} refused: {e}: {HINT}", self.pg_url()),
            Err(_) => panic!(
                "PostgreSQL at {} did not answer in 10 s: {HINT}",
                self.pg_url()
            ),
        }
    }

    /// Creates an empty database with a random name; drop it with
    /// [`TestDatabase::drop_db`].
    pub async fn fresh_database(&self) -> TestDatabase {
        let name = format!("dr_test_{}", suffix());
        let mut admin = self.pg_admin().await;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        TestDatabase {
            url: self.pg_url_for(&name),
            name,
            admin_url: self.pg_url().to_owned(),
        }
    }
}

/// A random lowercase suffix for names of test objects.
pub fn suffix() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// A kube client from any kubeconfig file; panics with the hint when the
/// apiserver does not answer.
pub async fn kube_client_from(path: &Path) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(path)
        .unwrap_or_else(|e| panic!("reading kubeconfig {}: {e}: {HINT}", path.display()));
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("loading kubeconfig {}: {e}", path.display()));
    let url = config.cluster_url.clone();
    let client = kube::Client::try_from(config).expect("building a kube client");
    match tokio::time::timeout(Duration::from_secs(10), client.apiserver_version()).await {
        Ok(Ok(_)) => client,
        Ok(Err(e)) => panic!("kube-apiserver at {url} refused: {e}: {HINT}"),
        Err(_) => panic!("kube-apiserver at {url} did not answer in 10 s: {HINT}"),
    }
}

/// A database created for one test.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    admin_url: String,
}

impl TestDatabase {
    /// Drops the database, ending any sessions still connected to it.
    pub async fn drop_db(self) {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&self.admin_url)
            .await
            .expect("admin connection");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("DROP DATABASE {}: {e}", self.name));
    }
}

/// A namespace with a random suffix that belongs to one test. It is deleted by
/// [`TestNamespace::delete`] or, if the test panics first, when dropped.
pub struct TestNamespace {
    pub name: String,
    client: kube::Client,
    kubeconfig: PathBuf,
    deleted: bool,
}

impl TestNamespace {
    /// A namespace in cluster A (the client's cluster must be A: a leftover
    /// is deleted through A's kubeconfig).
    pub async fn create(client: &kube::Client, prefix: &str) -> TestNamespace {
        Self::create_in(client, get().kubeconfig(), prefix).await
    }

    /// A namespace in cluster B, through a client of cluster B.
    pub async fn create_b(client: &kube::Client, prefix: &str) -> TestNamespace {
        Self::create_in(client, get().kubeconfig_b(), prefix).await
    }

    async fn create_in(client: &kube::Client, kubeconfig: PathBuf, prefix: &str) -> TestNamespace {
        let name = format!("{prefix}-{}", suffix());
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": {"dr.test/testbed": "true"}}
        }))
        .expect("namespace object");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
        TestNamespace {
            name,
            client: client.clone(),
            kubeconfig,
            deleted: false,
        }
    }

    /// Starts the deletion of the namespace (the namespace controller finishes it).
    pub async fn delete(mut self) {
        self.deleted = true;
        Api::<Namespace>::all(self.client.clone())
            .delete(&self.name, &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("deleting namespace {}: {e}", self.name));
    }

    /// Deletes the namespace and waits until it is gone.
    pub async fn delete_and_wait(mut self) {
        self.deleted = true;
        let api = Api::<Namespace>::all(self.client.clone());
        let uid = api
            .get(&self.name)
            .await
            .unwrap_or_else(|e| panic!("reading namespace {}: {e}", self.name))
            .metadata
            .uid
            .expect("namespace uid");
        api.delete(&self.name, &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("deleting namespace {}: {e}", self.name));
        tokio::time::timeout(
            CONVERGE,
            await_condition(api, &self.name, conditions::is_deleted(&uid)),
        )
        .await
        .unwrap_or_else(|_| {
            panic!(
                "namespace {} still exists {CONVERGE:?} after its deletion",
                self.name
            )
        })
        .expect("watching the namespace");
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if self.deleted {
            return;
        }
        // A test failed before cleaning up. The test's runtime may be going
        // away, so delete from a thread of our own with a client of its own.
        let (name, kubeconfig) = (self.name.clone(), self.kubeconfig.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let kc = Kubeconfig::read_from(&kubeconfig).ok()?;
                let config =
                    kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                        .await
                        .ok()?;
                let client = kube::Client::try_from(config).ok()?;
                Api::<Namespace>::all(client)
                    .delete(&name, &DeleteParams::default())
                    .await
                    .ok()
            })
        })
        .join();
    }
}

/// Creates a PVC of StorageClass `longhorn` (served by a Longhorn emulator's
/// provisioner) with these labels and size.
pub async fn longhorn_claim(
    client: &kube::Client,
    ns: &str,
    name: &str,
    labels: serde_json::Value,
    size: &str,
) {
    longhorn_claim_of(client, ns, name, labels, size, "longhorn").await
}

/// A claim of one of the emulator's Longhorn classes (`longhorn`, or
/// `longhorn-xfs` for xfs volumes).
pub async fn longhorn_claim_of(
    client: &kube::Client,
    ns: &str,
    name: &str,
    labels: serde_json::Value,
    size: &str,
    class: &str,
) {
    use k8s_openapi::api::core::v1::PersistentVolumeClaim;
    let pvc: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "labels": labels},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": class,
                 "resources": {"requests": {"storage": size}}}
    }))
    .expect("claim object");
    Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &pvc)
        .await
        .unwrap_or_else(|e| panic!("creating claim {ns}/{name}: {e}"));
}

/// Waits until the claim is Bound and returns it; panics after [`CONVERGE`].
pub async fn wait_bound(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> k8s_openapi::api::core::v1::PersistentVolumeClaim {
    use k8s_openapi::api::core::v1::PersistentVolumeClaim;
    let api = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns);
    let start = std::time::Instant::now();
    loop {
        let pvc = api
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("reading claim {ns}/{name}: {e}"));
        if pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound") {
            return pvc;
        }
        assert!(
            start.elapsed() < CONVERGE,
            "claim {ns}/{name} not bound (is a Longhorn emulator serving {ns}?): {:?}",
            pvc.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
