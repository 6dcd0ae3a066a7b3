//! The JSON Lines file sink: one record per line, appended and fsynced before `deliver`
//! returns, rotated by size into sequence-numbered files that are never deleted.
//!
//! URL: `file:///var/log/breakglass/audit.jsonl?max_bytes=104857600` (absolute path; `%XX`
//! escapes allowed; `max_bytes` defaults to 100 MiB).
//!
//! **Rotation.** Before a write that would take the current file past `max_bytes`, the
//! current file is renamed to `audit.jsonl.N`, where N is one more than the highest number
//! already rotated (`.1` is the *oldest* rotated file — the reverse of logrotate's order), and
//! a new current file is started. A rotated file is renamed exactly once and never again,
//! never rewritten and never deleted, so tools that archive or hash rotated files see stable
//! names. A single record longer than `max_bytes` gets a file of its own.
//!
//! **Redelivery.** The outbox may deliver the last record again after a crash. The sink keeps
//! the message ids of the last [`RECENT_IDS`] records (read back from the tail of the current
//! file, and of the newest rotated file when the current one is short, when the sink starts)
//! and skips a record whose id is among them.
//!
//! **Crash during a write.** A line without its final `\n` was never acknowledged, so when the
//! sink (re)opens its file it truncates such a torn tail; the outbox delivers the record again.
//!
//! The sink touches the file system lazily, on the first `deliver`: a server starts while its
//! log volume is missing, and `deliver` reports [`SinkError::Unavailable`] until it is back.
//! Directories are not created: the operator creates them with the right owner and mode.

use std::collections::{HashSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use breakglass_audit::SinkRecord;
use breakglass_engine::ports::{Sink, SinkError};

/// Default rotation size: 100 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 100 * 1024 * 1024;

/// How many recent message ids the sink remembers to skip redeliveries.
pub const RECENT_IDS: usize = 1000;

/// How much of a file's tail is read at start to recover the recent message ids.
const TAIL_BYTES: u64 = 1024 * 1024;

/// Mode of the files the sink creates: the owner writes, its group (e.g. a log shipper) reads.
const FILE_MODE: u32 = 0o640;

/// A JSON Lines file sink. Cheap to share: `deliver` and `read_back` serialize on an inner lock.
#[derive(Debug)]
pub struct FileSink {
    name: String,
    state: Arc<Mutex<State>>,
}

impl FileSink {
    /// Parses `file:///abs/path/audit.jsonl?max_bytes=N`. Does not touch the file system; the
    /// first `deliver` opens (or creates) the file.
    pub fn open(name: &str, url: &str) -> Result<FileSink, String> {
        let config = parse_url(url)?;
        Ok(FileSink {
            name: name.to_owned(),
            state: Arc::new(Mutex::new(State {
                path: config.path,
                max_bytes: config.max_bytes,
                writer: None,
                recent: Recent::default(),
            })),
        })
    }

    /// The current file's path (rotated files are this path with `.1`, `.2`, … appended).
    pub fn path(&self) -> PathBuf {
        match self.state.lock() {
            Ok(state) => state.path.clone(),
            Err(poisoned) => poisoned.into_inner().path.clone(),
        }
    }

    /// Runs `f` on the locked state on tokio's blocking pool.
    async fn with_state<T, F>(&self, f: F) -> Result<T, SinkError>
    where
        T: Send + 'static,
        F: FnOnce(&mut State) -> Result<T, SinkError> + Send + 'static,
    {
        let state = Arc::clone(&self.state);
        tokio::task::spawn_blocking(move || {
            let mut guard = state.lock().map_err(|_| {
                SinkError::Unavailable("file sink state lost to an earlier panic".into())
            })?;
            f(&mut guard)
        })
        .await
        .map_err(|e| SinkError::Unavailable(format!("file sink task failed: {e}")))?
    }
}

#[async_trait]
impl Sink for FileSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn deliver(&self, record: &SinkRecord) -> Result<(), SinkError> {
        let id = record.message_id();
        let mut line = record.to_line();
        line.push('\n');
        self.with_state(move |state| {
            let result = state.deliver(id, line.as_bytes());
            if result.is_err() {
                // A failed write may have left a torn line; reopening finds and truncates it.
                state.writer = None;
            }
            result
        })
        .await
    }

    async fn read_back(&self) -> Result<Vec<SinkRecord>, SinkError> {
        self.with_state(|state| state.read_back()).await
    }
}

/// What the URL configures.
struct Config {
    path: PathBuf,
    max_bytes: u64,
}

