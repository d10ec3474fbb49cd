//! The purchase journal `<path>.journal`: what `apply` records while it buys.
//!
//! Rewriting a 100,000-package state file after every purchase would make each
//! purchase cost as much as the whole state, so `apply` appends one line per
//! event here instead, fsync'd before it goes on: an *intent* before a
//! purchase request is sent, an *outcome* once the answer is known. The next
//! [`StateStore::write`](super::StateStore::write) folds the journal into the
//! state file and removes it.
//!
//! This module owns the line format, reading a journal back (including a torn
//! last line), deciding which lines apply to the state file on disk, and the
//! replay rules. It does not write the state file.
//!
//! # Line format
//!
//! One JSON object per line, with its own checksum ([`sha256_tagged`] of the
//! compact JSON of the same object without `checksum`):
//!
//! ```json
//! {"lineage":"1b4e…","serial":3,"key":"4097311281936189049@2026-12-01","event":{"intent":{"spec":{"oaid":"4097311281936189049","tier":"premium","start":"2026-12-01","duration_months":12},"name":"SVoucher main","at":"2026-11-26T10:00:00Z"}},"checksum":"sha256:…"}
//! {"lineage":"1b4e…","serial":3,"key":"4097311281936189049@2026-12-01","event":{"outcome":{"submitted":{"service_preview_id":"98765","result_code":"100","result_message":"Success"}}},"checksum":"sha256:…"}
//! ```
//!
//! A line counts only when it ends with `\n` and its checksum matches. Only
//! the last line can be torn (each append, of one line or of a batch of
//! lines written at once, is fsync'd before the next starts), so a bad last
//! line is ignored and a bad line anywhere else is corruption. A crash in
//! the middle of a batch may leave its first lines complete: none of them
//! was acknowledged, so an intent among them was never acted on and reads
//! as `unconfirmed` (safe), and an outcome among them is true.
//!
//! # Generations
//!
//! `lineage` and `serial` name the state file the line applies on top of
//! (`null`/`0` when there was no state file yet). Against the file on disk:
//!
//! - same lineage and serial: replayed;
//! - same lineage, older serial (or `null`/`0` against any file): the line was
//!   already folded by the write that made the newer file and the journal was
//!   not removed yet (a crash in between). It is ignored, after checking that
//!   every package it records really is in the file; if not (say the file was
//!   replaced by a newer copy from elsewhere), the journal is refused;
//! - another lineage, a newer serial, or a missing file: the file on disk is
//!   not the one these purchases were recorded against; refused.
//!
//! # Replay
//!
//! - intent with no outcome: the package is `unconfirmed` (it may have been sent);
//! - intent then `submitted`: `submitted`, with the id, code and message, and
//!   `submitted_at` = the intent's time;
//! - intent then `unconfirmed`: `unconfirmed`, with the reason as message;
//! - intent then `failed`: eSMS refused it, so the intent is void and the
//!   package keeps whatever record it had before (or none); a failure with
//!   a time (`at`: a request was sent) becomes the key's last failed
//!   attempt;
//! - a `submitted` outcome clears the key's last failed attempt.
//!
//! Replaying a journal over a state it was already replayed into gives the
//! same state (intents overwrite, a failure restores what was there just
//! before its intent, outcomes set fields), so folding twice is harmless.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};

use crate::files::{self, FileKind, OpenError};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::disk::{LoadedFile, sync_parent_dir};
use super::lock::{Fence, LockHolder, LockInner, Proof, SendPermit};
use super::names::sibling;
use super::{FailedAttempt, FailedAttempts, Record, StateError, Status};
use crate::spec::{Key, Spec, SpecHash, sha256_tagged};

/// The message of a package whose intent has no recorded outcome.
pub const NO_OUTCOME_MESSAGE: &str =
    "no answer was recorded: the request may have been sent (check the eSMS portal)";

/// How a purchase request ended, as `apply` classified eSMS's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum JournalOutcome {
    /// eSMS answered 100 or 199: the purchase exists.
    Submitted {
        service_preview_id: Option<String>,
        result_code: String,
        result_message: String,
    },
    /// The request may have reached eSMS but the answer is unknown.
    Unconfirmed { reason: String },
    /// eSMS definitively refused it: nothing was bought.
    Failed {
        result_code: Option<String>,
        result_message: String,
        /// When the last attempt failed; `None` when nothing was sent (the
        /// run stopped between the intent and the request), which is no
        /// attempt to remember. Left out of the line when `None`, so lines
        /// written before it existed read the same.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<Timestamp>,
    },
}

