//! Read-back through Zalo (`oapkg refresh`), with the real binary against
//! the simulator serving both eSMS and Zalo: settling a charged unconfirmed
//! purchase, leaving an uncharged one with the evidence, lag never turning
//! into "failed", drift both ways with dates, single-use refresh tokens
//! rotated over many runs, the writability check and the crash it cannot
//! cover, token files others can read refused, and the token command.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use esms_sim::{Fault, FaultRule, SimConfig, Stage, ZaloTokens};
use serde_json::Value;

use crate::support::{Env, Pkg, Run, STATE, account, apply, start, write_manifest};

const CHARGED: &str = "4097311281936189049";
const UNCHARGED: &str = "745830328927467685";
const TOKENS: &str = "zalo-tokens.yaml";

/// Writes the token file (mode 0600) with access tokens for `oas`.
fn access_tokens(env: &Env, oas: &[&ZaloTokens]) {
    let body: String = oas
        .iter()
        .map(|t| format!("\"{}\":\n  access_token: \"{}\"\n", t.oaid, t.access_token))
        .collect();
    private(env, TOKENS, &body);
}

/// Writes the token file (mode 0600) with refresh tokens for `oas`.
fn refresh_tokens(env: &Env, oas: &[&ZaloTokens]) {
    let body: String = oas
        .iter()
        .map(|t| {
            format!(
                "\"{}\":\n  refresh_token: \"{}\"\n  app_id: \"{}\"\n",
                t.oaid,
                t.refresh_token,
                esms_sim::zalo::DEFAULT_APP_ID
            )
        })
        .collect();
    private(env, TOKENS, &body);
}

