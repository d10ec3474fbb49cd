//! The simulated eSMS account: what it holds and how it answers one request.
//!
//! No IO and no waiting here. The server layer (`lib.rs`) calls
//! [`Engine::admit`] when a request arrives (log it, pick a fault) and
//! [`Engine::process`] when it is time to answer (the business logic that
//! may charge). Both run under one lock, so every decision about money is
//! atomic, however many requests are in flight.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::api::{Call, Key, Package, REDACTED, is_api_date};

/// The message of a real `100` answer (the eSMS documentation).
const ACCEPTED_MESSAGE: &str = "ViHAT is censoring trademark ownership";

/// The error-page text [`Fault::EchoRequest`] repeats before the echo.
const ECHO_FILLER: &str = "Bad gateway: the upstream failed on request ";

/// A way for the simulator to misbehave on one request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// Answer HTTP 200 with this result code (and message), charging
    /// nothing, whatever the request. Forcing `100` answers "accepted"
    /// without a charge: it is a lie, useful only to test the client.
    Code {
        code: String,
        #[serde(default)]
        message: Option<String>,
    },
    /// Process the request as usual (charging it if it is good), then
    /// answer HTTP 200 with this code (and message) instead of eSMS's: a
    /// code the client may not know, after the money moved.
    CodeAfterCommit {
        code: String,
        #[serde(default)]
        message: Option<String>,
    },
    /// Answer code `160` (TPS limit), charging nothing.
    RateLimitCode,
    /// Answer HTTP 429, charging nothing.
    TooManyRequests,
    /// Answer exactly this status and body, charging nothing (for garbage
    /// bodies, missing codes and the like).
    Raw { status: u16, body: String },
    /// Answer HTTP 500 with an HTML page.
    ServerError { stage: Stage },
    /// Answer `status` (e.g. 502) with `filler` characters of error-page
    /// text followed by the request body as received, keys and all, the
    /// way a misconfigured proxy's error page does; charging nothing.
    EchoRequest { status: u16, filler: usize },
    /// Close the connection (TCP RST) without any HTTP answer.
    DropConnection { stage: Stage },
    /// Never answer (until the hang limit or shutdown, then drop).
    Hang { stage: Stage },
    /// Answer as `answer` says (as usual when it is `None`), then go down:
    /// stop listening, so that every later connection attempt is refused
    /// (a request that certainly never reached eSMS: the client's "not
    /// sent") until the faults are cleared. A refused connection carries
    /// no request, so no rule can pick one by OAID; this fault is how a
    /// test places an outage: right after a chosen request.
    ///
    /// Requests already received are still answered. From the moment a
    /// rule with this fault is added until the faults are cleared, every
    /// answer closes its connection, so that no connection the client
    /// keeps alive can carry a request past the outage.
    GoDown {
        #[serde(default)]
        answer: Option<Box<Fault>>,
    },
}

/// Whether a transport fault strikes before the request is processed
/// (nothing charged) or after (charged if the request was good, but the
/// client never learns it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    BeforeCommit,
    AfterCommit,
}

impl Fault {
    /// The transport faults a `--fault-rate` picks from by default: every
    /// way a purchase can end without a definite answer, plus rate limits.
    pub fn default_mix() -> Vec<Fault> {
        let mut mix = Vec::new();
        for stage in [Stage::BeforeCommit, Stage::AfterCommit] {
            mix.push(Fault::ServerError { stage });
            mix.push(Fault::DropConnection { stage });
            mix.push(Fault::Hang { stage });
        }
        mix.push(Fault::RateLimitCode);
        mix.push(Fault::TooManyRequests);
        mix
    }
}

/// Which requests a [`FaultRule`] applies to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultScope {
    /// Every purchase request.
    #[default]
    Purchases,
    /// Purchase requests for this OAID.
    Oaid { oaid: String },
    /// Every API call (purchase, OA list, balance).
    AllCalls,
}

/// "Misbehave this way on these requests, this many times."
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRule {
    pub fault: Fault,
    #[serde(default)]
    pub scope: FaultScope,
    /// How many more requests it applies to; `None` is forever.
    #[serde(default)]
    pub times: Option<u32>,
}

impl FaultRule {
    /// The fault on the next `n` purchase requests.
    pub fn next(n: u32, fault: Fault) -> FaultRule {
        FaultRule {
            fault,
            scope: FaultScope::Purchases,
            times: Some(n),
        }
    }

