//! Offline recovery's untrusted files: a recovery kit and a recovery spool, as read by
//! `recover share|open` and `audit import`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = breakglass_recovery::Kit::parse(text, None);
    let _ = breakglass_recovery::verify_spool(text);
});
