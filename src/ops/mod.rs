//! Operations: what the commands do, as library functions over the pure
//! core and the stores (cargo's "each command is a thin wrapper around
//! ops").
//!
//! An operation reads and writes files and gathers its inputs, and returns
//! what it found or did; it never prints, asks or decides an exit status.
//! The CLI ([`crate::cli`]) and `watch` call the same operations, so that
//! `plan`, `apply` and a watch cycle cannot drift apart.
//!
//! | operation | what |
//! |---|---|
//! | [`plan::read_inputs`] | the manifests and the state, read concurrently, each with its own error |
//! | [`plan::make_plan`] | those inputs diffed: the plan `plan` shows and `apply` performs |
//! | [`plan_file::read`] / [`plan_file::write`] | a saved plan file, read strictly or written atomically |
//! | [`plan_file::plan_to_apply`] | a saved plan, checked against the state and manifests of now |
//! | [`state_edit`] | the rules of `state rm` and `state mv`: which hand edits could buy twice |
//! | [`approval`] | whether `apply` goes ahead, asks or refuses before buying |
//! | [`apply`] | which plan `apply` carries out, the order of its input checks, when JSON output needs approval |
//! | [`doctor`] | `oapkg doctor`: every dependency of a run checked, read-only, as typed results |
//! | [`refresh`] | read-back: reading OAs through Zalo, recording observations and settles |

pub mod apply;
pub mod approval;
pub mod doctor;
pub mod plan;
pub mod plan_file;
pub mod refresh;
pub mod state_edit;
