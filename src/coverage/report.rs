//! The `oapkg coverage` report: per OA, the periods its packages cover,
//! merged; the gaps from today on; when coverage ends; its policy and the
//! policy's next renewal. Pure: today and every input are arguments.
//!
//! Definitions (docs/… and the README say the same):
//!
//! - a **period** is one package: a recorded one (status `submitted`,
//!   `unconfirmed` or `imported`) or a declared one not recorded yet
//!   (`declared`; also a declared spec that differs from the recorded one
//!   under the same key, a pending `replace`). A declared package whose
//!   period ended before today is never bought (`expired`) and covers
//!   nothing: it is left out.
//! - **covered** intervals are the periods merged where they overlap or
//!   touch (one ends the day before the next starts), whatever their tier;
//!   each lists the tiers in it.
//! - **gaps** are the uncovered days from today on: from today to the first
//!   covered interval when it starts later, and between covered intervals.
//!   The days after the last interval are not a gap: `covered_until` says
//!   where coverage ends.
//! - **covered_until** is the last covered day when it is today or later,
//!   `None` otherwise (nothing covers today or any later day).
//! - **next_renewal** is the day the policy's next package becomes due: the
//!   first day `oapkg plan` holds it (coverage end minus
//!   `renew_before_days`, or today when that is past);
//!   **next_renewal_start** is where that package starts.

use std::collections::BTreeMap;

use jiff::civil::Date;
use serde::Serialize;

use super::{Policy, next_renewal_due, renewal};
use crate::manifest::{DesiredSet, Source};
use crate::spec::{Key, Oaid, Spec, Tier};
use crate::state::{Record, Status};

/// What oapkg knows about the package behind a period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PeriodStatus {
    Submitted,
    Unconfirmed,
    Imported,
    /// Declared, not recorded (yet): the plan buys it.
    Declared,
}

impl PeriodStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PeriodStatus::Submitted => "submitted",
            PeriodStatus::Unconfirmed => "unconfirmed",
            PeriodStatus::Imported => "imported",
            PeriodStatus::Declared => "declared",
        }
    }
}

impl From<Status> for PeriodStatus {
    fn from(status: Status) -> Self {
        match status {
            Status::Submitted => PeriodStatus::Submitted,
            Status::Unconfirmed => PeriodStatus::Unconfirmed,
            Status::Imported => PeriodStatus::Imported,
        }
    }
}

/// One package's days, first and last inclusive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Period {
    pub key: Key,
    pub from: Date,
    pub to: Date,
    pub tier: Tier,
    pub status: PeriodStatus,
}

/// Covered days merged across packages and tiers, inclusive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Covered {
    pub from: Date,
    pub to: Date,
    /// The tiers of the periods merged here, sorted, once each.
    pub tiers: Vec<Tier>,
}

/// Uncovered days, inclusive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Gap {
    pub from: Date,
    pub to: Date,
}

/// A coverage policy as the report shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicyView {
    pub tier: Tier,
    pub months: u8,
    pub renew_before_days: u16,
    pub first_start: Option<Date>,
    pub source: Source,
}

/// One OA's coverage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OaCoverage {
    pub oaid: Oaid,
    pub name: Option<String>,
    pub covered_until: Option<Date>,
    /// Sorted by start date, then key.
    pub periods: Vec<Period>,
    pub covered: Vec<Covered>,
    pub gaps: Vec<Gap>,
    pub policy: Option<PolicyView>,
    pub next_renewal: Option<Date>,
    pub next_renewal_start: Option<Date>,
    /// What Zalo showed for the OA (`coverage --refresh`); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zalo: Option<crate::readback::ZaloView>,
}

impl OaCoverage {
    /// An OA nothing declares, records or keeps covered (`--online`: an
    /// account's OA).
    pub fn uncovered(oaid: Oaid, name: Option<String>) -> OaCoverage {
        OaCoverage {
            oaid,
            name,
            covered_until: None,
            periods: Vec::new(),
            covered: Vec::new(),
            gaps: Vec::new(),
            policy: None,
            next_renewal: None,
            next_renewal_start: None,
            zalo: None,
        }
    }
}

