//! Rendering: a Keras-like text summary and Graphviz DOT (as the paper's Figures 3-5 draw
//! networks).

use std::fmt::Write as _;

use crate::ir::{Analysis, Graph, INPUT_ID, Node, Op, Source};

/// `1234567` as `"1,234,567"`.
pub fn thousands(v: u64) -> String {
    let digits = v.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// The op with its `init` and `l2`, e.g. `conv2d 64 3x3 same [he_normal, l2 1e-4]`.
fn describe(node: &Node) -> String {
    let mut extras = Vec::new();
    if let Some(init) = node.init
        && let Ok(serde_json::Value::String(s)) = serde_json::to_value(init)
    {
        extras.push(s);
    }
    if let Some(l2) = node.l2.filter(|l| *l != 0.0) {
        extras.push(format!("l2 {l2:e}"));
    }
    if extras.is_empty() {
        node.op.to_string()
    } else {
        format!("{} [{}]", node.op, extras.join(", "))
    }
}

/// Ids of the nodes feeding node `i`, resolved (the previous node when `in` is implicit).
// `i` is a position in graph.nodes (the caller enumerates them).
#[allow(clippy::indexing_slicing)]
fn input_ids(graph: &Graph, i: usize) -> Vec<String> {
    match &graph.nodes[i].inputs {
        Some(list) => list.clone(),
        None => vec![if i == 0 {
            INPUT_ID.to_string()
        } else {
            graph.nodes[i - 1].id.clone()
        }],
    }
}

fn source_id(graph: &Graph, s: &Source) -> String {
    match *s {
        Source::Input => INPUT_ID.to_string(),
        Source::Node(j) => graph
            .nodes
            .get(j)
            .map_or_else(|| format!("#{j}"), |n| n.id.clone()),
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1024.0 * 1024.0))
}

impl Graph {
    /// A Keras-like summary table: one row per node (id, op, inputs where not simply the
    /// previous node, output shape, parameters), then the totals (parameters, model size, MACs,
    /// activation memory per image). `analysis` is what [`Graph::validate`] returned for it.
    pub fn summary(&self, analysis: &Analysis) -> String {
        let input_shape = analysis.nodes.first().and_then(|n| {
            n.inputs
                .iter()
                .zip(&n.input_shapes)
                .find(|(s, _)| **s == Source::Input)
                .map(|(_, shape)| *shape)
        });
        let mut rows: Vec<[String; 5]> = vec![[
            "Layer (id)".to_string(),
            "Op".to_string(),
            "Input from".to_string(),
            "Output shape".to_string(),
            "Params".to_string(),
        ]];
        rows.push([
            INPUT_ID.to_string(),
            "input".to_string(),
            String::new(),
            input_shape.map(|s| s.to_string()).unwrap_or_default(),
            "0".to_string(),
        ]);
        for (i, (node, info)) in self.nodes.iter().zip(&analysis.nodes).enumerate() {
            let previous = if i == 0 {
                Source::Input
            } else {
                Source::Node(i - 1)
            };
            let implicit = matches!(info.inputs.as_slice(), [only] if *only == previous);
            let from = if implicit {
                String::new()
            } else {
                info.inputs
                    .iter()
                    .map(|s| source_id(self, s))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            rows.push([
                node.id.clone(),
                describe(node),
                from,
                info.output.to_string(),
                thousands(info.params),
            ]);
        }
        let mut widths = [0usize; 5];
        for r in &rows {
            for (w, cell) in widths.iter_mut().zip(r) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let total_width = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
        let mut out = String::new();
        if let Some(name) = &self.name {
            let _ = writeln!(out, "Network: {name}");
        }
        for (k, r) in rows.iter().enumerate() {
            let line = format!(
                "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {:>w4$}",
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2],
                w3 = widths[3],
                w4 = widths[4]
            );
            let _ = writeln!(out, "{}", line.trim_end());
            if k == 0 {
                let _ = writeln!(out, "{}", "-".repeat(total_width));
            }
        }
        let _ = writeln!(out, "{}", "=".repeat(total_width));
        let _ = writeln!(
            out,
            "Total params: {} ({} as f32)",
            thousands(analysis.params),
            mib(analysis.model_bytes)
        );
        let _ = writeln!(
            out,
            "MACs per image: {} ({:.1} M)",
            thousands(analysis.macs),
            analysis.macs as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "Activation memory per image: {} bytes ({})",
            thousands(analysis.activation_bytes),
            mib(analysis.activation_bytes)
        );
        out
    }

    /// Graphviz DOT of the network, top to bottom, one box per node coloured by kind (conv,
    /// normalisation, activation, pooling, dense, dropout, merge), with output shapes and
    /// parameter counts when `analysis` is given. Render with `dot -Tsvg`.
    pub fn to_dot(&self, analysis: Option<&Analysis>) -> String {
        let mut out = String::new();
        let name = self.name.as_deref().unwrap_or("network");
        let _ = writeln!(out, "digraph \"{}\" {{", escape(name));
        let _ = writeln!(out, "  rankdir=TB;");
        let _ = writeln!(
            out,
            "  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\", fontsize=10];"
        );
        let input_label = analysis
            .and_then(|a| a.nodes.first())
            .and_then(|n| {
                n.inputs
                    .iter()
                    .zip(&n.input_shapes)
                    .find(|(s, _)| **s == Source::Input)
                    .map(|(_, shape)| *shape)
            })
            .map_or_else(|| "input".to_string(), |s| format!("input\\n{s}"));
        let _ = writeln!(
            out,
            "  \"{INPUT_ID}\" [label=\"{input_label}\", fillcolor=\"#eeeeee\"];"
        );
        for (i, node) in self.nodes.iter().enumerate() {
            let info = analysis.and_then(|a| a.nodes.get(i));
            let mut label = format!("{}\\n{}", escape(&node.id), escape(&describe(node)));
            if let Some(info) = info {
                let _ = write!(label, "\\n{}", info.output);
                if info.params > 0 {
                    let _ = write!(label, "  ({} params)", thousands(info.params));
                }
            }
            let _ = writeln!(
                out,
                "  \"{}\" [label=\"{label}\", fillcolor=\"{}\"];",
                escape(&node.id),
                colour(&node.op)
            );
        }
        for (i, node) in self.nodes.iter().enumerate() {
            let sources = match analysis.and_then(|a| a.nodes.get(i)) {
                Some(info) => info.inputs.iter().map(|s| source_id(self, s)).collect(),
                None => input_ids(self, i),
            };
            for s in sources {
                let _ = writeln!(out, "  \"{}\" -> \"{}\";", escape(&s), escape(&node.id));
            }
        }
        out.push_str("}\n");
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn colour(op: &Op) -> &'static str {
    match op {
        Op::Conv2d { .. } | Op::DepthwiseConv2d { .. } | Op::SeparableConv2d { .. } => "#cfe2f3",
        Op::BatchNorm { .. } => "#fff2cc",
        Op::MaxPool { .. } | Op::AvgPool { .. } | Op::GlobalAvgPool | Op::Flatten => "#f4cccc",
        Op::Dense { .. } => "#d9d2e9",
        Op::Dropout { .. } => "#eeeeee",
        Op::Add | Op::Concat => "#fce5cd",
        _ => "#d9ead3",
    }
}
