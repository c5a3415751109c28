//! Validation, shape inference and counting, all before anything is allocated.
//!
//! Counting rules (what the trainer allocates, exactly):
//! - conv2d: `filters * (C / groups) * k * k` weights `+ filters` bias;
//! - depthwise_conv2d: `C * multiplier * k * k` `+ C * multiplier` bias;
//! - separable_conv2d: depthwise `C * k * k` (no bias) + pointwise `C * filters` `+ filters` bias;
//! - batch_norm: `2 * C` (gamma and beta; running statistics are buffers, not parameters);
//! - dense: `units * F + units` bias.
//!
//! MACs count the multiply-accumulates of conv and dense layers per image (batch norm folds
//! into the preceding layer at inference; activations, pooling and adds are not MACs).
//! Activation memory is 4 bytes per element of the input and of every node's output.

use std::collections::{HashMap, VecDeque};

use crate::error::{ArchError, closest};
use crate::ir::{
    Analysis, Graph, INPUT_ID, Init, MAX_WHITENED_PATCH, Node, NodeInfo, Op, Padding, Shape,
    Source, Task,
};

/// Most elements any one tensor (a weight or one image's activation) may have: beyond this a
/// network is rejected as absurd whatever the user's budgets.
pub const MAX_TENSOR_ELEMENTS: u64 = 1 << 32;

/// Bytes per element (f32) used for activation memory and model size.
const BYTES_PER_ELEMENT: u64 = 4;

impl Graph {
    /// Checks the network for the task and infers every shape and count, before anything is
    /// allocated: ids (duplicate, reserved, dangling), order and cycles, arity, unused nodes,
    /// hyper-parameter ranges, shapes (sizes below 1, add and concat mismatches, dense on a map),
    /// the logits' width, absurd sizes and the task's budgets ([`crate::Limits`]).
    ///
    /// Returns the first problem found, as an [`ArchError`] that renders as a repair prompt.
    // A source `Node(j)` has j below its node's position (resolve), so infos[j] and nodes[j] exist.
    #[allow(clippy::indexing_slicing)]
    pub fn validate(&self, task: &Task) -> Result<Analysis, ArchError> {
        check_task(task)?;
        if self.nodes.is_empty() {
            return Err(ArchError::Empty {
                classes: task.classes,
            });
        }
        let index = check_ids(&self.nodes)?;
        let inputs = resolve(&self.nodes, &index)?;
        check_arity(&self.nodes, &inputs)?;
        check_unused(&self.nodes, &inputs)?;
        let [c, h, w] = task.input;
        let input_shape = Shape::Map { c, h, w };
        let mut infos: Vec<NodeInfo> = Vec::with_capacity(self.nodes.len());
        for (node, srcs) in self.nodes.iter().zip(inputs) {
            check_attributes(node)?;
            let input_shapes: Vec<Shape> = srcs
                .iter()
                .map(|s| match *s {
                    Source::Input => input_shape,
                    Source::Node(j) => infos[j].output,
                })
                .collect();
            let names: Vec<&str> = srcs
                .iter()
                .map(|s| match *s {
                    Source::Input => INPUT_ID,
                    Source::Node(j) => self.nodes[j].id.as_str(),
                })
                .collect();
            check_whitening(node, &srcs, &input_shapes)?;
            let (output, params, macs) = infer(node, &input_shapes, &names)?;
            if output.numel() as u64 > MAX_TENSOR_ELEMENTS {
                return Err(ArchError::TooLarge {
                    node: node.id.clone(),
                    what: "its output".to_string(),
                    detail: format!("{output} = {} elements per image", output.numel()),
                });
            }
            if params > MAX_TENSOR_ELEMENTS {
                return Err(ArchError::TooLarge {
                    node: node.id.clone(),
                    what: "its weight count".to_string(),
                    detail: format!("{params} parameters"),
                });
            }
            infos.push(NodeInfo {
                inputs: srcs,
                input_shapes,
                output,
                params,
                macs,
            });
        }
        check_output(&self.nodes, &infos, task.classes)?;
        let analysis = totals(infos, input_shape)?;
        check_budgets(&self.nodes, &analysis, task)?;
        Ok(analysis)
    }
}

