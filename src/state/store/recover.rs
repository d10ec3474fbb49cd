//! The rules of `oapkg init` over a backup and of `oapkg state restore`:
//! when a missing state is a lost one, and when its backup may come back.
//!
//! Pure: what was found at the state path and at `<path>.backup` comes in
//! (read by [`StateStore`](super::StateStore) under the lock), a decision
//! or the refusal goes out. The store does the renames.

use std::path::Path;

use super::super::StateError;
use super::super::error::BackupSummary;
use super::super::file::DiskState;

/// A state file or its backup, as read.
#[derive(Debug)]
pub(crate) enum Found {
    /// Nothing at the path.
    Missing,
    /// A file that passes every check.
    Loads(DiskState),
    /// Something that fails a check (or cannot be read).
    Refused(StateError),
}

/// Whether `oapkg init` may create a state where none is: only where no
/// backup is either, unless `force` (a new lineage; the caller keeps the
/// backup aside). A backup beside a missing state is a lost state, and an
/// empty state over it would buy everything again.
pub(crate) fn may_init(
    path: &Path,
    backup_path: &Path,
    backup: &Found,
    force: bool,
) -> Result<(), StateError> {
    let found = match backup {
        Found::Missing => return Ok(()),
        _ if force => return Ok(()),
        Found::Loads(disk) => BackupSummary::Valid {
            lineage: disk.lineage.clone(),
            serial: disk.serial,
            packages: disk.packages.len(),
        },
        Found::Refused(error) => BackupSummary::Refused(error.to_string()),
    };
    Err(StateError::BackupInTheWay {
        path: path.to_owned(),
        backup: backup_path.to_owned(),
        found,
    })
}

/// Whether a refused state file is one its backup may replace: damaged
/// (empty, cut short, not JSON, not a state file, a checksum that does not
/// match, a record that contradicts itself). A file in a format this oapkg
/// does not read is not damaged, and anything else (a link, a directory,
/// an I/O error) is not the file's content: those are reported as they are.
fn damaged(error: &StateError) -> bool {
    matches!(
        error,
        StateError::Empty { .. }
            | StateError::Truncated { .. }
            | StateError::NotJson { .. }
            | StateError::Malformed { .. }
            | StateError::ChecksumMismatch { .. }
            | StateError::InvalidRecord { .. }
    )
}

/// What `state restore` does with the file at the state path.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Replacing {
    /// Nothing is there.
    Nothing,
    /// A damaged file, to be kept aside (never deleted).
    Damaged,
}

/// Whether `oapkg state restore` may put the backup in place of the state:
/// only when the state is missing or damaged, and the backup passes every
/// check. Returns the backup as read, and what it replaces.
pub(crate) fn may_restore(
    path: &Path,
    backup_path: &Path,
    current: Found,
    backup: Found,
) -> Result<(DiskState, Replacing), StateError> {
    let replacing = match current {
        Found::Missing => Replacing::Nothing,
        Found::Loads(disk) => {
            return Err(StateError::NothingToRestore {
                path: path.to_owned(),
                lineage: disk.lineage,
                serial: disk.serial,
                packages: disk.packages.len(),
            });
        }
        Found::Refused(error @ StateError::UnknownFormatVersion { .. }) => {
            return Err(StateError::NotRestorable {
                path: path.to_owned(),
                source: Box::new(error),
            });
        }
        Found::Refused(error) if damaged(&error) => Replacing::Damaged,
        Found::Refused(error) => return Err(error),
    };
    match backup {
        Found::Loads(disk) => Ok((disk, replacing)),
        Found::Missing => Err(StateError::NoBackup {
            path: path.to_owned(),
            backup: backup_path.to_owned(),
        }),
        Found::Refused(error) => Err(StateError::BadBackup {
            backup: backup_path.to_owned(),
            source: Box::new(error),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn disk(serial: u64) -> DiskState {
        DiskState {
            lineage: "L".into(),
            serial,
            checksum: "sha256:x".into(),
            packages: crate::state::file::tests::packages(),
            failed_attempts: Default::default(),
            observations: Default::default(),
        }
    }

    fn paths() -> (PathBuf, PathBuf) {
        (PathBuf::from("s.json"), PathBuf::from("s.json.backup"))
    }

    fn mismatch() -> StateError {
        StateError::ChecksumMismatch {
            path: PathBuf::from("x"),
            recorded: "a".into(),
            computed: "b".into(),
        }
    }

    #[test]
    fn init_refuses_over_any_backup_unless_forced() {
        let (path, backup) = paths();
        assert!(may_init(&path, &backup, &Found::Missing, false).is_ok());
        let error = may_init(&path, &backup, &Found::Loads(disk(7)), false).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("s.json.backup"), "{text}");
        assert!(text.contains("serial 7"), "{text}");
        assert!(text.contains(&format!("{} package(s)", disk(7).packages.len())));
        assert!(error.hint().unwrap().contains("oapkg state restore"));
        // A damaged backup is still a lost state: refused, saying why.
        let error = may_init(&path, &backup, &Found::Refused(mismatch()), false).unwrap_err();
        assert!(error.to_string().contains("itself refused"), "{error}");
        assert!(may_init(&path, &backup, &Found::Loads(disk(7)), true).is_ok());
        assert!(may_init(&path, &backup, &Found::Refused(mismatch()), true).is_ok());
    }

    #[test]
    fn restore_needs_a_missing_or_damaged_state_and_a_good_backup() {
        let (path, backup) = paths();
        let (restored, replacing) =
            may_restore(&path, &backup, Found::Missing, Found::Loads(disk(6))).unwrap();
        assert_eq!((restored.serial, replacing), (6, Replacing::Nothing));
        let (_, replacing) = may_restore(
            &path,
            &backup,
            Found::Refused(mismatch()),
            Found::Loads(disk(6)),
        )
        .unwrap();
        assert_eq!(replacing, Replacing::Damaged);

        let fine = may_restore(&path, &backup, Found::Loads(disk(7)), Found::Loads(disk(6)));
        assert!(matches!(
            fine,
            Err(StateError::NothingToRestore { serial: 7, .. })
        ));
        let none = may_restore(&path, &backup, Found::Missing, Found::Missing);
        assert!(matches!(none, Err(StateError::NoBackup { .. })));
        let bad = may_restore(&path, &backup, Found::Missing, Found::Refused(mismatch()));
        assert!(matches!(bad, Err(StateError::BadBackup { .. })));
        let newer = StateError::UnknownFormatVersion {
            path: path.clone(),
            found: "2".into(),
        };
        let newer = may_restore(&path, &backup, Found::Refused(newer), Found::Loads(disk(6)));
        assert!(matches!(newer, Err(StateError::NotRestorable { .. })));
        let link = StateError::Symlink {
            path: path.clone(),
            target: PathBuf::from("t"),
            exists: true,
        };
        let link = may_restore(&path, &backup, Found::Refused(link), Found::Loads(disk(6)));
        assert!(matches!(link, Err(StateError::Symlink { .. })));
    }
}
