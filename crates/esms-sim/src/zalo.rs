//! The Zalo side of the simulator: an OA's profile (`GET /v2.0/oa/getoa`)
//! and the OA access-token exchange (`POST /v4/oa/access_token`), written
//! from Zalo's public description, not from oapkg.
//!
//! - Tokens are per OA. [`Zalo::authorize`] is what an OA admin does when
//!   they authorise the app: it hands out a fresh access token and a fresh
//!   refresh token for that OA.
//! - A refresh token is single-use: each exchange answers a new pair and
//!   the old refresh token stops working. Every use of every refresh token
//!   is counted, so a test can show that none was used twice.
//! - `getoa` answers the OA's `package_valid_through_date` (`dd/mm/yyyy`):
//!   the last day of the latest package the eSMS side charged for that OA,
//!   once the charge is older than the lag, or a package set by hand
//!   ([`Zalo::set_package`], bought "outside"), whichever ends later.
//! - Wrong or expired tokens get HTTP 200 with a non-zero `error`, as Zalo
//!   answers.
//!
//! No IO here: the routes in `lib.rs` call these under one lock.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use jiff::civil::Date;
use rand::RngExt;
use serde::Serialize;
use serde_json::{Value, json};

use crate::api::Key;
use crate::engine::Charge;

/// The app id the simulator's Zalo app has unless configured otherwise.
pub const DEFAULT_APP_ID: &str = "4318902657531122461";
/// Its app secret unless configured otherwise.
pub const DEFAULT_APP_SECRET: &str = "zs-Xq7Lw2Kp9Rt4Vb8Nm3Jh6";
/// How long an access token lives (Zalo: about 25 hours, `"90000"`).
pub const DEFAULT_ACCESS_TTL: Duration = Duration::from_secs(90_000);

/// Zalo's path of the OA profile, under the OpenAPI host.
pub const GETOA_PATH: &str = "/v2.0/oa/getoa";
/// Zalo's path of the token exchange, under the OAuth host.
pub const ACCESS_TOKEN_PATH: &str = "/v4/oa/access_token";

/// `error` of a `getoa` with an access token Zalo does not know.
pub const ERROR_INVALID_ACCESS_TOKEN: i64 = -216;
/// `error` of a `getoa` with an access token that has expired.
pub const ERROR_EXPIRED_ACCESS_TOKEN: i64 = -124;
/// `error` of an exchange with an unknown or already used refresh token.
pub const ERROR_INVALID_REFRESH_TOKEN: i64 = -14014;
/// `error` of an exchange with a wrong app id or app secret.
pub const ERROR_INVALID_APP: i64 = -14002;

/// An access token and a refresh token for one OA, as an admin's
/// authorisation or an exchange hands them out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ZaloTokens {
    pub oaid: String,
    pub access_token: String,
    pub refresh_token: String,
    /// Seconds, as Zalo writes it: a string.
    pub expires_in: String,
}

/// How many requests of each kind the Zalo side answered.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ZaloStats {
    /// `getoa` requests.
    pub getoa: u64,
    /// `getoa` requests answered with a profile (`error: 0`).
    pub getoa_ok: u64,
    /// Token exchange requests.
    pub exchanges: u64,
    /// Exchanges that handed out a new pair.
    pub exchanges_ok: u64,
    /// Exchanges with a refresh token that had already been used once.
    pub refresh_token_reuses: u64,
}

/// The Zalo app and what it knows (built with [`crate::SimConfig`]).
#[derive(Clone, Debug)]
pub(crate) struct ZaloConfig {
    pub app_id: String,
    pub app_secret: Key,
    pub lag: Duration,
    pub access_ttl: Duration,
    pub packages: BTreeMap<String, (Date, String)>,
}

impl Default for ZaloConfig {
    fn default() -> Self {
        ZaloConfig {
            app_id: DEFAULT_APP_ID.to_owned(),
            app_secret: Key::new(DEFAULT_APP_SECRET),
            lag: Duration::ZERO,
            access_ttl: DEFAULT_ACCESS_TTL,
            packages: BTreeMap::new(),
        }
    }
}

