//! Hand edits of the state that cannot cost money by accident:
//! `state rm` refuses declared and unconfirmed keys and records whose
//! period has not ended without `--force` (which says what guard goes),
//! `state mv` re-keys a record within its OA only from an undeclared,
//! settled key to a declared, unrecorded one, `state confirm` records who
//! settled an unknown outcome and when; and the plan never offers
//! `state rm` for an orphan that still guards its OA.

use std::path::Path;

use oapkg::spec::Key;
use oapkg::state::{Status, file};

use crate::support::{Env, Pkg, Run, STATE, account, apply, manifest, start, write_manifest};

/// A state recording `1@2026-12-01` (declared in oapkg.yaml at line 4),
/// `2@2026-12-01` (not declared) and `3@2026-12-01` (not declared), on
/// 2027-01-15: the period of `2@2026-12-01` (December) has ended, those of
/// `1@…` (to 2027-11-30) and `3@…` (to 2027-02-28) have not.
fn env() -> Env {
    let env = Env::new().today("2027-01-15");
    env.run(&["init"]).code(0);
    env.file(
        "oapkg.yaml",
        manifest("  - {oaid: \"1\", tier: premium, start: 2026-12-01, duration: 12}\n"),
    );
    env.import("1", "premium", "2026-12-01", "12", &[]).code(0);
    env.import(
        "2",
        "trial",
        "2026-12-01",
        "1",
        &["--service-preview-id", "777"],
    )
    .code(0);
    env.import("3", "advanced", "2026-12-01", "3", &[]).code(0);
    env
}

/// Rewrites the state file (with a valid checksum) so that `key` is
/// unconfirmed as an unknown outcome leaves it: what apply records after a
/// 5xx, without needing one.
fn mark_unconfirmed(env: &Env, key: &str) {
    let path = env.path(STATE);
    let disk = file::decode(&path, &env.read(STATE)).unwrap();
    let mut packages = disk.packages;
    let key = Key::parse(key).unwrap();
    let record = packages.get_mut(&key).unwrap();
    record.status = Status::Unconfirmed;
    record.result_code = Some("503".into());
    record.result_message = Some("no definite answer (HTTP 503)".into());
    // An earlier attempt that failed outright, as apply keeps it.
    let mut failed_attempts = disk.failed_attempts;
    failed_attempts.insert(
        key,
        oapkg::state::FailedAttempt {
            code: Some("102".into()),
            message: "no price list for this service".into(),
            at: jiff::Timestamp::UNIX_EPOCH,
        },
    );
    let (bytes, _) = file::encode(
        Path::new(STATE),
        &disk.lineage,
        disk.serial,
        &packages,
        &failed_attempts,
        &Default::default(),
    )
    .unwrap();
    env.file(STATE, bytes);
}

fn listed(env: &Env) -> serde_json::Value {
    env.run(&["state", "list", "--format", "json"])
        .code(0)
        .json()
}

