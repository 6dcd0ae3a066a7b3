//! Custodian keys: parsing public keys (age X25519 recipients, ssh-ed25519) and private identities.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The longest key text accepted; real keys are far shorter, so anything longer is rejected early.
const MAX_KEY_TEXT: usize = 16 * 1024;
/// How many characters of rejected input an error message may quote.
const PREVIEW_CHARS: usize = 16;

/// The kind of a custodian key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// An age X25519 key (`age1…` recipient, `AGE-SECRET-KEY-1…` identity).
    AgeX25519,
    /// An OpenSSH ed25519 key (`ssh-ed25519 AAAA…`), used through age's ssh-ed25519 recipient type.
    SshEd25519,
    /// A hardware-backed key through an age plugin (`age1yubikey1…`, generally `age1PLUGIN1…`):
    /// recognised (it is a second factor by itself), but nothing can be encrypted to it without
    /// the plugin binary, which the server does not run.
    AgePlugin,
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyKind::AgeX25519 => "age X25519",
            KeyKind::SshEd25519 => "ssh-ed25519",
            KeyKind::AgePlugin => "age plugin (hardware)",
        })
    }
}

/// Why a key could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key is of a type custody does not support; use an age X25519 or ssh-ed25519 key.
    #[error("unsupported key type {key_type}; use an age X25519 key (age1…) or an ssh-ed25519 key")]
    Unsupported {
        /// The key type as written in the input (at most a few dozen characters).
        key_type: String,
    },
    /// The private key is protected by a passphrase; custody only reads unencrypted keys.
    #[error(
        "the private key is passphrase-protected; remove the passphrase (ssh-keygen -p) or use an age identity"
    )]
    Encrypted,
    /// The passphrase of a passphrase-protected age identity is wrong.
    #[error("wrong passphrase for the age-encrypted identity file")]
    WrongPassphrase,
    /// A private key was given where a public key was expected.
    #[error("this is a private key; give the public key (age1… or ssh-ed25519 AAAA…) instead")]
    PrivateKeyGiven,
    /// The input is not a key; the reason quotes at most the first 16 characters of the input.
    #[error("malformed key: {0}")]
    Malformed(String),
}

/// A custodian's parsed public key.
///
/// Two keys are equal when their canonical forms are equal (ssh comments are ignored).
#[derive(Clone)]
pub struct CustodianKey {
    canonical: String,
    recipient: Recipient,
}

#[derive(Clone)]
enum Recipient {
    Age(age::x25519::Recipient),
    Ssh(Box<SshRecipient>),
    /// An age plugin recipient: the plugin's name (`yubikey`).
    Plugin(String),
}

#[derive(Clone)]
struct SshRecipient {
    age: age::ssh::Recipient,
    key: ssh_key::PublicKey,
}

