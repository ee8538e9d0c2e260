//! The socket thread: one thread owns an upgraded tungstenite WebSocket (it cannot be split) and
//! runs the whole stream.
//!
//! Each turn of its loop it drains a bounded queue of [`Outgoing`] messages (stdin chunks, resize,
//! stream close, graceful close, abort), sends a ping every `ping_interval`, flushes (so queued
//! pongs go out), then reads with a short socket read timeout (a timed-out read is "nothing yet")
//! and routes each binary message to a [`PipeWriter`] by its stream id, or into the status buffer.
//! Writes have a short timeout too: a blocked write leaves the frame in tungstenite's buffer and the
//! loop goes on reading, so a full-duplex stream can never deadlock on full TCP buffers. When a
//! consumer is slow, the thread stops reading the network (TCP backpressure) instead of buffering
//! without bound.
//!
//! The [`Session`] handle owns the thread: [`Session::join`] turns a panic into an error, and
//! dropping the handle aborts and joins. A silent peer (no data, no pong) is an error after
//! `silence_limit`.
//!
//! May import: error, kube::ws (codec, http, pipe), tungstenite.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tungstenite::protocol::WebSocket;
use tungstenite::Message;

use super::codec::{self, Protocol};
use super::http::Upgraded;
use super::pipe::{Outgoing, PipeWriter};
use super::WsTransport;
use crate::error::{Error, Result};

/// Tunables of a session. The defaults suit real clusters; tests shorten them.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Send a WebSocket ping this often (keeps load balancers and NATs from dropping idle streams).
    pub ping_interval: Duration,
    /// Fail when nothing at all (data or pong) arrived for this long.
    pub silence_limit: Duration,
    /// Socket read timeout while idle (the loop's tick when nothing happens).
    pub idle_read_timeout: Duration,
    /// Socket write timeout (a blocked write lets the loop go back to reading).
    pub write_timeout: Duration,
    /// Bytes buffered per output stream before we stop reading the network.
    pub pipe_high_water: usize,
    /// Outgoing messages queued before writers block.
    pub queue_len: usize,
    /// Fault injection for tests: panic the socket thread when a message for this stream arrives.
    #[doc(hidden)]
    pub panic_on_stream: Option<u8>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            ping_interval: Duration::from_secs(30),
            silence_limit: Duration::from_secs(120),
            idle_read_timeout: Duration::from_millis(20),
            write_timeout: Duration::from_millis(5),
            pipe_high_water: 4 << 20,
            queue_len: 64,
            panic_on_stream: None,
        }
    }
}

/// Where a server → client stream goes.
pub struct Route {
    /// Stream id.
    pub stream: u8,
    /// Its consumer.
    pub out: PipeWriter,
    /// Bytes to drop from the start of the stream (port-forward's 2-byte port prefix).
    pub skip: usize,
}

/// What the socket thread routes where.
pub struct Spec {
    /// Data streams.
    pub routes: Vec<Route>,
    /// The stream collected as the final status (exec: 3; port-forward: the error channel), with
    /// its prefix to skip.
    pub status: Option<(u8, usize)>,
}

/// How a session ended.
#[derive(Debug, Clone, Default)]
pub struct SessionEnd {
    /// Everything received on the status stream.
    pub status: Vec<u8>,
    /// True when the server closed with a WebSocket close handshake (not a dropped connection).
    pub clean_close: bool,
    /// True when the owner aborted the session.
    pub aborted: bool,
}

/// Handle of a running socket thread.
pub struct Session {
    tx: SyncSender<Outgoing>,
    abort: Arc<AtomicBool>,
    handle: Option<JoinHandle<Result<SessionEnd>>>,
    protocol: Protocol,
}

impl Session {
    /// Start the socket thread for `upgraded`. `what` names the stream in errors and the thread.
    pub fn start(
        upgraded: Upgraded,
        spec: Spec,
        config: SessionConfig,
        what: &str,
    ) -> Result<Session> {
        let (tx, rx) = sync_channel(config.queue_len.max(1));
        let abort = Arc::new(AtomicBool::new(false));
        let protocol = upgraded.protocol;
        let thread_abort = Arc::clone(&abort);
        let what_owned = what.to_string();
        let handle = std::thread::Builder::new()
            .name(format!("ws {what}"))
            .spawn(move || run(upgraded, spec, config, rx, thread_abort, &what_owned))
            .map_err(|e| {
                Error::io("", e).context(format!("starting the socket thread for {what}"))
            })?;
        Ok(Session {
            tx,
            abort,
            handle: Some(handle),
            protocol,
        })
    }

