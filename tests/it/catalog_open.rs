#![allow(clippy::unwrap_used)]
//! Processes that open a new SQLite catalog at the same moment (`dr serve`
//! starting while `dr status` runs) all get it: SQLite has no migration lock.

use dr::catalog::Catalog;
use dr::config::CatalogUrl;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_openers_of_a_new_sqlite_catalog_all_get_it() {
    for round in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let url: CatalogUrl = format!("sqlite://{}/c.db", dir.path().display())
            .parse()
            .unwrap();
        // Each open has its own pool, hence its own connection: as separate
        // processes would.
        let opens = (0..6).map(|_| {
            let url = url.clone();
            tokio::spawn(async move { Catalog::open(&url).await.map(|_| ()) })
        });
        for r in futures::future::join_all(opens).await {
            r.unwrap()
                .unwrap_or_else(|e| panic!("round {round}: an opener failed: {e}"));
        }
    }
}
