//! Tampering with an exported log: each kind of edit is detected, naming the right seq.

#![allow(clippy::unwrap_used)]

mod common;

use breakglass_audit::{
    Entry, Hash, Head, ParseError, VerifyError, verify_against_head, verify_lines,
};
use common::{CHAIN_JSONL, to_jsonl, vector_chain};
use proptest::prelude::*;

fn lines() -> Vec<String> {
    CHAIN_JSONL.lines().map(String::from).collect()
}

fn joined(lines: &[String]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

fn trusted_head() -> Head {
    vector_chain().last().unwrap().head()
}

#[test]
fn untouched_log_verifies_against_its_head() {
    let report = verify_lines(CHAIN_JSONL).unwrap();
    assert_eq!(verify_against_head(&report, &trusted_head()), Ok(()));
}

#[test]
fn edited_field_is_a_hash_mismatch() {
    let edits: &[(usize, &str, &str)] = &[
        (2, "\"actor\":\"system\"", "\"actor\":\"mallory\""),
        (
            1,
            "\"kind\":\"share.accepted\"",
            "\"kind\":\"share.rejected\"",
        ),
        (0, "\"procedure\":\"prod-db-root\"", "\"procedure\":null"),
        (4, "\"break\":null", "\"break\":\"brk_02\""),
        (1, "\"b\":-1", "\"b\":1"),
        (3, "\"zero\":0", "\"zero\":0,\"extra\":0"),
        (3, "\"time_ms\":1795910459999", "\"time_ms\":1795910459998"),
    ];
    for &(index, from, to) in edits {
        let mut l = lines();
        assert!(l[index].contains(from), "{from}");
        l[index] = l[index].replacen(from, to, 1);
        // Keep `time` consistent with an edited `time_ms`, as a careful forger would.
        let mut e: Entry = match Entry::from_json_line(&l[index]) {
            Ok(e) => e,
            Err(ParseError::Invalid { field: "time", .. }) => {
                let mut v: serde_json::Value = serde_json::from_str(&l[index]).unwrap();
                let ms = v["time_ms"].as_i64().unwrap();
                v["time"] = breakglass_audit::format_rfc3339_ms(ms).unwrap().into();
                serde_json::from_value(v).unwrap()
            }
            Err(other) => panic!("{other}"),
        };
        l[index] = e.to_json_line();
        let seq = index as u64 + 1;
        assert_eq!(
            verify_lines(&joined(&l)),
            Err(VerifyError::HashMismatch { seq }),
            "{from} -> {to}"
        );

        // A forger who also recomputes the hash breaks the link to the next entry instead,
        // or, for the last entry, only the comparison with a trusted head catches it.
        e.hash = e.compute_hash().unwrap();
        l[index] = e.to_json_line();
        let result = verify_lines(&joined(&l));
        if index + 1 < l.len() {
            assert_eq!(result, Err(VerifyError::BrokenLink { seq: seq + 1 }));
        } else {
            let report = result.unwrap();
            assert_eq!(
                verify_against_head(&report, &trusted_head()),
                Err(VerifyError::HeadMismatch { seq })
            );
        }
    }
}

#[test]
fn deleted_middle_entry_is_a_gap() {
    let mut l = lines();
    l.remove(2);
    assert_eq!(
        verify_lines(&joined(&l)),
        Err(VerifyError::SequenceGap {
            expected: 3,
            found: 4
        })
    );
}

#[test]
fn deleted_and_renumbered_entry_is_a_broken_link() {
    let mut chain = vector_chain();
    chain.remove(2);
    for (i, e) in chain.iter_mut().enumerate() {
        e.seq = i as u64 + 1;
    }
    // Renumbering changes the content, so either the hash or the link must fail at seq 3.
    let err = verify_lines(&to_jsonl(&chain)).unwrap_err();
    assert_eq!(err, VerifyError::BrokenLink { seq: 3 });
}

#[test]
fn swapped_entries_are_a_gap() {
    let mut l = lines();
    l.swap(1, 2);
    assert_eq!(
        verify_lines(&joined(&l)),
        Err(VerifyError::SequenceGap {
            expected: 2,
            found: 3
        })
    );
}

#[test]
fn duplicated_entry_is_a_gap() {
    let mut l = lines();
    let copy = l[1].clone();
    l.insert(2, copy);
    assert_eq!(
        verify_lines(&joined(&l)),
        Err(VerifyError::SequenceGap {
            expected: 3,
            found: 2
        })
    );
}

#[test]
fn truncated_tail_needs_a_trusted_head() {
    let mut l = lines();
    l.truncate(3);
    // On its own a truncated log is a valid, shorter log…
    let report = verify_lines(&joined(&l)).unwrap();
    assert_eq!(report.entries, 3);
    // …and the trusted head shows what is missing.
    assert_eq!(
        verify_against_head(&report, &trusted_head()),
        Err(VerifyError::Truncated {
            expected_seq: 5,
            found_seq: 3
        })
    );
    let empty = verify_lines("").unwrap();
    assert_eq!(
        verify_against_head(&empty, &trusted_head()),
        Err(VerifyError::Truncated {
            expected_seq: 5,
            found_seq: 0
        })
    );
}

#[test]
fn rebuilt_log_needs_a_trusted_head() {
    let mut drafts = common::vector_drafts();
    drafts[0].actor = "mallory".into();
    let mut rebuilt: Vec<Entry> = Vec::new();
    for d in drafts {
        let head = rebuilt.last().map(Entry::head);
        rebuilt.push(breakglass_audit::append(head.as_ref(), d).unwrap());
    }
    let report = verify_lines(&to_jsonl(&rebuilt)).unwrap();
    assert_eq!(
        verify_against_head(&report, &trusted_head()),
        Err(VerifyError::HeadMismatch { seq: 5 })
    );
}

/// Applies one byte edit to the export and checks it is caught or changes nothing.
fn check_byte_edit(line: usize, pos: usize, byte: u8) -> Result<(), TestCaseError> {
    let original = lines();
    let mut edited = original.clone();
    let mut bytes = edited[line].clone().into_bytes();
    let pos = pos % bytes.len();
    if bytes[pos] == byte {
        return Ok(());
    }
    bytes[pos] = byte;
    let Ok(text) = String::from_utf8(bytes) else {
        return Ok(()); // Not text: a reader cannot even get as far as the parser.
    };
    let splits_line = text.contains('\n') || text.contains('\r');
    edited[line] = text;
    if splits_line {
        // Every line break in the export is between entries, so the fragments cannot parse.
        prop_assert!(verify_lines(&joined(&edited)).is_err());
        return Ok(());
    }
    let result = verify_lines(&joined(&edited));
    match Entry::from_json_line(&edited[line]) {
        Err(_) => {
            let is_parse_error_on_this_line = matches!(
                result,
                Err(VerifyError::Parse { line: l, .. }) if l == line + 1
            );
            prop_assert!(is_parse_error_on_this_line, "{result:?}");
        }
        Ok(entry) => {
            let unchanged = Entry::from_json_line(&original[line]).unwrap();
            if entry == unchanged {
                // Same entry in a different spelling (e.g. insignificant whitespace).
                prop_assert!(result.is_ok());
            } else {
                let seq = line as u64 + 1;
                let caught = match result {
                    Err(VerifyError::HashMismatch { seq: s })
                    | Err(VerifyError::BrokenLink { seq: s }) => s == seq,
                    Err(VerifyError::SequenceGap { expected, .. }) => expected == seq,
                    // Every edit must be caught at the entry edited, never later or not at all.
                    Err(_) | Ok(_) => false,
                };
                prop_assert!(
                    caught,
                    "line {} byte {pos} -> {byte:#04x}: {result:?}",
                    line + 1
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_byte_edits_are_detected(line in 0usize..5, pos in any::<usize>(), byte in any::<u8>()) {
        check_byte_edit(line, pos, byte)?;
    }
}

#[test]
fn every_single_bit_flip_is_detected() {
    for (line, text) in lines().iter().enumerate() {
        for pos in 0..text.len() {
            for bit in [0x01u8, 0x20] {
                let byte = text.as_bytes()[pos] ^ bit;
                check_byte_edit(line, pos, byte).unwrap();
            }
        }
    }
}

#[test]
fn stored_hash_edit_is_detected_at_the_entry() {
    let mut chain = vector_chain();
    chain[1].hash = Hash([0x55; 32]);
    assert_eq!(
        verify_lines(&to_jsonl(&chain)),
        Err(VerifyError::HashMismatch { seq: 2 })
    );
}
