//! What an eSMS answer means for oapkg: the result-code table of
//! The eSMS documentation's result codes turned into types (README "What each
//! result code makes oapkg do", `docs/exactly-once.md`).
//!
//! Everything here is pure. The client reduces one HTTP exchange to an
//! [`Exchange`] (an HTTP status and the body bytes, or a transport failure
//! already sorted into "not sent" and "unknown"), and these functions decide
//! the outcome. That keeps the table testable without a network and keeps
//! the one rule that protects money in one place: **only a definite answer
//! is believed; anything else about a purchase is [`PurchaseOutcome::Unknown`]**.

use serde::Serialize;

use super::wire::{BalanceAnswer, ListOasAnswer, PurchaseAnswer};

/// Accepted: the purchase is committed on eSMS's side.
pub const CODE_ACCEPTED: &str = "100";
/// "This request already exists and is being processed".
pub const CODE_ALREADY_EXISTS: &str = "199";
/// Rate (TPS) limit exceeded.
pub const CODE_RATE_LIMITED: &str = "160";
/// Codes after which nothing else in the run can succeed.
pub const FATAL_CODES: [&str; 4] = ["101", "103", "140", "143"];
/// Codes that refuse one package (definitely not bought); others may go on.
pub const PACKAGE_FAILED_CODES: [&str; 3] = ["102", "204", "799"];

/// The meaning the eSMS documentation gives a result code, for messages.
pub fn code_meaning(code: &str) -> Option<&'static str> {
    Some(match code {
        "100" => "accepted, under review by ViHAT",
        "199" => "this request already exists and is being processed",
        "101" => "wrong ApiKey or SecretKey",
        "102" => "no price list for this service",
        "103" => "balance too low",
        "140" => "caller IP not whitelisted",
        "143" => "account not activated or locked",
        "160" => "rate (TPS) limit exceeded",
        "204" => "OAID does not exist in the system",
        "799" => "OAID inactive, wrong, or not added to the account",
        _ => return None,
    })
}

/// A failure before any answer, sorted by whether the request can have
/// reached eSMS. The client decides which; see `client::transport_failure`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransportFailure {
    /// Certainly never sent (no connection was made): safe to retry.
    NotSent { reason: String },
    /// May have been received and acted on.
    Unknown { reason: String },
}

/// One request's result as seen on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exchange<'a> {
    /// An HTTP answer arrived in full.
    Answered { status: u16, body: &'a [u8] },
    /// No complete answer.
    Failed(&'a TransportFailure),
}

/// What one purchase request achieved. Every answer lands in exactly one
/// variant; the apply executor acts on the variant, never on raw codes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum PurchaseOutcome {
    /// `100`: committed. `service_preview_id` is eSMS's id for it (absent
    /// only if eSMS left it out, which does not undo the commitment).
    Accepted {
        service_preview_id: Option<String>,
        code: String,
        message: String,
    },
    /// `199`: the same registration was already received, so the package
    /// exists: it counts as submitted.
    AlreadyExists {
        service_preview_id: Option<String>,
        code: String,
        message: String,
    },
    /// `101`, `103`, `140`, `143`: stop sending; nothing else can succeed.
    Fatal { code: String, message: String },
    /// `102`, `204`, `799`: this package failed (definitely not bought);
    /// others may go on. `message` is verbatim.
    PackageFailed { code: String, message: String },
    /// `160` or HTTP 429: not processed; back off and try again.
    RateLimited { reason: String },
    /// The request may have been received and the purchase may exist:
    /// a timeout after sending, a connection reset while waiting, HTTP 5xx
    /// or another unexpected status, an unreadable body, no code, or a
    /// code the documentation does not list (matched exactly: `"100.0"`,
    /// `"0"` and `" 100"` are not listed codes).
    Unknown { reason: String },
    /// Certainly never sent (connection refused, DNS or TLS failure).
    NotSent { reason: String },
}

impl PurchaseOutcome {
    /// `100` or `199`: the package counts as submitted.
    pub fn is_submitted(&self) -> bool {
        matches!(
            self,
            PurchaseOutcome::Accepted { .. } | PurchaseOutcome::AlreadyExists { .. }
        )
    }

    /// Whether a purchase may exist after this outcome without oapkg
    /// knowing it: such a package must be recorded `unconfirmed`, never
    /// dropped.
    pub fn is_unknown(&self) -> bool {
        matches!(self, PurchaseOutcome::Unknown { .. })
    }

