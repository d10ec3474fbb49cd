//! An account of 100,000 OAs: `GetListZOA` lists the
//! whole account without paging, and the pre-flight of a real apply reads
//! it all and passes.

use esms_sim::{FIRST_GENERATED_OAID, SimConfig};

use indoc::formatdoc;

use crate::support::{Env, purchase_requests, start};

const OAS: u64 = 100_000;

#[test]
fn an_account_of_100000_oas_passes_the_preflight() {
    let sim = start(SimConfig::new().generate_oas(OAS));
    let env = Env::with_state().with_sim(&sim);
    // The last OA of the list, so the whole answer must be read.
    let oaid = FIRST_GENERATED_OAID + OAS - 1;
    env.file(
        "oapkg.yaml",
        formatdoc! {r#"
            apiVersion: oapkg/v1
            kind: PackageSet
            packages:
              - oaid: "{oaid}"
                tier: trial
                start: 2027-01-01
                duration: 1
        "#},
    );
    let run = env.run(&["apply", "--auto-approve"]);
    run.code(0).stdout_has("Apply complete: 1 purchased");
    assert_eq!(purchase_requests(&sim), 1);
    assert_eq!(sim.ledger().len(), 1);
}
