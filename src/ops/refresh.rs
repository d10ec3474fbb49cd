//! Read-back: reading every OA that has a token through Zalo (`read`), and
//! recording what was read in the state (`record`): the observations, the
//! records it settles, the drift (judged by [`crate::readback`]).
//!
//! Reading goes in chunks of [`CHUNK`] OAs: the chunk's refresh tokens that
//! need it are exchanged and the new pairs written to the token file
//! (see [`crate::zalo::tokens`]), then the chunk's OAs are read; at most
//! `concurrency` requests are in flight at any time. An OA whose access
//! token Zalo refuses is exchanged once (if it has a refresh token not yet
//! exchanged in this run) and read once more. Whatever cannot be read is
//! "not read", with why; nothing is inferred from it.

use std::collections::{BTreeMap, BTreeSet};

use futures_util::StreamExt;
use jiff::civil::Date;
use serde::Serialize;

use crate::readback::{self, Assessment};
use crate::spec::{Key, Oaid};
use crate::state::{Observation, State};
use crate::zalo::tokens::AccessToken;
use crate::zalo::{ReadError, TokenError, TokenSource, ZaloClient};

/// OAs exchanged, written and read together.
pub const CHUNK: usize = 64;

/// Zalo requests in flight at most, unless told otherwise.
pub const DEFAULT_CONCURRENCY: usize = 16;

/// What a read of many OAs found.
#[derive(Clone, Debug, Default)]
pub struct Readings {
    pub observed: BTreeMap<Oaid, Observation>,
    /// OAs with a token that could not be read, and why.
    pub not_read: BTreeMap<Oaid, String>,
    /// OAs asked for that have no token.
    pub no_token: Vec<Oaid>,
    /// Token exchanges made (each a refresh token used once).
    pub exchanges: usize,
}

/// Which OAs to read: the token file's, or with a token command those the
/// state knows (records and earlier observations); narrowed by `only`
/// (OAIDs; a key's OA).
pub fn oas_to_read(source: &TokenSource, state: &State, only: &BTreeSet<Oaid>) -> Vec<Oaid> {
    let all: BTreeSet<Oaid> = match source {
        TokenSource::File(file) => file.oaids().into_iter().collect(),
        TokenSource::Command(_) => state
            .packages
            .values()
            .map(|r| r.spec.oaid.clone())
            .chain(state.observations.keys().cloned())
            .chain(only.iter().cloned())
            .collect(),
    };
    if only.is_empty() {
        return all.into_iter().collect();
    }
    only.iter().cloned().collect()
}

