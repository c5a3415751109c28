//! The architecture IR: a graph of named nodes in order.
//!
//! This is the contract between architects (an LLM or the offline architect), the trainer and
//! the reports. A node's input defaults to the previous node; `in` names other nodes for
//! branches; `"input"` is the image.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The id that names the network's input image in a node's `in` list.
pub const INPUT_ID: &str = "input";

/// A network: named nodes in evaluation order. The last node's output is the logits.
///
/// Deserialising is strict: unknown fields and ops are errors that name them ([`Graph::from_json`]
/// gives them as typed [`crate::ArchError`]s, [`crate::parse_answer`] reads whole LLM answers).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[schemars(
    deny_unknown_fields,
    description = "A neural network: named nodes in evaluation order; each node takes the previous node unless `in` names others (\"input\" is the image); the last node's output are the logits."
)]
pub struct Graph {
    /// A short name for the network (free text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The nodes, in evaluation order.
    pub nodes: Vec<Node>,
}

/// One layer of the network.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Node {
    /// Unique id of the node (not `"input"`).
    pub id: String,
    /// Ids of the nodes feeding this one; when absent, the previous node (the input image for
    /// the first node).
    #[serde(rename = "in", default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Vec<String>>,
    /// The operation and its hyper-parameters.
    #[serde(flatten)]
    pub op: Op,
    /// Weight initialiser of a conv or dense node; when absent, the trainer's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<Init>,
    /// L2 regularisation factor on a conv or dense node's weights; absent or 0 means none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l2: Option<f64>,
}

/// Spatial padding of a convolution or pooling window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Padding {
    /// `"same"` or `"valid"`.
    Named(PaddingMode),
    /// Explicit zero padding on every side, in pixels.
    Explicit(u32),
}

/// Named padding modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaddingMode {
    /// Symmetric zero padding of `dilation * (kernel - 1) / 2` pixels per side (integer
    /// division): keeps the size for odd kernels at stride 1, as PyTorch's `padding="same"`.
    Same,
    /// No padding.
    #[default]
    Valid,
}

impl Padding {
    /// Zero padding per side, in pixels, for a window of `kernel` with `dilation`: the one
    /// rule the validator's shape inference and the trainer's layers both use.
    pub fn pixels(&self, kernel: u32, dilation: u32) -> u64 {
        match self {
            Padding::Named(PaddingMode::Same) => {
                u64::from(dilation) * u64::from(kernel.saturating_sub(1)) / 2
            }
            Padding::Named(PaddingMode::Valid) => 0,
            Padding::Explicit(p) => u64::from(*p),
        }
    }
}

impl Default for Padding {
    fn default() -> Self {
        Padding::Named(PaddingMode::Valid)
    }
}

/// Weight initialisers (the AWI instruction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Init {
    /// He (Kaiming) normal: N(0, sqrt(2 / fan_in)).
    HeNormal,
    /// He (Kaiming) uniform.
    HeUniform,
    /// Glorot (Xavier) normal.
    GlorotNormal,
    /// Glorot (Xavier) uniform.
    GlorotUniform,
    /// LeCun normal: N(0, sqrt(1 / fan_in)).
    LecunNormal,
    /// Patch whitening (a conv2d reading "input" only): filters from the training images'
    /// patch statistics.
    // The trainer's rule (lemo_train::whiten): the eigenvectors v of the second moment of the
    // images' kernel x kernel patches, scaled by 1/sqrt(eigenvalue), as filter pairs +v, -v
    // (largest eigenvalue first); filters beyond twice the patch size start He normal.
    PatchWhitening,
}

/// The largest patch (`channels x kernel x kernel` values) that [`Init::PatchWhitening`]
/// whitens.
pub const MAX_WHITENED_PATCH: usize = 256;

