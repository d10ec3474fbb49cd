//! The raw shapes of the manifest kinds beside `PackageSet`: `PriceList`
//! (`currency`, `monthly`) and `CoveragePolicy` (`policies`). Lenient like
//! [`raw`](super::raw): values are kept as YAML typed them, unknown and
//! repeated keys are recorded for validation to report.

use std::fmt;

use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

use super::yaml::{
    DateSchema, Field, KeyProblem, OaidSchema, Scalar, ScalarVisitor, Spanned, TierSchema,
    field_mapping, forward_scalars_to, read_fields,
};

/// `monthly:` of a price list: the price of one month of each tier.
#[derive(Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    rename = "MonthlyPrices",
    description = "The price of one month of each tier, a whole positive amount."
)]
pub struct RawMonthly {
    #[schemars(with = "Option<u64>")]
    pub trial: Option<Field>,
    #[schemars(with = "Option<u64>")]
    pub advanced: Option<Field>,
    #[schemars(with = "Option<u64>")]
    pub premium: Option<Field>,
    #[serde(skip)]
    pub problems: Vec<KeyProblem>,
    /// Something else than a mapping, as written.
    #[serde(skip)]
    pub not_a_mapping: Option<Scalar>,
}

field_mapping!(RawMonthly, "a mapping of tier to monthly price", {
    "trial" => trial,
    "advanced" => advanced,
    "premium" => premium,
}, not_a_mapping);

impl RawMonthly {
    fn not_a_mapping(found: Scalar) -> RawMonthly {
        RawMonthly {
            not_a_mapping: Some(found),
            ..RawMonthly::default()
        }
    }
}

/// One entry of `policies:`, as written.
#[derive(Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    rename = "CoveragePolicy",
    description = "Keeps one OA covered: buys the next package of `tier` for `months` when its coverage ends within `renew_before_days`."
)]
pub struct RawPolicy {
    #[schemars(with = "OaidSchema")]
    pub oaid: Option<Field>,
    #[schemars(with = "Option<String>")]
    pub name: Option<Field>,
    #[schemars(with = "TierSchema")]
    pub tier: Option<Field>,
    /// Length of each renewal package, whole months 1 to 36.
    #[schemars(with = "u8")]
    pub months: Option<Field>,
    /// Buy the next package this many days before coverage ends.
    #[schemars(with = "u16")]
    pub renew_before_days: Option<Field>,
    /// Where to start when the OA has no package at all (default: today).
    #[schemars(with = "Option<DateSchema>")]
    pub first_start: Option<Field>,
    #[serde(skip)]
    pub problems: Vec<KeyProblem>,
}

field_mapping!(RawPolicy, "a policy mapping", {
    "oaid" => oaid,
    "name" => name,
    "tier" => tier,
    "months" => months,
    "renew_before_days" => renew_before_days,
    "first_start" => first_start,
});

/// A sequence of `T` mappings; anything else is kept as a [`Scalar`] so
/// the error can say what was found.
#[derive(Clone, Debug, PartialEq)]
pub enum List<T> {
    Entries(Vec<Spanned<Entry<T>>>),
    NotAList(Scalar),
}

/// One entry of a [`List`]: a mapping, or whatever else was written.
#[derive(Clone, Debug, PartialEq)]
pub enum Entry<T> {
    Item(Box<T>),
    NotAMapping(Scalar),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Entry<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Entry<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Entry<T>, A::Error> {
                let item = T::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Entry::Item(Box::new(item)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Entry<T>, A::Error> {
                ScalarVisitor.visit_seq(seq).map(Entry::NotAMapping)
            }
            forward_scalars_to!(ScalarVisitor, Entry::NotAMapping);
        }
        deserializer.deserialize_any(V(std::marker::PhantomData))
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for List<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = List<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<List<T>, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = seq.next_element::<Spanned<Entry<T>>>()? {
                    entries.push(entry);
                }
                Ok(List::Entries(entries))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<List<T>, A::Error> {
                ScalarVisitor.visit_map(map).map(List::NotAList)
            }
            forward_scalars_to!(ScalarVisitor, List::NotAList);
        }
        deserializer.deserialize_any(V(std::marker::PhantomData))
    }
}
