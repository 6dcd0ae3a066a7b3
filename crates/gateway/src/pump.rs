//! Both directions of a gateway session driven by one poll function over its two streams.
//!
//! The streams are not split: splitting (`tokio::io::split`) takes a lock for every read and
//! write, and a future per read and per write (with the `select!` that joined the two loops)
//! was a fair part of the relay's user-space time per transaction (`perf record` of the
//! benchmark, BENCHMARKS.md). Here each direction is a loop — write what waits, then read,
//! then look at what was read ([`relay::ClientSide`], [`relay::ServerSide`]) — that runs until
//! its socket would block, and the task sleeps when both would. A direction reads nothing new
//! until its last read is written out, so a slow reader holds back only its own writer.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use breakglass_domain::Timestamp;
use breakglass_engine::ports::StatementChunk;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;

use crate::relay::{self, ClientSide, Finished, ServerSide, SessionInfo, Tracker};
use crate::upstream::ServerStream;
use crate::wire::WireError;
use crate::{CHUNK_MAX, End, Io, Recorded, RefusedStatement};

/// Read buffers start at this size and return to it after a large message.
const CLIENT_BUFFER: usize = 16 * 1024;
const SERVER_BUFFER: usize = 32 * 1024;

/// One direction: what was read and not yet looked at, and what waits to be written.
struct Dir {
    /// Read buffer (initialized; `filled` bytes hold data).
    buf: Vec<u8>,
    filled: usize,
    /// Bytes of `buf` not yet processed (the server's bytes that came with its login).
    unprocessed: bool,
    /// The bytes to write, of which `sent` are written.
    out: Vec<u8>,
    sent: usize,
    /// Written but not yet flushed (TLS keeps records until flushed).
    flushing: bool,
    /// The read side asked to end once `out` is written (the client's Terminate).
    stop: bool,
    /// Bytes read and written.
    read: u64,
    written: u64,
    /// The size `buf` returns to.
    base: usize,
}

impl Dir {
    fn new(base: usize, leftover: &[u8]) -> Dir {
        let mut buf = vec![0u8; base.max(leftover.len())];
        buf[..leftover.len()].copy_from_slice(leftover);
        Dir {
            buf,
            filled: leftover.len(),
            unprocessed: !leftover.is_empty(),
            out: Vec::with_capacity(base),
            sent: 0,
            flushing: false,
            stop: false,
            read: 0,
            written: 0,
            base,
        }
    }

