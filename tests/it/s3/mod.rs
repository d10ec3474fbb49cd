//! The state on S3-compatible storage (`--state s3://…`), against real
//! servers the tests start themselves (see [`server`]). The apply, kill and
//! concurrency tests of `apply.rs` also run on S3; these are the cases only
//! a shared state has: a store that ignores conditional writes, a lease
//! left by a killed holder, two machines racing, reading while a lease is
//! held, migrating a state between a local file and S3.

mod checked;
mod fencing;
pub mod server;

use std::process::Stdio;
use std::time::{Duration, Instant};

use esms_sim::Call;

use self::server::{ACCESS_KEY, HeaderStripper, S3Server, SECRET_KEY};
use crate::support::{
    Backend, Env, Pkg, Run, account, assert_bought_once_each, charges_by_key, oapkg, pkgs,
    recorded, start, write_manifest,
};

#[test]
fn init_refuses_a_store_that_ignores_conditional_headers() {
    let Some(server) = S3Server::moto() else {
        return;
    };
    let proxy = HeaderStripper::start(&server.endpoint);
    let env = Env::new().on(&Backend::S3(&server));
    let location = env.s3().unwrap().location.clone();
    let through_proxy = Run::from(
        env.command(&["init"])
            .env("AWS_ENDPOINT_URL", &proxy.endpoint)
            .output()
            .unwrap(),
    );
    through_proxy
        .code(1)
        .stderr_has("ignores the If-None-Match: * header")
        .stderr_has(&location)
        .stderr_has("nothing was created");
    assert!(proxy.port() > 0);
    // Nothing was created: the state is still missing.
    env.run(&["state", "list"])
        .code(0)
        .stderr_has("no state file at");

    // The real store passes the probe, once.
    env.run(&["init"])
        .code(0)
        .stdout_has("Created an empty state at s3://");
    env.run(&["init"]).code(1).stderr_has("already");
}

#[test]
fn a_plain_http_endpoint_off_this_machine_is_refused_before_any_request() {
    let env = Env::new();
    let run = Run::from(
        env.command(&["state", "list", "--state", "s3://some-bucket/team"])
            .env("AWS_ENDPOINT_URL", "http://s3.example.com")
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .output()
            .unwrap(),
    );
    run.code(1)
        .stderr_has("plain http:// would send the S3 requests unencrypted to s3.example.com");
    let bad = env.run(&["state", "list", "--state", "s3://No_Such/x"]);
    bad.code(1).stderr_has("not a usable S3 location");
}

