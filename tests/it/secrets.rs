//! The keys never leak, even when the server echoes them: a proxy error page that echoes the request body after N characters
//! of text, for every N from 0 to 200, through the real binary and the
//! simulator. No piece of six characters of either key may appear in
//! stdout, stderr, the state file, its journal, backup or lock, or a saved
//! plan.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use esms_sim::{Fault, FaultRule, SimConfig, SimControl};
use oapkg::secrets::key_piece_in;

use crate::support::{Env, Run, manifest, start};

/// Long keys, so that every run of six of their characters is a
/// recognisable piece; not hexadecimal, so that no checksum or hash in the
/// output can hold such a piece by chance (hex keys did, in about one run
/// in ten).
const FUZZ_API_KEY: &str = "AK-q7r3w9t2y1u4p6s8z0x5v3k9m7n1j2h4";
const FUZZ_SECRET_KEY: &str = "SK-w9x8y7z6v5u4t3s2r1q0p9o8n7m6l5k4j3i2h1g0";
const OAID: &str = "4097311281936189049";
const OTHER_OAID: &str = "745830328927467685";
const FILLERS: std::ops::RangeInclusive<usize> = 0..=200;
const WORKERS: usize = 3;

fn oapkg(env: &Env, sim: &SimControl, args: &[&str]) -> Run {
    Run::from(
        env.command(args)
            .env("ESMS_ENDPOINT", sim.endpoint().as_str())
            .env("ESMS_API_KEY", FUZZ_API_KEY)
            .env("ESMS_SECRET_KEY", FUZZ_SECRET_KEY)
            .env("OAPKG_RETRY_MIN_DELAY_MS", "1")
            .output()
            .expect("run oapkg"),
    )
}

/// Fails if `text` (named `what`) holds a piece of either key.
#[track_caller]
fn assert_clean(n: usize, what: &str, text: &str) {
    if let Some(piece) = key_piece_in(text, &[FUZZ_API_KEY, FUZZ_SECRET_KEY]) {
        panic!("N={n}: {what} holds {piece:?} of a key:\n{text}");
    }
}

/// One run of the fault with `filler` characters before the echo, on
/// purchases only (`all_calls`: on the pre-flight's calls too).
fn echo_run(filler: usize, all_calls: bool) {
    let env = Env::new();
    env.file(
        "oapkg.yaml",
        manifest(&format!(
            "  - oaid: \"{OAID}\"\n    tier: premium\n    start: 2027-01-01\n    duration: 12\n"
        )),
    );
    let mut rule = FaultRule::always(Fault::EchoRequest {
        status: 502,
        filler,
    });
    if all_calls {
        rule = rule.on_all_calls();
    }
    let sim = start(
        SimConfig::new()
            .keys(FUZZ_API_KEY, FUZZ_SECRET_KEY)
            .oaid(OAID)
            .oaid(OTHER_OAID)
            .fault(rule),
    );
    // A state to start from, so the apply's write leaves a backup.
    env.import(OTHER_OAID, "trial", "2027-01-01", "1", &[])
        .code(0);
    let applied = oapkg(&env, &sim, &["apply", "--auto-approve", "-vvv"]);
    assert_ne!(applied.code, 0, "N={filler}: the purchase cannot succeed");
    assert!(
        applied.stdout.contains("502") || applied.stderr.contains("502"),
        "N={filler}: the 502 is reported\n{}\n{}",
        applied.stdout,
        applied.stderr
    );
    if filler >= 5 {
        // The excerpt of the page is shown: the test sees what a user sees.
        assert!(applied.stdout.contains("Bad g") || applied.stderr.contains("Bad g"));
    }
    let planned = oapkg(&env, &sim, &["plan", "--out", "saved.plan"]);
    let listed = oapkg(&env, &sim, &["state", "show", OAID]);
    for (what, run) in [
        ("apply", &applied),
        ("plan", &planned),
        ("state show", &listed),
    ] {
        assert_clean(filler, &format!("{what} stdout"), &run.stdout);
        assert_clean(filler, &format!("{what} stderr"), &run.stderr);
    }
    let mut files = vec![env.path("saved.plan")];
    for entry in std::fs::read_dir(env.path("state")).expect("the state directory") {
        files.push(entry.unwrap().path());
    }
    if !all_calls {
        let names: Vec<_> = files.iter().filter_map(|p| p.file_name()).collect();
        for wanted in ["oapkg.state.json", "oapkg.state.json.backup"] {
            assert!(
                names.iter().any(|n| *n == wanted),
                "N={filler}: no {wanted} in {names:?}"
            );
        }
    }
    for path in files {
        if let Ok(bytes) = std::fs::read(&path) {
            assert_clean(
                filler,
                &path.display().to_string(),
                &String::from_utf8_lossy(&bytes),
            );
        }
    }
}