    /// The negotiated subprotocol.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// A sender into the socket thread's queue.
    pub fn sender(&self) -> SyncSender<Outgoing> {
        self.tx.clone()
    }

    /// True once the socket thread has ended.
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(|h| h.is_finished())
    }

    /// Ask the socket thread to stop now (it closes the socket and ends its pipes).
    pub fn abort(&self) {
        self.abort.store(true, Ordering::SeqCst);
    }

    /// The flag that [`Session::abort`] sets, for threads that must stop the session themselves.
    pub fn abort_handle(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.abort)
    }

    /// Wait for the socket thread; a panic in it becomes an error.
    pub fn join(mut self) -> Result<SessionEnd> {
        join_handle(self.handle.take())
    }
}

fn join_handle(handle: Option<JoinHandle<Result<SessionEnd>>>) -> Result<SessionEnd> {
    let Some(h) = handle else {
        return Err(Error::msg("the stream was already waited for"));
    };
    match h.join() {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(Error::msg(format!("the WebSocket thread panicked: {msg}")))
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.handle.is_some() {
            self.abort();
            let _ = join_handle(self.handle.take());
        }
    }
}

fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Errors that mean "the other side is gone", not "something is broken".
fn peer_gone(e: &tungstenite::Error) -> bool {
    match e {
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => true,
        tungstenite::Error::Protocol(tungstenite::error::ProtocolError::SendAfterClosing) => true,
        tungstenite::Error::Io(e) => dropped(e),
        _ => false,
    }
}

fn dropped(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::BrokenPipe
    )
}

struct Loop {
    ws: WebSocket<Box<dyn WsTransport>>,
    protocol: Protocol,
    spec: Spec,
    config: SessionConfig,
    /// Remaining prefix bytes to skip, per stream id.
    skip: [usize; 256],
    status: Vec<u8>,
    write_blocked: bool,
    /// A write found the peer gone: no more writes, read what is left.
    write_failed: bool,
    read_timeout: Duration,
    what: String,
}

enum ReadOutcome {
    Nothing,
    Busy,
    Closed { clean: bool },
}

fn run(
    upgraded: Upgraded,
    spec: Spec,
    config: SessionConfig,
    rx: Receiver<Outgoing>,
    abort: Arc<AtomicBool>,
    what: &str,
) -> Result<SessionEnd> {
    let mut skip = [0usize; 256];
    for r in &spec.routes {
        skip[r.stream as usize] = r.skip;
    }
    if let Some((id, n)) = spec.status {
        skip[id as usize] = n;
    }
    let mut l = Loop {
        ws: upgraded.socket,
        protocol: upgraded.protocol,
        spec,
        read_timeout: config.idle_read_timeout,
        config,
        skip,
        status: Vec::new(),
        write_blocked: false,
        write_failed: false,
        what: what.to_string(),
    };
    let result = l.run(&rx, &abort);
    // End every consumer: EOF when the stream ended properly, an error otherwise, so truncated
    // output is never mistaken for complete output.
    match &result {
        Ok(end) if end.clean_close || !end.status.is_empty() || end.aborted => {
            for r in &mut l.spec.routes {
                r.out.finish();
            }
        }
        Ok(_) => {
            for r in &mut l.spec.routes {
                r.out.fail(
                    io::ErrorKind::ConnectionAborted,
                    format!(
                        "the connection for {} was lost; output may be truncated",
                        l.what
                    ),
                );
            }
        }
        Err(e) => {
            for r in &mut l.spec.routes {
                r.out.fail(io::ErrorKind::Other, e.to_string());
            }
        }
    }
    result.map(|mut end| {
        end.status = std::mem::take(&mut l.status);
        end
    })
}

