//! Opening a file the user named, for reading: a regular file only, and
//! never a wait.
//!
//! Every file oapkg reads (manifests, the state file, its journal and lock,
//! the credentials file, a saved plan) comes from a path someone else
//! controls. `File::open` on a FIFO blocks until a writer appears, which
//! may be never, and reading a device (`/dev/zero`) never ends; a check of
//! the path before opening it leaves a moment in which the file can be
//! swapped. So [`open_regular`] opens without blocking (`O_NONBLOCK`, which
//! makes opening a FIFO return at once), then checks the opened file
//! itself and refuses anything that is not a regular file. This is the one
//! way files are opened for reading; the callers turn [`OpenError`] into
//! their own error, naming the file.

use std::fmt;
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::path::Path;

/// Why a file could not be opened for reading.
#[derive(Debug)]
pub enum OpenError {
    /// The path names something other than a regular file.
    NotRegular(FileKind),
    /// The operating system refused (not found, permissions, ...).
    Io(io::Error),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::NotRegular(kind) => {
                write!(f, "it is {kind}, and it must be a regular file")
            }
            OpenError::Io(err) => err.fmt(f),
        }
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OpenError::NotRegular(_) => None,
            OpenError::Io(err) => Some(err),
        }
    }
}

impl OpenError {
    /// Whether the file does not exist (often not an error for the caller).
    pub fn is_not_found(&self) -> bool {
        matches!(self, OpenError::Io(err) if err.kind() == io::ErrorKind::NotFound)
    }

    /// The error as an `io::Error`, for callers whose errors carry one.
    pub fn into_io(self) -> io::Error {
        match self {
            OpenError::Io(err) => err,
            not_regular => io::Error::new(io::ErrorKind::InvalidInput, not_regular.to_string()),
        }
    }
}

/// What a path that is not a regular file names, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Directory,
    Fifo,
    CharDevice,
    BlockDevice,
    Socket,
    Other,
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::Directory => "a directory",
            FileKind::Fifo => "a FIFO (named pipe)",
            FileKind::CharDevice => "a character device",
            FileKind::BlockDevice => "a block device",
            FileKind::Socket => "a socket",
            FileKind::Other => "not a regular file",
        })
    }
}

impl FileKind {
    /// The kind of a non-regular file; `None` for a regular file.
    pub fn of(meta: &Metadata) -> Option<FileKind> {
        let file_type = meta.file_type();
        if file_type.is_file() {
            return None;
        }
        if file_type.is_dir() {
            return Some(FileKind::Directory);
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileTypeExt;
            if file_type.is_fifo() {
                return Some(FileKind::Fifo);
            }
            if file_type.is_char_device() {
                return Some(FileKind::CharDevice);
            }
            if file_type.is_block_device() {
                return Some(FileKind::BlockDevice);
            }
            if file_type.is_socket() {
                return Some(FileKind::Socket);
            }
        }
        Some(FileKind::Other)
    }
}

/// Opens `path` (following symbolic links) for reading if it is a regular
/// file, without ever waiting: a FIFO, device, socket or directory is
/// refused with [`OpenError::NotRegular`]. Returns the file and its
/// metadata, taken from the open file (so the file checked is the file
/// read).
pub fn open_regular(path: &Path) -> Result<(File, Metadata), OpenError> {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // O_NONBLOCK: opening a FIFO without a writer returns at once
        // instead of waiting for one. O_NOCTTY: a terminal device never
        // becomes the controlling terminal.
        let flags = rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOCTTY;
        // The flag bits fit an i32 (open(2) takes an int).
        options.custom_flags(flags.bits() as i32);
    }
    let file = options.open(path).map_err(OpenError::Io)?;
    let meta = file.metadata().map_err(OpenError::Io)?;
    if let Some(kind) = FileKind::of(&meta) {
        return Err(OpenError::NotRegular(kind));
    }
    #[cfg(unix)]
    clear_nonblocking(&file).map_err(OpenError::Io)?;
    Ok((file, meta))
}

