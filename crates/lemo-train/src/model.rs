//! A burn module built at run time from a validated IR graph.
//!
//! [`GraphModel`] holds one burn layer per weighted node (convolutions, batch norm, dense,
//! dropout) in a `Vec`, plus a plan (skipped by burn's derive) that says, for every node of the
//! graph in order, which inputs it reads and what it computes. The forward pass runs the plan,
//! keeps each output only while a later node still needs it, and frees it after its last use.
//!
//! [`GraphModel::deployment_form`] gives what an edge device would run: batch norm folded into the
//! convolution or dense layer before it, dropout removed.

use std::sync::OnceLock;

use burn::backend::DispatchDevice;
use burn::module::{Module, Param, ParamId};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Initializer, Linear, LinearConfig,
    PaddingConfig2d,
};
use burn::tensor::module::avg_pool2d;
use burn::tensor::ops::AvgPoolOptions;
use burn::tensor::{Device, Tensor, TensorData, activation};
use lemo_arch::{Init, Op, Padding, Shape, Source, ValidatedGraph};

use crate::{TrainError, kernels};

/// One burn layer of a [`GraphModel`]: the weighted (or training-mode) part of a node.
// burn's derive does not take `Box`ed modules; a network has a few dozen layers at most.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Layer {
    /// `conv2d` and `depthwise_conv2d` (a grouped convolution with groups = channels).
    Conv(Conv2d),
    /// `separable_conv2d`: depthwise then pointwise.
    Separable(SeparableConv),
    /// `batch_norm`, on maps or vectors.
    Norm(BatchNorm),
    /// `dense`.
    Dense(Linear),
    /// `dropout` (identity outside training).
    Dropout(Dropout),
}

/// A separable convolution: depthwise `k`x`k` (no bias), then pointwise 1x1.
#[derive(Module, Debug)]
pub struct SeparableConv {
    /// The depthwise part (groups = input channels).
    pub depthwise: Conv2d,
    /// The pointwise 1x1 part.
    pub pointwise: Conv2d,
}

/// Where a step reads an input from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Input,
    Node(usize),
}

/// What a step computes.
#[derive(Debug, Clone, PartialEq)]
enum Kind {
    /// Runs `layers[index]`.
    Layer(usize),
    Relu,
    Gelu,
    Silu,
    Sigmoid,
    Tanh,
    LeakyRelu(f64),
    MaxPool {
        kernel: usize,
        stride: usize,
        pad: usize,
    },
    AvgPool {
        kernel: usize,
        stride: usize,
        pad: usize,
    },
    GlobalAvgPool,
    Flatten,
    Add,
    Concat,
    /// Passes its single input through (folded batch norm, removed dropout).
    Identity,
}

#[derive(Debug, Clone, PartialEq)]
struct Step {
    id: String,
    kind: Kind,
    inputs: Vec<Slot>,
    /// L2 factor of the node's weights, if any.
    l2: Option<f64>,
    /// The ReLU that reads this step's output runs inside it: a batch norm's (training form) or
    /// a convolution's (deployment form, through folded batch norms).
    fused_relu: bool,
    /// A max pooling that runs on this step's output (after its fused ReLU) as part of the
    /// step: inside a batch norm's or convolution's kernel ([`kernels::batch_norm_max_pool`],
    /// [`kernels::conv2d_max_pool`]), after the step's own op elsewhere. The pooling step it
    /// came from passes values through.
    fused_pool: Option<kernels::MaxPool>,
}

/// The execution plan of a [`GraphModel`] (not a module: skipped by burn's derive).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    steps: Vec<Step>,
    /// Number of reads of each step's output (the last step counts one extra read: the logits).
    uses: Vec<usize>,
    /// Number of reads of the input image.
    input_uses: usize,
    input: [usize; 3],
    classes: usize,
    /// Multiply-accumulates per image (lemo-arch's count), which sizes a forward pass's work.
    macs_per_image: u64,
}

/// An activation flowing through the plan: a batch of maps or of vectors.
#[derive(Debug, Clone)]
enum Value {
    Map(Tensor<4>),
    Vector(Tensor<2>),
}

/// A network built from an IR graph: burn layers plus the plan that wires them.
#[derive(Module, Debug)]
pub struct GraphModel {
    /// The burn layers, in node order (only the nodes that have one).
    pub layers: Vec<Layer>,
    #[module(skip)]
    plan: Plan,
}

/// The most multiply-accumulates an inference pass on the CPU runs on one thread
/// ([`GraphModel::runs_on_one_thread`]): the CIFAR-10 starter at batch 1 (20 M) runs 14% faster
/// on one thread, ref-cnn (115 M) 15% slower (docs/performance.md, 2026-12-07).
pub const SERIAL_FORWARD_MAX_MACS: u64 = 48 << 20;

