//! The recovery kit: a procedure's seal, shares, commitments, procedure file, custodian keys and
//! the audit public key in one file signed with the server's audit key.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use breakglass_audit::{AuditKey, AuditPublicKey, canonical_json, format_rfc3339_ms, sha256};
use breakglass_custody::{CustodianKey, ShareCommitment};
use breakglass_domain::{Limits, Procedure, parse_procedures};
use serde_json::{Value, json};

/// The kit's `format`, also the domain separator of its id and signature.
pub const KIT_FORMAT: &str = "breakglass-recovery-kit-v1";
/// The largest kit file read (a kit holds one age file per custodian and the procedure file).
pub const MAX_KIT_LEN: usize = 16 * 1024 * 1024;

/// Why a kit cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KitError {
    /// Not a kit, or a field is missing or malformed.
    #[error("not a valid recovery kit: {0}")]
    Format(String),
    /// The signature does not verify with the kit's audit key.
    #[error(
        "the kit's signature does not verify with audit key {key_id}: the kit was edited or is not from this server"
    )]
    Signature {
        /// The key tried.
        key_id: String,
    },
    /// The kit is signed by another key than the one pinned.
    #[error("the kit is signed by audit key {found}, not the pinned key {pinned}")]
    WrongKey {
        /// The pinned key's id.
        pinned: String,
        /// The kit's key id.
        found: String,
    },
    /// The kit's id does not match its content.
    #[error("the kit's id {claimed} does not match its content ({actual}): the kit was edited")]
    Id {
        /// The id written in the kit.
        claimed: String,
        /// The id of the content.
        actual: String,
    },
    /// The signed content is inconsistent (procedure hash, custodians, commitments).
    #[error("the kit is inconsistent: {0}")]
    Inconsistent(String),
    /// The file differs from the rendering of its signed document.
    #[error("the kit file differs from its signed document at byte {0}: the kit was edited")]
    Edited(usize),
}

/// One custodian as the kit lists it.
#[derive(Debug, Clone)]
pub struct KitCustodian {
    /// Name (the procedure's custodian name).
    pub name: String,
    /// Public key.
    pub key: CustodianKey,
    /// Commitment to the custodian's share.
    pub commitment: ShareCommitment,
    /// The custodian's share, age-encrypted to `key` (armored).
    pub share: Vec<u8>,
}

/// A verified kit.
#[derive(Debug, Clone)]
pub struct Kit {
    /// Its id (64 hex digits).
    pub kit_id: String,
    /// The procedure (validated from the kit's procedure file).
    pub procedure: Procedure,
    /// The procedure file as stored on the server.
    pub procedure_yaml: String,
    /// The seal.
    pub seal_id: String,
    /// Shares needed.
    pub threshold: u8,
    /// Sealed ciphertext.
    pub ciphertext: Vec<u8>,
    /// When the seal was made (ms since the epoch).
    pub sealed_at_ms: i64,
    /// Custodians, in share order.
    pub custodians: Vec<KitCustodian>,
    /// The server's audit public key that signed the kit.
    pub audit_public_key: AuditPublicKey,
    /// When the kit was exported (ms since the epoch).
    pub exported_at_ms: i64,
    /// Whether the signing key was pinned by the caller.
    pub pinned: bool,
}

/// The seal a kit holds, as the server stores it: what a kit id is computed from.
#[derive(Debug, Clone, Copy)]
pub struct KitSeal<'a> {
    /// Procedure id.
    pub procedure_id: &'a str,
    /// The procedure file as stored on the server.
    pub procedure_yaml: &'a str,
    /// The seal.
    pub seal_id: &'a str,
    /// Shares needed.
    pub threshold: u8,
    /// Sealed ciphertext.
    pub ciphertext: &'a [u8],
    /// When the seal was made (ms since the epoch).
    pub sealed_at_ms: i64,
    /// Custodians, in share order.
    pub custodians: &'a [KitCustodian],
}

impl Kit {
    /// Builds the kit file for a seal and signs it; returns the file text and the kit id.
    pub fn export(
        seal: &KitSeal<'_>,
        key: &AuditKey,
        exported_at_ms: i64,
    ) -> Result<(String, String), KitError> {
        let content = content(seal, &key.public());
        let kit_id = kit_id_of(&content)?;
        let mut doc = unsigned_kit(&kit_id, content, exported_at_ms);
        let signature = key
            .sign_document(KIT_FORMAT, &doc)
            .map_err(|e| KitError::Format(e.to_string()))?;
        doc["signature"] = Value::from(signature);
        Ok((render_kit(&doc)?, kit_id))
    }

