//! Gives every catalog test a fresh database: a SQLite file in a temporary
//! directory, or a new database on the test bed's PostgreSQL.

use super::testbed::{self, TestDatabase};
use dr::catalog::Catalog;

/// A fresh catalog and what keeps it alive.
pub struct TestDb {
    pub catalog: Catalog,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg: Option<TestDatabase>,
}

impl TestDb {
    /// Removes a PostgreSQL test database (SQLite files go with their directory).
    pub async fn cleanup(self) {
        self.catalog.close().await;
        if let Some(db) = self.pg {
            db.drop_db().await;
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
    let db = testbed::get().fresh_database().await;
    let url = db.url.clone();
    let catalog = Catalog::open(&url.parse().expect("postgres url"))
        .await
        .expect("open postgres catalog");
    TestDb {
        catalog,
        url,
        _dir: None,
        pg: Some(db),
    }
}
