//! The gateway's PostgreSQL wire handling: start-up packets, and both directions of a session
//! (client messages with refusals and recording, server answers) over arbitrary bytes, cut at
//! arbitrary points, the redaction of passwords from recorded statements and bytes, and
//! binary parameter values of any type turned into text. A malformed
//! message must give an error, never a panic.
#![no_main]

use std::time::Instant;

use breakglass_gateway::relay::{ClientSide, ServerSide, SessionInfo, Tracker};
use breakglass_gateway::wire;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(n)) = wire::startup_len(data) {
        let _ = wire::decode_startup(&data[..n.min(data.len())]);
    }
    let text = String::from_utf8_lossy(data);
    let _ = wire::normalize(&text);
    // Redacting passwords from what is recorded: any text, never a panic, and a statement
    // without `password` or `://` comes back unchanged.
    let mut kept = None;
    let redacted = breakglass_gateway::redact::statement_keeping(&text, &mut kept);
    let _ = breakglass_gateway::redact::value_keeping(&text, &mut kept);
    if !text.to_ascii_lowercase().contains("password") && !text.contains("://") {
        assert_eq!(redacted, text);
        assert!(kept.is_none(), "nothing redacted, nothing kept");
    }
    // The text as the server's error about it, scrubbed of what was kept: never a panic.
    if let Some(kept) = kept {
        let _ = kept.scrub(&text);
    }
    // Bytes recorded in hex, looked into for passwords: never a panic, and what was
    // redacted is kept to scrub errors.
    let mut kept = None;
    if breakglass_gateway::redact::bytes_keeping(data, &mut kept).is_some() {
        assert!(kept.is_some(), "redacted, so kept");
    }
    // One binary value of the type named by the first 4 bytes (a row of an unknown type,
    // `record`, arrays, ranges…), the rest its bytes: text or hex, never a panic.
    if let Some((oid, value)) = data.split_first_chunk::<4>() {
        let mut bind = vec![0, 0, 0, 1, 0, 1, 0, 1];
        bind.extend(i32::try_from(value.len()).unwrap_or(i32::MAX).to_be_bytes());
        bind.extend(value);
        bind.extend([0, 0]);
        if let Ok(wire::ClientMessage::Bind { params, .. }) = wire::decode_client(b'B', &bind) {
            let _ = breakglass_gateway::params::render(&params, &[u32::from_be_bytes(*oid)]);
        }
    }
    // First byte: where the input splits into client and server bytes; second: read size.
    let (Some(&split), Some(&step)) = (data.first(), data.get(1)) else {
        return;
    };
    let rest = &data[2..];
    let cut = (usize::from(split) * rest.len()) / 256;
    let (client, server) = rest.split_at(cut);
    let step = usize::from(step).max(1);
    let info = SessionInfo {
        procedure: "p".into(),
        refuse: vec!["DROP DATABASE".into(), "ALTER SYSTEM".into()],
    };
    let mut tracker = Tracker::default();
    let (mut c, mut s) = (ClientSide::default(), ServerSide::default());
    let (mut cbuf, mut sbuf) = (Vec::new(), Vec::new());
    let (mut out, mut done) = (Vec::new(), Vec::new());
    let (mut ci, mut si) = (0, 0);
    while ci < client.len() || si < server.len() {
        if ci < client.len() {
            let end = (ci + step).min(client.len());
            cbuf.extend_from_slice(&client[ci..end]);
            ci = end;
            match c.process(
                &info,
                &cbuf,
                &mut out,
                &mut tracker,
                breakglass_domain::Timestamp(0),
                Instant::now(),
            ) {
                Ok((used, _)) => {
                    cbuf.drain(..used);
                }
                Err(_) => return,
            }
        }
        if si < server.len() {
            let end = (si + step).min(server.len());
            sbuf.extend_from_slice(&server[si..end]);
            si = end;
            match s.process(&info, &sbuf, &mut out, &mut tracker, &mut done) {
                Ok(used) => {
                    sbuf.drain(..used);
                }
                Err(_) => return,
            }
        }
        out.clear();
    }
});
