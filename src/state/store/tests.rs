//! The store against real files in a temporary directory: round trips,
//! refusals that leave the file untouched, the backup, conflicts, and the
//! journal's recording, replay and folding.

use std::collections::{BTreeMap, BTreeSet};

use jiff::civil::date;

use super::*;
use crate::spec::{Key, Oaid, Spec, Tier};
use crate::state::file::tests::{Case, packages, record};
use crate::state::journal::NO_OUTCOME_MESSAGE;
use crate::state::{JournalOutcome, Record, Status};

const NOW: Duration = Duration::ZERO;

fn store(dir: &tempfile::TempDir) -> StateStore {
    StateStore::new(dir.path().join("state").join("oapkg.state.json"))
}

fn state_with(packages: BTreeMap<Key, Record>) -> State {
    State {
        packages,
        ..State::default()
    }
}

fn spec(oaid: &str) -> Spec {
    Spec {
        oaid: Oaid::parse(oaid).unwrap(),
        tier: Tier::Premium,
        start: date(2026, 12, 1),
        duration_months: 12,
    }
}

fn at(text: &str) -> jiff::Timestamp {
    text.parse().unwrap()
}

/// A state of [`packages`] written, locked and loaded, with a purchase of
/// `spec("1")` journaled since: what `apply` holds before its final write.
fn loaded_with_a_purchase(store: &StateStore) -> (StateLock, Loaded, Journal, Spec) {
    write(store, &mut state_with(packages())).unwrap();
    let (lock, loaded) = store.lock_and_load("oapkg apply", NOW).unwrap();
    let mut journal = store.journal(&lock).unwrap();
    let a = spec("1");
    journal
        .record_intent(&a.key(), &a, None, at("2026-11-26T10:00:00Z"))
        .unwrap();
    journal.record_outcome(&a.key(), &submitted("5")).unwrap();
    (lock, loaded, journal, a)
}

fn submitted(id: &str) -> JournalOutcome {
    JournalOutcome::Submitted {
        service_preview_id: Some(id.to_owned()),
        result_code: "100".to_owned(),
        result_message: "Success".to_owned(),
    }
}

/// Names in the state directory, to check nothing was left behind.
fn dir_entries(store: &StateStore) -> BTreeSet<String> {
    fs::read_dir(store.path().parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// Writes `state` under a fresh lock.
fn write(store: &StateStore, state: &mut State) -> Result<StateId, StateError> {
    let lock = store.lock("test", NOW)?;
    store.write(&lock, state)
}

#[test]
fn a_missing_file_is_an_empty_state() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = store(&dir).load().unwrap();
    assert_eq!(loaded.state, State::default());
    assert_eq!(
        loaded.id,
        StateId {
            lineage: None,
            serial: 0,
            checksum: None
        }
    );
    assert!(
        !dir.path().join("state").exists(),
        "loading creates nothing"
    );
}

#[test]
fn write_then_load_round_trips_and_the_serial_grows() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let mut state = state_with(packages());
    let id1 = write(&store, &mut state).unwrap();
    assert_eq!(id1.serial, 1);
    assert_eq!(state.serial, 1);
    let lineage = state.lineage.clone().expect("a lineage is assigned");
    assert!(uuid::Uuid::parse_str(&lineage).is_ok());
    assert_eq!(id1.lineage.as_deref(), Some(lineage.as_str()));

    let loaded = store.load().unwrap();
    assert_eq!(loaded.state, state);
    assert_eq!(loaded.id, id1);

    let mut next = loaded.state;
    next.packages.pop_first();
    let id2 = write(&store, &mut next).unwrap();
    assert_eq!(id2.serial, 2);
    assert_eq!(id2.lineage, id1.lineage, "the lineage is fixed at creation");
    assert_ne!(id2.checksum, id1.checksum);
    assert_eq!(store.load().unwrap().state, next);
    assert_eq!(
        dir_entries(&store),
        names(&["oapkg.state.json", "oapkg.state.json.backup"]),
        "no temporary, lock or journal file left behind"
    );
}

#[test]
fn equal_content_gives_identical_sorted_bytes() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let bytes: Vec<Vec<u8>> = dirs
        .iter()
        .map(|dir| {
            let store = store(dir);
            let mut state = state_with(packages());
            state.lineage = Some("fixed-lineage".to_owned());
            write(&store, &mut state).unwrap();
            fs::read(store.path()).unwrap()
        })
        .collect();
    assert_eq!(bytes[0], bytes[1]);
    let text = String::from_utf8(bytes[0].clone()).unwrap();
    let keys: Vec<usize> = packages()
        .keys()
        .map(|k| text.find(k.as_str()).unwrap())
        .collect();
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "packages sorted by key"
    );
    assert!(text.ends_with("}\n"));
}

#[test]
fn the_backup_holds_the_previous_version_and_loads() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let mut state = state_with(packages());
    write(&store, &mut state).unwrap();
    let first = fs::read(store.path()).unwrap();
    assert!(
        !store.backup_path().exists(),
        "nothing to back up on creation"
    );

    state.packages.pop_last();
    write(&store, &mut state).unwrap();
    assert_eq!(fs::read(store.backup_path()).unwrap(), first);
    let backup = StateStore::new(store.backup_path()).load().unwrap();
    assert_eq!(backup.state.serial, 1);
    assert_eq!(backup.state.packages, packages());

    let second = fs::read(store.path()).unwrap();
    write(&store, &mut state).unwrap();
    assert_eq!(fs::read(store.backup_path()).unwrap(), second);
}

