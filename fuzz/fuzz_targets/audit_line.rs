//! Audit records as read back from a sink or an export file: entries, checkpoints, and the
//! tagged records of a sink, one JSON line each.
#![no_main]

use breakglass_audit::{Entry, SignedCheckpoint, SinkRecord};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(e) = Entry::from_json_line(line) {
        let _ = e.compute_hash();
    }
    let _ = SignedCheckpoint::from_json_line(line);
    let _ = SinkRecord::from_line(line);
});
