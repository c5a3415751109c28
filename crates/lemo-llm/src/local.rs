//! The embedded local architect's configuration, and the JSON schema its decoding grammar is
//! derived from. The engine itself ([`crate::LocalChat`], llama.cpp) is behind the `local`
//! feature; the configuration is always there, so a run file with `kind = "local"` parses in
//! every build and a build without the feature says how to get it.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::PathBuf;

/// Where `scripts/fetch-model.sh` puts the small test model (SmolLM2-135M-Instruct, Q4_1),
/// relative to the repository root: the default `model_path`.
pub const LOCAL_DEFAULT_MODEL_PATH: &str = "target/models/SmolLM2-135M-Instruct.Q4_1.gguf";

/// Longest string (node id, network name) the local model may write under the grammar.
pub const GRAMMAR_MAX_STRING: u32 = 32;
/// Most inputs one node may name under the grammar.
pub const GRAMMAR_MAX_INPUTS: u32 = 4;

/// Configuration of the embedded local architect (`kind = "local"`): a GGUF model run
/// in-process on the CPU, its decoding constrained to the IR's JSON schema.
///
/// ```toml
/// [architect]
/// kind = "local"
/// model_path = "target/models/SmolLM2-135M-Instruct.Q4_1.gguf"
/// temperature = 0.7
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LocalConfig {
    /// The GGUF model file (relative paths are relative to the working directory).
    pub model_path: PathBuf,
    /// Context window in tokens; `None`: the model's training context, at most 8192. Each
    /// request allocates only what its prompt and `max_tokens` need, up to this.
    pub context: Option<u32>,
    /// CPU threads; `None`: every core the process may use.
    pub threads: Option<u32>,
    /// Sampling temperature; 0 is greedy decoding (the seed is then irrelevant).
    pub temperature: f32,
    /// Nucleus sampling: keep the most likely tokens up to this probability mass (1: all).
    pub top_p: f32,
    /// Most tokens to generate per answer; an answer cut off here is `truncated` (a repair
    /// round follows).
    pub max_tokens: u32,
    /// Most nodes the grammar lets one answer have (bounds the answer's length).
    pub max_nodes: u32,
    /// Sampling seed, used where the request does not set one (the architect sets the run's).
    pub seed: Option<u64>,
    /// Constrain decoding to the IR's JSON schema (a llama.cpp grammar derived from it); off,
    /// the model writes free text and the answer is extracted from the prose.
    pub structured_output: bool,
    /// Chat template: `None` uses the one in the GGUF metadata (`tokenizer.chat_template`),
    /// else ChatML; or a llama.cpp template name (`chatml`, `llama3`, ...).
    pub chat_template: Option<String>,
}

impl Default for LocalConfig {
    fn default() -> Self {
        LocalConfig {
            model_path: PathBuf::from(LOCAL_DEFAULT_MODEL_PATH),
            context: None,
            threads: None,
            temperature: 0.7,
            top_p: 0.95,
            max_tokens: 2048,
            max_nodes: 32,
            seed: None,
            structured_output: true,
            chat_template: None,
        }
    }
}

impl LocalConfig {
    /// Checks the values that need no model file.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=2.0).contains(&self.temperature) {
            return Err(format!(
                "local temperature {} is outside 0..=2",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("local top_p {} is outside (0, 1]", self.top_p));
        }
        if self.max_tokens == 0 {
            return Err("local max_tokens must be at least 1".into());
        }
        if self.max_nodes == 0 {
            return Err("local max_nodes must be at least 1".into());
        }
        if self.context == Some(0) || self.threads == Some(0) {
            return Err("local context and threads must be at least 1 when set".into());
        }
        Ok(())
    }
}

/// The JSON schema the local model's grammar is derived from, as JSON text: the IR's schema
/// (`lemo_arch::json_schema()`) made explicit for llama.cpp's schema-to-grammar converter.
///
/// - A schema with common `properties` beside a `oneOf` / `anyOf` of object branches (the IR's
///   `Node`: `id`, `in`, `init`, `l2` beside one branch per op) is distributed into each
///   branch, since the converter reads only the branches. Same language, written out.
/// - Properties are written required first (in the `required` order: `id`, `op`, then the op's
///   own), then the optional ones, so the model names the node and its op before its fields.
/// - Lengths are bounded so every answer can finish: free strings at [`GRAMMAR_MAX_STRING`]
///   characters, a node's inputs at [`GRAMMAR_MAX_INPUTS`], the root's `nodes` array at
///   `max_nodes`.
pub fn grammar_schema(schema: &Value, max_nodes: u32) -> String {
    let mut schema = normalise(schema);
    if let Some(nodes) = schema.pointer_mut("/properties/nodes")
        && let Some(o) = nodes.as_object_mut()
    {
        o.insert("maxItems".into(), max_nodes.into());
        o.insert("minItems".into(), 1.into());
    }
    let mut out = String::new();
    write_ordered(&schema, &mut out);
    out
}