/// The one-thread rayon pool small inference passes run in, built on first use; `None` if the
/// thread cannot be started (the pass then runs on the caller's pool).
fn one_thread_pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .thread_name(|_| "lemo-serial-forward".into())
            .build()
            .ok()
    })
    .as_ref()
}

fn internal(msg: impl Into<String>) -> TrainError {
    TrainError::Device(format!("internal plan error: {}", msg.into()))
}

/// Zero padding per side, as lemo-arch defines it (`same` = `dilation * (kernel - 1) / 2`).
/// Padding per side in pixels (lemo-arch's rule; the validator has checked it fits).
fn resolve_padding(padding: Padding, kernel: usize, dilation: usize) -> usize {
    let clamp = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    usize::try_from(padding.pixels(clamp(kernel), clamp(dilation))).unwrap_or(usize::MAX)
}

/// burn's initialiser for an IR initialiser (`None`: burn's default, PyTorch-like).
fn initializer(init: Option<Init>) -> Option<Initializer> {
    let sqrt2 = std::f64::consts::SQRT_2;
    init.map(|init| match init {
        Init::HeNormal => Initializer::KaimingNormal {
            gain: sqrt2,
            fan_out_only: false,
        },
        Init::HeUniform => Initializer::KaimingUniform {
            gain: sqrt2,
            fan_out_only: false,
        },
        Init::GlorotNormal => Initializer::XavierNormal { gain: 1.0 },
        Init::GlorotUniform => Initializer::XavierUniform { gain: 1.0 },
        Init::LecunNormal => Initializer::KaimingNormal {
            gain: 1.0,
            fan_out_only: false,
        },
        // He normal until `GraphModel::whiten` sets the whitening filters from the data.
        Init::PatchWhitening => Initializer::KaimingNormal {
            gain: sqrt2,
            fan_out_only: false,
        },
    })
}

struct ConvSpec {
    in_c: usize,
    out_c: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    dilation: usize,
    groups: usize,
    bias: bool,
}

fn build_conv(spec: &ConvSpec, init: Option<Init>, device: &Device) -> Conv2d {
    let p = spec.pad;
    let mut config = Conv2dConfig::new([spec.in_c, spec.out_c], [spec.kernel, spec.kernel])
        .with_stride([spec.stride, spec.stride])
        .with_dilation([spec.dilation, spec.dilation])
        .with_groups(spec.groups)
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .with_bias(spec.bias);
    let chosen = initializer(init);
    if let Some(i) = chosen.clone() {
        config = config.with_initializer(i);
    }
    let mut conv = config.init(device);
    // An explicit initialiser is a kernel initialiser (Keras semantics): biases start at zero.
    if chosen.is_some() && spec.bias {
        conv.bias = Some(Initializer::Zeros.init([spec.out_c], device));
    }
    conv
}

fn map_channels(node: &str, shape: Shape) -> Result<usize, TrainError> {
    match shape {
        Shape::Map { c, .. } => Ok(c),
        Shape::Vector { .. } => Err(internal(format!("{node} needs a feature map, got {shape}"))),
    }
}

