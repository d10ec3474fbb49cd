//! Validation of the `PriceList` and `CoveragePolicy` documents of one file,
//! and of the price lists and policies of all files together (at most one
//! price list, one policy per OA).

use std::collections::BTreeMap;

use super::super::Diagnostic;
use super::super::kinds::{Entry, List, RawMonthly, RawPolicy};
use super::super::raw::{Field, Location, RawDocument, Scalar};
use super::super::{MAX_RENEW_BEFORE_DAYS, Policy};
use super::{Checker, KIND_POLICIES, KIND_PRICES};
use crate::prices::PriceList;
use crate::spec::{MAX_DURATION_MONTHS, Oaid, Tier};

/// Longest currency code or name accepted.
const MAX_CURRENCY_CHARS: usize = 12;

impl Checker<'_> {
    pub(super) fn price_list(&mut self, doc: &RawDocument, at: Location) {
        let errors_before = self.out.errors.len();
        let currency = match &doc.currency {
            None => {
                self.error(
                    at,
                    format!("a `kind: {KIND_PRICES}` needs `currency:` (e.g. VND)"),
                );
                None
            }
            Some(field) => self.currency(field),
        };
        let mut monthly = BTreeMap::new();
        match &doc.monthly {
            None => self.error(
                at,
                format!("a `kind: {KIND_PRICES}` needs `monthly:` (the price of one month of each tier: trial, advanced, premium)"),
            ),
            Some(raw) => self.monthly(&raw.value, raw.referenced, &mut monthly),
        }
        if self.out.errors.len() == errors_before
            && let Some(currency) = currency
        {
            self.out.prices.push(PriceList {
                currency,
                monthly,
                source: super::super::source_at(self.file, at),
            });
        }
    }

    fn currency(&mut self, field: &Field) -> Option<String> {
        match &field.value {
            Scalar::Text(text)
                if !text.is_empty()
                    && text.chars().count() <= MAX_CURRENCY_CHARS
                    && text.chars().all(|c| c.is_alphanumeric() || c == '$') =>
            {
                Some(text.clone())
            }
            other => {
                self.error(
                    field.referenced,
                    format!(
                        "bad currency: found {}; expected a currency code such as VND or USD",
                        other.describe()
                    ),
                );
                None
            }
        }
    }

    fn monthly(&mut self, raw: &RawMonthly, at: Location, out: &mut BTreeMap<Tier, u64>) {
        if let Some(found) = &raw.not_a_mapping {
            return self.error(
                at,
                format!(
                    "`monthly` must map tiers to prices (trial: 10000, advanced: 59000, premium: 399000), found {}",
                    found.describe()
                ),
            );
        }
        self.key_problems(&raw.problems, "`monthly` (tiers)");
        let tiers = [
            (Tier::Trial, &raw.trial),
            (Tier::Advanced, &raw.advanced),
            (Tier::Premium, &raw.premium),
        ];
        for (tier, field) in tiers {
            let Some(field) = field else {
                self.error(
                    at,
                    format!("`monthly` has no price for {tier}; give the price of one month of each tier (trial, advanced, premium)"),
                );
                continue;
            };
            match &field.value {
                Scalar::Unsigned(price) if *price > 0 => {
                    out.insert(tier, *price);
                }
                other => self.error(
                    field.referenced,
                    format!(
                        "bad price for {tier}: found {}; expected a whole amount greater than 0 (the price of one month)",
                        other.describe()
                    ),
                ),
            }
        }
    }

    pub(super) fn policy_list(&mut self, doc: &RawDocument, at: Location) {
        let Some(list) = &doc.policies else {
            return self.error(
                at,
                format!("a `kind: {KIND_POLICIES}` needs `policies:` (a list of policies)"),
            );
        };
        match &list.value {
            List::NotAList(found) => self.error(
                list.referenced,
                format!(
                    "`policies` must be a list of policies, found {}",
                    found.describe()
                ),
            ),
            List::Entries(entries) => {
                for entry in entries {
                    match &entry.value {
                        Entry::Item(raw) => {
                            if let Some(policy) = self.policy(raw, entry.referenced) {
                                self.out.policies.push(policy);
                            }
                        }
                        Entry::NotAMapping(found) => self.error(
                            entry.referenced,
                            format!(
                                "each entry of `policies` must be a mapping (oaid, tier, months, renew_before_days), found {}",
                                found.describe()
                            ),
                        ),
                    }
                }
            }
        }
    }

    fn policy(&mut self, raw: &RawPolicy, at: Location) -> Option<Policy> {
        let errors_before = self.out.errors.len();
        self.key_problems(&raw.problems, "a policy");
        let missing = |checker: &mut Self, what: &str| {
            checker.error(at, format!("policy has no {what}"));
        };
        let oaid: Option<Oaid> = match &raw.oaid {
            Some(f) => self.oaid(f),
            None => {
                missing(self, "`oaid` (the OA's id, 1–19 digits)");
                None
            }
        };
        let tier = match &raw.tier {
            Some(f) => self.tier(f),
            None => {
                missing(self, "`tier` (trial, advanced or premium)");
                None
            }
        };
        let months = match &raw.months {
            Some(f) => self.months(f),
            None => {
                missing(self, "`months` (the length of each renewal, 1 to 36)");
                None
            }
        };
        let renew_before_days = match &raw.renew_before_days {
            Some(f) => self.renew_before_days(f),
            None => {
                missing(
                    self,
                    "`renew_before_days` (how many days before coverage ends to buy the next package)",
                );
                None
            }
        };
        let first_start = raw.first_start.as_ref().and_then(|f| self.start(f));
        // The first renewal starts on `first_start`: it must end on the
        // calendar (later renewals near 9999 are not bought, never given a
        // saturated end).
        if let (Some(start), Some(months), Some(field)) = (first_start, months, &raw.first_start)
            && crate::spec::end_date(start, months).is_none()
        {
            self.error(
                field.referenced,
                super::past_the_calendar("policy's first package", start, months),
            );
        }
        let name = raw.name.as_ref().and_then(|f| self.name(f));
        if self.out.errors.len() != errors_before {
            return None;
        }
        Some(Policy {
            oaid: oaid?,
            name,
            tier: tier?,
            months: months?,
            renew_before_days: renew_before_days?,
            first_start,
            source: super::super::source_at(self.file, at),
        })
    }

    fn months(&mut self, field: &Field) -> Option<u8> {
        match &field.value {
            Scalar::Unsigned(n @ 1..) if *n <= u64::from(MAX_DURATION_MONTHS) => {
                u8::try_from(*n).ok()
            }
            other => {
                self.error(
                    field.referenced,
                    format!("months out of range: found {}; expected whole months, 1 to {MAX_DURATION_MONTHS}", other.describe()),
                );
                None
            }
        }
    }

    fn renew_before_days(&mut self, field: &Field) -> Option<u16> {
        match &field.value {
            Scalar::Unsigned(n) if *n <= u64::from(MAX_RENEW_BEFORE_DAYS) => u16::try_from(*n).ok(),
            other => {
                self.error(
                    field.referenced,
                    format!("renew_before_days out of range: found {}; expected whole days, 0 to {MAX_RENEW_BEFORE_DAYS}", other.describe()),
                );
                None
            }
        }
    }
}

