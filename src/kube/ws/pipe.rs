//! In-memory byte pipes between the socket thread and the threads that consume stream data, and
//! the writer that feeds a stream (stdin, a port-forward connection) into the socket thread.
//!
//! A [`PipeWriter`] never blocks (the socket thread must keep serving pings and stdin); instead it
//! reports when the buffered data is above its high-water mark, and the socket thread stops reading
//! from the network until the consumer caught up (TCP backpressure to the server). A writer dropped
//! without [`PipeWriter::finish`] (e.g. its thread panicked) ends the reader with an error, never a
//! hang and never a silent EOF.
//!
//! May import: error, kube::ws::codec.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::codec::MAX_PAYLOAD;

/// How a pipe ended.
#[derive(Debug, Clone)]
enum End {
    Eof,
    Error(io::ErrorKind, String),
}

#[derive(Default)]
struct State {
    chunks: VecDeque<Vec<u8>>,
    /// Read offset into the front chunk.
    offset: usize,
    /// Bytes buffered.
    len: usize,
    end: Option<End>,
    reader_gone: bool,
}

struct Shared {
    state: Mutex<State>,
    cond: Condvar,
    high_water: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent under every panic point (plain field updates), so a poisoned
        // lock is still usable.
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}

/// A new pipe whose writer reports "full" above `high_water` buffered bytes.
pub fn pipe(high_water: usize) -> (PipeWriter, PipeReader) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        cond: Condvar::new(),
        high_water,
    });
    (
        PipeWriter {
            shared: Arc::clone(&shared),
            ended: false,
        },
        PipeReader { shared },
    )
}

/// The producing end (owned by the socket thread).
pub struct PipeWriter {
    shared: Arc<Shared>,
    ended: bool,
}

impl PipeWriter {
    /// Append data (never blocks). Data is dropped when the reader is gone.
    pub fn push(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let mut st = self.shared.lock();
        if st.reader_gone || st.end.is_some() {
            return;
        }
        st.len += data.len();
        st.chunks.push_back(data.to_vec());
        drop(st);
        self.shared.cond.notify_all();
    }

    /// True when more than the high-water mark is buffered and the reader still exists.
    pub fn is_full(&self) -> bool {
        let st = self.shared.lock();
        !st.reader_gone && st.len > self.shared.high_water
    }

    /// Wait until the pipe is no longer full, at most `timeout`.
    pub fn wait_for_room(&self, timeout: Duration) {
        let st = self.shared.lock();
        let hw = self.shared.high_water;
        let _ = self
            .shared
            .cond
            .wait_timeout_while(st, timeout, |s| !s.reader_gone && s.len > hw);
    }

    /// True when the reader was dropped.
    pub fn reader_gone(&self) -> bool {
        self.shared.lock().reader_gone
    }

    /// End the stream normally: the reader sees EOF after the buffered data.
    pub fn finish(&mut self) {
        self.end(End::Eof);
    }

    /// End the stream with an error: the reader gets it after the buffered data.
    pub fn fail(&mut self, kind: io::ErrorKind, message: impl Into<String>) {
        self.end(End::Error(kind, message.into()));
    }

    fn end(&mut self, end: End) {
        self.ended = true;
        let mut st = self.shared.lock();
        if st.end.is_none() {
            st.end = Some(end);
        }
        drop(st);
        self.shared.cond.notify_all();
    }
}

impl Drop for PipeWriter {
    fn drop(&mut self) {
        if !self.ended {
            self.fail(
                io::ErrorKind::BrokenPipe,
                "the stream ended unexpectedly (its session thread stopped)",
            );
        }
    }
}

/// The consuming end: `Read` for any thread. Blocks until data, EOF or an error.
pub struct PipeReader {
    shared: Arc<Shared>,
}

impl Read for PipeReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        let mut st = self.shared.lock();
        loop {
            if st.len > 0 {
                let mut n = 0;
                while n < out.len() {
                    let offset = st.offset;
                    let Some(front) = st.chunks.front() else {
                        break;
                    };
                    let take = (front.len() - offset).min(out.len() - n);
                    out[n..n + take].copy_from_slice(&front[offset..offset + take]);
                    n += take;
                    if offset + take == front.len() {
                        st.chunks.pop_front();
                        st.offset = 0;
                    } else {
                        st.offset += take;
                    }
                }
                st.len -= n;
                drop(st);
                self.shared.cond.notify_all();
                return Ok(n);
            }
            match &st.end {
                Some(End::Eof) => return Ok(0),
                Some(End::Error(kind, msg)) => return Err(io::Error::new(*kind, msg.clone())),
                None => {}
            }
            st = match self.shared.cond.wait(st) {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
        }
    }
}

