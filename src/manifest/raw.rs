//! The manifest as written: one [`RawDocument`] per YAML document, every value
//! kept with its location and in the shape YAML gave it ([`Scalar`]).
//!
//! These types are both the parser and the schema: `Deserialize` reads YAML
//! into them and `JsonSchema` describes them for `oapkg schema`, so the two
//! cannot drift. Deserialization is deliberately lenient about *values* (a
//! float where an OAID belongs is kept as a float, an unknown key is kept as
//! an unknown key) so that validation can report every problem of a file at
//! once instead of stopping at the first one, as a derived `Deserialize` would.

use std::fmt;

use schemars::JsonSchema;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::yaml::{
    DateSchema, DurationSchema, OaidSchema, ScalarVisitor, TierSchema, field_mapping,
    forward_scalars_to, read_fields,
};
pub use super::yaml::{Field, KeyProblem, Location, Scalar, Spanned};

/// The fields every package may take from `defaults`.
#[derive(Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    rename = "Defaults",
    description = "Values used by every package of this document that does not set them."
)]
pub struct RawDefaults {
    #[schemars(with = "Option<TierSchema>")]
    pub tier: Option<Field>,
    #[schemars(with = "Option<DurationSchema>")]
    pub duration: Option<Field>,
    #[serde(skip)]
    pub problems: Vec<KeyProblem>,
}

field_mapping!(RawDefaults, "a mapping with `tier` and/or `duration`", {
    "tier" => tier,
    "duration" => duration,
});

/// One entry of `packages`, as written.
#[derive(Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    rename = "Package",
    description = "One package: an OA, a tier, a start date and a duration in months."
)]
pub struct RawPackage {
    #[schemars(with = "OaidSchema")]
    pub oaid: Option<Field>,
    /// A label shown in plans; not part of what is bought.
    #[schemars(with = "Option<String>")]
    pub name: Option<Field>,
    #[schemars(with = "Option<TierSchema>")]
    pub tier: Option<Field>,
    #[schemars(with = "DateSchema")]
    pub start: Option<Field>,
    #[schemars(with = "Option<DurationSchema>")]
    pub duration: Option<Field>,
    #[serde(skip)]
    pub problems: Vec<KeyProblem>,
}

field_mapping!(RawPackage, "a package mapping (oaid, name, tier, start, duration)", {
    "oaid" => oaid,
    "name" => name,
    "tier" => tier,
    "start" => start,
    "duration" => duration,
});

/// One YAML document of a manifest file.
#[derive(Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "oapkg manifest",
    description = "One oapkg document: a PackageSet (OA packages to keep bought), a PriceList (at most one) or a CoveragePolicy."
)]
pub struct RawDocument {
    #[serde(rename = "apiVersion")]
    #[schemars(with = "ApiVersionSchema")]
    pub api_version: Option<Field>,
    #[schemars(with = "KindSchema")]
    pub kind: Option<Field>,
    #[schemars(with = "Option<RawDefaults>")]
    pub defaults: Option<Spanned<RawDefaults>>,
    /// Where `packages` was written and its entries; `None` when absent.
    #[schemars(
        with = "Vec<RawPackage>",
        default,
        description = "`kind: PackageSet`: the packages to keep bought."
    )]
    pub packages: Option<Spanned<PackageList>>,
    /// `kind: PriceList`: the currency of its prices.
    #[schemars(with = "Option<String>")]
    pub currency: Option<Field>,
    /// `kind: PriceList`: the price of one month of each tier.
    #[schemars(with = "Option<super::kinds::RawMonthly>")]
    pub monthly: Option<Spanned<super::kinds::RawMonthly>>,
    /// `kind: CoveragePolicy`: one policy per OA.
    #[schemars(with = "Option<Vec<super::kinds::RawPolicy>>")]
    pub policies: Option<Spanned<super::kinds::List<super::kinds::RawPolicy>>>,
    #[serde(skip)]
    pub problems: Vec<KeyProblem>,
}

impl RawDocument {
    pub const FIELDS: &'static [&'static str] = &[
        "apiVersion",
        "kind",
        "defaults",
        "packages",
        "currency",
        "monthly",
        "policies",
    ];
}

/// The `packages` sequence. Anything but a sequence is kept as a [`Scalar`]
/// so the error can say what was found instead of stopping the file.
#[derive(Clone, Debug, PartialEq)]
pub enum PackageList {
    Entries(Vec<Spanned<PackageEntry>>),
    NotAList(Scalar),
}

/// One entry of `packages`: a package mapping, or whatever else was written.
#[derive(Clone, Debug, PartialEq)]
pub enum PackageEntry {
    Package(Box<RawPackage>),
    NotAMapping(Scalar),
}

impl<'de> Deserialize<'de> for PackageEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PackageEntry;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a package mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<PackageEntry, A::Error> {
                let package = RawPackage::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(PackageEntry::Package(Box::new(package)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<PackageEntry, A::Error> {
                ScalarVisitor.visit_seq(seq).map(PackageEntry::NotAMapping)
            }
            forward_scalars_to!(ScalarVisitor, PackageEntry::NotAMapping);
        }
        deserializer.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for PackageList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PackageList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of packages")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PackageList, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = seq.next_element::<Spanned<PackageEntry>>()? {
                    entries.push(entry);
                }
                Ok(PackageList::Entries(entries))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<PackageList, A::Error> {
                ScalarVisitor.visit_map(map).map(PackageList::NotAList)
            }
            forward_scalars_to!(ScalarVisitor, PackageList::NotAList);
        }
        deserializer.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for RawDocument {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawDocument;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a PackageSet mapping (apiVersion, kind, defaults, packages)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawDocument, A::Error> {
                let mut out = RawDocument::default();
                let mut problems = Vec::new();
                read_fields(
                    &mut map,
                    RawDocument::FIELDS,
                    &mut problems,
                    |name, _, map| {
                        match name {
                            "apiVersion" => out.api_version = Some(map.next_value()?),
                            "kind" => out.kind = Some(map.next_value()?),
                            "defaults" => out.defaults = map.next_value()?,
                            "currency" => out.currency = Some(map.next_value()?),
                            "monthly" => out.monthly = Some(map.next_value()?),
                            "policies" => out.policies = Some(map.next_value()?),
                            _ => out.packages = Some(map.next_value()?),
                        }
                        Ok(())
                    },
                )?;
                out.problems = problems;
                Ok(out)
            }
        }
        deserializer.deserialize_map(V)
    }
}

// Schema-only descriptions of the leaf values. Parsing is lenient (see the
// module docs); these say what validation accepts.

/// `oapkg/v1`
#[derive(Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "ApiVersion")]
enum ApiVersionSchema {
    #[serde(rename = "oapkg/v1")]
    V1,
}

/// `PackageSet`, `PriceList` or `CoveragePolicy`
#[derive(Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "Kind")]
enum KindSchema {
    PackageSet,
    PriceList,
    CoveragePolicy,
}