    /// Whether sending the same request again is safe within the run
    /// (after a backoff): rate limits and "not sent", which eSMS certainly
    /// did not process. An unknown outcome is not: eSMS documents no time
    /// window for its `199` duplicate answer, so a resend may charge twice
    /// (apply resends one only when asked to, `--retry-unknown`).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            PurchaseOutcome::RateLimited { .. } | PurchaseOutcome::NotSent { .. }
        )
    }

    /// The eSMS result code, when eSMS gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            PurchaseOutcome::Accepted { code, .. }
            | PurchaseOutcome::AlreadyExists { code, .. }
            | PurchaseOutcome::Fatal { code, .. }
            | PurchaseOutcome::PackageFailed { code, .. } => Some(code),
            _ => None,
        }
    }

    /// eSMS's message or, without an answer, why there is none.
    pub fn message(&self) -> &str {
        match self {
            PurchaseOutcome::Accepted { message, .. }
            | PurchaseOutcome::AlreadyExists { message, .. }
            | PurchaseOutcome::Fatal { message, .. }
            | PurchaseOutcome::PackageFailed { message, .. } => message,
            PurchaseOutcome::RateLimited { reason }
            | PurchaseOutcome::Unknown { reason }
            | PurchaseOutcome::NotSent { reason } => reason,
        }
    }

    /// eSMS's id for the registration, when it sent one.
    pub fn service_preview_id(&self) -> Option<&str> {
        match self {
            PurchaseOutcome::Accepted {
                service_preview_id, ..
            }
            | PurchaseOutcome::AlreadyExists {
                service_preview_id, ..
            } => service_preview_id.as_deref(),
            _ => None,
        }
    }

    /// The same outcome with `f` applied to every text that came from
    /// outside (messages, reasons, ids).
    pub(crate) fn map_text(self, f: impl Fn(&str) -> String) -> Self {
        use PurchaseOutcome::*;
        match self {
            Accepted {
                service_preview_id,
                code,
                message,
            } => Accepted {
                service_preview_id: service_preview_id.as_deref().map(&f),
                code: f(&code),
                message: f(&message),
            },
            AlreadyExists {
                service_preview_id,
                code,
                message,
            } => AlreadyExists {
                service_preview_id: service_preview_id.as_deref().map(&f),
                code: f(&code),
                message: f(&message),
            },
            Fatal { code, message } => Fatal {
                code: f(&code),
                message: f(&message),
            },
            PackageFailed { code, message } => PackageFailed {
                code: f(&code),
                message: f(&message),
            },
            RateLimited { reason } => RateLimited { reason: f(&reason) },
            Unknown { reason } => Unknown { reason: f(&reason) },
            NotSent { reason } => NotSent { reason: f(&reason) },
        }
    }
}

/// Why a read-only call (`list_oas`, `balance`) gave no usable result.
/// These calls buy nothing, so "unknown" is simply a failure here.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("the request did not reach eSMS: {reason}")]
    NotSent { reason: String },
    #[error("no usable answer from eSMS: {reason}")]
    NoAnswer { reason: String },
    #[error("eSMS is rate limiting this account: {reason}")]
    RateLimited { reason: String },
    #[error(
        "eSMS refused the call with code {code}{}: {message}",
        meaning_suffix(code)
    )]
    Refused { code: String, message: String },
}

impl CallError {
    /// Whether the code means nothing else in this run can succeed
    /// (wrong keys, IP not whitelisted, account locked, no balance).
    pub fn is_fatal(&self) -> bool {
        matches!(self, CallError::Refused { code, .. } if FATAL_CODES.contains(&code.as_str()))
    }

    /// The eSMS result code of a refusal.
    pub fn code(&self) -> Option<&str> {
        match self {
            CallError::Refused { code, .. } => Some(code),
            _ => None,
        }
    }

    pub(crate) fn map_text(self, f: impl Fn(&str) -> String) -> Self {
        match self {
            CallError::NotSent { reason } => CallError::NotSent { reason: f(&reason) },
            CallError::NoAnswer { reason } => CallError::NoAnswer { reason: f(&reason) },
            CallError::RateLimited { reason } => CallError::RateLimited { reason: f(&reason) },
            CallError::Refused { code, message } => CallError::Refused {
                code: f(&code),
                message: f(&message),
            },
        }
    }
}

fn meaning_suffix(code: &str) -> String {
    code_meaning(code)
        .map(|m| format!(" ({m})"))
        .unwrap_or_default()
}

