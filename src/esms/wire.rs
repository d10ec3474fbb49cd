//! The JSON bodies of the three eSMS calls, field for field as the eSMS documentation
//! spells them (including `Duaration`).
//!
//! Requests borrow the keys from [`Credentials`] and implement `Debug` by
//! hand so that no derive can ever print them. Answers are decoded loosely
//! (a code or an id may come as a number or a string, fields may be
//! missing); deciding what an answer *means* is `classify`'s job, not this
//! module's.

use std::fmt;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

use super::credentials::Credentials;
use crate::spec::Spec;

/// Body of `RegisOAPackageJson/`.
#[derive(Serialize)]
pub(crate) struct PurchaseRequest<'a> {
    #[serde(rename = "ApiKey")]
    api_key: &'a str,
    #[serde(rename = "SecretKey")]
    secret_key: &'a str,
    /// Activation date, `yyyy-MM-dd`.
    #[serde(rename = "Dateactive")]
    date_active: String,
    /// Whole months as a decimal string; the misspelling is the API's.
    #[serde(rename = "Duaration")]
    duration: String,
    #[serde(rename = "OAID")]
    oaid: &'a str,
    /// 1 trial, 2 advanced, 3 premium: a JSON number, not a string.
    #[serde(rename = "Package")]
    package: u8,
}

impl<'a> PurchaseRequest<'a> {
    pub(crate) fn new(credentials: &'a Credentials, spec: &'a Spec) -> Self {
        PurchaseRequest {
            api_key: credentials.api_key().expose(),
            secret_key: credentials.secret_key().expose(),
            // jiff prints a civil date as zero-padded `YYYY-MM-DD`, which is
            // the `yyyy-MM-dd` eSMS expects (years 0..=9999 only, as in a Spec).
            date_active: spec.start.to_string(),
            duration: spec.duration_months.to_string(),
            oaid: spec.oaid.as_str(),
            package: spec.tier.api_number(),
        }
    }
}

impl fmt::Debug for PurchaseRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PurchaseRequest")
            .field("ApiKey", &super::credentials::REDACTED)
            .field("SecretKey", &super::credentials::REDACTED)
            .field("Dateactive", &self.date_active)
            .field("Duaration", &self.duration)
            .field("OAID", &self.oaid)
            .field("Package", &self.package)
            .finish()
    }
}

/// Body of `ZNS/GetListZOA/` and `GetBalance_json`: the keys and nothing else.
#[derive(Serialize)]
pub(crate) struct AccountRequest<'a> {
    #[serde(rename = "ApiKey")]
    api_key: &'a str,
    #[serde(rename = "SecretKey")]
    secret_key: &'a str,
}

impl<'a> AccountRequest<'a> {
    pub(crate) fn new(credentials: &'a Credentials) -> Self {
        AccountRequest {
            api_key: credentials.api_key().expose(),
            secret_key: credentials.secret_key().expose(),
        }
    }
}

impl fmt::Debug for AccountRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountRequest")
            .field("ApiKey", &super::credentials::REDACTED)
            .field("SecretKey", &super::credentials::REDACTED)
            .finish()
    }
}

/// Answer of `RegisOAPackageJson/`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct PurchaseAnswer {
    #[serde(rename = "CodeResult", default, deserialize_with = "code_text")]
    pub code_result: Option<String>,
    #[serde(rename = "ErrorMessage", default, deserialize_with = "text_or_number")]
    pub error_message: Option<String>,
    #[serde(
        rename = "ServicePreviewId",
        default,
        deserialize_with = "text_or_number"
    )]
    pub service_preview_id: Option<String>,
}

/// Answer of `ZNS/GetListZOA/`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListOasAnswer {
    #[serde(rename = "CodeResult", default, deserialize_with = "text_or_number")]
    pub code_result: Option<String>,
    #[serde(rename = "ErrorMessage", default, deserialize_with = "text_or_number")]
    pub error_message: Option<String>,
    #[serde(rename = "ZOAList", default)]
    pub zoa_list: Option<Vec<ZoaEntry>>,
}

/// One entry of `ZOAList`.
#[derive(Debug, Deserialize)]
pub(crate) struct ZoaEntry {
    #[serde(rename = "OAID", deserialize_with = "required_text_or_number")]
    pub oaid: String,
    #[serde(rename = "OAName", default, deserialize_with = "text_or_number")]
    pub oa_name: Option<String>,
}

/// Answer of `GetBalance_json`: note `CodeResponse`, not `CodeResult`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct BalanceAnswer {
    #[serde(rename = "CodeResponse", default, deserialize_with = "text_or_number")]
    pub code_response: Option<String>,
    #[serde(rename = "ErrorMessage", default, deserialize_with = "text_or_number")]
    pub error_message: Option<String>,
    #[serde(rename = "Balance", default)]
    pub balance: Option<f64>,
    #[serde(rename = "UserID", default, deserialize_with = "text_or_number")]
    pub user_id: Option<String>,
}

