//! Shares and commitments: a custodian's share text as submitted, verified against stored
//! commitments; a hostile age share file opened with a custodian's identity.
#![no_main]

use std::sync::OnceLock;

use breakglass_custody::{
    ExposeSecret, Identity, PlainShare, ShareCommitment, decrypt_share, keygen, verify_share,
};
use libfuzzer_sys::fuzz_target;

fn identity() -> &'static Identity {
    static ID: OnceLock<Identity> = OnceLock::new();
    ID.get_or_init(|| {
        let (secret, _) = keygen();
        Identity::parse(secret.expose_secret()).expect("a fresh identity parses")
    })
}

fuzz_target!(|data: &[u8]| {
    // As an age file sent to a custodian.
    let _ = decrypt_share(data, identity());
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // As a share's text, then checked against commitments read from the last line.
    let (share_text, commitment) = text.rsplit_once('\n').unwrap_or((text, ""));
    let Ok(c) = ShareCommitment::from_hex("alice", 1, commitment) else {
        let _ = PlainShare::decode(share_text);
        return;
    };
    if let Ok(share) = PlainShare::decode(share_text) {
        let seal = share.seal_id().to_owned();
        let _ = verify_share(share, &seal, "alice", &[c]);
    }
});
