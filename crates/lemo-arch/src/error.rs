//! Everything that can be wrong with an architecture, as one typed error.
//!
//! Every message is one short paragraph written for the architect's repair prompt: it names the
//! node, the op and the arithmetic, and says what would fix it.

use crate::ir::Shape;

/// Why an answer could not be read or a graph is not a valid network for the task.
///
/// `Display` renders one short paragraph fit for an LLM repair prompt; [`ArchError::kind`] gives
/// a stable machine-readable name and [`ArchError::node`] the offending node's id, if any.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ArchError {
    /// The answer holds no JSON object at all.
    #[error(
        "the answer contains no JSON object; reply with the network as one JSON object {{\"nodes\": [...]}}"
    )]
    NoJson,
    /// The answer's JSON is cut off before it closes.
    #[error(
        "the JSON in the answer is truncated: it ends after {chars} characters with {open} bracket(s) still open; write the whole network again, more compactly if needed"
    )]
    Truncated {
        /// Characters of JSON seen before the answer ended.
        chars: usize,
        /// Brackets and braces still open at the end.
        open: usize,
    },
    /// The JSON is not well formed (after removing comments and trailing commas).
    #[error("the JSON is malformed at line {line}, column {column}: {message}")]
    Syntax {
        /// Line within the JSON block, from 1.
        line: usize,
        /// Column within that line, from 1.
        column: usize,
        /// What the JSON parser expected.
        message: String,
    },
    /// The JSON is well formed but is not a network.
    #[error("the JSON is not a network: {message}; expected an object {{\"nodes\": [...]}}")]
    NotAGraph {
        /// What was found instead.
        message: String,
    },
    /// A top-level field other than `name` and `nodes`.
    #[error("unknown top-level field `{field}`; a network has only `name` (optional) and `nodes`")]
    UnknownGraphField {
        /// The field as written.
        field: String,
    },
    /// An `op` that the IR does not have.
    #[error("{node}: unknown op `{op}`{}; the ops are {}", .hint.as_ref().map(|h| format!(" ({h})")).unwrap_or_default(), crate::ir::OP_NAMES.join(", "))]
    UnknownOp {
        /// The node's id (or its position when it has none).
        node: String,
        /// The op as written.
        op: String,
        /// What was probably meant, e.g. "did you mean `conv2d`?".
        hint: Option<String>,
    },
    /// A field that the node's op does not take.
    #[error("{node}: {op} has no field `{field}`; its fields are {}", list(.allowed))]
    UnknownField {
        /// The node's id (or its position).
        node: String,
        /// The node's op.
        op: String,
        /// The field as written.
        field: String,
        /// The fields this op takes (besides `id`, `in`, `op`, `init`, `l2`).
        allowed: Vec<String>,
    },
    /// A field is missing or has the wrong type or value.
    #[error("{node}: {message}")]
    BadField {
        /// The node's id (or its position).
        node: String,
        /// What is wrong with which field.
        message: String,
    },
    /// The graph has no nodes.
    #[error("the network has no nodes; it needs at least one node ending in the {classes} logits")]
    Empty {
        /// The task's number of classes.
        classes: usize,
    },
    /// The task itself is impossible (zero-sized input, no classes).
    #[error("invalid task: {message}")]
    BadTask {
        /// What is wrong with the task.
        message: String,
    },
    /// Two nodes share an id, or a node uses the reserved id `input` or an empty id.
    #[error("{message}")]
    BadId {
        /// Which id and why.
        message: String,
    },
    /// A node's `in` names an id that no node has.
    #[error("{node}: `in` names `{input}`, but no node has that id{}; use an earlier node's id or \"input\"", suggest(.suggestion))]
    DanglingInput {
        /// The node whose `in` is wrong.
        node: String,
        /// The unknown id.
        input: String,
        /// The closest existing id, when one is close.
        suggestion: Option<String>,
    },
    /// A node takes the output of a node listed after it (but there is no cycle).
    #[error(
        "{node}: takes `{input}`, which is listed after it; list the nodes in evaluation order (every node after the nodes it takes)"
    )]
    OutOfOrder {
        /// The node listed too early.
        node: String,
        /// The later node it takes.
        input: String,
    },
    /// The nodes' inputs form a cycle.
    #[error("the network has a cycle (each node takes the next): {}; a network must be acyclic, every node taking only nodes listed before it", .path.join(" -> "))]
    Cycle {
        /// The ids around the cycle, the first repeated at the end.
        path: Vec<String>,
    },
    /// Wrong number of inputs for the op.
    #[error("{node}: {op} takes {expected} but `in` lists {got}")]
    Arity {
        /// The node.
        node: String,
        /// Its op.
        op: String,
        /// What the op takes, in words.
        expected: String,
        /// How many inputs were given.
        got: usize,
    },
    /// A hyper-parameter out of its range (zero kernel, rate 1.5, groups not dividing, ...).
    #[error("{node}: {message}")]
    BadHyperParameter {
        /// The node.
        node: String,
        /// What is out of range, with the numbers.
        message: String,
    },
    /// An output size of zero or less, with the arithmetic.
    #[error(
        "{node}: {detail}; use padding \"same\", a smaller kernel or stride, or fewer downsampling layers before it"
    )]
    NonPositiveSize {
        /// The node.
        node: String,
        /// The arithmetic that gives the size.
        detail: String,
    },
    /// A spatial op on a vector.
    #[error(
        "{node}: {op} needs a feature map [C,H,W] but gets the vector {shape}; put it before global_avg_pool / flatten"
    )]
    NeedsMap {
        /// The node.
        node: String,
        /// Its op.
        op: String,
        /// The vector it gets.
        shape: Shape,
    },
    /// A dense layer on a feature map.
    #[error(
        "{node}: dense needs a vector but gets the feature map {shape}; flatten or global_avg_pool first"
    )]
    DenseOnMap {
        /// The node.
        node: String,
        /// The map it gets.
        shape: Shape,
    },
    /// Inputs of an add that do not have the same shape.
    #[error("{node}: add of {}: all inputs of an add need the same shape; project the skip with a 1x1 conv2d (filters and stride to match) or use concat", shapes_list(.inputs))]
    AddMismatch {
        /// The node.
        node: String,
        /// Each input's id and shape.
        inputs: Vec<(String, Shape)>,
    },
    /// Inputs of a concat that do not share height and width (or mix maps and vectors).
    #[error("{node}: concat of {}: concat joins channels, so all inputs need the same height and width (or all be vectors)", shapes_list(.inputs))]
    ConcatMismatch {
        /// The node.
        node: String,
        /// Each input's id and shape.
        inputs: Vec<(String, Shape)>,
    },
    /// A node whose output nothing uses and which is not the last node.
    #[error(
        "{node}: its output is never used (no later node takes it and it is not the last node); feed it into a later node's `in` or remove it"
    )]
    Unused {
        /// The dead node.
        node: String,
    },
    /// The last node does not output `classes` logits.
    #[error("{node}: the last node gives {shape} but the task needs {classes} logits; {hint}")]
    OutputMismatch {
        /// The last node.
        node: String,
        /// Its output shape.
        shape: Shape,
        /// The task's number of classes.
        classes: usize,
        /// What would fix it.
        hint: String,
    },
    /// A size beyond any device (overflow, or over the hard per-tensor cap).
    #[error("{node}: {what} is absurdly large ({detail}); use far fewer filters, units or pixels")]
    TooLarge {
        /// The node.
        node: String,
        /// What is too large.
        what: String,
        /// The numbers.
        detail: String,
    },
    /// A budget of the user's is exceeded.
    #[error("the network has {value} {what}, over the budget of {limit}; {hint}")]
    OverBudget {
        /// `"parameters"`, `"MACs per image"` or `"bytes of activations per image"`.
        what: String,
        /// The network's amount.
        value: u64,
        /// The budget.
        limit: u64,
        /// The largest contributors, for the repair.
        hint: String,
    },
}

