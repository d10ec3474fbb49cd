//! Label changes: a `name` edited on a recorded
//! package is written to the state by apply without any request.

use crate::only::packages;
use crate::support::{Env, STATE, account, apply, recorded, start, write_manifest};

/// A `name` edited on a recorded package is a label change: apply writes it
/// to the state without any request.
#[test]
fn a_name_change_is_recorded_without_any_request() {
    let env = Env::with_state();
    let all = packages();
    write_manifest(&env, &all[2..]);
    let sim = start(account(&all));
    apply(&env, &sim, &[]).code(0);
    let requests = sim.requests().len();
    // Renamed in the manifest, the spec unchanged.
    let renamed = crate::support::Pkg::yaml(&all[2]).replace("name: OA 3002", "name: Shop 3002");
    let body = format!("{renamed}{}", all[3].yaml());
    env.file("oapkg.yaml", crate::support::manifest(&body));
    env.run(&["plan"]).code(0).stdout_has("No changes.");
    let before = env.read(STATE);
    apply(&env, &sim, &[])
        .code(0)
        .stdout_has("No changes.")
        .stdout_has(
            "= label 3002@2027-01-01: name \"OA 3002\" -> \"Shop 3002\" (recorded; no request)",
        )
        .stdout_has("Apply complete: 0 purchased, 0 failed, 0 unconfirmed.");
    assert_eq!(
        sim.requests().len(),
        requests,
        "no request at all, not even pre-flight"
    );
    assert_ne!(env.read(STATE), before, "the state was written");
    let state = recorded(&env);
    assert_eq!(state["3002@2027-01-01"]["name"], "Shop 3002");
    assert_eq!(
        state["3002@2027-01-01"]["status"], "submitted",
        "nothing else moved"
    );
    // Recorded once: the next apply has nothing to do and writes nothing.
    let after = env.read(STATE);
    let again = apply(&env, &sim, &[]);
    again.code(0).stdout_has("No changes.");
    assert!(!again.stdout.contains("= label"), "{}", again.stdout);
    assert_eq!(env.read(STATE), after);

    // A label change beside a purchase: one run, both recorded.
    let renamed_again = renamed.replace("Shop 3002", "Shop 3002 (main)");
    let body = format!("{renamed_again}{}{}", all[3].yaml(), all[0].yaml());
    env.file("oapkg.yaml", crate::support::manifest(&body));
    apply(&env, &sim, &[])
        .code(0)
        .stdout_has("= label 3002@2027-01-01")
        .stdout_has("Apply complete: 1 purchased");
    let state = recorded(&env);
    assert_eq!(state["3002@2027-01-01"]["name"], "Shop 3002 (main)");
    assert_eq!(state["3001@2027-01-01"]["status"], "submitted");
    // Credentials are still checked first, even for labels only.
    let body = format!("{}{}{}", all[2].yaml(), all[3].yaml(), all[0].yaml());
    env.file("oapkg.yaml", crate::support::manifest(&body));
    env.run(&["apply", "--auto-approve"])
        .code(1)
        .stderr_has("ESMS_API_KEY");
    assert_eq!(
        recorded(&env)["3002@2027-01-01"]["name"],
        "Shop 3002 (main)"
    );
}
