//! A restart across a deadline with the real binary: the grant's deadline passes while the
//! server is down (killed with SIGKILL, no graceful shutdown), and the start-up sweep expires
//! it before the first request is served.

mod common;

use std::time::{Duration, Instant};

use common::{open_break, show_break, stdout, world};

#[test]
fn deadline_passed_while_down_is_expired_at_start_up() {
    let mut w = world("root-db", "15m");
    let id = open_break(&w, "2s");
    w.as_actor("alice")
        .args(["approve", &id])
        .assert()
        .success();
    let granted_at = Instant::now();
    let a = w.as_actor("bob").args(["approve", &id]).assert().success();
    assert!(
        stdout(&a).starts_with("approved: 2/2 approvals\n"),
        "{}",
        stdout(&a)
    );
    let b = show_break(&w.server, &id);
    assert_eq!(b["state"], "granted", "{b}");
    assert!(b["deadline"].is_string(), "{b}");
    assert!(
        granted_at.elapsed() < Duration::from_millis(1500),
        "too slow: the deadline may pass before the kill, and then the start-up sweep is not what is tested"
    );

    w.restart_after(Duration::from_secs(3));

    // The first request after the restart already sees it expired: the start-up sweep, not
    // the worker, ended it.
    let b = show_break(&w.server, &id);
    assert_eq!(b["state"], "expired", "{b}");
    assert!(b["ended_at"].is_string(), "{b}");

    // The grant is gone: no reveal after the deadline.
    w.as_actor("dave")
        .args(["break", "reveal", &id])
        .assert()
        .code(6)
        .stdout("");

    let a = w.server.cli().args(["audit", "verify"]).assert().success();
    assert!(
        stdout(&a).starts_with("audit chain intact: "),
        "{}",
        stdout(&a)
    );
    let a = w
        .server
        .cli()
        .args(["--output", "json", "audit", "list", "--limit", "1000"])
        .assert()
        .success();
    let kinds: Vec<String> = common::stdout_json(&a)["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["break"] == id.as_str())
        .map(|e| e["kind"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        kinds,
        [
            "break.requested",
            "share.accepted",
            "share.accepted",
            "break.granted",
            "break.expired"
        ]
    );
}

#[test]
fn state_survives_a_kill() {
    let mut w = world("root-db", "15m");
    let id = open_break(&w, "1m");
    w.as_actor("alice")
        .args(["approve", &id])
        .assert()
        .success();
    assert_eq!(
        show_break(&w.server, &id)["approvals"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    w.restart_after(Duration::ZERO);
    // The procedure, the actors, the seal and the break are in the store; the admin token file
    // still works (no second bootstrap). Shares are held in memory only, so alice's approval
    // was reset by the start-up sweep.
    let b = show_break(&w.server, &id);
    assert_eq!(b["state"], "requested", "{b}");
    assert_eq!(b["approvals"].as_array().map(Vec::len), Some(0), "{b}");
    w.server
        .cli()
        .args(["procedure", "apply"])
        .arg(w.keys.join("root-db.yaml"))
        .assert()
        .success()
        .stdout("root-db: unchanged (version 1)\n");
    // Custodians can still approve, and the quorum is reached after the restart.
    w.as_actor("alice")
        .args(["approve", &id])
        .assert()
        .success();
    w.as_actor("bob").args(["approve", &id]).assert().success();
    w.as_actor("dave")
        .args(["break", "reveal", &id])
        .assert()
        .success()
        .stdout(format!("{}\n", w.secret));
    w.server.cli().args(["audit", "verify"]).assert().success();
}
