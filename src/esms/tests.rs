//! The client against the simulator over real HTTP on 127.0.0.1: wire
//! format as received, every outcome class produced on the wire, the
//! ledger after faults, and the secrecy of the keys.

use std::time::Duration;

use jiff::civil::date;
use serde_json::json;

use super::*;
use crate::spec::{Oaid, Spec, Tier};
use esms_sim::{Fault, FaultRule, Package, SimConfig, SimControl, SimHandle, Simulator, Stage};

const OA1: &str = "4097311281936189049";
const OA2: &str = "745830328927467685";
/// Not registered on the simulated account.
const OA_FOREIGN: &str = "1111111111111111111";

// Distinctive values, so a leak is found by a plain substring search.
const API_KEY: &str = "apikey-7f3e9c0d51";
const SECRET_KEY: &str = "secretkey-b28a64e1f9";

fn spec(oaid: &str, tier: Tier, start: jiff::civil::Date, months: u8) -> Spec {
    Spec {
        oaid: Oaid::parse(oaid).unwrap(),
        tier,
        start,
        duration_months: months,
    }
}

fn premium_dec() -> Spec {
    spec(OA1, Tier::Premium, date(2026, 12, 1), 12)
}

fn config() -> SimConfig {
    SimConfig::new()
        .keys(API_KEY, SECRET_KEY)
        .oa(OA1, "SVoucher")
        .oa(OA2, "Second")
}

fn credentials() -> Credentials {
    Credentials::new(API_KEY, SECRET_KEY).unwrap()
}

/// The simulator's base URL, checked as oapkg checks any endpoint.
fn endpoint(sim: &SimControl) -> Endpoint {
    Endpoint::parse(&sim.endpoint()).unwrap()
}

fn client_for(sim: &SimHandle, request_timeout: Duration) -> Client {
    client_with(endpoint(sim), credentials(), request_timeout)
}

fn client_with(endpoint: Endpoint, credentials: Credentials, request_timeout: Duration) -> Client {
    Client::new(
        endpoint,
        credentials,
        ClientOptions {
            connect_timeout: Duration::from_secs(2),
            request_timeout,
        },
    )
    .unwrap()
}

async fn start(config: SimConfig) -> (SimHandle, Client) {
    let sim = Simulator::start(config).await.unwrap();
    let client = client_for(&sim, Duration::from_secs(5));
    (sim, client)
}

fn assert_no_keys(text: &str) {
    assert!(!text.contains(API_KEY), "ApiKey leaked: {text}");
    assert!(!text.contains(SECRET_KEY), "SecretKey leaked: {text}");
}