/// One OA registered to the account (`ZOAList`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct AccountOa {
    pub oaid: String,
    pub name: String,
}

/// The account balance (`GetBalance_json`). Informational only: the amount
/// is whatever number eSMS sends, in its currency unit.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Balance {
    pub amount: f64,
    pub user_id: Option<String>,
}

/// Largest body excerpt quoted in a reason.
const EXCERPT_CHARS: usize = 120;

/// The outcome of one `RegisOAPackageJson/` exchange.
pub fn classify_purchase(exchange: Exchange<'_>) -> PurchaseOutcome {
    let body = match exchange {
        Exchange::Failed(TransportFailure::NotSent { reason }) => {
            return PurchaseOutcome::NotSent {
                reason: reason.clone(),
            };
        }
        Exchange::Failed(TransportFailure::Unknown { reason }) => {
            return PurchaseOutcome::Unknown {
                reason: reason.clone(),
            };
        }
        Exchange::Answered { status, body } => match check_status(status, body) {
            StatusVerdict::Body => body,
            StatusVerdict::RateLimited(reason) => return PurchaseOutcome::RateLimited { reason },
            StatusVerdict::NoAnswer(reason) => return PurchaseOutcome::Unknown { reason },
        },
    };
    let answer: PurchaseAnswer = match decode(body) {
        Ok(answer) => answer,
        Err(reason) => return PurchaseOutcome::Unknown { reason },
    };
    let Some(code) = answer.code_result else {
        return PurchaseOutcome::Unknown {
            reason: format!("the answer has no CodeResult: {}", excerpt(body)),
        };
    };
    let message = answer.error_message.unwrap_or_default();
    let service_preview_id = answer.service_preview_id;
    match code.as_str() {
        CODE_ACCEPTED => PurchaseOutcome::Accepted {
            service_preview_id,
            code,
            message,
        },
        CODE_ALREADY_EXISTS => PurchaseOutcome::AlreadyExists {
            service_preview_id,
            code,
            message,
        },
        CODE_RATE_LIMITED => PurchaseOutcome::RateLimited {
            reason: format!("code 160: {message}"),
        },
        c if FATAL_CODES.contains(&c) => PurchaseOutcome::Fatal { code, message },
        c if PACKAGE_FAILED_CODES.contains(&c) => PurchaseOutcome::PackageFailed { code, message },
        // Not in the table (`"0"`, `"100.0"`, `" 100"`, `"777"`…): eSMS may
        // have charged, so it is never read as "not bought".
        _ => PurchaseOutcome::Unknown {
            reason: undocumented_code(&code, &message),
        },
    }
}

/// The reason of an unknown outcome for a code the table does not list:
/// the code quoted exactly as received (so `" 100"` shows its blank) and
/// eSMS's message verbatim. Renderers escape control characters.
fn undocumented_code(code: &str, message: &str) -> String {
    let mut reason =
        format!("eSMS answered code {code:?}, which its documentation does not list for this call");
    if !message.is_empty() {
        reason.push_str(": ");
        reason.push_str(message);
    }
    reason
}

/// The OAs of one `ZNS/GetListZOA/` exchange.
pub fn classify_list_oas(exchange: Exchange<'_>) -> Result<Vec<AccountOa>, CallError> {
    let body = answered_body(exchange)?;
    let answer: ListOasAnswer = decode(body).map_err(|reason| CallError::NoAnswer { reason })?;
    let code = answer.code_result.ok_or_else(|| CallError::NoAnswer {
        reason: format!("the answer has no CodeResult: {}", excerpt(body)),
    })?;
    check_code(&code, answer.error_message)?;
    let mut oas: Vec<AccountOa> = answer
        .zoa_list
        .unwrap_or_default()
        .into_iter()
        .map(|entry| AccountOa {
            oaid: entry.oaid,
            name: entry.oa_name.unwrap_or_default(),
        })
        .collect();
    oas.sort();
    Ok(oas)
}

/// The balance of one `GetBalance_json` exchange (code in `CodeResponse`).
pub fn classify_balance(exchange: Exchange<'_>) -> Result<Balance, CallError> {
    let body = answered_body(exchange)?;
    let answer: BalanceAnswer = decode(body).map_err(|reason| CallError::NoAnswer { reason })?;
    let code = answer.code_response.ok_or_else(|| CallError::NoAnswer {
        reason: format!("the answer has no CodeResponse: {}", excerpt(body)),
    })?;
    check_code(&code, answer.error_message)?;
    let amount = answer.balance.ok_or_else(|| CallError::NoAnswer {
        reason: format!("the answer has no Balance: {}", excerpt(body)),
    })?;
    Ok(Balance {
        amount,
        user_id: answer.user_id,
    })
}

