//! The tamper suite of issue 3: at least 10 000 random tamperings of the local store's rows —
//! byte edits in any column of entries and checkpoints, deleted rows, swapped rows, tail
//! truncations (with the head row moved too), and forks rebuilt and re-signed with another
//! key — and every single one must be detected by reading the rows back, verifying the chain
//! and signatures against the trusted key, checking the head row, and comparing with the
//! sink's copy. Prints the count by kind.

#![allow(clippy::unwrap_used)] // Tests unwrap to fail loudly.

use std::collections::BTreeMap;
use std::str::FromStr;

use breakglass_audit::{
    AuditKey, Draft, Entry, Hash, Head, KEY_CREATED, SignedCheckpoint, SinkRecord, append,
    canonical_json, compare_with_sink, verify_against_head, verify_records,
};
use serde_json::json;

/// One `audit_log` row as the store keeps it: every column as text.
#[derive(Clone, Debug, PartialEq)]
struct EntryRow([String; 9]);

/// One `checkpoints` row.
#[derive(Clone, Debug, PartialEq)]
struct CheckpointRow([String; 5]);

#[derive(Clone, Debug)]
struct Store {
    entries: Vec<EntryRow>,
    checkpoints: Vec<CheckpointRow>,
    head: (String, String),
}

fn entry_row(e: &Entry) -> EntryRow {
    EntryRow([
        e.seq.to_string(),
        e.time_ms.to_string(),
        e.actor.clone(),
        e.kind.clone(),
        e.procedure.clone().unwrap_or_else(|| "\u{0}".into()),
        e.break_id.clone().unwrap_or_else(|| "\u{0}".into()),
        canonical_json(&e.payload).unwrap(),
        e.prev_hash.to_hex(),
        e.hash.to_hex(),
    ])
}

fn checkpoint_row(c: &SignedCheckpoint) -> CheckpointRow {
    CheckpointRow([
        c.checkpoint.seq.to_string(),
        c.checkpoint.key_id.clone(),
        c.checkpoint.head.to_hex(),
        c.checkpoint.time_ms.to_string(),
        hex::encode(c.signature),
    ])
}

fn opt(s: &str) -> Option<String> {
    (s != "\u{0}").then(|| s.to_owned())
}

/// Reads rows back the way the store does; `Err` is a row the store refuses to read.
fn read(store: &Store) -> Result<(Vec<SinkRecord>, Head), String> {
    let mut entries = Vec::new();
    for EntryRow(c) in &store.entries {
        entries.push(Entry {
            seq: c[0].parse().map_err(|_| "seq")?,
            time_ms: c[1].parse().map_err(|_| "time")?,
            actor: c[2].clone(),
            kind: c[3].clone(),
            procedure: opt(&c[4]),
            break_id: opt(&c[5]),
            payload: serde_json::from_str(&c[6]).map_err(|_| "payload")?,
            prev_hash: Hash::from_str(&c[7]).map_err(|_| "prev_hash")?,
            hash: Hash::from_str(&c[8]).map_err(|_| "hash")?,
        });
    }
    // The store reads entries ordered by seq.
    entries.sort_by_key(|e| e.seq);
    let mut records: Vec<SinkRecord> = entries.into_iter().map(SinkRecord::Entry).collect();
    for CheckpointRow(c) in &store.checkpoints {
        records.push(SinkRecord::Checkpoint(SignedCheckpoint {
            checkpoint: breakglass_audit::Checkpoint {
                seq: c[0].parse().map_err(|_| "cp seq")?,
                key_id: c[1].clone(),
                head: Hash::from_str(&c[2]).map_err(|_| "cp head")?,
                time_ms: c[3].parse().map_err(|_| "cp time")?,
            },
            signature: hex::decode(&c[4])
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or("cp signature")?,
        }));
    }
    let head = Head {
        seq: store.head.0.parse().map_err(|_| "head seq")?,
        hash: Hash::from_str(&store.head.1).map_err(|_| "head hash")?,
    };
    Ok((records, head))
}

/// Full verification: readable, chain + signatures against the trusted key, head row, sink.
fn detected(store: &Store, trusted: &AuditKey, sink: &[SinkRecord]) -> bool {
    let Ok((records, head)) = read(store) else {
        return true;
    };
    let Ok(report) = verify_records(&records, Some(&trusted.public())) else {
        return true;
    };
    let chain = breakglass_audit::VerifyReport {
        entries: report.entries,
        head: report.head,
    };
    if verify_against_head(&chain, &head).is_err() {
        return true;
    }
    !compare_with_sink(&records, sink).is_empty()
}

/// Builds a log of `n` entries with a checkpoint every `every` entries, signed by `key`.
fn build(key: &AuditKey, n: u64, every: u64, salt: &str) -> (Vec<Entry>, Vec<SignedCheckpoint>) {
    let mut entries: Vec<Entry> = Vec::new();
    let mut checkpoints = Vec::new();
    for i in 1..=n {
        let draft = if i == 1 {
            Draft {
                time_ms: 1_800_000_000_000,
                actor: "breakglass".into(),
                kind: KEY_CREATED.into(),
                procedure: None,
                break_id: None,
                payload: json!({"key_id": key.key_id(), "public_key": key.public().to_string()}),
            }
        } else {
            Draft {
                time_ms: 1_800_000_000_000 + i as i64 * 37,
                actor: ["alice", "bob", "carol", "admin"][(i % 4) as usize].into(),
                kind: [
                    "break.requested",
                    "share.accepted",
                    "break.granted",
                    "break.expired",
                ][(i % 4) as usize]
                    .into(),
                procedure: (i % 3 != 0).then(|| format!("proc-{}", i % 5)),
                break_id: (i % 2 == 0).then(|| format!("brk_{i:016x}")),
                payload: json!({"n": i, "reason": format!("{salt} reason {i} ☕"), "nested": {"b": [1, 2, i], "a": null}}),
            }
        };
        let e = append(entries.last().map(|e: &Entry| e.head()).as_ref(), draft).unwrap();
        if i % every == 0 {
            checkpoints.push(key.sign_checkpoint(e.seq, e.hash, e.time_ms + 1));
        }
        entries.push(e);
    }
    (entries, checkpoints)
}

