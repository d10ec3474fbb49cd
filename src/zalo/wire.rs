//! Zalo's answers, field by field, as pure functions from an HTTP answer
//! (status and body, already scrubbed of secrets) to a value or a
//! [`ReadError`]. Anything else than the documented shape is
//! [`ReadError::Odd`]: "not read", never a guess.

use std::fmt;

use jiff::civil::Date;
use serde_json::Value;

use crate::secrets::REDACTED;

/// What `getoa` said about an OA's package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    /// `data.oaid`: the OA the token opened.
    pub oaid: String,
    /// `package_name` verbatim; `None` when empty or absent.
    pub package_name: Option<String>,
    /// `package_valid_through_date`; `None` when empty or absent ("no
    /// package").
    pub valid_through: Option<Date>,
}

/// A new access token and refresh token from the exchange.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    /// `expires_in`, in seconds.
    pub expires_in: u64,
}

impl fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenPair")
            .field("access_token", &REDACTED)
            .field("refresh_token", &REDACTED)
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// Why an OA was not read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// No answer (connection refused, timeout, cut off).
    #[error("no answer from Zalo: {0}")]
    Transport(String),
    #[error("Zalo answered HTTP {status}: {excerpt}")]
    Http { status: u16, excerpt: String },
    /// A non-zero `error`: an invalid or expired token and the like.
    #[error("Zalo answered error {code}: {message}")]
    Refused { code: i64, message: String },
    /// An answer of a shape oapkg does not know.
    #[error("Zalo's answer is not one oapkg understands ({0}); nothing is inferred from it")]
    Odd(String),
}

impl ReadError {
    /// Every text in it passed through `f` (the scrubber).
    pub fn map_text(self, f: impl Fn(&str) -> String) -> ReadError {
        match self {
            ReadError::Transport(t) => ReadError::Transport(f(&t)),
            ReadError::Http { status, excerpt } => ReadError::Http {
                status,
                excerpt: f(&excerpt),
            },
            ReadError::Refused { code, message } => ReadError::Refused {
                code,
                message: f(&message),
            },
            ReadError::Odd(t) => ReadError::Odd(f(&t)),
        }
    }

    /// Whether Zalo refused the token itself (an exchange may help).
    pub fn is_refused(&self) -> bool {
        matches!(self, ReadError::Refused { .. })
    }
}

/// The longest excerpt of an answer quoted in a message.
const EXCERPT_CHARS: usize = 120;

fn excerpt(body: &[u8]) -> String {
    if body.is_empty() {
        return "empty body".to_owned();
    }
    let text = String::from_utf8_lossy(body);
    let cleaned: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    crate::text::cut(&cleaned, Some(EXCERPT_CHARS)).into_owned()
}

fn object(status: u16, body: &[u8]) -> Result<serde_json::Map<String, Value>, ReadError> {
    if status != 200 {
        return Err(ReadError::Http {
            status,
            excerpt: excerpt(body),
        });
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ReadError::Odd("not a JSON object".to_owned())),
        Err(_) => Err(ReadError::Odd(format!("not JSON: {}", excerpt(body)))),
    }
}

/// A text field: `Ok(None)` when absent, null or empty; `Err` for any
/// other type.
fn optional_text(
    map: &serde_json::Map<String, Value>,
    field: &str,
) -> Result<Option<String>, ReadError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ReadError::Odd(format!("`{field}` is not a text"))),
    }
}

fn error_code(map: &serde_json::Map<String, Value>) -> Result<Option<i64>, ReadError> {
    match map.get("error") {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(0) => Ok(None),
            Some(code) => Ok(Some(code)),
            None => Err(ReadError::Odd("`error` is not a whole number".to_owned())),
        },
        Some(_) => Err(ReadError::Odd("`error` is not a number".to_owned())),
    }
}

/// `GET /v2.0/oa/getoa`'s answer.
pub fn classify_profile(status: u16, body: &[u8]) -> Result<Profile, ReadError> {
    let map = object(status, body)?;
    if !map.contains_key("error") {
        return Err(ReadError::Odd("no `error` field".to_owned()));
    }
    if let Some(code) = error_code(&map)? {
        let message = optional_text(&map, "message")
            .ok()
            .flatten()
            .unwrap_or_else(|| "no message".to_owned());
        return Err(ReadError::Refused {
            code,
            message: excerpt(message.as_bytes()),
        });
    }
    let Some(Value::Object(data)) = map.get("data") else {
        return Err(ReadError::Odd("no `data` object".to_owned()));
    };
    let oaid = match data.get("oaid") {
        Some(Value::String(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.clone()
        }
        Some(Value::Number(n)) if n.is_u64() => n.to_string(),
        _ => return Err(ReadError::Odd("`data.oaid` is not an OA id".to_owned())),
    };
    let valid_through = match optional_text(data, "package_valid_through_date")? {
        None => None,
        Some(text) => Some(parse_date(&text).ok_or_else(|| {
            ReadError::Odd(format!(
                "`package_valid_through_date` {:?} is not a date as dd/mm/yyyy",
                crate::text::cut(&text, Some(40))
            ))
        })?),
    };
    let package_name = optional_text(data, "package_name")?;
    Ok(Profile {
        oaid,
        package_name,
        valid_through,
    })
}

/// `dd/mm/yyyy`, exactly, a real calendar day.
pub fn parse_date(text: &str) -> Option<Date> {
    let b = text.as_bytes();
    let shaped = b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 2 || i == 5 {
                *c == b'/'
            } else {
                c.is_ascii_digit()
            }
        });
    if !shaped {
        return None;
    }
    let day: i8 = text[0..2].parse().ok()?;
    let month: i8 = text[3..5].parse().ok()?;
    let year: i16 = text[6..10].parse().ok()?;
    Date::new(year, month, day).ok()
}