impl Analysis {
    /// The shape of the network's output (the last node's).
    pub fn output(&self) -> Option<Shape> {
        self.nodes.last().map(|n| n.output)
    }
}

fn check_task(task: &Task) -> Result<(), ArchError> {
    if task.input.contains(&0) {
        return Err(ArchError::BadTask {
            message: format!("input shape {:?} has a zero dimension", task.input),
        });
    }
    if task.classes == 0 {
        return Err(ArchError::BadTask {
            message: "the task has 0 classes".to_string(),
        });
    }
    let numel = task
        .input
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d as u64));
    if numel.is_none_or(|n| n > MAX_TENSOR_ELEMENTS) {
        return Err(ArchError::BadTask {
            message: format!("input shape {:?} is absurdly large", task.input),
        });
    }
    Ok(())
}

fn check_ids(nodes: &[Node]) -> Result<HashMap<&str, usize>, ArchError> {
    let mut index = HashMap::with_capacity(nodes.len());
    for (i, n) in nodes.iter().enumerate() {
        if n.id.trim().is_empty() {
            return Err(ArchError::BadId {
                message: format!(
                    "node #{} (counting from 1) has an empty id; give every node a unique id",
                    i + 1
                ),
            });
        }
        if n.id == INPUT_ID {
            return Err(ArchError::BadId {
                message: format!(
                    "node #{} (counting from 1) uses the id \"input\", which names the image; rename it",
                    i + 1
                ),
            });
        }
        if let Some(j) = index.insert(n.id.as_str(), i) {
            return Err(ArchError::BadId {
                message: format!(
                    "two nodes have the id `{}` (#{} and #{}, counting from 1); ids must be unique",
                    n.id,
                    j + 1,
                    i + 1
                ),
            });
        }
    }
    Ok(index)
}

/// The nodes each node takes, by position; implicit `in` is the previous node.
// `i` is a node position (find_path queues only positions from the id index).
#[allow(clippy::indexing_slicing)]
fn refs(nodes: &[Node], index: &HashMap<&str, usize>, i: usize) -> Vec<Option<usize>> {
    match &nodes[i].inputs {
        None => vec![i.checked_sub(1)],
        Some(list) => list
            .iter()
            .filter_map(|id| {
                if id == INPUT_ID {
                    Some(None)
                } else {
                    index.get(id.as_str()).map(|&j| Some(j))
                }
            })
            .collect(),
    }
}

// `find_path` returns positions of `nodes`.
#[allow(clippy::indexing_slicing)]
fn resolve(nodes: &[Node], index: &HashMap<&str, usize>) -> Result<Vec<Vec<Source>>, ArchError> {
    let mut all = Vec::with_capacity(nodes.len());
    for (i, node) in nodes.iter().enumerate() {
        let Some(list) = &node.inputs else {
            all.push(vec![if i == 0 {
                Source::Input
            } else {
                Source::Node(i - 1)
            }]);
            continue;
        };
        let mut srcs = Vec::with_capacity(list.len());
        for id in list {
            if id == INPUT_ID {
                srcs.push(Source::Input);
                continue;
            }
            let Some(&j) = index.get(id.as_str()) else {
                let known = nodes.iter().map(|n| n.id.as_str()).chain([INPUT_ID]);
                return Err(ArchError::DanglingInput {
                    node: node.id.clone(),
                    input: id.clone(),
                    suggestion: closest(id, known),
                });
            };
            if j >= i {
                return Err(match find_path(nodes, index, j, i) {
                    Some(mut path) => {
                        path.insert(0, i);
                        ArchError::Cycle {
                            path: path.into_iter().map(|k| nodes[k].id.clone()).collect(),
                        }
                    }
                    None => ArchError::OutOfOrder {
                        node: node.id.clone(),
                        input: id.clone(),
                    },
                });
            }
            srcs.push(Source::Node(j));
        }
        all.push(srcs);
    }
    Ok(all)
}

