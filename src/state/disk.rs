//! A local state's files as files: creating and syncing their directory,
//! telling one file from the one that replaced it, and what a state file
//! was when it was loaded under the lock.

use std::fs::{File, Metadata};
use std::path::Path;

use super::StateError;
use super::names::parent_dir;

pub(crate) fn create_parent_dir(path: &Path) -> Result<(), StateError> {
    let dir = parent_dir(path);
    crate::files::create_dir_all(dir)
        .map_err(|source| StateError::io("create the state directory", dir, source))
}

/// Makes renames and creations in `path`'s directory durable.
#[cfg(unix)]
pub(crate) fn sync_parent_dir(path: &Path) -> Result<(), StateError> {
    let dir = parent_dir(path);
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| StateError::io("sync the state directory", dir, source))
}

/// Directories cannot be opened for fsync elsewhere; renames there are
/// made durable by the file system's own journal.
#[cfg(not(unix))]
pub(crate) fn sync_parent_dir(_path: &Path) -> Result<(), StateError> {
    Ok(())
}

/// Which file is at a path: `file_identity` of its metadata. Differs
/// between a file and the one that replaced it.
pub(crate) type FileIdentity = (u64, u64);

/// Which file a metadata describes: device and inode on Unix, where files
/// are only ever replaced by rename (a new inode).
#[cfg(unix)]
pub(crate) fn file_identity(meta: &Metadata) -> FileIdentity {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

/// Which file a metadata describes: length and modification time elsewhere.
#[cfg(not(unix))]
pub(crate) fn file_identity(meta: &Metadata) -> FileIdentity {
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as u64);
    (meta.len(), modified)
}

/// The state file as loaded under a lock, for the write that follows:
/// which file it was (device and inode), its length and the SHA-256 of its
/// bytes, and the version it holds.
///
/// Why the hash and not only the file's metadata: a file edited in place
/// keeps its inode, and its length may not change; its modification time
/// can be set back, and both it and the change time have the file system's
/// clock granularity (milliseconds on some), so two versions could look
/// alike. Equal SHA-256 means equal bytes, and decoding depends on the
/// bytes alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LoadedFile {
    pub(crate) identity: FileIdentity,
    pub(crate) len: u64,
    pub(crate) sha256: String,
    pub(crate) lineage: String,
    pub(crate) serial: u64,
}
