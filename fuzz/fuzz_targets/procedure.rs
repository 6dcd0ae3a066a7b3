//! Procedure files: parse, validate and lint whatever bytes arrive (a file in git is written
//! by anyone with commit rights); and the small parsers a file's fields go through.
#![no_main]

use breakglass_domain::drill::CronSchedule;
use breakglass_domain::readiness::{LintPolicy, lint_file};
use breakglass_domain::{Injection, Limits, parse_duration};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = lint_file(
        "fuzz.yaml",
        text,
        &Limits::default(),
        &LintPolicy::default(),
    );
    let first = text.lines().next().unwrap_or("");
    let _ = parse_duration(first);
    let _ = Injection::parse(first);
    let _ = CronSchedule::parse(first);
});
