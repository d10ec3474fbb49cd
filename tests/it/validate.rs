//! Manifest validation through the real binary: every error at once, with
//! the right file, line and column.

use indoc::indoc;

use crate::support::{Env, manifest};

#[test]
fn several_different_errors_are_all_reported_with_their_lines() {
    let env = Env::new();
    env.file(
        "oapkg.yaml",
        "apiVersion: oapkg/v1\n\
         kind: PackageSet\n\
         packages:\n\
         \x20 - oaid: 12.5\n\
         \x20   tier: gold\n\
         \x20   start: 2026-13-01\n\
         \x20   duration: 37\n\
         \x20 - oaid: \"123\"\n\
         \x20   tier: premium\n\
         \x20   start: 2026-12-01\n\
         \x20   durtion: 12\n",
    );
    let run = env.run(&["validate"]);
    run.code(1);
    for (line_col, what) in [
        ("oapkg.yaml:4:11", "bad OAID"),
        ("oapkg.yaml:5:11", "unknown tier"),
        ("oapkg.yaml:6:12", "bad date"),
        ("oapkg.yaml:7:15", "duration out of range"),
        ("oapkg.yaml:11:5", "unknown field `durtion`"),
        ("oapkg.yaml:8:5", "no `duration`"),
    ] {
        let line = run
            .stderr
            .lines()
            .find(|l| l.contains(line_col))
            .unwrap_or_else(|| panic!("no error at {line_col}:\n{}", run.stderr));
        assert!(
            line.contains(what),
            "{line_col}: expected {what:?} in {line:?}"
        );
    }
    run.stderr_has("did you mean `duration`?")
        .stderr_has("the manifests have 6 errors");
}

#[test]
fn errors_in_several_files_are_reported_together() {
    let env = Env::new();
    env.file(
        "m/a.yaml",
        manifest("  - oaid: -5\n    tier: trial\n    start: 2026-12-01\n    duration: 1\n"),
    );
    env.file(
        "m/b.yml",
        manifest("  - oaid: \"1\"\n    tier: trial\n    start: 2026-12-01\n    duration: 0\n"),
    );
    let run = env.run(&["validate", "-f", "m"]);
    run.code(1)
        .stderr_has("m/a.yaml:4:11")
        .stderr_has("negative number -5")
        .stderr_has("m/b.yml:7:15");
}

#[test]
fn duplicate_keys_name_both_places() {
    let env = Env::new();
    env.file(
        "a.yaml",
        manifest("  - oaid: \"77\"\n    tier: trial\n    start: 2026-12-01\n    duration: 1\n"),
    );
    env.file(
        "b.yaml",
        manifest("  - oaid: 77\n    tier: premium\n    start: 2026-12-01\n    duration: 3\n"),
    );
    env.run(&["validate", "-f", "a.yaml", "-f", "b.yaml"])
        .code(1)
        .stderr_has("b.yaml:4:5: package 77@2026-12-01 is declared twice")
        .stderr_has("a.yaml:4:5: first declared here");
}

#[test]
fn a_field_written_twice_names_both_lines() {
    let env = Env::new();
    env.file("oapkg.yaml", manifest("  - oaid: \"77\"\n    tier: trial\n    oaid: \"78\"\n    start: 2026-12-01\n    duration: 1\n"));
    env.run(&["validate"])
        .code(1)
        .stderr_has("oapkg.yaml:6:5: field `oaid` is set twice")
        .stderr_has("first at oapkg.yaml:4:5");
}

