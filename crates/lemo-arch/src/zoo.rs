//! Ready-made networks: the offline architect's starter and the benchmarks' reference CNN.

use crate::ir::{Graph, Node, Op, Padding, PaddingMode, Task};

impl Node {
    /// A node with implicit input (the previous node) and no `init` or `l2`.
    pub fn new(id: impl Into<String>, op: Op) -> Node {
        Node {
            id: id.into(),
            inputs: None,
            op,
            init: None,
            l2: None,
        }
    }

    /// The same node taking the given ids (`"input"` for the image).
    pub fn taking<S: AsRef<str>>(mut self, inputs: &[S]) -> Node {
        self.inputs = Some(inputs.iter().map(|s| s.as_ref().to_string()).collect());
        self
    }
}

impl Op {
    /// A `kernel`x`kernel` conv2d, stride 1, padding `same`, with bias.
    pub fn conv_same(filters: u32, kernel: u32) -> Op {
        Op::Conv2d {
            filters,
            kernel,
            stride: 1,
            padding: Padding::Named(PaddingMode::Same),
            dilation: 1,
            groups: 1,
            bias: true,
        }
    }

    /// Batch norm with the default epsilon (1e-5) and momentum (0.1).
    pub fn batch_norm() -> Op {
        Op::BatchNorm {
            epsilon: 1e-5,
            momentum: 0.1,
        }
    }

    /// Max pooling with a square window, stride = window, no padding.
    pub fn max_pool(kernel: u32) -> Op {
        Op::MaxPool {
            kernel,
            stride: None,
            padding: Padding::default(),
        }
    }

    /// A dense layer with bias.
    pub fn dense(units: u32) -> Op {
        Op::Dense { units, bias: true }
    }
}

/// Appends conv(same) + batch_norm + relu with ids `c{n}`, `b{n}`, `r{n}`.
fn conv_block(nodes: &mut Vec<Node>, n: usize, filters: u32) {
    nodes.push(Node::new(format!("c{n}"), Op::conv_same(filters, 3)));
    nodes.push(Node::new(format!("b{n}"), Op::batch_norm()));
    nodes.push(Node::new(format!("r{n}"), Op::Relu));
}

fn to_u32(v: usize) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// The reference CNN of the design ("ref-cnn"), for `classes` classes on 3x32x32 images:
/// `[conv3x3 64, BN, ReLU] x2 -> maxpool 2 -> a = [conv3x3 128, BN, ReLU] ->
/// [conv3x3 128, BN, ReLU] + a -> maxpool 2 -> [conv3x3 256, BN, ReLU] -> global avg pool ->
/// dropout 0.3 -> dense classes`. With 100 classes: 582,308 parameters, 115,041,280 MACs.
pub fn ref_cnn(classes: usize) -> Graph {
    let mut nodes = Vec::new();
    conv_block(&mut nodes, 1, 64);
    conv_block(&mut nodes, 2, 64);
    nodes.push(Node::new("p1", Op::max_pool(2)));
    conv_block(&mut nodes, 3, 128);
    conv_block(&mut nodes, 4, 128);
    nodes.push(Node::new("s1", Op::Add).taking(&["r4", "r3"]));
    nodes.push(Node::new("p2", Op::max_pool(2)));
    conv_block(&mut nodes, 5, 256);
    nodes.push(Node::new("g", Op::GlobalAvgPool));
    nodes.push(Node::new("d", Op::Dropout { rate: 0.3 }));
    nodes.push(Node::new("fc", Op::dense(to_u32(classes))));
    Graph {
        name: Some("ref-cnn".to_string()),
        nodes,
    }
}