fn private(env: &Env, rel: &str, body: &str) {
    env.file(rel, body);
    std::fs::set_permissions(env.path(rel), std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn refresh_cmd(env: &Env, extra: &[&str]) -> std::process::Command {
    let mut args = vec!["refresh", "--zalo-tokens", TOKENS];
    args.extend_from_slice(extra);
    let mut cmd = env.command(&args);
    cmd.env("ZALO_APP_SECRET", esms_sim::zalo::DEFAULT_APP_SECRET);
    cmd
}

fn refresh(env: &Env, extra: &[&str]) -> Run {
    Run::from(refresh_cmd(env, extra).output().expect("run oapkg"))
}

fn state_file(env: &Env) -> Value {
    serde_json::from_slice(&env.read(STATE)).unwrap()
}

/// Two purchases whose outcome is unknown: the one for [`CHARGED`] was
/// charged (the connection dropped after the commit), the one for
/// [`UNCHARGED`] was not (dropped before).
fn two_unconfirmed() -> (Env, esms_sim::BlockingSimHandle) {
    let all = [
        Pkg::new(CHARGED, "2027-01-01", "premium", 12),
        Pkg::new(UNCHARGED, "2027-01-01", "advanced", 6),
    ];
    let sim = start(
        account(&all)
            .fault(FaultRule::for_oaid(
                CHARGED,
                Fault::DropConnection {
                    stage: Stage::AfterCommit,
                },
            ))
            .fault(FaultRule::for_oaid(
                UNCHARGED,
                Fault::DropConnection {
                    stage: Stage::BeforeCommit,
                },
            )),
    );
    let env = Env::with_state().with_sim(&sim);
    write_manifest(&env, &all);
    apply(&env, &sim, &[])
        .code(1)
        .stdout_has("0 purchased, 0 failed, 2 unconfirmed");
    assert_eq!(sim.ledger().len(), 1, "only the first was charged");
    sim.clear_faults();
    (env, sim)
}

#[test]
fn a_charged_unconfirmed_purchase_is_settled_and_an_uncharged_one_keeps_its_evidence() {
    let (env, sim) = two_unconfirmed();
    let charged = sim.zalo_authorize(CHARGED);
    let uncharged = sim.zalo_authorize(UNCHARGED);
    access_tokens(&env, &[&charged, &uncharged]);

    let run = refresh(&env, &[]);
    run.code(0)
        .stdout_has("Read 2 of 2 OAs with a token through Zalo.")
        .stdout_has(&format!(
            "settled {CHARGED}@2027-01-01: now submitted, confirmed by zalo (Zalo shows the OA valid \
             through 2027-12-31, the record ends 2027-12-31"
        ))
        .stdout_has(&format!(
            "{UNCHARGED}@2027-01-01: unconfirmed, left as it is: it ends 2027-06-30, Zalo shows no \
             package. Zalo may lag"
        ))
        .stdout_has("1 settled, 0 drifted, 0 not read.");
    let state = state_file(&env);
    let settled = &state["packages"][format!("{CHARGED}@2027-01-01")];
    assert_eq!(settled["status"], "submitted");
    assert_eq!(settled["confirmed"]["by"], "zalo");
    assert_eq!(
        settled["confirmed"]["observation"]["valid_through"],
        "2027-12-31"
    );
    assert_eq!(
        state["packages"][format!("{UNCHARGED}@2027-01-01")]["status"],
        "unconfirmed"
    );
    assert_eq!(
        state["observations"][CHARGED]["valid_through"],
        "2027-12-31"
    );
    assert_eq!(
        state["observations"][UNCHARGED]["valid_through"],
        Value::Null
    );
    // `state show` shows the OA's last observation.
    env.run(&["state", "show", &format!("{CHARGED}@2027-01-01")])
        .code(0)
        .stdout_has("zalo_observation")
        .stdout_has("valid through 2027-12-31");
    // Never bought anything.
    assert_eq!(sim.ledger().len(), 1);

    // JSON: the same facts.
    let json = refresh(&env, &["--format", "json"]);
    json.code(0);
    let doc = json.json();
    assert_eq!(doc["read"], 2);
    assert_eq!(
        doc["unconfirmed"][0]["key"],
        format!("{UNCHARGED}@2027-01-01")
    );
    assert_eq!(doc["unconfirmed"][0]["reason"], "not_visible");
}

#[test]
fn lag_never_turns_into_failed_and_the_purchase_settles_once_zalo_shows_it() {
    let (env, sim) = two_unconfirmed();
    sim.set_zalo_lag(Duration::from_secs(86_400));
    let charged = sim.zalo_authorize(CHARGED);
    access_tokens(&env, &[&charged]);
    for _ in 0..2 {
        let run = refresh(&env, &[]);
        run.code(0)
            .stdout_has("Zalo shows no package. Zalo may lag (absence is not proof it failed)");
        assert!(!run.stdout.contains("settled "), "{}", run.stdout);
        let state = state_file(&env);
        assert_eq!(
            state["packages"][format!("{CHARGED}@2027-01-01")]["status"],
            "unconfirmed"
        );
        assert!(state.get("failed_attempts").is_none(), "{state}");
    }
    env.run(&["plan"]).code(0).stdout_has("unconfirmed");
    sim.set_zalo_lag(Duration::ZERO);
    refresh(&env, &[])
        .code(0)
        .stdout_has(&format!("settled {CHARGED}@2027-01-01"));
}

#[test]
fn drift_both_ways_is_reported_with_dates() {
    let sim = start(SimConfig::new().oaid(CHARGED).oaid(UNCHARGED));
    // Today the recorded packages have started.
    let env = Env::with_state().with_sim(&sim).today("2027-02-15");
    // Recorded, never charged: Zalo shows nothing.
    env.import(CHARGED, "premium", "2027-01-01", "12", &[])
        .code(0);
    // Recorded through 2027-06-30; Zalo shows 2028-03-31 (bought elsewhere).
    env.import(UNCHARGED, "advanced", "2027-01-01", "6", &[])
        .code(0);
    sim.set_zalo_package(UNCHARGED, "2028-03-31".parse().unwrap(), "Gói Nâng cao");
    let a = sim.zalo_authorize(CHARGED);
    let b = sim.zalo_authorize(UNCHARGED);
    access_tokens(&env, &[&a, &b]);

    let run = refresh(&env, &[]);
    run.code(2)
        .stdout_has(&format!(
            "drift {CHARGED}: recorded but not on Zalo: the state covers it through 2027-12-31, Zalo \
             shows no package (a purchase that did not take effect, or Zalo lagging)"
        ))
        .stdout_has(&format!(
            "drift {UNCHARGED}: on Zalo but not recorded: Zalo shows it valid through 2028-03-31, the \
             state covers it through 2027-06-30 (bought outside oapkg? record it with `oapkg state \
             import`)"
        ))
        .stdout_has("0 settled, 2 drifted, 0 not read.");
    let doc = refresh(&env, &["--format", "json"]).json();
    assert_eq!(doc["drift"][0]["kind"], "not_on_zalo");
    assert_eq!(doc["drift"][0]["recorded_through"], "2027-12-31");
    assert_eq!(doc["drift"][1]["kind"], "outside_oapkg");
    assert_eq!(doc["drift"][1]["zalo_through"], "2028-03-31");
    // Nothing deleted, nothing marked failed.
    let state = state_file(&env);
    assert_eq!(state["packages"].as_object().unwrap().len(), 2);
    assert!(state.get("failed_attempts").is_none());
}

#[test]
fn rotation_survives_twenty_runs_with_every_refresh_token_used_once() {
    // Access tokens live a minute: less than oapkg's margin, so every run
    // exchanges.
    let sim = start(
        SimConfig::new()
            .oaid(CHARGED)
            .oaid(UNCHARGED)
            .zalo_access_ttl(Duration::from_secs(60)),
    );
    let env = Env::with_state().with_sim(&sim);
    let a = sim.zalo_authorize(CHARGED);
    let b = sim.zalo_authorize(UNCHARGED);
    refresh_tokens(&env, &[&a, &b]);
    for run in 1..=20 {
        refresh(&env, &[])
            .code(0)
            .stdout_has("Read 2 of 2 OAs with a token through Zalo (2 token exchanges).");
        let mode = std::fs::metadata(env.path(TOKENS))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "run {run}");
    }
    let uses = sim.zalo_refresh_token_uses();
    assert_eq!(uses.len(), 42, "2 authorised + 2 new per run");
    assert!(
        uses.iter().all(|&n| n <= 1),
        "a refresh token used twice: {uses:?}"
    );
    assert_eq!(uses.iter().filter(|&&n| n == 1).count(), 40);
    let stats = sim.zalo_stats();
    assert_eq!((stats.exchanges_ok, stats.refresh_token_reuses), (40, 0));
    assert_eq!(stats.getoa_ok, 40);
    // The file holds the newest pair and the expiry oapkg computed.
    let file = String::from_utf8(env.read(TOKENS)).unwrap();
    assert!(file.contains("expires_at"), "{file}");
    assert!(!file.contains(&a.refresh_token));
}

#[test]
fn access_tokens_are_reused_until_they_expire() {
    let sim = start(SimConfig::new().oaid(CHARGED));
    let env = Env::with_state().with_sim(&sim);
    let a = sim.zalo_authorize(CHARGED);
    refresh_tokens(&env, &[&a]);
    for _ in 0..3 {
        refresh(&env, &[]).code(0);
    }
    assert_eq!(sim.zalo_stats().exchanges, 1, "one exchange, then reuse");
    // Zalo refuses the kept access token: one exchange, one more read.
    sim.expire_zalo_access_tokens();
    refresh(&env, &[])
        .code(0)
        .stdout_has("Read 1 of 1 OA with a token through Zalo (1 token exchange).");
    assert_eq!(sim.zalo_stats().refresh_token_reuses, 0);
}

#[test]
fn no_exchange_when_the_new_tokens_could_not_be_written() {
    let sim = start(SimConfig::new().oaid(CHARGED));
    let env = Env::with_state().with_sim(&sim);
    let a = sim.zalo_authorize(CHARGED);
    // Other OAs' entries make the file larger than 512 bytes.
    let others: Vec<ZaloTokens> = (1..=8)
        .map(|i| sim.zalo_authorize(&format!("10000000{i}")))
        .collect();
    let mut all = vec![&a];
    all.extend(others.iter());
    refresh_tokens(&env, &all);
    let before = env.read(TOKENS);
    assert!(before.len() > 512);
    // No file may grow past 512 bytes (root or not): the lock's few bytes
    // are written, the check that a new version of the token file can be
    // written fails, before anything is exchanged.
    let cmd = refresh_cmd(&env, &["--only", CHARGED]);
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let mut limited = std::process::Command::new("sh");
    limited
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 1; exec \"$0\" \"$@\"")
        .arg(program)
        .args(args)
        .current_dir(env.path("."));
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => limited.env(key, value),
            None => limited.env_remove(key),
        };
    }
    let run = Run::from(limited.output().unwrap());
    run.code(1)
        .stderr_has("cannot write beside the Zalo token file")
        .stderr_has("no refresh token was exchanged");
    assert_eq!(sim.zalo_stats().exchanges, 0);
    assert_eq!(env.read(TOKENS), before);
    // The same run without the limit works.
    refresh(&env, &["--only", CHARGED]).code(0);
}