/// The price lists and policies of every file together: at most one price
/// list (a second names both places), one policy per OA (both named).
/// Returns the price list, the policies sorted by OAID, and the errors.
pub fn check_together(
    prices: Vec<PriceList>,
    policies: Vec<Policy>,
) -> (Option<PriceList>, Vec<Policy>, Vec<Diagnostic>) {
    let mut errors = Vec::new();
    let mut prices = prices.into_iter();
    let first = prices.next();
    if let Some(first) = &first {
        for other in prices {
            errors.push(Diagnostic::with_related(
                &other.source,
                format!("a second `kind: {KIND_PRICES}`; there may be at most one across all manifests: merge them"),
                &first.source,
                "the first price list".to_owned(),
            ));
        }
    }
    let mut by_oaid: BTreeMap<Oaid, Policy> = BTreeMap::new();
    for policy in policies {
        if let Some(earlier) = by_oaid.get(&policy.oaid) {
            errors.push(Diagnostic::with_related(
                &policy.source,
                format!(
                    "OA {} has two coverage policies; keep one policy per OA",
                    policy.oaid
                ),
                &earlier.source,
                "the other policy".to_owned(),
            ));
            continue;
        }
        by_oaid.insert(policy.oaid.clone(), policy);
    }
    (first, by_oaid.into_values().collect(), errors)
}