/// A path of "takes" edges from `from` to `to`, both included, if there is one.
// `from` and every queued position come from the id index, so they are below nodes.len().
#[allow(clippy::indexing_slicing)]
fn find_path(
    nodes: &[Node],
    index: &HashMap<&str, usize>,
    from: usize,
    to: usize,
) -> Option<Vec<usize>> {
    let mut parent: Vec<Option<usize>> = vec![None; nodes.len()];
    let mut seen = vec![false; nodes.len()];
    let mut queue = VecDeque::from([from]);
    seen[from] = true;
    while let Some(k) = queue.pop_front() {
        if k == to {
            let mut path = vec![k];
            let mut cur = k;
            while let Some(p) = parent[cur] {
                path.push(p);
                cur = p;
            }
            path.reverse();
            return Some(path);
        }
        for next in refs(nodes, index, k).into_iter().flatten() {
            if !seen[next] {
                seen[next] = true;
                parent[next] = Some(k);
                queue.push_back(next);
            }
        }
    }
    None
}

fn check_arity(nodes: &[Node], inputs: &[Vec<Source>]) -> Result<(), ArchError> {
    for (node, srcs) in nodes.iter().zip(inputs) {
        let ok = if node.op.is_merge() {
            srcs.len() >= 2
        } else {
            srcs.len() == 1
        };
        if !ok {
            let expected = if node.op.is_merge() {
                "two or more inputs"
            } else {
                "exactly one input"
            };
            return Err(ArchError::Arity {
                node: node.id.clone(),
                op: node.op.name().to_string(),
                expected: expected.to_string(),
                got: srcs.len(),
            });
        }
    }
    Ok(())
}

fn check_unused(nodes: &[Node], inputs: &[Vec<Source>]) -> Result<(), ArchError> {
    let mut used = vec![false; nodes.len()];
    for srcs in inputs {
        for s in srcs {
            // resolve only gives positions of `nodes`.
            if let Source::Node(j) = *s
                && let Some(u) = used.get_mut(j)
            {
                *u = true;
            }
        }
    }
    let last = nodes.len() - 1;
    match nodes.iter().zip(&used).take(last).find(|(_, u)| !**u) {
        Some((node, _)) => Err(ArchError::Unused {
            node: node.id.clone(),
        }),
        None => Ok(()),
    }
}

fn hyper(node: &Node, message: String) -> ArchError {
    ArchError::BadHyperParameter {
        node: node.id.clone(),
        message,
    }
}

fn positive(node: &Node, what: &str, v: u32) -> Result<(), ArchError> {
    if v == 0 {
        Err(hyper(
            node,
            format!("{} `{what}` is 0; it must be at least 1", node.op.name()),
        ))
    } else {
        Ok(())
    }
}

/// [`Init::PatchWhitening`] needs the image's patches: a plain `conv2d` (one group, no
/// dilation) reading the input, with a patch of at most [`MAX_WHITENED_PATCH`] values.
fn check_whitening(node: &Node, srcs: &[Source], shapes: &[Shape]) -> Result<(), ArchError> {
    if node.init != Some(Init::PatchWhitening) {
        return Ok(());
    }
    let Op::Conv2d {
        kernel,
        dilation,
        groups,
        ..
    } = node.op
    else {
        return Err(hyper(
            node,
            format!(
                "`init` patch_whitening applies to conv2d only, not {}",
                node.op.name()
            ),
        ));
    };
    if srcs != [Source::Input] {
        return Err(hyper(
            node,
            "`init` patch_whitening needs the image's patches: put it on a conv2d whose input is \"input\"".to_string(),
        ));
    }
    if groups != 1 || dilation != 1 {
        return Err(hyper(
            node,
            "`init` patch_whitening needs groups 1 and dilation 1".to_string(),
        ));
    }
    let c = match shapes.first() {
        Some(Shape::Map { c, .. }) => *c,
        _ => 0,
    };
    let patch = c * (kernel as usize).pow(2);
    if patch > MAX_WHITENED_PATCH {
        return Err(hyper(
            node,
            format!(
                "`init` patch_whitening whitens patches of at most {MAX_WHITENED_PATCH} values; \
                 {c} channels x {kernel}x{kernel} is {patch}: use a smaller kernel"
            ),
        ));
    }
    Ok(())
}

