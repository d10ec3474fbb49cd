//! What `oapkg apply` prints for pipelines and people: `--format json`,
//! and the log lines at each verbosity.

use esms_sim::{Fault, FaultRule, Stage};

use crate::support::{Env, Pkg, account, apply, start, write_manifest};

fn three() -> Vec<Pkg> {
    vec![
        Pkg::new("4097311281936189049", "2026-12-01", "premium", 12),
        Pkg::new("745830328927467685", "2027-01-01", "advanced", 6),
        Pkg::new("5520017735810466321", "2026-12-15", "trial", 1),
    ]
}

/// The document as printed, its lineage and checksum (different on every
/// run) pinned.
fn pinned(stdout: &str) -> String {
    let document: serde_json::Value = serde_json::from_str(stdout).unwrap();
    let mut out = stdout.to_owned();
    for field in ["lineage", "checksum"] {
        if let Some(value) = document["state"][field].as_str() {
            out = out.replace(value, &format!("<{field}>"));
        }
    }
    out
}

#[test]
fn apply_format_json_reports_each_package_and_the_totals() {
    let env = Env::with_state();
    let all = three();
    write_manifest(&env, &all);
    let sim = start(
        account(&all)
            .fault(
                FaultRule::for_oaid(
                    &all[1].oaid,
                    Fault::Code {
                        code: "102".into(),
                        message: None,
                    },
                )
                .times(1),
            )
            .fault(
                FaultRule::for_oaid(
                    &all[2].oaid,
                    Fault::ServerError {
                        stage: Stage::AfterCommit,
                    },
                )
                .times(1),
            ),
    );
    let run = apply(&env, &sim, &["--format", "json", "--parallelism", "1"]);
    run.code(1);
    let document = run.json();
    insta::assert_snapshot!("apply_json_mixed", pinned(&run.stdout));
    assert_eq!(document["summary"]["purchased"], 1);
    assert_eq!(document["summary"]["failed"], 1);
    assert_eq!(document["summary"]["unconfirmed"], 1);
    assert!(!run.stdout.contains("Plan:"), "only the document on stdout");

    // Nothing left to buy: the same document, with no results, exit 0.
    let again = apply(&env, &sim, &["--format", "json", "--only", &all[1].key()]);
    again.code(0);
    let document = again.json();
    assert_eq!(document["results"][0]["result"], "purchased");
    assert_eq!(document["results"][0]["key"], all[1].key());
}

#[test]
fn apply_format_json_with_nothing_to_buy_and_without_approval() {
    let env = Env::with_state();
    env.file(
        "oapkg.yaml",
        crate::support::manifest("  []\n").replace("packages:\n  []", "packages: []"),
    );
    let sim = start(account(&three()));
    let run = apply(&env, &sim, &["--format", "json"]);
    run.code(0);
    insta::assert_snapshot!("apply_json_no_changes", run.stdout);
    // No plan is shown, so no question can be asked.
    crate::support::run(&env, &sim, &["apply", "--format", "json"])
        .code(1)
        .stderr_has("apply --format json does not show the plan");
}

#[test]
fn log_lines_name_no_module_by_default_and_v_shows_oapkgs_debug_lines_only() {
    let env = Env::with_state();
    let all = three();
    write_manifest(&env, &all[..1]);
    let sim = start(account(&all));
    let quiet = apply(&env, &sim, &[]);
    quiet.code(0);
    assert!(!quiet.stderr.contains("oapkg::"), "{}", quiet.stderr);

    write_manifest(&env, &all[..2]);
    let verbose = apply(&env, &sim, &["-v"]);
    verbose.code(0);
    assert!(verbose.stderr.contains("DEBUG"), "{}", verbose.stderr);
    for line in verbose.stderr.lines().filter(|l| l.contains("DEBUG")) {
        assert!(line.contains(" oapkg::"), "not oapkg's: {line}");
    }
    for library in ["hyper", "rustls", "reqwest"] {
        assert!(
            !verbose.stderr.contains(library),
            "{library} at -v:\n{}",
            verbose.stderr
        );
    }

    write_manifest(&env, &all);
    let everything = apply(&env, &sim, &["-vvv"]);
    everything.code(0);
    assert!(
        everything
            .stderr
            .lines()
            .any(|l| l.contains("TRACE") && !l.contains(" oapkg::")),
        "the libraries' lines at -vvv:\n{}",
        everything.stderr
    );
}
