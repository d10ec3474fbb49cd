//! A plan against no state says so loudly in every format, and a `--state`
//! that looks like a mistyped URL is a usage error for every command, never
//! a local path (SPEC, Plan: "A plan against no state says so loudly").

use crate::support::{Env, Pkg, write_manifest};

const NO_STATE: &str =
    "No state at state/oapkg.state.json: this plan assumes nothing has ever been bought.";

fn one_package(env: &Env) {
    write_manifest(
        env,
        &[Pkg::new("4097311281936189049", "2031-01-01", "premium", 12)],
    );
}

#[test]
fn every_format_says_when_the_state_does_not_exist() {
    let env = Env::new();
    one_package(&env);

    let text = env.run(&["plan"]);
    text.code(0);
    assert!(
        text.stdout.starts_with(&format!("{NO_STATE}\n\n")),
        "{}",
        text.stdout
    );

    // The summary line first (SPEC: "the same summary line first"), then
    // the banner before anything else.
    let markdown = env.run(&["plan", "--format", "markdown"]);
    markdown.code(0);
    assert!(
        markdown.stdout.starts_with(
            "**Plan: 1 to purchase, 0 to replace, 0 unconfirmed, 0 unchanged, 0 orphaned.**\n\n\
             > [!CAUTION]\n> **No state at `state/oapkg.state.json`: this plan assumes nothing has ever been bought.**"
        ),
        "{}",
        markdown.stdout
    );

    let json = env.run(&["plan", "--format", "json"]);
    json.code(0);
    let state = &json.json()["state"];
    assert_eq!(state["location"], "state/oapkg.state.json");
    assert_eq!(state["exists"], false);
    assert_eq!(state["lineage"], serde_json::Value::Null);

    // Another location is named as given.
    let elsewhere = env.run(&["plan", "--state", "other/place.json"]);
    elsewhere.code(0).stdout_has(
        "No state at other/place.json: this plan assumes nothing has ever been bought.",
    );

    // A saved plan shows the same when shown again.
    env.run(&["plan", "--out", "p.plan"]).code(0);
    env.run(&["show", "p.plan"]).code(0).stdout_has(NO_STATE);
}

#[test]
fn an_existing_state_is_named_with_its_identity_and_no_banner() {
    let env = Env::with_state();
    one_package(&env);

    let text = env.run(&["plan"]);
    text.code(0);
    assert!(!text.stdout.contains("No state"), "{}", text.stdout);
    let markdown = env.run(&["plan", "--format", "markdown"]);
    assert!(
        markdown.stdout.starts_with("**Plan: 1 to purchase,"),
        "{}",
        markdown.stdout
    );
    assert!(!markdown.stdout.contains("No state"));
    assert!(!markdown.stdout.contains("[!CAUTION]"));

    let json = env.run(&["plan", "--format", "json"]);
    let state = &json.json()["state"];
    assert_eq!(state["location"], "state/oapkg.state.json");
    assert_eq!(state["exists"], true);
    assert!(state["lineage"].as_str().is_some_and(|l| !l.is_empty()));
    assert!(state["serial"].is_u64());
    assert!(state["checksum"].as_str().unwrap().starts_with("sha256:"));
}

#[test]
fn a_mistyped_state_url_is_a_usage_error_for_every_command() {
    let env = Env::new();
    one_package(&env);
    let shapes = [
        ("S3://bucket/prefix", "did you mean s3://bucket/prefix?"),
        ("s3:/bucket/prefix", "did you mean s3://bucket/prefix?"),
        ("s3:bucket", "did you mean s3://bucket?"),
        ("http://example.com/state.json", "http:// URL"),
        ("https://example.com/state.json", "https:// URL"),
        ("gs://bucket/state", "gs:// URL"),
    ];
    let commands: [&[&str]; 6] = [
        &["plan"],
        &["apply", "--auto-approve"],
        &["init"],
        &["validate"],
        &["state", "list"],
        &["expiring"],
    ];
    for (location, says) in shapes {
        for command in commands {
            let mut args = command.to_vec();
            args.extend(["--state", location]);
            let run = env.run(&args);
            run.code(1)
                .stderr_has(&format!("invalid value '{location}' for '--state <PATH>'"))
                .stderr_has(says)
                .stderr_has("s3://BUCKET/PREFIX");
            assert!(run.stdout.is_empty(), "{args:?}: {}", run.stdout);
        }
        // The same through OAPKG_STATE, and for `state migrate --to`.
        let through_env = env
            .command(&["plan"])
            .env("OAPKG_STATE", location)
            .output()
            .unwrap();
        assert_eq!(through_env.status.code(), Some(1), "{location}");
        assert!(String::from_utf8_lossy(&through_env.stderr).contains(says));
        env.run(&["state", "migrate", "--to", location])
            .code(1)
            .stderr_has(says);
    }
    // Nothing was created under any of those names (`init` included).
    let entries: Vec<String> = std::fs::read_dir(env.path("."))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries, ["oapkg.yaml"], "{entries:?}");
}