impl GraphModel {
    /// Builds the model of a validated network on a device. Validation ([`ValidatedGraph`]) has
    /// already checked every rule the model relies on (inputs computed before use, positive
    /// sizes, divisible groups, ranges, dense layers on vectors), so nothing is re-checked here.
    /// Parameters are initialised lazily from the device's RNG: seed the device first for
    /// reproducible weights. The first model of a process also applies
    /// [`crate::memory::keep_freed_memory`].
    pub fn new(network: &ValidatedGraph, device: &Device) -> Result<Self, TrainError> {
        crate::memory::keep_freed_memory();
        let (graph, analysis, task) = (network.graph(), network.analysis(), network.task());
        let mut layers = Vec::new();
        let mut steps = Vec::with_capacity(graph.nodes.len());
        for (node, info) in graph.nodes.iter().zip(&analysis.nodes) {
            let id = node.id.as_str();
            let mut inputs = Vec::with_capacity(info.inputs.len());
            for source in &info.inputs {
                inputs.push(match *source {
                    Source::Input => Slot::Input,
                    Source::Node(j) => Slot::Node(j),
                });
            }
            let first = *info
                .input_shapes
                .first()
                .ok_or_else(|| internal(format!("{id} has no input")))?;
            let mut push_layer = |layer: Layer| {
                layers.push(layer);
                Kind::Layer(layers.len() - 1)
            };
            let kind = match &node.op {
                Op::Conv2d {
                    filters,
                    kernel,
                    stride,
                    padding,
                    dilation,
                    groups,
                    bias,
                } => {
                    let in_c = map_channels(id, first)?;
                    let (kernel, dilation) = (*kernel as usize, *dilation as usize);
                    let spec = ConvSpec {
                        in_c,
                        out_c: *filters as usize,
                        kernel,
                        stride: *stride as usize,
                        pad: resolve_padding(*padding, kernel, dilation),
                        dilation,
                        groups: *groups as usize,
                        bias: *bias,
                    };
                    push_layer(Layer::Conv(build_conv(&spec, node.init, device)))
                }
                Op::DepthwiseConv2d {
                    kernel,
                    stride,
                    padding,
                    dilation,
                    multiplier,
                    bias,
                } => {
                    let in_c = map_channels(id, first)?;
                    let (kernel, dilation) = (*kernel as usize, *dilation as usize);
                    let spec = ConvSpec {
                        in_c,
                        out_c: in_c * *multiplier as usize,
                        kernel,
                        stride: *stride as usize,
                        pad: resolve_padding(*padding, kernel, dilation),
                        dilation,
                        groups: in_c,
                        bias: *bias,
                    };
                    push_layer(Layer::Conv(build_conv(&spec, node.init, device)))
                }
                Op::SeparableConv2d {
                    filters,
                    kernel,
                    stride,
                    padding,
                    dilation,
                    bias,
                } => {
                    let in_c = map_channels(id, first)?;
                    let (kernel, dilation) = (*kernel as usize, *dilation as usize);
                    let depthwise = ConvSpec {
                        in_c,
                        out_c: in_c,
                        kernel,
                        stride: *stride as usize,
                        pad: resolve_padding(*padding, kernel, dilation),
                        dilation,
                        groups: in_c,
                        bias: false,
                    };
                    let pointwise = ConvSpec {
                        in_c,
                        out_c: *filters as usize,
                        kernel: 1,
                        stride: 1,
                        pad: 0,
                        dilation: 1,
                        groups: 1,
                        bias: *bias,
                    };
                    push_layer(Layer::Separable(SeparableConv {
                        depthwise: build_conv(&depthwise, node.init, device),
                        pointwise: build_conv(&pointwise, node.init, device),
                    }))
                }
                Op::BatchNorm { epsilon, momentum } => {
                    let features = first.channels();
                    push_layer(Layer::Norm(
                        BatchNormConfig::new(features)
                            .with_epsilon(*epsilon)
                            .with_momentum(*momentum)
                            .init(device),
                    ))
                }
                Op::Relu => Kind::Relu,
                Op::Gelu => Kind::Gelu,
                Op::Silu => Kind::Silu,
                Op::Sigmoid => Kind::Sigmoid,
                Op::Tanh => Kind::Tanh,
                Op::LeakyRelu { slope } => Kind::LeakyRelu(*slope),
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
                    map_channels(id, first)?;
                    let kernel = *kernel as usize;
                    let stride = stride.map_or(kernel, |s| s as usize);
                    let pad = resolve_padding(*padding, kernel, 1);
                    if matches!(node.op, Op::MaxPool { .. }) {
                        Kind::MaxPool {
                            kernel,
                            stride,
                            pad,
                        }
                    } else {
                        Kind::AvgPool {
                            kernel,
                            stride,
                            pad,
                        }
                    }
                }
                Op::GlobalAvgPool => {
                    map_channels(id, first)?;
                    Kind::GlobalAvgPool
                }
                Op::Flatten => Kind::Flatten,
                Op::Dense { units, bias } => {
                    let Shape::Vector { features: d_in } = first else {
                        return Err(internal(format!("{id}: dense on {first}")));
                    };
                    let units = *units as usize;
                    let mut config = LinearConfig::new(d_in, units).with_bias(*bias);
                    let chosen = initializer(node.init);
                    if let Some(i) = chosen.clone() {
                        config = config.with_initializer(i);
                    }
                    let mut dense = config.init(device);
                    if chosen.is_some() && *bias {
                        dense.bias = Some(Initializer::Zeros.init([units], device));
                    }
                    push_layer(Layer::Dense(dense))
                }
                Op::Dropout { rate } => {
                    push_layer(Layer::Dropout(DropoutConfig::new(*rate).init()))
                }
                Op::Add => Kind::Add,
                Op::Concat => Kind::Concat,
            };
            steps.push(Step {
                id: node.id.clone(),
                kind,
                inputs,
                l2: node.l2.filter(|l2| *l2 > 0.0),
                fused_relu: false,
                fused_pool: None,
            });
        }
        let mut plan = Plan::new(steps, task.input, task.classes, analysis.macs);
        plan.fuse_norm_relu(&layers);
        plan.fuse_pools(&layers);
        Ok(Self { layers, plan })
    }

    /// Runs the network on a batch of images `[batch, channels, height, width]` and returns the
    /// logits `[batch, classes]`.
    ///
    /// A small inference pass on the CPU ([`GraphModel::runs_on_one_thread`]) runs whole on one
    /// thread: split across threads op by op, its pieces are too small to pay for the hand-offs.
    /// The values are the same either way.
    pub fn forward(&self, images: Tensor<4>) -> Result<Tensor<2>, TrainError> {
        let serial = matches!(images.device().as_dispatch(), DispatchDevice::Flex(_))
            && self.runs_on_one_thread(images.dims()[0]);
        match serial.then(one_thread_pool).flatten() {
            Some(pool) => pool.install(|| self.forward_planned(images)),
            None => self.forward_planned(images),
        }
    }

    /// Whether an inference pass over `batch` images on the CPU (Flex, no autodiff) runs on one
    /// thread: when its work, `batch` times the network's multiply-accumulates per image, is at
    /// most [`SERIAL_FORWARD_MAX_MACS`].
    pub fn runs_on_one_thread(&self, batch: usize) -> bool {
        (batch as u64).saturating_mul(self.plan.macs_per_image) <= SERIAL_FORWARD_MAX_MACS
    }

    /// [`GraphModel::forward`] on the calling thread's rayon pool.
    fn forward_planned(&self, images: Tensor<4>) -> Result<Tensor<2>, TrainError> {
        let plan = &self.plan;
        let mut remaining = plan.uses.clone();
        let mut input_remaining = plan.input_uses;
        let mut input = Some(Value::Map(images));
        let mut values: Vec<Option<Value>> = (0..plan.steps.len()).map(|_| None).collect();
        for (i, step) in plan.steps.iter().enumerate() {
            let mut args = Vec::with_capacity(step.inputs.len());
            for slot in &step.inputs {
                let (cell, left) = match *slot {
                    Slot::Input => (&mut input, &mut input_remaining),
                    Slot::Node(j) => {
                        let (Some(cell), Some(left)) = (values.get_mut(j), remaining.get_mut(j))
                        else {
                            return Err(internal(format!("{} reads a missing node", step.id)));
                        };
                        (cell, left)
                    }
                };
                *left = left.saturating_sub(1);
                let value = if *left == 0 {
                    cell.take()
                } else {
                    cell.clone()
                };
                args.push(value.ok_or_else(|| internal(format!("{}: input freed", step.id)))?);
            }
            let out = self.apply(step, args)?;
            let Some(cell) = values.get_mut(i) else {
                return Err(internal(format!("{} has no value slot", step.id)));
            };
            *cell = Some(out);
        }
        match values.pop().flatten() {
            Some(Value::Vector(logits)) => Ok(logits),
            Some(Value::Map(map)) => Ok(map.flatten(1, 3)),
            None => Err(internal("no output")),
        }
    }

    fn apply(&self, step: &Step, args: Vec<Value>) -> Result<Value, TrainError> {
        let (out, pooled) = self.apply_op(step, args)?;
        Ok(match (step.fused_pool, out) {
            (Some(p), Value::Map(x)) if !pooled => {
                Value::Map(kernels::max_pool2d(x, p.kernel, p.stride, p.pad))
            }
            (Some(_), Value::Vector(_)) if !pooled => {
                return Err(internal(format!("{}: max pool fused on a vector", step.id)));
            }
            (_, out) => out,
        })
    }

    /// The step's own op; `true` with it when the op already ran the step's fused pooling.
    fn apply_op(&self, step: &Step, mut args: Vec<Value>) -> Result<(Value, bool), TrainError> {
        let bad = |what: &str| internal(format!("{}: {what}", step.id));
        if matches!(step.kind, Kind::Add | Kind::Concat) {
            let merged = merge(&step.kind, args).ok_or_else(|| bad("inputs of mixed kinds"))?;
            return Ok((merged, false));
        }
        let arg = args.pop().ok_or_else(|| bad("no input"))?;
        // A batch norm or convolution with a fused pooling runs it inside its kernel.
        let layer = match &step.kind {
            Kind::Layer(l) => self.layers.get(*l),
            _ => None,
        };
        let arg = match (layer, step.fused_pool, arg) {
            (Some(Layer::Norm(n)), Some(pool), Value::Map(x)) => {
                let y = kernels::batch_norm_max_pool(n, x, step.fused_relu, pool);
                return Ok((Value::Map(y), true));
            }
            (Some(Layer::Conv(c)), Some(pool), Value::Map(x)) => {
                let y = kernels::conv2d_max_pool(c, x, step.fused_relu, pool);
                return Ok((Value::Map(y), true));
            }
            (_, _, arg) => arg,
        };
        let out = match (&step.kind, arg) {
            (Kind::Layer(l), arg) => {
                let layer = self.layers.get(*l).ok_or_else(|| bad("missing layer"))?;
                match (layer, arg) {
                    (Layer::Conv(c), Value::Map(x)) if step.fused_relu => {
                        Value::Map(kernels::conv2d_relu(c, x))
                    }
                    (Layer::Conv(c), Value::Map(x)) => Value::Map(kernels::conv2d(c, x)),
                    (Layer::Separable(s), Value::Map(x)) => {
                        Value::Map(kernels::conv2d(&s.pointwise, s.depthwise.forward(x)))
                    }
                    (Layer::Norm(n), Value::Map(x)) => {
                        Value::Map(kernels::norm(n, x, step.fused_relu))
                    }
                    (Layer::Norm(n), Value::Vector(x)) => {
                        Value::Vector(kernels::norm(n, x, step.fused_relu))
                    }
                    (Layer::Dense(d), Value::Vector(x)) => Value::Vector(d.forward(x)),
                    (Layer::Dropout(d), Value::Map(x)) => Value::Map(d.forward(x)),
                    (Layer::Dropout(d), Value::Vector(x)) => Value::Vector(d.forward(x)),
                    _ => return Err(bad("layer applied to the wrong kind of input")),
                }
            }
            (Kind::Identity, v) => v,
            (Kind::Relu, v) => elementwise(v, activation::relu, activation::relu),
            (Kind::Gelu, v) => elementwise(v, activation::gelu, activation::gelu),
            (Kind::Silu, v) => elementwise(v, activation::silu, activation::silu),
            (Kind::Sigmoid, v) => elementwise(v, activation::sigmoid, activation::sigmoid),
            (Kind::Tanh, v) => elementwise(v, activation::tanh, activation::tanh),
            (Kind::LeakyRelu(s), v) => {
                let s = *s;
                elementwise(
                    v,
                    |x| activation::leaky_relu(x, s),
                    |x| activation::leaky_relu(x, s),
                )
            }
            (
                Kind::MaxPool {
                    kernel,
                    stride,
                    pad,
                },
                Value::Map(x),
            ) => Value::Map(kernels::max_pool2d(x, *kernel, *stride, *pad)),
            (
                Kind::AvgPool {
                    kernel,
                    stride,
                    pad,
                },
                Value::Map(x),
            ) => Value::Map(avg_pool2d(
                x,
                AvgPoolOptions::new([*kernel, *kernel])
                    .with_stride([*stride, *stride])
                    .with_padding([*pad, *pad])
                    .with_count_include_pad(false),
            )),
            (Kind::GlobalAvgPool, Value::Map(x)) => {
                let [b, c, _, _] = x.dims();
                Value::Vector(x.mean_dims(&[2, 3]).reshape([b, c]))
            }
            (Kind::Flatten, Value::Map(x)) => Value::Vector(x.flatten(1, 3)),
            (Kind::Flatten, v @ Value::Vector(_)) => v,
            _ => return Err(bad("op applied to the wrong kind of input")),
        };
        Ok((out, false))
    }

    /// Sets the filters of every `init = patch_whitening` convolution of `network` (the
    /// network this model was built from) from the patches of `set`, the training images,
    /// normalised with `norm` (see [`crate::whiten`]); biases start at zero. Other layers are
    /// untouched; a network without such a layer comes back as it was.
    pub fn whiten(
        mut self,
        network: &ValidatedGraph,
        set: &lemo_core::data::Dataset,
        norm: &lemo_core::data::Normalization,
    ) -> Result<Self, TrainError> {
        for (node, step) in network.graph().nodes.iter().zip(&self.plan.steps) {
            if node.init != Some(Init::PatchWhitening) {
                continue;
            }
            let (Kind::Layer(i), Op::Conv2d { kernel, .. }) = (&step.kind, &node.op) else {
                return Err(internal(format!(
                    "{}: patch_whitening on a non-convolution",
                    node.id
                )));
            };
            let Some(Layer::Conv(conv)) = self.layers.get_mut(*i) else {
                return Err(internal(format!("{}: no convolution layer", node.id)));
            };
            let [filters, in_c, k, _] = conv.weight.dims();
            if in_c != set.shape[0] || k != *kernel as usize {
                return Err(internal(format!(
                    "{}: patch_whitening weight {:?} does not read the {:?} images",
                    node.id,
                    conv.weight.dims(),
                    set.shape
                )));
            }
            let Some((rows, _)) = crate::whiten::whitening_filters(set, norm, k, filters) else {
                return Err(TrainError::Data(format!(
                    "{}: no {k}x{k} patch to whiten in the training images",
                    node.id
                )));
            };
            let device = conv.weight.device();
            let mut weight: Vec<f32> = conv
                .weight
                .val()
                .into_data()
                .try_to_vec::<f32>()
                .map_err(|e| internal(format!("{}: weight data: {e:?}", node.id)))?;
            if let Some(head) = weight.get_mut(..rows.len()) {
                head.copy_from_slice(&rows);
            }
            let tensor =
                Tensor::<4>::from_data(TensorData::new(weight, [filters, in_c, k, k]), &device);
            conv.weight = Param::from_tensor(tensor);
            if let Some(bias) = &conv.bias {
                let zeros = Tensor::<1>::zeros([filters], &bias.device());
                conv.bias = Some(Param::from_tensor(zeros));
            }
        }
        Ok(self)
    }

    /// Trainable parameters (conv and dense weights and biases, batch-norm gamma and beta) —
    /// lemo-arch's counting rule. burn's [`Module::num_params`] also counts the two running
    /// statistics of every batch norm.
    pub fn trainable_params(&self) -> u64 {
        let running: usize = self
            .layers
            .iter()
            .map(|l| match l {
                Layer::Norm(n) => 2 * n.gamma.lazy_shape().num_elements(),
                _ => 0,
            })
            .sum();
        (self.num_params() - running) as u64
    }

    /// Input image shape `[channels, height, width]`.
    pub fn input_shape(&self) -> [usize; 3] {
        self.plan.input
    }

    /// Number of classes (width of the logits).
    pub fn classes(&self) -> usize {
        self.plan.classes
    }

    /// Per-node L2 factors and the ids of the weights they apply to (kernels only, not biases nor
    /// batch norm: Keras' `kernel_regularizer`), one entry per node with `l2 > 0`.
    pub fn l2_weights(&self) -> Vec<(f64, Vec<ParamId>)> {
        let mut out = Vec::new();
        for step in &self.plan.steps {
            let (Some(l2), Kind::Layer(l)) = (step.l2, &step.kind) else {
                continue;
            };
            let ids = match self.layers.get(*l) {
                Some(Layer::Conv(c)) => vec![c.weight.id],
                Some(Layer::Separable(s)) => vec![s.depthwise.weight.id, s.pointwise.weight.id],
                Some(Layer::Dense(d)) => vec![d.weight.id],
                _ => Vec::new(),
            };
            if !ids.is_empty() {
                out.push((l2, ids));
            }
        }
        out
    }

    /// The deployment form: a validation-mode copy (no autodiff) with every batch norm that
    /// directly follows a convolution or dense layer (its only reader) folded into that layer's
    /// weights and bias, and every dropout removed. Outputs equal the validation-mode outputs of
    /// `self` up to float rounding.
    // i and j are positions of the plan's steps and l, p of its layers, the plan built from the
    // validated graph; `index` has one entry per layer.
    #[allow(clippy::indexing_slicing)]
    pub fn deployment_form(&self) -> Result<GraphModel, TrainError> {
        let valid = self.valid();
        let plan = &valid.plan;
        let mut layers: Vec<Option<Layer>> = valid.layers.into_iter().map(Some).collect();
        let mut steps = plan.steps.clone();
        for i in 0..steps.len() {
            let (Kind::Layer(l), [Slot::Node(j)]) = (&steps[i].kind, steps[i].inputs.as_slice())
            else {
                continue;
            };
            let (l, j) = (*l, *j);
            match layers.get(l) {
                Some(Some(Layer::Dropout(_))) => {
                    layers[l] = None;
                    steps[i].kind = Kind::Identity;
                    continue;
                }
                Some(Some(Layer::Norm(_))) => {}
                _ => continue,
            }
            // Fold only when the producer's output is read by this batch norm alone.
            if plan.uses.get(j) != Some(&1) {
                continue;
            }
            let Kind::Layer(p) = steps[j].kind else {
                continue;
            };
            let Some(Layer::Norm(bn)) = layers.get_mut(l).and_then(Option::take) else {
                continue;
            };
            let producer = layers.get_mut(p).and_then(Option::take);
            let folded = match producer {
                Some(Layer::Conv(c)) => Some(Layer::Conv(fold_conv(c, &bn))),
                Some(Layer::Separable(s)) => Some(Layer::Separable(SeparableConv {
                    depthwise: s.depthwise,
                    pointwise: fold_conv(s.pointwise, &bn),
                })),
                Some(Layer::Dense(d)) => Some(Layer::Dense(fold_dense(d, &bn))),
                other => {
                    // Not foldable: put both back untouched.
                    layers[p] = other;
                    layers[l] = Some(Layer::Norm(bn));
                    continue;
                }
            };
            layers[p] = folded;
            // A ReLU the batch norm ran inside it stays, as a step of its own, for the next pass.
            steps[i].kind = if steps[i].fused_relu {
                Kind::Relu
            } else {
                Kind::Identity
            };
            steps[i].fused_relu = false;
        }
        // Fuse each ReLU into the convolution feeding it (through folded batch norms), when
        // nothing else reads the values in between.
        for i in 0..steps.len() {
            let (Kind::Relu, [Slot::Node(first)]) = (&steps[i].kind, steps[i].inputs.as_slice())
            else {
                continue;
            };
            let mut j = *first;
            let conv = loop {
                if plan.uses.get(j) != Some(&1) {
                    break None;
                }
                match (&steps[j].kind, steps[j].inputs.as_slice()) {
                    (Kind::Identity, [Slot::Node(k)]) if steps[j].fused_pool.is_none() => j = *k,
                    (Kind::Layer(l), _) if matches!(layers.get(*l), Some(Some(Layer::Conv(_)))) => {
                        break Some(j);
                    }
                    _ => break None,
                }
            };
            // The ReLU's pooling (from a folded batch norm) moves with it: the pool commutes
            // with the ReLU, and nothing reads the values in between.
            if let Some(j) = conv
                && (steps[i].fused_pool.is_none() || steps[j].fused_pool.is_none())
            {
                steps[j].fused_relu = true;
                steps[j].fused_pool = steps[j].fused_pool.or(steps[i].fused_pool.take());
                steps[i].kind = Kind::Identity;
            }
        }
        // Compact the layers and renumber the steps.
        let mut index = vec![usize::MAX; layers.len()];
        let mut kept = Vec::new();
        for (old, layer) in layers.into_iter().enumerate() {
            if let Some(layer) = layer {
                index[old] = kept.len();
                kept.push(layer);
            }
        }
        for step in &mut steps {
            if let Kind::Layer(l) = step.kind {
                let new = index.get(l).copied().unwrap_or(usize::MAX);
                if new == usize::MAX {
                    return Err(internal(format!("{}: layer lost while folding", step.id)));
                }
                step.kind = Kind::Layer(new);
            }
        }
        Ok(GraphModel {
            layers: kept,
            plan: Plan::new(steps, plan.input, plan.classes, plan.macs_per_image),
        })
    }

    /// Number of steps that run the ReLU reading them inside them: batch norms in the training
    /// form, convolutions (through folded batch norms) in the deployment form.
    pub fn fused_activations(&self) -> usize {
        self.plan.steps.iter().filter(|s| s.fused_relu).count()
    }

    /// Number of steps that run the max pooling reading them inside them.
    pub fn fused_pools(&self) -> usize {
        self.plan
            .steps
            .iter()
            .filter(|s| s.fused_pool.is_some())
            .count()
    }

    /// Number of batch norms and dropouts left (0 and 0 in a fully folded deployment form).
    pub fn norm_and_dropout_layers(&self) -> (usize, usize) {
        let norms = self
            .layers
            .iter()
            .filter(|l| matches!(l, Layer::Norm(_)))
            .count();
        let drops = self
            .layers
            .iter()
            .filter(|l| matches!(l, Layer::Dropout(_)))
            .count();
        (norms, drops)
    }
}