impl CustodianKey {
    /// Parses an age X25519 recipient (`age1…`) or an OpenSSH `ssh-ed25519 AAAA… [comment]` line.
    pub fn parse(text: &str) -> Result<CustodianKey, KeyError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(KeyError::Malformed("empty input".into()));
        }
        if text.len() > MAX_KEY_TEXT {
            return Err(KeyError::Malformed(
                "input too long for a public key".into(),
            ));
        }
        if text.starts_with("AGE-SECRET-KEY-") || text.starts_with("-----BEGIN") {
            return Err(KeyError::PrivateKeyGiven);
        }
        let first = text.split_whitespace().next().unwrap_or_default();
        if first.starts_with("age1") {
            return Self::parse_age(first, text);
        }
        if first == "ssh-ed25519" {
            return Self::parse_ssh(text);
        }
        if looks_like_ssh_type(first) {
            return Err(KeyError::Unsupported {
                key_type: first.to_owned(),
            });
        }
        Err(KeyError::Malformed(format!(
            "expected age1… or ssh-ed25519 AAAA…, found {}",
            preview(text)
        )))
    }

    fn parse_age(token: &str, whole: &str) -> Result<CustodianKey, KeyError> {
        if token.len() != whole.len() {
            return Err(KeyError::Malformed(
                "an age recipient is a single word without spaces".into(),
            ));
        }
        // Bech32 puts the human-readable part before the last '1'; plugin and post-quantum
        // recipients have a longer one (age1yubikey1…, age1pq1…).
        let hrp = token.rfind('1').map(|i| &token[..i]).unwrap_or(token);
        if let Some(plugin) = hrp.strip_prefix("age1")
            && is_plugin_name(plugin)
        {
            return Self::parse_plugin(token, plugin);
        }
        if hrp != "age" {
            return Err(KeyError::Unsupported {
                key_type: format!("{} recipient", preview(hrp)),
            });
        }
        let recipient = age::x25519::Recipient::from_str(token)
            .map_err(|reason| KeyError::Malformed(format!("age recipient: {reason}")))?;
        Ok(CustodianKey {
            canonical: recipient.to_string(),
            recipient: Recipient::Age(recipient),
        })
    }

    /// `age1PLUGIN1…`: a Bech32 string (checksum checked) whose human-readable part names the
    /// plugin. Post-quantum recipients (`age1pq1…`) are not plugins and stay unsupported.
    fn parse_plugin(token: &str, plugin: &str) -> Result<CustodianKey, KeyError> {
        if plugin == "pq" {
            return Err(KeyError::Unsupported {
                key_type: "age1pq (post-quantum) recipient".into(),
            });
        }
        let checked = bech32::primitives::decode::CheckedHrpstring::new::<bech32::Bech32>(token)
            .map_err(|_| {
                KeyError::Malformed(format!(
                    "age plugin recipient (age1{}1…): bad Bech32 encoding or checksum",
                    preview(plugin)
                ))
            })?;
        if checked.byte_iter().len() == 0 {
            return Err(KeyError::Malformed(
                "age plugin recipient without data".into(),
            ));
        }
        Ok(CustodianKey {
            canonical: token.to_ascii_lowercase(),
            recipient: Recipient::Plugin(plugin.to_ascii_lowercase()),
        })
    }

    fn parse_ssh(text: &str) -> Result<CustodianKey, KeyError> {
        let key = ssh_key::PublicKey::from_openssh(text)
            .map_err(|_| KeyError::Malformed("invalid ssh-ed25519 public key".into()))?;
        Self::from_ssh_public(&key)
    }

    pub(crate) fn from_ssh_public(key: &ssh_key::PublicKey) -> Result<CustodianKey, KeyError> {
        if key.algorithm() != ssh_key::Algorithm::Ed25519 {
            return Err(KeyError::Unsupported {
                key_type: key.algorithm().as_str().to_owned(),
            });
        }
        let key = ssh_key::PublicKey::new(key.key_data().clone(), "");
        let line = key
            .to_openssh()
            .map_err(|_| KeyError::Malformed("invalid ssh-ed25519 public key".into()))?;
        let age = age::ssh::Recipient::from_str(&line)
            .map_err(|_| KeyError::Malformed("invalid ssh-ed25519 public key".into()))?;
        Ok(CustodianKey {
            canonical: age.to_string(),
            recipient: Recipient::Ssh(Box::new(SshRecipient { age, key })),
        })
    }

    /// The kind of this key.
    pub fn kind(&self) -> KeyKind {
        match self.recipient {
            Recipient::Age(_) => KeyKind::AgeX25519,
            Recipient::Ssh(_) => KeyKind::SshEd25519,
            Recipient::Plugin(_) => KeyKind::AgePlugin,
        }
    }

    /// Whether the key is hardware-backed (an age plugin recipient such as `age1yubikey1…`):
    /// decrypting with it needs the device, so it is a second factor by itself.
    pub fn is_hardware(&self) -> bool {
        matches!(self.recipient, Recipient::Plugin(_))
    }

    /// The age plugin's name (`yubikey`) of a plugin recipient.
    pub fn plugin(&self) -> Option<&str> {
        match &self.recipient {
            Recipient::Plugin(p) => Some(p),
            _ => None,
        }
    }

    /// The canonical text: the `age1…` recipient, or `ssh-ed25519 <base64>` without a comment.
    pub fn canonical(&self) -> String {
        self.canonical.clone()
    }

    /// `SHA256:` followed by the unpadded base64 SHA-256 of [`CustodianKey::canonical`].
    ///
    /// Stable across comment and whitespace changes; used to detect the same key given twice.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.canonical.as_bytes());
        format!("SHA256:{}", STANDARD_NO_PAD.encode(digest))
    }

    /// The age recipient to encrypt to; a plugin recipient has none here (the server does not
    /// run age plugins), which is an error naming the plugin.
    pub(crate) fn age_recipient(&self) -> Result<&dyn age::Recipient, String> {
        match &self.recipient {
            Recipient::Age(r) => Ok(r),
            Recipient::Ssh(ssh) => Ok(&ssh.age),
            Recipient::Plugin(p) => Err(format!(
                "{} is a hardware key through the age plugin `age-plugin-{p}`; breakglass does not run age plugins, so nothing can be encrypted to it (use an age X25519 or ssh-ed25519 key for sealing)",
                self.canonical
            )),
        }
    }

    pub(crate) fn ssh_public(&self) -> Option<&ssh_key::PublicKey> {
        match &self.recipient {
            Recipient::Age(_) | Recipient::Plugin(_) => None,
            Recipient::Ssh(ssh) => Some(&ssh.key),
        }
    }
}