/// A holder killed with a purchase in flight: its lease blocks a second
/// writer (named), reads go on without a lock, and once the lease expires
/// the next run takes over, sees the dead run's intent as unconfirmed and
/// does not resend it.
#[test]
fn a_killed_holder_leaves_a_lease_that_expires_and_its_intents_read_unconfirmed() {
    let Some(server) = S3Server::moto() else {
        return;
    };
    let env = Env::with_state_on(&Backend::S3(&server));
    let all = pkgs(7301, 3);
    write_manifest(&env, &all);
    let sim = start(account(&all).latency(Duration::from_secs(3)));
    let mut child = oapkg(
        &env,
        &sim,
        &["apply", "--auto-approve", "--parallelism", "1"],
    )
    .env("OAPKG_LEASE_SECONDS", "4")
    .env("GITHUB_SERVER_URL", "https://github.com")
    .env("GITHUB_REPOSITORY", "acme/gitops")
    .env("GITHUB_RUN_ID", "4242")
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sim.requests().iter().any(|r| r.call == Call::Purchase) {
        assert!(Instant::now() < deadline, "no purchase was sent");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    // The lease is still live: a second writer is refused, naming the holder.
    let refused = crate::support::run(&env, &sim, &["apply", "--auto-approve"]);
    refused
        .code(1)
        .stderr_has(&format!("pid {pid}"))
        .stderr_has("running \"oapkg apply\"")
        .stderr_has("(CI job https://github.com/acme/gitops/actions/runs/4242)");
    // Reading takes no lock: the dead run's intent reads as unconfirmed.
    let state = recorded(&env);
    let unconfirmed: Vec<&String> = state
        .iter()
        .filter(|(_, r)| r["status"] == "unconfirmed")
        .map(|(k, _)| k)
        .collect();
    assert_eq!(unconfirmed.len(), 1, "{state:?}");
    let in_flight = unconfirmed[0].clone();

    // The next run waits for the lease to expire, then takes over.
    let started = Instant::now();
    let next = crate::support::run(
        &env,
        &sim,
        &["apply", "--auto-approve", "--lock-timeout", "30"],
    );
    next.code(1)
        .stdout_has(&format!("? {in_flight}"))
        .stdout_has("Apply complete: 2 purchased, 0 failed, 1 unconfirmed.");
    assert!(started.elapsed() < Duration::from_secs(30));
    let by_key = charges_by_key(&sim.ledger());
    for (key, charges) in &by_key {
        assert_eq!(charges.len(), 1, "{key} charged twice");
    }
    let state = recorded(&env);
    assert_eq!(state[&in_flight]["status"], "unconfirmed");
    assert_eq!(
        state
            .values()
            .filter(|r| r["status"] == "submitted")
            .count(),
        2
    );
}

/// Two "machines" (their own directories and processes) apply the same
/// manifests against one S3 state at once: each package is bought once.
#[test]
fn two_machines_racing_on_one_s3_state_never_both_buy_a_package() {
    let Some(server) = S3Server::ministack() else {
        return;
    };
    let all = pkgs(7401, 6);
    let sim = start(
        account(&all)
            .dedupe(false)
            .latency(Duration::from_millis(30)),
    );
    let first = Env::with_state_on(&Backend::S3(&server));
    let second = Env::new().sharing_state_of(&first);
    for _round in 0..3 {
        for env in [&first, &second] {
            write_manifest(env, &all);
        }
        let spawn = |env: &Env| {
            oapkg(
                env,
                &sim,
                &["apply", "--auto-approve", "--lock-timeout", "30"],
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        };
        let children = [spawn(&first), spawn(&second)];
        let runs: Vec<Run> = children
            .into_iter()
            .map(|c| Run::from(c.wait_with_output().unwrap()))
            .collect();
        assert!(
            runs.iter().any(|r| r.code == 0),
            "{:?}",
            runs.iter().map(|r| &r.stderr).collect::<Vec<_>>()
        );
        for r in runs.iter().filter(|r| r.code != 0) {
            assert!(r.stderr.contains("stale plan"), "{}", r.stderr);
        }
    }
    assert_bought_once_each(&first, &sim, &all);
    assert_bought_once_each(&second, &sim, &all);
}

#[test]
fn migrate_copies_a_state_both_ways_and_never_overwrites() {
    let Some(server) = S3Server::moto() else {
        return;
    };
    let local = Env::with_state_on(&Backend::Local);
    let p = Pkg::new("4097311281936189049", "2026-12-01", "premium", 12);
    local
        .import(
            &p.oaid,
            "premium",
            p.start,
            "12",
            &["--service-preview-id", "77"],
        )
        .code(0);
    let remote = Env::new().on(&Backend::S3(&server));
    let location = remote.s3().unwrap().location.clone();
    let id = |env: &Env| {
        write_manifest(env, std::slice::from_ref(&p));
        env.run(&["plan", "--format", "json"]).json()["state"].clone()
    };
    let before = id(&local);

    let mut to_s3 = local.command(&["state", "migrate", "--to", &location]);
    server.configure(&mut to_s3);
    Run::from(to_s3.output().unwrap())
        .code(0)
        .stdout_has(&format!("to {location}"));
    assert_eq!(recorded(&remote), recorded(&local));
    let after = id(&remote);
    assert_eq!(after["lineage"], before["lineage"]);
    assert_eq!(after["serial"], before["serial"]);

    // Never over an existing state.
    let mut again = local.command(&["state", "migrate", "--to", &location]);
    server.configure(&mut again);
    Run::from(again.output().unwrap())
        .code(1)
        .stderr_has("already");

    // And back to a local file.
    remote
        .run(&["state", "migrate", "--to", "copy/oapkg.state.json"])
        .code(0);
    let back = Env::new();
    std::fs::create_dir_all(back.path("state")).unwrap();
    std::fs::copy(
        remote.path("copy/oapkg.state.json"),
        back.path("state/oapkg.state.json"),
    )
    .unwrap();
    assert_eq!(recorded(&back), recorded(&local));
    assert_eq!(id(&back)["lineage"], before["lineage"]);
}

#[test]
fn the_s3_keys_appear_in_no_output_even_at_trace_level() {
    let Some(server) = S3Server::moto() else {
        return;
    };
    let env = Env::with_state_on(&Backend::S3(&server));
    let all = pkgs(7501, 2);
    write_manifest(&env, &all);
    let sim = start(account(&all));
    let mut cmd = oapkg(&env, &sim, &["apply", "--auto-approve", "-v"]);
    cmd.env("RUST_LOG", "trace");
    let run = Run::from(cmd.output().unwrap());
    run.code(0);
    for text in [&run.stdout, &run.stderr] {
        assert!(!text.contains(SECRET_KEY), "secret key in the output");
        assert!(!text.contains(ACCESS_KEY), "access key in the output");
    }
    // A refused state (no such bucket) names the location, not the keys.
    let mut missing = env.command(&["state", "list", "--state", "s3://no-such-bucket/x"]);
    missing.env("RUST_LOG", "trace");
    let run = Run::from(missing.output().unwrap());
    for text in [&run.stdout, &run.stderr] {
        assert!(!text.contains(SECRET_KEY) && !text.contains(ACCESS_KEY));
    }
}

/// A snapshot is decoded as its body arrives. One written otherwise (the
/// same content re-spelled as compact JSON with sorted keys) still loads,
/// read whole; a damaged one is refused, naming it, and nothing is bought.
#[test]
fn a_respelled_snapshot_loads_and_a_damaged_one_is_refused() {
    let Some(server) = S3Server::moto() else {
        return;
    };
    let env = Env::with_state_on(&Backend::S3(&server));
    let all = pkgs(7601, 3);
    write_manifest(&env, &all);
    let sim = start(account(&all));
    Run::from(
        oapkg(&env, &sim, &["apply", "--auto-approve"])
            .output()
            .unwrap(),
    )
    .code(0);
    let before = recorded(&env);
    assert_eq!(before.len(), 3);

    let prefix = env
        .s3()
        .unwrap()
        .location
        .trim_start_matches("s3://")
        .to_owned();
    let head: serde_json::Value =
        serde_json::from_str(&server.get(&format!("/{prefix}/head.json"))).unwrap();
    let snapshot = head["snapshot"]
        .as_str()
        .expect("the head names its snapshot");
    let object = format!("/{prefix}/{snapshot}");
    let written = server.get(&object);
    let respelled: serde_json::Value = serde_json::from_str(&written).unwrap();
    server.put(
        &object,
        serde_json::to_string(&respelled).unwrap().as_bytes(),
    );
    assert_eq!(recorded(&env), before);

    server.put(&object, written.replacen("\"OA ", "\"0A ", 1).as_bytes());
    env.run(&["state", "list"])
        .code(1)
        .stderr_has(snapshot)
        .stderr_has("checksum");
    let charged = sim.ledger().len();
    let apply = Run::from(
        oapkg(&env, &sim, &["apply", "--auto-approve"])
            .output()
            .unwrap(),
    );
    apply.code(1);
    assert_eq!(
        sim.ledger().len(),
        charged,
        "nothing bought over a damaged snapshot"
    );
}

/// `state unlock` breaks a running holder's lease: its next write is
/// refused, it stops sending at once, and what it had recorded stays (the
/// purchase whose outcome it could not record reads as unconfirmed).
#[test]
fn a_holder_whose_lease_was_broken_stops_before_sending_more() {
    let Some(server) = S3Server::moto() else {
        return;
    };
    let env = Env::with_state_on(&Backend::S3(&server));
    let all = pkgs(7601, 4);
    write_manifest(&env, &all);
    let sim = start(account(&all).latency(Duration::from_secs(2)));
    let child = oapkg(
        &env,
        &sim,
        &["apply", "--auto-approve", "--parallelism", "1"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sim.requests().iter().any(|r| r.call == Call::Purchase) {
        assert!(Instant::now() < deadline, "no purchase was sent");
        std::thread::sleep(Duration::from_millis(20));
    }
    env.run(&["state", "unlock"])
        .code(0)
        .stdout_has("Cleared the lease of pid");
    let run = Run::from(child.wait_with_output().unwrap());
    run.code(1)
        .stderr_has("lost the lease on the state at s3://");
    assert!(!run.stderr.contains("disk space"), "{}", run.stderr);
    let purchases = sim
        .requests()
        .iter()
        .filter(|r| r.call == Call::Purchase)
        .count();
    assert_eq!(purchases, 1, "nothing sent after the lease was lost");
    let state = recorded(&env);
    assert_eq!(state.len(), 1, "{state:?}");
    assert!(state.values().all(|r| r["status"] == "unconfirmed"));

    // The next run buys the rest and leaves the unknown one alone.
    let next = crate::support::run(&env, &sim, &["apply", "--auto-approve"]);
    next.code(1)
        .stdout_has("Apply complete: 3 purchased, 0 failed, 1 unconfirmed.");
    for (key, charges) in charges_by_key(&sim.ledger()) {
        assert_eq!(charges.len(), 1, "{key} charged twice");
    }
}

/// A long run seals its journal into segment objects, so the head (written
/// on every intent and outcome) stays small: an apply of 40 purchases with
/// a segment every 8 lines, killed mid-run, then finished by the next run
/// after the lease expired. Every package is bought once or unconfirmed,
/// the fold lists them all and then deletes every segment (the dead run's
/// too), and the head never held more than a segment's worth of lines.
#[test]
fn a_long_run_seals_its_journal_into_segments_and_the_head_stays_small() {
    let Some(server) = S3Server::moto() else {
        return;
    };
    let env = Env::with_state_on(&Backend::S3(&server));
    let prefix = env.s3().unwrap().prefix(&server.bucket);
    let head_path = format!("/{}/{prefix}/head.json", server.bucket);
    let head = || -> Option<(usize, serde_json::Value)> {
        let text = server.get(&head_path);
        Some((text.len(), serde_json::from_str(&text).ok()?))
    };
    let all = pkgs(7701, 40);
    write_manifest(&env, &all);
    let sim = start(
        account(&all)
            .dedupe(false)
            .latency(Duration::from_millis(100)),
    );
    let lines_per_segment = 8;
    let parallelism = 2;
    let spawn = |lease: &str| {
        oapkg(
            &env,
            &sim,
            &[
                "apply",
                "--auto-approve",
                "--parallelism",
                &parallelism.to_string(),
                "--lock-timeout",
                "30",
                "--max-purchases",
                "100",
            ],
        )
        .env("OAPKG_S3_SEGMENT_LINES", lines_per_segment.to_string())
        .env("OAPKG_LEASE_SECONDS", lease)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
    };
    // The tail may pass the threshold by one group commit before the next
    // write seals it.
    let most_lines = lines_per_segment + 2 * parallelism;
    let mut largest = 0;
    let watch = |largest: &mut usize| -> usize {
        let Some((size, head)) = head() else { return 0 };
        *largest = (*largest).max(size);
        let tail = head["journal"].as_array().map_or(0, Vec::len);
        assert!(tail <= most_lines, "{tail} lines in the head: {head}");
        head["segments"].as_array().map_or(0, Vec::len)
    };

    let mut first = spawn("2");
    let deadline = Instant::now() + Duration::from_secs(60);
    while watch(&mut largest) < 3 {
        assert!(
            Instant::now() < deadline,
            "no 3 segments sealed: {:?}",
            head()
        );
        if first.try_wait().unwrap().is_some() {
            let run = Run::from(first.wait_with_output().unwrap());
            panic!(
                "the run ended early: {} {} {}",
                run.stdout,
                run.stderr,
                server.get(&head_path)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let sealed = watch(&mut largest);
    // What the dead run recorded is readable (segments and tail).
    let state = recorded(&env);
    assert!(state.len() >= sealed * lines_per_segment / 2, "{state:?}");
    for (key, charges) in charges_by_key(&sim.ledger()) {
        assert_eq!(charges.len(), 1, "{key} charged twice");
        assert!(state.contains_key(&key), "{key} charged but not recorded");
    }

    // The next run takes the expired lease over and seals more segments
    // on top of the dead run's.
    let mut second = spawn("60");
    let mut more = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while second.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the second run did not end");
        more = more.max(watch(&mut largest));
        std::thread::sleep(Duration::from_millis(20));
    }
    let run = Run::from(second.wait_with_output().unwrap());
    assert!(run.code == 0 || run.code == 1, "{}", run.stderr);
    assert!(more > sealed, "the second run sealed no segment ({more})");

    // Folded: the head names the new snapshot and no segment, and the
    // segments it folded — the dead run's and its own — are deleted.
    let (_, folded) = head().unwrap();
    assert!(folded.get("segments").is_none(), "{folded}");
    assert_eq!(folded["journal"], serde_json::json!([]), "{folded}");
    let listing = server.get(&format!(
        "/{}?list-type=2&prefix={prefix}/journal/",
        server.bucket
    ));
    let segments = listing.matches("<Key>").count();
    assert_eq!(segments, 0, "folded segments left behind: {listing}");
    let state = recorded(&env);
    let by_key = charges_by_key(&sim.ledger());
    for p in &all {
        let record = &state[&p.key()];
        let charges = by_key.get(&p.key()).map_or(0, Vec::len);
        match record["status"].as_str() {
            Some("submitted") => assert_eq!(charges, 1, "{}", p.key()),
            Some("unconfirmed") => assert!(charges <= 1, "{}", p.key()),
            other => panic!("{} is {other:?}", p.key()),
        }
    }
    let listed = env.run(&["state", "list"]);
    listed.code(0);
    for p in &all {
        listed.stdout_has(&p.key());
    }
    eprintln!(
        "segments: {sealed} when killed, {more} at most, {segments} left after the fold; head at most {largest} bytes"
    );
    // A head of 40 purchases' lines would be about 32 kB.
    assert!(largest < 8 * 1024, "the head reached {largest} bytes");

    // The unconfirmed ones, resent to a deduplicating eSMS, end bought once.
    sim.set_dedupe(true);
    crate::support::run(
        &env,
        &sim,
        &[
            "apply",
            "--auto-approve",
            "--retry-unconfirmed",
            "--max-purchases",
            "100",
        ],
    )
    .code(0);
    assert_bought_once_each(&env, &sim, &all);
}