impl Plan {
    fn new(steps: Vec<Step>, input: [usize; 3], classes: usize, macs_per_image: u64) -> Self {
        let mut uses = vec![0; steps.len()];
        let mut input_uses = 0;
        for step in &steps {
            for slot in &step.inputs {
                match *slot {
                    Slot::Input => input_uses += 1,
                    Slot::Node(j) => {
                        if let Some(u) = uses.get_mut(j) {
                            *u += 1;
                        }
                    }
                }
            }
        }
        if let Some(last) = uses.last_mut() {
            *last += 1;
        }
        Plan {
            steps,
            uses,
            input_uses,
            input,
            classes,
            macs_per_image,
        }
    }

    /// Runs each ReLU inside the batch norm it reads when nothing else reads that batch norm's
    /// output: the ReLU step becomes an identity and the batch norm's step applies it
    /// ([`kernels::batch_norm_relu`]). The values are those of the unfused plan.
    fn fuse_norm_relu(&mut self, layers: &[Layer]) {
        for i in 0..self.steps.len() {
            let Some(Step {
                kind: Kind::Relu,
                inputs,
                ..
            }) = self.steps.get(i)
            else {
                continue;
            };
            let [Slot::Node(j)] = inputs.as_slice() else {
                continue;
            };
            let j = *j;
            if self.uses.get(j) != Some(&1) {
                continue;
            }
            let norm = match self.steps.get(j) {
                Some(Step {
                    kind: Kind::Layer(l),
                    fused_relu: false,
                    ..
                }) => matches!(layers.get(*l), Some(Layer::Norm(_))),
                _ => false,
            };
            if !norm {
                continue;
            }
            if let Some(producer) = self.steps.get_mut(j) {
                producer.fused_relu = true;
            }
            if let Some(relu) = self.steps.get_mut(i) {
                relu.kind = Kind::Identity;
            }
        }
    }
}

