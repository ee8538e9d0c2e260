//! `kodama-sim`: run the simulated cluster as a standalone process (benchmarks, demo).
//!
//! `kodama-sim serve [--dir DIR] [--port P] [--start-delay-ms N] [--fake-kubelet]
//! [--no-default-storage-class] [--namespace NS]...` prints the admin kubeconfig path as its first
//! stdout line and runs until SIGTERM/SIGINT, then stops every pod process and cleans up.

use kodama_sim::{KubeletKind, SimCluster, SimOptions, CERT_USER, RESTRICTED_USER};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage: kodama-sim serve [--dir DIR] [--port P] [--start-delay-ms N] [--fake-kubelet] [--no-default-storage-class] [--namespace NS]...";

fn parse(args: &[String]) -> Result<SimOptions, String> {
    let mut opts = SimOptions::default();
    let mut it = args.iter();
    match it.next().map(String::as_str) {
        Some("serve") => {}
        Some("-h" | "--help") | None => return Err(USAGE.into()),
        Some(other) => return Err(format!("unknown command {other:?}\n{USAGE}")),
    }
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--dir" => opts.data_dir = Some(PathBuf::from(value("--dir")?)),
            "--port" => {
                opts.port = value("--port")?
                    .parse()
                    .map_err(|_| "--port must be a number 0-65535".to_string())?
            }
            "--start-delay-ms" => {
                let ms: u64 = value("--start-delay-ms")?
                    .parse()
                    .map_err(|_| "--start-delay-ms must be a number".to_string())?;
                opts.start_delay = Duration::from_millis(ms);
            }
            "--fake-kubelet" => opts.kubelet = KubeletKind::Fake,
            "--no-default-storage-class" => opts.default_storage_class = false,
            "--namespace" => opts.namespaces.push(value("--namespace")?),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown option {other:?}\n{USAGE}")),
        }
    }
    Ok(opts)
}

/// Block SIGINT/SIGTERM in every thread (call before spawning any), then wait for one.
fn block_signals() -> libc::sigset_t {
    // SAFETY: plain libc signal-mask calls on a zeroed, initialised sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_signal(set: &libc::sigset_t) -> i32 {
    let mut sig = 0;
    // SAFETY: `set` was initialised by block_signals; sigwait writes one int.
    unsafe { libc::sigwait(set, &mut sig) };
    sig
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match parse(&args) {
        Ok(o) => o,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    let set = block_signals();
    let cluster = match SimCluster::start(opts) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kodama-sim: cannot start the simulated cluster: {e}");
            return ExitCode::from(1);
        }
    };
    println!("{}", cluster.kubeconfig_path().display());
    eprintln!("kodama-sim: API server at {}", cluster.server_url());
    for user in [CERT_USER, RESTRICTED_USER] {
        if let Ok(p) = cluster.kubeconfig_for(user) {
            eprintln!("kodama-sim: kubeconfig for {user}: {}", p.display());
        }
    }
    eprintln!(
        "kodama-sim: data directory {}; stop with Ctrl-C or SIGTERM",
        cluster.data_dir().display()
    );
    let sig = wait_signal(&set);
    eprintln!("kodama-sim: signal {sig}, stopping");
    cluster.stop();
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn parses_serve_options() {
        let o = parse(&args(
            "serve --dir /tmp/x --port 7443 --start-delay-ms 5 --fake-kubelet --namespace a",
        ))
        .expect("ok");
        assert_eq!(o.data_dir, Some(PathBuf::from("/tmp/x")));
        assert_eq!(o.port, 7443);
        assert_eq!(o.start_delay, Duration::from_millis(5));
        assert_eq!(o.kubelet, KubeletKind::Fake);
        assert_eq!(o.namespaces, vec!["a".to_string()]);
        assert!(parse(&args("serve --port")).is_err());
        assert!(parse(&args("serve --bogus")).is_err());
        assert!(parse(&args("run")).is_err());
    }
}