impl Loop {
    fn ws_error(&self, doing: &str, e: tungstenite::Error) -> Error {
        Error::Transport {
            message: format!("{} ({doing}): {e}", self.what),
            hint: None,
        }
    }

    fn set_timeout(&mut self, t: Duration) {
        if t != self.read_timeout {
            self.read_timeout = t;
            let _ = self.ws.get_ref().set_read_timeout(Some(t));
        }
    }

    /// Write one message. `Ok(true)` when the socket would block (the frame stays buffered). When
    /// the peer is already gone (it closed, or the connection dropped) sending stops, and reading
    /// goes on to collect what the server sent before (its final status).
    fn send(&mut self, msg: Message, closing_since: &mut Option<Instant>) -> Result<bool> {
        match self.ws.write(msg) {
            Ok(()) => Ok(false),
            Err(tungstenite::Error::Io(e)) if would_block(&e) => Ok(true),
            Err(e) if peer_gone(&e) => {
                self.write_failed = true;
                closing_since.get_or_insert_with(Instant::now);
                Ok(false)
            }
            Err(e) => Err(self.ws_error("sending", e)),
        }
    }

    fn run(&mut self, rx: &Receiver<Outgoing>, abort: &AtomicBool) -> Result<SessionEnd> {
        let t = self.ws.get_ref();
        t.set_read_timeout(Some(self.read_timeout))
            .and_then(|_| t.set_write_timeout(Some(self.config.write_timeout)))
            .map_err(|e| {
                Error::io("", e).context(format!("setting socket timeouts for {}", self.what))
            })?;
        let mut last_heard = Instant::now();
        let mut last_ping = Instant::now();
        // Set once we sent a close frame or saw the server's: stop sending, wait for the end.
        let mut closing_since: Option<Instant> = None;
        let mut queue_open = true;
        loop {
            if abort.load(Ordering::SeqCst) {
                let _ = self.ws.close(None);
                let _ = self.ws.flush();
                return Ok(SessionEnd {
                    aborted: true,
                    ..Default::default()
                });
            }
            let mut busy = false;
            // 1. Outgoing messages, unless the socket is backed up.
            while queue_open && closing_since.is_none() && !self.write_blocked && !self.write_failed
            {
                let msg = match rx.try_recv() {
                    Ok(m) => m,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        queue_open = false;
                        break;
                    }
                };
                busy = true;
                let frame = match msg {
                    Outgoing::Data(id, data) => codec::data_message(id, &data),
                    Outgoing::CloseStream(id) => {
                        if !self.protocol.supports_half_close() {
                            continue;
                        }
                        codec::close_message(id)
                    }
                    Outgoing::Resize(w, h) => codec::resize_message(w, h),
                    Outgoing::Close => {
                        closing_since = Some(Instant::now());
                        match self.ws.close(None) {
                            Ok(()) => {}
                            Err(tungstenite::Error::Io(e)) if would_block(&e) => {}
                            Err(_) => {
                                return Ok(SessionEnd {
                                    clean_close: true,
                                    ..Default::default()
                                })
                            }
                        }
                        break;
                    }
                    Outgoing::Abort => {
                        abort.store(true, Ordering::SeqCst);
                        break;
                    }
                };
                self.write_blocked =
                    self.send(Message::Binary(frame.into()), &mut closing_since)?;
            }
            if abort.load(Ordering::SeqCst) {
                continue;
            }
            // 2. Keepalive.
            if closing_since.is_none() && last_ping.elapsed() >= self.config.ping_interval {
                last_ping = Instant::now();
                self.write_blocked = self
                    .send(Message::Ping(Vec::new().into()), &mut closing_since)?
                    || self.write_blocked;
            }
            // 3. Flush (also sends queued pongs and close replies).
            if !self.write_failed {
                match self.ws.flush() {
                    Ok(()) => self.write_blocked = false,
                    Err(tungstenite::Error::Io(e)) if would_block(&e) => self.write_blocked = true,
                    Err(e) if peer_gone(&e) => {
                        self.write_failed = true;
                        closing_since.get_or_insert_with(Instant::now);
                    }
                    Err(e) => return Err(self.ws_error("flushing", e)),
                }
            }
            // 4. A closing handshake that the server never finishes ends after a grace period.
            if let Some(since) = closing_since {
                if since.elapsed() > Duration::from_secs(5) {
                    return Ok(SessionEnd {
                        clean_close: !self.write_failed,
                        ..Default::default()
                    });
                }
            }
            // 5. Read, unless a consumer is behind.
            if let Some(full) = self.spec.routes.iter().find(|r| r.out.is_full()) {
                full.out.wait_for_room(self.config.idle_read_timeout);
                // We are not listening on purpose: silence is not the server's fault.
                last_heard = Instant::now();
                continue;
            }
            let want = if busy || self.write_blocked {
                Duration::from_millis(1)
            } else {
                self.config.idle_read_timeout
            };
            self.set_timeout(want);
            match self.read_some(&mut last_heard, &mut closing_since)? {
                ReadOutcome::Nothing => {}
                ReadOutcome::Busy => busy = true,
                ReadOutcome::Closed { clean } => {
                    return Ok(SessionEnd {
                        clean_close: clean,
                        ..Default::default()
                    })
                }
            }
            if busy {
                // Keep the short timeout for the next turn.
                self.set_timeout(Duration::from_millis(1));
            }
            if last_heard.elapsed() > self.config.silence_limit {
                return Err(Error::Transport {
                    message: format!(
                        "{}: no data and no answer to pings from the API server for {} s; the connection is dead",
                        self.what,
                        self.config.silence_limit.as_secs()
                    ),
                    hint: Some("check your network or VPN connection and try again".into()),
                });
            }
        }
    }

    fn read_some(
        &mut self,
        last_heard: &mut Instant,
        closing_since: &mut Option<Instant>,
    ) -> Result<ReadOutcome> {
        let mut outcome = ReadOutcome::Nothing;
        for _ in 0..64 {
            match self.ws.read() {
                Ok(msg) => {
                    *last_heard = Instant::now();
                    outcome = ReadOutcome::Busy;
                    match msg {
                        Message::Binary(data) => {
                            self.dispatch(&data);
                            if self.spec.routes.iter().any(|r| r.out.is_full()) {
                                break;
                            }
                        }
                        Message::Text(_) => {
                            return Err(Error::Transport {
                                message: format!(
                                "{}: the server sent a text message on a binary channel protocol",
                                self.what
                            ),
                                hint: None,
                            })
                        }
                        Message::Close(_) => {
                            if closing_since.is_none() {
                                *closing_since = Some(Instant::now());
                            }
                        }
                        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                    }
                }
                Err(tungstenite::Error::Io(e)) if would_block(&e) => break,
                Err(tungstenite::Error::ConnectionClosed)
                | Err(tungstenite::Error::AlreadyClosed) => {
                    return Ok(ReadOutcome::Closed { clean: true })
                }
                Err(tungstenite::Error::Io(e)) if dropped(&e) => {
                    return Ok(ReadOutcome::Closed {
                        clean: closing_since.is_some(),
                    })
                }
                Err(tungstenite::Error::Protocol(
                    tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                )) => {
                    return Ok(ReadOutcome::Closed {
                        clean: closing_since.is_some(),
                    })
                }
                Err(e) => return Err(self.ws_error("reading", e)),
            }
        }
        Ok(outcome)
    }

    fn dispatch(&mut self, message: &[u8]) {
        let Some((id, mut payload)) = codec::split_message(message) else {
            return;
        };
        let skip = &mut self.skip[id as usize];
        if *skip > 0 {
            let n = (*skip).min(payload.len());
            *skip -= n;
            payload = &payload[n..];
        }
        if payload.is_empty() {
            // The "ready" message, or a fully skipped prefix.
            return;
        }
        if self.config.panic_on_stream == Some(id) {
            panic!("injected fault: panic on stream {id}");
        }
        if self.spec.status.is_some_and(|(s, _)| s == id) {
            // Bound the status buffer: a status is small; garbage must not eat memory.
            if self.status.len() < 1 << 20 {
                self.status.extend_from_slice(payload);
            }
            return;
        }
        if let Some(r) = self.spec.routes.iter_mut().find(|r| r.stream == id) {
            r.out.push(payload);
        }
    }
}
