//! What an observation of Zalo means for the recorded packages: which
//! unconfirmed records it settles, which it cannot, and whether the OA
//! drifted (the reasoning of `design/read-back.md`, SPEC "Read-back").
//!
//! Pure: the records, the observation and today come in; nothing is read,
//! written or printed. With Zalo's `valid_through` = V for an OA:
//!
//! - An `unconfirmed` record R ending E is **settled** (becomes `submitted`,
//!   `confirmed_by: zalo`) when V ≥ E and no other record of the OA
//!   (`submitted`, `imported` or `unconfirmed`) ends on or after E: only R
//!   can explain V. Otherwise the evidence is reported and R is left to a
//!   person. Absence (V < E, or no package) is never proof that R failed:
//!   Zalo may lag.
//! - Coverage is the `submitted` and `imported` records (settled ones
//!   included). **Not on Zalo**: a recorded package covering today has
//!   started and V is earlier than the end of the started packages.
//!   **Outside oapkg**: V is later than every recorded end.
//! - Nothing here buys, marks failed or deletes.

use std::collections::BTreeMap;

use jiff::civil::Date;
use serde::Serialize;

use crate::spec::{Key, Oaid};
use crate::state::{Confirmation, Observation, Record, Status};

/// Who a settle by read-back names in `confirmed.by`.
pub const CONFIRMED_BY_ZALO: &str = "zalo";

/// The `result_message` of a record settled by read-back.
pub const SETTLED_MESSAGE: &str = "confirmed by Zalo read-back (oapkg refresh)";

/// A difference between the record and Zalo.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Drift {
    /// Recorded coverage that has started runs to `recorded_through`, Zalo
    /// shows less (or nothing): a purchase that did not take effect, or
    /// Zalo lagging.
    NotOnZalo {
        recorded_through: Date,
        zalo_through: Option<Date>,
    },
    /// Zalo shows coverage to `zalo_through`, later than anything
    /// recorded: bought outside oapkg (`state import` it).
    OutsideOapkg {
        recorded_through: Option<Date>,
        zalo_through: Date,
    },
}

impl Drift {
    /// One line for people.
    pub fn describe(&self) -> String {
        match self {
            Drift::NotOnZalo {
                recorded_through,
                zalo_through,
            } => format!(
                "recorded but not on Zalo: the state covers it through {recorded_through}, Zalo shows {} \
                 (a purchase that did not take effect, or Zalo lagging)",
                show(*zalo_through)
            ),
            Drift::OutsideOapkg {
                recorded_through,
                zalo_through,
            } => format!(
                "on Zalo but not recorded: Zalo shows it valid through {zalo_through}, the state covers it \
                 through {} (bought outside oapkg? record it with `oapkg state import`)",
                show(*recorded_through)
            ),
        }
    }
}

/// "no package" for a missing date.
pub fn show(date: Option<Date>) -> String {
    match date {
        Some(date) => date.to_string(),
        None => "no package".to_owned(),
    }
}

/// What Zalo showed for an OA, beside its recorded coverage (`coverage
/// --refresh`, `plan --refresh`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ZaloView {
    /// `None`: no package, or not read (see `not_read`).
    pub valid_through: Option<Date>,
    pub package_name: Option<String>,
    pub observed_at: Option<jiff::Timestamp>,
    /// Why the OA could not be read; `None` when it was.
    pub not_read: Option<String>,
    pub drift: Option<Drift>,
}

impl ZaloView {
    pub fn read(observation: &Observation, drift: Option<Drift>) -> ZaloView {
        ZaloView {
            valid_through: observation.valid_through,
            package_name: observation.package_name.clone(),
            observed_at: Some(observation.observed_at),
            not_read: None,
            drift,
        }
    }

    pub fn not_read(why: &str) -> ZaloView {
        ZaloView {
            valid_through: None,
            package_name: None,
            observed_at: None,
            not_read: Some(why.to_owned()),
            drift: None,
        }
    }

    /// A short cell: `2027-12-31`, `no package`, `not read`, with the
    /// drift's kind after it.
    pub fn cell(&self) -> String {
        if self.not_read.is_some() {
            return "not read".to_owned();
        }
        let date = show(self.valid_through);
        match &self.drift {
            Some(Drift::NotOnZalo { .. }) => format!("{date} (drift: not on Zalo)"),
            Some(Drift::OutsideOapkg { .. }) => format!("{date} (drift: not recorded)"),
            None => date,
        }
    }
}

/// One OA beside Zalo, for `plan --refresh`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ZaloRow {
    pub oaid: Oaid,
    /// The end of the recorded coverage, if any.
    pub recorded_through: Option<Date>,
    pub zalo: ZaloView,
}

