//! `oapkg state ...`: read and hand-edit the recorded set, always under the
//! writer lock when writing.

use std::collections::BTreeSet;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use serde::Serialize;

use super::context::print;
use super::{Context, ListFormat};
use crate::exit::ExitStatus;
use crate::ops::state_edit::{self, EditRefused, RmGuard};
use crate::spec::{Key, Oaid, Spec, Tier, parse_date};
use crate::state::{Confirmation, Record, State, Status, UnlockOutcome};
use crate::text::escape_controls;

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// List recorded packages, sorted by key
    List {
        /// Only the packages of this OA
        #[arg(value_name = "OAID")]
        oaid: Option<String>,
        /// Output format: text (a table) or json (an array of objects)
        #[arg(long, value_enum, default_value_t = ListFormat::Text)]
        format: ListFormat,
    },
    /// Show one recorded package
    Show {
        /// The package's key, OAID@START (see `oapkg state list`)
        #[arg(value_name = "KEY")]
        key: String,
        /// Output format: text (one field a line) or json (one object)
        #[arg(long, value_enum, default_value_t = ListFormat::Text)]
        format: ListFormat,
    },
    /// Forget recorded packages (no API call; nothing is refunded)
    ///
    /// Refuses a key still declared in the manifests (the next apply would
    /// buy it again), recorded as unconfirmed (eSMS may have charged for
    /// it), or whose period has not ended (the record guards its OA against
    /// buying those months again), unless --force.
    Rm {
        /// The keys to forget, OAID@START
        #[arg(required = true, value_name = "KEY")]
        keys: Vec<String>,
        /// Remove them even if declared, unconfirmed, not ended, or the
        /// manifests cannot be read (says which guard goes with each)
        #[arg(long)]
        force: bool,
    },
    /// Re-key a record whose start date eSMS registered differently (same
    /// OA; no API call)
    ///
    /// NEWKEY must be declared in the manifests and not recorded; OLDKEY
    /// must not be declared nor unconfirmed (confirm it first).
    Mv {
        /// The key recorded now, OAID@START
        #[arg(value_name = "OLDKEY")]
        old: String,
        /// The key eSMS registered, same OAID with its start date
        #[arg(value_name = "NEWKEY")]
        new: String,
        /// Move it even if OLDKEY is still declared or NEWKEY is not (never
        /// an unconfirmed record)
        #[arg(long)]
        force: bool,
    },
    /// Record a package bought outside oapkg (no API call)
    Import(ImportArgs),
    /// Mark an unconfirmed package submitted after checking it on the eSMS portal
    Confirm {
        /// The unconfirmed package's key, OAID@START
        #[arg(value_name = "KEY")]
        key: String,
        /// eSMS's id for the registration, as shown on the portal
        #[arg(long, value_name = "ID")]
        service_preview_id: Option<String>,
        /// Who checked it, recorded in the state [default: $USER@host]
        #[arg(long, value_name = "NAME")]
        by: Option<String>,
    },
    /// Clear a lock left by a process that is gone (on S3: clear the lease)
    Unlock,
    /// Bring back the backup beside a missing or damaged state, after
    /// checking its checksum (the damaged file is kept aside)
    Restore,
    /// Copy the state, lineage and serial and all, to another location
    /// (a local file or s3://BUCKET/PREFIX), holding its lock; refuses if a
    /// state exists there
    Migrate {
        /// Where to copy it: a file path or s3://BUCKET/PREFIX
        #[arg(long, value_name = "STATE", value_parser = crate::state::state_arg)]
        to: std::path::PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The OA's id (digits)
    #[arg(long)]
    pub oaid: String,
    /// trial, advanced or premium (or 1, 2, 3)
    #[arg(long)]
    pub tier: String,
    /// First day, YYYY-MM-DD
    #[arg(long)]
    pub start: String,
    /// Whole months, 1 to 36
    #[arg(long)]
    pub duration: u8,
    /// eSMS's id for the registration, as shown on the portal, if known
    #[arg(long, value_name = "ID")]
    pub service_preview_id: Option<String>,
    /// Label shown in plans
    #[arg(long)]
    pub name: Option<String>,
}

