//! OpenSSH key revocation lists (KRLs): the binary file sshd reads through `RevokedKeys`,
//! written when an SSH grant is closed early, to revoke its certificate by serial.
//!
//! No Rust crate writes KRLs (`ssh-key` encodes keys and certificates only, and the format is
//! OpenSSH's own), so this file holds a small encoder and a parser for what it needs, after
//! OpenSSH's `PROTOCOL.krl`. Every integer is big-endian; a `string` is a `uint32` length
//! followed by that many bytes.
//!
//! ```text
//! header    "SSHKRL\n\0"  uint32 format_version (1)  uint64 krl_version
//!           uint64 generated_date (Unix seconds)  uint64 flags (0)
//!           string reserved (empty)  string comment
//! sections  (byte section_type, string section_data)*
//!   1 KRL_SECTION_CERTIFICATES: string ca_key (the CA's public key blob), string reserved,
//!     then (byte cert_section_type, string cert_section_data)*
//!       0x20 KRL_SECTION_CERT_SERIAL_LIST: uint64 serial*   (what we write)
//! ```
//!
//! Updating keeps what it does not own: sections for other CAs, explicit keys, hashes and
//! the other certificate subsections (ranges, bitmaps, key ids) are copied byte for byte;
//! only the serial lists of our CA are merged into one, sorted, deduplicated list. A signed
//! KRL is refused (its signature cannot be renewed without the signer's key), and so is a
//! file that is not a KRL (a plain list of revoked keys is also valid for `RevokedKeys`, but
//! it is someone else's file). The new file is written to a temporary file in the same
//! directory, synced, and renamed over the old one, so sshd reads either list, never half.
//!
//! The KRL does not say when a revoked certificate expires, so a sidecar
//! (`<krl>.breakglass.json`) records the `valid_before` of every serial added here. A serial
//! whose certificate expired more than [`PRUNE_MARGIN_SECS`] ago is pruned from the list
//! (sshd refuses the certificate anyway); serials without a record are never pruned. A lost
//! or unreadable sidecar only stops pruning.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use breakglass_domain::Timestamp;
use serde::{Deserialize, Serialize};
use ssh_key::{HashAlg, PublicKey};

/// Revokes certificate `serial` of the CA `ca` in the KRL at `path`, creating the file if it
/// does not exist and keeping every revocation already in it.
///
/// `valid_before` (Unix seconds) is the certificate's end of validity, recorded so the serial
/// can be pruned once it is long expired; `now` dates the KRL and decides pruning. Revoking
/// a serial already listed rewrites nothing. Returns what was done, for the audit log:
/// `written`, `already_revoked`, `krl_version`, `serials` (how many serials of this CA are
/// listed one by one; ranges, bitmaps and key ids written by others are kept, not counted)
/// and `pruned`.
///
/// Errors name the path and what is wrong with the file; they never hold its bytes.
pub fn write_krl(
    path: &Path,
    ca: &PublicKey,
    serial: u64,
    valid_before: u64,
    now: Timestamp,
) -> io::Result<serde_json::Value> {
    if serial == 0 {
        // OpenSSH ignores serial 0 in KRLs (it is the default of certificates without one).
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "serial 0 cannot be revoked by serial",
        ));
    }
    let ca_blob = ca
        .to_bytes()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "unencodable CA public key"))?;
    let ca_fingerprint = ca.fingerprint(HashAlg::Sha256).to_string();
    let now_secs = u64::try_from(now.millis().div_euclid(1000)).unwrap_or(0);

    // One writer at a time in this process: the update is read, modify, rename.
    let _guard = WRITER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());

    let mut krl = match read_limited(path)? {
        None => Krl::empty(),
        Some(bytes) if bytes.is_empty() => Krl::empty(),
        Some(bytes) => Krl::parse(&bytes).map_err(|reason| refused(path, &reason))?,
    };
    if krl.signed() {
        return Err(refused(
            path,
            "it is signed, and breakglass cannot renew a KRL signature",
        ));
    }
    let sidecar_path = sidecar(path);
    let mut expiry = Expiry::load(&sidecar_path);
    let mut serials = krl.take_serials(&ca_blob);
    let already = serials.contains(&serial);
    let pruned = expiry.prune(&ca_fingerprint, now_secs, serial, &mut serials);
    let recorded = expiry.record(&ca_fingerprint, serial, valid_before);

    if already && pruned == 0 {
        let mut done = serde_json::json!({
            "written": false,
            "already_revoked": true,
            "krl_version": krl.version,
            "serials": serials.len(),
            "pruned": 0,
        });
        if recorded && let Err(e) = expiry.save(&sidecar_path) {
            done["expiry_record_error"] = e.to_string().into();
        }
        return Ok(done);
    }

    serials.insert(serial);
    krl.version = krl.version.saturating_add(1);
    krl.generated = now_secs;
    if krl.comment.is_empty() {
        krl.comment = COMMENT.as_bytes().to_vec();
    }
    krl.put_serials(ca_blob, &serials);
    write_atomically(path, &krl.encode())?;

    let mut done = serde_json::json!({
        "written": true,
        "already_revoked": already,
        "krl_version": krl.version,
        "serials": serials.len(),
        "pruned": pruned,
    });
    // The revocation is in force once the KRL is renamed; a failed record only stops the
    // serial from being pruned later, so it is reported, not fatal.
    if let Err(e) = expiry.save(&sidecar_path) {
        done["expiry_record_error"] = e.to_string().into();
    }
    Ok(done)
}

