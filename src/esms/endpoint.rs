//! Where the eSMS API lives: the base URL, the rule that keys only travel
//! over TLS (or to this machine), and the names of the calls under it.
//!
//! This module only parses and joins URLs; it never opens a connection.

use std::fmt;
use std::net::IpAddr;

use reqwest::Url;

/// The production base URL (the eSMS documentation).
pub const PRODUCTION_BASE: &str = "https://rest.esms.vn/MainService.svc/json/";

/// The API calls oapkg makes, by the path eSMS gives them under the base URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Call {
    /// `RegisOAPackageJson/`: buy one OA package.
    Purchase,
    /// `ZNS/GetListZOA/`: the OAs registered to the account.
    ListOas,
    /// `GetBalance_json`: the account balance.
    Balance,
}

impl Call {
    /// The path relative to the base URL, exactly as the eSMS documentation spells it.
    pub fn path(self) -> &'static str {
        match self {
            Call::Purchase => "RegisOAPackageJson/",
            Call::ListOas => "ZNS/GetListZOA/",
            Call::Balance => "GetBalance_json",
        }
    }

    /// Largest answer body read for this call. A purchase or balance
    /// answer is a few hundred bytes; a bigger body is not an eSMS answer,
    /// and reading it all would only cost memory. `GetListZOA` lists the
    /// whole account without paging, about 100 bytes per OA: 64 MiB holds
    /// some 600,000 OAs.
    pub fn answer_limit(self) -> usize {
        match self {
            Call::Purchase | Call::Balance => 64 * 1024,
            Call::ListOas => 64 * 1024 * 1024,
        }
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.path())
    }
}

/// A checked base URL for the eSMS API, always ending in `/` so that call
/// paths are appended to it rather than replacing its last segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint(Url);

/// Why a text is not a usable endpoint. The input is never echoed whole:
/// it could carry a password in its user-info part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("the eSMS endpoint is not a valid absolute URL: {reason}")]
    Invalid { reason: String },
    #[error("the eSMS endpoint must use https:// (or http:// to this machine), not {scheme}://")]
    UnsupportedScheme { scheme: String },
    #[error(
        "plain http:// would send the account keys unencrypted to {host}; \
         use https://, or http:// only to a loopback host (127.0.0.0/8, ::1, localhost)"
    )]
    InsecureRemote { host: String },
    #[error(
        "the eSMS endpoint must not contain a user name or password; the keys go in the request body"
    )]
    HasUserInfo,
    #[error("the eSMS endpoint must not contain a query or fragment (`?` or `#`)")]
    HasQuery,
    #[error("the eSMS endpoint has no host")]
    NoHost,
}

impl Endpoint {
    /// The production base URL.
    pub fn production() -> Endpoint {
        Endpoint::parse(PRODUCTION_BASE).expect("the production URL is valid")
    }

