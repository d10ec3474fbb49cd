//! Every way reading or writing the state can fail, as one typed error.
//!
//! Each variant is one failure a user or the CLI can act on. Messages name
//! the file and say what to do; the underlying cause (an `io::Error`, a JSON
//! error) is kept in `#[source]` and not repeated in the message, so the CLI
//! can print the chain once.

use std::io;
use std::path::{Path, PathBuf};

use crate::files::FileKind;
use crate::spec::{Key, key_list};

use super::holder::LockHolder;

/// Why the state could not be read, written, locked or journaled.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// An operating-system call on one of the state's files failed.
    #[error("could not {action} {}: check the path, its permissions and the free disk space, then run oapkg again", .path.display())]
    Io {
        /// What was being done, as a verb phrase ("read the state file").
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The state path names a directory (or something else that is not a file).
    #[error("state path {} is not a regular file ({kind}), and it must be one: pass the path of the state file itself (e.g. {})", .path.display(), .path.join("oapkg.state.json").display())]
    NotAFile { path: PathBuf, kind: FileKind },

    /// The state path is a symbolic link (to a file or to nothing). oapkg
    /// replaces the state file by renaming a new file over the path, which
    /// would replace the link rather than its target, and keeps the journal,
    /// lock and backup beside the path it was given: following the link
    /// would split them from the file. So it refuses.
    #[error("state path {} is a symbolic link to {}{}; oapkg does not follow it (writing the state renames a new file over the path, which would replace the link, not the file it points to, and the journal, lock and backup are kept beside the path given): pass the real path instead (--state {}), or replace the link with the file; nothing was changed", .path.display(), .target.display(), dangling_note(*.exists), .target.display())]
    Symlink {
        path: PathBuf,
        /// Where the link points: the real path, absolute, when it exists;
        /// otherwise the link's text joined to the link's directory.
        target: PathBuf,
        /// Whether the target exists.
        exists: bool,
    },

    /// The state file exists but holds nothing (0 bytes or only whitespace).
    #[error("state file {} is empty; it is refused and left as it is: restore it from {}", .path.display(), restore_from(.path))]
    Empty { path: PathBuf },

    /// The state file's JSON stops in the middle (a truncated copy or write).
    #[error("state file {} is truncated (its JSON ends early); it is refused and left as it is: restore it from {}", .path.display(), restore_from(.path))]
    Truncated {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    /// The state file is not JSON at all.
    #[error("state file {} is not valid JSON; it is refused and left as it is: restore it from {}", .path.display(), restore_from(.path))]
    NotJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    /// The state file's `format_version` is missing or one this oapkg does not read.
    #[error("state file {} has format_version {found}, but this oapkg ({}) reads only format_version {}; use the oapkg release that wrote it", .path.display(), env!("CARGO_PKG_VERSION"), super::FORMAT_VERSION)]
    UnknownFormatVersion {
        path: PathBuf,
        /// The value found, as JSON text (`"missing"` when absent).
        found: String,
    },

    /// The state file is JSON but not a state file: an unknown or missing
    /// field, a wrong type, a bad key, a package listed twice.
    #[error("state file {} is not a valid oapkg state file; it is refused and left as it is: fix the field named below, or restore it from {}", .path.display(), restore_from(.path))]
    Malformed {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    /// The content does not match the recorded checksum: it was edited by hand
    /// (or damaged) after oapkg wrote it.
    #[error("state file {} does not match its checksum (it records {recorded}, its content hashes to {computed}): it was edited or damaged after oapkg wrote it; it is refused and left as it is. Change state only with `oapkg state` commands; to recover, {}", .path.display(), recover_from(.path))]
    ChecksumMismatch {
        path: PathBuf,
        recorded: String,
        computed: String,
    },

    /// A package record contradicts itself (its key, spec and spec hash disagree).
    #[error("state file {}: package {key}: {problem}; the state is refused and left as it is: restore it from {}", .path.display(), restore_from(.path))]
    InvalidRecord {
        path: PathBuf,
        key: Key,
        problem: String,
    },

    /// No state file at the path, for a command that buys: a wrong `--state`
    /// or a lost file must never buy everything again.
    #[error("no state file at {}: apply and watch --apply never buy against a missing state (a wrong --state path or a lost file would buy every package again); nothing was bought", .path.display())]
    Missing { path: PathBuf },

    /// The state directory was renamed or replaced while a writer held the
    /// lock: the lock file or the journal at the path are other files than
    /// the ones it opened. Nothing is written; the journal keeps the run's
    /// purchases where it now is.
    #[error("the state at {} was moved or replaced during this run: the lock file {} or the journal beside it is no longer the file this run opened, so the run's purchases were not folded into it. Every purchase of this run is in the journal now at {}; {}", .path.display(), .lock.display(), .journal.display(), moved_recovery(.path, .copied.as_deref()))]
    Moved {
        path: PathBuf,
        lock: PathBuf,
        /// Where the journal holding the run's purchases is now.
        journal: PathBuf,
        /// Where a copy of it was left beside the state, if one could be.
        copied: Option<PathBuf>,
    },

    /// `oapkg init` found a state already there.
    #[error("state file {} already exists (lineage {lineage}, serial {serial}, {packages} package(s)); `oapkg init` never replaces a state: nothing was changed", .path.display())]
    AlreadyExists {
        path: PathBuf,
        lineage: String,
        serial: u64,
        packages: usize,
    },

    /// Another process holds the writer lock.
    #[error("{}", locked_message(.path, .holder.as_ref()))]
    Locked {
        /// The state file (not the lock file).
        path: PathBuf,
        /// Who holds it, when the lock file says so.
        holder: Option<LockHolder>,
    },

    /// The state being written was loaded from an older version of the file:
    /// writing it would drop what was recorded since.
    #[error("state file {} changed since this state was loaded (loaded lineage {}, serial {loaded_serial}; the file now has lineage {}, serial {disk_serial}); nothing was written: take the lock first, then load the state and apply the change again", .path.display(), .loaded_lineage.as_deref().unwrap_or("none"), .disk_lineage.as_deref().unwrap_or("none"))]
    Conflict {
        path: PathBuf,
        loaded_lineage: Option<String>,
        loaded_serial: u64,
        disk_lineage: Option<String>,
        disk_serial: u64,
    },

    /// The lock given to `write` or `journal` was taken for another state file.
    #[error("the lock passed for state file {} was taken for {}; this is a bug in oapkg", .path.display(), .locked.display())]
    WrongLock { path: PathBuf, locked: PathBuf },

    /// The serial cannot grow any more.
    #[error("state file {} has serial {serial}, which cannot grow further; it is refused", .path.display())]
    SerialExhausted { path: PathBuf, serial: u64 },

    /// A journal line other than the last one is damaged.
    #[error("journal {} is damaged at line {line} ({problem}); nothing was changed: it records purchases that may have been made, so keep it, compare it with `oapkg state list` and the eSMS portal, then move it aside", .path.display())]
    JournalCorrupt {
        path: PathBuf,
        line: usize,
        problem: String,
    },

    /// The journal was written against a different state file than the one
    /// now at the state path (another lineage, a newer serial, or no file).
    #[error("journal {} belongs to state lineage {}, serial {journal_serial}, but state file {} has lineage {}, serial {state_serial}; nothing was changed: the state file was replaced while purchases were being recorded. Restore the state file that matches the journal (from {}), or record the journal's packages with `oapkg state import` and move the journal aside", .path.display(), .journal_lineage.as_deref().unwrap_or("none"), .state_path.display(), .state_lineage.as_deref().unwrap_or("none (missing)"), restore_from(.state_path))]
    JournalMismatch {
        path: PathBuf,
        state_path: PathBuf,
        journal_lineage: Option<String>,
        journal_serial: u64,
        state_lineage: Option<String>,
        state_serial: u64,
    },

    /// The journal is from an earlier serial (so it should have been folded
    /// into the state file) but some of its purchases are not in the file.
    #[error("journal {} records purchases of {} that are not in state file {} (serial {state_serial}); nothing was changed: record them with `oapkg state import` (after checking them on the eSMS portal), then move the journal aside", .path.display(), key_list(.keys), .state_path.display())]
    JournalNotFolded {
        path: PathBuf,
        state_path: PathBuf,
        state_serial: u64,
        keys: Vec<Key>,
    },

    /// Something other than a regular file is at the journal path (a
    /// directory, a device such as `/dev/full`, a link, a FIFO).
    #[error("journal {} is not a regular file (it must be one); nothing was read, bought or changed: oapkg records purchases in a regular file at that path, so move what is there aside, then run oapkg again", .path.display())]
    JournalNotAFile { path: PathBuf },

    /// `record_outcome` was called for a key with no recorded intent.
    #[error("journal {}: outcome for {key} without a recorded intent; this is a bug in oapkg", .path.display())]
    OutcomeWithoutIntent { path: PathBuf, key: Key },

    /// An earlier write to the journal failed, so what is on disk is unknown;
    /// no more purchases may be recorded under this lock.
    #[error("an earlier write to journal {} failed, so no more purchases can be recorded in this run; stop, then run oapkg again (it recovers what the journal holds)", .path.display())]
    JournalBroken { path: PathBuf },

    /// `--state s3://…` that is not a usable location.
    #[error("--state {location} is not a usable S3 location: {problem}")]
    RemoteLocation { location: String, problem: String },

    /// A request to the S3-compatible store failed (or its client could not
    /// be set up). The message never holds the credentials.
    #[error(
        "could not {action} the state at {location}: {message}; check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL, the bucket and the network, then run oapkg again"
    )]
    Remote {
        action: &'static str,
        location: String,
        message: String,
    },

    /// The store accepted a write that a conditional header should have
    /// refused: it gives no mutual exclusion, so it is not used.
    #[error(
        "the store at {location} ignores the {header} header (a conflicting conditional write was accepted), so two writers could both record and buy one package; oapkg refuses to use it: use a store that enforces conditional writes (AWS S3, Cloudflare R2, MinIO and others do), and reach it directly, not through a proxy or gateway that drops those headers; {outcome}"
    )]
    ConditionalWritesIgnored {
        location: String,
        header: &'static str,
        /// What was not done: `nothing was created`, `nothing was bought`…
        outcome: &'static str,
    },

    /// The head object of an S3 state is damaged or not oapkg's.
    #[error("state object {} is refused: {problem}; it is left as it is: restore an earlier version of it (bucket versioning) or the state from a backup", .path.display())]
    RemoteCorrupt { path: PathBuf, problem: String },

    /// Someone else wrote the head of an S3 state while this run held the
    /// lease (it expired and was taken over, or `state unlock` broke it):
    /// nothing more is recorded or bought in this run.
    #[error("lost the lease on the state at {}{}: nothing more is bought in this run; what it recorded is in the state, and purchases whose outcome it could not record show as unconfirmed (check them on the eSMS portal, then `oapkg state confirm`)", .path.display(), lease_taker(.holder.as_deref()))]
    LeaseLost {
        path: PathBuf,
        /// Boxed: the error stays as small as the other variants.
        holder: Option<Box<LockHolder>>,
    },

    /// A writer's lease on an S3 state has less than a third of its time
    /// left since the last write that renewed it (the process was paused,
    /// or the store was slow): another writer may soon take it over, so
    /// nothing more is sent in this run.
    #[error("the lease on the state at {} ran out: {:.1}s since this run last renewed it, and a request may go out only while a third of its {}s is left (was the process paused, or the store slow?); nothing more is bought in this run: what it recorded is in the state, and a package sent without a recorded answer shows as unconfirmed (check it on the eSMS portal, then `oapkg state confirm`)", .path.display(), .elapsed.as_secs_f64(), .lease.as_secs_f64())]
    LeaseRanOut {
        path: PathBuf,
        elapsed: std::time::Duration,
        lease: std::time::Duration,
    },

    /// The lock file of a local state is no longer the one this run holds
    /// (the state directory was renamed or replaced): another process may
    /// lock the new one, so nothing more is sent in this run.
    #[error("the lock file {} is no longer the one this run locked (the state directory was moved or replaced during the run): nothing more is bought in this run", .lock.display())]
    LockMoved { path: PathBuf, lock: PathBuf },

    /// The state file (or lock file) kept being replaced while oapkg used it.
    #[error("{} kept changing while oapkg was using it (another process keeps replacing it); try again", .path.display())]
    Unstable { path: PathBuf },

    /// `oapkg init` found no state file but its backup: a lost state, not a
    /// new one. Starting over it would buy every package again (and the
    /// next write would overwrite the backup, the one file that knows what
    /// was paid).
    #[error("no state file at {} but its backup {} is there ({}): that is a lost state, not a new one, and `oapkg init` does not start over it; nothing was changed", .path.display(), .backup.display(), backup_summary(.found))]
    BackupInTheWay {
        path: PathBuf,
        backup: PathBuf,
        /// What the backup holds, or why it is refused.
        found: BackupSummary,
    },

    /// `oapkg state restore`: the state at the path loads; there is nothing
    /// to restore.
    #[error("state file {} loads (lineage {lineage}, serial {serial}, {packages} package(s)): nothing to restore; `oapkg state restore` only brings back the backup beside a missing or refused state; nothing was changed", .path.display())]
    NothingToRestore {
        path: PathBuf,
        lineage: String,
        serial: u64,
        packages: usize,
    },

    /// `oapkg state restore`: no backup beside the state.
    #[error("no backup at {}: nothing to restore {} from; nothing was changed: restore the state from Git or another copy", .backup.display(), .path.display())]
    NoBackup { path: PathBuf, backup: PathBuf },

    /// `oapkg state restore`: the backup fails a check of its own.
    #[error("the backup {} is refused, so it is not restored; nothing was changed: restore the state from Git or another copy", .backup.display())]
    BadBackup {
        backup: PathBuf,
        #[source]
        source: Box<StateError>,
    },

    /// `oapkg state restore`: the state is refused for a reason its backup
    /// does not fix (a format this oapkg does not read).
    #[error("state file {} is not damaged but unreadable by this oapkg, so `oapkg state restore` leaves it; nothing was changed", .path.display())]
    NotRestorable {
        path: PathBuf,
        #[source]
        source: Box<StateError>,
    },

    /// `oapkg state restore`: the journal beside the state was recorded
    /// against another version than the backup's; restoring would hide it.
    #[error("the journal {} beside the state does not fit the backup {} (see below): restoring it would leave purchases unrecorded, so nothing was changed; keep the journal, compare it with the eSMS portal and record its packages with `oapkg state import` after restoring by hand", .journal.display(), .backup.display())]
    JournalDoesNotFitBackup {
        journal: PathBuf,
        backup: PathBuf,
        #[source]
        source: Box<StateError>,
    },

    /// `oapkg state restore` on an `s3://` state.
    #[error(
        "`oapkg state restore` is not supported on s3:// yet: {location} keeps no backup object (every version stays as an immutable snapshot under {location}/snapshots/, and bucket versioning keeps earlier versions of head.json); nothing was changed"
    )]
    RestoreUnsupported { location: String },

    /// Encoding the state as JSON failed (cannot happen with the types used;
    /// kept as an error rather than a panic).
    #[error("could not encode the state for {}; this is a bug in oapkg", .path.display())]
    Encode {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl StateError {
    /// What to do about it, for the user, where that reads better apart from
    /// what went wrong (the CLI prints it as a `hint:` line).
    pub fn hint(&self) -> Option<String> {
        match self {
            StateError::Missing { path } => Some(format!(
                "Pass the right --state (or OAPKG_STATE), restore the file from {}, \
                 or, for a new setup, create an empty state with `oapkg init --state {}`",
                restore_from(path),
                path.display()
            )),
            StateError::BackupInTheWay { path, .. } => Some(format!(
                "Bring it back with `oapkg state restore --state {}` (it checks the backup's \
                 checksum first); to start a new state anyway, `oapkg init --force` keeps that \
                 backup aside under a new name",
                path.display()
            )),
            StateError::Locked { .. } => Some(
                "Wait for it to finish, or run \"oapkg state unlock\" if that process is gone"
                    .to_owned(),
            ),
            _ => None,
        }
    }

    /// Whether this error can only come from a mistake in oapkg itself,
    /// never from the files or the user.
    pub fn is_bug(&self) -> bool {
        matches!(
            self,
            StateError::WrongLock { .. }
                | StateError::OutcomeWithoutIntent { .. }
                | StateError::Encode { .. }
        )
    }

    /// Whether this says the writer no longer holds the state (its lease
    /// was lost or ran out, or its lock file left the path): it must send
    /// nothing more.
    pub fn ends_the_lease(&self) -> bool {
        matches!(
            self,
            StateError::LeaseLost { .. }
                | StateError::LeaseRanOut { .. }
                | StateError::LockMoved { .. }
        )
    }

    pub(crate) fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        StateError::Io {
            action,
            path: path.to_owned(),
            source,
        }
    }
}

