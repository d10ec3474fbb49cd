//! Which directories to watch for the `-f` paths, and which changed paths
//! can change the manifests.
//!
//! Directories are watched, never single files: editors and `sed -i` save by
//! writing a temporary file and renaming it over the original, which ends a
//! watch on the file itself. So a `-f FILE` watches its parent directory and
//! keeps only events about that file name; a `-f DIR` watches the directory
//! recursively and keeps events about the files `manifest::load` would read
//! there (`*.yaml`/`*.yml`, no hidden path component) and about
//! subdirectories (a directory moved in or out brings or takes manifests).
//!
//! [`Roots::resolve`] touches the disk once (to tell files from directories
//! and make paths absolute); [`Roots::classify`] is pure.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use crate::manifest;

/// What to watch and what matters, resolved from the `-f` paths.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Roots {
    /// `-f DIR`: absolute directories whose manifests are all read.
    trees: Vec<PathBuf>,
    /// `-f FILE`: absolute parent directory and the file names named in it.
    files: Vec<(PathBuf, BTreeSet<OsString>)>,
}

/// One directory to hand to the file watcher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchDir {
    pub path: PathBuf,
    pub recursive: bool,
}

/// How much one changed path matters, with the reason (logged at trace level).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relevance {
    /// A manifest (or a directory that may hold some) changed.
    Relevant,
    /// An editor's temporary, swap, lock or backup file.
    EditorTemp,
    /// A hidden file or a path under a hidden directory (`.git`, `.idea`).
    Hidden,
    /// Not a file `manifest::load` would read.
    NotManifest,
}

impl Relevance {
    pub fn as_str(self) -> &'static str {
        match self {
            Relevance::Relevant => "manifest",
            Relevance::EditorTemp => "editor temporary file",
            Relevance::Hidden => "hidden path",
            Relevance::NotManifest => "not a manifest path",
        }
    }
}

/// Why the `-f` paths cannot be watched.
#[derive(Debug, thiserror::Error)]
pub enum RootsError {
    #[error("cannot watch {}: {source}", path.display())]
    Unreachable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot watch {}: it names no file", path.display())]
    NoFileName { path: PathBuf },
}

impl Roots {
    /// Resolves the `-f` paths (empty: [`DEFAULT_MANIFEST`](manifest::DEFAULT_MANIFEST)) against the
    /// current directory.
    ///
    /// A directory must exist. A file need not exist yet (the first cycle
    /// reports it missing, and creating it starts a cycle), but the
    /// directory it is in must. A file that is a symbolic link is also
    /// followed to its target, whose directory is watched too.
    pub fn resolve(paths: &[PathBuf]) -> Result<Roots, RootsError> {
        let paths = manifest::paths_or_default(paths);
        let mut roots = Roots::default();
        for path in paths.iter() {
            match std::fs::metadata(path) {
                Ok(meta) if meta.is_dir() => {
                    let dir = canonical(path)?;
                    roots.add_tree(dir);
                }
                _ => {
                    roots.add_file(path)?;
                    let is_link = std::fs::symlink_metadata(path)
                        .is_ok_and(|meta| meta.file_type().is_symlink());
                    if is_link && let Ok(target) = std::fs::canonicalize(path) {
                        roots.add_file(&target)?;
                    }
                }
            }
        }
        Ok(roots)
    }

    /// Roots from absolute paths, without touching the disk (tests).
    pub fn from_parts(trees: Vec<PathBuf>, files: Vec<PathBuf>) -> Roots {
        let mut roots = Roots::default();
        for tree in trees {
            roots.add_tree(tree);
        }
        for file in files {
            if let (Some(dir), Some(name)) = (file.parent(), file.file_name()) {
                roots.add_named(dir.to_owned(), name.to_owned());
            }
        }
        roots
    }

    fn add_tree(&mut self, dir: PathBuf) {
        if !self.trees.contains(&dir) {
            self.trees.push(dir);
        }
    }

    fn add_file(&mut self, path: &Path) -> Result<(), RootsError> {
        let name = path
            .file_name()
            .ok_or_else(|| RootsError::NoFileName {
                path: path.to_owned(),
            })?
            .to_owned();
        let parent = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let dir = canonical(parent)?;
        self.add_named(dir, name);
        Ok(())
    }

