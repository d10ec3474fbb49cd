//! Everything that talks to Zalo's OA API for read-back: the two endpoints,
//! the wire format of the OA profile and of the token exchange, the HTTP
//! client, and the OA access tokens (a token file with safe rotation of
//! single-use refresh tokens, or a token command).
//!
//! It reads; it never decides. What an observation means for the recorded
//! packages (settle, drift) is [`crate::readback`]'s pure judgement, and
//! recording it is `ops::refresh`'s. Any answer it does not understand is
//! "not read" for that OA, never a guess. Facts: `design/read-back.md`.
//!
//! - [`endpoint`]: `ZALO_OPENAPI_ENDPOINT` / `ZALO_OAUTH_ENDPOINT`, https
//!   (or http to loopback only).
//! - [`wire`]: pure functions from an HTTP answer to a [`wire::Profile`] or
//!   a [`wire::TokenPair`], or a [`wire::ReadError`].
//! - [`client`]: the reqwest client (timeouts, bounded bodies, answers
//!   scrubbed of every secret the process knows).
//! - [`tokens`]: where each OA's access token comes from.
//!
//! Secrets: access and refresh tokens, the app secret and the `secret_key`
//! header are never formatted here; `Debug` of a token prints
//! `[redacted]`, and every text from Zalo goes through the
//! [`Scrubber`](crate::secrets::Scrubber) before it is cut for a message.

pub mod client;
pub mod endpoint;
pub mod tokens;
pub mod wire;

pub use client::ZaloClient;
pub use endpoint::ZaloEndpoints;
pub use tokens::{TokenError, TokenSource};
pub use wire::{Profile, ReadError, TokenPair};

/// The environment variable holding the Zalo app's secret (the exchange's
/// `secret_key` header).
pub const APP_SECRET_VAR: &str = "ZALO_APP_SECRET";
