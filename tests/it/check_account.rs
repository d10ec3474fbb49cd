//! `plan --check-account`: apply's pre-flight asked at plan time (the
//! account's OAs, its balance, the keys), its findings shown as plan errors
//! in every format with exit 1, and nothing ever bought (the simulator's
//! ledger and request log prove it).

use esms_sim::{Call, Package, SimConfig};

use crate::costs::PRICES;
use crate::support::{API_KEY, Env, Pkg, Run, SECRET_KEY, manifest, start};

/// Two packages on OAs 7001 and 7002; with prices: 12 months of premium
/// (4,788,000) and 6 of advanced (354,000), 5,142,000 VND in all.
fn packages() -> String {
    let a = Pkg::new("7001", "2027-01-01", "premium", 12);
    let b = Pkg::new("7002", "2027-01-01", "advanced", 6);
    manifest(&format!("{}{}", a.yaml(), b.yaml()))
}

fn priced_account() -> SimConfig {
    SimConfig::new()
        .oaid("7001")
        .price_per_month(Package::Premium, 399_000)
        .price_per_month(Package::Advanced, 59_000)
}

fn calls(sim: &esms_sim::SimControl) -> Vec<Call> {
    sim.requests().iter().map(|r| r.call).collect()
}

#[test]
fn a_good_account_passes_with_one_call_each_and_buys_nothing() {
    let sim = start(priced_account().oaid("7002").balance(10_000_000));
    let env = Env::with_state().with_sim(&sim);
    env.file("oapkg.yaml", format!("{PRICES}---\n{}", packages()));
    env.run(&[
        "plan",
        "--check-account",
        "--detailed-exitcode",
        "--out",
        "p.plan",
    ])
    .code(2)
    .stdout_has("Plan: 2 to purchase");
    assert!(
        !env.run(&["plan", "--check-account"])
            .stdout
            .contains("Error:")
    );
    assert!(env.path("p.plan").exists(), "a plan that passed is saved");
    let json = env.run(&["plan", "--check-account", "--format", "json"]);
    json.code(0);
    assert_eq!(json.json()["errors"], serde_json::json!([]));
    // Three plans: each asked the OA list once and the balance once.
    assert_eq!(
        calls(&sim),
        [Call::ListOas, Call::Balance].repeat(3),
        "one GetListZOA and one GetBalance per plan"
    );
    assert!(sim.ledger().is_empty());
}

#[test]
fn missing_oas_and_a_low_balance_are_plan_errors_in_every_format() {
    // 7002 is not on the account; the balance is 1 below the cost.
    let sim = start(priced_account().balance(5_141_999));
    let env = Env::with_state().with_sim(&sim);
    env.file("oapkg.yaml", format!("{PRICES}---\n{}", packages()));

    let text = env.run(&["plan", "--check-account", "--out", "p.plan"]);
    text.code(1)
        .stdout_has("Plan: 2 to purchase")
        .stdout_has("Error: account check: the eSMS account does not hold 1 OA to be bought for: 7002; apply would refuse this plan")
        .stdout_has("hint: Add them to the eSMS account")
        .stdout_has("Error: account check: the eSMS balance is 5,141,999, below the 5,142,000 VND this plan costs")
        .stderr_has("the eSMS account check found 2 problem(s), shown in the plan; the plan was not saved");
    assert!(
        !env.path("p.plan").exists(),
        "a plan apply would refuse is not saved"
    );
    // Errors come right before the summary line.
    let error_at = text.stdout.find("Error:").unwrap();
    assert!(error_at < text.stdout.find("Plan: 2").unwrap());

    let markdown = env.run(&["plan", "--check-account", "--format", "markdown"]);
    markdown
        .code(1)
        .stdout_has(
            "> [!CAUTION]\n> **The eSMS account check failed: apply would refuse this plan.**\n",
        )
        .stdout_has("> - account check: the eSMS account does not hold 1 OA to be bought for: 7002")
        .stdout_has("> - account check: the eSMS balance is 5,141,999");

    let json = env.run(&["plan", "--check-account", "--format", "json"]);
    json.code(1);
    let errors = json.json()["errors"].clone();
    assert_eq!(errors.as_array().unwrap().len(), 2, "{errors}");
    assert_eq!(errors[0]["kind"], "oa_not_on_account");
    assert_eq!(errors[0]["oaids"], serde_json::json!(["7002"]));
    assert_eq!(errors[1]["kind"], "balance_too_low");
    assert!(errors[1]["hint"].as_str().unwrap().contains("Top up"));

    // Without --check-account the same plan needs no credentials and passes.
    let offline = Env::with_state();
    offline.file("oapkg.yaml", format!("{PRICES}---\n{}", packages()));
    offline.run(&["plan"]).code(0);

    assert!(sim.ledger().is_empty());
    assert!(!calls(&sim).contains(&Call::Purchase), "{:?}", calls(&sim));
    assert_eq!(sim.balance(), 5_141_999);
}

#[test]
fn rejected_keys_are_a_plan_error_even_with_nothing_to_buy() {
    let sim = start(
        SimConfig::new()
            .oaid("7001")
            .keys("other-key", "other-secret"),
    );
    let env = Env::with_state().with_sim(&sim);
    env.file(
        "oapkg.yaml",
        "apiVersion: oapkg/v1\nkind: PackageSet\npackages: []\n",
    );
    for format in ["text", "markdown", "json"] {
        let run = env.run(&["plan", "--check-account", "--format", format]);
        run.code(1);
        assert!(run.stdout.contains("code 101"), "{format}:\n{}", run.stdout);
        for secret in [API_KEY, SECRET_KEY] {
            assert!(!run.stdout.contains(secret) && !run.stderr.contains(secret));
        }
        if format == "json" {
            let json = run.json();
            assert_eq!(json["errors"][0]["kind"], "credentials_rejected", "{json}");
            assert!(
                json["errors"][0]["hint"]
                    .as_str()
                    .unwrap()
                    .contains("ESMS_API_KEY")
            );
        } else {
            run.stdout_has("could not list the account's OAs: eSMS refused the call with code 101");
        }
    }
    // Rejected at the OA list: the balance is not asked.
    assert_eq!(calls(&sim), [Call::ListOas].repeat(3));
    assert!(sim.ledger().is_empty());
}

#[test]
fn a_dead_endpoint_and_missing_keys_fail_clearly() {
    let env = Env::with_state();
    env.file("oapkg.yaml", packages());
    // No credentials: an error before anything else.
    env.run(&["plan", "--check-account"])
        .code(1)
        .stderr_has("ESMS_API_KEY");
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let run = Run::from(
        env.command(&["plan", "--check-account", "--format", "json"])
            .env("ESMS_ENDPOINT", format!("http://127.0.0.1:{port}/"))
            .env("ESMS_API_KEY", API_KEY)
            .env("ESMS_SECRET_KEY", SECRET_KEY)
            .env("OAPKG_RETRY_MIN_DELAY_MS", "10")
            .output()
            .unwrap(),
    );
    run.code(1);
    assert_eq!(
        run.json()["errors"][0]["kind"],
        "account_unreachable",
        "{}",
        run.stdout
    );
}
