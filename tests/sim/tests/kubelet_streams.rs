//! Streaming subresources of the simulated kubelet over WebSocket (driven directly, through a
//! plain-TCP stand-in for the API server): exec exit codes on the status channel (v5, v4,
//! channel.k8s.io), binary stdin round trip with v5 stdin close, pty with resize, attach,
//! port-forward, pre-upgrade HTTP errors, and logs follow.

mod kubelet_support;

use kodama_sim::contract::LogOptions;
use kubelet_support::*;
use serde_json::json;
use std::io::{Read, Write};
use std::time::Duration;

const BOTH: &str = "v5.channel.k8s.io, v4.channel.k8s.io";

fn running(h: &H, name: &str) {
    let mut p = pod(name, &["sleep", "300"]);
    p["spec"]["containers"][0]["workingDir"] = json!("/tmp");
    p["spec"]["containers"][0]["env"] = json!([{"name": "GREETING", "value": "hi"}]);
    p["spec"]["securityContext"] = json!({"runAsUser": 1000, "runAsGroup": 1000});
    h.create(p);
    h.wait_ready(name);
}

#[test]
fn exec_passes_exit_codes_on_the_status_channel() {
    let h = H::new("exec-codes");
    running(&h, "box");
    for (code, proto) in [(0, BOTH), (1, BOTH), (42, BOTH), (42, "v4.channel.k8s.io")] {
        let cmd = format!("echo out; echo err >&2; exit {code}");
        let r = exec(&h, "box", &["sh", "-c", &cmd], None, proto);
        let want = if proto == BOTH {
            "v5.channel.k8s.io"
        } else {
            "v4.channel.k8s.io"
        };
        assert_eq!(r.protocol.as_deref(), Some(want));
        assert_eq!(r.exit_code(), code, "status: {}", r.status_json());
        assert_eq!(r.stdout, b"out\n");
        assert_eq!(r.stderr, b"err\n");
        assert!(r.closed_normally, "server must close after the status");
        let s = r.status_json();
        assert!(s.get("kind").is_none(), "no kind on channel 3: {s}");
        if code != 0 {
            assert_eq!(s["status"], "Failure");
            assert_eq!(s["details"]["causes"][0]["reason"], "ExitCode");
            assert!(s["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("command terminated with non-zero exit code")));
        } else {
            assert_eq!(s, json!({"metadata": {}, "status": "Success"}));
        }
    }
    // exec runs as the container user, with its env and workingDir.
    let r = exec(
        &h,
        "box",
        &["sh", "-c", "echo $(id -u) $GREETING $(pwd) $HOSTNAME"],
        None,
        BOTH,
    );
    assert_eq!(String::from_utf8_lossy(&r.stdout), "1000 hi /tmp box\n");
    // A missing binary is an InternalError status after the upgrade.
    let r = exec(&h, "box", &["/no/such/binary"], None, BOTH);
    let s = r.status_json();
    assert_eq!(s["reason"], "InternalError", "{s}");
    assert_eq!(s["code"], 500);
    // channel.k8s.io: no status on success.
    let r = exec(&h, "box", &["true"], None, "channel.k8s.io");
    assert_eq!(r.protocol.as_deref(), Some("channel.k8s.io"));
    assert!(r.status.is_empty());
}

#[test]
fn exec_stdin_binary_round_trip_with_v5_close() {
    let h = H::new("exec-stdin");
    running(&h, "box");
    // 1 MiB of every byte value in a pseudo-random order.
    let mut data = Vec::with_capacity(1 << 20);
    let mut x: u32 = 0x1234_5678;
    for _ in 0..(1 << 20) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        data.push((x >> 7) as u8);
    }
    let r = exec(&h, "box", &["cat"], Some(&data), BOTH);
    assert_eq!(r.exit_code(), 0);
    assert_eq!(r.stdout.len(), data.len());
    assert!(r.stdout == data, "binary data corrupted");
    // And a checksum computed inside the pod.
    let r = exec(
        &h,
        "box",
        &["sh", "-c", "wc -c"],
        Some(&data[..100_000]),
        BOTH,
    );
    assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), "100000");
}