fn suggest(s: &Option<String>) -> String {
    match s {
        Some(s) => format!(" (did you mean `{s}`?)"),
        None => String::new(),
    }
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "none".to_string()
    } else {
        v.iter()
            .map(|f| format!("`{f}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn shapes_list(v: &[(String, Shape)]) -> String {
    v.iter()
        .map(|(id, s)| format!("{s} (from {id})"))
        .collect::<Vec<_>>()
        .join(" and ")
}

impl ArchError {
    /// A stable snake_case name of the error's kind (for statistics and tests), e.g.
    /// `"truncated"`, `"non_positive_size"`.
    pub fn kind(&self) -> &'static str {
        match self {
            ArchError::NoJson => "no_json",
            ArchError::Truncated { .. } => "truncated",
            ArchError::Syntax { .. } => "syntax",
            ArchError::NotAGraph { .. } => "not_a_graph",
            ArchError::UnknownGraphField { .. } => "unknown_graph_field",
            ArchError::UnknownOp { .. } => "unknown_op",
            ArchError::UnknownField { .. } => "unknown_field",
            ArchError::BadField { .. } => "bad_field",
            ArchError::Empty { .. } => "empty",
            ArchError::BadTask { .. } => "bad_task",
            ArchError::BadId { .. } => "bad_id",
            ArchError::DanglingInput { .. } => "dangling_input",
            ArchError::OutOfOrder { .. } => "out_of_order",
            ArchError::Cycle { .. } => "cycle",
            ArchError::Arity { .. } => "arity",
            ArchError::BadHyperParameter { .. } => "bad_hyper_parameter",
            ArchError::NonPositiveSize { .. } => "non_positive_size",
            ArchError::NeedsMap { .. } => "needs_map",
            ArchError::DenseOnMap { .. } => "dense_on_map",
            ArchError::AddMismatch { .. } => "add_mismatch",
            ArchError::ConcatMismatch { .. } => "concat_mismatch",
            ArchError::Unused { .. } => "unused",
            ArchError::OutputMismatch { .. } => "output_mismatch",
            ArchError::TooLarge { .. } => "too_large",
            ArchError::OverBudget { .. } => "over_budget",
        }
    }

    /// The id of the node the error is about, when it is about one node.
    pub fn node(&self) -> Option<&str> {
        match self {
            ArchError::UnknownOp { node, .. }
            | ArchError::UnknownField { node, .. }
            | ArchError::BadField { node, .. }
            | ArchError::DanglingInput { node, .. }
            | ArchError::OutOfOrder { node, .. }
            | ArchError::Arity { node, .. }
            | ArchError::BadHyperParameter { node, .. }
            | ArchError::NonPositiveSize { node, .. }
            | ArchError::NeedsMap { node, .. }
            | ArchError::DenseOnMap { node, .. }
            | ArchError::AddMismatch { node, .. }
            | ArchError::ConcatMismatch { node, .. }
            | ArchError::Unused { node }
            | ArchError::OutputMismatch { node, .. }
            | ArchError::TooLarge { node, .. } => Some(node),
            _ => None,
        }
    }

    /// Whether the error is about reading the answer (as opposed to the network it describes).
    pub fn is_parse_error(&self) -> bool {
        matches!(
            self,
            ArchError::NoJson
                | ArchError::Truncated { .. }
                | ArchError::Syntax { .. }
                | ArchError::NotAGraph { .. }
                | ArchError::UnknownGraphField { .. }
                | ArchError::UnknownOp { .. }
                | ArchError::UnknownField { .. }
                | ArchError::BadField { .. }
        )
    }
}

/// The closest candidate to `word` by edit distance, when it is close enough to be a likely typo
/// or alias.
pub(crate) fn closest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let w = word.to_ascii_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = edit_distance(&w, c);
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    let (d, c) = best?;
    let limit = (c.len().max(w.len()) / 3).max(1);
    (d <= limit).then(|| c.to_string())
}

// `prev` and `cur` have b.len() + 1 entries and j < b.len().
#[allow(clippy::indexing_slicing)]
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().take(64).collect();
    let b: Vec<char> = b.chars().take(64).collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_finds_typos_and_rejects_far_words() {
        let ops = ["conv2d", "max_pool", "dense", "batch_norm"];
        assert_eq!(closest("Conv2D", ops).as_deref(), Some("conv2d"));
        assert_eq!(closest("maxpool", ops).as_deref(), Some("max_pool"));
        assert_eq!(closest("transformer", ops), None);
    }

    #[test]
    fn messages_name_node_and_numbers() {
        let e = ArchError::NonPositiveSize {
            node: "p3".into(),
            detail: "max_pool 2x2 stride 2 on a 1x1 map gives size (1 - 2) / 2 + 1 = 0".into(),
        };
        let s = e.to_string();
        assert!(
            s.starts_with("p3: max_pool 2x2 stride 2 on a 1x1 map"),
            "{s}"
        );
        assert_eq!(e.node(), Some("p3"));
        assert_eq!(e.kind(), "non_positive_size");
    }
}
