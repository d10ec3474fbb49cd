//! The HTTP client for Zalo's OA API, under the eSMS client's rules: rustls,
//! plain http only to loopback (see [`super::endpoint`]), connect and
//! request timeouts, no redirect or retry, answers read up to a bound, and
//! every text from the answer scrubbed of every secret the process knows
//! (and of the token of the call) before anything is cut from it.

use std::error::Error as _;
use std::fmt;

use reqwest::header::{CONTENT_TYPE, HeaderValue};

use super::endpoint::ZaloEndpoints;
use super::wire::{Profile, ReadError, TokenPair, classify_exchange, classify_profile};
use crate::esms::ClientOptions;
use crate::esms::client::http_builder;
use crate::secrets::Scrubber;

/// Largest answer read: a profile or a token pair is a few hundred bytes.
const ANSWER_LIMIT: usize = 64 * 1024;

/// The client could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the HTTP client for Zalo")]
pub struct ZaloClientError(#[source] reqwest::Error);

pub struct ZaloClient {
    http: reqwest::Client,
    endpoints: ZaloEndpoints,
    /// The environment's secrets: every answer is scrubbed of them and of
    /// the call's own token.
    scrubber: Scrubber,
    /// Every token the process knows (a token file's): error texts, the
    /// only texts of an answer that reach people, are scrubbed of them too.
    /// Kept apart so that a call costs the same with 6 OAs or 6,000.
    known: Scrubber,
}

impl fmt::Debug for ZaloClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZaloClient")
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

impl ZaloClient {
    /// `scrubber` holds the environment's secrets (the app secret, the
    /// eSMS and S3 keys), `known` every token of the token file; each call
    /// adds its own token.
    pub fn new(
        endpoints: ZaloEndpoints,
        scrubber: Scrubber,
        known: Scrubber,
        options: ClientOptions,
    ) -> Result<ZaloClient, ZaloClientError> {
        // The eSMS client's rules; no redirect also keeps the token header
        // from going elsewhere.
        let mut builder = http_builder(&options, !endpoints.all_loopback());
        if endpoints.any_loopback() {
            builder = builder.no_proxy();
        }
        Ok(ZaloClient {
            http: builder.build().map_err(ZaloClientError)?,
            endpoints,
            scrubber,
            known,
        })
    }

    pub fn endpoints(&self) -> &ZaloEndpoints {
        &self.endpoints
    }

    /// `GET /v2.0/oa/getoa` with the OA's access token.
    pub async fn getoa(&self, access_token: &str) -> Result<Profile, ReadError> {
        let scrubber = self.scrubber.and(&Scrubber::new([access_token.to_owned()]));
        let header = sensitive(access_token)?;
        let request = self
            .http
            .get(self.endpoints.getoa.clone())
            .header("access_token", header);
        let (status, body) = self.exchange_once(request, &scrubber).await?;
        let body = scrubber.scrub_bytes(&body);
        classify_profile(status, &body)
            .map(|mut profile| {
                profile.package_name = profile.package_name.map(|n| scrubber.scrub(&n));
                profile
            })
            .map_err(|e| e.map_text(|t| self.known.scrub(&scrubber.scrub(t))))
    }

    /// `POST /v4/oa/access_token`: a refresh token for a new pair. The old
    /// refresh token stops working once Zalo has answered.
    pub async fn exchange(
        &self,
        app_id: &str,
        refresh_token: &str,
        app_secret: &str,
    ) -> Result<TokenPair, ReadError> {
        let scrubber = self.scrubber.and(&Scrubber::new([
            refresh_token.to_owned(),
            app_secret.to_owned(),
        ]));
        let mut form = reqwest::Url::parse("http://form.invalid/").expect("a valid URL");
        form.query_pairs_mut()
            .append_pair("app_id", app_id)
            .append_pair("grant_type", "refresh_token")
            .append_pair("refresh_token", refresh_token);
        let body = form.query().unwrap_or_default().to_owned();
        let request = self
            .http
            .post(self.endpoints.access_token.clone())
            .header("secret_key", sensitive(app_secret)?)
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            )
            .body(body);
        let (status, answer) = self.exchange_once(request, &scrubber).await?;
        // The answer holds the new tokens: only the error texts are
        // scrubbed (with the old ones); the pair goes to the caller.
        classify_exchange(status, &answer)
            .map_err(|e| e.map_text(|t| self.known.scrub(&scrubber.scrub(t))))
    }

    async fn exchange_once(
        &self,
        request: reqwest::RequestBuilder,
        scrubber: &Scrubber,
    ) -> Result<(u16, Vec<u8>), ReadError> {
        let mut response = request
            .send()
            .await
            .map_err(|e| ReadError::Transport(self.known.scrub(&scrubber.scrub(&describe(e)))))?;
        let status = response.status().as_u16();
        let mut bytes = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if bytes.len() + chunk.len() > ANSWER_LIMIT {
                        return Err(ReadError::Odd(format!(
                            "HTTP {status} with an answer larger than {ANSWER_LIMIT} bytes"
                        )));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(ReadError::Transport(scrubber.scrub(&format!(
                        "HTTP {status}, then the answer was cut off: {}",
                        describe(e)
                    ))));
                }
            }
        }
        tracing::trace!(status, bytes = bytes.len(), "Zalo answer received");
        Ok((status, bytes))
    }
}

/// A header value that is never logged by the HTTP stack.
fn sensitive(value: &str) -> Result<HeaderValue, ReadError> {
    let mut header = HeaderValue::from_str(value.trim()).map_err(|_| {
        ReadError::Odd("a token or secret that cannot be sent in a header".to_owned())
    })?;
    header.set_sensitive(true);
    Ok(header)
}

/// The error and its causes on one line, without the URL.
fn describe(err: reqwest::Error) -> String {
    let timeout = err.is_timeout();
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
    if timeout {
        format!("timed out ({text})")
    } else {
        text
    }
}
