//! The HTTP client for the eSMS API: one request per call, never more.
//!
//! This module owns the connection settings and the one judgement that the
//! pure classifier cannot make: whether a failed request can have reached
//! the server (`transport_failure`). It does not retry, follow redirects or
//! log bodies; retrying a purchase is the apply executor's decision, taken
//! after the intent is on disk.

use std::borrow::Cow;
use std::error::Error as _;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use serde::Serialize;

use super::classify::{
    AccountOa, Balance, CallError, Exchange, PurchaseOutcome, TransportFailure, classify_balance,
    classify_list_oas, classify_purchase,
};
use super::credentials::Credentials;
use super::endpoint::{Call, Endpoint};
use super::wire::{AccountRequest, PurchaseRequest};
use crate::spec::Spec;

/// Timeouts of the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientOptions {
    /// Time allowed to open the TCP connection and finish the TLS
    /// handshake. Running out of it means the request was not sent.
    pub connect_timeout: Duration,
    /// Time allowed for the whole exchange, from the start of the request
    /// to the last byte of the answer. Running out of it after the
    /// connection is made means the outcome is unknown.
    pub request_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// The client could not be set up (e.g. the TLS backend failed to load).
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the HTTP client for eSMS")]
pub struct ClientError(#[source] reqwest::Error);

/// An eSMS account reached through one endpoint.
pub struct Client {
    http: reqwest::Client,
    endpoint: Endpoint,
    credentials: Credentials,
    options: ClientOptions,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint.as_str())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// The HTTP client rules every outgoing API call follows (eSMS and Zalo):
/// timeouts from `options`, no transparent retry (reqwest retries HTTP/2
/// refusals by default) and no redirect (a 307/308 would resend the body,
/// keys or tokens included, elsewhere), no raw-byte or TLS-key logging,
/// HTTPS unless `https_only` is off (loopback endpoints), and short-lived
/// idle connections (an idle pooled connection the server has silently
/// closed turns a request into an "unknown" outcome).
pub(crate) fn http_builder(options: &ClientOptions, https_only: bool) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(concat!("oapkg/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(options.connect_timeout)
        .timeout(options.request_timeout)
        .retry(reqwest::retry::never())
        .redirect(reqwest::redirect::Policy::none())
        // Both are off by default; stated so no later change turns on
        // logging of raw connection bytes or TLS session keys.
        .connection_verbose(false)
        .tls_sslkeylogfile(false)
        .https_only(https_only)
        .pool_idle_timeout(Duration::from_secs(20))
}

impl Client {
    pub fn new(
        endpoint: Endpoint,
        credentials: Credentials,
        options: ClientOptions,
    ) -> Result<Self, ClientError> {
        let mut builder = http_builder(&options, !endpoint.is_loopback());
        if endpoint.is_loopback() {
            // Traffic for this machine must stay on it: no proxy from the
            // environment, and `localhost` resolves to loopback only.
            builder = builder.no_proxy();
            if let Some(port) = endpoint.localhost_port() {
                builder = builder.resolve_to_addrs(
                    "localhost",
                    &[
                        SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                        SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
                    ],
                );
            }
        }
        let http = builder.build().map_err(ClientError)?;
        Ok(Client {
            http,
            endpoint,
            credentials,
            options,
        })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The scrubber of the account keys, for what leaves the process by
    /// another way (notifications).
    pub fn scrubber(&self) -> crate::secrets::Scrubber {
        self.credentials.scrubber()
    }

    /// Sends one `RegisOAPackageJson/` request for `spec`, once, and says
    /// what came of it. Never fails: every possible result is an outcome.
    pub async fn purchase(&self, spec: &Spec) -> PurchaseOutcome {
        tracing::debug!(
            oaid = %spec.oaid,
            package = spec.tier.api_number(),
            start = %spec.start,
            months = spec.duration_months,
            "sending purchase request"
        );
        let body = PurchaseRequest::new(&self.credentials, spec);
        let reply = self.exchange(Call::Purchase, &body).await;
        let outcome = purchase_outcome(&self.credentials, reply.as_exchange());
        tracing::debug!(oaid = %spec.oaid, ?outcome, "purchase answered");
        outcome
    }

    /// The OAs registered to the account (`ZNS/GetListZOA/`), sorted by OAID.
    pub async fn list_oas(&self) -> Result<Vec<AccountOa>, CallError> {
        let body = AccountRequest::new(&self.credentials);
        let reply = self.exchange(Call::ListOas, &body).await;
        list_oas_result(&self.credentials, reply.as_exchange())
    }

    /// The account balance (`GetBalance_json`).
    pub async fn balance(&self) -> Result<Balance, CallError> {
        let body = AccountRequest::new(&self.credentials);
        let reply = self.exchange(Call::Balance, &body).await;
        balance_result(&self.credentials, reply.as_exchange())
    }

    /// One POST, its answer read in full (or the reason there is none).
    async fn exchange(&self, call: Call, body: &impl Serialize) -> Reply {
        let url = self.endpoint.url_for(call);
        // `.json()` sets `Content-Type: application/json`. The body holds
        // the keys: it is handed to reqwest and never formatted here.
        let sent = self.http.post(url).json(body).send().await;
        let mut response = match sent {
            Ok(response) => response,
            Err(err) => {
                let failure = transport_failure(err, &self.options);
                tracing::debug!(%call, ?failure, "no answer");
                return Reply::Failed(failure);
            }
        };
        let status = response.status().as_u16();
        let limit = call.answer_limit();
        // One buffer, sized once when the server says how big the answer
        // is (within the limit), so a large OA list is not copied as the
        // buffer grows.
        let announced = response.content_length().unwrap_or(0);
        let mut bytes = Vec::with_capacity(usize::try_from(announced).unwrap_or(0).min(limit));
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if bytes.len() + chunk.len() > limit {
                        return Reply::Failed(TransportFailure::Unknown {
                            reason: format!(
                                "HTTP {status} with an answer larger than {limit} bytes"
                            ),
                        });
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                // The server had started answering: the request was
                // received, so whatever happened to the body, the outcome
                // is unknown.
                Err(err) => {
                    return Reply::Failed(TransportFailure::Unknown {
                        reason: format!(
                            "HTTP {status}, then the answer was cut off: {}",
                            describe(err, &self.options)
                        ),
                    });
                }
            }
        }
        tracing::trace!(%call, status, bytes = bytes.len(), "answer received");
        Reply::Answered {
            status,
            body: bytes,
        }
    }
}

/// What a purchase exchange means, with nothing of the keys in it: the
/// body is scrubbed of the key values before anything is cut from it for
/// a message, and the texts of the outcome again after (pieces of a key
/// included, see [`Credentials::scrub`]).
pub(crate) fn purchase_outcome(
    credentials: &Credentials,
    exchange: Exchange<'_>,
) -> PurchaseOutcome {
    let body = scrubbed_body(credentials, exchange);
    classify_purchase(with_body(exchange, &body)).map_text(|text| credentials.scrub(text))
}

/// [`purchase_outcome`] for `ZNS/GetListZOA/`.
pub(crate) fn list_oas_result(
    credentials: &Credentials,
    exchange: Exchange<'_>,
) -> Result<Vec<AccountOa>, CallError> {
    let body = scrubbed_body(credentials, exchange);
    classify_list_oas(with_body(exchange, &body))
        .map_err(|err| err.map_text(|text| credentials.scrub(text)))
}

/// [`purchase_outcome`] for `GetBalance_json`.
pub(crate) fn balance_result(
    credentials: &Credentials,
    exchange: Exchange<'_>,
) -> Result<Balance, CallError> {
    let body = scrubbed_body(credentials, exchange);
    classify_balance(with_body(exchange, &body))
        .map_err(|err| err.map_text(|text| credentials.scrub(text)))
}

/// The answer's body with the key values replaced (borrowed when there is
/// nothing to replace); empty when there was no answer.
fn scrubbed_body<'a>(credentials: &Credentials, exchange: Exchange<'a>) -> Cow<'a, [u8]> {
    match exchange {
        Exchange::Answered { body, .. } => credentials.scrub_bytes(body),
        Exchange::Failed(_) => Cow::Borrowed(&[]),
    }
}

