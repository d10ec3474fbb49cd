//! The command line as people meet it: `--help` (global options under
//! their own heading), and the listings of the state.

use crate::support::Env;

/// `--help` of a command, with clap's terminal width pinned.
fn help(args: &[&str]) -> String {
    let env = Env::new();
    let mut command = env.command(args);
    command.env("COLUMNS", "100");
    let run = crate::support::Run::from(command.output().expect("run oapkg"));
    run.code(0);
    run.stdout
}

#[test]
fn help_lists_global_options_apart_from_the_subcommands_own() {
    let top = help(&["--help"]);
    insta::assert_snapshot!("help_top", top);
    let plan = help(&["plan", "--help"]);
    insta::assert_snapshot!("help_plan", plan);
    let (own, global) = plan
        .split_once("Global options:")
        .expect("a Global options heading");
    assert!(
        own.contains("--format") && !own.contains("--state"),
        "{plan}"
    );
    assert!(
        global.contains("--state") && global.contains("--file"),
        "{plan}"
    );
    insta::assert_snapshot!("help_state_show", help(&["state", "show", "--help"]));
}

#[test]
fn schema_and_completions_do_not_show_the_state_options_they_ignore() {
    for args in [["schema", "--help"].as_slice(), &["completions", "--help"]] {
        let out = help(args);
        for hidden in ["--state", "--file", "--lock-timeout"] {
            assert!(!out.contains(hidden), "{args:?} shows {hidden}:\n{out}");
        }
        assert!(out.contains("Global options:"), "{out}");
    }
    insta::assert_snapshot!("help_completions", help(&["completions", "--help"]));
    // Still accepted (before or after the subcommand), and ignored.
    let env = Env::new();
    env.run(&["schema", "--state", "elsewhere.json"]).code(0);
    env.run(&["--state", "elsewhere.json", "-f", "x", "schema"])
        .code(0);
}

fn env_with_three_records() -> Env {
    let env = Env::with_state();
    env.import("7", "trial", "2026-12-01", "2", &["--name", "Shop"])
        .code(0);
    env.import(
        "7",
        "premium",
        "2027-02-01",
        "12",
        &["--service-preview-id", "SP1"],
    )
    .code(0);
    env.import("8", "advanced", "2026-12-01", "6", &[]).code(0);
    env
}

#[test]
fn state_list_oaid_lists_that_oas_packages_only() {
    let env = env_with_three_records();
    let run = env.run(&["state", "list", "7"]);
    run.code(0);
    insta::assert_snapshot!("state_list_oaid", run.stdout);
    let json = env.run(&["state", "list", "8", "--format", "json"]).json();
    let keys: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["8@2026-12-01"]);
    env.run(&["state", "list", "9"])
        .code(0)
        .stdout_has("No packages recorded for OA 9 in state/oapkg.state.json.");
    env.run(&["state", "list", "x9"])
        .code(1)
        .stderr_has("OAID \"x9\"");
}

#[test]
fn state_show_puts_the_key_first_and_times_to_the_second() {
    let env = env_with_three_records();
    let run = env.run(&["state", "show", "7@2027-02-01"]);
    run.code(0);
    assert!(
        run.stdout.starts_with("key                 7@2027-02-01\n"),
        "{}",
        run.stdout
    );
    let submitted = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("submitted_at"))
        .expect("a submitted_at line")
        .trim();
    // `2026-11-30T16:48:52Z`: no fraction of a second.
    assert_eq!(submitted.len(), 20, "{submitted}");
    let stable: String = run
        .stdout
        .lines()
        .map(|l| {
            if l.starts_with("submitted_at") {
                "submitted_at        <time>".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    insta::assert_snapshot!("state_show_text", stable);
}

#[test]
fn schema_plan_prints_the_json_plans_schema() {
    let run = Env::new().run(&["schema", "--plan"]);
    run.code(0);
    let schema = run.json();
    assert_eq!(schema["title"], "Plan");
    let properties = schema["properties"].as_object().unwrap();
    for field in [
        "format_version",
        "changes",
        "warnings",
        "needs",
        "summary",
        "labels",
    ] {
        assert!(properties.contains_key(field), "{field}");
    }
    insta::assert_snapshot!("plan_schema", run.stdout);
}

/// The mid-period tier-overlap warning names its second place in every
/// output without a literal `\n`.
#[test]
fn the_tier_overlap_warning_reads_as_one_line_everywhere() {
    let env = Env::new();
    env.file(
        "oapkg.yaml",
        crate::support::manifest(
            "  - {oaid: \"8\", tier: advanced, start: 2026-12-01, duration: 12}\n\
             \x20 - {oaid: \"8\", tier: premium, start: 2027-06-01, duration: 6}\n",
        ),
    );
    let warning = "OA 8: premium package from 2027-06-01 overlaps the advanced package \
                   2026-12-01 to 2027-11-30 (an upgrade or downgrade mid-period; both are bought)";
    for args in [
        ["plan", "--format", "text"].as_slice(),
        &["plan", "--format", "markdown"],
        &["plan", "--format", "json"],
        &["validate", "--format", "text"],
        &["validate", "--format", "json"],
        &["validate", "--format", "github"],
        &["coverage"],
    ] {
        let run = env.run(args);
        let both = format!("{}{}", run.stdout, run.stderr);
        assert!(both.contains(warning), "{args:?}:\n{both}");
        assert!(!both.contains("\\n"), "{args:?}: a literal \\n:\n{both}");
        assert!(
            both.contains("oapkg.yaml:4:5"),
            "{args:?}: the other place:\n{both}"
        );
    }
}

/// What the test binary should call itself: the commit of this checkout
/// (or `unknown` outside one) and the profile directory it was built in.
fn expected_build() -> (String, String) {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim()[..12].to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    let profile = std::path::Path::new(env!("CARGO_BIN_EXE_oapkg"))
        .parent()
        .and_then(|dir| dir.file_name())
        .unwrap()
        .to_string_lossy()
        .into_owned();
    (commit, profile)
}

#[test]
fn version_and_dash_dash_version_name_the_version_the_commit_and_the_profile() {
    let (commit, profile) = expected_build();
    let line = format!(
        "oapkg {} (commit {commit}, {profile})\n",
        env!("CARGO_PKG_VERSION")
    );
    let env = Env::new();
    assert_eq!(env.run(&["version"]).code(0).stdout, line);
    assert_eq!(env.run(&["--version"]).code(0).stdout, line);
    // clap names the subcommand it was asked on.
    assert_eq!(
        env.run(&["plan", "--version"]).code(0).stdout,
        line.replacen("oapkg", "oapkg-plan", 1)
    );
    let json = env.run(&["version", "--format", "json"]).code(0).json();
    assert_eq!(json["name"], "oapkg");
    assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(json["commit"], commit.as_str());
    assert_eq!(json["profile"], profile.as_str());
    assert_eq!(json["state_format_version"], 1);
    assert_eq!(json["plan_format_version"], 2);
    // Reads no manifest and no state: works anywhere, even with a state
    // path that does not exist.
    env.run(&["version", "--state", "missing/nowhere.json"])
        .code(0);
}
