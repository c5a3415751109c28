//! The fifteen expert-system instructions as concrete, seeded, deterministic graph edits.
//!
//! [`Graph::apply`] turns an [`Instruction`] into candidate edits (in an order drawn from the
//! seed), and returns the first whose result validates for the task. When no candidate exists or
//! none validates (a budget, say), the graph comes back unchanged with `applied: false` and a
//! note saying why: the result always validates.
//!
//! Randomness comes from a SplitMix64 stream of the seed and the instruction, so an edit is
//! reproducible across platforms and dependency upgrades (the run journal replays it).

use std::collections::HashSet;

use lemo_expert::Instruction;

use crate::error::ArchError;
use crate::ir::{Analysis, Graph, INPUT_ID, Init, Node, Op, Padding, Shape, Source, Task};

/// The result of applying an instruction to a graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Edit {
    /// The edited network (the original one when `applied` is false); always valid for the task.
    pub graph: Graph,
    /// Whether the network changed.
    pub applied: bool,
    /// What was done, or why nothing was, in one line starting with the instruction's code,
    /// e.g. "ACL: inserted conv2d 64 3x3 same + batch_norm + relu after `r2` ([64,16,16])".
    pub note: String,
}

/// L2 factors that AR and RR step through.
const L2_LADDER: [f64; 6] = [1e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2];

/// The smallest width RK and RN narrow to.
const MIN_WIDTH: u32 = 8;

/// Largest dropout rate AD raises to.
const MAX_DROPOUT: f64 = 0.5;

impl Graph {
    /// Applies one instruction as a concrete edit, deterministic for a given `seed`.
    ///
    /// | code | edit |
    /// |---|---|
    /// | ACL | insert conv2d 3x3 same (as many filters as its input has channels) + batch_norm + relu after an activation or pool |
    /// | RCL | remove one convolution with the batch_norm / activation / dropout right after it |
    /// | ASC | add a residual `add` around 2 to 6 chained nodes, with a 1x1 projection conv2d when shapes differ |
    /// | RSC | remove one `add`, keeping its latest input (and whatever only fed the skip) |
    /// | ADL | insert a hidden dense (64+ units, a power of two) + relu before the classifier |
    /// | RDL | remove one hidden dense with the activation / dropout after it |
    /// | AMK, RK | widen (x1.5) or narrow (x2/3, not below 8) conv filters, rounded to multiples of 8 from 16 |
    /// | AMN, RN | the same for hidden dense units |
    /// | AD | add dropout 0.25 before the classifier, else raise one rate by 0.1 (to 0.5), else add 0.1 after a pool |
    /// | RD | lower the highest dropout rate by 0.1, or remove it when 0.15 or less |
    /// | AWI | set `init` on conv and dense nodes without one: patch_whitening on a conv2d that reads the image (when valid), he_normal on the others (glorot_uniform for tanh/sigmoid nets) |
    /// | AR, RR | step `l2` up or down the ladder 1e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2 (AR starts at 1e-4; RR below 1e-5 removes it) |
    ///
    /// Errors only when `self` is not valid for `task` (the error of [`Graph::validate`]).
    pub fn apply(
        &self,
        instruction: Instruction,
        task: &Task,
        seed: u64,
    ) -> Result<Edit, ArchError> {
        let analysis = self.validate(task)?;
        let ctx = Ctx::new(self, &analysis, task);
        let salt = (instruction.index() as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407);
        let mut rng = SplitMix(seed ^ salt);
        let code = instruction.code();
        let plan = match instruction {
            Instruction::AddConvLayer => ctx.add_conv(&mut rng),
            Instruction::ReduceConvLayer => ctx.reduce_conv(&mut rng),
            Instruction::AddSkipConnection => ctx.add_skip(&mut rng),
            Instruction::ReduceSkipConnection => ctx.reduce_skip(&mut rng),
            Instruction::AddDenseLayer => ctx.add_dense(&mut rng),
            Instruction::ReduceDenseLayer => ctx.reduce_dense(&mut rng),
            Instruction::AddMoreKernels => ctx.scale_filters(&mut rng, true),
            Instruction::ReduceKernels => ctx.scale_filters(&mut rng, false),
            Instruction::AddMoreNeurons => ctx.scale_units(&mut rng, true),
            Instruction::ReduceNeurons => ctx.scale_units(&mut rng, false),
            Instruction::AddDropout => ctx.add_dropout(&mut rng),
            Instruction::ReduceDropout => ctx.reduce_dropout(&mut rng),
            Instruction::AddWeightInitializer => ctx.add_init(),
            Instruction::AddRegularization => ctx.step_l2(true),
            Instruction::ReduceRegularization => ctx.step_l2(false),
        };
        let unchanged = |why: String| Edit {
            graph: self.clone(),
            applied: false,
            note: format!("{code}: {why}; network unchanged"),
        };
        let candidates = match plan {
            Ok(c) => c,
            Err(why) => return Ok(unchanged(why)),
        };
        let mut last_error = None;
        for c in candidates {
            let graph = compact(self.name.clone(), c.nodes);
            match graph.validate(task) {
                Ok(_) => {
                    return Ok(Edit {
                        graph,
                        applied: true,
                        note: format!("{code}: {}", c.note),
                    });
                }
                Err(e) => last_error = Some(e),
            }
        }
        Ok(unchanged(match last_error {
            Some(e) => format!(
                "no way to {} keeps the network valid (last try: {e})",
                instruction.description()
            ),
            None => format!("nowhere to {}", instruction.description()),
        }))
    }
}

