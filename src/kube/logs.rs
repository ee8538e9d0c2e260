//! Pod logs: `GET .../pods/{pod}/log` streamed to a writer, optionally following until the
//! container ends.
//!
//! While the container is still starting the server answers 400 "... is waiting to start:
//! ContainerCreating"; we retry with backoff until `wait_for_start` runs out, but fail at once when
//! the reason shows it will not start by itself (image pull errors, bad config). Output is flushed
//! after every read so `follow` is live; a closed local pipe (`| head`) ends quietly.
//!
//! The GET goes through a [`StreamGet`]: the REST [`Client`] (retries, warnings, 401 refresh), or
//! [`DialerGet`], raw HTTP/1.1 over a [`Dialer`] connection. Neither cuts a quiet follow.
//!
//! May import: error, term, kube::{ws, client, request}.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use super::client::Client;
use super::request::{self, Mode};
use super::ws::{check_name, http, percent_encode, Dialer};
use crate::error::{Error, Result};

/// Options of a log request (`PodLogOptions`).
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// Container name; required by the server for pods with several containers.
    pub container: Option<String>,
    /// Stream until the container ends.
    pub follow: bool,
    /// Only the last N lines.
    pub tail_lines: Option<u64>,
    /// Only lines newer than this many seconds.
    pub since_seconds: Option<u64>,
    /// Only lines since this RFC 3339 time (exclusive with `since_seconds`).
    pub since_time: Option<String>,
    /// Prefix lines with RFC 3339 timestamps.
    pub timestamps: bool,
    /// The previous (terminated) instance of the container.
    pub previous: bool,
    /// How long to keep retrying while the container is waiting to start (zero: no retry).
    pub wait_for_start: Duration,
}

impl LogOptions {
    /// The query pairs (unescaped) of this request.
    pub fn query(&self) -> Result<Vec<(String, String)>> {
        if self.since_seconds.is_some() && self.since_time.is_some() {
            return Err(Error::usage(
                "--since and --since-time cannot be used together",
                None,
            ));
        }
        let mut q: Vec<(String, String)> = Vec::new();
        let mut add = |k: &str, v: String| q.push((k.to_string(), v));
        if let Some(c) = &self.container {
            add("container", c.clone());
        }
        if self.follow {
            add("follow", "true".into());
        }
        if self.previous {
            add("previous", "true".into());
        }
        if let Some(n) = self.tail_lines {
            add("tailLines", n.to_string());
        }
        if let Some(s) = self.since_seconds {
            add("sinceSeconds", s.max(1).to_string());
        }
        if let Some(t) = &self.since_time {
            add("sinceTime", t.clone());
        }
        if self.timestamps {
            add("timestamps", "true".into());
        }
        Ok(q)
    }

    /// The request path (without query) for `namespace/pod`.
    pub fn log_path(namespace: &str, pod: &str) -> Result<String> {
        check_name("namespace", namespace)?;
        check_name("pod", pod)?;
        Ok(format!(
            "/api/v1/namespaces/{}/pods/{}/log",
            percent_encode(namespace),
            percent_encode(pod)
        ))
    }

    /// The request path and escaped query for `namespace/pod`.
    pub fn path(&self, namespace: &str, pod: &str) -> Result<String> {
        Ok(join_query(
            &LogOptions::log_path(namespace, pod)?,
            &self.query()?,
        ))
    }
}

fn join_query(path: &str, query: &[(String, String)]) -> String {
    if query.is_empty() {
        return path.to_string();
    }
    let q: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect();
    format!("{path}?{}", q.join("&"))
}

/// Opens a streaming GET and returns its body once the server answered 2xx; error statuses come
/// back with an `ApiError` at their root.
pub trait StreamGet {
    /// GET `path` (an API path such as `/api/v1/...`) with `query` pairs (unescaped).
    fn stream_get(&self, path: &str, query: &[(String, String)]) -> Result<Box<dyn Read + Send>>;
}

/// [`StreamGet`] over raw HTTP/1.1 on a [`Dialer`] connection (no read timeout).
pub struct DialerGet<'a>(pub &'a dyn Dialer);

impl StreamGet for DialerGet<'_> {
    fn stream_get(&self, path: &str, query: &[(String, String)]) -> Result<Box<dyn Read + Send>> {
        Ok(Box::new(http::get_stream(
            self.0,
            &join_query(path, query),
        )?))
    }
}

