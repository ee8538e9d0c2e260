//! Editor configuration for the session: kodama's default Helix config, Helix languages and Zellij
//! config, each overridable by the repository's `.kodama/configs/{helix-config.toml,
//! helix-languages.toml,zellij-config.kdl}`. The result goes into the ConfigMap
//! `kodama-editor-config-<name>` and is mounted at `~/.config/helix/` and `~/.config/zellij/`.
//!
//! May import: error.

use crate::error::{Error, IoResultExt, Result};
use std::path::{Path, PathBuf};

/// ConfigMap key of the Helix config (mounted as `~/.config/helix/config.toml`).
pub const KEY_HELIX_CONFIG: &str = "helix-config.toml";
/// ConfigMap key of the Helix languages file (mounted as `~/.config/helix/languages.toml`).
pub const KEY_HELIX_LANGUAGES: &str = "helix-languages.toml";
/// ConfigMap key of the Zellij config (mounted as `~/.config/zellij/config.kdl`).
pub const KEY_ZELLIJ_CONFIG: &str = "zellij-config.kdl";
/// Where overrides live, relative to the repository root.
pub const OVERRIDE_DIR: &str = ".kodama/configs";
/// Largest override file kodama accepts (the whole ConfigMap must stay under 1 MiB).
pub const MAX_OVERRIDE_BYTES: u64 = 256 * 1024;

const DEFAULT_HELIX_CONFIG: &str = r#"# Helix configuration provided by kodama.
# Replace it with .kodama/configs/helix-config.toml in your repository.
theme = "default"

[editor]
line-number = "relative"
mouse = true
cursorline = true
color-modes = true
bufferline = "multiple"
true-color = true
auto-save = true

[editor.cursor-shape]
insert = "bar"
normal = "block"
select = "underline"

[editor.file-picker]
hidden = false

[editor.indent-guides]
render = true

[editor.lsp]
display-messages = true
"#;

const DEFAULT_HELIX_LANGUAGES: &str = r#"# Helix language settings provided by kodama; they extend Helix's built-in languages.
# Replace them with .kodama/configs/helix-languages.toml in your repository.

[[language]]
name = "rust"
auto-format = true

[[language]]
name = "go"
auto-format = true

[[language]]
name = "python"
auto-format = false

[[language]]
name = "typescript"
auto-format = false
"#;

const DEFAULT_ZELLIJ_CONFIG: &str = r#"// Zellij configuration provided by kodama.
// Replace it with .kodama/configs/zellij-config.kdl in your repository.

// Keep the session alive when the attach connection drops: reattach finds it again.
on_force_close "detach"
default_layout "compact"
pane_frames false
simplified_ui true
mouse_mode true
copy_on_select true
scroll_buffer_size 50000
"#;

/// Where one of the three files came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// kodama's built-in default.
    Default,
    /// The repository's override file.
    Repo(PathBuf),
}

/// The three editor files of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EditorConfig {
    pub helix_config: String,
    pub helix_languages: String,
    pub zellij_config: String,
    /// Origins, in the order helix config, helix languages, zellij config.
    pub origins: [Origin; 3],
}

impl Default for EditorConfig {
    fn default() -> Self {
        EditorConfig::defaults()
    }
}

impl EditorConfig {
    /// kodama's built-in defaults.
    pub fn defaults() -> EditorConfig {
        EditorConfig {
            helix_config: DEFAULT_HELIX_CONFIG.to_string(),
            helix_languages: DEFAULT_HELIX_LANGUAGES.to_string(),
            zellij_config: DEFAULT_ZELLIJ_CONFIG.to_string(),
            origins: [Origin::Default, Origin::Default, Origin::Default],
        }
    }

    /// The ConfigMap `data`: key → file content, in key order.
    pub fn data(&self) -> [(&'static str, &str); 3] {
        [
            (KEY_HELIX_CONFIG, self.helix_config.as_str()),
            (KEY_HELIX_LANGUAGES, self.helix_languages.as_str()),
            (KEY_ZELLIJ_CONFIG, self.zellij_config.as_str()),
        ]
    }
}

/// The defaults, with each file replaced by `<repo_dir>/.kodama/configs/<key>` when that exists.
/// An override that is not a regular file, not UTF-8 or larger than [`MAX_OVERRIDE_BYTES`] is an
/// error (all such faults reported together); an absent one is not.
pub fn load(repo_dir: Option<&Path>) -> Result<EditorConfig> {
    let mut cfg = EditorConfig::defaults();
    let Some(repo) = repo_dir else {
        return Ok(cfg);
    };
    let dir = repo.join(OVERRIDE_DIR);
    let mut faults = Vec::new();
    let slots: [(&str, usize); 3] = [
        (KEY_HELIX_CONFIG, 0),
        (KEY_HELIX_LANGUAGES, 1),
        (KEY_ZELLIJ_CONFIG, 2),
    ];
    for (key, idx) in slots {
        let path = dir.join(key);
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(&path, e)),
        };
        if !meta.is_file() {
            faults.push(format!("{}: not a regular file", path.display()));
            continue;
        }
        if meta.len() > MAX_OVERRIDE_BYTES {
            faults.push(format!(
                "{}: {} bytes is larger than the {} KiB limit for an editor config",
                path.display(),
                meta.len(),
                MAX_OVERRIDE_BYTES / 1024
            ));
            continue;
        }
        let bytes = std::fs::read(&path).path_context(&path)?;
        let Ok(text) = String::from_utf8(bytes) else {
            faults.push(format!("{}: not valid UTF-8 text", path.display()));
            continue;
        };
        match idx {
            0 => cfg.helix_config = text,
            1 => cfg.helix_languages = text,
            _ => cfg.zellij_config = text,
        }
        cfg.origins[idx] = Origin::Repo(path);
    }
    if faults.is_empty() {
        Ok(cfg)
    } else {
        Err(Error::Invalid {
            what: format!("editor config overrides in {}", dir.display()),
            faults,
            hint: Some(
                "fix or remove these files; kodama's defaults are used for files that are absent"
                    .into(),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("kodama-editor-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join(OVERRIDE_DIR)).expect("mkdir");
        d
    }

    #[test]
    fn no_repo_or_no_overrides_gives_defaults() {
        assert_eq!(load(None).expect("load"), EditorConfig::defaults());
        let d = tempdir("none");
        assert_eq!(load(Some(&d)).expect("load"), EditorConfig::defaults());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn repo_files_override_each_default_separately() {
        let d = tempdir("some");
        std::fs::write(
            d.join(OVERRIDE_DIR).join(KEY_HELIX_CONFIG),
            "theme = \"onedark\"\n",
        )
        .expect("write");
        let c = load(Some(&d)).expect("load");
        assert_eq!(c.helix_config, "theme = \"onedark\"\n");
        assert_eq!(c.helix_languages, DEFAULT_HELIX_LANGUAGES);
        assert_eq!(c.zellij_config, DEFAULT_ZELLIJ_CONFIG);
        assert!(matches!(c.origins[0], Origin::Repo(_)));
        assert_eq!(c.origins[1], Origin::Default);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn bad_overrides_are_all_reported() {
        let d = tempdir("bad");
        let dir = d.join(OVERRIDE_DIR);
        std::fs::write(dir.join(KEY_HELIX_CONFIG), [0xff, 0xfe, 0x00]).expect("write");
        std::fs::create_dir(dir.join(KEY_ZELLIJ_CONFIG)).expect("mkdir");
        let e = load(Some(&d)).expect_err("must fail");
        let s = e.to_string();
        assert!(s.contains("not valid UTF-8"), "{s}");
        assert!(s.contains("not a regular file"), "{s}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