    /// The fault on every purchase request.
    pub fn always(fault: Fault) -> FaultRule {
        FaultRule {
            fault,
            scope: FaultScope::Purchases,
            times: None,
        }
    }

    /// The fault on every purchase request for `oaid`.
    pub fn for_oaid(oaid: impl Into<String>, fault: Fault) -> FaultRule {
        FaultRule {
            fault,
            scope: FaultScope::Oaid { oaid: oaid.into() },
            times: None,
        }
    }

    /// Limit the rule to `n` requests.
    pub fn times(mut self, n: u32) -> FaultRule {
        self.times = Some(n);
        self
    }

    /// Apply the rule to the OA list and balance calls too.
    pub fn on_all_calls(mut self) -> FaultRule {
        self.scope = FaultScope::AllCalls;
        self
    }

    fn matches(&self, call: Call, oaid: Option<&str>) -> bool {
        self.times != Some(0)
            && match &self.scope {
                FaultScope::Purchases => call == Call::Purchase,
                FaultScope::Oaid { oaid: wanted } => {
                    call == Call::Purchase && oaid == Some(wanted.as_str())
                }
                FaultScope::AllCalls => true,
            }
    }
}

/// One purchase the simulated account was charged for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Charge {
    /// The request that caused it (see [`ReceivedRequest::seq`]).
    pub request_seq: u64,
    pub oaid: String,
    pub package: u8,
    pub dateactive: String,
    pub duaration: String,
    pub service_preview_id: String,
    pub price: u64,
    pub at: jiff::Timestamp,
}

/// One request as the simulator received it, keys redacted.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReceivedRequest {
    /// 1, 2, 3… in arrival order.
    pub seq: u64,
    pub at: jiff::Timestamp,
    pub call: Call,
    /// The HTTP path as requested.
    pub path: String,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The JSON body with `ApiKey`/`SecretKey` values replaced by
    /// `[redacted]` (types and every other field as sent). A body that is
    /// not JSON is kept as a string, with any key value redacted.
    pub body: Value,
    /// Whether `ApiKey` and `SecretKey` were both present and right.
    pub keys_valid: bool,
    /// The fault chosen for this request, if any.
    pub fault: Option<Fault>,
    /// What the simulator did, e.g. `code 100`, `HTTP 500`, `dropped`.
    pub answer: Option<String>,
}

/// The accepted keys, the OAs, money and behaviour of a simulated account.
/// Built with [`super::SimConfig`].
#[derive(Clone, Debug)]
pub(super) struct Account {
    /// Kept as [`Key`]s so that a `Debug` of the configuration cannot
    /// print them, in case someone points the simulator at real keys.
    pub api_key: Key,
    pub secret_key: Key,
    pub oas: BTreeMap<String, String>,
    pub balance: u64,
    pub price_per_month: BTreeMap<Package, u64>,
    pub dedupe: bool,
    pub ids_as_strings: bool,
    pub next_service_preview_id: u64,
    pub user_id: u64,
    pub rules: Vec<FaultRule>,
    pub fault_rate: f64,
    pub fault_mix: Vec<Fault>,
    pub seed: Option<u64>,
}

/// What the server layer must do to answer.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Answer {
    Json(Value),
    Status { status: u16, body: String },
    Drop,
    Hang,
}

impl Answer {
    /// A short description for logs and the request record.
    pub(super) fn summary(&self) -> String {
        match self {
            Answer::Json(v) => {
                let code = v
                    .get("CodeResult")
                    .or_else(|| v.get("CodeResponse"))
                    .and_then(Value::as_str)
                    .unwrap_or("?");
                format!("code {code}")
            }
            Answer::Status { status, .. } => format!("HTTP {status}"),
            Answer::Drop => "dropped".to_owned(),
            Answer::Hang => "hang".to_owned(),
        }
    }
}

/// The mutable state behind the lock.
pub(super) struct Engine {
    account: Account,
    rng: StdRng,
    ledger: Vec<Charge>,
    requests: Vec<ReceivedRequest>,
    /// Faults injected at run time, checked before the configured rules.
    injected: Vec<FaultRule>,
    /// Requests picked to take the simulator down that have not done so
    /// yet (see [`Engine::outage_started`]).
    outages_coming: usize,
}