impl Plan {
    /// Runs each max pooling inside the batch norm (through the ReLU fused into it) or the
    /// convolution it reads, when nothing else reads the values in between: the pooling step
    /// passes values through and the producer's step pools ([`kernels::batch_norm_max_pool`],
    /// [`kernels::conv2d_max_pool`]). The values and gradients are those of the unfused plan.
    fn fuse_pools(&mut self, layers: &[Layer]) {
        for i in 0..self.steps.len() {
            let Some(Step {
                kind:
                    Kind::MaxPool {
                        kernel,
                        stride,
                        pad,
                    },
                inputs,
                ..
            }) = self.steps.get(i)
            else {
                continue;
            };
            let pool = kernels::MaxPool {
                kernel: *kernel,
                stride: *stride,
                pad: *pad,
            };
            let [Slot::Node(first)] = inputs.as_slice() else {
                continue;
            };
            let mut j = *first;
            let producer = loop {
                if self.uses.get(j) != Some(&1) {
                    break None;
                }
                match self.steps.get(j) {
                    Some(Step {
                        kind: Kind::Identity,
                        inputs,
                        fused_pool: None,
                        ..
                    }) => match inputs.as_slice() {
                        [Slot::Node(k)] => j = *k,
                        _ => break None,
                    },
                    Some(Step {
                        kind: Kind::Layer(l),
                        fused_pool: None,
                        ..
                    }) if matches!(layers.get(*l), Some(Layer::Norm(_) | Layer::Conv(_))) => {
                        break Some(j);
                    }
                    _ => break None,
                }
            };
            let Some(j) = producer else {
                continue;
            };
            if let Some(producer) = self.steps.get_mut(j) {
                producer.fused_pool = Some(pool);
            }
            if let Some(step) = self.steps.get_mut(i) {
                step.kind = Kind::Identity;
            }
        }
    }
}

