//! Verification throughput. Ignored by default; run in release:
//! `cargo test --release -p breakglass-audit --test perf -- --ignored --nocapture`.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::time::Instant;

use breakglass_audit::{Draft, Entry, Verifier, append, verify_lines};
use serde_json::json;

fn chain(n: u64) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::with_capacity(n as usize);
    for i in 0..n {
        let head = out.last().map(Entry::head);
        let draft = Draft {
            time_ms: 1_795_910_341_123 + i as i64,
            actor: "alice".into(),
            kind: "share.accepted".into(),
            procedure: Some("prod-db-root".into()),
            break_id: Some("brk_01".into()),
            payload: json!({"share_index": i % 5, "custodian": "bob"}),
        };
        out.push(append(head.as_ref(), draft).unwrap());
    }
    out
}

#[test]
#[ignore = "benchmark; run in release"]
fn verify_throughput() {
    let n = 1_000_000;
    let entries = chain(n);

    let start = Instant::now();
    let mut v = Verifier::new();
    for e in &entries {
        v.push(e).unwrap();
    }
    let report = v.finish();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(report.entries, n);
    println!("Verifier::push: {:.0} entries/s", n as f64 / secs);

    let text: String = entries.iter().map(|e| e.to_json_line() + "\n").collect();
    let start = Instant::now();
    let report = verify_lines(&text).unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(report.entries, n);
    println!(
        "verify_lines: {:.0} entries/s ({:.0} MB/s)",
        n as f64 / secs,
        text.len() as f64 / secs / 1e6
    );
}
