//! The prompt book: the system prompt, the paper's initial command, the instruction prompt of
//! every later round and the repair prompt, as templates a user can override from a TOML file.

use crate::LlmError;
use crate::chat::Message;
use lemo_arch::{Graph, Task};
use lemo_metrics::Observed;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

pub use lemo_core::llm::{Feedback, TaskBrief};

/// Placeholders each template may use. `{{` and `}}` write literal braces.
const SYSTEM_VARS: &[&str] = &["ir", "schema", "example", "task", "dataset"];
const INITIAL_VARS: &[&str] = &["task", "dataset", "notes"];
const NEXT_VARS: &[&str] = &[
    "task",
    "dataset",
    "notes",
    "round",
    "previous",
    "previous_summary",
    "metrics",
    "instructions",
];
const REPAIR_VARS: &[&str] = &["error", "answer", "task", "dataset"];

/// The default system prompt.
pub const DEFAULT_SYSTEM: &str = "\
You are an expert in designing convolutional neural networks for image classification on edge \
devices. You write each network as JSON in the LeMo-NADe architecture IR.

{ir}

The JSON schema of a network:
{schema}

An example network (3x32x32 images, 100 classes), for the format only:
{example}

The task:
{task}

Always answer with exactly one JSON object: the complete network, every node, nothing left out. \
Put nothing before or after the JSON object.";

/// The default initial command (the paper's `Initial_Cmd`, built from the task specification).
pub const DEFAULT_INITIAL: &str = "\
Design a convolutional neural network to classify {dataset} images. {task}
It must train quickly and run efficiently on an edge device while reaching a good validation \
accuracy. {notes}
Reply with the network as one JSON object in the IR.";

/// The default instruction prompt of every later round.
pub const DEFAULT_NEXT: &str = "\
Round {round}. The previous network was:
{previous}

Its summary:
{previous_summary}

After training it measured:
{metrics}

{instructions}

Write the next network: start from the previous one and apply the changes above; keep \
everything else as it is. The task is unchanged: {task} Reply with the complete network as one \
JSON object in the IR.";

/// The default repair prompt.
pub const DEFAULT_REPAIR: &str = "\
Your network could not be used:
{error}

Fix exactly this problem and reply with the complete corrected network as one JSON object in \
the IR. The task is unchanged: {task}";

