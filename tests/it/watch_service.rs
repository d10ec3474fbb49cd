//! `oapkg watch --apply` as an unattended service: changes held rather
//! than blocking the cycle, notifications to a real webhook receiver,
//! `/metrics` and `/healthz` scraped over real HTTP, systemd's
//! `NOTIFY_SOCKET`, and a calendar day as an input.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use esms_sim::{Fault, FaultRule, SimConfig, Stage};
use serde_json::Value;

use crate::support::{API_KEY, Env, SECRET_KEY};
use crate::watch::{Watch, doc, message, pkg};
use crate::watch_apply::{
    charged, keys, outcome, simulator, start_apply, start_apply_with, wait_until,
};

/// A webhook receiver on 127.0.0.1:0: answers 500 to the first `failing`
/// POSTs and 200 to the rest (or never answers, with `hang`), keeping
/// every body it received, with the request's headers (names in lower
/// case) beside it in `heads`.
pub(crate) struct Receiver {
    port: u16,
    bodies: Arc<Mutex<Vec<String>>>,
    pub(crate) heads: Arc<Mutex<Vec<Head>>>,
    requests: Arc<Mutex<usize>>,
}

impl Receiver {
    pub(crate) fn start(failing: usize, hang: bool) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(Mutex::new(0));
        let (b, h, r) = (bodies.clone(), heads.clone(), requests.clone());
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                if hang {
                    // Read nothing, answer nothing, keep it open.
                    held.push(stream);
                    continue;
                }
                let (b, h, r) = (b.clone(), h.clone(), r.clone());
                std::thread::spawn(move || serve(stream, failing, &b, &h, &r));
            }
        });
        Receiver {
            port,
            bodies,
            heads,
            requests,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook/secret-path", self.port)
    }

    /// The bodies received, exactly as sent.
    pub(crate) fn raw(&self) -> Vec<String> {
        self.bodies.lock().unwrap().clone()
    }

    /// The notifications received (each body as JSON).
    pub(crate) fn received(&self) -> Vec<Value> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .map(|b| serde_json::from_str(b).expect("a notification is JSON"))
            .collect()
    }

    pub(crate) fn count(&self, event: &str) -> usize {
        self.received()
            .iter()
            .filter(|n| n["event"] == event)
            .count()
    }
}

/// A request's headers, names in lower case.
pub(crate) type Head = Vec<(String, String)>;

