//! The building blocks of the manifest's lenient reading: a value with its
//! [`Location`] ([`Spanned`]), a value as YAML typed it ([`Scalar`]), the
//! key problems validation reports ([`KeyProblem`]), and the macros that
//! give a mapping type its lenient `Deserialize` (`field_mapping!`).
//! It knows no manifest kind: the document types ([`raw`](super::raw),
//! [`kinds`](super::kinds)) are built from it.

use std::fmt;

use schemars::JsonSchema;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

/// Where a value was written: its 1-based line and column, and the bytes of
/// its token in the text (empty for a mapping or a sequence, which are
/// placed at their first key or dash). What validation needs of
/// serde-saphyr's location, in a form the fast reader
/// ([`fast`](super::fast)) can build too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    line: u32,
    column: u32,
    /// Byte offset and length of the token; `u32::MAX` when unknown.
    offset: u32,
    len: u32,
}

impl Location {
    /// No location (an error the parser could not place).
    pub const UNKNOWN: Location = Location {
        line: 0,
        column: 0,
        offset: u32::MAX,
        len: u32::MAX,
    };

    pub(super) fn new(line: usize, column: usize, offset: usize, len: usize) -> Location {
        let narrow = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Location {
            line: narrow(line),
            column: narrow(column),
            offset: narrow(offset),
            len: narrow(len),
        }
    }

    pub fn line(&self) -> u64 {
        u64::from(self.line)
    }

    pub fn column(&self) -> u64 {
        u64::from(self.column)
    }

    /// The byte range of the token in the text, when known.
    pub fn bytes(&self) -> Option<std::ops::Range<usize>> {
        if self.offset == u32::MAX || self.len == u32::MAX {
            return None;
        }
        let start = usize::try_from(self.offset).ok()?;
        Some(start..start.checked_add(usize::try_from(self.len).ok()?)?)
    }
}

impl From<serde_saphyr::Location> for Location {
    fn from(at: serde_saphyr::Location) -> Location {
        let span = at.span();
        let narrow = |n: Option<u64>| n.and_then(|n| u32::try_from(n).ok()).unwrap_or(u32::MAX);
        Location {
            line: u32::try_from(at.line()).unwrap_or(u32::MAX),
            column: u32::try_from(at.column()).unwrap_or(u32::MAX),
            offset: narrow(span.byte_offset()),
            len: narrow(span.byte_len()),
        }
    }
}

/// A value with where it was written (for an alias: where the alias is).
/// Read through serde-saphyr's `Spanned`, keeping the [`Location`] only.
#[derive(Clone, Debug, PartialEq)]
pub struct Spanned<T> {
    pub value: T,
    pub referenced: Location,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Spanned<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = serde_saphyr::Spanned::<T>::deserialize(deserializer)?;
        Ok(Spanned {
            value: spanned.value,
            referenced: spanned.referenced.into(),
        })
    }
}

/// A YAML value where a single value was expected, as YAML typed it.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    Text(String),
    Unsigned(u64),
    Negative(i64),
    /// An integer too large for 64 bits, as its decimal digits.
    BigInteger(String),
    Float(f64),
    Bool(bool),
    Null,
    /// A sequence or mapping where a single value belongs.
    Collection(&'static str),
}