#[test]
fn exec_outlives_a_dropped_client_like_a_runtime() {
    let h = H::new("exec-drop");
    running(&h, "box");
    let marker = h.path("dropped-marker");
    std::fs::set_permissions(&h.dir, std::os::unix::fs::PermissionsExt::from_mode(0o777))
        .expect("chmod");
    let cmd = format!("sleep 0.5; touch {marker}");
    let (ws, _) = connect(
        h.stream_port(),
        &exec_path("box", &["sh", "-c", &cmd], false, false),
        BOTH,
    )
    .expect("handshake");
    drop(ws);
    let seen = h.state.wait_for(TIMEOUT, |_| {
        std::path::Path::new(&marker).exists().then_some(())
    });
    assert!(
        seen.is_some(),
        "the exec'd command was killed when the client went away"
    );
}

#[test]
fn tty_exec_sees_resize() {
    let h = H::new("tty");
    running(&h, "box");
    let path = exec_path(
        "box",
        &[
            "sh",
            "-c",
            "read line; stty size; echo tty=$(tty | cut -c1-8)",
        ],
        true,
        true,
    );
    let (ws, proto) = connect(h.stream_port(), &path, BOTH).expect("handshake");
    let mut resize = vec![4u8];
    resize.extend_from_slice(br#"{"Width":100,"Height":37}"#);
    let r = drive(ws, proto, vec![resize, b"\0go\n".to_vec()], |_, _| {
        Vec::new()
    });
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(out.contains("37 100"), "stty size after resize: {out:?}");
    assert!(out.contains("tty=/dev/pts"), "{out:?}");
    assert!(r.stderr.is_empty(), "a tty merges stderr into stdout");
    assert_eq!(r.exit_code(), 0);
}

#[test]
fn attach_to_a_container_with_stdin() {
    let h = H::new("attach");
    let mut p = pod(
        "interactive",
        &["sh", "-c", "while read l; do echo got:$l; done"],
    );
    p["spec"]["containers"][0]["stdin"] = json!(true);
    h.create(p);
    h.wait_ready("interactive");
    let path = format!("/api/v1/namespaces/{NS}/pods/interactive/attach?container=main&stdin=true&stdout=true&stderr=true");
    let (ws, proto) = connect(h.stream_port(), &path, BOTH).expect("handshake");
    assert_eq!(proto.as_deref(), Some("v5.channel.k8s.io"));
    let mut sent_close = false;
    let kubelet = h.kubelet.clone();
    let r = drive(ws, proto, vec![b"\0hello\n".to_vec()], move |ch, d| {
        if ch == 1 && d.windows(9).any(|w| w == b"got:hello") && !sent_close {
            sent_close = true;
            // End the container: the attach session reports success and closes.
            kubelet.kill_pod_processes(NS, "interactive");
        }
        Vec::new()
    });
    assert!(String::from_utf8_lossy(&r.stdout).contains("got:hello"));
    assert_eq!(r.status_json()["status"], "Success");
}

#[test]
fn port_forward_relays_tcp() {
    let h = H::new("pf");
    running(&h, "box");
    // A TCP echo server on the host network (pods share it).
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            let mut buf = [0u8; 1024];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 || s.write_all(&buf[..n]).is_err() {
                    break;
                }
                if buf[..n].ends_with(b"bye") {
                    break;
                }
            }
        }
    });
    let path = format!("/api/v1/namespaces/{NS}/pods/box/portforward?ports={port}");
    let (ws, proto) = connect(h.stream_port(), &path, "v4.channel.k8s.io").expect("handshake");
    assert_eq!(proto.as_deref(), Some("v4.channel.k8s.io"));
    let r = drive(
        ws,
        proto,
        vec![b"\0ping ".to_vec(), b"\0bye".to_vec()],
        |_, _| Vec::new(),
    );
    let data = &r.channels[&0];
    assert_eq!(
        &data[..2],
        &port.to_le_bytes(),
        "first data frame is the port"
    );
    assert_eq!(&data[2..], b"ping bye");
    assert_eq!(
        &r.channels[&1][..2],
        &port.to_le_bytes(),
        "error channel gets the port too"
    );
    assert_eq!(r.channels[&1].len(), 2, "no error");
    // A closed port reports on the error channel.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead_port = dead.local_addr().expect("addr").port();
    drop(dead);
    let path = format!("/api/v1/namespaces/{NS}/pods/box/portforward?ports={dead_port}");
    let (ws, proto) = connect(h.stream_port(), &path, "v4.channel.k8s.io").expect("handshake");
    let r = drive(ws, proto, vec![], |_, _| Vec::new());
    let err = String::from_utf8_lossy(&r.channels[&1][2..]).into_owned();
    assert!(
        err.contains(&format!("error forwarding port {dead_port}")),
        "{err}"
    );
}

