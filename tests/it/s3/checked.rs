//! Every buyer checks the store: a state made on a store that enforces
//! conditional writes, then used through one that drops the headers (a
//! proxy, a gateway, another product), is refused by every command that
//! would buy or copy it — with nothing bought, taken or written — and a
//! bucket that does not exist is an error, never an empty state. And what a
//! fold cleans up: journal segments of older serials.

use std::time::Duration;

use super::server::{HeaderStripper, S3Server};
use crate::support::{
    Backend, Env, Run, account, assert_bought_once_each, oapkg, pkgs, purchase_requests, start,
    write_manifest,
};
use crate::watch_apply::{outcome, start_apply_with};

/// Every object under `prefix` with its ETag: two equal listings mean
/// nothing was written there.
fn listing(server: &S3Server, prefix: &str) -> String {
    server.get(&format!("/{}?list-type=2&prefix={prefix}", server.bucket))
}

#[test]
fn every_buyer_refuses_a_store_that_drops_conditional_headers() {
    let Some(server) = S3Server::moto() else {
        return;
    };
    // Made on the real store: `init` checked that one.
    let env = Env::with_state_on(&Backend::S3(&server));
    let location = env.s3().unwrap().location.clone();
    let prefix = env.s3().unwrap().prefix(&server.bucket);
    let all = pkgs(7801, 2);
    write_manifest(&env, &all);
    let sim = start(account(&all));
    let proxy = HeaderStripper::start(&server.endpoint);
    let through_proxy = |args: &[&str]| {
        let mut cmd = oapkg(&env, &sim, args);
        cmd.env("AWS_ENDPOINT_URL", &proxy.endpoint);
        Run::from(cmd.output().unwrap())
    };
    let before = listing(&server, &prefix);

    // Reading needs no conditional write: plan works through it.
    through_proxy(&["plan"]).code(0).stdout_has("2 to purchase");
    let apply = through_proxy(&["apply", "--auto-approve"]);
    apply
        .code(1)
        .stderr_has("ignores the If-None-Match: * header")
        .stderr_has(&location)
        .stderr_has("nothing was bought");
    assert_eq!(purchase_requests(&sim), 0);
    // Refused before the lease was taken: nothing under the prefix changed.
    assert_eq!(listing(&server, &prefix), before);

    // `watch --apply` through it: each cycle's apply fails the same way.
    let mut watch = start_apply_with(&env, &sim, &["--interval", "0.3"], |cmd| {
        cmd.env("AWS_ENDPOINT_URL", &proxy.endpoint);
    });
    let failed = outcome(&mut watch);
    assert_eq!(failed["outcome"], "failed", "{failed}");
    let message = failed["message"].as_str().unwrap_or("");
    assert!(
        message.contains("ignores the If-None-Match: * header")
            && message.contains("nothing was bought"),
        "{failed}"
    );
    watch.terminate();
    assert_eq!(purchase_requests(&sim), 0);
    assert!(sim.ledger().is_empty());
    assert_eq!(listing(&server, &prefix), before);

    // `state migrate` to a prefix reached through it: refused, nothing
    // created there.
    let local = Env::with_state_on(&Backend::Local);
    local
        .import("4097311281936189049", "premium", "2026-12-01", "12", &[])
        .code(0);
    let target = server.location("states/migrated-through-proxy");
    let mut migrate = local.command(&["state", "migrate", "--to", &target]);
    super::server::configure(&mut migrate, &proxy.endpoint);
    Run::from(migrate.output().unwrap())
        .code(1)
        .stderr_has("ignores the If-None-Match: * header")
        .stderr_has("nothing was copied");
    let created = listing(&server, "states/migrated-through-proxy");
    assert_eq!(created.matches("<Key>").count(), 0, "{created}");

    // The real store, reached directly, is used as before.
    crate::support::apply(&env, &sim, &[]).code(0);
    assert_bought_once_each(&env, &sim, &all);
}

#[test]
fn a_missing_bucket_is_an_error_and_a_missing_state_in_a_bucket_is_not() {
    let Some(server) = S3Server::moto() else {
        return;
    };
    let env = Env::new().on(&Backend::S3(&server));
    let all = pkgs(7851, 1);
    write_manifest(&env, &all);
    let sim = start(account(&all).latency(Duration::ZERO));
    let missing = "s3://no-such-bucket-7851/team";
    for args in [
        &["plan"][..],
        &["state", "list"],
        &["apply", "--auto-approve"],
    ] {
        let mut all_args = args.to_vec();
        all_args.extend(["--state", missing]);
        crate::support::run(&env, &sim, &all_args)
            .code(1)
            .stderr_has("the bucket no-such-bucket-7851 does not exist")
            .stderr_has(missing);
    }
    assert_eq!(purchase_requests(&sim), 0);

    // The bucket is there, the state is not (yet): an empty state to read,
    // and a refusal to buy against.
    env.run(&["plan"])
        .code(0)
        .stderr_has("no state")
        .stdout_has("1 to purchase");
    crate::support::run(&env, &sim, &["apply", "--auto-approve"])
        .code(1)
        .stderr_has("oapkg init");
    assert_eq!(purchase_requests(&sim), 0);
}

/// A fold deletes the journal segments of older serials under the prefix,
/// named by the head or not (one sealed by a holder whose head write never
/// landed), and nothing else.
#[test]
fn a_fold_deletes_leftover_segments_of_older_serials_only() {
    let Some(server) = S3Server::moto() else {
        return;
    };
    let env = Env::with_state_on(&Backend::S3(&server));
    let prefix = env.s3().unwrap().prefix(&server.bucket);
    let object = |name: &str| format!("/{}/{prefix}/journal/{name}", server.bucket);
    let digest = "ab".repeat(32);
    let orphan = format!("{:020}-000000-{digest}.jsonl", 0);
    let newer = format!("{:020}-000000-{digest}.jsonl", 1);
    for name in [&orphan, &newer, &"notes.txt".to_owned()] {
        server.put(&object(name), b"not read\n");
    }
    // `state import` folds: serial 0 -> 1.
    env.import("4097311281936189049", "premium", "2026-12-01", "12", &[])
        .code(0);
    let left = listing(&server, &format!("{prefix}/journal/"));
    assert!(!left.contains(&orphan), "{left}");
    assert!(
        left.contains(&newer),
        "a segment of the new serial is kept: {left}"
    );
    assert!(left.contains("notes.txt"), "{left}");
}
