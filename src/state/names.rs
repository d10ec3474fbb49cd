//! The names of the files beside a state file (`<state>.lock`,
//! `.journal`, `.backup`) and the directory that holds them. A leaf.

use std::path::{Path, PathBuf};

/// `path` with `suffix` appended to its file name (`x.json` → `x.json.lock`).
pub(crate) fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The directory holding `path` (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}
