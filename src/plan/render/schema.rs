//! The pieces of the `--format json` plan's JSON Schema (`oapkg schema
//! --plan`) that no document type carries: the values the document holds
//! as text (keys, dates, hashes, flags), named in the document's words,
//! never after Rust types. The schema itself is derived from the document's
//! types ([`super::json`], `plan_schema`), which use these.

use schemars::JsonSchema;

/// `OAID@YYYY-MM-DD`: a package's identity.
#[derive(JsonSchema)]
#[schemars(rename = "Key")]
#[allow(dead_code)]
pub(crate) struct KeySchema(
    #[schemars(regex(pattern = r"^[0-9]{1,19}@\d{4}-\d{2}-\d{2}$"))] String,
);

/// A calendar date, `YYYY-MM-DD`.
#[derive(JsonSchema)]
#[schemars(rename = "Date")]
#[allow(dead_code)]
pub(crate) struct DateSchema(#[schemars(regex(pattern = r"^\d{4}-\d{2}-\d{2}$"))] String);

/// A time, RFC 3339 in UTC (`2026-11-26T10:00:03Z`).
#[derive(JsonSchema)]
#[schemars(rename = "Timestamp")]
#[allow(dead_code)]
pub(crate) struct TimestampSchema(#[schemars(extend("format" = "date-time"))] String);

/// A content hash, `sha256:` and 64 hex digits.
#[derive(JsonSchema)]
#[schemars(rename = "Hash")]
#[allow(dead_code)]
pub(crate) struct HashSchema(#[schemars(regex(pattern = r"^sha256:[0-9a-f]{64}$"))] String);

/// A flag apply needs: `--allow-replace`, `--allow-overlap` or
/// `--max-purchases N`.
#[derive(JsonSchema)]
#[schemars(rename = "Need")]
#[allow(dead_code)]
pub(crate) struct NeedSchema(
    #[schemars(regex(pattern = r"^(--allow-replace|--allow-overlap|--max-purchases [0-9]+)$"))]
    String,
);

#[cfg(test)]
mod tests {
    use crate::plan::render::{fixtures, plan_schema};

    /// Checks `value` against the subset of JSON Schema the plan's schema
    /// uses (`$ref`, `type`, `properties`, `required`, `items`, `enum`,
    /// `anyOf`, `oneOf`, `const`), naming the path of the first mismatch.
    fn conforms(
        root: &serde_json::Value,
        schema: &serde_json::Value,
        value: &serde_json::Value,
        path: &str,
    ) -> Result<(), String> {
        use serde_json::Value;
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            let name = reference.trim_start_matches("#/$defs/");
            return conforms(root, &root["$defs"][name], value, path);
        }
        for combinator in ["anyOf", "oneOf"] {
            if let Some(options) = schema.get(combinator).and_then(Value::as_array)
                && !options
                    .iter()
                    .any(|s| conforms(root, s, value, path).is_ok())
            {
                return Err(format!("{path}: {value} matches none of {combinator}"));
            }
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
            && !allowed.contains(value)
        {
            return Err(format!("{path}: {value} not in {allowed:?}"));
        }
        if let Some(constant) = schema.get("const")
            && constant != value
        {
            return Err(format!("{path}: {value} is not {constant}"));
        }
        if let Some(types) = schema.get("type") {
            let types: Vec<&str> = match types {
                Value::String(t) => vec![t.as_str()],
                Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            let actual = match value {
                Value::Null => "null",
                Value::Bool(_) => "boolean",
                Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
                Value::Number(_) => "number",
                Value::String(_) => "string",
                Value::Array(_) => "array",
                Value::Object(_) => "object",
            };
            let ok = types.contains(&actual) || (actual == "integer" && types.contains(&"number"));
            if !ok {
                return Err(format!("{path}: {actual} where the schema says {types:?}"));
            }
        }
        if let Value::Object(fields) = value {
            let properties = schema.get("properties").and_then(Value::as_object);
            if let Some(properties) = properties {
                for (name, field) in fields {
                    match properties.get(name) {
                        Some(s) => conforms(root, s, field, &format!("{path}.{name}"))?,
                        None if schema["additionalProperties"] == false => {
                            return Err(format!("{path}.{name}: not in the schema"));
                        }
                        None => {}
                    }
                }
            }
            for name in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let name = name.as_str().unwrap_or_default();
                if !fields.contains_key(name) {
                    return Err(format!("{path}: lacks required {name}"));
                }
            }
        }
        if let (Value::Array(items), Some(item)) = (value, schema.get("items")) {
            for (i, v) in items.iter().enumerate() {
                conforms(root, item, v, &format!("{path}[{i}]"))?;
            }
        }
        Ok(())
    }

    #[test]
    fn every_fixture_plan_conforms_to_the_schema() {
        let schema = serde_json::to_value(plan_schema()).unwrap();
        for plan in [
            fixtures::no_changes(),
            fixtures::purchases_only(),
            fixtures::orphans_only(),
            fixtures::mixed(),
            fixtures::guarded(),
            fixtures::expired_only(),
        ] {
            let document: serde_json::Value =
                serde_json::from_str(&crate::plan::render::json(&plan)).unwrap();
            conforms(&schema, &schema, &document, "$").unwrap();
        }
        // The checker does refuse what the schema does not allow.
        let mut document: serde_json::Value =
            serde_json::from_str(&crate::plan::render::json(&fixtures::mixed())).unwrap();
        document["changes"][0]["action"] = "buy".into();
        assert!(conforms(&schema, &schema, &document, "$").is_err());
    }

    #[test]
    fn the_schema_names_no_rust_type() {
        let text = serde_json::to_string_pretty(&plan_schema()).unwrap();
        let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
        for name in schema["$defs"].as_object().unwrap().keys() {
            assert!(
                !name.starts_with("Json") && !name.ends_with("Schema"),
                "a Rust type name: {name}"
            );
        }
        assert!(!text.contains("`None`"), "{text}");
    }
}
