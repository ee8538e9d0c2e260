//! Coding-agent runs: the agent command line, run records on the claude-home volume, transcript
//! rendering for `logs`, and the in-pod watchdog.
//!
//! May import: error, remote, term (sanitising).
