//! `port-forward <name> LOCAL[:REMOTE]...` until Ctrl-C.
//!
//! Listens on 127.0.0.1 (and ::1 when the machine has IPv6) for every mapping, printing
//! `Forwarding from 127.0.0.1:L -> R` like kubectl, and opens one port-forward stream per accepted
//! connection (kube::portforward). Errors of one connection (nothing listening on that pod port) are
//! reported and the listener keeps going. Ctrl-C, SIGTERM or SIGHUP stop it cleanly (exit 0).
//!
//! May import: session::{ctx, resolve}, kube, term, error.

use std::sync::Arc;
use std::time::Duration;

use super::ctx::Ctx;
use super::resolve;
use crate::cli::PortForwardArgs;
use crate::error::{Error, Result};
use crate::kube::portforward::{PortForwarder, PortMapping, Reporter};
use crate::term::{self, SignalPipe};

/// `port-forward <name> LOCAL[:REMOTE]...`.
pub fn port_forward(ctx: &Ctx, args: &PortForwardArgs) -> Result<()> {
    if args.ports.is_empty() {
        return Err(Error::usage(
            "port-forward needs at least one port",
            Some(format!(
                "e.g. `kubectl kodama port-forward {} 8080:80`",
                args.name
            )),
        ));
    }
    let found = resolve::find(ctx, &args.name)?;
    let remote = resolve::remote_for(ctx, &found)?;
    let mappings: Vec<PortMapping> = args
        .ports
        .iter()
        .map(|p| PortMapping {
            local: p.local,
            remote: p.remote,
        })
        .collect();
    // Watch the stop signals before listening, so a Ctrl-C right after the first line is not lost.
    let mut signals = Vec::new();
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        signals.push(SignalPipe::new(sig)?);
    }
    let report: Reporter = Arc::new(|line: &str| eprintln!("{line}"));
    let fwd = PortForwarder::start(
        Arc::new(remote.dialer.clone()),
        &remote.namespace,
        &remote.pod,
        &mappings,
        report,
    )
    .map_err(|e| e.context(format!("port-forward to session \"{}\"", args.name)))?;
    let mut lines = String::new();
    for (m, addrs) in fwd.bound() {
        for a in addrs {
            lines.push_str(&format!("Forwarding from {a} -> {}\n", m.remote));
        }
    }
    super::print(&lines)?;
    let fds: Vec<_> = signals.iter().map(SignalPipe::fd).collect();
    loop {
        let ready = term::poll_readable(&fds, Duration::from_secs(3600))
            .map_err(|e| Error::io("", e).context("waiting for Ctrl-C"))?;
        if ready.iter().any(|r| *r) || signals.iter().any(SignalPipe::take) {
            break;
        }
    }
    fwd.stop();
    Ok(())
}
