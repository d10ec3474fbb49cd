//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz): one per input
//! oapkg reads from outside — a manifest, a state file, a journal, a saved
//! plan and an eSMS answer.
//!
//! Each takes arbitrary bytes, runs the same reader oapkg runs, and panics
//! only when a reader panics or breaks one of the invariants checked here:
//!
//! - **manifest**: every diagnostic points inside the file (at most one line
//!   past the last; a column only with a line), and a file that passes
//!   the per-file and the cross-document checks has no key twice;
//! - **state file**: whatever `decode` accepts encodes back to a file that
//!   decodes to the same state, with the same bytes the second time;
//! - **journal**: whatever `load` accepts, `write` can write
//!   ([`validate_records`](crate::state::file::validate_records)); replaying
//!   the same lines again changes nothing; every intent not refused by eSMS
//!   is in the loaded state (never lose track of a purchase);
//! - **saved plan**: whatever is accepted renders in every format and
//!   survives its own encode → decode;
//! - **eSMS answer**: an HTTP error status is never taken for a purchase;
//!   and the answer, and an error page made of it with the request (keys
//!   and all) echoed at a position the input picks, leave no piece of
//!   [`KEY_PIECE_CHARS`](crate::secrets::KEY_PIECE_CHARS) characters of either key in what any call's
//!   outcome says.
//!
//! Inputs guarded by checksums (state file, journal lines, saved plans)
//! would almost never reach the code behind the checksum with mutated
//! bytes, so those entries also take a second road: the input is parsed
//! loosely, re-signed the way oapkg signs, and then read strictly.
//!
//! This module is compiled only for unit tests (so that `cargo test` and
//! clippy keep it working) and with the `fuzzing` feature, which
//! `fuzz/Cargo.toml` turns on; it is never in the shipped binary. Findings are kept as regression
//! tests at the bottom of this file.

use std::collections::BTreeMap;
use std::path::Path;

use crate::esms::classify::{self, Exchange, PurchaseOutcome};
use crate::esms::{Credentials, client, wire};
use crate::manifest::validate::{self, Origin};
use crate::plan::render;
use crate::plan::saved::SavedPlan;
use crate::secrets::key_piece_in;
use crate::spec::{Key, Oaid, Spec, Tier};
use crate::state::file::{self, DiskState};
use crate::state::journal::{self, Event, Generation, JournalOutcome};
use crate::state::{FailedAttempts, Record, StateStore, Status, store};

/// The date every entry point plans against, so a run is reproducible.
fn today() -> jiff::civil::Date {
    jiff::civil::date(2026, 11, 26)
}

/// Manifest loader: parse and validate one file, both as named with `-f`
/// and as found in a directory.
pub fn manifest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = u32::try_from(yaml_lines(text)).unwrap_or(u32::MAX);
    for origin in [Origin::Named, Origin::Discovered] {
        let outcome = validate::check_file("fuzz.yaml", text, origin, today());
        for diagnostic in outcome.errors.iter().chain(&outcome.warnings) {
            let at = &diagnostic.source;
            // Line 0 names the whole file, column 0 a whole line.
            assert!(
                at.line <= lines.saturating_add(1) && (at.line > 0 || at.column == 0),
                "diagnostic outside the file ({lines} lines): {}:{}: {}",
                at.line,
                at.column,
                diagnostic.message
            );
        }
        // The file on its own, as `load` checks it after every file:
        // a key accepted there is declared once.
        if outcome.errors.is_empty() {
            let count = outcome.packages.len();
            let (desired, errors, _) = validate::check_together(outcome.packages);
            if errors.is_empty() {
                assert_eq!(desired.len(), count, "a valid file declares one key twice");
            }
        }
    }
}

/// How many lines YAML sees in `text`: a line ends at LF, CRLF or a lone CR.
fn yaml_lines(text: &str) -> usize {
    let bytes = text.as_bytes();
    let breaks = bytes
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'\n' || (b == b'\r' && bytes.get(i + 1) != Some(&b'\n')))
        .count();
    breaks + 1
}