/// The exclusive writer lock on one state file, with the journal appended
/// under it. Dropping it (and every [`Journal`] made from it) releases the
/// lock and removes the lock file.
#[derive(Debug)]
pub struct StateLock {
    pub(crate) inner: Arc<Held>,
}

impl StateLock {
    pub(crate) fn new(lock: LockInner) -> StateLock {
        StateLock {
            inner: Arc::new(Held {
                lock,
                journal: Mutex::new(JournalSlot::default()),
            }),
        }
    }

    /// Who holds it: this process.
    pub fn holder(&self) -> &LockHolder {
        self.inner.lock.holder()
    }

    /// The state file this lock is for.
    pub fn state_path(&self) -> &Path {
        &self.inner.lock.state_path
    }
}

/// What a writer holds: the OS lock and the journal's in-process side,
/// shared by the [`StateLock`] and its journals.
#[derive(Debug)]
pub(crate) struct Held {
    pub(crate) lock: LockInner,
    journal: Mutex<JournalSlot>,
}

impl Held {
    pub(crate) fn state_path(&self) -> &Path {
        &self.lock.state_path
    }

    pub(crate) fn still_at_path(&self) -> bool {
        self.lock.still_at_path()
    }

    pub(crate) fn lock_path(&self) -> &Path {
        self.lock.lock_path()
    }

    pub(crate) fn journal_path(&self) -> PathBuf {
        sibling(self.state_path(), ".journal")
    }

    /// The journal's in-process state. A panic while it was held leaves the
    /// journal's on-disk state unknown, so that refuses further use.
    pub(crate) fn slot(&self) -> Result<MutexGuard<'_, JournalSlot>, StateError> {
        self.journal.lock().map_err(|_| StateError::JournalBroken {
            path: self.journal_path(),
        })
    }
}

/// Appends purchase events to the journal. Obtained from
/// [`StateStore::journal`](super::StateStore::journal).
///
/// It holds the writer lock's handle, so the lock stays held while any
/// `Journal` lives, even if the [`StateLock`](super::StateLock) is dropped
/// first. It is `Send`; share it between tasks behind a mutex.
#[derive(Debug)]
pub struct Journal {
    pub(crate) lock: Arc<Held>,
}

impl Journal {
    /// The journal file's path.
    pub fn path(&self) -> PathBuf {
        self.lock.journal_path()
    }

    /// Records that a purchase of `spec` under `key` is about to be sent.
    ///
    /// Durable (written and fsync'd) when it returns `Ok`: only then may the
    /// request be sent. On `Err`, do not send it. Once any append under
    /// this lock has failed (a full disk, say), every intent is refused, so
    /// no request is sent after a failed write.
    pub fn record_intent(
        &mut self,
        key: &Key,
        spec: &Spec,
        name: Option<&str>,
        at: Timestamp,
    ) -> Result<(), StateError> {
        self.record_batch(&[JournalEntry::Intent {
            key: key.clone(),
            spec: spec.clone(),
            name: name.map(str::to_owned),
            at,
            by_policy: false,
        }])
    }

    /// Records how the purchase of `key` ended. Durable when it returns `Ok`:
    /// only then does the package count as done.
    pub fn record_outcome(
        &mut self,
        key: &Key,
        outcome: &JournalOutcome,
    ) -> Result<(), StateError> {
        self.record_batch(&[JournalEntry::Outcome {
            key: key.clone(),
            outcome: outcome.clone(),
        }])
    }

    /// Records several events, in order, with one write and one fsync
    /// (group commit: the cost of an fsync is shared by everything that was
    /// waiting for one). All of them are durable when it returns `Ok`; on
    /// `Err` none of them counts (a partly written batch is cut off, or the
    /// journal refuses further use), so no request may be sent on the
    /// strength of an intent in it. After a failed append, a batch holding
    /// an intent is refused ([`StateError::JournalBroken`]); one of outcomes
    /// only is still written.
    ///
    /// Each entry is checked as [`record_intent`](Self::record_intent) and
    /// [`record_outcome`](Self::record_outcome) check it (an outcome may
    /// follow its intent within the batch); one bad entry refuses the batch.
    pub fn record_batch(&mut self, entries: &[JournalEntry]) -> Result<(), StateError> {
        if entries.is_empty() {
            return Ok(());
        }
        let path = self.path();
        let mut slot = self.lock.slot()?;
        let mut pending = slot.pending.clone();
        let events = events_of(self.lock.state_path(), &path, &mut pending, entries)?;
        slot.append(&path, &events)?;
        slot.pending = pending;
        Ok(())
    }
}

