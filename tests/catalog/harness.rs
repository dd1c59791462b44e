//! Gives every catalog test a fresh database: a SQLite file in a temporary
//! directory, or a new database on the test bed's PostgreSQL.

use dr::catalog::Catalog;
use std::path::PathBuf;

/// Reads one key of the test bed's env file (`target/testbed.env`, or
/// `$DR_TESTBED_ENV`), with the process environment taking precedence.
pub fn testbed_var(key: &str) -> Option<String> {
    if let Ok(v) = std::env::var(key) {
        return Some(v);
    }
    let path = std::env::var("DR_TESTBED_ENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/testbed.env"));
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let l = l.trim().strip_prefix("export ").unwrap_or(l.trim());
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').trim_matches('\'').to_owned())
    })
}

/// The admin URL of the test bed's PostgreSQL; panics with how to start it.
pub fn pg_admin_url() -> String {
    testbed_var("DR_TEST_PG_URL").unwrap_or_else(|| {
        panic!(
            "PostgreSQL for the catalog tests is not configured: start the test bed with \
             `tests/testbed/up` (it writes target/testbed.env), or set DR_TEST_PG_URL=postgres://USER:PASS@127.0.0.1:PORT/postgres"
        )
    })
}

/// A fresh catalog and what keeps it alive.
pub struct TestDb {
    pub catalog: Catalog,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl TestDb {
    /// Removes a PostgreSQL test database (SQLite files go with their directory).
    pub async fn cleanup(self) {
        self.catalog.close().await;
        if let Some((admin, name)) = self.pg {
            use sqlx::Connection;
            if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut c)
                .await;
            }
        }
    }
}

/// A new SQLite catalog in its own temporary directory.
pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("catalog.db").display());
    let catalog = Catalog::open(&url.parse().expect("sqlite url"))
        .await
        .expect("open sqlite catalog");
    TestDb {
        catalog,
        url,
        _dir: Some(dir),
        pg: None,
    }
}

/// A new, empty database on the test bed's PostgreSQL, migrated.
pub async fn postgres() -> TestDb {
    use sqlx::Connection;
    let admin = pg_admin_url();
    let name = format!("dr_test_{:016x}", rand::random::<u64>());
    let mut c = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
        panic!(
            "cannot reach the test bed's PostgreSQL at {admin}: {e}; start it with `tests/testbed/up`"
        )
    });
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut c)
        .await
        .expect("create test database");
    let mut url = url::Url::parse(&admin).expect("admin url");
    url.set_path(&name);
    let url = url.to_string();
    let catalog = Catalog::open(&url.parse().expect("postgres url"))
        .await
        .expect("open postgres catalog");
    TestDb {
        catalog,
        url,
        _dir: None,
        pg: Some((admin, name)),
    }
}
