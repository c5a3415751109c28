//! `op_signature` (the summary a grammar uses to write well-typed chains) agrees with
//! `Graph::validate` for every op, on a feature map and on a vector.

use lemo_arch::{Limits, OP_NAMES, Shape, Task, op_signature, parse_answer};

/// The op with its required fields set to values valid on an 8x8 map.
fn node(op: &str) -> String {
    let fields = match op {
        "conv2d" | "separable_conv2d" => r#","filters":4,"kernel":3"#,
        "depthwise_conv2d" | "max_pool" | "avg_pool" => r#","kernel":2"#,
        "dense" => r#","units":6"#,
        "dropout" => r#","rate":0.1"#,
        "add" | "concat" => r#","in":["a","b"]"#,
        _ => "",
    };
    format!(r#"{{"id":"x","op":"{op}"{fields}}}"#)
}

/// Whether `op` validates after `before` (two nodes `a`, `b` giving the same kind), and the
/// kind it gives: `Some(true)` a vector, `Some(false)` a map, `None` invalid.
fn gives_vector(before: &str, op: &str) -> Option<bool> {
    let task = Task {
        input: [1, 8, 8],
        classes: 3,
        limits: Limits::default(),
    };
    let text = format!(
        r#"{{"nodes":[{before},{},{{"id":"g","op":"flatten"}},{{"id":"fc","op":"dense","units":3}}]}}"#,
        node(op)
    );
    let graph = parse_answer(&text).ok()?.graph;
    let analysis = graph.validate(&task).ok()?;
    let at = graph.nodes.iter().position(|n| n.id == "x")?;
    Some(matches!(
        analysis.nodes.get(at)?.output,
        Shape::Vector { .. }
    ))
}

#[test]
fn every_op_signature_agrees_with_validation() {
    let maps = r#"{"id":"a","op":"conv2d","filters":4,"kernel":1},{"id":"b","op":"relu"}"#;
    let vectors =
        r#"{"id":"f","op":"flatten"},{"id":"a","op":"dense","units":4},{"id":"b","op":"relu"}"#;
    for op in OP_NAMES {
        let sig = op_signature(op).unwrap_or_else(|| panic!("{op} has no signature"));
        let on_map = gives_vector(maps, op);
        let on_vector = gives_vector(vectors, op);
        assert_eq!(on_map.is_some(), sig.on_map, "{op} on a map: {on_map:?}");
        assert_eq!(on_vector.is_some(), sig.on_vector, "{op} on a vector");
        for given in [on_map, on_vector].into_iter().flatten() {
            assert!(given || !sig.to_vector, "{op} gave a map");
        }
        if sig.to_vector {
            assert!(on_map.unwrap_or(true) && on_vector.unwrap_or(true), "{op}");
        } else if sig.on_map {
            assert_eq!(on_map, Some(false), "{op} keeps a map");
        }
        assert_eq!(sig.merge, op == "add" || op == "concat");
    }
    assert!(op_signature("softmax").is_none());
}
