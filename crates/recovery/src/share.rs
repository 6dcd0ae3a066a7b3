//! Recovered share files: a custodian's share, checked against the kit's commitment and
//! re-encrypted to the person recovering; and opening the secret from a quorum of them.

use breakglass_custody::{
    CustodianKey, Identity, PlainShare, Secret, VerifiedShare, decrypt_share, decrypt_with,
    encrypt_to, unseal, verify_share,
};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::kit::Kit;

/// The recovered share file's `format` and the first line of its encrypted plaintext.
pub const SHARE_FORMAT: &str = "breakglass-recovered-share-v1";
/// The largest recovered share file read.
pub const MAX_SHARE_FILE_LEN: usize = 64 * 1024;

/// Why a share could not be recovered or the secret not opened.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    /// The identity is not one of the kit's custodians.
    #[error(
        "this identity ({fingerprint}) is not a custodian of procedure {procedure} in kit {kit_id}"
    )]
    NotACustodian {
        /// The identity's public key fingerprint.
        fingerprint: String,
        /// The procedure.
        procedure: String,
        /// The kit.
        kit_id: String,
    },
    /// A share (in the kit, or in a recovered share file) was refused.
    #[error("{file}: {why}")]
    Share {
        /// Which file or custodian.
        file: String,
        /// What is wrong.
        why: String,
    },
    /// A recovered share file was made from another kit.
    #[error(
        "{file}: this share was made from kit {found}, not from this kit {expected}; ask the custodian to run `recover share` with this kit"
    )]
    OtherKit {
        /// The share file.
        file: String,
        /// The kit id the share names.
        found: String,
        /// This kit's id.
        expected: String,
    },
    /// A recovered share file was encrypted to another key.
    #[error("{file}: this share was encrypted to {recipient}, not to your identity ({mine})")]
    NotForYou {
        /// The share file.
        file: String,
        /// Its recipient.
        recipient: String,
        /// The given identity's public key.
        mine: String,
    },
    /// Two files hold the same custodian's share.
    #[error("{file}: a second share of custodian {custodian}")]
    Duplicate {
        /// The share file.
        file: String,
        /// The custodian.
        custodian: String,
    },
    /// Fewer shares than the quorum.
    #[error("{have} of {need} shares (from {from}); {missing} more custodian(s) must run `recover share`", missing = need - have)]
    BelowQuorum {
        /// Shares given.
        have: usize,
        /// The quorum.
        need: usize,
        /// Who gave them.
        from: String,
    },
    /// The shares did not open the secret.
    #[error("the shares did not open the secret: {0}")]
    Unseal(String),
    /// Encrypting to the recoverer failed.
    #[error("encrypting the share to the recoverer failed: {0}")]
    Encrypt(String),
}

/// One share that counted towards opening.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contribution {
    /// The custodian.
    pub custodian: String,
    /// The share index.
    pub index: u8,
    /// The custodian's key fingerprint (from the kit).
    pub key_fingerprint: String,
}

/// Custodian side: opens the custodian's own share from the kit with `identity`, checks it
/// against the kit's commitment, and encrypts it to `recipient` (the person recovering).
/// Returns the recovered share file's text.
pub fn make_share_file(
    kit: &Kit,
    identity: &Identity,
    recipient: &CustodianKey,
) -> Result<String, RecoverError> {
    let public = identity.public();
    let custodian = kit
        .custodians
        .iter()
        .find(|c| c.key == public)
        .ok_or_else(|| RecoverError::NotACustodian {
            fingerprint: public.fingerprint(),
            procedure: kit.procedure.id.clone(),
            kit_id: kit.kit_id.clone(),
        })?;
    let refused = |why: String| RecoverError::Share {
        file: format!("the kit's share of {}", custodian.name),
        why,
    };
    let plain = decrypt_share(&custodian.share, identity).map_err(|e| refused(e.to_string()))?;
    let verified = verify_share(plain, &kit.seal_id, &custodian.name, &kit.commitments())
        .map_err(|e| refused(e.to_string()))?;
    let text = verified.as_plain().encode();
    let mut plaintext = Zeroizing::new(Vec::with_capacity(text.len() + 128));
    plaintext.extend_from_slice(format!("{SHARE_FORMAT}\n{}\n", kit.kit_id).as_bytes());
    plaintext.extend_from_slice(text.as_bytes());
    let age_file =
        encrypt_to(recipient, &plaintext).map_err(|e| RecoverError::Encrypt(e.to_string()))?;
    let doc = json!({
        "format": SHARE_FORMAT,
        "kit_id": kit.kit_id,
        "procedure": kit.procedure.id,
        "seal_id": kit.seal_id,
        "custodian": custodian.name,
        "index": verified.index(),
        "recipient": recipient.canonical(),
        "age_file": String::from_utf8_lossy(&age_file),
    });
    let mut out =
        serde_json::to_string_pretty(&doc).map_err(|e| RecoverError::Encrypt(e.to_string()))?;
    out.push('\n');
    Ok(out)
}

