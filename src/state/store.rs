//! [`StateStore`]: loading the state (file plus journal) and writing it
//! atomically with a backup, under the lock.
//!
//! This module owns the order of operations on disk, which is where crash
//! safety lives; the byte format is [`file`](mod@super::file)'s and the journal's
//! line format and replay rules are [`journal`]'s.
//!
//! # Why a crash at any instant leaves a valid state
//!
//! `write` never modifies the state file in place. It writes the new version
//! to a temporary file in the same directory and fsyncs it; hard-links the
//! current file to a temporary name and renames that over `<path>.backup`
//! (so there is always a complete backup, old or new); renames the temporary
//! file over the state path; and fsyncs the directory. `rename` within one
//! directory is atomic, so the path names either the complete old file or the
//! complete new one.
//!
//! Folding the journal follows the same rule: the new state file, which
//! contains the journal's entries, is durable (renamed and its directory
//! fsync'd) *before* the journal is removed. A crash in between leaves a
//! journal whose lines name the previous serial; [`load`](StateStore::load)
//! recognises them as already folded (and checks that they are) and ignores
//! them, and the next writer removes them. Replay is idempotent besides.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};

use crate::files::{self, OpenError};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::disk::{FileIdentity, LoadedFile, create_parent_dir, file_identity, sync_parent_dir};
use super::file::{self, DiskState};
use super::journal::{self, Generation, Journal, JournalSlot, StateLock};
use super::lock::{self, UnlockOutcome};
use super::names::{parent_dir, sibling};
use super::{FailedAttempt, Record, State, StateError, StateId};
use crate::spec::{Key, Sha256Writer, sha256_tagged};
use recover::{Found, Replacing};

/// How many times `load` rereads when the file is replaced while it reads.
const LOAD_ATTEMPTS: usize = 20;

/// One state file (and the backup, lock and journal files beside it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateStore {
    path: PathBuf,
}

/// What `oapkg init --force` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Initialized {
    pub id: StateId,
    /// Where the backup of the lost state was kept aside, if there was one.
    pub backup_aside: Option<PathBuf>,
}

/// What `oapkg state restore` brought back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    pub lineage: String,
    pub serial: u64,
    pub packages: usize,
    /// The backup restored from (left in place).
    pub backup: PathBuf,
    /// Where the damaged state was kept aside, if one was at the path.
    pub damaged_aside: Option<PathBuf>,
    /// The journal beside the state, if there is one: its entries recorded
    /// since the backup's version are folded in by the next write.
    pub journal: Option<PathBuf>,
}

/// A state as loaded, and which version of the file it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaded {
    pub state: State,
    pub id: StateId,
}