#[test]
fn a_crash_between_exchange_and_write_loses_the_new_token_and_says_what_to_do() {
    let sim = start(SimConfig::new().oaid(CHARGED));
    let env = Env::with_state().with_sim(&sim);
    let a = sim.zalo_authorize(CHARGED);
    refresh_tokens(&env, &[&a]);
    let before = env.read(TOKENS);
    let crashed = Run::from(
        refresh_cmd(&env, &[])
            .env(oapkg::zalo::tokens::CRASH_AFTER_EXCHANGE_VAR, "1")
            .output()
            .unwrap(),
    );
    assert_ne!(crashed.code, 0);
    assert_eq!(env.read(TOKENS), before, "nothing was written");
    assert_eq!(
        sim.zalo_refresh_token_uses(),
        vec![1, 0],
        "the old token is spent"
    );
    // The next run cannot use the spent token and says what a person must do.
    refresh(&env, &[])
        .code(1)
        .stdout_has(&format!(
            "not read {CHARGED}: its refresh token was refused"
        ))
        .stdout_has("an OA admin must authorise the app again");
    assert_eq!(sim.zalo_stats().refresh_token_reuses, 1);
    // The admin authorises the app again; the new refresh token goes in.
    let again = sim.zalo_authorize(CHARGED);
    refresh_tokens(&env, &[&again]);
    refresh(&env, &[]).code(0);
}

