//! The burn model built from an IR graph: parameter counts equal lemo-arch's for every fixture
//! and for random valid graphs, every op runs, the deployment form computes the same function.

use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor};
use lemo_arch::{
    Graph, Init, Limits, Node, Op, Padding, PaddingMode, Task, ValidatedGraph, parse_answer,
    ref_cnn, starter,
};
use lemo_train::{GraphModel, SERIAL_FORWARD_MAX_MACS, TrainError};
use proptest::prelude::*;

fn task(input: [usize; 3], classes: usize) -> Task {
    Task {
        input,
        classes,
        limits: Limits::default(),
    }
}

fn build(graph: &Graph, task: &Task, device: &Device) -> Result<GraphModel, TrainError> {
    let network = ValidatedGraph::new(graph.clone(), task)
        .map_err(|e| TrainError::InvalidGraph(e.to_string()))?;
    let model = GraphModel::new(&network, device)?;
    assert_eq!(
        model.trainable_params(),
        network.params(),
        "trainable parameters of {:?}",
        graph.name
    );
    Ok(model)
}

fn forward_shape(model: &GraphModel, task: &Task, batch: usize, device: &Device) -> [usize; 2] {
    let [c, h, w] = task.input;
    let x = Tensor::<4>::random([batch, c, h, w], Distribution::Normal(0.0, 1.0), device);
    model.forward(x).expect("forward").dims()
}

#[test]
fn ref_cnn_has_the_reference_parameter_count_and_runs() -> Result<(), TrainError> {
    let device = Device::flex();
    let t = task([3, 32, 32], 100);
    let model = build(&ref_cnn(100), &t, &device)?;
    assert_eq!(model.trainable_params(), 582_308);
    // burn also counts the two running statistics of each of the 5 batch norms.
    assert_eq!(model.num_params(), 583_588);
    assert_eq!(forward_shape(&model, &t, 2, &device), [2, 100]);
    Ok(())
}

fn fixture_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../lemo-arch/tests/fixtures")
}

#[test]
fn every_valid_lemo_arch_fixture_builds_with_the_same_parameter_count() -> Result<(), TrainError> {
    let device = Device::flex();
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture_dir().join("expected.json")).expect("expected.json"),
    )
    .expect("json");
    let mut built = 0;
    for (file, outcome) in expected.as_object().expect("object") {
        if outcome["outcome"] != "ok" {
            continue;
        }
        let text = std::fs::read_to_string(fixture_dir().join(file)).expect("fixture");
        let graph = parse_answer(&text).expect("parses").graph;
        let classes = graph
            .nodes
            .iter()
            .rev()
            .find_map(|n| match n.op {
                Op::Dense { units, .. } => Some(units as usize),
                _ => None,
            })
            .unwrap_or(10);
        let candidates = [
            [3, 32, 32],
            [1, 28, 28],
            [3, 16, 16],
            [1, 8, 8],
            [3, 64, 64],
        ];
        let Some(t) = candidates
            .iter()
            .map(|&i| task(i, classes))
            .find(|t| graph.validate(t).is_ok())
        else {
            panic!("{file}: no task validates");
        };
        let model = build(&graph, &t, &device)?;
        if let Some(p) = outcome.get("params").and_then(|p| p.as_u64()) {
            assert_eq!(model.trainable_params(), p, "{file}");
        }
        assert_eq!(
            forward_shape(&model, &t, 2, &device),
            [2, classes],
            "{file}"
        );
        built += 1;
    }
    assert!(built >= 5, "only {built} fixtures built");
    Ok(())
}

fn same() -> Padding {
    Padding::Named(PaddingMode::Same)
}

fn node(id: &str, op: Op) -> Node {
    Node::new(id, op)
}

