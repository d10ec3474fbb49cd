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

/// A cost that does not fit in 64 bits: a price list this large is a
/// mistake, and an amount is never saturated or wrapped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the cost does not fit in a 64-bit amount (more than {} {currency}): check the monthly prices of the price list at {declared_at}",
    thousands(u64::MAX)
)]
pub struct CostOverflow {
    pub currency: String,
    /// Where the price list is declared.
    pub declared_at: Source,
}

impl PriceList {
    /// What buying `spec` costs: the tier's monthly price × its months;
    /// `None` when that does not fit in a `u64` (never saturated).
    pub fn cost(&self, spec: &Spec) -> Option<Money> {
        let monthly = self.monthly.get(&spec.tier).copied().unwrap_or(0);
        monthly
            .checked_mul(u64::from(spec.duration_months))
            .map(|amount| self.money(amount))
    }

    /// The sum of what buying each of `specs` costs, or the error when a
    /// cost or the sum does not fit in a `u64`.
    pub fn total<'a>(
        &self,
        specs: impl IntoIterator<Item = &'a Spec>,
    ) -> Result<Money, CostOverflow> {
        let amount = specs.into_iter().try_fold(0u64, |sum, spec| {
            self.cost(spec)
                .and_then(|cost| sum.checked_add(cost.amount))
                .ok_or_else(|| self.overflow())
        })?;
        Ok(self.money(amount))
    }

    /// `count` × `price`, in this currency, or the error when it does not
    /// fit.
    pub fn times(&self, price: u64, count: u64) -> Result<u64, CostOverflow> {
        price.checked_mul(count).ok_or_else(|| self.overflow())
    }

    /// The error for an amount in this price list that does not fit.
    pub fn overflow(&self) -> CostOverflow {
        CostOverflow {
            currency: self.currency.clone(),
            declared_at: self.source.clone(),
        }
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
        assert_eq!(prices.cost(&spec).unwrap().to_string(), "4,788,000 VND");
        assert_eq!(prices.total([&spec, &spec]).unwrap().amount, 9_576_000);
        assert_eq!(prices.total([]).unwrap().to_string(), "0 VND");
    }

    #[test]
    fn a_cost_that_does_not_fit_is_an_error_never_saturated() {
        let mut prices = PriceList {
            currency: "VND".into(),
            monthly: BTreeMap::from([(Tier::Premium, u64::MAX / 12)]),
            source: Source {
                file: "p.yaml".into(),
                line: 3,
                column: 1,
            },
        };
        let spec = |months| Spec {
            oaid: crate::spec::Oaid::parse_declared("1").unwrap(),
            tier: Tier::Premium,
            start: jiff::civil::date(2027, 1, 1),
            duration_months: months,
        };
        // Twelve months fit exactly; thirteen do not; two packages do not.
        assert_eq!(prices.cost(&spec(12)).unwrap().amount, u64::MAX / 12 * 12);
        assert_eq!(prices.cost(&spec(13)), None);
        let error = prices.total([&spec(12), &spec(1)]).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("does not fit in a 64-bit amount")
                && error.to_string().contains("p.yaml:3:1"),
            "{error}"
        );
        assert!(prices.total([&spec(13)]).is_err());
        prices.monthly.insert(Tier::Premium, u64::MAX);
        assert!(prices.total([&spec(1)]).is_ok());
        assert!(prices.total([&spec(2)]).is_err());
        assert_eq!(prices.times(u64::MAX, 1), Ok(u64::MAX));
        assert!(prices.times(u64::MAX, 2).is_err());
    }
}
