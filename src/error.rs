//! The crate's one error type, its human rendering and the exit codes.
//!
//! Every module returns `crate::error::Result`. Errors are plain data with a hand-written `Display`;
//! context is added on the way up with [`ResultExt::context`], and `main.rs` is the only place that
//! prints a fatal error (through [`Error::render`]) and turns it into an exit code
//! ([`Error::exit_code`]).
//!
//! May import: std only (this is the bottom of the module graph).

use std::fmt;
use std::path::PathBuf;

/// Shorthand used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Exit code for success.
pub const EXIT_OK: i32 = 0;
/// Exit code for a generic failure.
pub const EXIT_ERROR: i32 = 1;
/// Exit code for a command-line usage error.
pub const EXIT_USAGE: i32 = 2;
/// Exit code after Ctrl-C (128 + SIGINT), as shells report it.
pub const EXIT_INTERRUPTED: i32 = 130;

/// A Kubernetes API error, decoded from a `metav1.Status` body (or synthesised from the HTTP status
/// when the body is not a Status).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApiError {
    /// HTTP status code (`Status.code`), e.g. 404.
    pub code: u16,
    /// `Status.reason`, e.g. `NotFound`, `AlreadyExists`, `Forbidden`, `Invalid`, `Expired`.
    pub reason: String,
    /// `Status.message`, the server's own sentence.
    pub message: String,
    /// `details.kind` (resource name for most reasons; the Kind for `Invalid`).
    pub kind: String,
    /// `details.name`.
    pub name: String,
    /// `details.group`.
    pub group: String,
    /// `details.causes` as (field, reason, message).
    pub causes: Vec<ApiCause>,
    /// `details.retryAfterSeconds`, when given.
    pub retry_after_seconds: Option<u64>,
}

/// One entry of `Status.details.causes`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApiCause {
    pub field: String,
    pub reason: String,
    pub message: String,
}

impl ApiError {
    /// True for 404 NotFound.
    pub fn is_not_found(&self) -> bool {
        self.code == 404 || self.reason == "NotFound"
    }
    /// True for 409 AlreadyExists.
    pub fn is_already_exists(&self) -> bool {
        self.reason == "AlreadyExists"
    }
    /// True for 409 Conflict (resourceVersion mismatch).
    pub fn is_conflict(&self) -> bool {
        self.code == 409 && self.reason != "AlreadyExists"
    }
    /// True for 403 Forbidden.
    pub fn is_forbidden(&self) -> bool {
        self.code == 403
    }
    /// True for 401 Unauthorized.
    pub fn is_unauthorized(&self) -> bool {
        self.code == 401
    }
    /// True for 410 Gone / Expired (a stale resourceVersion).
    pub fn is_gone(&self) -> bool {
        self.code == 410 || self.reason == "Expired" || self.reason == "Gone"
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason = if self.reason.is_empty() {
            http_reason(self.code)
        } else {
            self.reason.as_str()
        };
        write!(f, "{} {}", self.code, reason)?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

fn http_reason(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        410 => "Gone",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "Error",
    }
}

/// Everything that can go wrong in kodama.
#[derive(Debug)]
pub enum Error {
    /// The command line is wrong (unknown flag, missing or bad value, conflict). Exit code 2.
    Usage {
        message: String,
        hint: Option<String>,
    },
    /// A file the user gave us is wrong: config, template, kubeconfig, env file, session file.
    File {
        path: PathBuf,
        line: Option<usize>,
        message: String,
        hint: Option<String>,
    },
    /// Validation found one or more faults; all of them are reported at once.
    Invalid {
        what: String,
        faults: Vec<String>,
        hint: Option<String>,
    },
    /// An I/O failure on a local path (or on a stream, with `path` empty).
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The Kubernetes API answered with an error Status (boxed: it is the largest variant).
    Api(Box<ApiError>),
    /// Could not talk to the API server or the pod at all (DNS, TCP, TLS, proxy, WebSocket).
    Transport {
        message: String,
        hint: Option<String>,
    },
    /// A remote command exited non-zero; its code becomes ours (`attach --command`).
    RemoteExit(i32),
    /// The user pressed Ctrl-C. Exit code 130.
    Interrupted,
    /// Anything else, with an optional next step for the user.
    Message {
        message: String,
        hint: Option<String>,
    },
    /// An error with a sentence of context in front of it ("starting session \"x\"").
    Context { context: String, source: Box<Error> },
    /// An error (usually `Api`) with a call-site specific next step that replaces the source's own hint.
    /// Transparent for `root()`, `api()` and `exit_code()`; added by kube/status.rs.
    Hinted { hint: String, source: Box<Error> },
}

impl Error {
    /// A plain error message.
    pub fn msg(message: impl Into<String>) -> Error {
        Error::Message {
            message: message.into(),
            hint: None,
        }
    }