/// One connection: each request (keep-alive) answered in turn.
fn serve(
    stream: TcpStream,
    failing: usize,
    bodies: &Mutex<Vec<String>>,
    heads: &Mutex<Vec<Head>>,
    requests: &Mutex<usize>,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut length = 0;
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut head = Vec::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            if header == "\r\n" {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                head.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
            let lower = header.to_ascii_lowercase();
            if let Some(value) = lower.strip_prefix("content-length:") {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let n = {
            let mut count = requests.lock().unwrap();
            *count += 1;
            *count
        };
        let status = if n <= failing {
            "500 Internal Server Error"
        } else {
            // One lock order (bodies, then heads) keeps both lists in step.
            let mut bodies = bodies.lock().unwrap();
            bodies.push(String::from_utf8(body).unwrap());
            heads.lock().unwrap().push(head);
            "200 OK"
        };
        let answer = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
        if out.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// `oapkg watch --apply ARGS...` against `sim` with the support keys and
/// short notification retries.
pub(crate) fn start_service(env: &Env, sim: &esms_sim::BlockingSimHandle, args: &[&str]) -> Watch {
    start_apply_with(env, sim, args, |cmd| {
        cmd.env("OAPKG_TEST_NOTIFY_DELAY_MS", "50");
    })
}

/// The same package with another duration: a `replace` once bought.
fn pkg_months(oaid: u64, months: u32) -> String {
    pkg(oaid, months)
}

/// The `held …` records the watch logged so far.
fn held_records(watch: &crate::watch::Watch) -> Vec<Value> {
    watch
        .0
        .lines()
        .filter_map(|(_, line)| crate::watch::json(line))
        .filter(|v| v["held"] == true)
        .collect()
}

#[test]
fn a_replace_is_held_while_an_unrelated_purchase_of_the_cycle_is_bought() {
    let sim = simulator(SimConfig::new());
    let env = Env::with_state();
    env.file("a.yaml", doc(&[pkg(1001, 12)]));
    let mut watch = start_apply(&env, &sim, &["-f", "a.yaml"]);
    assert_eq!(outcome(&mut watch)["outcome"], "done");
    assert_eq!(charged(&sim), keys(&["1001@2027-01-01"]));

    // 1001 changes (a replace, no --allow-replace) and 1002 is new; 9999 is
    // not on the account (the pre-flight holds it).
    std::fs::write(
        env.path("a.yaml"),
        doc(&[pkg_months(1001, 6), pkg(1002, 12), pkg(9999, 12)]),
    )
    .unwrap();
    let held = watch.record("a held replace", |v| {
        v["held"] == true && message(v).contains("replace")
    });
    assert!(message(&held).contains("--allow-replace"), "{held}");
    let preflight = watch.record("a change held by the pre-flight", |v| {
        v["held"] == true && message(v).contains("9999")
    });
    assert!(message(&preflight).contains("pre-flight"), "{preflight}");
    assert_eq!(outcome(&mut watch)["outcome"], "done");
    assert_eq!(
        charged(&sim),
        keys(&["1001@2027-01-01", "1002@2027-01-01"]),
        "1002 bought, 1001 not bought again, 9999 not sent"
    );

    // The next change buys 1003; what is still held is not reported again.
    std::fs::write(
        env.path("a.yaml"),
        doc(&[
            pkg_months(1001, 6),
            pkg(1002, 12),
            pkg(9999, 12),
            pkg(1003, 12),
        ]),
    )
    .unwrap();
    assert_eq!(outcome(&mut watch)["outcome"], "done");
    assert_eq!(sim.ledger().len(), 3);
    assert_eq!(held_records(&watch).len(), 2, "{}", watch.0.transcript());
    assert_eq!(watch.terminate(), 0);
}

#[test]
fn bought_failed_and_unconfirmed_reach_a_receiver_failing_twice_once_each_without_a_secret() {
    let env = Env::with_state();
    env.file(
        "oapkg.yaml",
        doc(&[pkg(1001, 12), pkg(1002, 12), pkg(1003, 12)]),
    );
    let sim = simulator(
        SimConfig::new()
            .fault(FaultRule::for_oaid(
                "1002",
                Fault::Code {
                    code: "204".into(),
                    message: Some("OAID does not exist".into()),
                },
            ))
            .fault(FaultRule::for_oaid(
                "1003",
                Fault::ServerError {
                    stage: Stage::AfterCommit,
                },
            )),
    );
    let receiver = Receiver::start(2, false);
    let run = env
        .command(&["apply", "--auto-approve", "--notify", &receiver.url()])
        .env("ESMS_ENDPOINT", sim.endpoint().as_str())
        .env("ESMS_API_KEY", API_KEY)
        .env("ESMS_SECRET_KEY", SECRET_KEY)
        .env("OAPKG_TEST_NOTIFY_DELAY_MS", "50")
        .output()
        .unwrap();
    assert_eq!(
        run.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // apply waits (briefly) for its notifications before exiting.
    let received = receiver.received();
    let events: Vec<(&str, &str)> = received
        .iter()
        .filter(|n| n["key"].is_string())
        .map(|n| (n["event"].as_str().unwrap(), n["key"].as_str().unwrap()))
        .collect();
    let mut sorted = events.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            ("failed", "1002@2027-01-01"),
            ("purchased", "1001@2027-01-01"),
            ("unconfirmed", "1003@2027-01-01"),
        ],
        "{received:#?}"
    );
    assert!(
        *receiver.requests.lock().unwrap() >= received.len() + 2,
        "retried"
    );
    for n in &received {
        let text = n.to_string();
        assert!(
            !text.contains(API_KEY) && !text.contains(SECRET_KEY),
            "{text}"
        );
        for field in ["event", "at", "message", "text"] {
            assert!(n[field].is_string(), "{field} in {n}");
        }
        assert!(n["text"].as_str().unwrap().starts_with("oapkg: "), "{n}");
    }
    let failed = received.iter().find(|n| n["event"] == "failed").unwrap();
    assert_eq!(failed["oaid"], "1002");
    assert!(
        failed["message"].as_str().unwrap().contains("204"),
        "{failed}"
    );
}

#[test]
fn a_receiver_that_never_answers_never_delays_a_purchase() {
    let sim = simulator(SimConfig::new());
    let env = Env::with_state();
    env.file("a.yaml", doc(&[pkg(1001, 12)]));
    let receiver = Receiver::start(0, true);
    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://127.0.0.1:{}/", dead.local_addr().unwrap().port());
    drop(dead);
    let mut watch = start_service(
        &env,
        &sim,
        &[
            "-f",
            "a.yaml",
            "--notify",
            &receiver.url(),
            "--notify",
            &dead_url,
        ],
    );
    assert_eq!(outcome(&mut watch)["outcome"], "done");
    // Each change is bought as soon as it is planned, while the first
    // notifications still wait for an answer (10 s per attempt).
    for (n, oaid) in [(2, 1002), (3, 1003)] {
        let written = Instant::now();
        let packages: Vec<String> = (1001..=oaid).map(|o| pkg(o, 12)).collect();
        std::fs::write(env.path("a.yaml"), doc(&packages)).unwrap();
        assert_eq!(outcome(&mut watch)["outcome"], "done");
        assert_eq!(sim.ledger().len(), n);
        let took = written.elapsed();
        assert!(took < Duration::from_secs(3), "cycle {n} took {took:?}");
    }
    assert!(receiver.received().is_empty());
    assert_eq!(watch.terminate(), 0);
}

#[test]
fn watch_notifies_a_held_change_once() {
    let sim = simulator(SimConfig::new());
    let env = Env::with_state();
    env.file("a.yaml", doc(&[pkg(1001, 12)]));
    let receiver = Receiver::start(0, false);
    let mut watch = start_service(&env, &sim, &["-f", "a.yaml", "--notify", &receiver.url()]);
    assert_eq!(outcome(&mut watch)["outcome"], "done");
    std::fs::write(env.path("a.yaml"), doc(&[pkg(1001, 6), pkg(1002, 12)])).unwrap();
    assert_eq!(outcome(&mut watch)["outcome"], "done");
    std::fs::write(
        env.path("a.yaml"),
        doc(&[pkg(1001, 6), pkg(1002, 12), pkg(1003, 12)]),
    )
    .unwrap();
    assert_eq!(outcome(&mut watch)["outcome"], "done");
    wait_until("three purchases notified", Duration::from_secs(10), || {
        receiver.count("purchased") == 3
    });
    assert_eq!(receiver.count("held"), 1, "{:#?}", receiver.received());
    let held = receiver
        .received()
        .into_iter()
        .find(|n| n["event"] == "held")
        .unwrap();
    assert_eq!(held["key"], "1001@2027-01-01");
    assert_eq!(watch.terminate(), 0);
}

/// A free port on 127.0.0.1 (bound, then released).
pub(crate) fn free_addr() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// `GET path` over real HTTP: the status code and the body.
pub(crate) fn get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to --listen");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

/// One sample of the Prometheus text format.
#[derive(Debug)]
pub(crate) struct Sample {
    pub(crate) name: String,
    pub(crate) labels: Vec<(String, String)>,
    pub(crate) value: f64,
}

/// A strict parser of the Prometheus text exposition format (0.0.4):
/// every sample belongs to a family announced by `# HELP` and `# TYPE`
/// lines before it, names and label names are valid, label values are
/// quoted with only `\\`, `\"` and `\n` escapes, values are numbers.
pub(crate) fn parse_prometheus(text: &str) -> Vec<Sample> {
    fn name_ok(name: &str) -> bool {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }
    let mut help = std::collections::BTreeSet::new();
    let mut types = std::collections::BTreeMap::new();
    let mut samples = Vec::new();
    assert!(text.ends_with('\n'), "ends with a newline");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, doc) = rest.split_once(' ').expect("HELP name text");
            assert!(name_ok(name) && !doc.is_empty(), "{line}");
            assert!(help.insert(name.to_owned()), "one HELP per family: {line}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "{line}"
            );
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "unexpected line {line:?}"
        );
        let (series, value) = line.rsplit_once(' ').expect("series value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("value in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            None => (series, Vec::new()),
            Some((name, rest)) => {
                let mut labels = Vec::new();
                let mut rest = rest.strip_suffix('}').expect("closing brace");
                while !rest.is_empty() {
                    let (label, after) = rest.split_once("=\"").expect("label=\"");
                    assert!(name_ok(label), "{line}");
                    let mut value = String::new();
                    let mut chars = after.char_indices();
                    let end = loop {
                        match chars.next().expect("closing quote") {
                            (_, '\\') => match chars.next().expect("escape").1 {
                                '\\' => value.push('\\'),
                                '"' => value.push('"'),
                                'n' => value.push('\n'),
                                other => panic!("bad escape \\{other} in {line}"),
                            },
                            (i, '"') => break i,
                            (_, c) => value.push(c),
                        }
                    };
                    labels.push((label.to_owned(), value));
                    rest = &after[end + 1..];
                    rest = rest.strip_prefix(',').unwrap_or(rest);
                }
                (name, labels)
            }
        };
        assert!(name_ok(name), "{line}");
        assert!(
            help.contains(name) && types.contains_key(name),
            "HELP and TYPE before {line}"
        );
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    samples
}

