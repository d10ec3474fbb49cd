//! What packages cost: the manifests' `kind: PriceList` ([`PriceList`]),
//! the cost of one package (monthly price × months) and amounts as people
//! read them (`4,788,000 VND`).
//!
//! Pure: no clock, no files. A plan without a price list has no costs
//! (`cost: null` in JSON); nothing here guesses a price.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::spec::Source;
use crate::spec::{Spec, Tier};

/// The declared prices: one currency, the price of one month of each tier.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceList {
    pub currency: String,
    /// Price of one month per tier: every tier (validation requires all
    /// three).
    pub monthly: BTreeMap<Tier, u64>,
    /// Where the price list is declared.
    pub source: Source,
}

/// An amount in a currency: a change's cost, a plan's total, a balance.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Money {
    pub amount: u64,
    pub currency: String,
}

impl PriceList {
    /// What buying `spec` costs: the tier's monthly price × its months
    /// (saturating: no real price comes near `u64::MAX`).
    pub fn cost(&self, spec: &Spec) -> Money {
        let monthly = self.monthly.get(&spec.tier).copied().unwrap_or(0);
        self.money(monthly.saturating_mul(u64::from(spec.duration_months)))
    }

    /// The sum of what buying each of `specs` costs.
    pub fn total<'a>(&self, specs: impl IntoIterator<Item = &'a Spec>) -> Money {
        let amount = specs
            .into_iter()
            .fold(0u64, |sum, spec| sum.saturating_add(self.cost(spec).amount));
        self.money(amount)
    }

    /// `amount` in this price list's currency.
    pub fn money(&self, amount: u64) -> Money {
        Money {
            amount,
            currency: self.currency.clone(),
        }
    }
}

/// `4788000` → `4,788,000`.
pub fn thousands(amount: u64) -> String {
    let digits = amount.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

impl fmt::Display for Money {
    /// `4,788,000 VND`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", thousands(self.amount), self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(4_788_000), "4,788,000");
        assert_eq!(thousands(u64::MAX), "18,446,744,073,709,551,615");
    }

    #[test]
    fn cost_is_monthly_price_times_months() {
        let prices = PriceList {
            currency: "VND".into(),
            monthly: BTreeMap::from([(Tier::Premium, 399_000)]),
            source: Source {
                file: "p.yaml".into(),
                line: 1,
                column: 1,
            },
        };
        let spec = Spec {
            oaid: crate::spec::Oaid::parse_declared("1").unwrap(),
            tier: Tier::Premium,
            start: jiff::civil::date(2027, 1, 1),
            duration_months: 12,
        };
        assert_eq!(prices.cost(&spec).to_string(), "4,788,000 VND");
        assert_eq!(prices.total([&spec, &spec]).amount, 9_576_000);
        assert_eq!(prices.total([]).to_string(), "0 VND");
    }
}
