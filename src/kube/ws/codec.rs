//! The Kubernetes channel protocol spoken inside the exec/attach/port-forward WebSocket (pure code,
//! no I/O).
//!
//! Every binary message is `[stream id][payload]`: 0 stdin, 1 stdout, 2 stderr, 3 error/status
//! (a JSON `metav1.Status`), 4 terminal resize (JSON `{"Width":W,"Height":H}`). `v5.channel.k8s.io`
//! adds `[0xFF, id]`, "no more data on stream id" (stdin half-close); `v4.channel.k8s.io` has no way to
//! signal end of stdin. We offer both in one `Sec-WebSocket-Protocol` header, v5 first, and branch on
//! the server's answer. An empty message (`[1]` right after the handshake) means "ready", not EOF.
//!
//! What we do about v4's missing stdin EOF is decided by the caller per exec (see
//! [`crate::kube::exec::StdinEof`]): commands that need EOF are refused with a clear error instead of
//! hanging forever or truncating output by closing the socket early.
//!
//! May import: error, term (sanitising remote text), kube::status (Status decoding), serde_json.

use crate::error::{ApiError, Error, Result};
use crate::kube::status::{prefix_at_char_boundary, status_fields};
use crate::term::sanitize_for_tty;

/// Stream id of stdin (client → server).
pub const STDIN: u8 = 0;
/// Stream id of stdout (server → client).
pub const STDOUT: u8 = 1;
/// Stream id of stderr (server → client).
pub const STDERR: u8 = 2;
/// Stream id of the error/status channel (server → client, JSON `metav1.Status`).
pub const STATUS: u8 = 3;
/// Stream id of terminal resize events (client → server, JSON).
pub const RESIZE: u8 = 4;
/// v5 only: the id of the "close stream" signal `[0xFF, id]`.
pub const CLOSE_SIGNAL: u8 = 0xFF;

/// Largest payload we put in one message (client-go uses 32 KiB buffers; servers cap messages).
pub const MAX_PAYLOAD: usize = 32 * 1024;

/// A WebSocket subprotocol of the channel family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `v5.channel.k8s.io`: API server ≥ 1.30; stdin half-close supported.
    V5,
    /// `v4.channel.k8s.io`: container runtime passthrough; no stdin half-close.
    V4,
}

impl Protocol {
    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::V5 => "v5.channel.k8s.io",
            Protocol::V4 => "v4.channel.k8s.io",
        }
    }

    /// Whether the client can tell the server "no more stdin".
    pub fn supports_half_close(self) -> bool {
        self == Protocol::V5
    }

    /// The value of the single `Sec-WebSocket-Protocol` request header offering `protocols` in order.
    pub fn offer(protocols: &[Protocol]) -> String {
        protocols
            .iter()
            .map(|p| p.name())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Which of `offered` the server chose, from the 101 response's `Sec-WebSocket-Protocol`.
    pub fn select(offered: &[Protocol], answered: Option<&str>) -> Result<Protocol> {
        let offer = Protocol::offer(offered);
        let answered = answered.map(str::trim).unwrap_or("");
        if answered.is_empty() {
            return Err(Error::Transport {
                message: format!(
                    "the API server accepted the WebSocket upgrade without choosing a subprotocol (we offered {offer})"
                ),
                hint: Some(
                    "the server or a proxy in between speaks an older streaming protocol that kodama does not support"
                        .into(),
                ),
            });
        }
        offered
            .iter()
            .copied()
            .find(|p| p.name().eq_ignore_ascii_case(answered))
            .ok_or_else(|| Error::Transport {
                message: format!(
                    "the API server chose WebSocket subprotocol {:?}, which we did not offer (we offered {offer})",
                    sanitize_for_tty(answered)
                ),
                hint: None,
            })
    }
}

/// A data message for `stream`: `[stream][payload]`.
pub fn data_message(stream: u8, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(payload.len() + 1);
    m.push(stream);
    m.extend_from_slice(payload);
    m
}

/// The v5 "no more data on `stream`" signal.
pub fn close_message(stream: u8) -> Vec<u8> {
    vec![CLOSE_SIGNAL, stream]
}

/// A resize message for the terminal size `width` x `height` (columns x rows).
pub fn resize_message(width: u16, height: u16) -> Vec<u8> {
    data_message(
        RESIZE,
        format!("{{\"Width\":{width},\"Height\":{height}}}\n").as_bytes(),
    )
}

/// Split a received binary message into its stream id and payload. `None` for an empty message
/// (never valid, ignored).
pub fn split_message(message: &[u8]) -> Option<(u8, &[u8])> {
    message.split_first().map(|(id, rest)| (*id, rest))
}

