//! The server's audit signing key in the data dir (`audit.key`, mode 0600): created at first
//! start, loaded after, and replaced on rotation through `audit.key.next` so a crash between
//! the rotation's commit and the file rename is repaired at the next start.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use breakglass_audit::AuditKey;
use breakglass_engine::Engine;

/// File name of the current key.
pub const KEY_FILE: &str = "audit.key";
/// File name of a key being rotated in.
pub const NEXT_FILE: &str = "audit.key.next";

fn read_key(path: &Path) -> Result<AuditKey> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
    );
    AuditKey::from_file_text(&text).with_context(|| format!("parsing {}", path.display()))
}

/// A new key from the operating system's random source.
pub fn generate() -> AuditKey {
    use rand::RngCore;
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    rand::thread_rng().fill_bytes(seed.as_mut());
    AuditKey::from_seed(*seed)
}

/// Loads the key, finishing an interrupted rotation, or creates one.
pub async fn load_or_create(data_dir: &Path, engine: &Engine) -> Result<AuditKey> {
    let path = data_dir.join(KEY_FILE);
    let next = data_dir.join(NEXT_FILE);
    if next.exists() {
        // A rotation committed its audit entry but crashed before the rename: the log decides.
        let next_key = read_key(&next)?;
        let logged = engine.current_audit_key_id().await?;
        if logged.as_deref() == Some(next_key.key_id().as_str()) {
            std::fs::rename(&next, &path).context("finishing an interrupted audit key rotation")?;
        } else {
            std::fs::remove_file(&next).context("discarding an uncommitted audit key")?;
        }
    }
    if path.exists() {
        return read_key(&path);
    }
    let key = generate();
    crate::write_private_file(&path, key.expose_file_text().as_bytes())?;
    Ok(key)
}

/// Rotates: writes the new key beside the old, commits the rotation, then renames it in.
pub async fn rotate(
    data_dir: &Path,
    engine: &Engine,
    by: &breakglass_domain::Actor,
) -> Result<(String, String)> {
    let new = generate();
    let next: PathBuf = data_dir.join(NEXT_FILE);
    crate::write_private_file(&next, new.expose_file_text().as_bytes())?;
    let new_id = new.key_id();
    let old_id = match engine.rotate_audit_key(by, new).await {
        Ok(id) => id,
        Err(e) => {
            let _ = std::fs::remove_file(&next);
            return Err(e.into());
        }
    };
    std::fs::rename(&next, data_dir.join(KEY_FILE)).context("installing the new audit key file")?;
    Ok((old_id, new_id))
}
