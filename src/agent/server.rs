//! The in-pod side: `kubectl-kodama agent <serve|extract|pack|version> --root DIR …`, a hidden
//! subcommand of kodama's own binary, run in the pod over exec.
//!
//! - `serve`: the [`protocol`](super::protocol) on stdin/stdout, applying changes under the root.
//! - `extract`: a tar stream on stdin, extracted safely under the root (files written atomically).
//! - `pack [--path SUB] [--exclude PAT]… [--no-gitignore] [--no-kodamaignore]`: a tar of the root (or of SUB) on stdout,
//!   applying the tree's own .gitignore/.kodamaignore files plus the patterns given.
//! - `version`: prints `kodama-agent <version> protocol <n>`.
//!
//! Nothing is ever written outside the root: every path goes through `sync::safefs`.
//!
//! May import: error, agent::protocol, sync::{ignore, scan, archive, safefs}.

use crate::agent::protocol::{self, Msg};
use crate::error::{Error, Result};
use crate::sync::archive;
use crate::sync::ignore::{IgnoreOptions, IgnoreRules};
use crate::sync::safefs::{self, AtomicFile};
use crate::sync::scan::{self, Snapshot};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The line `agent version` prints.
pub fn version_line() -> String {
    format!(
        "kodama-agent {} protocol {}",
        crate::VERSION,
        protocol::PROTOCOL_VERSION
    )
}

/// Parsed `agent` arguments.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AgentArgs {
    pub command: String,
    pub root: Option<PathBuf>,
    pub path: String,
    pub excludes: Vec<String>,
    pub no_gitignore: bool,
    pub no_kodamaignore: bool,
}

/// Parse `[agent] <command> --root DIR [--path SUB] [--exclude PAT]… [--no-gitignore]`.
pub fn parse_args(args: Vec<OsString>) -> Result<AgentArgs> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    let mut a = AgentArgs::default();
    let usage = |m: String| {
        Error::usage(
            m,
            Some("usage: kubectl-kodama agent <serve|extract|pack|version> --root DIR".into()),
        )
    };
    while let Some(arg) = p.next().map_err(|e| usage(e.to_string()))? {
        match arg {
            Long("root") => a.root = Some(p.value().map_err(|e| usage(e.to_string()))?.into()),
            Long("path") => {
                a.path = p
                    .value()
                    .map_err(|e| usage(e.to_string()))?
                    .into_string()
                    .map_err(|_| usage("--path must be UTF-8".into()))?
            }
            Long("exclude") => a.excludes.push(
                p.value()
                    .map_err(|e| usage(e.to_string()))?
                    .into_string()
                    .map_err(|_| usage("--exclude must be UTF-8".into()))?,
            ),
            Long("no-gitignore") => a.no_gitignore = true,
            Long("no-kodamaignore") => a.no_kodamaignore = true,
            Value(v) if a.command.is_empty() || a.command == "agent" => {
                a.command = v
                    .into_string()
                    .map_err(|_| usage("bad agent command".into()))?
            }
            other => {
                return Err(usage(format!(
                    "unexpected agent argument {:?}",
                    other.unexpected()
                )))
            }
        }
    }
    if a.command.is_empty() || a.command == "agent" {
        return Err(usage("missing agent command".into()));
    }
    Ok(a)
}

/// Entry point of the hidden `agent` subcommand (args after the binary name; a leading `agent` is
/// accepted). Uses the process's stdin and stdout.
pub fn main(args: Vec<OsString>) -> Result<()> {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    run(args, &mut stdin.lock(), &mut stdout.lock())
}

