//! Verifying a chain: sequence, links and hashes entry by entry, and the end against a trusted
//! head.

use crate::canonical::CanonicalError;
use crate::entry::{Entry, Head};
use crate::hash::Hash;
use crate::line::ParseError;

/// What a verification found wrong. Every variant names the first seq at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// An entry does not carry the next seq: entries were deleted, duplicated or reordered.
    #[error(
        "entry {found} found where entry {expected} was expected: entries are missing, duplicated or out of order"
    )]
    SequenceGap {
        /// The seq that should have come next.
        expected: u64,
        /// The seq that came instead.
        found: u64,
    },
    /// The entry's `prev_hash` is not the previous entry's hash: an earlier entry was
    /// replaced, or this one was moved.
    #[error("entry {seq} does not link to the entry before it")]
    BrokenLink {
        /// The entry whose `prev_hash` is wrong.
        seq: u64,
    },
    /// The entry's stored hash is not the hash of its content: the content was edited.
    #[error("entry {seq} does not match its hash: its content was changed")]
    HashMismatch {
        /// The entry whose content does not match.
        seq: u64,
    },
    /// The entry's payload has no canonical form, so it cannot have been appended.
    #[error("entry {seq} has an invalid payload: {source}")]
    InvalidPayload {
        /// The entry with the invalid payload.
        seq: u64,
        /// Why the payload has no canonical form.
        source: CanonicalError,
    },
    /// The log ends before the trusted head: entries were cut from the end.
    #[error("the log ends at entry {found_seq} but the trusted head is entry {expected_seq}")]
    Truncated {
        /// The trusted head's seq.
        expected_seq: u64,
        /// The seq the log ends at (0 for an empty log).
        found_seq: u64,
    },
    /// The entry at the trusted head's seq has a different hash: the log was rewritten.
    #[error("entry {seq} differs from the trusted head: the log was rewritten")]
    HeadMismatch {
        /// The trusted head's seq.
        seq: u64,
    },
    /// The log goes on past the trusted head, so the head's hash could not be compared.
    #[error(
        "the log ends at entry {found_seq}, past the trusted head at entry {expected_seq}; verify against the current head"
    )]
    Extended {
        /// The trusted head's seq.
        expected_seq: u64,
        /// The seq the log ends at.
        found_seq: u64,
    },
    /// A line of a JSON Lines export is not a well-formed entry.
    #[error("line {line}: {source}")]
    Parse {
        /// The 1-based line number.
        line: usize,
        /// What is wrong with the line.
        source: ParseError,
    },
}

/// The outcome of verifying a chain from its first entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyReport {
    /// How many entries verified.
    pub entries: u64,
    /// The last verified entry, or `None` when no entry was verified.
    pub head: Option<Head>,
}

/// Verifies a chain one entry at a time, from seq 1, in order.
///
/// Each [`push`](Verifier::push) checks that the entry has the next seq, links to the previous
/// entry's hash, and matches its own hash. After an error, stop: [`finish`](Verifier::finish)
/// then reports the prefix that verified. A chain that verifies can still have lost its tail
/// or been rebuilt wholesale; compare the end with a trusted head using
/// [`verify_against_head`].
#[derive(Debug, Default)]
pub struct Verifier {
    last: Option<Head>,
    entries: u64,
    /// Reused for every entry's hash input, so verifying does not allocate per entry.
    scratch: Vec<u8>,
}

impl Verifier {
    /// A verifier expecting seq 1 with `prev_hash` [`Hash::ZERO`].
    pub fn new() -> Verifier {
        Verifier::default()
    }

    /// Checks the next entry of the chain; on error the verifier's state is unchanged.
    pub fn push(&mut self, entry: &Entry) -> Result<(), VerifyError> {
        let (expected, prev_hash) = match &self.last {
            None => (1, Hash::ZERO),
            Some(h) => (h.seq.saturating_add(1), h.hash),
        };
        if entry.seq != expected {
            return Err(VerifyError::SequenceGap {
                expected,
                found: entry.seq,
            });
        }
        let seq = entry.seq;
        if entry.prev_hash != prev_hash {
            return Err(VerifyError::BrokenLink { seq });
        }
        let computed = entry
            .compute_hash_with(&mut self.scratch)
            .map_err(|source| VerifyError::InvalidPayload { seq, source })?;
        if computed != entry.hash {
            return Err(VerifyError::HashMismatch { seq });
        }
        self.last = Some(entry.head());
        self.entries += 1;
        Ok(())
    }

    /// The entries verified so far and the last of them.
    pub fn finish(self) -> VerifyReport {
        VerifyReport {
            entries: self.entries,
            head: self.last,
        }
    }
}

/// Checks that a verified log ends exactly at `expected`, a head known from elsewhere (the
/// store's head row, a signed checkpoint of the current end, an external sink).
///
/// Detects a cut tail ([`VerifyError::Truncated`]) and a rewritten end
/// ([`VerifyError::HeadMismatch`]). A log that goes on past `expected` is refused
/// ([`VerifyError::Extended`]) rather than accepted unchecked, because the report does not
/// hold the hash of the entry at `expected.seq`.
pub fn verify_against_head(report: &VerifyReport, expected: &Head) -> Result<(), VerifyError> {
    let found_seq = report.head.map_or(0, |h| h.seq);
    if found_seq < expected.seq {
        return Err(VerifyError::Truncated {
            expected_seq: expected.seq,
            found_seq,
        });
    }
    if found_seq > expected.seq {
        return Err(VerifyError::Extended {
            expected_seq: expected.seq,
            found_seq,
        });
    }
    match report.head {
        Some(head) if head.hash != expected.hash => {
            Err(VerifyError::HeadMismatch { seq: expected.seq })
        }
        // A trusted head at seq 0 describes an empty log, which is what was found.
        _ => Ok(()),
    }
}

