//! The fifteen instructions as graph edits: always valid, deterministic per seed, and each doing
//! what its code says.

use lemo_arch::{ArchError, Graph, Instruction, Limits, Op, Task, ref_cnn, starter};

fn cifar10() -> Task {
    Task {
        input: [3, 32, 32],
        classes: 10,
        limits: Limits::default(),
    }
}

fn mobile() -> Result<Graph, ArchError> {
    let path = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("tests/fixtures/separable_mobile.json");
    Graph::from_json(&std::fs::read_to_string(path).map_err(|_| ArchError::NoJson)?)
}

fn bases() -> Result<Vec<(Graph, Task)>, ArchError> {
    let digits = Task {
        input: [1, 8, 8],
        classes: 10,
        limits: Limits::default(),
    };
    let mnist = Task {
        input: [1, 28, 28],
        classes: 10,
        limits: Limits::default(),
    };
    Ok(vec![
        (ref_cnn(10), cifar10()),
        (starter(&digits), digits.clone()),
        (starter(&mnist), mnist),
        (mobile()?, cifar10()),
    ])
}

#[test]
fn every_edit_keeps_the_graph_valid_and_is_deterministic() -> Result<(), ArchError> {
    for (g, task) in bases()? {
        for instruction in Instruction::ALL {
            for seed in 0..6u64 {
                let edit = g.apply(instruction, &task, seed)?;
                edit.graph.validate(&task)?;
                assert!(edit.note.starts_with(instruction.code()), "{}", edit.note);
                assert_eq!(
                    edit,
                    g.apply(instruction, &task, seed)?,
                    "{instruction} seed {seed}"
                );
                if edit.applied {
                    assert_ne!(
                        edit.graph.canonical_hash(),
                        g.canonical_hash(),
                        "{}",
                        edit.note
                    );
                } else {
                    assert_eq!(edit.graph, g, "{}", edit.note);
                }
            }
        }
    }
    Ok(())
}

fn count(g: &Graph, pred: impl Fn(&Op) -> bool) -> usize {
    g.nodes.iter().filter(|n| pred(&n.op)).count()
}

#[test]
fn skip_connections_come_and_go() -> Result<(), ArchError> {
    let task = cifar10();
    let g = ref_cnn(10);
    let rsc = g.apply(Instruction::ReduceSkipConnection, &task, 1)?;
    assert!(rsc.applied, "{}", rsc.note);
    assert_eq!(count(&rsc.graph, |op| matches!(op, Op::Add)), 0);
    assert_eq!(rsc.graph.nodes.len(), g.nodes.len() - 1);
    let none = rsc
        .graph
        .apply(Instruction::ReduceSkipConnection, &task, 1)?;
    assert!(
        !none.applied && none.note.contains("no skip connection"),
        "{}",
        none.note
    );
    for seed in 0..8 {
        let asc = g.apply(Instruction::AddSkipConnection, &task, seed)?;
        assert!(asc.applied, "{}", asc.note);
        assert_eq!(
            count(&asc.graph, |op| matches!(op, Op::Add)),
            2,
            "{}",
            asc.note
        );
    }
    // A skip across a downsampling gets a strided 1x1 projection.
    let digits = Task {
        input: [1, 8, 8],
        classes: 10,
        limits: Limits::default(),
    };
    let projected = (0..32)
        .filter_map(|seed| {
            starter(&digits)
                .apply(Instruction::AddSkipConnection, &digits, seed)
                .ok()
        })
        .any(|e| e.note.contains("projection conv2d"));
    assert!(projected);
    Ok(())
}

#[test]
fn conv_layers_and_widths() -> Result<(), ArchError> {
    let task = cifar10();
    let g = ref_cnn(10);
    let base = g.validate(&task)?;
    let acl = g.apply(Instruction::AddConvLayer, &task, 3)?;
    assert!(acl.applied);
    assert_eq!(acl.graph.nodes.len(), g.nodes.len() + 3);
    assert!(acl.graph.validate(&task)?.params > base.params);
    let placements: std::collections::HashSet<String> = (0..16)
        .filter_map(|s| g.apply(Instruction::AddConvLayer, &task, s).ok())
        .map(|e| e.graph.canonical_hash())
        .collect();
    assert!(
        placements.len() >= 3,
        "the seed should move the new layer: {}",
        placements.len()
    );
    let rcl = g.apply(Instruction::ReduceConvLayer, &task, 3)?;
    assert!(rcl.applied);
    assert_eq!(count(&rcl.graph, Op::is_conv), 4, "{}", rcl.note);
    let filters = |g: &Graph| -> Vec<u32> {
        g.nodes
            .iter()
            .filter_map(|n| {
                if let Op::Conv2d { filters, .. } = n.op {
                    Some(filters)
                } else {
                    None
                }
            })
            .collect()
    };
    let amk = g.apply(Instruction::AddMoreKernels, &task, 0)?;
    assert_eq!(filters(&amk.graph), vec![96, 96, 192, 192, 384]);
    let rk = g.apply(Instruction::ReduceKernels, &task, 0)?;
    assert_eq!(filters(&rk.graph), vec![40, 40, 88, 88, 168]);
    // A budget that the wider network would break leaves it unchanged, and says so.
    let tight = Task {
        limits: Limits {
            max_params: Some(base.params),
            ..Limits::default()
        },
        ..task
    };
    let e = g.apply(Instruction::AddMoreKernels, &tight, 0)?;
    assert!(
        !e.applied && e.note.contains("over the budget"),
        "{}",
        e.note
    );
    assert_eq!(e.graph, g);
    Ok(())
}