    /// A plain error message with a hint line (how to fix it).
    pub fn with_hint(message: impl Into<String>, hint: impl Into<String>) -> Error {
        Error::Message {
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    /// A usage error (exit code 2).
    pub fn usage(message: impl Into<String>, hint: Option<String>) -> Error {
        Error::Usage {
            message: message.into(),
            hint,
        }
    }

    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A fault in a file, optionally at a line.
    pub fn file(
        path: impl Into<PathBuf>,
        line: Option<usize>,
        message: impl Into<String>,
    ) -> Error {
        Error::File {
            path: path.into(),
            line,
            message: message.into(),
            hint: None,
        }
    }

    /// Wrap with a sentence of context.
    pub fn context(self, context: impl Into<String>) -> Error {
        Error::Context {
            context: context.into(),
            source: Box::new(self),
        }
    }

    /// Attach a next step that wins over the hints of everything below it.
    pub fn hinted(self, hint: impl Into<String>) -> Error {
        Error::Hinted {
            hint: hint.into(),
            source: Box::new(self),
        }
    }

    /// The innermost error (below every `Context` and `Hinted`).
    pub fn root(&self) -> &Error {
        let mut e = self;
        while let Error::Context { source, .. } | Error::Hinted { source, .. } = e {
            e = source;
        }
        e
    }

    /// The API error at the root, if any.
    pub fn api(&self) -> Option<&ApiError> {
        match self.root() {
            Error::Api(a) => Some(a.as_ref()),
            _ => None,
        }
    }

    /// True when the root is an API 404.
    pub fn is_not_found(&self) -> bool {
        self.api().is_some_and(ApiError::is_not_found)
    }

    /// True when the root is an API 409 AlreadyExists.
    pub fn is_already_exists(&self) -> bool {
        self.api().is_some_and(ApiError::is_already_exists)
    }

    /// The process exit code for this error. Decided here and nowhere else.
    pub fn exit_code(&self) -> i32 {
        match self.root() {
            Error::Usage { .. } => EXIT_USAGE,
            Error::RemoteExit(code) => *code,
            Error::Interrupted => EXIT_INTERRUPTED,
            _ => EXIT_ERROR,
        }
    }

    /// The hint of the innermost error that has one.
    pub fn hint(&self) -> Option<String> {
        let mut e = self;
        let mut found = None;
        loop {
            if let Error::Hinted { hint, .. } = e {
                return Some(hint.clone());
            }
            let h = match e {
                Error::Usage { hint, .. }
                | Error::File { hint, .. }
                | Error::Invalid { hint, .. }
                | Error::Transport { hint, .. }
                | Error::Message { hint, .. } => hint.clone(),
                Error::Api(a) => api_hint(a),
                _ => None,
            };
            if h.is_some() {
                found = h;
            }
            match e {
                Error::Context { source, .. } | Error::Hinted { source, .. } => e = source,
                _ => return found,
            }
        }
    }

    /// The full text `main` prints: `kubectl-kodama: error: <chain>` and the hint on its own line.
    pub fn render(&self) -> String {
        let mut out = format!("kubectl-kodama: error: {self}");
        if let Some(h) = self.hint() {
            out.push_str("\nhint: ");
            out.push_str(&h);
        }
        out
    }
}

/// The default next step for an API error; call sites with more context add their own hints.
fn api_hint(a: &ApiError) -> Option<String> {
    match a.code {
        401 => Some(
            "your credentials were rejected: check `kubectl auth whoami` and refresh your kubeconfig login"
                .into(),
        ),
        403 => Some(
            "ask a cluster admin for this permission, or use a namespace you may write to (-n)".into(),
        ),
        _ => None,
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage { message, .. } => write!(f, "{message}"),
            Error::File {
                path,
                line,
                message,
                ..
            } => match line {
                Some(l) => write!(f, "{}:{l}: {message}", path.display()),
                None => write!(f, "{}: {message}", path.display()),
            },
            Error::Invalid { what, faults, .. } => {
                write!(f, "{what}")?;
                if faults.len() == 1 {
                    write!(f, ": {}", faults[0])
                } else {
                    for fault in faults {
                        write!(f, "\n  - {fault}")?;
                    }
                    Ok(())
                }
            }
            Error::Io { path, source } => {
                if path.as_os_str().is_empty() {
                    write!(f, "{source}")
                } else {
                    write!(f, "{}: {source}", path.display())
                }
            }
            Error::Api(a) => {
                // The server's message often repeats the causes ("Pod \"x\" is invalid: [a: …,
                // b: …]", or an InternalError whose one cause is the message itself). Print each
                // fact once: the message head, then one line per cause.
                let invalid_head = (!a.causes.is_empty())
                    .then(|| a.message.find(" is invalid: "))
                    .flatten()
                    .map(|i| &a.message[..i + " is invalid".len()]);
                match invalid_head {
                    Some(head) => write!(f, "{} {}: {head}:", a.code, a.reason)?,
                    None => write!(f, "{a}")?,
                }
                for c in &a.causes {
                    if invalid_head.is_none()
                        && c.field.is_empty()
                        && a.message.contains(&c.message)
                    {
                        continue;
                    }
                    if c.field.is_empty() {
                        write!(f, "\n  - {}", c.message)?;
                    } else {
                        write!(f, "\n  - {}: {}", c.field, c.message)?;
                    }
                }
                Ok(())
            }
            Error::Transport { message, .. } => write!(f, "{message}"),
            Error::RemoteExit(code) => write!(f, "remote command exited with code {code}"),
            Error::Interrupted => write!(f, "interrupted"),
            Error::Message { message, .. } => write!(f, "{message}"),
            Error::Context { context, source } => write!(f, "{context}: {source}"),
            Error::Hinted { source, .. } => write!(f, "{source}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<ApiError> for Error {
    fn from(a: ApiError) -> Error {
        Error::Api(Box::new(a))
    }
}

/// Adds `.context(...)` to any `Result<T, Error>`.
pub trait ResultExt<T> {
    /// Wrap the error with a sentence of context.
    fn context(self, context: impl Into<String>) -> Result<T>;
    /// Wrap the error with context computed only on failure.
    fn with_context<F: FnOnce() -> String>(self, f: F) -> Result<T>;
}

impl<T> ResultExt<T> for Result<T> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|e| e.context(context))
    }
    fn with_context<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|e| e.context(f()))
    }
}

