//! `oapkg watch` (plan-only) through the real binary: real files changed the
//! ways editors and tools change them, the process's output read line by
//! line as it comes. Each wait has a generous deadline and returns as soon
//! as the line appears; no test sleeps to assert anything. "Nothing else
//! happened" is shown by cycle numbers: the cycle a later, distinct change
//! brings must be the very next one.

use std::time::{Duration, Instant};

use esms_sim::{SimConfig, Simulator};
use serde_json::Value;

use crate::support::{Env, Running, Stream, manifest};

/// Deadline for one expected line; normally it comes within a second.
pub(crate) const WAIT: Duration = Duration::from_secs(20);

pub(crate) fn pkg(oaid: u64, months: u32) -> String {
    format!(
        "  - oaid: \"{oaid}\"\n    tier: advanced\n    start: 2027-01-01\n    duration: {months}\n"
    )
}

pub(crate) fn doc(packages: &[String]) -> String {
    manifest(&packages.concat())
}

/// The line as a JSON object, if it is one.
pub(crate) fn json(line: &str) -> Option<Value> {
    serde_json::from_str::<Value>(line)
        .ok()
        .filter(Value::is_object)
}

pub(crate) fn message(record: &Value) -> &str {
    record["message"].as_str().unwrap_or("")
}

/// A running `oapkg watch --log-format json`.
pub(crate) struct Watch(pub(crate) Running);

impl Watch {
    /// `oapkg watch --log-format json --debounce 100 ARGS...` (the
    /// debounce unless ARGS set it)
    pub(crate) fn start(env: &Env, args: &[&str]) -> Watch {
        Watch::start_with(env, args, |_| {})
    }

    pub(crate) fn start_with(
        env: &Env,
        args: &[&str],
        setup: impl FnOnce(&mut std::process::Command),
    ) -> Watch {
        let mut all = vec!["watch", "--log-format", "json"];
        if !args.contains(&"--debounce") {
            all.extend(["--debounce", "100"]);
        }
        all.extend_from_slice(args);
        Watch(env.spawn_with(&all, setup))
    }

    /// The next log record (stderr) for which `matches` holds.
    #[track_caller]
    pub(crate) fn record(&mut self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let line = self.0.wait_for(Stream::Stderr, what, WAIT, |line| {
            json(line).is_some_and(|v| matches(&v))
        });
        json(&line).unwrap()
    }

    /// The next "planned" record: a cycle that printed a plan.
    #[track_caller]
    pub(crate) fn planned(&mut self) -> Value {
        self.record("`planned …`", |v| message(v).starts_with("planned"))
    }

    /// The next plan printed on stdout (a JSON line with the plan).
    #[track_caller]
    pub(crate) fn printed(&mut self) -> Value {
        let line = self
            .0
            .wait_for(Stream::Stdout, "with a plan", WAIT, |_| true);
        json(&line)
            .unwrap_or_else(|| panic!("stdout line is not JSON: {line}\n{}", self.0.transcript()))
    }

    /// The plan printed for cycle `cycle` (earlier ones are passed over).
    #[track_caller]
    pub(crate) fn printed_for(&mut self, cycle: u64) -> Value {
        let line = self.0.wait_for(
            Stream::Stdout,
            &format!("with the plan of cycle {cycle}"),
            WAIT,
            |line| json(line).is_some_and(|v| v["cycle"] == cycle),
        );
        json(&line).unwrap()
    }

    #[track_caller]
    pub(crate) fn terminate(mut self) -> i32 {
        self.0.signal(libc::SIGTERM);
        self.0.wait_exit(WAIT)
    }
}

#[track_caller]
pub(crate) fn assert_counts(record: &Value, purchase: u64, orphan: u64) {
    assert_eq!(
        (record["purchase"].as_u64(), record["orphan"].as_u64()),
        (Some(purchase), Some(orphan)),
        "counts of {record}"
    );
}

