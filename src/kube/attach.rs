//! Attach to the main process of a running container over WebSocket (`/attach`), interactively.
//!
//! Same framing and terminal handling as exec (`exec::run_terminal`). With a TTY we first
//! send the window size plus one and then the real size, so the remote program (whose screen is
//! already drawn) gets a resize and redraws. The container must have `stdin: true` (and `tty: true`
//! for a TTY attach) in its spec. A stream that the server closes cleanly without a status counts
//! as success (the attached process may outlive us).
//!
//! May import: error, term, kube::ws, kube::exec.

use super::exec::{run_terminal, TerminalIo, TerminalMode};
use super::ws::session::SessionConfig;
use super::ws::{check_name, percent_encode, Dialer};
use crate::error::Result;

/// One attach to a container.
#[derive(Debug, Clone, Default)]
pub struct AttachRequest {
    pub namespace: String,
    pub pod: String,
    /// Container name; `None` lets the server pick.
    pub container: Option<String>,
    /// Send our stdin.
    pub stdin: bool,
    /// TTY mode (raw local terminal, resize events).
    pub tty: bool,
}

impl AttachRequest {
    /// The request path and query.
    pub fn path(&self) -> Result<String> {
        check_name("namespace", &self.namespace)?;
        check_name("pod", &self.pod)?;
        let mut q = super::exec::stream_flags(self.stdin, self.tty);
        if let Some(c) = &self.container {
            q.push_str("&container=");
            q.push_str(&percent_encode(c));
        }
        Ok(format!(
            "/api/v1/namespaces/{}/pods/{}/attach?{q}",
            percent_encode(&self.namespace),
            percent_encode(&self.pod)
        ))
    }
}

/// Attach on the process's terminal; returns the exit code the server reports (0 when the stream
/// simply closed).
pub fn attach(dialer: &dyn Dialer, req: &AttachRequest) -> Result<i32> {
    attach_on(dialer, req, TerminalIo::stdio(), SessionConfig::default())
}

/// [`attach`] on an explicit terminal with explicit session tunables.
pub fn attach_on(
    dialer: &dyn Dialer,
    req: &AttachRequest,
    terminal: TerminalIo,
    config: SessionConfig,
) -> Result<i32> {
    let path = req.path()?;
    let what = format!("attach to pod {}/{}", req.namespace, req.pod);
    run_terminal(
        dialer,
        &path,
        &what,
        ("pods/attach", &req.namespace, &req.pod),
        TerminalMode {
            stdin: req.stdin,
            tty: req.tty,
            redraw: true,
            strict_status: false,
        },
        terminal,
        config,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attach_url() {
        let r = AttachRequest {
            namespace: "dev".into(),
            pod: "kodama-x".into(),
            container: Some("main".into()),
            stdin: true,
            tty: true,
        };
        assert_eq!(
            r.path().expect("path"),
            "/api/v1/namespaces/dev/pods/kodama-x/attach?stdin=true&stdout=true&stderr=false&tty=true&container=main"
        );
        let bad = AttachRequest {
            pod: "a/b".into(),
            namespace: "dev".into(),
            ..Default::default()
        };
        assert!(bad.path().is_err());
    }
}
