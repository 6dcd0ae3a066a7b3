//! The drill runner's identities in the data dir: `drill/NAME.key` (age X25519, mode 0600),
//! one per custodian name and one for the runner itself, created on first use. They open
//! only drill credentials (sealed to them by `breakglass seal PROCEDURE --drill`), never a
//! real seal, which is sealed to the custodians' own keys.

use std::path::PathBuf;
use std::sync::Mutex;

use breakglass_custody::Identity;
use breakglass_engine::ports::DrillKeys;
use secrecy::ExposeSecret;

/// Drill identities kept under `DATA_DIR/drill/`.
pub struct DirDrillKeys {
    dir: PathBuf,
    /// Serializes creation, so two drills never race to create the same key.
    create: Mutex<()>,
}

impl DirDrillKeys {
    /// Keys under `dir` (created with mode 0700 on first use).
    pub fn new(dir: PathBuf) -> DirDrillKeys {
        DirDrillKeys {
            dir,
            create: Mutex::new(()),
        }
    }
}

/// A file name for a custodian name: names are validated by the procedure format, but the
/// file system is not the place to find out they were not.
fn file_name(name: &str) -> Result<String, String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
        && !name.starts_with('.');
    if ok {
        Ok(format!("{name}.key"))
    } else {
        Err(format!("`{name}` cannot name a drill identity file"))
    }
}

impl DrillKeys for DirDrillKeys {
    fn identity(&self, name: &str) -> Result<Identity, String> {
        let path = self.dir.join(file_name(name)?);
        let _guard = self.create.lock().unwrap_or_else(|p| p.into_inner());
        if !path.exists() {
            crate::create_private_dir(&self.dir).map_err(|e| e.to_string())?;
            let (text, _) = breakglass_custody::keygen();
            crate::write_private_file(&path, text.expose_secret().as_bytes())
                .map_err(|e| e.to_string())?;
        }
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(&path)
                .map_err(|e| format!("reading {}: {e}", path.display()))?,
        );
        Identity::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_once_then_reloads_the_same_identity() {
        let dir = tempfile::tempdir().unwrap();
        let keys = DirDrillKeys::new(dir.path().join("drill"));
        let a = keys.identity("alice").unwrap().public();
        let again = keys.identity("alice").unwrap().public();
        assert_eq!(a, again);
        assert_ne!(a, keys.identity("bob").unwrap().public());
        assert!(keys.identity("../etc/passwd").is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("drill/alice.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "identity file is private");
        }
    }
}