fn answered_body<'a>(exchange: Exchange<'a>) -> Result<&'a [u8], CallError> {
    match exchange {
        Exchange::Failed(TransportFailure::NotSent { reason }) => Err(CallError::NotSent {
            reason: reason.clone(),
        }),
        Exchange::Failed(TransportFailure::Unknown { reason }) => Err(CallError::NoAnswer {
            reason: reason.clone(),
        }),
        Exchange::Answered { status, body } => match check_status(status, body) {
            StatusVerdict::Body => Ok(body),
            StatusVerdict::RateLimited(reason) => Err(CallError::RateLimited { reason }),
            StatusVerdict::NoAnswer(reason) => Err(CallError::NoAnswer { reason }),
        },
    }
}

fn check_code(code: &str, message: Option<String>) -> Result<(), CallError> {
    let message = message.unwrap_or_default();
    match code {
        CODE_ACCEPTED => Ok(()),
        CODE_RATE_LIMITED => Err(CallError::RateLimited {
            reason: format!("code 160: {message}"),
        }),
        _ => Err(CallError::Refused {
            code: code.to_owned(),
            message,
        }),
    }
}

enum StatusVerdict {
    Body,
    RateLimited(String),
    NoAnswer(String),
}

/// eSMS answers 200 even for business errors; any other status means the
/// answer did not come from the API logic (a gateway, a crash), so the body
/// is not believed. 429 is a rate limiter in front of the API, which did
/// not let the request through.
fn check_status(status: u16, body: &[u8]) -> StatusVerdict {
    match status {
        200 => StatusVerdict::Body,
        429 => StatusVerdict::RateLimited("HTTP 429 Too Many Requests".to_owned()),
        s if (500..=599).contains(&s) => {
            StatusVerdict::NoAnswer(format!("HTTP {s} from the server: {}", excerpt(body)))
        }
        s => StatusVerdict::NoAnswer(format!("unexpected HTTP status {s}: {}", excerpt(body))),
    }
}

fn decode<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, String> {
    // An object is required: `"100"` or `[...]` is not an eSMS answer even
    // though it is JSON.
    // Checked without building a tree (`IgnoredAny`): a list of 100,000
    // OAs would otherwise be held twice.
    let is_object = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'{');
    match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
        Ok(_) if is_object => {}
        Ok(_) => {
            return Err(format!(
                "the answer is not a JSON object: {}",
                excerpt(body)
            ));
        }
        Err(_) => return Err(format!("the answer is not JSON: {}", excerpt(body))),
    }
    serde_json::from_slice(body).map_err(|err| {
        format!(
            "the answer has unexpected fields ({err}): {}",
            excerpt(body)
        )
    })
}

/// A short, printable quote of a body for an error message.
///
/// The body must already be scrubbed of the key values (the client does
/// that before classifying): cutting first could split a key so that its
/// start no longer matches. At the cut, a word cut in two is dropped, and
/// so is a trailing `ApiKey`/`SecretKey` field name (or the start of one),
/// so that nothing kept could be the start of a credential.
fn excerpt(body: &[u8]) -> String {
    if body.is_empty() {
        return "empty body".to_owned();
    }
    let text = String::from_utf8_lossy(body);
    let mut chars = text.chars().map(|c| if c.is_control() { ' ' } else { c });
    let mut quoted: String = chars.by_ref().take(EXCERPT_CHARS).collect();
    if let Some(next) = chars.next() {
        drop_cut_fragment(&mut quoted, next);
        quoted.push('…');
    }
    format!("{} bytes: `{}`", body.len(), quoted.trim())
}

/// Removes from the end of `quoted` (a text cut just before `next`) a word
/// the cut split, and then a credential field name or the start of one
/// (`"SecretKey":"`, `ApiKey=`, `"Secr`) with what separates it from the
/// cut.
fn drop_cut_fragment(quoted: &mut String, next: char) {
    if is_word_char(next) {
        let kept = quoted.trim_end_matches(is_word_char).len();
        quoted.truncate(kept);
    }
    let before_separators = quoted.trim_end_matches(|c| !is_word_char(c));
    let word_start = before_separators.trim_end_matches(is_word_char).len();
    let word = before_separators[word_start..].to_ascii_lowercase();
    let names_a_key = !word.is_empty()
        && ["apikey", "secretkey", "api_key", "secret_key"]
            .iter()
            .any(|name| name.starts_with(&word) || word.ends_with(name));
    if names_a_key {
        quoted.truncate(word_start);
    }
}