impl PartialEq for CustodianKey {
    fn eq(&self, other: &Self) -> bool {
        self.canonical == other.canonical
    }
}

impl Eq for CustodianKey {}

impl fmt::Debug for CustodianKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CustodianKey({})", self.canonical)
    }
}

impl fmt::Display for CustodianKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical)
    }
}

/// Whether `name` may be an age plugin's name (`yubikey`, `se`, `tpm`): lowercase letters,
/// digits and `+-._`, as the age plugin specification allows.
fn is_plugin_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-._".contains(&b))
}

/// A custodian's private key, loaded from the text of a key file.
///
/// Its `Debug` shows only the kind and the public key.
pub struct Identity {
    public: CustodianKey,
    secret: IdentitySecret,
}

enum IdentitySecret {
    Age(age::x25519::Identity),
    Ssh(Box<SshIdentity>),
}

struct SshIdentity {
    age: age::ssh::Identity,
    key: ssh_key::PrivateKey,
}

impl Identity {
    /// Parses an age identity file (`AGE-SECRET-KEY-1…`, `#` comments and blank lines allowed, exactly
    /// one key) or an unencrypted OpenSSH ed25519 private key (`-----BEGIN OPENSSH PRIVATE KEY-----`).
    pub fn parse(text: &str) -> Result<Identity, KeyError> {
        let text = text.trim();
        if text.len() > MAX_KEY_TEXT {
            return Err(KeyError::Malformed(
                "input too long for a private key".into(),
            ));
        }
        if text.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----") {
            return Self::parse_ssh(text);
        }
        if Identity::is_encrypted(text.as_bytes()) {
            return Err(KeyError::Malformed(
                "the identity file is passphrase-protected (age-encrypted); a passphrase is needed to open it".into(),
            ));
        }
        if let Some(rest) = text.strip_prefix("-----BEGIN ") {
            let label: String = rest.chars().take_while(|c| *c != '-').take(32).collect();
            return Err(KeyError::Unsupported { key_type: label });
        }
        if text.starts_with("age1") || text.starts_with("ssh-") {
            return Err(KeyError::Malformed(
                "this is a public key; give the private key file instead".into(),
            ));
        }
        Self::parse_age(text)
    }

    /// Whether `bytes` is an age-encrypted file (armored or binary) — a passphrase-protected
    /// identity made with `age -p` (or `age-keygen | age -p -a`), which needs
    /// [`Identity::parse_encrypted`].
    pub fn is_encrypted(bytes: &[u8]) -> bool {
        let start = bytes
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .map_or(&[][..], |i| &bytes[i..]);
        start.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----")
            || start.starts_with(b"age-encryption.org/v1\n")
    }

    /// Opens a passphrase-protected age identity file (scrypt recipient stanza, armored or
    /// binary) and parses what it holds as [`Identity::parse`] does. The scrypt work factor is
    /// capped at 2^22 (about a second or two), so a hostile file cannot take minutes.
    pub fn parse_encrypted(bytes: &[u8], passphrase: &SecretString) -> Result<Identity, KeyError> {
        use std::io::Read;
        if bytes.len() > MAX_KEY_TEXT * 2 {
            return Err(KeyError::Malformed(
                "input too long for an encrypted identity file".into(),
            ));
        }
        let malformed =
            |e: &dyn fmt::Display| KeyError::Malformed(format!("age-encrypted identity file: {e}"));
        let decryptor = age::Decryptor::new_buffered(age::armor::ArmoredReader::new(bytes))
            .map_err(|e| malformed(&e))?;
        if !decryptor.is_scrypt() {
            return Err(KeyError::Malformed(
                "the identity file is age-encrypted to a key, not with a passphrase".into(),
            ));
        }
        let mut identity = age::scrypt::Identity::new(passphrase.clone());
        identity.set_max_work_factor(22);
        let mut reader = decryptor
            .decrypt(std::iter::once(&identity as &dyn age::Identity))
            .map_err(|e| match e {
                age::DecryptError::DecryptionFailed
                | age::DecryptError::KeyDecryptionFailed
                | age::DecryptError::NoMatchingKeys => KeyError::WrongPassphrase,
                other => malformed(&other),
            })?;
        let mut plain = Zeroizing::new(Vec::new());
        reader.read_to_end(&mut plain).map_err(|e| malformed(&e))?;
        let text = std::str::from_utf8(&plain)
            .map_err(|_| KeyError::Malformed("the decrypted identity file is not text".into()))?;
        if Identity::is_encrypted(text.as_bytes()) {
            return Err(KeyError::Malformed(
                "the identity file is encrypted twice".into(),
            ));
        }
        Identity::parse(text)
    }

    fn parse_age(text: &str) -> Result<Identity, KeyError> {
        let mut found: Option<age::x25519::Identity> = None;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.starts_with("AGE-PLUGIN-") {
                return Err(KeyError::Unsupported {
                    key_type: "age plugin identity".into(),
                });
            }
            if !line.starts_with("AGE-SECRET-KEY-1") {
                // The line may hold key material, so it is never quoted.
                return Err(KeyError::Malformed(
                    "expected an age identity file (AGE-SECRET-KEY-1…) or an OpenSSH private key"
                        .into(),
                ));
            }
            if found.is_some() {
                return Err(KeyError::Malformed(
                    "the identity file holds more than one key; keep one".into(),
                ));
            }
            let identity = age::x25519::Identity::from_str(line)
                .map_err(|reason| KeyError::Malformed(format!("age identity: {reason}")))?;
            found = Some(identity);
        }
        let identity =
            found.ok_or_else(|| KeyError::Malformed("no AGE-SECRET-KEY-1… line found".into()))?;
        let recipient = identity.to_public();
        Ok(Identity {
            public: CustodianKey {
                canonical: recipient.to_string(),
                recipient: Recipient::Age(recipient),
            },
            secret: IdentitySecret::Age(identity),
        })
    }

    fn parse_ssh(text: &str) -> Result<Identity, KeyError> {
        let key = ssh_key::PrivateKey::from_openssh(text)
            .map_err(|_| KeyError::Malformed("invalid OpenSSH private key".into()))?;
        if key.is_encrypted() {
            return Err(KeyError::Encrypted);
        }
        if key.algorithm() != ssh_key::Algorithm::Ed25519 {
            return Err(KeyError::Unsupported {
                key_type: key.algorithm().as_str().to_owned(),
            });
        }
        let age = age::ssh::Identity::from_buffer(text.as_bytes(), None)
            .map_err(|_| KeyError::Malformed("invalid OpenSSH private key".into()))?;
        match &age {
            age::ssh::Identity::Unencrypted(_) => {}
            age::ssh::Identity::Encrypted(_) => return Err(KeyError::Encrypted),
            _ => {
                return Err(KeyError::Unsupported {
                    key_type: key.algorithm().as_str().to_owned(),
                });
            }
        }
        let public = CustodianKey::from_ssh_public(key.public_key())?;
        Ok(Identity {
            public,
            secret: IdentitySecret::Ssh(Box::new(SshIdentity { age, key })),
        })
    }

    /// The kind of this identity.
    pub fn kind(&self) -> KeyKind {
        self.public.kind()
    }

    /// The public key matching this identity.
    pub fn public(&self) -> CustodianKey {
        self.public.clone()
    }

    pub(crate) fn age_identity(&self) -> &dyn age::Identity {
        match &self.secret {
            IdentitySecret::Age(identity) => identity,
            IdentitySecret::Ssh(ssh) => &ssh.age,
        }
    }

    pub(crate) fn ssh_private(&self) -> Option<&ssh_key::PrivateKey> {
        match &self.secret {
            IdentitySecret::Age(_) => None,
            IdentitySecret::Ssh(ssh) => Some(&ssh.key),
        }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Identity {{ kind: {:?}, public: {}, secret: [REDACTED] }}",
            self.kind(),
            self.public.canonical
        )
    }
}