/// State file loader: `decode` as read from disk, then re-signed.
pub fn state_file(data: &[u8]) {
    let path = Path::new("fuzz.state.json");
    if let Ok(state) = file::decode(path, data) {
        assert_round_trip(path, &state);
    }
    // Behind the checksum: the same content with a correct checksum.
    let Ok(serde_json::Value::Object(object)) = serde_json::from_slice(data) else {
        return;
    };
    let lineage = object
        .get("lineage")
        .and_then(|v| v.as_str())
        .unwrap_or("L");
    let serial = object.get("serial").and_then(|v| v.as_u64()).unwrap_or(1);
    let Some(Ok(packages)) = object
        .get("packages")
        .map(|p| serde_json::from_value::<BTreeMap<Key, Record>>(p.clone()))
    else {
        return;
    };
    let failed_attempts = match object.get("failed_attempts") {
        None => FailedAttempts::new(),
        Some(value) => match serde_json::from_value::<FailedAttempts>(value.clone()) {
            Ok(failed) => failed,
            Err(_) => return,
        },
    };
    let Ok((bytes, _)) = file::encode(
        path,
        lineage,
        serial,
        &packages,
        &failed_attempts,
        &Default::default(),
    ) else {
        return;
    };
    match file::decode(path, &bytes) {
        Ok(state) => {
            assert_eq!(state.packages, packages, "decode changed the packages");
            assert_eq!(
                state.failed_attempts, failed_attempts,
                "decode changed the failed attempts"
            );
            assert_round_trip(path, &state);
        }
        // The records contradict themselves: refused, which is the point.
        Err(_) => assert!(file::validate_records(path, &packages).is_err()),
    }
}

fn assert_round_trip(path: &Path, state: &DiskState) {
    let (bytes, checksum) = file::encode(
        path,
        &state.lineage,
        state.serial,
        &state.packages,
        &state.failed_attempts,
        &state.observations,
    )
    .expect("an accepted state encodes");
    assert_eq!(
        checksum, state.checksum,
        "the checksum is not a function of the content"
    );
    let again = file::decode(path, &bytes).expect("an encoded state decodes");
    assert_eq!(&again, state, "state did not survive encode → decode");
    let (bytes_again, _) = file::encode(
        path,
        &again.lineage,
        again.serial,
        &again.packages,
        &again.failed_attempts,
        &again.observations,
    )
    .expect("an accepted state encodes");
    assert_eq!(bytes, bytes_again, "encoding is not deterministic");
}

/// Journal loader: the first byte picks the road. Even: the rest is a
/// journal file read as it is (framing, checksums, torn lines). Odd: the
/// rest is a small program of purchase events, written as signed lines over
/// a state file, optionally torn or with one byte flipped, then loaded.
pub fn journal(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        load_journal(None, rest);
    } else {
        let (disk, bytes) = journal_program(rest);
        load_journal(disk, &bytes);
    }
}

/// The file generation a program's state file has: lineage `L`, serial 2.
fn program_generation() -> Generation {
    Generation {
        lineage: Some("L".to_owned()),
        serial: 2,
    }
}

fn program_spec(index: u8) -> Spec {
    Spec {
        oaid: Oaid::parse(&(u32::from(index % 4) + 1).to_string()).expect("a digit OAID"),
        tier: Tier::ALL[usize::from(index / 4 % 3)],
        start: jiff::civil::date(2027, 1, if (index / 12).is_multiple_of(2) { 1 } else { 2 }),
        duration_months: 1 + index / 24 % 12,
    }
}