/// The report: every OA with a declared or recorded package or a policy,
/// sorted by OAID.
pub fn report(
    desired: &DesiredSet,
    recorded: &BTreeMap<Key, Record>,
    policies: &[Policy],
    today: Date,
) -> Vec<OaCoverage> {
    #[derive(Default)]
    struct Gathered<'a> {
        periods: Vec<Period>,
        specs: Vec<&'a Spec>,
        declared_name: Option<&'a str>,
        recorded_name: Option<&'a str>,
        policy: Option<&'a Policy>,
    }
    let mut oas: BTreeMap<&Oaid, Gathered> = BTreeMap::new();
    for (key, record) in recorded {
        let oa = oas.entry(&record.spec.oaid).or_default();
        oa.periods
            .push(period(key, &record.spec, record.status.into()));
        oa.specs.push(&record.spec);
        oa.recorded_name = record.name.as_deref().or(oa.recorded_name);
    }
    for (key, package) in &desired.packages {
        let spec = &package.spec;
        let oa = oas.entry(&spec.oaid).or_default();
        oa.declared_name = package.name.as_deref().or(oa.declared_name);
        let same_as_recorded = recorded.get(key).is_some_and(|r| r.spec == *spec);
        if same_as_recorded || (spec.ended_before(today) && !recorded.contains_key(key)) {
            continue;
        }
        oa.periods.push(period(key, spec, PeriodStatus::Declared));
        oa.specs.push(spec);
    }
    for policy in policies {
        oas.entry(&policy.oaid).or_default().policy = Some(policy);
    }
    oas.into_iter()
        .map(|(oaid, mut oa)| {
            oa.periods
                .sort_by(|a, b| (a.from, &a.key).cmp(&(b.from, &b.key)));
            let covered = merge(&oa.periods);
            let covered_until = covered.last().map(|c| c.to).filter(|to| *to >= today);
            let (next_renewal, next_renewal_start) = match oa.policy {
                Some(policy) => {
                    let due = next_renewal_due(policy, oa.specs.iter().copied(), today);
                    let start = renewal(policy, oa.specs.iter().copied(), due).map(|s| s.start);
                    (Some(due), start)
                }
                None => (None, None),
            };
            OaCoverage {
                oaid: oaid.clone(),
                name: oa
                    .policy
                    .and_then(|p| p.name.as_deref())
                    .or(oa.declared_name)
                    .or(oa.recorded_name)
                    .map(str::to_owned),
                covered_until,
                gaps: gaps(&covered, today),
                covered,
                periods: oa.periods,
                policy: oa.policy.map(|p| PolicyView {
                    tier: p.tier,
                    months: p.months,
                    renew_before_days: p.renew_before_days,
                    first_start: p.first_start,
                    source: p.source.clone(),
                }),
                next_renewal,
                next_renewal_start,
                zalo: None,
            }
        })
        .collect()
}

fn period(key: &Key, spec: &Spec, status: PeriodStatus) -> Period {
    Period {
        key: key.clone(),
        from: spec.start,
        // A period past the calendar (which every input refuses) covers
        // every day the calendar has.
        to: spec.end().unwrap_or(crate::spec::CALENDAR_END),
        tier: spec.tier,
        status,
    }
}

/// `periods` (sorted by start) merged where they overlap or touch.
pub fn merge(periods: &[Period]) -> Vec<Covered> {
    let mut covered: Vec<Covered> = Vec::new();
    for p in periods {
        match covered.last_mut() {
            Some(last) if p.from <= last.to.tomorrow().unwrap_or(last.to) => {
                last.to = last.to.max(p.to);
                if !last.tiers.contains(&p.tier) {
                    last.tiers.push(p.tier);
                    last.tiers.sort();
                }
            }
            _ => covered.push(Covered {
                from: p.from,
                to: p.to,
                tiers: vec![p.tier],
            }),
        }
    }
    covered
}

/// The uncovered days from `today` on, before and between `covered`
/// (sorted, merged) intervals.
pub fn gaps(covered: &[Covered], today: Date) -> Vec<Gap> {
    let mut gaps = Vec::new();
    let mut cursor = today;
    for c in covered {
        if c.to < cursor {
            continue;
        }
        if c.from > cursor
            && let Ok(to) = c.from.yesterday()
        {
            gaps.push(Gap { from: cursor, to });
        }
        match c.to.tomorrow() {
            Ok(next) => cursor = next,
            Err(_) => break,
        }
    }
    gaps
}

/// The report's periods as mermaid chart sections: one per OA with a
/// period, titled `name (oaid)`; bought packages `done`, unconfirmed ones
/// `crit`, declared ones `active`.
pub fn chart_sections(report: &[OaCoverage]) -> Vec<super::gantt::Section> {
    use super::gantt::{Section, Tag, Task};
    report
        .iter()
        .map(|oa| Section {
            title: oa_title(oa.name.as_deref(), oa.oaid.as_str()),
            tasks: oa
                .periods
                .iter()
                .map(|p| Task {
                    name: format!("{} ({})", p.tier, p.status.as_str()),
                    tag: match p.status {
                        PeriodStatus::Submitted | PeriodStatus::Imported => Tag::Done,
                        PeriodStatus::Unconfirmed => Tag::Crit,
                        PeriodStatus::Declared => Tag::Active,
                    },
                    from: p.from,
                    to: p.to,
                })
                .chain(zalo_marker(oa))
                .collect(),
        })
        .collect()
}

/// A milestone on the day Zalo shows the OA valid through (`--refresh`),
/// critical when the OA drifted.
fn zalo_marker(oa: &OaCoverage) -> Option<super::gantt::Task> {
    use super::gantt::{Tag, Task};
    let zalo = oa.zalo.as_ref()?;
    let day = zalo.valid_through?;
    let drift = zalo.drift.is_some();
    Some(Task {
        name: if drift {
            "Zalo valid through (drift)".to_owned()
        } else {
            "Zalo valid through".to_owned()
        },
        tag: if drift {
            Tag::CritMilestone
        } else {
            Tag::Milestone
        },
        from: day,
        to: day,
    })
}

/// `name (oaid)`, or the OAID alone: a chart section's title.
pub fn oa_title(name: Option<&str>, oaid: &str) -> String {
    match name {
        Some(name) => format!("{name} ({oaid})"),
        None => oaid.to_owned(),
    }
}
