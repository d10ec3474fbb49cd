//! The writer lock `<path>.lock`: at most one process changes the state at a time.
//!
//! The lock itself is the operating system's (`File::try_lock`, `flock` on
//! Linux) on the lock file, so it disappears with its process however that
//! process ends, `kill -9` included: a crashed holder can never block the next
//! writer. The file's *content* is only a label: the holder's pid, host,
//! command and start time, written after the lock is taken, so a blocked
//! writer can say who it waits for. Content left behind by a dead process is
//! simply overwritten by the next holder.
//!
//! # Removing the lock file
//!
//! A holder removes the lock file when it is done, so the file exists only
//! while someone holds it (or after a crash). Removing a lock file is racy if
//! done naively: a waiter may have opened the old file and then lock it after
//! it was unlinked, while a third process creates and locks a new file at the
//! same path; both would think they hold the lock. Two rules close that race:
//!
//! - the file is removed only *while holding* its lock (by the holder on
//!   drop, by `state unlock` after taking it), never by someone who lacks it;
//! - after locking, a process checks that the path still names the file it
//!   locked (same device and inode); if not, it lets go and starts over.
//!
//! This module owns the lock and the journal's in-process state that lives
//! under it, and the one rule, for both kinds of state, of whether a
//! writer may still send a purchase request ([`Fence`], [`SendPermit`]);
//! it does not read or write the state file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use std::time::{Duration, Instant};

use jiff::Timestamp;

use super::StateError;
use super::disk::{create_parent_dir, file_identity};
pub use super::holder::LockHolder;
pub(crate) use super::holder::hostname;
use super::names::sibling;

/// How often a blocked writer tries again while it waits.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// How many times in a row the lock file may be replaced under us before we
/// give up (each needs another process to take and release the lock).
const MAX_REPLACED: u32 = 1000;

/// What `state unlock` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnlockOutcome {
    /// There was no lock file: nothing to do.
    NotLocked,
    /// A lock file left by a process that is gone was removed.
    Removed {
        /// What it said about that process, if it said anything.
        previous_holder: Option<LockHolder>,
    },
    /// A shared state's lease was cleared, whoever held it: a holder still
    /// running finds its next write refused and records nothing more.
    Cleared { previous_holder: LockHolder },
}

/// Who has a state's lock now, as `oapkg doctor` reports it: read-only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockStatus {
    /// Nobody holds it.
    Free,
    /// A lock file left by a process that is gone: the next writer takes
    /// the lock over it (`state unlock` removes it).
    Left { holder: Option<LockHolder> },
    /// A live process holds it (or, on S3, a lease that has not expired).
    Held { holder: Option<LockHolder> },
}

/// The lock of the local state at `state_path`, tested without taking it:
/// a non-blocking shared try-lock let go at once, as `plan`'s `in flight`.
pub(crate) fn status(state_path: &Path) -> Result<LockStatus, StateError> {
    let lock_path = sibling(state_path, ".lock");
    let file = match crate::files::open_regular(&lock_path) {
        Ok((file, _)) => file,
        Err(e) if e.is_not_found() => return Ok(LockStatus::Free),
        Err(crate::files::OpenError::NotRegular(kind)) => {
            return Err(StateError::NotAFile {
                path: lock_path,
                kind,
            });
        }
        Err(crate::files::OpenError::Io(source)) => {
            return Err(StateError::io("open the lock file", &lock_path, source));
        }
    };
    let held = match file.try_lock_shared() {
        Ok(()) => false,
        Err(fs::TryLockError::WouldBlock) => true,
        Err(fs::TryLockError::Error(source)) => {
            return Err(StateError::io("try the lock", &lock_path, source));
        }
    };
    drop(file);
    let holder = read_holder(&lock_path);
    Ok(if held {
        LockStatus::Held { holder }
    } else {
        LockStatus::Left { holder }
    })
}

