//! The `kubectl-kodama` binary: parse the command line, run it, print a fatal error and exit.
//! Everything else lives in the library.
//!
//! May import: kodama (the library).

fn main() {
    println!("kubectl-kodama {}", kodama::VERSION);
}