fn elementwise(
    v: Value,
    on_map: impl FnOnce(Tensor<4>) -> Tensor<4>,
    on_vec: impl FnOnce(Tensor<2>) -> Tensor<2>,
) -> Value {
    match v {
        Value::Map(x) => Value::Map(on_map(x)),
        Value::Vector(x) => Value::Vector(on_vec(x)),
    }
}

fn merge(kind: &Kind, args: Vec<Value>) -> Option<Value> {
    if matches!(args.first()?, Value::Map(_)) {
        let maps = args.into_iter().map(|v| match v {
            Value::Map(x) => Some(x),
            Value::Vector(_) => None,
        });
        Some(Value::Map(combine(kind, maps.collect::<Option<_>>()?)?))
    } else {
        let vecs = args.into_iter().map(|v| match v {
            Value::Vector(x) => Some(x),
            Value::Map(_) => None,
        });
        Some(Value::Vector(combine(kind, vecs.collect::<Option<_>>()?)?))
    }
}

/// Sum (`add`) or channel concatenation (`concat`) of same-kind values.
fn combine<const D: usize>(kind: &Kind, xs: Vec<Tensor<D>>) -> Option<Tensor<D>> {
    match kind {
        Kind::Add => xs.into_iter().reduce(|a, b| a + b),
        _ => Some(Tensor::cat(xs, 1)),
    }
}