/// The held OS lock on one state's lock file: released (and the lock file
/// removed) when dropped. The state's [`StateLock`](super::StateLock) and
/// its journals share it.
#[derive(Debug)]
pub(crate) struct LockInner {
    /// Holds the OS lock for as long as it is open.
    file: File,
    lock_path: PathBuf,
    pub(crate) state_path: PathBuf,
    holder: LockHolder,
}

impl LockInner {
    /// Whether the lock file at the lock path is still the one this lock
    /// holds: not renamed away with its directory, not replaced.
    pub(crate) fn still_at_path(&self) -> bool {
        still_at_path(&self.file, &self.lock_path)
    }

    pub(crate) fn lock_path(&self) -> &Path {
        &self.lock_path
    }

    /// Who holds it: this process.
    pub(crate) fn holder(&self) -> &LockHolder {
        &self.holder
    }
}

impl Drop for LockInner {
    fn drop(&mut self) {
        // Still holding the lock here (`file` closes after this returns), so
        // nobody else can have locked this file; waiters that opened it will
        // see it is gone and start over (see the module docs).
        if still_at_path(&self.file, &self.lock_path)
            && let Err(e) = fs::remove_file(&self.lock_path)
        {
            tracing::debug!(lock = %self.lock_path.display(), error = %e, "could not remove the lock file");
        }
    }
}

/// Takes the lock for `state_path`, waiting up to `timeout`.
pub(crate) fn acquire(
    state_path: &Path,
    command: &str,
    timeout: Duration,
) -> Result<LockInner, StateError> {
    let lock_path = sibling(state_path, ".lock");
    create_parent_dir(state_path)?;
    let deadline = Instant::now().checked_add(timeout);
    let mut replaced = 0;
    loop {
        // Never truncate on open: the file may be someone else's, and its
        // content is how we name them. Created owner-only, as every file
        // oapkg writes (its label names the host and command).
        let file = crate::files::owner_only(&mut OpenOptions::new())
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|source| StateError::io("open the lock file", &lock_path, source))?;
        match file.try_lock() {
            Ok(()) => {
                if !still_at_path(&file, &lock_path) {
                    replaced += 1;
                    if replaced > MAX_REPLACED {
                        return Err(StateError::Unstable { path: lock_path });
                    }
                    continue;
                }
                let holder = LockHolder::current(command);
                write_holder(&file, &lock_path, &holder)?;
                return Ok(LockInner {
                    file,
                    lock_path,
                    state_path: state_path.to_owned(),
                    holder,
                });
            }
            Err(fs::TryLockError::WouldBlock) => {
                let now = Instant::now();
                let remaining = deadline.map(|d| d.saturating_duration_since(now));
                if remaining == Some(Duration::ZERO) {
                    return Err(StateError::Locked {
                        path: state_path.to_owned(),
                        holder: read_holder(&lock_path),
                    });
                }
                drop(file);
                std::thread::sleep(remaining.map_or(POLL_INTERVAL, |r| r.min(POLL_INTERVAL)));
            }
            Err(fs::TryLockError::Error(source)) => {
                return Err(StateError::io("lock", &lock_path, source));
            }
        }
    }
}

/// `state unlock`: removes a lock file no live process holds.
pub(crate) fn unlock(state_path: &Path) -> Result<UnlockOutcome, StateError> {
    let lock_path = sibling(state_path, ".lock");
    for _ in 0..MAX_REPLACED {
        let file = match OpenOptions::new().read(true).write(true).open(&lock_path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(UnlockOutcome::NotLocked),
            Err(source) => return Err(StateError::io("open the lock file", &lock_path, source)),
        };
        match file.try_lock() {
            Ok(()) if still_at_path(&file, &lock_path) => {
                let previous_holder = read_holder(&lock_path);
                match fs::remove_file(&lock_path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(source) => {
                        return Err(StateError::io("remove the lock file", &lock_path, source));
                    }
                }
                return Ok(UnlockOutcome::Removed { previous_holder });
            }
            Ok(()) => continue,
            Err(fs::TryLockError::WouldBlock) => {
                return Err(StateError::Locked {
                    path: state_path.to_owned(),
                    holder: read_holder(&lock_path),
                });
            }
            Err(fs::TryLockError::Error(source)) => {
                return Err(StateError::io("lock", &lock_path, source));
            }
        }
    }
    Err(StateError::Unstable { path: lock_path })
}

