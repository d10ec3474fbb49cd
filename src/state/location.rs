//! Where the state lives — a local file or an `s3://` location — behind one
//! handle: [`Store`] for what needs no lock, [`WriterLock`] for a held lock
//! or lease (it journals, writes, and answers "may I still send?"), and
//! [`JournalWriter`] for the journal `apply` records purchases in.
//!
//! Each kind implements the two traits below once; commands, `apply` and
//! `watch` never ask which kind they hold (the few messages that differ
//! take their words from [`Words`]). Both kinds share the pure parts (the
//! state file format and checksum, the journal's lines, replay and fold).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::journal::{Journal, JournalEntry, StateLock};
use super::lock::{Fence, LockHolder, LockStatus, UnlockOutcome};
use super::s3::{S3Journal, S3Lease, S3Location, S3Store};
use super::store::{Initialized, Loaded, Restored, StateStore};
use super::{BackupSummary, InFlight, State, StateError, StateId};

/// What one kind of store does, for [`Store`].
trait Backend: Send + Sync + std::fmt::Debug {
    fn path(&self) -> &Path;
    fn journal_path(&self) -> PathBuf;
    fn words(&self) -> Words;
    fn load(&self) -> Result<Loaded, StateError>;
    fn in_flight(&self) -> Result<Option<InFlight>, StateError>;
    fn init(&self, command: &str, timeout: Duration) -> Result<StateId, StateError>;
    fn init_force(&self, command: &str, timeout: Duration) -> Result<Initialized, StateError>;
    fn restore(&self, command: &str, timeout: Duration) -> Result<Restored, StateError>;
    /// The lock (or lease) and the state as of it; `buying`: the run will
    /// send purchase requests, so the store is checked first where it can
    /// fail to exclude (S3's conditional writes).
    fn lock(
        &self,
        command: &str,
        timeout: Duration,
        buying: bool,
    ) -> Result<(WriterLock, Loaded), StateError>;
    fn unlock(&self) -> Result<UnlockOutcome, StateError>;
    fn create_copy(&self, state: &State) -> Result<StateId, StateError>;
    fn lock_status(&self) -> Result<LockStatus, StateError>;
    fn backup(&self) -> Option<Result<Option<BackupSummary>, StateError>>;
    fn check_conditional_writes(&self) -> Option<Result<(), StateError>>;
}

/// A held lock or lease, for [`WriterLock`].
trait Held: Send + Sync + std::fmt::Debug {
    fn holder(&self) -> LockHolder;
    fn journal(&self) -> Result<JournalWriter, StateError>;
    fn write(&self, state: &mut State) -> Result<StateId, StateError>;
}

/// An open journal, for [`JournalWriter`].
trait Sink: Send + std::fmt::Debug {
    fn path(&self) -> PathBuf;
    fn record_batch(&mut self, entries: &[JournalEntry]) -> Result<(), StateError>;
    fn fence(&self) -> Arc<dyn Fence>;
}

/// How messages name a store's parts, where the kinds differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Words {
    /// `lock` or `lease`.
    pub lock: &'static str,
    /// `state file` or `state`.
    pub state: &'static str,
    /// Where a run's purchases wait for the fold: `journal` or `head object`.
    pub journal: &'static str,
    /// What to check when recording failed.
    pub fix: &'static str,
}

/// The state named by `--state` (or `OAPKG_STATE`).
#[derive(Clone, Debug)]
pub struct Store(Arc<dyn Backend>);

impl PartialEq for Store {
    fn eq(&self, other: &Store) -> bool {
        self.path() == other.path()
    }
}

impl Eq for Store {}

impl Store {
    /// The store `--state` names: `s3://BUCKET/PREFIX` or a file path. A
    /// malformed `s3://` location is refused. An S3 store runs its
    /// requests on `runtime`, the process's one runtime.
    pub fn open(state: &Path, runtime: &tokio::runtime::Handle) -> Result<Store, StateError> {
        match state.to_str().and_then(S3Location::parse) {
            Some(location) => Ok(Store(Arc::new(S3Store::new(location?, runtime.clone())))),
            None => Ok(Store::from(StateStore::new(state))),
        }
    }

    /// The file path, or `s3://BUCKET/PREFIX`: how messages name the state.
    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// Where the journal of a run is: the journal file, or the head object.
    pub fn journal_path(&self) -> PathBuf {
        self.0.journal_path()
    }

    /// How messages name this store's parts.
    pub fn words(&self) -> Words {
        self.0.words()
    }

    /// See [`StateStore::load`]: needs no lock.
    pub fn load(&self) -> Result<Loaded, StateError> {
        self.0.load()
    }