/// The result of a finished exec/attach, decoded from the status channel.
///
/// `Ok(code)` when the process ended (0 on Success, its code on NonZeroExitCode); `Err` for any other
/// failure the server reported, and for a stream that closed without any status (possibly
/// truncated output: never silent).
pub fn decode_exit(status: &[u8]) -> Result<i32> {
    let text = String::from_utf8_lossy(status);
    let text = text.trim();
    if text.is_empty() {
        return Err(Error::Transport {
            message:
                "the exec stream closed without reporting an exit status; output may be truncated"
                    .into(),
            hint: Some("the connection to the API server or the node was lost; try again".into()),
        });
    }
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| Error::Transport {
        message: format!(
            "the exec status channel sent something that is not a Status ({e}): {}",
            sanitize_for_tty(&truncate(text, 200))
        ),
        hint: None,
    })?;
    let status_field = v.get("status").and_then(|s| s.as_str()).unwrap_or("");
    let reason = v.get("reason").and_then(|s| s.as_str()).unwrap_or("");
    let message = v.get("message").and_then(|s| s.as_str()).unwrap_or("");
    match status_field {
        "Success" => Ok(0),
        "Failure" if reason == "NonZeroExitCode" => {
            let causes = v
                .pointer("/details/causes")
                .and_then(|c| c.as_array())
                .cloned()
                .unwrap_or_default();
            for c in causes {
                if c.get("reason").and_then(|r| r.as_str()) == Some("ExitCode") {
                    let m = c.get("message").and_then(|m| m.as_str()).unwrap_or("");
                    return m.trim().parse::<u8>().map(i32::from).map_err(|_| {
                        Error::Transport {
                            message: format!(
                                "the exec status carried an exit code that is not a number 0-255: {:?}",
                                sanitize_for_tty(m)
                            ),
                            hint: None,
                        }
                    });
                }
            }
            Err(Error::Transport {
                message: format!(
                    "the remote command failed but the server sent no exit code: {}",
                    sanitize_for_tty(message)
                ),
                hint: None,
            })
        }
        "Failure" => {
            let mut err = status_to_api_error(&v, 0);
            if err.message.is_empty() {
                err.message = "the remote command failed (no message from the server)".into();
            }
            Err(annotate_stream_error(Error::from(err)))
        }
        other => Err(Error::Transport {
            message: format!(
                "the exec status channel reported an unknown status {:?}: {}",
                sanitize_for_tty(other),
                sanitize_for_tty(message)
            ),
            hint: None,
        }),
    }
}

/// Decode a `metav1.Status` JSON body into an [`ApiError`]; `None` when `body` is not a Status.
/// `http_code` fills `code` when the body has none (stream-3 statuses carry no code).
pub fn parse_status(body: &[u8], http_code: u16) -> Option<ApiError> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let is_status = v.get("kind").and_then(|k| k.as_str()) == Some("Status")
        || v.get("status").and_then(|s| s.as_str()).is_some();
    if !is_status {
        return None;
    }
    Some(status_to_api_error(&v, http_code))
}

/// The Status fields as [`crate::kube::status::status_fields`] decodes them (the one decoder), with
/// every text sanitised for the terminal and `http_code` standing in for a missing or zero code.
fn status_to_api_error(v: &serde_json::Value, http_code: u16) -> ApiError {
    let mut a = status_fields(v);
    for t in [
        &mut a.reason,
        &mut a.message,
        &mut a.kind,
        &mut a.name,
        &mut a.group,
    ] {
        *t = sanitize_for_tty(t);
    }
    for c in &mut a.causes {
        for t in [&mut c.field, &mut c.reason, &mut c.message] {
            *t = sanitize_for_tty(t);
        }
    }
    if a.code == 0 {
        a.code = http_code;
    }
    a
}

/// Add a next step to stream errors whose text says the container is not running or not there.
pub fn annotate_stream_error(e: Error) -> Error {
    let text = e.to_string().to_ascii_lowercase();
    let not_running = text.contains("not running")
        || text.contains("container not found")
        || text.contains("is waiting to start")
        || text.contains("cannot exec into a container in a completed pod")
        || text.contains("is terminated");
    if not_running {
        e.context("the container is not running").hinted(
            "check the pod with `kubectl get pod` and `kubectl describe pod`; a stopped session must be started again",
        )
    } else {
        e
    }
}