/// Generates a new age X25519 identity.
///
/// Returns the identity file text in `age-keygen` form (`# created: <RFC 3339 UTC>`,
/// `# public key: age1…`, `AGE-SECRET-KEY-1…`, each line ending in `\n`) and its public key.
pub fn keygen() -> (SecretString, CustodianKey) {
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public();
    let secret = identity.to_string();
    let text = Zeroizing::new(format!(
        "# created: {}\n# public key: {}\n{}\n",
        rfc3339_now(),
        recipient,
        secret.expose_secret()
    ));
    let key = CustodianKey {
        canonical: recipient.to_string(),
        recipient: Recipient::Age(recipient),
    };
    (SecretString::from(text.as_str()), key)
}

/// The first [`PREVIEW_CHARS`] characters of `text`, with control characters replaced, for errors.
fn preview(text: &str) -> String {
    let mut shown: String = text
        .chars()
        .take(PREVIEW_CHARS)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().count() > PREVIEW_CHARS {
        shown.push('…');
    }
    format!("{shown:?}")
}

fn looks_like_ssh_type(token: &str) -> bool {
    token.len() <= 64
        && (token.starts_with("ssh-") || token.starts_with("ecdsa-") || token.starts_with("sk-"))
        && token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '@' | '.' | '_'))
}