    /// The purchase requests a live holder of the lock (a live lease, on
    /// S3) has in flight now; `None` when there are none. Read-only, takes
    /// no lock (see [`super::in_flight`]).
    pub fn in_flight(&self) -> Result<Option<InFlight>, StateError> {
        self.0.in_flight()
    }

    /// See [`StateStore::init`]; an S3 store is first checked to refuse
    /// conflicting conditional writes.
    pub fn init(&self, command: &str, timeout: Duration) -> Result<StateId, StateError> {
        self.0.init(command, timeout)
    }

    /// See [`StateStore::init_force`]. An S3 state keeps no backup object,
    /// so there is nothing to keep aside: the same as [`init`](Self::init).
    pub fn init_force(&self, command: &str, timeout: Duration) -> Result<Initialized, StateError> {
        self.0.init_force(command, timeout)
    }

    /// See [`StateStore::restore`]; not on S3 yet
    /// ([`StateError::RestoreUnsupported`]).
    pub fn restore(&self, command: &str, timeout: Duration) -> Result<Restored, StateError> {
        self.0.restore(command, timeout)
    }

    /// See [`StateStore::lock_and_load`]: the lock (a lease, on S3) and the
    /// state as of it.
    pub fn lock_and_load(
        &self,
        command: &str,
        timeout: Duration,
    ) -> Result<(WriterLock, Loaded), StateError> {
        self.0.lock(command, timeout, false)
    }

    /// [`lock_and_load`](Self::lock_and_load) for a run that will send
    /// purchase requests (`apply`, `watch --apply`): an S3 store is first
    /// checked to refuse conflicting conditional writes — once per
    /// process, before the lease is taken — and refused if it does not
    /// (nothing is written or bought). A local file needs no check.
    pub fn lock_to_buy(
        &self,
        command: &str,
        timeout: Duration,
    ) -> Result<(WriterLock, Loaded), StateError> {
        self.0.lock(command, timeout, true)
    }

    /// The journal `apply` records purchases in, under `lock`.
    pub fn journal(&self, lock: &WriterLock) -> Result<JournalWriter, StateError> {
        lock.0.journal()
    }

    /// Folds the journal into `state` and writes it, under `lock` (see
    /// [`StateStore::write`]).
    pub fn write(&self, lock: &WriterLock, state: &mut State) -> Result<StateId, StateError> {
        lock.0.write(state)
    }

    /// See [`StateStore::unlock`]; on S3 the lease is cleared whoever
    /// holds it (a live holder's next write is then refused).
    pub fn unlock(&self) -> Result<UnlockOutcome, StateError> {
        self.0.unlock()
    }

    /// `oapkg state migrate`: writes `state` here as it is (lineage and
    /// serial kept), refusing if a state exists.
    pub fn create_copy(&self, state: &State) -> Result<StateId, StateError> {
        self.0.create_copy(state)
    }

    /// Who has the lock (the lease, on S3) now, for `oapkg doctor`:
    /// read-only, the lock is never taken.
    pub fn lock_status(&self) -> Result<LockStatus, StateError> {
        self.0.lock_status()
    }

    /// The backup beside a local state, checked (`Ok(None)`: none there);
    /// `None` for a store that keeps none (S3: the bucket's versioning is
    /// the backup). For `oapkg doctor`; takes no lock.
    pub fn backup(&self) -> Option<Result<Option<BackupSummary>, StateError>> {
        self.0.backup()
    }

    /// On S3, the check every buying process makes first: the store
    /// refuses a conflicting conditional write (it writes and removes probe
    /// objects beside the state, never the state). `None` for a local
    /// file, which needs none.
    pub fn check_conditional_writes(&self) -> Option<Result<(), StateError>> {
        self.0.check_conditional_writes()
    }
}

/// A `--state` value (and `state migrate --to`) as given: a local path, or
/// `s3://BUCKET/PREFIX`. Anything that looks like a mistyped URL is
/// refused rather than read as a local path, where it would plan against
/// no state and buy everything again: another case (`S3://`), a slash
/// short (`s3:/…`, `s3:bucket`), or another scheme (`http(s)://…`, any
/// `word://`). The message says what was meant. Pure; clap calls it.
pub fn state_arg(text: &str) -> Result<PathBuf, String> {
    const FORMS: &str = "the state is a local file path or s3://BUCKET/PREFIX";
    if text.starts_with("s3://") {
        return Ok(PathBuf::from(text));
    }
    let lower = text.to_ascii_lowercase();
    if let Some(rest) = lower.strip_prefix("s3:") {
        let rest = rest.trim_start_matches('/');
        let start = text.len() - rest.len();
        return Err(format!(
            "looks like a mistyped S3 URL (did you mean s3://{}?): {FORMS}",
            &text[start..]
        ));
    }
    if let Some((scheme, _)) = text.split_once("://") {
        let is_scheme = !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if is_scheme {
            return Err(format!(
                "is a {scheme}:// URL, which oapkg cannot keep a state at: {FORMS}"
            ));
        }
    }
    Ok(PathBuf::from(text))
}

