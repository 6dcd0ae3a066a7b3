//! `breakglass serve --targets` and the `target` commands over a real port, against a private
//! PostgreSQL cluster with password authentication: `target check` passes, `target discover`
//! exits 9 once a superuser is created behind breakglass's back, and a break through the CLI
//! reveals a connection string that logs in; `target grant` shows it ended after the close.

mod common;

use common::{Server, keygen, sql, stdout, stdout_json};
use sqlx::Connection;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_commands_and_a_postgres_break_through_the_cli() {
    let Some(pg) = breakglass_testkit::pgcluster::cluster(
        "cli::targets::target_commands_and_a_postgres_break_through_the_cli",
    ) else {
        return;
    };
    let db = pg.fresh_db().await;
    let sfx = db["bg_test_".len()..].to_owned();
    let (adm, app, op) = (
        format!("cadm_{sfx}"),
        format!("capp_{sfx}"),
        format!("cop_{sfx}"),
    );
    let admin_pw = format!("adm-{sfx}");
    sql(
        pg,
        &db,
        format!(
            "CREATE ROLE {adm} LOGIN PASSWORD '{admin_pw}' CREATEROLE;
             CREATE ROLE {app} NOLOGIN;
             GRANT {app} TO {adm} WITH ADMIN OPTION;
             CREATE ROLE {op} LOGIN PASSWORD 'op-{sfx}' CREATEROLE;
             GRANT pg_signal_backend TO {op};"
        ),
    )
    .await;

    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).expect("keys");
    // The operator URL comes from a secret file, as in production.
    let secret_file = dir.path().join("pg-operator");
    std::fs::write(
        &secret_file,
        format!("{}\n", pg.url(&op, &format!("op-{sfx}"), &db)),
    )
    .expect("operator secret");
    std::fs::write(
        dir.path().join("targets.yaml"),
        format!(
            "connections:\n  - name: pg\n    kind: postgres\n    operator_url: {{file: {}}}\n",
            secret_file.display()
        ),
    )
    .expect("targets file");
    let server = Server::start_with(
        &dir.path().join("data"),
        &[
            "--targets",
            dir.path().join("targets.yaml").to_str().expect("utf-8"),
        ],
    );
    let mut custodians = String::new();
    for name in ["alice", "bob", "carol"] {
        let (_, key) = keygen(&keys, name);
        custodians.push_str(&format!("  - name: {name}\n    key: {key}\n"));
    }
    let file = keys.join("pg.yaml");
    std::fs::write(
        &file,
        format!(
            "id: pg\ntarget:\n  kind: postgres\n  details:\n    host: {}\n    port: \"{}\"\n    dbname: {db}\n    admin_user: {adm}\n    grant_role: {app}\n    connection: pg\n    sslmode: disable\n    inventory: postgres, {adm}, {op}\ncustodians:\n{custodians}quorum: 2\nmax_grant: 1h\n",
            pg.host, pg.port
        ),
    )
    .expect("procedure");
    server
        .cli()
        .args(["procedure", "apply"])
        .arg(&file)
        .assert()
        .success();
    server.add_requester(&keys, "dave", &keygen(&keys, "dave").1);
    server
        .cli()
        .args(["seal", "pg"])
        .write_stdin(format!("{admin_pw}\n"))
        .assert()
        .success();

    // Health without unsealing.
    let a = server
        .cli()
        .args(["target", "check", "pg"])
        .assert()
        .success();
    let out = stdout(&a);
    assert!(out.lines().all(|l| l.starts_with("ok ")), "{out}");
    assert!(!out.contains(&admin_pw));
    server
        .cli()
        .args(["target", "discover", "pg"])
        .assert()
        .success();

    // A superuser created behind breakglass's back: discover exits 9 and names it.
    let rogue = format!("rogue_{sfx}");
    sql(pg, &db, format!("CREATE ROLE {rogue} LOGIN SUPERUSER")).await;
    let a = server
        .cli()
        .args(["target", "discover", "pg"])
        .assert()
        .code(9);
    let out = stdout(&a);
    let line = out
        .lines()
        .find(|l| l.contains(&rogue))
        .expect("rogue listed");
    assert!(
        line.contains("not in inventory") && line.contains("no expiry"),
        "{out}"
    );
    let a = server
        .cli()
        .args(["--output", "json", "target", "show", "pg"])
        .assert()
        .success();
    let reports = stdout_json(&a);
    assert_eq!(
        reports["reports"].as_array().expect("reports").len(),
        2,
        "{reports}"
    );

    // A break through the CLI: the reveal is a working connection string.
    let key = |n: &str| keys.join(format!("{n}.key"));
    let a = server
        .cli()
        .arg("--identity")
        .arg(key("dave"))
        .args([
            "--output",
            "json",
            "break",
            "open",
            "pg",
            "--reason",
            "db down",
            "--ticket",
            "INC-5",
            "--duration",
            "10m",
        ])
        .assert()
        .success();
    let id = stdout_json(&a)["id"].as_str().expect("id").to_owned();
    for n in ["alice", "bob"] {
        server
            .cli()
            .arg("--identity")
            .arg(key(n))
            .args(["approve", &id])
            .assert()
            .success();
    }
    let a = server
        .cli()
        .arg("--identity")
        .arg(key("dave"))
        .args(["break", "reveal", &id])
        .assert()
        .success();
    let access = stdout(&a).trim().to_owned();
    assert!(access.starts_with("postgresql://bg_"), "connection string");
    let c = sqlx::PgConnection::connect(&access)
        .await
        .expect("login with the grant");
    let _ = c.close().await;
    let a = server
        .cli()
        .args(["target", "grant", &id])
        .assert()
        .success();
    assert!(stdout(&a).contains("active"), "{}", stdout(&a));
    server
        .cli()
        .args(["break", "close", &id])
        .assert()
        .success();
    let a = server
        .cli()
        .args(["--output", "json", "target", "grant", &id])
        .assert()
        .success();
    let g = stdout_json(&a);
    assert_eq!(g["end_cause"], "closed", "{g}");
    assert!(g["ended_at"].is_string(), "{g}");
    assert!(
        sqlx::PgConnection::connect(&access).await.is_err(),
        "role dropped"
    );
}