    /// Writes and flushes what waits; ready once nothing does.
    fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        to: &mut (impl AsyncWrite + Unpin + ?Sized),
    ) -> Poll<io::Result<()>> {
        while self.sent < self.out.len() {
            let n = ready!(Pin::new(&mut *to).poll_write(cx, &self.out[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
            self.written += n as u64;
        }
        if !self.out.is_empty() {
            self.out.clear();
            self.sent = 0;
            self.flushing = true;
        }
        if self.flushing {
            ready!(Pin::new(&mut *to).poll_flush(cx))?;
            self.flushing = false;
        }
        Poll::Ready(Ok(()))
    }

    /// Reads what the socket has after the bytes kept; `0` at the end of the stream.
    fn poll_fill(
        &mut self,
        cx: &mut Context<'_>,
        from: &mut (impl AsyncRead + Unpin + ?Sized),
    ) -> Poll<io::Result<usize>> {
        if self.filled == self.buf.len() {
            // A message being looked at is larger than the buffer (bounded by the wire limits:
            // a passed-through message never waits here whole).
            let grown = self.buf.len() * 2;
            self.buf.resize(grown, 0);
        }
        let mut rb = ReadBuf::new(&mut self.buf[self.filled..]);
        ready!(Pin::new(&mut *from).poll_read(cx, &mut rb))?;
        let n = rb.filled().len();
        self.filled += n;
        self.read += n as u64;
        Poll::Ready(Ok(n))
    }

    /// Drops the first `used` bytes, keeping an incomplete message at the front.
    fn consume(&mut self, used: usize) {
        if used >= self.filled {
            self.filled = 0;
            if self.buf.len() > self.base * 4 {
                self.buf.truncate(self.base);
                self.buf.shrink_to_fit();
            }
        } else if used > 0 {
            self.buf.copy_within(used..self.filled, 0);
            self.filled -= used;
        }
    }

    /// Runs this direction until a socket would block (`Pending`) or the session ends: write
    /// what waits, read, process. `eof` is the end when `from` closes.
    fn pump(
        &mut self,
        cx: &mut Context<'_>,
        from: &mut (impl AsyncRead + Unpin + ?Sized),
        to: &mut (impl AsyncWrite + Unpin + ?Sized),
        eof: fn() -> End,
        mut process: impl FnMut(&[u8], &mut Vec<u8>) -> Result<(usize, bool), WireError>,
    ) -> Poll<End> {
        loop {
            match ready!(self.poll_send(cx, to)) {
                Ok(()) if self.stop => return Poll::Ready(End::Terminated),
                Ok(()) => {}
                Err(e) => return Poll::Ready(End::Io(e.to_string())),
            }
            if !std::mem::take(&mut self.unprocessed) {
                match ready!(self.poll_fill(cx, from)) {
                    Ok(0) => return Poll::Ready(eof()),
                    Ok(_) => {}
                    Err(e) => return Poll::Ready(End::Io(e.to_string())),
                }
            }
            match process(&self.buf[..self.filled], &mut self.out) {
                Ok((used, stop)) => {
                    self.consume(used);
                    self.stop = stop;
                }
                Err(e) => return Poll::Ready(End::Protocol(e)),
            }
        }
    }
}

/// Where a session's finished statements go: its own chunk, handed to the recorder by its
/// relay thread (or at once when it grows past [`CHUNK_MAX`]).
pub(crate) struct Recording {
    pub(crate) break_id: String,
    pub(crate) session_id: String,
    pub(crate) chunk: Arc<Mutex<StatementChunk>>,
    /// Statements so far (the last one's `seq`).
    pub(crate) seq: u64,
    pub(crate) recorder: mpsc::UnboundedSender<Recorded>,
    /// The `refuse` patterns this session's statements matched so far: the first statement
    /// refused for each is audited and alerted ([`Recorded::Refused`]); the later ones are
    /// counted in the session's end.
    pub(crate) refusals: Vec<String>,
}

impl Recording {
    /// Appends finished statements to the chunk, numbering them.
    pub(crate) fn emit(&mut self, done: &mut Vec<Finished>) {
        if done.is_empty() {
            return;
        }
        let mut chunk = relay::lock(&self.chunk);
        for f in done.drain(..) {
            self.seq += 1;
            chunk.push_line(&f.line(&self.session_id, self.seq));
            if let Some(pattern) = f.refused
                && !self.refusals.contains(&pattern)
            {
                self.refusals.push(pattern.clone());
                let _ = self.recorder.send(Recorded::Refused(RefusedStatement {
                    break_id: self.break_id.clone(),
                    session_id: self.session_id.clone(),
                    seq: self.seq,
                    pattern,
                }));
            }
        }
        if chunk.body.len() >= CHUNK_MAX
            && let Some(full) = chunk.take()
        {
            let _ = self.recorder.send(Recorded::Chunks(vec![full]));
        }
    }
}

/// Statements' start times: one monotonic clock read per read from the client, the
/// wall-clock time derived from it. The engine's clock is read again once a second of the
/// session, so the recorded times follow it (and any step of the system clock) within a
/// second, and a statement does not pay for a second clock read.
#[derive(Default)]
struct StartClock {
    base: Option<(Timestamp, Instant)>,
}

impl StartClock {
    const REFRESH: Duration = Duration::from_secs(1);

    fn read(&mut self, wall: &dyn Fn() -> Timestamp) -> (Timestamp, Instant) {
        let at = Instant::now();
        match self.base {
            Some((t, base)) if at.duration_since(base) < Self::REFRESH => {
                let ms = i64::try_from(at.duration_since(base).as_millis()).unwrap_or(0);
                (Timestamp(t.0 + ms), at)
            }
            _ => {
                let t = wall();
                self.base = Some((t, at));
                (t, at)
            }
        }
    }
}

/// A session's relay: the two streams and everything both directions share.
pub(crate) struct Relay {
    pub(crate) client: Box<dyn Io>,
    pub(crate) server: ServerStream,
    up: Dir,
    down: Dir,
    client_side: ClientSide,
    server_side: ServerSide,
    pub(crate) tracker: Tracker,
    pub(crate) recording: Recording,
    done: Vec<Finished>,
    clock: StartClock,
}

impl Relay {
    /// `leftover`: server bytes read with its login and not yet passed on.
    pub(crate) fn new(
        client: Box<dyn Io>,
        server: ServerStream,
        leftover: &[u8],
        recording: Recording,
    ) -> Relay {
        Relay {
            client,
            server,
            up: Dir::new(CLIENT_BUFFER, &[]),
            down: Dir::new(SERVER_BUFFER, leftover),
            client_side: ClientSide::default(),
            server_side: ServerSide::default(),
            tracker: Tracker::default(),
            recording,
            done: Vec::new(),
            clock: StartClock::default(),
        }
    }

    /// Bytes read from the client and written to it.
    pub(crate) fn bytes(&self) -> (u64, u64) {
        (self.up.read, self.down.written)
    }

    /// Bytes read from the server (with those written to it, what the idle check watches
    /// besides [`Relay::bytes`]).
    pub(crate) fn server_bytes(&self) -> u64 {
        self.down.read.saturating_add(self.up.written)
    }

    /// Relays both ways until the session ends; `now` is the engine's clock (statements'
    /// start times).
    pub(crate) fn poll_relay(
        &mut self,
        cx: &mut Context<'_>,
        info: &SessionInfo,
        now: &dyn Fn() -> Timestamp,
    ) -> Poll<End> {
        let Relay {
            client,
            server,
            up,
            down,
            client_side,
            server_side,
            tracker,
            recording,
            done,
            clock,
        } = self;
        let to_server = up.pump(
            cx,
            client,
            server,
            || End::Client,
            |buf, out| {
                let (wall, at) = clock.read(now);
                client_side.process(info, buf, out, tracker, wall, at)
            },
        );
        if to_server.is_ready() {
            return to_server;
        }
        down.pump(
            cx,
            server,
            client,
            || End::Server,
            |buf, out| {
                let used = server_side.process(info, buf, out, tracker, done)?;
                recording.emit(done);
                Ok((used, false))
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        crate::wire::message(&mut out, tag, body);
        out
    }

    fn relay(
        client: tokio::io::DuplexStream,
        server: tokio::io::DuplexStream,
    ) -> (Relay, mpsc::UnboundedReceiver<Recorded>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let relay = Relay::new(
            Box::new(client),
            ServerStream::Other(Box::new(server)),
            &[],
            Recording {
                break_id: "b1".into(),
                session_id: "s1".into(),
                chunk: Arc::new(Mutex::new(StatementChunk::new("b1", "s1"))),
                seq: 0,
                recorder: tx,
                refusals: Vec::new(),
            },
        );
        (relay, rx)
    }

    /// Messages cut at every byte, larger than the read buffers, both ways, through pipes
    /// that hold only 64 bytes (every write is partial, every direction waits on the other):
    /// every byte arrives in order, and every statement is recorded.
    #[tokio::test]
    async fn relays_large_and_cut_messages_both_ways_through_small_pipes() {
        let (client_app, client_gw) = tokio::io::duplex(64);
        let (server_gw, server_db) = tokio::io::duplex(64);
        let (mut r, mut recorded) = relay(client_gw, server_gw);
        let info = SessionInfo::default();
        let big = "x".repeat(5 * CLIENT_BUFFER);
        let mut sent = Vec::new();
        for i in 0..20 {
            sent.extend(msg(b'Q', format!("SELECT '{big}', {i}\0").as_bytes()));
        }
        let mut answer = Vec::new();
        for _ in 0..20 {
            answer.extend(msg(b'D', "y".repeat(3 * SERVER_BUFFER).as_bytes()));
            answer.extend(msg(b'C', b"SELECT 1\0"));
            answer.extend(msg(b'Z', b"I"));
        }
        let expected_at_server = sent.clone();
        // The client's Terminate (5 bytes), sent once it has every answer, is not passed on.
        let (sent_len, answer_len) = (sent.len() as u64 + 5, answer.len() as u64);
        let expected_at_client = answer.clone();
        let (mut client_app, mut server_db) = (client_app, server_db);
        let app = tokio::spawn(async move {
            // Written and read at once: each side would block the other otherwise.
            let (mut rd, mut wr) = tokio::io::split(&mut client_app);
            let write = async {
                for piece in sent.chunks(777) {
                    wr.write_all(piece).await.unwrap();
                }
            };
            let mut got = vec![0u8; expected_at_client.len()];
            let read = rd.read_exact(&mut got);
            let (_, n) = tokio::join!(write, read);
            n.unwrap();
            assert!(got == expected_at_client, "the client got other bytes");
            wr.write_all(&msg(b'X', b"")).await.unwrap();
        });
        let db = tokio::spawn(async move {
            let mut got = vec![0u8; expected_at_server.len()];
            server_db.read_exact(&mut got).await.unwrap();
            assert!(got == expected_at_server, "the server got other bytes");
            for piece in answer.chunks(1000) {
                server_db.write_all(piece).await.unwrap();
            }
            server_db
        });
        let end = std::future::poll_fn(|cx| r.poll_relay(cx, &info, &|| Timestamp(7))).await;
        assert!(matches!(end, End::Terminated), "{end:?}");
        app.await.unwrap();
        drop(db.await.unwrap());
        assert_eq!(r.recording.seq, 20);
        // Chunks past CHUNK_MAX went to the recorder at once; the rest waits in the session's.
        let mut chunks = Vec::new();
        while let Ok(Recorded::Chunks(c)) = recorded.try_recv() {
            chunks.extend(c);
        }
        assert!(!chunks.is_empty(), "20 statements of 80 KiB pass CHUNK_MAX");
        chunks.extend(relay::lock(&r.recording.chunk).take());
        let mut statements = Vec::new();
        for c in &chunks {
            assert_eq!(c.first_seq, statements.len() as u64 + 1);
            statements.extend(StatementChunk::statements("b1", &c.body).unwrap());
        }
        assert_eq!(statements.len(), 20);
        assert!(statements[19].statement.ends_with(", 19"));
        assert_eq!(statements[19].rows, Some(1));
        assert!(r.tracker.idle());
        assert_eq!(r.bytes(), (sent_len, answer_len));
        assert_eq!(r.up.buf.len(), CLIENT_BUFFER, "the read buffer shrank back");
    }

    /// The wall-clock start times come from the engine's clock once a second and from the
    /// monotonic clock in between.
    #[test]
    fn start_times_read_the_engine_clock_once_a_second() {
        let reads = std::cell::Cell::new(0);
        let wall = || {
            reads.set(reads.get() + 1);
            Timestamp(1_000_000 * i64::from(reads.get()))
        };
        let mut clock = StartClock::default();
        let (first, at) = clock.read(&wall);
        assert_eq!((first, reads.get()), (Timestamp(1_000_000), 1));
        let (second, later) = clock.read(&wall);
        assert_eq!(reads.get(), 1, "within the second: no engine clock read");
        let ms = i64::try_from(later.duration_since(at).as_millis()).unwrap();
        assert_eq!(second, Timestamp(1_000_000 + ms));
        // A second later (the base moved back), the engine's clock is read again.
        let back = at.checked_sub(StartClock::REFRESH).unwrap();
        clock.base = Some((first, back));
        let (third, _) = clock.read(&wall);
        assert_eq!((third, reads.get()), (Timestamp(2_000_000), 2));
    }

    /// Relays until the session ends, refusing nothing.
    async fn relay_to_end(r: &mut Relay) -> End {
        std::future::poll_fn(|cx| r.poll_relay(cx, &SessionInfo::default(), &|| Timestamp(1))).await
    }

    /// A malformed message from the server ends the session with a protocol error.
    #[tokio::test]
    async fn a_malformed_server_message_ends_the_relay() {
        let (_client_app, client_gw) = tokio::io::duplex(1024);
        let (server_gw, mut server_db) = tokio::io::duplex(1024);
        let (mut r, _) = relay(client_gw, server_gw);
        server_db.write_all(&[b'Z', 0, 0, 0, 1]).await.unwrap();
        let end = relay_to_end(&mut r).await;
        assert!(matches!(end, End::Protocol(_)), "{end:?}");
    }

    /// The server closing ends the relay as the server's end; the client closing as the
    /// client's.
    #[tokio::test]
    async fn either_side_closing_ends_the_relay() {
        let (client_app, client_gw) = tokio::io::duplex(1024);
        let (server_gw, server_db) = tokio::io::duplex(1024);
        let (mut r, _) = relay(client_gw, server_gw);
        drop(server_db);
        let end = relay_to_end(&mut r).await;
        assert!(matches!(end, End::Server), "{end:?}");
        drop(client_app);
        let (client_app, client_gw) = tokio::io::duplex(1024);
        let (server_gw, _server_db) = tokio::io::duplex(1024);
        let (mut r, _) = relay(client_gw, server_gw);
        drop(client_app);
        let end = relay_to_end(&mut r).await;
        assert!(matches!(end, End::Client), "{end:?}");
    }
}