fn write_holder(file: &File, lock_path: &Path, holder: &LockHolder) -> Result<(), StateError> {
    let mut text = serde_json::to_vec(holder).map_err(|source| StateError::Encode {
        path: lock_path.to_owned(),
        source,
    })?;
    text.push(b'\n');
    // A fresh handle's cursor is at 0. No fsync: the label only matters while
    // this process lives, and the OS lock does not depend on it.
    let mut file = file;
    file.set_len(0)
        .and_then(|()| file.write_all(&text))
        .map_err(|source| StateError::io("write the lock holder into", lock_path, source))
}

/// The label in a lock file, if it has a readable one (it may be empty for a
/// moment while its holder writes it).
pub(crate) fn read_holder(lock_path: &Path) -> Option<LockHolder> {
    let bytes = crate::files::read_regular(lock_path).ok()?;
    serde_json::from_str(std::str::from_utf8(&bytes).ok()?.trim()).ok()
}

/// Whether `path` still names the file `file` has open.
pub(crate) fn still_at_path(file: &File, path: &Path) -> bool {
    match (file.metadata(), fs::metadata(path)) {
        (Ok(open), Ok(named)) => file_identity(&open) == file_identity(&named),
        _ => false,
    }
}

/// Whether a writer may still send a purchase request now: the one
/// question `apply` asks, for either kind of state, immediately before
/// every request it sends — the first one and every retry
/// (`executor::send`; see docs/exactly-once.md, "Fencing").
///
/// A local state's lock is the operating system's: it cannot be lost while
/// the process lives, so the permit only checks that the lock file is still
/// the one at its path. An S3 state's lease can be lost (it expired, was
/// broken by `state unlock`, or taken over): there the permit stands on the
/// last conditional write of the head under the holder's lease, and is
/// refused once less than a third of the lease is left after it.
///
/// Implemented by the journal handles of both stores
/// ([`JournalWriter::fence`](super::JournalWriter::fence)).
pub trait Fence: Send + Sync + std::fmt::Debug {
    /// Leave to send one request now, or why not (then nothing more is
    /// sent in this run: the holder no longer holds the state). Once
    /// refused, always refused. [`Proof::Renewed`] first writes the head
    /// again under the lease (a blocking network call on S3; nothing
    /// locally); [`Proof::Recorded`] only checks.
    fn permit(&self, proof: Proof) -> Result<SendPermit, StateError>;
}

/// What a [`Fence::permit`] stands on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proof {
    /// A conditional write under the lease just succeeded: the package's
    /// intent (before its first request).
    Recorded,
    /// Write the head afresh under the lease first (before a retry: the
    /// lease may have been lost while the holder waited).
    Renewed,
}

/// Leave to send: until when a request may still go out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendPermit {
    window: Option<LeaseWindow>,
}

/// The time a lease written at `issued` leaves its holder to send in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LeaseWindow {
    /// Taken just *before* the write that set the lease's expiry was
    /// issued, on the monotonic clock and on the wall clock (the expiry
    /// written is `wall + lease`, and other writers judge it by theirs).
    pub(crate) issued: Instant,
    pub(crate) wall: Timestamp,
    pub(crate) lease: Duration,
}

impl LeaseWindow {
    /// The rule: a request may go out while at least a third of the lease
    /// is left, by both clocks (`now + lease/3 <= issued + lease`). The
    /// monotonic clock does not jump; the wall clock keeps counting while
    /// the machine sleeps. Either one running out refuses.
    pub(crate) fn allows(&self, now: Instant, wall: Timestamp) -> bool {
        let usable = self.lease.saturating_sub(self.lease / 3);
        let elapsed = now.saturating_duration_since(self.issued);
        let wall_elapsed = wall.duration_since(self.wall);
        elapsed <= usable
            && jiff::SignedDuration::try_from(usable).is_ok_and(|usable| wall_elapsed <= usable)
    }