/// Decodes a program: byte 0 says whether a state file exists and what it
/// holds; then one byte per event; a `0xff` byte followed by two more ends
/// the program and damages the journal (truncate or flip at a position).
fn journal_program(program: &[u8]) -> (Option<DiskState>, Vec<u8>) {
    let path = Path::new("fuzz.journal");
    let (&head, events) = program.split_first().unwrap_or((&0, &[]));
    let disk = (head & 1 == 1).then(|| {
        let packages: BTreeMap<Key, Record> = (0..head >> 1 & 7)
            .map(|i| {
                let spec = program_spec(i.wrapping_mul(37));
                let record = recorded(spec.clone(), Status::Submitted);
                (spec.key(), record)
            })
            .collect();
        let generation = program_generation();
        let lineage = generation.lineage.expect("a lineage");
        let failed_attempts = FailedAttempts::new();
        let (_, checksum) = file::encode(
            path,
            &lineage,
            generation.serial,
            &packages,
            &failed_attempts,
            &Default::default(),
        )
        .expect("encodes");
        DiskState {
            lineage,
            serial: generation.serial,
            checksum,
            packages,
            failed_attempts,
            observations: Default::default(),
        }
    });
    let mut bytes = Vec::new();
    let mut steps = events.iter();
    while let Some(&step) = steps.next() {
        if step == 0xff {
            let (Some(&how), Some(&at)) = (steps.next(), steps.next()) else {
                break;
            };
            if !bytes.is_empty() {
                let at = usize::from(at) * bytes.len() / 256;
                if how % 2 == 0 {
                    bytes.truncate(at);
                } else {
                    bytes[at] ^= how;
                }
            }
            break;
        }
        let spec = program_spec(step % 48);
        let generation = match step / 48 % 4 {
            0 | 1 => program_generation(),
            2 => Generation::default(),
            _ => Generation {
                lineage: Some("L".to_owned()),
                serial: 1,
            },
        };
        let event = match step / 192 {
            0 => Event::Intent {
                spec: spec.clone(),
                name: None,
                at: jiff::Timestamp::UNIX_EPOCH,
                by_policy: false,
            },
            _ => Event::Outcome(match step % 3 {
                0 => JournalOutcome::Submitted {
                    service_preview_id: Some("1".to_owned()),
                    result_code: "100".to_owned(),
                    result_message: "Success".to_owned(),
                },
                1 => JournalOutcome::Unconfirmed {
                    reason: "timeout".to_owned(),
                },
                _ => JournalOutcome::Failed {
                    result_code: Some("204".to_owned()),
                    result_message: "no such OA".to_owned(),
                    at: (step % 2 == 0).then_some(jiff::Timestamp::UNIX_EPOCH),
                },
            }),
        };
        bytes
            .extend(journal::encode_line(path, &generation, &spec.key(), &event).expect("encodes"));
    }
    (disk, bytes)
}

fn recorded(spec: Spec, status: Status) -> Record {
    Record {
        spec_hash: spec.hash(),
        spec,
        name: None,
        status,
        service_preview_id: Some("1".to_owned()),
        result_code: Some("100".to_owned()),
        result_message: None,
        submitted_at: None,
        confirmed: None,
        by_policy: false,
    }
}

/// Loads `journal_bytes` over `disk` the way [`StateStore::load`] does and
/// checks what it accepted.
fn load_journal(disk: Option<DiskState>, journal_bytes: &[u8]) {
    let store = StateStore::new("fuzz.state.json");
    let journal_path = Path::new("fuzz.state.json.journal");
    let Ok(contents) = journal::parse(journal_path, journal_bytes) else {
        return;
    };
    assert!(contents.valid_len <= journal_bytes.len() as u64);
    let lines = contents.lines.clone();
    let Ok(loaded) = store.assemble(disk.clone(), Some(contents)) else {
        return;
    };
    let packages = &loaded.state.packages;
    file::validate_records(store.path(), packages)
        .expect("load accepted a journal whose replay the state file cannot hold");

    // The lines of the file's own generation, replayed once more.
    let generation = store::generation_of(disk.as_ref());
    let current: Vec<_> = lines
        .into_iter()
        .filter(|line| line.generation == generation)
        .collect();
    let mut again = packages.clone();
    let mut failed_again = loaded.state.failed_attempts.clone();
    journal::replay(journal_path, &mut again, &mut failed_again, &current)
        .expect("a replayed journal replays again");
    assert_eq!(
        &again, packages,
        "replaying the journal twice changed the state"
    );
    assert_eq!(
        failed_again, loaded.state.failed_attempts,
        "replaying the journal twice changed the failed attempts"
    );

    // Never lose track: an intent whose last word is not a refusal is recorded.
    let mut last: BTreeMap<&Key, &Event> = BTreeMap::new();
    for line in &current {
        if matches!(line.event, Event::Intent { .. }) || last.contains_key(&line.key) {
            last.insert(&line.key, &line.event);
        }
    }
    for (key, event) in last {
        if !matches!(event, Event::Outcome(JournalOutcome::Failed { .. })) {
            let record = packages.get(key).expect("an intent was dropped on load");
            assert_ne!(
                record.status,
                Status::Imported,
                "an intent for {key} left it imported"
            );
        }
    }
}

/// Saved-plan loader: `decode` as read, then the same content re-signed.
pub fn saved_plan(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(plan) = SavedPlan::decode(text) {
        check_saved_plan(&plan);
    }
    let Ok(serde_json::Value::Object(mut object)) = serde_json::from_str(text) else {
        return;
    };
    object.remove("kind");
    object.remove("checksum");
    let Ok(plan) = serde_json::from_value::<SavedPlan>(serde_json::Value::Object(object)) else {
        return;
    };
    if let Ok(decoded) = SavedPlan::decode(&plan.encode()) {
        assert_eq!(decoded, plan, "a re-signed plan decoded differently");
        check_saved_plan(&decoded);
    }
}