fn keys(env: &Env) -> Vec<String> {
    listed(env)
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["key"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn rm_refuses_a_declared_key_naming_where_and_removes_nothing() {
    let env = env();
    let before = env.read(STATE);
    let refused = env.run(&["state", "rm", "2@2026-12-01", "1@2026-12-01"]);
    refused
        .code(1)
        .stderr_has("nothing was removed:\n  1@2026-12-01: declared at oapkg.yaml:4")
        .stderr_has("the next apply would buy it again")
        .stderr_has("\nPass --force");
    assert!(
        !refused.stderr.contains("\\n"),
        "real line breaks:\n{}",
        refused.stderr
    );
    assert!(
        !refused.stderr.contains("2@2026-12-01:"),
        "an ended orphan is no reason to refuse:\n{}",
        refused.stderr
    );
    assert_eq!(env.read(STATE), before, "all or nothing");
    // An ended orphan goes at once; a declared key with --force, which
    // says what goes with it.
    env.run(&["state", "rm", "2@2026-12-01"]).code(0);
    env.run(&["state", "rm", "--force", "1@2026-12-01"])
        .code(0)
        .stdout_has("Removed 1 package(s)")
        .stdout_has(
            "1@2026-12-01: still declared at oapkg.yaml:4:5: the next plan shows it as a purchase",
        );
    assert_eq!(keys(&env), ["3@2026-12-01"]);
    // ... and the next plan would buy it again, as the refusal said.
    env.run(&["plan"]).code(0).stdout_has("Plan: 1 to purchase");
}

#[test]
fn rm_refuses_an_unconfirmed_key_and_says_how_to_settle_it() {
    let env = env();
    mark_unconfirmed(&env, "3@2026-12-01");
    let before = env.read(STATE);
    let refused = env.run(&["state", "rm", "3@2026-12-01"]);
    refused
        .code(1)
        .stderr_has(
            "nothing was removed:\n  3@2026-12-01: unconfirmed: eSMS may have charged for it",
        )
        .stderr_has("oapkg state confirm 3@2026-12-01")
        .stderr_has("apply --retry-unconfirmed");
    assert!(!refused.stderr.contains("\\n"), "{}", refused.stderr);
    assert_eq!(env.read(STATE), before);
    env.run(&["state", "rm", "3@2026-12-01", "--force"])
        .code(0)
        .stdout_has(
            "3@2026-12-01: unconfirmed: if eSMS charged for it, that charge is no longer recorded",
        );
    assert_eq!(keys(&env), ["1@2026-12-01", "2@2026-12-01"]);
}

#[test]
fn rm_refuses_when_the_manifests_cannot_be_read_unless_forced() {
    let env = env();
    env.file(
        "oapkg.yaml",
        "apiVersion: oapkg/v1\nkind: PackageSet\npackages:\n  - {oaid: x}\n",
    );
    let before = env.read(STATE);
    env.run(&["state", "rm", "2@2026-12-01"])
        .code(1)
        .stderr_has("cannot read the manifests")
        .stderr_has("oapkg.yaml:4")
        .stderr_has("nothing was removed")
        .stderr_has("--force");
    assert_eq!(env.read(STATE), before);
    // -f names other manifests.
    env.file(
        "other.yaml",
        manifest("  - {oaid: \"3\", tier: advanced, start: 2026-12-01, duration: 3}\n"),
    );
    env.run(&["state", "rm", "-f", "other.yaml", "3@2026-12-01"])
        .code(1)
        .stderr_has("3@2026-12-01: declared at other.yaml:4");
    env.run(&["state", "rm", "-f", "other.yaml", "2@2026-12-01"])
        .code(0);
    env.run(&["state", "rm", "--force", "1@2026-12-01"]).code(0);
    assert_eq!(keys(&env), ["3@2026-12-01"]);
}

#[test]
fn mv_re_keys_a_record_keeping_its_status_and_ids() {
    let env = env();
    // The start eSMS registered, declared (the rule: NEWKEY is declared).
    env.file(
        "oapkg.yaml",
        manifest(
            "  - {oaid: \"1\", tier: premium, start: 2026-12-01, duration: 12}\n\
             \x20 - {oaid: \"2\", tier: trial, start: 2026-12-03, duration: 1}\n",
        ),
    );
    let old = listed(&env)[1].clone();
    env.run(&["state", "mv", "2@2026-12-01", "2@2026-12-03"])
        .code(0)
        .stdout_has("Moved 2@2026-12-01 to 2@2026-12-03");
    let list = listed(&env);
    let moved = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["key"] == "2@2026-12-03")
        .expect("the new key is recorded")
        .clone();
    assert!(!keys(&env).contains(&"2@2026-12-01".to_owned()));
    assert_eq!(moved["start"], "2026-12-03");
    assert_eq!(moved["end"], "2027-01-02");
    for kept in [
        "status",
        "service_preview_id",
        "submitted_at",
        "tier",
        "duration_months",
    ] {
        assert_eq!(moved[kept], old[kept], "{kept} is kept");
    }
    assert_ne!(
        moved["spec_hash"], old["spec_hash"],
        "the spec hash follows the spec"
    );
    // The moved record loads (its key, spec and hash agree) and plans as usual.
    env.run(&["plan"]).code(0).stdout_has("No changes.");
}

#[test]
fn mv_refuses_another_oa_a_recorded_target_and_a_missing_source() {
    let env = env();
    let before = env.read(STATE);
    env.run(&["state", "mv", "2@2026-12-01", "4@2026-12-01"])
        .code(1)
        .stderr_has("different OAs")
        .stderr_has("state import");
    env.run(&["state", "mv", "2@2026-12-01", "2@2026-12-01"])
        .code(1)
        .stderr_has("the same key");
    env.import("2", "trial", "2027-01-01", "1", &[]).code(0);
    let before_target = env.read(STATE);
    env.run(&["state", "mv", "2@2026-12-01", "2@2027-01-01"])
        .code(1)
        .stderr_has("2@2027-01-01 is already recorded")
        .stderr_has("nothing was moved");
    assert_eq!(env.read(STATE), before_target);
    env.run(&["state", "mv", "9@2026-12-01", "9@2026-12-02"])
        .code(1)
        .stderr_has("9@2026-12-01 is not in the state file");
    env.run(&["state", "mv", "2@2026-12-01", "2@2026-13-01"])
        .code(1)
        .stderr_has("OAID@YYYY-MM-DD");
    assert_ne!(before, before_target);
}

#[test]
fn confirm_records_who_and_when_and_clears_the_stale_answer() {
    let env = env();
    // A record never confirmed has no `confirmed` field in the file: state
    // files written before the field existed keep their bytes and checksums.
    assert!(
        !String::from_utf8(env.read(STATE))
            .unwrap()
            .contains("confirmed")
    );
    mark_unconfirmed(&env, "3@2026-12-01");
    let mut confirm = env.command(&[
        "state",
        "confirm",
        "3@2026-12-01",
        "--service-preview-id",
        "4242",
    ]);
    confirm.env("USER", "tester");
    assert!(
        String::from_utf8(env.read(STATE))
            .unwrap()
            .contains("failed_attempts")
    );
    Run::from(confirm.output().unwrap())
        .code(0)
        .stdout_has("Confirmed 3@2026-12-01 (by tester@");
    assert!(
        !String::from_utf8(env.read(STATE))
            .unwrap()
            .contains("failed_attempts"),
        "a confirmed key's failed attempt is cleared, as a purchase clears it"
    );
    let record = listed(&env)[2].clone();
    assert_eq!(record["status"], "submitted");
    assert_eq!(record["service_preview_id"], "4242");
    assert_eq!(record["result_code"], serde_json::Value::Null);
    assert_eq!(
        record["result_message"],
        "confirmed by hand (oapkg state confirm)"
    );
    assert!(
        record["confirmed_by"]
            .as_str()
            .unwrap()
            .starts_with("tester@")
    );
    let at: jiff::Timestamp = record["confirmed_at"].as_str().unwrap().parse().unwrap();
    assert!(jiff::Timestamp::now().duration_since(at).as_secs().abs() < 600);
    env.run(&["state", "show", "3@2026-12-01"])
        .code(0)
        .stdout_has("confirmed_by        tester@")
        .stdout_has("status              submitted");
    // Never confirmed: null in JSON.
    assert_eq!(listed(&env)[0]["confirmed_by"], serde_json::Value::Null);
    // --by names someone else; a second confirm is refused.
    mark_unconfirmed(&env, "2@2026-12-01");
    env.run(&[
        "state",
        "confirm",
        "2@2026-12-01",
        "--by",
        "ana (portal, ticket 12)",
    ])
    .code(0);
    assert_eq!(listed(&env)[1]["confirmed_by"], "ana (portal, ticket 12)");
    assert_eq!(
        listed(&env)[1]["service_preview_id"],
        "777",
        "kept without the flag"
    );
    env.run(&["state", "confirm", "2@2026-12-01"])
        .code(1)
        .stderr_has("not unconfirmed");
    // The file carries the field now, and still loads.
    assert!(
        String::from_utf8(env.read(STATE))
            .unwrap()
            .contains("\"confirmed\"")
    );
    env.run(&["plan"]).code(0).stdout_has("No changes.");
}

#[test]
fn rm_refuses_a_record_whose_period_has_not_ended_and_force_names_the_guard() {
    let env = env();
    let before = env.read(STATE);
    // 3@2026-12-01 runs to 2027-02-28; it is neither declared nor
    // unconfirmed: only its period stops the removal.
    let refused = env.run(&["state", "rm", "3@2026-12-01"]);
    refused
        .code(1)
        .stderr_has(
            "nothing was removed:\n  3@2026-12-01: its period has not ended (it runs to 2027-02-28)",
        )
        .stderr_has("guards its OA against buying them again")
        .stderr_has("\nPass --force");
    assert!(!refused.stderr.contains("\\n"), "{}", refused.stderr);
    assert_eq!(env.read(STATE), before);
    // Its last day still counts.
    let mut on_last_day = env.command(&["state", "rm", "3@2026-12-01"]);
    on_last_day.env("OAPKG_TODAY", "2027-02-28");
    Run::from(on_last_day.output().unwrap())
        .code(1)
        .stderr_has("its period has not ended");
    env.run(&["state", "rm", "--force", "3@2026-12-01"])
        .code(0)
        .stdout_has("With --force, these guards go with them:\n  3@2026-12-01: its period runs to 2027-02-28: a package of this OA and tier over those months is no longer refused without --allow-overlap");
    assert_eq!(keys(&env), ["1@2026-12-01", "2@2026-12-01"]);
}

/// Writes `oapkg.yaml` declaring `packages` (flow-style lines).
fn declare(env: &Env, packages: &[&str]) {
    let lines: String = packages.iter().map(|p| format!("  - {p}\n")).collect();
    env.file("oapkg.yaml", manifest(&lines));
}

#[test]
fn mv_refuses_an_unconfirmed_oldkey_even_with_force() {
    let env = env();
    declare(
        &env,
        &["{oaid: \"3\", tier: advanced, start: 2026-12-02, duration: 3}"],
    );
    mark_unconfirmed(&env, "3@2026-12-01");
    let before = env.read(STATE);
    for force in [&[][..], &["--force"]] {
        let mut args = vec!["state", "mv", "3@2026-12-01", "3@2026-12-02"];
        args.extend_from_slice(force);
        let refused = env.run(&args);
        refused
            .code(1)
            .stderr_has("nothing was moved:\n  3@2026-12-01 is unconfirmed")
            .stderr_has("oapkg state confirm 3@2026-12-01")
            .stderr_has("--force does not override this");
        assert!(!refused.stderr.contains("\\n"), "{}", refused.stderr);
        assert_eq!(env.read(STATE), before, "{force:?}");
    }
    // Confirmed first, it moves.
    env.run(&["state", "confirm", "3@2026-12-01"]).code(0);
    env.run(&["state", "mv", "3@2026-12-01", "3@2026-12-02"])
        .code(0)
        .stdout_has("Moved 3@2026-12-01 to 3@2026-12-02");
}

#[test]
fn mv_refuses_an_undeclared_newkey_or_a_declared_oldkey_without_force() {
    let env = env();
    let before = env.read(STATE);
    // 2@2026-12-05 is declared nowhere.
    env.run(&["state", "mv", "2@2026-12-01", "2@2026-12-05"])
        .code(1)
        .stderr_has("nothing was moved:\n  2@2026-12-05 is not declared in the manifests")
        .stderr_has("\nPass --force");
    // 1@2026-12-01 is still declared: moving its record away would buy it
    // again (and 1@2026-12-05 is not declared either: both reasons at once).
    env.run(&["state", "mv", "1@2026-12-01", "1@2026-12-05"])
        .code(1)
        .stderr_has("\n  1@2026-12-01 is still declared at oapkg.yaml:4")
        .stderr_has("\n  1@2026-12-05 is not declared");
    assert_eq!(env.read(STATE), before);
    // --force overrides the declared checks, and says what it gave up.
    env.run(&["state", "mv", "--force", "1@2026-12-01", "1@2026-12-05"])
        .code(0)
        .stdout_has("With --force:\n  1@2026-12-01 is still declared at oapkg.yaml:4:5: the next plan shows it as a purchase")
        .stdout_has("\n  1@2026-12-05 is not declared: the moved record shows as an orphan");
    env.run(&["plan"])
        .code(0)
        .stdout_has("1@2026-12-01 will be purchased");
}

/// eSMS registered a purchase under another start date than the one
/// declared: the manifest is corrected to it, the record moved to it, and
/// nothing is bought again — not in the plan, not by apply.
#[test]
fn a_moved_record_is_no_longer_re_bought() {
    let bought = Pkg::new("4097311281936189049", "2026-12-01", "premium", 12);
    let registered = Pkg::new("4097311281936189049", "2026-12-03", "premium", 12);
    let sim = start(account(std::slice::from_ref(&bought)));
    let env = Env::with_state().with_sim(&sim.control());
    write_manifest(&env, std::slice::from_ref(&bought));
    apply(&env, &sim.control(), &[]).code(0);
    assert_eq!(sim.control().ledger().len(), 1);

    // The manifest now says what eSMS registered: without the move, the
    // plan would buy it again (over the months already paid).
    write_manifest(&env, std::slice::from_ref(&registered));
    env.run(&["plan"])
        .code(0)
        .stdout_has(&format!("{} will be purchased", registered.key()))
        .stdout_has("--allow-overlap");
    env.run(&["state", "mv", &bought.key(), &registered.key()])
        .code(0)
        .stdout_has(&format!("Moved {} to {}", bought.key(), registered.key()));

    env.run(&["plan"]).code(0).stdout_has("No changes.");
    let json = env.run(&["plan", "--format", "json"]).code(0).json();
    assert_eq!(json["summary"]["purchase"], 0);
    assert_eq!(json["changes"], serde_json::json!([]));
    let sent = sim.control().requests().len();
    apply(&env, &sim.control(), &[]).code(0);
    assert!(
        sim.control().requests()[sent..]
            .iter()
            .all(|r| r.call != esms_sim::Call::Purchase),
        "apply sent a purchase request"
    );
    assert_eq!(sim.control().ledger().len(), 1, "nothing bought again");
}

/// The plan's hint for an orphan, in every format: `state rm` only for one
/// whose period has ended.
#[test]
fn the_orphan_hint_never_says_rm_while_the_period_runs() {
    let env = env();
    // Nothing declared: every record is an orphan. On 2027-01-15, 1@… and
    // 3@… run on; 2@… has ended.
    env.file(
        "oapkg.yaml",
        "apiVersion: oapkg/v1\nkind: PackageSet\npackages: []\n",
    );
    let text = env.run(&["plan"]).code(0).stdout.clone();
    let markdown = env
        .run(&["plan", "--format", "markdown"])
        .code(0)
        .stdout
        .clone();
    let json = env
        .run(&["plan", "--format", "json"])
        .code(0)
        .stdout
        .clone();
    for running in ["1@2026-12-01", "3@2026-12-01"] {
        let rm = format!("state rm {running}");
        for (format, out) in [("text", &text), ("markdown", &markdown), ("json", &json)] {
            assert!(!out.contains(&rm), "{format} suggests `{rm}`:\n{out}");
        }
        assert!(
            text.contains(&format!("{running} is no longer declared")),
            "{text}"
        );
    }
    assert!(
        text.contains("keep the record, it guards this OA"),
        "{text}"
    );
    assert!(
        text.contains("`oapkg state rm 2@2026-12-01` drops the record"),
        "{text}"
    );
    assert!(markdown.contains("`oapkg state rm 2@2026-12-01` drops the record"));

    // Only running orphans: no format mentions `state rm` at all.
    env.run(&["state", "rm", "2@2026-12-01"]).code(0);
    for format in ["text", "markdown", "json"] {
        let out = env
            .run(&["plan", "--format", format])
            .code(0)
            .stdout
            .clone();
        assert!(!out.contains("state rm"), "{format}:\n{out}");
        assert!(
            out.contains("1@2026-12-01"),
            "{format} lists the orphan:\n{out}"
        );
    }
}
