//! Audit verify throughput: `Verifier::push` over a chain built in memory, against a plain
//! SHA-256 pass over the same entries' export lines.

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use breakglass_audit::{Draft, Entry, Verifier, append};
use serde_json::json;
use sha2::{Digest, Sha256};

/// 2027-01-15T08:00:00Z: a fixed start, so the chain is the same bytes on every run.
const T0: i64 = 1_800_000_000_000;

/// Timed rounds of each pass; the fastest counts.
pub(crate) const ROUNDS: usize = 3;

/// Figures of the verify run.
#[derive(Debug, Clone)]
pub(crate) struct VerifyFigures {
    /// Entries in the chain.
    pub(crate) entries: usize,
    /// Bytes of their export lines, one `\n` each included.
    pub(crate) line_bytes: usize,
    /// Building the chain with `append` (untimed for the ratio; shown for context).
    pub(crate) build: Duration,
    /// `Verifier::push` over every entry, then `finish`.
    pub(crate) verify: Duration,
    /// One SHA-256 over all the lines, streamed in one pass (the baseline).
    pub(crate) sha256_stream: Duration,
    /// One SHA-256 per line (shown for context: the verifier also finalizes once per entry).
    pub(crate) sha256_per_line: Duration,
}

impl VerifyFigures {
    /// Megabytes (10^6 bytes) per second of the export lines, for a pass that took `d`.
    pub(crate) fn mb_per_s(&self, d: Duration) -> f64 {
        self.line_bytes as f64 / 1e6 / d.as_secs_f64()
    }

    /// Entries per second for a pass that took `d`.
    pub(crate) fn entries_per_s(&self, d: Duration) -> f64 {
        self.entries as f64 / d.as_secs_f64()
    }
}

/// Builds `n` entries, then times the verifier and the SHA-256 baselines over them.
pub(crate) fn run(n: usize) -> Result<VerifyFigures> {
    let t = Instant::now();
    let mut entries: Vec<Entry> = Vec::with_capacity(n);
    for i in 0..n {
        let draft = Draft {
            time_ms: T0 + i as i64,
            actor: "alice".into(),
            kind: "share.accepted".into(),
            procedure: Some("root-secret".into()),
            break_id: Some("brk_0123456789abcdef".into()),
            payload: json!({"approvals": 1, "quorum": 2}),
        };
        let entry = append(entries.last().map(Entry::head).as_ref(), draft).context("append")?;
        entries.push(entry);
    }
    let build = t.elapsed();

    let mut lines = Vec::with_capacity(n * 320);
    for e in &entries {
        lines.extend_from_slice(e.to_json_line().as_bytes());
        lines.push(b'\n');
    }
    let ends: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| i)
        .collect();

    // Each pass runs ROUNDS times, interleaved, and the fastest of each counts: on a shared
    // machine the minimum is the figure least disturbed by other work.
    let (mut verify, mut sha256_stream, mut sha256_per_line) =
        (Duration::MAX, Duration::MAX, Duration::MAX);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let mut verifier = Verifier::new();
        for e in &entries {
            verifier.push(e).context("verify")?;
        }
        let report = black_box(verifier.finish());
        verify = verify.min(t.elapsed());
        ensure!(
            report.entries == n as u64,
            "verified {} of {n} entries",
            report.entries
        );

        let t = Instant::now();
        let mut h = Sha256::new();
        // Streamed in 64 KiB pieces, as a file would be read.
        for chunk in lines.chunks(64 * 1024) {
            h.update(chunk);
        }
        black_box(h.finalize());
        sha256_stream = sha256_stream.min(t.elapsed());

        let t = Instant::now();
        let mut start = 0;
        for &end in &ends {
            black_box(Sha256::digest(&lines[start..end]));
            start = end + 1;
        }
        sha256_per_line = sha256_per_line.min(t.elapsed());
    }

    Ok(VerifyFigures {
        entries: n,
        line_bytes: lines.len(),
        build,
        verify,
        sha256_stream,
        sha256_per_line,
    })
}