fn check_saved_plan(plan: &SavedPlan) {
    let encoded = plan.encode();
    let again = SavedPlan::decode(&encoded).expect("an accepted plan decodes after encode");
    assert_eq!(&again, plan, "plan did not survive encode → decode");
    let Ok(plan) = plan.to_plan() else {
        return;
    };
    render::json(&plan);
    render::text(&plan, &render::TextOptions { color: false });
    render::markdown(&plan, &render::MarkdownOptions::default());
}

/// The keys [`esms_answer`] sends: long and unlike any text oapkg writes.
pub const FUZZ_API_KEY: &str = "AK-7f3e9c2b1d4a6e8f0c5b3a9d7e1f2c4b";
pub const FUZZ_SECRET_KEY: &str = "SK-9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b";

/// eSMS answer parser: the first two bytes are the HTTP status, the rest the
/// body; every call's classifier reads it. Then the same with the request
/// body echoed into it (a proxy's error page), at the offset the last byte
/// picks, as a 5xx answer.
pub fn esms_answer(data: &[u8]) {
    let (status, body) = match data {
        [a, b, body @ ..] => (u16::from_be_bytes([*a, *b]), body),
        _ => return,
    };
    let exchange = Exchange::Answered { status, body };
    let outcome = classify::classify_purchase(exchange);
    if !(200..300).contains(&status) {
        assert!(
            !matches!(
                outcome,
                PurchaseOutcome::Accepted { .. } | PurchaseOutcome::AlreadyExists { .. }
            ),
            "HTTP {status} taken for a purchase: {outcome:?}"
        );
    }
    // Only a code the documentation lists, matched exactly, is acted on as
    // a definite answer; every other one is an unknown outcome.
    if let Some(code) = outcome.code() {
        assert!(
            classify::code_meaning(code).is_some() && code != classify::CODE_RATE_LIMITED,
            "code {code:?} acted on as {outcome:?}"
        );
    }
    let _ = classify::classify_list_oas(exchange);
    let _ = classify::classify_balance(exchange);

    assert_no_key_piece(status, body);
    let at = usize::from(*body.last().unwrap_or(&0)) % (body.len() + 1);
    let page = echo_page(body, at);
    assert_no_key_piece(500 + status % 100, &page);
}

/// `body` with the purchase request oapkg sends echoed into it at `at`.
pub fn echo_page(body: &[u8], at: usize) -> Vec<u8> {
    let credentials = fuzz_credentials();
    let spec = program_spec(1);
    let request = serde_json::to_vec(&wire::PurchaseRequest::new(&credentials, &spec))
        .expect("a request encodes");
    let at = at.min(body.len());
    [&body[..at], &request, &body[at..]].concat()
}

fn fuzz_credentials() -> Credentials {
    Credentials::new(FUZZ_API_KEY, FUZZ_SECRET_KEY).expect("non-empty keys")
}