/// The IR's rules for a chain (the local architect's [`crate::NetworkForm::Chain`]): no named
/// inputs, and the order of layers the grammar keeps to.
pub const CHAIN_IR_RULES: &str = "\
The IR: {\"name\": \"...\", \"nodes\": [...]}. The nodes form a chain: each takes the previous \
node's output (the first takes the image). Every node has an \"op\" and needs no \"id\":
- conv2d: filters, kernel (1 to 7), stride (1), padding (\"same\" | \"valid\" | pixels; default \
valid); separable_conv2d: the same; depthwise_conv2d: kernel, stride, padding
- batch_norm; relu, gelu, silu, sigmoid, tanh, leaky_relu; dropout: rate (0.1 to 0.5)
- max_pool, avg_pool: kernel, stride (= kernel), padding
- global_avg_pool or flatten: turns the feature maps into a vector
- dense: units
Write the feature-map layers first (convolutions, batch_norm, activations, pooling, dropout), \
then one global_avg_pool or flatten, then at most four vector layers (dense, batch_norm, \
activations, dropout), and last the logits: {\"op\": \"dense\", \"units\": <classes>}. Keep \
feature maps at least 1x1: each pooling of kernel 2, or stride 2, halves them.";

/// The example of [`PromptBook::chain`]'s system prompt: the starter network for 3x32x32
/// images and 100 classes, written as the chain grammar writes it.
const CHAIN_EXAMPLE: &str = r#"{
  "name": "chain",
  "nodes": [
    {"op":"conv2d","filters":16,"kernel":3,"padding":"same"},
    {"op":"batch_norm"},
    {"op":"relu"},
    {"op":"max_pool","kernel":2},
    {"op":"conv2d","filters":32,"kernel":3,"padding":"same"},
    {"op":"batch_norm"},
    {"op":"relu"},
    {"op":"max_pool","kernel":2},
    {"op":"conv2d","filters":64,"kernel":3,"padding":"same"},
    {"op":"batch_norm"},
    {"op":"relu"},
    {"op":"global_avg_pool"},
    {"op":"dropout","rate":0.2},
    {"op":"dense","units":100}
  ]
}"#;

/// The system prompt of [`PromptBook::chain`], before the example is written in: the chain's
/// rules, no JSON schema (the grammar holds the model to it).
const CHAIN_SYSTEM: &str = "\
You are an expert in designing convolutional neural networks for image classification on edge \
devices. You write each network as JSON in the LeMo-NADe architecture IR.

{rules}

An example network (3x32x32 images, 100 classes), for the format only:
{example}

The task:
{task}

Always answer with exactly one JSON object: the complete network, every node, nothing left out.";

/// The templates. Each is text with `{placeholders}`; a file may override any of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PromptBook {
    /// System prompt. Placeholders: `{ir}` (the IR's rules), `{schema}` (its JSON schema),
    /// `{example}` (the reference network as JSON), `{task}`, `{dataset}`.
    pub system: String,
    /// First round. Placeholders: `{task}`, `{dataset}`, `{notes}`.
    pub initial: String,
    /// Later rounds. Placeholders: `{task}`, `{dataset}`, `{notes}`, `{round}`, `{previous}`
    /// (JSON), `{previous_summary}` (table), `{metrics}`, `{instructions}` (lemo-expert's
    /// rendering of the resolved command).
    pub next: String,
    /// Repair. Placeholders: `{error}` (lemo-arch's repair paragraph), `{answer}` (the start of
    /// the rejected answer; it is already in the conversation), `{task}`, `{dataset}`.
    pub repair: String,
}

impl Default for PromptBook {
    fn default() -> Self {
        PromptBook {
            system: DEFAULT_SYSTEM.to_string(),
            initial: DEFAULT_INITIAL.to_string(),
            next: DEFAULT_NEXT.to_string(),
            repair: DEFAULT_REPAIR.to_string(),
        }
    }
}

impl PromptBook {
    /// The default book for a model whose decoding a grammar holds to a chain (the local
    /// architect's [`crate::NetworkForm::Chain`]): the system prompt states the chain's rules
    /// and shows a chain instead of the IR's rules, JSON schema and residual example; the other
    /// templates are the defaults.
    pub fn chain() -> Self {
        let escape = |s: &str| s.replace('{', "{{").replace('}', "}}");
        PromptBook {
            system: CHAIN_SYSTEM
                .replace("{rules}", &escape(CHAIN_IR_RULES))
                .replace("{example}", &escape(CHAIN_EXAMPLE)),
            ..PromptBook::default()
        }
    }

    /// Templates from TOML text: keys `system`, `initial`, `next`, `repair`; a missing key
    /// keeps the default. Unknown keys and unknown placeholders are errors.
    pub fn from_toml_str(text: &str) -> Result<Self, LlmError> {
        let book: PromptBook =
            toml::from_str(text).map_err(|e| LlmError::Prompt(format!("TOML: {e}")))?;
        book.check()?;
        Ok(book)
    }