/// A deterministic, platform-independent random stream (SplitMix64).
impl Graph {
    /// A seeded exploratory edit, for when the instructions leave a search with nothing new to
    /// try (no rule fired, or the architect proposed a network already evaluated): the fifteen
    /// instructions in an order drawn from `seed`, each applied in turn, and the first edit
    /// whose network `is_new` accepts. `None` when no instruction gives a new network.
    pub fn explore(
        &self,
        task: &Task,
        seed: u64,
        is_new: impl Fn(&Graph) -> bool,
    ) -> Result<Option<Edit>, ArchError> {
        let mut order = Instruction::ALL;
        SplitMix(seed ^ 0x5EED_E7B1_0E5E_ED00).shuffle(&mut order);
        for instruction in order {
            let edit = self.apply(instruction, task, seed)?;
            if edit.applied && is_new(&edit.graph) {
                return Ok(Some(edit));
            }
        }
        Ok(None)
    }
}

struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

/// One way to carry out an instruction.
struct Candidate {
    nodes: Vec<Node>,
    note: String,
}

/// Candidates in order of preference, or why there is nothing to do.
type Plan = Result<Vec<Candidate>, String>;

/// The graph with every `in` explicit, its shapes and consumers.
struct Ctx {
    nodes: Vec<Node>,
    shapes: Vec<Shape>,
    input: Shape,
    consumers: Vec<Vec<usize>>,
    classes: usize,
}

fn is_pool(op: &Op) -> bool {
    matches!(op, Op::MaxPool { .. } | Op::AvgPool { .. })
}