/// A local state: the lock is the operating system's, so the only way to
/// lose it is for the lock file to leave its path (the state directory
/// renamed or replaced): then another process can lock a new file there,
/// and this one sends nothing more.
impl Fence for Journal {
    fn permit(&self, _proof: Proof) -> Result<SendPermit, StateError> {
        if self.lock.still_at_path() {
            Ok(SendPermit::unbounded())
        } else {
            Err(StateError::LockMoved {
                path: self.lock.state_path().to_owned(),
                lock: self.lock.lock_path().to_owned(),
            })
        }
    }
}

/// The lines' events of `entries`, each checked as
/// [`Journal::record_batch`] checks it; `pending` (the keys with an intent
/// and no outcome yet) is updated as they go.
pub(crate) fn events_of<'e>(
    state_path: &Path,
    journal_path: &Path,
    pending: &mut BTreeSet<Key>,
    entries: &'e [JournalEntry],
) -> Result<Vec<(&'e Key, Event)>, StateError> {
    let mut events = Vec::with_capacity(entries.len());
    for entry in entries {
        match entry {
            JournalEntry::Intent {
                key,
                spec,
                name,
                at,
                by_policy,
            } => {
                if spec.key() != *key {
                    return Err(StateError::InvalidRecord {
                        path: state_path.to_owned(),
                        key: key.clone(),
                        problem: format!("the intent's spec is for {}", spec.key()),
                    });
                }
                pending.insert(key.clone());
                events.push((
                    key,
                    Event::Intent {
                        spec: spec.clone(),
                        name: name.clone(),
                        at: *at,
                        by_policy: *by_policy,
                    },
                ));
            }
            JournalEntry::Outcome { key, outcome } => {
                if !pending.remove(key) {
                    return Err(StateError::OutcomeWithoutIntent {
                        path: journal_path.to_owned(),
                        key: key.clone(),
                    });
                }
                events.push((key, Event::Outcome(outcome.clone())));
            }
        }
    }
    Ok(events)
}

/// One event for [`Journal::record_batch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JournalEntry {
    /// A purchase of `spec` under `key` is about to be sent.
    Intent {
        key: Key,
        spec: Spec,
        name: Option<String>,
        at: Timestamp,
        /// Bought for a coverage policy ([`Record::by_policy`]).
        by_policy: bool,
    },
    /// How the purchase of `key` ended.
    Outcome { key: Key, outcome: JournalOutcome },
}

/// Which state file a journal line applies on top of.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Generation {
    pub lineage: Option<String>,
    pub serial: u64,
}

/// The journal's in-process side, shared by every [`Journal`] of one lock and
/// by `write`, behind the lock's mutex so appends and folds never interleave.
#[derive(Debug, Default)]
pub(crate) struct JournalSlot {
    /// The generation new lines are tagged with; `None` until first needed
    /// (read from the state file), then kept current by every write.
    pub generation: Option<Generation>,
    /// The state file as loaded under this lock (see
    /// [`LoadedFile`]); taken by the next write.
    pub loaded_file: Option<LoadedFile>,
    /// Open append handle, `None` when the journal file has not been opened
    /// (or was just removed by a fold).
    file: Option<File>,
    /// Length of the journal's valid content: where a failed append is cut back to.
    len: u64,
    /// A write or fsync failed: what is on disk is unknown, refuse to go on.
    pub broken: bool,
    /// An append failed (even if cleanly cut back): no new intent is
    /// recorded under this lock, so no purchase request follows a failed
    /// write, even if a later, smaller write would fit. Outcomes still are
    /// while the file is intact: the answers of requests already sent.
    failed: bool,
    /// Keys with an intent and no outcome yet, under this lock.
    pending: BTreeSet<Key>,
}

impl JournalSlot {
    /// The journal file this run appends to, once it has been opened.
    pub(crate) fn open_file(&self) -> Option<&File> {
        self.file.as_ref()
    }

    /// Forgets the open handle; the next append reopens (or recreates) the file.
    pub fn close(&mut self) {
        self.file = None;
        self.len = 0;
    }

