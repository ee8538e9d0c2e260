//! Command-line parsing with lexopt: [`parse`] turns the arguments (without the program name) into an
//! [`Invocation`], plain data that says what the user meant, and [`help_text`] renders help. Nothing
//! here touches the cluster, the config files or the environment, so every case is unit-tested.
//!
//! Parsing is in two steps, like ripgrep: a generic pass collects flags (looked up in
//! [`spec::COMMANDS`]) and positionals, then each command's builder checks them and fills its typed
//! arguments. Every fault is an [`Error::Usage`] (exit code 2) with a hint.
//!
//! May import: error, config (plain option types, quantities, name rules). Never kube types.

pub mod spec;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{
    check_quantity, closest, layer::validate_resource_name, parse_duration, parse_secret_file_spec,
    validate_namespace, validate_session_name, Layer, QKind, Quantity, SecretFileSpec,
};
use crate::error::{Error, Result};
use spec::{find_command, CommandSpec, FlagSpec, COMMANDS, GLOBAL_FLAGS};

/// What the user asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    pub global: GlobalFlags,
    pub command: Command,
}

/// The kubectl-style flags every command accepts.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GlobalFlags {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    pub cluster: Option<String>,
    pub user: Option<String>,
    /// `-n/--namespace`.
    pub namespace: Option<String>,
    /// `--request-timeout`; `Some(ZERO)` means no timeout.
    pub request_timeout: Option<Duration>,
    /// 0 by default; `-v` adds one, `-v=N` sets N.
    pub verbosity: u8,
}

/// One command with its arguments.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Start(StartArgs),
    Dev(DevArgs),
    List(ListArgs),
    Attach(AttachArgs),
    Delete(DeleteArgs),
    Stop(NameArgs),
    Resume(ResumeArgs),
    Sync(SyncArgs),
    Pull(PullArgs),
    Diff(NameArgs),
    Push(NameArgs),
    PortForward(PortForwardArgs),
    Prompt(PromptArgs),
    Logs(LogsArgs),
    Status(StatusArgs),
    Version,
    /// `help [COMMAND]`, `--help`, `COMMAND --help`, or no command at all.
    Help {
        topic: Option<String>,
    },
    /// Hidden: the background sync process of a session.
    SyncDaemon(NameArgs),
    /// Hidden: the in-pod helper; the raw arguments after `agent`, for the agent module to parse.
    Agent(Vec<OsString>),
    /// Hidden: the in-pod agent runner; raw arguments after `run-agent`.
    RunAgent(Vec<OsString>),
}

impl Command {
    /// The command's name as typed in help ("start", "list", ...).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Start(_) => "start",
            Command::Dev(_) => "dev",
            Command::List(_) => "list",
            Command::Attach(_) => "attach",
            Command::Delete(_) => "delete",
            Command::Stop(_) => "stop",
            Command::Resume(_) => "resume",
            Command::Sync(_) => "sync",
            Command::Pull(_) => "pull",
            Command::Diff(_) => "diff",
            Command::Push(_) => "push",
            Command::PortForward(_) => "port-forward",
            Command::Prompt(_) => "prompt",
            Command::Logs(_) => "logs",
            Command::Status(_) => "status",
            Command::Version => "version",
            Command::Help { .. } => "help",
            Command::SyncDaemon(_) => "sync-daemon",
            Command::Agent(_) => "agent",
            Command::RunAgent(_) => "run-agent",
        }
    }
}

/// Where the local files to sync come from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SyncChoice {
    /// No flag: the current directory (the session decides, e.g. not with --repo alone).
    #[default]
    Default,
    /// `--sync PATH`.
    Path(PathBuf),
    /// `--no-sync`.
    Off,
}

/// Where a prompt comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptSource {
    /// `-p TEXT` (never empty).
    Text(String),
    /// `--prompt-file PATH` (read, and checked non-empty, by the session before anything is created).
    File(PathBuf),
}

/// `-o json|yaml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataFormat {
    Json,
    Yaml,
}

/// `list -o`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListFormat {
    #[default]
    Table,
    Wide,
    Json,
    Yaml,
}