/// What a KRL file holds, for health checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KrlSummary {
    /// `krl_version`, or 0 for an empty file.
    pub(crate) version: u64,
    /// Certificate serials listed, over every CA (serial lists only).
    pub(crate) serials: usize,
    /// Whether the KRL is signed (breakglass will refuse to update it).
    pub(crate) signed: bool,
}

/// Reads and parses the KRL at `path`. An empty file is a valid, empty list (sshd accepts
/// it as a plain key list with no keys).
pub(crate) fn inspect(path: &Path) -> io::Result<KrlSummary> {
    let bytes = read_limited(path)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} does not exist", path.display()),
        )
    })?;
    if bytes.is_empty() {
        return Ok(KrlSummary {
            version: 0,
            serials: 0,
            signed: false,
        });
    }
    let krl = Krl::parse(&bytes).map_err(|reason| refused(path, &reason))?;
    let serials = krl
        .sections
        .iter()
        .map(|s| match s {
            Section::Certificates { subsections, .. } => subsections
                .iter()
                .filter(|(kind, _)| *kind == CERT_SERIAL_LIST)
                .map(|(_, data)| data.len() / 8)
                .sum(),
            Section::Other { .. } => 0,
        })
        .sum();
    Ok(KrlSummary {
        version: krl.version,
        serials,
        signed: krl.signed(),
    })
}

/// Certificates that expired more than this long ago leave the list: sshd refuses them by
/// date, and the margin covers hosts whose clocks run behind.
pub(crate) const PRUNE_MARGIN_SECS: u64 = 7 * 86_400;

const MAGIC: &[u8; 8] = b"SSHKRL\n\0";
const FORMAT_VERSION: u32 = 1;
const SECTION_CERTIFICATES: u8 = 1;
const SECTION_SIGNATURE: u8 = 4;
const CERT_SERIAL_LIST: u8 = 0x20;
const COMMENT: &str = "breakglass";
/// Larger files are refused rather than read: a KRL of a million serials is 8 MB.
const MAX_KRL_BYTES: u64 = 64 * 1024 * 1024;
const MAX_SIDECAR_BYTES: u64 = 64 * 1024 * 1024;

static WRITER: Mutex<()> = Mutex::new(());

fn refused(path: &Path, reason: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{} is not a key revocation list breakglass can update: {reason}",
            path.display()
        ),
    )
}

/// The file's bytes, `None` when it does not exist.
fn read_limited(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    };
    let mut bytes = Vec::new();
    file.take(MAX_KRL_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    if bytes.len() as u64 > MAX_KRL_BYTES {
        return Err(refused(path, "it is larger than 64 MiB"));
    }
    Ok(Some(bytes))
}