/// A graph that uses every op of the IR, with branches, add, concat, init and l2.
fn every_op_graph() -> Graph {
    let nodes = vec![
        Node {
            init: Some(Init::HeNormal),
            l2: Some(1e-4),
            ..node(
                "c1",
                Op::Conv2d {
                    filters: 8,
                    kernel: 3,
                    stride: 1,
                    padding: same(),
                    dilation: 1,
                    groups: 1,
                    bias: true,
                },
            )
        },
        node("b1", Op::batch_norm()),
        node("r1", Op::Relu),
        node(
            "g2",
            Op::Conv2d {
                filters: 8,
                kernel: 3,
                stride: 1,
                padding: Padding::Explicit(2),
                dilation: 2,
                groups: 4,
                bias: false,
            },
        ),
        node("a2", Op::Gelu),
        node("s1", Op::Add).taking(&["a2", "r1"]),
        Node {
            init: Some(Init::GlorotUniform),
            ..node(
                "dw",
                Op::DepthwiseConv2d {
                    kernel: 3,
                    stride: 2,
                    padding: same(),
                    dilation: 1,
                    multiplier: 2,
                    bias: true,
                },
            )
        },
        node("a3", Op::Silu),
        Node {
            init: Some(Init::LecunNormal),
            ..node(
                "sep",
                Op::SeparableConv2d {
                    filters: 12,
                    kernel: 3,
                    stride: 1,
                    padding: same(),
                    dilation: 1,
                    bias: true,
                },
            )
        },
        node("b3", Op::batch_norm()),
        node("a4", Op::Tanh).taking(&["b3"]),
        node("a5", Op::Sigmoid).taking(&["b3"]),
        node("cat", Op::Concat).taking(&["a4", "a5", "a3"]),
        node(
            "mp",
            Op::MaxPool {
                kernel: 3,
                stride: Some(2),
                padding: same(),
            },
        ),
        node("lr", Op::LeakyRelu { slope: 0.2 }),
        node(
            "ap",
            Op::AvgPool {
                kernel: 2,
                stride: None,
                padding: Padding::default(),
            },
        ),
        node("drop1", Op::Dropout { rate: 0.2 }),
        node("flat", Op::Flatten),
        Node {
            init: Some(Init::HeUniform),
            l2: Some(1e-3),
            ..node("h", Op::dense(16))
        },
        node("bnv", Op::batch_norm()),
        node("rv", Op::Relu),
        node("gap", Op::GlobalAvgPool).taking(&["lr"]),
        node("cat2", Op::Concat).taking(&["rv", "gap"]),
        Node {
            init: Some(Init::GlorotNormal),
            ..node(
                "fc",
                Op::Dense {
                    units: 7,
                    bias: true,
                },
            )
        },
    ];
    Graph {
        name: Some("every-op".into()),
        nodes,
    }
}

#[test]
fn every_op_builds_runs_and_counts_like_lemo_arch() -> Result<(), TrainError> {
    let device = Device::flex();
    let t = task([3, 16, 16], 7);
    let model = build(&every_op_graph(), &t, &device)?;
    assert_eq!(forward_shape(&model, &t, 3, &device), [3, 7]);
    // Two nodes carry l2: c1 (one kernel) and h (one kernel).
    let l2 = model.l2_weights();
    assert_eq!(l2.len(), 2);
    assert!(l2.iter().all(|(_, ids)| ids.len() == 1));
    Ok(())
}

#[test]
fn training_mode_forward_backward_works_on_every_op() -> Result<(), TrainError> {
    let device = Device::flex().autodiff();
    let t = task([3, 16, 16], 7);
    let model = build(&every_op_graph(), &t, &device)?;
    let x = Tensor::<4>::random([4, 3, 16, 16], Distribution::Normal(0.0, 1.0), &device);
    let loss = model.forward(x)?.powi_scalar(2).mean();
    let grads = loss.backward();
    let grads = burn::optim::GradientsParams::from_grads(grads, &model);
    // Every weighted layer gets a gradient: conv weights/biases, BN gamma/beta, dense.
    assert!(grads.len() >= 15, "only {} gradients", grads.len());
    Ok(())
}