impl StateStore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        StateStore { path: path.into() }
    }

    /// The state file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `<path>.backup`: the version before the last write.
    pub fn backup_path(&self) -> PathBuf {
        sibling(&self.path, ".backup")
    }

    /// The backup beside the state, read and checked (checksum included),
    /// for `oapkg doctor`: `Ok(None)` when there is none. Takes no lock.
    pub fn read_backup(&self) -> Result<Option<file::DiskState>, StateError> {
        let backup_path = self.backup_path();
        match read_whole(&backup_path)? {
            Some(bytes) => file::decode(&backup_path, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// `<path>.lock`: exists while a writer holds the lock.
    pub fn lock_path(&self) -> PathBuf {
        sibling(&self.path, ".lock")
    }

    /// `<path>.journal`: purchases recorded since the last write.
    pub fn journal_path(&self) -> PathBuf {
        sibling(&self.path, ".journal")
    }

    /// Reads the state: the file, with the journal replayed over it, so
    /// callers see every recorded purchase. Needs no lock.
    ///
    /// A missing file is an empty state with `StateId { lineage: None,
    /// serial: 0, checksum: None }` (plus whatever a journal holds). A file
    /// that fails any check is refused with the matching [`StateError`] and
    /// left untouched.
    pub fn load(&self) -> Result<Loaded, StateError> {
        self.load_summed(false).map(|(loaded, _)| loaded)
    }

    /// [`load`](Self::load), and, if `sum`, which file was loaded with the
    /// SHA-256 of its bytes (see [`LoadedFile`]).
    fn load_summed(&self, sum: bool) -> Result<(Loaded, Option<LoadedFile>), StateError> {
        // The file and the journal are two files: a writer may fold the
        // journal between our two reads. The file is only ever replaced by
        // rename, so if it is the same file after reading the journal as
        // before, no write happened in between and the pair is consistent.
        for _ in 0..LOAD_ATTEMPTS {
            let (disk, identity, summed) = self.read_file_summed(sum)?;
            let contents = journal::read(&self.journal_path())?;
            if self.identity_now()? != identity {
                continue;
            }
            let loaded_file = match (&disk, identity, summed) {
                (Some(d), Some(identity), Some((len, sha256))) => Some(LoadedFile {
                    identity,
                    len,
                    sha256,
                    lineage: d.lineage.clone(),
                    serial: d.serial,
                }),
                _ => None,
            };
            return Ok((self.assemble(disk, contents)?, loaded_file));
        }
        Err(StateError::Unstable {
            path: self.path.clone(),
        })
    }

    /// `oapkg init`: creates an empty state (a fresh lineage, serial 0) at the
    /// path, under the lock, creating its directory. Refuses
    /// ([`StateError::AlreadyExists`]) if a state is there, also one that a
    /// journal left by an interrupted run folds into: a state is created
    /// only on purpose and never replaced.
    ///
    /// Refuses ([`StateError::BackupInTheWay`]) as well where no state is
    /// but its backup is: a lost state, not a new one (see
    /// [`init_force`](Self::init_force)).
    pub fn init(&self, command: &str, timeout: Duration) -> Result<StateId, StateError> {
        let lineage = uuid::Uuid::new_v4().to_string();
        self.create(command, timeout, lineage, &State::default(), false)
            .map(|(id, _)| id)
    }

    /// `oapkg init --force`: [`init`](Self::init) over a backup too. The
    /// backup is kept aside under a name of its own, never overwritten
    /// (`<path>.backup.<its lineage>`, or `.backup.refused-<time>` for one
    /// that fails a check), so a new lineage's first writes cannot replace
    /// it.
    pub fn init_force(&self, command: &str, timeout: Duration) -> Result<Initialized, StateError> {
        let lineage = uuid::Uuid::new_v4().to_string();
        let (id, backup_aside) = self.create(command, timeout, lineage, &State::default(), true)?;
        Ok(Initialized { id, backup_aside })
    }

    /// `oapkg state restore`: puts `<path>.backup` back in place of a
    /// missing or damaged state, under the lock, after checking it as a
    /// state file is checked (checksum included). The damaged file is kept
    /// aside (`<path>.refused.<time>`), never deleted; the backup stays.
    ///
    /// Refuses when the state loads (nothing to restore), when the backup
    /// is missing or fails a check, and when a journal beside the state was
    /// recorded against another version than the backup's (restoring would
    /// hide its purchases). The rules are [`recover::may_restore`].
    pub fn restore(&self, command: &str, timeout: Duration) -> Result<Restored, StateError> {
        // The lock without folding a journal: the state may be damaged, and
        // a journal beside it is checked against the backup below.
        let _lock = lock::acquire(&self.path, command, timeout)?;
        let current = found(self.read_file().map(|(disk, _)| disk));
        let backup_path = self.backup_path();
        let (backup, bytes) = match read_whole(&backup_path) {
            Ok(Some(bytes)) => (found(file::decode(&backup_path, &bytes).map(Some)), bytes),
            Ok(None) => (Found::Missing, Vec::new()),
            Err(error) => (Found::Refused(error), Vec::new()),
        };
        let (disk, replacing) = recover::may_restore(&self.path, &backup_path, current, backup)?;
        let journal_path = self.journal_path();
        let contents = journal::read(&journal_path)?;
        let journal = contents.is_some().then(|| journal_path.clone());
        assemble(&self.path, &journal_path, Some(disk.clone()), contents).map_err(|error| {
            StateError::JournalDoesNotFitBackup {
                journal: journal_path.clone(),
                backup: backup_path.clone(),
                source: Box::new(error),
            }
        })?;

        let mut tmp = files::new_version_builder()
            .prefix(&format!(".{}.", file_name(&self.path)))
            .suffix(".tmp")
            .tempfile_in(parent_dir(&self.path))
            .map_err(|source| {
                StateError::io("create the restored version of", &self.path, source)
            })?;
        tmp.write_all(&bytes)
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(|source| {
                StateError::io("write the restored version of", &self.path, source)
            })?;
        let damaged_aside = match replacing {
            Replacing::Nothing => None,
            Replacing::Damaged => {
                Some(keep_aside(&self.path, &format!("refused.{}", now_label()))?)
            }
        };
        let persisted = match replacing {
            Replacing::Nothing => tmp.persist_noclobber(&self.path),
            Replacing::Damaged => tmp.persist(&self.path),
        };
        persisted.map_err(|e| StateError::io("put the backup in place of", &self.path, e.error))?;
        sync_parent_dir(&self.path)?;
        Ok(Restored {
            lineage: disk.lineage,
            serial: disk.serial,
            packages: disk.packages.len(),
            backup: backup_path,
            damaged_aside,
            journal,
        })
    }

    /// `oapkg state migrate` to here: writes `state` as it is (lineage and
    /// serial kept) under the lock, where no state exists; refuses
    /// ([`StateError::AlreadyExists`]) otherwise, as [`init`](Self::init) does.
    pub fn create_copy(&self, state: &State) -> Result<StateId, StateError> {
        let lineage = state
            .lineage
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        self.create("oapkg state migrate", Duration::ZERO, lineage, state, false)
            .map(|(id, _)| id)
    }

    /// Writes `state` under `lineage` at the path, under the lock, creating
    /// its directory, where no state (nor a journal that folds into one) is,
    /// nor a backup unless `force` (which keeps it aside; its new name is
    /// returned).
    fn create(
        &self,
        command: &str,
        timeout: Duration,
        lineage: String,
        state: &State,
        force: bool,
    ) -> Result<(StateId, Option<PathBuf>), StateError> {
        create_parent_dir(&self.path)?;
        let lock = self.lock(command, timeout)?;
        let mut slot = lock.inner.slot()?;
        if let (Some(disk), _) = self.read_file()? {
            return Err(StateError::AlreadyExists {
                path: self.path.clone(),
                lineage: disk.lineage,
                serial: disk.serial,
                packages: disk.packages.len(),
            });
        }
        let backup_path = self.backup_path();
        let backup = found(
            StateStore::new(&backup_path)
                .read_file()
                .map(|(disk, _)| disk),
        );
        recover::may_init(&self.path, &backup_path, &backup, force)?;
        let backup_aside = match &backup {
            Found::Missing => None,
            Found::Loads(disk) => Some(disk.lineage.clone()),
            Found::Refused(_) => Some(format!("refused-{}", now_label())),
        }
        .map(|label| {
            let aside = keep_aside(&backup_path, &label)?;
            fs::remove_file(&backup_path)
                .map_err(|source| StateError::io("move aside the backup", &backup_path, source))?;
            sync_parent_dir(&self.path)?;
            Ok::<_, StateError>(aside)
        })
        .transpose()?;
        let (bytes, checksum) = file::encode(
            &self.path,
            &lineage,
            state.serial,
            &state.packages,
            &state.failed_attempts,
            &state.observations,
        )?;
        replace_with_backup(&self.path, false, |out| {
            write_bytes(&self.path, out, &bytes)
        })
        .map_err(|failure| *failure.error)?;
        slot.generation = Some(Generation {
            lineage: Some(lineage.clone()),
            serial: state.serial,
        });
        let id = StateId {
            lineage: Some(lineage),
            serial: state.serial,
            checksum: Some(checksum),
        };
        Ok((id, backup_aside))
    }

    /// Takes the exclusive writer lock, waiting up to `timeout` (zero: fail at
    /// once; `Duration::MAX`: wait as long as it takes) for another holder to
    /// finish; `command` labels the holder in the lock file and in the
    /// [`StateError::Locked`] another writer gets.
    ///
    /// If a previous holder died with purchases in the journal, they are
    /// folded into the file now (a write: serial + 1), so a state loaded from
    /// here on is complete. A state loaded *before* the lock may therefore be
    /// refused by [`write`](Self::write) as out of date: load after locking
    /// (or use [`lock_and_load`](Self::lock_and_load)).
    pub fn lock(&self, command: &str, timeout: Duration) -> Result<StateLock, StateError> {
        let lock = StateLock::new(lock::acquire(&self.path, command, timeout)?);
        self.fold_leftovers(&lock)?;
        Ok(lock)
    }

    /// [`lock`](Self::lock), then [`load`](Self::load): the order writers need.
    pub fn lock_and_load(
        &self,
        command: &str,
        timeout: Duration,
    ) -> Result<(StateLock, Loaded), StateError> {
        let lock = self.lock(command, timeout)?;
        let (loaded, loaded_file) = self.load_summed(true)?;
        // Under the lock nobody else replaces the file: the journal's
        // generation is the file just loaded, so `journal` need not read
        // and check the whole file again, nor `write` decode it again
        // while it still has the same bytes.
        let mut slot = lock.inner.slot()?;
        slot.generation.get_or_insert_with(|| Generation {
            lineage: loaded.state.lineage.clone(),
            serial: loaded.state.serial,
        });
        slot.loaded_file = loaded_file;
        drop(slot);
        Ok((lock, loaded))
    }

    /// Writes `state` as the next version of the file and folds the journal.
    ///
    /// Under the lock: checks that the file on disk is one `load` accepts and
    /// is the version `state` was loaded from (same lineage and serial; any
    /// state may be written where no file exists) — without decoding it
    /// again when it still has the bytes `lock_and_load` loaded (see
    /// [`LoadedFile`]) — replays the journal over
    /// `state`, assigns a lineage (uuid v4) if it has none, increments the
    /// serial, writes atomically keeping `<path>.backup`, and then removes
    /// the journal. On success `state` is updated to what was written; on
    /// error it is unchanged.
    ///
    /// Refuses ([`StateError::Moved`]) when the lock file or the journal at
    /// the path are no longer the ones this lock opened (the state directory
    /// was renamed or replaced during the run): folding then would write a
    /// state without the journal's purchases, and the next apply would buy
    /// them again. The error names where that journal is now.
    pub fn write(&self, lock: &StateLock, state: &mut State) -> Result<StateId, StateError> {
        self.check_lock(lock)?;
        let mut slot = lock.inner.slot()?;
        self.check_still_in_place(lock, &slot)?;
        self.write_in(&mut slot, state)
    }

    /// See [`write`](Self::write): the lock and the open journal must still
    /// be the files at their paths.
    fn check_still_in_place(&self, lock: &StateLock, slot: &JournalSlot) -> Result<(), StateError> {
        let journal_path = self.journal_path();
        let journal_moved = slot
            .open_file()
            .is_some_and(|open| !lock::still_at_path(open, &journal_path));
        if !journal_moved && lock.inner.still_at_path() {
            return Ok(());
        }
        let journal_now = slot.open_file().and_then(current_path);
        let copied = slot
            .open_file()
            .and_then(|open| self.leave_journal_copy(open));
        Err(StateError::Moved {
            path: self.path.clone(),
            lock: lock.inner.lock_path().to_owned(),
            journal: journal_now.unwrap_or(journal_path),
            copied,
        })
    }

    /// After the state directory moved during a run: leaves a copy of the
    /// run's journal at the journal path, so that the next command that
    /// takes the lock there folds the run's purchases into the state people
    /// use (or, if that state is another one, refuses the journal loudly)
    /// instead of buying them again. Only where nothing is in the way: the
    /// directory exists, no journal is there, and nobody holds its lock.
    /// Returns the copy's path.
    fn leave_journal_copy(&self, open: &File) -> Option<PathBuf> {
        let journal_path = self.journal_path();
        let dir = parent_dir(&self.path);
        let absent = |p: &Path| matches!(fs::symlink_metadata(p), Err(e) if e.kind() == io::ErrorKind::NotFound);
        if !dir.is_dir() || !absent(&journal_path) {
            return None;
        }
        let _lock = lock::acquire(
            &self.path,
            "oapkg (leaving a moved journal)",
            Duration::ZERO,
        )
        .ok()?;
        let len = usize::try_from(open.metadata().ok()?.len()).ok()?;
        let mut bytes = vec![0; len];
        read_exact_at(open, &mut bytes)?;
        let mut tmp = crate::files::new_version_builder()
            .prefix(".oapkg-journal.")
            .tempfile_in(dir)
            .ok()?;
        tmp.write_all(&bytes).ok()?;
        tmp.as_file().sync_all().ok()?;
        tmp.persist_noclobber(&journal_path).ok()?;
        sync_parent_dir(&self.path).ok()?;
        Some(journal_path)
    }

    /// `oapkg state unlock`: removes the lock file if no live process holds
    /// the lock; if one does, fails with [`StateError::Locked`] naming it.
    pub fn unlock(&self) -> Result<UnlockOutcome, StateError> {
        lock::unlock(&self.path)
    }

    /// The journal `apply` records purchases in, under `lock`.
    pub fn journal(&self, lock: &StateLock) -> Result<Journal, StateError> {
        self.check_lock(lock)?;
        let mut slot = lock.inner.slot()?;
        if slot.broken {
            return Err(StateError::JournalBroken {
                path: self.journal_path(),
            });
        }
        if slot.generation.is_none() {
            let (disk, _) = self.read_file()?;
            slot.generation = Some(generation_of(disk.as_ref()));
        }
        Ok(Journal {
            lock: lock.inner.clone(),
        })
    }

    fn check_lock(&self, lock: &StateLock) -> Result<(), StateError> {
        if lock.state_path() == self.path {
            Ok(())
        } else {
            Err(StateError::WrongLock {
                path: self.path.clone(),
                locked: lock.state_path().to_owned(),
            })
        }
    }

    /// Folds a journal left by a holder that died before writing.
    fn fold_leftovers(&self, lock: &StateLock) -> Result<(), StateError> {
        let journal_path = self.journal_path();
        let Some(contents) = journal::read(&journal_path)? else {
            return Ok(());
        };
        let mut slot = lock.inner.slot()?;
        let (disk, _) = self.read_file()?;
        let generation = generation_of(disk.as_ref());
        let empty = Default::default();
        let packages = disk.as_ref().map_or(&empty, |d| &d.packages);
        let current = journal::current_lines(
            &journal_path,
            &self.path,
            &generation,
            packages,
            contents.lines,
        )?;
        if current.is_empty() {
            // Only lines already in the file, or a torn line that was never
            // acted on: nothing to fold.
            remove_journal(&journal_path, &mut slot);
            return Ok(());
        }
        tracing::info!(
            state = %self.path.display(),
            entries = current.len(),
            "folding the journal left by an interrupted run into the state file"
        );
        let mut state = match disk {
            Some(d) => State {
                lineage: Some(d.lineage),
                serial: d.serial,
                packages: d.packages,
                failed_attempts: d.failed_attempts,
                observations: d.observations,
            },
            None => State::default(),
        };
        self.write_in(&mut slot, &mut state).map(drop)
    }

    /// `write`, with the journal's mutex already held.
    fn write_in(&self, slot: &mut JournalSlot, state: &mut State) -> Result<StateId, StateError> {
        let journal_path = self.journal_path();
        let ToFold {
            had_file,
            had_journal,
            current,
        } = self.to_fold(slot, state)?;
        // The state is advanced in place (no copy of its records) and put
        // back as it was given if anything fails.
        let undo = Undo::of(state, &current);
        let written = advance(&self.path, &journal_path, state, &current).and_then(|lineage| {
            let next = &*state;
            let mut checksum = String::new();
            let replaced = replace_with_backup(&self.path, had_file, |out| {
                checksum = file::encode_to(
                    &self.path,
                    out,
                    &lineage,
                    next.serial,
                    &next.packages,
                    &next.failed_attempts,
                    &next.observations,
                )?;
                Ok(())
            });
            if let Err(failure) = replaced {
                if failure.uncertain {
                    // The new file may or may not be in place: lines appended
                    // now could be tagged with the wrong generation. Stop
                    // recording.
                    slot.broken = true;
                }
                return Err(*failure.error);
            }
            Ok((lineage, checksum))
        });
        let (lineage, checksum) = match written {
            Ok(written) => written,
            Err(error) => {
                undo.restore(state);
                return Err(error);
            }
        };
        slot.generation = Some(Generation {
            lineage: Some(lineage.clone()),
            serial: state.serial,
        });
        // Only now, with the folded entries durable in the state file, may
        // the journal go. If removing it fails, its lines name the previous
        // serial and are recognised as folded.
        if had_journal {
            remove_journal(&journal_path, slot);
        }
        Ok(StateId {
            lineage: Some(lineage),
            serial: state.serial,
            checksum: Some(checksum),
        })
    }

    /// What `write` folds: the journal's lines for the file at the path,
    /// once that file is known to be one `load` accepts and the version
    /// `state` was loaded from (any state may be written where no file
    /// exists).
    ///
    /// Never replace a file `load` would refuse, nor one newer than the
    /// state we were given: the file is re-read under the lock, and decoded
    /// again unless it still has exactly the bytes loaded under this lock
    /// ([`LoadedFile`]): decoding is a function of the bytes alone, so the
    /// same bytes would decode to the same accepted version again.
    fn to_fold(&self, slot: &mut JournalSlot, state: &State) -> Result<ToFold, StateError> {
        let journal_path = self.journal_path();
        if let Some(known) = slot.loaded_file.take()
            && self.still_holds(&known)
        {
            check_version(&self.path, state, &known.lineage, known.serial)?;
            let contents = journal::read(&journal_path)?;
            let generation = Generation {
                lineage: Some(known.lineage),
                serial: known.serial,
            };
            let lines = contents.map(|c| c.lines);
            // Lines of an earlier version are checked against the file's
            // records (were they folded?): that needs the decoded file.
            if lines
                .iter()
                .flatten()
                .all(|line| line.generation == generation)
            {
                return Ok(ToFold {
                    had_file: true,
                    had_journal: lines.is_some(),
                    current: lines.unwrap_or_default(),
                });
            }
        }
        let (disk, _) = self.read_file()?;
        if let Some(d) = &disk {
            check_version(&self.path, state, &d.lineage, d.serial)?;
        }
        let contents = journal::read(&journal_path)?;
        let had_journal = contents.is_some();
        let current = match contents {
            Some(contents) => {
                let empty = Default::default();
                journal::current_lines(
                    &journal_path,
                    &self.path,
                    &generation_of(disk.as_ref()),
                    disk.as_ref().map_or(&empty, |d| &d.packages),
                    contents.lines,
                )?
            }
            None => Vec::new(),
        };
        Ok(ToFold {
            had_file: disk.is_some(),
            had_journal,
            current,
        })
    }

    /// Whether the file at the path is still `known`, byte for byte: the
    /// same file (device and inode), the same length, the same SHA-256 of
    /// its bytes. Anything unexpected (a link, no file, a read error) is
    /// `false`: the full read that follows reports it.
    fn still_holds(&self, known: &LoadedFile) -> bool {
        if self.refuse_symlink().is_err() {
            return false;
        }
        let Ok((file, meta)) = files::open_regular(&self.path) else {
            return false;
        };
        if file_identity(&meta) != known.identity || meta.len() != known.len {
            return false;
        }
        let mut hasher = Sha256Writer::default();
        let mut reader = io::BufReader::with_capacity(1 << 16, file);
        match io::copy(&mut reader, &mut hasher) {
            Ok(len) => len == known.len && hasher.finish() == known.sha256,
            Err(_) => false,
        }
    }

    /// Reads and checks the state file; `None` when it does not exist. Also
    /// returns which file it was, to notice a replacement.
    fn read_file(&self) -> Result<(Option<DiskState>, Option<FileIdentity>), StateError> {
        let (disk, identity, _) = self.read_file_summed(false)?;
        Ok((disk, identity))
    }

    /// [`read_file`](Self::read_file), and, if `sum`, the length and SHA-256
    /// of the bytes read.
    fn read_file_summed(&self, sum: bool) -> Result<FileRead, StateError> {
        // Before opening, which would follow a link: a dangling one would
        // read as "no state yet" and the first write would replace it.
        self.refuse_symlink()?;
        let (mut file, meta) = match files::open_regular(&self.path) {
            Ok(opened) => opened,
            Err(e) if e.is_not_found() => return Ok((None, None, None)),
            Err(OpenError::NotRegular(kind)) => {
                return Err(StateError::NotAFile {
                    path: self.path.clone(),
                    kind,
                });
            }
            Err(OpenError::Io(source)) => {
                return Err(StateError::io("read the state file", &self.path, source));
            }
        };
        let identity = Some(file_identity(&meta));
        if let Some(streamed) = file::stream(&self.path, &mut file, sum) {
            let (disk, summed) = streamed?;
            return Ok((Some(disk), identity, summed));
        }
        // Not in the canonical encoding (or a read failed): read it whole.
        let io = |source| StateError::io("read the state file", &self.path, source);
        file.seek(io::SeekFrom::Start(0)).map_err(io)?;
        let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        file.read_to_end(&mut bytes).map_err(io)?;
        let summed = sum.then(|| (bytes.len() as u64, sha256_tagged(&bytes)));
        let disk = file::decode_whole(&self.path, &bytes)?;
        Ok((Some(disk), identity, summed))
    }

    /// Refuses a state path that is a symbolic link (see [`StateError::Symlink`]).
    fn refuse_symlink(&self) -> Result<(), StateError> {
        match fs::symlink_metadata(&self.path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = fs::read_link(&self.path)
                    .map(|t| parent_dir(&self.path).join(t))
                    .map_err(|source| StateError::io("read the link", &self.path, source))?;
                // The path to pass instead: absolute, when there is one.
                let (target, exists) = match fs::canonicalize(&target) {
                    Ok(real) => (real, true),
                    Err(_) => (target, false),
                };
                Err(StateError::Symlink {
                    path: self.path.clone(),
                    target,
                    exists,
                })
            }
            // Missing, or not a link: opening it tells which.
            _ => Ok(()),
        }
    }

    fn identity_now(&self) -> Result<Option<FileIdentity>, StateError> {
        match fs::metadata(&self.path) {
            Ok(meta) => Ok(Some(file_identity(&meta))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StateError::io("read the state file", &self.path, source)),
        }
    }

    /// The state as loaded from a consistent pair of file and journal.
    pub(crate) fn assemble(
        &self,
        disk: Option<DiskState>,
        contents: Option<journal::Contents>,
    ) -> Result<Loaded, StateError> {
        assemble(&self.path, &self.journal_path(), disk, contents)
    }
}

/// The state as loaded from a consistent pair of state and journal: the
/// journal's current lines replayed over the state. `state_path` and
/// `journal_path` name them in errors (an `s3://` state names its objects).
pub(crate) fn assemble(
    state_path: &Path,
    journal_path: &Path,
    disk: Option<DiskState>,
    contents: Option<journal::Contents>,
) -> Result<Loaded, StateError> {
    let generation = generation_of(disk.as_ref());
    let (mut packages, mut failed_attempts, observations, file_checksum) = match disk {
        Some(d) => (
            d.packages,
            d.failed_attempts,
            d.observations,
            Some(d.checksum),
        ),
        None => (
            Default::default(),
            Default::default(),
            Default::default(),
            None,
        ),
    };
    let current = match contents {
        Some(c) => {
            journal::current_lines(journal_path, state_path, &generation, &packages, c.lines)?
        }
        None => Vec::new(),
    };
    let checksum = if current.is_empty() {
        file_checksum
    } else {
        journal::replay(journal_path, &mut packages, &mut failed_attempts, &current)?;
        // The plan's staleness check compares ids: content changed by the
        // journal must change the id even though the file did not.
        Some(file::checksum(
            state_path,
            generation.lineage.as_deref(),
            generation.serial,
            &packages,
            &failed_attempts,
            &observations,
        )?)
    };
    Ok(Loaded {
        id: StateId {
            lineage: generation.lineage.clone(),
            serial: generation.serial,
            checksum,
        },
        state: State {
            lineage: generation.lineage,
            serial: generation.serial,
            packages,
            failed_attempts,
            observations,
        },
    })
}

/// Refuses to write `state` over a stored version it was not loaded from
/// (another lineage, or another serial).
pub(crate) fn check_version(
    path: &Path,
    state: &State,
    lineage: &str,
    serial: u64,
) -> Result<(), StateError> {
    if state.lineage.as_deref() != Some(lineage) || state.serial != serial {
        return Err(StateError::Conflict {
            path: path.to_owned(),
            loaded_lineage: state.lineage.clone(),
            loaded_serial: state.serial,
            disk_lineage: Some(lineage.to_owned()),
            disk_serial: serial,
        });
    }
    Ok(())
}

/// The next version of a state, ready to be written.
pub(crate) struct Folded {
    pub lineage: String,
    pub serial: u64,
    pub packages: std::collections::BTreeMap<crate::spec::Key, super::Record>,
    pub failed_attempts: super::FailedAttempts,
    pub observations: super::Observations,
    /// The state file's bytes, and their checksum.
    pub bytes: Vec<u8>,
    pub checksum: String,
}

/// `state` with the journal's `current` lines replayed over it, checked,
/// given a lineage (uuid v4) if it has none and the next serial: what a
/// write puts in place of the version `state` was loaded from.
pub(crate) fn fold(
    state_path: &Path,
    journal_path: &Path,
    state: &State,
    current: &[journal::Line],
) -> Result<Folded, StateError> {
    let mut next = state.clone();
    let lineage = advance(state_path, journal_path, &mut next, current)?;
    let (bytes, checksum) = file::encode(
        state_path,
        &lineage,
        next.serial,
        &next.packages,
        &next.failed_attempts,
        &next.observations,
    )?;
    Ok(Folded {
        lineage,
        serial: next.serial,
        packages: next.packages,
        failed_attempts: next.failed_attempts,
        observations: next.observations,
        bytes,
        checksum,
    })
}

/// [`fold`]'s change of `state` in place, without encoding it: on success
/// `state` is the next version (its lineage is returned); on error it may
/// be half-changed (see [`Undo`]).
fn advance(
    state_path: &Path,
    journal_path: &Path,
    state: &mut State,
    current: &[journal::Line],
) -> Result<String, StateError> {
    if !current.is_empty() {
        journal::replay(
            journal_path,
            &mut state.packages,
            &mut state.failed_attempts,
            current,
        )?;
    }
    file::validate_records(state_path, &state.packages)?;
    let serial = state
        .serial
        .checked_add(1)
        .ok_or_else(|| StateError::SerialExhausted {
            path: state_path.to_owned(),
            serial: state.serial,
        })?;
    let lineage = state
        .lineage
        .get_or_insert_with(|| uuid::Uuid::new_v4().to_string())
        .clone();
    state.serial = serial;
    Ok(lineage)
}

/// What [`advance`] may change in a state, kept to put it back: its
/// lineage and serial, and the records and failed attempts of the keys the
/// replayed lines name (replay touches no other key).
struct Undo {
    lineage: Option<String>,
    serial: u64,
    records: Vec<(Key, Option<Record>, Option<FailedAttempt>)>,
}

impl Undo {
    fn of(state: &State, lines: &[journal::Line]) -> Undo {
        let keys: BTreeSet<&Key> = lines.iter().map(|line| &line.key).collect();
        Undo {
            lineage: state.lineage.clone(),
            serial: state.serial,
            records: keys
                .into_iter()
                .map(|key| {
                    (
                        key.clone(),
                        state.packages.get(key).cloned(),
                        state.failed_attempts.get(key).cloned(),
                    )
                })
                .collect(),
        }
    }

    fn restore(self, state: &mut State) {
        state.lineage = self.lineage;
        state.serial = self.serial;
        for (key, record, failed) in self.records {
            match failed {
                Some(failed) => state.failed_attempts.insert(key.clone(), failed),
                None => state.failed_attempts.remove(&key),
            };
            match record {
                Some(record) => state.packages.insert(key, record),
                None => state.packages.remove(&key),
            };
        }
    }
}

/// What a write folds (see `StateStore::to_fold`).
struct ToFold {
    /// A state file was at the path (it becomes the backup).
    had_file: bool,
    /// A journal was at the path (it is removed once the write is durable).
    had_journal: bool,
    /// The journal's lines to replay over the state.
    current: Vec<journal::Line>,
}

/// A read state file: what it decodes to, which file it was, and (when
/// asked) its length and SHA-256.
type FileRead = (
    Option<DiskState>,
    Option<FileIdentity>,
    Option<file::RawSum>,
);

pub(crate) fn generation_of(disk: Option<&DiskState>) -> Generation {
    disk.map_or_else(Generation::default, |d| Generation {
        lineage: Some(d.lineage.clone()),
        serial: d.serial,
    })
}

/// A read of a state file (or its backup) as [`recover`]'s rules take it.
fn found(read: Result<Option<DiskState>, StateError>) -> Found {
    match read {
        Ok(Some(disk)) => Found::Loads(disk),
        Ok(None) => Found::Missing,
        Err(error) => Found::Refused(error),
    }
}

/// The bytes of the regular file at `path`; `None` when nothing is there.
/// A link or anything but a regular file is refused, as for the state.
fn read_whole(path: &Path) -> Result<Option<Vec<u8>>, StateError> {
    let as_state = StateStore::new(path);
    as_state.refuse_symlink()?;
    let (mut file, meta) = match files::open_regular(path) {
        Ok(opened) => opened,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(OpenError::NotRegular(kind)) => {
            return Err(StateError::NotAFile {
                path: path.to_owned(),
                kind,
            });
        }
        Err(OpenError::Io(source)) => return Err(StateError::io("read", path, source)),
    };
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.read_to_end(&mut bytes)
        .map_err(|source| StateError::io("read", path, source))?;
    Ok(Some(bytes))
}

/// Links the file at `path` to `<path>.<label>` (or `<path>.<label>.N`, the
/// first name free: nothing is ever overwritten) and returns that name.
/// The caller removes or replaces `path` afterwards; the kept file stays.
fn keep_aside(path: &Path, label: &str) -> Result<PathBuf, StateError> {
    for n in 0..1000 {
        let suffix = match n {
            0 => format!(".{label}"),
            n => format!(".{label}.{n}"),
        };
        let aside = sibling(path, &suffix);
        match link_or_copy(path, &aside) {
            Ok(()) => {
                sync_parent_dir(path)?;
                return Ok(aside);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(source) => return Err(StateError::io("keep aside", path, source)),
        }
    }
    Err(StateError::io(
        "keep aside",
        path,
        io::Error::other("a thousand names beside it are taken"),
    ))
}

/// A new name for the file at `from` (a hard link, or a durable copy where
/// links are not supported); fails with `AlreadyExists` if `to` exists.
fn link_or_copy(from: &Path, to: &Path) -> io::Result<()> {
    match fs::hard_link(from, to) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
            let mut source = File::open(from)?;
            let mut target = crate::files::owner_only(&mut OpenOptions::new())
                .write(true)
                .create_new(true)
                .open(to)?;
            let copied = io::copy(&mut source, &mut target).and_then(|_| target.sync_all());
            if copied.is_err() {
                let _ = fs::remove_file(to);
            }
            copied
        }
        other => other,
    }
}

