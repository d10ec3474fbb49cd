//! The rules `apply` follows before the run, as functions a test calls
//! without a terminal: which plan it carries out (a reviewed plan file, or
//! a plan made now), in what order the inputs are checked, and when JSON
//! output needs approval given up front. The run itself is
//! [`crate::apply::apply`]; whether to ask is [`super::approval`].
//!
//! The order is the SPEC's: the credentials are read first ("a clear error
//! before anything else happens"; the caller reads them and passes their
//! values here as `keys`), then the manifests are searched for those values
//! (a key pasted into a name must never reach a plan), then the plan is
//! made or read, then a missing state is refused (against it the plan would
//! buy every package again). Nothing here prints, asks or sends.

use std::path::{Path, PathBuf};

use jiff::civil::Date;

use super::plan::{InputsError, make_plan};
use super::plan_file::{SavedPlanError, plan_to_apply};
use crate::manifest::ManifestError;
use crate::plan::Plan;
use crate::secrets::Forbidden;
use crate::state::{StateError, Store};

/// Where the plan to carry out comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source<'a> {
    /// A plan saved by `plan --out`: reviewed, so no question is asked;
    /// checked against the state and manifests of now.
    File(&'a Path),
    /// A plan made now from the manifests and the state.
    Fresh,
}

impl<'a> Source<'a> {
    /// The source a `PLANFILE` argument names: the file when given.
    pub fn of(planfile: Option<&'a Path>) -> Source<'a> {
        planfile.map_or(Source::Fresh, Source::File)
    }

    /// Whether the plan was reviewed before this run (a plan file).
    pub fn reviewed(self) -> bool {
        matches!(self, Source::File(_))
    }
}

/// The plan `apply` carries out, and whether it was reviewed.
#[derive(Debug)]
pub struct ToApply {
    pub plan: Plan,
    pub reviewed: bool,
}

/// Why `apply` stops before showing a plan.
#[derive(Debug, thiserror::Error)]
pub enum ApplyInputsError {
    /// `--format json` without a plan file or `--auto-approve`: JSON output
    /// shows no plan, so nobody could approve it.
    #[error("apply --format json does not show the plan, so it cannot ask to confirm it")]
    JsonUnapproved,
    /// A manifest holds the eSMS ApiKey or SecretKey (the diagnostics name
    /// file and line, never the value).
    #[error(transparent)]
    KeyInManifests(ManifestError),
    /// The plan file cannot be read, or the world moved past it.
    #[error(transparent)]
    Saved(SavedPlanError),
    /// The manifests or the state cannot make a plan.
    #[error(transparent)]
    Inputs(InputsError),
    /// No state at the location: never bought against.
    #[error(transparent)]
    NoState(StateError),
}

impl ApplyInputsError {
    /// What to do about it, for the errors whose inner error has no hint
    /// of its own.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            ApplyInputsError::JsonUnapproved => Some(
                "Review the plan with `oapkg plan`, then run `oapkg apply --format json --auto-approve`, \
                 or save it with `oapkg plan --out PLANFILE` and run `oapkg apply PLANFILE --format json`",
            ),
            _ => None,
        }
    }
}

/// The "JSON output needs approval" rule: `apply --format json` shows no
/// plan and asks no question, so it needs the plan approved up front — a
/// reviewed plan file or `--auto-approve`.
pub fn check_json_approval(
    json: bool,
    source: Source<'_>,
    auto_approve: bool,
) -> Result<(), ApplyInputsError> {
    if json && !source.reviewed() && !auto_approve {
        return Err(ApplyInputsError::JsonUnapproved);
    }
    Ok(())
}

/// The secret check of the manifests: `Err` naming every file and line
/// that holds one of `keys` (the eSMS ApiKey and SecretKey values), never
/// the value.
pub fn refuse_keys_in_manifests(
    files: &[PathBuf],
    keys: &[Forbidden],
) -> Result<(), ApplyInputsError> {
    let errors = crate::secrets::in_manifests(&crate::manifest::files(files), keys);
    if errors.is_empty() {
        return Ok(());
    }
    Err(ApplyInputsError::KeyInManifests(ManifestError {
        errors,
        warnings: Vec::new(),
    }))
}

