//! oapkg: declarative, exactly-once purchasing of Zalo Official Account
//! packages through the eSMS (ViHAT) API.
//!
//! Data flows one way; only the edges touch the outside world:
//!
//! ```text
//! manifest files ──manifest::load──▶ DesiredSet ──┐
//!                                                 ├─ plan::diff (pure) ─▶ Plan ─▶ plan::render
//! state file ─────state::StateStore::load──▶ State┘                        │
//!                                                                          ▼
//!                          apply::apply: guards, pre-flight, executor ──▶ esms::Client (HTTP)
//!                                                │
//!                                                ▼
//!                               state: journal, atomic write, lock
//! watch = file events ─▶ debounce ─▶ the same plan / apply cycle ─▶ WatchEvent ─▶ cli
//! ```
//!
//! # Codemap
//!
//! | module | owns | touches the outside world |
//! |---|---|---|
//! | [`spec`] | the SPEC's words: `Oaid`, `Tier`, `Key`, `Spec`, spec hash, end dates | no |
//! | [`manifest`] | finding and reading manifest files, the YAML shape and JSON Schema, validation with locations | reads files |
//! | [`state`] | the state file: model, checksum, atomic store with backup, writer lock, purchase journal | reads and writes state files |
//! | [`plan`] | the pure diff, the `Plan`, its renderings, the saved plan encoding | no |
//! | [`ops`] | what the commands do, over the core and the stores: making a plan from disk, plan files, the saved-plan freshness check; returns values, never prints | reads manifests, state and plan files; writes plan files |
//! | [`apply`] | carrying out a plan exactly once: guards, pre-flight, retries, durability, cancellation | through `esms` and `state` |
//! | [`esms`] | the eSMS wire format, HTTP client, result-code classes, credentials, the simulator | network |
//! | [`watch`] | following manifest directories and running plan/apply cycles, reported as typed [`watch::WatchEvent`]s | file events |
//! | [`expiring`] | the pure `expiring` report | no |
//! | [`files`] | opening a named file for reading: regular files only, never a wait | opens files |
//! | [`cli`] | clap types, one function per subcommand, errors with a kind and hints (`cli::error`), the only code that prints | stdout, stderr, terminal |
//! | [`exit`] | the exit-status table | no |
//!
//! Each command is a thin function in [`cli`] over [`ops`] and these
//! modules; the library never talks to the user.

pub mod apply;
pub mod cli;
pub mod coverage;
pub mod esms;
pub mod exit;
pub mod expiring;
pub mod files;
#[doc(hidden)]
pub mod fuzz;
pub mod manifest;
pub mod ops;
pub mod plan;
pub mod prices;
pub mod spec;
pub mod state;
pub mod watch;
