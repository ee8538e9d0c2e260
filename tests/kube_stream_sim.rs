//! kodama's streaming client against the full simulated cluster (HTTPS API server + kubelet):
//! exec exit codes 0/1/42, a binary-safe 100 MB stdin round trip, a TTY resize seen by `stty size`
//! in the pod, logs, a 404, and port-forward with two concurrent connections (an error while the
//! pod's server is not listening yet is reported for that connection, the listener survives).

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use kodama::kube::client::Client;
use kodama::kube::exec::{ExecProcess, ExecRequest};
use kodama::kube::load::{load_with, LoadEnv, Overrides};
use kodama::kube::logs::{stream_logs, LogOptions};
use kodama::remote::RemoteProcess;
use kodama_sim::{SimCluster, SimOptions};
use serde_json::json;

fn ready(c: &SimCluster, ns: &str, name: &str) -> bool {
    c.get("pods", ns, name).is_some_and(|p| {
        p.pointer("/status/conditions")
            .and_then(|c| c.as_array())
            .is_some_and(|a| {
                a.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
    })
}

fn setup() -> (SimCluster, Client) {
    let cluster = SimCluster::start(SimOptions::default()).expect("start sim");
    let cfg = load_with(
        &Overrides {
            kubeconfig: Some(cluster.kubeconfig_path()),
            ..Overrides::default()
        },
        &LoadEnv::default(),
    )
    .expect("kubeconfig");
    let client = Client::new(cfg).expect("client");
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "box", "namespace": "default"},
        "spec": {"restartPolicy": "Never",
            "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000},
            "containers": [{"name": "main", "image": "busybox",
                "command": ["sh", "-c", "echo hello-log; echo second-line; sleep 300"]}]}
    });
    cluster.create("pods", "default", pod).expect("create pod");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready(&cluster, "default", "box") {
        assert!(Instant::now() < deadline, "pod never became Ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    (cluster, client)
}

fn argv(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

#[test]
fn sim_exec_logs_and_tty() {
    let t0 = Instant::now();
    let (cluster, client) = setup();
    eprintln!("setup {:?}", t0.elapsed());
    // Exit codes.
    for code in [0, 1, 42] {
        let mut r = ExecRequest::new(
            "default",
            "box",
            &argv(&["sh", "-c", &format!("echo out-{code}; exit {code}")]),
        );
        r.stdin = false;
        let mut p = ExecProcess::spawn(&client, &r).expect("exec");
        let mut out = String::new();
        p.take_stdout()
            .expect("stdout")
            .read_to_string(&mut out)
            .expect("read");
        assert_eq!(out, format!("out-{code}\n"));
        assert_eq!(p.wait_code().expect("wait"), code);
    }
    eprintln!("exit codes {:?}", t0.elapsed());
    // 100 MB binary round trip through cat.
    let r = ExecRequest::new("default", "box", &argv(&["cat"]));
    let mut p = ExecProcess::spawn(&client, &r).expect("exec cat");
    eprintln!("protocol {:?}", p.protocol());
    let mut stdin = p.take_stdin().expect("stdin");
    let mut stdout = p.take_stdout().expect("stdout");
    const TOTAL: usize = 100 << 20;
    let started = Instant::now();
    let w = std::thread::spawn(move || {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut block = vec![0u8; 1 << 20];
        let mut sum = 0u64;
        for _ in 0..TOTAL / block.len() {
            for b in block.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = (x >> 24) as u8;
                sum = sum.wrapping_mul(31).wrapping_add(u64::from(*b));
            }
            stdin.write_all(&block).expect("write");
        }
        sum
    });
    let mut buf = vec![0u8; 1 << 16];
    let (mut n, mut sum) = (0usize, 0u64);
    loop {
        let k = stdout.read(&mut buf).expect("read");
        if k == 0 {
            break;
        }
        for &b in &buf[..k] {
            sum = sum.wrapping_mul(31).wrapping_add(u64::from(b));
        }
        n += k;
    }
    assert_eq!(n, TOTAL);
    assert_eq!(sum, w.join().expect("writer"));
    assert_eq!(p.wait_code().expect("wait"), 0);
    eprintln!("100 MB round trip in {:?}", started.elapsed());
    eprintln!("cat {:?}", t0.elapsed());
    // TTY resize seen by stty size.
    let mut r = ExecRequest::new("default", "box", &argv(&["sh", "-c", "read x; stty size"]));
    r.tty = true;
    let mut p = ExecProcess::spawn(&client, &r).expect("exec tty");
    p.resize(123, 45).expect("resize");
    let mut stdin = p.take_stdin().expect("stdin");
    stdin.write_all(b"\n").expect("newline");
    let mut out = String::new();
    p.take_stdout()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read");
    assert!(out.contains("45 123"), "{out:?}");
    drop(stdin);
    assert_eq!(p.wait_code().expect("wait"), 0);
    eprintln!("tty {:?}", t0.elapsed());
    // Logs.
    let mut out = Vec::new();
    stream_logs(&client, "default", "box", &LogOptions::default(), &mut out).expect("logs");
    assert_eq!(String::from_utf8_lossy(&out), "hello-log\nsecond-line\n");
    eprintln!("logs {:?}", t0.elapsed());
    // Not found.
    let mut r = ExecRequest::new("default", "nope", &argv(&["true"]));
    r.stdin = false;
    let e = ExecProcess::spawn(&client, &r).err().expect("404");
    assert!(e.is_not_found(), "{e}");
    eprintln!("404 {:?}", t0.elapsed());
    // Port-forward to an echo server in a second pod.
    let py = "import socket,threading\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind(('0.0.0.0',18089));s.listen(8)\ndef h(c):\n  while True:\n    d=c.recv(65536)\n    if not d: break\n    c.sendall(b'echo:'+d)\nwhile True:\n  c,_=s.accept();threading.Thread(target=h,args=(c,)).start()\n";
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default"},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "python",
            "command": ["/usr/bin/python3", "-c", py]}]}});
    cluster.create("pods", "default", pod).expect("create web");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready(&cluster, "default", "web") {
        assert!(Instant::now() < deadline, "web never Ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    use kodama::kube::portforward::{PortForwarder, PortMapping};
    use std::sync::Arc;
    let msgs = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let m2 = Arc::clone(&msgs);
    let fwd = PortForwarder::start(
        Arc::new(client.clone()),
        "default",
        "web",
        &[PortMapping {
            local: 0,
            remote: 18089,
        }],
        Arc::new(move |s: &str| m2.lock().expect("test").push(s.to_string())),
    )
    .expect("pf");
    let addr = fwd.bound()[0].1[0];
    let mut ok = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline && !ok {
        let mut a = std::net::TcpStream::connect(addr).expect("connect a");
        let mut b = std::net::TcpStream::connect(addr).expect("connect b");
        a.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("test");
        b.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("test");
        a.write_all(b"AAA").expect("test");
        b.write_all(b"BBB").expect("test");
        let mut ba = [0u8; 8];
        let mut bb = [0u8; 8];
        ok = a.read_exact(&mut ba).is_ok()
            && b.read_exact(&mut bb).is_ok()
            && &ba == b"echo:AAA"
            && &bb == b"echo:BBB";
        if !ok {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    eprintln!("pf messages {:?}", msgs.lock().expect("test"));
    assert!(ok, "port-forward echo failed");
    fwd.stop();
    eprintln!("pf {:?}", t0.elapsed());
    cluster.stop();
    eprintln!("stop {:?}", t0.elapsed());
}