/// Now, as a file-name part: `20261126T101500Z`.
fn now_label() -> String {
    jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string()
}

/// The last part of `path`, for a temporary file's prefix beside it.
fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Removes the journal after its lines were folded (or found already folded).
fn remove_journal(path: &Path, slot: &mut JournalSlot) {
    slot.close();
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        // Harmless: its lines are recognised as folded on the next load.
        Err(e) => {
            tracing::warn!(journal = %path.display(), error = %e, "could not remove the folded journal")
        }
    }
}

/// Warns (on every write) when the state file at `path` or its directory
/// is writable by group or others: whoever can write there can change
/// what oapkg believes was bought, or replace the file, and the next apply
/// would act on it.
fn warn_if_writable_by_others(path: &Path) {
    let dir = parent_dir(path);
    for (what, place) in [("state file", path), ("state directory", dir)] {
        let Some(mode) = fs::metadata(place)
            .ok()
            .and_then(|meta| crate::files::writable_by_others(&meta))
        else {
            continue;
        };
        tracing::warn!(
            "the {what} {} is writable by group or others (mode {mode:04o}): anyone who can \
             write it can change what oapkg records as bought; fix it with `chmod go-w {}`",
            place.display(),
            place.display()
        );
    }
}

/// Reads an open file from its start, whatever its offset.
#[cfg(unix)]
fn read_exact_at(file: &File, bytes: &mut [u8]) -> Option<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, bytes, 0).ok()
}