impl Engine {
    pub(super) fn new(account: Account) -> Engine {
        let rng = match account.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => rand::make_rng(),
        };
        Engine {
            account,
            rng,
            ledger: Vec::new(),
            requests: Vec::new(),
            injected: Vec::new(),
            outages_coming: 0,
        }
    }

    pub(super) fn ledger(&self) -> &[Charge] {
        &self.ledger
    }

    pub(super) fn requests(&self) -> &[ReceivedRequest] {
        &self.requests
    }

    pub(super) fn balance(&self) -> u64 {
        self.account.balance
    }

    pub(super) fn inject(&mut self, rule: FaultRule) {
        self.injected.push(rule);
    }

    pub(super) fn set_dedupe(&mut self, dedupe: bool) {
        self.account.dedupe = dedupe;
    }

    pub(super) fn clear_faults(&mut self) {
        self.injected.clear();
        self.account.rules.clear();
        self.account.fault_rate = 0.0;
    }

    /// Whether the simulator is still to go down: a rule that takes it
    /// down has requests left, or a request picked for it has not done so
    /// yet. Answers must then close their connections (see
    /// [`Fault::GoDown`]).
    pub(super) fn outage_pending(&self) -> bool {
        self.outages_coming > 0
            || self
                .injected
                .iter()
                .chain(&self.account.rules)
                .any(|r| r.times != Some(0) && matches!(r.fault, Fault::GoDown { .. }))
    }

    /// A request admitted with [`Fault::GoDown`] has taken the simulator
    /// down (or never will: shutdown).
    pub(super) fn outage_started(&mut self) {
        self.outages_coming = self.outages_coming.saturating_sub(1);
    }

    /// Logs an arriving request and picks its fault. Returns its sequence
    /// number.
    pub(super) fn admit(
        &mut self,
        call: Call,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> (u64, Option<Fault>) {
        let parsed = serde_json::from_slice::<Value>(body).ok();
        let oaid = parsed
            .as_ref()
            .and_then(|v| v.get("OAID"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let fault = self.pick_fault(call, oaid.as_deref());
        if matches!(fault, Some(Fault::GoDown { .. })) {
            self.outages_coming += 1;
        }
        let seq = self.requests.len() as u64 + 1;
        let keys_valid = parsed.as_ref().is_some_and(|v| self.keys_valid(v));
        let body = match parsed {
            Some(value) => redact_keys(value),
            None => Value::String(self.redact_text(&String::from_utf8_lossy(body))),
        };
        self.requests.push(ReceivedRequest {
            seq,
            at: jiff::Timestamp::now(),
            call,
            path: path.to_owned(),
            content_type: content_type.map(str::to_owned),
            body,
            keys_valid,
            fault: fault.clone(),
            answer: None,
        });
        (seq, fault)
    }

    /// Decides the answer to request `seq`: the fault's, or the account's
    /// business logic (which may charge), or both for after-commit faults.
    pub(super) fn process(
        &mut self,
        seq: u64,
        call: Call,
        body: &[u8],
        fault: Option<&Fault>,
    ) -> Answer {
        let answer = match fault {
            Some(Fault::GoDown { answer }) => {
                // The server layer takes the simulator down once this is
                // decided; the answer itself is the inner fault's (or the
                // account's), nested faults included.
                let answer = self.process(seq, call, body, answer.as_deref());
                self.set_answer(seq, format!("{}, then down", answer.summary()));
                return answer;
            }
            Some(Fault::Code { code, message }) => {
                let message = message
                    .clone()
                    .unwrap_or_else(|| format!("simulated code {code}"));
                Answer::Json(code_answer(call, code, &message))
            }
            Some(Fault::CodeAfterCommit { code, message }) => {
                let _ = self.business(seq, call, body);
                let message = message
                    .clone()
                    .unwrap_or_else(|| format!("simulated code {code}"));
                Answer::Json(code_answer(call, code, &message))
            }
            Some(Fault::RateLimitCode) => {
                Answer::Json(code_answer(call, "160", "Request exceeds the TPS limit"))
            }
            Some(Fault::TooManyRequests) => Answer::Status {
                status: 429,
                body: "Too Many Requests".to_owned(),
            },
            Some(Fault::Raw { status, body }) => Answer::Status {
                status: *status,
                body: body.clone(),
            },
            Some(Fault::EchoRequest { status, filler }) => {
                let mut page: String = ECHO_FILLER.chars().cycle().take(*filler).collect();
                page.push_str(&String::from_utf8_lossy(body));
                Answer::Status {
                    status: *status,
                    body: page,
                }
            }
            Some(transport) => {
                let (stage, after) = match transport {
                    Fault::ServerError { stage } => (*stage, server_error()),
                    Fault::DropConnection { stage } => (*stage, Answer::Drop),
                    Fault::Hang { stage } => (*stage, Answer::Hang),
                    _ => unreachable!("handled above"),
                };
                if stage == Stage::AfterCommit {
                    // The real work happens; only the answer is lost.
                    let _ = self.business(seq, call, body);
                }
                after
            }
            None => self.business(seq, call, body),
        };
        self.set_answer(seq, answer.summary());
        answer
    }

    /// Records what happened to a request whose answer was decided outside
    /// [`Engine::process`] (e.g. shutdown during latency).
    pub(super) fn set_answer(&mut self, seq: u64, summary: String) {
        if let Some(request) = self.requests.get_mut(seq as usize - 1) {
            request.answer = Some(summary);
        }
    }

    fn pick_fault(&mut self, call: Call, oaid: Option<&str>) -> Option<Fault> {
        if let Some(fault) = take_matching(self.injected.iter_mut(), call, oaid) {
            self.injected.retain(|r| r.times != Some(0));
            return Some(fault);
        }
        if let Some(fault) = take_matching(self.account.rules.iter_mut(), call, oaid) {
            self.account.rules.retain(|r| r.times != Some(0));
            return Some(fault);
        }
        // Random faults hit purchases only: a failed pre-flight OA list
        // would end a run before it tests anything interesting.
        if call == Call::Purchase
            && self.account.fault_rate > 0.0
            && !self.account.fault_mix.is_empty()
            && self.rng.random::<f64>() < self.account.fault_rate
        {
            let i = self.rng.random_range(0..self.account.fault_mix.len());
            return Some(self.account.fault_mix[i].clone());
        }
        None
    }

    fn keys_valid(&self, body: &Value) -> bool {
        body.get("ApiKey").and_then(Value::as_str) == Some(self.account.api_key.expose())
            && body.get("SecretKey").and_then(Value::as_str)
                == Some(self.account.secret_key.expose())
    }

    fn redact_text(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for key in [&self.account.api_key, &self.account.secret_key] {
            if !key.expose().is_empty() {
                out = out.replace(key.expose(), REDACTED);
            }
        }
        out
    }

    /// What eSMS itself would answer.
    fn business(&mut self, seq: u64, call: Call, body: &[u8]) -> Answer {
        let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
            return bad_request("the body is not a JSON object");
        };
        let body = Value::Object(fields);
        if !self.keys_valid(&body) {
            return Answer::Json(code_answer(call, "101", "Authorize Failed"));
        }
        match call {
            Call::ListOas => Answer::Json(json!({
                "CodeResult": "100",
                "ErrorMessage": "success",
                "ZOAList": self.account.oas.iter()
                    .map(|(oaid, name)| json!({"OAID": oaid, "OAName": name}))
                    .collect::<Vec<_>>(),
            })),
            Call::Balance => Answer::Json(json!({
                "Balance": self.account.balance,
                "CodeResponse": "100",
                "UserID": self.account.user_id,
            })),
            Call::Purchase => match PurchaseFields::parse(&body) {
                Ok(fields) => self.purchase(seq, fields),
                Err(reason) => bad_request(&reason),
            },
        }
    }

    fn purchase(&mut self, seq: u64, p: PurchaseFields) -> Answer {
        if !self.account.oas.contains_key(&p.oaid) {
            return Answer::Json(code_answer(
                Call::Purchase,
                "799",
                "OAID is inactive, wrong, or not added to the account",
            ));
        }
        if self.account.dedupe
            && let Some(earlier) = self.ledger.iter().find(|c| {
                c.oaid == p.oaid
                    && c.package == p.package
                    && c.dateactive == p.dateactive
                    && c.duaration == p.duaration
            })
        {
            let mut answer = code_answer(
                Call::Purchase,
                "199",
                "This request already exists and is being processed",
            );
            answer["ServicePreviewId"] = self.id_value(&earlier.service_preview_id);
            return Answer::Json(answer);
        }
        let package = Package::from_number(u64::from(p.package)).expect("validated");
        let months = p.duaration.parse::<u64>().expect("validated");
        let price = self
            .account
            .price_per_month
            .get(&package)
            .copied()
            .unwrap_or(0)
            .saturating_mul(months);
        if self.account.balance < price {
            return Answer::Json(code_answer(Call::Purchase, "103", "Balance not enough"));
        }
        self.account.balance -= price;
        let id = self.account.next_service_preview_id.to_string();
        self.account.next_service_preview_id += 1;
        self.ledger.push(Charge {
            request_seq: seq,
            oaid: p.oaid,
            package: p.package,
            dateactive: p.dateactive,
            duaration: p.duaration,
            service_preview_id: id.clone(),
            price,
            at: jiff::Timestamp::now(),
        });
        let mut answer = code_answer(Call::Purchase, "100", ACCEPTED_MESSAGE);
        answer["ServicePreviewId"] = self.id_value(&id);
        Answer::Json(answer)
    }

    fn id_value(&self, id: &str) -> Value {
        match (self.account.ids_as_strings, id.parse::<u64>()) {
            (false, Ok(n)) => json!(n),
            _ => json!(id),
        }
    }
}

fn take_matching<'a>(
    rules: impl Iterator<Item = &'a mut FaultRule>,
    call: Call,
    oaid: Option<&str>,
) -> Option<Fault> {
    for rule in rules {
        if rule.matches(call, oaid) {
            if let Some(n) = rule.times.as_mut() {
                *n -= 1;
            }
            return Some(rule.fault.clone());
        }
    }
    None
}