#[tokio::test]
async fn purchase_request_has_the_documented_wire_format() {
    let (sim, client) = start(config()).await;
    let outcome = client.purchase(&premium_dec()).await;
    assert!(outcome.is_submitted(), "{outcome:?}");

    let requests = sim.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.call, esms_sim::Call::Purchase);
    assert_eq!(request.path, "/MainService.svc/json/RegisOAPackageJson/");
    assert_eq!(request.content_type.as_deref(), Some("application/json"));
    assert!(request.keys_valid);
    // Exactly these fields, with these JSON types (the keys are redacted
    // by the simulator's log; `keys_valid` says they were right).
    assert_eq!(
        request.body,
        json!({
            "ApiKey": "[redacted]",
            "SecretKey": "[redacted]",
            "Dateactive": "2026-12-01",
            "Duaration": "12",
            "OAID": OA1,
            "Package": 3,
        })
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn account_calls_have_the_documented_wire_format() {
    let (sim, client) = start(config().balance(36693)).await;
    let oas = client.list_oas().await.unwrap();
    assert_eq!(
        oas,
        vec![
            AccountOa {
                oaid: OA1.into(),
                name: "SVoucher".into()
            },
            AccountOa {
                oaid: OA2.into(),
                name: "Second".into()
            },
        ]
    );
    let balance = client.balance().await.unwrap();
    assert_eq!(balance.amount, 36693.0);
    assert_eq!(balance.user_id.as_deref(), Some("9999"));

    let requests = sim.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].path, "/MainService.svc/json/ZNS/GetListZOA/");
    assert_eq!(requests[1].path, "/MainService.svc/json/GetBalance_json");
    for request in &requests {
        assert!(request.keys_valid);
        assert_eq!(request.content_type.as_deref(), Some("application/json"));
        assert_eq!(
            request.body,
            json!({"ApiKey": "[redacted]", "SecretKey": "[redacted]"})
        );
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn endpoint_with_or_without_trailing_slash_reaches_the_same_routes() {
    let sim = Simulator::start(config()).await.unwrap();
    let bare = sim.endpoint().as_str().trim_end_matches('/').to_owned();
    let client = client_with(
        Endpoint::parse(&bare).unwrap(),
        credentials(),
        Duration::from_secs(5),
    );
    assert!(client.purchase(&premium_dec()).await.is_submitted());
    // The simulator accepts each path with and without its trailing slash.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    for path in [
        "RegisOAPackageJson",
        "RegisOAPackageJson/",
        "ZNS/GetListZOA",
        "ZNS/GetListZOA/",
        "GetBalance_json",
        "GetBalance_json/",
    ] {
        let url = format!("{}{path}", sim.endpoint());
        let status = http
            .post(&url)
            .json(&json!({"ApiKey": "x", "SecretKey": "y"}))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200, "{url}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn localhost_endpoint_is_pinned_to_loopback_and_works() {
    let sim = Simulator::start(config()).await.unwrap();
    let endpoint = Endpoint::parse(&format!(
        "http://localhost:{}/MainService.svc/json",
        sim.addr().port()
    ))
    .unwrap();
    let client = client_with(endpoint, credentials(), Duration::from_secs(5));
    assert!(client.balance().await.is_ok());
    sim.shutdown().await;
}

#[tokio::test]
async fn service_preview_id_as_number_or_string() {
    for as_strings in [false, true] {
        let (sim, client) = start(
            config()
                .service_preview_ids_as_strings(as_strings)
                .first_service_preview_id(52330),
        )
        .await;
        let outcome = client.purchase(&premium_dec()).await;
        assert_eq!(
            outcome,
            PurchaseOutcome::Accepted {
                service_preview_id: Some("52330".into()),
                code: "100".into(),
                message: "ViHAT is censoring trademark ownership".into(),
            },
            "ids as strings: {as_strings}"
        );
        assert_eq!(sim.ledger()[0].service_preview_id, "52330");
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn every_code_is_classified_over_http() {
    let (sim, client) = start(config()).await;
    let spec = premium_dec();

    for code in ["101", "103", "140", "143"] {
        sim.inject(FaultRule::next(1, code_fault(code)));
        let outcome = client.purchase(&spec).await;
        assert!(
            matches!(&outcome, PurchaseOutcome::Fatal { code: c, .. } if c == code),
            "{code}: {outcome:?}"
        );
    }
    for code in ["102", "204", "799"] {
        sim.inject(FaultRule::next(1, code_fault(code)));
        let outcome = client.purchase(&spec).await;
        assert_eq!(
            outcome,
            PurchaseOutcome::PackageFailed {
                code: code.into(),
                message: format!("simulated code {code}"),
            }
        );
    }
    // Any code the table does not list, matched exactly, is an unknown
    // outcome: eSMS may have charged.
    for code in ["42", "0", "100.0", " 100", "199 ", "1000"] {
        sim.inject(FaultRule::next(1, code_fault(code)));
        let outcome = client.purchase(&spec).await;
        assert_eq!(
            outcome,
            PurchaseOutcome::Unknown {
                reason: format!(
                    "eSMS answered code {code:?}, which its documentation does not list for this call: {}",
                    // Messages, unlike codes, lose surrounding blanks.
                    format!("simulated code {code}").trim()
                ),
            },
            "{code:?}"
        );
    }
    sim.inject(FaultRule::next(1, Fault::RateLimitCode));
    assert!(matches!(
        client.purchase(&spec).await,
        PurchaseOutcome::RateLimited { .. }
    ));
    sim.inject(FaultRule::next(1, Fault::TooManyRequests));
    assert!(matches!(
        client.purchase(&spec).await,
        PurchaseOutcome::RateLimited { .. }
    ));
    for (status, body) in [
        (500, "<html>oops</html>"),
        (503, r#"{"CodeResult": "100"}"#),
        (200, "not json at all"),
        (200, r#"{"ErrorMessage": "no code"}"#),
        (200, ""),
        (404, "Not Found"),
    ] {
        sim.inject(FaultRule::next(
            1,
            Fault::Raw {
                status,
                body: body.into(),
            },
        ));
        let outcome = client.purchase(&spec).await;
        assert!(outcome.is_unknown(), "{status} {body:?}: {outcome:?}");
    }
    // None of the forced answers charged anything.
    assert!(sim.ledger().is_empty());

    // The real business answers, not forced.
    let first = client.purchase(&spec).await;
    assert_eq!(first.code(), Some("100"));
    let again = client.purchase(&spec).await;
    assert!(
        matches!(again, PurchaseOutcome::AlreadyExists { .. }),
        "{again:?}"
    );
    assert_eq!(again.service_preview_id(), first.service_preview_id());
    let foreign = client.purchase(&spec_for(OA_FOREIGN)).await;
    assert!(
        matches!(&foreign, PurchaseOutcome::PackageFailed { code, .. } if code == "799"),
        "{foreign:?}"
    );
    assert_eq!(sim.ledger().len(), 1);
    sim.shutdown().await;
}

fn code_fault(code: &str) -> Fault {
    Fault::Code {
        code: code.into(),
        message: None,
    }
}

fn spec_for(oaid: &str) -> Spec {
    spec(oaid, Tier::Advanced, date(2027, 1, 1), 6)
}

#[tokio::test]
async fn wrong_keys_are_fatal_on_every_call_and_never_echoed() {
    let sim = Simulator::start(config()).await.unwrap();
    let wrong = Credentials::new("wrong-api-3c9d", "wrong-secret-71aa").unwrap();
    let client = client_with(endpoint(&sim), wrong, Duration::from_secs(5));
    let outcome = client.purchase(&premium_dec()).await;
    assert_eq!(
        outcome,
        PurchaseOutcome::Fatal {
            code: "101".into(),
            message: "Authorize Failed".into()
        }
    );
    let list = client.list_oas().await.unwrap_err();
    assert!(list.is_fatal(), "{list:?}");
    let balance = client.balance().await.unwrap_err();
    assert_eq!(
        balance,
        CallError::Refused {
            code: "101".into(),
            message: "Authorize Failed".into()
        }
    );
    let text = format!("{outcome:?} {list} {list:?} {balance} {balance:?} {client:?}");
    assert!(!text.contains("wrong-api-3c9d") && !text.contains("wrong-secret-71aa"));
    assert!(sim.requests().iter().all(|r| !r.keys_valid));
    assert!(sim.ledger().is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn low_balance_is_fatal_and_charges_nothing() {
    let (sim, client) = start(config().balance(100)).await;
    let outcome = client.purchase(&premium_dec()).await;
    assert!(
        matches!(&outcome, PurchaseOutcome::Fatal { code, .. } if code == "103"),
        "{outcome:?}"
    );
    assert!(sim.ledger().is_empty());
    assert_eq!(sim.balance(), 100);
    sim.shutdown().await;
}

#[tokio::test]
async fn purchases_are_charged_at_price_times_months() {
    let (sim, client) = start(
        config()
            .balance(10_000)
            .price_per_month(Package::Advanced, 500),
    )
    .await;
    assert!(client.purchase(&spec_for(OA1)).await.is_submitted());
    assert_eq!(sim.ledger()[0].price, 3000);
    assert_eq!(sim.balance(), 7000);
    assert_eq!(client.balance().await.unwrap().amount, 7000.0);
    sim.shutdown().await;
}

#[tokio::test]
async fn dropped_after_commit_is_unknown_and_charged() {
    let (sim, client) = start(config().fault(FaultRule::next(
        1,
        Fault::DropConnection {
            stage: Stage::AfterCommit,
        },
    )))
    .await;
    let outcome = client.purchase(&premium_dec()).await;
    assert!(outcome.is_unknown(), "{outcome:?}");
    let ledger = sim.ledger();
    assert_eq!(ledger.len(), 1, "the purchase happened");
    assert_eq!(ledger[0].oaid, OA1);
    assert_eq!(sim.requests()[0].answer.as_deref(), Some("dropped"));

    // The retry the docs describe: the duplicate detector confirms it.
    let retry = client.purchase(&premium_dec()).await;
    assert!(
        matches!(retry, PurchaseOutcome::AlreadyExists { .. }),
        "{retry:?}"
    );
    assert_eq!(
        retry.service_preview_id(),
        Some(ledger[0].service_preview_id.as_str())
    );
    assert_eq!(sim.ledger().len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn dropped_before_commit_is_unknown_and_not_charged() {
    let (sim, client) = start(config().fault(FaultRule::next(
        1,
        Fault::DropConnection {
            stage: Stage::BeforeCommit,
        },
    )))
    .await;
    let outcome = client.purchase(&premium_dec()).await;
    // The client cannot tell this from the case above: unknown.
    assert!(outcome.is_unknown(), "{outcome:?}");
    assert!(sim.ledger().is_empty());
    let retry = client.purchase(&premium_dec()).await;
    assert_eq!(retry.code(), Some("100"));
    assert_eq!(sim.ledger().len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn server_error_before_or_after_commit_is_unknown() {
    let (sim, client) = start(
        config()
            .fault(FaultRule::next(
                1,
                Fault::ServerError {
                    stage: Stage::BeforeCommit,
                },
            ))
            .fault(FaultRule::next(
                1,
                Fault::ServerError {
                    stage: Stage::AfterCommit,
                },
            )),
    )
    .await;
    let before = client.purchase(&premium_dec()).await;
    assert!(before.is_unknown(), "{before:?}");
    assert!(before.message().contains("HTTP 500"), "{before:?}");
    assert!(sim.ledger().is_empty());
    let after = client.purchase(&premium_dec()).await;
    assert!(after.is_unknown(), "{after:?}");
    assert_eq!(sim.ledger().len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn connection_refused_is_not_sent() {
    // A port that was just free and is now closed: nothing listens there.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let endpoint =
        Endpoint::parse(&format!("http://127.0.0.1:{port}/MainService.svc/json/")).unwrap();
    let client = client_with(endpoint, credentials(), Duration::from_secs(5));
    let outcome = client.purchase(&premium_dec()).await;
    assert!(
        matches!(outcome, PurchaseOutcome::NotSent { .. }),
        "{outcome:?}"
    );
    assert!(outcome.is_retryable());
    let err = client.balance().await.unwrap_err();
    assert!(matches!(err, CallError::NotSent { .. }), "{err:?}");
    assert_no_keys(&format!("{outcome:?} {err} {err:?}"));
}

#[tokio::test]
async fn going_down_refuses_later_connections_until_the_faults_are_cleared() {
    let oa2 = spec(OA2, Tier::Advanced, date(2027, 1, 1), 6);
    // OA1's request is answered as usual, then the simulator goes down.
    let (sim, client) =
        start(config().fault(FaultRule::for_oaid(OA1, Fault::GoDown { answer: None }).times(1)))
            .await;
    // The client keeps this connection alive, but the answer closes it.
    let first = client.purchase(&premium_dec()).await;
    assert_eq!(first.code(), Some("100"), "{first:?}");
    for _ in 0..2 {
        let refused = client.purchase(&oa2).await;
        assert!(
            matches!(refused, PurchaseOutcome::NotSent { .. }),
            "{refused:?}"
        );
    }
    assert_eq!(sim.requests().len(), 1, "a refused request never arrives");
    assert_eq!(
        sim.requests()[0].answer.as_deref(),
        Some("code 100, then down")
    );

    sim.clear_faults();
    // Now OA2's request is rate limited, then the simulator goes down.
    sim.inject(
        FaultRule::for_oaid(
            OA2,
            Fault::GoDown {
                answer: Some(Box::new(Fault::RateLimitCode)),
            },
        )
        .times(1),
    );
    let limited = client.purchase(&oa2).await;
    assert!(
        matches!(limited, PurchaseOutcome::RateLimited { .. }),
        "{limited:?}"
    );
    let refused = client.purchase(&oa2).await;
    assert!(
        matches!(refused, PurchaseOutcome::NotSent { .. }),
        "{refused:?}"
    );
    sim.clear_faults();
    assert_eq!(client.purchase(&oa2).await.code(), Some("100"));
    // Both purchases charged once; the refused attempts charged nothing.
    assert_eq!(sim.ledger().len(), 2);
    assert_eq!(sim.requests().len(), 3);
    sim.shutdown().await;

    // The same rule as the admin route takes it.
    let rule: FaultRule = serde_json::from_value(json!({
        "fault": {"kind": "go_down", "answer": {"kind": "rate_limit_code"}},
        "scope": {"kind": "oaid", "oaid": OA2},
        "times": 1,
    }))
    .unwrap();
    assert_eq!(
        rule,
        FaultRule::for_oaid(
            OA2,
            Fault::GoDown {
                answer: Some(Box::new(Fault::RateLimitCode))
            }
        )
        .times(1)
    );
    let bare: Fault = serde_json::from_value(json!({"kind": "go_down"})).unwrap();
    assert_eq!(bare, Fault::GoDown { answer: None });
}

#[tokio::test]
async fn hang_with_a_short_timeout_is_unknown() {
    let sim = Simulator::start(
        config()
            .fault(FaultRule::next(
                1,
                Fault::Hang {
                    stage: Stage::BeforeCommit,
                },
            ))
            .fault(FaultRule::next(
                1,
                Fault::Hang {
                    stage: Stage::AfterCommit,
                },
            )),
    )
    .await
    .unwrap();
    let client = client_for(&sim, Duration::from_millis(300));
    let started = std::time::Instant::now();
    let before = client.purchase(&premium_dec()).await;
    assert!(before.is_unknown(), "{before:?}");
    assert!(
        before.message().contains("no complete answer within"),
        "{before:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(sim.ledger().is_empty());
    let after = client.purchase(&premium_dec()).await;
    assert!(after.is_unknown(), "{after:?}");
    assert_eq!(sim.ledger().len(), 1, "committed, then hung");
    // Shutdown ends the hanging handlers instead of waiting for them.
    let started = std::time::Instant::now();
    sim.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn latency_beyond_the_timeout_loses_the_answer_not_the_purchase() {
    let sim = Simulator::start(config().latency(Duration::from_millis(400)))
        .await
        .unwrap();
    let client = client_for(&sim, Duration::from_millis(100));
    let outcome = client.purchase(&premium_dec()).await;
    assert!(outcome.is_unknown(), "{outcome:?}");
    // The server goes on processing after the client gave up.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while sim.ledger().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(sim.ledger().len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn dedupe_on_answers_199_off_charges_twice() {
    let (sim, client) = start(config()).await;
    assert_eq!(client.purchase(&premium_dec()).await.code(), Some("100"));
    assert_eq!(client.purchase(&premium_dec()).await.code(), Some("199"));
    assert_eq!(sim.ledger().len(), 1);
    // Another tier, start or duration is another purchase.
    let mut other = premium_dec();
    other.tier = Tier::Advanced;
    assert_eq!(client.purchase(&other).await.code(), Some("100"));
    assert_eq!(sim.ledger().len(), 2);
    sim.shutdown().await;

    let (sim, client) = start(config().dedupe(false)).await;
    assert_eq!(client.purchase(&premium_dec()).await.code(), Some("100"));
    assert_eq!(client.purchase(&premium_dec()).await.code(), Some("100"));
    let ledger = sim.ledger();
    assert_eq!(ledger.len(), 2);
    assert_ne!(ledger[0].service_preview_id, ledger[1].service_preview_id);
    sim.shutdown().await;
}

#[tokio::test]
async fn oaid_rules_hit_only_their_oa() {
    let (sim, client) = start(config().fault(FaultRule::for_oaid(OA2, code_fault("204")))).await;
    assert_eq!(client.purchase(&spec_for(OA1)).await.code(), Some("100"));
    assert_eq!(client.purchase(&spec_for(OA2)).await.code(), Some("204"));
    assert_eq!(client.purchase(&spec_for(OA2)).await.code(), Some("204"));
    // Account calls are not purchases: untouched by purchase rules.
    assert!(client.list_oas().await.is_ok());
    sim.clear_faults();
    assert_eq!(client.purchase(&spec_for(OA2)).await.code(), Some("100"));
    sim.shutdown().await;
}

#[tokio::test]
async fn rules_can_cover_account_calls() {
    let (sim, client) =
        start(config().fault(FaultRule::next(1, code_fault("140")).on_all_calls())).await;
    let err = client.list_oas().await.unwrap_err();
    assert!(err.is_fatal(), "{err:?}");
    assert!(err.to_string().contains("not whitelisted"), "{err}");
    assert!(client.list_oas().await.is_ok());
    sim.inject(FaultRule::next(1, Fault::TooManyRequests).on_all_calls());
    assert!(matches!(
        client.balance().await,
        Err(CallError::RateLimited { .. })
    ));
    sim.shutdown().await;
}

#[tokio::test]
async fn seeded_fault_rate_is_reproducible() {
    async fn run(seed: u64) -> Vec<String> {
        let (sim, client) = start(config().dedupe(false).fault_rate(0.5).seed(seed).fault_mix(
            vec![
                Fault::RateLimitCode,
                Fault::TooManyRequests,
                Fault::ServerError {
                    stage: Stage::AfterCommit,
                },
                Fault::DropConnection {
                    stage: Stage::BeforeCommit,
                },
            ],
        ))
        .await;
        for _ in 0..24 {
            let _ = client.purchase(&premium_dec()).await;
        }
        let answers = sim
            .requests()
            .into_iter()
            .map(|r| r.answer.unwrap_or_default())
            .collect::<Vec<_>>();
        sim.shutdown().await;
        answers
    }
    let first = run(42).await;
    assert_eq!(first, run(42).await);
    let faults = first.iter().filter(|a| *a != "code 100").count();
    assert!((3..=21).contains(&faults), "about half: {first:?}");
}

#[tokio::test]
async fn admin_routes_show_the_ledger_and_take_faults() {
    let (sim, client) = start(config()).await;
    assert!(client.purchase(&premium_dec()).await.is_submitted());
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = format!("http://{}", sim.addr());
    let ledger: serde_json::Value = http
        .get(format!("{base}/__sim/ledger"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ledger[0]["oaid"], OA1);
    assert_eq!(ledger[0]["package"], 3);
    assert_eq!(ledger[0]["duaration"], "12");
    assert_eq!(ledger[0]["dateactive"], "2026-12-01");

    let requests = http
        .get(format!("{base}/__sim/requests"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_no_keys(&requests);
    assert!(requests.contains("[redacted]"));

    let status = http
        .post(format!("{base}/__sim/faults"))
        .json(&json!({"fault": {"kind": "code", "code": "102"}, "times": 1}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 204);
    assert_eq!(client.purchase(&spec_for(OA2)).await.code(), Some("102"));
    assert_eq!(client.purchase(&spec_for(OA2)).await.code(), Some("100"));
    sim.shutdown().await;
}

#[tokio::test]
async fn simulator_rejects_a_body_of_the_wrong_shape() {
    let sim = Simulator::start(config()).await.unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = endpoint(&sim).url_for(Call::Purchase);
    let good = json!({
        "ApiKey": API_KEY, "SecretKey": SECRET_KEY, "Dateactive": "2026-12-01",
        "Duaration": "12", "OAID": OA1, "Package": 3,
    });
    for (field, bad) in [
        ("Package", json!("3")),
        ("OAID", json!(4097311281936189049u64)),
        ("Duaration", json!(12)),
        ("Dateactive", json!("2026-12-1")),
    ] {
        let mut body = good.clone();
        body[field] = bad;
        let status = http
            .post(url.clone())
            .json(&body)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 400, "{field}");
    }
    let mut misspelt = good.clone();
    let months = misspelt
        .as_object_mut()
        .unwrap()
        .remove("Duaration")
        .unwrap();
    misspelt["Duration"] = months;
    let status = http
        .post(url.clone())
        .json(&misspelt)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 400);
    assert!(sim.ledger().is_empty());
    let status = http.post(url).json(&good).send().await.unwrap().status();
    assert_eq!(status, 200);
    assert_eq!(sim.ledger().len(), 1);
    sim.shutdown().await;
}

#[test]
fn blocking_simulator_serves_a_blocking_test() {
    let sim = Simulator::spawn_blocking(config()).unwrap();
    let endpoint = endpoint(&sim);
    // A separate runtime stands in for "another process" here.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let outcome = runtime.block_on(async {
        let client = client_with(endpoint, credentials(), Duration::from_secs(5));
        client.purchase(&premium_dec()).await
    });
    assert!(outcome.is_submitted(), "{outcome:?}");
    assert_eq!(sim.ledger().len(), 1);
    let control = sim.control();
    sim.shutdown();
    // The control outlives the server and still reads the records.
    assert_eq!(control.ledger().len(), 1);
}

#[tokio::test]
async fn nothing_printable_holds_a_key() {
    let (sim, client) = start(config().fault(FaultRule::next(
        1,
        // A misbehaving server that echoes the keys back.
        Fault::Raw {
            status: 502,
            body: format!("proxy error for ApiKey={API_KEY}&SecretKey={SECRET_KEY}"),
        },
    )))
    .await;
    let echoed = client.purchase(&premium_dec()).await;
    assert!(echoed.is_unknown());
    assert!(echoed.message().contains("[redacted]"), "{echoed:?}");
    sim.inject(FaultRule::next(
        1,
        Fault::Code {
            code: "42".into(),
            message: Some(format!("your key {API_KEY} is odd")),
        },
    ));
    let odd = client.purchase(&premium_dec()).await;
    let accepted = client.purchase(&premium_dec()).await;
    // The simulator's record of the bodies (its record of the injected
    // faults holds the test's own text, keys included, so it is left out).
    let bodies: Vec<_> = sim.requests().into_iter().map(|r| r.body).collect();
    let text = format!(
        "{echoed:?} {odd:?} {accepted:?} {client:?} {:?} {bodies:?} {:?}",
        credentials(),
        config(),
    );
    assert_no_keys(&text);
    sim.shutdown().await;
}

/// Runs [`trace_logs_child`] in a child process with every log at TRACE
/// (reqwest's and rustls's `log` records included) and checks that no key
/// reaches the output. A child process because a global subscriber would
/// capture, or miss, other tests' logs.
#[test]
fn trace_logs_never_contain_keys() {
    let exe = std::env::current_exe().unwrap();
    let output = std::process::Command::new(exe)
        .args([
            "esms::tests::trace_logs_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(TRACE_CHILD_VAR, "1")
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "child failed:\n{text}");
    assert!(
        text.contains("1 passed"),
        "the child test did not run:\n{text}"
    );
    // Proof that the capture worked: our events and reqwest's `log` records.
    assert!(text.contains("sending purchase request"), "{text}");
    assert!(
        text.contains("reqwest"),
        "no reqwest records captured:\n{text}"
    );
    assert_no_keys(&text);
}

const TRACE_CHILD_VAR: &str = "OAPKG_ESMS_TRACE_CHILD";

#[test]
#[ignore = "run by trace_logs_never_contain_keys in a child process"]
fn trace_logs_child() {
    if std::env::var_os(TRACE_CHILD_VAR).is_none() {
        return;
    }
    use tracing_subscriber::util::SubscriberInitExt;
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .finish()
        .try_init()
        .expect("the child process has no subscriber yet");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (sim, client) = start(config()).await;
        let spec = premium_dec();
        let _ = client.purchase(&spec).await;
        let _ = client.purchase(&spec).await;
        let _ = client.list_oas().await;
        let _ = client.balance().await;
        for fault in [
            Fault::DropConnection {
                stage: Stage::AfterCommit,
            },
            Fault::ServerError {
                stage: Stage::BeforeCommit,
            },
            Fault::Raw {
                status: 200,
                body: "garbage".into(),
            },
        ] {
            sim.inject(FaultRule::next(1, fault));
            let _ = client.purchase(&spec_for(OA2)).await;
        }
        let wrong = client_with(
            endpoint(&sim),
            Credentials::new(format!("{API_KEY}-x"), format!("{SECRET_KEY}-x")).unwrap(),
            Duration::from_secs(5),
        );
        let _ = wrong.purchase(&spec).await;
        sim.shutdown().await;
    });
}

/// The connect timeout firing is also "not sent": no connection, no bytes.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn connect_timeout_is_not_sent() {
    // A listener that never accepts, with its accept queue full: Linux then
    // drops further SYNs, so a connect attempt hangs until the client's
    // connect timeout.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    let mut hangs = false;
    for _ in 0..16 {
        let probe = tokio::net::TcpStream::connect(addr);
        match tokio::time::timeout(Duration::from_millis(100), probe).await {
            Ok(Ok(stream)) => fillers.push(stream),
            Ok(Err(err)) => panic!("probe connect failed: {err}"),
            Err(_) => {
                hangs = true;
                break;
            }
        }
    }
    if !hangs {
        eprintln!("skipped: this kernel accepts connections past the backlog");
        return;
    }
    let endpoint = Endpoint::parse(&format!("http://{addr}/MainService.svc/json/")).unwrap();
    let client = Client::new(
        endpoint,
        credentials(),
        ClientOptions {
            connect_timeout: Duration::from_millis(200),
            request_timeout: Duration::from_secs(5),
        },
    )
    .unwrap();
    let outcome = client.purchase(&premium_dec()).await;
    assert!(
        matches!(outcome, PurchaseOutcome::NotSent { .. }),
        "{outcome:?}"
    );
    assert!(
        outcome.message().contains("could not connect within"),
        "{outcome:?}"
    );
    drop(fillers);
}