/// Writes `bytes` to a temporary file next to `path`, syncs it, and renames it over `path`.
/// The new file keeps the old one's permissions (or gets 0644: sshd must read it).
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let context = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "krl".into());
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let permissions = fs::metadata(path).map(|m| m.permissions()).ok();
    let result = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        file.write_all(bytes)?;
        match permissions {
            Some(p) => file.set_permissions(p)?,
            None => set_readable(&file)?,
        }
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        // The rename is durable once the directory is synced.
        File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(context)
}

#[cfg(unix)]
fn set_readable(file: &File) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(0o644))
}

#[cfg(not(unix))]
fn set_readable(_file: &File) -> io::Result<()> {
    Ok(())
}

/// A parsed KRL. Header `reserved` strings are dropped (they are ignored by the format).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Krl {
    version: u64,
    generated: u64,
    flags: u64,
    comment: Vec<u8>,
    sections: Vec<Section>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Section {
    /// Revoked certificates of one CA: its public key blob and its subsections.
    Certificates {
        ca_key: Vec<u8>,
        subsections: Vec<(u8, Vec<u8>)>,
    },
    /// Any other section, kept byte for byte.
    Other { kind: u8, data: Vec<u8> },
}

impl Krl {
    fn empty() -> Krl {
        Krl {
            version: 0,
            generated: 0,
            flags: 0,
            comment: Vec::new(),
            sections: Vec::new(),
        }
    }

    /// Parses a KRL; the error says what is wrong, never quoting the input.
    fn parse(bytes: &[u8]) -> Result<Krl, String> {
        let mut r = Reader(bytes);
        if r.take(MAGIC.len()).ok() != Some(&MAGIC[..]) {
            return Err("it does not start with the KRL magic `SSHKRL\\n\\0`".into());
        }
        let format = r.u32()?;
        if format != FORMAT_VERSION {
            return Err(format!(
                "format version {format}, expected {FORMAT_VERSION}"
            ));
        }
        let version = r.u64()?;
        let generated = r.u64()?;
        let flags = r.u64()?;
        r.string()?;
        let comment = r.string()?.to_vec();
        let mut sections = Vec::new();
        while !r.is_empty() {
            let kind = r.u8()?;
            let data = r.string()?;
            if kind == SECTION_SIGNATURE {
                // A signature section holds two strings (key, then signature): the second
                // follows outside the first, so consume it to stay in step.
                let signature = r.string()?;
                let mut both = Writer::default();
                both.string(data);
                both.string(signature);
                sections.push(Section::Other { kind, data: both.0 });
                continue;
            }
            if kind == SECTION_CERTIFICATES {
                let mut s = Reader(data);
                let ca_key = s.string()?.to_vec();
                s.string()?;
                let mut subsections = Vec::new();
                while !s.is_empty() {
                    let sub = s.u8()?;
                    let sub_data = s.string()?;
                    if sub == CERT_SERIAL_LIST && sub_data.len() % 8 != 0 {
                        return Err("a serial list whose length is not a multiple of 8".into());
                    }
                    subsections.push((sub, sub_data.to_vec()));
                }
                sections.push(Section::Certificates {
                    ca_key,
                    subsections,
                });
            } else {
                sections.push(Section::Other {
                    kind,
                    data: data.to_vec(),
                });
            }
        }
        Ok(Krl {
            version,
            generated,
            flags,
            comment,
            sections,
        })
    }

    fn signed(&self) -> bool {
        self.sections
            .iter()
            .any(|s| matches!(s, Section::Other { kind, .. } if *kind == SECTION_SIGNATURE))
    }

