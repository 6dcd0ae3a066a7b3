//! Server connections kept for the next session of the same break (session pooling, as
//! PgBouncer's `pool_mode = session` with `server_reset_query = DISCARD ALL`).
//!
//! When a client ends its session cleanly (Terminate) while the server is idle outside a
//! transaction, the gateway resets the server connection with `DISCARD ALL` and keeps it for
//! the next client of the same break, database and start-up parameters. The pool is shared by
//! the relay threads: a session takes a connection its own thread kept when there is one (its
//! socket is driven by that thread's runtime), otherwise one another thread kept, whose socket
//! it moves to its own thread's runtime (`ServerStream::rehome`): driven from the other
//! thread, every answer of the server would cost a wake-up of both threads. Every session is
//! still admitted with its own token and recorded on its own; a kept connection is the grant's
//! own login, used only for that break, and it is never handed out after the grant's deadline,
//! after the break was closed, or after 30 s unused. Ending a grant terminates its role's
//! backends on the target, kept ones included.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use breakglass_domain::Timestamp;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::upstream::{ServerStream, Upstream};
use crate::wire;

/// How long an unused server connection is kept.
pub(crate) const IDLE: Duration = Duration::from_secs(30);
/// Kept connections per break, database and parameters.
const PER_KEY: usize = 256;

/// A reset server connection waiting for its break's next session.
pub(crate) struct Kept {
    upstream: Upstream,
    deadline: Timestamp,
    ended: tokio::sync::watch::Receiver<bool>,
    since: Instant,
    /// The relay thread whose runtime drives its socket.
    thread: ThreadId,
}

impl Kept {
    fn usable(&self, now: Timestamp) -> bool {
        // A second of margin: a session given a connection must have time to use it.
        self.since.elapsed() < IDLE && now.0 + 1000 < self.deadline.0 && !*self.ended.borrow()
    }
}

/// Kept connections by pool key, of every relay thread.
static KEPT: LazyLock<Mutex<HashMap<String, Vec<Kept>>>> = LazyLock::new(Mutex::default);

fn kept() -> std::sync::MutexGuard<'static, HashMap<String, Vec<Kept>>> {
    KEPT.lock().unwrap_or_else(|p| p.into_inner())
}

/// The pool key: break, database and the client's start-up parameters (a kept connection was
/// logged in with them).
pub(crate) fn key(break_id: &str, database: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut k = format!("{break_id}\0{database}");
    for (name, value) in sorted {
        k.push('\0');
        k.push_str(name);
        k.push('=');
        k.push_str(value);
    }
    k
}

/// A kept connection for `key`, if one is still usable: the newest one this thread kept, else
/// the newest one another thread kept, moved to this thread's runtime. The unusable ones are
/// closed.
pub(crate) fn take(key: &str, now: Timestamp) -> Option<Upstream> {
    let here = std::thread::current().id();
    let (found, stale) = {
        let mut map = kept();
        let list = map.get_mut(key)?;
        let (usable, stale): (Vec<Kept>, Vec<Kept>) = std::mem::take(list)
            .into_iter()
            .partition(|c| c.usable(now));
        *list = usable;
        let pick = list
            .iter()
            .rposition(|c| c.thread == here)
            .or_else(|| list.len().checked_sub(1));
        let found = pick.map(|i| list.remove(i));
        if list.is_empty() {
            map.remove(key);
        }
        (found, stale)
    };
    close_all(stale);
    let mut found = found?;
    if found.thread != here {
        // Driven from here from now on: registered with this thread's runtime.
        if let Err(e) = found.upstream.stream.rehome() {
            tracing::info!(error = %e, "a kept server connection could not be moved to this relay thread; logging in anew");
            return None;
        }
    }
    Some(found.upstream)
}

/// Closes every kept connection of this relay thread that is no longer usable (each thread
/// sweeps its own, on the runtime that drives them).
pub(crate) fn sweep(now: Timestamp) {
    let here = std::thread::current().id();
    let stale = {
        let mut map = kept();
        let mut stale = Vec::new();
        for list in map.values_mut() {
            let (keep, drop): (Vec<Kept>, Vec<Kept>) = std::mem::take(list)
                .into_iter()
                .partition(|c| c.thread != here || c.usable(now));
            *list = keep;
            stale.extend(drop);
        }
        map.retain(|_, l| !l.is_empty());
        stale
    };
    close_all(stale);
}

fn close_all(stale: Vec<Kept>) {
    for c in stale {
        tokio::spawn(terminate(c.upstream.stream));
    }
}

