//! An account of 100,000 OAs (issue 12, item 5): `GetListZOA` lists the
//! whole account without paging, and the pre-flight of a real apply reads
//! it all and passes.

use esms_sim::{FIRST_GENERATED_OAID, SimConfig};

use crate::support::{Env, apply, manifest, purchase_requests, start};

const OAS: u64 = 100_000;

#[test]
fn an_account_of_100000_oas_passes_the_preflight() {
    let env = Env::with_state();
    // The last OA of the list, so the whole answer must be read.
    let oaid = FIRST_GENERATED_OAID + OAS - 1;
    env.file(
        "oapkg.yaml",
        manifest(&format!(
            "  - oaid: \"{oaid}\"\n    tier: trial\n    start: 2027-01-01\n    duration: 1\n"
        )),
    );
    let sim = start(SimConfig::new().generate_oas(OAS));
    let run = apply(&env, &sim, &[]);
    run.code(0).stdout_has("Apply complete: 1 purchased");
    assert_eq!(purchase_requests(&sim), 1);
    assert_eq!(sim.ledger().len(), 1);
}
