//! `kind: PriceList`: costs in every plan format, the confirmation and the
//! spend after apply, `--max-spend` and the balance pre-flight, against the
//! real binary and the simulator.

use esms_sim::{Call, Package, SimConfig};

use crate::support::Env;
use crate::support::{apply, last_line, purchase_requests, recorded, start};

pub(crate) const PRICES: &str = "apiVersion: oapkg/v1
kind: PriceList
currency: VND
monthly:
  trial: 10000
  advanced: 59000
  premium: 399000
";

/// Two packages: 12 months of premium (4,788,000) and 6 of advanced
/// (354,000): 5,142,000 VND in all.
const PACKAGES: &str = "apiVersion: oapkg/v1
kind: PackageSet
packages:
  - oaid: \"4097311281936189049\"
    name: SVoucher main
    tier: premium
    start: 2026-12-01
    duration: 12
  - oaid: \"745830328927467685\"
    tier: advanced
    start: 2027-01-01
    duration: 6
";

const TOTAL: u64 = 4_788_000 + 354_000;

fn priced() -> Env {
    let env = Env::with_state();
    env.file("oapkg.yaml", format!("{PRICES}---\n{PACKAGES}"));
    env
}

/// An account holding both OAs, charging what the price list says.
fn account(balance: u64) -> SimConfig {
    SimConfig::new()
        .oaid("4097311281936189049")
        .oaid("745830328927467685")
        .balance(balance)
        .price_per_month(Package::Trial, 10_000)
        .price_per_month(Package::Advanced, 59_000)
        .price_per_month(Package::Premium, 399_000)
}

#[test]
fn costs_in_text_json_and_markdown() {
    // No state file: the JSON snapshot holds no random lineage.
    let env = Env::new();
    env.file("oapkg.yaml", format!("{PRICES}---\n{PACKAGES}"));
    let text = env.run(&["plan"]).code(0).stdout.clone();
    assert!(text.contains("# costs 4,788,000 VND (399,000 VND a month × 12 months)"));
    assert!(
        text.ends_with("Total cost: 5,142,000 VND (2 packages).\n"),
        "{text}"
    );
    insta::assert_snapshot!("costs_plan_text", text);

    let json = env.run(&["plan", "--format", "json"]).code(0).json();
    let changes = json["changes"].as_array().unwrap();
    assert_eq!(
        changes[0]["cost"],
        serde_json::json!({"amount": 4_788_000, "currency": "VND"})
    );
    assert_eq!(
        changes[1]["cost"],
        serde_json::json!({"amount": 354_000, "currency": "VND"})
    );
    assert_eq!(
        json["summary"]["cost"],
        serde_json::json!({"amount": TOTAL, "currency": "VND"})
    );
    assert_eq!(changes[0]["origin"], "manifest");
    insta::assert_snapshot!(
        "costs_plan_json",
        env.run(&["plan", "--format", "json"]).stdout
    );

    let markdown = env
        .run(&["plan", "--format", "markdown"])
        .code(0)
        .stdout
        .clone();
    assert!(markdown.starts_with("**Plan: 2 to purchase"));
    assert!(markdown.contains("**Total cost: 5,142,000 VND (2 packages).**"));
    assert!(markdown.contains("| Action | OAID | Name | Tier | Start | End | Months | Cost |"));
    assert!(markdown.contains("| 12 | 4,788,000 VND |"));
    insta::assert_snapshot!("costs_plan_markdown", markdown);
}

#[test]
fn without_a_price_list_there_is_no_cost() {
    let env = Env::new();
    env.file("oapkg.yaml", PACKAGES);
    let text = env.run(&["plan"]).stdout;
    assert!(!text.contains("cost"), "{text}");
    let json = env.run(&["plan", "--format", "json"]).json();
    assert_eq!(json["summary"]["cost"], serde_json::Value::Null);
    assert_eq!(json["changes"][0]["cost"], serde_json::Value::Null);
}

#[test]
fn price_lists_are_validated_with_places() {
    let env = Env::new();
    env.file(
        "a.yaml",
        "apiVersion: oapkg/v1\nkind: PriceList\ncurrency: VND\nmonthly:\n  trial: 0\n  advanced: 1.5\n  premum: 3\n",
    );
    env.file("b.yaml", PRICES);
    env.file("c.yaml", format!("{PRICES}packages: []\n"));
    let run = env.run(&["validate", "-f", "a.yaml", "-f", "b.yaml", "-f", "c.yaml"]);
    run.code(1)
        .stderr_has("a.yaml:5:10: bad price for trial: found the number 0; expected a whole amount greater than 0")
        .stderr_has("a.yaml:6:13: bad price for advanced: found the decimal number 1.5")
        .stderr_has("a.yaml:7:3: unknown field `premum` in `monthly` (tiers) (did you mean `premium`?)")
        .stderr_has("a.yaml:5:3: `monthly` has no price for premium")
        .stderr_has("c.yaml:8:11: `packages` belongs to a `kind: PackageSet` document, not `kind: PriceList`");
    // Two valid price lists: the second names the first.
    let env = Env::new();
    env.file("b.yaml", PRICES);
    env.file("d.yaml", PRICES);
    env.run(&["validate", "-f", "b.yaml", "-f", "d.yaml"])
        .code(1)
        .stderr_has(
            "d.yaml:1:1: a second `kind: PriceList`; there may be at most one across all manifests",
        )
        .stderr_has("b.yaml:1:1: the first price list");
}