/// Per-channel `scale = gamma / sqrt(var + eps)` and `shift = beta - mean * scale`.
fn bn_affine(bn: &BatchNorm) -> (Tensor<1>, Tensor<1>) {
    let scale = bn.gamma.val() / bn.running_var.value().add_scalar(bn.epsilon).sqrt();
    let shift = bn.beta.val() - bn.running_mean.value() * scale.clone();
    (scale, shift)
}

/// The bias of a layer with batch norm folded in: `bias * scale + shift` (no bias: `shift`).
fn fold_bias(bias: Option<&Param<Tensor<1>>>, scale: Tensor<1>, shift: Tensor<1>) -> Tensor<1> {
    match bias {
        Some(b) => b.val() * scale + shift,
        None => shift,
    }
}

fn fold_conv(conv: Conv2d, bn: &BatchNorm) -> Conv2d {
    let (scale, shift) = bn_affine(bn);
    let [out, ..] = conv.weight.dims();
    let weight = conv.weight.val() * scale.clone().reshape([out, 1, 1, 1]);
    let bias = fold_bias(conv.bias.as_ref(), scale, shift);
    Conv2d {
        weight: Param::from_tensor(weight),
        bias: Some(Param::from_tensor(bias)),
        stride: conv.stride,
        kernel_size: conv.kernel_size,
        dilation: conv.dilation,
        groups: conv.groups,
        padding: conv.padding,
    }
}

fn fold_dense(dense: Linear, bn: &BatchNorm) -> Linear {
    let (scale, shift) = bn_affine(bn);
    let [_, out] = dense.weight.dims();
    let weight = dense.weight.val() * scale.clone().reshape([1, out]);
    let bias = fold_bias(dense.bias.as_ref(), scale, shift);
    Linear {
        weight: Param::from_tensor(weight),
        bias: Some(Param::from_tensor(bias)),
    }
}
