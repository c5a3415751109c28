//! Reading a network out of what an LLM wrote, and strict JSON (de)serialisation.
//!
//! [`parse_answer`] finds the JSON in prose or code fences, takes the last complete block that
//! holds a network, removes `//` and `/* */` comments and trailing commas, and converts it
//! strictly: unknown ops and fields are errors that name them. Nothing in the text can panic it.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{ArchError, closest};
use crate::ir::{Graph, NODE_FIELDS, Node, OP_NAMES, Op, Padding};

/// Answers longer than this are refused before scanning (no architecture is a megabyte).
pub const MAX_ANSWER_BYTES: usize = 4 << 20;

/// Most nodes a network may have.
pub const MAX_NODES: usize = 10_000;

/// A network read from an answer, with what the reader had to do to get it.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// The network (parsed, not yet validated for a task: see [`Graph::validate`]).
    pub graph: Graph,
    /// What the reader noticed or repaired, e.g. "found 2 JSON blocks, used the last complete
    /// one"; empty for a clean answer.
    pub notes: Vec<String>,
}

/// Reads the network out of an LLM answer: JSON alone, inside ```json fences, or in prose.
///
/// When several JSON blocks hold a network, the last complete one is used (and a note says so);
/// `//` and `/* */` comments and trailing commas are removed (with a note). An answer whose only
/// network is cut off gives [`ArchError::Truncated`]. Unknown ops and fields are errors that name
/// them. The graph is not validated against a task here: call [`Graph::validate`].
pub fn parse_answer(text: &str) -> Result<Parsed, ArchError> {
    if text.len() > MAX_ANSWER_BYTES {
        return Err(ArchError::NotAGraph {
            message: format!(
                "the answer is {} bytes long, over the {} bytes an answer may have",
                text.len(),
                MAX_ANSWER_BYTES
            ),
        });
    }
    let blocks = scan_blocks(text);
    let mut notes = Vec::new();
    let complete: Vec<&Block> = blocks.iter().filter(|b| b.complete).collect();
    let graphish = |b: &&&Block| text[b.start..b.end].contains("\"nodes\"");
    let chosen = complete.iter().rev().find(graphish).copied();
    let Some(block) = chosen else {
        if let Some(t) = blocks.iter().rev().find(|b| !b.complete) {
            return Err(ArchError::Truncated {
                chars: t.end - t.start,
                open: t.open,
            });
        }
        if let Some(b) = complete.last() {
            let message = match clean(&text[b.start..b.end]).0.parse::<Value>() {
                Ok(Value::Object(m)) => format!(
                    "found an object with the fields {} but no `nodes` list",
                    m.keys()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                _ => "found JSON but no `nodes` list".to_string(),
            };
            return Err(ArchError::NotAGraph { message });
        }
        return Err(ArchError::NoJson);
    };
    let networks = complete.iter().filter(graphish).count();
    if networks > 1 {
        notes.push(format!(
            "found {networks} JSON blocks holding a network, used the last complete one"
        ));
    }
    if blocks.iter().any(|b| !b.complete && b.start > block.start) {
        notes.push("ignored a truncated JSON block after the one used".to_string());
    }
    let raw = &text[block.start..block.end];
    // Clean JSON (the usual case) parses as is; only otherwise strip comments and commas.
    let value: Value = match serde_json::from_str(raw) {
        Ok(v) => v,
        Err(_) => {
            let (cleaned, removed) = clean(raw);
            if removed.comments {
                notes.push("removed comments from the JSON".to_string());
            }
            if removed.trailing_commas {
                notes.push("removed trailing commas from the JSON".to_string());
            }
            serde_json::from_str(&cleaned).map_err(|e| syntax_error(e, cleaned.len()))?
        }
    };
    let value = unwrap_wrapper(value, &mut notes);
    let graph = graph_from_value(value)?;
    Ok(Parsed { graph, notes })
}

impl Graph {
    /// Parses a network from strict JSON (no prose, comments or trailing commas: use
    /// [`parse_answer`] for LLM answers). Unknown ops and fields are errors that name them.
    pub fn from_json(json: &str) -> Result<Graph, ArchError> {
        let value: Value = serde_json::from_str(json).map_err(|e| syntax_error(e, json.len()))?;
        graph_from_value(value)
    }

    /// The network as pretty-printed JSON (the IR's canonical spelling; defaults are written).
    pub fn to_json_pretty(&self) -> String {
        // Serialising these plain types cannot fail (string keys, finite or null floats).
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

impl<'de> Deserialize<'de> for Graph {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        graph_from_value(v).map_err(serde::de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        node_from_value(0, v).map_err(serde::de::Error::custom)
    }
}

fn syntax_error(e: serde_json::Error, chars: usize) -> ArchError {
    if e.is_eof() {
        return ArchError::Truncated { chars, open: 1 };
    }
    let full = e.to_string();
    // serde_json appends " at line L column C"; keep only the reason.
    let message = match full.rfind(" at line ") {
        Some(i) => full[..i].to_string(),
        None => full,
    };
    ArchError::Syntax {
        line: e.line(),
        column: e.column(),
        message,
    }
}

/// Some answers wrap the network: `{"architecture": {"nodes": [...]}}`, or give the bare list.
fn unwrap_wrapper(value: Value, notes: &mut Vec<String>) -> Value {
    match value {
        Value::Object(m) if !m.contains_key("nodes") && m.len() == 1 => {
            let (k, inner) = m.into_iter().next().unwrap_or((String::new(), Value::Null));
            if inner.get("nodes").is_some() {
                notes.push(format!("took the network from inside the `{k}` field"));
                inner
            } else {
                let mut m = Map::new();
                m.insert(k, inner);
                Value::Object(m)
            }
        }
        v => v,
    }
}

/// The network from a JSON value, strictly.
pub(crate) fn graph_from_value(value: Value) -> Result<Graph, ArchError> {
    let Value::Object(map) = value else {
        return Err(ArchError::NotAGraph {
            message: format!("the top level is {}", kind_of(&value)),
        });
    };
    let mut name = None;
    let mut nodes_value = None;
    for (k, v) in map {
        match k.as_str() {
            "name" => match v {
                Value::String(s) => name = Some(s),
                Value::Null => {}
                other => {
                    return Err(ArchError::NotAGraph {
                        message: format!("`name` must be a string, not {}", kind_of(&other)),
                    });
                }
            },
            "nodes" => nodes_value = Some(v),
            _ => return Err(ArchError::UnknownGraphField { field: k }),
        }
    }
    let Some(nodes_value) = nodes_value else {
        return Err(ArchError::NotAGraph {
            message: "there is no `nodes` list".to_string(),
        });
    };
    let Value::Array(items) = nodes_value else {
        return Err(ArchError::NotAGraph {
            message: format!("`nodes` must be a list, not {}", kind_of(&nodes_value)),
        });
    };
    if items.len() > MAX_NODES {
        return Err(ArchError::NotAGraph {
            message: format!(
                "`nodes` has {} entries, over the {MAX_NODES} a network may have",
                items.len()
            ),
        });
    }
    let nodes = items
        .into_iter()
        .enumerate()
        .map(|(i, v)| node_from_value(i, v))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Graph { name, nodes })
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Known mistakes and aliases, with the op (or advice) the architect most likely meant.
fn op_alias(op: &str) -> Option<&'static str> {
    Some(
        match op.to_ascii_lowercase().replace(['-', ' '], "_").as_str() {
            "conv" | "conv_2d" | "convolution" | "convolution2d" => "conv2d",
            "bn" | "batchnorm" | "batch_normalization" | "batchnorm2d" | "batch_norm2d" => {
                "batch_norm"
            }
            "linear" | "fc" | "fully_connected" => "dense",
            "gap"
            | "global_average_pooling"
            | "globalavgpool"
            | "global_average_pool"
            | "adaptive_avg_pool" => "global_avg_pool",
            "maxpool" | "maxpool2d" | "max_pool2d" | "max_pooling" => "max_pool",
            "avgpool" | "avgpool2d" | "avg_pool2d" | "average_pooling" | "avg_pooling" => {
                "avg_pool"
            }
            "concatenate" | "cat" => "concat",
            "residual" | "sum" | "skip" => "add",
            "swish" => "silu",
            "depthwise" | "dwconv" | "depthwise_conv" => "depthwise_conv2d",
            "separable" | "sepconv" | "separable_conv" => "separable_conv2d",
            _ => return None,
        },
    )
}

/// A hint for an unknown op: the op probably meant, or advice.
fn op_hint(op: &str) -> Option<String> {
    if op.to_ascii_lowercase().contains("softmax") {
        return Some(
            "remove it: the last node's output are the logits and the loss applies softmax"
                .to_string(),
        );
    }
    op_alias(op)
        .map(str::to_string)
        .or_else(|| closest(op, OP_NAMES))
        .map(|s| format!("did you mean `{s}`?"))
}

fn node_label(i: usize, map: &Map<String, Value>) -> String {
    match map.get("id") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => format!("node #{} (counting from 1)", i + 1),
    }
}

/// One node from a JSON value, strictly; `i` is its position (for messages).
pub(crate) fn node_from_value(i: usize, value: Value) -> Result<Node, ArchError> {
    let Value::Object(mut map) = value else {
        return Err(ArchError::BadField {
            node: format!("node #{} (counting from 1)", i + 1),
            message: format!("a node must be an object, not {}", kind_of(&value)),
        });
    };
    let node = node_label(i, &map);
    let bad = |message: String| ArchError::BadField {
        node: node.clone(),
        message,
    };
    let id = match map.remove("id") {
        Some(Value::String(s)) => s,
        Some(other) => {
            return Err(bad(format!(
                "`id` must be a string, not {}",
                kind_of(&other)
            )));
        }
        // A chain needs no ids: an absent one is the node's position.
        None => format!("n{}", i + 1),
    };
    let op_name = match map.get("op") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(bad(format!(
                "`op` must be a string, not {}",
                kind_of(other)
            )));
        }
        None => return Err(bad("has no `op`".to_string())),
    };
    let Some(fields) = Op::fields_of(&op_name) else {
        let hint = op_hint(&op_name);
        return Err(ArchError::UnknownOp {
            node,
            op: op_name,
            hint,
        });
    };
    let inputs = match map.remove("in") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(vec![s]),
        Some(Value::Array(items)) => Some(
            items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    other => Err(bad(format!(
                        "`in` must list node ids as strings, but has {}",
                        kind_of(&other)
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(other) => {
            return Err(bad(format!(
                "`in` must be a list of node ids, not {}",
                kind_of(&other)
            )));
        }
    };
    let init = match map.remove("init") {
        None | Some(Value::Null) => None,
        Some(v) => Some(serde_json::from_value(v.clone()).map_err(|_| {
            bad(format!(
                "`init` {v} is not an initialiser; use one of he_normal, he_uniform, glorot_normal, glorot_uniform, lecun_normal, patch_whitening"
            ))
        })?),
    };
    let l2 = match map.remove("l2") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_f64(),
        Some(other) => {
            return Err(bad(format!(
                "`l2` must be a number, not {}",
                kind_of(&other)
            )));
        }
    };
    for key in map.keys() {
        if key != "op" && !fields.contains(&key.as_str()) {
            let mut allowed: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
            allowed.extend(NODE_FIELDS.iter().map(|f| f.to_string()));
            return Err(ArchError::UnknownField {
                node,
                op: op_name,
                field: key.clone(),
                allowed,
            });
        }
    }
    for (key, v) in &map {
        if key == "padding" {
            check_padding(v).map_err(&bad)?;
        }
        if let Value::Array(_) = v {
            return Err(bad(format!(
                "{op_name} `{key}` must be one number, not a list (kernels and strides are square)"
            )));
        }
    }
    let op = op_from_fields(&op_name, &map).map_err(bad)?;
    Ok(Node {
        id,
        inputs,
        op,
        init,
        l2,
    })
}

/// A field of an op: `Ok(default)` when absent or null, else the value read strictly.
fn field<T: serde::de::DeserializeOwned>(
    map: &Map<String, Value>,
    op: &str,
    key: &str,
    default: Option<T>,
) -> Result<T, String> {
    match (map.get(key), default) {
        (None | Some(Value::Null), Some(d)) => Ok(d),
        (None | Some(Value::Null), None) => Err(format!("{op} needs `{key}`")),
        (Some(v), _) => T::deserialize(v).map_err(|e| {
            format!(
                "{op} `{key}`: {}",
                e.to_string().replace("u32", "a non-negative integer")
            )
        }),
    }
}

/// The op named `name` from its fields (already checked to be known), field by field so that an
/// error names the field.
fn op_from_fields(name: &str, m: &Map<String, Value>) -> Result<Op, String> {
    let u = |key: &str, default: Option<u32>| field::<u32>(m, name, key, default);
    let f = |key: &str, default: Option<f64>| field::<f64>(m, name, key, default);
    let pad = || field::<Padding>(m, name, "padding", Some(Padding::default()));
    let bias = || field::<bool>(m, name, "bias", Some(true));
    Ok(match name {
        "conv2d" => Op::Conv2d {
            filters: u("filters", None)?,
            kernel: u("kernel", None)?,
            stride: u("stride", Some(1))?,
            padding: pad()?,
            dilation: u("dilation", Some(1))?,
            groups: u("groups", Some(1))?,
            bias: bias()?,
        },
        "depthwise_conv2d" => Op::DepthwiseConv2d {
            kernel: u("kernel", None)?,
            stride: u("stride", Some(1))?,
            padding: pad()?,
            dilation: u("dilation", Some(1))?,
            multiplier: u("multiplier", Some(1))?,
            bias: bias()?,
        },
        "separable_conv2d" => Op::SeparableConv2d {
            filters: u("filters", None)?,
            kernel: u("kernel", None)?,
            stride: u("stride", Some(1))?,
            padding: pad()?,
            dilation: u("dilation", Some(1))?,
            bias: bias()?,
        },
        "batch_norm" => Op::BatchNorm {
            epsilon: f("epsilon", Some(1e-5))?,
            momentum: f("momentum", Some(0.1))?,
        },
        "relu" => Op::Relu,
        "gelu" => Op::Gelu,
        "silu" => Op::Silu,
        "sigmoid" => Op::Sigmoid,
        "tanh" => Op::Tanh,
        "leaky_relu" => Op::LeakyRelu {
            slope: f("slope", Some(0.01))?,
        },
        "max_pool" | "avg_pool" => {
            let kernel = u("kernel", None)?;
            let stride = field::<Option<u32>>(m, name, "stride", Some(None))?;
            let padding = pad()?;
            if name == "max_pool" {
                Op::MaxPool {
                    kernel,
                    stride,
                    padding,
                }
            } else {
                Op::AvgPool {
                    kernel,
                    stride,
                    padding,
                }
            }
        }
        "global_avg_pool" => Op::GlobalAvgPool,
        "flatten" => Op::Flatten,
        "dense" => Op::Dense {
            units: u("units", None)?,
            bias: bias()?,
        },
        "dropout" => Op::Dropout {
            rate: f("rate", None)?,
        },
        "add" => Op::Add,
        "concat" => Op::Concat,
        other => return Err(format!("unknown op `{other}`")),
    })
}

fn check_padding(v: &Value) -> Result<(), String> {
    let ok = match v {
        Value::String(s) => s == "same" || s == "valid",
        Value::Number(n) => n.as_u64().is_some_and(|n| n <= u64::from(u32::MAX)),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`padding` is {v}, but must be \"same\", \"valid\" or a non-negative number of pixels"
        ))
    }
}

