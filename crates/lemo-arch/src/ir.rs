//! The architecture IR: a graph of named nodes in order.
//!
//! This is the contract between architects (an LLM or the offline architect), the trainer and
//! the reports. A node's input defaults to the previous node; `in` names other nodes for
//! branches; `"input"` is the image.

use serde::{Deserialize, Serialize};

/// The id that names the network's input image in a node's `in` list.
pub const INPUT_ID: &str = "input";

/// A network: named nodes in evaluation order. The last node's output is the logits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Graph {
    /// A short name for the network (free text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The nodes, in evaluation order.
    pub nodes: Vec<Node>,
}

/// One layer of the network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// Unique id of the node (not `"input"`).
    pub id: String,
    /// Ids of the nodes feeding this one; `None` means the previous node (or the input for the
    /// first node).
    #[serde(rename = "in", default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Vec<String>>,
    /// The operation and its hyper-parameters.
    #[serde(flatten)]
    pub op: Op,
    /// Weight initialiser for weighted ops (conv, dense); `None` keeps the trainer's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<Init>,
    /// L2 regularisation factor on this node's weights; `None` or 0 means none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l2: Option<f64>,
}

/// Spatial padding of a convolution or pooling window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Padding {
    /// `"same"` or `"valid"`.
    Named(PaddingMode),
    /// Explicit zero padding on every side, in pixels.
    Explicit(u32),
}

/// Named padding modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PaddingMode {
    /// Symmetric zero padding of `dilation * (kernel - 1) / 2` pixels per side (integer
    /// division): keeps the size for odd kernels at stride 1, as PyTorch's `padding="same"`.
    Same,
    /// No padding.
    #[default]
    Valid,
}

impl Default for Padding {
    fn default() -> Self {
        Padding::Named(PaddingMode::Valid)
    }
}

/// Weight initialisers (the AWI instruction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
}

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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