impl Drop for PipeReader {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.reader_gone = true;
        st.chunks.clear();
        st.len = 0;
        drop(st);
        self.shared.cond.notify_all();
    }
}

/// A message for the socket thread.
#[derive(Debug)]
pub enum Outgoing {
    /// Data for a stream (`[id][payload]`, payload ≤ 32 KiB).
    Data(u8, Vec<u8>),
    /// No more data on this stream (v5 `[0xFF, id]`; ignored on v4).
    CloseStream(u8),
    /// Terminal size (columns, rows).
    Resize(u16, u16),
    /// Close the WebSocket gracefully and wait for the server's close.
    Close,
    /// Stop now (the owner is going away).
    Abort,
}

/// Feeds a stream into the socket thread (`Write` for any thread). Writes block while the socket
/// thread's queue is full (backpressure). Dropping it (or [`StreamWriter::close`]) sends
/// [`Outgoing::CloseStream`] when `close_on_drop` is set.
pub struct StreamWriter {
    tx: Option<SyncSender<Outgoing>>,
    stream: u8,
    close_on_drop: bool,
}

impl StreamWriter {
    /// A writer for `stream` over the socket thread's queue.
    pub fn new(tx: SyncSender<Outgoing>, stream: u8, close_on_drop: bool) -> StreamWriter {
        StreamWriter {
            tx: Some(tx),
            stream,
            close_on_drop,
        }
    }

    /// End the stream now (same as dropping).
    pub fn close(mut self) -> io::Result<()> {
        self.close_inner()
    }

    fn close_inner(&mut self) -> io::Result<()> {
        if let Some(tx) = self.tx.take() {
            if self.close_on_drop {
                tx.send(Outgoing::CloseStream(self.stream))
                    .map_err(|_| closed())?;
            }
        }
        Ok(())
    }
}

fn closed() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "the remote stream is closed (the session ended)",
    )
}

impl Write for StreamWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let tx = self.tx.as_ref().ok_or_else(closed)?;
        if buf.is_empty() {
            return Ok(0);
        }
        let n = buf.len().min(MAX_PAYLOAD);
        tx.send(Outgoing::Data(self.stream, buf[..n].to_vec()))
            .map_err(|_| closed())?;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        let _ = self.close_inner();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_then_eof() {
        let (mut w, mut r) = pipe(10);
        w.push(b"hello ");
        w.push(b"world");
        assert!(w.is_full());
        w.finish();
        let mut s = String::new();
        r.read_to_string(&mut s).expect("read");
        assert_eq!(s, "hello world");
    }

    #[test]
    fn dropped_writer_is_an_error_not_eof() {
        let (mut w, mut r) = pipe(10);
        w.push(b"partial");
        drop(w);
        let mut buf = Vec::new();
        let e = r.read_to_end(&mut buf).expect_err("error");
        assert_eq!(buf, b"partial");
        assert!(e.to_string().contains("ended unexpectedly"));
    }

    #[test]
    fn reader_blocks_until_data_from_another_thread() {
        let (mut w, mut r) = pipe(1 << 20);
        let t = std::thread::spawn(move || {
            w.push(b"x");
            w.fail(io::ErrorKind::ConnectionAborted, "gone");
        });
        let mut b = [0u8; 4];
        assert_eq!(r.read(&mut b).expect("read"), 1);
        assert_eq!(
            r.read(&mut b).expect_err("err").kind(),
            io::ErrorKind::ConnectionAborted
        );
        t.join().expect("join");
    }

    #[test]
    fn gone_reader_discards_and_unblocks() {
        let (mut w, r) = pipe(1);
        w.push(b"abc");
        assert!(w.is_full());
        drop(r);
        assert!(!w.is_full());
        assert!(w.reader_gone());
        w.wait_for_room(Duration::from_secs(5));
        w.finish();
    }

    #[test]
    fn stream_writer_chunks_and_closes() {
        let (tx, rx) = std::sync::mpsc::sync_channel(16);
        let mut w = StreamWriter::new(tx, 0, true);
        let data = vec![7u8; MAX_PAYLOAD + 10];
        w.write_all(&data).expect("write");
        drop(w);
        let msgs: Vec<Outgoing> = rx.try_iter().collect();
        assert!(matches!(&msgs[0], Outgoing::Data(0, d) if d.len() == MAX_PAYLOAD));
        assert!(matches!(&msgs[1], Outgoing::Data(0, d) if d.len() == 10));
        assert!(matches!(msgs[2], Outgoing::CloseStream(0)));
        assert_eq!(msgs.len(), 3);
    }
}
