//! `oapkg doctor`: one line per dependency of a run, with its fix; exit 0
//! when every check passes, 1 otherwise; read-only (the simulator sees one
//! `GetBalance_json` and no purchase, the state's bytes do not change, no
//! lock is left).

use esms_sim::{Call, SimConfig};
use serde_json::Value;

use crate::support::{API_KEY, Env, Run, SECRET_KEY, STATE, manifest, start};

const PACKAGE: &str = "  - oaid: \"7001\"\n    name: Shop\n    tier: premium\n    start: 2027-01-01\n    duration: 12\n";

/// A state written once (so a backup exists) and a valid manifest.
fn ready(env: &Env) {
    env.file("oapkg.yaml", manifest(PACKAGE));
    env.import("7002", "advanced", "2026-01-01", "6", &[])
        .code(0);
    assert!(env.path(&format!("{STATE}.backup")).exists());
}

fn checks(run: &Run) -> Vec<(String, String)> {
    let json = run.json();
    json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn status_of(run: &Run, name: &str) -> String {
    checks(run)
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no check {name}: {}", run.stdout))
        .1
}

fn check<'a>(json: &'a Value, name: &str) -> &'a Value {
    json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap()
}

#[test]
fn all_pass_buys_nothing_and_writes_nothing() {
    let sim = start(SimConfig::new().oaid("7001").balance(36_693));
    let env = Env::with_state().with_sim(&sim);
    ready(&env);
    let before = env.read(STATE);

    let text = env.run(&["doctor"]);
    text.code(0)
        .stdout_has("ok    manifests  1 package declared in 1 file, valid\n")
        .stdout_has("ok    state      state/oapkg.state.json readable, checksum good: serial 1, 1 package recorded\n")
        .stdout_has("ok    lock       the lock is free\n")
        .stdout_has("ok    backup     present, checksum good: serial 0")
        .stdout_has("ok    esms       http://127.0.0.1:")
        .stdout_has("credentials accepted")
        .stdout_has("ok    balance    36,693 on the account\n")
        .stdout_has("All checks passed (6 run).");

    let json = env.run(&["doctor", "--format", "json"]);
    json.code(0);
    let doc = json.json();
    assert_eq!(doc["ok"], true);
    assert_eq!(
        checks(&json),
        ["manifests", "state", "lock", "backup", "esms", "balance"]
            .map(|n| (n.to_owned(), "pass".to_owned()))
    );
    for c in doc["checks"].as_array().unwrap() {
        let keys: Vec<&str> = c.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["detail", "fix", "name", "status"], "{c}");
    }

    // Read-only: one GetBalance per run, no purchase, the state untouched,
    // no lock file left.
    let calls: Vec<Call> = sim.requests().iter().map(|r| r.call).collect();
    assert_eq!(calls, [Call::Balance, Call::Balance]);
    assert!(sim.ledger().is_empty());
    assert_eq!(env.read(STATE), before);
    assert!(!env.path(&format!("{STATE}.lock")).exists());
}

#[test]
fn rejected_keys_and_a_dead_endpoint_fail_the_esms_check() {
    let sim = start(SimConfig::new().keys("other-key", "other-secret"));
    let env = Env::with_state().with_sim(&sim);
    ready(&env);
    let run = env.run(&["doctor"]);
    run.code(1)
        .stdout_has("FAIL  esms")
        .stdout_has("eSMS refused the call with code 101")
        .stdout_has("-> Check ESMS_API_KEY / ESMS_SECRET_KEY")
        .stdout_has("skip  balance    not read: the eSMS call failed")
        .stdout_has("1 of 6 checks failed");
    for secret in [API_KEY, SECRET_KEY] {
        assert!(!run.stdout.contains(secret) && !run.stderr.contains(secret));
    }
    assert!(sim.ledger().is_empty());

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = Run::from(
        env.command(&["doctor", "--format", "json"])
            .env("ESMS_ENDPOINT", format!("http://127.0.0.1:{port}/"))
            .output()
            .unwrap(),
    );
    dead.code(1);
    let doc = dead.json();
    assert_eq!(doc["ok"], false);
    let esms = check(&doc, "esms");
    assert_eq!(esms["status"], "fail");
    assert!(
        esms["detail"]
            .as_str()
            .unwrap()
            .contains("did not reach eSMS"),
        "{esms}"
    );
    assert!(esms["fix"].as_str().unwrap().contains("ESMS_ENDPOINT"));
    // The other checks still ran and passed.
    assert_eq!(status_of(&dead, "state"), "pass");

    // No credentials at all: the eSMS check says so; the rest still runs.
    let bare = Env::with_state();
    ready(&bare);
    let run = bare.run(&["doctor"]);
    run.code(1)
        .stdout_has("FAIL  esms       no eSMS credentials")
        .stdout_has("ok    state");
}