#[test]
fn a_token_file_others_can_read_is_refused() {
    let sim = start(SimConfig::new().oaid(CHARGED));
    let env = Env::with_state().with_sim(&sim);
    let a = sim.zalo_authorize(CHARGED);
    access_tokens(&env, &[&a]);
    for mode in [0o640, 0o604, 0o660] {
        std::fs::set_permissions(env.path(TOKENS), std::fs::Permissions::from_mode(mode)).unwrap();
        let run = refresh(&env, &[]);
        run.code(1)
            .stderr_has("can be read by group or others")
            .stderr_has(&format!("chmod 600 {TOKENS}"));
        assert!(!run.stderr.contains(&a.access_token));
    }
    assert_eq!(sim.zalo_stats().getoa, 0, "nothing was read");
}

#[test]
fn a_token_command_gives_the_access_tokens_and_oas_without_one_are_not_read() {
    let sim = start(SimConfig::new().oaid(CHARGED).oaid(UNCHARGED));
    let env = Env::with_state().with_sim(&sim);
    env.import(CHARGED, "premium", "2026-11-01", "12", &[])
        .code(0);
    env.import(UNCHARGED, "premium", "2026-11-01", "12", &[])
        .code(0);
    sim.set_zalo_package(CHARGED, "2027-10-31".parse().unwrap(), "Gói Cao cấp");
    let a = sim.zalo_authorize(CHARGED);
    // A credential helper: knows one OA, prints nothing for the others.
    env.file(
        "token-helper.sh",
        format!(
            "if [ \"$1\" = {CHARGED} ]; then printf '{{\"access_token\": \"%s\", \"expires_at\": \
             \"2030-01-01T00:00:00Z\"}}' '{}'; fi\n",
            a.access_token
        ),
    );
    let run = Run::from(
        env.command(&["refresh", "--zalo-token-command", "sh token-helper.sh"])
            .output()
            .unwrap(),
    );
    run.code(0)
        .stdout_has("Read 1 of 1 OA with a token through Zalo.")
        .stdout_has(&format!("no token for 1 OA: {UNCHARGED}"));
    assert!(!run.stdout.contains(&a.access_token));
    assert_eq!(
        state_file(&env)["observations"][CHARGED]["valid_through"],
        "2027-10-31"
    );
}