impl From<StateStore> for Store {
    fn from(store: StateStore) -> Store {
        Store(Arc::new(store))
    }
}

impl From<&StateStore> for Store {
    fn from(store: &StateStore) -> Store {
        Store::from(store.clone())
    }
}

impl From<&Store> for Store {
    fn from(store: &Store) -> Store {
        store.clone()
    }
}

/// The writer lock of a [`Store`] (a lease, on S3): held until dropped.
#[derive(Debug)]
pub struct WriterLock(Box<dyn Held>);

impl WriterLock {
    /// Who holds it (this process).
    pub fn holder(&self) -> LockHolder {
        self.0.holder()
    }
}

/// Where `apply` records purchases: the journal file or the head object.
#[derive(Debug)]
pub struct JournalWriter(Box<dyn Sink>);

impl JournalWriter {
    /// See [`Journal::path`].
    pub fn path(&self) -> PathBuf {
        self.0.path()
    }

    /// See [`Journal::record_batch`].
    pub fn record_batch(&mut self, entries: &[JournalEntry]) -> Result<(), StateError> {
        self.0.record_batch(entries)
    }

    /// Who may still send under this journal's lock or lease ([`Fence`]):
    /// a handle of its own, asked before every purchase request while the
    /// journal may be busy writing.
    pub fn fence(&self) -> Arc<dyn Fence> {
        self.0.fence()
    }
}

// A local file: the OS lock, the journal file beside the state.

impl Backend for StateStore {
    fn path(&self) -> &Path {
        StateStore::path(self)
    }

    fn journal_path(&self) -> PathBuf {
        StateStore::journal_path(self)
    }

    fn words(&self) -> Words {
        Words {
            lock: "lock",
            state: "state file",
            journal: "journal",
            fix: "Free disk space or fix the permissions",
        }
    }

    fn load(&self) -> Result<Loaded, StateError> {
        StateStore::load(self)
    }

    fn in_flight(&self) -> Result<Option<InFlight>, StateError> {
        super::in_flight::local(self)
    }

    fn init(&self, command: &str, timeout: Duration) -> Result<StateId, StateError> {
        StateStore::init(self, command, timeout)
    }

    fn init_force(&self, command: &str, timeout: Duration) -> Result<Initialized, StateError> {
        StateStore::init_force(self, command, timeout)
    }

    fn restore(&self, command: &str, timeout: Duration) -> Result<Restored, StateError> {
        StateStore::restore(self, command, timeout)
    }

    fn lock(
        &self,
        command: &str,
        timeout: Duration,
        _buying: bool,
    ) -> Result<(WriterLock, Loaded), StateError> {
        let (lock, loaded) = self.lock_and_load(command, timeout)?;
        let held = LocalHeld {
            store: self.clone(),
            lock,
        };
        Ok((WriterLock(Box::new(held)), loaded))
    }

    fn unlock(&self) -> Result<UnlockOutcome, StateError> {
        StateStore::unlock(self)
    }

    fn create_copy(&self, state: &State) -> Result<StateId, StateError> {
        StateStore::create_copy(self, state)
    }

    fn lock_status(&self) -> Result<LockStatus, StateError> {
        super::lock::status(StateStore::path(self))
    }

    fn backup(&self) -> Option<Result<Option<BackupSummary>, StateError>> {
        Some(self.read_backup().map(|backup| {
            backup.map(|disk| BackupSummary::Valid {
                lineage: disk.lineage,
                serial: disk.serial,
                packages: disk.packages.len(),
            })
        }))
    }

    fn check_conditional_writes(&self) -> Option<Result<(), StateError>> {
        None
    }
}

/// A local store's lock, with the store it locks.
#[derive(Debug)]
struct LocalHeld {
    store: StateStore,
    lock: StateLock,
}

impl Held for LocalHeld {
    fn holder(&self) -> LockHolder {
        self.lock.holder().clone()
    }

    fn journal(&self) -> Result<JournalWriter, StateError> {
        let journal = self.store.journal(&self.lock)?;
        Ok(JournalWriter(Box::new(journal)))
    }

    fn write(&self, state: &mut State) -> Result<StateId, StateError> {
        self.store.write(&self.lock, state)
    }
}