/// [`main`] over given streams (tests run the agent in a thread with pipes).
pub fn run(args: Vec<OsString>, input: &mut dyn Read, output: &mut dyn Write) -> Result<()> {
    let a = parse_args(args)?;
    if a.command == "version" {
        writeln!(output, "{}", version_line()).map_err(|e| Error::io("", e))?;
        return output.flush().map_err(|e| Error::io("", e));
    }
    let root = a
        .root
        .clone()
        .ok_or_else(|| Error::usage(format!("agent {} needs --root DIR", a.command), None))?;
    match a.command.as_str() {
        "serve" => {
            std::fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
            serve(&root, input, output)
        }
        "extract" => {
            std::fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
            let rep = archive::extract(
                &mut *input,
                &root,
                &archive::ExtractOptions {
                    preserve_mtime: true,
                    ..Default::default()
                },
            )?;
            // Our writer ends with two zero blocks and the reader stops at the first: take the
            // second too, so the sender never writes into a closed pipe. (Without waiting for EOF,
            // which an exec stream without stdin-close (v4) never delivers.)
            let mut pad = [0u8; 512];
            let _ = input.read_exact(&mut pad);
            if !rep.refused.is_empty() {
                let list: Vec<String> = rep
                    .refused
                    .iter()
                    .map(|(p, why)| format!("{p}: {why}"))
                    .collect();
                return Err(Error::Invalid {
                    what: format!("{} archive entries refused", rep.refused.len()),
                    faults: list,
                    hint: None,
                });
            }
            Ok(())
        }
        "pack" => {
            let mut rules_opts = pod_options(!a.no_gitignore, a.excludes.clone());
            rules_opts.use_kodamaignore = !a.no_kodamaignore;
            let rules = IgnoreRules::new(&root, rules_opts)?;
            let snap = clean_listing(&root, scan::scan(&rules, &a.path)?.snapshot);
            let mut w = BufWriter::with_capacity(256 * 1024, output);
            archive::write_tar(&mut w, &root, &snap, &mut |_| {})?;
            w.flush().map_err(|e| Error::io("", e))
        }
        other => Err(Error::usage(
            format!("unknown agent command {other:?}"),
            Some("expected serve, extract, pack or version".into()),
        )),
    }
}

fn pod_options(use_gitignore: bool, excludes: Vec<String>) -> IgnoreOptions {
    IgnoreOptions {
        use_gitignore,
        exclude_patterns: excludes,
        excludes_file: None,
        use_kodamaignore: true,
    }
}

fn pod_rules(root: &Path, use_gitignore: bool, excludes: Vec<String>) -> Result<IgnoreRules> {
    IgnoreRules::new(root, pod_options(use_gitignore, excludes))
}

/// Drop our temporary files from a listing, deleting stale ones left by a dead agent.
fn clean_listing(root: &Path, mut snap: Snapshot) -> Snapshot {
    let mine = format!("{}{}-", safefs::TMP_MARKER, std::process::id());
    snap.retain(|p, _| {
        let name = p.rsplit('/').next().unwrap_or(p);
        if safefs::is_tmp_name(name) {
            if !name.contains(&mine) {
                let _ = std::fs::remove_file(root.join(p));
            }
            return false;
        }
        true
    });
    snap
}

/// The file being received.
enum Incoming {
    None,
    Writing {
        file: AtomicFile,
        path: String,
        exec: bool,
        mtime: i64,
        mtime_nsec: u32,
    },
    /// FileBegin failed: swallow chunks, answer the error at FileEnd.
    Failed {
        path: String,
        message: String,
    },
}