/// The REST client: keep-alive pool, warnings, 401 refresh and retries on 429/5xx (GET is
/// idempotent); no overall timeout on the body.
impl StreamGet for Client {
    fn stream_get(&self, path: &str, query: &[(String, String)]) -> Result<Box<dyn Read + Send>> {
        let mut req = request::get_path(path.to_string(), "get", "pods/log", None, None);
        req.query = query.to_vec();
        req.mode = Mode::Stream { idle: None };
        self.stream(&req)
    }
}

fn waiting_to_start(e: &Error) -> bool {
    e.api()
        .is_some_and(|a| a.code == 400 && a.message.contains("is waiting to start"))
}

fn will_not_start_by_itself(e: &Error) -> bool {
    let m = e.to_string();
    [
        "can't be pulled",
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
    ]
    .iter()
    .any(|r| m.contains(r))
}

/// Stream the logs of `namespace/pod` into `out`.
pub fn stream_logs(
    source: &dyn StreamGet,
    namespace: &str,
    pod: &str,
    opts: &LogOptions,
    out: &mut dyn Write,
) -> Result<()> {
    let path = LogOptions::log_path(namespace, pod)?;
    let query = opts.query()?;
    let what = format!("reading the logs of pod {namespace}/{pod}");
    let deadline = Instant::now() + opts.wait_for_start;
    let mut delay = Duration::from_millis(200);
    let mut body = loop {
        match source.stream_get(&path, &query) {
            Ok(b) => break b,
            Err(e)
                if waiting_to_start(&e)
                    && !will_not_start_by_itself(&e)
                    && Instant::now() + delay < deadline =>
            {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e.context(what)),
        }
    };
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Error::Transport {
                    message: format!("{what}: the log stream broke: {e}"),
                    hint: Some("run the command again (add --since to skip what you saw)".into()),
                })
            }
        };
        match out.write_all(&buf[..n]).and_then(|_| out.flush()) {
            Ok(()) => {}
            // The reader went away (`| head`): stop quietly.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(Error::io("", e).context(what)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ApiError;
    use std::cell::RefCell;

    #[test]
    fn log_paths() {
        let o = LogOptions {
            container: Some("main".into()),
            follow: true,
            tail_lines: Some(10),
            timestamps: true,
            ..Default::default()
        };
        assert_eq!(
            o.path("dev", "p").expect("path"),
            "/api/v1/namespaces/dev/pods/p/log?container=main&follow=true&tailLines=10&timestamps=true"
        );
        let o = LogOptions {
            since_time: Some("2026-11-30T00:00:00Z".into()),
            ..Default::default()
        };
        assert_eq!(
            o.path("dev", "p").expect("path"),
            "/api/v1/namespaces/dev/pods/p/log?sinceTime=2026-11-30T00%3A00%3A00Z"
        );
        assert_eq!(
            LogOptions::default().path("dev", "p").expect("path"),
            "/api/v1/namespaces/dev/pods/p/log"
        );
        let both = LogOptions {
            since_seconds: Some(5),
            since_time: Some("x".into()),
            ..Default::default()
        };
        assert!(both.path("dev", "p").is_err());
    }

    struct Fake {
        answers: RefCell<Vec<Result<Box<dyn Read + Send>>>>,
        calls: RefCell<usize>,
    }

    impl StreamGet for Fake {
        fn stream_get(&self, _: &str, _: &[(String, String)]) -> Result<Box<dyn Read + Send>> {
            *self.calls.borrow_mut() += 1;
            self.answers.borrow_mut().remove(0)
        }
    }

    fn waiting(reason: &str) -> Result<Box<dyn Read + Send>> {
        Err(Error::from(ApiError {
            code: 400,
            reason: "BadRequest".into(),
            message: format!("container \"main\" in pod \"p\" is waiting to start: {reason}"),
            ..Default::default()
        }))
    }

    #[test]
    fn image_pull_errors_fail_fast() {
        let f = Fake {
            answers: RefCell::new(vec![waiting("image can't be pulled")]),
            calls: RefCell::new(0),
        };
        let o = LogOptions {
            wait_for_start: Duration::from_secs(60),
            ..Default::default()
        };
        let e = stream_logs(&f, "dev", "p", &o, &mut Vec::new()).expect_err("fail fast");
        assert!(e.to_string().contains("can't be pulled"));
        assert_eq!(*f.calls.borrow(), 1);
    }

    #[test]
    fn broken_pipe_on_output_ends_quietly() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let f = Fake {
            answers: RefCell::new(vec![Ok(Box::new(io::Cursor::new(b"line\n".to_vec())))]),
            calls: RefCell::new(0),
        };
        stream_logs(&f, "dev", "p", &LogOptions::default(), &mut Closed).expect("quiet");
    }
}
