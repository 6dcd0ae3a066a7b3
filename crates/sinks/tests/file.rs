//! The JSON Lines file sink against a real directory: round trip, idempotent redelivery,
//! rotation, an unwritable directory, reopening, and corrupt lines.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use breakglass_audit::{AuditKey, Draft, Head, SinkRecord, append};
use breakglass_engine::ports::{Sink, SinkError};
use breakglass_sinks::file::FileSink;
use serde_json::json;

/// `n` chained entries followed by a checkpoint of the last.
fn records(n: u64) -> Vec<SinkRecord> {
    let mut head: Option<Head> = None;
    let mut out = Vec::new();
    for i in 0..n {
        let entry = append(
            head.as_ref(),
            Draft {
                time_ms: 1_795_910_341_123 + i as i64,
                actor: "alice".into(),
                kind: "break.requested".into(),
                procedure: Some("prod-db-root".into()),
                break_id: Some(format!("brk_{i}")),
                payload: json!({"reason": "primary DB down", "i": i}),
            },
        )
        .unwrap();
        head = Some(Head {
            seq: entry.seq,
            hash: entry.hash,
        });
        out.push(SinkRecord::Entry(entry));
    }
    let head = head.unwrap();
    let checkpoint =
        AuditKey::from_seed([1; 32]).sign_checkpoint(head.seq, head.hash, 1_795_910_400_000);
    out.push(SinkRecord::Checkpoint(checkpoint));
    out
}

fn url(path: &Path, max_bytes: Option<u64>) -> String {
    match max_bytes {
        Some(n) => format!("file://{}?max_bytes={n}", path.display()),
        None => format!("file://{}", path.display()),
    }
}

async fn deliver_all(sink: &FileSink, records: &[SinkRecord]) {
    for r in records {
        sink.deliver(r).await.unwrap();
    }
}

#[tokio::test]
async fn delivers_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let sink = FileSink::open("file", &url(&path, None)).unwrap();
    assert_eq!(sink.name(), "file");
    assert!(sink.read_back().await.unwrap().is_empty());
    let recs = records(5);
    deliver_all(&sink, &recs).await;
    assert_eq!(sink.read_back().await.unwrap(), recs);

    // The file is exactly the lines, each ending with a newline.
    let expected: String = recs.iter().map(|r| r.to_line() + "\n").collect();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), expected);
}

#[tokio::test]
async fn redelivery_leaves_one_copy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let sink = FileSink::open("file", &url(&path, None)).unwrap();
    let recs = records(3);
    deliver_all(&sink, &recs).await;
    sink.deliver(recs.last().unwrap()).await.unwrap();
    sink.deliver(&recs[2]).await.unwrap();
    assert_eq!(sink.read_back().await.unwrap(), recs);

    // After a restart the sink remembers what the file already holds.
    drop(sink);
    let again = FileSink::open("file", &url(&path, None)).unwrap();
    again.deliver(recs.last().unwrap()).await.unwrap();
    assert_eq!(again.read_back().await.unwrap(), recs);
}

#[tokio::test]
async fn rotates_by_size_and_reads_back_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let recs = records(12);
    let line_len = recs[0].to_line().len() as u64 + 1;
    // Room for about two entries per file.
    let max = line_len * 2 + line_len / 2;
    let sink = FileSink::open("file", &url(&path, Some(max))).unwrap();
    deliver_all(&sink, &recs).await;

    let mut files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    assert!(files.contains(&"audit.jsonl".to_owned()));
    assert!(files.contains(&"audit.jsonl.1".to_owned()));
    for f in &files {
        let size = std::fs::metadata(dir.path().join(f)).unwrap().len();
        assert!(size <= max, "{f} holds {size} bytes, more than {max}");
    }
    // `.1` is the oldest: it starts with the first entry.
    let first = std::fs::read_to_string(dir.path().join("audit.jsonl.1")).unwrap();
    assert!(first.starts_with(&recs[0].to_line()));

    assert_eq!(sink.read_back().await.unwrap(), recs);

    // Redelivering the last record right after a rotation (a fresh sink, a short current
    // file) still finds it in the newest rotated file.
    drop(sink);
    let again = FileSink::open("file", &url(&path, Some(max))).unwrap();
    for r in &recs[recs.len() - 3..] {
        again.deliver(r).await.unwrap();
    }
    assert_eq!(again.read_back().await.unwrap(), recs);

    // A record longer than max_bytes gets a file of its own.
    let tiny = FileSink::open("tiny", &url(&dir.path().join("tiny.jsonl"), Some(10))).unwrap();
    deliver_all(&tiny, &recs[..3]).await;
    assert!(dir.path().join("tiny.jsonl.2").exists());
    assert_eq!(tiny.read_back().await.unwrap(), recs[..3].to_vec());
}

