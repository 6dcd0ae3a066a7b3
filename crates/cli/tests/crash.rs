//! Crash safety with the real binary: the server is killed with SIGKILL at pseudo-random
//! points while a client thread runs break cycles (open, two approvals, reveal) through the
//! CLI, and restarted on the same data dir. After every restart: the audit chain verifies, no
//! acknowledged step (a CLI command that exited 0) is missing from the audit log, every grant
//! whose deadline passed is ended within a second of its deadline (or of the restart, when the
//! deadline passed while the server was down), and approvals held only in memory were reset.
//!
//! The kill delays come from a fixed-seed xorshift, so every run follows the same schedule
//! (where exactly each kill lands still depends on timing); `CRASH_SEED` and `CRASH_ROUNDS`
//! override the seed and the number of rounds (more rounds: a longer log, a longer soak).
#![allow(clippy::unwrap_used)] // Tests unwrap to fail loudly.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use breakglass_engine::{Clock, SystemClock};

use common::{Server, World, breakglass, keygen, show_break, stdout, stdout_json, world};
use serde_json::Value;

/// Default number of kill/restart rounds.
const ROUNDS: usize = 6;
/// Default seed of the delay generator.
const SEED: u64 = 0x5eed_b4ea_c91a_55e5;
/// Grant duration of every break.
const GRANT: &str = "2s";
/// How late an expiry may be: within a second of the deadline (or of the restart).
const EXPIRY_SLACK_MS: i64 = 1000;

/// A small deterministic generator (xorshift64).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A value in `lo..=hi`.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// One step of a break cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Open,
    Approve(&'static str),
    Reveal,
}

/// A step the CLI acknowledged (exited 0).
#[derive(Debug, Clone)]
struct Ack {
    break_id: String,
    step: Step,
}

/// A CLI command that did not exit 0.
#[derive(Debug, Clone)]
struct Failure {
    what: String,
    code: Option<i32>,
    stderr: String,
    /// The stop flag was already set when the command returned (the kill may have hit it).
    after_stop: bool,
}

/// What the cycle thread saw in one round.
#[derive(Debug, Default)]
struct CycleReport {
    acks: Vec<Ack>,
    failures: Vec<Failure>,
}

/// What the cycle thread needs to run CLI commands against one server.
#[derive(Clone)]
struct Target {
    url: String,
    data_dir: PathBuf,
    keys: PathBuf,
    procedure: String,
    reveal: Reveal,
}

/// What a reveal must print.
#[derive(Clone, Debug)]
enum Reveal {
    /// The sealed secret itself (a secret target).
    Secret(String),
    /// A login URL for the break's own ephemeral role (a PostgreSQL target).
    PostgresLogin,
}

impl Target {
    fn as_actor(&self, name: &str) -> assert_cmd::Command {
        let mut cmd = breakglass();
        cmd.arg("--server")
            .arg(&self.url)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--identity")
            .arg(self.keys.join(format!("{name}.key")));
        cmd
    }
}

/// Now, in ms since the epoch, from the clock the server reads.
fn now_ms() -> i64 {
    SystemClock.now().millis()
}

