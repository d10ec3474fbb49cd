//! Output that tells the truth about the files around it (issue 26, item
//! 6): `validate` never reads the state, no hint points at a file that does
//! not exist, and the bundled example plans clean for years to come.

use crate::support::{Env, Pkg, write_manifest};

const STATE: &str = "state/oapkg.state.json";

fn example() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/oapkg.yaml")).unwrap()
}

#[test]
fn validate_never_reads_the_state() {
    let env = Env::new();
    write_manifest(&env, &[Pkg::new("1", "2031-01-01", "trial", 1)]);
    // A damaged state: `plan` refuses it, `validate` does not look.
    env.file(STATE, "{ not json");
    env.run(&["plan"]).code(1).stderr_has("is not valid JSON");
    for format in ["text", "json", "github"] {
        let run = env.run(&["validate", "--format", format]);
        run.code(0);
        assert!(!run.stderr.contains("state"), "{format}: {}", run.stderr);
    }
    // Nor one it could not reach: an S3 location is not even looked up
    // (the endpoint named is not listening).
    let remote = env
        .command(&["validate", "--state", "s3://nowhere-bucket/states/x"])
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .output()
        .unwrap();
    assert_eq!(remote.status.code(), Some(0), "{remote:?}");
    // A missing state is not mentioned either.
    let env = Env::new();
    write_manifest(&env, &[Pkg::new("1", "2031-01-01", "trial", 1)]);
    let run = env.run(&["validate"]);
    run.code(0);
    assert!(!run.stderr.contains("no state file"), "{}", run.stderr);
}

#[test]
fn hints_name_a_backup_only_when_it_is_there() {
    let env = Env::new();
    write_manifest(&env, &[Pkg::new("1", "2031-01-01", "trial", 1)]);
    // A damaged state without a backup: restore from Git, no `.backup`.
    env.file(STATE, "{ not json");
    let run = env.run(&["plan"]);
    run.code(1)
        .stderr_has("restore it from Git (there is no backup beside it)");
    assert!(!run.stderr.contains(".backup"), "{}", run.stderr);

    // With a backup beside it, the backup is named.
    env.file(&format!("{STATE}.backup"), "{}");
    env.run(&["plan"])
        .code(1)
        .stderr_has(&format!("restore it from {STATE}.backup or from Git"));

    // apply against a missing state: the hint names no backup that is not
    // there.
    let env = Env::new();
    write_manifest(&env, &[Pkg::new("1", "2031-01-01", "trial", 1)]);
    let run = env
        .command(&["apply", "--auto-approve"])
        .env("ESMS_API_KEY", "k-123456789")
        .env("ESMS_SECRET_KEY", "s-123456789")
        .env("ESMS_ENDPOINT", "http://127.0.0.1:9/")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no state file at"), "{stderr}");
    assert!(
        stderr.contains("restore the file from Git (there is no backup beside it)"),
        "{stderr}"
    );
    assert!(!stderr.contains(".backup"), "{stderr}");
}

/// The README's first command, `plan -f examples/oapkg.yaml`, on a fresh
/// clone: no warning, on the day this was written and for years after it,
/// and on the real clock of whoever runs the tests.
#[test]
fn the_bundled_example_plans_without_a_warning_for_years() {
    let env = Env::new();
    env.file("examples/oapkg.yaml", example());
    for today in [
        "2026-12-06",
        "2027-12-06",
        "2028-12-06",
        "2029-12-06",
        "2030-11-30",
    ] {
        let run = Env::new().today(today);
        run.file("examples/oapkg.yaml", example());
        let plan = run
            .run(&["plan", "-f", "examples/oapkg.yaml", "--format", "json"])
            .code(0)
            .json();
        assert_eq!(plan["warnings"], serde_json::json!([]), "on {today}");
        assert_eq!(plan["summary"]["purchase"], 6, "on {today}");
        let text = run.run(&["plan", "-f", "examples/oapkg.yaml"]);
        assert!(
            !text.stdout.contains("arning"),
            "on {today}: {}",
            text.stdout
        );
        assert!(
            !text.stderr.contains("before today"),
            "on {today}: {}",
            text.stderr
        );
    }
    // The real clock: this fails once the example's first package has
    // started, which is the day to move its dates forward again.
    let output = env
        .command(&["plan", "-f", "examples/oapkg.yaml", "--format", "json"])
        .env_remove("OAPKG_TODAY")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        plan["warnings"],
        serde_json::json!([]),
        "examples/oapkg.yaml has packages starting in the past: move its dates forward"
    );
}
