//! Configuration: the global file `~/.kodama/config.yaml` (directory from `KODAMA_CONFIG_DIR`), the
//! repository template `.kodama.yaml`, the per-session files `sessions/<name>.yaml` (atomic, 0600,
//! locked), Kubernetes quantities, durations, name rules, and the layering
//! flags > template > global > built-in defaults into one plain [`Settings`].
//!
//! May import: error, secret, std, serde, yaml_serde, libc (flock in `store` only), kube::auth
//! (RFC 3339 parsing in `time` only).

pub mod duration;
pub mod layer;
pub mod names;
pub mod quantity;
pub mod settings;
pub mod store;
pub mod time;

pub use duration::{format_duration, parse_duration};
pub use layer::{
    check_quantity, known_keys, load_layer, parse_layer, parse_secret_file_spec, FileKind,
    KnownHosts, Layer, QKind, SecretFileSpec, Toleration, Warning,
};
pub use names::{closest, validate_namespace, validate_session_name, MAX_SESSION_NAME};
pub use quantity::Quantity;
pub use settings::{
    config_dir, config_dir_from, find_template, home_dir, load, resolve, Loaded, Settings,
};
pub use store::{SessionRecord, SessionStatus, Store};