/// Element-wise activations.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// max(0, x).
    Relu,
    /// Gaussian error linear unit.
    Gelu,
    /// x * sigmoid(x) (swish).
    Silu,
    /// 1 / (1 + e^-x).
    Sigmoid,
    /// Hyperbolic tangent.
    Tanh,
    /// x if x > 0 else slope * x.
    LeakyRelu,
}

fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}
fn default_leaky_slope() -> f64 {
    0.01
}
fn default_bn_epsilon() -> f64 {
    1e-5
}
fn default_bn_momentum() -> f64 {
    0.1
}

/// An operation with its hyper-parameters. Serialised with the tag `"op"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// 2-D convolution, square kernel.
    Conv2d {
        /// Output channels.
        filters: u32,
        /// Kernel side.
        kernel: u32,
        /// Stride (default 1).
        #[serde(default = "one")]
        stride: u32,
        /// Padding (default valid).
        #[serde(default)]
        padding: Padding,
        /// Dilation (default 1).
        #[serde(default = "one")]
        dilation: u32,
        /// Groups (default 1); both channel counts must divide by it.
        #[serde(default = "one")]
        groups: u32,
        /// Learn a bias (default true).
        #[serde(default = "yes")]
        bias: bool,
    },
    /// Depthwise 2-D convolution: one filter group per input channel.
    DepthwiseConv2d {
        /// Kernel side.
        kernel: u32,
        /// Stride (default 1).
        #[serde(default = "one")]
        stride: u32,
        /// Padding (default valid).
        #[serde(default)]
        padding: Padding,
        /// Dilation (default 1).
        #[serde(default = "one")]
        dilation: u32,
        /// Output channels per input channel (default 1).
        #[serde(default = "one")]
        multiplier: u32,
        /// Learn a bias (default true).
        #[serde(default = "yes")]
        bias: bool,
    },
    /// Separable convolution: depthwise `kernel`x`kernel` then pointwise 1x1 to `filters`.
    SeparableConv2d {
        /// Output channels.
        filters: u32,
        /// Kernel side of the depthwise part.
        kernel: u32,
        /// Stride (default 1).
        #[serde(default = "one")]
        stride: u32,
        /// Padding (default valid).
        #[serde(default)]
        padding: Padding,
        /// Dilation (default 1).
        #[serde(default = "one")]
        dilation: u32,
        /// Learn a bias on the pointwise part (default true).
        #[serde(default = "yes")]
        bias: bool,
    },
    /// Batch normalisation over channels (or features after flatten/dense).
    BatchNorm {
        /// Numerical stabiliser (default 1e-5).
        #[serde(default = "default_bn_epsilon")]
        epsilon: f64,
        /// Running-statistics momentum (default 0.1).
        #[serde(default = "default_bn_momentum")]
        momentum: f64,
    },
    /// ReLU.
    Relu,
    /// GELU.
    Gelu,
    /// SiLU (swish).
    Silu,
    /// Sigmoid.
    Sigmoid,
    /// Tanh.
    Tanh,
    /// Leaky ReLU.
    LeakyRelu {
        /// Negative slope (default 0.01).
        #[serde(default = "default_leaky_slope")]
        slope: f64,
    },
    /// Max pooling, square window.
    MaxPool {
        /// Window side.
        kernel: u32,
        /// Stride (default: the kernel).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stride: Option<u32>,
        /// Padding (default valid).
        #[serde(default)]
        padding: Padding,
    },
    /// Average pooling, square window.
    AvgPool {
        /// Window side.
        kernel: u32,
        /// Stride (default: the kernel).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stride: Option<u32>,
        /// Padding (default valid).
        #[serde(default)]
        padding: Padding,
    },
    /// Global average pooling: [C, H, W] to [C].
    GlobalAvgPool,
    /// Flatten: [C, H, W] to [C*H*W].
    Flatten,
    /// Fully connected layer.
    Dense {
        /// Output features.
        units: u32,
        /// Learn a bias (default true).
        #[serde(default = "yes")]
        bias: bool,
    },
    /// Dropout (training only).
    Dropout {
        /// Probability of zeroing an element, in [0, 1).
        rate: f64,
    },
    /// Element-wise sum of two or more inputs of equal shape (residual connection).
    Add,
    /// Concatenation of two or more inputs along channels (equal spatial size).
    Concat,
}