/// Where to restore the state at `path` from, as a hint says it: its
/// backup and Git when the backup is there, Git alone otherwise (a hint
/// never points at a file that does not exist). Read when the message is
/// shown.
fn restore_from(path: &Path) -> String {
    let backup = backup_of(path);
    if backup.is_file() {
        format!("{} or from Git", backup.display())
    } else {
        "Git (there is no backup beside it)".to_owned()
    }
}

/// How to recover a state that fails its checksum: from its backup (the
/// previous version) when there is one, else from Git.
fn recover_from(path: &Path) -> String {
    let backup = backup_of(path);
    if backup.is_file() {
        format!(
            "compare it with {} (the previous version) and copy that back, or restore it from Git",
            backup.display()
        )
    } else {
        "restore it from Git (there is no backup beside it)".to_owned()
    }
}

/// `<path>.backup`, the previous version kept by every write.
pub(crate) fn backup_of(path: &Path) -> PathBuf {
    super::names::sibling(path, ".backup")
}

/// What `oapkg init` found in the backup beside a missing state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackupSummary {
    /// A backup that passes every check.
    Valid {
        lineage: String,
        serial: u64,
        packages: usize,
    },
    /// A backup refused by a check (why, as a sentence).
    Refused(String),
}

fn backup_summary(found: &BackupSummary) -> String {
    match found {
        BackupSummary::Valid {
            lineage,
            serial,
            packages,
        } => format!("lineage {lineage}, serial {serial}, {packages} package(s)"),
        BackupSummary::Refused(problem) => format!("itself refused: {problem}"),
    }
}