#[test]
fn a_truncate_and_write_save_is_planned() {
    let env = Env::new();
    env.file("packages/a.yaml", doc(&[pkg(1001, 12)]));
    let mut watch = Watch::start(&env, &["-f", "packages"]);
    let first = watch.planned();
    assert_eq!(
        (first["cycle"].as_u64(), first["trigger"].as_str()),
        (Some(1), Some("startup"))
    );
    assert_counts(&first, 1, 0);
    let printed = watch.printed();
    assert_eq!(printed["cycle"], 1);
    assert_eq!(printed["plan"]["summary"]["purchase"], 1);

    // std::fs::write opens with O_TRUNC, then writes.
    std::fs::write(
        env.path("packages/a.yaml"),
        doc(&[pkg(1001, 12), pkg(1002, 12)]),
    )
    .unwrap();
    let second = watch.planned();
    assert_eq!(
        (second["cycle"].as_u64(), second["trigger"].as_str()),
        (Some(2), Some("change"))
    );
    assert_eq!(second["changed"], "packages/a.yaml");
    assert_counts(&second, 2, 0);
    let printed = watch.printed();
    assert_eq!(printed["cycle"], 2);
    assert_eq!(printed["plan"]["summary"]["purchase"], 2);
    assert_eq!(printed["plan"]["changes"][1]["key"], "1002@2027-01-01");
    assert_eq!(watch.terminate(), 0);
}

#[test]
fn rename_over_saves_are_planned() {
    let env = Env::new();
    env.file("packages/a.yaml", doc(&[pkg(1001, 12)]));
    let mut watch = Watch::start(&env, &["-f", "packages"]);
    watch.planned();
    let path = env.path("packages/a.yaml");

    // Write a temporary file, rename it over the manifest.
    env.file("packages/.a.yaml.tmp", doc(&[pkg(1001, 12), pkg(1002, 12)]));
    std::fs::rename(env.path("packages/.a.yaml.tmp"), &path).unwrap();
    let planned = watch.planned();
    assert_eq!(planned["cycle"], 2);
    assert_counts(&planned, 2, 0);

    // `sed -i` (GNU sed writes ./sedXXXXXX and renames it over).
    let status = std::process::Command::new("sed")
        .args(["-i", "s/duration: 12/duration: 6/"])
        .arg(&path)
        .status();
    if !status.is_ok_and(|s| s.success()) {
        // No sed here: the same thing by hand.
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("duration: 12", "duration: 6");
        env.file("packages/sedAbC123", text);
        std::fs::rename(env.path("packages/sedAbC123"), &path).unwrap();
    }
    let planned = watch.planned();
    assert_eq!(planned["cycle"], 3);
    let printed = watch.printed_for(3);
    assert_eq!(printed["plan"]["changes"][0]["duration_months"], 6);

    // vim's default save: probe file 4913, the original renamed to a
    // backup `a.yaml~`, a new file written, the backup removed.
    env.file("packages/4913", "");
    std::fs::remove_file(env.path("packages/4913")).unwrap();
    std::fs::rename(&path, env.path("packages/a.yaml~")).unwrap();
    env.file(
        "packages/a.yaml",
        doc(&[pkg(1001, 6), pkg(1002, 6), pkg(1003, 6)]),
    );
    std::fs::remove_file(env.path("packages/a.yaml~")).unwrap();
    let planned = watch.planned();
    assert_eq!(planned["cycle"], 4);
    assert_eq!(
        planned["changed"], "packages/a.yaml",
        "only the manifest counts"
    );
    assert_counts(&planned, 3, 0);
    assert_eq!(watch.terminate(), 0);
}