pub(crate) fn sample(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(l, w)| l == k && w == v))
        })
        .map(|s| s.value)
}

#[test]
fn metrics_parse_and_match_the_ledger_and_healthz_follows_the_last_cycle() {
    let sim = simulator(SimConfig::new().fault(FaultRule::for_oaid(
        "1002",
        Fault::Code {
            code: "204".into(),
            message: None,
        },
    )));
    let env = Env::with_state();
    env.file(
        "a.yaml",
        "apiVersion: oapkg/v1\nkind: PackageSet\npackages:\n  - oaid: \"1001\"\n    name: 'Shop \"A\" \\ B'\n    tier: advanced\n    start: 2026-11-01\n    duration: 1\n",
    );
    let addr = free_addr();
    let mut watch = start_service(&env, &sim, &["-f", "a.yaml", "--listen", &addr]);
    assert_eq!(outcome(&mut watch)["outcome"], "done");
    wait_until("the first cycle counted", Duration::from_secs(10), || {
        let samples = parse_prometheus(&get(&addr, "/metrics").1);
        sample(&samples, "oapkg_cycles_total", &[("result", "ok")]) == Some(1.0)
    });
    let (status, body) = get(&addr, "/healthz");
    assert_eq!(status, 200, "{body}");
    let samples = parse_prometheus(&get(&addr, "/metrics").1);
    assert_eq!(
        sample(
            &samples,
            "oapkg_purchases_total",
            &[("result", "purchased")]
        ),
        Some(sim.ledger().len() as f64)
    );
    assert_eq!(
        sample(&samples, "oapkg_cycles_total", &[("result", "ok")]),
        Some(1.0)
    );
    assert!(sample(&samples, "oapkg_last_success_timestamp_seconds", &[]).unwrap() > 1.7e9);
    assert_eq!(
        sample(&samples, "oapkg_unconfirmed_packages", &[]),
        Some(0.0)
    );
    // Coverage ends 2026-11-30: the local midnight after it, with the
    // name's quote and backslash escaped in the label.
    assert_eq!(
        sample(
            &samples,
            "oapkg_coverage_end_timestamp_seconds",
            &[("oaid", "1001"), ("name", "Shop \"A\" \\ B")]
        ),
        Some(1_796_058_000.0)
    );

    // A failing cycle (204 for 1002): 503, saying why.
    std::fs::write(env.path("a.yaml"), doc(&[pkg(1001, 12), pkg(1002, 12)])).unwrap();
    assert_eq!(outcome(&mut watch)["outcome"], "failed");
    wait_until("a failed cycle counted", Duration::from_secs(10), || {
        let samples = parse_prometheus(&get(&addr, "/metrics").1);
        sample(&samples, "oapkg_cycles_total", &[("result", "failed")]) == Some(1.0)
    });
    let (status, body) = get(&addr, "/healthz");
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("failed: "), "{body}");
    let samples = parse_prometheus(&get(&addr, "/metrics").1);
    assert_eq!(
        sample(&samples, "oapkg_purchases_total", &[("result", "failed")]),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &samples,
            "oapkg_purchases_total",
            &[("result", "purchased")]
        ),
        Some(sim.ledger().len() as f64)
    );

    // A good cycle: 200 again.
    std::fs::write(env.path("a.yaml"), doc(&[pkg(1001, 12), pkg(1003, 12)])).unwrap();
    assert_eq!(outcome(&mut watch)["outcome"], "done");
    wait_until("healthy again", Duration::from_secs(10), || {
        get(&addr, "/healthz").0 == 200
    });
    assert_eq!(watch.terminate(), 0);
}

