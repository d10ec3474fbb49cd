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
        .stdout_has("1  ends soon  premium ends 2027-11-30 (20 days left");
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