fn check_attributes(node: &Node) -> Result<(), ArchError> {
    if let Some(init) = node.init
        && !node.op.has_kernel()
    {
        let name = serde_json::to_value(init)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string));
        return Err(hyper(
            node,
            format!(
                "{} has no weight kernel, so `init` {} does not apply; put `init` on conv and dense nodes only",
                node.op.name(),
                name.unwrap_or_default()
            ),
        ));
    }
    if let Some(l2) = node.l2 {
        if !node.op.has_kernel() && l2 != 0.0 {
            return Err(hyper(
                node,
                format!(
                    "{} has no weight kernel, so `l2` does not apply; put `l2` on conv and dense nodes only",
                    node.op.name()
                ),
            ));
        }
        if !l2.is_finite() || l2 < 0.0 {
            return Err(hyper(
                node,
                format!("`l2` is {l2}; it must be 0 or a small positive number such as 1e-4"),
            ));
        }
    }
    match &node.op {
        Op::Conv2d {
            filters,
            kernel,
            stride,
            dilation,
            groups,
            ..
        } => {
            positive(node, "filters", *filters)?;
            positive(node, "kernel", *kernel)?;
            positive(node, "stride", *stride)?;
            positive(node, "dilation", *dilation)?;
            positive(node, "groups", *groups)?;
        }
        Op::DepthwiseConv2d {
            kernel,
            stride,
            dilation,
            multiplier,
            ..
        } => {
            positive(node, "kernel", *kernel)?;
            positive(node, "stride", *stride)?;
            positive(node, "dilation", *dilation)?;
            positive(node, "multiplier", *multiplier)?;
        }
        Op::SeparableConv2d {
            filters,
            kernel,
            stride,
            dilation,
            ..
        } => {
            positive(node, "filters", *filters)?;
            positive(node, "kernel", *kernel)?;
            positive(node, "stride", *stride)?;
            positive(node, "dilation", *dilation)?;
        }
        Op::BatchNorm { epsilon, momentum } => {
            if !epsilon.is_finite() || *epsilon <= 0.0 {
                return Err(hyper(
                    node,
                    format!(
                        "batch_norm `epsilon` is {epsilon}; it must be a small positive number such as 1e-5"
                    ),
                ));
            }
            if !momentum.is_finite() || !(0.0..=1.0).contains(momentum) {
                return Err(hyper(
                    node,
                    format!(
                        "batch_norm `momentum` is {momentum}; it must be between 0 and 1 (e.g. 0.1)"
                    ),
                ));
            }
        }
        Op::LeakyRelu { slope } if !slope.is_finite() => {
            return Err(hyper(
                node,
                format!("leaky_relu `slope` is {slope}; it must be a finite number such as 0.01"),
            ));
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
            positive(node, "kernel", *kernel)?;
            if let Some(s) = stride {
                positive(node, "stride", *s)?;
            }
            if let Padding::Explicit(p) = padding
                && *p > kernel / 2
            {
                return Err(hyper(
                    node,
                    format!(
                        "{} padding {p} is more than half the {kernel}x{kernel} window; use at most {}",
                        node.op.name(),
                        kernel / 2
                    ),
                ));
            }
        }
        Op::Dense { units, .. } => positive(node, "units", *units)?,
        Op::Dropout { rate } if !rate.is_finite() || !(0.0..1.0).contains(rate) => {
            return Err(hyper(
                node,
                format!("dropout `rate` is {rate}; it must be at least 0 and below 1 (e.g. 0.3)"),
            ));
        }
        _ => {}
    }
    Ok(())
}

/// Checked product; overflow is an absurd size at `node`.
fn mul(node: &Node, what: &str, factors: &[u64]) -> Result<u64, ArchError> {
    factors
        .iter()
        .try_fold(1u64, |a, &f| a.checked_mul(f))
        .ok_or_else(|| ArchError::TooLarge {
            node: node.id.clone(),
            what: what.to_string(),
            detail: format!("the product {factors:?} overflows"),
        })
}

fn add(node: &Node, what: &str, terms: &[u64]) -> Result<u64, ArchError> {
    terms
        .iter()
        .try_fold(0u64, |a, &t| a.checked_add(t))
        .ok_or_else(|| ArchError::TooLarge {
            node: node.id.clone(),
            what: what.to_string(),
            detail: format!("the sum {terms:?} overflows"),
        })
}