#[test]
fn listen_on_an_address_in_use_is_refused_naming_it() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let env = Env::new();
    env.file("oapkg.yaml", doc(&[pkg(1001, 12)]));
    let run = env.command(&["watch", "--listen", &addr]).output().unwrap();
    assert_eq!(run.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains(&addr) && stderr.contains("in use"),
        "{stderr}"
    );
}

#[test]
fn crossing_local_midnight_starts_a_cycle_without_interval() {
    let env = Env::new();
    env.file("oapkg.yaml", doc(&[pkg(1001, 12)]));
    // This process's clock starts 2 s before midnight in Asia/Ho_Chi_Minh.
    let mut watch = Watch::start_with(&env, &[], |cmd| {
        cmd.env_remove("OAPKG_TODAY")
            .env("OAPKG_TEST_NOW", "2026-11-26T23:59:58+07:00");
    });
    let first = watch.printed();
    assert_eq!(first["plan"]["today"], "2026-11-26");
    let next = watch.printed();
    assert_eq!(
        (next["cycle"].as_u64(), next["trigger"].as_str()),
        (Some(2), Some("day")),
        "{next}"
    );
    assert_eq!(next["plan"]["today"], "2026-11-27");
    assert_eq!(watch.terminate(), 0);
}

#[test]
fn ready_and_watchdog_reach_notify_socket() {
    use std::os::unix::net::UnixDatagram;
    let env = Env::new();
    env.file("oapkg.yaml", doc(&[pkg(1001, 12)]));
    let socket_path = env.path("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut watch = Watch::start_with(&env, &[], |cmd| {
        cmd.env("NOTIFY_SOCKET", &socket_path)
            .env("WATCHDOG_USEC", "400000");
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(seen.iter().any(|m: &String| m.contains("READY=1"))
        && seen.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 2)
    {
        assert!(Instant::now() < deadline, "{seen:?}");
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).expect("a datagram");
        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let ready = seen.iter().position(|m| m.contains("READY=1")).unwrap();
    assert!(
        seen[..ready].iter().all(|m| !m.contains("WATCHDOG")),
        "{seen:?}"
    );
    watch.planned();
    assert_eq!(watch.terminate(), 0);
}

#[test]
fn a_suspend_file_pauses_buying_and_removing_it_resumes() {
    let sim = simulator(SimConfig::new());
    let env = Env::with_state();
    env.file("a.yaml", doc(&[pkg(1001, 12)]));
    env.file("state/oapkg.suspend", "");
    let addr = free_addr();
    let receiver = Receiver::start(0, false);
    let suspend = env.path("state/oapkg.suspend");
    let suspend_arg = suspend.to_str().unwrap().to_owned();
    let mut watch = start_service(
        &env,
        &sim,
        &[
            "-f",
            "a.yaml",
            "--suspend-file",
            &suspend_arg,
            "--listen",
            &addr,
            "--notify",
            &receiver.url(),
        ],
    );
    watch.record("suspended at start", |v| {
        v["suspended"] == true && message(v).starts_with("suspended:")
    });
    watch.record("the plan not applied", |v| {
        v["suspended"] == true && message(v).contains("not applied")
    });
    let samples = parse_prometheus(&get(&addr, "/metrics").1);
    assert_eq!(sample(&samples, "oapkg_suspended", &[]), Some(1.0));
    let (status, body) = get(&addr, "/healthz");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("suspended"), "{body}");
    assert!(sim.ledger().is_empty());

    std::fs::remove_file(&suspend).unwrap();
    watch.record("resumed", |v| v["suspended"] == false);
    assert_eq!(outcome(&mut watch)["outcome"], "done");
    assert_eq!(charged(&sim), keys(&["1001@2027-01-01"]));
    let samples = parse_prometheus(&get(&addr, "/metrics").1);
    assert_eq!(sample(&samples, "oapkg_suspended", &[]), Some(0.0));
    wait_until(
        "suspended and resumed notified",
        Duration::from_secs(10),
        || receiver.count("suspended") == 1 && receiver.count("resumed") == 1,
    );
    assert_eq!(watch.terminate(), 0);
}