fn rfc3339_ms(v: &Value) -> Option<i64> {
    let s = v.as_str()?;
    let t = humantime::parse_rfc3339(s).unwrap_or_else(|e| panic!("timestamp {s:?}: {e}"));
    Some(i64::try_from(t.duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap())
}

/// Runs break cycles until `stop` is set or a command fails; each cycle approves with the
/// given pair of custodians.
fn run_cycles(t: &Target, stop: &AtomicBool, pairs: &[[&'static str; 2]]) -> CycleReport {
    let mut report = CycleReport::default();
    // Runs one command; `None` (and a recorded failure) when it did not exit 0.
    let run = |what: String, mut cmd: assert_cmd::Command, report: &mut CycleReport| {
        let out = cmd.output().expect("running the CLI");
        if out.status.success() {
            Some(String::from_utf8(out.stdout).expect("stdout is UTF-8"))
        } else {
            report.failures.push(Failure {
                what,
                code: out.status.code(),
                stderr: String::from_utf8_lossy(&out.stderr).trim_end().to_owned(),
                after_stop: stop.load(Ordering::SeqCst),
            });
            None
        }
    };
    for pair in pairs.iter().cycle() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let mut open = t.as_actor("dave");
        open.args([
            "--output",
            "json",
            "break",
            "open",
            &t.procedure,
            "--reason",
            "crash test",
            "--ticket",
            "T-9",
            "--duration",
            GRANT,
        ]);
        let Some(out) = run("break open".into(), open, &mut report) else {
            break;
        };
        let b: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(b["state"], "requested", "{b}");
        let id = b["id"].as_str().unwrap().to_owned();
        report.acks.push(Ack {
            break_id: id.clone(),
            step: Step::Open,
        });
        for custodian in pair {
            if stop.load(Ordering::SeqCst) {
                return report;
            }
            let mut approve = t.as_actor(custodian);
            approve.args(["approve", &id]);
            if run(format!("approve {id} as {custodian}"), approve, &mut report).is_none() {
                return report;
            }
            report.acks.push(Ack {
                break_id: id.clone(),
                step: Step::Approve(custodian),
            });
        }
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let mut reveal = t.as_actor("dave");
        reveal.args(["break", "reveal", &id]);
        let Some(out) = run(format!("reveal {id}"), reveal, &mut report) else {
            break;
        };
        match &t.reveal {
            Reveal::Secret(secret) => {
                assert_eq!(out, format!("{secret}\n"), "revealed secret of {id}");
            }
            Reveal::PostgresLogin => {
                let role = breakglass_targets::grant_name(&id);
                assert!(
                    out.starts_with("postgres") && out.contains(&role),
                    "a login of {role} for {id}, got {} bytes",
                    out.len()
                );
                // The admin credential is rotated after each grant; the next break waits for
                // it, as a person would (a break opened meanwhile is moved to the new seal and
                // its custodians asked to approve again, which this loop does not do).
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                while std::time::Instant::now() < deadline && !stop.load(Ordering::SeqCst) {
                    let mut show = breakglass();
                    show.args(["--server", &t.url, "--data-dir"])
                        .arg(&t.data_dir)
                        .args(["--output", "json", "procedure", "show", &t.procedure]);
                    match show.output() {
                        Ok(o) if o.status.success() => {
                            let p: Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
                            if p["taint"].is_null() {
                                break;
                            }
                        }
                        _ => break,
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        report.acks.push(Ack {
            break_id: id,
            step: Step::Reveal,
        });
    }
    report
}

/// One audit entry of the export, reduced to what the checks need.
struct Entry {
    seq: u64,
    actor: String,
    kind: String,
    break_id: Option<String>,
}

fn export(server: &Server) -> Vec<Entry> {
    let a = server.cli().args(["audit", "export"]).assert().success();
    stdout(&a)
        .lines()
        .filter_map(|line| {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("export line is not JSON ({e}): {line}"));
            // Signed checkpoints follow the entries; they have no `kind`.
            let kind = v["kind"].as_str()?.to_owned();
            Some(Entry {
                seq: v["seq"].as_u64().unwrap(),
                actor: v["actor"].as_str().unwrap_or_default().to_owned(),
                kind,
                break_id: v["break"].as_str().map(str::to_owned),
            })
        })
        .collect()
}

/// How many breaks `break list` shows (the newest).
const LIST_LIMIT: usize = 100;

/// Every break: `break list --output json` shows the newest 100, the older ones (named by
/// the audit log) are shown one by one.
fn all_breaks(server: &Server) -> Vec<Value> {
    let a = server
        .cli()
        .args(["--output", "json", "break", "list"])
        .assert()
        .success();
    let mut breaks = stdout_json(&a)["breaks"].as_array().unwrap().clone();
    if breaks.len() >= LIST_LIMIT {
        let listed: BTreeSet<String> = breaks
            .iter()
            .map(|b| b["id"].as_str().unwrap().to_owned())
            .collect();
        let older: BTreeSet<String> = export(server)
            .into_iter()
            .filter(|e| e.kind == "break.requested")
            .filter_map(|e| e.break_id)
            .filter(|id| !listed.contains(id))
            .collect();
        breaks.extend(older.iter().map(|id| show_break(server, id)));
    }
    breaks
}

/// Server life: when a server was killed and when the next one was spawned (ms since epoch).
#[derive(Debug, Clone, Copy)]
struct Downtime {
    killed_ms: i64,
    spawned_ms: i64,
}

/// The latest a grant with deadline `deadline_ms` may end: a running server ends it within a
/// second of its deadline; one whose deadline passed while the server was down (or so shortly
/// before the kill that the worker could not reach it) is ended within a second of the restart.
fn latest_end(deadline_ms: i64, downtimes: &[Downtime]) -> i64 {
    for d in downtimes {
        if deadline_ms > d.killed_ms - EXPIRY_SLACK_MS && deadline_ms <= d.spawned_ms {
            return deadline_ms.max(d.spawned_ms) + EXPIRY_SLACK_MS;
        }
    }
    deadline_ms + EXPIRY_SLACK_MS
}

/// Checks the grants of every break in `breaks`: a deadline passed (more than the slack ago,
/// or before the latest restart) means the break is ended, by expiry within the slack.
fn check_grants(breaks: &[Value], listed_ms: i64, downtimes: &[Downtime], round: &str) -> usize {
    let last_spawn = downtimes.last().map_or(i64::MIN, |d| d.spawned_ms);
    let mut ended = 0;
    for b in breaks {
        let Some(deadline) = rfc3339_ms(&b["deadline"]) else {
            continue;
        };
        let state = b["state"].as_str().unwrap();
        let must_be_ended = deadline < last_spawn || deadline + EXPIRY_SLACK_MS < listed_ms;
        if state == "granted" {
            assert!(
                !must_be_ended,
                "{round}: PRODUCT BUG: grant past its deadline still granted (deadline {}, listed {} ms after it, latest restart {} ms after it):\n{b}",
                b["deadline"],
                listed_ms - deadline,
                last_spawn - deadline
            );
            continue;
        }
        assert!(
            state == "expired" || state == "closed",
            "{round}: a granted break ended as {state}:\n{b}"
        );
        let ended_at = b["ended_at_ms"].as_i64().unwrap();
        if state == "expired" {
            assert!(
                ended_at >= deadline,
                "{round}: expired before its deadline:\n{b}"
            );
            let latest = latest_end(deadline, downtimes);
            assert!(
                ended_at <= latest,
                "{round}: PRODUCT BUG: expired {} ms after its deadline, {} ms later than allowed (downtimes {downtimes:?}):\n{b}",
                ended_at - deadline,
                ended_at - latest
            );
        }
        ended += 1;
    }
    ended
}

/// The checks after a restart; returns the number of audit entries and of approval resets.
fn check_after_restart(
    server: &Server,
    acks: &[Ack],
    round_acks: &[Ack],
    downtimes: &[Downtime],
    round: &str,
) -> (usize, usize) {
    // The first request after the restart: the start-up sweep has already run.
    let listed_ms = now_ms();
    let breaks = all_breaks(server);

    // (1) The chain verifies.
    let a = server.cli().args(["audit", "verify"]).assert();
    if !a.get_output().status.success() {
        // Not retried: a second run only says whether the first failure was transient.
        let again = server.cli().args(["audit", "verify"]).assert();
        panic!(
            "{round}: PRODUCT BUG: audit verify failed after a kill (exit {:?}):\n{}{}\nimmediately verified again (exit {:?}):\n{}{}",
            a.get_output().status.code(),
            stdout(&a),
            common::stderr(&a),
            again.get_output().status.code(),
            stdout(&again),
            common::stderr(&again),
        );
    }
    assert!(
        stdout(&a).starts_with("audit chain intact: "),
        "{}",
        stdout(&a)
    );

    let entries = export(server);
    check_grants(&breaks, listed_ms, downtimes, round);

    // (2) No acknowledged step is missing from the log.
    let has = |kind: &str, id: &str, actor: Option<&str>| {
        entries.iter().any(|e| {
            e.kind == kind
                && e.break_id.as_deref() == Some(id)
                && actor.is_none_or(|who| e.actor == who)
        })
    };
    for ack in acks {
        let (kind, actor) = match ack.step {
            Step::Open => ("break.requested", Some("dave")),
            Step::Approve(c) => ("share.accepted", Some(c)),
            Step::Reveal => ("grant.revealed", Some("dave")),
        };
        assert!(
            has(kind, &ack.break_id, actor),
            "{round}: PRODUCT BUG: acknowledged {:?} of {} has no `{kind}` entry in the audit log",
            ack.step,
            ack.break_id
        );
    }
    let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
    let expected: Vec<u64> = (1..=entries.len() as u64).collect();
    assert_eq!(seqs, expected, "{round}: export sequence numbers");

    // (4) Shares were held in memory: nothing still collecting keeps approvals, and each
    // break that had accepted shares before the kill shows them reset after the last one.
    let by_id: BTreeMap<&str, &Value> = breaks
        .iter()
        .map(|b| (b["id"].as_str().unwrap(), b))
        .collect();
    for (id, b) in &by_id {
        if b["state"] != "requested" {
            continue;
        }
        assert_eq!(
            b["approvals"].as_array().map(Vec::len),
            Some(0),
            "{round}: PRODUCT BUG: approvals survived a restart although shares are held in memory:\n{b}"
        );
        let last_accepted = entries
            .iter()
            .filter(|e| e.kind == "share.accepted" && e.break_id.as_deref() == Some(id))
            .map(|e| e.seq)
            .max();
        if let Some(accepted) = last_accepted {
            let reset = entries.iter().any(|e| {
                e.kind == "break.approvals_reset"
                    && e.break_id.as_deref() == Some(id)
                    && e.seq > accepted
            });
            assert!(
                reset,
                "{round}: PRODUCT BUG: {id} had an accepted share (seq {accepted}) and no approvals reset after it:\n{b}"
            );
        }
    }
    // The break that was mid-approval at the kill (an acknowledged approval, no grant): reset
    // or complete.
    let mid: BTreeSet<&str> = round_acks
        .iter()
        .filter(|a| matches!(a.step, Step::Approve(_)))
        .map(|a| a.break_id.as_str())
        .collect();
    for id in mid {
        let b = by_id
            .get(id)
            .unwrap_or_else(|| panic!("{round}: {id} is not listed"));
        let complete = b["granted_at"].is_string();
        assert!(
            complete || has("break.approvals_reset", id, Some("breakglass")),
            "{round}: PRODUCT BUG: {id} was mid-approval at the kill and is neither reset nor complete:\n{b}"
        );
    }
    let resets = entries
        .iter()
        .filter(|e| e.kind == "break.approvals_reset")
        .count();
    (entries.len(), resets)
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn kill_9_during_break_cycles_loses_no_acknowledged_event() {
    let seed: u64 = env_or("CRASH_SEED", SEED);
    let rounds: usize = env_or("CRASH_ROUNDS", ROUNDS);
    let mut w = world("root-db", "15m");
    let secret = w.secret.clone();
    let totals = crash_rounds(&mut w, Reveal::Secret(secret), rounds, seed, &|_| false);
    assert_eq!(
        totals.remedied, 0,
        "a secret target has no rotation to interrupt"
    );
}

/// Totals of a crash run.
struct CrashTotals {
    acknowledged: usize,
    breaks: Vec<Value>,
    granted: usize,
    /// Restarts after which the operator had to re-seal (a rotation cut by the kill).
    remedied: usize,
}

/// Runs `rounds` kill/restart rounds of break cycles against `w`, checking after every
/// restart and at the end; prints the counts. After each restart `remedy` plays the operator
/// (re-sealing a procedure whose rotation the kill interrupted) and says whether it had to.
fn crash_rounds(
    w: &mut World,
    reveal: Reveal,
    rounds: usize,
    seed: u64,
    remedy: &dyn Fn(&Server) -> bool,
) -> CrashTotals {
    let mut remedied = 0;
    let mut rng = XorShift(seed | 1);
    let data_dir = w.server.data_dir.clone();
    let mut acks: Vec<Ack> = Vec::new();
    let mut downtimes: Vec<Downtime> = Vec::new();
    let pairs = [["alice", "bob"], ["bob", "carol"], ["carol", "alice"]];
    eprintln!("crash test: seed {seed:#x}, {rounds} rounds");

    for round in 1..=rounds {
        let label = format!("round {round}/{rounds} (seed {seed:#x})");
        let target = Target {
            url: w.server.url.clone(),
            data_dir: data_dir.clone(),
            keys: w.keys.clone(),
            procedure: w.procedure.clone(),
            reveal: reveal.clone(),
        };
        let first = rng.next() as usize % pairs.len();
        let order: Vec<[&'static str; 2]> = (0..pairs.len())
            .map(|i| pairs[(first + i) % pairs.len()])
            .collect();
        let delay = rng.between(50, 600);
        let stop = Arc::new(AtomicBool::new(false));
        let cycles = {
            let stop = stop.clone();
            std::thread::spawn(move || run_cycles(&target, &stop, &order))
        };
        std::thread::sleep(Duration::from_millis(delay));

        // SIGKILL while the thread is mid-flight; it finishes its current command (which
        // fails: the server is gone) and stops.
        stop.store(true, Ordering::SeqCst);
        let killed_ms = now_ms();
        w.server.kill_now();
        let report = cycles.join().expect("cycle thread");

        let spawned_ms = now_ms();
        w.server = Server::start_with(&data_dir, &w.server_args());
        downtimes.push(Downtime {
            killed_ms,
            spawned_ms,
        });

        let early: Vec<&Failure> = report.failures.iter().filter(|f| !f.after_stop).collect();
        assert!(
            early.is_empty(),
            "{label}: a command failed before the kill: {early:#?}"
        );
        acks.extend(report.acks.iter().cloned());
        let (entries, resets) =
            check_after_restart(&w.server, &acks, &report.acks, &downtimes, &label);
        if remedy(&w.server) {
            remedied += 1;
            eprintln!("{label}: the kill cut a rotation; the server flagged it; re-sealed");
        }

        let count = |f: fn(&Step) -> bool| report.acks.iter().filter(|a| f(&a.step)).count();
        let killed: Vec<String> = report
            .failures
            .iter()
            .map(|f| {
                let note = if f.code == Some(7) {
                    String::new()
                } else {
                    format!(" [unexpected code; stderr: {}]", f.stderr)
                };
                format!("{} -> exit {:?}{note}", f.what, f.code)
            })
            .collect();
        eprintln!(
            "{label}: killed after {delay} ms; acknowledged {} opens, {} approvals, {} reveals; cut: {}; {entries} audit entries ({resets} approval resets so far)",
            count(|s| *s == Step::Open),
            count(|s| matches!(s, Step::Approve(_))),
            count(|s| *s == Step::Reveal),
            if killed.is_empty() {
                "(between commands)".to_owned()
            } else {
                killed.join(", ")
            },
        );
    }

    // Every grant still running after the last restart ends within a second of its deadline,
    // by the expiry worker. The newest breaks (listed first) hold the latest deadlines.
    let a = w
        .server
        .cli()
        .args(["--output", "json", "break", "list"])
        .assert()
        .success();
    let last_deadline = stdout_json(&a)["breaks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| rfc3339_ms(&b["deadline"]))
        .max();
    if let Some(deadline) = last_deadline {
        let wait = deadline + EXPIRY_SLACK_MS + 100 - now_ms();
        if wait > 0 {
            std::thread::sleep(Duration::from_millis(wait as u64));
        }
    }
    let listed_ms = now_ms();
    let breaks = all_breaks(&w.server);
    let ended = check_grants(&breaks, listed_ms, &downtimes, "final");
    let granted = breaks.iter().filter(|b| b["deadline"].is_string()).count();
    assert_eq!(ended, granted, "every grant has ended");
    w.server.cli().args(["audit", "verify"]).assert().success();
    eprintln!(
        "crash test: {} acknowledged steps over {rounds} kills, {} breaks, {granted} grants, all ended, 0 acknowledged steps lost",
        acks.len(),
        breaks.len()
    );
    CrashTotals {
        acknowledged: acks.len(),
        breaks,
        granted,
        remedied,
    }
}

/// Default kill/restart rounds of the PostgreSQL run (`CRASH_PG_ROUNDS` overrides).
const PG_ROUNDS: usize = 8;

/// The same, with a PostgreSQL target on a private cluster: every grant is a real ephemeral
/// role; after the last round no role of any break remains on the server.
#[test]
fn kill_9_with_postgres_grants_leaves_no_role_behind() {
    let test = "cli::crash::kill_9_with_postgres_grants_leaves_no_role_behind";
    let Some(pg) = breakglass_testkit::pgcluster::cluster(test) else {
        return;
    };
    let seed: u64 = env_or("CRASH_SEED", SEED);
    let rounds: usize = env_or("CRASH_PG_ROUNDS", PG_ROUNDS);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let t = rt.block_on(common::pg_target(pg, "c"));
    let targets = t.targets_file();
    let common::PgTarget {
        db,
        sfx,
        adm,
        app,
        op,
        admin_pw,
        dir,
        keys,
        ..
    } = t;
    let data = dir.path().join("data");
    let sql = |text: String| rt.block_on(common::sql(pg, &db, text));
    let serve_args = vec!["--targets".to_owned(), targets.to_str().unwrap().to_owned()];
    let args: Vec<&str> = serve_args.iter().map(String::as_str).collect();
    let server = Server::start_with(&data, &args);
    let mut custodians = String::new();
    for name in ["alice", "bob", "carol"] {
        let (_, key) = keygen(&keys, name);
        custodians.push_str(&format!("  - name: {name}\n    key: {key}\n"));
    }
    let file = keys.join("pg.yaml");
    std::fs::write(
        &file,
        format!(
            "id: pg\ntarget:\n  kind: postgres\n  details:\n    host: {}\n    port: \"{}\"\n    dbname: {db}\n    admin_user: {adm}\n    grant_role: {app}\n    connection: pg\n    sslmode: disable\n    inventory: postgres, {adm}, {op}\ncustodians:\n{custodians}quorum: 2\nmax_grant: 15m\n",
            pg.host, pg.port
        ),
    )
    .unwrap();
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
    let mut w = World {
        server,
        keys,
        procedure: "pg".into(),
        secret: String::new(),
        serve_args,
        _dir: dir,
    };
    // The operator's remedy for a rotation cut by a kill, which the server flags at start-up
    // (it cannot know which credential the target kept): a new password on the target, sealed.
    let generation = std::cell::Cell::new(0u32);
    let remedy = |server: &Server| -> bool {
        let a = server
            .cli()
            .args(["--output", "json", "procedure", "show", "pg"])
            .assert()
            .success();
        let p = stdout_json(&a);
        let reason = p["taint"]["reason"].as_str().unwrap_or_default().to_owned();
        if !reason.contains("interrupted by a restart") {
            return false;
        }
        generation.set(generation.get() + 1);
        let pw = format!("reset-{}-{sfx}", generation.get());
        sql(format!("ALTER ROLE {adm} PASSWORD '{pw}'"));
        server
            .cli()
            .args(["seal", "pg"])
            .write_stdin(format!("{pw}\n"))
            .assert()
            .success();
        true
    };
    let totals = crash_rounds(&mut w, Reveal::PostgresLogin, rounds, seed, &remedy);
    assert!(totals.granted > 0, "some breaks reached a grant");

    // Roles still on PostgreSQL: a kill between creating a grant on the target and
    // committing it leaves a role of a break that is still requested. Nobody ever got its
    // password (the reveal was never committed), and it cannot log in after its deadline;
    // it is dropped when that break ends. Every other role is gone.
    let names: Vec<String> = totals
        .breaks
        .iter()
        .map(|b| breakglass_targets::grant_name(b["id"].as_str().unwrap()))
        .collect();
    let roles_left = |names: &Vec<String>| -> Vec<(String, bool)> {
        rt.block_on(async {
            let mut c = pg.connect(&db).await;
            let rows: Vec<(String, bool)> = sqlx::query_as(
                "SELECT rolname::text, coalesce(rolvaliduntil < now(), false) FROM pg_roles WHERE rolname = ANY($1)",
            )
            .bind(names)
            .fetch_all(&mut c)
            .await
            .unwrap();
            rows
        })
    };
    let left = roles_left(&names);
    for (role, expired) in &left {
        let b = totals
            .breaks
            .iter()
            .find(|b| breakglass_targets::grant_name(b["id"].as_str().unwrap()) == *role)
            .unwrap();
        assert_eq!(
            b["state"], "requested",
            "the role {role} of an ended break is still on PostgreSQL"
        );
        assert!(expired, "the leftover role {role} can still log in");
    }
    // Ending those breaks drops their leftovers.
    for b in &totals.breaks {
        if b["state"] == "requested" {
            w.server
                .cli()
                .args(["break", "close", b["id"].as_str().unwrap()])
                .assert()
                .success();
        }
    }
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while !roles_left(&names).is_empty() && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        roles_left(&names),
        vec![],
        "roles left after every break ended"
    );
    let left: Vec<String> = left.into_iter().map(|(r, _)| r).collect();
    eprintln!(
        "crash test (PostgreSQL): {} acknowledged steps, {} breaks, {} grants over {rounds} kills; 0 lost; {} leftover roles of uncommitted grants (expired, dropped when their break was closed), 0 after; {} rotations cut by a kill, each flagged at start-up and re-sealed",
        totals.acknowledged,
        totals.breaks.len(),
        totals.granted,
        left.len(),
        totals.remedied
    );
}
