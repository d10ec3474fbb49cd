//! Where Zalo's OA API lives: the OpenAPI host (`getoa`) and the OAuth
//! host (the token exchange), from `ZALO_OPENAPI_ENDPOINT` and
//! `ZALO_OAUTH_ENDPOINT`. Tokens travel in headers, so plain `http://` is
//! allowed to loopback only, as for eSMS. Parses URLs; opens nothing.

use reqwest::Url;

use crate::esms::endpoint::is_loopback_host;

/// The production OpenAPI base URL.
pub const OPENAPI_DEFAULT: &str = "https://openapi.zalo.me";
/// The production OAuth base URL.
pub const OAUTH_DEFAULT: &str = "https://oauth.zaloapp.com";
pub const OPENAPI_VAR: &str = "ZALO_OPENAPI_ENDPOINT";
pub const OAUTH_VAR: &str = "ZALO_OAUTH_ENDPOINT";

/// The two URLs oapkg calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZaloEndpoints {
    /// `…/v2.0/oa/getoa`
    pub getoa: Url,
    /// `…/v4/oa/access_token`
    pub access_token: Url,
}

/// Why a base URL is not usable; names the variable, never echoes a URL
/// that could carry a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}: {reason}")]
pub struct ZaloEndpointError {
    pub var: &'static str,
    pub reason: String,
}

impl ZaloEndpoints {
    /// From the environment, with the production hosts as defaults.
    pub fn from_env() -> Result<ZaloEndpoints, ZaloEndpointError> {
        let var = |name| {
            std::env::var(name)
                .ok()
                .filter(|v: &String| !v.trim().is_empty())
        };
        ZaloEndpoints::new(
            var(OPENAPI_VAR).as_deref().unwrap_or(OPENAPI_DEFAULT),
            var(OAUTH_VAR).as_deref().unwrap_or(OAUTH_DEFAULT),
        )
    }

    pub fn new(openapi: &str, oauth: &str) -> Result<ZaloEndpoints, ZaloEndpointError> {
        let getoa = base(OPENAPI_VAR, openapi)?.join("v2.0/oa/getoa");
        let access_token = base(OAUTH_VAR, oauth)?.join("v4/oa/access_token");
        let invalid = |var, reason: String| ZaloEndpointError { var, reason };
        Ok(ZaloEndpoints {
            getoa: getoa.map_err(|e| invalid(OPENAPI_VAR, e.to_string()))?,
            access_token: access_token.map_err(|e| invalid(OAUTH_VAR, e.to_string()))?,
        })
    }

    /// Whether either host is this machine (no proxy then).
    pub fn any_loopback(&self) -> bool {
        is_loopback_host(&self.getoa) || is_loopback_host(&self.access_token)
    }

    /// Whether both hosts are this machine (plain http allowed).
    pub fn all_loopback(&self) -> bool {
        is_loopback_host(&self.getoa) && is_loopback_host(&self.access_token)
    }
}

fn base(var: &'static str, text: &str) -> Result<Url, ZaloEndpointError> {
    let error = |reason: &str| ZaloEndpointError {
        var,
        reason: reason.to_owned(),
    };
    let mut url = Url::parse(text.trim()).map_err(|e| ZaloEndpointError {
        var,
        reason: format!("not a valid absolute URL: {e}"),
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(error("must not contain a user name or password"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(error("must not contain a query or fragment (`?` or `#`)"));
    }
    if url.host_str().is_none() {
        return Err(error("has no host"));
    }
    match url.scheme() {
        "https" => {}
        "http" if is_loopback_host(&url) => {}
        "http" => {
            return Err(error(
                "plain http:// would send OA tokens unencrypted; use https://, or http:// only to \
                 a loopback host (127.0.0.0/8, ::1, localhost)",
            ));
        }
        other => return Err(error(&format!("must use https://, not {other}://"))),
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_join_the_bases_and_http_is_for_loopback_only() {
        let e = ZaloEndpoints::new(OPENAPI_DEFAULT, OAUTH_DEFAULT).unwrap();
        assert_eq!(e.getoa.as_str(), "https://openapi.zalo.me/v2.0/oa/getoa");
        assert_eq!(
            e.access_token.as_str(),
            "https://oauth.zaloapp.com/v4/oa/access_token"
        );
        let local = ZaloEndpoints::new("http://127.0.0.1:9/x", "http://localhost:9").unwrap();
        assert_eq!(local.getoa.as_str(), "http://127.0.0.1:9/x/v2.0/oa/getoa");
        assert!(local.all_loopback());
        let remote = ZaloEndpoints::new("http://example.com", OAUTH_DEFAULT).unwrap_err();
        assert_eq!(remote.var, OPENAPI_VAR);
        assert!(ZaloEndpoints::new(OPENAPI_DEFAULT, "https://u:p@h").is_err());
    }
}