#[test]
fn dense_layers_dropout_init_and_l2() -> Result<(), ArchError> {
    let task = cifar10();
    let g = ref_cnn(10);
    assert!(!g.apply(Instruction::AddMoreNeurons, &task, 0)?.applied);
    let adl = g.apply(Instruction::AddDenseLayer, &task, 0)?;
    assert!(
        adl.applied && adl.note.contains("before the classifier `fc`"),
        "{}",
        adl.note
    );
    assert_eq!(count(&adl.graph, |op| matches!(op, Op::Dense { .. })), 2);
    let amn = adl.graph.apply(Instruction::AddMoreNeurons, &task, 0)?;
    assert!(amn.applied && amn.note.contains("->"), "{}", amn.note);
    let rdl = adl.graph.apply(Instruction::ReduceDenseLayer, &task, 0)?;
    assert_eq!(
        rdl.graph.canonical_hash(),
        g.canonical_hash(),
        "ADL then RDL is the identity"
    );

    let rate = |g: &Graph| {
        g.nodes.iter().find_map(|n| {
            if let Op::Dropout { rate } = n.op {
                Some(rate)
            } else {
                None
            }
        })
    };
    let ad = g.apply(Instruction::AddDropout, &task, 0)?;
    assert_eq!(rate(&ad.graph), Some(0.4));
    let mut cur = g.clone();
    for expected in [Some(0.2), Some(0.1), None] {
        cur = cur.apply(Instruction::ReduceDropout, &task, 0)?.graph;
        assert_eq!(rate(&cur), expected);
    }
    assert!(!cur.apply(Instruction::ReduceDropout, &task, 0)?.applied);
    let ad = cur.apply(Instruction::AddDropout, &task, 0)?;
    assert_eq!(rate(&ad.graph), Some(0.25));

    let awi = g.apply(Instruction::AddWeightInitializer, &task, 0)?;
    // The convolution that reads the image is whitened, every other weighted layer He normal.
    let weighted: Vec<_> = awi
        .graph
        .nodes
        .iter()
        .filter(|n| n.op.has_kernel())
        .collect();
    assert_eq!(
        weighted.first().and_then(|n| n.init),
        Some(lemo_arch::Init::PatchWhitening)
    );
    assert!(
        weighted
            .iter()
            .skip(1)
            .all(|n| n.init == Some(lemo_arch::Init::HeNormal))
    );
    assert!(awi.note.contains("patch_whitening"), "{}", awi.note);
    // Where the validator refuses whitening (a dilated stem), every layer gets He normal.
    let mut dilated = g.clone();
    if let Some(Op::Conv2d { dilation, .. }) = dilated.nodes.first_mut().map(|n| &mut n.op) {
        *dilation = 2;
    }
    let plain = dilated.apply(Instruction::AddWeightInitializer, &task, 0)?;
    assert!(plain.applied);
    assert!(
        plain
            .graph
            .nodes
            .iter()
            .filter(|n| n.op.has_kernel())
            .all(|n| n.init == Some(lemo_arch::Init::HeNormal))
    );
    assert!(
        awi.graph
            .nodes
            .iter()
            .filter(|n| !n.op.has_kernel())
            .all(|n| n.init.is_none())
    );
    assert!(
        !awi.graph
            .apply(Instruction::AddWeightInitializer, &task, 0)?
            .applied
    );

    let l2 = |g: &Graph| g.nodes.iter().find_map(|n| n.l2);
    let mut cur = g.clone();
    for expected in [Some(1e-4), Some(5e-4)] {
        cur = cur.apply(Instruction::AddRegularization, &task, 0)?.graph;
        assert_eq!(l2(&cur), expected);
    }
    for expected in [Some(1e-4), Some(1e-5), None] {
        cur = cur
            .apply(Instruction::ReduceRegularization, &task, 0)?
            .graph;
        assert_eq!(l2(&cur), expected);
    }
    assert!(
        !cur.apply(Instruction::ReduceRegularization, &task, 0)?
            .applied
    );
    Ok(())
}

#[test]
fn an_invalid_graph_is_an_error_not_an_edit() {
    let mut g = ref_cnn(10);
    g.nodes.pop();
    let e = g.apply(Instruction::AddConvLayer, &cifar10(), 0);
    assert_eq!(e.err().map(|e| e.kind()), Some("output_mismatch"));
}

#[test]
fn exploration_gives_a_new_valid_network_reproducibly() -> Result<(), ArchError> {
    let task = cifar10();
    let base = starter(&task);
    let before = base.canonical_hash();
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..8u64 {
        let edit = base
            .explore(&task, seed, |g| g.canonical_hash() != before)?
            .ok_or(ArchError::NoJson)?;
        assert!(edit.applied);
        assert_ne!(edit.graph.canonical_hash(), before);
        edit.graph.validate(&task)?;
        let again = base
            .explore(&task, seed, |g| g.canonical_hash() != before)?
            .ok_or(ArchError::NoJson)?;
        assert_eq!(again.graph, edit.graph, "seed {seed} is reproducible");
        seen.insert(edit.note.split(':').next().unwrap_or("").to_string());
    }
    assert!(
        seen.len() >= 2,
        "different seeds explore different instructions: {seen:?}"
    );
    // Nothing is new: no edit.
    assert!(base.explore(&task, 1, |_| false)?.is_none());
    Ok(())
}
