//! Undo for `start` (and `resume`): remembers exactly which objects THIS invocation created and
//! deletes them again on failure or Ctrl-C. PVCs that existed before (they may hold data) are never
//! in the list, so they are never deleted. Also the Ctrl-C/SIGTERM flag checked by the start phases.
//!
//! May import: kube, term, error, std.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::kube::request::DeleteOptions;
use crate::kube::resource::{Resource, CONFIG_MAPS, PERSISTENT_VOLUME_CLAIMS, PODS, SECRETS};
use crate::kube::Client;

/// One object created by this invocation.
#[derive(Debug, Clone)]
pub struct Created {
    pub kind: Kind,
    pub name: String,
}

/// The kinds of objects a session has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Pod,
    Pvc,
    ConfigMap,
    Secret,
}

impl Kind {
    pub fn resource(self) -> &'static Resource {
        match self {
            Kind::Pod => &PODS,
            Kind::Pvc => &PERSISTENT_VOLUME_CLAIMS,
            Kind::ConfigMap => &CONFIG_MAPS,
            Kind::Secret => &SECRETS,
        }
    }
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Pod => "pod",
            Kind::Pvc => "pvc",
            Kind::ConfigMap => "configmap",
            Kind::Secret => "secret",
        }
    }
}

/// The objects created so far, in creation order.
#[derive(Debug, Default)]
pub struct Rollback {
    pub namespace: String,
    pub created: Vec<Created>,
}

impl Rollback {
    pub fn new(namespace: &str) -> Rollback {
        Rollback {
            namespace: namespace.to_string(),
            created: Vec::new(),
        }
    }

    pub fn push(&mut self, kind: Kind, name: &str) {
        self.created.push(Created {
            kind,
            name: name.to_string(),
        });
    }

    /// Delete everything recorded, newest first (pod before its volumes). NotFound counts as done.
    /// Returns the objects that could not be deleted (with the error), for the message.
    pub fn run(&mut self, client: &Client) -> Vec<String> {
        let mut failed = Vec::new();
        while let Some(c) = self.created.pop() {
            let opts = DeleteOptions {
                grace_period_seconds: (c.kind == Kind::Pod).then_some(0),
                ..DeleteOptions::default()
            };
            match client.delete(c.kind.resource(), Some(&self.namespace), &c.name, &opts) {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => failed.push(format!("{} {}: {}", c.kind.noun(), c.name, e)),
            }
        }
        failed
    }
}

/// Ctrl-C (SIGINT) and SIGTERM while a start is in flight: watched through `term::SignalPipe`
/// (which gives the signals their default action back when dropped, so a later `attach` in `dev`,
/// or anything after, still ends on Ctrl-C), checked by the phases.
pub struct Interrupt {
    pipes: Vec<crate::term::SignalPipe>,
    fired: AtomicBool,
}

impl Interrupt {
    /// Catch SIGINT and SIGTERM from now on (until `uninstall`/drop).
    pub fn install() -> Result<Interrupt> {
        let mut pipes = Vec::new();
        for sig in [libc::SIGINT, libc::SIGTERM] {
            pipes.push(crate::term::SignalPipe::new(sig)?);
        }
        Ok(Interrupt {
            pipes,
            fired: AtomicBool::new(false),
        })
    }

    pub fn fired(&self) -> bool {
        if self.fired.load(Ordering::SeqCst) {
            return true;
        }
        // Drain every pipe (no short-circuit).
        let mut any = false;
        for p in &self.pipes {
            if p.take() {
                any = true;
            }
        }
        if any {
            self.fired.store(true, Ordering::SeqCst);
        }
        any
    }

    /// Give the signals their default action back.
    pub fn uninstall(self) {
        drop(self);
    }

    /// Run `f` on a worker thread and wait for it, returning `Error::Interrupted` as soon as the
    /// flag is set (the worker is abandoned; the caller rolls back and exits).
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        if self.fired() {
            return Err(Error::Interrupted);
        }
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("kodama-start-step".into())
            .spawn(move || {
                let _ = tx.send(f());
            })
            .map_err(|e| Error::msg(format!("starting a worker thread: {e}")))?;
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(r) => return r,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if self.fired() {
                        return Err(Error::Interrupted);
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(Error::msg(
                        "a start step ended without a result (it panicked)",
                    ))
                }
            }
        }
    }
}