#[cfg(unix)]
#[test]
fn a_write_keeps_the_file_mode() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    write(&store, &mut State::default()).unwrap();
    fs::set_permissions(store.path(), fs::Permissions::from_mode(0o640)).unwrap();
    let mut state = store.load().unwrap().state;
    write(&store, &mut state).unwrap();
    let mode = fs::metadata(store.path()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o640);
}

#[test]
fn refused_files_are_left_untouched_by_load_and_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let mut state = state_with(packages());
    write(&store, &mut state).unwrap();
    let good = fs::read(store.path()).unwrap();
    let text = String::from_utf8(good.clone()).unwrap();
    let edited = text.replacen("\"submitted\"", "\"imported\"", 1);
    assert_ne!(edited, text);
    let future = text.replacen("\"format_version\": 1", "\"format_version\": 7", 1);
    let extra = text.replacen("\"serial\": 1,", "\"serial\": 1,\n  \"note\": \"mine\",", 1);

    let cases: Vec<Case> = vec![
        ("edited", edited.into_bytes(), |e| {
            matches!(e, StateError::ChecksumMismatch { .. })
        }),
        ("truncated", good[..good.len() - 40].to_vec(), |e| {
            matches!(e, StateError::Truncated { .. })
        }),
        ("empty", Vec::new(), |e| {
            matches!(e, StateError::Empty { .. })
        }),
        ("whitespace", b"\n\n".to_vec(), |e| {
            matches!(e, StateError::Empty { .. })
        }),
        ("not json", b"<html>oops</html>\n".to_vec(), |e| {
            matches!(e, StateError::NotJson { .. })
        }),
        (
            "unknown format_version",
            future.into_bytes(),
            |e| matches!(e, StateError::UnknownFormatVersion { found, .. } if found == "7"),
        ),
        ("unknown field", extra.into_bytes(), |e| {
            matches!(e, StateError::Malformed { .. })
        }),
    ];
    let expected_names = names(&["oapkg.state.json"]);
    for (name, bytes, expected) in cases {
        fs::write(store.path(), &bytes).unwrap();
        let _ = fs::remove_file(store.backup_path());

        let err = store.load().expect_err(name);
        assert!(expected(&err), "{name}: load gave {err:?}");
        assert!(
            err.to_string()
                .contains(&store.path().display().to_string()),
            "{name}: {err}"
        );

        let lock = store.lock("test", NOW).unwrap();
        let mut fresh = State::default();
        let err = store.write(&lock, &mut fresh).expect_err(name);
        assert!(expected(&err), "{name}: write gave {err:?}");
        let mut stale = state.clone();
        let err = store.write(&lock, &mut stale).expect_err(name);
        assert!(expected(&err), "{name}: write gave {err:?}");
        drop(lock);

        assert_eq!(
            fs::read(store.path()).unwrap(),
            bytes,
            "{name}: bytes changed"
        );
        assert_eq!(
            dir_entries(&store),
            expected_names,
            "{name}: files left behind"
        );
        assert_eq!(fresh, State::default(), "{name}: state changed on error");
    }
}

#[test]
fn a_stale_state_is_not_written_over_a_newer_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    write(&store, &mut state_with(packages())).unwrap();
    let mut old = store.load().unwrap().state;
    let mut newer = old.clone();
    newer.packages.pop_first();
    write(&store, &mut newer).unwrap();
    let bytes = fs::read(store.path()).unwrap();

    for mut state in [old.clone(), State::default()] {
        let err = write(&store, &mut state).unwrap_err();
        assert!(
            matches!(err, StateError::Conflict { disk_serial: 2, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("take the lock first"), "{err}");
    }
    old.packages.clear();
    assert!(write(&store, &mut old).is_err());
    assert_eq!(fs::read(store.path()).unwrap(), bytes);
}

#[test]
fn a_directory_at_the_state_path_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::new(dir.path());
    let err = store.load().unwrap_err();
    assert!(matches!(err, StateError::NotAFile { .. }), "{err:?}");
    let lock = store.lock("test", NOW).unwrap();
    let err = store.write(&lock, &mut State::default()).unwrap_err();
    assert!(matches!(err, StateError::NotAFile { .. }), "{err:?}");
    drop(lock);
    let left: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "nothing written into the directory");
}

#[test]
fn an_unusable_directory_gives_a_clear_error_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // A regular file where the state directory should be.
    fs::write(dir.path().join("state"), "not a directory").unwrap();
    let store = store(&dir);
    let err = store.lock("test", NOW).unwrap_err();
    assert!(
        matches!(
            &err,
            StateError::Io {
                action: "create the state directory",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("state"), "{err}");
    assert_eq!(
        fs::read_to_string(dir.path().join("state")).unwrap(),
        "not a directory"
    );

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path().join("ro").join("oapkg.state.json"));
        let lock = store.lock("test", NOW).unwrap();
        let ro = dir.path().join("ro");
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o555)).unwrap();
        // root ignores directory permissions; only check where they apply.
        if fs::write(ro.join("probe"), "").is_err() {
            let err = store.write(&lock, &mut state_with(packages())).unwrap_err();
            assert!(matches!(err, StateError::Io { .. }), "{err:?}");
            assert!(err.to_string().contains(&ro.display().to_string()), "{err}");
            let left: BTreeSet<_> = fs::read_dir(&ro)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert_eq!(left, names(&["oapkg.state.json.lock"]));
        }
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[test]
fn a_lock_from_another_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = store(&dir);
    let b = StateStore::new(dir.path().join("other.json"));
    let lock = b.lock("test", NOW).unwrap();
    let err = a.write(&lock, &mut State::default()).unwrap_err();
    assert!(matches!(err, StateError::WrongLock { .. }));
    assert!(matches!(
        a.journal(&lock).unwrap_err(),
        StateError::WrongLock { .. }
    ));
}