/// Ends a server connection politely (Terminate, then close).
pub(crate) async fn terminate(mut stream: impl AsyncWrite + Unpin) {
    let _ = stream.write_all(&[b'X', 0, 0, 0, 4]).await;
    let _ = stream.shutdown().await;
}

/// Resets `upstream` with `DISCARD ALL` and keeps it under `key`; closes it instead when the
/// reset does not come back clean within a second.
pub(crate) async fn keep(
    key: String,
    mut upstream: Upstream,
    deadline: Timestamp,
    ended: tokio::sync::watch::Receiver<bool>,
) {
    let reset = tokio::time::timeout(Duration::from_secs(1), reset(&mut upstream.stream)).await;
    if !matches!(reset, Ok(Ok(()))) {
        terminate(upstream.stream).await;
        return;
    }
    upstream.leftover.clear();
    let full = {
        let mut map = kept();
        let list = map.entry(key).or_default();
        if list.len() >= PER_KEY {
            Some(upstream)
        } else {
            list.push(Kept {
                upstream,
                deadline,
                ended,
                since: Instant::now(),
                thread: std::thread::current().id(),
            });
            None
        }
    };
    if let Some(u) = full {
        terminate(u.stream).await;
    }
}

/// `DISCARD ALL` and its answer: CommandComplete and ReadyForQuery (idle); any error, or a
/// transaction left open, fails the reset.
async fn reset(stream: &mut ServerStream) -> Result<(), String> {
    let mut q = Vec::new();
    wire::message(&mut q, b'Q', b"DISCARD ALL\0");
    stream.write_all(&q).await.map_err(|e| e.to_string())?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    loop {
        while let Some((tag, len)) = wire::header(&buf, 64 * 1024).map_err(|e| e.to_string())? {
            if buf.len() < len {
                break;
            }
            let status = buf.get(5).copied();
            buf.drain(..len);
            match tag {
                b'E' => return Err("DISCARD ALL failed".into()),
                b'Z' if status == Some(b'I') => {
                    return if buf.is_empty() {
                        Ok(())
                    } else {
                        Err("bytes after the reset".into())
                    };
                }
                b'Z' => return Err("a transaction is still open".into()),
                _ => {}
            }
        }
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kept connection named by its `addr`, on `thread`, ended or not.
    fn kept_on(name: &str, thread: ThreadId, ended: bool) -> Kept {
        let (stream, _peer) = tokio::io::duplex(64);
        Kept {
            upstream: Upstream {
                stream: ServerStream::Other(Box::new(stream)),
                greeting: Vec::new(),
                leftover: Vec::new(),
                backend_key: None,
                addr: name.to_owned(),
                tls: false,
            },
            deadline: Timestamp(i64::MAX),
            ended: tokio::sync::watch::channel(ended).1,
            since: Instant::now(),
            thread,
        }
    }

    #[tokio::test]
    async fn a_session_takes_its_own_threads_connection_first_then_another_threads() {
        let here = std::thread::current().id();
        let there = std::thread::spawn(|| std::thread::current().id())
            .join()
            .expect("thread");
        let key = "brk_pool_test\0db";
        kept().insert(
            key.to_owned(),
            vec![
                kept_on("own-old", here, false),
                kept_on("other", there, false),
                kept_on("own-new", here, false),
                kept_on("other-closed", there, true),
            ],
        );
        let now = Timestamp(0);
        let took = |n: &str| take(key, now).map(|u| u.addr) == Some(n.to_owned());
        assert!(took("own-new"), "the newest of this thread's");
        assert!(took("own-old"));
        assert!(
            took("other"),
            "then another thread's, not the closed break's"
        );
        assert!(
            take(key, now).is_none(),
            "the closed break's one is not handed out"
        );
        assert!(!kept().contains_key(key), "and it is gone from the pool");
    }

    #[test]
    fn keys_ignore_parameter_order_but_not_values() {
        let a = vec![
            ("application_name".to_owned(), "psql".to_owned()),
            ("client_encoding".to_owned(), "UTF8".to_owned()),
        ];
        let mut b = a.clone();
        b.reverse();
        assert_eq!(key("brk_1", "app", &a), key("brk_1", "app", &b));
        b[0].1 = "SQL_ASCII".into();
        assert_ne!(key("brk_1", "app", &a), key("brk_1", "app", &b));
        assert_ne!(key("brk_1", "app", &a), key("brk_2", "app", &a));
        assert_ne!(key("brk_1", "app", &a), key("brk_1", "other", &a));
    }
}
