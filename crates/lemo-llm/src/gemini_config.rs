//! The Gemini backend's configuration, and the conversion of the IR's JSON schema to the
//! OpenAPI subset Gemini's `responseSchema` takes: both pure data, in every build, so a run file
//! with `kind = "gemini"` parses whether or not the client (`GeminiChat`, the `gemini` feature)
//! is compiled in.

use crate::retry::RetryPolicy;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Google's Generative Language API (v1beta: system instructions and response schemas).
pub const GEMINI_BASE_URL: &str = "https://generativelanguage.googleapis.com/v1beta";
/// The default Gemini model.
pub const GEMINI_DEFAULT_MODEL: &str = "gemini-2.5-flash";

/// Configuration of the Gemini backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GeminiConfig {
    /// Model name, e.g. `gemini-2.5-flash`, `gemini-2.5-pro`.
    pub model: String,
    /// Endpoint base, up to the API version. Overridable for tests and proxies.
    pub base_url: String,
    /// Environment variables looked at for the key, first set wins.
    pub api_key_env: Vec<String>,
    /// Sampling temperature.
    pub temperature: f32,
    /// Most tokens to generate.
    pub max_tokens: Option<u32>,
    /// Ask for `application/json` following the IR's schema (converted to Gemini's OpenAPI
    /// subset); when the server rejects the schema, only the JSON mime type is kept.
    pub structured_output: bool,
    /// Timeout and retries.
    pub retry: RetryPolicy,
}

impl Default for GeminiConfig {
    fn default() -> Self {
        GeminiConfig {
            model: GEMINI_DEFAULT_MODEL.to_string(),
            base_url: GEMINI_BASE_URL.to_string(),
            api_key_env: vec!["GEMINI_API_KEY".into(), "GOOGLE_API_KEY".into()],
            temperature: 0.0,
            max_tokens: Some(8192),
            structured_output: true,
            retry: RetryPolicy::default(),
        }
    }
}

/// A JSON schema (as schemars writes it) converted to the OpenAPI subset Gemini's
/// `responseSchema` takes: `$ref`s inlined, `oneOf` as `anyOf`, `const` as a one-value `enum`,
/// `["T", "null"]` types as `nullable`, and keywords outside the subset dropped.
pub fn to_gemini_schema(schema: &Value) -> Value {
    let defs = schema
        .get("$defs")
        .or_else(|| schema.get("definitions"))
        .cloned()
        .unwrap_or(Value::Null);
    convert(schema, &defs, 0)
}

fn convert(node: &Value, defs: &Value, depth: usize) -> Value {
    const KEEP: [&str; 10] = [
        "description",
        "format",
        "nullable",
        "enum",
        "required",
        "minItems",
        "maxItems",
        "minimum",
        "maximum",
        "title",
    ];
    let Some(obj) = node.as_object() else {
        return node.clone();
    };
    if depth > 32 {
        return Value::Object(Map::new());
    }
    if let Some(target) = obj.get("$ref").and_then(Value::as_str) {
        let name = target.rsplit('/').next().unwrap_or_default();
        if let Some(def) = defs.get(name) {
            return convert(def, defs, depth + 1);
        }
    }
    let mut out = Map::new();
    for (k, v) in obj {
        match k.as_str() {
            "type" => match v {
                Value::Array(types) => {
                    let non_null: Vec<&Value> = types
                        .iter()
                        .filter(|t| t.as_str() != Some("null"))
                        .collect();
                    if let Some(t) = non_null.first() {
                        out.insert("type".into(), (*t).clone());
                    }
                    if non_null.len() < types.len() {
                        out.insert("nullable".into(), Value::Bool(true));
                    }
                }
                other => {
                    out.insert("type".into(), other.clone());
                }
            },
            "const" => {
                out.insert("enum".into(), Value::Array(vec![v.clone()]));
                if let Some(t) = json_type(v) {
                    out.entry("type").or_insert(Value::String(t.into()));
                }
            }
            "oneOf" | "anyOf" => {
                let variants = v
                    .as_array()
                    .map(|a| a.iter().map(|x| convert(x, defs, depth + 1)).collect())
                    .unwrap_or_default();
                out.insert("anyOf".into(), Value::Array(variants));
            }
            "allOf" => {
                // Merge the parts (schemars writes allOf for flattened structs).
                for part in v.as_array().into_iter().flatten() {
                    if let Value::Object(m) = convert(part, defs, depth + 1) {
                        for (pk, pv) in m {
                            merge_key(&mut out, pk, pv);
                        }
                    }
                }
            }
            "items" => {
                out.insert("items".into(), convert(v, defs, depth + 1));
            }
            "properties" => {
                let props = v
                    .as_object()
                    .map(|p| {
                        p.iter()
                            .map(|(pk, pv)| (pk.clone(), convert(pv, defs, depth + 1)))
                            .collect::<Map<_, _>>()
                    })
                    .unwrap_or_default();
                merge_key(&mut out, "properties".into(), Value::Object(props));
            }
            key if KEEP.contains(&key) => merge_key(&mut out, k.clone(), v.clone()),
            _ => {}
        }
    }
    Value::Object(out)
}

fn merge_key(out: &mut Map<String, Value>, key: String, value: Value) {
    match (out.get_mut(&key), value) {
        (Some(Value::Object(a)), Value::Object(b)) => a.extend(b),
        (Some(Value::Array(a)), Value::Array(b)) if key == "required" => {
            for x in b {
                if !a.contains(&x) {
                    a.push(x);
                }
            }
        }
        (_, v) => {
            out.insert(key, v);
        }
    }
}

fn json_type(v: &Value) -> Option<&'static str> {
    match v {
        Value::String(_) => Some("string"),
        Value::Bool(_) => Some("boolean"),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some("integer"),
        Value::Number(_) => Some("number"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schema_conversion_inlines_refs_and_drops_unknown_keywords() {
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "Graph",
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "name": {"type": ["string", "null"]},
                "nodes": {"type": "array", "items": {"$ref": "#/$defs/Node"}}
            },
            "required": ["nodes"],
            "$defs": {
                "Node": {"oneOf": [
                    {"type": "object", "properties": {"op": {"const": "relu"}}, "required": ["op"]},
                    {"type": "object", "properties": {"op": {"type": "string", "enum": ["dense"]},
                     "units": {"type": "integer", "format": "uint32", "minimum": 0}},
                     "required": ["op", "units"]}
                ]}
            }
        });
        let g = to_gemini_schema(&schema);
        let text = g.to_string();
        for gone in [
            "$schema",
            "$ref",
            "$defs",
            "additionalProperties",
            "oneOf",
            "const",
        ] {
            assert!(!text.contains(gone), "{gone} left in {text}");
        }
        assert_eq!(
            g["properties"]["name"],
            json!({"type": "string", "nullable": true})
        );
        let variants = g["properties"]["nodes"]["items"]["anyOf"]
            .as_array()
            .map(Vec::len);
        assert_eq!(variants, Some(2));
        assert_eq!(
            g["properties"]["nodes"]["items"]["anyOf"][0]["properties"]["op"],
            json!({"enum": ["relu"], "type": "string"})
        );
        assert_eq!(g["required"], json!(["nodes"]));
    }
}