#[cfg(not(unix))]
fn read_exact_at(_file: &File, _bytes: &mut [u8]) -> Option<()> {
    None
}

/// Where an open file is now (it may have been renamed since it was
/// opened), as the kernel knows it; `None` where that cannot be asked.
#[cfg(target_os = "linux")]
fn current_path(file: &File) -> Option<PathBuf> {
    use std::os::fd::AsRawFd;
    fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()
}

#[cfg(not(target_os = "linux"))]
fn current_path(_file: &File) -> Option<PathBuf> {
    None
}

/// Writes `bytes` as the new version of the state file at `path`.
fn write_bytes(path: &Path, out: &mut impl Write, bytes: &[u8]) -> Result<(), StateError> {
    out.write_all(bytes)
        .map_err(|source| StateError::io("write the new version of", path, source))
}

/// A failed replacement, and whether the new file may already be in place.
struct ReplaceFailure {
    /// Boxed: a `Result` carrying it stays small.
    error: Box<StateError>,
    uncertain: bool,
}

impl From<StateError> for ReplaceFailure {
    fn from(error: StateError) -> Self {
        ReplaceFailure {
            error: Box::new(error),
            uncertain: false,
        }
    }
}

/// Replaces the file at `path` with `bytes`, keeping the current file (if
/// `had_previous`) as `<path>.backup`. See the module docs for the order.
fn replace_with_backup(
    path: &Path,
    had_previous: bool,
    contents: impl FnOnce(&mut io::BufWriter<&File>) -> Result<(), StateError>,
) -> Result<(), ReplaceFailure> {
    let dir = parent_dir(path);
    create_parent_dir(path)?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = format!(".{file_name}.");
    // A new state file is its owner's only, as a plan file is; an existing
    // file's mode is copied below.
    let mut builder = crate::files::new_version_builder();
    builder.prefix(&prefix).suffix(".tmp");
    // Errors name the state file; their cause, the temporary one beside it.
    let tmp = builder
        .tempfile_in(dir)
        .map_err(|source| StateError::io("create the new version of", path, source))?;
    // Written as it is encoded, through a buffer.
    let mut out = io::BufWriter::with_capacity(1 << 16, tmp.as_file());
    contents(&mut out).map_err(|error| match error {
        StateError::Encode { source, .. } if source.is_io() => {
            StateError::io("write the new version of", path, io::Error::from(source))
        }
        other => other,
    })?;
    out.flush()
        .map_err(|source| StateError::io("write the new version of", path, source))?;
    drop(out);
    if had_previous && let Ok(meta) = fs::metadata(path) {
        tmp.as_file()
            .set_permissions(meta.permissions())
            .map_err(|source| {
                StateError::io("copy the permissions to the new version of", path, source)
            })?;
    }
    tmp.as_file()
        .sync_all()
        .map_err(|source| StateError::io("sync the new version of", path, source))?;

    if had_previous {
        keep_backup(path)?;
    }
    // The temporary file is deleted if this fails (NamedTempFile's drop).
    tmp.persist(path).map_err(|e| ReplaceFailure {
        error: Box::new(StateError::io("replace the state file", path, e.error)),
        // rename(2) either happened or did not; on error it did not.
        uncertain: false,
    })?;
    sync_parent_dir(path).map_err(|error| ReplaceFailure {
        error: Box::new(error),
        uncertain: true,
    })?;
    warn_if_writable_by_others(path);
    Ok(())
}

