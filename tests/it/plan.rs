//! `oapkg plan` through the real binary: the action table, the JSON shape,
//! exit codes and saved plans.

use crate::support::{Env, manifest};

const TWO: &str = "  - oaid: \"4097311281936189049\"\n    name: SVoucher main\n    tier: premium\n    start: 2026-12-01\n    duration: 12\n\
                   \x20 - oaid: 745830328927467685\n    tier: advanced\n    start: 2027-01-01\n    duration: 6\n";

fn example() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/oapkg.yaml")).unwrap()
}

#[test]
fn fresh_state_json_shape_field_by_field() {
    let env = Env::new();
    env.file("packages/svoucher.yaml", manifest(TWO));
    let run = env.run(&[
        "plan",
        "-f",
        "packages/svoucher.yaml",
        "--format",
        "json",
        "--detailed-exitcode",
    ]);
    run.code(2);
    let plan = run.json();
    assert_eq!(plan["format_version"], 2);
    assert_eq!(plan["oapkg_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(plan["today"], "2026-11-26");
    assert_eq!(plan["state"]["lineage"], serde_json::Value::Null);
    assert_eq!(plan["state"]["serial"], 0);
    assert!(plan["state"].as_object().unwrap().contains_key("checksum"));
    let changes = plan["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2);
    let c = &changes[0];
    assert_eq!(c["key"], "4097311281936189049@2026-12-01");
    assert_eq!(c["action"], "purchase");
    assert_eq!(c["oaid"], "4097311281936189049");
    assert_eq!(c["name"], "SVoucher main");
    assert_eq!(c["tier"], "premium");
    assert_eq!(c["start"], "2026-12-01");
    assert_eq!(c["duration_months"], 12);
    assert_eq!(c["end"], "2027-11-30");
    assert_eq!(c["before"], serde_json::Value::Null);
    assert_eq!(c["origin"], "manifest");
    assert_eq!(c["needs"], serde_json::json!([]));
    assert_eq!(c["cost"], serde_json::Value::Null);
    assert_eq!(c["source"]["file"], "packages/svoucher.yaml");
    assert_eq!(c["source"]["line"], 4);
    let c = &changes[1];
    assert_eq!(c["key"], "745830328927467685@2027-01-01");
    assert_eq!(c["oaid"], "745830328927467685");
    assert_eq!(c["name"], serde_json::Value::Null);
    assert_eq!(c["end"], "2027-06-30");
    assert_eq!(plan["warnings"], serde_json::json!([]));
    assert_eq!(plan["needs"], serde_json::json!([]));
    assert_eq!(
        plan["summary"],
        serde_json::json!({"purchase": 2, "replace": 0, "unconfirmed": 0, "unchanged": 0,
                           "orphan": 0, "expired": 0, "cost": null, "in_flight": 0})
    );
    // Plan needs no state file and writes none.
    assert!(!env.path("state").exists());
}

#[test]
fn text_plan_of_the_bundled_example() {
    let env = Env::new();
    env.file("oapkg.yaml", example());
    let run = env.run(&["plan", "--detailed-exitcode"]);
    run.code(2);
    insta::assert_snapshot!("example_plan_text", run.stdout);
    assert!(
        !run.stdout.contains('\x1b'),
        "no colour when stdout is not a terminal"
    );
}

#[test]
fn markdown_and_json_of_the_bundled_example() {
    let env = Env::new();
    env.file("oapkg.yaml", example());
    insta::assert_snapshot!(
        "example_plan_markdown",
        env.run(&["plan", "--format", "markdown"]).code(0).stdout
    );
    insta::assert_snapshot!(
        "example_plan_json",
        env.run(&["plan", "--format", "json"]).code(0).stdout
    );
}

/// Builds the state the action table needs through `state import`.
fn import(env: &Env, oaid: &str, tier: &str, start: &str, duration: &str) {
    env.import(
        oaid,
        tier,
        start,
        duration,
        &["--service-preview-id", "52330"],
    )
    .code(0);
}

#[test]
fn unchanged_replace_and_orphan() {
    let env = Env::new();
    env.file(
        "oapkg.yaml",
        manifest(
            "  - {oaid: \"1\", name: same, tier: premium, start: 2026-12-01, duration: 12}\n\
             \x20 - {oaid: \"2\", name: longer, tier: premium, start: 2026-12-01, duration: 12}\n\
             \x20 - {oaid: \"4\", name: new, tier: trial, start: 2026-12-01, duration: 1}\n",
        ),
    );
    import(&env, "1", "premium", "2026-12-01", "12");
    import(&env, "2", "premium", "2026-12-01", "6");
    import(&env, "3", "advanced", "2026-12-01", "3");

    let run = env.run(&["plan", "--detailed-exitcode"]);
    run.code(2)
        .stdout_has("Plan: 1 to purchase, 1 to replace, 0 unconfirmed, 1 unchanged, 1 orphaned.")
        .stdout_has("6 -> 12");
    let plan = env.run(&["plan", "--format", "json"]).code(0).json();
    let actions: Vec<(&str, &str)> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["key"].as_str().unwrap(), c["action"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        [
            ("2@2026-12-01", "replace"),
            ("3@2026-12-01", "orphan"),
            ("4@2026-12-01", "purchase")
        ]
    );
    let replace = &plan["changes"][0];
    assert_eq!(replace["duration_months"], 12);
    assert_eq!(replace["before"]["duration_months"], 6);
    let orphan = &plan["changes"][1];
    assert_eq!(orphan["tier"], "advanced");
    assert_eq!(orphan["before"]["tier"], "advanced");
    assert_eq!(orphan["source"], serde_json::Value::Null);
    assert_eq!(plan["state"]["serial"], 3);
    assert!(plan["state"]["lineage"].is_string());
    assert!(
        plan["state"]["checksum"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );

    // Declaring only what is recorded, identically: nothing to buy, exit 0.
    env.file(
        "oapkg.yaml",
        manifest("  - {oaid: \"1\", tier: premium, start: 2026-12-01, duration: 12}\n"),
    );
    env.run(&["plan", "--detailed-exitcode"])
        .code(0)
        .stdout_has("No changes.");
}

#[test]
fn unconfirmed_until_confirmed() {
    let env = Env::new();
    env.file(
        "oapkg.yaml",
        manifest("  - {oaid: \"5\", tier: premium, start: 2026-12-01, duration: 12}\n"),
    );
    write_unconfirmed(&env, "5", "2026-12-01");
    let run = env.run(&["plan", "--detailed-exitcode"]);
    run.code(2)
        .stdout_has("Plan: 0 to purchase, 0 to replace, 1 unconfirmed, 0 unchanged, 0 orphaned.");
    let plan = env.run(&["plan", "--format", "json"]).json();
    assert_eq!(plan["changes"][0]["action"], "unconfirmed");
    assert_eq!(plan["changes"][0]["before"]["status"], "unconfirmed");

    env.run(&[
        "state",
        "confirm",
        "5@2026-12-01",
        "--service-preview-id",
        "777",
    ])
    .code(0);
    env.run(&["plan", "--detailed-exitcode"])
        .code(0)
        .stdout_has("No changes.");
    let listed = env
        .run(&["state", "list", "--format", "json"])
        .code(0)
        .json();
    assert_eq!(listed[0]["status"], "submitted");
    assert_eq!(listed[0]["service_preview_id"], "777");
}

/// An unconfirmed record as apply leaves it, written through the library.
fn write_unconfirmed(env: &Env, oaid: &str, start: &str) {
    use oapkg::spec::{Oaid, Spec, Tier, parse_date};
    use oapkg::state::{Record, StateStore, Status};
    let store = StateStore::new(env.path("state/oapkg.state.json"));
    let lock = store.lock("test", std::time::Duration::ZERO).unwrap();
    let mut state = store.load().unwrap().state;
    let spec = Spec {
        oaid: Oaid::parse(oaid).unwrap(),
        tier: Tier::Premium,
        start: parse_date(start).unwrap(),
        duration_months: 12,
    };
    state.packages.insert(
        spec.key(),
        Record {
            spec_hash: spec.hash(),
            spec,
            name: None,
            status: Status::Unconfirmed,
            service_preview_id: None,
            result_code: None,
            result_message: Some("timed out after sending".into()),
            submitted_at: Some(jiff::Timestamp::UNIX_EPOCH),
            confirmed: None,
            by_policy: false,
        },
    );
    store.write(&lock, &mut state).unwrap();
}

#[test]
fn saved_plan_file() {
    let env = Env::new();
    env.file("oapkg.yaml", manifest(TWO));
    env.run(&["plan", "--out", "tfplan.json"])
        .code(0)
        .stdout_has("oapkg apply tfplan.json");
    let saved: serde_json::Value = serde_json::from_slice(&env.read("tfplan.json")).unwrap();
    let text = serde_json::to_string(&saved).unwrap();
    assert!(text.contains("4097311281936189049@2026-12-01"));
    assert!(text.contains("sha256:"), "manifest hash recorded: {text}");
    assert!(
        text.contains("\"serial\":0"),
        "state serial recorded: {text}"
    );
}

#[test]
fn colour_only_when_asked_for_a_terminal() {
    // Output to a pipe is never coloured, NO_COLOR or not.
    let env = Env::new();
    env.file("oapkg.yaml", manifest(TWO));
    let out = env
        .command(&["plan"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains('\x1b'));
    let out = env.command(&["plan", "--no-color"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains('\x1b'));
}

#[test]
fn colour_on_a_terminal_unless_disabled() {
    // `script` gives the binary a pseudo-terminal as stdout.
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: `script` (util-linux) is not installed");
        return;
    }
    let env = Env::new();
    env.file("oapkg.yaml", manifest(TWO));
    let on_terminal = |extra: &str, no_color: bool| {
        let bin = env!("CARGO_BIN_EXE_oapkg");
        let mut script = std::process::Command::new("script");
        script
            .args(["-qec", &format!("{bin} plan {extra}"), "/dev/null"])
            .current_dir(env.path("."))
            .env("OAPKG_TODAY", crate::support::TODAY)
            .env_remove("NO_COLOR");
        if no_color {
            script.env("NO_COLOR", "1");
        }
        String::from_utf8_lossy(&script.output().unwrap().stdout).into_owned()
    };
    assert!(
        on_terminal("", false).contains("\x1b[32m+"),
        "green + on a terminal"
    );
    assert!(!on_terminal("--no-color", false).contains('\x1b'));
    assert!(!on_terminal("", true).contains('\x1b'));
}

#[test]
fn global_flags_before_or_after_the_subcommand() {
    let env = Env::new();
    env.file("m.yaml", manifest(TWO));
    let after = env
        .run(&[
            "plan", "-f", "m.yaml", "--state", "s.json", "--format", "json",
        ])
        .code(0)
        .stdout
        .clone();
    let before = env
        .run(&[
            "-f", "m.yaml", "--state", "s.json", "plan", "--format", "json",
        ])
        .code(0)
        .stdout
        .clone();
    assert_eq!(after, before);
    import(&env, "1", "trial", "2026-12-01", "1");
    env.run(&["--state", "state/oapkg.state.json", "state", "list"])
        .code(0)
        .stdout_has("1@2026-12-01");
    env.run(&["state", "list", "--state", "other.json"])
        .code(0)
        .stdout_has("No packages recorded");
    let via_env = env
        .command(&["state", "list"])
        .env("OAPKG_STATE", "other.json")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&via_env.stdout).contains("No packages recorded"));
}

#[test]
fn invalid_manifest_plan_exits_1_without_output() {
    let env = Env::new();
    env.file(
        "oapkg.yaml",
        manifest("  - {oaid: x, tier: trial, start: 2026-12-01, duration: 1}\n"),
    );
    let run = env.run(&["plan", "--detailed-exitcode"]);
    run.code(1).stderr_has("oapkg.yaml:4:12: bad OAID");
    assert!(run.stdout.is_empty());
}

/// The manifest of a moved start date: the package recorded as bought on
/// 2026-12-01, declared now from 2026-12-15.
const MOVED: &str = "  - {oaid: \"4097311281936189049\", name: SVoucher main, tier: premium, start: 2026-12-15, duration: 12}\n";

#[test]
fn a_moved_start_date_needs_allow_overlap_in_every_format() {
    let env = Env::new();
    env.file("oapkg.yaml", manifest(MOVED));
    import(&env, "4097311281936189049", "premium", "2026-12-01", "12");

    let plan = env.run(&["plan", "--format", "json"]).code(0).json();
    let changes = plan["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2);
    let (orphan, moved) = (&changes[0], &changes[1]);
    assert_eq!(orphan["key"], "4097311281936189049@2026-12-01");
    assert_eq!(orphan["action"], "orphan");
    assert_eq!(orphan["needs"], serde_json::json!([]));
    assert_eq!(moved["key"], "4097311281936189049@2026-12-15");
    assert_eq!(moved["action"], "purchase");
    assert_eq!(moved["origin"], "manifest");
    assert_eq!(moved["needs"], serde_json::json!(["--allow-overlap"]));
    assert_eq!(
        moved["overlaps"],
        serde_json::json!(["4097311281936189049@2026-12-01"])
    );
    assert_eq!(moved["cost"], serde_json::Value::Null);
    assert_eq!(plan["needs"], serde_json::json!(["--allow-overlap"]));

    env.run(&["plan"])
        .code(0)
        .stdout_has("# 4097311281936189049@2026-12-15 will be purchased [needs --allow-overlap]")
        .stdout_has(
            "Guards: apply will refuse this plan unless run with --allow-overlap:\n  \
             --allow-overlap: 1 package over the months of a recorded package of the same OA and tier: 4097311281936189049@2026-12-15\n",
        );
    env.run(&["plan", "--format", "markdown"])
        .code(0)
        .stdout_has(
            "> [!CAUTION]\n> **Apply will refuse this plan unless run with `--allow-overlap`.**\n",
        );
}

/// A line with the time a record was imported (`recorded 2026-…Z`) pinned.
fn unstamped(line: &str) -> String {
    match line.find("recorded 20") {
        Some(at) => {
            let rest = &line[at + "recorded ".len()..];
            let end = rest
                .find(|c: char| c == ',' || c.is_whitespace())
                .unwrap_or(rest.len());
            format!("{}recorded [time]{}", &line[..at], &rest[end..])
        }
        None => line.to_owned(),
    }
}

#[test]
fn guards_in_text_and_markdown() {
    let env = Env::new();
    env.file(
        "oapkg.yaml",
        manifest(
            "  - {oaid: \"4097311281936189049\", name: SVoucher main, tier: premium, start: 2026-12-15, duration: 12}\n\
             \x20 - {oaid: \"2\", name: longer, tier: premium, start: 2026-12-01, duration: 12}\n\
             \x20 - {oaid: \"3\", name: upgrade, tier: premium, start: 2027-01-01, duration: 3}\n",
        ),
    );
    import(&env, "4097311281936189049", "premium", "2026-12-01", "12");
    import(&env, "2", "premium", "2026-12-01", "6");
    import(&env, "3", "advanced", "2026-12-01", "12");
    let lineage = env.run(&["plan", "--format", "json"]).json()["state"]["lineage"]
        .as_str()
        .unwrap()
        .to_owned();
    let filter = |out: &str| {
        out.replace(&lineage, "[lineage]")
            .lines()
            .map(unstamped)
            .collect::<Vec<_>>()
            .join("\n")
    };
    let text = env.run(&["plan"]).code(0).stdout.clone();
    assert!(text.contains("Warning: 3@2027-01-01: oapkg.yaml:6:5: the premium package from 2027-01-01 overlaps the recorded advanced package 3@2026-12-01"), "{text}");
    insta::assert_snapshot!("guards_plan_text", filter(&text));
    let markdown = env
        .run(&["plan", "--format", "markdown"])
        .code(0)
        .stdout
        .clone();
    insta::assert_snapshot!("guards_plan_markdown", filter(&markdown));
}

#[test]
fn expired_packages_in_text_json_and_markdown() {
    let env = Env::new().today("2027-01-15");
    env.file(
        "oapkg.yaml",
        manifest(
            "  - {oaid: \"1\", name: December promo, tier: trial, start: 2026-12-01, duration: 1}\n\
             \x20 - {oaid: \"2\", name: Year end, tier: trial, start: 2026-12-15, duration: 1}\n",
        ),
    );
    // 2026-12-01 + 1 month ends 2026-12-31: over. 2026-12-15 ends 2027-01-14:
    // over too, by one day. Nothing is to be bought.
    let text = env.run(&["plan", "--detailed-exitcode"]);
    text.code(0)
        .stdout_has("  x expired (ended before today; never bought)")
        .stdout_has("# 1@2026-12-01 ended on 2026-12-31, before today: it is never bought")
        .stdout_has("No changes. 0 unchanged, 0 orphaned, 2 expired.");
    assert!(
        !text.stdout.contains("starts on"),
        "no start-date warning for an expired package"
    );
    insta::assert_snapshot!("expired_plan_text", text.stdout);

    let plan = env.run(&["plan", "--format", "json"]).code(0).json();
    let changes = plan["changes"].as_array().unwrap();
    assert_eq!(changes[0]["action"], "expired");
    assert_eq!(changes[0]["end"], "2026-12-31");
    assert_eq!(changes[0]["before"], serde_json::Value::Null);
    assert_eq!(changes[0]["needs"], serde_json::json!([]));
    assert_eq!(changes[1]["action"], "expired");
    assert_eq!(changes[1]["end"], "2027-01-14");
    assert_eq!(plan["summary"]["expired"], 2);
    assert_eq!(plan["summary"]["purchase"], 0);
    assert_eq!(plan["warnings"], serde_json::json!([]));

    let markdown = env
        .run(&["plan", "--format", "markdown"])
        .code(0)
        .stdout
        .clone();
    assert!(markdown.starts_with("**No changes. 0 unchanged, 0 orphaned, 2 expired.**\n"));
    insta::assert_snapshot!("expired_plan_markdown", markdown);

    // A day earlier, the second one ends today: it is still bought, with a
    // start-date warning.
    let env = Env::new().today("2027-01-14");
    env.file(
        "oapkg.yaml",
        manifest(
            "  - {oaid: \"2\", name: Year end, tier: trial, start: 2026-12-15, duration: 1}\n",
        ),
    );
    let plan = env.run(&["plan", "--format", "json"]).code(0).json();
    assert_eq!(plan["changes"][0]["action"], "purchase");
    assert_eq!(plan["summary"]["expired"], 0);
    let warning = &plan["warnings"][0];
    assert_eq!(warning["key"], "2@2026-12-15");
    assert_eq!(warning["file"], "oapkg.yaml");
    assert_eq!(warning["line"], 4);
    assert!(warning["column"].is_u64());
    assert!(
        warning["message"]
            .as_str()
            .unwrap()
            .contains("before today (2027-01-14)")
    );
}

#[test]
fn start_date_warnings_are_not_repeated_for_recorded_packages() {
    let env = Env::new().today("2027-01-15");
    env.file(
        "oapkg.yaml",
        manifest(
            "  - {oaid: \"1\", tier: premium, start: 2027-01-01, duration: 12}\n\
             \x20 - {oaid: \"2\", tier: premium, start: 2027-01-10, duration: 12}\n\
             \x20 - {oaid: \"3\", tier: trial, start: 2026-11-01, duration: 1}\n",
        ),
    );
    import(&env, "1", "premium", "2027-01-01", "12");
    let plan = env.run(&["plan", "--format", "json"]).code(0).json();
    let warned: Vec<&str> = plan["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["key"].as_str().unwrap())
        .collect();
    assert_eq!(warned, ["2@2027-01-10"], "only the package the plan buys");
    let text = env.run(&["plan"]).code(0).stdout.clone();
    assert!(!text.contains("1@2027-01-01 starts on"), "{text}");
    assert!(
        text.contains("2@2027-01-10 starts on 2027-01-10, before today"),
        "{text}"
    );

    // `validate` never reads the state (issue 26): it warns from the
    // manifests alone, so about the recorded package too.
    let validate = env.run(&["validate"]);
    validate
        .code(0)
        .stderr_has("package 2@2027-01-10 starts on 2027-01-10, before today (2027-01-15)")
        .stderr_has("package 3@2026-11-01 ended on 2026-11-30, before today (2027-01-15): it is never bought (`expired`)")
        .stderr_has("package 1@2027-01-01 starts on 2027-01-01, before today (2027-01-15)");
}

#[test]
fn a_name_change_of_a_recorded_package_is_a_label_change() {
    let env = Env::new();
    env.file(
        "oapkg.yaml",
        manifest(
            "  - {oaid: \"1\", name: New name, tier: premium, start: 2026-12-01, duration: 12}\n",
        ),
    );
    env.import("1", "premium", "2026-12-01", "12", &["--name", "Old name"])
        .code(0);
    env.run(&["plan", "--detailed-exitcode"])
        .code(0)
        .stdout_has("  label 1@2026-12-01: \"Old name\" -> \"New name\"\n")
        .stdout_has("No changes. 1 unchanged, 0 orphaned.");
    let plan = env.run(&["plan", "--format", "json"]).code(0).json();
    assert_eq!(plan["changes"], serde_json::json!([]));
    assert_eq!(
        plan["labels"],
        serde_json::json!([{"key": "1@2026-12-01", "before": "Old name", "after": "New name"}])
    );
    env.run(&["plan", "--format", "markdown"])
        .code(0)
        .stdout_has("### Names changed")
        .stdout_has("- `1@2026-12-01`: Old name → **New name**");
}

#[test]
fn two_oapkg_roots_in_one_repository_have_their_own_comment_marker() {
    let env = Env::new();
    env.file(
        "shop/oapkg.yaml",
        manifest("  - {oaid: \"1\", tier: trial, start: 2026-12-01, duration: 1}\n"),
    );
    env.file(
        "ads/packages/a.yaml",
        manifest("  - {oaid: \"2\", tier: trial, start: 2026-12-01, duration: 1}\n"),
    );
    let shop = env.run(&[
        "plan",
        "-f",
        "shop/oapkg.yaml",
        "--state",
        "shop/state/oapkg.state.json",
        "--format",
        "markdown",
        "--out",
        "shop.plan",
    ]);
    shop.code(0);
    let ads = env.run(&[
        "plan",
        "-f",
        "ads/packages",
        "--state",
        "ads/oapkg.state.json",
        "--format",
        "markdown",
    ]);
    ads.code(0);
    assert!(
        shop.stdout
            .ends_with("\n<!-- oapkg-plan: shop/state/oapkg.state.json -->\n"),
        "{}",
        shop.stdout
    );
    assert!(
        ads.stdout
            .ends_with("\n<!-- oapkg-plan: ads/oapkg.state.json -->\n"),
        "{}",
        ads.stdout
    );
    let header = "State `ads/oapkg.state.json` · manifests `ads/packages`\n";
    assert!(ads.stdout.contains(header), "{}", ads.stdout);
    // `show` of a saved plan names the manifests it was made from.
    let shown = env.run(&[
        "show",
        "shop.plan",
        "--state",
        "shop/state/oapkg.state.json",
        "--format",
        "markdown",
    ]);
    shown.code(0);
    assert_eq!(shown.stdout, shop.stdout);
}