/// Classifies `body` as each call's answer, the way the client does, and
/// checks that no outcome or error says a piece of either key.
fn assert_no_key_piece(status: u16, body: &[u8]) {
    let credentials = fuzz_credentials();
    let exchange = Exchange::Answered { status, body };
    let texts = [
        serde_json::to_string(&client::purchase_outcome(&credentials, exchange))
            .expect("an outcome encodes"),
        format!(
            "{:?}",
            client::list_oas_result(&credentials, exchange).err()
        ),
        format!("{:?}", client::balance_result(&credentials, exchange).err()),
    ];
    for text in texts {
        if let Some(piece) = key_piece_in(&text, &[FUZZ_API_KEY, FUZZ_SECRET_KEY]) {
            panic!("a piece of a key ({piece:?}) is in {text:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    //! Each entry point over inputs like the seed corpora, and every fuzzer
    //! finding as a regression test.

    use super::*;

    #[test]
    fn manifest_entry_accepts_the_bundled_example() {
        manifest(include_bytes!("../examples/oapkg.yaml"));
        manifest(b"");
        manifest(b"\xff\xfe");
    }

    /// Fuzzer finding (manifest, first minute): an error on line 81 of a
    /// file whose lines end in a lone CR looked "outside the file" to a
    /// check that split lines at LF only. YAML (and editors) break lines at
    /// CR too, so the position was right; the check was fixed, and this
    /// pins the position oapkg reports for such a file.
    #[test]
    fn lone_cr_line_breaks_count_as_lines() {
        let text =
            "apiVersion: oapkg/v1\rkind: PackageSet\rpackages:\r  - oaid: 12\r    tier: gold\r";
        manifest(text.as_bytes());
        let outcome = validate::check_file("cr.yaml", text, Origin::Named, today());
        let lines: Vec<u32> = outcome.errors.iter().map(|d| d.source.line).collect();
        assert!(
            lines.contains(&5),
            "errors at {lines:?}: {:?}",
            outcome.errors
        );
        manifest(include_bytes!(
            "../tests/fuzz-findings/manifest-lone-cr.yaml"
        ));
    }

    /// Fuzzer finding (manifest, after 7 minutes): a file whose second
    /// document repeats the first one's packages. oapkg was right (`load`
    /// reports both duplicates with both places); the fuzz check had asked
    /// the per-file parse alone, which leaves cross-document duplicates to
    /// the check of all files together. Pins that check's answer.
    #[test]
    fn a_key_repeated_in_a_second_document_is_an_error() {
        let text = include_str!("../tests/fuzz-findings/manifest-duplicate-across-documents.yaml");
        manifest(text.as_bytes());
        let outcome = validate::check_file("dup.yaml", text, Origin::Named, today());
        assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
        let (_, errors, _) = validate::check_together(outcome.packages);
        let lines: Vec<(u32, u32)> = errors
            .iter()
            .map(|e| (e.source.line, e.related.as_ref().unwrap().0.line))
            .collect();
        assert_eq!(lines, [(29, 14), (26, 11)], "{errors:?}");
    }

    #[test]
    fn state_entry_round_trips_a_real_state() {
        let spec = program_spec(5);
        let packages = BTreeMap::from([(spec.key(), recorded(spec, Status::Unconfirmed))]);
        let (bytes, _) = file::encode(
            Path::new("s"),
            "L",
            3,
            &packages,
            &FailedAttempts::new(),
            &Default::default(),
        )
        .unwrap();
        state_file(&bytes);
        // The same file with a wrong checksum still reaches the re-signed road.
        let text = String::from_utf8(bytes).unwrap();
        let tampered = text.replace("\"serial\": 3", "\"serial\": 4");
        assert_ne!(tampered, text);
        state_file(tampered.as_bytes());
    }

    #[test]
    fn journal_entry_runs_programs() {
        // No state file; intent, outcome; an intent with no outcome.
        journal(&[1, 0, 0, 192, 7]);
        // A state file with packages; events of several generations; a flip.
        journal(&[1, 0b1111, 3, 51, 100, 200, 250, 0xff, 3, 128]);
        // Torn in the middle.
        journal(&[1, 1, 3, 195, 9, 0xff, 2, 100]);
        journal(&[0, b'{', b'\n']);
    }

    #[test]
    fn saved_plan_entry_reads_a_real_plan() {
        let plan = SavedPlan::from_plan(&crate::plan::render::fixtures::mixed());
        saved_plan(plan.encode().as_bytes());
        // Re-signed road: a changed count with the old checksum.
        saved_plan(
            plan.encode()
                .replacen("\"unchanged\": ", "\"unchanged\": 1", 1)
                .as_bytes(),
        );
    }

    #[test]
    fn an_error_page_echoing_the_request_after_any_filler_leaks_no_key_piece() {
        let filler = "Bad gateway: upstream failed on request ".repeat(6);
        for n in 0..=200 {
            let page = echo_page(&filler.as_bytes()[..n], n);
            for status in [500u16, 502, 200, 404] {
                let mut data = status.to_be_bytes().to_vec();
                data.extend_from_slice(&page);
                esms_answer(&data);
            }
            // And, for some N, the page cut short by the server anywhere
            // in the echo.
            if !n.is_multiple_of(40) {
                continue;
            }
            for end in n..page.len() {
                assert_no_key_piece(502, &page[..end]);
            }
        }
    }

    #[test]
    fn esms_entry_reads_documented_answers() {
        for body in [
            &br#"{"CodeResult":"100","ServicePreviewId":12,"ErrorMessage":""}"#[..],
            br#"{"CodeResult":"199"}"#,
            br#"{"CodeResult":"101","ErrorMessage":"Authorize Failed"}"#,
            br#"{"Balance": 36693, "CodeResponse": "100", "UserID": 9999}"#,
            b"<html>",
        ] {
            for status in [200u16, 500, 429] {
                let mut data = status.to_be_bytes().to_vec();
                data.extend_from_slice(body);
                esms_answer(&data);
            }
        }
    }
}