/// The current UTC time as `YYYY-MM-DDTHH:MM:SSZ`.
///
/// Only used for the informational `# created:` comment of a generated identity file, so the
/// wall clock is read here rather than passed in.
#[allow(clippy::disallowed_methods)] // Informational comment only; no rule depends on it.
fn rfc3339_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339(secs)
}

fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    /// A well-formed age-plugin-yubikey recipient (Bech32 with a valid checksum).
    const YUBIKEY: &str = "age1yubikey1qt3rr7fsuqrk7xgrawau2zykwgdg509y2hdayx4lwzl3hqts8nz9qghv6rw";

    fn encrypt_with_passphrase(text: &str, passphrase: &str, armor: bool) -> Vec<u8> {
        use std::io::Write;
        let mut recipient = age::scrypt::Recipient::new(SecretString::from(passphrase));
        // The lowest work factor keeps the test fast; the format is the same.
        recipient.set_work_factor(2);
        let encryptor =
            age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
                .expect("encryptor");
        let mut out = Vec::new();
        if armor {
            let armored =
                age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
                    .expect("armor");
            let mut w = encryptor.wrap_output(armored).expect("wrap");
            w.write_all(text.as_bytes()).expect("write");
            w.finish().and_then(|a| a.finish()).expect("finish");
        } else {
            let mut w = encryptor.wrap_output(&mut out).expect("wrap");
            w.write_all(text.as_bytes()).expect("write");
            w.finish().expect("finish");
        }
        out
    }

    #[test]
    fn passphrase_protected_age_identities() {
        let (text, public) = keygen();
        for armor in [true, false] {
            let file = encrypt_with_passphrase(text.expose_secret(), "correct horse", armor);
            assert!(Identity::is_encrypted(&file));
            let id = Identity::parse_encrypted(&file, &SecretString::from("correct horse"))
                .expect("right passphrase");
            assert_eq!(id.public(), public);
            let e = Identity::parse_encrypted(&file, &SecretString::from("wrong"))
                .expect_err("wrong passphrase");
            assert_eq!(e, KeyError::WrongPassphrase);
            assert_eq!(
                e.to_string(),
                "wrong passphrase for the age-encrypted identity file"
            );
        }
        // Read as plain text, it says a passphrase is needed.
        let armored = encrypt_with_passphrase(text.expose_secret(), "p", true);
        let e = Identity::parse(std::str::from_utf8(&armored).expect("armored text"))
            .expect_err("needs a passphrase");
        assert!(e.to_string().contains("passphrase-protected"), "{e}");
        // An age file encrypted to a key, not a passphrase, is named as such.
        let to_key = crate::encrypt_to(&public, text.expose_secret().as_bytes()).expect("enc");
        let e = Identity::parse_encrypted(&to_key, &SecretString::from("p")).expect_err("key");
        assert!(e.to_string().contains("not with a passphrase"), "{e}");
        assert!(!Identity::is_encrypted(text.expose_secret().as_bytes()));
    }

    #[test]
    fn plugin_recipients_are_recognised_as_hardware() {
        let key = CustodianKey::parse(YUBIKEY).expect("plugin recipient");
        assert_eq!(key.kind(), KeyKind::AgePlugin);
        assert!(key.is_hardware());
        assert_eq!(key.plugin(), Some("yubikey"));
        assert_eq!(key.canonical(), YUBIKEY);
        // Nothing is encrypted to it: the error names the plugin.
        let e = crate::encrypt_to(&key, b"x").expect_err("no plugin support");
        assert!(e.to_string().contains("age-plugin-yubikey"), "{e}");
        // A flipped character breaks the checksum.
        let typo = YUBIKEY.replace("qt3rr", "qt3rq");
        assert!(matches!(
            CustodianKey::parse(&typo),
            Err(KeyError::Malformed(_))
        ));
        let x25519 = keygen().1;
        assert!(!x25519.is_hardware());
    }

    use super::*;

    fn ssh_line() -> String {
        let key = ssh_key::PrivateKey::random(&mut rand::rngs::OsRng, ssh_key::Algorithm::Ed25519)
            .unwrap();
        let public = ssh_key::PublicKey::new(key.public_key().key_data().clone(), "alice@example");
        public.to_openssh().unwrap()
    }
    const SSH_RSA: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC0 bob";

    #[test]
    fn age_recipient_round_trips() {
        let (_, key) = keygen();
        let parsed = CustodianKey::parse(&format!("  {}\n", key.canonical())).unwrap();
        assert_eq!(parsed, key);
        assert_eq!(parsed.kind(), KeyKind::AgeX25519);
        assert!(parsed.fingerprint().starts_with("SHA256:"));
        assert_eq!(parsed.fingerprint(), key.fingerprint());
    }

    #[test]
    fn ssh_key_ignores_comment() {
        let line = ssh_line();
        assert!(line.ends_with(" alice@example"));
        let a = CustodianKey::parse(&line).unwrap();
        let without = line.rsplit_once(' ').unwrap().0;
        let b = CustodianKey::parse(without).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.kind(), KeyKind::SshEd25519);
        assert_eq!(a.canonical(), without);
        assert_eq!(a.fingerprint(), b.fingerprint());
        let spaced = CustodianKey::parse(&format!("{without} Alice Example (laptop)\r\n")).unwrap();
        assert_eq!(spaced, a);
    }

    #[test]
    fn unsupported_and_malformed_keys_are_named() {
        assert_eq!(
            CustodianKey::parse(SSH_RSA),
            Err(KeyError::Unsupported {
                key_type: "ssh-rsa".into()
            })
        );
        assert!(matches!(
            CustodianKey::parse("ecdsa-sha2-nistp256 AAAA"),
            Err(KeyError::Unsupported { .. })
        ));
        assert!(matches!(
            CustodianKey::parse("age1yubikey1qwerty"),
            Err(KeyError::Malformed(_))
        ));
        assert!(matches!(
            CustodianKey::parse("age1pq1qqqqqq"),
            Err(KeyError::Unsupported { .. })
        ));
        assert!(matches!(
            CustodianKey::parse("age1qqqq"),
            Err(KeyError::Malformed(_))
        ));
        assert!(matches!(
            CustodianKey::parse("ssh-ed25519 AAAAnotbase64!!"),
            Err(KeyError::Malformed(_))
        ));
        assert_eq!(
            CustodianKey::parse("AGE-SECRET-KEY-1QQQQ"),
            Err(KeyError::PrivateKeyGiven)
        );
        let long_garbage = "x".repeat(100) + "SENSITIVE";
        let Err(KeyError::Malformed(reason)) = CustodianKey::parse(&long_garbage) else {
            panic!("garbage must be malformed");
        };
        assert!(!reason.contains("SENSITIVE"));
        assert!(reason.len() < 100);
    }

    #[test]
    fn keygen_file_parses_back() {
        let (file, key) = keygen();
        let text = file.expose_secret();
        let mut lines = text.lines();
        assert!(lines.next().unwrap().starts_with("# created: 20"));
        assert_eq!(
            lines.next().unwrap(),
            format!("# public key: {}", key.canonical())
        );
        assert!(lines.next().unwrap().starts_with("AGE-SECRET-KEY-1"));
        let identity = Identity::parse(text).unwrap();
        assert_eq!(identity.public(), key);
        let shown = format!("{identity:?}");
        assert!(!shown.contains("AGE-SECRET-KEY"));
    }

    #[test]
    fn identity_rejects_garbage_without_echo() {
        for bad in [
            "",
            "# only a comment",
            "AGE-SECRET-KEY-1NOTVALID",
            "hello SECRETSTUFF",
            "-----BEGIN RSA PRIVATE KEY-----\nabc",
            "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----",
        ] {
            let err = Identity::parse(bad).unwrap_err();
            assert!(!err.to_string().contains("SECRETSTUFF"), "{err}");
        }
        let (a, _) = keygen();
        let (b, _) = keygen();
        let two = format!("{}{}", a.expose_secret(), b.expose_secret());
        assert!(matches!(Identity::parse(&two), Err(KeyError::Malformed(_))));
    }

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