#[test]
fn an_error_page_echoing_the_request_after_n_characters_leaks_no_piece_of_a_key() {
    let next = AtomicUsize::new(*FILLERS.start());
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..WORKERS {
            scope.spawn(|| {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n > *FILLERS.end() {
                        break;
                    }
                    // Purchases for every N; the pre-flight's calls for
                    // every seventh.
                    let result = std::panic::catch_unwind(|| {
                        echo_run(n, false);
                        if n.is_multiple_of(7) {
                            echo_run(n, true);
                        }
                    });
                    if let Err(panic) = result {
                        let message = panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default();
                        failures.lock().unwrap().push(message);
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Zalo's secrets (access and refresh tokens, the app secret sent as the
/// `secret_key` header) never leak: every refresh path (exchange, read,
/// a read whose answer echoes the token, a refused token, the JSON
/// output) at `RUST_LOG=trace` and `-vvv`, through the real binary. No
/// piece of six characters of any of them may appear in stdout, stderr,
/// the state file or its backup, or a saved plan.
#[test]
fn zalo_tokens_and_the_app_secret_never_leak_at_any_log_level() {
    const APP_ID: &str = "4318902657531122461";
    const APP_SECRET: &str = "ZS-k3j9q2w8e7r6t5y4u1p0o9i8";
    let sim = start(
        SimConfig::new()
            .oaid(OAID)
            .oaid(OTHER_OAID)
            .zalo_app(APP_ID, APP_SECRET)
            .zalo_access_ttl(std::time::Duration::from_secs(60)),
    );
    let env = Env::with_state().with_sim(&sim);
    env.import(OAID, "premium", "2026-11-01", "12", &[]).code(0);
    let first = sim.zalo_authorize(OAID);
    let other = sim.zalo_authorize(OTHER_OAID);
    let tokens = format!(
        "\"{OAID}\":\n  refresh_token: \"{}\"\n  app_id: \"{APP_ID}\"\n\
         \"{OTHER_OAID}\":\n  access_token: \"{}\"\n",
        first.refresh_token, other.access_token
    );
    env.file("tokens.yaml", tokens);
    std::fs::set_permissions(
        env.path("tokens.yaml"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let mut secrets: Vec<String> = vec![
        APP_SECRET.to_owned(),
        first.refresh_token.clone(),
        first.access_token.clone(),
        other.access_token.clone(),
        other.refresh_token.clone(),
    ];
    let zalo = |args: &[&str]| {
        let mut all = vec!["-vvv"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--zalo-tokens", "tokens.yaml"]);
        Run::from(
            env.command(&all)
                .env("RUST_LOG", "trace")
                .env("ZALO_APP_SECRET", APP_SECRET)
                .output()
                .expect("run oapkg"),
        )
    };
    let mut runs = Vec::new();
    // An exchange and two reads.
    runs.push(zalo(&["refresh"]));
    // A read whose answer echoes the token the OA was read with.
    sim.set_zalo_odd_answer(Some(format!(
        "Bad gateway: upstream refused access_token={} for this request",
        other.access_token
    )));
    runs.push(zalo(&["refresh", "--format", "json"]));
    assert!(
        runs[1]
            .stdout
            .contains("not JSON: Bad gateway: upstream refused access_token=[redacted]"),
        "{}",
        runs[1].stdout
    );
    sim.set_zalo_odd_answer(None);
    // Refused tokens (expired access tokens, then a spent refresh token).
    sim.expire_zalo_access_tokens();
    runs.push(zalo(&["refresh"]));
    runs.push(zalo(&["refresh"]));
    for run in &runs {
        assert!(
            run.code == 0 || run.code == 1 || run.code == 2,
            "{}",
            run.stderr
        );
    }
    // Every token the simulator issued since (the rotated pairs) counts.
    let file = String::from_utf8(env.read("tokens.yaml")).unwrap();
    for line in file.lines() {
        if let Some((_, value)) = line.split_once("_token: ") {
            secrets.push(value.trim_matches('"').to_owned());
        }
    }
    let keys: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let mut texts: Vec<(String, String)> = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        texts.push((format!("run {i} stdout"), run.stdout.clone()));
        texts.push((format!("run {i} stderr"), run.stderr.clone()));
    }
    for file in ["state/oapkg.state.json", "state/oapkg.state.json.backup"] {
        if env.path(file).exists() {
            texts.push((
                file.to_owned(),
                String::from_utf8_lossy(&env.read(file)).into_owned(),
            ));
        }
    }
    env.run(&["plan", "--out", "saved.plan"]);
    if env.path("saved.plan").exists() {
        texts.push((
            "saved plan".to_owned(),
            String::from_utf8_lossy(&env.read("saved.plan")).into_owned(),
        ));
    }
    assert!(
        runs[0].stderr.contains("TRACE") || runs[0].stderr.contains("DEBUG"),
        "logging was on"
    );
    for (what, text) in &texts {
        if let Some(piece) = key_piece_in(text, &keys) {
            panic!("{what} holds {piece:?} of a Zalo secret:\n{text}");
        }
        assert!(!text.contains("secret_key: "), "{what}: {text}");
    }
    assert!(sim.zalo_stats().exchanges >= 1);
}
