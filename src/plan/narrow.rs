//! `apply --only KEY|OAID`: a plan narrowed to the changes named.
//!
//! Pure: a plan and the names in, the narrowed plan out. The CLI narrows
//! before the guards and the question, so both (and the plan it shows)
//! are about the named changes alone.

use std::fmt;
use std::str::FromStr;

use super::Plan;
use crate::spec::{Key, Oaid};

/// One `--only` value: a package key (`OAID@YYYY-MM-DD`) or an OAID (every
/// change of that OA).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    Key(Key),
    Oaid(Oaid),
}

impl FromStr for Selector {
    type Err = String;

    /// Text with an `@` must be a key, text without one an OAID.
    fn from_str(text: &str) -> Result<Selector, String> {
        if text.contains('@') {
            Key::parse(text)
                .map(Selector::Key)
                .map_err(|e| e.to_string())
        } else {
            Oaid::parse(text).map(Selector::Oaid).map_err(|e| {
                format!("{e}; expected a package key (OAID@YYYY-MM-DD) or an OAID (digits)")
            })
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Key(key) => key.fmt(f),
            Selector::Oaid(oaid) => oaid.fmt(f),
        }
    }
}

impl Selector {
    /// Whether the change with this key is named.
    pub fn matches(&self, key: &Key) -> bool {
        match self {
            Selector::Key(named) => named == key,
            Selector::Oaid(oaid) => key.oaid() == oaid.as_str(),
        }
    }
}

/// `--only` values that name no change of the plan: a typo, or a package
/// with nothing to do (already bought and unchanged, or not declared).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "--only {}: no change in the plan has this key or OAID (it may be unchanged, i.e. already bought, or not declared at all); \
     nothing was bought. See `oapkg plan` for the changes",
    .0.iter().map(ToString::to_string).collect::<Vec<_>>().join(", --only ")
)]
pub struct Unmatched(pub Vec<Selector>);

/// The plan narrowed by [`narrow`], and how many of its changes were left out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Narrowed {
    pub plan: Plan,
    /// Changes (and label changes) of the full plan that this run leaves
    /// for later.
    pub left_out: usize,
}

/// Keeps the changes and label changes whose key or OAID a selector names,
/// and the warnings about them (and the run-wide ones). Unchanged packages stay counted as
/// they are. Every selector must name at least one change.
pub fn narrow(plan: &Plan, selectors: &[Selector]) -> Result<Narrowed, Unmatched> {
    let unmatched: Vec<Selector> = selectors
        .iter()
        .filter(|s| {
            let changed = plan.changes.iter().any(|c| s.matches(&c.key));
            let labelled = plan.labels.iter().any(|l| s.matches(&l.key));
            !(changed || labelled)
        })
        .cloned()
        .collect();
    if !unmatched.is_empty() {
        return Err(Unmatched(unmatched));
    }
    let named = |key: &Key| selectors.iter().any(|s| s.matches(key));
    let mut narrowed = plan.clone();
    narrowed.changes.retain(|c| named(&c.key));
    narrowed.labels.retain(|l| named(&l.key));
    narrowed
        .warnings
        .retain(|w| w.key.as_ref().is_none_or(&named));
    Ok(Narrowed {
        left_out: (plan.changes.len() + plan.labels.len())
            - (narrowed.changes.len() + narrowed.labels.len()),
        plan: narrowed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::render::fixtures;
    use crate::plan::{Action, Change, LabelChange, Sides, Warning};
    use crate::spec::Tier;
    use crate::state::{StateId, Status};

    /// A change of `action` for `key`, with the sides the action has.
    fn change(key: &str, action: Action) -> Change {
        let (oaid, start) = Key::parse_parts(key).unwrap();
        let key = Key::parse(key).unwrap();
        let spec = |tier| fixtures::spec(oaid.as_str(), tier, start, 12);
        let desired = fixtures::package(spec(Tier::Premium), None, "oapkg.yaml", 1);
        let before = fixtures::record(spec(Tier::Advanced), None, Status::Submitted);
        let sides = match action {
            Action::Purchase => Sides::Purchase { desired },
            Action::Replace => Sides::Replace { desired, before },
            Action::Orphan => Sides::Orphan { before },
            other => unreachable!("no {other} here"),
        };
        Change::new(key, sides)
    }

    fn plan() -> Plan {
        Plan {
            today: jiff::civil::date(2026, 11, 26),
            state: StateId::default(),
            state_location: None,
            manifest_hash: crate::spec::ManifestHash::from_tagged("sha256:x".into()),
            changes: vec![
                change("1@2026-12-01", Action::Purchase),
                change("1@2027-12-01", Action::Purchase),
                change("2@2026-12-01", Action::Replace),
                change("3@2026-12-01", Action::Orphan),
            ],
            unchanged: 5,
            labels: vec![LabelChange {
                key: Key::parse("4@2026-12-01").unwrap(),
                before: None,
                after: Some("renamed".into()),
            }],
            warnings: vec![
                Warning::about(Some(Key::parse("2@2026-12-01").unwrap()), "about 2".into()),
                Warning::about(None, "about the run".into()),
            ],
            prices: None,
            from_policy: Default::default(),
            in_flight_holder: None,
            errors: Vec::new(),
        }
    }

    fn sel(text: &str) -> Selector {
        text.parse().unwrap()
    }

    #[test]
    fn keeps_the_named_keys_and_oas_and_their_warnings() {
        let narrowed = narrow(&plan(), &[sel("1"), sel("3@2026-12-01")]).unwrap();
        let keys: Vec<_> = narrowed
            .plan
            .changes
            .iter()
            .map(|c| c.key.as_str())
            .collect();
        assert_eq!(keys, ["1@2026-12-01", "1@2027-12-01", "3@2026-12-01"]);
        assert_eq!(narrowed.left_out, 2, "the replace and the label change");
        assert_eq!(narrowed.plan.unchanged, 5);
        assert_eq!(narrowed.plan.warnings.len(), 1, "the run-wide warning only");
        assert_eq!(narrowed.plan.summary().purchase, 2);
        assert_eq!(narrowed.plan.summary().replace, 0);
        assert!(narrowed.plan.labels.is_empty());
        // A label change is a change to name too.
        let renamed = narrow(&plan(), &[sel("4")]).unwrap();
        assert_eq!(renamed.plan.labels.len(), 1);
        assert!(renamed.plan.changes.is_empty());
        assert_eq!(renamed.left_out, 4);
    }

    #[test]
    fn a_selector_naming_no_change_is_refused_by_name() {
        let err = narrow(
            &plan(),
            &[sel("2@2026-12-01"), sel("9"), sel("1@2026-12-02")],
        )
        .unwrap_err();
        assert_eq!(err.0, vec![sel("9"), sel("1@2026-12-02")]);
        let message = err.to_string();
        assert!(
            message.contains("--only 9, --only 1@2026-12-02"),
            "{message}"
        );
    }

    #[test]
    fn keys_and_oaids_are_parsed_strictly() {
        assert_eq!(sel("12"), Selector::Oaid(Oaid::parse("12").unwrap()));
        assert!("12@2026-13-01".parse::<Selector>().is_err());
        assert!("12x".parse::<Selector>().is_err());
        assert!("".parse::<Selector>().is_err());
        assert!("1@2026-12-01".parse::<Selector>().is_ok());
    }
}