/// Puts non-trivial running statistics into every batch norm by running training-mode
/// forward passes, then compares validation-mode outputs with the deployment form's.
#[test]
fn deployment_form_folds_batch_norm_and_agrees_within_1e_4() -> Result<(), TrainError> {
    let ad = Device::flex().autodiff();
    ad.seed(7);
    let cifar = task([3, 32, 32], 10);
    for (graph, t) in [
        (every_op_graph(), task([3, 16, 16], 7)),
        (ref_cnn(10), cifar.clone()),
        (starter(&cifar), cifar.clone()),
    ] {
        let model = build(&graph, &t, &ad)?;
        if graph.name.as_deref() == Some("starter") {
            assert_eq!(
                model.fused_pools(),
                3,
                "each stage's pooling runs inside the convolution it reads"
            );
        }
        if graph.name.as_deref() == Some("ref-cnn") {
            assert_eq!(
                model.fused_activations(),
                5,
                "every ref-cnn ReLU runs inside the batch norm it reads while training"
            );
            assert_eq!(
                model.fused_pools(),
                1,
                "p1 runs inside b2 (p2 reads the residual add, not a batch norm)"
            );
        }
        let [c, h, w] = t.input;
        for _ in 0..3 {
            let x = Tensor::<4>::random([8, c, h, w], Distribution::Normal(0.5, 2.0), &ad);
            let _ = model.forward(x)?;
        }
        let valid = model.valid();
        let deployed = valid.deployment_form()?;
        let (norms, drops) = deployed.norm_and_dropout_layers();
        assert_eq!(drops, 0, "dropout left in the deployment form");
        let (norms_before, _) = valid.norm_and_dropout_layers();
        assert!(norms < norms_before, "no batch norm was folded");
        if graph.name.as_deref() == Some("ref-cnn") {
            assert_eq!(norms, 0, "every ref-cnn batch norm follows a conv");
            assert_eq!(
                deployed.fused_activations(),
                5,
                "every ref-cnn ReLU follows a conv"
            );
            assert_eq!(deployed.fused_pools(), 1, "p1 moves onto c2 with the ReLU");
        }
        let device = Device::flex();
        let x = Tensor::<4>::random([5, c, h, w], Distribution::Normal(0.0, 1.0), &device);
        let a = valid.forward(x.clone())?;
        let b = deployed.forward(x)?;
        let diff: f32 = (a.clone() - b).abs().max().into_scalar();
        let scale: f32 = a.abs().max().into_scalar();
        assert!(
            diff <= 1e-4 * scale.max(1.0),
            "{:?}: folded differs by {diff} (scale {scale})",
            graph.name
        );
    }
    Ok(())
}

/// A pass small enough to run on one thread (batch 1 of a small network) gives, for every image,
/// what the same image gives inside a batch large enough to be split across the whole pool.
#[test]
fn one_thread_forward_agrees_with_the_pooled_forward() -> Result<(), TrainError> {
    let ad = Device::flex().autodiff();
    ad.seed(11);
    let cifar = task([3, 32, 32], 10);
    for (graph, t) in [
        (starter(&cifar), cifar.clone()),
        (every_op_graph(), task([3, 16, 16], 7)),
    ] {
        let network = ValidatedGraph::new(graph.clone(), &t)
            .map_err(|e| TrainError::InvalidGraph(e.to_string()))?;
        let macs = network.analysis().macs;
        let model = build(&graph, &t, &ad)?.valid().deployment_form()?;
        let pooled = (SERIAL_FORWARD_MAX_MACS / macs + 1) as usize;
        assert!(pooled <= 1024, "{:?}: {macs} MACs per image", graph.name);
        assert!(model.runs_on_one_thread(1), "{:?} at batch 1", graph.name);
        assert!(
            !model.runs_on_one_thread(pooled),
            "{:?} at batch {pooled}",
            graph.name
        );
        let [c, h, w] = t.input;
        let device = Device::flex();
        let x = Tensor::<4>::random([pooled, c, h, w], Distribution::Normal(0.0, 1.0), &device);
        let all = model.forward(x.clone())?;
        let scale: f32 = all.clone().abs().max().into_scalar();
        for i in [0, pooled - 1] {
            let one = model.forward(x.clone().narrow(0, i, 1))?;
            let diff: f32 = (one - all.clone().narrow(0, i, 1))
                .abs()
                .max()
                .into_scalar();
            assert!(
                diff <= 1e-5 * scale.max(1.0),
                "{:?}, image {i}: one thread differs by {diff} (scale {scale})",
                graph.name
            );
        }
    }
    // ref-cnn (115 M MACs per image) is split across the pool even at batch 1.
    let big = build(&ref_cnn(10), &cifar, &Device::flex())?;
    assert!(!big.runs_on_one_thread(1));
    Ok(())
}

