//! The simulator on its own: the paths and tier numbers of the API
//! description, over real HTTP on 127.0.0.1 with a hand-written request (no
//! client library that could share a mistake), the account's rules, and a
//! fault.

use std::io::{Read, Write};
use std::net::TcpStream;

use serde_json::{Value, json};

use super::*;

const OAID: &str = "4097311281936189049";

/// One `POST BASE_PATH + path` with `body`, read to the end: (status, body).
fn post(sim: &SimControl, path: &str, body: &Value) -> (u16, String) {
    let body = body.to_string();
    let mut stream = TcpStream::connect(sim.addr()).expect("connect");
    write!(
        stream,
        "POST {BASE_PATH}{path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        sim.addr(),
        body.len()
    )
    .expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn purchase(package: u8, months: &str) -> Value {
    json!({
        "ApiKey": DEFAULT_API_KEY, "SecretKey": DEFAULT_SECRET_KEY,
        "OAID": OAID, "Package": package, "Dateactive": "2027-01-01", "Duaration": months,
    })
}

fn keys() -> Value {
    json!({"ApiKey": DEFAULT_API_KEY, "SecretKey": DEFAULT_SECRET_KEY})
}

#[test]
fn serves_the_three_paths_of_the_api_description() {
    let sim =
        Simulator::spawn_blocking(SimConfig::new().oa(OAID, "SVoucher").balance(36693)).unwrap();
    let (status, body) = post(&sim, "ZNS/GetListZOA/", &keys());
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        json_of(&body),
        json!({"CodeResult": "100", "ErrorMessage": "success",
               "ZOAList": [{"OAID": OAID, "OAName": "SVoucher"}]})
    );
    let (status, body) = post(&sim, "GetBalance_json", &keys());
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        json_of(&body),
        json!({"Balance": 36693, "CodeResponse": "100", "UserID": 9999})
    );
    let (status, body) = post(&sim, "RegisOAPackageJson/", &purchase(1, "1"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(json_of(&body)["CodeResult"], "100");
    assert_eq!(json_of(&body)["ServicePreviewId"], FIRST_SERVICE_PREVIEW_ID);
    // Any other path is not eSMS.
    let (status, _) = post(&sim, "RegisOAPackage/", &purchase(1, "1"));
    assert_eq!(status, 404);
    let calls: Vec<Call> = sim.requests().iter().map(|r| r.call).collect();
    assert_eq!(calls, [Call::ListOas, Call::Balance, Call::Purchase]);
}

#[test]
fn package_numbers_are_1_trial_2_advanced_3_premium() {
    let sim = Simulator::spawn_blocking(
        SimConfig::new()
            .oaid(OAID)
            .price_per_month(Package::Trial, 1)
            .price_per_month(Package::Advanced, 20)
            .price_per_month(Package::Premium, 300),
    )
    .unwrap();
    for package in [1, 2, 3] {
        let (_, body) = post(&sim, "RegisOAPackageJson/", &purchase(package, "2"));
        assert_eq!(json_of(&body)["CodeResult"], "100", "{body}");
    }
    let prices: Vec<(u8, u64)> = sim.ledger().iter().map(|c| (c.package, c.price)).collect();
    assert_eq!(prices, [(1, 2), (2, 40), (3, 600)]);
    for bad in [json!(0), json!(4), json!("3")] {
        let mut body = purchase(1, "2");
        body["Package"] = bad.clone();
        let (status, answer) = post(&sim, "RegisOAPackageJson/", &body);
        assert_eq!(status, 400, "Package {bad}: {answer}");
    }
    assert_eq!(sim.ledger().len(), 3);
}

#[test]
fn a_repeat_answers_199_and_wrong_keys_101_and_keys_are_never_logged() {
    let sim = Simulator::spawn_blocking(SimConfig::new().oaid(OAID)).unwrap();
    post(&sim, "RegisOAPackageJson/", &purchase(3, "12"));
    let (_, again) = post(&sim, "RegisOAPackageJson/", &purchase(3, "12"));
    assert_eq!(json_of(&again)["CodeResult"], "199");
    assert_eq!(
        json_of(&again)["ServicePreviewId"],
        FIRST_SERVICE_PREVIEW_ID
    );
    let mut wrong = purchase(3, "6");
    wrong["SecretKey"] = json!("nope");
    let (_, refused) = post(&sim, "RegisOAPackageJson/", &wrong);
    assert_eq!(json_of(&refused)["CodeResult"], "101");
    assert_eq!(sim.ledger().len(), 1);
    let log = serde_json::to_string(&sim.requests()).unwrap();
    assert!(
        !log.contains(DEFAULT_API_KEY) && !log.contains(DEFAULT_SECRET_KEY),
        "{log}"
    );
    assert!(log.contains(api::REDACTED));
}

#[test]
fn a_server_error_after_the_commit_charges_but_never_answers_it() {
    let sim = Simulator::spawn_blocking(SimConfig::new().oaid(OAID).fault(FaultRule::next(
        1,
        Fault::ServerError {
            stage: Stage::AfterCommit,
        },
    )))
    .unwrap();
    let (status, body) = post(&sim, "RegisOAPackageJson/", &purchase(2, "6"));
    assert_eq!(status, 500, "{body}");
    assert_eq!(sim.ledger().len(), 1, "the charge happened");
    // The rule was for one request: the next is answered, and deduplicated.
    let (status, body) = post(&sim, "RegisOAPackageJson/", &purchase(2, "6"));
    assert_eq!(
        (status, json_of(&body)["CodeResult"].clone()),
        (200, json!("199"))
    );
    assert_eq!(sim.ledger().len(), 1);
}

#[test]
fn dateactive_must_be_a_real_day_written_yyyy_mm_dd() {
    assert!(api::is_api_date("2027-02-28"));
    for bad in [
        "2027-02-30",
        "2027-2-28",
        "27-02-28",
        "2027/02/28",
        "2027-02-28T00",
    ] {
        assert!(!api::is_api_date(bad), "{bad}");
    }
}