    /// Removes the serial lists of the CA `ca_key` (from every section for it) and returns
    /// their serials; a section left with no subsection is removed.
    fn take_serials(&mut self, ca_key: &[u8]) -> BTreeSet<u64> {
        let mut serials = BTreeSet::new();
        for section in &mut self.sections {
            if let Section::Certificates {
                ca_key: key,
                subsections,
            } = section
                && key == ca_key
            {
                subsections.retain(|(kind, data)| {
                    if *kind != CERT_SERIAL_LIST {
                        return true;
                    }
                    serials.extend(data.chunks_exact(8).map(|c| {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(c);
                        u64::from_be_bytes(b)
                    }));
                    false
                });
            }
        }
        self.sections.retain(|s| match s {
            Section::Certificates {
                ca_key: key,
                subsections,
            } => key != ca_key || !subsections.is_empty(),
            Section::Other { .. } => true,
        });
        serials
    }

    /// Adds the serial list of the CA `ca_key`: into its remaining section, or a new one.
    fn put_serials(&mut self, ca_key: Vec<u8>, serials: &BTreeSet<u64>) {
        if serials.is_empty() {
            return;
        }
        let list: Vec<u8> = serials.iter().flat_map(|s| s.to_be_bytes()).collect();
        for section in &mut self.sections {
            if let Section::Certificates {
                ca_key: key,
                subsections,
            } = section
                && *key == ca_key
            {
                subsections.insert(0, (CERT_SERIAL_LIST, list));
                return;
            }
        }
        self.sections.push(Section::Certificates {
            ca_key,
            subsections: vec![(CERT_SERIAL_LIST, list)],
        });
    }

    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.0.extend_from_slice(MAGIC);
        w.u32(FORMAT_VERSION);
        w.u64(self.version);
        w.u64(self.generated);
        w.u64(self.flags);
        w.string(b"");
        w.string(&self.comment);
        for section in &self.sections {
            match section {
                Section::Certificates {
                    ca_key,
                    subsections,
                } => {
                    let mut s = Writer::default();
                    s.string(ca_key);
                    s.string(b"");
                    for (kind, data) in subsections {
                        s.u8(*kind);
                        s.string(data);
                    }
                    w.u8(SECTION_CERTIFICATES);
                    w.string(&s.0);
                }
                Section::Other { kind, data } if *kind == SECTION_SIGNATURE => {
                    // Stored as its two strings already encoded; see `parse`.
                    w.u8(*kind);
                    w.0.extend_from_slice(data);
                }
                Section::Other { kind, data } => {
                    w.u8(*kind);
                    w.string(data);
                }
            }
        }
        w.0
    }
}

/// Bounds-checked reads of SSH wire types; running out of bytes is an error, never a panic.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("it ends in the middle of a field (truncated)".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_be_bytes(b))
    }

    fn u64(&mut self) -> Result<u64, String> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(b))
    }

    fn string(&mut self) -> Result<&'a [u8], String> {
        let len = usize::try_from(self.u32()?).map_err(|_| "a string too long".to_string())?;
        self.take(len)
    }
}

#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }

    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }

    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }

    fn string(&mut self, v: &[u8]) {
        // Every string we write is far below 4 GiB (KRL files are capped at 64 MiB).
        self.u32(u32::try_from(v.len()).unwrap_or(u32::MAX));
        self.0.extend_from_slice(v);
    }
}

fn sidecar(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".breakglass.json");
    PathBuf::from(name)
}

/// The sidecar: when each certificate revoked here stops being valid.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Expiry {
    #[serde(default)]
    about: String,
    #[serde(default)]
    entries: Vec<ExpiryEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ExpiryEntry {
    /// SHA-256 fingerprint of the CA.
    ca: String,
    serial: u64,
    /// The certificate's `valid_before`, Unix seconds.
    valid_before: u64,
}

impl Expiry {
    /// The sidecar's records; an absent, unreadable or malformed sidecar is an empty one
    /// (which only means nothing will be pruned).
    fn load(path: &Path) -> Expiry {
        let Ok(file) = File::open(path) else {
            return Expiry::default();
        };
        let mut text = Vec::new();
        if file.take(MAX_SIDECAR_BYTES).read_to_end(&mut text).is_err() {
            return Expiry::default();
        }
        serde_json::from_slice(&text).unwrap_or_default()
    }