/// The temporary file a new version of a file oapkg writes whole (the
/// state, a saved plan) is written to before it is renamed into place:
/// created readable and writable by its owner only (0600; the umask can
/// narrow it further), since both list what was bought for which OA. The
/// state store then copies the mode of the state file it replaces, so a
/// mode someone gave the file on purpose (`chmod 640`) is kept.
pub fn new_version_builder<'a, 'b>() -> tempfile::Builder<'a, 'b> {
    let mut builder = tempfile::Builder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(NEW_FILE_MODE));
    }
    builder
}

/// The mode of a new state or plan file (see [`new_version_builder`]).
pub const NEW_FILE_MODE: u32 = 0o600;

/// Makes `options` create a new file with [`NEW_FILE_MODE`]: for the files
/// that are not written whole (the journal, the backup copy, the lock).
pub fn owner_only(options: &mut std::fs::OpenOptions) -> &mut std::fs::OpenOptions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(NEW_FILE_MODE);
    }
    options
}

/// The mode a directory oapkg creates for its files is given (the umask
/// may narrow it): never writable by group or others, which could replace
/// or plant files in it.
pub const NEW_DIR_MODE: u32 = 0o755;

/// Creates `dir` and its missing parents with [`NEW_DIR_MODE`].
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(NEW_DIR_MODE);
    }
    builder.create(dir)
}

/// The permission bits of `meta` when group or others may write there;
/// `None` otherwise (and where permissions are not Unix modes).
pub fn writable_by_others(meta: &Metadata) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o7777;
        (mode & 0o022 != 0).then_some(mode)
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        None
    }
}

/// Reads all of a regular file (see [`open_regular`]).
pub fn read_regular(path: &Path) -> Result<Vec<u8>, OpenError> {
    let (mut file, meta) = open_regular(path)?;
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    io::Read::read_to_end(&mut file, &mut bytes).map_err(OpenError::Io)?;
    Ok(bytes)
}

/// Turns `O_NONBLOCK` off again: it means nothing for a regular file on
/// Linux, but the file is handed on as an ordinary blocking one.
#[cfg(unix)]
fn clear_nonblocking(file: &File) -> io::Result<()> {
    use rustix::fs::{OFlags, fcntl_getfl, fcntl_setfl};
    let flags = fcntl_getfl(file)?;
    fcntl_setfl(file, flags - OFlags::NONBLOCK)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn mkfifo(path: &Path) {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }

    #[test]
    fn a_fifo_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        mkfifo(&fifo);
        let started = Instant::now();
        let err = open_regular(&fifo).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(
            matches!(err, OpenError::NotRegular(FileKind::Fifo)),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "it is a FIFO (named pipe), and it must be a regular file"
        );
    }

    #[cfg(unix)]
    #[test]
    fn new_directories_are_never_writable_by_others_and_such_modes_are_found() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        create_dir_all(&nested).unwrap();
        for d in [dir.path().join("a"), nested] {
            let meta = std::fs::metadata(&d).unwrap();
            assert_eq!(meta.permissions().mode() & 0o022, 0, "{}", d.display());
            assert_eq!(writable_by_others(&meta), None);
        }
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        for (mode, found) in [
            (0o600, None),
            (0o644, None),
            (0o664, Some(0o664)),
            (0o602, Some(0o602)),
        ] {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(
                writable_by_others(&std::fs::metadata(&file).unwrap()),
                found,
                "{mode:o}"
            );
        }
    }

    #[test]
    fn directories_and_devices_are_refused_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            open_regular(dir.path()),
            Err(OpenError::NotRegular(FileKind::Directory))
        ));
        assert!(matches!(
            open_regular(Path::new("/dev/zero")),
            Err(OpenError::NotRegular(FileKind::CharDevice))
        ));
        assert!(
            open_regular(&dir.path().join("missing"))
                .unwrap_err()
                .is_not_found()
        );
        let file = dir.path().join("f");
        std::fs::write(&file, "text").unwrap();
        assert_eq!(read_regular(&file).unwrap(), b"text");
    }
}