#[test]
fn apply_notifies_a_refused_run() {
    let env = Env::with_state();
    let sim = simulator(SimConfig::new());
    let receiver = Receiver::start(0, false);
    let apply = |notify: bool| {
        let mut args = vec!["apply", "--auto-approve"];
        let url = receiver.url();
        if notify {
            args.extend(["--notify", url.as_str()]);
        }
        env.command(&args)
            .env("ESMS_ENDPOINT", sim.endpoint().as_str())
            .env("ESMS_API_KEY", API_KEY)
            .env("ESMS_SECRET_KEY", SECRET_KEY)
            .output()
            .unwrap()
            .status
            .code()
    };
    env.file("oapkg.yaml", doc(&[pkg(1001, 12)]));
    assert_eq!(apply(false), Some(0));
    // A replace without --allow-replace: `apply` refuses (it does not hold).
    env.file("oapkg.yaml", doc(&[pkg(1001, 6)]));
    assert_eq!(apply(true), Some(1));
    let received = receiver.received();
    assert_eq!(received.len(), 1, "{received:#?}");
    assert_eq!(received[0]["event"], "refused");
    assert!(
        received[0]["message"]
            .as_str()
            .unwrap()
            .contains("--allow-replace"),
        "{received:#?}"
    );
}

/// `packages` with the price list of `costs`: each 12-month advanced
/// package costs 708,000 VND.
pub(crate) fn priced(packages: &[String]) -> String {
    format!("{}---\n{}", crate::costs::PRICES, doc(packages))
}

