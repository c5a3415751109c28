//! The canonical hash: the same network written twice hashes the same.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::ir::{Graph, INPUT_ID, Op, Padding, PaddingMode};

impl Graph {
    /// Hex SHA-256 of the network's canonical form, for the run's duplicate cache.
    ///
    /// The canonical form renames ids by position, writes every `in` explicitly (so implicit
    /// and explicit inputs are equal), makes defaults explicit (stride, dilation, bias, ...),
    /// writes padding as pixels (`"same"` on a 3x3 kernel equals `1`; `"valid"` equals `0`),
    /// treats `l2: 0` as no `l2`, and ignores the network's `name`. Works on any graph, valid or
    /// not.
    pub fn canonical_hash(&self) -> String {
        let digest = Sha256::digest(self.canonical_form().as_bytes());
        let mut hex = String::with_capacity(64);
        for b in digest.iter() {
            // Writing to a String cannot fail.
            let _ = write!(hex, "{b:02x}");
        }
        hex
    }

    /// The canonical form that [`Graph::canonical_hash`] hashes (compact JSON).
    pub fn canonical_form(&self) -> String {
        let index: HashMap<&str, usize> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.as_str(), i))
            .collect();
        let mut out = String::with_capacity(64 * self.nodes.len());
        out.push('[');
        for (i, n) in self.nodes.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let inputs: Vec<Value> = match &n.inputs {
                None => vec![if i == 0 { json!(-1) } else { json!(i - 1) }],
                Some(list) => list
                    .iter()
                    .map(|id| {
                        if id == INPUT_ID {
                            json!(-1)
                        } else {
                            match index.get(id.as_str()) {
                                Some(&j) => json!(j),
                                None => json!(format!("?{id}")),
                            }
                        }
                    })
                    .collect(),
            };
            // Serialising these plain types cannot fail.
            let op = serde_json::to_string(&canonical_op(&n.op)).unwrap_or_default();
            let inputs = serde_json::to_string(&inputs).unwrap_or_default();
            let init = serde_json::to_string(&n.init).unwrap_or_default();
            let l2 = n.l2.filter(|l| *l != 0.0).unwrap_or(0.0);
            let _ = write!(out, "[{op},{inputs},{init},{l2:?}]");
        }
        out.push(']');
        out
    }
}

fn explicit(padding: &Padding, kernel: u32, dilation: u32) -> Padding {
    Padding::Explicit(match padding {
        Padding::Named(PaddingMode::Same) => dilation.saturating_mul(kernel.saturating_sub(1)) / 2,
        Padding::Named(PaddingMode::Valid) => 0,
        Padding::Explicit(p) => *p,
    })
}

/// The op with every default and padding made explicit.
fn canonical_op(op: &Op) -> Op {
    let mut op = op.clone();
    match &mut op {
        Op::Conv2d {
            kernel,
            padding,
            dilation,
            ..
        }
        | Op::DepthwiseConv2d {
            kernel,
            padding,
            dilation,
            ..
        }
        | Op::SeparableConv2d {
            kernel,
            padding,
            dilation,
            ..
        } => {
            *padding = explicit(padding, *kernel, *dilation);
        }
        Op::MaxPool {
            kernel,
            stride,
            padding,
        }
        | Op::AvgPool {
            kernel,
            stride,
            padding,
        } => {
            *padding = explicit(padding, *kernel, 1);
            *stride = Some(stride.unwrap_or(*kernel));
        }
        _ => {}
    }
    op
}