    /// When the monotonic clock stops allowing sends.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.issued
            .checked_add(self.lease.saturating_sub(self.lease / 3))
    }
}

impl SendPermit {
    /// No deadline: a lock held by the operating system.
    pub(crate) fn unbounded() -> SendPermit {
        SendPermit { window: None }
    }

    pub(crate) fn within(window: LeaseWindow) -> SendPermit {
        SendPermit {
            window: Some(window),
        }
    }

    /// The last instant a request may go out under this permit; `None`
    /// when the lock cannot run out.
    pub fn deadline(&self) -> Option<Instant> {
        self.window.and_then(|w| w.deadline())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn state_path(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("state").join("oapkg.state.json")
    }

    #[test]
    fn a_second_writer_fails_at_once_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = state_path(&dir);
        let first = acquire(&path, "oapkg apply", Duration::ZERO).unwrap();
        let started = Instant::now();
        let err = acquire(&path, "oapkg state rm", Duration::ZERO).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1));
        let StateError::Locked {
            holder: Some(holder),
            ..
        } = &err
        else {
            panic!("expected Locked with a holder, got {err:?}");
        };
        assert_eq!(holder, first.holder());
        // The error, then its hint (what to do).
        let message = format!("{err}. {}", err.hint().unwrap_or_default());
        for part in [
            path.display().to_string(),
            format!("pid {}", std::process::id()),
            format!("on host {}", hostname()),
            "running \"oapkg apply\"".to_owned(),
            format!("since {}", first.holder().since),
            "oapkg state unlock".to_owned(),
        ] {
            assert!(message.contains(&part), "{message:?} lacks {part:?}");
        }
    }

    #[test]
    fn a_waiting_writer_gets_the_lock_when_it_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let path = state_path(&dir);
        let first = acquire(&path, "oapkg apply", Duration::ZERO).unwrap();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(first);
        });
        let started = Instant::now();
        let second = acquire(&path, "oapkg state rm", Duration::from_secs(10)).unwrap();
        assert!(started.elapsed() >= Duration::from_millis(250));
        assert_eq!(second.holder().command, "oapkg state rm");
        releaser.join().unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn the_lock_file_is_created_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = state_path(&dir);
        let _lock = acquire(&path, "oapkg apply", Duration::ZERO).unwrap();
        let meta = fs::metadata(sibling(&path, ".lock")).unwrap();
        assert_eq!(
            meta.permissions().mode() & 0o777,
            crate::files::NEW_FILE_MODE
        );
    }

    #[test]
    fn a_timeout_expires_with_the_holder_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = state_path(&dir);
        let _first = acquire(&path, "oapkg apply", Duration::ZERO).unwrap();
        let started = Instant::now();
        let err = acquire(&path, "oapkg apply", Duration::from_millis(300)).unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(matches!(
            err,
            StateError::Locked {
                holder: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn a_lock_file_left_by_a_dead_process_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let path = state_path(&dir);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let lock_path = sibling(&path, ".lock");
        let stale = r#"{"pid":999999,"host":"gone","command":"oapkg apply","since":"2026-11-26T10:00:00Z"}"#;
        fs::write(&lock_path, stale).unwrap();
        let lock = acquire(&path, "oapkg apply", Duration::ZERO).unwrap();
        assert_eq!(read_holder(&lock_path).as_ref(), Some(lock.holder()));
        drop(lock);
        assert!(
            !lock_path.exists(),
            "the holder removes the lock file when done"
        );
    }

    #[test]
    fn unlock_removes_only_a_lock_nobody_holds() {
        let dir = tempfile::tempdir().unwrap();
        let path = state_path(&dir);
        assert_eq!(unlock(&path).unwrap(), UnlockOutcome::NotLocked);

        let lock = acquire(&path, "oapkg apply", Duration::ZERO).unwrap();
        let err = unlock(&path).unwrap_err();
        assert!(matches!(&err, StateError::Locked { holder: Some(h), .. } if h == lock.holder()));
        assert!(sibling(&path, ".lock").exists());
        drop(lock);

        let stale = LockHolder {
            pid: 999_999,
            host: "gone".into(),
            command: "oapkg apply".into(),
            since: "2026-11-26T10:00:00Z".parse().unwrap(),
            ci_job: None,
        };
        fs::write(sibling(&path, ".lock"), serde_json::to_vec(&stale).unwrap()).unwrap();
        assert_eq!(
            unlock(&path).unwrap(),
            UnlockOutcome::Removed {
                previous_holder: Some(stale)
            }
        );
        assert!(!sibling(&path, ".lock").exists());
    }

    #[test]
    fn many_threads_never_hold_the_lock_together() {
        let dir = tempfile::tempdir().unwrap();
        let path = Arc::new(state_path(&dir));
        let inside = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let path = Arc::clone(&path);
                let inside = Arc::clone(&inside);
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        let lock = acquire(&path, "t", Duration::from_secs(30)).unwrap();
                        let n = inside.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        assert_eq!(n, 0, "two holders at once");
                        std::thread::sleep(Duration::from_micros(200));
                        inside.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                        drop(lock);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }

    #[test]
    fn a_lease_window_allows_sends_until_a_third_of_the_lease_is_left() {
        let issued = Instant::now();
        let wall = Timestamp::now();
        let window = LeaseWindow {
            issued,
            wall,
            lease: Duration::from_secs(60),
        };
        let at = |secs: u64| {
            (
                issued + Duration::from_secs(secs),
                wall + jiff::SignedDuration::from_secs(secs as i64),
            )
        };
        for (secs, allowed) in [(0, true), (39, true), (40, true), (41, false), (600, false)] {
            let (now, wall_now) = at(secs);
            assert_eq!(window.allows(now, wall_now), allowed, "{secs}s after");
        }
        assert_eq!(window.deadline(), Some(issued + Duration::from_secs(40)));
        // Either clock running out refuses: the wall clock keeps counting
        // while the machine sleeps, when the monotonic one may not.
        let (now, _) = at(10);
        let (_, slept) = at(45);
        assert!(!window.allows(now, slept));
        // A wall clock set back does not extend the window.
        let (late, _) = at(41);
        assert!(!window.allows(late, wall - jiff::SignedDuration::from_secs(30)));
        // A clock before the write (cannot happen) allows, by both.
        assert!(window.allows(issued, wall - jiff::SignedDuration::from_secs(1)));
    }

    #[test]
    fn a_local_lock_permits_sends_while_its_file_is_at_its_path() {
        use super::super::{Fence, Proof, StateStore};
        let dir = tempfile::tempdir().unwrap();
        let path = state_path(&dir);
        let store = StateStore::new(&path);
        store.init("test", Duration::ZERO).unwrap();
        let (lock, _) = store.lock_and_load("oapkg apply", Duration::ZERO).unwrap();
        let journal = store.journal(&lock).unwrap();
        for proof in [Proof::Recorded, Proof::Renewed] {
            let permit = journal.permit(proof).unwrap();
            assert_eq!(permit.deadline(), None, "an OS lock cannot run out");
        }
        // The state directory moved away: the lock file at the path is not
        // the one held, so nothing more may be sent.
        let moved = dir.path().join("state.old");
        fs::rename(dir.path().join("state"), &moved).unwrap();
        let refused = journal.permit(Proof::Recorded).unwrap_err();
        assert!(refused.ends_the_lease(), "{refused}");
        assert!(
            refused.to_string().contains("nothing more is bought"),
            "{refused}"
        );
    }
}
