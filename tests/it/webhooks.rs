//! Notifications a team can act on, received by real HTTP receivers on
//! 127.0.0.1: signed as SPEC says (HMAC-SHA256 of `TIMESTAMP.BODY` keyed
//! by `OAPKG_NOTIFY_SECRET`) and checked here; one `cycle` summary with
//! estimated amounts for a renewal day of 200 OAs instead of 200 posts;
//! `--notify-events`; no doubled words; and the docs' receiver example
//! (`examples/notify-receiver.py`) accepting oapkg's posts and refusing a
//! forged one.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use esms_sim::{FIRST_GENERATED_OAID, SimConfig, Simulator};
use hmac::{Hmac, KeyInit as _, Mac as _};
use serde_json::Value;
use sha2::Sha256;

use crate::support::{API_KEY, Env, SECRET_KEY};
use crate::watch::{Watch, doc, message, pkg};
use crate::watch_apply::{charged, keys, outcome, simulator, wait_until};
use crate::watch_service::{Receiver, priced, start_service};

const NOTIFY_SECRET: &str = "whsec-test-0123456789abcdef";

/// Whether `head` signs `body` with `secret` as SPEC says, within five
/// minutes of now.
fn signed(head: &[(String, String)], body: &str, secret: &str) -> bool {
    let header = |name: &str| {
        head.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let (Some(timestamp), Some(signature)) =
        (header("x-oapkg-timestamp"), header("x-oapkg-signature-256"))
    else {
        return false;
    };
    let Ok(sent) = timestamp.parse::<i64>() else {
        return false;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    if (now - sent).abs() > 300 {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.{body}").as_bytes());
    let Some(hex) = signature.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(bytes) = hex::decode(hex) else {
        return false;
    };
    mac.verify_slice(&bytes).is_ok()
}

/// `n` one-month advanced packages starting `start`, one per generated OA.
fn month_of(n: u64, start: &str) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                "  - oaid: \"{}\"\n    tier: advanced\n    start: {start}\n    duration: 1\n",
                FIRST_GENERATED_OAID + i
            )
        })
        .collect()
}

#[test]
fn a_renewal_day_of_200_oas_is_one_signed_cycle_summary_with_estimated_amounts() {
    let sim = Simulator::spawn_blocking(SimConfig::new().generate_oas(200)).unwrap();
    let env = Env::with_state();
    // January is bought (by `apply`, no notifications).
    env.file("a.yaml", priced(&month_of(200, "2027-01-01")));
    let run = env
        .command(&[
            "apply",
            "--auto-approve",
            "--max-purchases",
            "200",
            "-f",
            "a.yaml",
        ])
        .env("ESMS_ENDPOINT", sim.endpoint().as_str())
        .env("ESMS_API_KEY", API_KEY)
        .env("ESMS_SECRET_KEY", SECRET_KEY)
        .output()
        .unwrap();
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(sim.ledger().len(), 200);

    let receiver = Receiver::start(0, false);
    let mut watch = start_service_signed(
        &env,
        &sim,
        &[
            "-f",
            "a.yaml",
            "--max-purchases",
            "200",
            "--notify",
            &receiver.url(),
        ],
    );
    watch.planned();
    // The renewal: one more month for every OA, in one save.
    let mut both = month_of(200, "2027-01-01");
    both.extend(month_of(200, "2027-02-01"));
    std::fs::write(env.path("a.yaml"), priced(&both)).unwrap();
    assert_eq!(outcome(&mut watch)["outcome"], "done");
    assert_eq!(sim.ledger().len(), 400);
    wait_until("the cycle summary", Duration::from_secs(20), || {
        receiver.count("cycle") == 1
    });
    // Anything else would have been queued before the summary.
    std::thread::sleep(Duration::from_millis(300));
    let received = receiver.received();
    assert_eq!(
        received.len(),
        1,
        "one post, not 200: {:#?}",
        &received[..received.len().min(3)]
    );
    let summary = &received[0];
    assert_eq!(summary["event"], "cycle");
    assert_eq!(summary["counts"]["purchased"], 200);
    assert_eq!(summary["counts"]["failed"], 0);
    assert_eq!(summary["packages"].as_array().unwrap().len(), 200);
    // 200 × 59,000 VND by the price list, marked as an estimate.
    assert_eq!(
        summary["spent"],
        serde_json::json!({"amount": 11_800_000, "currency": "VND", "estimated": true})
    );
    let first = &summary["packages"][0];
    assert_eq!(first["result"], "purchased");
    assert_eq!(first["cost"]["amount"], 59_000);
    assert_eq!(first["cost"]["estimated"], true);
    let text = summary["text"].as_str().unwrap();
    assert!(
        text.starts_with("oapkg: cycle ")
            && text.contains(": 200 purchased, 0 failed, 0 unconfirmed, 0 held; spent about 11,800,000 VND (estimated from the price list)"),
        "{text}"
    );

    // Every post is signed with the secret, and the secret is nowhere.
    let raw = receiver.raw();
    let heads = receiver.heads.lock().unwrap().clone();
    assert_eq!(raw.len(), heads.len());
    for (body, head) in raw.iter().zip(&heads) {
        assert!(signed(head, body, NOTIFY_SECRET), "{head:?}");
        // The check can fail: another secret, or one byte changed.
        assert!(!signed(head, body, "another-secret-value"));
        assert!(!signed(
            head,
            &body.replacen("200", "201", 1),
            NOTIFY_SECRET
        ));
        assert!(!body.contains(NOTIFY_SECRET));
    }
    let transcript = watch.0.transcript();
    assert_eq!(watch.terminate(), 0);
    assert!(!transcript.contains(NOTIFY_SECRET));
}