    /// Appends the lines of `events` with one write and one fsync.
    fn append(&mut self, path: &Path, events: &[(&Key, Event)]) -> Result<(), StateError> {
        let has_intent = events
            .iter()
            .any(|(_, e)| matches!(e, Event::Intent { .. }));
        if self.failed && has_intent {
            return Err(StateError::JournalBroken {
                path: path.to_owned(),
            });
        }
        let result = self.write_lines(path, events);
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    fn write_lines(&mut self, path: &Path, events: &[(&Key, Event)]) -> Result<(), StateError> {
        if self.broken {
            return Err(StateError::JournalBroken {
                path: path.to_owned(),
            });
        }
        let generation = self
            .generation
            .clone()
            .ok_or_else(|| StateError::JournalBroken {
                path: path.to_owned(),
            })?;
        let mut line = Vec::new();
        for (key, event) in events {
            line.extend_from_slice(&encode_line(path, &generation, key, event)?);
        }
        if self.file.is_none() {
            let (file, len) = open_for_append(path)?;
            self.file = Some(file);
            self.len = len;
        }
        let Some(file) = self.file.as_mut() else {
            return Err(StateError::JournalBroken {
                path: path.to_owned(),
            });
        };
        if let Err(source) = file.write_all(&line) {
            // Cut a partial line off, so a later append cannot bury it in the
            // middle of the file where it would read as corruption.
            if file
                .set_len(self.len)
                .and_then(|()| file.sync_all())
                .is_err()
            {
                self.broken = true;
            }
            return Err(StateError::io("append to the journal", path, source));
        }
        if let Err(source) = file.sync_data() {
            // After a failed fsync the page cache may claim data the disk
            // never got; retrying could falsely succeed (fsyncgate).
            self.broken = true;
            return Err(StateError::io("sync the journal", path, source));
        }
        self.len += line.len() as u64;
        Ok(())
    }
}

/// Opens the journal for appending, creating it (and making its directory
/// entry durable) or cutting off a torn last line left by a crash.
fn open_for_append(path: &Path) -> Result<(File, u64), StateError> {
    let mut options = OpenOptions::new();
    options.read(true).append(true);
    match crate::files::owner_only(&mut options.clone())
        .create_new(true)
        .open(path)
    {
        Ok(file) => {
            sync_parent_dir(path)?;
            Ok((file, 0))
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let mut file = options
                .open(path)
                .map_err(|source| StateError::io("open the journal", path, source))?;
            // Reading a FIFO or device below would wait or never end.
            let meta = file
                .metadata()
                .map_err(|source| StateError::io("open the journal", path, source))?;
            if FileKind::of(&meta).is_some() {
                return Err(StateError::JournalNotAFile {
                    path: path.to_owned(),
                });
            }
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)
                .map_err(|source| StateError::io("read the journal", path, source))?;
            let contents = parse(path, &bytes)?;
            if contents.valid_len < bytes.len() as u64 {
                file.set_len(contents.valid_len)
                    .and_then(|()| file.sync_all())
                    .map_err(|source| {
                        StateError::io("cut the torn end off the journal", path, source)
                    })?;
            }
            Ok((file, contents.valid_len))
        }
        Err(source) => Err(StateError::io("create the journal", path, source)),
    }
}

/// What happened to a package, as written in a line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Event {
    Intent {
        spec: Spec,
        name: Option<String>,
        at: Timestamp,
        /// A coverage policy's renewal: the record is marked
        /// [`Record::by_policy`]. Written only when true.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        by_policy: bool,
    },
    Outcome(JournalOutcome),
}

/// One line as written; `checksum` last.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LineIn {
    lineage: Option<String>,
    serial: u64,
    key: Key,
    event: Event,
    checksum: String,
}

#[derive(Serialize)]
struct LineOut<'a> {
    lineage: Option<&'a str>,
    serial: u64,
    key: &'a Key,
    event: &'a Event,
    #[serde(skip_serializing_if = "Option::is_none")]
    checksum: Option<&'a str>,
}

/// A verified line, with its 1-based line number for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Line {
    pub number: usize,
    pub generation: Generation,
    pub key: Key,
    pub event: Event,
}

fn line_json(path: &Path, out: &LineOut<'_>) -> Result<Vec<u8>, StateError> {
    serde_json::to_vec(out).map_err(|source| StateError::Encode {
        path: path.to_owned(),
        source,
    })
}

pub(crate) fn encode_line(
    path: &Path,
    generation: &Generation,
    key: &Key,
    event: &Event,
) -> Result<Vec<u8>, StateError> {
    let mut out = LineOut {
        lineage: generation.lineage.as_deref(),
        serial: generation.serial,
        key,
        event,
        checksum: None,
    };
    let checksum = sha256_tagged(&line_json(path, &out)?);
    out.checksum = Some(&checksum);
    let mut line = line_json(path, &out)?;
    line.push(b'\n');
    Ok(line)
}