/// A field documented as a string that eSMS sometimes sends as a number
/// (`ServicePreviewId: 52330`): both become the same text. `null`, an empty
/// string and any other JSON type become `None`.
///
/// An integer keeps its exact digits. A number with a fraction or exponent
/// is kept as serde_json prints it; it is then plainly not an id, and the
/// caller shows it as received.
fn text_or_number<'de, D: Deserializer<'de>>(de: D) -> Result<Option<String>, D::Error> {
    let value = serde_json::Value::deserialize(de)?;
    Ok(match value {
        serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

/// A result code exactly as sent: a string is kept verbatim (`" 100"` is
/// not `"100"`; only the empty string is `None`), an integer becomes its
/// digits, and a number with a fraction or exponent keeps the text
/// serde_json prints for it (`100.0`). Deciding what a code means is
/// `classify`'s job, and it matches codes exactly: a code that is not
/// exactly one the documentation lists is an unknown outcome.
fn code_text<'de, D: Deserializer<'de>>(de: D) -> Result<Option<String>, D::Error> {
    let value = serde_json::Value::deserialize(de)?;
    Ok(match value {
        serde_json::Value::String(s) if !s.is_empty() => Some(s),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

fn required_text_or_number<'de, D: Deserializer<'de>>(de: D) -> Result<String, D::Error> {
    text_or_number(de)?.ok_or_else(|| de::Error::custom("expected a string or a number"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Oaid, Tier};

    fn spec() -> Spec {
        Spec {
            oaid: Oaid::parse("4097311281936189049").unwrap(),
            tier: Tier::Premium,
            start: jiff::civil::date(2026, 12, 1),
            duration_months: 12,
        }
    }

    #[test]
    fn purchase_body_has_the_api_field_names_and_types() {
        let creds = Credentials::new("k-api", "k-secret").unwrap();
        let spec = spec();
        let body = serde_json::to_value(PurchaseRequest::new(&creds, &spec)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "ApiKey": "k-api",
                "SecretKey": "k-secret",
                "Dateactive": "2026-12-01",
                "Duaration": "12",
                "OAID": "4097311281936189049",
                "Package": 3,
            })
        );
        let debug = format!("{:?}", PurchaseRequest::new(&creds, &spec));
        assert!(
            !debug.contains("k-api") && !debug.contains("k-secret"),
            "{debug}"
        );
        let debug = format!("{:?}", AccountRequest::new(&creds));
        assert!(
            !debug.contains("k-api") && !debug.contains("k-secret"),
            "{debug}"
        );
    }

    #[test]
    fn single_digit_months_and_days_are_padded_or_not_as_the_api_wants() {
        let creds = Credentials::new("a", "b").unwrap();
        let mut spec = spec();
        spec.start = jiff::civil::date(2027, 3, 5);
        spec.duration_months = 1;
        spec.tier = Tier::Trial;
        let body = serde_json::to_value(PurchaseRequest::new(&creds, &spec)).unwrap();
        assert_eq!(body["Dateactive"], "2027-03-05");
        assert_eq!(body["Duaration"], "1");
        assert_eq!(body["Package"], 1);
    }

    #[test]
    fn answers_accept_numbers_or_strings() {
        let a: PurchaseAnswer = serde_json::from_str(
            r#"{"CodeResult": "100", "ErrorMessage": "ok", "ServicePreviewId": 52330}"#,
        )
        .unwrap();
        assert_eq!(a.code_result.as_deref(), Some("100"));
        assert_eq!(a.service_preview_id.as_deref(), Some("52330"));
        let a: PurchaseAnswer =
            serde_json::from_str(r#"{"CodeResult": 100, "ServicePreviewId": "52331"}"#).unwrap();
        assert_eq!(a.code_result.as_deref(), Some("100"));
        assert_eq!(a.service_preview_id.as_deref(), Some("52331"));
        let a: PurchaseAnswer =
            serde_json::from_str(r#"{"CodeResult": "", "ServicePreviewId": null}"#).unwrap();
        assert_eq!(a.code_result, None);
        assert_eq!(a.service_preview_id, None);
        // A code is kept exactly as sent, blanks and fractions included.
        for (json, code) in [
            (r#"{"CodeResult": " 100"}"#, " 100"),
            (r#"{"CodeResult": "100 "}"#, "100 "),
            (r#"{"CodeResult": " "}"#, " "),
            (r#"{"CodeResult": 100.0}"#, "100.0"),
            (r#"{"CodeResult": "100.0"}"#, "100.0"),
            (r#"{"CodeResult": 0}"#, "0"),
        ] {
            let a: PurchaseAnswer = serde_json::from_str(json).unwrap();
            assert_eq!(a.code_result.as_deref(), Some(code), "{json}");
        }
        // Huge ids keep their digits.
        let a: PurchaseAnswer =
            serde_json::from_str(r#"{"ServicePreviewId": 18446744073709551615}"#).unwrap();
        assert_eq!(
            a.service_preview_id.as_deref(),
            Some("18446744073709551615")
        );
    }
}