#[test]
fn a_low_balance_is_notified_once_while_it_stays_low_and_shown_in_metrics() {
    let sim = simulator(SimConfig::new().balance(1_000));
    let env = Env::with_state();
    env.file("a.yaml", priced(&[pkg(1001, 12)]));
    let addr = free_addr();
    let receiver = Receiver::start(0, false);
    let mut watch = start_service(
        &env,
        &sim,
        &[
            "-f",
            "a.yaml",
            "--notify",
            &receiver.url(),
            "--listen",
            &addr,
        ],
    );
    watch.record("a low balance logged", |v| {
        message(v).contains("balance (1,000) is below")
    });
    assert_eq!(outcome(&mut watch)["outcome"], "failed");
    // A second cycle (another package) still finds the balance too low:
    // the apply step fails again, the low balance is not told again.
    std::fs::write(env.path("a.yaml"), priced(&[pkg(1001, 12), pkg(1002, 12)])).unwrap();
    let failed = outcome(&mut watch);
    assert_eq!(failed["outcome"], "failed");
    assert_eq!(failed["cycle"], 2, "{failed}");
    assert!(message(&failed).contains("balance is 1,000"), "{failed}");
    wait_until(
        "both failed cycles notified",
        Duration::from_secs(10),
        || receiver.count("error") == 2,
    );
    assert_eq!(
        receiver.count("low_balance"),
        1,
        "{:#?}",
        receiver.received()
    );
    let low = receiver
        .received()
        .into_iter()
        .find(|n| n["event"] == "low_balance")
        .unwrap();
    let text = low["message"].as_str().unwrap();
    assert!(
        text.contains("(1,000)") && text.contains("708,000 VND"),
        "the balance and what the cycle needs: {low}"
    );
    for n in receiver.received() {
        let body = n.to_string();
        assert!(
            !body.contains(API_KEY) && !body.contains(SECRET_KEY),
            "{body}"
        );
    }
    assert!(sim.ledger().is_empty());
    let samples = parse_prometheus(&get(&addr, "/metrics").1);
    assert_eq!(sample(&samples, "oapkg_balance", &[]), Some(1_000.0));
    assert_eq!(watch.terminate(), 0);
}

/// The `expiring` notifications received for OA 1001 with `days` left.
fn expiring_with(receiver: &Receiver, days: u32) -> usize {
    let left = format!("({days} day(s) left)");
    receiver
        .received()
        .iter()
        .filter(|n| {
            n["event"] == "expiring"
                && n["oaid"] == "1001"
                && n["message"].as_str().is_some_and(|m| m.contains(&left))
        })
        .count()
}

