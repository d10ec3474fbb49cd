//! Everything that talks to eSMS: the wire format, the HTTP client, the
//! meaning of result codes and the account keys.
//!
//! This module owns the boundary with the outside world for purchases. It
//! sends exactly the requests it is asked to send, once each, and turns
//! every answer (or the lack of one) into a typed outcome. It never retries,
//! never records anything and never prints: retry, durability and output
//! belong to the apply executor and the CLI.
//!
//! - [`credentials`]: `ESMS_API_KEY`/`ESMS_SECRET_KEY` from the environment
//!   or a private file; a [`Secret`] never prints its value.
//! - [`endpoint`]: the base URL (https, or http to loopback only) and the
//!   call paths.
//! - `wire` (crate-private): the JSON bodies, field for field.
//! - [`classify`]: pure functions from an HTTP exchange to a
//!   [`PurchaseOutcome`] or a [`CallError`].
//! - [`client`]: the reqwest client, and the rule that decides whether a
//!   failed request was certainly not sent.
//!
//! Secrets: the request body holds the keys, so no code here formats a
//! body, a request or a key; everything eSMS sends back that reaches an
//! outcome or error is scrubbed of the key values as a second line of
//! defence.

pub mod classify;
pub mod client;
pub mod credentials;
pub mod endpoint;
pub(crate) mod wire;

pub use classify::{
    AccountOa, Balance, CallError, Exchange, PurchaseOutcome, TransportFailure, classify_balance,
    classify_list_oas, classify_purchase, code_meaning,
};
pub use client::{Client, ClientError, ClientOptions};
pub use credentials::{Credentials, CredentialsError, Secret};
pub use endpoint::{Call, Endpoint, EndpointError, PRODUCTION_BASE};

#[cfg(test)]
mod tests;