    /// The id a seal's kit has, without signing (what the server compares a spool's kit id with).
    pub fn id_for(seal: &KitSeal<'_>, public: &AuditPublicKey) -> Result<String, KitError> {
        kit_id_of(&content(seal, public))
    }

    /// Parses and verifies a kit file: the exact rendering, the format, the signature (by the
    /// pinned key when given, else by the kit's own key), the id, and that the procedure file,
    /// custodians, keys, indices, commitments and threshold agree with one another.
    pub fn parse(text: &str, pinned: Option<&AuditPublicKey>) -> Result<Kit, KitError> {
        if text.len() > MAX_KIT_LEN {
            return Err(KitError::Format(format!("larger than {MAX_KIT_LEN} bytes")));
        }
        let doc: Value = serde_json::from_str(text).map_err(|e| {
            KitError::Format(format!("line {}, column {}: {e}", e.line(), e.column()))
        })?;
        if doc.get("format").and_then(Value::as_str) != Some(KIT_FORMAT) {
            return Err(KitError::Format(format!("`format` is not {KIT_FORMAT}")));
        }
        let content = doc
            .get("content")
            .filter(|c| c.is_object())
            .ok_or_else(|| missing("content"))?;
        let own: AuditPublicKey = str_field(content, "audit_public_key")?
            .parse()
            .map_err(|e| KitError::Format(format!("content.audit_public_key: {e}")))?;
        if let Some(p) = pinned
            && *p != own
        {
            return Err(KitError::WrongKey {
                pinned: p.key_id(),
                found: own.key_id(),
            });
        }
        let signature = str_field(&doc, "signature")?;
        if !own.verify_document(KIT_FORMAT, &doc, signature) {
            return Err(KitError::Signature {
                key_id: own.key_id(),
            });
        }
        // Signed, so what follows was written by the server; a mismatch is a server bug or a
        // forged kit signed by a stolen key, and is still refused with its reason.
        let rendered = render_kit(&doc)?;
        if rendered != text {
            let at = rendered
                .bytes()
                .zip(text.bytes())
                .position(|(a, b)| a != b)
                .unwrap_or(rendered.len().min(text.len()));
            return Err(KitError::Edited(at));
        }
        let claimed = str_field(&doc, "kit_id")?.to_owned();
        let actual = kit_id_of(content)?;
        if claimed != actual {
            return Err(KitError::Id { claimed, actual });
        }
        let exported_at_ms = int_field(&doc, "exported_at_ms")?;

        let proc_v = content
            .get("procedure")
            .ok_or_else(|| missing("procedure"))?;
        let procedure_id = str_field(proc_v, "id")?;
        let procedure_yaml = str_field(proc_v, "yaml")?.to_owned();
        if str_field(proc_v, "sha256")? != sha256(procedure_yaml.as_bytes()).to_hex() {
            return Err(KitError::Inconsistent(
                "procedure.sha256 does not match procedure.yaml".into(),
            ));
        }
        let limits = Limits {
            grant_ceiling: std::time::Duration::MAX,
        };
        let mut parsed =
            parse_procedures("kit procedure", &procedure_yaml, &limits).map_err(|e| {
                KitError::Inconsistent(format!(
                    "procedure.yaml: {}",
                    e.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                ))
            })?;
        if parsed.len() != 1 || parsed[0].procedure.id != procedure_id {
            return Err(KitError::Inconsistent(format!(
                "procedure.yaml does not hold exactly procedure {procedure_id}"
            )));
        }
        let procedure = parsed.remove(0).procedure;

        let seal = content.get("seal").ok_or_else(|| missing("seal"))?;
        let seal_id = str_field(seal, "seal_id")?.to_owned();
        let threshold = u8::try_from(int_field(seal, "threshold")?)
            .map_err(|_| KitError::Format("seal.threshold is not 0..=255".into()))?;
        if threshold != procedure.quorum {
            return Err(KitError::Inconsistent(format!(
                "seal.threshold {threshold} is not the procedure's quorum {}",
                procedure.quorum
            )));
        }
        let ciphertext = B64
            .decode(str_field(seal, "ciphertext")?)
            .map_err(|_| KitError::Format("seal.ciphertext is not base64".into()))?;
        let sealed_at_ms = int_field(seal, "created_at_ms")?;

        let list = content
            .get("custodians")
            .and_then(Value::as_array)
            .ok_or_else(|| missing("custodians"))?;
        if list.len() != procedure.custodians.len() {
            return Err(KitError::Inconsistent(format!(
                "{} custodians in the kit, {} in the procedure",
                list.len(),
                procedure.custodians.len()
            )));
        }
        let mut custodians = Vec::with_capacity(list.len());
        for (i, (c, declared)) in list.iter().zip(&procedure.custodians).enumerate() {
            let at = |f: &str| format!("custodians[{i}].{f}");
            let name = str_field(c, "name")?.to_owned();
            let key = CustodianKey::parse(str_field(c, "key")?)
                .map_err(|e| KitError::Format(format!("{}: {e}", at("key"))))?;
            if name != declared.name || key != declared.key {
                return Err(KitError::Inconsistent(format!(
                    "{} is {name} with key {}, but the procedure lists {} with key {}",
                    at("name"),
                    key.fingerprint(),
                    declared.name,
                    declared.key.fingerprint()
                )));
            }
            let index = int_field(c, "index")?;
            if index != i as i64 + 1 {
                return Err(KitError::Inconsistent(format!(
                    "{} is {index}, expected {}",
                    at("index"),
                    i + 1
                )));
            }
            let commitment =
                ShareCommitment::from_hex(&name, index as u8, str_field(c, "commitment")?)
                    .map_err(|e| KitError::Format(format!("{}: {e}", at("commitment"))))?;
            let share = str_field(c, "share")?.as_bytes().to_vec();
            custodians.push(KitCustodian {
                name,
                key,
                commitment,
                share,
            });
        }
        Ok(Kit {
            kit_id: actual,
            procedure,
            procedure_yaml,
            seal_id,
            threshold,
            ciphertext,
            sealed_at_ms,
            custodians,
            audit_public_key: own,
            exported_at_ms,
            pinned: pinned.is_some(),
        })
    }