// ---- random valid graphs --------------------------------------------------------------------

/// One random building block; `a`, `b`, `c` pick its hyper-parameters.
#[derive(Debug, Clone)]
struct Block {
    kind: u8,
    a: u32,
    b: u32,
    c: u32,
}

fn block() -> impl Strategy<Value = Block> {
    (0u8..12, 0u32..8, 0u32..8, 0u32..8).prop_map(|(kind, a, b, c)| Block { kind, a, b, c })
}

/// Builds a graph from blocks, tracking channels and size so that (almost) every graph is
/// valid: ops that would shrink the map below 1 pixel are skipped.
fn random_graph(blocks: &[Block], head: (bool, u32, u32), classes: u32) -> Graph {
    let mut nodes: Vec<Node> = Vec::new();
    let (mut ch, mut side) = (3u32, 12u32);
    let mut n = 0;
    let mut id = |p: &str| {
        n += 1;
        format!("{p}{n}")
    };
    let out = |side: u32, k: u32, s: u32, p: u32, d: u32| -> Option<u32> {
        let span = d * (k - 1) + 1;
        (side + 2 * p >= span).then(|| (side + 2 * p - span) / s + 1)
    };
    let pads = |sel: u32| match sel % 3 {
        0 => same(),
        1 => Padding::default(),
        _ => Padding::Explicit(1),
    };
    let pad_px = |p: Padding, k: u32, d: u32| match p {
        Padding::Named(PaddingMode::Same) => d * (k - 1) / 2,
        Padding::Named(PaddingMode::Valid) => 0,
        Padding::Explicit(p) => p,
    };
    for bl in blocks {
        let k = 1 + bl.a % 3;
        let s = 1 + bl.b % 2;
        let d = if k > 1 { 1 + bl.c % 2 } else { 1 };
        let pad = pads(bl.c);
        match bl.kind {
            0 | 1 => {
                let groups = if bl.c % 2 == 0 && ch % 2 == 0 { 2 } else { 1 };
                let filters = groups * (1 + bl.a % 4);
                let Some(o) = out(side, k, s, pad_px(pad, k, d), d) else {
                    continue;
                };
                nodes.push(Node {
                    l2: (bl.b % 3 == 0).then_some(1e-4),
                    init: (bl.a % 2 == 0).then_some(Init::HeNormal),
                    ..Node::new(
                        id("c"),
                        Op::Conv2d {
                            filters,
                            kernel: k,
                            stride: s,
                            padding: pad,
                            dilation: d,
                            groups,
                            bias: bl.b % 2 == 0,
                        },
                    )
                });
                (ch, side) = (filters, o);
            }
            2 => {
                let m = 1 + bl.b % 2;
                let Some(o) = out(side, k, 1, pad_px(pad, k, d), d) else {
                    continue;
                };
                nodes.push(Node::new(
                    id("dw"),
                    Op::DepthwiseConv2d {
                        kernel: k,
                        stride: 1,
                        padding: pad,
                        dilation: d,
                        multiplier: m,
                        bias: bl.a % 2 == 1,
                    },
                ));
                (ch, side) = (ch * m, o);
            }
            3 => {
                let filters = 1 + bl.b % 5;
                let Some(o) = out(side, k, s, pad_px(pad, k, d), d) else {
                    continue;
                };
                nodes.push(Node::new(
                    id("sp"),
                    Op::SeparableConv2d {
                        filters,
                        kernel: k,
                        stride: s,
                        padding: pad,
                        dilation: d,
                        bias: bl.c % 2 == 0,
                    },
                ));
                (ch, side) = (filters, o);
            }
            4 | 5 => nodes.push(Node::new(id("bn"), Op::batch_norm())),
            6 => nodes.push(Node::new(
                id("act"),
                match bl.a % 6 {
                    0 => Op::Relu,
                    1 => Op::Gelu,
                    2 => Op::Silu,
                    3 => Op::Sigmoid,
                    4 => Op::Tanh,
                    _ => Op::LeakyRelu { slope: 0.1 },
                },
            )),
            7 => {
                let kp = 2 + bl.a % 2;
                let pp = if bl.c % 2 == 0 {
                    same()
                } else {
                    Padding::default()
                };
                let Some(o) = out(side, kp, kp, pad_px(pp, kp, 1), 1) else {
                    continue;
                };
                let op = if bl.b % 2 == 0 {
                    Op::MaxPool {
                        kernel: kp,
                        stride: None,
                        padding: pp,
                    }
                } else {
                    Op::AvgPool {
                        kernel: kp,
                        stride: None,
                        padding: pp,
                    }
                };
                nodes.push(Node::new(id("p"), op));
                side = o;
            }
            8 => nodes.push(Node::new(id("do"), Op::Dropout { rate: 0.25 })),
            9 | 10 if !nodes.is_empty() => {
                // A branch: conv same (stride 1) from the current node, merged with it.
                let prev = nodes.last().map(|n| n.id.clone()).unwrap_or_default();
                let filters = if bl.kind == 9 { ch } else { 1 + bl.b % 4 };
                let branch = id("br");
                nodes.push(Node::new(branch.clone(), Op::conv_same(filters, 3)));
                let merged = if bl.kind == 9 {
                    Op::Add
                } else {
                    ch += filters;
                    Op::Concat
                };
                nodes.push(Node::new(id("m"), merged).taking(&[branch, prev]));
            }
            _ => {}
        }
    }
    let (flatten, hidden, hsel) = head;
    nodes.push(Node::new(
        id("h"),
        if flatten && ch * side * side <= 512 {
            Op::Flatten
        } else {
            Op::GlobalAvgPool
        },
    ));
    if hidden > 0 {
        nodes.push(Node {
            l2: (hsel % 2 == 0).then_some(1e-3),
            ..Node::new(id("fc"), Op::dense(hidden))
        });
        if hsel % 3 == 0 {
            nodes.push(Node::new(id("bnv"), Op::batch_norm()));
        }
        nodes.push(Node::new(id("relu"), Op::Relu));
    }
    nodes.push(Node::new(
        id("logits"),
        Op::Dense {
            units: classes,
            bias: hsel % 4 != 1,
        },
    ));
    Graph {
        name: Some("random".into()),
        nodes,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_valid_graphs_count_like_lemo_arch_and_fold_exactly(
        blocks in proptest::collection::vec(block(), 0..8),
        head in (any::<bool>(), 0u32..12, 0u32..12),
        classes in 2u32..6,
    ) {
        let graph = random_graph(&blocks, head, classes);
        let t = task([3, 12, 12], classes as usize);
        let analysis = graph.validate(&t);
        prop_assume!(analysis.is_ok(), "{:?}", analysis.err());
        let ad = Device::flex().autodiff();
        let model = build(&graph, &t, &ad).map_err(|e| TestCaseError::fail(e.to_string()))?;
        // One training-mode pass to move the batch-norm statistics.
        let x = Tensor::<4>::random([4, 3, 12, 12], Distribution::Normal(0.3, 1.5), &ad);
        let _ = model.forward(x).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let valid = model.valid();
        let deployed = valid.deployment_form().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let device = Device::flex();
        let x = Tensor::<4>::random([3, 3, 12, 12], Distribution::Normal(0.0, 1.0), &device);
        let a = valid.forward(x.clone()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(a.dims(), [3, classes as usize]);
        let b = deployed.forward(x).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let diff: f32 = (a.clone() - b).abs().max().into_scalar();
        let scale: f32 = a.abs().max().into_scalar();
        prop_assert!(diff <= 1e-4 * scale.max(1.0), "diff {} scale {}", diff, scale);
    }
}