/// Arguments of `start` (and the start part of `dev`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StartArgs {
    pub name: String,
    pub repo: Option<String>,
    pub branch: Option<String>,
    pub sync: SyncChoice,
    /// `--force`: allow syncing $HOME or /.
    pub force: bool,
    pub cpu: Option<Quantity>,
    pub memory: Option<Quantity>,
    /// `--resource NAME=COUNT`, merged (a later flag for the same name wins).
    pub resources: BTreeMap<String, Quantity>,
    pub image: Option<String>,
    pub storage_class: Option<String>,
    pub prompt: Option<PromptSource>,
    pub env_files: Vec<PathBuf>,
    pub env_exclude: Vec<String>,
    pub secret_files: Vec<SecretFileSpec>,
    pub git_ssh_secret: Option<String>,
    /// `--config FILE`.
    pub config: Option<PathBuf>,
    /// `--timeout`; None: config `timeouts.start`, else 5m.
    pub timeout: Option<Duration>,
    /// `--dry-run` with its output format (yaml unless `-o json`).
    pub dry_run: Option<DataFormat>,
}

impl StartArgs {
    /// The configuration layer these flags make (the highest layer in [`crate::config::resolve`]).
    pub fn flag_layer(&self, global: &GlobalFlags) -> Layer {
        Layer {
            namespace: global.namespace.clone(),
            image: self.image.clone(),
            cpu: self.cpu.clone(),
            memory: self.memory.clone(),
            extra_resources: (!self.resources.is_empty()).then(|| self.resources.clone()),
            storage_class: self.storage_class.clone(),
            dotenv_files: (!self.env_files.is_empty()).then(|| self.env_files.clone()),
            exclude_vars: (!self.env_exclude.is_empty()).then(|| self.env_exclude.clone()),
            secret_files: (!self.secret_files.is_empty()).then(|| self.secret_files.clone()),
            git_secret_name: self.git_ssh_secret.clone(),
            start_timeout: self.timeout,
            repo: self.repo.clone(),
            branch: self.branch.clone(),
            ..Layer::default()
        }
    }
}

/// Arguments of `dev`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DevArgs {
    pub start: StartArgs,
    /// `--command`: run this instead of an interactive shell.
    pub command: Option<String>,
}

/// Arguments of `list`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ListArgs {
    pub all_namespaces: bool,
    pub output: ListFormat,
}

/// Arguments of `attach`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AttachArgs {
    pub name: String,
    pub command: Option<String>,
}

/// Arguments of `delete`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeleteArgs {
    pub name: String,
    pub keep_config: bool,
    pub force: bool,
    pub purge: bool,
}

/// A command that takes only a session name.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NameArgs {
    pub name: String,
}

/// Arguments of `resume`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResumeArgs {
    pub name: String,
    pub no_sync: bool,
}

/// Arguments of `sync`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SyncArgs {
    pub name: String,
    pub foreground: bool,
    pub once: bool,
    /// `--force` (with `--once`): propagate a mass deletion the safety guard stopped.
    pub force: bool,
}

/// Arguments of `pull`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PullArgs {
    pub name: String,
    /// Path inside /workspace (default: all of it).
    pub remote_path: Option<String>,
    pub local_dir: Option<PathBuf>,
    pub force: bool,
}

/// One `LOCAL[:REMOTE]` of port-forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortSpec {
    /// 0: pick a free local port.
    pub local: u16,
    pub remote: u16,
}

/// Arguments of `port-forward`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PortForwardArgs {
    pub name: String,
    pub ports: Vec<PortSpec>,
}

/// Arguments of `prompt`.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptArgs {
    pub name: String,
    pub prompt: PromptSource,
    /// `--continue`: carry on the previous conversation.
    pub continue_conversation: bool,
    pub force: bool,
}

/// Arguments of `logs`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogsArgs {
    pub name: String,
    pub follow: bool,
    pub run: Option<String>,
    pub raw: bool,
}

/// Arguments of `status`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StatusArgs {
    pub name: String,
    /// None: human-readable.
    pub output: Option<DataFormat>,
}