fn decode_line(path: &Path, bytes: &[u8], number: usize) -> Result<Line, String> {
    let line: LineIn =
        serde_json::from_slice(bytes).map_err(|e| format!("not a journal entry: {e}"))?;
    let body = LineOut {
        lineage: line.lineage.as_deref(),
        serial: line.serial,
        key: &line.key,
        event: &line.event,
        checksum: None,
    };
    let computed = line_json(path, &body)
        .map(|b| sha256_tagged(&b))
        .map_err(|e| e.to_string())?;
    if computed != line.checksum {
        return Err("its checksum does not match its content".to_owned());
    }
    Ok(Line {
        number,
        generation: Generation {
            lineage: line.lineage,
            serial: line.serial,
        },
        key: line.key,
        event: line.event,
    })
}

/// A journal read back from disk.
#[derive(Debug, Default)]
pub(crate) struct Contents {
    pub lines: Vec<Line>,
    /// Bytes up to the end of the last valid line.
    pub valid_len: u64,
    /// The last line was torn (and is not in `lines`).
    pub torn: bool,
}

/// Reads the journal at `path`; `None` when there is none.
///
/// Anything but a regular file there is refused before it is opened:
/// reading `/dev/full` or `/dev/zero` never ends, opening a FIFO blocks,
/// and appends to a link would land in a file the next fold does not remove.
pub(crate) fn read(path: &Path) -> Result<Option<Contents>, StateError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if !meta.is_file() => {
            return Err(StateError::JournalNotAFile {
                path: path.to_owned(),
            });
        }
        _ => {}
    }
    let bytes = match files::read_regular(path) {
        Ok(bytes) => bytes,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(OpenError::NotRegular(_)) => {
            return Err(StateError::JournalNotAFile {
                path: path.to_owned(),
            });
        }
        Err(OpenError::Io(source)) => return Err(StateError::io("read the journal", path, source)),
    };
    parse(path, &bytes).map(Some)
}

/// Splits and verifies a journal's lines. A bad last line is torn and
/// ignored; a bad line before a good one is corruption.
pub(crate) fn parse(path: &Path, bytes: &[u8]) -> Result<Contents, StateError> {
    let mut contents = Contents::default();
    let mut start = 0;
    let mut number = 0;
    while start < bytes.len() {
        number += 1;
        let rest = &bytes[start..];
        let (segment, terminated) = match rest.iter().position(|&b| b == b'\n') {
            Some(end) => (&rest[..end], true),
            None => (rest, false),
        };
        let next = start + segment.len() + usize::from(terminated);
        let result = if terminated {
            decode_line(path, segment, number)
        } else {
            Err("it does not end with a newline".to_owned())
        };
        match result {
            Ok(line) => {
                contents.lines.push(line);
                contents.valid_len = next as u64;
            }
            Err(_) if next >= bytes.len() => {
                // The append that a crash interrupted: it never returned Ok,
                // so its purchase was never sent.
                tracing::warn!(journal = %path.display(), line = number, "ignoring a torn last line");
                contents.torn = true;
            }
            Err(problem) => {
                return Err(StateError::JournalCorrupt {
                    path: path.to_owned(),
                    line: number,
                    problem,
                });
            }
        }
        start = next;
    }
    Ok(contents)
}

/// Keeps the lines that apply to the state file on disk (`disk`, with its
/// `packages`) and checks that the others were already folded into it.
pub(crate) fn current_lines(
    journal_path: &Path,
    state_path: &Path,
    disk: &Generation,
    packages: &BTreeMap<Key, Record>,
    lines: Vec<Line>,
) -> Result<Vec<Line>, StateError> {
    let mut current = Vec::new();
    let mut stale = Vec::new();
    for line in lines {
        let g = &line.generation;
        let folded_already = disk.lineage.is_some()
            && ((g.lineage.is_none() && g.serial == 0)
                || (g.lineage == disk.lineage && g.serial < disk.serial));
        if *g == *disk {
            current.push(line);
        } else if folded_already {
            stale.push(line);
        } else {
            return Err(StateError::JournalMismatch {
                path: journal_path.to_owned(),
                state_path: state_path.to_owned(),
                journal_lineage: g.lineage.clone(),
                journal_serial: g.serial,
                state_lineage: disk.lineage.clone(),
                state_serial: disk.serial,
            });
        }
    }
    if !stale.is_empty() {
        let missing: Vec<Key> = recorded_purchases(&stale)
            .into_iter()
            .filter(|(key, hash)| packages.get(key).is_none_or(|r| r.spec_hash != *hash))
            .map(|(key, _)| key)
            .collect();
        if !missing.is_empty() {
            return Err(StateError::JournalNotFolded {
                path: journal_path.to_owned(),
                state_path: state_path.to_owned(),
                state_serial: disk.serial,
                keys: missing,
            });
        }
        tracing::info!(
            journal = %journal_path.display(),
            lines = stale.len(),
            "ignoring journal lines already folded into the state file"
        );
    }
    Ok(current)
}

