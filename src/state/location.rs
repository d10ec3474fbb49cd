//! Where the state lives: a local file or an `s3://` location, behind one
//! [`Store`] that commands, `apply` and `watch` use without knowing which.
//!
//! Both kinds share the pure parts (the state file format and checksum, the
//! journal's lines, replay and fold); this module only dispatches.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::journal::StateLock;
use super::journal::{Journal, JournalEntry};
use super::lock::{Fence, LockHolder, UnlockOutcome};
use super::s3::{S3Journal, S3Lease, S3Location, S3Store};
use super::store::{Initialized, Loaded, Restored, StateStore};
use super::{State, StateError, StateId};

/// The state named by `--state` (or `OAPKG_STATE`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Store {
    /// A local file, with its backup, lock and journal beside it.
    Local(StateStore),
    /// Objects under `s3://BUCKET/PREFIX` (see [`super::s3`]).
    S3(S3Store),
}

impl Store {
    /// The store `--state` names: `s3://BUCKET/PREFIX` or a file path. A
    /// malformed `s3://` location is refused.
    pub fn open(state: &Path) -> Result<Store, StateError> {
        match state.to_str().and_then(S3Location::parse) {
            Some(location) => Ok(Store::S3(S3Store::new(location?))),
            None => Ok(Store::Local(StateStore::new(state))),
        }
    }

    /// The file path, or `s3://BUCKET/PREFIX`: how messages name the state.
    pub fn path(&self) -> &Path {
        match self {
            Store::Local(store) => store.path(),
            Store::S3(store) => store.path(),
        }
    }

    /// Where the journal of a run is: the journal file, or the head object.
    pub fn journal_path(&self) -> PathBuf {
        match self {
            Store::Local(store) => store.journal_path(),
            Store::S3(store) => store.journal_path(),
        }
    }

    /// See [`StateStore::load`]: needs no lock.
    pub fn load(&self) -> Result<Loaded, StateError> {
        match self {
            Store::Local(store) => store.load(),
            Store::S3(store) => store.load(),
        }
    }

    /// The purchase requests a live holder of the lock (a live lease, on
    /// S3) has in flight now; `None` when there are none. Read-only, takes
    /// no lock (see [`super::in_flight`]).
    pub fn in_flight(&self) -> Result<Option<super::InFlight>, StateError> {
        match self {
            Store::Local(store) => super::in_flight::local(store),
            Store::S3(store) => super::in_flight::s3(store),
        }
    }

    /// See [`StateStore::init`]; an S3 store is first checked to refuse
    /// conflicting conditional writes.
    pub fn init(&self, command: &str, timeout: Duration) -> Result<StateId, StateError> {
        match self {
            Store::Local(store) => store.init(command, timeout),
            Store::S3(store) => store.init(),
        }
    }

    /// See [`StateStore::init_force`]. An S3 state keeps no backup object,
    /// so there is nothing to keep aside: the same as [`init`](Self::init).
    pub fn init_force(&self, command: &str, timeout: Duration) -> Result<Initialized, StateError> {
        match self {
            Store::Local(store) => store.init_force(command, timeout),
            Store::S3(store) => store.init().map(|id| Initialized {
                id,
                backup_aside: None,
            }),
        }
    }

    /// See [`StateStore::restore`]; not on S3 yet
    /// ([`StateError::RestoreUnsupported`]).
    pub fn restore(&self, command: &str, timeout: Duration) -> Result<Restored, StateError> {
        match self {
            Store::Local(store) => store.restore(command, timeout),
            Store::S3(store) => Err(StateError::RestoreUnsupported {
                location: store.path().display().to_string(),
            }),
        }
    }

    /// See [`StateStore::lock_and_load`]: the lock (a lease, on S3) and the
    /// state as of it.
    pub fn lock_and_load(
        &self,
        command: &str,
        timeout: Duration,
    ) -> Result<(WriterLock, Loaded), StateError> {
        match self {
            Store::Local(store) => {
                let (lock, loaded) = store.lock_and_load(command, timeout)?;
                Ok((WriterLock::Local(lock), loaded))
            }
            Store::S3(store) => {
                let lease = store.lock(command, timeout)?;
                let loaded = lease.load()?;
                Ok((WriterLock::S3(lease), loaded))
            }
        }
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
        match self {
            Store::Local(_) => self.lock_and_load(command, timeout),
            Store::S3(store) => {
                let lease = store.lock_to_buy(command, timeout)?;
                let loaded = lease.load()?;
                Ok((WriterLock::S3(lease), loaded))
            }
        }
    }