#[test]
fn new_files_are_planned_and_deleted_files_leave_orphans() {
    let env = Env::new();
    env.file("packages/a.yaml", doc(&[pkg(1001, 12)]));
    let mut watch = Watch::start(&env, &["-f", "packages"]);
    assert_counts(&watch.planned(), 1, 0);

    // A new file in the watched directory.
    env.file("packages/b.yaml", doc(&[pkg(2001, 6)]));
    assert_counts(&watch.planned(), 2, 0);
    // A new file in a new subdirectory.
    env.file("packages/team/c.yaml", doc(&[pkg(3001, 3)]));
    assert_counts(&watch.planned(), 3, 0);

    // b's package is bought (recorded by hand: a writer takes the state
    // lock while watch runs, so watch does not hold it) ...
    env.import("2001", "advanced", "2027-01-01", "6", &[])
        .code(0);
    // ... then its manifest is deleted: an orphan, nothing to buy for it.
    std::fs::remove_file(env.path("packages/b.yaml")).unwrap();
    let planned = watch.planned();
    assert_counts(&planned, 2, 1);
    let printed = watch.printed_for(planned["cycle"].as_u64().unwrap());
    let orphan = &printed["plan"]["changes"][1];
    assert_eq!(
        (orphan["key"].as_str(), orphan["action"].as_str()),
        (Some("2001@2027-01-01"), Some("orphan"))
    );

    // The whole subdirectory goes.
    std::fs::remove_dir_all(env.path("packages/team")).unwrap();
    assert_counts(&watch.planned(), 1, 1);
    assert_eq!(watch.terminate(), 0);
}

#[test]
fn a_broken_manifest_is_logged_with_its_location_and_fixing_it_resumes() {
    let env = Env::new();
    env.file("packages/a.yaml", doc(&[pkg(1001, 12)]));
    let mut watch = Watch::start(&env, &["-f", "packages"]);
    watch.planned();

    let broken = doc(&[pkg(1001, 12)]).replace("tier: advanced", "tier: gold");
    std::fs::write(env.path("packages/a.yaml"), broken).unwrap();
    let error = watch.record("an error about a.yaml", |v| {
        v["level"] == "ERROR" && v["file"] == "packages/a.yaml"
    });
    assert_eq!(
        (error["line"].as_u64(), error["column"].as_u64()),
        (Some(5), Some(11)),
        "{error}"
    );
    assert!(
        message(&error).starts_with("packages/a.yaml:5:11: "),
        "{error}"
    );
    assert_eq!(error["cycle"], 2);
    let summary = watch.record("the invalid-manifests summary", |v| {
        message(v).starts_with("the manifests are invalid")
    });
    assert_eq!(summary["errors"], 1);
    assert!(
        message(&summary).contains("keeping the last good plan (cycle 1"),
        "{summary}"
    );
    assert!(watch.0.alive(), "watch goes on");

    // Fixed back to the last good content: planned and printed again.
    std::fs::write(env.path("packages/a.yaml"), doc(&[pkg(1001, 12)])).unwrap();
    let planned = watch.planned();
    assert_eq!(planned["cycle"], 3);
    assert_counts(&planned, 1, 0);
    // Nothing was printed for the invalid cycle: the plans are 1, then 3.
    assert_eq!(watch.printed()["cycle"], 1);
    assert_eq!(watch.printed()["cycle"], 3);
    assert_eq!(watch.terminate(), 0);
}

#[test]
fn a_missing_file_is_reported_and_planned_once_created() {
    let env = Env::new();
    env.file("keep", "");
    let mut watch = Watch::start(&env, &["-f", "later.yaml"]);
    let error = watch.record("an error about later.yaml", |v| v["file"] == "later.yaml");
    assert!(message(&error).contains("cannot read"), "{error}");
    env.file("later.yaml", doc(&[pkg(1001, 12)]));
    let planned = watch.planned();
    assert_eq!(planned["cycle"], 2);
    assert_counts(&planned, 1, 0);
    assert_eq!(watch.terminate(), 0);
}