/// The help text for `topic` (None: the overview). An unknown topic is a usage error.
pub fn help_text(topic: Option<&str>) -> Result<String> {
    match topic {
        None => Ok(spec::main_help()),
        Some(t) => match find_command(t) {
            Some(c) => Ok(spec::command_help(c)),
            None => Err(unknown_command(t)),
        },
    }
}

/// The flags and positionals collected for one command.
#[derive(Debug, Default)]
struct Matches {
    flags: Vec<(&'static str, Option<OsString>)>,
    positionals: Vec<OsString>,
}

impl Matches {
    fn has(&self, long: &str) -> bool {
        self.flags.iter().any(|(l, _)| *l == long)
    }
    /// The last value of a flag.
    fn last(&self, long: &str) -> Option<&OsString> {
        self.flags
            .iter()
            .rev()
            .find(|(l, _)| *l == long)
            .and_then(|(_, v)| v.as_ref())
    }
    fn all(&self, long: &str) -> Vec<&OsString> {
        self.flags
            .iter()
            .filter(|(l, _)| *l == long)
            .filter_map(|(_, v)| v.as_ref())
            .collect()
    }
}

fn see_help(cmd: Option<&CommandSpec>) -> String {
    match cmd {
        Some(c) => format!("see 'kubectl kodama {} --help'", c.name),
        None => "see 'kubectl kodama help'".to_string(),
    }
}

fn usage(msg: impl Into<String>, cmd: Option<&CommandSpec>) -> Error {
    Error::usage(msg, Some(see_help(cmd)))
}

fn usage_hint(msg: impl Into<String>, hint: impl AsRef<str>, cmd: Option<&CommandSpec>) -> Error {
    let hint = hint.as_ref();
    let see = see_help(cmd);
    let joined = if hint.ends_with('?') || hint.ends_with('.') {
        let mut see = see;
        see.replace_range(0..1, "S");
        format!("{hint} {see}")
    } else {
        format!("{hint}; {see}")
    };
    Error::usage(msg, Some(joined))
}

fn unknown_command(name: &str) -> Error {
    let visible = COMMANDS
        .iter()
        .filter(|c| !c.hidden)
        .flat_map(|c| std::iter::once(c.name).chain(c.aliases.iter().copied()));
    match closest(name, visible) {
        Some(s) => usage_hint(
            format!("unknown command {name:?}"),
            format!("did you mean '{s}'?"),
            None,
        ),
        None => usage(format!("unknown command {name:?}"), None),
    }
}

fn lexopt_error(e: lexopt::Error, cmd: Option<&CommandSpec>) -> Error {
    let msg = match e {
        lexopt::Error::MissingValue { option: Some(o) } => format!("flag {o} needs a value"),
        lexopt::Error::MissingValue { option: None } => "a flag needs a value".into(),
        lexopt::Error::UnexpectedValue { option, value } => {
            format!(
                "flag {option} does not take a value (got {:?})",
                value.to_string_lossy()
            )
        }
        lexopt::Error::NonUnicodeValue(v) => {
            format!("argument {:?} is not valid UTF-8", v.to_string_lossy())
        }
        other => other.to_string(),
    };
    usage(msg, cmd)
}

/// All flags a command accepts: its own, then the global ones.
fn command_flags(cmd: Option<&'static CommandSpec>) -> impl Iterator<Item = &'static FlagSpec> {
    cmd.into_iter()
        .flat_map(|c| c.flags.iter().flat_map(|g| g.iter()))
        .chain(GLOBAL_FLAGS.iter())
}

fn to_string(v: &OsStr, what: &str, cmd: Option<&CommandSpec>) -> Result<String> {
    v.to_str().map(str::to_string).ok_or_else(|| {
        usage(
            format!("{what} {:?} is not valid UTF-8", v.to_string_lossy()),
            cmd,
        )
    })
}

/// Parse the command line (without the program name).
pub fn parse<I: IntoIterator<Item = OsString>>(args: I) -> Result<Invocation> {
    let mut p = lexopt::Parser::from_args(args);
    let mut global = GlobalFlags::default();
    let mut cmd: Option<&'static CommandSpec> = None;
    let mut m = Matches::default();

    loop {
        let arg = match p.next() {
            Ok(Some(a)) => a,
            Ok(None) => break,
            Err(e) => return Err(lexopt_error(e, cmd)),
        };
        let (spec, display): (&'static FlagSpec, String) = match arg {
            lexopt::Arg::Value(v) => {
                if cmd.is_none() {
                    let name = to_string(&v, "command", None)?;
                    let c = find_command(&name).ok_or_else(|| unknown_command(&name))?;
                    if c.name == "agent" || c.name == "run-agent" {
                        let rest: Vec<OsString> =
                            p.raw_args().map_err(|e| lexopt_error(e, cmd))?.collect();
                        let command = if c.name == "agent" {
                            Command::Agent(rest)
                        } else {
                            Command::RunAgent(rest)
                        };
                        return Ok(Invocation { global, command });
                    }
                    cmd = Some(c);
                } else {
                    m.positionals.push(v);
                }
                continue;
            }
            lexopt::Arg::Short(c) => {
                let found = command_flags(cmd).find(|f| f.short == Some(c));
                match found {
                    Some(f) => (f, format!("-{c}")),
                    None => return Err(usage(format!("unknown flag -{c}{}", for_cmd(cmd)), cmd)),
                }
            }
            lexopt::Arg::Long(l) => {
                // kubectl spells its verbosity flag --v; accept it too.
                let l = if l == "v" {
                    "verbose".to_string()
                } else {
                    l.to_string()
                };
                if l == "version" && cmd.is_none() {
                    return Ok(Invocation {
                        global,
                        command: Command::Version,
                    });
                }
                let found = command_flags(cmd).find(|f| f.long == l);
                match found {
                    Some(f) => (f, format!("--{l}")),
                    None => {
                        let names = command_flags(cmd).map(|f| f.long);
                        let hint = closest(&l, names)
                            .map(|s| format!("did you mean --{s}?"))
                            .or_else(|| {
                                // A flag of another command.
                                COMMANDS.iter().find_map(|c| {
                                    c.flags
                                        .iter()
                                        .flat_map(|g| g.iter())
                                        .any(|f| f.long == l)
                                        .then(|| format!("--{l} belongs to '{}'", c.name))
                                })
                            });
                        let msg = format!("unknown flag --{l}{}", for_cmd(cmd));
                        return Err(match hint {
                            Some(h) => usage_hint(msg, h, cmd),
                            None => usage(msg, cmd),
                        });
                    }
                }
            }
        };

        if spec.long == "help" {
            return Ok(Invocation {
                global,
                command: Command::Help {
                    topic: cmd.map(|c| c.name.to_string()),
                },
            });
        }
        if spec.long == "verbose" {
            let level = match p.optional_value() {
                None => global.verbosity.saturating_add(1),
                Some(v) => {
                    let s = v.to_string_lossy();
                    if !s.is_empty() && s.chars().all(|c| c == 'v') {
                        global.verbosity.saturating_add(1 + s.len().min(9) as u8)
                    } else {
                        s.parse::<u8>().ok().filter(|n| *n <= 10).ok_or_else(|| {
                            usage(
                                format!(
                                    "{display} takes a level from 0 to 10, not {s:?} (e.g. -v=4)"
                                ),
                                cmd,
                            )
                        })?
                    }
                }
            };
            global.verbosity = level;
            continue;
        }
        let value = match spec.value {
            None => None,
            Some(_) => Some(match p.optional_value() {
                Some(v) => v,
                None => {
                    let v = p.value().map_err(|e| lexopt_error(e, cmd))?;
                    let s = v.to_string_lossy();
                    if s.starts_with("--") && s.len() > 2 {
                        return Err(usage_hint(
                            format!("flag {display} needs a value, but the next argument is the flag {s}"),
                            format!("write {display}=VALUE if the value really starts with --"),
                            cmd,
                        ));
                    }
                    v
                }
            }),
        };
        if GLOBAL_FLAGS.iter().any(|g| g.long == spec.long) {
            set_global(&mut global, spec, value.unwrap_or_default(), cmd)?;
        } else {
            m.flags.push((spec.long, value));
        }
    }

    let Some(c) = cmd else {
        return Ok(Invocation {
            global,
            command: Command::Help { topic: None },
        });
    };
    let command = build(c, m)?;
    Ok(Invocation { global, command })
}

fn for_cmd(cmd: Option<&CommandSpec>) -> String {
    cmd.map(|c| format!(" for '{}'", c.name))
        .unwrap_or_default()
}

fn set_global(
    g: &mut GlobalFlags,
    spec: &FlagSpec,
    v: OsString,
    cmd: Option<&CommandSpec>,
) -> Result<()> {
    let nonempty = |v: &OsString| -> Result<String> {
        let s = to_string(v, &format!("--{}", spec.long), cmd)?;
        if s.is_empty() {
            return Err(usage(
                format!("--{} needs a non-empty value", spec.long),
                cmd,
            ));
        }
        Ok(s)
    };
    match spec.long {
        "kubeconfig" => {
            if v.is_empty() {
                return Err(usage("--kubeconfig needs a non-empty path", cmd));
            }
            g.kubeconfig = Some(PathBuf::from(v));
        }
        "context" => g.context = Some(nonempty(&v)?),
        "cluster" => g.cluster = Some(nonempty(&v)?),
        "user" => g.user = Some(nonempty(&v)?),
        "namespace" => {
            let s = nonempty(&v)?;
            validate_namespace(&s).map_err(|e| usage(e, cmd))?;
            g.namespace = Some(s);
        }
        "request-timeout" => {
            let s = nonempty(&v)?;
            g.request_timeout = Some(parse_duration(&s).map_err(|e| {
                usage(
                    format!("--request-timeout: {e}; use e.g. 30s, 1m or 0 (no timeout)"),
                    cmd,
                )
            })?);
        }
        other => {
            return Err(Error::msg(format!(
                "internal error: unhandled global flag --{other}"
            )))
        }
    }
    Ok(())
}

/// Check and take the positionals: `names` are required in order, `optional` may follow.
fn positionals(
    c: &CommandSpec,
    m: &mut Matches,
    required: &[&str],
    optional: usize,
    extra_hint: Option<&str>,
) -> Result<Vec<OsString>> {
    let got = m.positionals.len();
    if got < required.len() {
        let missing = required[got];
        return Err(usage_hint(
            format!("'{}' needs {missing}", c.name),
            format!("usage: kubectl kodama {} {}", c.name, c.args),
            Some(c),
        ));
    }
    if got > required.len() + optional {
        let extra = &m.positionals[required.len() + optional];
        let msg = format!(
            "unexpected argument {:?} for '{}'",
            extra.to_string_lossy(),
            c.name
        );
        return Err(match extra_hint {
            Some(h) => usage_hint(msg, h, Some(c)),
            None => usage(msg, Some(c)),
        });
    }
    Ok(std::mem::take(&mut m.positionals))
}

fn session_name(v: &OsStr, c: &CommandSpec) -> Result<String> {
    let s = to_string(v, "session name", Some(c))?;
    validate_session_name(&s).map_err(|e| usage(e, Some(c)))?;
    Ok(s)
}

fn str_flag(m: &Matches, long: &str, c: &CommandSpec) -> Result<Option<String>> {
    match m.last(long) {
        None => Ok(None),
        Some(v) => {
            let s = to_string(v, &format!("--{long}"), Some(c))?;
            if s.trim().is_empty() {
                return Err(usage(format!("--{long} needs a non-empty value"), Some(c)));
            }
            Ok(Some(s))
        }
    }
}

fn conflict(m: &Matches, a: &str, b: &str, c: &CommandSpec) -> Result<()> {
    if m.has(a) && m.has(b) {
        return Err(usage(
            format!("--{a} and --{b} cannot be used together"),
            Some(c),
        ));
    }
    Ok(())
}

fn prompt_source(m: &Matches, c: &CommandSpec) -> Result<Option<PromptSource>> {
    conflict(m, "prompt", "prompt-file", c)?;
    if let Some(v) = m.last("prompt") {
        let s = to_string(v, "--prompt", Some(c))?;
        if s.trim().is_empty() {
            return Err(usage_hint(
                "the prompt is empty",
                "give the task as text, e.g. -p \"Add tests for the parser\"",
                Some(c),
            ));
        }
        return Ok(Some(PromptSource::Text(s)));
    }
    if let Some(v) = m.last("prompt-file") {
        if v.is_empty() {
            return Err(usage("--prompt-file needs a path", Some(c)));
        }
        return Ok(Some(PromptSource::File(PathBuf::from(v))));
    }
    Ok(None)
}

fn data_format(v: &OsStr, allowed: &str, c: &CommandSpec) -> Result<DataFormat> {
    match v.to_str() {
        Some("json") => Ok(DataFormat::Json),
        Some("yaml") => Ok(DataFormat::Yaml),
        _ => Err(usage(
            format!(
                "-o {:?} is not a supported output format; use {allowed}",
                v.to_string_lossy()
            ),
            Some(c),
        )),
    }
}

fn build(c: &'static CommandSpec, mut m: Matches) -> Result<Command> {
    let name_only = |m: &mut Matches, hint: Option<&str>| -> Result<String> {
        let pos = positionals(c, m, &["a session name"], 0, hint)?;
        session_name(&pos[0], c)
    };
    Ok(match c.name {
        "start" => {
            let pos = positionals(c, &mut m, &["a session name"], 0, None)?;
            Command::Start(start_args(c, &m, &pos[0])?)
        }
        "dev" => {
            let pos = positionals(c, &mut m, &["a session name"], 0, None)?;
            let start = start_args(c, &m, &pos[0])?;
            Command::Dev(DevArgs {
                start,
                command: str_flag(&m, "command", c)?,
            })
        }
        "list" => {
            positionals(
                c,
                &mut m,
                &[],
                0,
                Some("list takes no session name; use 'status NAME' for one session"),
            )?;
            let output = match m.last("output").map(|v| v.to_str()) {
                None => ListFormat::Table,
                Some(Some("table")) => ListFormat::Table,
                Some(Some("wide")) => ListFormat::Wide,
                Some(Some("json")) => ListFormat::Json,
                Some(Some("yaml")) => ListFormat::Yaml,
                Some(other) => {
                    return Err(usage(
                        format!(
                        "-o {:?} is not a supported output format; use table, wide, json or yaml",
                        other.unwrap_or("")
                    ),
                        Some(c),
                    ))
                }
            };
            Command::List(ListArgs {
                all_namespaces: m.has("all-namespaces"),
                output,
            })
        }
        "attach" => {
            let name = name_only(&mut m, Some("to run a command, use --command \"CMD ARGS\""))?;
            Command::Attach(AttachArgs {
                name,
                command: str_flag(&m, "command", c)?,
            })
        }
        "delete" => Command::Delete(DeleteArgs {
            name: name_only(&mut m, Some("delete takes one session name at a time"))?,
            keep_config: m.has("keep-config"),
            force: m.has("force"),
            purge: m.has("purge"),
        }),
        "stop" => Command::Stop(NameArgs {
            name: name_only(&mut m, None)?,
        }),
        "resume" => Command::Resume(ResumeArgs {
            name: name_only(&mut m, None)?,
            no_sync: m.has("no-sync"),
        }),
        "sync" => Command::Sync(SyncArgs {
            name: name_only(&mut m, None)?,
            foreground: m.has("foreground"),
            once: m.has("once"),
            force: m.has("force"),
        }),
        "sync-daemon" => Command::SyncDaemon(NameArgs {
            name: name_only(&mut m, None)?,
        }),
        "pull" => {
            let pos = positionals(c, &mut m, &["a session name"], 2, None)?;
            let name = session_name(&pos[0], c)?;
            let remote_path = match pos.get(1) {
                Some(v) => {
                    let s = to_string(v, "REMOTE_PATH", Some(c))?;
                    if s.is_empty() {
                        return Err(usage("REMOTE_PATH is empty", Some(c)));
                    }
                    Some(s)
                }
                None => None,
            };
            let local_dir = pos.get(2).map(PathBuf::from);
            if local_dir.as_ref().is_some_and(|d| d.as_os_str().is_empty()) {
                return Err(usage("LOCAL_DIR is empty", Some(c)));
            }
            Command::Pull(PullArgs {
                name,
                remote_path,
                local_dir,
                force: m.has("force"),
            })
        }
        "diff" => Command::Diff(NameArgs {
            name: name_only(&mut m, None)?,
        }),
        "push" => Command::Push(NameArgs {
            name: name_only(&mut m, None)?,
        }),
        "port-forward" => {
            let pos = positionals(
                c,
                &mut m,
                &["a session name", "at least one port (LOCAL[:REMOTE])"],
                usize::MAX / 2,
                None,
            )?;
            let name = session_name(&pos[0], c)?;
            let mut ports = Vec::new();
            for v in &pos[1..] {
                let s = to_string(v, "port", Some(c))?;
                ports.push(parse_port_spec(&s).map_err(|e| usage(e, Some(c)))?);
            }
            Command::PortForward(PortForwardArgs { name, ports })
        }
        "prompt" => {
            let name = name_only(&mut m, Some("quote the prompt and pass it with -p \"...\""))?;
            let prompt = prompt_source(&m, c)?.ok_or_else(|| {
                usage_hint(
                    "'prompt' needs -p TEXT or --prompt-file PATH",
                    "e.g. kubectl kodama prompt my-work -p \"Fix the failing test\"",
                    Some(c),
                )
            })?;
            Command::Prompt(PromptArgs {
                name,
                prompt,
                continue_conversation: m.has("continue"),
                force: m.has("force"),
            })
        }
        "logs" => Command::Logs(LogsArgs {
            name: name_only(&mut m, None)?,
            follow: m.has("follow"),
            run: str_flag(&m, "run", c)?,
            raw: m.has("raw"),
        }),
        "status" => Command::Status(StatusArgs {
            name: name_only(&mut m, None)?,
            output: match m.last("output") {
                Some(v) => Some(data_format(v, "json or yaml", c)?),
                None => None,
            },
        }),
        "version" => {
            positionals(c, &mut m, &[], 0, None)?;
            Command::Version
        }
        "help" => {
            let pos = positionals(c, &mut m, &[], 1, None)?;
            let topic = match pos.first() {
                Some(v) => {
                    let t = to_string(v, "command", Some(c))?;
                    if find_command(&t).is_none() {
                        return Err(unknown_command(&t));
                    }
                    Some(t)
                }
                None => None,
            };
            Command::Help { topic }
        }
        other => {
            return Err(Error::msg(format!(
                "internal error: no builder for command {other:?}"
            )))
        }
    })
}

fn start_args(c: &'static CommandSpec, m: &Matches, name: &OsStr) -> Result<StartArgs> {
    let name = session_name(name, c)?;
    conflict(m, "sync", "no-sync", c)?;
    let sync = if m.has("no-sync") {
        SyncChoice::Off
    } else if let Some(v) = m.last("sync") {
        if v.is_empty() {
            return Err(usage("--sync needs a directory", Some(c)));
        }
        SyncChoice::Path(PathBuf::from(v))
    } else {
        SyncChoice::Default
    };
    let quantity = |long: &str| -> Result<Option<Quantity>> {
        match m.last(long) {
            None => Ok(None),
            Some(v) => {
                let s = to_string(v, &format!("--{long}"), Some(c))?;
                check_quantity(&s, QKind::Positive)
                    .map(Some)
                    .map_err(|e| usage(format!("--{long}: {e}"), Some(c)))
            }
        }
    };
    let mut resources = BTreeMap::new();
    for v in m.all("resource") {
        let s = to_string(v, "--resource", Some(c))?;
        let (k, val) = s.split_once('=').ok_or_else(|| {
            usage_hint(
                format!("--resource {s:?} is not NAME=COUNT"),
                "e.g. --resource nvidia.com/gpu=1",
                Some(c),
            )
        })?;
        validate_resource_name(k).map_err(|e| usage(format!("--resource: {e}"), Some(c)))?;
        let q = check_quantity(val, QKind::Integer)
            .map_err(|e| usage(format!("--resource {k}: {e}"), Some(c)))?;
        resources.insert(k.to_string(), q);
    }
    let mut env_exclude = Vec::new();
    for v in m.all("env-exclude") {
        let s = to_string(v, "--env-exclude", Some(c))?;
        if s.is_empty() || s.contains('=') {
            return Err(usage(
                format!("--env-exclude takes a variable name, not {s:?}"),
                Some(c),
            ));
        }
        env_exclude.push(s);
    }
    let mut env_files = Vec::new();
    for v in m.all("env-file") {
        if v.is_empty() {
            return Err(usage("--env-file needs a path", Some(c)));
        }
        env_files.push(PathBuf::from(v));
    }
    let mut secret_files = Vec::new();
    for v in m.all("secret-file") {
        let s = to_string(v, "--secret-file", Some(c))?;
        let spec = parse_secret_file_spec(&s)
            .map_err(|e| usage(format!("--secret-file: {e}"), Some(c)))?;
        if secret_files
            .iter()
            .any(|x: &SecretFileSpec| x.destination == spec.destination)
        {
            return Err(usage(
                format!(
                    "--secret-file: destination {:?} is given twice",
                    spec.destination
                ),
                Some(c),
            ));
        }
        secret_files.push(spec);
    }
    let timeout = match str_flag(m, "timeout", c)? {
        None => None,
        Some(s) => {
            let d = parse_duration(&s)
                .map_err(|e| usage(format!("--timeout: {e}; use e.g. 10m"), Some(c)))?;
            if d.is_zero() {
                return Err(usage("--timeout must be longer than zero", Some(c)));
            }
            Some(d)
        }
    };
    let dry_run = match (m.has("dry-run"), m.last("output")) {
        (false, None) => None,
        (false, Some(_)) => {
            return Err(usage_hint(
                "-o/--output only applies to --dry-run",
                "add --dry-run to print the objects instead of creating them",
                Some(c),
            ))
        }
        (true, None) => Some(DataFormat::Yaml),
        (true, Some(v)) => Some(data_format(v, "yaml or json", c)?),
    };
    let config = match m.last("config") {
        Some(v) if v.is_empty() => return Err(usage("--config needs a file", Some(c))),
        Some(v) => Some(PathBuf::from(v)),
        None => None,
    };
    Ok(StartArgs {
        name,
        repo: str_flag(m, "repo", c)?,
        branch: str_flag(m, "branch", c)?,
        sync,
        force: m.has("force"),
        cpu: quantity("cpu")?,
        memory: quantity("memory")?,
        resources,
        image: str_flag(m, "image", c)?,
        storage_class: str_flag(m, "storage-class", c)?,
        prompt: prompt_source(m, c)?,
        env_files,
        env_exclude,
        secret_files,
        git_ssh_secret: str_flag(m, "git-ssh-secret", c)?,
        config,
        timeout,
        dry_run,
    })
}

/// Parse `LOCAL[:REMOTE]` (`PORT` forwards PORT to PORT; `:REMOTE` or `0:REMOTE` picks a free
/// local port, as kubectl does).
pub fn parse_port_spec(s: &str) -> std::result::Result<PortSpec, String> {
    let port = |p: &str, what: &str| -> std::result::Result<u16, String> {
        match p.parse::<u32>() {
            Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
            Ok(_) => Err(format!("{what} port in {s:?} must be between 1 and 65535")),
            Err(_) => Err(format!(
                "{what} port in {s:?} is not a number (use LOCAL[:REMOTE], e.g. 8080:80)"
            )),
        }
    };
    match s.split_once(':') {
        None => {
            let p = port(s, "the")?;
            Ok(PortSpec {
                local: p,
                remote: p,
            })
        }
        Some(("", r)) => Ok(PortSpec {
            local: 0,
            remote: port(r, "the remote")?,
        }),
        Some(("0", r)) => Ok(PortSpec {
            local: 0,
            remote: port(r, "the remote")?,
        }),
        Some((l, r)) => Ok(PortSpec {
            local: port(l, "the local")?,
            remote: port(r, "the remote")?,
        }),
    }
}

#[cfg(test)]
mod tests;