    /// Checks `text` as a base URL: `https://` anywhere, plain `http://`
    /// only to a loopback host, since the request body carries the keys.
    /// A missing trailing `/` is added.
    pub fn parse(text: &str) -> Result<Endpoint, EndpointError> {
        let mut url = Url::parse(text.trim()).map_err(|err| EndpointError::Invalid {
            reason: err.to_string(),
        })?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(EndpointError::HasUserInfo);
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(EndpointError::HasQuery);
        }
        let host = url.host_str().ok_or(EndpointError::NoHost)?.to_owned();
        match url.scheme() {
            "https" => {}
            "http" => {
                if !is_loopback_host(&url) {
                    return Err(EndpointError::InsecureRemote { host });
                }
            }
            other => {
                return Err(EndpointError::UnsupportedScheme {
                    scheme: other.to_owned(),
                });
            }
        }
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        Ok(Endpoint(url))
    }

    /// The URL of one call under this base.
    pub fn url_for(&self, call: Call) -> Url {
        self.0
            .join(call.path())
            .expect("a relative path joins onto an http(s) base")
    }

    /// Whether the host is this machine (127.0.0.0/8, ::1 or `localhost`).
    pub fn is_loopback(&self) -> bool {
        is_loopback_host(&self.0)
    }

    /// `localhost`, when that is the host: the client pins its resolution to
    /// the loopback addresses rather than trusting the resolver with it.
    pub(crate) fn localhost_port(&self) -> Option<u16> {
        match host_kind(&self.0) {
            HostKind::Localhost => self.0.port_or_known_default(),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl Default for Endpoint {
    fn default() -> Self {
        Endpoint::production()
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

impl std::str::FromStr for Endpoint {
    type Err = EndpointError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Endpoint::parse(s)
    }
}

enum HostKind {
    Localhost,
    Ip(IpAddr),
    Other,
}

/// The host of a parsed URL. `Url` has already normalised it (IPv4 in
/// dotted form even if written `0x7f.1`, IPv6 compressed inside brackets,
/// names lowercased), so plain parsing of `host_str` is exact.
fn host_kind(url: &Url) -> HostKind {
    let Some(host) = url.host_str() else {
        return HostKind::Other;
    };
    if host.eq_ignore_ascii_case("localhost") {
        return HostKind::Localhost;
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    match bare.parse::<IpAddr>() {
        Ok(ip) => HostKind::Ip(ip),
        Err(_) => HostKind::Other,
    }
}

/// Whether `url`'s host is this machine (127.0.0.0/8, ::1 or `localhost`):
/// the one place plain `http://` is allowed (eSMS, an S3 endpoint, webhooks).
pub fn is_loopback_host(url: &Url) -> bool {
    match host_kind(url) {
        HostKind::Localhost => true,
        HostKind::Ip(ip) => ip.is_loopback(),
        HostKind::Other => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_is_the_default_and_joins_every_call() {
        let ep = Endpoint::default();
        assert_eq!(ep.as_str(), PRODUCTION_BASE);
        assert_eq!(
            ep.url_for(Call::Purchase).as_str(),
            "https://rest.esms.vn/MainService.svc/json/RegisOAPackageJson/"
        );
        assert_eq!(
            ep.url_for(Call::ListOas).as_str(),
            "https://rest.esms.vn/MainService.svc/json/ZNS/GetListZOA/"
        );
        assert_eq!(
            ep.url_for(Call::Balance).as_str(),
            "https://rest.esms.vn/MainService.svc/json/GetBalance_json"
        );
    }

    #[test]
    fn trailing_slash_or_not_gives_the_same_urls() {
        let with = Endpoint::parse("http://127.0.0.1:8080/MainService.svc/json/").unwrap();
        let without = Endpoint::parse("http://127.0.0.1:8080/MainService.svc/json").unwrap();
        assert_eq!(with, without);
        assert_eq!(
            without.url_for(Call::Purchase).as_str(),
            "http://127.0.0.1:8080/MainService.svc/json/RegisOAPackageJson/"
        );
        let root = Endpoint::parse("https://esms.example").unwrap();
        assert_eq!(
            root.url_for(Call::Balance).as_str(),
            "https://esms.example/GetBalance_json"
        );
    }

    #[test]
    fn plain_http_only_to_loopback() {
        // Parsing only: none of these opens a connection.
        for ok in [
            "http://127.0.0.1:8080/MainService.svc/json/",
            "http://127.8.9.10/",
            "http://localhost:9/x",
            "http://LOCALHOST/",
            "http://[::1]:8080/MainService.svc/json",
            "https://rest.esms.vn/MainService.svc/json/",
            "https://10.0.0.1/",
        ] {
            assert!(Endpoint::parse(ok).is_ok(), "{ok} must be accepted");
        }
        for (bad, host) in [
            ("http://rest.esms.vn/MainService.svc/json/", "rest.esms.vn"),
            ("http://10.0.0.1:8080/", "10.0.0.1"),
            ("http://128.0.0.1/", "128.0.0.1"),
            ("http://[::2]/", "[::2]"),
            ("http://[::ffff:127.0.0.1]/", "[::ffff:7f00:1]"),
            ("http://localhost.example.com/", "localhost.example.com"),
            ("http://0.0.0.0/", "0.0.0.0"),
        ] {
            let err = Endpoint::parse(bad).unwrap_err();
            assert_eq!(
                err,
                EndpointError::InsecureRemote {
                    host: host.to_owned()
                },
                "{bad}"
            );
            assert!(err.to_string().contains("https://"));
        }
    }

    #[test]
    fn other_shapes_are_refused_without_echoing_secrets() {
        assert!(matches!(
            Endpoint::parse("ftp://esms.example/"),
            Err(EndpointError::UnsupportedScheme { .. })
        ));
        assert!(matches!(
            Endpoint::parse("not a url"),
            Err(EndpointError::Invalid { .. })
        ));
        let err = Endpoint::parse("https://user:hunter2@esms.example/").unwrap_err();
        assert_eq!(err, EndpointError::HasUserInfo);
        assert!(!format!("{err} {err:?}").contains("hunter2"));
        assert_eq!(
            Endpoint::parse("https://esms.example/?a=b").unwrap_err(),
            EndpointError::HasQuery
        );
    }

    #[test]
    fn localhost_is_recognised_for_pinning() {
        assert_eq!(
            Endpoint::parse("http://localhost:8080/")
                .unwrap()
                .localhost_port(),
            Some(8080)
        );
        assert_eq!(
            Endpoint::parse("http://localhost/")
                .unwrap()
                .localhost_port(),
            Some(80)
        );
        assert_eq!(
            Endpoint::parse("http://127.0.0.1:1/")
                .unwrap()
                .localhost_port(),
            None
        );
    }
}
