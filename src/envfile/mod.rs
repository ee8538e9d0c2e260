//! Dotenv loading, filtering (protected names, excludes) and validation. Pure apart from reading files.
//!
//! May import: error, secret.
