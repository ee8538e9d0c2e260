//! The `kubectl-kodama` binary: parse the command line, run it, print a fatal error and exit.
//! This is the only place that prints a fatal error ([`kodama::Error::render`]) and turns it into an
//! exit code ([`kodama::Error::exit_code`]). A closed stdout (`kubectl kodama list | head -1`) ends
//! the process quietly with exit code 0.
//!
//! May import: kodama (the library), std.

use std::io::Write;

fn main() {
    quiet_broken_pipe_panics();
    let result = kodama::cli::parse(std::env::args_os().skip(1)).and_then(kodama::session::run);
    let code = match result {
        Ok(()) => match std::io::stdout().flush() {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                let _ = writeln!(
                    std::io::stderr(),
                    "kubectl-kodama: error: writing output: {e}"
                );
                kodama::error::EXIT_ERROR
            }
            _ => kodama::error::EXIT_OK,
        },
        Err(e) if is_broken_pipe(&e) => kodama::error::EXIT_OK,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "{}", e.render());
            e.exit_code()
        }
    };
    std::process::exit(code);
}

/// True when the error is a write to a closed pipe (the reader went away; not our failure).
fn is_broken_pipe(e: &kodama::Error) -> bool {
    matches!(e.root(), kodama::Error::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
}

/// `println!` panics when stdout is a closed pipe. Rust ignores SIGPIPE, so that panic is how a closed
/// pipe shows up in code that prints directly; end quietly with 0 instead of a panic message.
fn quiet_broken_pipe_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(kodama::error::EXIT_OK);
        }
        previous(info);
    }));
}
