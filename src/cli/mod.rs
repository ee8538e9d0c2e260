//! Command-line parsing with lexopt: parse(iterator) → Command (plain data), and every help text.
//!
//! May import: error, config (plain option types only). Never kube types.
