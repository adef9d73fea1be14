//! `querycache watch install|status|uninstall` against a real Postgres: install is
//! idempotent, status reports it (exit 0 only when current), uninstall removes it.

mod common;

use std::process::{Command, Output};

fn cli(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_querycache"))
        .arg("watch")
        .args(args)
        .arg("--database-url")
        .arg(url)
        .output()
        .expect("run querycache")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn install_status_uninstall() {
    let Some(pool) = common::scratch_database("qc_watch_cli").await else {
        return;
    };
    common::exec(
        &pool,
        "CREATE TABLE film (id int); CREATE TABLE staff (id int);",
    )
    .await;
    let o = pool.connect_options();
    let url = format!(
        "postgres://{}@{}:{}/{}",
        o.get_username(),
        o.get_host(),
        o.get_port(),
        o.get_database().expect("database")
    );

    let status = cli(&url, &["status"]);
    assert_eq!(status.status.code(), Some(1), "not installed");

    let install = cli(&url, &["install", "--tables", "film"]);
    assert!(install.status.success(), "{install:?}");
    assert!(stdout(&install).contains("watching public.film"));
    let again = cli(&url, &["install", "--tables", "film"]);
    assert_eq!(stdout(&again).trim(), "nothing to install");

    let status = cli(&url, &["status", "--json"]);
    assert!(status.status.success(), "{status:?}");
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    assert_eq!(json["current"], true);
    assert_eq!(json["watched"], serde_json::json!(["public.film"]));
    assert_eq!(json["unwatched"], serde_json::json!(["public.staff"]));

    let uninstall = cli(&url, &["uninstall"]);
    assert!(uninstall.status.success(), "{uninstall:?}");
    assert_eq!(cli(&url, &["status"]).status.code(), Some(1));
}