/// `POST /v4/oa/access_token`'s answer.
pub fn classify_exchange(status: u16, body: &[u8]) -> Result<TokenPair, ReadError> {
    let map = object(status, body)?;
    if let Some(code) = error_code(&map)? {
        let name = optional_text(&map, "error_name").ok().flatten();
        let description = optional_text(&map, "error_description").ok().flatten();
        let message = match (name, description) {
            (Some(n), Some(d)) => format!("{n}: {d}"),
            (Some(t), None) | (None, Some(t)) => t,
            (None, None) => "no description".to_owned(),
        };
        return Err(ReadError::Refused {
            code,
            message: excerpt(message.as_bytes()),
        });
    }
    let token = |field: &str| match map.get(field) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        _ => Err(ReadError::Odd(format!(
            "no `{field}` in the exchange's answer"
        ))),
    };
    let expires_in = match map.get("expires_in") {
        Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
        Some(Value::Number(n)) => n.as_u64(),
        _ => None,
    }
    .filter(|secs| *secs > 0)
    .ok_or_else(|| ReadError::Odd("`expires_in` is not a number of seconds".to_owned()))?;
    Ok(TokenPair {
        access_token: token("access_token")?,
        refresh_token: token("refresh_token")?,
        expires_in,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(body: &str) -> Result<Profile, ReadError> {
        classify_profile(200, body.as_bytes())
    }

    #[test]
    fn a_profile_gives_its_date_and_name_and_anything_odd_is_not_read() {
        let ok = profile(
            r#"{"data":{"oaid":"4097311281936189049","name":"S","package_name":"Gói Cao cấp",
                "package_valid_through_date":"30/11/2027"},"error":0,"message":"Success"}"#,
        )
        .unwrap();
        assert_eq!(ok.valid_through, Date::new(2027, 11, 30).ok());
        assert_eq!(ok.package_name.as_deref(), Some("Gói Cao cấp"));
        let none =
            profile(r#"{"data":{"oaid":"1","package_valid_through_date":""},"error":0}"#).unwrap();
        assert_eq!(none.valid_through, None);
        for odd in [
            r#"{"data":{"oaid":"1","package_valid_through_date":"2027-11-30"},"error":0}"#,
            r#"{"data":{"oaid":"1","package_valid_through_date":"31/02/2027"},"error":0}"#,
            r#"{"data":{"oaid":"1","package_valid_through_date":12},"error":0}"#,
            r#"{"data":{"oa_id":"1"},"error":0}"#,
            r#"{"data":{"oaid":"1"}}"#,
            r#"{"error":"0","data":{"oaid":"1"}}"#,
            r#"[1]"#,
            "<html>",
        ] {
            assert!(matches!(profile(odd), Err(ReadError::Odd(_))), "{odd}");
        }
        assert_eq!(
            profile(r#"{"error":-216,"message":"Access token is invalid"}"#),
            Err(ReadError::Refused {
                code: -216,
                message: "Access token is invalid".to_owned()
            })
        );
        assert!(matches!(
            classify_profile(502, b"bad gateway"),
            Err(ReadError::Http { status: 502, .. })
        ));
    }

    #[test]
    fn an_exchange_gives_a_pair_or_zalos_error() {
        let pair = classify_exchange(
            200,
            br#"{"access_token":"a1","refresh_token":"r1","expires_in":"90000"}"#,
        )
        .unwrap();
        assert_eq!(pair.expires_in, 90_000);
        assert!(!format!("{pair:?}").contains("r1"));
        let refused = classify_exchange(
            200,
            br#"{"error":-14014,"error_name":"Invalid refresh token","error_description":"used"}"#,
        );
        assert!(matches!(
            refused,
            Err(ReadError::Refused { code: -14014, .. })
        ));
        assert!(matches!(
            classify_exchange(200, br#"{"access_token":"a1","expires_in":"90000"}"#),
            Err(ReadError::Odd(_))
        ));
    }
}