/// Serve the protocol for `root` over the given streams until the client closes its side.
pub fn serve(root: &Path, input: &mut dyn Read, output: &mut dyn Write) -> Result<()> {
    let root = safefs::open_root(root)?;
    let mut r = BufReader::with_capacity(256 * 1024, input);
    let mut w = BufWriter::with_capacity(64 * 1024, output);
    let io = |e: std::io::Error| Error::io("", e).context("agent stream");
    protocol::write_hello(&mut w).map_err(io)?;
    protocol::read_hello(&mut r).map_err(io)?;
    let mut incoming = Incoming::None;
    loop {
        // Answers go out before we would block waiting for more requests.
        if r.buffer().is_empty() {
            w.flush().map_err(io)?;
            if r.fill_buf().map_err(io)?.is_empty() {
                return Ok(());
            }
        }
        let Some(msg) = protocol::read_msg(&mut r).map_err(io)? else {
            w.flush().map_err(io)?;
            return Ok(());
        };
        let reply = |res: Result<()>, path: &str| match res {
            Ok(()) => Msg::Ok,
            Err(e) => Msg::Err {
                path: path.to_string(),
                message: e.to_string(),
            },
        };
        let out = match msg {
            Msg::Bye => {
                w.flush().map_err(io)?;
                return Ok(());
            }
            Msg::Ping(n) => Some(Msg::Pong(n)),
            Msg::Mkdir { path } => Some(reply(safefs::make_dir(&root, &path), &path)),
            Msg::Symlink { path, target } => {
                Some(reply(safefs::make_symlink(&root, &path, &target), &path))
            }
            Msg::Chmod { path, exec } => Some(reply(safefs::set_exec(&root, &path, exec), &path)),
            Msg::Delete { path } => Some(reply(safefs::remove(&root, &path).map(|_| ()), &path)),
            Msg::Rename { from, to } => Some(reply(safefs::rename(&root, &from, &to), &to)),
            Msg::FileBegin {
                path,
                exec,
                mtime,
                mtime_nsec,
                ..
            } => {
                incoming = match AtomicFile::create(&root, &path) {
                    Ok(file) => Incoming::Writing {
                        file,
                        path,
                        exec,
                        mtime,
                        mtime_nsec,
                    },
                    Err(e) => Incoming::Failed {
                        path,
                        message: e.to_string(),
                    },
                };
                None
            }
            Msg::FileChunk(data) => {
                if let Incoming::Writing { file, path, .. } = &mut incoming {
                    if let Err(e) = file.write_chunk(&data) {
                        incoming = Incoming::Failed {
                            path: path.clone(),
                            message: e.to_string(),
                        };
                    }
                }
                None
            }
            Msg::FileAbort { reason } => {
                // Dropping the AtomicFile removes its temporary file: nothing half-written stays.
                let path = match std::mem::replace(&mut incoming, Incoming::None) {
                    Incoming::Writing { path, .. } | Incoming::Failed { path, .. } => path,
                    Incoming::None => String::new(),
                };
                Some(Msg::Err {
                    path,
                    message: format!("not written: the client could not read the file: {reason}"),
                })
            }
            Msg::FileEnd => match std::mem::replace(&mut incoming, Incoming::None) {
                Incoming::Writing {
                    file,
                    path,
                    exec,
                    mtime,
                    mtime_nsec,
                } => Some(reply(
                    file.commit(exec, Some(safefs::system_time(mtime, mtime_nsec))),
                    &path,
                )),
                Incoming::Failed { path, message } => Some(Msg::Err { path, message }),
                Incoming::None => Some(Msg::Err {
                    path: String::new(),
                    message: "file end without file begin".into(),
                }),
            },
            Msg::List {
                path,
                use_gitignore,
                excludes,
            } => {
                let res = pod_rules(&root, use_gitignore, excludes)
                    .and_then(|rules| scan::scan(&rules, &path));
                match res {
                    Ok(s) => {
                        let snap = clean_listing(&root, s.snapshot);
                        let items: Vec<_> = snap.into_iter().collect();
                        for c in items.chunks(2000) {
                            protocol::write_msg(&mut w, &Msg::ListChunk(c.to_vec())).map_err(io)?;
                        }
                        Some(Msg::ListEnd)
                    }
                    Err(e) => Some(Msg::Err {
                        path,
                        message: e.to_string(),
                    }),
                }
            }
            Msg::Hash { path } => {
                let res = safefs::prepare_parent(&root, &path, false).and_then(|p| {
                    let mut f = std::fs::OpenOptions::new()
                        .read(true)
                        .custom_flags(libc::O_NOFOLLOW)
                        .open(&p)
                        .map_err(|e| Error::io(&p, e))?;
                    protocol::hash_stream(&mut f).map_err(|e| Error::io(&p, e))
                });
                Some(match res {
                    Ok((size, hash)) => Msg::HashReply { size, hash },
                    Err(e) => Msg::Err {
                        path,
                        message: e.to_string(),
                    },
                })
            }
            other => Some(Msg::Err {
                path: String::new(),
                message: format!("unexpected message from client: {}", other.name()),
            }),
        };
        if let Some(m) = out {
            protocol::write_msg(&mut w, &m).map_err(io)?;
        }
    }
}