fn moved_recovery(path: &Path, copied: Option<&Path>) -> String {
    match copied {
        Some(copy) => format!(
            "a copy of it was left at {}, so the next oapkg command that writes the state there folds them in (check with `oapkg state list`) and nothing is bought twice",
            copy.display()
        ),
        None => format!(
            "put the state directory back, or move that journal beside the state file as {}, then run any oapkg command that writes the state (e.g. `oapkg state list` shows them, `oapkg apply` folds them in) before buying anything else",
            super::names::sibling(path, ".journal").display()
        ),
    }
}

fn dangling_note(exists: bool) -> &'static str {
    if exists {
        ""
    } else {
        " (which does not exist)"
    }
}

fn lease_taker(holder: Option<&LockHolder>) -> String {
    match holder {
        Some(h) => format!(
            " (now held by pid {} on host {} running \"{}\" since {})",
            h.pid, h.host, h.command, h.since
        ),
        None => String::new(),
    }
}

fn locked_message(path: &Path, holder: Option<&LockHolder>) -> String {
    let who = match holder {
        Some(h) => format!(
            "pid {} on host {} running \"{}\" since {}{}",
            h.pid,
            h.host,
            h.command,
            h.since,
            h.ci_job
                .as_deref()
                .map(|job| format!(" (CI job {job})"))
                .unwrap_or_default()
        ),
        None => "another process (which has not recorded who it is yet)".to_owned(),
    };
    format!("state file {} is locked by {who}", path.display())
}