fn parse_url(url: &str) -> Result<Config, String> {
    let rest = url
        .strip_prefix("file://")
        .ok_or("expected file:///absolute/path")?;
    let (raw_path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    if !raw_path.starts_with('/') {
        return Err("expected file:///absolute/path (three slashes, no host)".into());
    }
    let path = PathBuf::from(percent_decode(raw_path)?);
    if path.file_name().is_none() || raw_path.ends_with('/') {
        return Err("the path must name a file, not a directory".into());
    }
    let mut max_bytes = DEFAULT_MAX_BYTES;
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        match pair.split_once('=') {
            Some(("max_bytes", v)) => {
                max_bytes = v
                    .parse::<u64>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or("max_bytes must be a positive integer")?;
            }
            _ => return Err(format!("unknown parameter `{pair}` (known: max_bytes)")),
        }
    }
    Ok(Config { path, max_bytes })
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("bad %-escape in the path")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let decoded = String::from_utf8(out).map_err(|_| "the path is not UTF-8")?;
    if decoded.contains('\0') {
        return Err("the path holds a NUL byte".into());
    }
    Ok(decoded)
}

/// The sink's mutable state, behind the lock.
#[derive(Debug)]
struct State {
    path: PathBuf,
    max_bytes: u64,
    /// The open current file, or `None` before the first delivery and after an error.
    writer: Option<Writer>,
    recent: Recent,
}

#[derive(Debug)]
struct Writer {
    file: File,
    size: u64,
}

/// The last [`RECENT_IDS`] message ids written, oldest first.
#[derive(Debug, Default)]
struct Recent {
    order: VecDeque<String>,
    set: HashSet<String>,
}

impl Recent {
    fn contains(&self, id: &str) -> bool {
        self.set.contains(id)
    }

    fn push(&mut self, id: String) {
        if self.set.insert(id.clone()) {
            self.order.push_back(id);
        }
        while self.order.len() > RECENT_IDS {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }
}

impl State {
    fn deliver(&mut self, id: String, line: &[u8]) -> Result<(), SinkError> {
        if self.writer.is_none() {
            self.reopen()?;
        }
        if self.recent.contains(&id) {
            tracing::debug!(path = %self.path.display(), %id, "record already written; skipped");
            return Ok(());
        }
        let len = line.len() as u64;
        let must_rotate = self
            .writer
            .as_ref()
            .is_some_and(|w| w.size > 0 && w.size.saturating_add(len) > self.max_bytes);
        if must_rotate {
            self.rotate()?;
        }
        let path = self.path.clone();
        let writer = self
            .writer
            .as_mut()
            .ok_or_else(|| SinkError::Unavailable("file sink is not open".into()))?;
        writer
            .file
            .write_all(line)
            .and_then(|()| writer.file.sync_data())
            .map_err(|e| io_error("cannot write", &path, &e))?;
        writer.size += len;
        self.recent.push(id);
        Ok(())
    }

    /// Opens (or creates) the current file, truncates a torn last line, and reloads the recent
    /// message ids from the tail of the log.
    fn reopen(&mut self) -> Result<(), SinkError> {
        let path = &self.path;
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(FILE_MODE)
            .open(path)
            .map_err(|e| io_error("cannot open", path, &e))?;
        let mut size = file
            .metadata()
            .map_err(|e| io_error("cannot stat", path, &e))?
            .len();
        let (tail, start) =
            read_tail(&mut file, size).map_err(|e| io_error("cannot read", path, &e))?;
        if tail.last().is_some_and(|&b| b != b'\n') {
            // The last write never completed, so it was never acknowledged: drop the torn bytes.
            let keep = tail
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(start, |i| start + i as u64 + 1);
            tracing::warn!(path = %path.display(), bytes = size - keep, "truncating a torn last line");
            file.set_len(keep)
                .and_then(|()| file.sync_all())
                .map_err(|e| io_error("cannot truncate a torn line in", path, &e))?;
            size = keep;
        }
        sync_parent(path)?;

        let mut ids = Vec::new();
        if size < TAIL_BYTES {
            // The current file is short (perhaps just rotated): the newest rotated file holds
            // the records before it.
            if let Some((_, newest)) = rotated_files(path)?.pop() {
                let mut old =
                    File::open(&newest).map_err(|e| io_error("cannot open", &newest, &e))?;
                let old_size = old
                    .metadata()
                    .map_err(|e| io_error("cannot stat", &newest, &e))?
                    .len();
                let (old_tail, old_start) = read_tail(&mut old, old_size)
                    .map_err(|e| io_error("cannot read", &newest, &e))?;
                collect_ids(&old_tail, old_start > 0, &mut ids);
            }
        }
        let (tail, start) =
            read_tail(&mut file, size).map_err(|e| io_error("cannot read", path, &e))?;
        collect_ids(&tail, start > 0, &mut ids);
        let mut recent = Recent::default();
        for id in ids {
            recent.push(id);
        }
        self.recent = recent;
        self.writer = Some(Writer { file, size });
        Ok(())
    }

    /// Renames the current file to the next sequence number and starts a new one.
    fn rotate(&mut self) -> Result<(), SinkError> {
        let next = rotated_files(&self.path)?
            .last()
            .map_or(1, |(n, _)| n.saturating_add(1));
        let target = rotated_path(&self.path, next);
        // The old handle must not receive writes after the rename.
        self.writer = None;
        if target.exists() {
            return Err(SinkError::Rejected(format!(
                "cannot rotate {}: {} already exists",
                self.path.display(),
                target.display()
            )));
        }
        fs::rename(&self.path, &target).map_err(|e| io_error("cannot rotate", &self.path, &e))?;
        sync_parent(&self.path)?;
        tracing::info!(path = %self.path.display(), rotated = %target.display(), "rotated audit file");
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(FILE_MODE)
            .open(&self.path)
            .map_err(|e| io_error("cannot open", &self.path, &e))?;
        sync_parent(&self.path)?;
        self.writer = Some(Writer { file, size: 0 });
        Ok(())
    }