/// Makes `<path>.backup` the current file, with no moment where neither the
/// old nor the new backup exists: link the current file to a temporary name
/// and rename that over the backup.
fn keep_backup(path: &Path) -> Result<(), StateError> {
    let backup = sibling(path, ".backup");
    let staging = sibling(path, ".backup.tmp");
    match fs::remove_file(&staging) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => return Err(StateError::io("remove the leftover", &staging, source)),
    }
    if fs::hard_link(path, &staging).is_err() {
        // A file system without hard links: copy instead (and make the copy
        // durable before it becomes the backup).
        copy_durably(path, &staging)?;
    }
    if let Err(source) = fs::rename(&staging, &backup) {
        let _ = fs::remove_file(&staging);
        return Err(StateError::io("update the backup", &backup, source));
    }
    // Durable before the state file is replaced, so after a crash the backup
    // is never older than the version before the current one.
    sync_parent_dir(path)
}

fn copy_durably(from: &Path, to: &Path) -> Result<(), StateError> {
    let result = (|| {
        let mut source = File::open(from)?;
        let mut target = crate::files::owner_only(&mut OpenOptions::new())
            .write(true)
            .create_new(true)
            .open(to)?;
        io::copy(&mut source, &mut target)?;
        target.sync_all()
    })();
    result.map_err(|source| {
        let _ = fs::remove_file(to);
        StateError::io("copy the state file to", to, source)
    })
}

mod recover;

#[cfg(test)]
mod tests;
