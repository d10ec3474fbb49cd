//! `oapkg refresh`: read every OA that has a Zalo token, record the
//! observations, settle what they prove, report drift. Also the Zalo flags
//! and client every command that reads Zalo shares (`plan --refresh`,
//! `coverage --refresh`).

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::context::print;
use super::{Context, ListFormat};
use crate::esms::ClientOptions;
use crate::exit::ExitStatus;
use crate::ops::refresh::{self, DEFAULT_CONCURRENCY, Readings, RefreshReport};
use crate::readback::{ZaloRow, ZaloView};
use crate::secrets::Scrubber;
use crate::spec::{Key, Oaid};
use crate::state::State;
use crate::text::{escape_controls, quoted};
use crate::zalo::{APP_SECRET_VAR, TokenSource, ZaloClient, ZaloEndpoints};

/// Where the OA access tokens come from (every command that reads Zalo).
#[derive(Debug, Clone, Args)]
pub struct ZaloArgs {
    /// YAML file of OA tokens: OAID → {access_token, expires_at} or
    /// {refresh_token, app_id} (app secret from ZALO_APP_SECRET); must be
    /// private (chmod 600)
    #[arg(
        long,
        value_name = "FILE",
        env = "OAPKG_ZALO_TOKENS",
        hide_env_values = true
    )]
    pub zalo_tokens: Option<PathBuf>,
    /// Command printing an OA's access token as JSON, run as `CMD OAID`
    /// (split into words, no shell); used instead of --zalo-tokens
    #[arg(long, value_name = "CMD")]
    pub zalo_token_command: Option<String>,
}

impl ZaloArgs {
    pub fn given(&self) -> bool {
        self.zalo_tokens.is_some() || self.zalo_token_command.is_some()
    }

    /// The token source, or an error saying how to give one.
    pub fn open(&self) -> anyhow::Result<TokenSource> {
        let file = if self.zalo_token_command.is_some() {
            None
        } else {
            self.zalo_tokens.as_deref()
        };
        TokenSource::open(file, self.zalo_token_command.as_deref())?.with_context(|| {
            "no Zalo tokens: give --zalo-tokens FILE (or OAPKG_ZALO_TOKENS) or \
             --zalo-token-command CMD (README, \"Knowing what is true\")"
        })
    }
}

#[derive(Debug, Args)]
pub struct RefreshArgs {
    /// Read only this OA, or the OA of this package key (repeatable)
    #[arg(long, value_name = "KEY|OAID")]
    pub only: Vec<String>,
    /// Output format
    #[arg(long, value_enum, default_value_t = ListFormat::Text)]
    pub format: ListFormat,
    /// Zalo requests in flight at most
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CONCURRENCY as u16,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
    #[command(flatten)]
    pub zalo: ZaloArgs,
}

/// The app secret, if set.
fn app_secret() -> Option<String> {
    crate::secrets::from_env([APP_SECRET_VAR])
        .into_iter()
        .next()
}

/// `--only` values as OAIDs (a key stands for its OA).
fn only_oas(only: &[String]) -> anyhow::Result<BTreeSet<Oaid>> {
    only.iter()
        .map(|text| {
            if text.contains('@') {
                Ok(Key::parse_parts(text)
                    .with_context(|| format!("--only {text:?}: not a package key"))?
                    .0)
            } else {
                Oaid::parse(text)
                    .with_context(|| format!("--only {text:?}: expected an OAID or OAID@START"))
            }
        })
        .collect()
}