/// [`start_service`] with `OAPKG_NOTIFY_SECRET` set.
fn start_service_signed(env: &Env, sim: &esms_sim::BlockingSimHandle, args: &[&str]) -> Watch {
    crate::watch_apply::start_apply_with(env, sim, args, |cmd| {
        cmd.env("OAPKG_TEST_NOTIFY_DELAY_MS", "50")
            .env("OAPKG_NOTIFY_SECRET", NOTIFY_SECRET);
    })
}

#[test]
fn a_small_cycle_posts_each_package_and_the_summary_with_costs_and_no_doubled_words() {
    let sim = simulator(SimConfig::new());
    let env = Env::with_state();
    env.file("a.yaml", priced(&[pkg(1001, 12), pkg(9999, 12)]));
    let receiver = Receiver::start(0, false);
    let suspend = env.path("state/oapkg.suspend");
    env.file("state/oapkg.suspend", "");
    let suspend_arg = suspend.to_str().unwrap().to_owned();
    let mut watch = start_service(
        &env,
        &sim,
        &[
            "-f",
            "a.yaml",
            "--notify",
            &receiver.url(),
            "--suspend-file",
            &suspend_arg,
        ],
    );
    watch.record("the plan not applied", |v| {
        v["suspended"] == true && message(v).contains("not applied")
    });
    std::fs::remove_file(&suspend).unwrap();
    assert_eq!(outcome(&mut watch)["outcome"], "done");
    assert_eq!(charged(&sim), keys(&["1001@2027-01-01"]));
    wait_until("the summary", Duration::from_secs(10), || {
        receiver.count("cycle") == 1
    });
    let received = receiver.received();
    let purchased = received.iter().find(|n| n["event"] == "purchased").unwrap();
    assert_eq!(purchased["cost"]["amount"], 708_000);
    assert_eq!(purchased["cost"]["estimated"], true);
    assert!(
        purchased["message"]
            .as_str()
            .unwrap()
            .contains("about 708,000 VND (estimated from the price list)"),
        "{purchased}"
    );
    let held = received.iter().find(|n| n["event"] == "held").unwrap();
    assert_eq!(held["key"], "9999@2027-01-01");
    let summary = received.iter().find(|n| n["event"] == "cycle").unwrap();
    assert_eq!(summary["counts"]["purchased"], 1);
    assert_eq!(summary["counts"]["held"], 1);
    // No post repeats its event's word: "suspended: suspended:",
    // "held: held", "resumed: resumed:".
    let texts: Vec<&str> = received
        .iter()
        .map(|n| n["text"].as_str().unwrap())
        .collect();
    for n in &received {
        let event = n["event"].as_str().unwrap();
        let message = n["message"].as_str().unwrap();
        assert!(
            !message.to_lowercase().starts_with(event),
            "{event} repeated: {n}"
        );
    }
    assert!(
        texts.iter().any(|t| t.starts_with("oapkg: suspended: ")),
        "{texts:#?}"
    );
    assert!(
        texts.iter().any(|t| t.starts_with("oapkg: resumed: ")),
        "{texts:#?}"
    );
    // Unsigned without OAPKG_NOTIFY_SECRET.
    let heads = receiver.heads.lock().unwrap().clone();
    assert!(
        heads
            .iter()
            .all(|h| !h.iter().any(|(n, _)| n.starts_with("x-oapkg-")))
    );
    assert_eq!(watch.terminate(), 0);
}

