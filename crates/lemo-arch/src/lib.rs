//! LeMo-NADe architecture IR: parse what an LLM writes, validate, infer shapes, count, hash,
//! edit, render.

mod ir;

pub use ir::{
    Activation, Analysis, Graph, INPUT_ID, Init, Limits, Node, NodeInfo, Op, Padding, PaddingMode,
    Shape, Source, Task,
};
