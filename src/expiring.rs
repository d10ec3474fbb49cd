//! `expiring`: which OAs run out of packages soon. Pure: the desired set, the
//! recorded set and today come in as arguments.

use std::collections::BTreeMap;

use jiff::civil::Date;
use serde::Serialize;

use crate::manifest::DesiredSet;
use crate::spec::{Key, Oaid, Spec, Tier};
use crate::state::Record;

/// An OA whose last package (declared or recorded) ends within the window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Expiring {
    pub oaid: Oaid,
    pub name: Option<String>,
    /// The package that ends last.
    pub key: Key,
    pub tier: Tier,
    pub end: Date,
    /// Days from today to the end date (0: ends today).
    pub days_left: i64,
    /// `declared`, `recorded`, or `declared+recorded`.
    pub known_from: &'static str,
}

/// OAs whose last package ends between `today` and `today + within_days`
/// (inclusive), with nothing declared or recorded that ends later. An OA
/// whose packages all ended before today is not listed: it lapsed already
/// (its last alert window has passed), and `state list` shows it.
/// Sorted by days left, then OAID.
pub fn find(
    desired: &DesiredSet,
    recorded: &BTreeMap<Key, Record>,
    today: Date,
    within_days: u32,
) -> Vec<Expiring> {
    struct Last<'a> {
        spec: &'a Spec,
        name: Option<&'a str>,
        declared: bool,
        recorded: bool,
    }
    let mut last: BTreeMap<&Oaid, Last> = BTreeMap::new();
    let all = desired
        .packages
        .values()
        .map(|p| (&p.spec, p.name.as_deref(), true))
        .chain(
            recorded
                .values()
                .map(|r| (&r.spec, r.name.as_deref(), false)),
        );
    for (spec, name, declared) in all {
        let entry = last.entry(&spec.oaid).or_insert(Last {
            spec,
            name,
            declared,
            recorded: !declared,
        });
        // A period with no end on the calendar (refused by every input)
        // ends after every other.
        let later = match (spec.end(), entry.spec.end()) {
            (None, Some(_)) => true,
            (Some(end), Some(other)) => end > other,
            (_, None) => false,
        };
        if later {
            *entry = Last {
                spec,
                name: name.or(entry.name),
                declared,
                recorded: !declared,
            };
        } else if spec.key() == entry.spec.key() {
            entry.declared |= declared;
            entry.recorded |= !declared;
            entry.name = entry.name.or(name);
        }
    }
    // The last day of the window; `None`: a window past what a span or the
    // calendar holds, which reaches the calendar's end (checked, never
    // saturated).
    let horizon = jiff::Span::new()
        .try_days(i64::from(within_days))
        .ok()
        .and_then(|window| today.checked_add(window).ok());
    let mut found = last
        .into_values()
        .filter_map(|l| {
            let end = l.spec.end()?;
            (end >= today && horizon.is_none_or(|horizon| end <= horizon)).then_some((l, end))
        })
        .map(|(l, end)| Expiring {
            oaid: l.spec.oaid.clone(),
            name: l.name.map(str::to_owned),
            key: l.spec.key(),
            tier: l.spec.tier,
            end,
            days_left: (end - today).get_days().into(),
            known_from: match (l.declared, l.recorded) {
                (true, true) => "declared+recorded",
                (true, false) => "declared",
                _ => "recorded",
            },
        })
        .collect::<Vec<_>>();
    // The most urgent first.
    found.sort_by(|a, b| (a.days_left, &a.oaid).cmp(&(b.days_left, &b.oaid)));
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Package, Source};
    use jiff::civil::date;

    fn package(oaid: &str, start: Date, months: u8) -> Package {
        Package {
            spec: Spec {
                oaid: Oaid::parse(oaid).unwrap(),
                tier: Tier::Advanced,
                start,
                duration_months: months,
            },
            name: None,
            source: Source {
                file: "m.yaml".into(),
                line: 1,
                column: 1,
            },
        }
    }

    #[test]
    fn lists_oas_whose_last_package_ends_in_the_window() {
        let today = date(2026, 11, 26);
        // Ends 2026-12-15: expiring.
        let soon = package("1", date(2026, 11, 16), 1);
        // Ends soon but renewed after: not expiring.
        let renewed_a = package("2", date(2026, 11, 16), 1);
        let renewed_b = package("2", date(2026, 12, 16), 12);
        // Ends in a year: not expiring.
        let later = package("3", date(2026, 12, 1), 12);
        // Ended already: lapsed, not listed.
        let lapsed = package("4", date(2025, 1, 1), 1);
        let desired: DesiredSet = [soon, renewed_a, renewed_b, later, lapsed]
            .into_iter()
            .collect();
        let found = find(&desired, &BTreeMap::new(), today, 30);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].oaid.as_str(), "1");
        assert_eq!(found[0].end, date(2026, 12, 15));
        assert_eq!(found[0].days_left, 19);
        assert!(find(&desired, &BTreeMap::new(), today, 18).is_empty());
        assert_eq!(find(&desired, &BTreeMap::new(), today, 19).len(), 1);
    }
}
