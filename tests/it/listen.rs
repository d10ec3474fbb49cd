//! `watch --listen` on an address other networks reach warns that OA ids
//! and names become visible there; on loopback it says nothing.

use crate::support::{Env, Stream};
use crate::watch::{Watch, doc, message, pkg};

#[test]
fn listening_beyond_loopback_warns_that_oa_names_and_ids_are_visible() {
    let env = Env::new();
    env.file("oapkg.yaml", doc(&[pkg(1001, 12)]));
    let mut watch = Watch::start(&env, &["--listen", "0.0.0.0:0"]);
    let warning = watch.record("the --listen warning", |v| {
        message(v).starts_with("--listen 0.0.0.0:0 is not a loopback address")
    });
    assert_eq!(warning["level"], "WARN", "{warning}");
    assert!(
        message(&warning).contains("/metrics shows the OA ids and names"),
        "{warning}"
    );
    watch.planned();
    assert_eq!(watch.terminate(), 0);

    // On loopback: not a word about it before the first plan.
    let mut watch = Watch::start(&env, &["--listen", "127.0.0.1:0"]);
    watch.planned();
    let said = watch
        .0
        .lines()
        .any(|(stream, line)| *stream == Stream::Stderr && line.contains("loopback"));
    assert!(!said, "{}", watch.0.transcript());
    assert_eq!(watch.terminate(), 0);
}