fn to_usize(node: &Node, v: u64) -> Result<usize, ArchError> {
    usize::try_from(v).map_err(|_| ArchError::TooLarge {
        node: node.id.clone(),
        what: "a dimension".to_string(),
        detail: format!("{v}"),
    })
}

/// A sliding window's output size along one axis, or the arithmetic that makes it < 1.
#[allow(clippy::too_many_arguments)]
fn window(
    node: &Node,
    h: usize,
    w: usize,
    kernel: u32,
    stride: u32,
    pad: u64,
    dilation: u32,
) -> Result<(usize, usize), ArchError> {
    let eff = u64::from(dilation) * u64::from(kernel - 1) + 1;
    let s = u64::from(stride);
    let mut out = [0usize; 2];
    for (slot, (axis, size)) in out.iter_mut().zip([("height", h), ("width", w)]) {
        let padded = size as u64 + 2 * pad;
        if padded < eff {
            let signed = (padded as i128 - eff as i128).div_euclid(i128::from(stride)) + 1;
            let pad_txt = if pad > 0 {
                format!(" + 2*{pad}")
            } else {
                String::new()
            };
            let kern_txt = if dilation > 1 {
                format!("{eff} (kernel {kernel} dilated {dilation})")
            } else {
                format!("{kernel}")
            };
            let stride_txt = if stride > 1 {
                format!(" stride {stride}")
            } else {
                String::new()
            };
            return Err(ArchError::NonPositiveSize {
                node: node.id.clone(),
                detail: format!(
                    "{name} {kernel}x{kernel}{stride_txt} on a {h}x{w} map gives {axis} ({size}{pad_txt} - {kern_txt}) / {stride} + 1 = {signed}",
                    name = node.op.name()
                ),
            });
        }
        *slot = to_usize(node, (padded - eff) / s + 1)?;
    }
    Ok((out[0], out[1]))
}

fn needs_map(node: &Node, shape: Shape) -> Result<(usize, usize, usize), ArchError> {
    match shape {
        Shape::Map { c, h, w } => Ok((c, h, w)),
        Shape::Vector { .. } => Err(ArchError::NeedsMap {
            node: node.id.clone(),
            op: node.op.name().to_string(),
            shape,
        }),
    }
}

