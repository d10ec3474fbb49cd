//! `in flight`: the purchase requests another live process is sending on a
//! state right now, for `plan`, `state list` and `state show`.
//!
//! A record whose intent has no outcome yet reads as `unconfirmed` (the
//! journal replays it so, [`super::journal`]): after a crash that is the
//! truth, and a person must check the eSMS portal. While the process that
//! wrote the intent is alive and holds the lock, it is not: the request is
//! waiting for its answer, which that process records. This module tells
//! the two apart, read-only:
//!
//! - local state: the lock file is `flock`ed by a live holder (a
//!   non-blocking shared try-lock fails), and the journal holds intents
//!   with no outcome;
//! - S3 state: the head holds a live lease, and its journal intents with
//!   no outcome.
//!
//! Locally, every unanswered intent in the journal under a live lock is the
//! holder's: taking the lock folds a dead holder's journal first. On S3 a
//! new lease does not fold the journal it finds, so there only intents
//! recorded since the lease was taken count, and a dead holder's stay
//! unconfirmed (so does a resend by `--retry-unconfirmed`, whose intent
//! keeps the first request's time: the safe side). This module owns no
//! file and writes nothing; it never decides what is bought (apply never
//! resends a key on the strength of this).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::TryLockError;

use jiff::Timestamp;

use super::journal::{self, Event, Line};
use super::lock::{self, LockHolder};
use super::{StateError, StateStore};
use crate::files::{self, OpenError};
use crate::spec::Key;

/// The requests a live holder of the state's lock has in flight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InFlight {
    /// Who holds the lock, as its label says; `None` when it wrote none
    /// that can be read.
    pub holder: Option<LockHolder>,
    /// The keys whose intent has no outcome yet.
    pub keys: BTreeSet<Key>,
}

/// The intents of `lines` (in order) that have no outcome after them, with
/// when each was recorded.
fn unanswered(lines: &[Line]) -> BTreeMap<&Key, Timestamp> {
    let mut open = BTreeMap::new();
    for line in lines {
        match &line.event {
            Event::Intent { at, .. } => {
                open.insert(&line.key, *at);
            }
            Event::Outcome(_) => {
                open.remove(&line.key);
            }
        }
    }
    open
}

/// `holder`'s requests in flight among `lines`: the unanswered intents,
/// only those recorded at or after `since` when given. `None` when there
/// are none.
fn of_holder(
    holder: Option<LockHolder>,
    lines: &[Line],
    since: Option<Timestamp>,
) -> Option<InFlight> {
    let keys: BTreeSet<Key> = unanswered(lines)
        .into_iter()
        .filter(|(_, at)| since.is_none_or(|since| *at >= since))
        .map(|(key, _)| key.clone())
        .collect();
    (!keys.is_empty()).then_some(InFlight { holder, keys })
}

/// A local state's requests in flight: the journal's unanswered intents,
/// if a live process holds the lock. The journal is read before the lock
/// is tried, so a holder that ends in between is not taken for live.
pub(crate) fn local(store: &StateStore) -> Result<Option<InFlight>, StateError> {
    let lock_path = store.lock_path();
    // The lock file exists only while someone holds it (or after a crash):
    // without it, nothing more to read.
    if std::fs::symlink_metadata(&lock_path).is_err() {
        return Ok(None);
    }
    let Some(contents) = journal::read(&store.journal_path())? else {
        return Ok(None);
    };
    if unanswered(&contents.lines).is_empty() {
        return Ok(None);
    }
    let file = match files::open_regular(&lock_path) {
        Ok((file, _)) => file,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(OpenError::NotRegular(_)) => return Ok(None),
        Err(OpenError::Io(source)) => {
            return Err(StateError::io("open the lock file", &lock_path, source));
        }
    };
    // Shared, and let go at once (when `file` closes): a reader never
    // stands in a writer's way for longer than this call.
    match file.try_lock_shared() {
        Ok(()) => return Ok(None),
        Err(TryLockError::WouldBlock) => {}
        Err(TryLockError::Error(source)) => {
            return Err(StateError::io("try the lock", &lock_path, source));
        }
    }
    drop(file);
    Ok(of_holder(
        lock::read_holder(&lock_path),
        &contents.lines,
        None,
    ))
}

/// An S3 state's requests in flight: the head's unanswered intents under
/// a live lease, unless its holder ran on this machine and is gone (a
/// killed holder's lease stays live until it expires; a holder elsewhere
/// cannot be asked, so its lease is taken at its word).
pub(crate) fn s3(store: &super::s3::S3Store) -> Result<Option<InFlight>, StateError> {
    Ok(store
        .live_lease()?
        .filter(|(holder, _)| !gone_from_here(holder))
        .and_then(|(holder, lines)| {
            let since = holder.since;
            of_holder(Some(holder), &lines, Some(since))
        }))
}

/// Whether `holder` ran on this machine and its process no longer exists.
fn gone_from_here(holder: &LockHolder) -> bool {
    holder.host == lock::hostname() && !process_exists(holder.pid)
}

