//! Parse + validate + count a 200-node graph (the issue's aim: well under 1 ms).

use criterion::{Criterion, criterion_group, criterion_main};
use lemo_arch::{Graph, Limits, Node, Op, Task, parse_answer};

/// 200 nodes: 39 residual blocks of conv-bn-relu-conv-add on 16x16x32 maps, then the head.
fn graph_200() -> Graph {
    let mut nodes = vec![Node::new("stem", Op::conv_same(32, 3))];
    let mut prev = "stem".to_string();
    let mut k = 0;
    while nodes.len() + 5 <= 197 {
        k += 1;
        nodes.push(Node::new(format!("c{k}a"), Op::conv_same(32, 3)));
        nodes.push(Node::new(format!("b{k}"), Op::batch_norm()));
        nodes.push(Node::new(format!("r{k}"), Op::Relu));
        nodes.push(Node::new(format!("c{k}b"), Op::conv_same(32, 3)));
        nodes.push(Node::new(format!("s{k}"), Op::Add).taking(&[format!("c{k}b"), prev.clone()]));
        prev = format!("s{k}");
    }
    while nodes.len() < 197 {
        nodes.push(Node::new(format!("x{}", nodes.len()), Op::Relu));
    }
    nodes.push(Node::new("g", Op::GlobalAvgPool));
    nodes.push(Node::new("d", Op::Dropout { rate: 0.2 }));
    nodes.push(Node::new("fc", Op::dense(10)));
    Graph {
        name: Some("bench-200".to_string()),
        nodes,
    }
}

fn bench(c: &mut Criterion) {
    let g = graph_200();
    assert_eq!(g.nodes.len(), 200);
    let answer = format!(
        "Here is the network:\n```json\n{}\n```\n",
        g.to_json_pretty()
    );
    let task = Task {
        input: [3, 16, 16],
        classes: 10,
        limits: Limits::default(),
    };
    c.bench_function("parse+validate+count 200 nodes", |b| {
        b.iter(|| {
            let parsed =
                parse_answer(std::hint::black_box(&answer)).map(|p| p.graph.validate(&task));
            assert!(matches!(parsed, Ok(Ok(_))));
        })
    });
    let json = g.to_json_pretty();
    c.bench_function("from_json 200 nodes", |b| {
        b.iter(|| Graph::from_json(std::hint::black_box(&json)))
    });
    c.bench_function("serde_json Value 200 nodes", |b| {
        b.iter(|| serde_json::from_str::<serde_json::Value>(std::hint::black_box(&json)))
    });
    c.bench_function("validate+count 200 nodes", |b| {
        b.iter(|| std::hint::black_box(&g).validate(&task))
    });
    c.bench_function("canonical_hash 200 nodes", |b| {
        b.iter(|| std::hint::black_box(&g).canonical_hash())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
