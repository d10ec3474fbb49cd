//! Making a plan from what is on disk: the manifests and the state.
//!
//! `oapkg plan`, `oapkg apply` and every `oapkg watch` cycle read them the
//! same way, here: on two threads (each is about half the time of a large
//! plan), each result kept apart so a caller can tell an invalid manifest
//! from a refused state. The plan itself is the pure
//! [`crate::plan::inputs::make`].

use std::path::PathBuf;

use jiff::civil::Date;

use crate::manifest::{self, ManifestError, Manifests};
use crate::plan::{self, Plan};
use crate::state::{Loaded, StateError, Store};

/// The manifests and the state as read, each with its own error.
#[derive(Debug)]
pub struct Inputs {
    pub manifests: Result<Manifests, ManifestError>,
    pub state: Result<Loaded, StateError>,
}

/// Reads the manifests under `files` (see [`manifest::load`]) and the
/// state in `store` (no lock), concurrently.
pub fn read_inputs(files: &[PathBuf], store: &Store, today: Date) -> Inputs {
    std::thread::scope(|scope| {
        let state = scope.spawn(|| store.load());
        let manifests = manifest::load(files, today);
        if let Ok(manifests) = &manifests {
            // The plan needs the hash: computed here, while the state is
            // still being read, rather than after.
            manifests.hash();
        }
        let state = state
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        Inputs { manifests, state }
    })
}

/// Why no plan could be made: the manifests are invalid (checked first;
/// the error carries the warnings found alongside), or the state is refused.
#[derive(Debug, thiserror::Error)]
pub enum InputsError {
    #[error(transparent)]
    Manifests(#[from] ManifestError),
    #[error(transparent)]
    State(#[from] StateError),
    /// The plan's total cost does not fit in a `u64`.
    #[error("the plan cannot be priced")]
    Cost(#[source] crate::prices::CostOverflow),
}

/// Loads manifests and state and diffs them: the plan `plan` shows and
/// `apply` performs.
pub fn make_plan(files: &[PathBuf], store: &Store, today: Date) -> Result<Plan, InputsError> {
    let inputs = read_inputs(files, store, today);
    let (manifests, loaded) = (inputs.manifests?, inputs.state?);
    let mut plan = plan::inputs::make(&manifests, &loaded, today);
    plan.state_location = Some(store.path().display().to_string());
    plan.check_cost().map_err(InputsError::Cost)?;
    // A large desired set and state take tens of milliseconds to free; the
    // plan no longer needs them, so free them beside the rendering.
    std::thread::spawn(move || drop((manifests, loaded)));
    Ok(plan)
}
