//! The client side of the agent protocol, over a remote process's stdin/stdout (or any byte pipes).
//!
//! A reader thread decodes the agent's replies into a channel, so the caller can stream a whole batch
//! of changes (file data included) without ever blocking on unread replies, then collect one reply per
//! change: one round trip per batch. A reply that does not come within the timeout counts as a dead
//! connection.
//!
//! May import: error, remote, agent::protocol, sync::{scan, plan, safefs}.

use crate::agent::protocol::{self, Msg};
use crate::error::{Error, Result};
use crate::remote::{Remote, RemoteProcess};
use crate::sync::plan::Change;
use crate::sync::scan::{self, Entry, Snapshot};
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What happened to one change of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Applied in the pod. For files: the metadata of the content actually sent.
    Done(Option<Entry>),
    /// Not sent: the local file vanished or turned into something else meanwhile (the watcher will
    /// report what it is now).
    Skipped,
    /// The pod refused it (path, reason); the connection is fine.
    Failed(String),
}

/// Totals of a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyStats {
    pub changes: u64,
    pub files: u64,
    pub bytes: u64,
    pub deletes: u64,
    pub failed: u64,
}

/// A connection to a running `agent serve`.
pub struct AgentClient {
    w: BufWriter<Box<dyn Write + Send>>,
    rx: Receiver<std::io::Result<Msg>>,
    proc: Option<Box<dyn RemoteProcess>>,
    /// Longest wait for any reply.
    pub timeout: Duration,
    /// The agent's software version from its hello.
    pub agent_version: String,
    next_ping: u64,
    stderr_tail: Option<Arc<Mutex<Vec<u8>>>>,
}

/// Add what the agent wrote to stderr (if anything) to a connection error.
fn with_tail(e: Error, tail: &Arc<Mutex<Vec<u8>>>) -> Error {
    // Give the stderr reader a moment to catch the agent's last words.
    std::thread::sleep(Duration::from_millis(20));
    let text = tail
        .lock()
        .map(|t| String::from_utf8_lossy(&t).trim().to_string())
        .unwrap_or_default();
    match e {
        _ if text.is_empty() => e,
        Error::Transport { message, hint } => Error::Transport {
            message: format!("{message} (agent stderr: {text})"),
            hint,
        },
        Error::Context { context, source } => Error::Context {
            context,
            source: Box::new(with_tail(*source, tail)),
        },
        other => other.context(format!("agent stderr: {text}")),
    }
}

fn dead(e: impl std::fmt::Display) -> Error {
    Error::Transport {
        message: format!("sync connection to the pod lost: {e}"),
        hint: None,
    }
}