/// Reads `oaids` through Zalo with the tokens of `source`, reporting
/// each finished OA to `progress`. A [`TokenError`] stops the run (the
/// token file cannot be written, no app secret); anything else about one
/// OA is that OA's "not read".
pub async fn read(
    source: &mut TokenSource,
    client: &ZaloClient,
    oaids: &[Oaid],
    app_secret: Option<&str>,
    concurrency: usize,
    now: jiff::Timestamp,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<Readings, TokenError> {
    let concurrency = concurrency.max(1);
    let mut readings = Readings::default();
    for chunk in oaids.chunks(CHUNK) {
        let mut failed_exchange: BTreeMap<Oaid, ReadError> = BTreeMap::new();
        if let TokenSource::File(file) = source {
            let need: Vec<Oaid> = chunk
                .iter()
                .filter(|o| file.needs_exchange(o, now))
                .cloned()
                .collect();
            if !need.is_empty() {
                let secret = app_secret.ok_or_else(|| TokenError::NoAppSecret {
                    path: file.path().to_owned(),
                })?;
                readings.exchanges += need.len();
                failed_exchange = file.rotate(&need, client, secret, concurrency, now).await?;
            }
        }
        let tokens = tokens_for(source, chunk, &failed_exchange, concurrency, now).await;
        let mut results = read_with(client, tokens, concurrency).await;

        // Refused tokens get one exchange (if possible) and one more read.
        if let TokenSource::File(file) = source {
            let retry: Vec<Oaid> = results
                .iter()
                .filter(|(o, r)| {
                    matches!(r, Outcome::Failed(Some(e)) if e.is_refused()) && file.can_exchange(o)
                })
                .map(|(o, _)| o.clone())
                .collect();
            if !retry.is_empty() {
                let secret = app_secret.ok_or_else(|| TokenError::NoAppSecret {
                    path: file.path().to_owned(),
                })?;
                readings.exchanges += retry.len();
                let failed = file
                    .rotate(&retry, client, secret, concurrency, now)
                    .await?;
                let again = tokens_for(source, &retry, &failed, concurrency, now).await;
                for (oaid, outcome) in read_with(client, again, concurrency).await {
                    results.insert(oaid, outcome);
                }
            }
        }
        for (oaid, outcome) in results {
            match outcome {
                Outcome::Read(profile) if profile.oaid != oaid.as_str() => {
                    readings.not_read.insert(
                        oaid.clone(),
                        format!(
                            "the token opened OA {}, not {oaid}: nothing is inferred from it; check \
                             the token's entry",
                            crate::text::cut(&crate::text::escape_controls(&profile.oaid), Some(25))
                        ),
                    );
                }
                Outcome::Read(profile) => {
                    readings.observed.insert(
                        oaid,
                        Observation {
                            observed_at: now,
                            package_name: profile.package_name,
                            valid_through: profile.valid_through,
                        },
                    );
                }
                Outcome::NoToken => readings.no_token.push(oaid),
                Outcome::Failed(Some(e)) => {
                    readings.not_read.insert(oaid, e.to_string());
                }
                Outcome::NotReadable(why) => {
                    readings.not_read.insert(oaid, why);
                }
                Outcome::Failed(None) => {}
            }
        }
        progress(chunk.len());
    }
    Ok(readings)
}

enum Outcome {
    Read(crate::zalo::Profile),
    NoToken,
    NotReadable(String),
    Failed(Option<ReadError>),
}

async fn tokens_for(
    source: &TokenSource,
    oaids: &[Oaid],
    failed_exchange: &BTreeMap<Oaid, ReadError>,
    concurrency: usize,
    now: jiff::Timestamp,
) -> Vec<(Oaid, Result<Option<AccessToken>, String>)> {
    match source {
        TokenSource::File(file) => oaids
            .iter()
            .map(|oaid| {
                let token = match failed_exchange.get(oaid) {
                    Some(e) => Err(format!(
                        "its refresh token was refused ({e}); an OA admin must authorise the app again"
                    )),
                    None if !file.has(oaid) => Ok(None),
                    None => file.access_token(oaid, now).map(Some),
                };
                (oaid.clone(), token)
            })
            .collect(),
        TokenSource::Command(command) => {
            futures_util::stream::iter(oaids.iter().cloned().map(|oaid| {
                let command = command.clone();
                async move {
                    let asked = oaid.clone();
                    let token = tokio::task::spawn_blocking(move || command.access_token(&asked))
                        .await
                        .unwrap_or_else(|_| Err("the token command's runner stopped".to_owned()));
                    (oaid, token)
                }
            }))
            .buffer_unordered(concurrency)
            .collect()
            .await
        }
    }
}

async fn read_with(
    client: &ZaloClient,
    tokens: Vec<(Oaid, Result<Option<AccessToken>, String>)>,
    concurrency: usize,
) -> BTreeMap<Oaid, Outcome> {
    futures_util::stream::iter(tokens.into_iter().map(|(oaid, token)| async move {
        let outcome = match token {
            Ok(Some(token)) => match client.getoa(token.expose()).await {
                Ok(profile) => Outcome::Read(profile),
                Err(e) => Outcome::Failed(Some(e)),
            },
            Ok(None) => Outcome::NoToken,
            Err(why) => Outcome::NotReadable(why),
        };
        (oaid, outcome)
    }))
    .buffer_unordered(concurrency)
    .collect()
    .await
}

/// What `refresh` found and did.
#[derive(Clone, Debug, Default)]
pub struct RefreshReport {
    pub readings: Readings,
    pub assessments: Vec<Assessment>,
}

impl RefreshReport {
    pub fn settled(&self) -> Vec<&Key> {
        self.assessments.iter().flat_map(|a| &a.settles).collect()
    }

    pub fn drifted(&self) -> usize {
        self.assessments
            .iter()
            .filter(|a| a.drift.is_some())
            .count()
    }
}

/// Judges every observation against `state`'s records (pure; see
/// [`readback::assess`]).
pub fn assess_all(
    state: &State,
    observed: &BTreeMap<Oaid, Observation>,
    today: Date,
) -> Vec<Assessment> {
    let index = readback::by_oa(&state.packages);
    observed
        .iter()
        .map(|(oaid, observation)| {
            let records = index.get(oaid).map(Vec::as_slice).unwrap_or_default();
            readback::assess(oaid, records, observation, today)
        })
        .collect()
}

/// Records `readings` in `state`: each observation (replacing the OA's
/// last), and the settles. Never removes a record or marks one failed.
pub fn record(
    state: &mut State,
    readings: Readings,
    today: Date,
    now: jiff::Timestamp,
) -> RefreshReport {
    let assessments = assess_all(state, &readings.observed, today);
    for assessment in &assessments {
        let Some(observation) = readings.observed.get(&assessment.oaid) else {
            continue;
        };
        for key in &assessment.settles {
            if let Some(record) = state.packages.get_mut(key) {
                readback::settle(record, observation, now);
                // Bought after all: an earlier failed attempt is no news.
                state.failed_attempts.remove(key);
            }
        }
    }
    for (oaid, observation) in &readings.observed {
        state.observations.insert(oaid.clone(), observation.clone());
    }
    RefreshReport {
        readings,
        assessments,
    }
}

/// The JSON document of `refresh` (documented in docs/json-outputs.md).
#[derive(Serialize)]
pub struct JsonRefresh<'a> {
    pub read: usize,
    pub exchanges: usize,
    pub observations: Vec<JsonObservation<'a>>,
    pub not_read: Vec<JsonNotRead<'a>>,
    pub no_token: Vec<&'a Oaid>,
    pub settled: Vec<&'a Key>,
    pub unconfirmed: Vec<&'a readback::Evidence>,
    pub drift: Vec<JsonDrift<'a>>,
}