fn truncate(s: &str, max: usize) -> String {
    let head = prefix_at_char_boundary(s, max);
    if head.len() == s.len() {
        return s.to_string();
    }
    format!("{head}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offer_is_one_header_value_v5_first() {
        assert_eq!(
            Protocol::offer(&[Protocol::V5, Protocol::V4]),
            "v5.channel.k8s.io, v4.channel.k8s.io"
        );
        assert_eq!(Protocol::offer(&[Protocol::V4]), "v4.channel.k8s.io");
    }

    #[test]
    fn protocol_selection_table() {
        let both = [Protocol::V5, Protocol::V4];
        let cases: &[(&[Protocol], Option<&str>, Option<Protocol>)] = &[
            (&both, Some("v5.channel.k8s.io"), Some(Protocol::V5)),
            (&both, Some("v4.channel.k8s.io"), Some(Protocol::V4)),
            (&both, Some(" V4.Channel.K8s.io "), Some(Protocol::V4)),
            (&both, Some("channel.k8s.io"), None),
            (&both, Some("v4.base64.channel.k8s.io"), None),
            (&both, None, None),
            (&both, Some(""), None),
            (&[Protocol::V4], Some("v5.channel.k8s.io"), None),
        ];
        for (offered, answer, want) in cases {
            let got = Protocol::select(offered, *answer).ok();
            assert_eq!(got, *want, "offered {offered:?}, answered {answer:?}");
        }
        let e = Protocol::select(&both, None).expect_err("no protocol");
        assert!(e.to_string().contains("without choosing a subprotocol"));
    }

    #[test]
    fn message_builders() {
        assert_eq!(data_message(STDIN, b"hi\n"), vec![0, b'h', b'i', b'\n']);
        assert_eq!(close_message(STDIN), vec![0xFF, 0]);
        assert_eq!(
            resize_message(120, 40),
            b"\x04{\"Width\":120,\"Height\":40}\n".to_vec()
        );
        assert_eq!(split_message(&[1]), Some((1, &[][..])));
        assert_eq!(split_message(&[2, 9, 8]), Some((2, &[9u8, 8][..])));
        assert_eq!(split_message(&[]), None);
    }

    #[test]
    fn exit_code_table() {
        let nz = |code: &str| {
            format!(
                r#"{{"metadata":{{}},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [sh -c exit {code}], exit code {code}","reason":"NonZeroExitCode","details":{{"causes":[{{"reason":"ExitCode","message":"{code}"}}]}}}}"#
            )
        };
        let ok: &[(String, i32)] = &[
            (r#"{"metadata":{},"status":"Success"}"#.into(), 0),
            (nz("1"), 1),
            (nz("42"), 42),
            (nz("255"), 255),
        ];
        for (body, want) in ok {
            assert_eq!(decode_exit(body.as_bytes()).expect(body), *want, "{body}");
        }
        // Status split over several stream-3 messages is concatenated by the caller.
        let errs: &[(String, &str)] = &[
            (String::new(), "without reporting an exit status"),
            ("   ".into(), "without reporting an exit status"),
            ("not json".into(), "not a Status"),
            (nz("256"), "not a number 0-255"),
            (nz("x"), "not a number 0-255"),
            (
                r#"{"status":"Failure","reason":"NonZeroExitCode","message":"boom"}"#.into(),
                "no exit code: boom",
            ),
            (
                r#"{"metadata":{},"status":"Failure","message":"error executing command in container: failed to exec in container: container is not running","reason":"InternalError","code":500}"#.into(),
                "the container is not running",
            ),
            (
                r#"{"status":"Failure","message":"some other failure","reason":"InternalError","code":500}"#.into(),
                "500 InternalError: some other failure",
            ),
            (r#"{"status":"Weird"}"#.into(), "unknown status"),
        ];
        for (body, want) in errs {
            let e = decode_exit(body.as_bytes()).expect_err(body);
            assert!(e.to_string().contains(want), "{body}: got {e}");
        }
    }

    #[test]
    fn container_not_running_gets_a_hint() {
        let e = decode_exit(br#"{"status":"Failure","message":"container not found (\"app\")","reason":"InternalError","code":500}"#)
            .expect_err("failure");
        assert!(e.hint().expect("hint").contains("kubectl describe pod"));
    }

    #[test]
    fn status_parsing_sanitises_remote_text() {
        let body = br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"pods \"x\u001b[31m\" not found","reason":"NotFound","details":{"name":"x","kind":"pods"},"code":404}"#;
        let a = parse_status(body, 404).expect("status");
        assert_eq!(a.code, 404);
        assert_eq!(a.reason, "NotFound");
        assert!(!a.message.contains('\u{1b}'), "{:?}", a.message);
        assert_eq!(a.kind, "pods");
        assert!(parse_status(b"<html>", 502).is_none());
        assert!(parse_status(br#"{"kind":"Pod"}"#, 200).is_none());
        // stream-3 statuses carry no code: the HTTP code (or 0) is used.
        assert_eq!(
            parse_status(br#"{"status":"Failure","message":"m"}"#, 500)
                .expect("status")
                .code,
            500
        );
    }
}