#[test]
fn a_burst_of_fifty_writes_within_the_window_is_one_cycle() {
    let env = Env::new();
    env.file("a.yaml", doc(&[pkg(1001, 1)]));
    // A long window, so that a loaded machine cannot stretch the burst
    // past it.
    let mut watch = Watch::start(&env, &["-f", "a.yaml", "--debounce", "1500"]);
    watch.planned();
    let started = Instant::now();
    for i in 0..50 {
        std::fs::write(env.path("a.yaml"), doc(&[pkg(1001, 1 + i % 30)])).unwrap();
    }
    let burst = started.elapsed();
    let planned = watch.planned();
    assert_eq!(planned["cycle"], 2, "burst took {burst:?}");
    // The cycle saw the last write (1 + 49 % 30 = 20 months).
    let printed = watch.printed_for(2);
    assert_eq!(printed["plan"]["changes"][0]["duration_months"], 20);
    // One more, distinct change: the very next cycle, so the burst gave one.
    std::fs::write(env.path("a.yaml"), doc(&[pkg(1001, 36)])).unwrap();
    assert_eq!(watch.planned()["cycle"], 3, "burst took {burst:?}");
    assert_eq!(watch.terminate(), 0);
}

#[test]
fn editor_temp_files_and_other_files_start_no_cycle() {
    let env = Env::new();
    env.file("top.yaml", doc(&[pkg(1001, 12)]));
    env.file("packages/a.yaml", doc(&[pkg(2001, 12)]));
    let mut watch = Watch::start(&env, &["-f", "top.yaml", "-f", "packages"]);
    assert_eq!(watch.planned()["cycle"], 1);
    for name in [
        "packages/.a.yaml.swp",
        "packages/.a.yaml.swx",
        "packages/4913",
        "packages/a.yaml~",
        "packages/#a.yaml#",
        "packages/.#a.yaml",
        "packages/a.yaml___jb_tmp___",
        "packages/notes.txt",
        "packages/.hidden/x.yaml",
        ".top.yaml.swp",
        "other.yaml", // beside a file named by -f, only that file counts
    ] {
        env.file(name, doc(&[pkg(9001, 12)]));
    }
    std::fs::remove_file(env.path("packages/4913")).unwrap();
    // Then a real change: it must be cycle 2, about that file only.
    std::fs::write(env.path("top.yaml"), doc(&[pkg(1001, 6)])).unwrap();
    let planned = watch.planned();
    assert_eq!(planned["cycle"], 2);
    assert_eq!(planned["changed"], "top.yaml");
    assert_eq!(watch.terminate(), 0);
}

#[test]
fn a_save_that_changes_nothing_that_matters_is_skipped() {
    let env = Env::new();
    env.file("a.yaml", doc(&[pkg(1001, 12)]));
    let mut watch = Watch::start(&env, &["-f", "a.yaml"]);
    let first = watch.planned();
    // A comment and a touch: the content hash is the same.
    std::fs::write(
        env.path("a.yaml"),
        format!("# reviewed\n{}", doc(&[pkg(1001, 12)])),
    )
    .unwrap();
    let skipped = watch.record("a skip", |v| v["skipped"].is_string());
    assert_eq!(
        (skipped["cycle"].as_u64(), skipped["skipped"].as_str()),
        (Some(2), Some("unchanged"))
    );
    assert_eq!(skipped["manifest_hash"], first["manifest_hash"]);
    assert!(
        message(&skipped).contains("unchanged since cycle 1"),
        "{skipped}"
    );
    std::fs::write(env.path("a.yaml"), doc(&[pkg(1001, 6)])).unwrap();
    let planned = watch.planned();
    assert_eq!(planned["cycle"], 3);
    assert_ne!(planned["manifest_hash"], first["manifest_hash"]);
    // Nothing was printed for the skipped cycle.
    assert_eq!(watch.printed()["cycle"], 1);
    assert_eq!(watch.printed()["cycle"], 3);
    assert_eq!(watch.terminate(), 0);
}