#[tokio::test]
async fn survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let recs = records(6);
    {
        let sink = FileSink::open("file", &url(&path, None)).unwrap();
        deliver_all(&sink, &recs[..3]).await;
    }
    let sink = FileSink::open("file", &url(&path, None)).unwrap();
    assert_eq!(sink.read_back().await.unwrap(), recs[..3].to_vec());
    deliver_all(&sink, &recs[3..]).await;
    assert_eq!(sink.read_back().await.unwrap(), recs);
}

#[tokio::test]
async fn torn_last_line_is_truncated_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let recs = records(3);
    let sink = FileSink::open("file", &url(&path, None)).unwrap();
    deliver_all(&sink, &recs[..2]).await;
    drop(sink);
    // A crash in the middle of writing the third line.
    let torn = &recs[2].to_line()[..40];
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(torn.as_bytes());
    std::fs::write(&path, bytes).unwrap();

    let sink = FileSink::open("file", &url(&path, None)).unwrap();
    deliver_all(&sink, &recs[2..]).await;
    assert_eq!(sink.read_back().await.unwrap(), recs);
}

#[tokio::test]
async fn unwritable_directory_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let recs = records(1);

    // A missing directory (a log volume not mounted) is not created.
    let missing = dir.path().join("missing").join("audit.jsonl");
    let sink = FileSink::open("file", &url(&missing, None)).unwrap();
    assert!(matches!(
        sink.deliver(&recs[0]).await,
        Err(SinkError::Unavailable(_))
    ));
    assert!(matches!(
        sink.read_back().await,
        Err(SinkError::Unavailable(_))
    ));

    // A "directory" that is a file.
    let not_dir = dir.path().join("plain");
    std::fs::write(&not_dir, b"").unwrap();
    let sink = FileSink::open("file", &url(&not_dir.join("audit.jsonl"), None)).unwrap();
    let err = sink.deliver(&recs[0]).await.unwrap_err();
    assert!(matches!(err, SinkError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("plain"), "{err}");

    // A read-only directory (root ignores the mode, so this part is checked only when the
    // mode actually stops us).
    use std::os::unix::fs::PermissionsExt;
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    if std::fs::write(ro.join("probe"), b"").is_err() {
        let sink = FileSink::open("file", &url(&ro.join("audit.jsonl"), None)).unwrap();
        let err = sink.deliver(&recs[0]).await.unwrap_err();
        assert!(matches!(err, SinkError::Unavailable(_)), "{err}");
    }
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();

    // Once the directory exists, the same sink delivers.
    std::fs::create_dir(dir.path().join("missing")).unwrap();
    let sink = FileSink::open("file", &url(&missing, None)).unwrap();
    deliver_all(&sink, &recs).await;
    assert_eq!(sink.read_back().await.unwrap(), recs);
}

#[tokio::test]
async fn corrupt_line_is_rejected_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let recs = records(2);
    let sink = FileSink::open("file", &url(&path, None)).unwrap();
    deliver_all(&sink, &recs).await;
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines[1] = "{\"seq\":2,\"garbage\":\u{fffd}";
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let err = sink.read_back().await.unwrap_err();
    assert!(matches!(err, SinkError::Rejected(_)), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("audit.jsonl line 2"), "{msg}");

    std::fs::write(&path, [b"\xff\xfe\n".as_slice()].concat()).unwrap();
    let err = sink.read_back().await.unwrap_err();
    assert!(err.to_string().contains("line 1"), "{err}");
}

#[test]
fn bad_urls_are_refused() {
    for bad in [
        "file://audit.jsonl",
        "file:///tmp/",
        "file:///tmp/a?max_bytes=0",
        "file:///tmp/a?max=1",
    ] {
        assert!(FileSink::open("f", bad).is_err(), "{bad}");
    }
}
