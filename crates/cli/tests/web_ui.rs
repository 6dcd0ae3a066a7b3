//! The web UI in a real headless Chromium, driving the real `breakglass serve` (a child
//! process) with procedures on a private PostgreSQL cluster:
//!
//! - sign-in with an API token, and with a key challenge the test answers with the
//!   custodian's age identity;
//! - the dashboard lists the seeded procedures with the verdicts `breakglass check` reports;
//! - a break opened from the CLI appears on the open dashboard, and its page's timeline fills
//!   in as custodians approve from the CLI, without a reload;
//! - the procedure page draws its workflow graph and time-to-access trend; a drill report
//!   renders its chart; the audit page shows the verification result; the dashboard fits a
//!   phone's width;
//! - a forged form (wrong CSRF token) is refused; an auditor sees every page and no form that
//!   changes state, and a state-changing request they make anyway is refused.
//!
//! Screenshots of the main pages are kept in `target/ui-screenshots/`.

mod common;

use std::time::Duration;

use breakglass_custody::{Identity, decrypt_with};
use breakglass_testkit::browser::Browser;
use common::{Server, keygen, stdout, stdout_json};
use fantoccini::Locator;
use serde_json::Value;

const TEST: &str = "cli::web_ui::web_ui_in_a_real_browser";
const WAIT: Duration = Duration::from_secs(20);

async fn goto(b: &Browser, url: &str) {
    b.client()
        .goto(url)
        .await
        .unwrap_or_else(|e| panic!("opening {url}: {e}"));
}

async fn text_of(b: &Browser, css: &str) -> String {
    b.client()
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no element {css}: {e}"))
        .text()
        .await
        .unwrap_or_else(|e| panic!("text of {css}: {e}"))
}

async fn count(b: &Browser, css: &str) -> usize {
    b.client()
        .find_all(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("finding {css}: {e}"))
        .len()
}

async fn js(b: &Browser, script: &str) -> Value {
    b.client()
        .execute(script, vec![])
        .await
        .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
}

/// Posts a form from the page (same origin, the session cookie) and returns the status.
async fn post_from_page(b: &Browser, path: &str, body: &str) -> (i64, String) {
    let r = b
        .client()
        .execute_async(
            "const [path, body, done] = arguments;
             fetch(path, {method: 'POST', headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body, redirect: 'manual'})
               .then(async r => done([r.status, await r.text()]))
               .catch(e => done([0, String(e)]));",
            vec![Value::from(path), Value::from(body)],
        )
        .await
        .unwrap_or_else(|e| panic!("fetch {path}: {e}"));
    (
        r[0].as_i64().unwrap_or(-1),
        r[1].as_str().unwrap_or("").to_owned(),
    )
}

async fn sign_in_with_token(b: &Browser, base: &str, token: &str) {
    goto(b, &format!("{base}/")).await;
    let url = b.client().current_url().await.expect("url");
    assert!(
        url.path() == "/signin",
        "an anonymous visit lands on the sign-in page, not {url}"
    );
    let field = b
        .client()
        .find(Locator::Css("#token"))
        .await
        .expect("token field");
    field.send_keys(token).await.expect("typing the token");
    b.client()
        .find(Locator::Css("#signin-token"))
        .await
        .expect("button")
        .click()
        .await
        .expect("submit");
    b.wait_for_text("#whoami", "", WAIT).await;
}