fn store_of(entries: &[Entry], checkpoints: &[SignedCheckpoint]) -> Store {
    let last = entries.last().unwrap();
    Store {
        entries: entries.iter().map(entry_row).collect(),
        checkpoints: checkpoints.iter().map(checkpoint_row).collect(),
        head: (last.seq.to_string(), last.hash.to_hex()),
    }
}

/// A small deterministic generator (xorshift) so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn edit_byte(rng: &mut Rng, text: &str) -> String {
    let mut bytes = text.as_bytes().to_vec();
    if bytes.is_empty() {
        return "x".into();
    }
    let i = rng.below(bytes.len());
    let old = bytes[i];
    let mut new = old;
    while new == old {
        new = b' ' + (rng.next() % 95) as u8;
    }
    bytes[i] = new;
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn ten_thousand_tamperings_are_all_detected() {
    let key = AuditKey::from_seed([3; 32]);
    let attacker = AuditKey::from_seed([4; 32]);
    let (entries, checkpoints) = build(&key, 120, 20, "real");
    let pristine = store_of(&entries, &checkpoints);
    let (sink, _) = read(&pristine).unwrap();
    assert!(
        !detected(&pristine, &key, &sink),
        "the untouched store must verify"
    );

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut counts: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    const N: u32 = 10_000;
    for i in 0..N {
        let mut s = pristine.clone();
        let kind = match i % 8 {
            0 | 1 => {
                let r = rng.below(s.entries.len());
                let c = rng.below(9);
                s.entries[r].0[c] = edit_byte(&mut rng, &s.entries[r].0[c]);
                "byte edit in an entry"
            }
            2 => {
                let r = rng.below(s.checkpoints.len());
                let c = rng.below(5);
                s.checkpoints[r].0[c] = edit_byte(&mut rng, &s.checkpoints[r].0[c]);
                "byte edit in a checkpoint"
            }
            3 => {
                if rng.below(4) == 0 {
                    s.checkpoints.remove(rng.below(s.checkpoints.len()));
                    "deleted checkpoint row"
                } else {
                    s.entries.remove(rng.below(s.entries.len()));
                    "deleted entry row"
                }
            }
            4 => {
                let a = rng.below(s.entries.len());
                let mut b = rng.below(s.entries.len());
                while b == a {
                    b = rng.below(s.entries.len());
                }
                // Swap everything but the primary key, as an UPDATE would.
                let (ra, rb) = (s.entries[a].clone(), s.entries[b].clone());
                s.entries[a].0[1..].clone_from_slice(&rb.0[1..]);
                s.entries[b].0[1..].clone_from_slice(&ra.0[1..]);
                "swapped rows"
            }
            5 => {
                let k = 1 + rng.below(30);
                s.entries.truncate(s.entries.len() - k);
                let last = s.entries.last().unwrap().0.clone();
                let new_head: u64 = last[0].parse().unwrap();
                s.checkpoints
                    .retain(|c| c.0[0].parse::<u64>().unwrap() <= new_head);
                s.head = (last[0].clone(), last[8].clone());
                "tail truncation (head row moved)"
            }
            6 => {
                // A fork from entry k, rebuilt with recomputed hashes and re-signed by another key.
                let k = 2 + rng.below(entries.len() - 2);
                let (forged, _) = build(&attacker, entries.len() as u64, 20, "forged");
                let mut mixed: Vec<Entry> = entries[..k - 1].to_vec();
                for e in &forged[k - 1..] {
                    let d = Draft {
                        time_ms: e.time_ms,
                        actor: e.actor.clone(),
                        kind: e.kind.clone(),
                        procedure: e.procedure.clone(),
                        break_id: e.break_id.clone(),
                        payload: e.payload.clone(),
                    };
                    let next = append(Some(&mixed.last().unwrap().head()), d).unwrap();
                    mixed.push(next);
                }
                let cps: Vec<SignedCheckpoint> = mixed
                    .iter()
                    .filter(|e| e.seq % 20 == 0)
                    .map(|e| attacker.sign_checkpoint(e.seq, e.hash, e.time_ms + 1))
                    .collect();
                s = store_of(&mixed, &cps);
                "fork re-signed with another key"
            }
            _ => {
                // The whole log rebuilt from scratch under another key (key_created replaced).
                let (forged, cps) = build(&attacker, 100 + rng.below(40) as u64, 20, "rebuilt");
                s = store_of(&forged, &cps);
                "whole log rebuilt and re-signed"
            }
        };
        let hit = detected(&s, &key, &sink);
        let c = counts.entry(kind).or_default();
        c.0 += 1;
        if hit {
            c.1 += 1;
        } else {
            panic!("tampering #{i} ({kind}) was NOT detected");
        }
    }
    println!("tamperings by kind (tried / detected):");
    for (kind, (tried, caught)) in &counts {
        println!("  {kind:<36} {tried:>5} / {caught:>5}");
    }
    let total: u32 = counts.values().map(|c| c.0).sum();
    assert_eq!(total, N);
    println!("  {:<36} {N:>5} / {N:>5}", "total");
}