#[test]
fn the_store_lock_names_the_holder_and_unlock_clears_a_dead_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let lock = store.lock("oapkg apply", NOW).unwrap();
    let err = store.lock("oapkg apply", NOW).unwrap_err();
    assert!(err.to_string().contains("running \"oapkg apply\""), "{err}");
    assert!(matches!(
        store.unlock().unwrap_err(),
        StateError::Locked { .. }
    ));
    drop(lock);
    assert_eq!(store.unlock().unwrap(), UnlockOutcome::NotLocked);
    fs::write(store.lock_path(), "{}").unwrap();
    assert_eq!(
        store.unlock().unwrap(),
        UnlockOutcome::Removed {
            previous_holder: None
        }
    );
}

// ---- journal ------------------------------------------------------------

#[test]
fn an_intent_without_outcome_loads_as_unconfirmed() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    write(&store, &mut state_with(packages())).unwrap();
    let before = store.load().unwrap();
    let file_bytes = fs::read(store.path()).unwrap();

    let (lock, _) = store.lock_and_load("oapkg apply", NOW).unwrap();
    let mut journal = store.journal(&lock).unwrap();
    let s = spec("12345");
    journal
        .record_intent(&s.key(), &s, Some("Shop"), at("2026-11-26T10:00:00Z"))
        .unwrap();
    // Recording a purchase does not touch the state file.
    assert_eq!(fs::read(store.path()).unwrap(), file_bytes);

    let check = |loaded: Loaded| {
        let record = &loaded.state.packages[&s.key()];
        assert_eq!(record.status, Status::Unconfirmed);
        assert_eq!(record.name.as_deref(), Some("Shop"));
        assert_eq!(record.spec_hash, s.hash());
        assert_eq!(record.submitted_at, Some(at("2026-11-26T10:00:00Z")));
        assert_eq!(record.result_message.as_deref(), Some(NO_OUTCOME_MESSAGE));
        assert_eq!(loaded.state.packages.len(), before.state.packages.len() + 1);
        // Same file version, different content: the id must differ.
        assert_eq!(loaded.id.serial, before.id.serial);
        assert_ne!(loaded.id.checksum, before.id.checksum);
    };
    // Seen by a reader while the writer still holds the lock...
    check(store.load().unwrap());
    // ...and after the writer died without writing (drop = crash here).
    drop(journal);
    drop(lock);
    check(store.load().unwrap());
}

#[test]
fn intent_then_submitted_loads_as_submitted_at_the_intent_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let (lock, loaded) = store.lock_and_load("oapkg apply", NOW).unwrap();
    assert_eq!(loaded.id, StateId::default());
    let mut journal = store.journal(&lock).unwrap();
    let s = spec("12345");
    journal
        .record_intent(&s.key(), &s, None, at("2026-11-26T10:00:00Z"))
        .unwrap();
    let after_intent = store.load().unwrap().id;
    journal.record_outcome(&s.key(), &submitted("777")).unwrap();
    let loaded = store.load().unwrap();
    assert_ne!(
        loaded.id, after_intent,
        "every recorded event changes the id"
    );
    assert_eq!(loaded.id.lineage, None, "no state file yet");
    let record = &loaded.state.packages[&s.key()];
    assert_eq!(record.status, Status::Submitted);
    assert_eq!(record.service_preview_id.as_deref(), Some("777"));
    assert_eq!(record.result_code.as_deref(), Some("100"));
    assert_eq!(record.result_message.as_deref(), Some("Success"));
    assert_eq!(record.submitted_at, Some(at("2026-11-26T10:00:00Z")));

    // The first write creates the file with the journaled package in it.
    let mut state = loaded.state.clone();
    store.write(&lock, &mut state).unwrap();
    assert!(!store.journal_path().exists());
    assert_eq!(store.load().unwrap().state, state);
    assert_eq!(state.packages, loaded.state.packages);
}

#[test]
fn a_refused_purchase_is_not_recorded_and_keeps_an_earlier_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    write(&store, &mut state_with(packages())).unwrap();
    let (lock, before) = store.lock_and_load("oapkg apply", NOW).unwrap();
    let mut journal = store.journal(&lock).unwrap();
    let failed = JournalOutcome::Failed {
        result_code: Some("104".to_owned()),
        result_message: "OA not found".to_owned(),
        at: Some(jiff::Timestamp::UNIX_EPOCH),
    };
    let new = spec("12345");
    let existing = packages().into_values().next().unwrap().spec;
    for s in [&new, &existing] {
        journal
            .record_intent(&s.key(), s, None, at("2026-11-26T10:00:00Z"))
            .unwrap();
        journal.record_outcome(&s.key(), &failed).unwrap();
    }
    let loaded = store.load().unwrap();
    assert_eq!(loaded.state.packages, before.state.packages);
    // What is kept is the last failed attempt of each key, recorded or not.
    let attempt = crate::state::FailedAttempt {
        code: Some("104".to_owned()),
        message: "OA not found".to_owned(),
        at: jiff::Timestamp::UNIX_EPOCH,
    };
    assert_eq!(
        loaded.state.failed_attempts,
        BTreeMap::from([
            (new.key(), attempt.clone()),
            (existing.key(), attempt.clone())
        ])
    );
    assert_ne!(loaded.id, before.id, "the failed attempts are content");
    // Written, they survive a load; a submission clears its key's.
    let mut state = loaded.state.clone();
    store.write(&lock, &mut state).unwrap();
    assert_eq!(store.load().unwrap().state, state);
    let mut journal = store.journal(&lock).unwrap();
    journal
        .record_intent(&new.key(), &new, None, at("2026-11-27T10:00:00Z"))
        .unwrap();
    journal
        .record_outcome(
            &new.key(),
            &JournalOutcome::Submitted {
                service_preview_id: Some("1".to_owned()),
                result_code: "100".to_owned(),
                result_message: "ok".to_owned(),
            },
        )
        .unwrap();
    let loaded = store.load().unwrap();
    assert_eq!(
        loaded.state.failed_attempts,
        BTreeMap::from([(existing.key(), attempt)])
    );
    // Nothing sent (the run stopped first) is no attempt: nothing kept.
    let mut journal = store.journal(&lock).unwrap();
    let other = spec("777");
    journal
        .record_intent(&other.key(), &other, None, at("2026-11-27T10:00:00Z"))
        .unwrap();
    journal
        .record_outcome(
            &other.key(),
            &JournalOutcome::Failed {
                result_code: None,
                result_message: "not sent: the run stopped first".to_owned(),
                at: None,
            },
        )
        .unwrap();
    assert!(
        !store
            .load()
            .unwrap()
            .state
            .failed_attempts
            .contains_key(&other.key())
    );
}

