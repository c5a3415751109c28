//! Properties: nothing an LLM writes panics the reader or the validator; valid graphs infer
//! shapes consistently; every chain of edits keeps a graph valid.

use lemo_arch::{Graph, Instruction, Limits, Source, Task, parse_answer, starter};
use proptest::prelude::*;
use serde_json::{Map, Value};

const KEYS: &[&str] = &[
    "id",
    "op",
    "in",
    "nodes",
    "name",
    "filters",
    "kernel",
    "stride",
    "padding",
    "dilation",
    "groups",
    "bias",
    "units",
    "rate",
    "multiplier",
    "epsilon",
    "momentum",
    "slope",
    "init",
    "l2",
    "architecture",
];
const WORDS: &[&str] = &[
    "conv2d",
    "depthwise_conv2d",
    "separable_conv2d",
    "batch_norm",
    "relu",
    "leaky_relu",
    "max_pool",
    "avg_pool",
    "global_avg_pool",
    "flatten",
    "dense",
    "dropout",
    "add",
    "concat",
    "input",
    "a",
    "b",
    "same",
    "valid",
    "he_normal",
    "softmax",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (0u64..40).prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop::sample::select(WORDS).prop_map(|w| Value::String(w.to_string())),
        ".*".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..8).prop_map(|kv| {
                Value::Object(
                    kv.into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect::<Map<_, _>>(),
                )
            }),
        ]
    })
}

/// A node of a random (often invalid) network with plausible ops and hyper-parameters.
fn node(i: usize) -> impl Strategy<Value = Value> {
    let op = prop_oneof![
        (1u32..24, 1u32..6, 1u32..3, prop::sample::select(vec!["same", "valid"]))
            .prop_map(|(f, k, s, p)| serde_json::json!({"op": "conv2d", "filters": f, "kernel": k, "stride": s, "padding": p})),
        (1u32..4, 1u32..3).prop_map(|(k, m)| serde_json::json!({"op": "depthwise_conv2d", "kernel": k, "multiplier": m, "padding": "same"})),
        (1u32..16, 1u32..4).prop_map(|(f, k)| serde_json::json!({"op": "separable_conv2d", "filters": f, "kernel": k})),
        Just(serde_json::json!({"op": "batch_norm"})),
        Just(serde_json::json!({"op": "relu"})),
        (1u32..4).prop_map(|k| serde_json::json!({"op": "max_pool", "kernel": k})),
        (1u32..4).prop_map(|k| serde_json::json!({"op": "avg_pool", "kernel": k, "stride": 1})),
        Just(serde_json::json!({"op": "global_avg_pool"})),
        Just(serde_json::json!({"op": "flatten"})),
        (1u32..16).prop_map(|u| serde_json::json!({"op": "dense", "units": u})),
        Just(serde_json::json!({"op": "dropout", "rate": 0.2})),
        Just(serde_json::json!({"op": "add"})),
        Just(serde_json::json!({"op": "concat"})),
    ];
    (op, prop::option::of(prop::collection::vec(0..i + 2, 1..3))).prop_map(move |(mut op, ins)| {
        op["id"] = Value::from(format!("n{i}"));
        if let Some(ins) = ins {
            let names: Vec<String> = ins
                .into_iter()
                .map(|j| {
                    if j == 0 {
                        "input".to_string()
                    } else {
                        format!("n{}", j - 1)
                    }
                })
                .collect();
            op["in"] = Value::from(names);
        }
        op
    })
}

fn random_network() -> impl Strategy<Value = Value> {
    (1usize..12).prop_flat_map(|n| {
        let nodes: Vec<_> = (0..n).map(node).collect();
        nodes.prop_map(|nodes| serde_json::json!({ "nodes": nodes }))
    })
}

fn task() -> impl Strategy<Value = Task> {
    (1usize..4, 1usize..40, 1usize..40, 1usize..20).prop_map(|(c, h, w, classes)| Task {
        input: [c, h, w],
        classes,
        limits: Limits::default(),
    })
}

/// Checks the analysis agrees with itself: inputs resolve to earlier nodes whose outputs are the
/// recorded input shapes, totals are sums, and the JSON round trip analyses the same.
fn consistent(g: &Graph, task: &Task) -> Result<(), TestCaseError> {
    let a = g
        .validate(task)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(a.nodes.len(), g.nodes.len());
    for (i, info) in a.nodes.iter().enumerate() {
        for (s, shape) in info.inputs.iter().zip(&info.input_shapes) {
            match *s {
                Source::Input => {
                    prop_assert_eq!(shape.numel(), task.input.iter().product::<usize>())
                }
                Source::Node(j) => {
                    prop_assert!(j < i);
                    prop_assert_eq!(*shape, a.nodes[j].output);
                }
            }
        }
    }
    prop_assert_eq!(a.params, a.nodes.iter().map(|n| n.params).sum::<u64>());
    prop_assert_eq!(a.macs, a.nodes.iter().map(|n| n.macs).sum::<u64>());
    let again =
        Graph::from_json(&g.to_json_pretty()).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&again.canonical_hash(), &g.canonical_hash());
    prop_assert_eq!(again.validate(task).ok(), Some(a));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(p) = parse_answer(&text) {
            let _ = p.graph.validate(&Task { input: [3, 32, 32], classes: 10, limits: Limits::default() });
        }
    }

    #[test]
    fn arbitrary_json_never_panics(v in json_value(), t in task(), fenced in any::<bool>()) {
        let text = if fenced { format!("Here:\n```json\n{v}\n```\n") } else { v.to_string() };
        let parsed = parse_answer(&text);
        if let Ok(p) = &parsed {
            let _ = p.graph.validate(&t);
            let _ = p.graph.canonical_hash();
        }
        let _ = Graph::from_json(&v.to_string());
        // Truncating anywhere is a typed error or a smaller valid answer, never a panic.
        let cut: String = text.chars().take(text.chars().count() / 2).collect();
        let _ = parse_answer(&cut);
    }

    #[test]
    fn random_networks_validate_consistently_or_fail_typed(v in random_network(), t in task()) {
        let g = Graph::from_json(&v.to_string()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        match g.validate(&t) {
            Ok(_) => consistent(&g, &t)?,
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(!msg.is_empty() && !msg.contains('\n'), "{}", msg);
            }
        }
    }

    #[test]
    fn chains_of_edits_stay_valid(t in task(), steps in prop::collection::vec((0usize..15, any::<u64>()), 1..10)) {
        let mut g = starter(&t);
        consistent(&g, &t)?;
        for (k, seed) in steps {
            let edit = g.apply(Instruction::ALL[k], &t, seed).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&edit, &g.apply(Instruction::ALL[k], &t, seed).map_err(|e| TestCaseError::fail(e.to_string()))?);
            g = edit.graph;
            consistent(&g, &t)?;
        }
    }
}