#[test]
fn overlapping_periods_of_one_tier_are_errors_of_different_tiers_warnings() {
    let env = Env::new();
    env.file(
        "oapkg.yaml",
        manifest(
            "  - {oaid: \"9\", tier: advanced, start: 2026-12-01, duration: 12}\n\
             \x20 - {oaid: \"9\", tier: advanced, start: 2027-11-30, duration: 1}\n\
             \x20 - {oaid: \"8\", tier: advanced, start: 2026-12-01, duration: 12}\n\
             \x20 - {oaid: \"8\", tier: premium, start: 2027-06-01, duration: 6}\n\
             \x20 - {oaid: \"7\", tier: advanced, start: 2026-12-01, duration: 12}\n\
             \x20 - {oaid: \"7\", tier: advanced, start: 2027-12-01, duration: 12}\n",
        ),
    );
    let run = env.run(&["validate"]);
    run.code(1)
        .stderr_has("oapkg.yaml:5:5: OA 9 has two advanced packages whose periods overlap: 2026-12-01 to 2027-11-30 and 2027-11-30 to 2027-12-29")
        .stderr_has("oapkg.yaml:4:5: the other package")
        .stderr_has("warning: oapkg.yaml:7:5: OA 8: premium package from 2027-06-01 overlaps the advanced package")
        .stderr_has("the manifests have 1 error:");
    assert!(
        !run.stderr.contains("OA 7"),
        "back-to-back packages do not overlap:\n{}",
        run.stderr
    );
}

#[test]
fn oaids_quoted_or_not_tiers_by_name_or_number_and_defaults() {
    let env = Env::new();
    env.file(
        "oapkg.yaml",
        "apiVersion: oapkg/v1\nkind: PackageSet\ndefaults:\n  tier: Premium\n  duration: 6\npackages:\n\
         \x20 - oaid: 4097311281936189049\n    start: 2026-12-01\n\
         \x20 - oaid: \"745830328927467685\"\n    tier: 1\n    start: 2026-12-01\n\
         \x20 - oaid: 9999999999999999999\n    tier: ADVANCED\n    start: 2026-12-01\n    duration: \"36\"\n",
    );
    env.run(&["validate"])
        .code(0)
        .stdout_has("3 packages in 1 file");
    let plan = env.run(&["plan", "--format", "json"]).code(0).json();
    let changes = plan["changes"].as_array().unwrap();
    let by_oaid = |oaid: &str| {
        changes
            .iter()
            .find(|c| c["oaid"] == oaid)
            .unwrap_or_else(|| panic!("{oaid} missing"))
    };
    assert_eq!(by_oaid("4097311281936189049")["tier"], "premium");
    assert_eq!(by_oaid("4097311281936189049")["duration_months"], 6);
    assert_eq!(by_oaid("745830328927467685")["tier"], "trial");
    assert_eq!(by_oaid("9999999999999999999")["duration_months"], 36);
}

#[test]
fn numbers_that_are_not_oaids_are_never_rounded() {
    let env = Env::new();
    env.file(
        "oapkg.yaml",
        manifest(
            "  - {oaid: 4097311281936189049.0, tier: trial, start: 2026-12-01, duration: 1}\n\
             \x20 - {oaid: 1e18, tier: trial, start: 2026-12-01, duration: 1}\n\
             \x20 - {oaid: 0x1F, tier: trial, start: 2026-12-01, duration: 1}\n\
             \x20 - {oaid: 99999999999999999999, tier: trial, start: 2026-12-01, duration: 1}\n\
             \x20 - {oaid: -4097311281936189049, tier: trial, start: 2026-12-01, duration: 1}\n\
             \x20 - {oaid: \"\", tier: trial, start: 2026-12-01, duration: 1}\n",
        ),
    );
    let run = env.run(&["validate"]);
    run.code(1)
        .stderr_has("oapkg.yaml:4:12: bad OAID: found `4097311281936189049.0`")
        .stderr_has("oapkg.yaml:5:12: bad OAID: found `1e18`")
        .stderr_has("oapkg.yaml:6:12: bad OAID: found \"0x1F\"")
        .stderr_has("oapkg.yaml:7:12: bad OAID: found \"99999999999999999999\": an OAID has at most 19 digits, this one has 20")
        .stderr_has("oapkg.yaml:8:12: bad OAID: found the negative number")
        .stderr_has("oapkg.yaml:9:12: bad OAID: found an empty text")
        .stderr_has("6 errors");
}