    /// Drops the long-expired serials of CA `ca` from the sidecar and from `serials` (never
    /// `keep`, the one being revoked now); returns how many left `serials`.
    fn prune(&mut self, ca: &str, now: u64, keep: u64, serials: &mut BTreeSet<u64>) -> usize {
        let mut pruned = 0;
        self.entries.retain(|e| {
            let expired = e.valid_before.saturating_add(PRUNE_MARGIN_SECS) < now;
            if e.ca != ca || e.serial == keep || !expired {
                return true;
            }
            if serials.remove(&e.serial) {
                pruned += 1;
            }
            false
        });
        pruned
    }

    /// Records a serial's expiry; `false` when it was already recorded.
    fn record(&mut self, ca: &str, serial: u64, valid_before: u64) -> bool {
        let entry = ExpiryEntry {
            ca: ca.to_owned(),
            serial,
            valid_before,
        };
        if self.entries.contains(&entry) {
            return false;
        }
        self.entries.retain(|e| !(e.ca == ca && e.serial == serial));
        self.entries.push(entry);
        true
    }

    fn save(&mut self, path: &Path) -> io::Result<()> {
        self.about = "written by breakglass: when each certificate revoked by serial in the \
                      KRL next to this file expires, so expired serials can be pruned"
            .into();
        let text = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        write_atomically(path, &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngCore;
    use ssh_key::{Algorithm, PrivateKey};

    fn ca() -> PublicKey {
        PrivateKey::random(&mut rand::rngs::OsRng, Algorithm::Ed25519)
            .unwrap()
            .public_key()
            .clone()
    }

    fn serials_of(path: &Path, ca: &PublicKey) -> BTreeSet<u64> {
        let mut krl = Krl::parse(&fs::read(path).unwrap()).unwrap();
        krl.take_serials(&ca.to_bytes().unwrap())
    }

    const DAY_MS: i64 = 86_400_000;

    #[test]
    fn revocations_accumulate_and_repeat_without_rewriting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("revoked.krl");
        let ca = ca();
        let now = Timestamp(1_800_000_000_000);
        let a = write_krl(&path, &ca, 7, 1_800_000_100, now).unwrap();
        assert_eq!(a["written"], true);
        assert_eq!(a["krl_version"], 1);
        let b = write_krl(&path, &ca, 3, 1_800_000_100, now).unwrap();
        assert_eq!(b["krl_version"], 2);
        assert_eq!(b["serials"], 2);
        assert_eq!(serials_of(&path, &ca), BTreeSet::from([3, 7]));
        let again = write_krl(&path, &ca, 7, 1_800_000_100, now).unwrap();
        assert_eq!(again["written"], false);
        assert_eq!(again["already_revoked"], true);
        assert_eq!(inspect(&path).unwrap().version, 2);
        assert_eq!(inspect(&path).unwrap().serials, 2);
    }

    #[test]
    fn other_sections_and_other_cas_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("revoked.krl");
        let ours = ca();
        let theirs = ca();
        let mut krl = Krl::empty();
        krl.version = 41;
        krl.comment = b"managed by hand".to_vec();
        krl.sections.push(Section::Certificates {
            ca_key: theirs.to_bytes().unwrap(),
            subsections: vec![(CERT_SERIAL_LIST, 5u64.to_be_bytes().to_vec())],
        });
        krl.sections.push(Section::Certificates {
            ca_key: ours.to_bytes().unwrap(),
            subsections: vec![
                (CERT_SERIAL_LIST, 9u64.to_be_bytes().to_vec()),
                // A key-id list: one string.
                (0x23, b"\0\0\0\x03bob".to_vec()),
            ],
        });
        krl.sections.push(Section::Other {
            kind: 5,
            data: vec![0, 0, 0, 32].into_iter().chain([7u8; 32]).collect(),
        });
        fs::write(&path, krl.encode()).unwrap();

        write_krl(&path, &ours, 11, 0, Timestamp(0)).unwrap();
        let after = Krl::parse(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(after.version, 42);
        assert_eq!(after.comment, b"managed by hand");
        assert_eq!(after.sections.len(), 3);
        assert_eq!(after.sections[0], krl.sections[0]);
        assert_eq!(after.sections[2], krl.sections[2]);
        let Section::Certificates { subsections, .. } = &after.sections[1] else {
            panic!("our CA's section moved");
        };
        assert_eq!(subsections[1], (0x23, b"\0\0\0\x03bob".to_vec()));
        assert_eq!(serials_of(&path, &ours), BTreeSet::from([9, 11]));
        assert_eq!(serials_of(&path, &theirs), BTreeSet::from([5]));
    }

    #[test]
    fn long_expired_serials_recorded_here_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("revoked.krl");
        let ca = ca();
        let day0 = Timestamp(1_800_000_000_000);
        write_krl(&path, &ca, 1, 1_800_000_600, day0).unwrap();
        write_krl(&path, &ca, 2, 1_800_000_600 + 30 * 86_400, day0).unwrap();
        // A week and a day after the first certificate expired, it leaves; the other stays.
        let later = Timestamp(day0.0 + 8 * DAY_MS + 600_000);
        let done = write_krl(&path, &ca, 3, 1_800_800_000, later).unwrap();
        assert_eq!(done["pruned"], 1);
        assert_eq!(serials_of(&path, &ca), BTreeSet::from([2, 3]));
        let sidecar: Expiry = serde_json::from_slice(&fs::read(sidecar(&path)).unwrap()).unwrap();
        let recorded: Vec<u64> = sidecar.entries.iter().map(|e| e.serial).collect();
        assert_eq!(recorded, vec![2, 3]);
    }