#[test]
fn a_state_without_failed_attempts_keeps_its_bytes_and_checksum() {
    // A file written before `failed_attempts` existed (no such field) still
    // verifies, and an empty map is not written.
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    write(&store, &mut state_with(packages())).unwrap();
    let text = std::fs::read_to_string(store.path()).unwrap();
    assert!(!text.contains("failed_attempts"), "{text}");
    assert!(store.load().unwrap().state.failed_attempts.is_empty());
}

#[test]
fn an_outcome_needs_an_intent_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let lock = store.lock("oapkg apply", NOW).unwrap();
    let mut journal = store.journal(&lock).unwrap();
    let s = spec("1");
    let err = journal
        .record_outcome(&s.key(), &submitted("1"))
        .unwrap_err();
    assert!(matches!(err, StateError::OutcomeWithoutIntent { .. }));
    let other = spec("2");
    let err = journal.record_intent(&s.key(), &other, None, at("2026-11-26T10:00:00Z"));
    assert!(matches!(err, Err(StateError::InvalidRecord { .. })));
    assert!(!store.journal_path().exists(), "nothing was recorded");
}

#[test]
fn a_batch_is_recorded_whole_or_not_at_all() {
    use crate::state::JournalEntry;
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let lock = store.lock("oapkg apply", NOW).unwrap();
    let mut journal = store.journal(&lock).unwrap();
    let (a, b, c) = (spec("1"), spec("2"), spec("3"));
    let intent = |s: &Spec| JournalEntry::Intent {
        key: s.key(),
        spec: s.clone(),
        name: None,
        at: at("2026-11-26T10:00:00Z"),
        by_policy: false,
    };
    let outcome = |s: &Spec| JournalOutcome::Submitted {
        service_preview_id: Some(s.oaid.to_string()),
        result_code: "100".to_owned(),
        result_message: "Success".to_owned(),
    };
    // An outcome may follow its intent in the same batch.
    journal
        .record_batch(&[
            intent(&a),
            intent(&b),
            JournalEntry::Outcome {
                key: a.key(),
                outcome: outcome(&a),
            },
        ])
        .unwrap();
    let lines = fs::read_to_string(store.journal_path()).unwrap();
    assert_eq!(lines.lines().count(), 3);
    // One bad entry refuses the whole batch: nothing of it is written.
    for bad in [
        JournalEntry::Outcome {
            key: c.key(),
            outcome: outcome(&c),
        },
        JournalEntry::Intent {
            key: c.key(),
            spec: a.clone(),
            name: None,
            at: at("2026-11-26T10:00:00Z"),
            by_policy: false,
        },
    ] {
        let err = journal
            .record_batch(&[
                JournalEntry::Outcome {
                    key: b.key(),
                    outcome: outcome(&b),
                },
                bad,
            ])
            .unwrap_err();
        assert!(
            matches!(
                err,
                StateError::OutcomeWithoutIntent { .. } | StateError::InvalidRecord { .. }
            ),
            "{err}"
        );
        assert_eq!(fs::read_to_string(store.journal_path()).unwrap(), lines);
    }
    // `b` is still open: its outcome can be recorded now, and not twice.
    journal.record_outcome(&b.key(), &outcome(&b)).unwrap();
    assert!(journal.record_outcome(&b.key(), &outcome(&b)).is_err());
    let loaded = store.load().unwrap().state.packages;
    assert_eq!(loaded[&a.key()].status, Status::Submitted);
    assert_eq!(loaded[&b.key()].service_preview_id.as_deref(), Some("2"));
    assert!(!loaded.contains_key(&c.key()));
}