/// Characters that can be part of a key value or a field name.
fn is_word_char(c: char) -> bool {
    !c.is_whitespace() && !"\"'`,:;=&{}[]()<>|".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn purchase(status: u16, body: &str) -> PurchaseOutcome {
        classify_purchase(Exchange::Answered {
            status,
            body: body.as_bytes(),
        })
    }

    fn ok(body: &str) -> PurchaseOutcome {
        purchase(200, body)
    }

    fn answer(code: &str, message: &str) -> String {
        serde_json::json!({"CodeResult": code, "ErrorMessage": message}).to_string()
    }

    #[test]
    fn accepted_with_id_as_number_or_string() {
        let sample = r#"{"CodeResult": "100", "ErrorMessage": "ViHAT is censoring trademark ownership", "ServicePreviewId": 52330}"#;
        assert_eq!(
            ok(sample),
            PurchaseOutcome::Accepted {
                service_preview_id: Some("52330".into()),
                code: "100".into(),
                message: "ViHAT is censoring trademark ownership".into(),
            }
        );
        let as_string = r#"{"CodeResult": "100", "ErrorMessage": "", "ServicePreviewId": "52330"}"#;
        assert_eq!(ok(as_string).service_preview_id(), Some("52330"));
        assert!(ok(as_string).is_submitted());
        // 100 without an id is still committed: never "unknown".
        let no_id = ok(r#"{"CodeResult": "100"}"#);
        assert!(matches!(
            no_id,
            PurchaseOutcome::Accepted {
                service_preview_id: None,
                ..
            }
        ));
    }

    #[test]
    fn already_exists_counts_as_submitted() {
        let out = ok(&answer("199", "This request already exists"));
        assert!(matches!(out, PurchaseOutcome::AlreadyExists { .. }));
        assert!(out.is_submitted());
        assert_eq!(out.code(), Some("199"));
    }

    #[test]
    fn the_code_table() {
        for code in ["101", "103", "140", "143"] {
            let out = ok(&answer(code, "stop"));
            assert_eq!(
                out,
                PurchaseOutcome::Fatal {
                    code: code.into(),
                    message: "stop".into()
                },
                "{code}"
            );
            assert!(!out.is_retryable() && !out.is_submitted());
        }
        for code in ["102", "204", "799"] {
            let out = ok(&answer(code, "Thông báo nguyên văn"));
            assert_eq!(
                out,
                PurchaseOutcome::PackageFailed {
                    code: code.into(),
                    message: "Thông báo nguyên văn".into()
                },
                "{code}"
            );
            assert!(!out.is_retryable());
        }
        let out = ok(&answer("160", "TPS"));
        assert!(matches!(out, PurchaseOutcome::RateLimited { .. }));
        assert!(out.is_retryable());
        // An integer code is the same code; anything not exactly a listed
        // code is an unknown outcome (eSMS may have charged), never a
        // failure, shown exactly as received.
        assert!(ok(r#"{"CodeResult": 100}"#).is_submitted());
        for body in [
            answer("42", "Thông báo nguyên văn"),
            answer("999", "Thông báo nguyên văn"),
            answer("abc", "Thông báo nguyên văn"),
            answer("0", "Thông báo nguyên văn"),
            answer("100.0", "Thông báo nguyên văn"),
            answer(" 100", "Thông báo nguyên văn"),
            answer(" 199 ", "Thông báo nguyên văn"),
            answer("1000", "Thông báo nguyên văn"),
            answer("102 ", "Thông báo nguyên văn"),
            r#"{"CodeResult": 100.0, "ErrorMessage": "Thông báo nguyên văn"}"#.to_owned(),
            r#"{"CodeResult": 0, "ErrorMessage": "Thông báo nguyên văn"}"#.to_owned(),
        ] {
            let out = ok(&body);
            assert!(out.is_unknown(), "{body} gave {out:?}");
            assert!(!out.is_retryable(), "{body}");
            assert!(
                out.message().contains("Thông báo nguyên văn")
                    && out.message().contains("does not list"),
                "{body} gave {out:?}"
            );
        }
        assert_eq!(
            ok(&answer(" 100", "x")).message(),
            r#"eSMS answered code " 100", which its documentation does not list for this call: x"#
        );
        assert_eq!(
            ok(&answer("0", "")).message(),
            r#"eSMS answered code "0", which its documentation does not list for this call"#
        );
    }

    #[test]
    fn http_status_other_than_200_is_not_believed() {
        let out = purchase(429, "slow down");
        assert!(
            matches!(out, PurchaseOutcome::RateLimited { .. }),
            "{out:?}"
        );
        // Even a body that says 100 is not believed behind a 5xx.
        for status in [500, 502, 503, 504] {
            let out = purchase(status, &answer("100", "ok"));
            assert!(out.is_unknown(), "{status}: {out:?}");
            assert!(out.message().contains(&status.to_string()));
        }
        for status in [201, 204, 301, 400, 404] {
            assert!(
                purchase(status, &answer("100", "")).is_unknown(),
                "{status}"
            );
        }
    }

    #[test]
    fn unreadable_answers_are_unknown() {
        for body in [
            "",
            "<html>Bad gateway</html>",
            "{\"CodeResult\": \"100\"",
            "\"100\"",
            "[]",
            "null",
            "{}",
            r#"{"CodeResult": null}"#,
            r#"{"CodeResult": ""}"#,
            r#"{"CodeResult": {"x": 1}}"#,
            r#"{"ErrorMessage": "no code here"}"#,
            // The balance call's field name is not the purchase's.
            r#"{"CodeResponse": "100"}"#,
        ] {
            let out = ok(body);
            assert!(out.is_unknown(), "{body:?} gave {out:?}");
        }
        let long = "x".repeat(10_000);
        let out = ok(&long);
        assert!(out.message().len() < 300, "excerpt must be short");
    }

    #[test]
    fn transport_failures_pass_through() {
        let not_sent = TransportFailure::NotSent {
            reason: "connection refused".into(),
        };
        assert_eq!(
            classify_purchase(Exchange::Failed(&not_sent)),
            PurchaseOutcome::NotSent {
                reason: "connection refused".into()
            }
        );
        let unknown = TransportFailure::Unknown {
            reason: "timed out".into(),
        };
        assert!(classify_purchase(Exchange::Failed(&unknown)).is_unknown());
        assert!(matches!(
            classify_balance(Exchange::Failed(&not_sent)),
            Err(CallError::NotSent { .. })
        ));
        assert!(matches!(
            classify_list_oas(Exchange::Failed(&unknown)),
            Err(CallError::NoAnswer { .. })
        ));
    }

    #[test]
    fn list_oas_and_balance() {
        let list = r#"{"CodeResult": "100", "ErrorMessage": "success",
            "ZOAList": [{"OAID": "4097311281936189049", "OAName": "SVoucher"}, {"OAID": 745830328927467685, "OAName": "..."}]}"#;
        let oas = classify_list_oas(Exchange::Answered {
            status: 200,
            body: list.as_bytes(),
        })
        .unwrap();
        assert_eq!(
            oas,
            vec![
                AccountOa {
                    oaid: "4097311281936189049".into(),
                    name: "SVoucher".into()
                },
                AccountOa {
                    oaid: "745830328927467685".into(),
                    name: "...".into()
                },
            ]
        );
        let refused = classify_list_oas(Exchange::Answered {
            status: 200,
            body: answer("101", "Authorize Failed").as_bytes(),
        })
        .unwrap_err();
        assert!(refused.is_fatal());
        assert!(refused.to_string().contains("wrong ApiKey or SecretKey"));

        let balance = classify_balance(Exchange::Answered {
            status: 200,
            body: br#"{"Balance": 36693, "CodeResponse": "100", "UserID": 9999}"#,
        })
        .unwrap();
        assert_eq!(
            balance,
            Balance {
                amount: 36693.0,
                user_id: Some("9999".into())
            }
        );
        let bad = classify_balance(Exchange::Answered {
            status: 200,
            body: br#"{"Balance": 0, "CodeResponse": "101", "ErrorMessage": "Authorize Failed"}"#,
        })
        .unwrap_err();
        assert_eq!(
            bad,
            CallError::Refused {
                code: "101".into(),
                message: "Authorize Failed".into()
            }
        );
        // `CodeResult` is not the balance call's field.
        assert!(matches!(
            classify_balance(Exchange::Answered {
                status: 200,
                body: br#"{"Balance": 1, "CodeResult": "100"}"#,
            }),
            Err(CallError::NoAnswer { .. })
        ));
    }
}
