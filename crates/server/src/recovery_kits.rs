//! The recovery-kit worker (`serve --recovery-kit-dir DIR`): after every seal (and whenever a
//! kit file is missing or holds another kit) it writes `DIR/PROCEDURE.kit` atomically and
//! records the export, which readiness reads.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use breakglass_engine::Engine;

/// Checks every second; a re-seal is exported within about a second.
pub async fn worker(
    engine: Engine,
    dir: Option<PathBuf>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let Some(dir) = dir else { return };
    let mut seen = KitFiles::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        match export_due(&engine, &dir, &mut seen).await {
            Ok(n) if n > 0 => {
                tracing::info!(kits = n, dir = %dir.display(), "recovery kits exported")
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "recovery kit export failed; retrying"),
        }
    }
}

/// The kit ids of the kit files last read, by path, with the size and time of change they had
/// then: a file that has not changed since is not read and parsed again every second.
#[derive(Default)]
pub struct KitFiles(HashMap<PathBuf, (u64, SystemTime, String)>);

impl KitFiles {
    fn kit_id(&mut self, path: &Path) -> Option<String> {
        let meta = std::fs::metadata(path).ok()?;
        let (len, modified) = (meta.len(), meta.modified().ok()?);
        if let Some((l, m, id)) = self.0.get(path)
            && (*l, *m) == (len, modified)
        {
            return Some(id.clone());
        }
        let id = kit_id_on_disk(path)?;
        self.0.insert(path.to_owned(), (len, modified, id.clone()));
        Some(id)
    }
}

/// Exports every kit that is missing, stale or not on disk as recorded; returns how many.
pub async fn export_due(engine: &Engine, dir: &Path, seen: &mut KitFiles) -> Result<usize, String> {
    let mut written = 0;
    let mut first_error = None;
    for (procedure, seal, last) in engine
        .recovery_kit_exports()
        .await
        .map_err(|e| e.to_string())?
    {
        let path = dir.join(format!("{procedure}.kit"));
        let current = last
            .as_ref()
            .is_some_and(|k| k.seal_id == seal && seen.kit_id(&path).as_deref() == Some(&k.kit_id));
        if current {
            continue;
        }
        // One procedure's failure (e.g. its custodians changed since the seal) does not keep
        // the others from being exported; the first error is reported after the round.
        let result = async {
            let kit = engine
                .build_kit_for_export(&procedure)
                .await
                .map_err(|e| format!("{procedure}: {e}"))?;
            write_atomically(&path, kit.text.as_bytes())
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
            engine
                .record_kit_export(&kit, &path.display().to_string())
                .await
                .map_err(|e| format!("{procedure}: {e}"))
        }
        .await;
        match result {
            Ok(()) => written += 1,
            Err(e) if first_error.is_none() => first_error = Some(e),
            Err(_) => {}
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(written),
    }
}

fn kit_id_on_disk(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let doc: serde_json::Value = serde_json::from_str(&text).ok()?;
    doc.get("kit_id")?.as_str().map(str::to_owned)
}

/// Writes a temporary file beside `path`, syncs it, and renames it over `path`, so a reader
/// sees the old kit or the new one, never half of one.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("kit.tmp");
    {
        // Owner-only, like the other files the server writes: a kit is the credential's
        // ciphertext, useless without a quorum of custodian keys but not for everyone's eyes.
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut f = options.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