#[derive(Serialize)]
pub struct JsonObservation<'a> {
    pub oaid: &'a Oaid,
    pub observed_at: jiff::Timestamp,
    pub package_name: Option<&'a str>,
    pub valid_through: Option<Date>,
    pub recorded_through: Option<Date>,
}

#[derive(Serialize)]
pub struct JsonNotRead<'a> {
    pub oaid: &'a Oaid,
    pub reason: &'a str,
}

#[derive(Serialize)]
pub struct JsonDrift<'a> {
    pub oaid: &'a Oaid,
    #[serde(flatten)]
    pub drift: &'a readback::Drift,
}

impl RefreshReport {
    pub fn json(&self) -> JsonRefresh<'_> {
        JsonRefresh {
            read: self.readings.observed.len(),
            exchanges: self.readings.exchanges,
            observations: self
                .assessments
                .iter()
                .filter_map(|a| {
                    let o = self.readings.observed.get(&a.oaid)?;
                    Some(JsonObservation {
                        oaid: &a.oaid,
                        observed_at: o.observed_at,
                        package_name: o.package_name.as_deref(),
                        valid_through: o.valid_through,
                        recorded_through: a.recorded_through,
                    })
                })
                .collect(),
            not_read: self
                .readings
                .not_read
                .iter()
                .map(|(oaid, reason)| JsonNotRead { oaid, reason })
                .collect(),
            no_token: self.readings.no_token.iter().collect(),
            settled: self.settled(),
            unconfirmed: self.assessments.iter().flat_map(|a| &a.unsettled).collect(),
            drift: self
                .assessments
                .iter()
                .filter_map(|a| {
                    Some(JsonDrift {
                        oaid: &a.oaid,
                        drift: a.drift.as_ref()?,
                    })
                })
                .collect(),
        }
    }
}