fn is_follower(op: &Op) -> bool {
    matches!(op, Op::BatchNorm { .. } | Op::Dropout { .. }) || op.activation().is_some()
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn round8(x: u32) -> u32 {
    if x >= 16 { (x + 4) / 8 * 8 } else { x }
}

fn widen(f: u32) -> u32 {
    round8((f64::from(f) * 1.5).round() as u32).max(f.saturating_add(1))
}

fn narrow(f: u32) -> u32 {
    round8((f64::from(f) * 2.0 / 3.0).round() as u32)
        .max(MIN_WIDTH)
        .min(f)
}

/// Writes `in` only where it is not simply the previous node (or the input for the first).
fn compact(name: Option<String>, mut nodes: Vec<Node>) -> Graph {
    let mut prev = INPUT_ID.to_string();
    for n in &mut nodes {
        if n.inputs
            .as_deref()
            .is_some_and(|ins| matches!(ins, [only] if *only == prev))
        {
            n.inputs = None;
        }
        prev.clone_from(&n.id);
    }
    Graph { name, nodes }
}

fn inputs_of(n: &Node) -> &[String] {
    n.inputs.as_deref().unwrap_or(&[])
}

/// Replaces references to `from` by `to` in every node's `in`.
fn rewire(nodes: &mut [Node], from: &str, to: &str) {
    for n in nodes {
        if let Some(ins) = &mut n.inputs {
            for i in ins.iter_mut().filter(|i| *i == from) {
                *i = to.to_string();
            }
        }
    }
}

/// Removes what an edit left dangling: adds whose inputs became one and the same, and nodes
/// (other than the last) whose output nothing takes any more.
fn cleanup(nodes: &mut Vec<Node>) {
    loop {
        let trivial = nodes.iter().position(|n| {
            matches!(n.op, Op::Add)
                && inputs_of(n)
                    .windows(2)
                    .all(|w| matches!(w, [a, b] if a == b))
        });
        if let Some(k) = trivial {
            let node = nodes.remove(k);
            if let Some(src) = inputs_of(&node).first() {
                rewire(nodes, &node.id, src);
            }
            continue;
        }
        let last = nodes.len().saturating_sub(1);
        let used: HashSet<&str> = nodes
            .iter()
            .flat_map(|n| inputs_of(n).iter().map(String::as_str))
            .collect();
        let dead = nodes
            .iter()
            .take(last)
            .position(|n| !used.contains(n.id.as_str()));
        match dead {
            Some(k) => {
                nodes.remove(k);
            }
            None => return,
        }
    }
}

// Every index is a node position of the validated Analysis this Ctx was built from (nodes,
// shapes and consumers have one entry per node) or one found by searching them.
#[allow(clippy::indexing_slicing)]
impl Ctx {
    fn new(graph: &Graph, analysis: &Analysis, task: &Task) -> Ctx {
        let n = graph.nodes.len();
        let mut consumers = vec![Vec::new(); n];
        let nodes = graph
            .nodes
            .iter()
            .zip(&analysis.nodes)
            .enumerate()
            .map(|(i, (node, info))| {
                let ins = info
                    .inputs
                    .iter()
                    .map(|s| match *s {
                        Source::Input => INPUT_ID.to_string(),
                        Source::Node(j) => {
                            consumers[j].push(i);
                            graph.nodes[j].id.clone()
                        }
                    })
                    .collect();
                Node {
                    inputs: Some(ins),
                    ..node.clone()
                }
            })
            .collect();
        let [c, h, w] = task.input;
        Ctx {
            nodes,
            shapes: analysis.nodes.iter().map(|i| i.output).collect(),
            input: Shape::Map { c, h, w },
            consumers,
            classes: task.classes,
        }
    }

    fn id(&self, i: Option<usize>) -> &str {
        match i {
            Some(i) => &self.nodes[i].id,
            None => INPUT_ID,
        }
    }

    fn shape(&self, i: Option<usize>) -> Shape {
        i.map_or(self.input, |i| self.shapes[i])
    }

    /// A fresh id family `{prefix}{k}` whose `{prefix}{k}_{suffix}` ids are all unused.
    fn fresh(&self, prefix: &str, suffixes: &[&str]) -> Vec<String> {
        let taken: HashSet<&str> = self.nodes.iter().map(|n| n.id.as_str()).collect();
        let mut k = 1usize;
        loop {
            let ids: Vec<String> = suffixes
                .iter()
                .map(|s| format!("{prefix}{k}_{s}"))
                .collect();
            if ids
                .iter()
                .all(|id| !taken.contains(id.as_str()) && id != INPUT_ID)
            {
                return ids;
            }
            k += 1;
        }
    }

    /// Whether node `i + 1` takes node `i` (so inserting after `i` lands on the main path).
    fn next_takes(&self, i: Option<usize>) -> bool {
        let next = i.map_or(0, |i| i + 1);
        self.nodes
            .get(next)
            .is_some_and(|n| inputs_of(n).iter().any(|s| s == self.id(i)))
    }

    /// `init` and `l2` of the weighted node nearest to `i` of the same kind, to keep a network's
    /// style when adding layers.
    fn style_near(&self, i: usize, conv: bool) -> (Option<Init>, Option<f64>) {
        let kind = |n: &Node| {
            if conv {
                n.op.is_conv()
            } else {
                matches!(n.op, Op::Dense { .. })
            }
        };
        let after = self.nodes.iter().skip(i).find(|n| kind(n));
        let before = self.nodes.iter().take(i).rev().find(|n| kind(n));
        after.or(before).map_or((None, None), |n| (n.init, n.l2))
    }

    /// The block starting at weighted node `k`: `k` and the batch norms, activations and
    /// dropouts chained right after it (each the only consumer of the one before).
    fn block_end(&self, k: usize) -> usize {
        let mut end = k;
        while let Some(next) = self.nodes.get(end + 1) {
            let chained =
                inputs_of(next) == [self.nodes[end].id.clone()] && self.consumers[end] == [end + 1];
            if !(is_follower(&next.op) && chained) {
                break;
            }
            end += 1;
        }
        end
    }

    /// Removes nodes `k..=end` and sends their consumers to `k`'s input.
    fn remove_block(&self, k: usize, end: usize) -> Vec<Node> {
        let mut nodes = self.nodes.clone();
        let src = inputs_of(&nodes[k])
            .first()
            .cloned()
            .unwrap_or_else(|| INPUT_ID.to_string());
        let last_id = nodes[end].id.clone();
        nodes.drain(k..=end);
        rewire(&mut nodes, &last_id, &src);
        cleanup(&mut nodes);
        nodes
    }

    fn block_note(&self, k: usize, end: usize) -> String {
        let ids: Vec<String> = self.nodes[k..=end]
            .iter()
            .map(|n| format!("`{}`", n.id))
            .collect();
        format!("removed {} ({})", ids.join(", "), self.nodes[k].op)
    }

    fn classifier(&self) -> Option<usize> {
        self.nodes
            .iter()
            .rposition(|n| matches!(n.op, Op::Dense { .. }))
    }

    fn hidden_dense(&self) -> Vec<usize> {
        let last = self.classifier();
        (0..self.nodes.len())
            .filter(|&i| matches!(self.nodes[i].op, Op::Dense { .. }) && Some(i) != last)
            .collect()
    }

    /// Inserts `new` nodes before node `at`, which then takes the last of them instead of
    /// `new[0]`'s inputs.
    fn insert_before(&self, at: usize, new: Vec<Node>) -> Vec<Node> {
        let mut nodes = self.nodes.clone();
        let last_new = new.last().map(|n| n.id.clone()).unwrap_or_default();
        nodes[at].inputs = Some(vec![last_new]);
        nodes.splice(at..at, new);
        nodes
    }

    /// Inserts `new` nodes after position `i` (`None`: before everything); node `i + 1` then
    /// takes the last of them where it took `i`.
    fn insert_after(&self, i: Option<usize>, new: Vec<Node>) -> Vec<Node> {
        let mut nodes = self.nodes.clone();
        let at = i.map_or(0, |i| i + 1);
        let from = self.id(i).to_string();
        let to = new.last().map(|n| n.id.clone()).unwrap_or_default();
        if let Some(next) = nodes.get_mut(at) {
            rewire(std::slice::from_mut(next), &from, &to);
        }
        nodes.splice(at..at, new);
        nodes
    }

    /// Places after which a block can be inserted on the main path of the feature extractor.
    fn map_boundaries(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| {
                let op = &self.nodes[i].op;
                matches!(self.shapes[i], Shape::Map { .. })
                    && (op.activation().is_some() || is_pool(op))
                    && self.next_takes(Some(i))
            })
            .collect()
    }

    fn add_conv(&self, rng: &mut SplitMix) -> Plan {
        let mut places: Vec<Option<usize>> = self.map_boundaries().into_iter().map(Some).collect();
        rng.shuffle(&mut places);
        if self.next_takes(None) {
            places.push(None);
        }
        if places.is_empty() {
            return Err("no feature-map layer to add a convolution after".to_string());
        }
        let ids = self.fresh("acl", &["conv", "bn", "relu"]);
        Ok(places
            .into_iter()
            .map(|p| {
                let shape = self.shape(p);
                let filters = match p {
                    Some(_) => u32::try_from(shape.channels()).unwrap_or(u32::MAX),
                    None => {
                        self.nodes
                            .iter()
                            .find_map(|n| match n.op {
                                Op::Conv2d { filters, .. }
                                | Op::SeparableConv2d { filters, .. } => Some(filters),
                                _ => None,
                            })
                            .unwrap_or(16)
                    }
                };
                let (init, l2) = self.style_near(p.map_or(0, |i| i + 1), true);
                let conv = Node {
                    init,
                    l2,
                    ..Node::new(&ids[0], Op::conv_same(filters, 3)).taking(&[self.id(p)])
                };
                let block = vec![
                    conv.clone(),
                    Node::new(&ids[1], Op::batch_norm()).taking(&[&ids[0]]),
                    Node::new(&ids[2], Op::Relu).taking(&[&ids[1]]),
                ];
                Candidate {
                    nodes: self.insert_after(p, block),
                    note: format!(
                        "inserted {} + batch_norm + relu after `{}` ({shape})",
                        conv.op,
                        self.id(p)
                    ),
                }
            })
            .collect())
    }

    fn reduce_conv(&self, rng: &mut SplitMix) -> Plan {
        let mut convs: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].op.is_conv())
            .collect();
        if convs.len() < 2 {
            return Err("the network has fewer than two convolutions".to_string());
        }
        rng.shuffle(&mut convs);
        Ok(convs
            .into_iter()
            .map(|k| {
                let end = self.block_end(k);
                Candidate {
                    nodes: self.remove_block(k, end),
                    note: self.block_note(k, end),
                }
            })
            .collect())
    }

    fn add_skip(&self, rng: &mut SplitMix) -> Plan {
        let starts: Vec<Option<usize>> = std::iter::once(None)
            .chain(self.map_boundaries().into_iter().map(Some))
            .collect();
        let mut pairs: Vec<(Option<usize>, usize, Option<u32>)> = Vec::new();
        for &a in &starts {
            let first = a.map_or(0, |a| a + 1);
            for b in first + 1..(first + 6).min(self.nodes.len()) {
                let node = &self.nodes[b];
                let end_ok = matches!(node.op, Op::BatchNorm { .. })
                    || node.op.is_conv()
                    || node.op.activation().is_some();
                if !end_ok || !self.next_takes(Some(b)) || matches!(self.nodes[b + 1].op, Op::Add) {
                    continue;
                }
                let chain = (first..=b).all(|t| {
                    !self.nodes[t].op.is_merge()
                        && inputs_of(&self.nodes[t]) == [self.id(t.checked_sub(1)).to_string()]
                });
                if !chain {
                    continue;
                }
                let (sa, sb) = (self.shape(a), self.shapes[b]);
                let (Shape::Map { h: ha, w: wa, .. }, Shape::Map { h: hb, w: wb, .. }) = (sa, sb)
                else {
                    continue;
                };
                if sa == sb {
                    pairs.push((a, b, None));
                } else if let Some(s) =
                    (1..=ha.max(1)).find(|&s| (ha - 1) / s + 1 == hb && (wa - 1) / s + 1 == wb)
                {
                    pairs.push((a, b, u32::try_from(s).ok()));
                }
            }
        }
        if pairs.is_empty() {
            return Err(
                "no chain of feature-map layers to put a skip connection around".to_string(),
            );
        }
        rng.shuffle(&mut pairs);
        pairs.sort_by_key(|p| p.2.is_some());
        let ids = self.fresh("asc", &["proj", "add"]);
        Ok(pairs
            .into_iter()
            .map(|(a, b, stride)| {
                let (a_id, b_id) = (self.id(a).to_string(), self.nodes[b].id.clone());
                let mut new = Vec::new();
                let mut skip = a_id.clone();
                let mut how = String::new();
                if let (Some(stride), Shape::Map { c, .. }) = (stride, self.shapes[b]) {
                    let filters = u32::try_from(c).unwrap_or(u32::MAX);
                    let (init, l2) = self.style_near(b, true);
                    let op = Op::Conv2d {
                        filters,
                        kernel: 1,
                        stride,
                        padding: Padding::default(),
                        dilation: 1,
                        groups: 1,
                        bias: true,
                    };
                    how = format!(" through a projection {op}");
                    new.push(Node {
                        init,
                        l2,
                        ..Node::new(&ids[0], op).taking(&[&a_id])
                    });
                    skip.clone_from(&ids[0]);
                }
                new.push(Node::new(&ids[1], Op::Add).taking(&[&b_id, &skip]));
                Candidate {
                    nodes: self.insert_after(Some(b), new),
                    note: format!("added the residual `{}` = `{b_id}` + `{a_id}`{how}", ids[1]),
                }
            })
            .collect())
    }

    fn reduce_skip(&self, rng: &mut SplitMix) -> Plan {
        let mut adds: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| matches!(self.nodes[i].op, Op::Add))
            .collect();
        if adds.is_empty() {
            return Err("the network has no skip connection (add)".to_string());
        }
        rng.shuffle(&mut adds);
        Ok(adds
            .into_iter()
            .map(|k| {
                let node = &self.nodes[k];
                let position = |id: &String| self.nodes.iter().position(|n| &n.id == id);
                let main = inputs_of(node)
                    .iter()
                    .max_by_key(|id| position(id).map_or(0, |p| p + 1))
                    .cloned();
                let main = main.unwrap_or_else(|| INPUT_ID.to_string());
                let mut nodes = self.nodes.clone();
                nodes.remove(k);
                rewire(&mut nodes, &node.id, &main);
                cleanup(&mut nodes);
                Candidate {
                    nodes,
                    note: format!(
                        "removed the skip connection `{}` ({}), keeping `{main}`",
                        node.id,
                        inputs_of(node).join(" + ")
                    ),
                }
            })
            .collect())
    }

    fn add_dense(&self, rng: &mut SplitMix) -> Plan {
        let Some(fc) = self.classifier() else {
            return Err("there is no dense classifier to put a hidden layer before".to_string());
        };
        let base =
            u32::try_from((2 * self.classes).max(64).next_power_of_two().min(1024)).unwrap_or(1024);
        let mut widths = vec![base, (base / 2).max(32), base.saturating_mul(2)];
        let first = (rng.next() % 3) as usize;
        widths.rotate_left(first);
        widths.dedup();
        let ids = self.fresh("adl", &["dense", "relu"]);
        let src = inputs_of(&self.nodes[fc]).to_vec();
        let (init, l2) = (self.nodes[fc].init, self.nodes[fc].l2);
        Ok(widths
            .into_iter()
            .map(|units| {
                let dense = Node {
                    init,
                    l2,
                    ..Node::new(&ids[0], Op::dense(units)).taking(&src)
                };
                let relu = Node::new(&ids[1], Op::Relu).taking(&[&ids[0]]);
                Candidate {
                    nodes: self.insert_before(fc, vec![dense, relu]),
                    note: format!(
                        "added a hidden dense {units} + relu before the classifier `{}`",
                        self.nodes[fc].id
                    ),
                }
            })
            .collect())
    }

    fn reduce_dense(&self, rng: &mut SplitMix) -> Plan {
        let mut hidden = self.hidden_dense();
        if hidden.is_empty() {
            return Err("there is no hidden dense layer (only the classifier)".to_string());
        }
        rng.shuffle(&mut hidden);
        Ok(hidden
            .into_iter()
            .map(|k| {
                let end = self.block_end(k);
                Candidate {
                    nodes: self.remove_block(k, end),
                    note: self.block_note(k, end),
                }
            })
            .collect())
    }

    /// Candidates that rescale a set of widths: all at once first, then one at a time.
    fn rescale(&self, rng: &mut SplitMix, targets: Vec<(usize, u32)>, what: &str) -> Plan {
        let set = |nodes: &mut [Node], i: usize, v: u32| match &mut nodes[i].op {
            Op::Conv2d {
                filters, groups, ..
            } => *filters = v.div_ceil(*groups).saturating_mul(*groups),
            Op::SeparableConv2d { filters, .. } => *filters = v,
            Op::Dense { units, .. } => *units = v,
            _ => {}
        };
        let width = |i: usize| match self.nodes[i].op {
            Op::Conv2d { filters, .. } | Op::SeparableConv2d { filters, .. } => filters,
            Op::Dense { units, .. } => units,
            _ => 0,
        };
        let mut all = self.nodes.clone();
        let mut changes = Vec::new();
        for &(i, v) in &targets {
            set(&mut all, i, v);
            changes.push(format!("{} {}->{v}", self.nodes[i].id, width(i)));
        }
        let mut out = vec![Candidate {
            nodes: all,
            note: format!("{what}: {}", changes.join(", ")),
        }];
        if targets.len() > 1 {
            let mut one = targets;
            rng.shuffle(&mut one);
            for (i, v) in one {
                let mut nodes = self.nodes.clone();
                set(&mut nodes, i, v);
                out.push(Candidate {
                    nodes,
                    note: format!("{what}: {} {}->{v}", self.nodes[i].id, width(i)),
                });
            }
        }
        Ok(out)
    }

    fn scale_filters(&self, rng: &mut SplitMix, up: bool) -> Plan {
        let targets: Vec<(usize, u32)> = (0..self.nodes.len())
            .filter_map(|i| match self.nodes[i].op {
                Op::Conv2d { filters, .. } | Op::SeparableConv2d { filters, .. } => {
                    let v = if up { widen(filters) } else { narrow(filters) };
                    (v != filters).then_some((i, v))
                }
                _ => None,
            })
            .collect();
        if targets.is_empty() {
            return Err(if up {
                "the network has no conv2d or separable_conv2d with filters".to_string()
            } else {
                format!("every convolution already has {MIN_WIDTH} filters or fewer")
            });
        }
        self.rescale(
            rng,
            targets,
            if up {
                "widened filters"
            } else {
                "narrowed filters"
            },
        )
    }

    fn scale_units(&self, rng: &mut SplitMix, up: bool) -> Plan {
        let targets: Vec<(usize, u32)> = self
            .hidden_dense()
            .into_iter()
            .filter_map(|i| match self.nodes[i].op {
                Op::Dense { units, .. } => {
                    let v = if up { widen(units) } else { narrow(units) };
                    (v != units).then_some((i, v))
                }
                _ => None,
            })
            .collect();
        if targets.is_empty() {
            return Err(if self.hidden_dense().is_empty() {
                "there is no hidden dense layer (only the classifier)".to_string()
            } else {
                format!("every hidden dense layer already has {MIN_WIDTH} units or fewer")
            });
        }
        self.rescale(
            rng,
            targets,
            if up {
                "widened dense units"
            } else {
                "narrowed dense units"
            },
        )
    }

    fn dropouts(&self) -> Vec<(usize, f64)> {
        (0..self.nodes.len())
            .filter_map(|i| match self.nodes[i].op {
                Op::Dropout { rate } => Some((i, rate)),
                _ => None,
            })
            .collect()
    }

    fn add_dropout(&self, rng: &mut SplitMix) -> Plan {
        let ids = self.fresh("ad", &["dropout"]);
        let mut out = Vec::new();
        if let Some(fc) = self.classifier() {
            let src = inputs_of(&self.nodes[fc]).to_vec();
            let feeds_from_dropout = src
                .first()
                .and_then(|s| self.nodes.iter().find(|n| &n.id == s))
                .is_some_and(|n| matches!(n.op, Op::Dropout { .. }));
            if !feeds_from_dropout {
                let d = Node::new(&ids[0], Op::Dropout { rate: 0.25 }).taking(&src);
                out.push(Candidate {
                    nodes: self.insert_before(fc, vec![d]),
                    note: format!(
                        "added dropout 0.25 before the classifier `{}`",
                        self.nodes[fc].id
                    ),
                });
            }
        }
        let mut low: Vec<(usize, f64)> = self
            .dropouts()
            .into_iter()
            .filter(|(_, r)| *r < MAX_DROPOUT)
            .collect();
        rng.shuffle(&mut low);
        for (i, rate) in low {
            let new = round2((rate + 0.1).min(MAX_DROPOUT));
            let mut nodes = self.nodes.clone();
            nodes[i].op = Op::Dropout { rate: new };
            out.push(Candidate {
                nodes,
                note: format!("raised dropout `{}` from {rate} to {new}", self.nodes[i].id),
            });
        }
        let mut pools: Vec<usize> = self
            .map_boundaries()
            .into_iter()
            .filter(|&i| is_pool(&self.nodes[i].op))
            .collect();
        rng.shuffle(&mut pools);
        for p in pools {
            let d = Node::new(&ids[0], Op::Dropout { rate: 0.1 }).taking(&[&self.nodes[p].id]);
            out.push(Candidate {
                nodes: self.insert_after(Some(p), vec![d]),
                note: format!("added dropout 0.1 after `{}`", self.nodes[p].id),
            });
        }
        if out.is_empty() {
            return Err(
                "there is no place for another dropout and every rate is at the cap".to_string(),
            );
        }
        Ok(out)
    }

    fn reduce_dropout(&self, rng: &mut SplitMix) -> Plan {
        let mut drops = self.dropouts();
        if drops.is_empty() {
            return Err("the network has no dropout".to_string());
        }
        rng.shuffle(&mut drops);
        drops.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(drops
            .into_iter()
            .map(|(i, rate)| {
                let id = &self.nodes[i].id;
                if rate > 0.15 {
                    let new = round2(rate - 0.1);
                    let mut nodes = self.nodes.clone();
                    nodes[i].op = Op::Dropout { rate: new };
                    Candidate {
                        nodes,
                        note: format!("lowered dropout `{id}` from {rate} to {new}"),
                    }
                } else {
                    Candidate {
                        nodes: self.remove_block(i, i),
                        note: format!("removed dropout `{id}` ({rate})"),
                    }
                }
            })
            .collect())
    }

    fn add_init(&self) -> Plan {
        let bare: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].op.has_kernel() && self.nodes[i].init.is_none())
            .collect();
        if bare.is_empty() {
            return Err("every conv and dense layer already has an initialiser".to_string());
        }
        let saturating = self
            .nodes
            .iter()
            .filter(|n| matches!(n.op, Op::Sigmoid | Op::Tanh))
            .count();
        let rectifying = self
            .nodes
            .iter()
            .filter(|n| n.op.activation().is_some())
            .count()
            - saturating;
        let (init, name) = if saturating > rectifying {
            (Init::GlorotUniform, "glorot_uniform")
        } else {
            (Init::HeNormal, "he_normal")
        };
        let ids: Vec<&str> = bare.iter().map(|&i| self.nodes[i].id.as_str()).collect();
        let mut plain = self.nodes.clone();
        for &i in &bare {
            plain[i].init = Some(init);
        }
        let plain = Candidate {
            nodes: plain,
            note: format!("set init {name} on {}", ids.join(", ")),
        };
        // A conv2d that reads the image gets the patch-whitening init (validation decides
        // whether it may: groups 1, dilation 1, a small enough patch); if not, the plain one.
        let stems: Vec<usize> = bare
            .iter()
            .copied()
            .filter(|&i| matches!(self.nodes[i].op, Op::Conv2d { .. }) && self.reads_image(i))
            .collect();
        if stems.is_empty() {
            return Ok(vec![plain]);
        }
        let mut whitened = plain.nodes.clone();
        for &i in &stems {
            whitened[i].init = Some(Init::PatchWhitening);
        }
        let stem_ids: Vec<&str> = stems.iter().map(|&i| self.nodes[i].id.as_str()).collect();
        let note = format!(
            "set init patch_whitening on {} and {name} on the other weighted layers",
            stem_ids.join(", ")
        );
        Ok(vec![
            Candidate {
                nodes: whitened,
                note,
            },
            plain,
        ])
    }

    /// Whether node `i` takes the input image as its only input.
    fn reads_image(&self, i: usize) -> bool {
        match &self.nodes[i].inputs {
            None => i == 0,
            Some(ins) => ins.len() == 1 && ins.iter().all(|s| s == INPUT_ID),
        }
    }

    fn step_l2(&self, up: bool) -> Plan {
        let mut nodes = self.nodes.clone();
        let mut changes = Vec::new();
        for n in nodes.iter_mut().filter(|n| n.op.has_kernel()) {
            let old = n.l2.filter(|l| *l > 0.0);
            let new = match (old, up) {
                (None, true) => Some(1e-4),
                (Some(x), true) => L2_LADDER
                    .iter()
                    .copied()
                    .find(|&l| l > x * (1.0 + 1e-9))
                    .or(Some(x)),
                (None, false) => None,
                (Some(x), false) => L2_LADDER
                    .iter()
                    .rev()
                    .copied()
                    .find(|&l| l < x * (1.0 - 1e-9)),
            };
            if new != old {
                let fmt = |v: Option<f64>| v.map_or("none".to_string(), |v| format!("{v:e}"));
                changes.push(format!("{} {}->{}", n.id, fmt(old), fmt(new)));
                n.l2 = new;
            }
        }
        if changes.is_empty() {
            return Err(if up {
                "every conv and dense layer's l2 is already at the 1e-2 cap".to_string()
            } else {
                "no layer has l2 regularisation".to_string()
            });
        }
        let what = if up { "raised l2" } else { "lowered l2" };
        Ok(vec![Candidate {
            nodes,
            note: format!("{what}: {}", changes.join(", ")),
        }])
    }
}