#[test]
fn a_torn_last_line_is_ignored_and_a_damaged_middle_line_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    write(&store, &mut State::default()).unwrap();
    let lock = store.lock("oapkg apply", NOW).unwrap();
    let mut journal = store.journal(&lock).unwrap();
    let (a, b) = (spec("1"), spec("2"));
    journal
        .record_intent(&a.key(), &a, None, at("2026-11-26T10:00:00Z"))
        .unwrap();
    journal.record_outcome(&a.key(), &submitted("9")).unwrap();
    drop((journal, lock));
    let complete = fs::read(store.journal_path()).unwrap();
    let expected = store.load().unwrap();

    // A crash in the middle of appending b's intent.
    let mut torn = complete.clone();
    torn.extend_from_slice(br#"{"lineage":"x","serial":1,"key":"2@2026-12-01","ev"#);
    fs::write(store.journal_path(), &torn).unwrap();
    assert_eq!(store.load().unwrap(), expected);

    // The same damage with a good line after it is corruption.
    let first_line_end = complete.iter().position(|&b| b == b'\n').unwrap() + 1;
    let mut middle = complete[..first_line_end].to_vec();
    middle.extend_from_slice(b"{\"damaged\n");
    middle.extend_from_slice(&complete[first_line_end..]);
    fs::write(store.journal_path(), &middle).unwrap();
    let state_bytes = fs::read(store.path()).unwrap();
    let err = store.load().unwrap_err();
    assert!(
        matches!(err, StateError::JournalCorrupt { line: 2, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains(&store.journal_path().display().to_string())
    );
    let err = store.lock("oapkg apply", NOW).unwrap_err();
    assert!(matches!(err, StateError::JournalCorrupt { .. }), "{err:?}");
    assert_eq!(fs::read(store.path()).unwrap(), state_bytes);
    assert_eq!(fs::read(store.journal_path()).unwrap(), middle);

    // Back to the torn version: the next writer folds the good lines and
    // the torn one goes away with the journal.
    fs::write(store.journal_path(), &torn).unwrap();
    let (lock, loaded) = store.lock_and_load("oapkg apply", NOW).unwrap();
    assert_eq!(loaded.state.packages, expected.state.packages);
    assert!(!store.journal_path().exists());
    let mut journal = store.journal(&lock).unwrap();
    journal
        .record_intent(&b.key(), &b, None, at("2026-11-26T10:00:00Z"))
        .unwrap();
    assert_eq!(store.load().unwrap().state.packages.len(), 2);
}

#[test]
fn a_new_append_cuts_off_a_torn_end_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    write(&store, &mut State::default()).unwrap();
    let lock = store.lock("oapkg apply", NOW).unwrap();
    let mut journal = store.journal(&lock).unwrap();
    let (a, b) = (spec("1"), spec("2"));
    journal
        .record_intent(&a.key(), &a, None, at("2026-11-26T10:00:00Z"))
        .unwrap();
    // Damage appears at the end (e.g. a failed append that could not be cut
    // back); the journal reopens its file on the next append.
    lock.inner.slot().unwrap().close();
    let mut bytes = fs::read(store.journal_path()).unwrap();
    let good_len = bytes.len();
    bytes.extend_from_slice(b"{\"torn");
    fs::write(store.journal_path(), &bytes).unwrap();
    journal
        .record_intent(&b.key(), &b, None, at("2026-11-26T10:00:01Z"))
        .unwrap();
    let bytes = fs::read(store.journal_path()).unwrap();
    assert!(!bytes.windows(6).any(|w| w == b"{\"torn"));
    assert!(bytes.len() > good_len);
    let loaded = store.load().unwrap();
    assert_eq!(loaded.state.packages.len(), 2);
}

#[test]
fn write_folds_the_journal_and_replay_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    write(&store, &mut state_with(packages())).unwrap();
    let (lock, loaded) = store.lock_and_load("oapkg apply", NOW).unwrap();
    let mut journal = store.journal(&lock).unwrap();
    let (a, b) = (spec("1"), spec("2"));
    journal
        .record_intent(&a.key(), &a, None, at("2026-11-26T10:00:00Z"))
        .unwrap();
    journal.record_outcome(&a.key(), &submitted("5")).unwrap();
    journal
        .record_intent(&b.key(), &b, None, at("2026-11-26T10:00:01Z"))
        .unwrap();
    let journaled = store.load().unwrap();
    let journal_bytes = fs::read(store.journal_path()).unwrap();

    // The caller's state was loaded before the purchases: write still folds
    // them in (replaying over the caller's state).
    let mut state = loaded.state;
    let id = store.write(&lock, &mut state).unwrap();
    assert!(
        !store.journal_path().exists(),
        "the journal is folded and removed"
    );
    assert_eq!(state.packages, journaled.state.packages);
    assert_eq!(id.serial, journaled.id.serial + 1);
    let after = store.load().unwrap();
    assert_eq!(after.state, state);
    assert_eq!(after.id, id);

    // A crash after the new file was durable but before the journal was
    // removed leaves the old journal beside the new file: ignored on load,
    // removed by the next writer, and nothing changes.
    fs::write(store.journal_path(), &journal_bytes).unwrap();
    assert_eq!(store.load().unwrap(), after);
    drop((journal, lock));
    let (lock, relocked) = store.lock_and_load("oapkg apply", NOW).unwrap();
    assert_eq!(relocked, after, "no write was needed");
    assert!(!store.journal_path().exists());

    // Replaying the same journal over the folded state changes nothing.
    let lines = journal::parse(&store.journal_path(), &journal_bytes)
        .unwrap()
        .lines;
    let mut twice = after.state.packages.clone();
    let mut failed_twice = after.state.failed_attempts.clone();
    journal::replay(&store.journal_path(), &mut twice, &mut failed_twice, &lines).unwrap();
    assert_eq!(twice, after.state.packages);
    assert_eq!(failed_twice, after.state.failed_attempts);
    drop(lock);
}