/// Reads the OAs `only` narrows to (all with a token when empty) through
/// Zalo, with a progress bar on a terminal.
pub fn read_zalo(
    context: &Context,
    zalo: &ZaloArgs,
    state: &State,
    only: &[String],
    concurrency: usize,
) -> anyhow::Result<Readings> {
    let only = only_oas(only)?;
    let mut source = zalo.open()?;
    let oaids = refresh::oas_to_read(&source, state, &only);
    let secret = app_secret();
    let scrubber = Scrubber::new(
        crate::secrets::from_env(
            crate::secrets::ESMS_VARS
                .into_iter()
                .chain(crate::secrets::AWS_VARS)
                .chain([APP_SECRET_VAR]),
        )
        .into_iter()
        .chain(source.secrets()),
    );
    let endpoints = ZaloEndpoints::from_env()?;
    let client = ZaloClient::new(endpoints, scrubber, ClientOptions::default())?;
    let now = context.clock()?.now();
    let bar =
        (!context.global.quiet && oaids.len() > 1 && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(oaids.len() as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} OAs read",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
    let progress = |n: usize| {
        if let Some(bar) = &bar {
            bar.inc(n as u64);
        }
    };
    let readings = context.runtime.block_on(refresh::read(
        &mut source,
        &client,
        &oaids,
        secret.as_deref(),
        concurrency,
        now,
        &progress,
    ));
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(readings?)
}

/// Zalo beside the recorded coverage, for `plan --refresh`: reads every
/// OA with a token (records nothing in the state).
pub fn zalo_rows(context: &Context, zalo: &ZaloArgs) -> anyhow::Result<Vec<ZaloRow>> {
    let today = context.today()?;
    let state = context.load_state()?.state;
    zalo_rows_of(context, zalo, &state, today)
}

/// [`zalo_rows`] against `state`.
pub fn zalo_rows_of(
    context: &Context,
    zalo: &ZaloArgs,
    state: &State,
    today: jiff::civil::Date,
) -> anyhow::Result<Vec<ZaloRow>> {
    let readings = read_zalo(context, zalo, state, &[], DEFAULT_CONCURRENCY)?;
    let mut rows: Vec<ZaloRow> = refresh::assess_all(state, &readings.observed, today)
        .into_iter()
        .filter_map(|a| {
            let observation = readings.observed.get(&a.oaid)?;
            Some(ZaloRow {
                zalo: ZaloView::read(observation, a.drift),
                oaid: a.oaid,
                recorded_through: a.recorded_through,
            })
        })
        .collect();
    let index = crate::readback::by_oa(&state.packages);
    for (oaid, why) in &readings.not_read {
        let recorded_through = index
            .get(oaid)
            .into_iter()
            .flatten()
            .filter(|(_, r)| {
                matches!(
                    r.status,
                    crate::state::Status::Submitted | crate::state::Status::Imported
                )
            })
            .filter_map(|(_, r)| r.spec.end())
            .max();
        rows.push(ZaloRow {
            oaid: oaid.clone(),
            recorded_through,
            zalo: ZaloView::not_read(why),
        });
    }
    rows.sort_by(|a, b| a.oaid.cmp(&b.oaid));
    Ok(rows)
}

pub fn run(context: &Context, args: &RefreshArgs) -> anyhow::Result<ExitStatus> {
    let today = context.today()?;
    let now = context.clock()?.now();
    let (lock, loaded) = context
        .store
        .lock_and_load("oapkg refresh", context.global.lock_timeout())?;
    let mut state = loaded.state;
    let readings = read_zalo(
        context,
        &args.zalo,
        &state,
        &args.only,
        usize::from(args.concurrency),
    )?;
    let failed = !readings.not_read.is_empty();
    let report = refresh::record(&mut state, readings, today, now);
    let serial = if report.readings.observed.is_empty() {
        None
    } else {
        Some(context.store.write(&lock, &mut state)?.serial)
    };
    drop(lock);
    match args.format {
        ListFormat::Json => print(&format!(
            "{}\n",
            serde_json::to_string_pretty(&report.json())?
        ))?,
        ListFormat::Text => print(&text(context, &report, &state, serial))?,
    }
    Ok(if failed {
        ExitStatus::Failure
    } else if report.drifted() > 0 {
        ExitStatus::Changes
    } else {
        ExitStatus::Success
    })
}

fn text(context: &Context, report: &RefreshReport, state: &State, serial: Option<u64>) -> String {
    let r = &report.readings;
    let asked = r.observed.len() + r.not_read.len();
    let mut out = format!(
        "Read {} of {asked} {} with a token through Zalo",
        r.observed.len(),
        if asked == 1 { "OA" } else { "OAs" }
    );
    if r.exchanges > 0 {
        out.push_str(&format!(
            " ({} token {})",
            r.exchanges,
            if r.exchanges == 1 {
                "exchange"
            } else {
                "exchanges"
            }
        ));
    }
    out.push_str(".\n");
    for a in &report.assessments {
        let Some(o) = r.observed.get(&a.oaid) else {
            continue;
        };
        let name = o
            .package_name
            .as_deref()
            .map(|n| format!(" ({})", quoted(n, Some(40))))
            .unwrap_or_default();
        out.push_str(&format!(
            "  {}  Zalo: {}{name}  recorded: {}\n",
            a.oaid,
            crate::readback::show(o.valid_through),
            crate::readback::show(a.recorded_through),
        ));
        for key in &a.settles {
            let end = state.packages.get(key).and_then(|rec| rec.spec.end());
            out.push_str(&format!(
                "  settled {key}: now submitted, confirmed by zalo (Zalo shows the OA valid through {}, \
                 the record ends {}, and no other record explains it)\n",
                crate::readback::show(o.valid_through),
                crate::spec::show_end(end),
            ));
        }
        for evidence in &a.unsettled {
            out.push_str(&format!("  {}: {}\n", evidence.key, evidence.describe(o)));
        }
        if let Some(drift) = &a.drift {
            out.push_str(&format!("  drift {}: {}\n", a.oaid, drift.describe()));
        }
    }
    for (oaid, why) in &r.not_read {
        out.push_str(&format!("  not read {oaid}: {}\n", escape_controls(why)));
    }
    if !r.no_token.is_empty() {
        let shown: Vec<String> = r.no_token.iter().take(10).map(|o| o.to_string()).collect();
        out.push_str(&format!(
            "  no token for {} {}: {}{}\n",
            r.no_token.len(),
            if r.no_token.len() == 1 { "OA" } else { "OAs" },
            shown.join(", "),
            if r.no_token.len() > 10 { ", …" } else { "" }
        ));
    }
    let settled = report.settled().len();
    let drifted = report.drifted();
    out.push_str(&format!(
        "{settled} settled, {drifted} drifted, {} not read.",
        r.not_read.len()
    ));
    match serial {
        Some(serial) => out.push_str(&format!(
            " Observations recorded in {} (state serial {serial}).\n",
            context.store.path().display()
        )),
        None => out.push_str(" Nothing recorded.\n"),
    }
    out
}