impl Sink for Journal {
    fn path(&self) -> PathBuf {
        Journal::path(self)
    }

    fn record_batch(&mut self, entries: &[JournalEntry]) -> Result<(), StateError> {
        Journal::record_batch(self, entries)
    }

    fn fence(&self) -> Arc<dyn Fence> {
        Arc::new(Journal {
            lock: self.lock.clone(),
        })
    }
}

// An `s3://` location: a lease in the head object, the journal in it too.

impl Backend for S3Store {
    fn path(&self) -> &Path {
        S3Store::path(self)
    }

    fn journal_path(&self) -> PathBuf {
        S3Store::journal_path(self)
    }

    fn words(&self) -> Words {
        Words {
            lock: "lease",
            state: "state",
            journal: "head object",
            fix: "Check the store and the credentials (or who took the lease over)",
        }
    }

    fn load(&self) -> Result<Loaded, StateError> {
        S3Store::load(self)
    }

    fn in_flight(&self) -> Result<Option<InFlight>, StateError> {
        super::in_flight::s3(self)
    }

    fn init(&self, _command: &str, _timeout: Duration) -> Result<StateId, StateError> {
        S3Store::init(self)
    }

    fn init_force(&self, _command: &str, _timeout: Duration) -> Result<Initialized, StateError> {
        S3Store::init(self).map(|id| Initialized {
            id,
            backup_aside: None,
        })
    }

    fn restore(&self, _command: &str, _timeout: Duration) -> Result<Restored, StateError> {
        Err(StateError::RestoreUnsupported {
            location: self.path().display().to_string(),
        })
    }

    fn lock(
        &self,
        command: &str,
        timeout: Duration,
        buying: bool,
    ) -> Result<(WriterLock, Loaded), StateError> {
        let lease = if buying {
            self.lock_to_buy(command, timeout)?
        } else {
            S3Store::lock(self, command, timeout)?
        };
        let loaded = lease.load()?;
        Ok((WriterLock(Box::new(lease)), loaded))
    }

    fn unlock(&self) -> Result<UnlockOutcome, StateError> {
        S3Store::unlock(self)
    }

    fn create_copy(&self, state: &State) -> Result<StateId, StateError> {
        S3Store::create_copy(self, state)
    }

    fn lock_status(&self) -> Result<LockStatus, StateError> {
        Ok(match self.live_lease()? {
            Some((holder, _)) => LockStatus::Held {
                holder: Some(holder),
            },
            None => LockStatus::Free,
        })
    }

    fn backup(&self) -> Option<Result<Option<BackupSummary>, StateError>> {
        None
    }

    fn check_conditional_writes(&self) -> Option<Result<(), StateError>> {
        Some(S3Store::check_conditional_writes(
            self,
            "apply and watch --apply would refuse it",
        ))
    }
}

impl Held for S3Lease {
    fn holder(&self) -> LockHolder {
        S3Lease::holder(self)
    }

    fn journal(&self) -> Result<JournalWriter, StateError> {
        Ok(JournalWriter(Box::new(S3Lease::journal(self))))
    }

    fn write(&self, state: &mut State) -> Result<StateId, StateError> {
        S3Lease::write(self, state)
    }
}

impl Sink for S3Journal {
    fn path(&self) -> PathBuf {
        S3Journal::path(self)
    }

    fn record_batch(&mut self, entries: &[JournalEntry]) -> Result<(), StateError> {
        S3Journal::record_batch(self, entries)
    }

    fn fence(&self) -> Arc<dyn Fence> {
        S3Journal::fence(self)
    }
}

#[cfg(test)]
mod state_arg_tests {
    use super::state_arg;

    #[test]
    fn mistyped_urls_are_refused_and_paths_and_s3_urls_kept() {
        for ok in [
            "oapkg.state.json",
            "state/oapkg.state.json",
            "/var/lib/oapkg/state.json",
            "s3://bucket/prefix",
            "dir/x://y",
            "s3.json",
        ] {
            assert_eq!(state_arg(ok).unwrap().to_str(), Some(ok));
        }
        for (bad, says) in [
            ("S3://bucket/prefix", "did you mean s3://bucket/prefix?"),
            ("s3:/bucket/prefix", "did you mean s3://bucket/prefix?"),
            ("s3:bucket", "did you mean s3://bucket?"),
            ("http://example.com/state", "is a http:// URL"),
            ("https://example.com/state", "is a https:// URL"),
            ("gs://bucket/state", "is a gs:// URL"),
            ("file:///tmp/state", "is a file:// URL"),
        ] {
            let error = state_arg(bad).unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
            assert!(error.contains("s3://BUCKET/PREFIX"), "{bad}: {error}");
        }
    }
}
