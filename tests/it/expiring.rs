//! `oapkg expiring`: cron-friendly exit codes with pinned "today".

use indoc::indoc;

use crate::support::{Env, manifest};

#[test]
fn reports_oas_running_out_and_exits_2() {
    let env = Env::new().today("2027-11-10");
    env.file(
        "oapkg.yaml",
        indoc! {r#"
            apiVersion: oapkg/v1
            kind: PackageSet
            packages:
              - {oaid: "1", name: ends soon, tier: premium, start: 2026-12-01, duration: 12}
              - {oaid: "2", name: renewed, tier: premium, start: 2026-12-01, duration: 12}
              - {oaid: "2", name: renewed, tier: premium, start: 2027-12-01, duration: 12}
        "#},
    );
    let run = env.run(&["expiring"]);
    run.code(2)
        .stdout_has("20         2027-11-30  1     ends soon  premium  1@2026-12-01  declared\n");
    assert!(!run.stdout.contains("renewed"), "{}", run.stdout);
    let json = env.run(&["expiring", "--format", "json"]).code(2).json();
    insta::assert_json_snapshot!("expiring_json", json);
    env.run(&["expiring", "--within", "19"])
        .code(0)
        .stdout_has("No OA runs out within 19 days");
}

#[test]
fn recorded_packages_count_too() {
    let env = Env::new().today("2027-01-20");
    env.file(
        "oapkg.yaml",
        manifest("  - {oaid: \"9\", tier: trial, start: 2027-06-01, duration: 1}\n"),
    );
    env.import("8", "trial", "2027-01-01", "1", &[]).code(0);
    let json = env.run(&["expiring", "--format", "json"]).code(2).json();
    assert_eq!(json[0]["oaid"], "8");
    assert_eq!(json[0]["known_from"], "recorded");
}

#[test]
fn the_soonest_to_run_out_come_first_in_aligned_columns() {
    let env = Env::new().today("2027-11-10");
    env.file(
        "oapkg.yaml",
        indoc! {r#"
            apiVersion: oapkg/v1
            kind: PackageSet
            packages:
              - {oaid: "1", name: ends later, tier: premium, start: 2026-12-01, duration: 12}
              - {oaid: "4097311281936189049", name: Cửa hàng, tier: trial, start: 2027-11-01, duration: 1}
              - {oaid: "2", tier: advanced, start: 2027-10-16, duration: 1}
        "#},
    );
    let run = env.run(&["expiring"]);
    run.code(2);
    insta::assert_snapshot!("expiring_text", run.stdout);
    let json = env.run(&["expiring", "--format", "json"]).code(2).json();
    let days: Vec<i64> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["days_left"].as_i64().unwrap())
        .collect();
    assert_eq!(days, [5, 20, 20]);
}
