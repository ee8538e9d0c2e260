//! Pod logs: `GET .../pods/{pod}/log` streamed to a writer, optionally following until the
//! container ends.
//!
//! While the container is still starting the server answers 400 "... is waiting to start:
//! ContainerCreating"; we retry with backoff until `wait_for_start` runs out, but fail at once when
//! the reason shows it will not start by itself (image pull errors, bad config). Output is flushed
//! after every read so `follow` is live; a closed local pipe (`| head`) ends quietly.
//!
//! The GET goes through a [`StreamGet`]: [`DialerGet`] speaks raw HTTP/1.1 over a [`Dialer`]
//! connection (no read timeout, so a quiet follow is not cut), and the REST client may implement
//! it directly.
//!
//! May import: error, term, kube::ws.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

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
    /// The request path and query for `namespace/pod`.
    pub fn path(&self, namespace: &str, pod: &str) -> Result<String> {
        check_name("namespace", namespace)?;
        check_name("pod", pod)?;
        if self.since_seconds.is_some() && self.since_time.is_some() {
            return Err(Error::usage(
                "--since and --since-time cannot be used together",
                None,
            ));
        }
        let mut q: Vec<String> = Vec::new();
        if let Some(c) = &self.container {
            q.push(format!("container={}", percent_encode(c)));
        }
        if self.follow {
            q.push("follow=true".into());
        }
        if self.previous {
            q.push("previous=true".into());
        }
        if let Some(n) = self.tail_lines {
            q.push(format!("tailLines={n}"));
        }
        if let Some(s) = self.since_seconds {
            q.push(format!("sinceSeconds={}", s.max(1)));
        }
        if let Some(t) = &self.since_time {
            q.push(format!("sinceTime={}", percent_encode(t)));
        }
        if self.timestamps {
            q.push("timestamps=true".into());
        }
        let mut path = format!(
            "/api/v1/namespaces/{}/pods/{}/log",
            percent_encode(namespace),
            percent_encode(pod)
        );
        if !q.is_empty() {
            path.push('?');
            path.push_str(&q.join("&"));
        }
        Ok(path)
    }
}

/// Opens a streaming GET and returns its body once the server answered 2xx; error statuses come
/// back as `Error::Api`.
pub trait StreamGet {
    /// GET `path_and_query` (an API path such as `/api/v1/...`).
    fn stream_get(&self, path_and_query: &str) -> Result<Box<dyn Read + Send>>;
}

/// [`StreamGet`] over raw HTTP/1.1 on a [`Dialer`] connection.
pub struct DialerGet<'a>(pub &'a dyn Dialer);

impl StreamGet for DialerGet<'_> {
    fn stream_get(&self, path_and_query: &str) -> Result<Box<dyn Read + Send>> {
        Ok(Box::new(http::get_stream(self.0, path_and_query)?))
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
    let path = opts.path(namespace, pod)?;
    let what = format!("reading the logs of pod {namespace}/{pod}");
    let deadline = Instant::now() + opts.wait_for_start;
    let mut delay = Duration::from_millis(200);
    let mut body = loop {
        match source.stream_get(&path) {
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
        fn stream_get(&self, _: &str) -> Result<Box<dyn Read + Send>> {
            *self.calls.borrow_mut() += 1;
            self.answers.borrow_mut().remove(0)
        }
    }

    fn waiting(reason: &str) -> Result<Box<dyn Read + Send>> {
        Err(Error::Api(ApiError {
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