    fn add_named(&mut self, dir: PathBuf, name: OsString) {
        match self.files.iter_mut().find(|(d, _)| *d == dir) {
            Some((_, names)) => {
                names.insert(name);
            }
            None => self.files.push((dir, BTreeSet::from([name]))),
        }
    }

    /// The directories to watch: every tree recursively, every file's
    /// directory on its own, leaving out directories a tree already covers
    /// (watching one directory twice with different modes confuses
    /// watchers).
    pub fn watch_dirs(&self) -> Vec<WatchDir> {
        let covered = |dir: &Path, except: Option<&Path>| {
            self.trees
                .iter()
                .any(|tree| Some(tree.as_path()) != except && dir.starts_with(tree))
        };
        let mut dirs = Vec::new();
        for tree in &self.trees {
            if !covered(tree, Some(tree)) {
                dirs.push(WatchDir {
                    path: tree.clone(),
                    recursive: true,
                });
            }
        }
        for (dir, _) in &self.files {
            if !covered(dir, None) {
                dirs.push(WatchDir {
                    path: dir.clone(),
                    recursive: false,
                });
            }
        }
        dirs
    }

    /// Whether a change at `path` (absolute, as the watcher reports it) can
    /// change what `manifest::load` reads. `is_dir`: the path is (or was) a
    /// directory, as far as the event tells.
    pub fn classify(&self, path: &Path, is_dir: bool) -> Relevance {
        // A watched directory itself moved or went away.
        let watched_dir = self.trees.iter().any(|tree| tree == path)
            || self.files.iter().any(|(dir, _)| dir == path);
        if watched_dir {
            return Relevance::Relevant;
        }
        let named = match (path.parent(), path.file_name()) {
            (Some(parent), Some(name)) => self
                .files
                .iter()
                .any(|(dir, names)| dir == parent && names.contains(name)),
            _ => false,
        };
        if named {
            return Relevance::Relevant;
        }
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            return Relevance::NotManifest;
        };
        if is_editor_temp(name) {
            return Relevance::EditorTemp;
        }
        if manifest::is_hidden(name) {
            return Relevance::Hidden;
        }
        let mut relevance = Relevance::NotManifest;
        for tree in &self.trees {
            let Ok(rest) = path.strip_prefix(tree) else {
                continue;
            };
            let hidden = rest.components().any(|c| match c {
                Component::Normal(part) => part.to_str().is_none_or(manifest::is_hidden),
                _ => false,
            });
            if hidden {
                relevance = Relevance::Hidden;
                continue;
            }
            if is_dir || manifest::is_yaml(path) {
                return Relevance::Relevant;
            }
        }
        relevance
    }
}

fn canonical(path: &Path) -> Result<PathBuf, RootsError> {
    std::fs::canonicalize(path).map_err(|source| RootsError::Unreachable {
        path: path.to_owned(),
        source,
    })
}

