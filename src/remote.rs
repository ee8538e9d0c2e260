//! The seam between pod-side work and the transport that reaches the pod.
//!
//! `sync`, `agent` and `run` do their work in the session pod through [`Remote`], never through `kube`
//! directly, so they can be tested without a cluster: [`LocalRemote`] runs the same argv as local
//! processes. `session` implements `Remote` for a real pod on top of `kube`'s exec WebSocket.
//!
//! Contract of a [`RemoteProcess`]: stdin, stdout and stderr are binary-safe byte streams that may be
//! taken once each and moved to other threads. Dropping (or `close`-ing) the stdin writer half-closes
//! stdin so the remote side sees EOF. [`RemoteProcess::wait`] returns the remote exit code once the
//! process has ended and every output stream was drained (or dropped).
//!
//! May import: error.

use crate::error::{Error, Result};
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};

/// Something that can run a command inside the session's container.
pub trait Remote: Send + Sync {
    /// Start `argv` (`argv[0]` is looked up on the remote PATH) with piped stdin, stdout and stderr.
    /// Arguments are passed as they are: no shell ever re-parses them.
    fn exec(&self, argv: &[String]) -> Result<Box<dyn RemoteProcess>>;

    /// Run `argv` to completion, feeding `stdin`, and collect its output.
    fn run(&self, argv: &[String], stdin: &[u8]) -> Result<Output> {
        let mut p = self.exec(argv)?;
        let mut inp = p.take_stdin();
        let mut out = p.take_stdout();
        let mut err = p.take_stderr();
        let data = stdin.to_vec();
        let writer = std::thread::spawn(move || -> std::io::Result<()> {
            if let Some(w) = inp.as_mut() {
                w.write_all(&data)?;
                w.flush()?;
            }
            drop(inp);
            Ok(())
        });
        let err_reader = std::thread::spawn(move || -> std::io::Result<Vec<u8>> {
            let mut buf = Vec::new();
            if let Some(r) = err.as_mut() {
                r.read_to_end(&mut buf)?;
            }
            Ok(buf)
        });
        let mut stdout = Vec::new();
        if let Some(r) = out.as_mut() {
            r.read_to_end(&mut stdout).map_err(|e| Error::io("", e))?;
        }
        drop(out);
        let stderr = err_reader
            .join()
            .map_err(|_| Error::msg("stderr reader thread panicked"))?
            .map_err(|e| Error::io("", e))?;
        // A failed stdin write (the process exited without reading) is not an error by itself.
        let _ = writer.join();
        let code = p.wait()?;
        Ok(Output {
            code,
            stdout,
            stderr,
        })
    }
}

/// The result of [`Remote::run`].
#[derive(Debug, Clone, Default)]
pub struct Output {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    /// stdout as (lossy) UTF-8 with trailing whitespace trimmed.
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).trim_end().to_string()
    }
    /// stderr as (lossy) UTF-8 with trailing whitespace trimmed.
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim_end().to_string()
    }
}

/// A running remote command.
pub trait RemoteProcess: Send {
    /// The stdin writer; `None` after the first call. Dropping it sends EOF.
    fn take_stdin(&mut self) -> Option<Box<dyn Write + Send>>;
    /// The stdout reader; `None` after the first call.
    fn take_stdout(&mut self) -> Option<Box<dyn Read + Send>>;
    /// The stderr reader; `None` after the first call.
    fn take_stderr(&mut self) -> Option<Box<dyn Read + Send>>;
    /// Wait for the exit code.
    fn wait(self: Box<Self>) -> Result<i32>;
}

/// Runs commands as local processes, optionally with a fixed working directory. For tests of
/// `sync`, `agent` and `run` without a cluster.
#[derive(Debug, Clone, Default)]
pub struct LocalRemote {
    /// Working directory for every command, if set.
    pub cwd: Option<std::path::PathBuf>,
    /// Extra environment for every command.
    pub env: Vec<(String, String)>,
}

impl Remote for LocalRemote {
    fn exec(&self, argv: &[String]) -> Result<Box<dyn RemoteProcess>> {
        let (prog, args) = argv
            .split_first()
            .ok_or_else(|| Error::msg("empty command"))?;
        let mut cmd = Command::new(prog);
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(d) = &self.cwd {
            cmd.current_dir(d);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().map_err(|e| Error::io(prog, e))?;
        Ok(Box::new(LocalProcess { child }))
    }
}

struct LocalProcess {
    child: Child,
}

impl RemoteProcess for LocalProcess {
    fn take_stdin(&mut self) -> Option<Box<dyn Write + Send>> {
        self.child
            .stdin
            .take()
            .map(|s| Box::new(s) as Box<dyn Write + Send>)
    }
    fn take_stdout(&mut self) -> Option<Box<dyn Read + Send>> {
        self.child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>)
    }
    fn take_stderr(&mut self) -> Option<Box<dyn Read + Send>> {
        self.child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>)
    }
    fn wait(mut self: Box<Self>) -> Result<i32> {
        drop(self.child.stdin.take());
        let st = self.child.wait().map_err(|e| Error::io("", e))?;
        Ok(st.code().unwrap_or(128 + signal_of(&st)))
    }
}

fn signal_of(st: &std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    st.signal().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_remote_round_trips_binary_stdin_and_exit_code() {
        let r = LocalRemote::default();
        let data: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
        let out = r.run(&["cat".to_string()], &data).expect("run cat");
        assert_eq!(out.code, 0);
        assert_eq!(out.stdout, data);
        let out = r
            .run(
                &["sh".into(), "-c".into(), "echo err >&2; exit 42".into()],
                b"",
            )
            .expect("run sh");
        assert_eq!(out.code, 42);
        assert_eq!(out.stderr_str(), "err");
    }
}