impl Op {
    /// The op's name as written in the IR (`"conv2d"`, `"max_pool"`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Op::Conv2d { .. } => "conv2d",
            Op::DepthwiseConv2d { .. } => "depthwise_conv2d",
            Op::SeparableConv2d { .. } => "separable_conv2d",
            Op::BatchNorm { .. } => "batch_norm",
            Op::Relu => "relu",
            Op::Gelu => "gelu",
            Op::Silu => "silu",
            Op::Sigmoid => "sigmoid",
            Op::Tanh => "tanh",
            Op::LeakyRelu { .. } => "leaky_relu",
            Op::MaxPool { .. } => "max_pool",
            Op::AvgPool { .. } => "avg_pool",
            Op::GlobalAvgPool => "global_avg_pool",
            Op::Flatten => "flatten",
            Op::Dense { .. } => "dense",
            Op::Dropout { .. } => "dropout",
            Op::Add => "add",
            Op::Concat => "concat",
        }
    }

    /// The activation this op applies, if it is an activation op.
    pub fn activation(&self) -> Option<Activation> {
        match self {
            Op::Relu => Some(Activation::Relu),
            Op::Gelu => Some(Activation::Gelu),
            Op::Silu => Some(Activation::Silu),
            Op::Sigmoid => Some(Activation::Sigmoid),
            Op::Tanh => Some(Activation::Tanh),
            Op::LeakyRelu { .. } => Some(Activation::LeakyRelu),
            _ => None,
        }
    }

    /// Whether the op has trainable weights (conv and dense kinds, batch norm).
    pub fn is_weighted(&self) -> bool {
        matches!(
            self,
            Op::Conv2d { .. }
                | Op::DepthwiseConv2d { .. }
                | Op::SeparableConv2d { .. }
                | Op::Dense { .. }
                | Op::BatchNorm { .. }
        )
    }

    /// Whether the op merges several inputs (add, concat).
    pub fn is_merge(&self) -> bool {
        matches!(self, Op::Add | Op::Concat)
    }

    /// Whether the op has a weight kernel (conv kinds, dense): the nodes where `init` and `l2`
    /// apply.
    pub fn has_kernel(&self) -> bool {
        matches!(
            self,
            Op::Conv2d { .. }
                | Op::DepthwiseConv2d { .. }
                | Op::SeparableConv2d { .. }
                | Op::Dense { .. }
        )
    }

    /// Whether the op is one of the convolutions (conv2d, depthwise, separable).
    pub fn is_conv(&self) -> bool {
        matches!(
            self,
            Op::Conv2d { .. } | Op::DepthwiseConv2d { .. } | Op::SeparableConv2d { .. }
        )
    }

    /// The fields an op takes besides the node's common ones (`id`, `in`, `op`, `init`, `l2`),
    /// by op name; `None` for an unknown op.
    pub fn fields_of(op_name: &str) -> Option<&'static [&'static str]> {
        Some(match op_name {
            "conv2d" => &[
                "filters", "kernel", "stride", "padding", "dilation", "groups", "bias",
            ],
            "depthwise_conv2d" => &[
                "kernel",
                "stride",
                "padding",
                "dilation",
                "multiplier",
                "bias",
            ],
            "separable_conv2d" => &["filters", "kernel", "stride", "padding", "dilation", "bias"],
            "batch_norm" => &["epsilon", "momentum"],
            "leaky_relu" => &["slope"],
            "max_pool" | "avg_pool" => &["kernel", "stride", "padding"],
            "dense" => &["units", "bias"],
            "dropout" => &["rate"],
            "relu" | "gelu" | "silu" | "sigmoid" | "tanh" | "global_avg_pool" | "flatten"
            | "add" | "concat" => &[],
            _ => return None,
        })
    }
}

