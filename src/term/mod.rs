//! Terminal handling: raw mode guard, window size, SIGWINCH, sanitising remote text for a TTY. The only
//! unsafe code in the crate lives here.
//!
//! May import: error.
