//! Shared fixtures for the integration tests: the drafts behind the committed test vectors.

use breakglass_audit::{Draft, Entry, append};
use serde_json::json;

/// The committed test vectors, one entry per line.
pub(crate) const CHAIN_JSONL: &str = include_str!("../vectors/chain.jsonl");

/// The drafts the committed vectors were appended from, in order.
pub(crate) fn vector_drafts() -> Vec<Draft> {
    vec![
        Draft {
            time_ms: 1_795_910_341_123, // 2026-11-28T23:59:01.123Z
            actor: "alice".into(),
            kind: "break.requested".into(),
            procedure: Some("prod-db-root".into()),
            break_id: Some("brk_01".into()),
            payload: json!({"reason": "primary DB down", "ticket": "INC-4711", "duration_s": 3600}),
        },
        Draft {
            time_ms: 1_795_910_400_000,
            actor: "bob".into(),
            kind: "share.accepted".into(),
            procedure: Some("prod-db-root".into()),
            break_id: Some("brk_01".into()),
            payload: json!({
                "share_index": 2,
                "custodian": {"name": "Bøb Ünïcødé 日本 😀", "groups": ["oncall", "dba"], "verified": true},
                "Zeta": null,
                "alpha": {"z": {"b": -1, "a": [1, {"y": 2, "x": 1}]}}
            }),
        },
        Draft {
            time_ms: 1_795_910_460_500,
            actor: "system".into(),
            kind: "break.granted".into(),
            procedure: None,
            break_id: Some("brk_01".into()),
            payload: json!({
                "note": "tab\there \"quoted\" back\\slash new\nline bell\u{7} del\u{7f}",
                "grant": {"expires_ms": 1_795_914_060_500_i64, "targets": [{"kind": "postgres", "name": "prod"}]}
            }),
        },
        Draft {
            // The clock stepped back: recorded as given.
            time_ms: 1_795_910_459_999,
            actor: "carol".into(),
            kind: "secret.revealed".into(),
            procedure: Some("prod-db-root".into()),
            break_id: Some("brk_01".into()),
            payload: json!({
                "min": i64::MIN, "max": u64::MAX, "neg": -42, "zero": 0,
                "empty_obj": {}, "empty_arr": [], "empty_str": ""
            }),
        },
        Draft {
            time_ms: 1_795_910_999_000,
            actor: "system".into(),
            kind: "break.closed".into(),
            procedure: None,
            break_id: None,
            payload: json!({}),
        },
    ]
}

/// Appends the vector drafts into a chain.
pub(crate) fn vector_chain() -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    for draft in vector_drafts() {
        let head = out.last().map(Entry::head);
        out.push(append(head.as_ref(), draft).expect("vector drafts are valid"));
    }
    out
}

/// The chain as JSON Lines text, with a final newline.
pub(crate) fn to_jsonl(entries: &[Entry]) -> String {
    entries.iter().map(|e| e.to_json_line() + "\n").collect()
}