/// `apply` reads the state once: the journal opened after `lock_and_load`
/// takes its generation from the state just loaded instead of reading the
/// file again (a large file takes a good part of a second to check). Shown
/// by spoiling the file in between: the journal still opens and records
/// under the loaded generation, and the write at the end, which does read
/// the file again, refuses the spoilt one.
#[test]
fn the_journal_after_lock_and_load_does_not_read_the_state_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    write(&store, &mut state_with(packages())).unwrap();
    let (lock, loaded) = store.lock_and_load("oapkg apply", NOW).unwrap();
    let good = fs::read(store.path()).unwrap();
    fs::write(store.path(), b"{ not a state").unwrap();
    let mut journal = store.journal(&lock).unwrap();
    let a = spec("1");
    journal
        .record_intent(&a.key(), &a, None, at("2026-11-26T10:00:00Z"))
        .unwrap();
    let mut state = loaded.state.clone();
    assert!(
        store.write(&lock, &mut state).is_err(),
        "the fold reads the file"
    );
    fs::write(store.path(), &good).unwrap();
    let id = store.write(&lock, &mut state).unwrap();
    assert_eq!(id.serial, loaded.id.serial + 1);
    assert!(
        state.packages.contains_key(&a.key()),
        "the intent is folded"
    );
    drop((journal, lock));
}

#[test]
fn a_journal_left_by_a_dead_writer_is_folded_by_the_next_lock() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    write(&store, &mut state_with(packages())).unwrap();
    let loaded_before = store.load().unwrap();

    let lock = store.lock("oapkg apply", NOW).unwrap();
    let mut journal = store.journal(&lock).unwrap();
    let a = spec("1");
    journal
        .record_intent(&a.key(), &a, None, at("2026-11-26T10:00:00Z"))
        .unwrap();
    drop((journal, lock)); // killed before writing

    let (lock, loaded) = store.lock_and_load("oapkg state rm", NOW).unwrap();
    assert!(!store.journal_path().exists());
    assert_eq!(loaded.id.serial, loaded_before.id.serial + 1);
    assert_eq!(loaded.state.packages[&a.key()].status, Status::Unconfirmed);

    // A state loaded before that lock is out of date: writing it would drop
    // the recovered purchase, so it is refused.
    let mut stale = loaded_before.state;
    let err = store.write(&lock, &mut stale).unwrap_err();
    assert!(matches!(err, StateError::Conflict { .. }), "{err:?}");

    // One loaded under the lock can confirm it (`state confirm`).
    let mut state = loaded.state;
    state.packages.get_mut(&a.key()).unwrap().status = Status::Submitted;
    store.write(&lock, &mut state).unwrap();
    assert_eq!(
        store.load().unwrap().state.packages[&a.key()].status,
        Status::Submitted
    );
}

#[test]
fn outcomes_after_a_write_are_recorded_against_the_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let (lock, loaded) = store.lock_and_load("oapkg apply", NOW).unwrap();
    let mut journal = store.journal(&lock).unwrap();
    let a = spec("1");
    journal
        .record_intent(&a.key(), &a, None, at("2026-11-26T10:00:00Z"))
        .unwrap();
    let mut state = loaded.state;
    store.write(&lock, &mut state).unwrap(); // creates the file, folds the intent
    journal.record_outcome(&a.key(), &submitted("5")).unwrap();
    drop((journal, lock)); // killed before the final write

    let loaded = store.load().unwrap();
    assert_eq!(loaded.id.serial, 1);
    let record = &loaded.state.packages[&a.key()];
    assert_eq!(record.status, Status::Submitted);
    assert_eq!(record.submitted_at, Some(at("2026-11-26T10:00:00Z")));
}

#[test]
fn a_journal_for_another_state_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    write(&store, &mut state_with(packages())).unwrap();
    let other = StateStore::new(dir.path().join("other.json"));
    write(&other, &mut State::default()).unwrap();
    let lock = other.lock("oapkg apply", NOW).unwrap();
    let mut journal = other.journal(&lock).unwrap();
    let a = spec("1");
    journal
        .record_intent(&a.key(), &a, None, at("2026-11-26T10:00:00Z"))
        .unwrap();
    drop((journal, lock));

    let state_bytes = fs::read(store.path()).unwrap();
    fs::rename(other.journal_path(), store.journal_path()).unwrap();
    let err = store.load().unwrap_err();
    assert!(matches!(err, StateError::JournalMismatch { .. }), "{err:?}");
    let err = store.lock("oapkg apply", NOW).unwrap_err();
    assert!(matches!(err, StateError::JournalMismatch { .. }), "{err:?}");
    assert_eq!(fs::read(store.path()).unwrap(), state_bytes);
    assert!(store.journal_path().exists(), "the journal is kept");

    // Its own journal with the state file gone is refused too.
    fs::rename(store.journal_path(), other.journal_path()).unwrap();
    fs::remove_file(other.path()).unwrap();
    let err = other.load().unwrap_err();
    assert!(matches!(err, StateError::JournalMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn an_old_journal_whose_purchases_are_not_in_the_file_is_refused() {
    // The state file was replaced by a newer copy from elsewhere (same
    // lineage) while a journal from a crashed run was pending.
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    write(&store, &mut State::default()).unwrap();
    let lock = store.lock("oapkg apply", NOW).unwrap();
    let mut journal = store.journal(&lock).unwrap();
    let a = spec("1");
    journal
        .record_intent(&a.key(), &a, None, at("2026-11-26T10:00:00Z"))
        .unwrap();
    drop((journal, lock));
    let journal_bytes = fs::read(store.journal_path()).unwrap();
    fs::remove_file(store.journal_path()).unwrap();
    let mut elsewhere = store.load().unwrap().state;
    write(&store, &mut elsewhere).unwrap();
    fs::write(store.journal_path(), &journal_bytes).unwrap();

    let err = store.load().unwrap_err();
    assert!(
        matches!(&err, StateError::JournalNotFolded { keys, .. } if keys == &[a.key()]),
        "{err:?}"
    );
    assert!(err.to_string().contains("1@2026-12-01"), "{err}");
}

#[test]
fn a_record_that_contradicts_itself_is_never_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let mut bad = record("1", date(2026, 12, 1), Status::Imported);
    bad.spec_hash = spec("2").hash();
    let mut state = state_with([(bad.spec.key(), bad)].into_iter().collect());
    let err = write(&store, &mut state).unwrap_err();
    assert!(matches!(err, StateError::InvalidRecord { .. }), "{err:?}");
    assert!(!store.path().exists());
}

#[test]
fn locks_and_journals_can_move_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<StateLock>();
    assert_send_sync::<Journal>();
    assert_send_sync::<StateStore>();
}

