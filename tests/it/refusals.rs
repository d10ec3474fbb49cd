//! Every refusal at once (SPEC, Plan: "Every refusal at once"): the text
//! plan ends with one line naming every flag apply would need and the exact
//! command; apply's refusal lists them all together, never one per run, and
//! a flag already given is not reported. A stale plan says what changed.

use crate::support::{Env, Pkg, account, apply, manifest, start, write_manifest};

/// A state with two recorded packages, and manifests asking for a replace
/// of one (`2`), a purchase over the other's months under a moved start
/// (`3`), and `extra` purchases besides.
fn guarded(extra: usize) -> (Env, Vec<Pkg>) {
    let env = Env::with_state();
    env.import("2", "advanced", "2031-01-01", "6", &[]).code(0);
    env.import("3", "premium", "2031-01-01", "12", &[]).code(0);
    let mut pkgs = vec![
        Pkg::new("2", "2031-01-01", "premium", 12),
        Pkg::new("3", "2031-01-15", "premium", 12),
    ];
    pkgs.extend((0..extra).map(|i| Pkg::new((100 + i).to_string(), "2031-02-01", "trial", 1)));
    write_manifest(&env, &pkgs);
    (env, pkgs)
}

#[test]
fn the_text_plan_ends_with_every_flag_and_the_command() {
    let (env, _) = guarded(22);
    let plan = env.run(&["plan"]);
    plan.code(0);
    let last = plan.stdout.trim_end().lines().last().unwrap();
    assert_eq!(
        last,
        "apply will refuse without: --allow-replace --allow-overlap --max-purchases 24; \
         to apply it as reviewed: oapkg apply --allow-replace --allow-overlap --max-purchases 24"
    );
    // With its manifests, its state and its plan file named as given.
    env.file("other.yaml", std::fs::read(env.path("oapkg.yaml")).unwrap());
    let named = env.run(&["plan", "-f", "other.yaml", "--out", "my plan.plan"]);
    named.code(0).stdout_has(
        "to apply it as reviewed: oapkg apply 'my plan.plan' --allow-replace --allow-overlap --max-purchases 24",
    );
    let fresh = env.run(&[
        "plan",
        "-f",
        "other.yaml",
        "--state",
        "state/oapkg.state.json",
    ]);
    fresh.code(0).stdout_has(
        "to apply it as reviewed: oapkg apply -f other.yaml --allow-replace --allow-overlap --max-purchases 24",
    );
    // Nothing needed: no such line.
    let env = Env::with_state();
    write_manifest(&env, &[Pkg::new("9", "2031-01-01", "trial", 1)]);
    let plain = env.run(&["plan"]);
    assert!(
        !plain.stdout.contains("apply will refuse"),
        "{}",
        plain.stdout
    );
}

#[test]
fn apply_refuses_with_every_missing_flag_at_once_and_never_a_given_one() {
    let (env, pkgs) = guarded(22);
    let sim = start(account(&pkgs));
    let refused = apply(&env, &sim.control(), &[]);
    refused
        .code(1)
        .stderr_has("apply will refuse without --allow-replace --allow-overlap --max-purchases 24:")
        .stderr_has("so it needs --allow-replace")
        .stderr_has("so it needs --allow-overlap")
        .stderr_has("more than --max-purchases 20")
        .stderr_has("nothing was bought")
        .stderr_has(
            "If the plan is right, run: oapkg apply --auto-approve --allow-replace --allow-overlap --max-purchases 24",
        )
        .stdout_has("Guards: apply will refuse this plan unless run with --allow-replace --allow-overlap --max-purchases 24:");
    assert!(sim.control().requests().is_empty(), "nothing was sent");

    // --allow-replace given: neither the plan shown nor the refusal asks
    // for it again.
    let given = apply(&env, &sim.control(), &["--allow-replace"]);
    given
        .code(1)
        .stdout_has("Guards: apply will refuse this plan unless run with --allow-overlap --max-purchases 24:")
        .stderr_has("apply will refuse without --allow-overlap --max-purchases 24:")
        .stderr_has(
            "If the plan is right, run: oapkg apply --auto-approve --allow-replace --allow-overlap --max-purchases 24",
        );
    assert!(
        !given.stderr.contains("needs --allow-replace"),
        "{}",
        given.stderr
    );
    assert!(
        !given.stdout.contains("unless run with --allow-replace"),
        "{}",
        given.stdout
    );
    assert!(sim.control().requests().is_empty(), "nothing was sent");

    // Every flag given: no guard note at all, and the run buys.
    let all = apply(
        &env,
        &sim.control(),
        &[
            "--allow-replace",
            "--allow-overlap",
            "--max-purchases",
            "24",
        ],
    );
    all.code(0).stdout_has("Apply complete: 24 purchased");
    assert!(!all.stdout.contains("Guards:"), "{}", all.stdout);
    assert!(!all.stdout.contains("apply will refuse"), "{}", all.stdout);
}

#[test]
fn a_stale_plan_says_the_serial_the_files_and_the_keys_that_changed() {
    let env = Env::with_state();
    env.file(
        "packages/a.yaml",
        manifest(&Pkg::new("1", "2031-01-01", "trial", 1).yaml()),
    );
    env.file(
        "packages/b.yaml",
        manifest(&Pkg::new("2", "2031-01-01", "trial", 1).yaml()),
    );
    let pkgs = [
        Pkg::new("1", "2031-01-01", "trial", 1),
        Pkg::new("2", "2031-01-01", "trial", 1),
        Pkg::new("3", "2031-01-01", "trial", 1),
    ];
    let sim = start(account(&pkgs));
    env.run(&["plan", "-f", "packages", "--out", "p.plan"])
        .code(0)
        .stdout_has("Plan: 2 to purchase");
    // Since: package 1 recorded (bought elsewhere), and b.yaml edited to
    // add package 3.
    env.import("1", "trial", "2031-01-01", "1", &[]).code(0);
    env.file(
        "packages/b.yaml",
        manifest(&format!("{}{}", pkgs[1].yaml(), pkgs[2].yaml())),
    );
    let stale = crate::support::run(&env, &sim.control(), &["apply", "p.plan"]);
    stale
        .code(1)
        .stderr_has("plan file p.plan cannot be applied")
        .stderr_has("state serial 0 -> 1")
        .stderr_has("packages/b.yaml changed")
        .stderr_has("1@2031-01-01 was `purchase` in the plan and is `unchanged` now")
        .stderr_has("3@2031-01-01 was `unchanged` in the plan and is `purchase` now");
    assert!(
        !stale.stderr.contains("packages/a.yaml"),
        "{}",
        stale.stderr
    );
    assert!(sim.control().requests().is_empty(), "nothing was sent");
}
