//! Shared helpers for the sync integration tests: temp dirs, tree building, polling with a deadline.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static N: AtomicUsize = AtomicUsize::new(0);

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "kodama-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(std::fs::canonicalize(&p).expect("canonicalize temp dir"))
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Write `content` to `root/rel`, creating parents.
pub fn write(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).expect("mkdir -p");
    }
    std::fs::write(&p, content).expect("write file");
}

/// Poll `f` until it returns true or `secs` pass; panics with `what` on timeout.
pub fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if f() {
            return;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Read a file as a string, or None.
pub fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

use kodama::remote::{LocalRemote, Remote, RemoteProcess};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

/// A "pod" that runs `<anything> agent …` in a thread of this test process (the agent's real code over
/// real byte pipes) and everything else as local processes. `cut_after` makes the first agent `serve`
/// connection die after that many bytes of stdin (a dropped exec stream).
#[derive(Clone, Default)]
pub struct ThreadRemote {
    pub local: LocalRemote,
    pub cut_after: Option<Arc<std::sync::Mutex<Option<usize>>>>,
}

impl ThreadRemote {
    pub fn new() -> ThreadRemote {
        ThreadRemote::default()
    }
}

struct ThreadProc {
    stdin: Option<Box<dyn Write + Send>>,
    stdout: Option<Box<dyn Read + Send>>,
    stderr: Option<Box<dyn Read + Send>>,
    handle: Option<std::thread::JoinHandle<i32>>,
}

impl RemoteProcess for ThreadProc {
    fn take_stdin(&mut self) -> Option<Box<dyn Write + Send>> {
        self.stdin.take()
    }
    fn take_stdout(&mut self) -> Option<Box<dyn Read + Send>> {
        self.stdout.take()
    }
    fn take_stderr(&mut self) -> Option<Box<dyn Read + Send>> {
        self.stderr.take()
    }
    fn wait(mut self: Box<Self>) -> kodama::Result<i32> {
        drop(self.stdin.take());
        Ok(self
            .handle
            .take()
            .map(|h| h.join().unwrap_or(101))
            .unwrap_or(0))
    }
}

/// Writes through until the budget is spent, then fails and shuts the stream (both directions).
struct Cutter {
    inner: UnixStream,
    left: usize,
}

impl Write for Cutter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            let _ = self.inner.shutdown(std::net::Shutdown::Both);
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "injected drop",
            ));
        }
        let n = buf.len().min(self.left);
        let n = self.inner.write(&buf[..n])?;
        self.left -= n;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl Remote for ThreadRemote {
    fn exec(&self, argv: &[String]) -> kodama::Result<Box<dyn RemoteProcess>> {
        // Like a real exec: the agent runs only when its binary is really there.
        if argv.get(1).map(String::as_str) != Some("agent")
            || !std::path::Path::new(&argv[0]).is_file()
        {
            return self.local.exec(argv);
        }
        let args: Vec<std::ffi::OsString> = argv[1..].iter().map(Into::into).collect();
        let (in_client, in_server) = UnixStream::pair().expect("pair");
        let (out_client, out_server) = UnixStream::pair().expect("pair");
        let (err_client, mut err_server) = UnixStream::pair().expect("pair");
        let mut cut = None;
        if argv.get(2).map(String::as_str) == Some("serve") {
            if let Some(c) = &self.cut_after {
                cut = c.lock().unwrap().take();
            }
        }
        let handle = std::thread::spawn(move || {
            let mut input = in_server;
            let mut output = out_server;
            let code = match kodama::agent::server::run(args, &mut input, &mut output) {
                Ok(()) => 0,
                Err(e) => {
                    let _ = writeln!(err_server, "{e}");
                    1
                }
            };
            let _ = output.shutdown(std::net::Shutdown::Both);
            drop(err_server);
            code
        });
        let stdin: Box<dyn Write + Send> = match cut {
            Some(n) => Box::new(Cutter {
                inner: in_client,
                left: n,
            }),
            None => Box::new(HalfClose(in_client)),
        };
        Ok(Box::new(ThreadProc {
            stdin: Some(stdin),
            stdout: Some(Box::new(out_client)),
            stderr: Some(Box::new(err_client)),
            handle: Some(handle),
        }))
    }
}

/// Closing the writer half-closes the socket so the reader sees EOF (like closing a pipe).
struct HalfClose(UnixStream);

impl Write for HalfClose {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl Drop for HalfClose {
    fn drop(&mut self) {
        let _ = self.0.shutdown(std::net::Shutdown::Write);
    }
}