/// The rows as text lines, drift spelled out.
pub fn rows_text(rows: &[ZaloRow]) -> String {
    let mut out = format!(
        "\nZalo read-back ({} {}):\n",
        rows.len(),
        if rows.len() == 1 { "OA" } else { "OAs" }
    );
    for row in rows {
        out.push_str(&format!(
            "  {}  recorded through {}  Zalo: {}\n",
            row.oaid,
            show(row.recorded_through).replace("no package", "-"),
            crate::text::escape_controls(&row.zalo.cell())
        ));
        if let Some(drift) = &row.zalo.drift {
            out.push_str(&format!("    drift: {}\n", drift.describe()));
        }
        if let Some(why) = &row.zalo.not_read {
            out.push_str(&format!(
                "    not read: {}\n",
                crate::text::escape_controls(why)
            ));
        }
    }
    out
}

/// The rows as a Markdown table, drift marked `⚠`.
pub fn rows_markdown(rows: &[ZaloRow]) -> String {
    let mut out = String::from(
        "\n### Zalo read-back\n\n| OAID | Recorded through | Zalo valid through | Drift |\n|---|---|---|---|\n",
    );
    for row in rows {
        let drift = match (&row.zalo.drift, &row.zalo.not_read) {
            (Some(d), _) => format!("⚠ {}", crate::text::markdown(&d.describe())),
            (None, Some(why)) => format!("not read: {}", crate::text::markdown(why)),
            (None, None) => "—".to_owned(),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {drift} |\n",
            crate::text::markdown_code(row.oaid.as_str()),
            show(row.recorded_through).replace("no package", "—"),
            show(row.zalo.valid_through),
        ));
    }
    out
}

/// Why an unconfirmed record was left as it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Unsettled {
    /// Zalo's date does not reach the record's end (yet).
    NotVisible,
    /// Another record of the OA ends on or after it: Zalo's date does not
    /// say which purchase it reflects.
    Ambiguous { other: Key },
}

/// An unconfirmed record and the evidence about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Evidence {
    pub key: Key,
    pub end: Option<Date>,
    #[serde(flatten)]
    pub why: Unsettled,
}

impl Evidence {
    pub fn describe(&self, observation: &Observation) -> String {
        let end = crate::spec::show_end(self.end);
        match &self.why {
            Unsettled::NotVisible => format!(
                "unconfirmed, left as it is: it ends {end}, Zalo shows {}. Zalo may lag (absence is \
                 not proof it failed); check the eSMS portal, then `oapkg state confirm {}` or \
                 `oapkg apply --retry-unconfirmed`",
                show(observation.valid_through),
                self.key
            ),
            Unsettled::Ambiguous { other } => format!(
                "unconfirmed, left as it is: Zalo shows {}, but {other} also ends on or after {end}, so \
                 Zalo's date does not tell which purchase it reflects; check the eSMS portal, then \
                 `oapkg state confirm {}`",
                show(observation.valid_through),
                self.key
            ),
        }
    }
}

/// What one observation means for one OA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assessment {
    pub oaid: Oaid,
    /// Unconfirmed records the observation settles.
    pub settles: Vec<Key>,
    /// Unconfirmed records it does not, with why.
    pub unsettled: Vec<Evidence>,
    /// The end of the recorded coverage (settled records included), if
    /// any.
    pub recorded_through: Option<Date>,
    pub drift: Option<Drift>,
}

/// Judges `observation` of `oaid` against its records (`records`: every
/// record of that OA).
pub fn assess(
    oaid: &Oaid,
    records: &[(&Key, &Record)],
    observation: &Observation,
    today: Date,
) -> Assessment {
    let v = observation.valid_through;
    let mut settles = Vec::new();
    let mut unsettled = Vec::new();
    for (key, record) in records {
        if record.status != Status::Unconfirmed {
            continue;
        }
        let end = record.spec.end();
        let other = records
            .iter()
            .find(|(k, r)| k != key && end.is_none_or(|e| r.spec.end().is_none_or(|oe| oe >= e)));
        let why = match (v, end, other) {
            (_, _, Some((other, _))) if v.is_some_and(|v| end.is_some_and(|e| v >= e)) => {
                Unsettled::Ambiguous {
                    other: (*other).clone(),
                }
            }
            (Some(v), Some(e), None) if v >= e => {
                settles.push((*key).clone());
                continue;
            }
            _ => Unsettled::NotVisible,
        };
        unsettled.push(Evidence {
            key: (*key).clone(),
            end,
            why,
        });
    }
    let covers = |key: &Key, record: &Record| {
        matches!(record.status, Status::Submitted | Status::Imported) || settles.contains(key)
    };
    let covering: Vec<&Record> = records
        .iter()
        .filter(|(k, r)| covers(k, r))
        .map(|(_, r)| *r)
        .collect();
    let recorded_through = covering.iter().filter_map(|r| r.spec.end()).max();
    let started_through = covering
        .iter()
        .filter(|r| r.spec.start <= today)
        .filter_map(|r| r.spec.end())
        .max();
    let drift = match (started_through, v, recorded_through) {
        (Some(c), v, _) if c >= today && v.is_none_or(|v| v < c) => Some(Drift::NotOnZalo {
            recorded_through: c,
            zalo_through: v,
        }),
        (_, Some(v), recorded) if recorded.is_none_or(|c| v > c) && v >= today => {
            Some(Drift::OutsideOapkg {
                recorded_through: recorded,
                zalo_through: v,
            })
        }
        _ => None,
    };
    Assessment {
        oaid: oaid.clone(),
        settles,
        unsettled,
        recorded_through,
        drift,
    }
}