/// Adds `.path_context(path)` to `std::io::Result`, turning it into our `Error::Io`.
pub trait IoResultExt<T> {
    /// Attach the path the I/O was about.
    fn path_context(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoResultExt<T> for std::io::Result<T> {
    fn path_context(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_renders_outer_to_inner_with_hint_last() {
        let e = Error::from(ApiError {
            code: 403,
            reason: "Forbidden".into(),
            message: "pods is forbidden".into(),
            ..Default::default()
        })
        .context("creating pod default/kodama-x")
        .context("starting session \"x\"");
        let r = e.render();
        assert!(r.starts_with(
            "kubectl-kodama: error: starting session \"x\": creating pod default/kodama-x: 403 Forbidden: pods is forbidden"
        ));
        assert!(r.contains("\nhint: "));
        assert_eq!(e.exit_code(), EXIT_ERROR);
    }

    #[test]
    fn exit_codes_are_decided_by_the_root() {
        assert_eq!(Error::usage("bad", None).context("x").exit_code(), 2);
        assert_eq!(Error::RemoteExit(42).context("attach").exit_code(), 42);
        assert_eq!(Error::Interrupted.exit_code(), 130);
        assert_eq!(Error::msg("x").exit_code(), 1);
    }

    #[test]
    fn hinted_replaces_the_hint_and_stays_transparent() {
        let e = Error::from(ApiError {
            code: 404,
            reason: "NotFound".into(),
            ..Default::default()
        })
        .context("creating pods in namespace \"x\"")
        .hinted("namespace \"x\" does not exist")
        .context("starting session");
        assert!(e.is_not_found(), "root() sees through Hinted");
        assert_eq!(e.hint().as_deref(), Some("namespace \"x\" does not exist"));
        assert!(e
            .render()
            .starts_with("kubectl-kodama: error: starting session: creating pods"));
        assert_eq!(e.exit_code(), EXIT_ERROR);
    }

    #[test]
    fn api_causes_are_not_repeated() {
        let cause = |field: &str, message: &str| ApiCause {
            field: field.into(),
            reason: String::new(),
            message: message.into(),
        };
        let invalid = Error::from(ApiError {
            code: 422,
            reason: "Invalid".into(),
            message: "Pod \"Bad\" is invalid: [metadata.name: Invalid value: \"Bad\": bad name, spec.containers[0].image: Required value]".into(),
            causes: vec![
                cause("metadata.name", "Invalid value: \"Bad\": bad name"),
                cause("spec.containers[0].image", "Required value"),
            ],
            ..ApiError::default()
        })
        .to_string();
        assert_eq!(
            invalid,
            "422 Invalid: Pod \"Bad\" is invalid:\n  - metadata.name: Invalid value: \"Bad\": bad name\n  - spec.containers[0].image: Required value"
        );
        let internal = Error::from(ApiError {
            code: 500,
            reason: "InternalError".into(),
            message: "error executing command: boom".into(),
            causes: vec![cause("", "error executing command: boom")],
            ..ApiError::default()
        })
        .to_string();
        assert_eq!(internal, "500 InternalError: error executing command: boom");
        let extra = Error::from(ApiError {
            code: 409,
            reason: "Conflict".into(),
            message: "Apply failed with 1 conflict".into(),
            causes: vec![cause(".data.k", "conflict with \"kubectl\"")],
            ..ApiError::default()
        })
        .to_string();
        assert!(
            extra.ends_with("\n  - .data.k: conflict with \"kubectl\""),
            "{extra}"
        );
    }

    #[test]
    fn invalid_lists_every_fault() {
        let e = Error::Invalid {
            what: "env file .env".into(),
            faults: vec!["line 3: bad name".into(), "line 9: bad name".into()],
            hint: None,
        };
        let s = e.to_string();
        assert!(s.contains("line 3") && s.contains("line 9"));
    }
}