/// The plan `apply` carries out, checked in the SPEC's order (see the
/// module docs): the manifests searched for `keys` first, then the plan
/// from `source`, then a missing state refused.
pub fn plan_to_carry_out(
    source: Source<'_>,
    files: &[PathBuf],
    store: &Store,
    today: Date,
    keys: &[Forbidden],
) -> Result<ToApply, ApplyInputsError> {
    refuse_keys_in_manifests(files, keys)?;
    let plan = match source {
        Source::File(path) => {
            plan_to_apply(path, files, store, today).map_err(ApplyInputsError::Saved)?
        }
        Source::Fresh => make_plan(files, store, today).map_err(ApplyInputsError::Inputs)?,
    };
    if !plan.state.exists() {
        return Err(ApplyInputsError::NoState(StateError::Missing {
            path: store.path().to_owned(),
        }));
    }
    Ok(ToApply {
        plan,
        reviewed: source.reviewed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_output_needs_a_plan_file_or_auto_approve() {
        let file = Source::File(Path::new("p.plan"));
        // (json, source, auto_approve) -> allowed
        let rows = [
            (false, Source::Fresh, false, true),
            (true, Source::Fresh, true, true),
            (true, file, false, true),
            (true, Source::Fresh, false, false),
        ];
        for (json, source, auto, allowed) in rows {
            assert_eq!(
                check_json_approval(json, source, auto).is_ok(),
                allowed,
                "{json} {source:?} {auto}"
            );
        }
        let refused = check_json_approval(true, Source::Fresh, false).unwrap_err();
        assert!(refused.hint().unwrap().contains("--auto-approve"));
    }

    #[test]
    fn a_plan_file_is_reviewed_and_a_fresh_plan_is_not() {
        assert_eq!(Source::of(None), Source::Fresh);
        let path = Path::new("p.plan");
        assert_eq!(Source::of(Some(path)), Source::File(path));
        assert!(Source::File(path).reviewed() && !Source::Fresh.reviewed());
    }

    /// A manifest in a temp dir holding `value` as a package name.
    fn manifest_with(dir: &Path, value: &str) -> PathBuf {
        let path = dir.join("oapkg.yaml");
        std::fs::write(
            &path,
            format!(
                "apiVersion: oapkg/v1\nkind: PackageSet\npackages:\n  - oaid: \"4097311281936189049\"\n    name: \"{value}\"\n    tier: premium\n    start: 2031-01-01\n    duration: 12\n"
            ),
        )
        .unwrap();
        path
    }

    #[test]
    fn a_key_in_a_manifest_is_refused_before_the_plan_or_the_state_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let key = "AK-0123456789abcdef0123456789";
        let files = vec![manifest_with(dir.path(), &format!("shop {key}"))];
        let keys = crate::esms::Credentials::new(key, "SK-fedcba9876543210")
            .unwrap()
            .forbidden();
        // The state does not exist: the key is found first all the same.
        let store = Store::from(crate::state::StateStore::new(
            dir.path().join("missing").join("oapkg.state.json"),
        ));
        let today = jiff::civil::date(2030, 1, 1);
        let error = plan_to_carry_out(Source::Fresh, &files, &store, today, &keys).unwrap_err();
        let ApplyInputsError::KeyInManifests(found) = &error else {
            panic!("{error:?}");
        };
        assert_eq!(found.errors.len(), 1);
        assert!(!error.to_string().contains(key), "{error}");
        // Without the key in it, the same run reaches the state, and a
        // missing state is refused before anything is shown.
        let files = vec![manifest_with(dir.path(), "shop")];
        let error = plan_to_carry_out(Source::Fresh, &files, &store, today, &keys).unwrap_err();
        assert!(
            matches!(error, ApplyInputsError::NoState(StateError::Missing { .. })),
            "{error:?}"
        );
    }

    #[test]
    fn a_plan_file_that_cannot_be_read_is_its_own_error() {
        let dir = tempfile::tempdir().unwrap();
        let files = vec![manifest_with(dir.path(), "shop")];
        let store = Store::from(crate::state::StateStore::new(
            dir.path().join("oapkg.state.json"),
        ));
        let missing = dir.path().join("nope.plan");
        let error = plan_to_carry_out(
            Source::File(&missing),
            &files,
            &store,
            jiff::civil::date(2030, 1, 1),
            &[],
        )
        .unwrap_err();
        assert!(matches!(error, ApplyInputsError::Saved(_)), "{error:?}");
    }
}
