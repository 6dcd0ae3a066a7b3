//! Committed test vectors: the chain in `vectors/chain.jsonl` must be reproduced byte for byte,
//! and its hashes must match an independent, spec-only implementation of the encoding.
//!
//! To regenerate after a deliberate format change (which also needs a new `HASH_DOMAIN`):
//! `BREAKGLASS_REGENERATE_VECTORS=1 cargo test -p breakglass-audit --test vectors`.

#![allow(clippy::unwrap_used)]

mod common;

use breakglass_audit::{Entry, Hash, canonical_json, verify_lines};
use common::{CHAIN_JSONL, to_jsonl, vector_chain};
use sha2::{Digest, Sha256};

#[test]
fn vectors_are_reproduced_exactly() {
    let generated = to_jsonl(&vector_chain());
    if std::env::var_os("BREAKGLASS_REGENERATE_VECTORS").is_some() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/chain.jsonl");
        std::fs::write(path, &generated).unwrap();
        return;
    }
    assert_eq!(
        generated, CHAIN_JSONL,
        "the encoding changed; if on purpose, bump HASH_DOMAIN and regenerate the vectors"
    );
}

#[test]
fn vectors_verify() {
    let report = verify_lines(CHAIN_JSONL).unwrap();
    assert_eq!(report.entries, 5);
    let last = CHAIN_JSONL.lines().last().unwrap();
    assert_eq!(
        report.head,
        Some(Entry::from_json_line(last).unwrap().head())
    );
}

/// The hash preimage built from the prose in docs/audit-log-format.md, not from the crate.
fn spec_preimage(e: &Entry) -> Vec<u8> {
    fn bytes(out: &mut Vec<u8>, b: &[u8]) {
        out.extend_from_slice(&(b.len() as u64).to_be_bytes());
        out.extend_from_slice(b);
    }
    fn opt(out: &mut Vec<u8>, s: &Option<String>) {
        match s {
            None => out.push(0),
            Some(s) => {
                out.push(1);
                bytes(out, s.as_bytes());
            }
        }
    }
    let mut out = Vec::new();
    bytes(&mut out, b"breakglass-audit-v1");
    out.extend_from_slice(&e.seq.to_be_bytes());
    out.extend_from_slice(&e.time_ms.to_be_bytes());
    bytes(&mut out, e.actor.as_bytes());
    bytes(&mut out, e.kind.as_bytes());
    opt(&mut out, &e.procedure);
    opt(&mut out, &e.break_id);
    bytes(&mut out, canonical_json(&e.payload).unwrap().as_bytes());
    out.extend_from_slice(&e.prev_hash.0);
    out
}

#[test]
fn every_committed_hash_matches_the_spec() {
    let mut prev = Hash::ZERO;
    for (i, line) in CHAIN_JSONL.lines().enumerate() {
        let e = Entry::from_json_line(line).unwrap();
        assert_eq!(e.seq, i as u64 + 1);
        assert_eq!(e.prev_hash, prev);
        let spec = Hash(Sha256::digest(spec_preimage(&e)).into());
        assert_eq!(spec, e.hash, "entry {}", e.seq);
        assert_eq!(e.compute_hash().unwrap(), e.hash, "entry {}", e.seq);
        // The payload text in the line is already canonical.
        let payload_text = line.split_once(",\"payload\":").unwrap().1;
        assert!(payload_text.starts_with(&canonical_json(&e.payload).unwrap()));
        prev = e.hash;
    }
}

/// The worked example in docs/audit-log-format.md is this entry's preimage; keep them in sync.
#[test]
fn worked_example_matches_docs() {
    let e = Entry::from_json_line(CHAIN_JSONL.lines().next().unwrap()).unwrap();
    let preimage = hex::encode(spec_preimage(&e));
    let docs = include_str!("../../../docs/audit-log-format.md");
    let doc_hex: String = docs
        .split("<!-- preimage -->")
        .nth(1)
        .unwrap_or_default()
        .split("<!-- /preimage -->")
        .next()
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with("```") && !l.trim().is_empty())
        .flat_map(|l| l.split_whitespace().skip(1).take(1))
        .collect();
    println!("{}", e.to_json_line());
    println!("{preimage}");
    assert_eq!(doc_hex, preimage, "update the worked example in the docs");
    assert!(docs.contains(&e.hash.to_hex()));
}