#[test]
fn apply_says_what_was_spent_and_the_account_pays_exactly_that() {
    let env = priced();
    let sim = start(account(10_000_000));
    let run = apply(&env, &sim, &[]);
    run.code(0);
    assert!(
        run.stdout.contains(
            "Apply complete: 2 purchased, 0 failed, 0 unconfirmed.\nSpent (estimated from the price list): 5,142,000 VND.\n"
        ),
        "{}",
        run.stdout
    );
    assert_eq!(
        last_line(&run),
        "Spent (estimated from the price list): 5,142,000 VND."
    );
    assert_eq!(sim.balance(), 10_000_000 - TOTAL);
    // One balance call, before the purchases.
    let calls: Vec<Call> = sim.requests().iter().map(|r| r.call).collect();
    assert_eq!(calls.iter().filter(|c| **c == Call::Balance).count(), 1);
    let first_purchase = calls.iter().position(|c| *c == Call::Purchase).unwrap();
    let balance = calls.iter().position(|c| *c == Call::Balance).unwrap();
    assert!(balance < first_purchase, "{calls:?}");
}

#[test]
fn a_balance_below_the_total_buys_nothing() {
    let env = priced();
    let sim = start(account(TOTAL - 1));
    let run = apply(&env, &sim, &[]);
    run.code(1).stderr_has(
        "pre-flight: the eSMS balance is 5,141,999, below the 5,142,000 VND this run costs; nothing was bought",
    );
    assert_eq!(purchase_requests(&sim), 0);
    assert!(recorded(&env).is_empty());
    assert_eq!(sim.balance(), TOTAL - 1);
    // Exactly the total is enough.
    let sim = start(account(TOTAL));
    apply(&env, &sim, &[]).code(0);
    assert_eq!(sim.balance(), 0);
}

#[test]
fn max_spend_refuses_a_plan_that_costs_more_before_anything() {
    let env = priced();
    let sim = start(account(100_000_000));
    apply(&env, &sim, &["--max-spend", "5141999"])
        .code(1)
        .stderr_has(
            "the plan costs 5,142,000 VND, more than --max-spend 5,141,999; nothing was bought",
        );
    assert!(sim.requests().is_empty(), "not even the pre-flight");
    assert!(recorded(&env).is_empty());
    // Narrowed to what the budget allows, it goes through.
    apply(
        &env,
        &sim,
        &["--max-spend", "4788000", "--only", "4097311281936189049"],
    )
    .code(0)
    .stdout_has("Spent (estimated from the price list): 4,788,000 VND.");
    // Without a price list the cost is unknown: refused, not guessed.
    let env = Env::with_state();
    env.file("oapkg.yaml", PACKAGES);
    apply(&env, &sim, &["--max-spend", "1"])
        .code(1)
        .stderr_has("--max-spend 1 needs prices to check against");
}

#[test]
fn skip_preflight_skips_the_balance_too() {
    let env = priced();
    let sim = start(account(100_000_000));
    apply(&env, &sim, &["--skip-preflight"]).code(0);
    assert!(sim.requests().iter().all(|r| r.call == Call::Purchase));
}

#[test]
fn apply_format_json_says_what_was_spent() {
    let env = priced();
    let sim = start(account(TOTAL));
    let run = apply(&env, &sim.control(), &["--format", "json"]);
    run.code(0);
    let document = run.json();
    assert_eq!(
        document["summary"]["cost"],
        serde_json::json!({"amount": TOTAL, "currency": "VND"})
    );
    assert_eq!(document["summary"]["purchased"], 2);
}

#[test]
fn a_total_cost_that_does_not_fit_is_an_error_never_saturated() {
    // Each package fits (u64::MAX / 12 a month × 12 months); two do not.
    let huge = u64::MAX / 12;
    let env = Env::with_state();
    env.file(
        "oapkg.yaml",
        format!(
            "apiVersion: oapkg/v1
kind: PriceList
currency: VND
monthly:
  trial: 1
  advanced: 1
  premium: {huge}
---
{PACKAGES}  - oaid: \"5520017735810466321\"
    tier: premium
    start: 2027-01-01
    duration: 12
"
        ),
    );
    let refused = |run: &crate::support::Run| {
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
        // Only the error names u64::MAX; no total, cost or spend shows it.
        let shown = format!("{}{}", run.stdout, run.stderr)
            .matches("18,446,744,073,709,551,615")
            .count();
        assert!(
            shown <= 1 && !run.stdout.contains("Total cost: 18"),
            "a saturated amount was shown:\n{}\n{}",
            run.stdout,
            run.stderr
        );
    };
    let plan = env.run(&["plan"]);
    plan.code(1)
        .stderr_has("the plan cannot be priced")
        .stderr_has(
            "the cost does not fit in a 64-bit amount (more than 18,446,744,073,709,551,615 VND): \
         check the monthly prices of the price list at oapkg.yaml:1:1",
        );
    refused(&plan);
    let sim = start(account(u64::MAX));
    for extra in [&[][..], &["--max-spend", "1000"][..]] {
        let run = apply(&env, &sim, extra);
        run.code(1).stderr_has("does not fit in a 64-bit amount");
        refused(&run);
    }
    assert!(
        sim.requests().is_empty(),
        "nothing sent, not even the pre-flight"
    );
    assert!(recorded(&env).is_empty());
}