/// Set in the child process of `a_killed_writer_blocks_nobody_and_loses_nothing`.
const CHILD_ENV: &str = "OAPKG_STATE_TEST_KILLED_CHILD";

/// The child's half: take the lock, journal an intent, say so, and hang
/// until killed. Does nothing in a normal test run.
#[test]
fn killed_child_helper() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let store = StateStore::new(path);
    let (lock, _) = store.lock_and_load("oapkg apply", NOW).unwrap();
    let mut journal = store.journal(&lock).unwrap();
    let a = spec("1");
    journal
        .record_intent(&a.key(), &a, None, at("2026-11-26T10:00:00Z"))
        .unwrap();
    println!("ready");
    std::thread::sleep(Duration::from_secs(120));
}

#[cfg(unix)]
#[test]
fn a_killed_writer_blocks_nobody_and_loses_nothing() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    write(&store, &mut state_with(packages())).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "state::store::tests::killed_child_helper",
            "--nocapture",
        ])
        .env(CHILD_ENV, store.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let ready = io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line == "ready");
    assert!(ready, "the child did not get the lock");

    let err = store.lock("oapkg apply", NOW).unwrap_err();
    assert!(
        matches!(&err, StateError::Locked { holder: Some(h), .. } if h.pid == child.id()),
        "{err:?}"
    );
    child.kill().unwrap(); // SIGKILL: no destructor runs
    child.wait().unwrap();
    assert!(
        store.lock_path().exists(),
        "the dead holder's label is left"
    );

    let (_lock, loaded) = store.lock_and_load("oapkg apply", NOW).unwrap();
    assert_eq!(
        loaded.state.packages[&spec("1").key()].status,
        Status::Unconfirmed
    );
    assert_eq!(
        loaded.state.serial, 2,
        "the journal was folded at lock time"
    );
    assert!(!store.journal_path().exists());
}

// ---- disk faults ----------------------------------------------------------

#[cfg(unix)]
#[test]
fn a_symlinked_state_path_is_refused_whether_or_not_it_dangles() {
    let dir = tempfile::tempdir().unwrap();
    let real = StateStore::new(dir.path().join("real").join("oapkg.state.json"));
    write(&real, &mut state_with(packages())).unwrap();
    let bytes = fs::read(real.path()).unwrap();
    fs::create_dir_all(dir.path().join("state")).unwrap();
    let linked = store(&dir);
    let dangling = StateStore::new(dir.path().join("state").join("dangling.json"));
    std::os::unix::fs::symlink("../real/oapkg.state.json", linked.path()).unwrap();
    std::os::unix::fs::symlink("../real/missing.json", dangling.path()).unwrap();
    for (store, exists) in [(&linked, true), (&dangling, false)] {
        let err = store.load().unwrap_err();
        assert!(
            matches!(&err, StateError::Symlink { exists: e, .. } if *e == exists),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(message.contains(&store.path().display().to_string()));
        assert!(message.contains("--state "), "{message}");
        let lock = store.lock("test", NOW).unwrap();
        let err = store.write(&lock, &mut state_with(packages())).unwrap_err();
        assert!(matches!(err, StateError::Symlink { .. }), "{err:?}");
        drop(lock);
        assert!(fs::symlink_metadata(store.path()).unwrap().is_symlink());
    }
    assert_eq!(fs::read(real.path()).unwrap(), bytes);
    assert!(!dir.path().join("real").join("missing.json").exists());
}

#[cfg(unix)]
#[test]
fn a_journal_that_is_not_a_regular_file_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    write(&store, &mut state_with(packages())).unwrap();
    let bytes = fs::read(store.path()).unwrap();
    // A directory; a device that reads zeros forever (reading it used to
    // exhaust memory); a link, even to a journal-shaped regular file.
    let journal = store.journal_path();
    for what in ["directory", "/dev/zero", "link"] {
        match what {
            "directory" => fs::create_dir(&journal).unwrap(),
            "link" => {
                let target = journal.with_extension("elsewhere");
                fs::write(&target, "").unwrap();
                std::os::unix::fs::symlink(target, &journal).unwrap()
            }
            device => std::os::unix::fs::symlink(device, &journal).unwrap(),
        }
        let err = store.load().unwrap_err();
        assert!(
            matches!(err, StateError::JournalNotAFile { .. }),
            "{what}: {err:?}"
        );
        assert!(
            err.to_string().contains("oapkg.state.json.journal"),
            "{err}"
        );
        let err = store.lock("test", NOW).unwrap_err();
        assert!(
            matches!(err, StateError::JournalNotAFile { .. }),
            "{what}: {err:?}"
        );
        assert_eq!(fs::read(store.path()).unwrap(), bytes, "{what}");
        match fs::remove_dir(&journal) {
            Ok(()) => {}
            Err(_) => fs::remove_file(&journal).unwrap(),
        }
    }
}

/// Set in the child process of `after_a_failed_append_no_intent_is_recorded`.
const FULL_CHILD_ENV: &str = "OAPKG_STATE_TEST_FULL_CHILD";