impl AgentClient {
    /// Start `argv` (an `agent serve --root …` command line) through `remote` and shake hands.
    pub fn connect(remote: &dyn Remote, argv: &[String]) -> Result<AgentClient> {
        let mut p = remote.exec(argv)?;
        let w = p
            .take_stdin()
            .ok_or_else(|| Error::msg("agent process has no stdin"))?;
        let r = p
            .take_stdout()
            .ok_or_else(|| Error::msg("agent process has no stdout"))?;
        // Keep stderr drained (a chatty agent must never block) and remember its tail for errors.
        let tail = Arc::new(Mutex::new(Vec::<u8>::new()));
        if let Some(mut e) = p.take_stderr() {
            let tail = tail.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = e.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut t) = tail.lock() {
                        t.extend_from_slice(&buf[..n]);
                        let excess = t.len().saturating_sub(2048);
                        t.drain(..excess);
                    }
                }
            });
        }
        let mut c = AgentClient::over(r, w).map_err(|e| with_tail(e, &tail))?;
        c.stderr_tail = Some(tail);
        c.proc = Some(p);
        Ok(c)
    }

    /// Shake hands over given streams.
    pub fn over(mut r: Box<dyn Read + Send>, w: Box<dyn Write + Send>) -> Result<AgentClient> {
        let mut w = BufWriter::with_capacity(256 * 1024, w);
        protocol::write_hello(&mut w).map_err(|e| dead(e).context("agent handshake"))?;
        let (tx, rx) = mpsc::channel();
        let (htx, hrx) = mpsc::channel();
        std::thread::Builder::new()
            .name("kodama-agent-reader".into())
            .spawn(move || {
                let hello = protocol::read_hello(&mut r);
                let ok = hello.is_ok();
                let _ = htx.send(hello);
                if !ok {
                    return;
                }
                let mut r = std::io::BufReader::with_capacity(64 * 1024, r);
                loop {
                    match protocol::read_msg(&mut r) {
                        Ok(Some(m)) => {
                            if tx.send(Ok(m)).is_err() {
                                return;
                            }
                        }
                        Ok(None) => {
                            let _ = tx.send(Err(std::io::Error::new(
                                std::io::ErrorKind::UnexpectedEof,
                                "the agent closed the stream",
                            )));
                            return;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    }
                }
            })
            .map_err(|e| Error::io("", e))?;
        let timeout = Duration::from_secs(30);
        let agent_version = match hrx.recv_timeout(timeout) {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return Err(dead(e).context("agent handshake")),
            Err(_) => {
                return Err(dead("no hello from the agent within 30s").context("agent handshake"))
            }
        };
        Ok(AgentClient {
            w,
            rx,
            proc: None,
            timeout,
            agent_version,
            next_ping: 1,
            stderr_tail: None,
        })
    }

    fn recv(&self) -> Result<Msg> {
        match self.rx.recv_timeout(self.timeout) {
            Ok(Ok(m)) => Ok(m),
            Ok(Err(e)) => Err(match &self.stderr_tail {
                Some(t) => with_tail(dead(e), t),
                None => dead(e),
            }),
            Err(RecvTimeoutError::Timeout) => Err(dead(format!(
                "no answer from the agent for {}s",
                self.timeout.as_secs()
            ))),
            Err(RecvTimeoutError::Disconnected) => Err(dead("reader stopped")),
        }
    }

    fn send(&mut self, m: &Msg) -> Result<()> {
        protocol::write_msg(&mut self.w, m).map_err(dead)
    }

    fn flush(&mut self) -> Result<()> {
        self.w.flush().map_err(dead)
    }

    /// Round trip a ping; returns the time it took.
    pub fn ping(&mut self) -> Result<Duration> {
        let n = self.next_ping;
        self.next_ping += 1;
        let t = Instant::now();
        self.send(&Msg::Ping(n))?;
        self.flush()?;
        match self.recv()? {
            Msg::Pong(m) if m == n => Ok(t.elapsed()),
            other => Err(dead(format!("expected pong {n}, got {}", other.name()))),
        }
    }

    /// Apply `changes` in order, reading file contents from `local_root`. Everything is streamed, then
    /// one reply per change is collected. A transport error fails the whole call (nothing after the
    /// last acknowledged change can be assumed applied).
    pub fn apply(
        &mut self,
        local_root: &Path,
        changes: &[Change],
    ) -> Result<(Vec<Outcome>, ApplyStats)> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; changes.len()];
        let mut expect: Vec<usize> = Vec::with_capacity(changes.len());
        let mut sent_entries: Vec<Option<Entry>> = vec![None; changes.len()];
        let mut stats = ApplyStats::default();
        let mut buf = vec![0u8; protocol::CHUNK];
        for (i, c) in changes.iter().enumerate() {
            // Never send (or read locally) a path that could leave either root.
            let bad = crate::sync::safefs::check_rel(c.path())
                .err()
                .or_else(|| match c {
                    Change::Rename { from, .. } => crate::sync::safefs::check_rel(from).err(),
                    _ => None,
                });
            if let Some(e) = bad {
                stats.failed += 1;
                outcomes[i] = Some(Outcome::Failed(e.to_string()));
                continue;
            }
            let msg = match c {
                Change::Mkdir { path } => Msg::Mkdir { path: path.clone() },
                Change::Chmod { path, exec } => Msg::Chmod {
                    path: path.clone(),
                    exec: *exec,
                },
                Change::Symlink { path, target } => Msg::Symlink {
                    path: path.clone(),
                    target: target.clone(),
                },
                Change::Delete { path, .. } => Msg::Delete { path: path.clone() },
                Change::Rename { from, to } => Msg::Rename {
                    from: from.clone(),
                    to: to.clone(),
                },
                Change::Write { path, .. } => {
                    let abs = local_root.join(path);
                    let file = std::fs::OpenOptions::new()
                        .read(true)
                        .custom_flags(libc::O_NOFOLLOW)
                        .open(&abs);
                    let mut file = match file {
                        Ok(f) => f,
                        Err(_) => {
                            outcomes[i] = Some(Outcome::Skipped);
                            continue;
                        }
                    };
                    let md = file.metadata().map_err(|e| Error::io(&abs, e))?;
                    let Some(entry) = scan::entry_from_metadata(&abs, &md).ok().flatten() else {
                        outcomes[i] = Some(Outcome::Skipped);
                        continue;
                    };
                    if entry.kind != scan::Kind::File {
                        outcomes[i] = Some(Outcome::Skipped);
                        continue;
                    }
                    self.send(&Msg::FileBegin {
                        path: path.clone(),
                        size: entry.size,
                        exec: entry.exec,
                        mtime: entry.mtime,
                        mtime_nsec: entry.mtime_nsec,
                    })?;
                    let mut read_error = None;
                    loop {
                        let n = match file.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => n,
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                            Err(e) => {
                                read_error = Some(e.to_string());
                                break;
                            }
                        };
                        protocol::write_chunk(&mut self.w, &buf[..n]).map_err(dead)?;
                        stats.bytes += n as u64;
                    }
                    match read_error {
                        // Unreadable midway: the pod keeps its previous version.
                        Some(reason) => Msg::FileAbort { reason },
                        None => {
                            stats.files += 1;
                            sent_entries[i] = Some(entry);
                            Msg::FileEnd
                        }
                    }
                }
            };
            if matches!(c, Change::Delete { .. }) {
                stats.deletes += 1;
            }
            self.send(&msg)?;
            expect.push(i);
            // Keep the pipe moving for long batches without a flush per change.
            if self.w.buffer().len() > 128 * 1024 {
                self.flush()?;
            }
        }
        self.flush()?;
        for i in expect {
            let o = match self.recv()? {
                Msg::Ok => Outcome::Done(sent_entries[i].take()),
                Msg::Err { path, message } => {
                    stats.failed += 1;
                    Outcome::Failed(if message.contains(&path) || path.is_empty() {
                        message
                    } else {
                        format!("{path}: {message}")
                    })
                }
                other => return Err(dead(format!("unexpected reply {}", other.name()))),
            };
            outcomes[i] = Some(o);
            stats.changes += 1;
        }
        Ok((
            outcomes
                .into_iter()
                .map(|o| o.unwrap_or(Outcome::Skipped))
                .collect(),
            stats,
        ))
    }

    /// The pod's tree at `path` ("" = all), pruned by the pod-side rules given.
    pub fn list(
        &mut self,
        path: &str,
        use_gitignore: bool,
        excludes: Vec<String>,
    ) -> Result<Snapshot> {
        self.send(&Msg::List {
            path: path.to_string(),
            use_gitignore,
            excludes,
        })?;
        self.flush()?;
        let mut snap = Snapshot::new();
        loop {
            match self.recv()? {
                Msg::ListChunk(items) => snap.extend(items),
                Msg::ListEnd => return Ok(snap),
                Msg::Err { message, .. } => {
                    return Err(Error::msg(format!("listing the pod's files: {message}")))
                }
                other => return Err(dead(format!("unexpected reply {}", other.name()))),
            }
        }
    }

    /// Size and FNV-1a hash of a file in the pod.
    pub fn hash(&mut self, path: &str) -> Result<(u64, u64)> {
        self.send(&Msg::Hash {
            path: path.to_string(),
        })?;
        self.flush()?;
        match self.recv()? {
            Msg::HashReply { size, hash } => Ok((size, hash)),
            Msg::Err { message, .. } => Err(Error::msg(format!(
                "hashing {path:?} in the pod: {message}"
            ))),
            other => Err(dead(format!("unexpected reply {}", other.name()))),
        }
    }

    /// Close our side and wait for the agent to exit; returns its exit code when it ran as a process.
    pub fn close(mut self) -> Result<Option<i32>> {
        let _ = protocol::write_msg(&mut self.w, &Msg::Bye);
        let _ = self.w.flush();
        let AgentClient { w, proc, .. } = self;
        drop(w);
        match proc {
            Some(p) => p.wait().map(Some),
            None => Ok(None),
        }
    }
}