pub fn run(context: &Context, command: StateCommand) -> anyhow::Result<ExitStatus> {
    match command {
        StateCommand::List { oaid, format } => list(context, oaid.as_deref(), format),
        StateCommand::Show { key, format } => show(context, &key, format),
        StateCommand::Rm { keys, force } => rm(context, &keys, force),
        StateCommand::Mv { old, new, force } => mv(context, &old, &new, force),
        StateCommand::Import(args) => import(context, &args),
        StateCommand::Confirm {
            key,
            service_preview_id,
            by,
        } => confirm(context, &key, service_preview_id, by),
        StateCommand::Migrate { to } => migrate(context, &to),
        StateCommand::Restore => restore(context),
        StateCommand::Unlock => {
            let message = match context.store.unlock()? {
                UnlockOutcome::Cleared {
                    previous_holder: holder,
                } => {
                    format!(
                        "Cleared the lease of pid {} on {} (\"{}\", since {}); if that run is still going, it records nothing more.",
                        holder.pid,
                        escape_controls(&holder.host),
                        escape_controls(&holder.command),
                        escape_controls(&holder.since.to_string())
                    )
                }
                UnlockOutcome::NotLocked => {
                    format!("No {} was held; nothing to do.", context.store.words().lock)
                }
                UnlockOutcome::Removed {
                    previous_holder: Some(holder),
                } => {
                    format!(
                        "Removed the lock file left by pid {} on {} (\"{}\", since {}), which is gone.",
                        holder.pid,
                        escape_controls(&holder.host),
                        escape_controls(&holder.command),
                        escape_controls(&holder.since.to_string())
                    )
                }
                UnlockOutcome::Removed {
                    previous_holder: None,
                } => "Removed a stale lock file.".to_owned(),
            };
            print(&format!("{message}\n"))?;
            Ok(ExitStatus::Success)
        }
    }
}

/// The requests another live process has in flight on the state, for the
/// commands that show it (`plan`, `state list`, `state show`). Showing
/// them is only news: if they cannot be read, say so and show the records
/// as they are (unconfirmed).
pub(super) fn in_flight(context: &Context) -> Option<crate::state::InFlight> {
    match context.store.in_flight() {
        Ok(in_flight) => in_flight,
        Err(error) => {
            if !context.global.quiet {
                let label = crate::plan::render::Paint(context.color_stderr()).warning("warning");
                eprintln!(
                    "{label}: could not tell whether another oapkg is buying now ({error}); unconfirmed packages are shown as such"
                );
            }
            None
        }
    }
}

/// One recorded package as `state list --format json` prints it.
#[derive(Serialize)]
struct Listed<'a> {
    key: &'a Key,
    oaid: &'a Oaid,
    name: &'a Option<String>,
    tier: Tier,
    start: jiff::civil::Date,
    duration_months: u8,
    /// Always a date for a valid state (a period past 9999-12-31 is
    /// refused when the state is read).
    end: Option<jiff::civil::Date>,
    /// The record's status, or `in_flight` for an unconfirmed record whose
    /// request another live oapkg is sending now.
    status: &'static str,
    service_preview_id: &'a Option<String>,
    submitted_at: &'a Option<jiff::Timestamp>,
    result_code: &'a Option<String>,
    result_message: &'a Option<String>,
    spec_hash: &'a crate::spec::SpecHash,
    /// `state confirm`'s who and when; `null` for a record never confirmed.
    /// Flat rather than nested, so `state show` prints them as lines.
    confirmed_by: Option<&'a str>,
    confirmed_at: Option<jiff::Timestamp>,
    /// Bought by a coverage policy's renewal (counts as declared while the
    /// policy exists).
    by_policy: bool,
    /// For `in_flight`: who holds the lock (or lease) with the request in
    /// flight. Only present then.
    #[serde(skip_serializing_if = "Option::is_none")]
    holder: Option<&'a crate::state::LockHolder>,
}