/// Files editors write beside the one being edited: never a manifest, even
/// when the name ends in `.yaml`.
///
/// - vim: `.name.swp`/`.swx`/`.swo` swap files, and `4913` (a probe file vim
///   creates to test whether it may write the directory; when that name is
///   taken it tries 4913 + 123·k, hence any all-digit name);
/// - emacs: `.#name` lock links and `#name#` auto-saves;
/// - JetBrains "safe write": `name___jb_tmp___`, `name___jb_old___`;
/// - `name~` backups (vim, emacs, gedit).
///
/// (Hidden names are ignored anyway, as `manifest::load` skips them.)
pub fn is_editor_temp(name: &str) -> bool {
    name.starts_with(".#")
        || name.ends_with('~')
        || name.ends_with(".swp")
        || name.ends_with(".swx")
        || name.ends_with(".swo")
        || (name.starts_with('#') && name.ends_with('#') && name.len() > 1)
        || (name.contains("___jb_") && name.ends_with("___"))
        || (!name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roots() -> Roots {
        Roots::from_parts(
            vec![PathBuf::from("/repo/packages")],
            vec![
                PathBuf::from("/repo/oapkg.yaml"),
                PathBuf::from("/etc/oapkg/extra.yml"),
            ],
        )
    }

    #[track_caller]
    fn check(path: &str, expected: Relevance) {
        assert_eq!(roots().classify(Path::new(path), false), expected, "{path}");
    }

    #[test]
    fn named_files_and_yaml_under_trees_are_relevant() {
        check("/repo/oapkg.yaml", Relevance::Relevant);
        check("/etc/oapkg/extra.yml", Relevance::Relevant);
        check("/repo/packages/a.yaml", Relevance::Relevant);
        check("/repo/packages/team/b.yml", Relevance::Relevant);
    }

    #[test]
    fn siblings_of_named_files_are_not() {
        // Only the named file counts in a file's directory, even if YAML.
        check("/repo/other.yaml", Relevance::NotManifest);
        check("/repo/README.md", Relevance::NotManifest);
        check("/etc/oapkg/oapkg.yaml", Relevance::NotManifest);
    }

    #[test]
    fn editor_files_are_ignored() {
        for name in [
            ".oapkg.yaml.swp",
            ".oapkg.yaml.swx",
            "4913",
            "5036",
            ".#oapkg.yaml",
            "#oapkg.yaml#",
            "oapkg.yaml~",
            "oapkg.yaml___jb_tmp___",
            "oapkg.yaml___jb_old___",
            "a.yaml.swp",
        ] {
            check(&format!("/repo/{name}"), Relevance::EditorTemp);
            check(&format!("/repo/packages/{name}"), Relevance::EditorTemp);
        }
    }

    #[test]
    fn hidden_paths_and_other_files_under_trees_are_ignored() {
        check("/repo/packages/.git/index", Relevance::Hidden);
        check("/repo/packages/.hidden/a.yaml", Relevance::Hidden);
        check("/repo/packages/notes.txt", Relevance::NotManifest);
        check("/repo/packages/sedAb12Cd", Relevance::NotManifest);
        check("/elsewhere/a.yaml", Relevance::NotManifest);
    }

    #[test]
    fn directories_under_trees_and_the_tree_itself_are_relevant() {
        let roots = roots();
        assert_eq!(
            roots.classify(Path::new("/repo/packages/team"), true),
            Relevance::Relevant
        );
        assert_eq!(
            roots.classify(Path::new("/repo/packages/.git"), true),
            Relevance::Hidden
        );
        assert_eq!(
            roots.classify(Path::new("/repo/packages"), false),
            Relevance::Relevant
        );
        assert_eq!(
            roots.classify(Path::new("/repo"), true),
            Relevance::Relevant
        );
        // A directory beside a named file is not.
        assert_eq!(
            roots.classify(Path::new("/repo/somedir"), true),
            Relevance::NotManifest
        );
    }

    #[test]
    fn watch_dirs_cover_each_directory_once() {
        let roots = Roots::from_parts(
            vec![PathBuf::from("/repo"), PathBuf::from("/repo/packages")],
            vec![
                PathBuf::from("/repo/packages/x.yaml"),
                PathBuf::from("/etc/a.yaml"),
                PathBuf::from("/etc/b.yaml"),
            ],
        );
        assert_eq!(
            roots.watch_dirs(),
            vec![
                WatchDir {
                    path: PathBuf::from("/repo"),
                    recursive: true
                },
                WatchDir {
                    path: PathBuf::from("/etc"),
                    recursive: false
                },
            ]
        );
        // A file named inside a tree is relevant through both rules.
        assert_eq!(
            roots.classify(Path::new("/repo/packages/x.yaml"), false),
            Relevance::Relevant
        );
    }

    #[test]
    fn resolve_uses_parent_directories_and_needs_them_to_exist() {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(base.join("packages")).unwrap();
        let roots = Roots::resolve(&[
            base.join("packages"),
            base.join("not-yet.yaml"), // may be created later
        ])
        .unwrap();
        assert_eq!(roots.watch_dirs().len(), 2);
        assert_eq!(
            roots.classify(&base.join("not-yet.yaml"), false),
            Relevance::Relevant
        );
        let missing = Roots::resolve(&[base.join("nope/a.yaml")]).unwrap_err();
        assert!(missing.to_string().contains("nope"), "{missing}");
    }
}
