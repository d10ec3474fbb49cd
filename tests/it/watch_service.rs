//! `oapkg watch --apply` as an unattended service: changes held rather
//! than blocking the cycle, notifications to a real webhook receiver,
//! `/metrics` and `/healthz` scraped over real HTTP, systemd's
//! `NOTIFY_SOCKET`, and a calendar day as an input.

use esms_sim::SimConfig;
use serde_json::Value;

use crate::support::Env;
use crate::watch::{doc, message, pkg};
use crate::watch_apply::{charged, keys, outcome, simulator, start_apply};

/// The same package with another duration: a `replace` once bought.
fn pkg_months(oaid: u64, months: u32) -> String {
    pkg(oaid, months)
}

/// The `held …` records the watch logged so far.
fn held_records(watch: &crate::watch::Watch) -> Vec<Value> {
    watch
        .0
        .lines()
        .filter_map(|(_, line)| crate::watch::json(line))
        .filter(|v| v["held"] == true)
        .collect()
}

#[test]
fn a_replace_is_held_while_an_unrelated_purchase_of_the_cycle_is_bought() {
    let sim = simulator(SimConfig::new());
    let env = Env::with_state();
    env.file("a.yaml", doc(&[pkg(1001, 12)]));
    let mut watch = start_apply(&env, &sim, &["-f", "a.yaml"]);
    assert_eq!(outcome(&mut watch)["outcome"], "done");
    assert_eq!(charged(&sim), keys(&["1001@2027-01-01"]));

    // 1001 changes (a replace, no --allow-replace) and 1002 is new; 9999 is
    // not on the account (the pre-flight holds it).
    std::fs::write(
        env.path("a.yaml"),
        doc(&[pkg_months(1001, 6), pkg(1002, 12), pkg(9999, 12)]),
    )
    .unwrap();
    let held = watch.record("a held replace", |v| {
        v["held"] == true && message(v).contains("replace")
    });
    assert!(message(&held).contains("--allow-replace"), "{held}");
    let preflight = watch.record("a change held by the pre-flight", |v| {
        v["held"] == true && message(v).contains("9999")
    });
    assert!(message(&preflight).contains("pre-flight"), "{preflight}");
    assert_eq!(outcome(&mut watch)["outcome"], "done");
    assert_eq!(
        charged(&sim),
        keys(&["1001@2027-01-01", "1002@2027-01-01"]),
        "1002 bought, 1001 not bought again, 9999 not sent"
    );

    // The next change buys 1003; what is still held is not reported again.
    std::fs::write(
        env.path("a.yaml"),
        doc(&[
            pkg_months(1001, 6),
            pkg(1002, 12),
            pkg(9999, 12),
            pkg(1003, 12),
        ]),
    )
    .unwrap();
    assert_eq!(outcome(&mut watch)["outcome"], "done");
    assert_eq!(sim.ledger().len(), 3);
    assert_eq!(held_records(&watch).len(), 2, "{}", watch.0.transcript());
    assert_eq!(watch.terminate(), 0);
}
