//! What a plan is made from, read from disk: the manifests and the state.
//!
//! `oapkg plan`, `oapkg apply` and every `oapkg watch` cycle read them the
//! same way, here: on two threads (each is about half the time of a large
//! plan), each result kept apart so a caller can tell an invalid manifest
//! from a refused state.

use std::path::PathBuf;

use jiff::civil::Date;

use super::{Plan, Warning, diff};
use crate::manifest::{self, Diagnostic, ManifestError, Manifests};
use crate::state::{Loaded, StateError, StateStore};

/// The manifests and the state as read, each with its own error.
#[derive(Debug)]
pub struct Inputs {
    pub manifests: Result<Manifests, ManifestError>,
    pub state: Result<Loaded, StateError>,
}

impl Inputs {
    /// Reads the manifests under `files` (see [`manifest::load`]) and the
    /// state in `store` (no lock), concurrently.
    pub fn read(files: &[PathBuf], store: &StateStore, today: Date) -> Inputs {
        std::thread::scope(|scope| {
            let state = scope.spawn(|| store.load());
            let manifests = manifest::load(files, today);
            let state = state
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            Inputs { manifests, state }
        })
    }
}

/// The plan for valid manifests against a loaded state: the diff, with the
/// manifests' warnings carried into it.
pub fn make(manifests: &Manifests, loaded: &Loaded, today: Date) -> Plan {
    diff(
        &manifests.desired,
        &loaded.state.packages,
        &loaded.state.failed_attempts,
        loaded.id.clone(),
        today,
        warnings(&manifests.warnings),
    )
}

/// Manifest warnings as plan warnings (the location goes into the message).
pub fn warnings(diagnostics: &[Diagnostic]) -> Vec<Warning> {
    diagnostics
        .iter()
        .map(|w| Warning {
            key: w.key.clone(),
            message: w.to_string(),
        })
        .collect()
}
