//! `breakglass drill` over a real port against a private PostgreSQL cluster: `seal --drill`
//! seals the drill credential, `drill run` passes end to end and writes its report in JSON,
//! Markdown and HTML, `--inject target-down` exits 11 with the reason, `drill list` and
//! `drill show` read the history, a live drill is a real break the custodians approve with
//! their own keys, and `check` counts the latest drill.

mod common;

use common::{Server, keygen, stderr, stdout, stdout_json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drills_through_the_cli() {
    let Some(pg) = breakglass_testkit::pgcluster::cluster("cli::drill::drills_through_the_cli")
    else {
        return;
    };
    let t = common::pg_target(pg, "d").await;
    let channels = t.webhook_channel().await;
    let targets = t.targets_file();
    let drill_url = t.drill_url.clone();
    let common::PgTarget {
        db,
        sfx,
        adm,
        drl,
        app,
        op,
        admin_pw,
        dir,
        keys,
        ..
    } = t;
    let server = Server::start_with(
        &dir.path().join("data"),
        &[
            "--targets",
            targets.to_str().expect("utf-8"),
            "--channels",
            channels.to_str().expect("utf-8"),
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
            "id: pg\ntarget:\n  kind: postgres\n  details:\n    host: {}\n    port: \"{}\"\n    dbname: {db}\n    admin_user: {adm}\n    grant_role: {app}\n    connection: pg\n    sslmode: disable\n    inventory: postgres, {adm}, {op}, {drl}\ncustodians:\n{custodians}quorum: 2\nmax_grant: 1h\nalert_channels: [ops]\ndrill:\n  every: 30d\n  max_time_to_access: 1m\n",
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
    server
        .cli()
        .args(["seal", "pg"])
        .write_stdin(format!("{admin_pw}\n"))
        .assert()
        .success();

    // Without a drill credential the drill is refused with the command that fixes it.
    let a = server.cli().args(["drill", "run", "pg"]).assert().code(3);
    assert!(stderr(&a).contains("seal pg --drill"), "{}", stderr(&a));
    let a = server
        .cli()
        .args(["seal", "pg", "--drill"])
        .write_stdin(format!("{drill_url}\n"))
        .assert()
        .success();
    assert!(stdout(&a).contains("drill identities"), "{}", stdout(&a));

    // An automated drill passes and writes its report.
    let reports = dir.path().join("reports");
    let a = server
        .cli()
        .args(["drill", "run", "pg", "--grant", "1s", "--report"])
        .arg(&reports)
        .assert()
        .success();
    let out = stdout(&a);
    assert!(out.contains("PASSED"), "{out}");
    assert!(out.contains("first login"), "{out}");
    assert!(!out.contains(&format!("drl-{sfx}")), "no secret printed");
    let a = server
        .cli()
        .args(["--output", "json", "drill", "list", "pg"])
        .assert()
        .success();
    let list = stdout_json(&a);
    let id = list["drills"][0]["id"].as_str().expect("id").to_owned();
    assert_eq!(list["drills"][0]["outcome"], "passed");
    for ext in ["json", "md", "html"] {
        let path = reports.join(format!("{id}.{ext}"));
        let text = std::fs::read_to_string(&path).expect("report file");
        // Markdown escapes `_` in untrusted text.
        let named = text.contains(&id) || text.contains(&id.replace('_', "\\_"));
        assert!(named, "{ext} report names the drill");
    }
    let html = std::fs::read_to_string(reports.join(format!("{id}.html"))).expect("html");
    assert!(html.contains("<svg") && html.contains("id=\"timeline\""));
    let a = server
        .cli()
        .args(["drill", "show", &id, "--format", "md"])
        .assert()
        .success();
    assert!(stdout(&a).contains("PASSED"), "{}", stdout(&a));

    // The live posture counts the drill: no `drill.*` finding.
    let a = server.cli().args(["--output", "json", "check"]).assert();
    let verdicts = stdout_json(&a);
    let text = verdicts.to_string();
    assert!(!text.contains("drill.never"), "{text}");

    // An injected target outage fails the drill (exit 11) and says why.
    let a = server
        .cli()
        .args([
            "drill",
            "run",
            "pg",
            "--grant",
            "1s",
            "--inject",
            "target-down",
        ])
        .assert()
        .code(11);
    let out = format!("{}{}", stdout(&a), stderr(&a));
    assert!(out.contains("target is down"), "{out}");
    let a = server
        .cli()
        .args(["drill", "run", "pg", "--inject", "disk-full"])
        .assert()
        .code(3);
    assert!(stderr(&a).contains("unknown injection"), "{}", stderr(&a));

    // A live drill: a real break flagged as a drill, approved by the custodians' own keys.
    server.add_requester(&keys, "dave", &keygen(&keys, "dave").1);
    let key = |n: &str| keys.join(format!("{n}.key"));
    let a = server
        .cli()
        .arg("--identity")
        .arg(key("dave"))
        .args([
            "--output",
            "json",
            "drill",
            "run",
            "pg",
            "--live",
            "--grant",
            "2s",
            "--no-wait",
        ])
        .assert()
        .success();
    let live = stdout_json(&a)["id"].as_str().expect("id").to_owned();
    let mut break_id = None;
    for _ in 0..100 {
        let a = server
            .cli()
            .args(["--output", "json", "drill", "show", &live])
            .assert()
            .success();
        if let Some(b) = stdout_json(&a)["break"].as_str() {
            break_id = Some(b.to_owned());
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let break_id = break_id.expect("the live drill opened a break");
    for n in ["alice", "bob"] {
        server
            .cli()
            .arg("--identity")
            .arg(key(n))
            .args(["approve", &break_id])
            .assert()
            .success();
    }
    let mut view = serde_json::Value::Null;
    for _ in 0..300 {
        let a = server
            .cli()
            .args(["--output", "json", "drill", "show", &live])
            .assert()
            .success();
        view = stdout_json(&a);
        if view["outcome"] != "running" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let checks = view["checks"].as_array().expect("checks");
    let granted = checks
        .iter()
        .find(|c| c["check"] == "granted")
        .expect("granted check");
    assert_eq!(granted["ok"], true, "{view:#}");
    assert!(view["time_to_access_ms"].as_i64().is_some(), "{view:#}");
    let steps: Vec<&str> = view["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["step"].as_str())
        .collect();
    assert_eq!(
        steps.iter().filter(|s| **s == "share accepted").count(),
        2,
        "{steps:?}"
    );
    assert!(steps.contains(&"rotated and re-sealed"), "{steps:?}");
    // The alert arrived, but nobody acknowledged it: a live drill measures humans, and says so.
    let alerted = checks
        .iter()
        .find(|c| c["check"] == "alerted")
        .expect("alerted");
    assert_eq!(alerted["ok"], true, "{view:#}");
    let acked = checks
        .iter()
        .find(|c| c["check"] == "acknowledged")
        .expect("acknowledged");
    assert_eq!(acked["ok"], false, "{view:#}");
    assert_eq!(view["outcome"], "failed");
}