#[test]
fn the_interval_replans_when_the_state_changes_and_the_lock_stays_free() {
    let env = Env::new();
    env.file("oapkg.yaml", doc(&[pkg(1001, 12)]));
    let mut watch = Watch::start(&env, &["--interval", "0.3"]);
    assert_counts(&watch.planned(), 1, 0);
    // Readers and writers work alongside a running watch.
    env.run(&["plan", "--detailed-exitcode"]).code(2);
    env.import("1001", "advanced", "2027-01-01", "12", &[])
        .code(0);
    // No file event: the interval cycle sees the new state.
    let planned = watch.planned();
    assert_eq!(planned["trigger"], "interval");
    assert_counts(&planned, 0, 0);
    assert_eq!(planned["unchanged"], 1);
    assert!(message(&planned).contains("No changes."), "{planned}");
    // And the next interval cycle has nothing new to plan.
    let skipped = watch.record("a skip", |v| v["skipped"].is_string());
    assert_eq!(
        (skipped["trigger"].as_str(), skipped["skipped"].as_str()),
        (Some("interval"), Some("unchanged"))
    );
    assert_eq!(watch.terminate(), 0);
    assert!(!env.path("state/oapkg.state.json.lock").exists());
}

#[test]
fn plan_only_watch_never_sends_a_request() {
    let sim = Simulator::spawn_blocking(SimConfig::new().oaid("1001").oaid("1002")).unwrap();
    let env = Env::new();
    env.file("oapkg.yaml", doc(&[pkg(1001, 12)]));
    let endpoint = sim.endpoint().as_str().to_owned();
    let mut watch = Watch::start_with(&env, &["--interval", "0.5"], |cmd| {
        cmd.env("ESMS_ENDPOINT", &endpoint)
            .env("ESMS_API_KEY", "test-key")
            .env("ESMS_SECRET_KEY", "test-secret");
    });
    assert_counts(&watch.planned(), 1, 0);
    std::fs::write(env.path("oapkg.yaml"), doc(&[pkg(1001, 12), pkg(1002, 6)])).unwrap();
    assert_counts(&watch.planned(), 2, 0);
    // An interval cycle too.
    watch.record("an interval cycle", |v| v["trigger"] == "interval");
    assert_eq!(watch.terminate(), 0);
    assert!(sim.ledger().is_empty(), "charged: {:?}", sim.ledger());
    assert!(sim.requests().is_empty(), "requests: {:?}", sim.requests());
}

#[test]
fn sigterm_and_sigint_exit_zero_promptly() {
    for (signal, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGINT, "SIGINT")] {
        let env = Env::new();
        env.file("oapkg.yaml", doc(&[pkg(1001, 12)]));
        let mut watch = Watch::start(&env, &[]);
        watch.planned();
        let sent = Instant::now();
        watch.0.signal(signal);
        assert_eq!(
            watch.0.wait_exit(WAIT),
            0,
            "{name}\n{}",
            watch.0.transcript()
        );
        assert!(
            sent.elapsed() < Duration::from_secs(5),
            "{name} took {:?}",
            sent.elapsed()
        );
        assert!(
            watch
                .0
                .transcript()
                .contains(&format!("received {name}: stopping"))
        );
        assert!(!env.path("state/oapkg.state.json.lock").exists());
    }
}

#[test]
fn polling_picks_up_changes() {
    let env = Env::new();
    env.file("packages/a.yaml", doc(&[pkg(1001, 12)]));
    let mut watch = Watch::start(&env, &["-f", "packages", "--poll", "0.2"]);
    assert_counts(&watch.planned(), 1, 0);
    std::fs::write(
        env.path("packages/a.yaml"),
        doc(&[pkg(1001, 12), pkg(1002, 12)]),
    )
    .unwrap();
    assert_counts(&watch.planned(), 2, 0);
    // Again within the same second: the contents differ, the mtime may not.
    std::fs::write(
        env.path("packages/a.yaml"),
        doc(&[pkg(1001, 6), pkg(1002, 12)]),
    )
    .unwrap();
    assert_counts(&watch.planned(), 2, 0);
    env.file("packages/b.yaml", doc(&[pkg(2001, 6)]));
    assert_counts(&watch.planned(), 3, 0);
    assert_eq!(watch.terminate(), 0);
}

