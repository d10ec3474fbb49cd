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

/// One request with `head` lines (method, path, headers) and `body`:
/// (status, body).
fn raw(sim: &SimControl, head: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(sim.addr()).expect("connect");
    write!(
        stream,
        "{head}\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
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

fn getoa(sim: &SimControl, token: &str) -> Value {
    let (status, body) = raw(
        sim,
        &format!("GET /v2.0/oa/getoa HTTP/1.1\r\naccess_token: {token}"),
        "",
    );
    assert_eq!(status, 200, "{body}");
    json_of(&body)
}

fn exchange(sim: &SimControl, refresh_token: &str) -> Value {
    let form = format!(
        "app_id={}&grant_type=refresh_token&refresh_token={refresh_token}",
        zalo::DEFAULT_APP_ID
    );
    let (status, body) = raw(
        sim,
        &format!(
            "POST /v4/oa/access_token HTTP/1.1\r\nsecret_key: {}\r\n\
             Content-Type: application/x-www-form-urlencoded",
            zalo::DEFAULT_APP_SECRET
        ),
        &form,
    );
    assert_eq!(status, 200, "{body}");
    json_of(&body)
}

#[test]
fn getoa_reflects_the_charged_purchases_and_no_others() {
    let sim = Simulator::spawn_blocking(SimConfig::new().oa(OAID, "SVoucher")).unwrap();
    let tokens = sim.zalo_authorize(OAID);
    let before = getoa(&sim, &tokens.access_token);
    assert_eq!(before["error"], 0);
    assert_eq!(before["data"]["oaid"], OAID);
    assert_eq!(before["data"]["package_valid_through_date"], "");

    let (_, answer) = post(&sim, "RegisOAPackageJson/", &purchase(3, "12"));
    assert_eq!(json_of(&answer)["CodeResult"], "100", "{answer}");
    let after = getoa(&sim, &tokens.access_token);
    assert_eq!(after["data"]["package_valid_through_date"], "31/12/2027");
    assert_eq!(after["data"]["package_name"], "Gói Cao cấp");

    // Refused purchases (code 101, wrong keys) change nothing.
    let mut wrong = purchase(3, "24");
    wrong["SecretKey"] = json!("nope");
    post(&sim, "RegisOAPackageJson/", &wrong);
    let again = getoa(&sim, &tokens.access_token);
    assert_eq!(again["data"]["package_valid_through_date"], "31/12/2027");
}

#[test]
fn getoa_shows_a_charge_only_after_the_lag_and_outside_packages_at_once() {
    let sim = Simulator::spawn_blocking(
        SimConfig::new()
            .oa(OAID, "SVoucher")
            .zalo_lag(std::time::Duration::from_secs(86_400))
            .zalo_package(
                "745830328927467685",
                "2028-03-31".parse().unwrap(),
                "Gói Nâng cao",
            ),
    )
    .unwrap();
    let tokens = sim.zalo_authorize(OAID);
    post(&sim, "RegisOAPackageJson/", &purchase(2, "1"));
    assert_eq!(sim.ledger().len(), 1);
    let lagging = getoa(&sim, &tokens.access_token);
    assert_eq!(lagging["data"]["package_valid_through_date"], "");
    sim.set_zalo_lag(std::time::Duration::ZERO);
    let seen = getoa(&sim, &tokens.access_token);
    assert_eq!(seen["data"]["package_valid_through_date"], "31/01/2027");

    let other = sim.zalo_authorize("745830328927467685");
    let outside = getoa(&sim, &other.access_token);
    assert_eq!(outside["data"]["package_valid_through_date"], "31/03/2028");
}

#[test]
fn refresh_tokens_are_single_use_and_bad_tokens_get_errors() {
    let sim = Simulator::spawn_blocking(SimConfig::new().oa(OAID, "SVoucher")).unwrap();
    let first = sim.zalo_authorize(OAID);
    let wrong = getoa(&sim, "not-a-token");
    assert_eq!(wrong["error"], zalo::ERROR_INVALID_ACCESS_TOKEN);

    let pair = exchange(&sim, &first.refresh_token);
    assert_eq!(pair["expires_in"], "90000");
    let next_refresh = pair["refresh_token"].as_str().unwrap();
    assert_ne!(next_refresh, first.refresh_token);
    assert_eq!(
        getoa(&sim, pair["access_token"].as_str().unwrap())["error"],
        0
    );

    let reused = exchange(&sim, &first.refresh_token);
    assert_eq!(reused["error"], zalo::ERROR_INVALID_REFRESH_TOKEN);
    assert!(reused.get("access_token").is_none());
    assert_eq!(sim.zalo_refresh_token_uses(), vec![2, 0]);
    let stats = sim.zalo_stats();
    assert_eq!(
        (
            stats.exchanges,
            stats.exchanges_ok,
            stats.refresh_token_reuses
        ),
        (2, 1, 1)
    );

    sim.expire_zalo_access_tokens();
    let expired = getoa(&sim, pair["access_token"].as_str().unwrap());
    assert_eq!(expired["error"], zalo::ERROR_EXPIRED_ACCESS_TOKEN);
    assert_eq!(exchange(&sim, next_refresh)["error"].as_i64(), None);
}