#[test]
fn plan_and_coverage_refresh_show_zalo_beside_the_record_in_every_format() {
    let sim = start(SimConfig::new().oaid(CHARGED).oaid(UNCHARGED));
    let env = Env::with_state().with_sim(&sim).today("2027-02-15");
    env.import(CHARGED, "premium", "2027-01-01", "12", &[])
        .code(0);
    env.import(UNCHARGED, "advanced", "2027-01-01", "6", &[])
        .code(0);
    sim.set_zalo_package(UNCHARGED, "2028-03-31".parse().unwrap(), "Gói Nâng cao");
    env.file(
        "oapkg.yaml",
        crate::support::manifest(&format!(
            "  - oaid: \"{CHARGED}\"\n    tier: premium\n    start: 2027-01-01\n    duration: 12\n"
        )),
    );
    let a = sim.zalo_authorize(CHARGED);
    let b = sim.zalo_authorize(UNCHARGED);
    access_tokens(&env, &[&a, &b]);
    let serial = state_file(&env)["serial"].clone();
    let zalo = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--refresh", "--zalo-tokens", TOKENS]);
        Run::from(env.command(&all).output().unwrap())
    };

    zalo(&["plan"])
        .code(0)
        .stdout_has("Zalo read-back (2 OAs):")
        .stdout_has(&format!(
            "{CHARGED}  recorded through 2027-12-31  Zalo: no package (drift: not on Zalo)"
        ))
        .stdout_has(&format!(
            "{UNCHARGED}  recorded through 2027-06-30  Zalo: 2028-03-31 (drift: not recorded)"
        ));
    zalo(&["plan", "--format", "markdown"])
        .code(0)
        .stdout_has("| OAID | Recorded through | Zalo valid through | Drift |")
        .stdout_has(&format!(
            "| `{UNCHARGED}` | 2027-06-30 | 2028-03-31 | ⚠ on Zalo but not recorded"
        ));
    let json = zalo(&["plan", "--format", "json"]).json();
    assert_eq!(json["zalo"][1]["oaid"], UNCHARGED);
    assert_eq!(json["zalo"][1]["zalo"]["drift"]["kind"], "outside_oapkg");
    assert_eq!(
        json["zalo"][0]["zalo"]["drift"]["recorded_through"],
        "2027-12-31"
    );

    zalo(&["coverage"])
        .code(0)
        .stdout_has("ZALO VALID THROUGH")
        .stdout_has("2028-03-31 (drift: not recorded)")
        .stdout_has(&format!("drift {CHARGED}: recorded but not on Zalo"));
    zalo(&["coverage", "--format", "markdown"])
        .code(0)
        .stdout_has("| Next renewal | Zalo valid through |")
        .stdout_has("⚠ 2028-03-31 (drift: not recorded)")
        .stdout_has("Zalo valid through (drift) :crit, milestone, ")
        .stdout_has(", 2028-03-31, 0d");
    let coverage = zalo(&["coverage", "--format", "json"]).json();
    assert_eq!(coverage[1]["zalo"]["valid_through"], "2028-03-31");
    assert_eq!(coverage[0]["zalo"]["drift"]["kind"], "not_on_zalo");
    // Without --refresh nothing changes, and the refreshes recorded nothing.
    let plain = env.run(&["coverage", "--format", "json"]).json();
    assert!(plain[0].get("zalo").is_none());
    assert_eq!(state_file(&env)["serial"], serial);
}