/// A `{...}` region of the text; `complete` when its braces close.
#[derive(Debug, Clone, Copy)]
struct Block {
    start: usize,
    end: usize,
    complete: bool,
    open: usize,
}

/// Most unterminated `{` scans tried before giving up on finding more blocks (bounds the work on
/// adversarial text).
const MAX_TRUNCATED_SCANS: usize = 32;

/// Finds the balanced top-level `{...}` regions of the text, understanding JSON strings and
/// comments. A `{` whose region never closes gives an incomplete block, and scanning resumes
/// after it (it may have been a stray brace in prose).
fn scan_blocks(text: &str) -> Vec<Block> {
    let bytes = text.as_bytes();
    let mut blocks = Vec::new();
    let mut pos = 0;
    let mut truncated_scans = 0;
    while let Some(off) = bytes
        .get(pos..)
        .and_then(|rest| rest.iter().position(|&b| b == b'{'))
    {
        let start = pos + off;
        match scan_one(bytes, start) {
            Ok(end) => {
                blocks.push(Block {
                    start,
                    end,
                    complete: true,
                    open: 0,
                });
                pos = end;
            }
            Err(open) => {
                blocks.push(Block {
                    start,
                    end: bytes.len(),
                    complete: false,
                    open,
                });
                truncated_scans += 1;
                if truncated_scans >= MAX_TRUNCATED_SCANS {
                    break;
                }
                pos = start + 1;
            }
        }
    }
    // A stray brace in prose before the real JSON yields an incomplete block that covers the
    // complete one: drop incomplete blocks that contain a complete one.
    let completes: Vec<(usize, usize)> = blocks
        .iter()
        .filter(|b| b.complete)
        .map(|b| (b.start, b.end))
        .collect();
    blocks.retain(|b| b.complete || !completes.iter().any(|&(s, _)| s > b.start));
    blocks
}

