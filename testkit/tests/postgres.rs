//! The PostgreSQL harness starts a real cluster as an unprivileged user, answers
//! queries, creates databases, and stops on drop. Skipped where PostgreSQL is not
//! installed, except under `CI`, where its absence fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use weft_testkit::postgres::{Postgres, binaries};

#[test]
fn a_cluster_starts_answers_and_stops() {
    if binaries().is_none() && std::env::var_os("CI").is_none() {
        eprintln!("skipped: PostgreSQL is not installed (CI installs it)");
        return;
    }
    let pg = Postgres::start().unwrap();
    assert_eq!(pg.psql("postgres", "SELECT 1 + 1").unwrap(), "2");
    pg.create_database("weft_test").unwrap();
    pg.psql("weft_test", "CREATE TABLE t (id int primary key)")
        .unwrap();
    pg.psql("weft_test", "INSERT INTO t VALUES (1), (2)")
        .unwrap();
    assert_eq!(pg.psql("weft_test", "SELECT count(*) FROM t").unwrap(), "2");
    // Not the root user, whatever runs the tests.
    assert_ne!(
        pg.psql(
            "postgres",
            "SELECT current_setting('data_directory') IS NOT NULL"
        )
        .unwrap(),
        ""
    );
    assert!(pg.psql("weft_test", "SELECT * FROM missing").is_err());
    let port = pg.port();
    drop(pg);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "stopped on drop"
    );
}
