//! Proof that the test bed's PostgreSQL accepts the `dr` role over TCP with a
//! password and lets tests create and drop databases of their own.
//! Needs `tests/testbed/up`.

use crate::harness::testbed;
use sqlx::Connection;

#[tokio::test]
async fn connect_create_a_database_query_and_drop_it() {
    let tb = testbed::get();
    let mut admin = tb.pg_admin().await;
    let version: i32 = sqlx::query_scalar("SELECT current_setting('server_version_num')::int")
        .fetch_one(&mut admin)
        .await
        .expect("server version");
    assert!(version >= 150000, "PostgreSQL {version} is older than 15");
    let can_create: bool =
        sqlx::query_scalar("SELECT rolcreatedb FROM pg_roles WHERE rolname = current_user")
            .fetch_one(&mut admin)
            .await
            .expect("role attributes");
    assert!(can_create, "role dr lacks CREATEDB");

    let db = tb.fresh_database().await;
    {
        let pool = sqlx::PgPool::connect(&db.url)
            .await
            .expect("connecting to the fresh database");
        sqlx::query("CREATE TABLE t (id bigint PRIMARY KEY, note text NOT NULL)")
            .execute(&pool)
            .await
            .expect("CREATE TABLE");
        for i in 1..=3i64 {
            sqlx::query("INSERT INTO t VALUES ($1, $2)")
                .bind(i)
                .bind(format!("row {i}"))
                .execute(&pool)
                .await
                .expect("INSERT");
        }
        let (n, last): (i64, String) = sqlx::query_as("SELECT count(*), max(note) FROM t")
            .fetch_one(&pool)
            .await
            .expect("SELECT");
        assert_eq!((n, last.as_str()), (3, "row 3"));
        let current: String = sqlx::query_scalar("SELECT current_database()")
            .fetch_one(&pool)
            .await
            .expect("db");
        assert_eq!(current, db.name);
        pool.close().await;
    }
    let name = db.name.clone();
    db.drop_db().await;
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_one(&mut admin)
        .await
        .expect("pg_database");
    assert_eq!(left, 0, "database {name} still exists after DROP");
    admin.close().await.expect("closing");
}

#[tokio::test]
async fn a_wrong_password_is_refused() {
    let tb = testbed::get();
    tb.pg_admin().await; // the server is up
    let mut url = url::Url::parse(tb.pg_url()).expect("url");
    url.set_password(Some("wrong")).expect("password");
    let err = sqlx::PgConnection::connect(url.as_str())
        .await
        .expect_err("login with a wrong password");
    let code = err
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned());
    assert_eq!(
        code.as_deref(),
        Some("28P01"),
        "expected invalid_password, got {err}"
    );
}