    /// See [`StateStore::journal`].
    pub fn journal(&self, lock: &WriterLock) -> Result<JournalWriter, StateError> {
        match (self, lock) {
            (Store::Local(store), WriterLock::Local(lock)) => {
                store.journal(lock).map(JournalWriter::Local)
            }
            (Store::S3(_), WriterLock::S3(lease)) => Ok(JournalWriter::S3(lease.journal())),
            _ => Err(self.wrong_lock(lock)),
        }
    }

    /// See [`StateStore::write`].
    pub fn write(&self, lock: &WriterLock, state: &mut State) -> Result<StateId, StateError> {
        match (self, lock) {
            (Store::Local(store), WriterLock::Local(lock)) => store.write(lock, state),
            (Store::S3(_), WriterLock::S3(lease)) => lease.write(state),
            _ => Err(self.wrong_lock(lock)),
        }
    }

    /// See [`StateStore::unlock`]; on S3 the lease is cleared whoever
    /// holds it (a live holder's next write is then refused).
    pub fn unlock(&self) -> Result<UnlockOutcome, StateError> {
        match self {
            Store::Local(store) => store.unlock(),
            Store::S3(store) => store.unlock(),
        }
    }

    /// `oapkg state migrate`: writes `state` here as it is (lineage and
    /// serial kept), refusing if a state exists.
    pub fn create_copy(&self, state: &State) -> Result<StateId, StateError> {
        match self {
            Store::Local(store) => store.create_copy(state),
            Store::S3(store) => store.create_copy(state),
        }
    }

    fn wrong_lock(&self, lock: &WriterLock) -> StateError {
        StateError::WrongLock {
            path: self.path().to_owned(),
            locked: lock.state_path(),
        }
    }
}

impl From<StateStore> for Store {
    fn from(store: StateStore) -> Store {
        Store::Local(store)
    }
}

impl From<&StateStore> for Store {
    fn from(store: &StateStore) -> Store {
        Store::Local(store.clone())
    }
}

impl From<&Store> for Store {
    fn from(store: &Store) -> Store {
        store.clone()
    }
}

/// The writer lock of a [`Store`]: held until dropped.
#[derive(Debug)]
pub enum WriterLock {
    Local(StateLock),
    S3(S3Lease),
}

impl WriterLock {
    /// Who holds it (this process).
    pub fn holder(&self) -> LockHolder {
        match self {
            WriterLock::Local(lock) => lock.holder().clone(),
            WriterLock::S3(lease) => lease.holder(),
        }
    }

    fn state_path(&self) -> PathBuf {
        match self {
            WriterLock::Local(lock) => lock.state_path().to_owned(),
            WriterLock::S3(_) => PathBuf::from("s3://"),
        }
    }
}

/// Where `apply` records purchases: the journal file or the head object.
#[derive(Debug)]
pub enum JournalWriter {
    Local(Journal),
    S3(S3Journal),
}

impl JournalWriter {
    /// See [`Journal::path`].
    pub fn path(&self) -> PathBuf {
        match self {
            JournalWriter::Local(journal) => journal.path(),
            JournalWriter::S3(journal) => journal.path(),
        }
    }

    /// See [`Journal::record_batch`].
    pub fn record_batch(&mut self, entries: &[JournalEntry]) -> Result<(), StateError> {
        match self {
            JournalWriter::Local(journal) => journal.record_batch(entries),
            JournalWriter::S3(journal) => journal.record_batch(entries),
        }
    }

    /// Who may still send under this journal's lock or lease ([`Fence`]):
    /// a handle of its own, asked before every purchase request while the
    /// journal may be busy writing.
    pub fn fence(&self) -> Arc<dyn Fence> {
        match self {
            JournalWriter::Local(journal) => Arc::new(Journal {
                lock: journal.lock.clone(),
            }),
            JournalWriter::S3(journal) => journal.fence(),
        }
    }
}
