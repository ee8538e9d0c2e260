//! A one-line live progress display for long steps (waiting for the pod, clone, initial sync): on a
//! TTY (stderr) the line is redrawn in place; otherwise each distinct message is printed once on its
//! own line, so logs stay readable.
//!
//! May import: term, std.

use std::io::Write;

/// Prints progress to stderr.
pub struct Progress {
    tty: bool,
    last: String,
    drawn: bool,
}

impl Progress {
    /// A progress printer for stderr (TTY detection decides the style).
    pub fn new() -> Progress {
        Progress {
            tty: crate::term::stderr_is_tty(),
            last: String::new(),
            drawn: false,
        }
    }

    /// Show `msg` (only when it changed).
    pub fn update(&mut self, msg: &str) {
        let msg = crate::term::sanitize_for_tty(msg);
        if msg == self.last {
            return;
        }
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{msg}");
            self.drawn = true;
        } else {
            let _ = writeln!(err, "{msg}");
        }
        let _ = err.flush();
        self.last = msg;
    }

    /// End the live line (TTY): the next output starts on a fresh line.
    pub fn finish(&mut self) {
        if self.tty && self.drawn {
            let _ = writeln!(std::io::stderr());
            self.drawn = false;
        }
        self.last.clear();
    }

    /// Print a permanent line (ending any live line first).
    pub fn line(&mut self, msg: &str) {
        self.finish();
        let _ = writeln!(std::io::stderr(), "{msg}");
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