#[cfg(unix)]
fn process_exists(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    // Signal 0 sends nothing; it only checks that the process exists
    // (EPERM: it does, owned by someone else).
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        Err(error) => error == rustix::io::Errno::PERM,
    }
}

#[cfg(not(unix))]
fn process_exists(_pid: u32) -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Oaid, Spec, Tier};
    use crate::state::journal::JournalOutcome;
    use std::time::Duration;

    fn spec(oaid: &str) -> Spec {
        Spec {
            oaid: Oaid::parse(oaid).unwrap(),
            tier: Tier::Advanced,
            start: jiff::civil::date(2026, 12, 1),
            duration_months: 6,
        }
    }

    fn intent(store: &StateStore, lock: &super::super::StateLock, s: &Spec, at: Timestamp) {
        store
            .journal(lock)
            .unwrap()
            .record_intent(&s.key(), s, None, at)
            .unwrap();
    }

    #[test]
    fn a_live_holders_unanswered_intents_are_in_flight_until_it_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path().join("oapkg.state.json"));
        store.init("test", Duration::ZERO).unwrap();
        let (a, b) = (spec("1"), spec("2"));
        let (lock, _) = store.lock_and_load("oapkg apply", Duration::ZERO).unwrap();
        assert_eq!(local(&store).unwrap(), None, "no journal yet");
        // A resend's intent keeps its first request's time, long before
        // this lock was taken: locally it is in flight all the same.
        let first_sent: Timestamp = "2026-10-01T02:00:00Z".parse().unwrap();
        intent(&store, &lock, &a, first_sent);
        intent(&store, &lock, &b, Timestamp::now());
        store
            .journal(&lock)
            .unwrap()
            .record_outcome(
                &b.key(),
                &JournalOutcome::Submitted {
                    service_preview_id: Some("1".into()),
                    result_code: "100".into(),
                    result_message: "Success".into(),
                },
            )
            .unwrap();
        let in_flight = local(&store)
            .unwrap()
            .expect("a live holder with an open intent");
        assert_eq!(in_flight.keys, BTreeSet::from([a.key()]));
        assert_eq!(in_flight.holder.as_ref(), Some(lock.holder()));
        // Trying the lock did not take it from anyone: a writer still fails
        // at once while it is held.
        assert!(matches!(
            store.lock("second", Duration::ZERO),
            Err(StateError::Locked { .. })
        ));
        drop(lock);
        assert_eq!(local(&store).unwrap(), None);
    }

    #[test]
    fn a_dead_holders_journal_is_not_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path().join("oapkg.state.json"));
        store.init("test", Duration::ZERO).unwrap();
        let a = spec("1");
        let (lock, _) = store.lock_and_load("oapkg apply", Duration::ZERO).unwrap();
        intent(&store, &lock, &a, Timestamp::now());
        // What a crash leaves: the journal and the lock file, no lock.
        let lock_bytes = std::fs::read(store.lock_path()).unwrap();
        let journal = std::fs::read(store.journal_path()).unwrap();
        drop(lock);
        std::fs::write(store.lock_path(), lock_bytes).unwrap();
        std::fs::write(store.journal_path(), journal).unwrap();
        assert_eq!(local(&store).unwrap(), None);
    }

    #[test]
    fn a_holder_on_this_machine_is_gone_when_its_process_is() {
        let mut holder = LockHolder::current("oapkg apply");
        assert!(!gone_from_here(&holder), "this process exists");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        holder.pid = child.id();
        child.wait().unwrap();
        assert!(gone_from_here(&holder), "a reaped child is gone");
        holder.host = "elsewhere".into();
        assert!(!gone_from_here(&holder), "another machine is not asked");
    }

    #[test]
    fn given_a_time_only_intents_since_it_count() {
        let a = spec("1");
        let b = spec("2");
        let since: Timestamp = "2026-11-26T10:00:00Z".parse().unwrap();
        let holder = LockHolder {
            pid: 7,
            host: "h".into(),
            command: "oapkg apply".into(),
            since,
            ci_job: None,
        };
        let generation = journal::Generation::default();
        let line = |s: &Spec, at: Timestamp| {
            journal::encode_line(
                std::path::Path::new("j"),
                &generation,
                &s.key(),
                &Event::Intent {
                    spec: s.clone(),
                    name: None,
                    at,
                    by_policy: false,
                },
            )
            .unwrap()
        };
        let before = since
            .checked_sub(jiff::SignedDuration::from_secs(5))
            .unwrap();
        let bytes = [line(&a, before), line(&b, since)].concat();
        let lines = journal::parse(std::path::Path::new("j"), &bytes)
            .unwrap()
            .lines;
        let in_flight = of_holder(Some(holder), &lines, Some(since)).unwrap();
        assert_eq!(in_flight.keys, BTreeSet::from([b.key()]));
        // Without a time to start from, every unanswered intent counts.
        assert_eq!(of_holder(None, &lines, None).unwrap().keys.len(), 2);
    }
}