/// Scans one region from the `{` at `start`; `Ok(end)` (exclusive) when it closes, else
/// `Err(open brackets at the end of the text)`.
// Every index is checked against bytes.len() just before it is read.
#[allow(clippy::indexing_slicing)]
fn scan_one(bytes: &[u8], start: usize) -> Result<usize, usize> {
    let mut stack: Vec<u8> = Vec::new();
    let mut i = start;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                if i >= bytes.len() {
                    return Err(stack.len());
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < bytes.len() && !(bytes[i] == b'*' && bytes[i + 1] == b'/') {
                    i += 1;
                }
                if i + 1 >= bytes.len() {
                    return Err(stack.len());
                }
                i += 1;
            }
            b'{' | b'[' => stack.push(b),
            b'}' | b']' => {
                let want = if b == b'}' { b'{' } else { b'[' };
                if stack.pop() != Some(want) {
                    // Mismatched bracket: not JSON; end the region here so the parser reports it.
                    return Ok(i + 1);
                }
                if stack.is_empty() {
                    return Ok(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    Err(stack.len())
}

/// What [`clean`] removed.
#[derive(Debug, Default, Clone, Copy)]
struct Removed {
    comments: bool,
    trailing_commas: bool,
}

/// Removes `//` and `/* */` comments and trailing commas outside strings.
// Every index is checked against chars.len() just before it is read.
#[allow(clippy::indexing_slicing)]
fn clean(block: &str) -> (String, Removed) {
    let chars: Vec<char> = block.chars().collect();
    let mut out = String::with_capacity(block.len());
    let mut removed = Removed::default();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' => {
                out.push(c);
                i += 1;
                while i < chars.len() {
                    let d = chars[i];
                    out.push(d);
                    i += 1;
                    if d == '\\' {
                        if let Some(&e) = chars.get(i) {
                            out.push(e);
                            i += 1;
                        }
                    } else if d == '"' {
                        break;
                    }
                }
                continue;
            }
            '/' if chars.get(i + 1) == Some(&'/') => {
                removed.comments = true;
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                removed.comments = true;
                i += 2;
                while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                    i += 1;
                }
                i += 2;
                out.push(' ');
                continue;
            }
            ',' => {
                let mut j = i + 1;
                // Look past whitespace and comments for a closing bracket.
                loop {
                    while j < chars.len() && chars[j].is_whitespace() {
                        j += 1;
                    }
                    if chars.get(j) == Some(&'/') && chars.get(j + 1) == Some(&'/') {
                        while j < chars.len() && chars[j] != '\n' {
                            j += 1;
                        }
                    } else if chars.get(j) == Some(&'/') && chars.get(j + 1) == Some(&'*') {
                        j += 2;
                        while j < chars.len()
                            && !(chars[j] == '*' && chars.get(j + 1) == Some(&'/'))
                        {
                            j += 1;
                        }
                        j += 2;
                    } else {
                        break;
                    }
                }
                if matches!(chars.get(j), Some('}') | Some(']')) {
                    removed.trailing_commas = true;
                    i += 1;
                    continue;
                }
            }
            _ => {}
        }
        out.push(c);
        i += 1;
    }
    (out, removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_removes_comments_and_trailing_commas_but_not_in_strings() {
        let (s, r) = clean("{\"a\": \"x // y, }\", // c\n \"b\": [1, 2, /* z */ ], }");
        assert!(r.comments && r.trailing_commas);
        let v: Value = serde_json::from_str(&s).expect("valid after clean");
        assert_eq!(v["a"], "x // y, }");
        assert_eq!(v["b"], serde_json::json!([1, 2]));
    }

    #[test]
    fn every_op_reads_back_what_serde_writes() -> Result<(), ArchError> {
        for name in OP_NAMES {
            let mut m = Map::new();
            for (k, v) in [("filters", 8), ("kernel", 3), ("units", 4)] {
                if Op::fields_of(name).is_some_and(|f| f.contains(&k)) {
                    m.insert(k.to_string(), Value::from(v));
                }
            }
            if name == "dropout" {
                m.insert("rate".to_string(), Value::from(0.5));
            }
            let op = op_from_fields(name, &m).map_err(|message| ArchError::BadField {
                node: name.into(),
                message,
            })?;
            assert_eq!(op.name(), name);
            let written = serde_json::to_value(Node {
                id: "n".into(),
                inputs: None,
                op: op.clone(),
                init: None,
                l2: None,
            })
            .map_err(|_| ArchError::NoJson)?;
            let back = node_from_value(0, written)?;
            assert_eq!(back.op, op, "{name}");
            let serde_op: Op =
                serde_json::from_value(serde_json::to_value(&op).map_err(|_| ArchError::NoJson)?)
                    .map_err(|_| ArchError::NoJson)?;
            assert_eq!(serde_op, op, "{name}");
        }
        let err = node_from_value(
            0,
            serde_json::json!({"id": "c", "op": "conv2d", "kernel": 3, "filters": "8"}),
        );
        assert!(
            err.err()
                .is_some_and(|e| e.to_string().contains("conv2d `filters`"))
        );
        Ok(())
    }

    #[test]
    fn scan_skips_stray_braces_in_prose() {
        let t = "Use a set {like this and then\n```json\n{\"nodes\": []}\n```";
        let blocks = scan_blocks(t);
        let c: Vec<_> = blocks.iter().filter(|b| b.complete).collect();
        assert_eq!(c.len(), 1);
        assert_eq!(&t[c[0].start..c[0].end], "{\"nodes\": []}");
        assert!(blocks.iter().all(|b| b.complete));
    }
}