/// Output shape, parameters and MACs of one node.
fn infer(node: &Node, ins: &[Shape], names: &[&str]) -> Result<(Shape, u64, u64), ArchError> {
    // check_arity gave every node one input or more; an empty list is reported as it would be.
    let Some(&first) = ins.first() else {
        return Err(ArchError::Arity {
            node: node.id.clone(),
            op: node.op.name().to_string(),
            expected: if node.op.is_merge() {
                "two or more inputs"
            } else {
                "exactly one input"
            }
            .to_string(),
            got: 0,
        });
    };
    let named = || {
        names
            .iter()
            .map(|n| n.to_string())
            .zip(ins.iter().copied())
            .collect::<Vec<_>>()
    };
    Ok(match &node.op {
        Op::Conv2d {
            filters,
            kernel,
            stride,
            padding,
            dilation,
            groups,
            bias,
        } => {
            let (c, h, w) = needs_map(node, first)?;
            let g = *groups as usize;
            if !c.is_multiple_of(g) || !(*filters as usize).is_multiple_of(g) {
                return Err(hyper(
                    node,
                    format!(
                        "conv2d groups {g} must divide both its input channels {c} and its filters {filters}"
                    ),
                ));
            }
            let (oh, ow) = window(
                node,
                h,
                w,
                *kernel,
                *stride,
                padding.pixels(*kernel, *dilation),
                *dilation,
            )?;
            let (f, k, cg) = (u64::from(*filters), u64::from(*kernel), (c / g) as u64);
            let weights = mul(node, "its weights", &[f, cg, k, k])?;
            let params = add(node, "its weights", &[weights, if *bias { f } else { 0 }])?;
            let macs = mul(node, "its MACs", &[oh as u64, ow as u64, weights])?;
            (
                Shape::Map {
                    c: to_usize(node, f)?,
                    h: oh,
                    w: ow,
                },
                params,
                macs,
            )
        }
        Op::DepthwiseConv2d {
            kernel,
            stride,
            padding,
            dilation,
            multiplier,
            bias,
        } => {
            let (c, h, w) = needs_map(node, first)?;
            let (oh, ow) = window(
                node,
                h,
                w,
                *kernel,
                *stride,
                padding.pixels(*kernel, *dilation),
                *dilation,
            )?;
            let oc = mul(node, "its channels", &[c as u64, u64::from(*multiplier)])?;
            let k = u64::from(*kernel);
            let weights = mul(node, "its weights", &[oc, k, k])?;
            let params = add(node, "its weights", &[weights, if *bias { oc } else { 0 }])?;
            let macs = mul(node, "its MACs", &[oh as u64, ow as u64, weights])?;
            (
                Shape::Map {
                    c: to_usize(node, oc)?,
                    h: oh,
                    w: ow,
                },
                params,
                macs,
            )
        }
        Op::SeparableConv2d {
            filters,
            kernel,
            stride,
            padding,
            dilation,
            bias,
        } => {
            let (c, h, w) = needs_map(node, first)?;
            let (oh, ow) = window(
                node,
                h,
                w,
                *kernel,
                *stride,
                padding.pixels(*kernel, *dilation),
                *dilation,
            )?;
            let (f, k, c) = (u64::from(*filters), u64::from(*kernel), c as u64);
            let depthwise = mul(node, "its weights", &[c, k, k])?;
            let pointwise = mul(node, "its weights", &[c, f])?;
            let params = add(
                node,
                "its weights",
                &[depthwise, pointwise, if *bias { f } else { 0 }],
            )?;
            let per_pixel = add(node, "its MACs", &[depthwise, pointwise])?;
            let macs = mul(node, "its MACs", &[oh as u64, ow as u64, per_pixel])?;
            (
                Shape::Map {
                    c: to_usize(node, f)?,
                    h: oh,
                    w: ow,
                },
                params,
                macs,
            )
        }
        Op::BatchNorm { .. } => (first, 2 * first.channels() as u64, 0),
        Op::Relu
        | Op::Gelu
        | Op::Silu
        | Op::Sigmoid
        | Op::Tanh
        | Op::LeakyRelu { .. }
        | Op::Dropout { .. } => (first, 0, 0),
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
            let (c, h, w) = needs_map(node, first)?;
            let s = stride.unwrap_or(*kernel);
            let (oh, ow) = window(node, h, w, *kernel, s, padding.pixels(*kernel, 1), 1)?;
            (Shape::Map { c, h: oh, w: ow }, 0, 0)
        }
        Op::GlobalAvgPool => {
            let (c, _, _) = needs_map(node, first)?;
            (Shape::Vector { features: c }, 0, 0)
        }
        Op::Flatten => (
            Shape::Vector {
                features: first.numel(),
            },
            0,
            0,
        ),
        Op::Dense { units, bias } => {
            let Shape::Vector { features } = first else {
                return Err(ArchError::DenseOnMap {
                    node: node.id.clone(),
                    shape: first,
                });
            };
            let u = u64::from(*units);
            let weights = mul(node, "its weights", &[u, features as u64])?;
            let params = add(node, "its weights", &[weights, if *bias { u } else { 0 }])?;
            (
                Shape::Vector {
                    features: to_usize(node, u)?,
                },
                params,
                weights,
            )
        }
        Op::Add => {
            if ins.iter().any(|s| *s != first) {
                return Err(ArchError::AddMismatch {
                    node: node.id.clone(),
                    inputs: named(),
                });
            }
            (first, 0, 0)
        }
        Op::Concat => match first {
            Shape::Map { h, w, .. } => {
                let mut c = 0u64;
                for s in ins {
                    match *s {
                        Shape::Map {
                            c: ci,
                            h: hi,
                            w: wi,
                        } if hi == h && wi == w => c = add(node, "its channels", &[c, ci as u64])?,
                        _ => {
                            return Err(ArchError::ConcatMismatch {
                                node: node.id.clone(),
                                inputs: named(),
                            });
                        }
                    }
                }
                (
                    Shape::Map {
                        c: to_usize(node, c)?,
                        h,
                        w,
                    },
                    0,
                    0,
                )
            }
            Shape::Vector { .. } => {
                let mut f = 0u64;
                for s in ins {
                    match *s {
                        Shape::Vector { features } => {
                            f = add(node, "its features", &[f, features as u64])?
                        }
                        Shape::Map { .. } => {
                            return Err(ArchError::ConcatMismatch {
                                node: node.id.clone(),
                                inputs: named(),
                            });
                        }
                    }
                }
                (
                    Shape::Vector {
                        features: to_usize(node, f)?,
                    },
                    0,
                    0,
                )
            }
        },
    })
}