    fn read_back(&mut self) -> Result<Vec<SinkRecord>, SinkError> {
        let mut files: Vec<PathBuf> = rotated_files(&self.path)?
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        if self.path.exists() {
            files.push(self.path.clone());
        }
        let mut records = Vec::new();
        for path in files {
            let bytes = fs::read(&path).map_err(|e| io_error("cannot read", &path, &e))?;
            let body = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
            if body.is_empty() {
                continue;
            }
            for (i, raw) in body.split(|&b| b == b'\n').enumerate() {
                let at = || format!("{} line {}", path.display(), i + 1);
                let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
                let line = std::str::from_utf8(raw)
                    .map_err(|_| SinkError::Rejected(format!("{}: not UTF-8", at())))?;
                let record = SinkRecord::from_line(line)
                    .map_err(|e| SinkError::Rejected(format!("{}: {e}", at())))?;
                records.push(record);
            }
        }
        Ok(records)
    }
}

/// The rotated files of `path`, by ascending sequence number (oldest first).
fn rotated_files(path: &Path) -> Result<Vec<(u64, PathBuf)>, SinkError> {
    let dir = parent(path);
    let base = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| SinkError::Rejected(format!("{} has no file name", path.display())))?;
    let entries = fs::read_dir(dir).map_err(|e| io_error("cannot list", dir, &e))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error("cannot list", dir, &e))?;
        let name = entry.file_name();
        let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_prefix(base))
            .and_then(|n| n.strip_prefix('.'))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        found.push((n, rotated_path(path, n)));
    }
    found.sort();
    Ok(found)
}

fn rotated_path(path: &Path, n: u64) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("/"),
    }
}

/// Makes a create or rename in `path`'s directory durable.
fn sync_parent(path: &Path) -> Result<(), SinkError> {
    let dir = parent(path);
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("cannot sync directory", dir, &e))
}

/// Reads at most the last [`TAIL_BYTES`] of `file` (more when needed to reach a line start).
/// Returns the bytes and the offset they start at.
fn read_tail(file: &mut File, size: u64) -> io::Result<(Vec<u8>, u64)> {
    let mut want = TAIL_BYTES.min(size);
    loop {
        let start = size - want;
        file.seek(SeekFrom::Start(start))?;
        let mut buf = Vec::new();
        Read::by_ref(file).take(want).read_to_end(&mut buf)?;
        // Keep going back until the window holds a newline before its last byte, so at least
        // one whole line (or the torn tail's start) is visible.
        let has_boundary = buf
            .iter()
            .take(buf.len().saturating_sub(1))
            .any(|&b| b == b'\n');
        if start == 0 || has_boundary {
            return Ok((buf, start));
        }
        want = want.saturating_mul(2).min(size);
    }
}

/// Adds the message id of every whole line in `tail` to `ids`. When `partial_start`, the first
/// line may be cut and is skipped. Lines that do not parse are ignored here (`read_back`
/// reports them).
fn collect_ids(tail: &[u8], partial_start: bool, ids: &mut Vec<String>) {
    let mut lines = tail.split(|&b| b == b'\n');
    if partial_start {
        lines.next();
    }
    for raw in lines {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.is_empty() {
            continue;
        }
        if let Some(record) = std::str::from_utf8(raw)
            .ok()
            .and_then(|l| SinkRecord::from_line(l).ok())
        {
            ids.push(record.message_id());
        }
    }
}

fn io_error(what: &str, path: &Path, e: &io::Error) -> SinkError {
    SinkError::Unavailable(format!("{what} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let c = parse_url("file:///var/log/bg/audit.jsonl").expect("parses");
        assert_eq!(c.path, PathBuf::from("/var/log/bg/audit.jsonl"));
        assert_eq!(c.max_bytes, DEFAULT_MAX_BYTES);
        let c = parse_url("file:///a%20b/audit.jsonl?max_bytes=10").expect("parses");
        assert_eq!(c.path, PathBuf::from("/a b/audit.jsonl"));
        assert_eq!(c.max_bytes, 10);
        for bad in [
            "file://relative/audit.jsonl",
            "file:///var/log/",
            "file:///a?max_bytes=0",
            "file:///a?max_bytes=x",
            "file:///a?rotate=1",
            "file:///a%2",
            "file:///a%00b",
            "file:///a%ff",
            "nats://x",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn recent_ids_are_bounded() {
        let mut r = Recent::default();
        for i in 0..RECENT_IDS + 5 {
            r.push(format!("entry-{i}"));
        }
        assert_eq!(r.order.len(), RECENT_IDS);
        assert!(!r.contains("entry-4"));
        assert!(r.contains("entry-5"));
    }
}