/// Parses and verifies a JSON Lines export, one entry per line (a final newline is optional;
/// `\r\n` is accepted). Stops at the first line that fails.
pub fn verify_lines(text: &str) -> Result<VerifyReport, VerifyError> {
    let mut verifier = Verifier::new();
    for (i, line) in text.lines().enumerate() {
        let entry = Entry::from_json_line(line).map_err(|source| VerifyError::Parse {
            line: i + 1,
            source,
        })?;
        verifier.push(&entry)?;
    }
    Ok(verifier.finish())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::entry::{Draft, append};
    use serde_json::json;

    fn chain(n: u64) -> Vec<Entry> {
        let mut out: Vec<Entry> = Vec::new();
        for i in 0..n {
            let head = out.last().map(Entry::head);
            let draft = Draft {
                time_ms: 1_000 + i as i64,
                actor: format!("user{i}"),
                kind: "event".into(),
                procedure: None,
                break_id: Some(format!("b{i}")),
                payload: json!({"i": i}),
            };
            out.push(append(head.as_ref(), draft).unwrap());
        }
        out
    }

    fn verify(entries: &[Entry]) -> Result<VerifyReport, VerifyError> {
        let mut v = Verifier::new();
        for e in entries {
            v.push(e)?;
        }
        Ok(v.finish())
    }

    #[test]
    fn empty_and_valid_chains() {
        assert_eq!(
            verify(&[]),
            Ok(VerifyReport {
                entries: 0,
                head: None
            })
        );
        let c = chain(4);
        let report = verify(&c).unwrap();
        assert_eq!(report.entries, 4);
        assert_eq!(report.head, Some(c[3].head()));
        assert_eq!(verify_against_head(&report, &c[3].head()), Ok(()));
    }

    #[test]
    fn first_entry_must_be_seq_one_with_zero_prev() {
        let c = chain(3);
        assert_eq!(
            verify(&c[1..]),
            Err(VerifyError::SequenceGap {
                expected: 1,
                found: 2
            })
        );
        let mut first = c[0].clone();
        first.prev_hash = Hash([9; 32]);
        assert_eq!(verify(&[first]), Err(VerifyError::BrokenLink { seq: 1 }));
    }

    #[test]
    fn push_error_leaves_state_unchanged() {
        let c = chain(3);
        let mut v = Verifier::new();
        v.push(&c[0]).unwrap();
        assert!(v.push(&c[2]).is_err());
        v.push(&c[1]).unwrap();
        v.push(&c[2]).unwrap();
        assert_eq!(v.finish().entries, 3);
    }

    #[test]
    fn float_payload_is_reported_not_panicked() {
        let mut c = chain(2);
        c[1].payload = json!({"f": 0.5});
        assert!(matches!(
            verify(&c),
            Err(VerifyError::InvalidPayload { seq: 2, .. })
        ));
    }

    #[test]
    fn head_comparisons() {
        let c = chain(3);
        let report = verify(&c).unwrap();
        assert_eq!(
            verify_against_head(
                &report,
                &Head {
                    seq: 5,
                    hash: Hash::ZERO
                }
            ),
            Err(VerifyError::Truncated {
                expected_seq: 5,
                found_seq: 3
            })
        );
        assert_eq!(
            verify_against_head(&report, &c[1].head()),
            Err(VerifyError::Extended {
                expected_seq: 2,
                found_seq: 3
            })
        );
        assert_eq!(
            verify_against_head(
                &report,
                &Head {
                    seq: 3,
                    hash: Hash::ZERO
                }
            ),
            Err(VerifyError::HeadMismatch { seq: 3 })
        );
        let empty = verify(&[]).unwrap();
        assert_eq!(
            verify_against_head(&empty, &c[0].head()),
            Err(VerifyError::Truncated {
                expected_seq: 1,
                found_seq: 0
            })
        );
        assert_eq!(
            verify_against_head(
                &empty,
                &Head {
                    seq: 0,
                    hash: Hash::ZERO
                }
            ),
            Ok(())
        );
    }

    #[test]
    fn lines_report_line_numbers() {
        let c = chain(3);
        let text: String = c.iter().map(|e| e.to_json_line() + "\r\n").collect();
        assert_eq!(verify_lines(&text).unwrap().entries, 3);
        assert_eq!(verify_lines("").unwrap().entries, 0);
        let broken = text.replacen("\"user1\"", "\"user1\",\"x\":1", 1);
        assert!(matches!(
            verify_lines(&broken),
            Err(VerifyError::Parse {
                line: 2,
                source: ParseError::Unknown { .. }
            })
        ));
        let blank = text.replacen("\r\n", "\r\n\r\n", 1);
        assert_eq!(
            verify_lines(&blank),
            Err(VerifyError::Parse {
                line: 2,
                source: ParseError::Empty
            })
        );
    }
}