/// Recoverer side: checks each recovered share file (`(name, text)`) against the kit — the kit
/// id outside and inside the encryption, the recipient, the commitment — and opens the secret
/// with a quorum of them.
pub fn open_shares(
    kit: &Kit,
    files: &[(String, String)],
    identity: &Identity,
) -> Result<(Secret, Vec<Contribution>), RecoverError> {
    let mine = identity.public();
    let commitments = kit.commitments();
    let mut verified: Vec<VerifiedShare> = Vec::new();
    let mut contributions = Vec::new();
    for (file, text) in files {
        let refused = |why: String| RecoverError::Share {
            file: file.clone(),
            why,
        };
        if text.len() > MAX_SHARE_FILE_LEN {
            return Err(refused(format!("larger than {MAX_SHARE_FILE_LEN} bytes")));
        }
        let doc: Value = serde_json::from_str(text).map_err(|e| {
            refused(format!(
                "not a recovered share file (line {}, column {}: {e})",
                e.line(),
                e.column()
            ))
        })?;
        let field = |name: &str| {
            doc.get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| refused(format!("`{name}` is missing or malformed")))
        };
        if field("format")? != SHARE_FORMAT {
            return Err(refused(format!("`format` is not {SHARE_FORMAT}")));
        }
        let outer_kit = field("kit_id")?;
        if outer_kit != kit.kit_id {
            return Err(RecoverError::OtherKit {
                file: file.clone(),
                found: outer_kit.to_owned(),
                expected: kit.kit_id.clone(),
            });
        }
        let recipient = field("recipient")?;
        if recipient != mine.canonical() {
            return Err(RecoverError::NotForYou {
                file: file.clone(),
                recipient: recipient.chars().take(80).collect(),
                mine: mine.canonical(),
            });
        }
        let plaintext = decrypt_with(identity, field("age_file")?.as_bytes())
            .map_err(|e| refused(e.to_string()))?;
        let plaintext = std::str::from_utf8(&plaintext)
            .map_err(|_| refused("the decrypted share is not text".into()))?;
        let mut lines = plaintext.splitn(3, '\n');
        if lines.next() != Some(SHARE_FORMAT) {
            return Err(refused(
                "the decrypted share does not start with its format line".into(),
            ));
        }
        let inner_kit = lines.next().unwrap_or_default();
        if inner_kit != kit.kit_id {
            return Err(RecoverError::OtherKit {
                file: file.clone(),
                found: inner_kit.chars().take(64).collect(),
                expected: kit.kit_id.clone(),
            });
        }
        let plain = PlainShare::decode(lines.next().unwrap_or_default())
            .map_err(|e| refused(e.to_string()))?;
        let custodian = plain.custodian().to_owned();
        if field("custodian")? != custodian {
            return Err(refused(format!(
                "the file says custodian {}, the share inside is {custodian}'s",
                field("custodian")?
            )));
        }
        if verified.iter().any(|v| v.custodian() == custodian) {
            return Err(RecoverError::Duplicate {
                file: file.clone(),
                custodian,
            });
        }
        let share = verify_share(plain, &kit.seal_id, &custodian, &commitments)
            .map_err(|e| refused(e.to_string()))?;
        let key_fingerprint = kit
            .custodians
            .iter()
            .find(|c| c.name == custodian)
            .map(|c| c.key.fingerprint())
            .unwrap_or_default();
        contributions.push(Contribution {
            custodian,
            index: share.index(),
            key_fingerprint,
        });
        verified.push(share);
    }
    if verified.len() < usize::from(kit.threshold) {
        return Err(RecoverError::BelowQuorum {
            have: verified.len(),
            need: usize::from(kit.threshold),
            from: if contributions.is_empty() {
                "nobody".into()
            } else {
                contributions
                    .iter()
                    .map(|c| c.custodian.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        });
    }
    let secret = unseal(&kit.seal_id, &kit.ciphertext, kit.threshold, &verified)
        .map_err(|e| RecoverError::Unseal(e.to_string()))?;
    Ok((secret, contributions))
}
