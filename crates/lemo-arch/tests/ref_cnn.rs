//! The reference CNN of the design, counted by hand; summaries, DOT, schema and hashing.

use lemo_arch::{ArchError, Graph, Limits, Node, Op, Shape, Task, ref_cnn, starter};

fn cifar100() -> Task {
    Task {
        input: [3, 32, 32],
        classes: 100,
        limits: Limits::default(),
    }
}

#[test]
fn ref_cnn_matches_the_hand_count() -> Result<(), ArchError> {
    let g = ref_cnn(100);
    let a = g.validate(&cifar100())?;
    // conv: k*k*Cin*Cout + Cout; batch norm: gamma + beta; dense: 256*100 + 100.
    let convs = (9 * 3 * 64 + 64)
        + (9 * 64 * 64 + 64)
        + (9 * 64 * 128 + 128)
        + (9 * 128 * 128 + 128)
        + (9 * 128 * 256 + 256);
    let bns = 2 * (64 + 64 + 128 + 128 + 256);
    let dense = 256 * 100 + 100;
    assert_eq!(a.params, convs + bns + dense);
    assert_eq!(a.params, 582_308);
    // With running statistics it would be 583,588: they are buffers, not parameters.
    assert_eq!(a.params + bns, 583_588);
    assert_eq!(a.model_bytes, 4 * 582_308);
    // 32x32: 3->64, 64->64; 16x16: 64->128, 128->128; 8x8: 128->256; dense 256x100.
    let macs = 1024 * 9 * (3 * 64 + 64 * 64)
        + 256 * 9 * (64 * 128 + 128 * 128)
        + 64 * 9 * 128 * 256
        + 25_600;
    assert_eq!(a.macs, macs);
    assert_eq!(a.macs, 115_041_280);
    assert_eq!(a.output(), Some(Shape::Vector { features: 100 }));
    let s1 = g
        .nodes
        .iter()
        .position(|n| n.id == "s1")
        .ok_or(ArchError::NoJson)?;
    assert_eq!(
        a.nodes[s1].output,
        Shape::Map {
            c: 128,
            h: 16,
            w: 16
        }
    );
    Ok(())
}

#[test]
fn summary_and_dot_show_every_node() -> Result<(), ArchError> {
    let g = ref_cnn(10);
    let a = g.validate(&Task {
        classes: 10,
        ..cifar100()
    })?;
    let s = g.summary(&a);
    assert!(s.contains("Total params: 559,178"), "{s}");
    assert!(s.contains("s1"), "{s}");
    assert!(s.contains("r4, r3"), "{s}");
    assert!(s.contains("[128,16,16]"), "{s}");
    assert_eq!(
        s.lines()
            .filter(|l| l.starts_with('c') && l.contains("conv2d"))
            .count(),
        5,
        "{s}"
    );
    let dot = g.to_dot(Some(&a));
    assert!(dot.starts_with("digraph \"ref-cnn\" {"));
    assert!(dot.contains("\"r3\" -> \"s1\";"), "{dot}");
    assert!(dot.contains("\"r4\" -> \"s1\";"), "{dot}");
    assert!(dot.contains("\"input\" -> \"c1\";"), "{dot}");
    assert_eq!(dot.matches(" -> ").count(), g.nodes.len() + 1);
    assert!(g.to_dot(None).contains("\"p2\" -> \"c5\";"));
    Ok(())
}