#[test]
fn errors_before_upgrade_are_http_status_responses() {
    let h = H::new("errors");
    running(&h, "box");
    let port = h.stream_port();
    let raw = |path: &str| -> (u16, serde_json::Value) {
        match connect(port, path, BOTH) {
            Err(tungstenite::Error::Http(resp)) => {
                let body = resp.body().clone().unwrap_or_default();
                (
                    resp.status().as_u16(),
                    serde_json::from_slice(&body).unwrap_or_default(),
                )
            }
            Ok(_) => panic!("{path}: unexpectedly upgraded"),
            Err(e) => panic!("{path}: {e}"),
        }
    };
    let (code, s) = raw(&exec_path("nope", &["true"], false, false));
    assert_eq!(code, 404);
    assert_eq!(s["kind"], "Status");
    assert_eq!(s["reason"], "NotFound");
    assert_eq!(s["message"], "pods \"nope\" not found");
    let (code, s) = raw(&format!(
        "/api/v1/namespaces/{NS}/pods/box/exec?command=true&container=other&stdout=true"
    ));
    assert_eq!(code, 400);
    assert_eq!(s["message"], "container other is not valid for pod box");
    // Offering only protocols the kubelet does not speak: bare 403.
    match connect(
        port,
        &exec_path("box", &["true"], false, false),
        "v2.channel.k8s.io",
    ) {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 403),
        other => panic!("expected 403, got {:?}", other.map(|(_, p)| p)),
    }
}

#[test]
fn logs_follow_until_the_container_ends() {
    let h = H::new("follow");
    h.create(pod(
        "chatty",
        &["sh", "-c", "for i in 1 2 3; do echo line$i; sleep 0.2; done; echo partial-no-newline | tr -d '\\n'"],
    ));
    h.wait_pod("chatty", "started", |p| {
        ctr_status(p, "main")["started"] == true || p["status"]["phase"] == "Succeeded"
    });
    let mut out = Vec::new();
    let t0 = std::time::Instant::now();
    h.kubelet
        .logs(
            NS,
            "chatty",
            &LogOptions {
                follow: true,
                ..Default::default()
            },
            &mut out,
        )
        .expect("logs");
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert_eq!(
        String::from_utf8_lossy(&out),
        "line1\nline2\nline3\npartial-no-newline"
    );
    // Several containers and none named: a clear 400.
    let two = json!({"metadata": {"name": "two"}, "spec": {"restartPolicy": "Never", "containers": [
        {"name": "a", "image": "x", "command": ["true"]},
        {"name": "b", "image": "x", "command": ["true"]}]}});
    h.create(two);
    h.wait_phase("two", "Succeeded");
    let err = h
        .kubelet
        .logs(NS, "two", &LogOptions::default(), &mut Vec::new())
        .expect_err("must name a container");
    assert_eq!(err.code, 400);
    assert_eq!(
        err.message,
        "a container name must be specified for pod two, choose one of: [a b]"
    );
}

#[test]
fn tty_container_logs_and_attach_resize() {
    let h = H::new("ttyctr");
    let mut p = pod(
        "term",
        &[
            "sh",
            "-c",
            "stty size; while read l; do stty size; echo got:$l; done",
        ],
    );
    p["spec"]["containers"][0]["stdin"] = json!(true);
    p["spec"]["containers"][0]["tty"] = json!(true);
    h.create(p);
    h.wait_log("term", "24 80\n");
    let path = format!(
        "/api/v1/namespaces/{NS}/pods/term/attach?container=main&stdin=true&stdout=true&tty=true"
    );
    let (ws, proto) = connect(h.stream_port(), &path, BOTH).expect("handshake");
    let mut resize = vec![4u8];
    resize.extend_from_slice(br#"{"Width":120,"Height":50}"#);
    let kubelet = h.kubelet.clone();
    let mut done = false;
    let mut seen = Vec::new();
    let r = drive(ws, proto, vec![resize, b"\0x\r".to_vec()], move |ch, d| {
        if ch == 1 {
            seen.extend_from_slice(d);
        }
        if !done && String::from_utf8_lossy(&seen).contains("got:x") {
            done = true;
            kubelet.kill_pod_processes(NS, "term");
        }
        Vec::new()
    });
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(out.contains("50 120"), "resize through attach: {out:?}");
    assert!(h.wait_log("term", "got:x").contains("50 120"));
}