/// The packages a run of lines leaves recorded (every intent not voided by a
/// `failed` outcome), with the spec hash each was bought with.
fn recorded_purchases(lines: &[Line]) -> BTreeMap<Key, SpecHash> {
    let mut recorded = BTreeMap::new();
    let mut open = BTreeMap::new();
    for line in lines {
        match &line.event {
            Event::Intent { spec, .. } => {
                open.insert(line.key.clone(), spec.hash());
            }
            Event::Outcome(JournalOutcome::Failed { .. }) => {
                open.remove(&line.key);
            }
            Event::Outcome(_) => {
                if let Some(hash) = open.remove(&line.key) {
                    recorded.insert(line.key.clone(), hash);
                }
            }
        }
    }
    recorded.extend(open);
    recorded
}

/// Applies `lines` (all of the file's generation, in order) to `packages`
/// and `failed` (the last failed attempts).
pub(crate) fn replay(
    journal_path: &Path,
    packages: &mut BTreeMap<Key, Record>,
    failed: &mut FailedAttempts,
    lines: &[Line],
) -> Result<(), StateError> {
    // Per key: the intent awaiting its outcome, and the record it displaced
    // (restored if eSMS refuses the purchase).
    let mut pending: BTreeMap<&Key, (&Line, Option<Record>)> = BTreeMap::new();
    for line in lines {
        let key = &line.key;
        match &line.event {
            Event::Intent {
                spec,
                name,
                at,
                by_policy,
            } => {
                if spec.key() != *key {
                    return Err(StateError::JournalCorrupt {
                        path: journal_path.to_owned(),
                        line: line.number,
                        problem: format!("an intent for {key} carries the spec of {}", spec.key()),
                    });
                }
                let record = Record {
                    spec: spec.clone(),
                    spec_hash: spec.hash(),
                    name: name.clone(),
                    status: Status::Unconfirmed,
                    service_preview_id: None,
                    result_code: None,
                    result_message: Some(NO_OUTCOME_MESSAGE.to_owned()),
                    submitted_at: Some(*at),
                    confirmed: None,
                    by_policy: *by_policy,
                };
                let displaced = packages.insert(key.clone(), record);
                // A second intent before an outcome keeps the first one's
                // record as "before": the first request may have been sent.
                pending.insert(key, (line, displaced));
            }
            Event::Outcome(outcome) => {
                remember_failure(failed, key, outcome);
                replay_outcome(journal_path, packages, &mut pending, line, outcome)?;
            }
        }
    }
    Ok(())
}

/// Keeps a failed attempt as the key's last; a submission clears it.
fn remember_failure(failed: &mut FailedAttempts, key: &Key, outcome: &JournalOutcome) {
    match outcome {
        JournalOutcome::Failed {
            result_code,
            result_message,
            at: Some(at),
        } => {
            failed.insert(
                key.clone(),
                FailedAttempt {
                    code: result_code.clone(),
                    message: result_message.clone(),
                    at: *at,
                },
            );
        }
        JournalOutcome::Submitted { .. } => {
            failed.remove(key);
        }
        JournalOutcome::Failed { at: None, .. } | JournalOutcome::Unconfirmed { .. } => {}
    }
}

/// One outcome line's effect on the records.
fn replay_outcome<'l>(
    journal_path: &Path,
    packages: &mut BTreeMap<Key, Record>,
    pending: &mut BTreeMap<&'l Key, (&'l Line, Option<Record>)>,
    line: &'l Line,
    outcome: &JournalOutcome,
) -> Result<(), StateError> {
    let key = &line.key;
    match pending.remove(key) {
        Some((_, displaced)) => {
            if let JournalOutcome::Failed { .. } = outcome {
                match displaced {
                    Some(before) => packages.insert(key.clone(), before),
                    None => packages.remove(key),
                };
            } else if let Some(record) = packages.get_mut(key) {
                set_outcome(record, outcome);
            }
        }
        // The intent was folded by a write made while this purchase
        // was in flight: the outcome updates the folded record. A
        // failure cannot restore what was there before (the fold
        // replaced it), so the record stays unconfirmed: safe.
        None => match packages.get_mut(key) {
            Some(record) => set_outcome(record, outcome),
            None if matches!(outcome, JournalOutcome::Failed { .. }) => {}
            None => {
                return Err(StateError::JournalCorrupt {
                    path: journal_path.to_owned(),
                    line: line.number,
                    problem: format!("an outcome for {key}, which has no intent or record"),
                });
            }
        },
    }
    Ok(())
}