/// The offline architect's first network, the smallest sensible one that fits the task's budgets.
///
/// - Images of at least 16x16 get a staged network after airbench's CIFAR-10 design: a 2x2
///   `valid` conv stem (8 filters per input channel) + ReLU, then up to three stages of
///   `conv3x3 -> maxpool 2 -> BN -> ReLU -> conv3x3 -> BN -> ReLU` with 32, 64 and 128 filters
///   (a stage only while the map stays at least 2 pixels), global average pooling and a dense
///   classifier. On CIFAR-10: 295,554 parameters, 84.85% test accuracy after the 30-minute
///   benchmark's final training alone (docs/results.md).
/// - Smaller images (the digits' 8x8) get conv-BN-ReLU blocks with 2x2 max pooling while the
///   map stays at least 4 pixels (at most 3 pools), filters doubling from 16, then global
///   average pooling, dropout 0.2 and a dense classifier.
///
/// When the task's budgets are tight, the base width is halved (down to 8 for the staged
/// network, 4 for the small one), stages or blocks are dropped, and the staged network gives way
/// to the small one until a network fits; if nothing fits, the smallest candidate is returned
/// (and [`Graph::validate`] will say which budget it breaks).
pub fn starter(task: &Task) -> Graph {
    let [channels, h, w] = task.input;
    let side = h.min(w);
    let mut candidates = Vec::new();
    if side >= 16 {
        // The stem takes one pixel; each stage halves the map.
        let mut stages = 0;
        let mut map = side - 1;
        while stages < 3 && map / 2 >= 2 {
            map /= 2;
            stages += 1;
        }
        let stem = to_u32(8 * channels.max(1));
        for base in [32u32, 16, 8] {
            for n in (1..=stages).rev() {
                candidates.push(staged_starter(task, stem, base, n));
            }
        }
    }
    let mut side = side;
    let mut pools = 0;
    while pools < 3 && side / 2 >= 4 {
        side /= 2;
        pools += 1;
    }
    for base in [16u32, 8, 4] {
        for blocks in (1..=pools + 1).rev() {
            candidates.push(small_starter(task, base, blocks, pools.min(blocks)));
        }
    }
    match candidates.iter().position(|g| g.validate(task).is_ok()) {
        Some(i) => candidates.swap_remove(i),
        None => candidates
            .pop()
            .unwrap_or_else(|| small_starter(task, 4, 1, 0)),
    }
}

/// The staged starter: stem, `stages` stages with filters doubling from `base`, classifier.
fn staged_starter(task: &Task, stem: u32, base: u32, stages: usize) -> Graph {
    let valid = Padding::Named(PaddingMode::Valid);
    let mut nodes = vec![
        Node::new(
            "w",
            Op::Conv2d {
                filters: stem,
                kernel: 2,
                stride: 1,
                padding: valid,
                dilation: 1,
                groups: 1,
                bias: true,
            },
        ),
        Node::new("wa", Op::Relu),
    ];
    let mut filters = base;
    for n in 1..=stages {
        nodes.push(Node::new(format!("c{n}a"), Op::conv_same(filters, 3)));
        nodes.push(Node::new(format!("p{n}"), Op::max_pool(2)));
        nodes.push(Node::new(format!("b{n}a"), Op::batch_norm()));
        nodes.push(Node::new(format!("a{n}a"), Op::Relu));
        nodes.push(Node::new(format!("c{n}b"), Op::conv_same(filters, 3)));
        nodes.push(Node::new(format!("b{n}b"), Op::batch_norm()));
        nodes.push(Node::new(format!("a{n}b"), Op::Relu));
        filters = filters.saturating_mul(2);
    }
    nodes.push(Node::new("g", Op::GlobalAvgPool));
    nodes.push(Node::new("fc", Op::dense(to_u32(task.classes))));
    Graph {
        name: Some("starter".to_string()),
        nodes,
    }
}

/// The small starter for images under 16x16: `blocks` conv-BN-ReLU blocks, the first `pools`
/// followed by a 2x2 max pool.
fn small_starter(task: &Task, base: u32, blocks: usize, pools: usize) -> Graph {
    let mut nodes = Vec::new();
    let mut filters = base;
    for n in 1..=blocks {
        conv_block(&mut nodes, n, filters);
        if n <= pools {
            nodes.push(Node::new(format!("p{n}"), Op::max_pool(2)));
        }
        filters = filters.saturating_mul(2);
    }
    nodes.push(Node::new("g", Op::GlobalAvgPool));
    nodes.push(Node::new("d", Op::Dropout { rate: 0.2 }));
    nodes.push(Node::new("fc", Op::dense(to_u32(task.classes))));
    Graph {
        name: Some("starter".to_string()),
        nodes,
    }
}