struct AccessToken {
    oaid: String,
    expires: jiff::Timestamp,
}

/// The tokens issued and the counters, behind the simulator's Zalo lock.
pub(crate) struct Zalo {
    config: ZaloConfig,
    access: HashMap<String, AccessToken>,
    /// Every refresh token ever issued: its OA and how often it was used.
    refresh: HashMap<String, (String, u32)>,
    /// Refresh tokens in the order they were issued.
    issued: Vec<String>,
    stats: ZaloStats,
    /// An answer body every `getoa` gets instead of a profile (tests of
    /// odd answers).
    odd_answer: Option<String>,
}

impl Zalo {
    pub(crate) fn new(config: ZaloConfig) -> Zalo {
        Zalo {
            config,
            access: HashMap::new(),
            refresh: HashMap::new(),
            issued: Vec::new(),
            stats: ZaloStats::default(),
            odd_answer: None,
        }
    }

    pub(crate) fn stats(&self) -> ZaloStats {
        self.stats.clone()
    }

    /// How often each refresh token issued so far was used, in the order
    /// they were issued.
    pub(crate) fn refresh_token_uses(&self) -> Vec<u32> {
        self.issued
            .iter()
            .map(|token| self.refresh.get(token).map_or(0, |(_, uses)| *uses))
            .collect()
    }

    pub(crate) fn set_lag(&mut self, lag: Duration) {
        self.config.lag = lag;
    }

    pub(crate) fn set_package(&mut self, oaid: &str, valid_through: Date, name: &str) {
        self.config
            .packages
            .insert(oaid.to_owned(), (valid_through, name.to_owned()));
    }

    pub(crate) fn set_odd_answer(&mut self, body: Option<String>) {
        self.odd_answer = body;
    }

    /// Makes every access token issued so far expired.
    pub(crate) fn expire_access_tokens(&mut self) {
        let past = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(1);
        for token in self.access.values_mut() {
            token.expires = past;
        }
    }

    /// An OA admin authorises the app: a fresh pair for `oaid`.
    pub(crate) fn authorize(&mut self, oaid: &str) -> ZaloTokens {
        self.issue(oaid)
    }

    fn issue(&mut self, oaid: &str) -> ZaloTokens {
        let access_token = random_token("sim-at-");
        let refresh_token = random_token("sim-rt-");
        let ttl = self.config.access_ttl;
        self.access.insert(
            access_token.clone(),
            AccessToken {
                oaid: oaid.to_owned(),
                expires: jiff::Timestamp::now()
                    + jiff::SignedDuration::try_from(ttl).unwrap_or(jiff::SignedDuration::MAX),
            },
        );
        self.refresh
            .insert(refresh_token.clone(), (oaid.to_owned(), 0));
        self.issued.push(refresh_token.clone());
        ZaloTokens {
            oaid: oaid.to_owned(),
            access_token,
            refresh_token,
            expires_in: ttl.as_secs().to_string(),
        }
    }