#[test]
fn date_edge_cases() {
    let env = Env::new();
    env.file(
        "oapkg.yaml",
        manifest(
            "  - {oaid: \"1\", tier: trial, start: 2027-01-31, duration: 1}\n\
             \x20 - {oaid: \"2\", tier: trial, start: 2028-02-29, duration: 12}\n\
             \x20 - {oaid: \"3\", tier: trial, start: 2028-01-31, duration: 1}\n",
        ),
    );
    let plan = env.run(&["plan", "--format", "json"]).code(0).json();
    let end = |oaid: &str| {
        plan["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["oaid"] == oaid)
            .unwrap()["end"]
            .clone()
    };
    assert_eq!(end("1"), "2027-02-27");
    assert_eq!(end("2"), "2029-02-27");
    assert_eq!(end("3"), "2028-02-28");

    env.file("bad.yaml", manifest("  - {oaid: \"1\", tier: trial, start: 2027-02-29, duration: 1}\n  - {oaid: \"2\", tier: trial, start: 2027-2-01, duration: 1}\n"));
    env.run(&["validate", "-f", "bad.yaml"])
        .code(1)
        .stderr_has("bad.yaml:4:37: bad date: found the text \"2027-02-29\"")
        .stderr_has("bad.yaml:5:37: bad date");
}

#[test]
fn start_dates_before_today_are_warnings() {
    let env = Env::new().today("2027-01-15");
    env.file(
        "oapkg.yaml",
        manifest("  - {oaid: \"1\", tier: trial, start: 2027-01-14, duration: 1}\n"),
    );
    env.run(&["validate"]).code(0).stderr_has("warning: oapkg.yaml:4:37: package 1@2027-01-14 starts on 2027-01-14, before today (2027-01-15)");
    let plan = env.run(&["plan", "--format", "json"]).code(0).json();
    assert_eq!(plan["warnings"][0]["key"], "1@2027-01-14");
    assert!(
        plan["warnings"][0]["message"]
            .as_str()
            .unwrap()
            .contains("before today")
    );
}

#[test]
fn directories_are_walked_skipping_hidden_entries_and_foreign_yaml() {
    let env = Env::new();
    env.file(
        "m/a.yaml",
        manifest("  - {oaid: \"1\", tier: trial, start: 2026-12-01, duration: 1}\n"),
    );
    env.file(
        "m/sub/b.yml",
        manifest("  - {oaid: \"2\", tier: trial, start: 2026-12-01, duration: 1}\n"),
    );
    env.file(
        "m/.hidden/c.yaml",
        manifest("  - {oaid: \"3\", tier: trial, start: 2026-12-01, duration: 1}\n"),
    );
    env.file(
        "m/.d.yaml",
        manifest("  - {oaid: \"4\", tier: trial, start: 2026-12-01, duration: 1}\n"),
    );
    env.file("m/notes.txt", "not yaml");
    env.file("m/ci.yaml", "on: push\njobs: {}\n");
    env.run(&["validate", "-f", "m"])
        .code(0)
        .stdout_has("2 packages in 2 files")
        .stderr_has("m/ci.yaml: skipped: not an oapkg manifest");
    // The same foreign file named explicitly must be a manifest.
    env.run(&["validate", "-f", "m/ci.yaml"])
        .code(1)
        .stderr_has("m/ci.yaml:1:1: missing `apiVersion: oapkg/v1`");
}

#[test]
fn missing_default_manifest_says_what_to_do() {
    Env::new()
        .run(&["validate"])
        .code(1)
        .stderr_has("oapkg.yaml: cannot read")
        .stderr_has("-f");
}

#[test]
fn the_schema_describes_what_the_parser_accepts() {
    let schema = Env::new().run(&["schema"]).code(0).json();
    assert_eq!(
        schema["additionalProperties"], false,
        "unknown top-level fields are refused"
    );
    let top: Vec<&str> = schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        top,
        oapkg::manifest::raw::RawDocument::FIELDS
            .iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
    );
    let package = &schema["$defs"]["Package"];
    assert_eq!(package["additionalProperties"], false);
    let mut fields: Vec<&str> = package["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort();
    let mut expected = oapkg::manifest::raw::RawPackage::FIELDS.to_vec();
    expected.sort();
    assert_eq!(fields, expected);
    let required: Vec<&str> = package["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(required, ["oaid", "start"]);
}

#[test]
fn the_manifest_schema_speaks_the_manifests_words_not_rusts() {
    let run = Env::new().run(&["schema"]);
    run.code(0);
    let schema = run.json();
    for name in schema["$defs"].as_object().unwrap().keys() {
        assert!(
            !name.starts_with("Raw") && !name.ends_with("Schema"),
            "a Rust type name: {name}"
        );
    }
    for rust in ["`None`", "Option<", "Spanned", "Vec<"] {
        assert!(
            !run.stdout.contains(rust),
            "{rust} in the schema:\n{}",
            run.stdout
        );
    }
    // A PriceList or CoveragePolicy document has no `packages`.
    let required = schema["required"].as_array().unwrap();
    assert!(!required.iter().any(|r| r == "packages"), "{required:?}");
    insta::assert_snapshot!("manifest_schema", run.stdout);
}

#[test]
fn completions_for_common_shells() {
    for shell in ["bash", "zsh", "fish"] {
        Env::new()
            .run(&["completions", shell])
            .code(0)
            .stdout_has("state")
            .stdout_has("detailed-exitcode");
    }
}

#[test]
fn usage_errors_exit_1_not_2() {
    // 2 means "something to buy"; a typo in a flag must not look like it.
    Env::new()
        .run(&["plan", "--detailed-exitcod"])
        .code(1)
        .stderr_has("--detailed-exitcode");
    Env::new().run(&["frobnicate"]).code(1);
    Env::new().run(&["--help"]).code(0).stdout_has("plan");
    Env::new()
        .run(&["--version"])
        .code(0)
        .stdout_has(env!("CARGO_PKG_VERSION"));
}

/// Zalo OA ids never start with 0: `0123`, quoted or
/// not, is an error at its place; so is `state import --oaid 0123`.
#[test]
fn an_oaid_with_a_leading_zero_is_refused_where_it_is_declared() {
    let env = Env::new();
    env.file(
        "oapkg.yaml",
        indoc! {r#"
            apiVersion: oapkg/v1
            kind: PackageSet
            packages:
              - oaid: 0123
                tier: premium
                start: 2026-12-01
                duration: 12
              - oaid: "0456"
                tier: premium
                start: 2026-12-01
                duration: 12
        "#},
    );
    let run = env.run(&["validate"]);
    run.code(1);
    for line_col in ["oapkg.yaml:4:11", "oapkg.yaml:8:11"] {
        let line = run
            .stderr
            .lines()
            .find(|l| l.contains(line_col))
            .unwrap_or_else(|| panic!("no error at {line_col}:\n{}", run.stderr));
        assert!(line.contains("never start with 0"), "{line}");
    }
    env.run(&["plan"]).code(1).stderr_has("never start with 0");
    env.import("0123", "trial", "2026-12-01", "1", &[])
        .code(1)
        .stderr_has("--oaid \"0123\"")
        .stderr_has("never start with 0");
    assert!(!env.path("state/oapkg.state.json").exists());
}

/// Manifests with errors in two files (one file named with a comma and a
/// colon, which GitHub's property syntax must escape), a warning, and a
/// message that carries a `%`.
fn machine_readable_env() -> Env {
    let env = Env::new();
    env.file(
        "m/b.yaml",
        manifest(
            "  - {oaid: \"9\", tier: advanced, start: 2026-12-01, duration: 12}\n\
             \x20 - {oaid: \"9\", tier: premium, start: 2027-06-01, duration: 6}\n\
             \x20 - {oaid: \"8\", tier: trial, start: 2026-12-01, duration: 40}\n",
        ),
    );
    env.file(
        "m/a,1:x.yaml",
        manifest("  - oaid: 12%5\n    tier: gold\n    start: 2026-12-01\n    duration: 1\n"),
    );
    env
}

#[test]
fn validate_json_lists_every_diagnostic_sorted_by_file_and_line() {
    let env = machine_readable_env();
    let run = env.run(&["validate", "-f", "m", "--format", "json"]);
    run.code(1);
    insta::assert_snapshot!("validate_json_invalid", run.stdout);
    let report = run.json();
    assert_eq!(report["valid"], false);

    // Valid manifests with a warning: valid, the packages counted, exit 0.
    std::fs::remove_file(env.path("m/a,1:x.yaml")).unwrap();
    env.file(
        "m/b.yaml",
        manifest(
            "  - {oaid: \"9\", tier: advanced, start: 2026-12-01, duration: 12}\n\
             \x20 - {oaid: \"9\", tier: premium, start: 2027-06-01, duration: 6}\n",
        ),
    );
    let run = env.run(&["validate", "-f", "m", "--format", "json"]);
    run.code(0);
    insta::assert_snapshot!("validate_json_valid", run.stdout);
}

/// One GitHub Actions workflow command, parsed the way the runner parses
/// it: `::name prop=value,prop=value::message`, properties and message
/// unescaped.
#[derive(Debug, PartialEq)]
struct WorkflowCommand {
    name: String,
    properties: std::collections::BTreeMap<String, String>,
    message: String,
}

fn unescape(text: &str, property: bool) -> String {
    let mut out = text.replace("%0D", "\r").replace("%0A", "\n");
    if property {
        out = out.replace("%3A", ":").replace("%2C", ",");
    }
    out.replace("%25", "%")
}

fn parse_workflow_command(line: &str) -> Option<WorkflowCommand> {
    let rest = line.strip_prefix("::")?;
    let (head, message) = rest.split_once("::")?;
    let (name, properties) = head.split_once(' ').unwrap_or((head, ""));
    let properties = properties
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').expect("property is key=value");
            (k.to_owned(), unescape(v, true))
        })
        .collect();
    Some(WorkflowCommand {
        name: name.to_owned(),
        properties,
        message: unescape(message, false),
    })
}

#[test]
fn validate_github_prints_annotations_githubs_parser_reads_back() {
    let env = machine_readable_env();
    let run = env.run(&["validate", "-f", "m", "--format", "github"]);
    run.code(1);
    insta::assert_snapshot!("validate_github_invalid", run.stdout);
    let commands: Vec<WorkflowCommand> = run
        .stdout
        .lines()
        .filter_map(parse_workflow_command)
        .collect();
    let json = env.run(&["validate", "-f", "m", "--format", "json"]).json();
    let diagnostics = json["diagnostics"].as_array().unwrap();
    assert_eq!(commands.len(), diagnostics.len(), "{}", run.stdout);
    assert!(commands.len() >= 4, "{}", run.stdout);
    for (command, diagnostic) in commands.iter().zip(diagnostics) {
        assert_eq!(command.name, diagnostic["severity"].as_str().unwrap());
        assert_eq!(
            command.properties["file"],
            diagnostic["file"].as_str().unwrap()
        );
        assert_eq!(command.properties["line"], diagnostic["line"].to_string());
        assert_eq!(command.properties["col"], diagnostic["column"].to_string());
        assert_eq!(command.message, diagnostic["message"].as_str().unwrap());
        // Each line is one command: no raw line break survived.
        assert!(!command.message.contains("::"), "{command:?}");
    }
    // The file with a comma and a colon in its name is read back whole.
    let first = &commands[0];
    assert_eq!(first.name, "error");
    assert_eq!(first.properties["file"], "m/a,1:x.yaml");
    assert_eq!(first.properties["line"], "4");
    assert_eq!(first.properties["col"], "11");
    assert!(first.message.contains("12%5"), "{first:?}");
    // Sorted by file, then line.
    let places: Vec<(String, u32)> = commands
        .iter()
        .map(|c| {
            (
                c.properties["file"].clone(),
                c.properties["line"].parse().unwrap(),
            )
        })
        .collect();
    let mut sorted = places.clone();
    sorted.sort();
    assert_eq!(places, sorted);
    // The warning is an annotation too.
    assert!(
        commands
            .iter()
            .any(|c| c.name == "warning" && c.properties["file"] == "m/b.yaml")
    );
}

#[test]
fn validate_on_a_directory_without_a_manifest_says_so_and_fails() {
    let env = Env::new();
    env.file("m/other.yaml", "name: not ours\n");
    std::fs::create_dir_all(env.path("empty")).unwrap();
    env.run(&["validate", "-f", "empty"])
        .code(1)
        .stderr_has("no manifest found in empty");
    env.run(&["validate", "-f", "m"])
        .code(1)
        .stderr_has("m/other.yaml: skipped: not an oapkg manifest")
        .stderr_has("no manifest found in m");
}