#[test]
fn expiring_is_notified_once_per_oa_per_day_across_cycles_and_again_the_next_day() {
    let env = Env::new();
    // 1001's coverage ends 2026-11-30, nothing declared after it; 1002's
    // runs for a year.
    let ending = "  - oaid: \"1001\"\n    name: Shop A\n    tier: advanced\n    start: 2026-11-01\n    duration: 1\n".to_owned();
    env.file("a.yaml", doc(std::slice::from_ref(&ending)));
    let receiver = Receiver::start(0, false);
    // This process's clock starts 8 s before midnight in Asia/Ho_Chi_Minh.
    let mut watch = Watch::start_with(
        &env,
        &["-f", "a.yaml", "--notify", &receiver.url()],
        |cmd| {
            cmd.env_remove("OAPKG_TODAY")
                .env("OAPKG_TEST_NOW", "2026-11-26T23:59:52+07:00")
                .env("OAPKG_TEST_NOTIFY_DELAY_MS", "50");
        },
    );
    assert_eq!(watch.printed()["plan"]["today"], "2026-11-26");
    // Two more cycles with other plans the same day.
    for months in [12, 6] {
        std::fs::write(
            env.path("a.yaml"),
            doc(&[ending.clone(), pkg(1002, months)]),
        )
        .unwrap();
        let plan = watch.printed();
        assert_eq!(
            plan["plan"]["today"],
            "2026-11-26",
            "{}",
            watch.0.transcript()
        );
    }
    wait_until("the first day's expiring", Duration::from_secs(10), || {
        expiring_with(&receiver, 4) == 1
    });
    // The day turns: a cycle of its own, and a new notification.
    let next = watch.printed();
    assert_eq!(
        (next["trigger"].as_str(), next["plan"]["today"].as_str()),
        (Some("day"), Some("2026-11-27")),
        "{next}"
    );
    wait_until("the next day's expiring", Duration::from_secs(10), || {
        expiring_with(&receiver, 3) == 1
    });
    // Another cycle that day: not again.
    std::fs::write(env.path("a.yaml"), doc(&[ending.clone(), pkg(1002, 3)])).unwrap();
    let fifth = watch.printed();
    assert_eq!(
        (fifth["cycle"].as_u64(), fifth["plan"]["today"].as_str()),
        (Some(5), Some("2026-11-27")),
        "{fifth}"
    );
    watch.record("the fifth cycle's coverage", |v| {
        v["cycle"] == 5 && message(v).starts_with("planned")
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        (expiring_with(&receiver, 4), expiring_with(&receiver, 3)),
        (1, 1),
        "{:#?}",
        receiver.received()
    );
    assert_eq!(receiver.count("expiring"), 2);
    let n = receiver
        .received()
        .into_iter()
        .find(|n| n["event"] == "expiring")
        .unwrap();
    assert_eq!(
        (n["key"].as_str(), n["name"].as_str()),
        (Some("1001@2026-11-01"), Some("Shop A"))
    );
    assert_eq!(watch.terminate(), 0);
}

#[test]
fn while_suspended_an_unchanged_plan_is_printed_once_and_resuming_applies_it() {
    let sim = simulator(SimConfig::new());
    let env = Env::with_state();
    env.file("a.yaml", doc(&[pkg(1001, 12)]));
    env.file("state/oapkg.suspend", "");
    let suspend = env.path("state/oapkg.suspend");
    let suspend_arg = suspend.to_str().unwrap().to_owned();
    let mut watch = start_service(
        &env,
        &sim,
        &[
            "-f",
            "a.yaml",
            "--suspend-file",
            &suspend_arg,
            "--interval",
            "1",
        ],
    );
    watch.record("the plan not applied", |v| {
        v["suspended"] == true && message(v).contains("not applied")
    });
    // Three interval cycles with the same inputs.
    watch.record("the fourth cycle skipped", |v| {
        v["cycle"] == 4 && v["skipped"] == "unchanged"
    });
    let plans = |watch: &Watch| {
        watch
            .0
            .lines()
            .filter(|(stream, line)| {
                matches!(stream, crate::support::Stream::Stdout)
                    && crate::watch::json(line).is_some_and(|v| v["plan"].is_object())
            })
            .count()
    };
    assert_eq!(plans(&watch), 1, "{}", watch.0.transcript());
    let not_applied = watch
        .0
        .lines()
        .filter_map(|(_, line)| crate::watch::json(line))
        .filter(|v| message(v).contains("not applied"))
        .count();
    assert_eq!(not_applied, 1, "{}", watch.0.transcript());
    assert!(sim.ledger().is_empty());

    std::fs::remove_file(&suspend).unwrap();
    watch.record("resumed", |v| v["suspended"] == false);
    assert_eq!(outcome(&mut watch)["outcome"], "done");
    assert_eq!(charged(&sim), keys(&["1001@2027-01-01"]));
    assert_eq!(plans(&watch), 2, "planned again on resuming");
    assert_eq!(watch.terminate(), 0);
}

#[test]
fn a_bad_notify_url_or_listen_address_is_a_clear_error() {
    let env = Env::new();
    env.file("oapkg.yaml", doc(&[pkg(1001, 12)]));
    for (args, says) in [
        (
            &["watch", "--notify", "not a url"][..],
            "not a valid absolute URL",
        ),
        (
            &["watch", "--notify", "http://example.com/hook"][..],
            "use https://",
        ),
        (
            &["apply", "--notify", "ftp://127.0.0.1/"][..],
            "must use https://",
        ),
        (
            &["watch", "--notify", "https://user:pw@example.com/"][..],
            "user name or password",
        ),
        (
            &["watch", "--listen", "nonsense"][..],
            "expected an IP address and a port",
        ),
        (
            &["watch", "--listen", "127.0.0.1:99999"][..],
            "expected an IP address and a port",
        ),
        (
            &["watch", "--listen", "192.0.2.1:9184"][..],
            "cannot listen on 192.0.2.1:9184",
        ),
    ] {
        let run = env.command(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("pw@"),
            "{args:?}: the password echoed: {stderr}"
        );
    }
}

#[test]
fn secret_environment_values_never_reach_a_notification_even_from_a_plan_only_watch() {
    const AWS_SECRET: &str = "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY";
    let env = Env::new();
    env.file("a.yaml", doc(&[pkg(1001, 12)]));
    let receiver = Receiver::start(0, false);
    let mut watch = Watch::start_with(
        &env,
        &["-f", "a.yaml", "--notify", &receiver.url()],
        |cmd| {
            cmd.env("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
                .env("ESMS_SECRET_KEY", SECRET_KEY);
        },
    );
    watch.planned();
    // A manifest that quotes both secrets: the diagnostic names them.
    std::fs::write(
        env.path("a.yaml"),
        format!(
            "{}    {AWS_SECRET}: 1\n    x{SECRET_KEY}: 2\n",
            doc(&[pkg(1001, 12)])
        ),
    )
    .unwrap();
    wait_until(
        "the invalid manifest notified",
        Duration::from_secs(10),
        || receiver.count("error") == 1,
    );
    let error = receiver.received().pop().unwrap();
    let body = error.to_string();
    assert!(body.contains("unknown field `[redacted]`"), "{body}");
    assert!(
        !body.contains(AWS_SECRET) && !body.contains(SECRET_KEY),
        "{body}"
    );
    assert_eq!(watch.terminate(), 0);
}

/// The bundled systemd unit passes `systemd-analyze verify` with its
/// `ExecStart` pointed at the binary under test (a unit naming a flag the
/// binary lacks still verifies, so the flags are checked apart: `watch`
/// refuses unknown flags before it reads anything).
#[test]
fn the_example_systemd_unit_verifies_and_its_flags_are_watchs() {
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/oapkg-watch.service"),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_oapkg");
    let exec = unit
        .split("ExecStart=")
        .nth(1)
        .expect("an ExecStart= line")
        .split("\n")
        .scan(true, |more, line| {
            let take = *more;
            *more = line.trim_end().ends_with('\\');
            take.then(|| line.trim_end().trim_end_matches('\\').to_owned())
        })
        .collect::<Vec<_>>()
        .join(" ");
    let words: Vec<&str> = exec.split_whitespace().collect();
    assert_eq!(words[..2], ["/usr/local/bin/oapkg", "watch"], "{exec}");
    // Every flag of the unit is one `watch` knows: clap names an unknown
    // one in its usage error; `--help` after them stops before any IO.
    let mut args: Vec<&str> = words[1..].to_vec();
    args.push("--help");
    let out = std::process::Command::new(bin)
        .args(&args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let Ok(analyze) = which_systemd_analyze() else {
        eprintln!("SKIPPED: systemd-analyze is not installed; the unit's syntax is not verified");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("oapkg-watch.service");
    std::fs::write(&copy, unit.replace("/usr/local/bin/oapkg", bin)).unwrap();
    let out = std::process::Command::new(analyze)
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn which_systemd_analyze() -> Result<std::path::PathBuf, ()> {
    ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
        .ok_or(())
}
