//! Saved plan files at the edge: reading one strictly, writing one
//! atomically, and checking one against the state and manifests of now
//! before `apply PLANFILE` carries it out. The content's encoding is the
//! pure [`crate::plan::saved`]; this module adds the file, and names it in
//! every error (as Terraform's `statefile.Read(io.Reader)` leaves the path
//! to its caller).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use jiff::civil::Date;

use super::plan::{InputsError, read_inputs};
use crate::plan::saved::{DecodeError, Moved, SavedPlan, StalePlan, rederive};
use crate::plan::{self, Plan};
use crate::state::Store;

/// Why a plan file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PlanFileError {
    #[error("cannot read plan file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write plan file {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The content is not a plan oapkg can carry out.
    #[error("plan file {} {error}", path.display())]
    Decode { path: PathBuf, error: DecodeError },
}

impl PlanFileError {
    /// What to do about it, for the user.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            PlanFileError::Decode { error, .. } => error.hint(),
            _ => None,
        }
    }
}

/// The plan a saved plan read from `path` holds ([`SavedPlan::to_plan`],
/// the one parse of its changes), naming the file when it contradicts
/// itself.
pub fn parse(saved: &SavedPlan, path: &Path) -> Result<Plan, PlanFileError> {
    saved.to_plan().map_err(|error| PlanFileError::Decode {
        path: path.to_path_buf(),
        error,
    })
}

/// Reads and checks a plan file (see [`SavedPlan::decode`]): a regular file
/// only ([`crate::files`]).
pub fn read(path: &Path) -> Result<SavedPlan, PlanFileError> {
    let read_error = |source| PlanFileError::Read {
        path: path.to_path_buf(),
        source,
    };
    let bytes = crate::files::read_regular(path).map_err(|e| read_error(e.into_io()))?;
    let content = String::from_utf8(bytes).map_err(|_| {
        read_error(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        ))
    })?;
    SavedPlan::decode(&content).map_err(|error| PlanFileError::Decode {
        path: path.to_path_buf(),
        error,
    })
}

/// Writes the plan file atomically: a temporary file beside it, synced,
/// then renamed over `path`, so a reader sees the old file or the new one.
pub fn write(plan: &SavedPlan, path: &Path) -> Result<(), PlanFileError> {
    let error = |source| PlanFileError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut temp = crate::files::new_version_builder()
        .tempfile_in(dir)
        .map_err(error)?;
    temp.write_all(plan.encode().as_bytes()).map_err(error)?;
    temp.as_file().sync_all().map_err(error)?;
    temp.persist(path).map_err(|e| error(e.error))?;
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(error)?;
    Ok(())
}

/// Each manifest file under `files` (as [`crate::manifest::files`] finds
/// them) and the `sha256:` of its bytes: what a saved plan records so a
/// stale plan's error can name the files that changed. A file that cannot
/// be read is left out (reading the manifests reports it).
pub fn file_hashes(files: &[PathBuf]) -> std::collections::BTreeMap<String, String> {
    crate::manifest::files(files)
        .into_iter()
        .filter_map(|path| {
            let bytes = std::fs::read(&path).ok()?;
            Some((
                path.display().to_string(),
                crate::spec::sha256_tagged(&bytes),
            ))
        })
        .collect()
}

/// Why a saved plan cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum SavedPlanError {
    #[error(transparent)]
    File(#[from] PlanFileError),
    #[error(transparent)]
    Inputs(#[from] InputsError),
    /// The state or the manifests moved since the plan was made, or planning
    /// again does not give the plan as saved.
    #[error("plan file {} cannot be applied", path.display())]
    Stale {
        path: PathBuf,
        #[source]
        stale: StalePlan,
    },
}

/// The plan saved at `path`, if it is still the plan of now: the state and
/// the manifests it was made from have not moved (a state whose content is
/// what the plan saw, with only a crashed run's journal folded since, has
/// not moved), and planning again from them today gives exactly its
/// changes (a file edited by hand, checksum recomputed, or one time moved
/// past buys nothing). Its warnings are then the ones of today.
///
/// The manifests are the `files` given, or when none are the ones the plan
/// was made from.
pub fn plan_to_apply(
    path: &Path,
    files: &[PathBuf],
    store: &Store,
    today: Date,
) -> Result<Plan, SavedPlanError> {
    let saved = read(path)?;
    let mut plan = parse(&saved, path)?;
    let files: Vec<PathBuf> = if files.is_empty() {
        saved.manifest_files.iter().map(PathBuf::from).collect()
    } else {
        files.to_vec()
    };
    let inputs = read_inputs(&files, store, today);
    let manifests = inputs.manifests.map_err(InputsError::from)?;
    let loaded = inputs.state.map_err(InputsError::from)?;
    let stale = |stale| SavedPlanError::Stale {
        path: path.to_path_buf(),
        stale,
    };
    if let Err(mut moved) = saved.check_fresh(&loaded.id, &manifests.hash()) {
        if crate::apply::state_unmoved(&saved.state, &loaded, store.path()) {
            moved.moved.retain(|m| matches!(m, Moved::Manifests { .. }));
        }
        if !moved.moved.is_empty() {
            // Say what changed: the files, and the keys planning again
            // now treats differently.
            let current = plan::inputs::make(&manifests, &loaded, today);
            let explained = moved.explained(&saved, &plan, &current, &file_hashes(&files));
            return Err(stale(explained));
        }
    }
    let current = plan::inputs::make(&manifests, &loaded, today);
    current.check_cost().map_err(InputsError::Cost)?;
    let differences = rederive(&plan, &current);
    if !differences.is_empty() {
        return Err(stale(StalePlan { moved: differences }));
    }
    plan.warnings = current.warnings;
    plan.state_location = Some(store.path().display().to_string());
    // The file's own date is never trusted: what apply shows and checks is
    // dated by apply's clock.
    plan.today = today;
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::render::fixtures;

    fn saved() -> SavedPlan {
        SavedPlan::from_plan(&fixtures::mixed())
    }

    #[test]
    fn round_trips_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plan.json");
        write(&saved(), &file).unwrap();
        assert_eq!(read(&file).unwrap(), saved());
        // Overwriting leaves exactly one file, the new one.
        let mut other = saved();
        other.unchanged = 99;
        write(&other, &file).unwrap();
        assert_eq!(read(&file).unwrap().unchanged, 99);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn errors_name_the_file() {
        let missing = read(Path::new("/nonexistent/oapkg.plan")).unwrap_err();
        assert!(matches!(missing, PlanFileError::Read { .. }));
        assert!(missing.to_string().contains("/nonexistent/oapkg.plan"));

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("prod.tfplan");
        let edited =
            saved()
                .encode()
                .replacen("\"duration_months\": 12", "\"duration_months\": 36", 1);
        std::fs::write(&file, edited).unwrap();
        let error = read(&file).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("prod.tfplan was changed after"),
            "{message}"
        );
        assert_eq!(error.hint(), Some("Run `oapkg plan --out` again"));

        std::fs::write(&file, "{not json").unwrap();
        let message = read(&file).unwrap_err().to_string();
        assert!(
            message.contains("prod.tfplan is not valid JSON"),
            "{message}"
        );
    }
}