#[test]
fn starter_validates_for_the_usual_inputs() -> Result<(), ArchError> {
    for (input, classes) in [
        ([1, 8, 8], 10),
        ([1, 28, 28], 10),
        ([3, 16, 16], 5),
        ([3, 32, 32], 100),
        ([3, 1, 1], 2),
        ([1, 224, 96], 7),
    ] {
        let task = Task {
            input,
            classes,
            limits: Limits::default(),
        };
        let g = starter(&task);
        let a = g.validate(&task)?;
        assert!(a.params < 400_000, "{input:?}: {}", a.params);
        // Images of 16x16 and more get the staged (airbench-shaped) starter.
        let staged = g.nodes.first().is_some_and(|n| n.id == "w");
        assert_eq!(staged, input[1].min(input[2]) >= 16, "{input:?}");
    }
    // CIFAR-10: the network of docs/results.md (295,554 parameters, three stages).
    let cifar10 = Task {
        input: [3, 32, 32],
        classes: 10,
        limits: Limits::default(),
    };
    let a = starter(&cifar10).validate(&cifar10)?;
    assert_eq!(a.params, 295_554);
    // The digits keep the small starter.
    let digits = Task {
        input: [1, 8, 8],
        classes: 10,
        limits: Limits::default(),
    };
    assert_eq!(starter(&digits).validate(&digits)?.params, 5_226);
    let tight = Task {
        input: [3, 32, 32],
        classes: 10,
        limits: Limits {
            max_params: Some(5_000),
            ..Limits::default()
        },
    };
    let a = starter(&tight).validate(&tight)?;
    assert!(a.params <= 5_000);
    Ok(())
}

#[test]
fn the_same_network_written_twice_hashes_the_same() -> Result<(), ArchError> {
    let a = Graph::from_json(
        r#"{"name": "x", "nodes": [
        {"id": "c1", "op": "conv2d", "filters": 8, "kernel": 3, "padding": "same"},
        {"id": "r1", "op": "relu"},
        {"id": "s", "op": "add", "in": ["r1", "c1"]},
        {"id": "p", "op": "max_pool", "kernel": 2},
        {"id": "g", "op": "global_avg_pool"},
        {"id": "fc", "op": "dense", "units": 10}]}"#,
    )?;
    let b = Graph::from_json(
        r#"{"nodes": [
        {"id": "conv", "op": "conv2d", "filters": 8, "kernel": 3, "stride": 1, "padding": 1, "in": ["input"], "bias": true, "l2": 0},
        {"id": "act", "op": "relu", "in": ["conv"]},
        {"id": "sum", "op": "add", "in": ["act", "conv"]},
        {"id": "pool", "op": "max_pool", "kernel": 2, "stride": 2, "padding": "valid"},
        {"id": "gap", "op": "global_avg_pool", "in": ["pool"]},
        {"id": "logits", "op": "dense", "units": 10, "in": ["gap"]}]}"#,
    )?;
    assert_eq!(a.canonical_hash(), b.canonical_hash());
    assert_eq!(a.canonical_hash().len(), 64);
    // A real difference changes the hash: the add's operands, a width, an initialiser.
    let mut c = b.clone();
    c.nodes[2].inputs = Some(vec!["act".into(), "act".into()]);
    assert_ne!(a.canonical_hash(), c.canonical_hash());
    let mut d = b.clone();
    d.nodes[5].op = Op::dense(11);
    assert_ne!(a.canonical_hash(), d.canonical_hash());
    let mut e = b.clone();
    e.nodes[0].init = Some(lemo_arch::Init::HeNormal);
    assert_ne!(a.canonical_hash(), e.canonical_hash());
    Ok(())
}

#[test]
fn validation_errors_read_as_repair_prompts() {
    let task = Task {
        input: [3, 8, 8],
        classes: 10,
        limits: Limits::default(),
    };
    let mut nodes = vec![Node::new("c1", Op::conv_same(8, 3))];
    for k in 1..=4 {
        nodes.push(Node::new(format!("p{k}"), Op::max_pool(2)));
    }
    nodes.push(Node::new("g", Op::GlobalAvgPool));
    nodes.push(Node::new("fc", Op::dense(10)));
    let g = Graph { name: None, nodes };
    let err = g
        .validate(&task)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.starts_with("p4: max_pool 2x2 stride 2 on a 1x1 map gives height (1 - 2) / 2 + 1 = 0"),
        "{err}"
    );
    let over = Task {
        limits: Limits {
            max_macs: Some(1_000),
            ..Limits::default()
        },
        ..task
    };
    let short = Graph {
        name: None,
        nodes: g.nodes[..2]
            .iter()
            .cloned()
            .chain(g.nodes[5..].iter().cloned())
            .collect(),
    };
    let err = short
        .validate(&over)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("MACs per image, over the budget of 1000"),
        "{err}"
    );
    assert!(err.contains("c1 "), "{err}");
}