#[test]
fn a_damaged_state_and_an_invalid_manifest_fail_with_their_fixes() {
    let sim = start(SimConfig::new());
    let env = Env::with_state().with_sim(&sim);
    ready(&env);
    let mut bytes = env.read(STATE);
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    env.file(STATE, &bytes);
    env.file(
        "oapkg.yaml",
        manifest("  - oaid: \"7001\"\n    tier: gold\n    start: 2027-01-01\n    duration: 12\n"),
    );

    let run = env.run(&["doctor"]);
    run.code(1)
        .stdout_has("FAIL  manifests  oapkg.yaml:5:11:")
        .stdout_has("-> Run `oapkg validate`")
        .stdout_has("FAIL  state      state/oapkg.state.json refused:")
        .stdout_has("ok    backup     present, checksum good")
        .stdout_has("2 of 6 checks failed");
    let json = env.run(&["doctor", "--format", "json"]);
    let doc = json.json();
    let state = check(&doc, "state");
    assert_eq!(state["status"], "fail");
    assert!(
        state["fix"].as_str().unwrap().contains("state restore"),
        "{state}"
    );
    // Nothing repaired behind the user's back.
    assert_eq!(env.read(STATE), bytes);

    // No state at all.
    let env = Env::new().with_sim(&sim);
    env.file("oapkg.yaml", manifest(PACKAGE));
    env.run(&["doctor"])
        .code(1)
        .stdout_has("FAIL  state      no state at state/oapkg.state.json")
        .stdout_has("create it with `oapkg init`");
    assert!(!env.path(STATE).exists(), "doctor creates no state");
    assert!(sim.ledger().is_empty());
}

#[test]
fn a_held_lock_names_its_holder_and_a_left_one_passes() {
    let sim = start(SimConfig::new());
    let env = Env::with_state().with_sim(&sim);
    ready(&env);
    let lock_path = env.path(&format!("{STATE}.lock"));
    let holder =
        r#"{"pid":4242,"host":"runner-7","command":"oapkg apply","since":"2026-11-26T01:02:03Z"}"#;

    // A lock file nobody holds (a process that is gone left it).
    std::fs::write(&lock_path, holder).unwrap();
    env.run(&["doctor"]).code(0).stdout_has(
        "ok    lock       free; a lock file left by a process that is gone (pid 4242 on runner-7",
    );

    // A live holder: this test process holds the OS lock.
    let file = std::fs::File::open(&lock_path).unwrap();
    file.lock().unwrap();
    let run = env.run(&["doctor", "--format", "json"]);
    run.code(1);
    let doc = run.json();
    let lock = check(&doc, "lock");
    assert_eq!(lock["status"], "fail", "{lock}");
    assert_eq!(
        lock["detail"],
        "the lock is held by pid 4242 on runner-7, `oapkg apply`, since 2026-11-26T01:02:03Z"
    );
    assert!(lock["fix"].as_str().unwrap().contains("oapkg state unlock"));
    // Doctor did not take it or remove it: it is still ours.
    assert!(lock_path.exists());
    drop(file);
    assert!(sim.ledger().is_empty());
}

#[test]
fn on_s3_the_bucket_and_its_conditional_writes_are_checked() {
    use crate::s3::server::{HeaderStripper, S3Server};
    use crate::support::Backend;
    let Some(server) = S3Server::moto() else {
        return;
    };
    let sim = start(SimConfig::new());
    let env = Env::with_state_on(&Backend::S3(&server)).with_sim(&sim);
    env.file("oapkg.yaml", manifest(PACKAGE));
    let run = env.run(&["doctor"]);
    run.code(0)
        .stdout_has("ok    state ")
        .stdout_has("readable, checksum good: serial 0")
        .stdout_has("ok    lock                the lease is free")
        .stdout_has("skip  backup              an s3:// state keeps no backup object")
        .stdout_has("ok    conditional_writes  the bucket is reachable and refuses conflicting conditional writes");

    // A proxy that drops If-None-Match / If-Match: the check fails.
    let proxy = HeaderStripper::start(&server.endpoint);
    let through = Run::from(
        env.command(&["doctor", "--format", "json"])
            .env("AWS_ENDPOINT_URL", &proxy.endpoint)
            .output()
            .unwrap(),
    );
    through.code(1);
    let doc = through.json();
    let probe = check(&doc, "conditional_writes");
    assert_eq!(probe["status"], "fail", "{probe}");
    assert!(
        probe["detail"]
            .as_str()
            .unwrap()
            .contains("ignores the If-None-Match: * header")
    );

    // A bucket that does not exist: the state check fails, never an empty state.
    let missing = Run::from(
        env.command(&["doctor", "--format", "json"])
            .env("OAPKG_STATE", "s3://no-such-bucket-oapkg/prod")
            .output()
            .unwrap(),
    );
    missing.code(1);
    assert_eq!(status_of(&missing, "state"), "fail", "{}", missing.stdout);
    assert!(sim.ledger().is_empty());
}