/// Every op name of the IR, as written in the `op` field.
pub const OP_NAMES: [&str; 18] = [
    "conv2d",
    "depthwise_conv2d",
    "separable_conv2d",
    "batch_norm",
    "relu",
    "gelu",
    "silu",
    "sigmoid",
    "tanh",
    "leaky_relu",
    "max_pool",
    "avg_pool",
    "global_avg_pool",
    "flatten",
    "dense",
    "dropout",
    "add",
    "concat",
];

/// What an op takes and gives, by kind of value: a feature map `[C,H,W]` or a vector `[F]`.
/// [`Graph::validate`] is the judge; this summary lets a grammar write only well-typed chains
/// (a test checks that the two agree).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpSignature {
    /// Takes a feature map.
    pub on_map: bool,
    /// Takes a vector.
    pub on_vector: bool,
    /// Always gives a vector (`global_avg_pool`, `flatten`, `dense`); otherwise the kind it took.
    pub to_vector: bool,
    /// Merges several named inputs (`add`, `concat`).
    pub merge: bool,
}

/// The [`OpSignature`] of an op name of [`OP_NAMES`]; `None` for any other name.
pub fn op_signature(op: &str) -> Option<OpSignature> {
    let sig = |on_map, on_vector, to_vector, merge| {
        Some(OpSignature {
            on_map,
            on_vector,
            to_vector,
            merge,
        })
    };
    match op {
        "conv2d" | "depthwise_conv2d" | "separable_conv2d" | "max_pool" | "avg_pool" => {
            sig(true, false, false, false)
        }
        "batch_norm" | "relu" | "gelu" | "silu" | "sigmoid" | "tanh" | "leaky_relu" | "dropout" => {
            sig(true, true, false, false)
        }
        "global_avg_pool" => sig(true, false, true, false),
        "flatten" => sig(true, true, true, false),
        "dense" => sig(false, true, true, false),
        "add" | "concat" => sig(true, true, false, true),
        _ => None,
    }
}

/// The fields every node may carry, whatever its op.
pub const NODE_FIELDS: [&str; 5] = ["id", "in", "op", "init", "l2"];

fn fmt_padding(p: &Padding) -> String {
    match p {
        Padding::Named(PaddingMode::Same) => " same".to_string(),
        Padding::Named(PaddingMode::Valid) => String::new(),
        Padding::Explicit(0) => String::new(),
        Padding::Explicit(n) => format!(" pad {n}"),
    }
}

fn fmt_stride(s: u32) -> String {
    if s == 1 {
        String::new()
    } else {
        format!(" /{s}")
    }
}