    /// `POST /v4/oa/access_token`: the header `secret_key` and the form.
    pub(crate) fn exchange(
        &mut self,
        secret_key: Option<&str>,
        form: &[(String, String)],
    ) -> Value {
        self.stats.exchanges += 1;
        let field = |name: &str| {
            form.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        if secret_key != Some(self.config.app_secret.expose())
            || field("app_id") != Some(self.config.app_id.as_str())
        {
            return json!({
                "error": ERROR_INVALID_APP,
                "error_name": "Invalid app",
                "error_description": "app_id or secret_key is wrong",
            });
        }
        if field("grant_type") != Some("refresh_token") {
            return json!({
                "error": -14001,
                "error_name": "Invalid grant type",
                "error_description": "grant_type must be refresh_token",
            });
        }
        let Some(token) = field("refresh_token") else {
            return invalid_refresh();
        };
        let oaid = match self.refresh.get_mut(token) {
            Some((oaid, uses)) => {
                *uses += 1;
                if *uses > 1 {
                    self.stats.refresh_token_reuses += 1;
                    return invalid_refresh();
                }
                oaid.clone()
            }
            None => return invalid_refresh(),
        };
        self.stats.exchanges_ok += 1;
        let pair = self.issue(&oaid);
        json!({
            "access_token": pair.access_token,
            "refresh_token": pair.refresh_token,
            "expires_in": pair.expires_in,
        })
    }

    /// Which OA an access token opens, or the error answer.
    pub(crate) fn admit_getoa(&mut self, access_token: Option<&str>) -> Result<String, Value> {
        self.stats.getoa += 1;
        let Some(token) = access_token.and_then(|t| self.access.get(t)) else {
            return Err(json!({
                "error": ERROR_INVALID_ACCESS_TOKEN,
                "message": "Access token is invalid",
            }));
        };
        if token.expires <= jiff::Timestamp::now() {
            return Err(json!({
                "error": ERROR_EXPIRED_ACCESS_TOKEN,
                "message": "Access token has expired",
            }));
        }
        Ok(token.oaid.clone())
    }

    /// The profile of `oaid` given the eSMS side's charges.
    pub(crate) fn profile(&mut self, oaid: &str, ledger: &[Charge]) -> Result<Value, String> {
        if let Some(body) = &self.odd_answer {
            return Err(body.clone());
        }
        self.stats.getoa_ok += 1;
        let now = jiff::Timestamp::now();
        let lag =
            jiff::SignedDuration::try_from(self.config.lag).unwrap_or(jiff::SignedDuration::MAX);
        let charged = ledger
            .iter()
            .filter(|c| c.oaid == oaid && c.at.checked_add(lag).is_ok_and(|seen| seen <= now))
            .filter_map(|c| {
                Some((
                    last_day(&c.dateactive, &c.duaration)?,
                    package_name(c.package),
                ))
            });
        let outside = self
            .config
            .packages
            .get(oaid)
            .map(|(date, name)| (*date, name.clone()));
        let latest = charged.chain(outside).max_by_key(|(date, _)| *date);
        let (valid_through, name) = match latest {
            Some((date, name)) => (date.strftime("%d/%m/%Y").to_string(), name),
            None => (String::new(), String::new()),
        };
        Ok(json!({
            "data": {
                "oaid": oaid,
                "name": format!("OA {oaid}"),
                "description": "Simulated OA",
                "oa_alias": "",
                "is_verified": true,
                "oa_type": 2,
                "cate_name": "Simulated",
                "num_follower": 0,
                "avatar": "",
                "cover": "",
                "package_name": name,
                "package_valid_through_date": valid_through,
                "package_auto_renew_date": "",
                "linked_zca": "",
            },
            "error": 0,
            "message": "Success",
        }))
    }
}

fn invalid_refresh() -> Value {
    json!({
        "error": ERROR_INVALID_REFRESH_TOKEN,
        "error_name": "Invalid refresh token",
        "error_description": "The refresh token is invalid or has already been used",
    })
}

/// The last day a package starting `dateactive` for `months` months
/// covers: the day before the start plus the months (jiff clamps a day
/// past a shorter month's end).
fn last_day(dateactive: &str, months: &str) -> Option<Date> {
    let start: Date = dateactive.parse().ok()?;
    let months: i64 = months.trim().parse().ok()?;
    start
        .checked_add(jiff::Span::new().months(months))
        .ok()?
        .yesterday()
        .ok()
}

/// The free-text name Zalo shows for a package (language not fixed).
fn package_name(package: u8) -> String {
    match package {
        1 => "Gói Dùng thử",
        2 => "Gói Nâng cao",
        3 => "Gói Cao cấp",
        _ => "Gói OA",
    }
    .to_owned()
}

fn random_token(prefix: &str) -> String {
    let mut rng = rand::rng();
    let tail: String = (0..32)
        .map(|_| {
            let n = rng.random_range(0..36u8);
            char::from(if n < 10 { b'0' + n } else { b'a' + n - 10 })
        })
        .collect();
    format!("{prefix}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_days_follow_the_month_rule() {
        assert_eq!(last_day("2027-01-01", "12"), "2027-12-31".parse().ok());
        assert_eq!(last_day("2027-01-31", "1"), "2027-02-27".parse().ok());
        assert_eq!(last_day("nope", "1"), None);
    }
}