impl<'a> Listed<'a> {
    /// `r` as listed; `in_flight` is what [`in_flight`] found, if anything.
    fn new(
        key: &'a Key,
        r: &'a Record,
        in_flight: Option<&'a crate::state::InFlight>,
    ) -> Listed<'a> {
        let flying = in_flight.filter(|f| r.status == Status::Unconfirmed && f.keys.contains(key));
        Listed {
            key,
            oaid: &r.spec.oaid,
            name: &r.name,
            tier: r.spec.tier,
            start: r.spec.start,
            duration_months: r.spec.duration_months,
            end: r.spec.end(),
            status: if flying.is_some() {
                "in_flight"
            } else {
                r.status.name()
            },
            service_preview_id: &r.service_preview_id,
            submitted_at: &r.submitted_at,
            result_code: &r.result_code,
            result_message: &r.result_message,
            spec_hash: &r.spec_hash,
            confirmed_by: r.confirmed.as_ref().map(|c| c.by.as_str()),
            confirmed_at: r.confirmed.as_ref().map(|c| c.at),
            by_policy: r.by_policy,
            holder: flying.and_then(|f| f.holder.as_ref()),
        }
    }
}

fn list(context: &Context, oaid: Option<&str>, format: ListFormat) -> anyhow::Result<ExitStatus> {
    let oaid = oaid
        .map(|text| Oaid::parse(text).with_context(|| format!("OAID {text:?}")))
        .transpose()?;
    let state = context.load_state()?.state;
    let in_flight = in_flight(context);
    let in_flight = in_flight.as_ref();
    let records: Vec<(&Key, &Record)> = state
        .packages
        .iter()
        .filter(|(_, r)| oaid.as_ref().is_none_or(|o| r.spec.oaid == *o))
        .collect();
    match format {
        ListFormat::Json => {
            let listed: Vec<_> = records
                .iter()
                .map(|(k, r)| Listed::new(k, r, in_flight))
                .collect();
            print(&format!("{}\n", serde_json::to_string_pretty(&listed)?))?;
        }
        ListFormat::Text if records.is_empty() => {
            let of = oaid.map(|o| format!(" for OA {o}")).unwrap_or_default();
            print(&format!(
                "No packages recorded{of} in {}.\n",
                context.store.path().display()
            ))?;
        }
        ListFormat::Text => {
            let rows: Vec<[String; 7]> = records
                .iter()
                .map(|(key, r)| {
                    [
                        key.to_string(),
                        r.name.clone().unwrap_or_else(|| "-".into()),
                        r.spec.tier.to_string(),
                        crate::spec::show_end(r.spec.end()),
                        r.spec.duration_months.to_string(),
                        Listed::new(key, r, in_flight).status.replace('_', " "),
                        r.service_preview_id.clone().unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            let header = [
                "KEY",
                "NAME",
                "TIER",
                "END",
                "MONTHS",
                "STATUS",
                "SERVICE_PREVIEW_ID",
            ]
            .map(String::from);
            // Names and ids come from files and from eSMS.
            let rows: Vec<[String; 7]> = rows
                .into_iter()
                .map(|row| row.map(|cell| escape_controls(&cell).into_owned()))
                .collect();
            let mut out = table(&header, &rows);
            let flying: Vec<&str> = records
                .iter()
                .filter(|(key, r)| Listed::new(key, r, in_flight).status == "in_flight")
                .map(|(key, _)| key.as_str())
                .collect();
            if let (false, Some(in_flight)) = (flying.is_empty(), in_flight) {
                out.push_str(&in_flight_note(&flying, in_flight));
            }
            print(&out)?;
        }
    }
    Ok(ExitStatus::Success)
}

/// The note under a listing with packages in flight: who is buying them,
/// and that their outcome is that run's to record.
fn in_flight_note(keys: &[&str], in_flight: &crate::state::InFlight) -> String {
    format!(
        "\nIn flight: {} sent a purchase request for {} and is waiting for eSMS's answer; \
         that run records the outcome (not unconfirmed: no need to check the portal unless it dies).\n",
        crate::plan::render::holder_line(in_flight.holder.as_ref()),
        crate::spec::key_list(keys),
    )
}

/// Rows under a header, each column as wide as its widest cell, two
/// spaces apart. The cells are printed as given: escape foreign text first.
pub(super) fn table<const N: usize>(header: &[String; N], rows: &[[String; N]]) -> String {
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(header).chain(rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn show(context: &Context, key: &str, format: ListFormat) -> anyhow::Result<ExitStatus> {
    let key = Key::parse(key)?;
    let state = context.load_state()?.state;
    let record = state.packages.get(&key).with_context(|| {
        format!(
            "{key} is not in the state file {}; see `oapkg state list`",
            context.store.path().display()
        )
    })?;
    let in_flight = in_flight(context);
    let listed = Listed::new(&key, record, in_flight.as_ref());
    // The OA's last read-back observation (`oapkg refresh`), if any.
    let observation = state.observations.get(&record.spec.oaid);
    let text = match format {
        ListFormat::Json => {
            let mut value = serde_json::to_value(&listed)?;
            if let (Some(o), Some(map)) = (observation, value.as_object_mut()) {
                map.insert("zalo_observation".to_owned(), serde_json::to_value(o)?);
            }
            format!("{}\n", serde_json::to_string_pretty(&value)?)
        }
        ListFormat::Text => {
            // The fields in the JSON's order (`key` first), one a line;
            // times at second precision.
            let fields: OrderedFields = serde_json::from_str(&serde_json::to_string(&listed)?)?;
            let mut out = String::new();
            for (field, v) in fields.0 {
                let v = match v {
                    _ if field == "holder" => crate::plan::render::holder_line(listed.holder),
                    serde_json::Value::String(s) if field == "status" => s.replace('_', " "),
                    serde_json::Value::String(s) => match s.parse::<jiff::Timestamp>() {
                        Ok(at) => crate::plan::render::to_seconds(at).to_string(),
                        Err(_) => s,
                    },
                    serde_json::Value::Null => "-".into(),
                    other => other.to_string(),
                };
                out.push_str(&format!("{field:<19} {}\n", escape_controls(&v)));
            }
            if let Some(o) = observation {
                let name = o
                    .package_name
                    .as_deref()
                    .map(|n| format!(" ({})", crate::text::quoted(n, Some(40))))
                    .unwrap_or_default();
                out.push_str(&format!(
                    "{:<19} valid through {}{name}, observed {}\n",
                    "zalo_observation",
                    crate::readback::show(o.valid_through),
                    crate::plan::render::to_seconds(o.observed_at)
                ));
            }
            out
        }
    };
    print(&text)?;
    Ok(ExitStatus::Success)
}

/// `oapkg state migrate --to STATE`: the state as loaded under its lock
/// (journal included), written at `to` with the same lineage and serial.
fn migrate(context: &Context, to: &std::path::Path) -> anyhow::Result<ExitStatus> {
    let target = crate::state::Store::open(to, &context.runtime)?;
    if target.path() == context.store.path() {
        bail!(
            "--to names the state itself ({}); pass another location",
            target.path().display()
        );
    }
    let (_lock, loaded) = context
        .store
        .lock_and_load("oapkg state migrate", context.global.lock_timeout())?;
    if !loaded.id.exists() {
        return Err(crate::state::StateError::Missing {
            path: context.store.path().to_owned(),
        }
        .into());
    }
    let id = target.create_copy(&loaded.state)?;
    print(&format!(
        "Copied the state ({} packages, lineage {}, serial {}) from {} to {}. \
         Use --state {} (or OAPKG_STATE) from now on; the source is left as it was.\n",
        loaded.state.packages.len(),
        id.lineage.as_deref().unwrap_or("none"),
        id.serial,
        context.store.path().display(),
        target.path().display(),
        target.path().display(),
    ))?;
    Ok(ExitStatus::Success)
}

/// `oapkg state restore`: the backup back in place of a missing or damaged
/// state (see [`crate::state::StateStore::restore`]).
fn restore(context: &Context) -> anyhow::Result<ExitStatus> {
    let restored = context
        .store
        .restore("oapkg state restore", context.global.lock_timeout())?;
    let path = context.store.path().display();
    let mut out = format!(
        "Restored {path} from {} (lineage {}, serial {}, {} package(s)).\n",
        restored.backup.display(),
        restored.lineage,
        restored.serial,
        restored.packages,
    );
    if let Some(aside) = &restored.damaged_aside {
        out.push_str(&format!(
            "The refused state file was kept aside as {}.\n",
            aside.display()
        ));
    }
    if let Some(journal) = &restored.journal {
        out.push_str(&format!(
            "The journal {} holds purchases recorded since; the next command that writes the \
             state folds them in.\n",
            journal.display()
        ));
    }
    out.push_str(
        "The backup is the version before the last write: anything that write recorded is \
         not in it. Check `oapkg state list` against the eSMS portal and record what is \
         missing with `oapkg state import` before the next apply.\n",
    );
    print(&out)?;
    Ok(ExitStatus::Success)
}

/// A JSON object's fields in the order written (serde_json's own map
/// sorts them).
struct OrderedFields(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for OrderedFields {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = OrderedFields;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<OrderedFields, A::Error> {
                let mut fields = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    fields.push(entry);
                }
                Ok(OrderedFields(fields))
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

/// Loads the state under the writer lock, lets `edit` change it, writes it,
/// and prints `edit`'s message with the new serial at the end of its first
/// line (the lines after it, if any, follow).
fn edit_state(
    context: &Context,
    command: &str,
    edit: impl FnOnce(&mut State) -> anyhow::Result<String>,
) -> anyhow::Result<ExitStatus> {
    let (lock, loaded) = context
        .store
        .lock_and_load(command, context.global.lock_timeout())?;
    let mut state = loaded.state;
    let message = edit(&mut state)?;
    let id = context.store.write(&lock, &mut state)?;
    let (first, rest) = message.split_once('\n').unwrap_or((&message, ""));
    let rest = if rest.is_empty() {
        String::new()
    } else {
        format!("{rest}\n")
    };
    print(&format!("{first} (state serial {})\n{rest}", id.serial))?;
    Ok(ExitStatus::Success)
}

/// `state rm KEY...`: see [`state_edit::rm_guards`] for what it refuses
/// without `--force`, and what `--force` says goes with each record.
fn rm(context: &Context, keys: &[String], force: bool) -> anyhow::Result<ExitStatus> {
    let keys = keys
        .iter()
        .map(|k| Key::parse(k))
        .collect::<Result<BTreeSet<_>, _>>()?;
    let today = context.today()?;
    // Read before the lock, reported after the state: a refused state is
    // the first thing to know.
    let declared = declared_keys(context);
    let path = context.store.path().display().to_string();
    edit_state(context, "oapkg state rm", |state| {
        let missing: Vec<_> = keys
            .iter()
            .filter(|k| !state.packages.contains_key(k))
            .map(Key::as_str)
            .collect();
        if !missing.is_empty() {
            bail!(
                "not in the state file {path}: {}; nothing was removed",
                missing.join(", ")
            );
        }
        let declared = match declared {
            Ok(declared) => Some(declared),
            // Forced: the declared check is given up with the others.
            Err(_) if force => None,
            Err(error) => {
                return Err(error.context(
                    "cannot read the manifests to check that none of these keys is still declared; \
                     nothing was removed. Fix them (or name them with -f), or pass --force to remove anyway",
                ));
            }
        };
        let guarded: Vec<(&Key, Vec<RmGuard>)> = keys
            .iter()
            .map(|key| {
                let source = declared
                    .as_ref()
                    .and_then(|d| d.packages.get(key))
                    .map(|p| &p.source);
                (
                    key,
                    state_edit::rm_guards(&state.packages[key], source, today),
                )
            })
            .filter(|(_, guards)| !guards.is_empty())
            .collect();
        if !force && !guarded.is_empty() {
            return Err(EditRefused {
                summary: format!("refusing to remove from {path}; nothing was removed:"),
                reasons: guarded
                    .iter()
                    .map(|(key, guards)| {
                        let why: Vec<String> = guards.iter().map(|g| g.refusal(key)).collect();
                        format!("{key}: {}", why.join("; "))
                    })
                    .collect(),
                advice: "Pass --force to remove anyway (nothing is refunded; it says which guard \
                         goes with each record)"
                    .to_owned(),
            }
            .into());
        }
        let mut message = format!("Removed {} package(s) from {path}.", keys.len());
        if !guarded.is_empty() || declared.is_none() {
            message.push_str("\nWith --force, these guards go with them:");
        }
        for (key, guards) in &guarded {
            for guard in guards {
                message.push_str(&format!("\n  {key}: {}", guard.forced()));
            }
        }
        if declared.is_none() {
            message.push_str(
                "\n  (the manifests could not be read: whether a key is still declared, and so \
                 bought again by the next apply, was not checked)",
            );
        }
        for key in &keys {
            state.packages.remove(key);
        }
        Ok(message)
    })
}

/// The declared packages `state rm` and `state mv` check against (the
/// usual `-f`, or `oapkg.yaml`); warnings are not their business.
fn declared_keys(context: &Context) -> anyhow::Result<crate::manifest::DesiredSet> {
    let today = context.today()?;
    Ok(crate::manifest::load(&context.global.files, today)?.desired)
}

/// `state mv OLDKEY NEWKEY`: the same purchase under the start date eSMS
/// registered. The record keeps its status, ids and times; its spec takes
/// the new start (and so a new spec hash). See
/// [`state_edit::mv_problems`] for what it refuses.
fn mv(context: &Context, old: &str, new: &str, force: bool) -> anyhow::Result<ExitStatus> {
    let old = Key::parse(old)?;
    let (oaid, start) = Key::parse_parts(new)?;
    let new = Key::new(&oaid, start);
    if old.oaid() != new.oaid() {
        bail!(
            "{old} and {new} are packages of different OAs: `state mv` only moves a record's start date \
             (the OA is what eSMS charged). Record another OA's package with `oapkg state import`"
        );
    }
    if old == new {
        bail!("{old} and {new} are the same key; nothing to move");
    }
    let declared = declared_keys(context);
    let path = context.store.path().display().to_string();
    edit_state(context, "oapkg state mv", |state| {
        let declared = match declared {
            Ok(declared) => Some(declared),
            Err(_) if force => None,
            Err(error) => {
                return Err(error.context(format!(
                    "cannot read the manifests to check that {old} is no longer declared and {new} \
                     is; nothing was moved. Fix them (or name them with -f), or pass --force to \
                     move anyway"
                )));
            }
        };
        let source = |key: &Key| {
            declared
                .as_ref()
                .and_then(|d| d.packages.get(key))
                .map(|p| &p.source)
        };
        let mut problems = state_edit::mv_problems(
            state.packages.get(&old),
            state.packages.contains_key(&new),
            source(&old),
            source(&new),
        );
        if declared.is_none() {
            // Not read, so not known: not reported as if it were.
            problems.retain(|p| !p.forceable());
        }
        let blocking = state_edit::mv_blocking(&problems, force);
        if !blocking.is_empty() {
            let forceable = blocking.iter().any(|p| p.forceable());
            return Err(EditRefused {
                summary: format!("refusing to move {old} to {new} in {path}; nothing was moved:"),
                reasons: blocking.iter().map(|p| p.refusal(&old, &new)).collect(),
                advice: if forceable {
                    "Pass --force to move it anyway despite the manifests (an unconfirmed record \
                     is never moved)"
                        .to_owned()
                } else {
                    String::new()
                },
            }
            .into());
        }
        let Some(mut record) = state.packages.remove(&old) else {
            bail!("{old} is not in the state file {path}; see `oapkg state list`");
        };
        let from = record.spec.start;
        record.spec.start = start;
        record.spec_hash = record.spec.hash();
        state.packages.insert(new.clone(), record);
        let mut message = format!(
            "Moved {old} to {new} in {path} (start {from} -> {start}; status and ids kept)."
        );
        let forced: Vec<String> = problems.iter().map(|p| p.forced(&old, &new)).collect();
        if !forced.is_empty() || declared.is_none() {
            message.push_str("\nWith --force:");
        }
        for line in forced {
            message.push_str(&format!("\n  {line}"));
        }
        if declared.is_none() {
            message.push_str(
                "\n  (the manifests could not be read: whether either key is declared was not checked)",
            );
        }
        Ok(message)
    })
}

fn import(context: &Context, args: &ImportArgs) -> anyhow::Result<ExitStatus> {
    let spec = Spec {
        oaid: Oaid::parse_declared(&args.oaid)
            .with_context(|| format!("--oaid {:?}", args.oaid))?,
        tier: Tier::from_name(&args.tier).with_context(|| {
            format!(
                "--tier {:?}: expected trial, advanced or premium (or 1, 2, 3)",
                args.tier
            )
        })?,
        start: parse_date(&args.start)
            .with_context(|| format!("--start {:?}: expected a date as YYYY-MM-DD", args.start))?,
        duration_months: match args.duration {
            d @ 1..=crate::spec::MAX_DURATION_MONTHS => d,
            d => bail!(
                "--duration {d}: expected whole months, 1 to {}",
                crate::spec::MAX_DURATION_MONTHS
            ),
        },
    };
    let key = spec.key();
    let path = context.store.path().display().to_string();
    edit_state(context, "oapkg state import", |state| {
        if state.packages.contains_key(&key) {
            bail!(
                "{key} is already recorded in {path}; `oapkg state rm {key}` first to record it anew"
            );
        }
        let record = Record {
            spec_hash: spec.hash(),
            spec,
            name: args.name.clone(),
            status: Status::Imported,
            service_preview_id: args.service_preview_id.clone(),
            result_code: None,
            result_message: None,
            submitted_at: Some(jiff::Timestamp::now()),
            confirmed: None,
            by_policy: false,
        };
        state.packages.insert(key.clone(), record);
        Ok(format!("Imported {key} into {path}."))
    })
}

fn confirm(
    context: &Context,
    key: &str,
    service_preview_id: Option<String>,
    by: Option<String>,
) -> anyhow::Result<ExitStatus> {
    let key = Key::parse(key)?;
    let by = match by {
        Some(name) if name.trim().is_empty() => bail!("--by: expected a name, not an empty text"),
        Some(name) => name,
        None => who_confirms(),
    };
    let path = context.store.path().display().to_string();
    edit_state(context, "oapkg state confirm", |state| {
        let record = state
            .packages
            .get_mut(&key)
            .with_context(|| format!("{key} is not in the state file {path}"))?;
        if record.status != Status::Unconfirmed {
            bail!(
                "{key} is {}, not unconfirmed; nothing to confirm",
                record.status.name()
            );
        }
        record.status = Status::Submitted;
        if service_preview_id.is_some() {
            record.service_preview_id = service_preview_id;
        }
        // The unknown outcome's "no definite answer" is no longer true.
        record.result_code = None;
        record.result_message = Some(CONFIRMED_MESSAGE.to_owned());
        record.confirmed = Some(Confirmation {
            by: by.clone(),
            at: jiff::Timestamp::now(),
            observation: None,
        });
        // Bought after all: an earlier failed attempt is no longer news
        // (as when apply records a purchase).
        state.failed_attempts.remove(&key);
        Ok(format!(
            "Confirmed {key} (by {by}): recorded as submitted in {path}."
        ))
    })
}

/// The `result_message` of a record settled by `state confirm`.
pub const CONFIRMED_MESSAGE: &str = "confirmed by hand (oapkg state confirm)";

/// `$USER@host` (`$LOGNAME` when `USER` is unset): who ran `state confirm`.
fn who_confirms() -> String {
    let user = ["USER", "LOGNAME"]
        .iter()
        .filter_map(|var| std::env::var(var).ok())
        .find(|name| !name.trim().is_empty())
        .unwrap_or_else(|| "unknown".to_owned());
    format!("{user}@{}", crate::state::lock::hostname())
}
