//! Offline recovery, when the server is gone: the **recovery kit** (everything needed to open a
//! procedure's sealed secret except the custodians' private keys, signed with the server's audit
//! key), the **recovered share file** a custodian hands to the person recovering, and the
//! **recovery spool** (the recoverer's own signed, hash-chained audit log of what happened,
//! imported into the main chain when the server is back).
//!
//! This crate does no I/O and is not async; it holds no crypto of its own (hashes and the kit
//! signature come from `breakglass-audit`, share decryption, age wrapping and SSH signatures from
//! `breakglass-custody`). `docs/recovery.md` specifies the three formats.
//!
//! # Kit (`breakglass-recovery-kit-v1`)
//!
//! One JSON document, written exactly as `serde_json::to_string_pretty` renders it plus `\n`
//! (so a byte edited anywhere, even in white space, is refused):
//!
//! ```text
//! { "format": "breakglass-recovery-kit-v1", "kit_id": HEX, "exported_at": RFC3339,
//!   "exported_at_ms": INT, "content": CONTENT, "signature": HEX }
//! CONTENT = { "procedure": {"id", "yaml", "sha256"},
//!             "seal": {"seal_id", "threshold", "ciphertext" (base64), "created_at_ms"},
//!             "custodians": [{"name", "key", "index", "commitment" (hex), "share" (age armor)}],
//!             "audit_public_key": "ed25519:…" }
//! kit_id    = SHA-256("breakglass-recovery-kit-v1" || 0x00 || canonical_json(CONTENT))
//! signature = Ed25519(audit key, "breakglass-recovery-kit-v1" || 0x00 || canonical_json(doc − signature))
//! ```
//!
//! The id depends on the seal alone (not on the export time), so the server recomputes it for
//! any seal and recognises the kit a spool names.
//!
//! # Recovered share (`breakglass-recovered-share-v1`)
//!
//! JSON `{"format", "kit_id", "procedure", "seal_id", "custodian", "index", "recipient",
//! "age_file"}`; `age_file` is an armored age file to `recipient` (the recoverer's key) whose
//! plaintext is `breakglass-recovered-share-v1\n<kit_id>\n<share text>`. The kit id inside the
//! encryption is checked as well as the one outside, so relabelling a share file does not help.
//!
//! # Spool (`breakglass-recovery-spool-v1`)
//!
//! JSON Lines; line `n` (from 0) is `{"seq": n, "time_ms", "kind", "payload", "prev_hash",
//! "hash", "signature"}`:
//!
//! ```text
//! hash      = SHA-256("breakglass-recovery-spool-v1" || 0x00 ||
//!                     canonical_json({seq, time_ms, kind, payload, prev_hash}))
//! prev_hash = the previous line's hash; 64 zeros for line 0
//! signature = SSHSIG (namespace "breakglass-recovery-spool-v1", SHA-512) over the ASCII hex hash,
//!             by the ssh-ed25519 key named in line 0's payload.signer_key
//! ```
//!
//! Line 0 is `spool.opened` (kit, procedure, seal, signer and recoverer keys, reason, ticket),
//! the last line `spool.closed` with the number of lines before it: a spool cut short, edited,
//! reordered, re-signed by another key or extended after its close is refused, naming the line.

mod kit;
mod share;
mod spool;

pub use kit::{
    KIT_FORMAT, Kit, KitCustodian, KitError, KitSeal, MAX_KIT_LEN, kit_id_of, render_kit,
    unsigned_kit,
};
pub use share::{
    Contribution, MAX_SHARE_FILE_LEN, RecoverError, SHARE_FORMAT, make_share_file, open_shares,
};
pub use spool::{
    MAX_SPOOL_LEN, SPOOL_FORMAT, SpoolEntry, SpoolError, SpoolWriter, VerifiedSpool, verify_spool,
};
