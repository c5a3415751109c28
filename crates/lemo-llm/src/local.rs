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
/// Fewest nodes `max_nodes` may allow: a chain's map layers, its pooling, vector layers and
/// logits need room.
pub const MIN_GRAMMAR_NODES: u32 = 8;

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
    /// The networks the grammar lets the model write: `chain` (default) or `graph`.
    pub form: NetworkForm,
}

/// The networks the local model's grammar admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkForm {
    /// A chain: every node takes the previous one (no `in`, no `add` or `concat`), feature-map
    /// layers first, then one `global_avg_pool` or `flatten`, then vector layers, and last the
    /// dense layer of the task's logits. Every answer then has the shape of a network for the
    /// task; only sizes and budgets can still be wrong. What a small model writes valid.
    #[default]
    Chain,
    /// The whole IR (named inputs, residual `add`, `concat`), the last node the dense layer of
    /// the logits: for bigger models.
    Graph,
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
            form: NetworkForm::default(),
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
        if self.max_nodes < MIN_GRAMMAR_NODES {
            return Err(format!(
                "local max_nodes must be at least {MIN_GRAMMAR_NODES}"
            ));
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
/// - In the [`NetworkForm::Chain`] form, the subset a small model writes well (`chain_only`):
///   nodes without `in`, `id` or tuning fields, no `add` or `concat`, bounded integers.
pub fn grammar_schema(schema: &Value, max_nodes: u32, form: NetworkForm) -> String {
    let mut schema = schema.clone();
    if form == NetworkForm::Chain {
        chain_only(&mut schema);
    }
    let mut schema = normalise(&schema);
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

/// Room the chain form keeps for its last layers: the global pooling, at most
/// [`CHAIN_VECTOR_LAYERS`] vector layers and the logits.
const CHAIN_TAIL: u32 = 2 + CHAIN_VECTOR_LAYERS;
/// Most vector layers (dense, dropout, activations) a chain may have before its logits.
const CHAIN_VECTOR_LAYERS: u32 = 4;

/// Gives the `nodes` array of a grammar that llama.cpp's converter made from
/// [`grammar_schema`] the shape of a network for the task: the last node is the dense layer of
/// `classes` logits (no id: its position); in the [`NetworkForm::Chain`] form, the nodes before it are
/// feature-map layers, one `global_avg_pool` or `flatten`, then vector layers (by
/// [`lemo_arch::op_signature`]). At most `max_nodes` nodes. Without `classes` the graph form is
/// left as it is. An error says what in the grammar was not as expected.
pub fn shape_network_grammar(
    grammar: &str,
    form: NetworkForm,
    max_nodes: u32,
    classes: Option<u32>,
) -> Result<String, String> {
    let logits = classes.map(|c| {
        format!(
            r#"lemo-logits ::= "{{" space "\"op\"" space ":" space "\"dense\"" "," space "\"units\"" space ":" space "{c}" space "}}""#
        )
    });
    let mut rules = Vec::new();
    let nodes = match form {
        NetworkForm::Graph => {
            if logits.is_none() {
                return Ok(grammar.to_string());
            }
            format!(
                r#"nodes ::= "[" space (nodes-item "," space){{0,{}}} lemo-logits space "]""#,
                max_nodes.saturating_sub(1)
            )
        }
        NetworkForm::Chain => {
            let ops = node_rules(grammar);
            let pick = |keep: &dyn Fn(lemo_arch::OpSignature) -> bool| {
                ops.iter()
                    .filter(|(_, op)| lemo_arch::op_signature(op).is_some_and(keep))
                    .map(|(rule, _)| rule.as_str())
                    .collect::<Vec<_>>()
                    .join(" | ")
            };
            let map = pick(&|s| s.on_map && !s.to_vector && !s.merge);
            let pool = pick(&|s| s.on_map && s.to_vector);
            let vector = pick(&|s| s.on_vector && !s.merge && !(s.on_map && s.to_vector));
            if map.is_empty() || pool.is_empty() || vector.is_empty() {
                return Err(format!(
                    "the grammar's node rules ({} found) lack feature-map, pooling or vector layers",
                    ops.len()
                ));
            }
            rules.push(format!("lemo-map ::= {map}"));
            rules.push(format!("lemo-pool ::= {pool}"));
            rules.push(format!("lemo-vector ::= {vector}"));
            // A chain without the logits fixed ends with its vector layers.
            let head = if logits.is_some() {
                r#" "," space lemo-logits"#
            } else {
                ""
            };
            format!(
                r#"nodes ::= "[" space (lemo-map "," space){{0,{}}} lemo-pool ("," space lemo-vector){{0,{CHAIN_VECTOR_LAYERS}}}{head} space "]""#,
                max_nodes.saturating_sub(CHAIN_TAIL).max(1)
            )
        }
    };
    rules.extend(logits);
    let mut found = false;
    let mut out: Vec<String> = grammar
        .lines()
        .map(|line| {
            if line.starts_with("nodes ::=") {
                found = true;
                nodes.clone()
            } else {
                line.to_string()
            }
        })
        .collect();
    if !found {
        return Err("the grammar has no `nodes` rule".into());
    }
    out.extend(rules);
    Ok(out.join("\n"))
}

/// The converter's rule of each op branch of `Node` (`ref-defs-Node-3` ...) with its op name,
/// read from the rules that write the op (`ref-defs-Node-3-op ::= "\"batch_norm\""`).
fn node_rules(grammar: &str) -> Vec<(String, String)> {
    grammar
        .lines()
        .filter_map(|line| {
            let (name, body) = line.split_once(" ::= ")?;
            let rule = name.strip_suffix("-op")?;
            let index = rule.strip_prefix("ref-defs-Node-")?;
            if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let op = body.trim().strip_prefix(r#""\""#)?.strip_suffix(r#"\"""#)?;
            Some((rule.to_string(), op.to_string()))
        })
        .collect()
}

/// The fields a chain's nodes leave at their defaults (tuning a small model gets wrong more
/// often than right: a momentum above 1, an `l2` on a ReLU).
const CHAIN_DEFAULTED: [&str; 11] = [
    "id",
    "in",
    "init",
    "l2",
    "bias",
    "dilation",
    "groups",
    "epsilon",
    "momentum",
    "slope",
    "multiplier",
];

/// The ranges a chain's integer fields keep to: `(field, minimum, maximum)`.
const CHAIN_RANGES: [(&str, u32, u32); 4] = [
    ("filters", 1, 1024),
    ("units", 1, 1024),
    ("kernel", 1, 7),
    ("stride", 1, 4),
];

/// The dropout rates a chain may use.
const CHAIN_RATES: [f64; 5] = [0.1, 0.2, 0.3, 0.4, 0.5];

/// The IR's schema for a chain (for a small model): no named inputs and no ops that merge
/// them, no ids (an absent id is the node's position), the tuning fields of
/// [`CHAIN_DEFAULTED`] left at their defaults, integers within [`CHAIN_RANGES`] (pixel
/// padding at most 3), dropout rates from [`CHAIN_RATES`].
fn chain_only(schema: &mut Value) {
    if let Some(pixels) = schema
        .pointer_mut("/$defs/Padding/anyOf")
        .and_then(Value::as_array_mut)
    {
        for branch in pixels.iter_mut().filter_map(Value::as_object_mut) {
            if has_type(branch, "integer") {
                branch.insert("maximum".into(), 3.into());
            }
        }
    }
    let Some(node) = schema
        .pointer_mut("/$defs/Node")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    chain_fields(node);
    for union in ["oneOf", "anyOf"] {
        if let Some(branches) = node.get_mut(union).and_then(Value::as_array_mut) {
            branches.retain(|b| {
                let op = b.pointer("/properties/op/const").and_then(Value::as_str);
                !op.and_then(lemo_arch::op_signature)
                    .is_some_and(|sig| sig.merge)
            });
            for branch in branches.iter_mut().filter_map(Value::as_object_mut) {
                chain_fields(branch);
            }
        }
    }
}

/// [`chain_only`] on one object schema's `properties` and `required`.
fn chain_fields(object: &mut serde_json::Map<String, Value>) {
    if let Some(props) = object.get_mut("properties").and_then(Value::as_object_mut) {
        props.retain(|name, _| !CHAIN_DEFAULTED.contains(&name.as_str()));
        for (name, min, max) in CHAIN_RANGES {
            if let Some(field) = props.get_mut(name).and_then(Value::as_object_mut) {
                field.insert("minimum".into(), min.into());
                field.insert("maximum".into(), max.into());
            }
        }
        if let Some(rate) = props.get_mut("rate") {
            *rate = serde_json::json!({ "enum": CHAIN_RATES });
        }
    }
    if let Some(required) = object.get_mut("required").and_then(Value::as_array_mut) {
        required.retain(|r| !r.as_str().is_some_and(|r| CHAIN_DEFAULTED.contains(&r)));
    }
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
        let text = grammar_schema(&lemo_arch::json_schema(), 12, NetworkForm::Graph);
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
    fn the_chain_schema_has_no_inputs_and_no_merges() {
        let text = grammar_schema(&lemo_arch::json_schema(), 12, NetworkForm::Chain);
        let s: Value = serde_json::from_str(&text).expect("valid JSON");
        let branches = s["$defs"]["Node"]["oneOf"].as_array().expect("oneOf");
        assert_eq!(branches.len(), lemo_arch::OP_NAMES.len() - 2);
        for b in branches {
            for defaulted in CHAIN_DEFAULTED {
                assert!(b["properties"].get(defaulted).is_none(), "{defaulted}: {b}");
            }
            if let Some(filters) = b["properties"].get("filters") {
                assert_eq!(
                    (filters["minimum"].as_u64(), filters["maximum"].as_u64()),
                    (Some(1), Some(1024))
                );
            }
            assert_eq!(b["required"][0], "op", "{b}");
            let op = b["properties"]["op"]["const"].as_str().expect("op");
            assert!(!["add", "concat"].contains(&op));
        }
    }

    /// Rules written as llama.cpp's converter writes them (the real converter's output is
    /// checked by tests/local.rs, through the model's answers).
    const CONVERTED: &str = r#"nodes ::= "[" space nodes-item ("," space nodes-item){0,31} space "]"
nodes-item ::= ref-defs-Node
ref-defs-Node ::= ref-defs-Node-0 | ref-defs-Node-1 | ref-defs-Node-2 | ref-defs-Node-3
ref-defs-Node-0-op ::= "\"conv2d\""
ref-defs-Node-1-op ::= "\"global_avg_pool\""
ref-defs-Node-2-op ::= "\"dense\""
ref-defs-Node-3-op ::= "\"relu\""
ref-defs-Node-3-op-kv ::= "\"op\"" space ":" space ref-defs-Node-3-op
root ::= "{" space nodes-kv "}""#;

    #[test]
    fn the_chain_grammar_orders_layers_by_kind_and_ends_with_the_logits() {
        let g = shape_network_grammar(CONVERTED, NetworkForm::Chain, 32, Some(10)).expect("shaped");
        assert!(
            g.contains("lemo-map ::= ref-defs-Node-0 | ref-defs-Node-3\n"),
            "{g}"
        );
        assert!(g.contains("lemo-pool ::= ref-defs-Node-1\n"), "{g}");
        assert!(
            g.contains("lemo-vector ::= ref-defs-Node-2 | ref-defs-Node-3\n"),
            "{g}"
        );
        assert!(g.contains(r#"(lemo-map "," space){0,26} lemo-pool ("," space lemo-vector){0,4} "," space lemo-logits space "]""#), "{g}");
        assert!(
            g.contains(r#""\"units\"" space ":" space "10" space "}""#),
            "{g}"
        );
        assert!(
            !g.contains("nodes-item (\",\""),
            "the old rule is gone: {g}"
        );
        // without the classes, the chain ends with its vector layers
        let g = shape_network_grammar(CONVERTED, NetworkForm::Chain, 32, None).expect("shaped");
        assert!(!g.contains("lemo-logits"), "{g}");
    }

    #[test]
    fn the_graph_grammar_only_fixes_the_logits() {
        let g = shape_network_grammar(CONVERTED, NetworkForm::Graph, 8, Some(3)).expect("shaped");
        assert!(
            g.contains(r#"nodes ::= "[" space (nodes-item "," space){0,7} lemo-logits space "]""#),
            "{g}"
        );
        assert_eq!(
            shape_network_grammar(CONVERTED, NetworkForm::Graph, 8, None).as_deref(),
            Ok(CONVERTED)
        );
    }

    #[test]
    fn a_grammar_not_laid_out_as_expected_is_an_error() {
        let no_nodes = CONVERTED.replace("nodes ::=", "items ::=");
        assert!(shape_network_grammar(&no_nodes, NetworkForm::Graph, 8, Some(3)).is_err());
        let no_ops = "nodes ::= \"[\" \"]\"";
        let err =
            shape_network_grammar(no_ops, NetworkForm::Chain, 8, Some(3)).expect_err("no ops");
        assert!(err.contains("0 found"), "{err}");
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