fn check_output(nodes: &[Node], infos: &[NodeInfo], classes: usize) -> Result<(), ArchError> {
    let (Some(last), Some(info)) = (nodes.last(), infos.last()) else {
        return Ok(());
    };
    let shape = info.output;
    if shape == (Shape::Vector { features: classes }) {
        return Ok(());
    }
    let hint = match (shape, &last.op) {
        (Shape::Map { .. }, _) => {
            format!(
                "end with global_avg_pool (or flatten) and then a dense layer of {classes} units"
            )
        }
        (Shape::Vector { .. }, Op::Dense { .. }) => {
            format!("set the last dense layer's units to {classes}")
        }
        (Shape::Vector { .. }, _) => format!("end with a dense layer of {classes} units"),
    };
    Err(ArchError::OutputMismatch {
        node: last.id.clone(),
        shape,
        classes,
        hint,
    })
}

fn totals(nodes: Vec<NodeInfo>, input: Shape) -> Result<Analysis, ArchError> {
    let too_large = |what: &str| ArchError::TooLarge {
        node: "the network".to_string(),
        what: what.to_string(),
        detail: "the total overflows".to_string(),
    };
    let mut params = 0u64;
    let mut macs = 0u64;
    let mut elements = input.numel() as u64;
    for n in &nodes {
        params = params
            .checked_add(n.params)
            .ok_or_else(|| too_large("its parameter count"))?;
        macs = macs
            .checked_add(n.macs)
            .ok_or_else(|| too_large("its MAC count"))?;
        elements = elements
            .checked_add(n.output.numel() as u64)
            .ok_or_else(|| too_large("its activation memory"))?;
    }
    Ok(Analysis {
        nodes,
        params,
        macs,
        activation_bytes: elements.saturating_mul(BYTES_PER_ELEMENT),
        model_bytes: params.saturating_mul(BYTES_PER_ELEMENT),
    })
}

/// "largest: c5 295168, c4 147584" for the repair of a budget.
fn largest(nodes: &[Node], values: impl Iterator<Item = u64>) -> String {
    let mut v: Vec<(u64, &str)> = values
        .zip(nodes.iter().map(|n| n.id.as_str()))
        .filter(|(x, _)| *x > 0)
        .collect();
    v.sort_by_key(|x| std::cmp::Reverse(x.0));
    let top: Vec<String> = v
        .iter()
        .take(3)
        .map(|(x, id)| format!("{id} {x}"))
        .collect();
    format!("the largest are {}", top.join(", "))
}

fn check_budgets(nodes: &[Node], a: &Analysis, task: &Task) -> Result<(), ArchError> {
    let l = &task.limits;
    if let Some(limit) = l.max_params
        && a.params > limit
    {
        return Err(ArchError::OverBudget {
            what: "parameters".to_string(),
            value: a.params,
            limit,
            hint: format!(
                "{}; use fewer filters or units",
                largest(nodes, a.nodes.iter().map(|n| n.params))
            ),
        });
    }
    if let Some(limit) = l.max_macs
        && a.macs > limit
    {
        return Err(ArchError::OverBudget {
            what: "MACs per image".to_string(),
            value: a.macs,
            limit,
            hint: format!(
                "{}; downsample earlier or use fewer filters",
                largest(nodes, a.nodes.iter().map(|n| n.macs))
            ),
        });
    }
    if let Some(limit) = l.max_activation_bytes
        && a.activation_bytes > limit
    {
        return Err(ArchError::OverBudget {
            what: "bytes of activations per image".to_string(),
            value: a.activation_bytes,
            limit,
            hint: format!(
                "{} (bytes); downsample earlier or use fewer filters",
                largest(
                    nodes,
                    a.nodes
                        .iter()
                        .map(|n| n.output.numel() as u64 * BYTES_PER_ELEMENT)
                )
            ),
        });
    }
    Ok(())
}