/// The child's half, run with a file size limit: every write past it fails
/// (EFBIG), as on a full disk. Does nothing in a normal test run.
#[test]
fn full_disk_child_helper() {
    let Some(path) = std::env::var_os(FULL_CHILD_ENV) else {
        return;
    };
    let store = StateStore::new(path);
    let lock = store.lock("oapkg apply", NOW).unwrap();
    let mut journal = store.journal(&lock).unwrap();
    let (small, big, later) = (spec("1"), spec("2"), spec("3"));
    let when = at("2026-11-26T10:00:00Z");
    journal
        .record_intent(&small.key(), &small, None, when)
        .unwrap();
    // Too big for what is left: fails, and is cut back off the file.
    let name = "x".repeat(4096);
    let err = journal
        .record_intent(&big.key(), &big, Some(&name), when)
        .unwrap_err();
    println!("big: {err:?}");
    // Would fit, but follows a failed write: refused, so never sent.
    let err = journal
        .record_intent(&later.key(), &later, None, when)
        .unwrap_err();
    println!("later: {err:?}");
    // The answer to a request already sent is still recorded.
    journal
        .record_outcome(&small.key(), &submitted("7"))
        .unwrap();
    println!("outcome recorded");
}

#[cfg(unix)]
#[test]
fn after_a_failed_append_no_intent_is_recorded_but_outcomes_are() {
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let mut child = Command::new(std::env::current_exe().unwrap());
    child
        .args([
            "--exact",
            "state::store::tests::full_disk_child_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(FULL_CHILD_ENV, store.path());
    // SAFETY: setrlimit and signal are async-signal-safe.
    unsafe {
        child.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 2048,
                rlim_max: 2048,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0
                || libc::signal(libc::SIGXFSZ, libc::SIG_IGN) == libc::SIG_ERR
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let output = child.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("big: Io"), "{stdout}");
    assert!(stdout.contains("File too large"), "{stdout}");
    assert!(stdout.contains("later: JournalBroken"), "{stdout}");
    assert!(stdout.contains("outcome recorded"), "{stdout}");
    let loaded = store.load().unwrap().state.packages;
    assert_eq!(loaded.len(), 1, "{loaded:?}");
    assert_eq!(loaded[&spec("1").key()].status, Status::Submitted);
}

/// The write at the end of `apply` skips decoding the file only when it is
/// byte for byte the one loaded under the lock. A file edited in place
/// behind the lock — same file, same length, its modification time put
/// back — is still noticed and refused, the caller's state is left as it
/// was given, and the journal stays.
#[test]
fn a_file_edited_in_place_behind_the_lock_is_refused_even_with_its_length_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let (lock, loaded, journal, a) = loaded_with_a_purchase(&store);

    let before = fs::metadata(store.path()).unwrap();
    let text = fs::read_to_string(store.path()).unwrap();
    let edited = text.replacen("\"Success\"", "\"success\"", 1);
    assert_ne!(edited, text);
    let mut file = OpenOptions::new().write(true).open(store.path()).unwrap();
    file.write_all(edited.as_bytes()).unwrap();
    file.set_modified(before.modified().unwrap()).unwrap();
    drop(file);
    let after = fs::metadata(store.path()).unwrap();
    assert_eq!(file_identity(&after), file_identity(&before));
    assert_eq!(after.len(), before.len());
    assert_eq!(after.modified().unwrap(), before.modified().unwrap());

    let mut state = loaded.state.clone();
    let err = store.write(&lock, &mut state).unwrap_err();
    assert!(
        matches!(err, StateError::ChecksumMismatch { .. }),
        "{err:?}"
    );
    assert_eq!(state, loaded.state, "the state is left as given");
    assert_eq!(fs::read_to_string(store.path()).unwrap(), edited);
    assert!(store.journal_path().exists(), "the journal stays");

    // Put back, the file is folded into as usual.
    fs::write(store.path(), &text).unwrap();
    let id = store.write(&lock, &mut state).unwrap();
    assert_eq!(id.serial, loaded.id.serial + 1);
    assert!(state.packages.contains_key(&a.key()));
    assert!(!store.journal_path().exists());
    drop((journal, lock));
}

/// A write that fails after the journal was replayed into the caller's
/// state (here: the caller changed a record into one that contradicts
/// itself) puts the state back as it was given.
#[test]
fn a_failed_fold_leaves_the_callers_state_as_given() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let (lock, loaded, journal, _) = loaded_with_a_purchase(&store);
    let mut state = loaded.state.clone();
    let spoilt = state.packages.values_mut().last().unwrap();
    spoilt.spec.duration_months = 0;
    let given = state.clone();
    let err = store.write(&lock, &mut state).unwrap_err();
    assert!(matches!(err, StateError::InvalidRecord { .. }), "{err:?}");
    assert_eq!(state, given, "the state is left as given");
    assert!(store.journal_path().exists(), "the journal stays");
    drop((journal, lock));
}

/// `state restore` changes files only under the lock: with the lock held
/// elsewhere it fails naming the holder, and the missing state stays
/// missing.
#[test]
fn restore_waits_for_the_lock_and_changes_nothing_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    write(&store, &mut state_with(packages())).unwrap();
    write(&store, &mut store.load().unwrap().state).unwrap();
    fs::remove_file(store.path()).unwrap();
    let held = store.lock("oapkg apply", NOW).unwrap();
    let error = store.restore("oapkg state restore", NOW).unwrap_err();
    assert!(matches!(error, StateError::Locked { .. }), "{error}");
    assert!(!store.path().exists());
    drop(held);
    let restored = store.restore("oapkg state restore", NOW).unwrap();
    assert_eq!(restored.serial, 1);
    assert_eq!(store.load().unwrap().state.packages, packages());
}
