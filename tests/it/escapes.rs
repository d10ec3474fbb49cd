//! Control characters from files and from eSMS never reach the terminal raw:
//! a manifest name, a server message and a
//! ServicePreviewId holding `ESC [2J` (clear screen) and `\r\nfake line`
//! are escaped in the output of every command that prints them.

use esms_sim::{Fault, FaultRule, SimConfig};

use crate::support::{Env, Run, manifest, run as run_against, start};

const OAID: &str = "4097311281936189049";
const KEY: &str = "4097311281936189049@2027-01-01";
/// YAML double-quoted: ESC [2J, CR LF, then a line that pretends to be
/// oapkg's.
const EVIL_YAML: &str = r#""evil\e[2J\r\nfake line""#;
/// The same in JSON.
const EVIL_JSON: &str = r#""evil\u001b[2J\r\nfake line""#;

#[track_caller]
fn assert_escaped(what: &str, run: &Run) {
    for (stream, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
        assert!(
            !text.contains('\x1b') && !text.contains('\r'),
            "{what} {stream} holds a raw control character:\n{text:?}"
        );
        assert!(
            !text.lines().any(|l| l.starts_with("fake line")),
            "{what} {stream} holds a faked line:\n{text}"
        );
    }
}

fn evil_manifest(env: &Env, start: &str) {
    env.file(
        "oapkg.yaml",
        manifest(&format!(
            "  - oaid: \"{OAID}\"\n    name: {EVIL_YAML}\n    tier: premium\n    start: {start}\n    duration: 1\n"
        )),
    );
}

#[test]
fn every_command_escapes_names_messages_and_ids() {
    let env = Env::with_state();
    evil_manifest(&env, "2027-01-01");
    // eSMS accepts, with a message and an id that hold control characters.
    let sim = start(SimConfig::new().oaid(OAID).fault(FaultRule::always(Fault::Raw {
        status: 200,
        body: format!(
            r#"{{"CodeResult":"100","ServicePreviewId":{EVIL_JSON},"ErrorMessage":{EVIL_JSON}}}"#
        ),
    })));
    let mut runs = Vec::new();
    for format in ["text", "markdown"] {
        let run = env.run(&["plan", "--format", format, "--no-color"]);
        assert!(run.stdout.contains("evil"), "{}", run.stdout);
        runs.push((format!("plan --format {format}"), run));
    }
    runs.push(("validate".into(), env.run(&["validate"])));
    let applied = run_against(&env, &sim, &["apply", "--auto-approve", "--no-color"]);
    applied.code(0);
    runs.push(("apply".into(), applied));
    let listed = env.run(&["state", "list"]);
    assert!(listed.stdout.contains("evil"), "{}", listed.stdout);
    runs.push(("state list".into(), listed));
    let shown = env.run(&["state", "show", KEY]);
    assert!(shown.stdout.contains("evil\\u{1b}[2J"), "{}", shown.stdout);
    runs.push(("state show".into(), shown));
    for (what, run) in &runs {
        assert_escaped(what, run);
    }

    // `expiring`: the same name on a package that runs out soon.
    let env = Env::new();
    evil_manifest(&env, "2026-11-01");
    env.import(
        OAID,
        "premium",
        "2026-11-01",
        "1",
        &["--name", "evil\x1b[2J\r\nfake line"],
    )
    .code(0);
    let expiring = env.run(&["expiring", "--within", "30"]);
    assert!(expiring.stdout.contains("evil"), "{}", expiring.stdout);
    assert_escaped("expiring", &expiring);
    let listed = env.run(&["state", "list"]);
    assert_escaped("state list of an imported name", &listed);
}

#[test]
fn errors_quoting_a_server_message_or_a_file_are_escaped() {
    // The pre-flight fails with a message that holds control characters.
    let env = Env::with_state();
    evil_manifest(&env, "2027-01-01");
    let sim = start(
        SimConfig::new().oaid(OAID).fault(
            FaultRule::always(Fault::Code {
                code: "143".into(),
                message: Some("locked\x1b[2J\r\nfake line".into()),
            })
            .on_all_calls(),
        ),
    );
    let run = run_against(&env, &sim, &["apply", "--auto-approve"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("locked"), "{}", run.stderr);
    assert_escaped("apply with a refused pre-flight", &run);

    // A manifest error quoting the file's text.
    let env = Env::new();
    env.file(
        "oapkg.yaml",
        manifest(&format!(
            "  - oaid: \"{OAID}\"\n    tier: {EVIL_YAML}\n    start: 2027-01-01\n    duration: 1\n"
        )),
    );
    for args in [&["validate"][..], &["plan"]] {
        let run = env.run(args);
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert_escaped(&args.join(" "), &run);
    }
}