#[test]
fn every_line_is_json_with_log_format_json() {
    let env = Env::with_state();
    env.file("oapkg.yaml", doc(&[pkg(1001, 12)]));
    let mut watch = Watch::start(&env, &[]);
    let planned = watch.planned();
    for field in [
        "timestamp",
        "level",
        "message",
        "cycle",
        "trigger",
        "manifest_hash",
        "state_serial",
    ] {
        assert!(
            planned.get(field).is_some(),
            "{field} missing from {planned}"
        );
    }
    assert_eq!(planned["level"], "INFO");
    assert_eq!(planned["span"]["cycle"], 1);
    assert!(
        planned["manifest_hash"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    let printed = watch.printed();
    for field in ["time", "cycle", "trigger", "paths", "plan"] {
        assert!(
            printed.get(field).is_some(),
            "{field} missing from {printed}"
        );
    }
    assert_eq!(printed["plan"]["format_version"], 2);
    assert_eq!(printed["plan"]["manifest_hash"], planned["manifest_hash"]);
    watch.0.signal(libc::SIGTERM);
    assert_eq!(watch.0.wait_exit(WAIT), 0);
    let mut count = 0;
    for (stream, text) in watch.0.lines() {
        count += 1;
        assert!(
            json(text).is_some(),
            "{stream:?} line is not a JSON object: {text}"
        );
    }
    assert!(count >= 4, "{}", watch.0.transcript());
}

#[test]
fn text_output_has_a_header_per_cycle_and_the_plan() {
    let env = Env::new();
    env.file("packages/a.yaml", doc(&[pkg(1001, 12)]));
    let mut watch = env.spawn(&["watch", "-f", "packages", "--debounce", "100"]);
    watch.wait_for(Stream::Stdout, "with the first header", WAIT, |l| {
        l.starts_with("=== cycle 1 · ") && l.ends_with(" · startup ===")
    });
    watch.wait_for(Stream::Stdout, "with the summary", WAIT, |l| {
        l.starts_with("Plan: 1 to purchase")
    });
    watch.wait_for(Stream::Stderr, "logging the cycle", WAIT, |l| {
        l.contains(" INFO ") && l.contains("planned (startup): Plan: 1 to purchase")
    });
    std::fs::write(
        env.path("packages/a.yaml"),
        doc(&[pkg(1001, 12), pkg(1002, 1)]),
    )
    .unwrap();
    watch.wait_for(Stream::Stdout, "with the second header", WAIT, |l| {
        l.starts_with("=== cycle 2 · ") && l.ends_with(" · change: packages/a.yaml ===")
    });
    watch.wait_for(Stream::Stdout, "with the summary", WAIT, |l| {
        l.starts_with("Plan: 2 to purchase")
    });
    watch.signal(libc::SIGTERM);
    assert_eq!(watch.wait_exit(WAIT), 0);
    assert!(
        !watch.transcript().contains('\x1b'),
        "no colour off a terminal"
    );
}

#[test]
fn apply_needs_credentials_at_start_and_apply_flags_need_apply() {
    let env = Env::new();
    env.file("oapkg.yaml", doc(&[pkg(1001, 12)]));
    // Missing credentials stop the service at once, not at the first change.
    env.run(&["watch", "--apply"])
        .code(1)
        .stderr_has("ESMS_API_KEY");
    // Apply's flags mean nothing without --apply.
    let run = env.run(&["watch", "--max-purchases", "5"]);
    assert_eq!(run.code, 1, "a usage error: {}", run.stderr);
    assert!(run.stderr.contains("--apply"), "{}", run.stderr);
}

#[test]
fn a_missing_directory_cannot_be_watched() {
    let env = Env::new();
    env.run(&["watch", "-f", "nope/a.yaml"])
        .code(1)
        .stderr_has("cannot watch nope");
}