impl Scalar {
    /// How the value reads in an error message.
    pub fn describe(&self) -> String {
        match self {
            Scalar::Text(text) => format!("the text {text:?}"),
            Scalar::Unsigned(n) => format!("the number {n}"),
            Scalar::Negative(n) => format!("the negative number {n}"),
            Scalar::BigInteger(digits) if digits.len() > 40 => {
                format!("a {}-digit number", digits.trim_start_matches('-').len())
            }
            Scalar::BigInteger(digits) => format!("the number {digits}"),
            Scalar::Float(x) => format!("the decimal number {x}"),
            Scalar::Bool(b) => format!("the boolean {b}"),
            Scalar::Null => "an empty value".to_owned(),
            Scalar::Collection(kind) => format!("a {kind}"),
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

pub(super) struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a single value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
        Ok(u64::try_from(v).map_or(Scalar::Negative(v), Scalar::Unsigned))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
        Ok(Scalar::Unsigned(v))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Scalar, E> {
        Ok(Scalar::BigInteger(v.to_string()))
    }
    fn visit_u128<E>(self, v: u128) -> Result<Scalar, E> {
        Ok(Scalar::BigInteger(v.to_string()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
        Ok(Scalar::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar::Text(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Scalar, E> {
        Ok(Scalar::Text(v))
    }
    fn visit_bytes<E>(self, _: &[u8]) -> Result<Scalar, E> {
        Ok(Scalar::Collection("binary value"))
    }
    fn visit_unit<E>(self) -> Result<Scalar, E> {
        Ok(Scalar::Null)
    }
    fn visit_none<E>(self) -> Result<Scalar, E> {
        Ok(Scalar::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Scalar, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Collection("list"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Collection("mapping"))
    }
}

/// Implements the scalar `visit_*` methods of a visitor by handing the value
/// to [`ScalarVisitor`] and wrapping the result.
macro_rules! forward_scalars_to {
    ($visitor:expr, $wrap:path) => {
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            $visitor.visit_bool(v).map($wrap)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            $visitor.visit_i64(v).map($wrap)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            $visitor.visit_u64(v).map($wrap)
        }
        fn visit_i128<E: de::Error>(self, v: i128) -> Result<Self::Value, E> {
            $visitor.visit_i128(v).map($wrap)
        }
        fn visit_u128<E: de::Error>(self, v: u128) -> Result<Self::Value, E> {
            $visitor.visit_u128(v).map($wrap)
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            $visitor.visit_f64(v).map($wrap)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            $visitor.visit_str(v).map($wrap)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            $visitor.visit_unit().map($wrap)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            $visitor.visit_none().map($wrap)
        }
    };
}

/// `FIELDS` and a lenient `Deserialize` for a mapping whose fields are all
/// `Option<Field>` (plus `problems`): each known key is read as a [`Field`],
/// unknown and repeated keys are kept in `problems` by [`read_fields`].
/// With `not_a_mapping`, anything but a mapping is kept in the type's
/// `not_a_mapping` field (through its `not_a_mapping` constructor) instead
/// of failing the document.
macro_rules! field_mapping {
    ($ty:ident, $expecting:literal, { $($key:literal => $field:ident),+ $(,)? } $(, $not:ident)?) => {
        impl $ty {
            pub const FIELDS: &'static [&'static str] = &[$($key),+];
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<$ty, A::Error> {
                        let mut out = $ty::default();
                        let mut problems = Vec::new();
                        read_fields(&mut map, $ty::FIELDS, &mut problems, |name, _, map| {
                            let value = Some(map.next_value::<Field>()?);
                            match name {
                                $($key => out.$field = value,)+
                                // `read_fields` passes only names of `FIELDS`.
                                _ => {}
                            }
                            Ok(())
                        })?;
                        out.problems = problems;
                        Ok(out)
                    }
                    field_mapping!(@other_values $ty $($not)?);
                }
                field_mapping!(@deserialize deserializer $($not)?)
            }
        }
    };
    // Only a mapping is read; anything else is serde's type error.
    (@other_values $ty:ident) => {};
    (@deserialize $deserializer:ident) => {
        $deserializer.deserialize_map(V)
    };
    // Anything but a mapping is kept, as written, in `not_a_mapping`.
    (@other_values $ty:ident not_a_mapping) => {
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<$ty, A::Error> {
            ScalarVisitor.visit_seq(seq).map($ty::not_a_mapping)
        }
        forward_scalars_to!(ScalarVisitor, $ty::not_a_mapping);
    };
    (@deserialize $deserializer:ident not_a_mapping) => {
        $deserializer.deserialize_any(V)
    };
}
pub(super) use field_mapping;

pub(super) use forward_scalars_to;

/// One field's value with where it was written.
pub type Field = Spanned<Scalar>;

/// A mapping key that validation must report: unknown, or written twice.
#[derive(Clone, Debug, PartialEq)]
pub enum KeyProblem {
    Unknown {
        key: String,
        at: Location,
        expected: &'static [&'static str],
    },
    Duplicate {
        key: String,
        at: Location,
        first: Location,
    },
}

/// Reads a mapping key by key, for types whose fields are all [`Field`]s or
/// handled by `on_known`. Unknown and repeated keys are recorded, not fatal.
pub(super) fn read_fields<'de, A: MapAccess<'de>>(
    map: &mut A,
    known: &'static [&'static str],
    problems: &mut Vec<KeyProblem>,
    mut on_known: impl FnMut(&'static str, Location, &mut A) -> Result<(), A::Error>,
) -> Result<(), A::Error> {
    let mut seen: Vec<(&'static str, Location)> = Vec::new();
    while let Some(key) = map.next_key::<Spanned<FieldName>>()? {
        let text = key.value.as_str();
        match known.iter().copied().find(|name| *name == text) {
            Some(name) => {
                if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
                    problems.push(KeyProblem::Duplicate {
                        key: name.to_owned(),
                        at: key.referenced,
                        first: *first,
                    });
                    map.next_value::<IgnoredAny>()?;
                } else {
                    seen.push((name, key.referenced));
                    on_known(name, key.referenced, map)?;
                }
            }
            None => {
                problems.push(KeyProblem::Unknown {
                    key: text.to_owned(),
                    at: key.referenced,
                    expected: known,
                });
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    Ok(())
}

/// A mapping key as read: a short text kept inline (no allocation: a
/// manifest has five keys per package, and every field name is short), or
/// anything else as text (a long key, or a key that is not a string,
/// described for the error).
pub(super) enum FieldName {
    Inline {
        bytes: [u8; FieldName::INLINE],
        len: u8,
    },
    Other(String),
}

impl FieldName {
    const INLINE: usize = 32;

    fn text(v: &str) -> FieldName {
        let mut bytes = [0; FieldName::INLINE];
        match bytes.get_mut(..v.len()) {
            Some(slot) => {
                slot.copy_from_slice(v.as_bytes());
                FieldName::Inline {
                    bytes,
                    len: v.len() as u8,
                }
            }
            None => FieldName::Other(v.to_owned()),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            FieldName::Inline { bytes, len } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            FieldName::Other(text) => text,
        }
    }
}

impl<'de> Deserialize<'de> for FieldName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FieldName;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FieldName, E> {
                Ok(FieldName::text(v))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<FieldName, E> {
                Ok(FieldName::Other(Scalar::Bool(v).describe()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<FieldName, E> {
                ScalarVisitor
                    .visit_i64(v)
                    .map(|s| FieldName::Other(s.describe()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<FieldName, E> {
                Ok(FieldName::Other(Scalar::Unsigned(v).describe()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<FieldName, E> {
                Ok(FieldName::Other(Scalar::Float(v).describe()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<FieldName, E> {
                Ok(FieldName::Other(Scalar::Null.describe()))
            }
            fn visit_none<E: de::Error>(self) -> Result<FieldName, E> {
                self.visit_unit()
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<FieldName, A::Error> {
                ScalarVisitor
                    .visit_seq(seq)
                    .map(|s| FieldName::Other(s.describe()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FieldName, A::Error> {
                ScalarVisitor
                    .visit_map(map)
                    .map(|s| FieldName::Other(s.describe()))
            }
        }
        deserializer.deserialize_any(V)
    }
}

// Schema-only descriptions of the leaf values shared by every kind.

/// Zalo Official Account id: 1 to 19 digits, not starting with 0, quoted or not.
#[derive(Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "Oaid")]
#[serde(untagged)]
#[allow(dead_code)]
pub(super) enum OaidSchema {
    Text(#[schemars(regex(pattern = r"^[1-9][0-9]{0,18}$"))] String),
    Number(#[schemars(range(min = 1))] u64),
}

/// trial | advanced | premium (any case), or 1 | 2 | 3.
#[derive(Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "Tier")]
#[serde(untagged)]
#[allow(dead_code)]
pub(super) enum TierSchema {
    Name(#[schemars(regex(pattern = r"^(?i)(trial|advanced|premium)$"))] String),
    Number(#[schemars(range(min = 1, max = 3))] u8),
}

/// A date, `YYYY-MM-DD`.
#[derive(Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "Date")]
#[serde(transparent)]
pub(super) struct DateSchema(#[schemars(regex(pattern = r"^\d{4}-\d{2}-\d{2}$"))] String);

/// Whole months, 1 to 36.
#[derive(Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "Duration")]
#[serde(transparent)]
pub(super) struct DurationSchema(#[schemars(range(min = 1, max = 36))] u8);