async fn sign_out(b: &Browser) {
    b.client()
        .find(Locator::Css("form.signout button"))
        .await
        .expect("sign-out button")
        .click()
        .await
        .expect("sign out");
    b.wait_for_text("h1", "Sign in", WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_ui_in_a_real_browser() {
    let Some(pg) = breakglass_testkit::pgcluster::cluster(TEST) else {
        return;
    };
    let Some(b) = breakglass_testkit::browser::browser(TEST).await else {
        return;
    };
    let t = common::pg_target(pg, "u").await;
    let channels = t.webhook_channel().await;
    let targets = t.targets_file();
    let drill_url = t.drill_url.clone();
    let common::PgTarget {
        db,
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
            "--gateway",
            "127.0.0.1:0",
        ],
    );
    let base = server.url.clone();
    let admin_token = std::fs::read_to_string(dir.path().join("data").join("admin.token"))
        .expect("admin token")
        .trim()
        .to_owned();

    // People: three custodians, a requester signing in with a key, an auditor with a token.
    let mut key_of = std::collections::HashMap::new();
    for name in ["alice", "bob", "carol", "dave", "erin"] {
        let (path, public) = keygen(&keys, name);
        key_of.insert(name, (path, public));
    }
    server.add_requester(&keys, "dave", &key_of["dave"].1);
    let a = server
        .cli()
        .args(["actor", "add", "audra", "--role", "auditor", "--api-token"])
        .assert()
        .success();
    let auditor_token = stdout(&a)
        .lines()
        .find_map(|l| l.strip_prefix("API token (shown once): "))
        .expect("auditor token printed")
        .trim()
        .to_owned();

    // Procedures: a PostgreSQL one with a passing automated drill, a sealed secret one, and a
    // 2-of-2 whose custodian lost their key (broken).
    let custodians = |names: &[&str]| {
        names
            .iter()
            .map(|n| format!("  - name: {n}\n    key: {}\n", key_of[n].1))
            .collect::<String>()
    };
    let files = [
        (
            "pg",
            format!(
                "id: pg\ndescription: Production PostgreSQL superuser path\ntarget:\n  kind: postgres\n  details:\n    host: {}\n    port: \"{}\"\n    dbname: {db}\n    admin_user: {adm}\n    grant_role: {app}\n    connection: pg\n    sslmode: disable\n    inventory: postgres, {adm}, {op}, {drl}\ncustodians:\n{}quorum: 2\nmax_grant: 1h\nalert_channels: [ops]\ndrill:\n  every: 30d\n  max_time_to_access: 1m\n",
                pg.host,
                pg.port,
                custodians(&["alice", "bob", "carol"])
            ),
        ),
        (
            "vault-root",
            format!(
                "id: vault-root\ndescription: Vault root token\ntarget:\n  kind: secret\ncustodians:\n{}quorum: 2\nmax_grant: 15m\nalert_channels: [ops]\n",
                custodians(&["alice", "bob", "carol"])
            ),
        ),
        (
            "okta-admin",
            format!(
                "id: okta-admin\ndescription: Okta super admin recovery codes\ntarget:\n  kind: secret\ncustodians:\n{}quorum: 2\nmax_grant: 15m\nalert_channels: [ops]\n",
                custodians(&["erin", "alice"])
            ),
        ),
    ];
    for (id, text) in &files {
        let path = keys.join(format!("{id}.yaml"));
        std::fs::write(&path, text).expect("procedure file");
        server
            .cli()
            .args(["procedure", "apply"])
            .arg(&path)
            .assert()
            .success();
    }
    server
        .cli()
        .args(["seal", "pg"])
        .write_stdin(format!("{admin_pw}\n"))
        .assert()
        .success();
    server
        .cli()
        .args(["seal", "pg", "--drill"])
        .write_stdin(format!("{drill_url}\n"))
        .assert()
        .success();
    for id in ["vault-root", "okta-admin"] {
        server
            .cli()
            .args(["seal", id])
            .write_stdin(format!("secret-of-{id}\n"))
            .assert()
            .success();
    }
    server
        .cli()
        .args(["custodian", "lost", "erin", "--reason", "laptop stolen"])
        .assert()
        .success();
    let a = server
        .cli()
        .args(["drill", "run", "pg", "--grant", "1s"])
        .assert()
        .success();
    assert!(stdout(&a).contains("PASSED"), "{}", stdout(&a));

    // The verdicts the dashboard must show: what `breakglass check` says.
    let a = server.cli().args(["--output", "json", "check"]).assert();
    let check = stdout_json(&a);
    let verdicts: Vec<(String, String)> = check["procedures"]
        .as_array()
        .expect("procedures")
        .iter()
        .map(|p| {
            (
                p["procedure"].as_str().expect("id").to_owned(),
                p["verdict"].as_str().expect("verdict").to_owned(),
            )
        })
        .collect();
    assert_eq!(verdicts.len(), 3, "{check}");
    assert!(
        verdicts.contains(&("okta-admin".into(), "broken".into())),
        "{verdicts:?}"
    );

    // Sign in with the admin's API token; the dashboard lists every procedure's verdict.
    sign_in_with_token(&b, &base, &admin_token).await;
    assert!(text_of(&b, "#whoami").await.contains("admin"));
    for (id, verdict) in &verdicts {
        let card = b
            .client()
            .find(Locator::Css(&format!("#proc-{id}")))
            .await
            .unwrap_or_else(|e| panic!("{id} is on the dashboard: {e}"));
        assert_eq!(
            card.attr("data-verdict").await.expect("attr").as_deref(),
            Some(verdict.as_str()),
            "{id}"
        );
    }
    // Worst first: the broken procedure leads.
    let first = b
        .client()
        .find(Locator::Css("#procedures article"))
        .await
        .expect("a card");
    assert_eq!(
        first.attr("id").await.expect("id").as_deref(),
        Some("proc-okta-admin")
    );
    assert!(
        text_of(&b, "#proc-okta-admin")
            .await
            .contains("erin · lost")
    );
    assert!(
        text_of(&b, "#proc-pg")
            .await
            .to_lowercase()
            .contains("passed")
    );
    // Filtering needs no script: a GET form.
    goto(&b, &format!("{base}/?verdict=broken")).await;
    assert_eq!(count(&b, "#procedures article").await, 1);
    goto(&b, &format!("{base}/")).await;
    b.screenshot("dashboard").await;

    // A forged form is refused: right session, wrong CSRF token.
    let (status, body) =
        post_from_page(&b, "/procedures/vault-root/breaks", "csrf=forged&reason=x").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("CSRF"), "{body}");

    // A break opened from the CLI appears on the open dashboard without a reload.
    b.wait_for_text("#open-breaks", "No break is open", WAIT)
        .await;
    js(&b, "window.__bgMarker = 'dashboard'; return true;").await;
    let a = server
        .cli()
        .arg("--identity")
        .arg(&key_of["dave"].0)
        .args([
            "--output",
            "json",
            "break",
            "open",
            "vault-root",
            "--reason",
            "database on fire",
            "--ticket",
            "INC-7",
            "--duration",
            "2m",
        ])
        .assert()
        .success();
    let id = stdout_json(&a)["id"].as_str().expect("id").to_owned();
    b.wait_for_text("#open-breaks", &id, WAIT).await;
    assert_eq!(
        js(&b, "return window.__bgMarker || null;").await,
        Value::from("dashboard"),
        "the dashboard updated in place"
    );
    b.screenshot("dashboard-live").await;

    // Its page: the timeline fills in as custodians approve, without a reload.
    b.client()
        .find(Locator::Css(&format!("#open-{id} a")))
        .await
        .expect("link to the break")
        .click()
        .await
        .expect("open the break page");
    b.wait_for_text("#timeline", "requested", WAIT).await;
    js(&b, "window.__bgMarker = 'break'; return true;").await;
    // Let the stream connect before the first approval.
    tokio::time::sleep(Duration::from_millis(600)).await;
    for custodian in ["alice", "bob"] {
        server
            .cli()
            .arg("--identity")
            .arg(&key_of[custodian].0)
            .args(["approve", &id])
            .assert()
            .success();
    }
    b.wait_for_text("#timeline", "share accepted", WAIT).await;
    b.wait_for_text("#timeline", "unsealed and granted", WAIT)
        .await;
    b.wait_for_text("#state", "granted", WAIT).await;
    b.wait_for_text("#countdown", "left", WAIT).await;
    assert_eq!(
        js(&b, "return window.__bgMarker || null;").await,
        Value::from("break"),
        "the timeline filled in without a reload"
    );
    b.wait_for_text("#timeline", "alert delivered", WAIT).await;
    b.screenshot("break-live").await;

    // The procedure page: workflow graph, trend, histories, audit entries.
    goto(&b, &format!("{base}/procedures/pg")).await;
    assert_eq!(count(&b, "#workflow #node-grant").await, 1);
    assert_eq!(count(&b, "#workflow .custodian").await, 3);
    assert_eq!(count(&b, "#trend circle.point.pass").await, 1);
    assert!(count(&b, "#drills tbody tr").await >= 1);
    assert!(count(&b, "#audit tbody tr").await >= 1);
    b.screenshot("procedure").await;

    // A drill started from the procedure page runs live, then renders its report and chart
    // in place.
    b.client()
        .find(Locator::Css("#run-drill button"))
        .await
        .expect("the drill form")
        .click()
        .await
        .expect("run a drill");
    b.wait_for_text("#outcome", "running", WAIT).await;
    js(&b, "window.__bgMarker = 'drill'; return true;").await;
    b.wait_for_text("#outcome", "passed", WAIT).await;
    b.wait_for_text("#timeline", "rotated and re-sealed", WAIT)
        .await;
    assert_eq!(
        js(&b, "return window.__bgMarker || null;").await,
        Value::from("drill"),
        "the drill page filled in without a reload"
    );
    assert_eq!(
        count(&b, "svg#timeline").await,
        1,
        "the chart is on the page"
    );
    assert!(
        count(&b, "svg#timeline .marker").await >= 5,
        "one marker per step"
    );
    assert!(count(&b, "#checks li.pass").await >= 5);
    assert_eq!(count(&b, "#checks li.fail").await, 0);
    b.screenshot("drill-report").await;
    // The CLI's drill, opened from the history, renders its report too.
    goto(&b, &format!("{base}/procedures/pg")).await;
    assert_eq!(count(&b, "#drills tbody tr").await, 2);
    assert_eq!(count(&b, "#trend circle.point.pass").await, 2);
    b.client()
        .find(Locator::Css("#drills tbody tr:last-child a"))
        .await
        .expect("the older drill")
        .click()
        .await
        .expect("open it");
    b.wait_for_text("#outcome", "passed", WAIT).await;
    assert_eq!(count(&b, "svg#timeline").await, 1);

    // The audit page verifies the chain.
    goto(&b, &format!("{base}/audit")).await;
    b.wait_for_text("#verify-result", "intact", WAIT).await;
    assert!(count(&b, "#entries tbody tr").await >= 20);
    b.screenshot("audit").await;
    goto(&b, &format!("{base}/inventory")).await;
    b.wait_for_text("#inv-pg", "pg", WAIT).await;

    // A phone: the dashboard fits its width.
    b.set_size(390, 844).await;
    goto(&b, &format!("{base}/")).await;
    assert_eq!(
        js(
            &b,
            "return document.documentElement.scrollWidth <= window.innerWidth + 1;"
        )
        .await,
        Value::Bool(true),
        "no sideways scrolling on a phone"
    );
    b.screenshot("dashboard-phone").await;
    b.set_size(1280, 900).await;
    sign_out(&b).await;

    // dave signs in with his key: the challenge is an age file only his identity opens.
    goto(&b, &format!("{base}/signin")).await;
    let name = b
        .client()
        .find(Locator::Css("#challenge-form input[name=actor]"))
        .await
        .expect("name field");
    name.send_keys("dave").await.expect("type");
    b.client()
        .find(Locator::Css("#challenge-form button"))
        .await
        .expect("button")
        .click()
        .await
        .expect("ask for a challenge");
    b.wait_for_text("#challenge-text", "BEGIN AGE ENCRYPTED FILE", WAIT)
        .await;
    let age_file = text_of(&b, "#challenge-text").await;
    let identity = Identity::parse(
        std::fs::read_to_string(&key_of["dave"].0)
            .expect("dave's identity")
            .trim(),
    )
    .expect("identity");
    let answer = decrypt_with(&identity, format!("{}\n", age_file.trim()).as_bytes())
        .expect("dave's key opens the challenge");
    b.client()
        .find(Locator::Css("#answer-form textarea"))
        .await
        .expect("answer field")
        .send_keys(std::str::from_utf8(&answer).expect("utf-8"))
        .await
        .expect("type the answer");
    b.client()
        .find(Locator::Css("#answer-form button"))
        .await
        .expect("button")
        .click()
        .await
        .expect("answer");
    b.wait_for_text("#whoami", "dave", WAIT).await;
    assert_eq!(
        count(&b, "a[href='/audit']").await,
        0,
        "a requester has no audit tab"
    );
    sign_out(&b).await;

    // The auditor sees every page and no form that changes state.
    sign_in_with_token(&b, &base, &auditor_token).await;
    assert!(text_of(&b, "#whoami").await.contains("auditor"));
    for path in [
        "/".to_owned(),
        "/procedures/pg".to_owned(),
        "/procedures/vault-root".to_owned(),
        format!("/breaks/{id}"),
        "/audit".to_owned(),
        "/inventory".to_owned(),
    ] {
        goto(&b, &format!("{base}{path}")).await;
        assert!(count(&b, "h1").await >= 1, "{path} renders");
        assert_eq!(
            count(&b, "form[data-changes-state]").await,
            0,
            "an auditor is shown no state-changing form on {path}"
        );
        assert_eq!(
            count(&b, "form[method=post]:not(.signout)").await,
            0,
            "no other POST form on {path}"
        );
    }
    // Made by hand with the auditor's own CSRF token, the request is refused by role.
    let csrf = b
        .client()
        .find(Locator::Css("form.signout input[name=csrf]"))
        .await
        .expect("csrf field")
        .attr("value")
        .await
        .expect("value")
        .expect("a token");
    let (status, body) =
        post_from_page(&b, &format!("/breaks/{id}/close"), &format!("csrf={csrf}")).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("may not"), "{body}");
    let shown = server
        .cli()
        .args(["--output", "json", "break", "show", &id])
        .assert()
        .success();
    assert_eq!(stdout_json(&shown)["state"], "granted", "nothing changed");
    b.screenshot("auditor-break").await;

    // A live gateway session, watched by the auditor: its page appends each statement as it
    // is recorded, without a reload, and shows its end with the recording checked.
    let file = keys.join("pgw.yaml");
    std::fs::write(
        &file,
        format!(
            "id: pgw\ndescription: PostgreSQL through the gateway\ntarget:\n  kind: postgres\n  details:\n    host: {}\n    port: \"{}\"\n    dbname: {db}\n    admin_user: {adm}\n    grant_role: {app}\n    connection: pg\n    sslmode: disable\n    access: proxy\ncustodians:\n{}quorum: 2\nmax_grant: 1h\n",
            pg.host,
            pg.port,
            custodians(&["alice", "bob", "carol"])
        ),
    )
    .expect("procedure file");
    server.apply_sealed(&file, "pgw", &admin_pw);
    let as_actor = |name: &str| {
        let mut c = server.cli();
        c.arg("--identity").arg(&key_of[name].0);
        c
    };
    let a = as_actor("dave")
        .args([
            "--output", "json", "break", "open", "pgw", "--reason", "watch me", "--ticket", "INC-9",
        ])
        .assert()
        .success();
    let gw_break = stdout_json(&a)["id"].as_str().expect("id").to_owned();
    for name in ["alice", "bob"] {
        as_actor(name)
            .args(["approve", &gw_break])
            .assert()
            .success();
    }
    let a = as_actor("dave")
        .args(["break", "reveal", &gw_break])
        .assert()
        .success();
    let url = stdout(&a).trim().to_owned();
    let mut conn = common::gateway_session(&url).await;
    let first: String = sqlx::query_scalar("SELECT 'before the page'")
        .fetch_one(&mut conn)
        .await
        .expect("a statement");
    assert_eq!(first, "before the page");
    let session = format!("{gw_break}-s1");
    // The statement reaches the store within about 100 ms.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let a = server
            .cli()
            .args([
                "--output",
                "json",
                "session",
                "show",
                &gw_break,
                "--session",
                &session,
            ])
            .assert()
            .success();
        if stdout(&a).contains("before the page") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not recorded: {}",
            stdout(&a)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    goto(&b, &format!("{base}/breaks/{gw_break}/sessions/{session}")).await;
    b.wait_for_text("#statement-rows", "before the page", WAIT)
        .await;
    assert!(
        text_of(&b, "#session-state")
            .await
            .contains("open (live: statements appear as they are recorded)")
    );
    assert_eq!(count(&b, "#live[sse-connect]").await, 1, "the page is live");
    let rows_before = count(&b, "#statement-rows tr").await;
    let watched: String = sqlx::query_scalar("SELECT 'while watched'")
        .fetch_one(&mut conn)
        .await
        .expect("a statement while watched");
    assert_eq!(watched, "while watched");
    b.wait_for_text("#statement-rows", "while watched", WAIT)
        .await;
    assert_eq!(
        count(&b, "#statement-rows tr").await,
        rows_before + 1,
        "the new statement is appended once"
    );
    // A live page keeps its newest rows (`?keep=`, default 5,000) for as long as the session
    // runs: the oldest go as new ones come, and the page says how many went.
    goto(
        &b,
        &format!("{base}/breaks/{gw_break}/sessions/{session}?keep=3"),
    )
    .await;
    b.wait_for_text("#statement-rows", "while watched", WAIT)
        .await;
    for i in 1..=6 {
        let _: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT 'tail {i}'")))
            .fetch_one(&mut conn)
            .await
            .expect("a statement while watched");
    }
    b.wait_for_text("#statement-rows", "tail 6", WAIT).await;
    let deadline = std::time::Instant::now() + WAIT;
    while count(&b, "#statement-rows tr").await != 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "rows kept: {}",
            text_of(&b, "#statement-rows").await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let kept = text_of(&b, "#statement-rows").await;
    assert!(
        kept.contains("tail 4") && kept.contains("tail 5") && !kept.contains("tail 3"),
        "{kept}"
    );
    let note = text_of(&b, "#trimmed").await;
    assert!(
        note.contains(
            "The newest 3 statements are shown; 5 earlier ones are on the session's pages"
        ),
        "{note}"
    );
    {
        use sqlx::Connection;
        conn.close().await.expect("close");
    }
    b.wait_for_text(
        "#session-state",
        "recording matches its audit entry (8 statements)",
        WAIT,
    )
    .await;
    assert!(
        !text_of(&b, "#session-state").await.contains("live"),
        "the ended session's page no longer says live"
    );
    b.screenshot("live-session").await;
    assert_eq!(
        count(&b, "#terminate").await,
        0,
        "no terminate form for an ended session"
    );

    // A second session is terminated from its page: the client is cut with the admin's name
    // and reason, the page shows the session's end, and the form goes with it. Opened while
    // the dashboard is shown, it appears there without a reload.
    goto(&b, &format!("{base}/")).await;
    b.wait_for_text("#open-sessions", "No gateway session is open", WAIT)
        .await;
    let a = as_actor("dave")
        .args(["break", "token", &gw_break])
        .assert()
        .success();
    let url2 = stdout(&a).trim().to_owned();
    let mut conn2 = common::gateway_session(&url2).await;
    let _: String = sqlx::query_scalar("SELECT 'second session'")
        .fetch_one(&mut conn2)
        .await
        .expect("a statement");
    let session2 = format!("{gw_break}-s2");
    b.wait_for_text("#open-sessions", &session2, WAIT).await;
    assert_eq!(
        count(
            &b,
            &format!("#open-sessions a[href='/breaks/{gw_break}/sessions/{session2}']")
        )
        .await,
        1
    );
    goto(&b, &format!("{base}/breaks/{gw_break}/sessions/{session2}")).await;
    b.wait_for_text("#session-state", "open", WAIT).await;
    assert_eq!(
        count(&b, "form[data-changes-state]").await,
        0,
        "an auditor watches an open session but is shown no terminate form"
    );
    sign_out(&b).await;
    sign_in_with_token(&b, &base, &admin_token).await;
    goto(&b, &format!("{base}/breaks/{gw_break}/sessions/{session2}")).await;
    b.wait_for_text("#session-state", "open", WAIT).await;
    // Terminated while a statement runs, so the client is reading when it is cut.
    let running = common::Running::start(conn2, "SELECT pg_sleep(30)");
    b.client()
        .find(Locator::Css("#terminate-session input[name=reason]"))
        .await
        .expect("the terminate form's reason")
        .send_keys("watched it misbehave")
        .await
        .expect("typing the reason");
    b.client()
        .find(Locator::Css("#terminate-session button"))
        .await
        .expect("the terminate button")
        .click()
        .await
        .expect("terminate");
    b.wait_for_text(
        "#session-state",
        "recording matches its audit entry (2 statements)",
        WAIT,
    )
    .await;
    assert_eq!(
        count(&b, "#terminate").await,
        0,
        "the form went with the session"
    );
    let (cut, _) = running.cut().await;
    assert!(
        cut.contains("terminated by admin: watched it misbehave"),
        "{cut}"
    );
    b.close().await;
}