/// Sets every field an outcome decides, so applying it twice changes nothing.
fn set_outcome(record: &mut Record, outcome: &JournalOutcome) {
    match outcome {
        JournalOutcome::Submitted {
            service_preview_id,
            result_code,
            result_message,
        } => {
            record.status = Status::Submitted;
            record.service_preview_id = service_preview_id.clone();
            record.result_code = Some(result_code.clone());
            record.result_message = Some(result_message.clone());
        }
        JournalOutcome::Unconfirmed { reason } => {
            record.status = Status::Unconfirmed;
            record.service_preview_id = None;
            record.result_code = None;
            record.result_message = Some(reason.clone());
        }
        JournalOutcome::Failed { .. } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Oaid, Tier};
    use jiff::civil::date;

    fn spec(oaid: &str) -> Spec {
        Spec {
            oaid: Oaid::parse(oaid).unwrap(),
            tier: Tier::Advanced,
            start: date(2026, 12, 1),
            duration_months: 6,
        }
    }

    fn gen_(serial: u64) -> Generation {
        Generation {
            lineage: Some("L".to_owned()),
            serial,
        }
    }

    fn line_bytes(generation: &Generation, key: &Key, event: Event) -> Vec<u8> {
        encode_line(Path::new("j"), generation, key, &event).unwrap()
    }

    fn intent(s: &Spec) -> Event {
        Event::Intent {
            spec: s.clone(),
            name: Some("n".to_owned()),
            at: "2026-11-26T10:00:00Z".parse().unwrap(),
            by_policy: false,
        }
    }

    fn submitted() -> Event {
        Event::Outcome(JournalOutcome::Submitted {
            service_preview_id: Some("42".to_owned()),
            result_code: "100".to_owned(),
            result_message: "Success".to_owned(),
        })
    }

    fn failed() -> Event {
        Event::Outcome(JournalOutcome::Failed {
            result_code: Some("104".to_owned()),
            result_message: "OA not found".to_owned(),
            at: Some(Timestamp::UNIX_EPOCH),
        })
    }

    fn lines(events: Vec<(Generation, Key, Event)>) -> Vec<Line> {
        let bytes: Vec<u8> = events
            .into_iter()
            .flat_map(|(g, k, e)| line_bytes(&g, &k, e))
            .collect();
        parse(Path::new("j"), &bytes).unwrap().lines
    }

    fn replayed(base: &BTreeMap<Key, Record>, lines: &[Line]) -> BTreeMap<Key, Record> {
        let mut packages = base.clone();
        replay(
            Path::new("j"),
            &mut packages,
            &mut FailedAttempts::new(),
            lines,
        )
        .unwrap();
        packages
    }

    #[cfg(unix)]
    #[test]
    fn a_new_journal_is_owner_only_like_the_state() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("oapkg.state.json.journal");
        let (_file, len) = open_for_append(&path).unwrap();
        assert_eq!(len, 0);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, crate::files::NEW_FILE_MODE);
    }

    #[test]
    fn a_line_is_one_json_object_with_its_own_checksum() {
        let s = spec("12");
        let bytes = line_bytes(&gen_(3), &s.key(), intent(&s));
        assert_eq!(bytes.last(), Some(&b'\n'));
        assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 1);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.starts_with(
                r#"{"lineage":"L","serial":3,"key":"12@2026-12-01","event":{"intent":"#
            ),
            "{text}"
        );
        assert!(text.contains(r#""checksum":"sha256:"#));
        let parsed = parse(Path::new("j"), &bytes).unwrap();
        assert_eq!(parsed.lines.len(), 1);
        assert_eq!(parsed.lines[0].event, intent(&s));
        // Any change to the content breaks the line's checksum.
        let edited = text.replace("\"serial\":3", "\"serial\":4");
        assert!(parse(Path::new("j"), edited.as_bytes()).unwrap().torn);
    }

    #[test]
    fn only_the_last_line_may_be_torn() {
        let s = spec("12");
        let first = line_bytes(&gen_(1), &s.key(), intent(&s));
        let second = line_bytes(&gen_(1), &s.key(), submitted());
        // Torn mid-line (no newline), garbage with a newline, or zeros from a
        // size extended without its data: all ignored when last.
        for tail in [
            &second[..second.len() / 2],
            b"{\"lineage\"\n".as_slice(),
            &[0u8; 40],
        ] {
            let bytes = [first.as_slice(), tail].concat();
            let contents = parse(Path::new("j"), &bytes).unwrap();
            assert_eq!(contents.lines.len(), 1);
            assert!(contents.torn);
            assert_eq!(contents.valid_len, first.len() as u64);
        }
        // The same damage followed by a good line is corruption.
        let bytes = [first.as_slice(), b"{\"lineage\"\n", second.as_slice()].concat();
        let err = parse(Path::new("j"), &bytes).unwrap_err();
        assert!(
            matches!(err, StateError::JournalCorrupt { line: 2, .. }),
            "{err:?}"
        );
        let err = parse(Path::new("j"), &[b"\n".as_slice(), &first].concat()).unwrap_err();
        assert!(
            matches!(err, StateError::JournalCorrupt { line: 1, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn replay_rules_and_idempotence() {
        let a = spec("1");
        let b = spec("2");
        let c = spec("3");
        let d = spec("4");
        let mut base = BTreeMap::new();
        let earlier =
            crate::state::file::tests::record("4", date(2026, 12, 1), Status::Unconfirmed);
        base.insert(d.key(), earlier.clone());
        let g = gen_(1);
        let lines = lines(vec![
            (g.clone(), a.key(), intent(&a)),
            (g.clone(), b.key(), intent(&b)),
            (g.clone(), c.key(), intent(&c)),
            (g.clone(), d.key(), intent(&d)),
            (g.clone(), b.key(), submitted()),
            (g.clone(), c.key(), failed()),
            (g.clone(), d.key(), failed()),
        ]);
        let once = replayed(&base, &lines);
        assert_eq!(once[&a.key()].status, Status::Unconfirmed);
        assert_eq!(
            once[&a.key()].result_message.as_deref(),
            Some(NO_OUTCOME_MESSAGE)
        );
        let rb = &once[&b.key()];
        assert_eq!(rb.status, Status::Submitted);
        assert_eq!(rb.service_preview_id.as_deref(), Some("42"));
        assert_eq!(
            rb.submitted_at,
            Some("2026-11-26T10:00:00Z".parse().unwrap())
        );
        assert_eq!(rb.spec_hash, b.hash());
        assert!(
            !once.contains_key(&c.key()),
            "a refused purchase is not recorded"
        );
        assert_eq!(
            once[&d.key()],
            earlier,
            "a refused purchase keeps the earlier record"
        );
        assert_eq!(
            replayed(&once, &lines),
            once,
            "replaying twice changes nothing"
        );
    }

    #[test]
    fn an_outcome_after_a_fold_updates_the_folded_record() {
        let a = spec("1");
        let before = lines(vec![(gen_(1), a.key(), intent(&a))]);
        let folded = replayed(&BTreeMap::new(), &before);
        let after = lines(vec![(gen_(2), a.key(), submitted())]);
        let now = replayed(&folded, &after);
        assert_eq!(now[&a.key()].status, Status::Submitted);
        assert_eq!(replayed(&now, &after), now);
        let orphan = lines(vec![(gen_(2), spec("9").key(), submitted())]);
        let mut packages = BTreeMap::new();
        let err = replay(
            Path::new("j"),
            &mut packages,
            &mut FailedAttempts::new(),
            &orphan,
        )
        .unwrap_err();
        assert!(matches!(err, StateError::JournalCorrupt { .. }));
    }

    #[test]
    fn lines_are_classified_against_the_file_on_disk() {
        let a = spec("1");
        let b = spec("2");
        let all = lines(vec![
            (Generation::default(), a.key(), intent(&a)),
            (gen_(1), a.key(), submitted()),
            (gen_(2), b.key(), intent(&b)),
        ]);
        let folded = replayed(&BTreeMap::new(), &all[..2]);
        let current = current_lines(
            Path::new("j"),
            Path::new("s"),
            &gen_(2),
            &folded,
            all.clone(),
        )
        .unwrap();
        assert_eq!(current, all[2..]);
        // Stale lines whose purchases are not in the file are refused.
        let err = current_lines(
            Path::new("j"),
            Path::new("s"),
            &gen_(2),
            &BTreeMap::new(),
            all.clone(),
        )
        .unwrap_err();
        assert!(
            matches!(&err, StateError::JournalNotFolded { keys, .. } if keys == &[a.key()]),
            "{err:?}"
        );
        // A newer serial, another lineage, or no state file: refused.
        for disk in [
            gen_(1),
            Generation {
                lineage: Some("M".into()),
                serial: 2,
            },
            Generation::default(),
        ] {
            let err = current_lines(
                Path::new("j"),
                Path::new("s"),
                &disk,
                &folded,
                all[1..].to_vec(),
            )
            .unwrap_err();
            assert!(
                matches!(err, StateError::JournalMismatch { .. }),
                "{disk:?}: {err:?}"
            );
        }
    }
}