/// The fields of a purchase, checked as strictly as the documentation
/// reads, so that a client sending the wrong shape (a numeric `OAID`, a
/// string `Package`, `Duration` for `Duaration`) is caught by tests.
struct PurchaseFields {
    oaid: String,
    package: u8,
    dateactive: String,
    duaration: String,
}

impl PurchaseFields {
    fn parse(body: &Value) -> Result<PurchaseFields, String> {
        let text = |name: &str| -> Result<String, String> {
            match body.get(name) {
                Some(Value::String(s)) => Ok(s.clone()),
                Some(other) => Err(format!("{name} must be a string, not {other}")),
                None => Err(format!("{name} is missing")),
            }
        };
        let oaid = text("OAID")?;
        if oaid.is_empty() || oaid.len() > 19 || !oaid.bytes().all(|b| b.is_ascii_digit()) {
            return Err("OAID must be 1 to 19 digits".to_owned());
        }
        let dateactive = text("Dateactive")?;
        if !is_api_date(&dateactive) {
            return Err("Dateactive must be yyyy-MM-dd".to_owned());
        }
        let duaration = text("Duaration")?;
        if !duaration.bytes().all(|b| b.is_ascii_digit())
            || !matches!(duaration.parse::<u32>(), Ok(1..=120))
        {
            return Err("Duaration must be a whole number of months as a string".to_owned());
        }
        let package = match body.get("Package") {
            Some(Value::Number(n)) => n
                .as_u64()
                .and_then(Package::from_number)
                .map(Package::number)
                .ok_or_else(|| format!("Package must be 1, 2 or 3, not {n}"))?,
            Some(other) => return Err(format!("Package must be a number, not {other}")),
            None => return Err("Package is missing".to_owned()),
        };
        Ok(PurchaseFields {
            oaid,
            package,
            dateactive,
            duaration,
        })
    }
}

/// A business answer with `code`, in the field the call uses.
fn code_answer(call: Call, code: &str, message: &str) -> Value {
    match call {
        Call::Balance => json!({"Balance": 0, "CodeResponse": code, "ErrorMessage": message}),
        Call::Purchase | Call::ListOas => json!({"CodeResult": code, "ErrorMessage": message}),
    }
}

/// What a WCF service answers to a body it cannot bind: HTTP 400.
fn bad_request(reason: &str) -> Answer {
    Answer::Status {
        status: 400,
        body: format!("Bad Request (simulator): {reason}"),
    }
}

fn server_error() -> Answer {
    Answer::Status {
        status: 500,
        body: "<html><body><h1>500 Internal Server Error</h1>(simulated)</body></html>".to_owned(),
    }
}

fn redact_keys(mut value: Value) -> Value {
    if let Value::Object(map) = &mut value {
        for name in ["ApiKey", "SecretKey"] {
            // Whatever its type: a key sent as a number is still a key.
            if let Some(v) = map.get_mut(name) {
                *v = Value::String(REDACTED.to_owned());
            }
        }
    }
    value
}
