//! LeMo-NADe architecture IR: parse what an LLM writes, validate, infer shapes, count, hash,
//! edit, render.
//!
//! A network is data ([`Graph`]): named nodes in evaluation order, each taking the previous node
//! unless its `in` names others. Everything is checked before any tensor is allocated, and every
//! problem is an [`ArchError`] whose message is a repair prompt for the architect.
//!
//! ```
//! use lemo_arch::{Limits, Task, parse_answer};
//!
//! let answer = r#"Here is my network:
//! ```json
//! {"nodes": [
//!   {"id": "c1", "op": "conv2d", "filters": 16, "kernel": 3, "padding": "same"},
//!   {"id": "r1", "op": "relu"},
//!   {"id": "g", "op": "global_avg_pool"},
//!   {"id": "fc", "op": "dense", "units": 10},  // the logits
//! ]}
//! ```"#;
//! let parsed = parse_answer(answer)?;
//! let task = Task { input: [1, 28, 28], classes: 10, limits: Limits::default() };
//! let analysis = parsed.graph.validate(&task)?;
//! assert_eq!(analysis.params, (16 * 9 + 16) + (16 * 10 + 10));
//! println!("{}", parsed.graph.summary(&analysis));
//! # Ok::<(), lemo_arch::ArchError>(())
//! ```

#![warn(clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod edit;
mod error;
mod hash;
mod ir;
mod parse;
mod render;
mod validate;
mod validated;
mod zoo;

pub use edit::Edit;
pub use error::ArchError;
pub use ir::{
    Activation, Analysis, Graph, INPUT_ID, Init, Limits, MAX_WHITENED_PATCH, NODE_FIELDS, Node,
    NodeInfo, OP_NAMES, Op, OpSignature, Padding, PaddingMode, Shape, Source, Task, op_signature,
};
pub use lemo_expert::Instruction;
pub use parse::{MAX_ANSWER_BYTES, MAX_NODES, Parsed, parse_answer};
pub use render::thousands;
pub use validate::MAX_TENSOR_ELEMENTS;
pub use validated::ValidatedGraph;
pub use zoo::{ref_cnn, starter};

/// The JSON Schema of the IR ([`Graph`]), generated from the types, for providers' structured
/// output. Checked into the repository as `docs/ir.schema.json`.
pub fn json_schema() -> serde_json::Value {
    schemars::schema_for!(Graph).to_value()
}