/// The records of each OA, in key order.
pub fn by_oa(packages: &BTreeMap<Key, Record>) -> BTreeMap<Oaid, Vec<(&Key, &Record)>> {
    let mut out: BTreeMap<Oaid, Vec<(&Key, &Record)>> = BTreeMap::new();
    for (key, record) in packages {
        out.entry(record.spec.oaid.clone())
            .or_default()
            .push((key, record));
    }
    out
}

/// Settles `record` from `observation`: `submitted`, `confirmed_by: zalo`,
/// the observation kept in the confirmation.
pub fn settle(record: &mut Record, observation: &Observation, at: jiff::Timestamp) {
    record.status = Status::Submitted;
    record.result_code = None;
    record.result_message = Some(SETTLED_MESSAGE.to_owned());
    record.confirmed = Some(Confirmation {
        by: CONFIRMED_BY_ZALO.to_owned(),
        at,
        observation: Some(observation.clone()),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Spec, Tier};

    fn date(s: &str) -> Date {
        s.parse().unwrap()
    }

    fn record(start: &str, months: u8, status: Status) -> (Key, Record) {
        let spec = Spec {
            oaid: Oaid::parse("4097311281936189049").unwrap(),
            tier: Tier::Premium,
            start: date(start),
            duration_months: months,
        };
        let key = spec.key();
        let record = Record {
            spec_hash: spec.hash(),
            spec,
            name: None,
            status,
            service_preview_id: None,
            result_code: None,
            result_message: None,
            submitted_at: None,
            confirmed: None,
            by_policy: false,
        };
        (key, record)
    }

    fn seen(v: Option<&str>) -> Observation {
        Observation {
            observed_at: jiff::Timestamp::UNIX_EPOCH,
            package_name: None,
            valid_through: v.map(date),
        }
    }

    fn judge(records: &[(Key, Record)], v: Option<&str>, today: &str) -> Assessment {
        let refs: Vec<(&Key, &Record)> = records.iter().map(|(k, r)| (k, r)).collect();
        let oaid = Oaid::parse("4097311281936189049").unwrap();
        assess(&oaid, &refs, &seen(v), date(today))
    }

    #[test]
    fn an_unconfirmed_record_settles_only_when_nothing_else_explains_zalo() {
        let r = [record("2026-12-01", 12, Status::Unconfirmed)];
        let a = judge(&r, Some("2027-11-30"), "2026-12-06");
        assert_eq!(a.settles, vec![r[0].0.clone()]);
        assert_eq!(a.drift, None);

        let lagging = judge(&r, None, "2026-12-06");
        assert!(lagging.settles.is_empty());
        assert_eq!(lagging.unsettled[0].why, Unsettled::NotVisible);
        assert_eq!(lagging.drift, None, "an unconfirmed record is not coverage");

        let two = [
            record("2026-12-01", 12, Status::Unconfirmed),
            record("2026-12-15", 12, Status::Submitted),
        ];
        let a = judge(&two, Some("2027-12-14"), "2026-12-06");
        assert!(a.settles.is_empty());
        assert!(matches!(a.unsettled[0].why, Unsettled::Ambiguous { .. }));
    }

    #[test]
    fn drift_both_ways_with_dates() {
        let r = [record("2026-12-01", 12, Status::Submitted)];
        assert_eq!(
            judge(&r, Some("2027-02-28"), "2026-12-06").drift,
            Some(Drift::NotOnZalo {
                recorded_through: date("2027-11-30"),
                zalo_through: Some(date("2027-02-28"))
            })
        );
        assert_eq!(judge(&r, Some("2027-11-30"), "2026-12-06").drift, None);
        // Not started yet: Zalo need not show it.
        assert_eq!(judge(&r, None, "2026-11-20").drift, None);
        assert_eq!(
            judge(&r, Some("2028-03-31"), "2026-12-06").drift,
            Some(Drift::OutsideOapkg {
                recorded_through: Some(date("2027-11-30")),
                zalo_through: date("2028-03-31")
            })
        );
        assert_eq!(
            judge(&[], Some("2027-03-31"), "2026-12-06").drift,
            Some(Drift::OutsideOapkg {
                recorded_through: None,
                zalo_through: date("2027-03-31")
            })
        );
        // A package that ended long ago on both sides is no drift.
        assert_eq!(judge(&[], Some("2020-03-31"), "2026-12-06").drift, None);
    }
}
