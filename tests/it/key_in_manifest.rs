//! `apply` and `watch` refuse manifests holding the eSMS ApiKey or
//! SecretKey (a key pasted into a `name`, or into a comment): the error
//! names the file, line and column, never the value; nothing is bought.
//! Values shorter than 16 characters (the suite's `test-key`) are not
//! looked for.

use esms_sim::{BlockingSimHandle, Call};

use crate::support::{Env, Run, account, pkgs, recorded, start, write_manifest};
use crate::watch::{Watch, message};

/// Real-looking keys: 32 hexadecimal characters, as eSMS issues them.
const API_KEY: &str = "9B4F2C7D1E8A3F6B0C5D9E2A7F1B4C8D";
const SECRET_KEY: &str = "E07A6C3B59D14F28A1C7E9B3D5F20A64";

fn sim() -> BlockingSimHandle {
    start(account(&pkgs(9301, 2)).keys(API_KEY, SECRET_KEY))
}

/// `oapkg ARGS` pointed at `sim` with the real-looking keys.
fn run(env: &Env, sim: &BlockingSimHandle, args: &[&str]) -> Run {
    let mut cmd = env.command(args);
    crate::support::point_at(&mut cmd, &sim.control());
    cmd.env("ESMS_API_KEY", API_KEY)
        .env("ESMS_SECRET_KEY", SECRET_KEY);
    Run::from(cmd.output().unwrap())
}

#[track_caller]
fn no_key_shown(run: &Run) {
    for key in [API_KEY, SECRET_KEY] {
        for text in [&run.stdout, &run.stderr] {
            assert!(
                !text.to_ascii_uppercase().contains(key),
                "a key is shown:\n{text}"
            );
        }
    }
}

/// The manifest of `pkgs(9301, 2)` with the first package's name set to
/// `name`.
fn manifest_with_name(env: &Env, name: &str) {
    write_manifest(env, &pkgs(9301, 2));
    let text = std::fs::read_to_string(env.path("oapkg.yaml")).unwrap();
    std::fs::write(
        env.path("oapkg.yaml"),
        text.replacen("name: OA 9301", &format!("name: {name}"), 1),
    )
    .unwrap();
}

#[test]
fn apply_refuses_a_manifest_holding_a_key_naming_the_place_not_the_value() {
    let sim = sim();
    let env = Env::with_state();
    manifest_with_name(&env, &format!("Shop {API_KEY}"));
    let line = std::fs::read_to_string(env.path("oapkg.yaml"))
        .unwrap()
        .lines()
        .position(|l| l.contains(API_KEY))
        .unwrap()
        + 1;
    let refused = run(&env, &sim, &["apply", "--auto-approve"]);
    refused
        .code(1)
        .stderr_has(&format!(
            "oapkg.yaml:{line}:16: this manifest holds the eSMS ApiKey's value"
        ))
        .stderr_has("rotate the key");
    no_key_shown(&refused);
    assert!(sim.requests().is_empty(), "nothing was asked of eSMS");
    assert!(recorded(&env).is_empty());

    // The SecretKey in a comment, in lower case: refused too; both the
    // file's places are named when both keys are there.
    let text = std::fs::read_to_string(env.path("oapkg.yaml")).unwrap();
    std::fs::write(
        env.path("oapkg.yaml"),
        format!("{text}# {}\n", SECRET_KEY.to_lowercase()),
    )
    .unwrap();
    let refused = run(&env, &sim, &["apply", "--auto-approve"]);
    refused
        .code(1)
        .stderr_has("the manifests have 2 errors")
        .stderr_has("holds the eSMS ApiKey's value")
        .stderr_has("holds the eSMS SecretKey's value");
    no_key_shown(&refused);

    // A saved plan is refused the same way once a key is pasted in.
    manifest_with_name(&env, "Shop");
    run(&env, &sim, &["plan", "--out", "saved.plan"]).code(0);
    manifest_with_name(&env, &format!("Shop {SECRET_KEY}"));
    let refused = run(&env, &sim, &["apply", "saved.plan"]);
    refused
        .code(1)
        .stderr_has("holds the eSMS SecretKey's value");
    no_key_shown(&refused);
    assert!(
        !sim.requests().iter().any(|r| r.call == Call::Purchase),
        "nothing was bought"
    );

    // Without the key: bought.
    manifest_with_name(&env, "Shop");
    run(&env, &sim, &["apply", "--auto-approve"]).code(0);
    assert_eq!(sim.ledger().len(), 2);
}

#[test]
fn short_keys_are_not_looked_for() {
    // The suite's own keys (`test-key`, `test-secret`) are shorter than 16
    // characters: a name holding one is an ordinary name.
    let all = pkgs(9311, 1);
    let sim = start(account(&all));
    let env = Env::with_state().with_sim(&sim);
    write_manifest(&env, &all);
    let text = std::fs::read_to_string(env.path("oapkg.yaml")).unwrap();
    std::fs::write(
        env.path("oapkg.yaml"),
        text.replace("name: OA 9311", "name: test-key test-secret"),
    )
    .unwrap();
    env.run(&["apply", "--auto-approve"]).code(0);
    assert_eq!(sim.ledger().len(), 1);
}

#[test]
fn watch_holds_a_manifest_holding_a_key_like_an_invalid_one() {
    let sim = sim();
    let env = Env::with_state();
    manifest_with_name(&env, &format!("Shop {API_KEY}"));
    let endpoint = sim.endpoint().as_str().to_owned();
    let mut watch = Watch::start_with(&env, &["--apply"], |cmd| {
        cmd.env("ESMS_ENDPOINT", &endpoint)
            .env("ESMS_API_KEY", API_KEY)
            .env("ESMS_SECRET_KEY", SECRET_KEY);
    });
    let error = watch.record("an error about oapkg.yaml", |v| {
        v["level"] == "ERROR" && v["file"] == "oapkg.yaml"
    });
    assert!(
        message(&error).contains("this manifest holds the eSMS ApiKey's value"),
        "{error}"
    );
    assert!(error["line"].as_u64().is_some_and(|l| l > 0), "{error}");
    watch.record("the invalid-manifests summary", |v| {
        message(v).starts_with("the manifests are invalid")
    });
    assert!(watch.0.alive(), "watch goes on");
    assert!(
        !sim.requests().iter().any(|r| r.call == Call::Purchase),
        "nothing was bought"
    );

    // Fixed: planned and bought.
    manifest_with_name(&env, "Shop");
    watch.planned();
    watch.record("an apply outcome", |v| v["outcome"] == "done");
    assert_eq!(sim.ledger().len(), 2);
    watch.0.signal(libc::SIGTERM);
    assert_eq!(watch.0.wait_exit(crate::watch::WAIT), 0);
    let transcript = watch.0.transcript();
    assert!(!transcript.contains(API_KEY), "{transcript}");
}