impl std::fmt::Display for Op {
    /// A compact description, e.g. `conv2d 64 3x3 /2 same`, `dense 100`, `dropout 0.3`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = self.name();
        match self {
            Op::Conv2d {
                filters,
                kernel,
                stride,
                padding,
                dilation,
                groups,
                bias,
            } => {
                write!(
                    f,
                    "{name} {filters} {kernel}x{kernel}{}{}",
                    fmt_stride(*stride),
                    fmt_padding(padding)
                )?;
                if *dilation != 1 {
                    write!(f, " dil {dilation}")?;
                }
                if *groups != 1 {
                    write!(f, " groups {groups}")?;
                }
                if !bias {
                    write!(f, " no-bias")?;
                }
                Ok(())
            }
            Op::DepthwiseConv2d {
                kernel,
                stride,
                padding,
                dilation,
                multiplier,
                bias,
            } => {
                write!(
                    f,
                    "{name} {kernel}x{kernel}{}{}",
                    fmt_stride(*stride),
                    fmt_padding(padding)
                )?;
                if *dilation != 1 {
                    write!(f, " dil {dilation}")?;
                }
                if *multiplier != 1 {
                    write!(f, " x{multiplier}")?;
                }
                if !bias {
                    write!(f, " no-bias")?;
                }
                Ok(())
            }
            Op::SeparableConv2d {
                filters,
                kernel,
                stride,
                padding,
                dilation,
                bias,
            } => {
                write!(
                    f,
                    "{name} {filters} {kernel}x{kernel}{}{}",
                    fmt_stride(*stride),
                    fmt_padding(padding)
                )?;
                if *dilation != 1 {
                    write!(f, " dil {dilation}")?;
                }
                if !bias {
                    write!(f, " no-bias")?;
                }
                Ok(())
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
                write!(f, "{name} {kernel}x{kernel}")?;
                if let Some(s) = stride.filter(|s| s != kernel) {
                    write!(f, " /{s}")?;
                }
                write!(f, "{}", fmt_padding(padding))
            }
            Op::Dense { units, bias } => {
                write!(f, "{name} {units}{}", if *bias { "" } else { " no-bias" })
            }
            Op::Dropout { rate } => write!(f, "{name} {rate}"),
            Op::LeakyRelu { slope } => write!(f, "{name} {slope}"),
            _ => f.write_str(name),
        }
    }
}

/// The shape of one image's activation at a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Shape {
    /// A feature map: channels, height, width.
    Map {
        /// Channels.
        c: usize,
        /// Height.
        h: usize,
        /// Width.
        w: usize,
    },
    /// A feature vector.
    Vector {
        /// Features.
        features: usize,
    },
}

impl Shape {
    /// Number of elements per image.
    pub fn numel(&self) -> usize {
        match *self {
            Shape::Map { c, h, w } => c * h * w,
            Shape::Vector { features } => features,
        }
    }

    /// Channels of a map, features of a vector.
    pub fn channels(&self) -> usize {
        match *self {
            Shape::Map { c, .. } => c,
            Shape::Vector { features } => features,
        }
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shape::Map { c, h, w } => write!(f, "[{c},{h},{w}]"),
            Shape::Vector { features } => write!(f, "[{features}]"),
        }
    }
}

/// What the network is for: its input image shape and number of classes, plus the user's
/// budgets, all checked before anything is allocated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Input image shape `[channels, height, width]`.
    pub input: [usize; 3],
    /// Number of classes (the width of the logits).
    pub classes: usize,
    /// Budgets on the network's size and cost.
    #[serde(default)]
    pub limits: Limits,
}

/// Budgets set by the user; `None` means unbounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Limits {
    /// Maximum trainable parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_params: Option<u64>,
    /// Maximum multiply-accumulates per image (forward pass).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_macs: Option<u64>,
    /// Maximum activation memory per image in bytes (f32, sum over nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_activation_bytes: Option<u64>,
}

/// Where a node's input comes from, once resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Source {
    /// The network's input image.
    Input,
    /// The output of the node at this index of [`Graph::nodes`].
    Node(usize),
}

/// A node after validation: resolved inputs, inferred output shape and its costs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Resolved inputs, in the order written.
    pub inputs: Vec<Source>,
    /// Shapes of those inputs.
    pub input_shapes: Vec<Shape>,
    /// Output shape per image.
    pub output: Shape,
    /// Trainable parameters of this node (exactly what the trainer allocates).
    pub params: u64,
    /// Multiply-accumulates per image.
    pub macs: u64,
}

/// The result of validating a graph for a task: every node resolved and counted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    /// One entry per node, same order as [`Graph::nodes`].
    pub nodes: Vec<NodeInfo>,
    /// Total trainable parameters.
    pub params: u64,
    /// Total multiply-accumulates per image (forward).
    pub macs: u64,
    /// Activation memory per image in bytes (f32 outputs of every node, input included).
    pub activation_bytes: u64,
    /// Size of the weights in bytes (f32), excluding batch-norm running statistics.
    pub model_bytes: u64,
}