    /// The commitments of the seal, in share order.
    pub fn commitments(&self) -> Vec<ShareCommitment> {
        self.custodians
            .iter()
            .map(|c| c.commitment.clone())
            .collect()
    }
}

fn content(seal: &KitSeal<'_>, public: &AuditPublicKey) -> Value {
    let KitSeal {
        procedure_id,
        procedure_yaml,
        seal_id,
        threshold,
        ciphertext,
        sealed_at_ms,
        custodians,
    } = *seal;
    json!({
        "procedure": {
            "id": procedure_id,
            "yaml": procedure_yaml,
            "sha256": sha256(procedure_yaml.as_bytes()).to_hex(),
        },
        "seal": {
            "seal_id": seal_id,
            "threshold": threshold,
            "ciphertext": B64.encode(ciphertext),
            "created_at_ms": sealed_at_ms,
        },
        "custodians": custodians.iter().map(|c| json!({
            "name": c.name,
            "key": c.key.canonical(),
            "index": c.commitment.index,
            "commitment": c.commitment.digest_hex(),
            "share": String::from_utf8_lossy(&c.share),
        })).collect::<Vec<_>>(),
        "audit_public_key": public.to_string(),
    })
}

/// The kit id of a kit's `content`: SHA-256 over the format, a zero byte and its canonical JSON.
pub fn kit_id_of(content: &Value) -> Result<String, KitError> {
    let mut bytes = KIT_FORMAT.as_bytes().to_vec();
    bytes.push(0);
    bytes.extend_from_slice(
        canonical_json(content)
            .map_err(|e| KitError::Format(e.to_string()))?
            .as_bytes(),
    );
    Ok(sha256(&bytes).to_hex())
}

/// The kit document without its signature.
pub fn unsigned_kit(kit_id: &str, content: Value, exported_at_ms: i64) -> Value {
    json!({
        "format": KIT_FORMAT,
        "kit_id": kit_id,
        "exported_at": format_rfc3339_ms(exported_at_ms).unwrap_or_default(),
        "exported_at_ms": exported_at_ms,
        "content": content,
    })
}

/// The file text of a kit document: pretty JSON and a final newline.
pub fn render_kit(doc: &Value) -> Result<String, KitError> {
    let mut text =
        serde_json::to_string_pretty(doc).map_err(|e| KitError::Format(e.to_string()))?;
    text.push('\n');
    Ok(text)
}

fn missing(field: &str) -> KitError {
    KitError::Format(format!("`{field}` is missing or malformed"))
}

fn str_field<'a>(v: &'a Value, field: &str) -> Result<&'a str, KitError> {
    v.get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| missing(field))
}

fn int_field(v: &Value, field: &str) -> Result<i64, KitError> {
    v.get(field)
        .and_then(Value::as_i64)
        .ok_or_else(|| missing(field))
}