/// `exchange` with its body replaced by `body`.
fn with_body<'a>(exchange: Exchange<'a>, body: &'a [u8]) -> Exchange<'a> {
    match exchange {
        Exchange::Answered { status, .. } => Exchange::Answered { status, body },
        failed => failed,
    }
}

enum Reply {
    Answered { status: u16, body: Vec<u8> },
    Failed(TransportFailure),
}

impl Reply {
    fn as_exchange(&self) -> Exchange<'_> {
        match self {
            Reply::Answered { status, body } => Exchange::Answered {
                status: *status,
                body,
            },
            Reply::Failed(failure) => Exchange::Failed(failure),
        }
    }
}

/// Sorts a request that got no answer into "certainly not sent" or
/// "unknown".
///
/// Only one kind of error proves the request never left: a failure of the
/// *connector*, which reqwest reports as `is_connect()` (it finds hyper's
/// `Connect` error kind in the source chain). hyper-util raises that kind
/// only while obtaining a connection (DNS lookup, TCP connect, the connect
/// timeout, TLS handshake, proxy tunnel), before the request is handed to a
/// connection, so no byte of the request was written.
///
/// Everything else is unknown, on purpose even where a closer look could
/// sometimes tell: the overall timeout (`is_timeout()` without
/// `is_connect()`) may fire before, while or after the server processed the
/// body; a reset or EOF while waiting (`is_request()`) happens after the
/// body was written; a body error (`is_body()`/`is_decode()`) happens while
/// the answer arrives. (When a reused pooled connection turns out to be
/// closed before hyper wrote a byte, hyper hands the request back and
/// hyper-util resends it on a new connection by itself: that is safe, as
/// the first copy provably never left. The same hand-back on a fresh
/// connection surfaces as a "canceled" error that reqwest does not let us
/// tell apart, so it counts as unknown.) A wrong "not sent" could buy a
/// package twice; a wrong "unknown" costs a look at the eSMS portal (the
/// package is recorded unconfirmed and not resent without a person).
pub(crate) fn transport_failure(err: reqwest::Error, options: &ClientOptions) -> TransportFailure {
    if err.is_builder() {
        // The request could not even be built: nothing was sent.
        return TransportFailure::NotSent {
            reason: describe(err, options),
        };
    }
    if err.is_connect() {
        TransportFailure::NotSent {
            reason: describe(err, options),
        }
    } else {
        TransportFailure::Unknown {
            reason: describe(err, options),
        }
    }
}

/// The error and its causes on one line, without the URL (reqwest puts it
/// in its message; it holds no key, but it is noise here and the endpoint
/// is reported elsewhere).
fn describe(err: reqwest::Error, options: &ClientOptions) -> String {
    let timed_out = err.is_timeout();
    let connect = err.is_connect();
    let err = err.without_url();
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    if timed_out && connect {
        format!(
            "could not connect within {:?} ({text})",
            options.connect_timeout
        )
    } else if timed_out {
        format!(
            "no complete answer within {:?} ({text})",
            options.request_timeout
        )
    } else {
        text
    }
}