#[test]
fn notify_events_sends_only_the_events_chosen_and_refuses_unknown_names() {
    let sim = simulator(SimConfig::new());
    let env = Env::with_state();
    env.file("a.yaml", doc(&[pkg(1001, 12)]));
    let receiver = Receiver::start(0, false);
    let mut watch = start_service(
        &env,
        &sim,
        &[
            "-f",
            "a.yaml",
            "--notify",
            &receiver.url(),
            "--notify-events",
            "cycle, error",
        ],
    );
    assert_eq!(outcome(&mut watch)["outcome"], "done");
    // A replace: held (a `held` event, not chosen) and a cycle summary.
    std::fs::write(env.path("a.yaml"), doc(&[pkg(1001, 6), pkg(1002, 12)])).unwrap();
    assert_eq!(outcome(&mut watch)["outcome"], "done");
    wait_until("two summaries", Duration::from_secs(10), || {
        receiver.count("cycle") == 2
    });
    std::thread::sleep(Duration::from_millis(300));
    let events: Vec<String> = receiver
        .received()
        .iter()
        .map(|n| n["event"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(events, ["cycle", "cycle"]);
    assert_eq!(watch.terminate(), 0);

    let run = env
        .command(&[
            "watch",
            "--notify",
            &receiver.url(),
            "--notify-events",
            "cycle,bought",
        ])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("unknown event \"bought\"") && stderr.contains("purchased"),
        "{stderr}"
    );
}

/// The receiver of the docs (`examples/notify-receiver.py`), started with
/// `secret`; its port and the lines it prints.
struct PythonReceiver {
    child: std::process::Child,
    port: u16,
    lines: std::sync::mpsc::Receiver<String>,
}

impl PythonReceiver {
    fn start(secret: &str) -> Option<PythonReceiver> {
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/notify-receiver.py");
        let mut child = match std::process::Command::new("python3")
            .arg(&script)
            .arg("0")
            .env("OAPKG_NOTIFY_SECRET", secret)
            .stdout(std::process::Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(error) if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("python3 is needed for the receiver example: {error}")
            }
            Err(error) => {
                eprintln!("SKIPPED: python3 cannot run the receiver example: {error}");
                return None;
            }
        };
        let (tx, lines) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let first: Value = serde_json::from_str(
            &lines
                .recv_timeout(Duration::from_secs(10))
                .expect("the receiver starts"),
        )
        .unwrap();
        let port = first["listening"].as_u64().unwrap() as u16;
        Some(PythonReceiver { child, port, lines })
    }

    fn next(&self) -> Value {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(10))
            .expect("a line from the receiver");
        serde_json::from_str(&line).unwrap()
    }
}

impl Drop for PythonReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_docs_receiver_example_verifies_oapkgs_signature_and_refuses_a_forged_post() {
    let Some(python) = PythonReceiver::start(NOTIFY_SECRET) else {
        return;
    };
    let sim = simulator(SimConfig::new());
    let env = Env::with_state();
    env.file("oapkg.yaml", doc(&[pkg(1001, 12)]));
    let url = format!("http://127.0.0.1:{}/hook", python.port);
    let run = env
        .command(&["apply", "--auto-approve", "--notify", &url])
        .env("ESMS_ENDPOINT", sim.endpoint().as_str())
        .env("ESMS_API_KEY", API_KEY)
        .env("ESMS_SECRET_KEY", SECRET_KEY)
        .env("OAPKG_NOTIFY_SECRET", NOTIFY_SECRET)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(0), "{run:?}");
    assert_eq!(python.next()["verified"], "purchased");

    // A forged post: a body the secret did not sign.
    let started = Instant::now();
    let body = r#"{"event":"purchased","text":"forged"}"#;
    let mut stream = TcpStream::connect(("127.0.0.1", python.port)).unwrap();
    write!(
        stream,
        "POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nX-Oapkg-Timestamp: {}\r\nX-Oapkg-Signature-256: sha256={}\r\nConnection: close\r\n\r\n{body}",
        body.len(),
        jiff::Timestamp::now().as_second(),
        "0".repeat(64)
    )
    .unwrap();
    let mut answer = String::new();
    let _ = std::io::Read::read_to_string(&mut stream, &mut answer);
    assert!(
        answer.starts_with("HTTP/1.0 401") || answer.starts_with("HTTP/1.1 401"),
        "{answer}"
    );
    assert_eq!(python.next()["rejected"], "/hook");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn without_the_cycle_event_a_big_cycle_posts_every_package_on_its_own() {
    let sim = Simulator::spawn_blocking(SimConfig::new().generate_oas(12)).unwrap();
    let env = Env::with_state();
    env.file("a.yaml", doc(&month_of(12, "2027-01-01")));
    let receiver = Receiver::start(0, false);
    let mut watch = start_service(
        &env,
        &sim,
        &[
            "-f",
            "a.yaml",
            "--notify",
            &receiver.url(),
            "--notify-events",
            "purchased",
        ],
    );
    assert_eq!(outcome(&mut watch)["outcome"], "done");
    wait_until("twelve purchases posted", Duration::from_secs(10), || {
        receiver.count("purchased") == 12
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(receiver.received().len(), 12);
    assert_eq!(watch.terminate(), 0);
}