/// Distributes common properties into `oneOf` / `anyOf` branches and bounds strings and
/// arrays, recursively.
fn normalise(value: &Value) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.iter().map(normalise).collect()),
        Value::Object(map) => {
            let mut map: serde_json::Map<String, Value> =
                map.iter().map(|(k, v)| (k.clone(), normalise(v))).collect();
            distribute(&mut map);
            bound(&mut map);
            Value::Object(map)
        }
        other => other.clone(),
    }
}

fn distribute(map: &mut serde_json::Map<String, Value>) {
    let Some(common) = map.get("properties").and_then(Value::as_object).cloned() else {
        return;
    };
    let Some(union) = ["oneOf", "anyOf"]
        .into_iter()
        .find(|k| map.contains_key(*k))
    else {
        return;
    };
    let Some(branches) = map.get(union).and_then(Value::as_array) else {
        return;
    };
    if !branches
        .iter()
        .all(|b| b.get("properties").is_some_and(Value::is_object))
    {
        return;
    }
    let common_required: Vec<Value> = map
        .get("required")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let merged: Vec<Value> = branches
        .iter()
        .map(|branch| {
            let mut b = branch.clone();
            if let Some(bo) = b.as_object_mut() {
                let mut props = common.clone();
                if let Some(own) = bo.get("properties").and_then(Value::as_object) {
                    props.extend(own.clone());
                }
                let mut required = common_required.clone();
                for r in bo
                    .get("required")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if !required.contains(r) {
                        required.push(r.clone());
                    }
                }
                bo.insert("properties".into(), Value::Object(props));
                bo.insert("required".into(), Value::Array(required));
                bo.insert("additionalProperties".into(), Value::Bool(false));
                bo.entry("type").or_insert_with(|| "object".into());
            }
            b
        })
        .collect();
    map.remove("properties");
    map.remove("required");
    map.remove("type");
    map.insert(union.into(), Value::Array(merged));
}

fn has_type(map: &serde_json::Map<String, Value>, t: &str) -> bool {
    match map.get("type") {
        Some(Value::String(s)) => s == t,
        Some(Value::Array(ts)) => ts.iter().any(|x| x.as_str() == Some(t)),
        _ => false,
    }
}

fn bound(map: &mut serde_json::Map<String, Value>) {
    let free = !map.contains_key("const") && !map.contains_key("enum");
    if free && has_type(map, "string") && !map.contains_key("maxLength") {
        map.insert("maxLength".into(), GRAMMAR_MAX_STRING.into());
    }
    if has_type(map, "array") && !map.contains_key("maxItems") {
        map.insert("maxItems".into(), GRAMMAR_MAX_INPUTS.into());
    }
}

/// JSON text of `value` whose `properties` maps list the `required` names first, in that
/// order, then the others in name order (serde_json's maps are sorted by name).
fn write_ordered(value: &Value, out: &mut String) {
    match value {
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_ordered(v, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let required: Vec<&str> = map
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                match v.as_object() {
                    Some(props) if k == "properties" => {
                        let mut keys: Vec<&String> = props.keys().collect();
                        keys.sort_by_key(|name| {
                            required
                                .iter()
                                .position(|r| r == name)
                                .unwrap_or(usize::MAX)
                        });
                        out.push('{');
                        for (j, name) in keys.into_iter().enumerate() {
                            if j > 0 {
                                out.push(',');
                            }
                            out.push_str(&Value::String(name.clone()).to_string());
                            out.push(':');
                            write_ordered(&props[name.as_str()], out);
                        }
                        out.push('}');
                    }
                    _ => write_ordered(v, out),
                }
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_properties_are_distributed_into_every_op_and_ordered() {
        let text = grammar_schema(&lemo_arch::json_schema(), 12);
        let s: Value = serde_json::from_str(&text).expect("valid JSON");
        let node = &s["$defs"]["Node"];
        assert!(node.get("properties").is_none());
        let branches = node["oneOf"].as_array().expect("oneOf");
        assert_eq!(branches.len(), lemo_arch::OP_NAMES.len());
        for b in branches {
            let req: Vec<&str> = b["required"]
                .as_array()
                .expect("required")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            assert_eq!(&req[..2], ["id", "op"], "{b}");
            for common in ["id", "in", "init", "l2"] {
                assert!(b["properties"].get(common).is_some(), "{common} in {b}");
            }
            assert_eq!(b["properties"]["id"]["maxLength"], GRAMMAR_MAX_STRING);
        }
        assert_eq!(s["properties"]["nodes"]["maxItems"], 12);
        // written in the required order: `"id"` then `"op"` then the op's fields
        let conv = text.find(r#"{"id":"#).expect("id first");
        let op = text[conv..].find(r#""op":"#).expect("op");
        let filters = text[conv..].find(r#""filters":"#).expect("filters");
        assert!(op < filters, "{}", &text[conv..conv + 400]);
    }

    #[test]
    fn config_defaults_validate_and_bad_values_are_named() {
        assert!(LocalConfig::default().validate().is_ok());
        let c = LocalConfig {
            top_p: 0.0,
            ..LocalConfig::default()
        };
        assert!(c.validate().expect_err("invalid").contains("top_p"));
        let c = LocalConfig {
            max_tokens: 0,
            ..LocalConfig::default()
        };
        assert!(c.validate().expect_err("invalid").contains("max_tokens"));
    }
}