    #[test]
    fn signed_and_foreign_files_are_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("revoked");
        let ca = ca();
        fs::write(&path, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA plain list\n").unwrap();
        let e = write_krl(&path, &ca, 1, 0, Timestamp(0)).unwrap_err();
        assert!(e.to_string().contains("not a key revocation list"), "{e}");
        assert!(!e.to_string().contains("AAAA"), "{e}");

        let mut krl = Krl::empty();
        let mut sig = Writer::default();
        sig.string(b"key");
        sig.string(b"signature");
        krl.sections.push(Section::Other {
            kind: SECTION_SIGNATURE,
            data: sig.0,
        });
        let bytes = krl.encode();
        assert_eq!(Krl::parse(&bytes).unwrap(), krl);
        fs::write(&path, &bytes).unwrap();
        let e = write_krl(&path, &ca, 1, 0, Timestamp(0)).unwrap_err();
        assert!(e.to_string().contains("signed"), "{e}");
        assert_eq!(fs::read(&path).unwrap(), bytes);
        assert!(inspect(&path).unwrap().signed);
    }

    #[test]
    fn serial_zero_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let e = write_krl(&dir.path().join("k"), &ca(), 0, 0, Timestamp(0)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn truncated_and_random_bytes_never_panic() {
        let ca = ca();
        let mut krl = Krl::empty();
        krl.put_serials(ca.to_bytes().unwrap(), &BTreeSet::from([1, 2, 3]));
        krl.sections.push(Section::Other {
            kind: 2,
            data: b"\0\0\0\x01x".to_vec(),
        });
        let bytes = krl.encode();
        assert_eq!(Krl::parse(&bytes).unwrap(), krl);
        // A prefix parses only when it ends between sections, and then it has fewer.
        for n in 0..bytes.len() {
            if let Ok(prefix) = Krl::parse(&bytes[..n]) {
                assert!(
                    prefix.sections.len() < krl.sections.len(),
                    "prefix of {n} bytes"
                );
            }
        }
        let mut rng = rand::rngs::OsRng;
        for _ in 0..2000 {
            let mut b = bytes.clone();
            let i = (rng.next_u32() as usize) % b.len();
            b[i] = rng.next_u32() as u8;
            let _ = Krl::parse(&b);
            let mut junk = vec![0u8; (rng.next_u32() % 64) as usize];
            rng.fill_bytes(&mut junk);
            let mut with_magic = MAGIC.to_vec();
            with_magic.extend_from_slice(&junk);
            let _ = Krl::parse(&junk);
            let _ = Krl::parse(&with_magic);
        }
    }
}