    /// Templates from a TOML file (see [`PromptBook::from_toml_str`]).
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, LlmError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| LlmError::Prompt(format!("{}: {e}", path.display())))?;
        Self::from_toml_str(&text).map_err(|e| match e {
            LlmError::Prompt(m) => LlmError::Prompt(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// The book as TOML (a starting point for an override file).
    pub fn to_toml_string(&self) -> Result<String, LlmError> {
        toml::to_string(self).map_err(|e| LlmError::Prompt(format!("TOML: {e}")))
    }

    /// Checks that every template parses and uses only its placeholders.
    pub fn check(&self) -> Result<(), LlmError> {
        for (name, template, vars) in [
            ("system", &self.system, SYSTEM_VARS),
            ("initial", &self.initial, INITIAL_VARS),
            ("next", &self.next, NEXT_VARS),
            ("repair", &self.repair, REPAIR_VARS),
        ] {
            let empty: BTreeMap<&str, String> = vars.iter().map(|v| (*v, String::new())).collect();
            fill(template, &empty)
                .map_err(|e| LlmError::Prompt(format!("template `{name}`: {e}")))?;
        }
        Ok(())
    }

    /// The system message for a task.
    pub fn system_message(
        &self,
        brief: &TaskBrief,
        schema: &serde_json::Value,
    ) -> Result<Message, LlmError> {
        let example = compact_json(&lemo_arch::ref_cnn(100));
        let schema = serde_json::to_string(schema).unwrap_or_default();
        let vars = BTreeMap::from([
            ("ir", IR_RULES.to_string()),
            ("schema", schema),
            ("example", example),
            ("task", task_text(&brief.task)),
            ("dataset", brief.dataset.clone()),
        ]);
        render("system", &self.system, &vars).map(Message::system)
    }

    /// The first round's conversation: system message and the initial command.
    pub fn initial(
        &self,
        brief: &TaskBrief,
        schema: &serde_json::Value,
    ) -> Result<Vec<Message>, LlmError> {
        let vars = BTreeMap::from([
            ("task", task_text(&brief.task)),
            ("dataset", brief.dataset.clone()),
            ("notes", brief.notes.clone()),
        ]);
        Ok(vec![
            self.system_message(brief, schema)?,
            Message::user(render("initial", &self.initial, &vars)?),
        ])
    }

    /// A later round's conversation: system message and the instruction prompt built from the
    /// previous network, its metrics and the expert system's rendered command.
    pub fn next(
        &self,
        brief: &TaskBrief,
        feedback: &Feedback,
        schema: &serde_json::Value,
    ) -> Result<Vec<Message>, LlmError> {
        let summary = match feedback.previous.validate(&brief.task) {
            Ok(analysis) => feedback.previous.summary(&analysis),
            Err(e) => format!("(not valid for the task: {e})"),
        };
        let vars = BTreeMap::from([
            ("task", task_text(&brief.task)),
            ("dataset", brief.dataset.clone()),
            ("notes", brief.notes.clone()),
            ("round", feedback.round.to_string()),
            ("previous", compact_json(&feedback.previous)),
            ("previous_summary", summary.trim_end().to_string()),
            ("metrics", metrics_text(&feedback.observed)),
            ("instructions", feedback.command.render()),
        ]);
        Ok(vec![
            self.system_message(brief, schema)?,
            Message::user(render("next", &self.next, &vars)?),
        ])
    }

    /// The repair conversation: the failed conversation, the rejected answer as the model's
    /// turn, then the repair prompt with the error.
    pub fn repair(
        &self,
        brief: &TaskBrief,
        failed_prompt: &[Message],
        answer: &str,
        error: &str,
    ) -> Result<Vec<Message>, LlmError> {
        let vars = BTreeMap::from([
            ("error", error.to_string()),
            ("answer", crate::error::excerpt(answer, 2000)),
            ("task", task_text(&brief.task)),
            ("dataset", brief.dataset.clone()),
        ]);
        let mut messages = failed_prompt.to_vec();
        messages.push(Message::assistant(if answer.trim().is_empty() {
            "(empty answer)".to_string()
        } else {
            answer.to_string()
        }));
        messages.push(Message::user(render("repair", &self.repair, &vars)?));
        Ok(messages)
    }
}

/// The IR's rules as the system prompt states them.
pub const IR_RULES: &str = "\
The IR: {\"name\": \"...\", \"nodes\": [...]}. Nodes run in order; each takes the previous \
node's output unless its \"in\" lists node ids (\"input\" is the image). Every node has a unique \
\"id\" and an \"op\":
- conv2d: filters, kernel, stride (1), padding (\"same\" | \"valid\" | pixels; default valid), \
dilation (1), groups (1), bias (true)
- depthwise_conv2d: kernel, stride, padding, dilation, multiplier (1); separable_conv2d: \
filters, kernel, stride, padding, dilation
- batch_norm; relu, gelu, silu, sigmoid, tanh, leaky_relu (slope)
- max_pool, avg_pool: kernel, stride (= kernel), padding; global_avg_pool; flatten
- dense: units; dropout: rate in [0, 1)
- add (residual: inputs of equal shape), concat (along channels: equal height and width); both \
need \"in\" with two or more ids
Conv and dense nodes may set \"init\" (he_normal, he_uniform, glorot_normal, glorot_uniform, \
lecun_normal; patch_whitening for a conv2d reading \"input\": filters from the training images' \
patch statistics) and \"l2\" (weight decay factor). The last node's output is the logits: a dense \
layer with one unit per class, after global_avg_pool or flatten. Keep feature maps at least 1x1.";

/// The task in one paragraph.
pub fn task_text(task: &Task) -> String {
    let [c, h, w] = task.input;
    let mut out = format!(
        "Input: {c}x{h}x{w} images (channels x height x width). Output: {} classes (the last node \
         is a dense layer with {} units).",
        task.classes, task.classes
    );
    let l = &task.limits;
    let mut budgets = Vec::new();
    if let Some(p) = l.max_params {
        budgets.push(format!("at most {} parameters", lemo_arch::thousands(p)));
    }
    if let Some(m) = l.max_macs {
        budgets.push(format!(
            "at most {} multiply-accumulates per image",
            lemo_arch::thousands(m)
        ));
    }
    if let Some(b) = l.max_activation_bytes {
        budgets.push(format!(
            "at most {} bytes of activations per image",
            lemo_arch::thousands(b)
        ));
    }
    if !budgets.is_empty() {
        out.push_str(&format!(" Budgets: {}.", budgets.join(", ")));
    }
    out
}

/// The observed metrics in a few lines. A test accuracy is never shown: an architect that saw
/// it would be tuned to the test split.
pub fn metrics_text(o: &Observed) -> String {
    let mut lines = vec![
        format!("- training accuracy (A1): {:.2}%", o.a1 * 100.0),
        format!("- validation accuracy (A2): {:.2}%", o.a2 * 100.0),
        format!("- training energy (E1): {:.3e} kWh", o.e1_kwh),
        format!("- validation energy (E2): {:.3e} kWh", o.e2_kwh),
        format!("- inference speed (F): {:.0} images/s", o.fps),
        format!("- parameters (P): {}", lemo_arch::thousands(o.params)),
    ];
    if let Some(m) = o.macs {
        lines.push(format!(
            "- multiply-accumulates per image: {}",
            lemo_arch::thousands(m)
        ));
    }
    lines.join("\n")
}

/// A network as JSON with one node per line: compact, and still easy to read and edit.
pub fn compact_json(graph: &Graph) -> String {
    let nodes: Vec<String> = graph
        .nodes
        .iter()
        .map(|n| format!("    {}", serde_json::to_string(n).unwrap_or_default()))
        .collect();
    let name = graph
        .name
        .as_ref()
        .map(|n| format!("\n  \"name\": {},", serde_json::Value::String(n.clone())))
        .unwrap_or_default();
    format!("{{{name}\n  \"nodes\": [\n{}\n  ]\n}}", nodes.join(",\n"))
}

fn render(name: &str, template: &str, vars: &BTreeMap<&str, String>) -> Result<String, LlmError> {
    fill(template, vars)
        .map(|s| {
            s.lines()
                .map(str::trim_end)
                .collect::<Vec<_>>()
                .join("\n")
                .trim_end()
                .to_string()
        })
        .map_err(|e| LlmError::Prompt(format!("template `{name}`: {e}")))
}

/// Replaces `{name}` by `vars[name]`; `{{` and `}}` are literal braces. Unknown or unclosed
/// placeholders are errors.
fn fill(template: &str, vars: &BTreeMap<&str, String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("{{") {
            out.push('{');
            rest = after;
        } else if let Some(after) = tail.strip_prefix("}}") {
            out.push('}');
            rest = after;
        } else if tail.starts_with('}') {
            return Err("a lone `}` (write `}}` for a literal brace)".into());
        } else {
            let end = tail.find('}').ok_or_else(|| {
                "a `{` without its `}` (write `{{` for a literal brace)".to_string()
            })?;
            let key = &tail[1..end];
            let value = vars.get(key).ok_or_else(|| {
                let known: Vec<&str> = vars.keys().copied().collect();
                format!(
                    "unknown placeholder `{{{key}}}`; this template knows {}",
                    known.join(", ")
                )
            })?;
            out.push_str(value);
            rest = &tail[end + 1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_chain_book_shows_a_chain_and_no_schema() {
        let book = super::PromptBook::chain();
        book.check().expect("the chain book's templates are valid");
        let brief = super::TaskBrief {
            dataset: "digits".into(),
            task: lemo_arch::Task {
                input: [1, 8, 8],
                classes: 10,
                limits: lemo_arch::Limits::default(),
            },
            notes: String::new(),
            seed: 1,
            candidate: 0,
        };
        let system = book
            .system_message(&brief, &lemo_arch::json_schema())
            .expect("renders")
            .content;
        assert!(!system.contains("\"in\""), "{system}");
        assert!(!system.contains("$defs"), "no schema: {system}");
        assert!(system.contains(r#"{"op": "dense", "units": <classes>}"#));
        assert!(system.contains("Output: 10 classes"), "{system}");
        assert!(system.contains(r#"{"op":"global_avg_pool"}"#), "{system}");
        assert!(!system.contains(r#"{"id""#), "{system}");
        // The example is a valid network for its task.
        let example = lemo_arch::parse_answer(super::CHAIN_EXAMPLE)
            .expect("parses")
            .graph;
        let task = lemo_arch::Task {
            input: [3, 32, 32],
            classes: 100,
            limits: lemo_arch::Limits::default(),
        };
        example.validate(&task).expect("valid");
    }

    use super::*;

    #[test]
    fn fill_replaces_escapes_and_rejects_unknown_placeholders() -> Result<(), String> {
        let vars = BTreeMap::from([("a", "1".to_string()), ("b", "two".to_string())]);
        assert_eq!(fill("x{a}y{b}{{z}}", &vars)?, "x1ytwo{z}");
        assert!(fill("{c}", &vars).is_err_and(|e| e.contains("unknown placeholder `{c}`")));
        assert!(fill("{a", &vars).is_err());
        assert!(fill("a}", &vars).is_err());
        Ok(())
    }

    #[test]
    fn defaults_check_and_a_file_overrides_one_template() -> Result<(), LlmError> {
        PromptBook::default().check()?;
        let book = PromptBook::from_toml_str("initial = \"Build a net for {dataset}. {task}\"")?;
        assert_eq!(book.initial, "Build a net for {dataset}. {task}");
        assert_eq!(book.next, DEFAULT_NEXT);
        let bad = PromptBook::from_toml_str("repair = \"{instructions}\"");
        assert!(
            matches!(bad, Err(LlmError::Prompt(m)) if m.contains("`repair`") && m.contains("{instructions}"))
        );
        assert!(PromptBook::from_toml_str("sistem = \"x\"").is_err());
        let round_trip = PromptBook::from_toml_str(&PromptBook::default().to_toml_string()?)?;
        assert_eq!(round_trip, PromptBook::default());
        Ok(())
    }
}
