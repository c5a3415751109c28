//! lemo-train's own CPU kernels for the hot spots of training, plugged into burn.
//!
//! burn's Flex backend runs every dense convolution by converting NCHW to NHWC on one thread,
//! building im2col tiles of 512 pixels, one small gemm per tile and a transposing scatter back,
//! and its backward pass through transposed convolutions (docs/performance.md). The convolution
//! here keeps NCHW end to end (im2col per image, one gemm per image whose output *is* the NCHW
//! plane block) and registers its own backward step with burn's autodiff graph, so training
//! stays a burn training loop (same modules, optimiser, records) with a faster convolution.
//!
//! Only dense (groups = 1) `f32` convolutions on the Flex backend take this path; everything
//! else (depthwise, GPU backends, other dtypes) goes to burn's own `conv2d` unchanged.

pub mod batch_norm;
pub mod conv;
pub mod pool;
mod quad;
pub mod winograd;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    Autodiff, AutodiffBackend, Backend, DispatchKindConversion, DispatchTensor, Flex,
};
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, PaddingConfig2d};
use burn::tensor::{DType, Shape, Tensor, TensorData};

use batch_norm::{Affine, NormShape};
use conv::ConvGeometry;
use pool::PoolGeometry;

/// `sum(f(a[i], b[i]))` over two equal-length slices with 16 independent lanes, so the
/// compiler vectorises it; the lanes are added in `f64`.
// l < LANES, the length of `acc` and of every chunks_exact(LANES) chunk (kept for vectorisation).
#[allow(clippy::indexing_slicing)]
pub(crate) fn lane_sum(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f64 {
    const LANES: usize = 16;
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (xa, xb) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += f(xa[l], xb[l]);
        }
    }
    let tail: f64 = ra.iter().zip(rb).map(|(&x, &y)| f(x, y) as f64).sum();
    acc.iter().map(|&v| v as f64).sum::<f64>() + tail
}

/// Two sums in one pass, `(sum(f(a[i], b[i]).0), sum(f(a[i], b[i]).1))`, vectorised as
/// [`lane_sum`] is.
// l < LANES, the length of both accumulators and of every chunks_exact(LANES) chunk.
#[allow(clippy::indexing_slicing)]
pub(crate) fn lane_sum2(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> (f32, f32)) -> (f64, f64) {
    const LANES: usize = 16;
    let (mut p, mut q) = ([0.0f32; LANES], [0.0f32; LANES]);
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (xa, xb) in ca.zip(cb) {
        for l in 0..LANES {
            let (u, v) = f(xa[l], xb[l]);
            p[l] += u;
            q[l] += v;
        }
    }
    let (mut tp, mut tq) = (0.0f64, 0.0f64);
    for (&x, &y) in ra.iter().zip(rb) {
        let (u, v) = f(x, y);
        tp += u as f64;
        tq += v as f64;
    }
    let total = |acc: [f32; LANES]| acc.iter().map(|&v| v as f64).sum::<f64>();
    (total(p) + tp, total(q) + tq)
}

/// Differentiable autodiff backend whose float primitives are Flex tensors.
type FlexAd = Autodiff<Flex, NoCheckpointing>;

/// The contiguous `f32` elements of a Flex tensor (copied only if it is not contiguous).
// contiguous_offsets is a range inside the tensor's storage.
#[allow(clippy::indexing_slicing)]
fn f32_elements(t: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    match t.layout().contiguous_offsets() {
        Some((start, end)) => std::borrow::Cow::Borrowed(&t.storage::<f32>()[start..end]),
        None => {
            let c = t.to_contiguous();
            let v = match c.layout().contiguous_offsets() {
                Some((start, end)) => c.storage::<f32>()[start..end].to_vec(),
                None => c.into_data().try_to_vec::<f32>().unwrap_or_default(),
            };
            std::borrow::Cow::Owned(v)
        }
    }
}

fn flex_tensor(values: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, Shape::from(shape)))
}

fn conv_forward(
    g: &ConvGeometry,
    x: &FlexTensor,
    w: &FlexTensor,
    b: Option<&FlexTensor>,
    relu: bool,
) -> FlexTensor {
    let [oh, ow] = g.output().unwrap_or([0, 0]);
    let bias = b.map(f32_elements);
    let y = conv::forward(g, &f32_elements(x), &f32_elements(w), bias.as_deref(), relu);
    flex_tensor(y, vec![g.batch, g.c_out, oh, ow])
}

/// A float primitive of the autodiff backend on Flex.
type AdPrimitive = FloatTensor<FlexAd>;

/// Registers a prepared step's output: with its backward `state` when the graph tracks it,
/// as a plain value otherwise (the state is then dropped).
fn finish<S: Backward<Flex, N>, const N: usize>(
    kind: OpsKind<S, Flex, S::State, NoCheckpointing, N>,
    state: S::State,
    output: FlexTensor,
) -> AdPrimitive {
    match kind {
        OpsKind::Tracked(prep) => prep.finish(state, output),
        OpsKind::UnTracked(prep) => prep.finish(output),
    }
}

/// Parents' ids of one convolution node, `None` where no gradient is needed.
struct Parents {
    x: Option<burn::backend::autodiff::NodeId>,
    weight: Option<burn::backend::autodiff::NodeId>,
    bias: Option<burn::backend::autodiff::NodeId>,
}

fn conv_backward(parents: Parents, dy: FlexTensor, state: ConvState, grads: &mut Gradients) {
    let (x, w, g, pool) = state;
    let (xs, ws, dys) = (f32_elements(&x), f32_elements(&w), f32_elements(&dy));
    let need_x = parents.x.is_some();
    let r = match &pool {
        Some(argmax) => conv::backward_max_pool(&g, &xs, &ws, (&dys, argmax), need_x),
        None => conv::backward(&g, &xs, &ws, &dys, need_x),
    };
    if let (Some(id), Some(dx)) = (parents.x, r.x) {
        grads.register::<Flex>(id, flex_tensor(dx, vec![g.batch, g.c_in, g.h, g.w]));
    }
    if let Some(id) = parents.weight {
        let shape = vec![g.c_out, g.c_in, g.kernel[0], g.kernel[1]];
        grads.register::<Flex>(id, flex_tensor(r.weight, shape));
    }
    if let Some(id) = parents.bias {
        grads.register::<Flex>(id, flex_tensor(r.bias, vec![g.c_out]));
    }
}

#[derive(Debug)]
struct ConvWithBias;
#[derive(Debug)]
struct ConvNoBias;

/// A convolution step's backward state: input, weight, geometry, and the arg-maxes of the 2x2
/// max pooling that ran inside it, if one did.
type ConvState = (FlexTensor, FlexTensor, ConvGeometry, Option<Vec<u32>>);

impl Backward<Flex, 3> for ConvWithBias {
    type State = ConvState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x, weight, bias] = ops.parents;
        let parents = Parents {
            x: x.map(|n| n.id),
            weight: weight.map(|n| n.id),
            bias: bias.map(|n| n.id),
        };
        let dy = grads.consume::<Flex>(&ops.node);
        conv_backward(parents, dy, ops.state, grads);
    }
}

impl Backward<Flex, 2> for ConvNoBias {
    type State = ConvState;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x, weight] = ops.parents;
        let parents = Parents {
            x: x.map(|n| n.id),
            weight: weight.map(|n| n.id),
            bias: None,
        };
        let dy = grads.consume::<Flex>(&ops.node);
        conv_backward(parents, dy, ops.state, grads);
    }
}

/// The forward pass of one convolution on Flex tensors: `[n, c_out, oh, ow]`, or with `pool` its
/// 2x2, stride-2 max pooling `[n, c_out, oh / 2, ow / 2]` and the arg-maxes.
fn conv_forward_step(
    g: &ConvGeometry,
    (x, w, b): (&FlexTensor, &FlexTensor, Option<&FlexTensor>),
    relu: bool,
    pool: bool,
) -> (FlexTensor, Option<Vec<u32>>) {
    if !pool {
        return (conv_forward(g, x, w, b, relu), None);
    }
    let [oh, ow] = g.output().unwrap_or([0, 0]);
    let bias = b.map(f32_elements);
    let (xs, ws) = (f32_elements(x), f32_elements(w));
    let f = conv::forward_max_pool(g, &xs, &ws, bias.as_deref(), relu);
    let y = flex_tensor(f.output, vec![g.batch, g.c_out, oh / 2, ow / 2]);
    (y, Some(f.argmax))
}

/// The autodiff convolution on Flex (followed by its output's 2x2, stride-2 max pooling when
/// `pool`): forward with [`conv::forward`] or [`conv::forward_max_pool`], backward registered
/// as one graph step computing all three gradients.
fn conv_autodiff(
    g: ConvGeometry,
    x: AdPrimitive,
    w: AdPrimitive,
    b: Option<AdPrimitive>,
    pool: bool,
) -> AdPrimitive {
    match b {
        Some(b) => {
            let kind = ConvWithBias
                .prepare::<NoCheckpointing>([x.node(), w.node(), b.node()])
                .compute_bound()
                .stateful();
            let (x, w, b) = (FlexAd::inner(x), FlexAd::inner(w), FlexAd::inner(b));
            let (y, argmax) = conv_forward_step(&g, (&x, &w, Some(&b)), false, pool);
            finish(kind, (x, w, g, argmax), y)
        }
        None => {
            let kind = ConvNoBias
                .prepare::<NoCheckpointing>([x.node(), w.node()])
                .compute_bound()
                .stateful();
            let (x, w) = (FlexAd::inner(x), FlexAd::inner(w));
            let (y, argmax) = conv_forward_step(&g, (&x, &w, None), false, pool);
            finish(kind, (x, w, g, argmax), y)
        }
    }
}

/// The geometry of `conv` applied to an input of shape `[n, c, h, w]`, or `None` when the fast
/// path does not apply (grouped convolution, or a kernel that does not fit: burn reports that).
fn geometry(conv: &Conv2d, dims: [usize; 4]) -> Option<ConvGeometry> {
    let [batch, c_in, h, w] = dims;
    let [c_out, c_in_w, kh, kw] = conv.weight.dims();
    if conv.groups != 1 || c_in_w != c_in {
        return None;
    }
    let (top, left, bottom, right) = match conv.padding {
        PaddingConfig2d::Explicit(top, left, bottom, right) => (top, left, bottom, right),
        PaddingConfig2d::Valid => (0, 0, 0, 0),
        // `Same` depends on the input size: burn's own path computes it.
        _ => return None,
    };
    let g = ConvGeometry {
        batch,
        c_in,
        h,
        w,
        c_out,
        kernel: [kh, kw],
        stride: conv.stride,
        pad_begin: [top, left],
        pad_end: [bottom, right],
        dilation: conv.dilation,
    };
    g.output().map(|_| g)
}

/// The backend-`B` primitives of a convolution's input, weight and bias, when all of them are
/// `f32` and live on `B` (`None` sends the caller to burn's own path).
#[allow(clippy::type_complexity)]
fn conv_operands<B: Backend>(
    conv: &Conv2d,
    x: &Tensor<4>,
) -> Option<(FloatTensor<B>, FloatTensor<B>, Option<FloatTensor<B>>)>
where
    DispatchTensor: DispatchKindConversion<B>,
{
    let xp = f32_primitive::<B, 4>(x.clone())?;
    let wp = f32_primitive::<B, 4>(conv.weight.val())?;
    let bp = match &conv.bias {
        Some(b) => Some(f32_primitive::<B, 1>(b.val())?),
        None => None,
    };
    Some((xp, wp, bp))
}

/// The backend-`B` primitive of an `f32` tensor that lives on `B`.
fn f32_primitive<B: Backend, const D: usize>(t: Tensor<D>) -> Option<FloatTensor<B>>
where
    DispatchTensor: DispatchKindConversion<B>,
{
    if t.dtype() != DType::F32 {
        return None;
    }
    t.try_into_primitive::<B>().ok()
}

/// `conv.forward(x)`, through lemo-train's convolution where it applies (dense `f32`
/// convolution on the Flex backend, with or without autodiff), through burn's otherwise.
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let Some(g) = geometry(conv, x.dims()) else {
        return conv.forward(x);
    };
    // Training: an autodiff tensor on Flex.
    if let Some((xp, wp, bp)) = conv_operands::<FlexAd>(conv, &x) {
        return Tensor::from_primitive::<FlexAd>(conv_autodiff(g, xp, wp, bp, false));
    }
    // Inference: a plain Flex tensor.
    if let Some((xp, wp, bp)) = conv_operands::<Flex>(conv, &x) {
        return Tensor::from_primitive::<Flex>(conv_forward(&g, &xp, &wp, bp.as_ref(), false));
    }
    conv.forward(x)
}

/// `relu(conv.forward(x))`. For inference on Flex (no autodiff) the ReLU is applied inside the
/// convolution's output pass, saving a pass over the activation; elsewhere it is
/// [`conv2d`] followed by burn's `relu`.
pub fn conv2d_relu(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    if !x.device().is_autodiff()
        && let Some(g) = geometry(conv, x.dims())
        && let Some((xp, wp, bp)) = conv_operands::<Flex>(conv, &x)
    {
        return Tensor::from_primitive::<Flex>(conv_forward(&g, &xp, &wp, bp.as_ref(), true));
    }
    burn::tensor::activation::relu(conv2d(conv, x))
}

/// `max_pool(relu?(conv.forward(x)))`. When the pooling is 2x2 with stride 2 and no padding
/// and the convolution takes lemo-train's path on Flex, the pooling runs inside the
/// convolution (in the Winograd output pass and gradient transform where that path applies:
/// the full output and its gradient are never written); elsewhere it is [`conv2d`] (or
/// [`conv2d_relu`]) followed by [`max_pool2d`].
pub fn conv2d_max_pool(conv: &Conv2d, x: Tensor<4>, relu: bool, pool: MaxPool) -> Tensor<4> {
    let fused = (pool.kernel, pool.stride, pool.pad) == (2, 2, 0);
    if let Some(g) = geometry(conv, x.dims()).filter(|g| fused && conv::output_pool(g).is_some()) {
        if x.device().is_autodiff() {
            // Training: no convolution carries a ReLU (it runs inside the batch norm after it).
            if !relu && let Some((xp, wp, bp)) = conv_operands::<FlexAd>(conv, &x) {
                return Tensor::from_primitive::<FlexAd>(conv_autodiff(g, xp, wp, bp, true));
            }
        } else if let Some((xp, wp, bp)) = conv_operands::<Flex>(conv, &x) {
            let (y, _) = conv_forward_step(&g, (&xp, &wp, bp.as_ref()), relu, true);
            return Tensor::from_primitive::<Flex>(y);
        }
    }
    let y = if relu {
        conv2d_relu(conv, x)
    } else {
        conv2d(conv, x)
    };
    max_pool2d(y, pool.kernel, pool.stride, pool.pad)
}

#[derive(Debug)]
struct BatchNormStep;

/// What one batch-norm step's backward pass needs.
#[derive(Debug, Clone)]
struct NormState {
    /// The input and gamma.
    x: FlexTensor,
    gamma: FlexTensor,
    /// Batch mean and biased variance per channel, and epsilon.
    mean: Vec<f32>,
    variance: Vec<f32>,
    epsilon: f64,
    shape: NormShape,
    /// The input's dims.
    dims: Vec<usize>,
    /// The output pass's affine when a ReLU ran inside it.
    relu: Option<Affine>,
    /// The arg-maxes (and pooled values per plane) when a max pooling ran inside it.
    pool: Option<(Vec<u32>, usize)>,
}

impl Backward<Flex, 3> for BatchNormStep {
    type State = NormState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x, gamma, beta] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let st = ops.state;
        let dy = f32_elements(&dy);
        let upstream = match &st.pool {
            Some((argmax, pooled)) => batch_norm::Upstream::Pooled {
                dy: &dy,
                argmax,
                pooled: *pooled,
            },
            None => batch_norm::Upstream::Full(&dy),
        };
        let r = batch_norm::backward(
            &st.shape,
            &f32_elements(&st.x),
            &f32_elements(&st.gamma),
            &st.mean,
            &st.variance,
            st.epsilon,
            upstream,
            st.relu.as_ref(),
            x.is_some(),
        );
        let channels = st.shape.channels;
        if let (Some(node), Some(dx)) = (x, r.x) {
            grads.register::<Flex>(node.id, flex_tensor(dx, st.dims));
        }
        if let Some(node) = gamma {
            grads.register::<Flex>(node.id, flex_tensor(r.gamma, vec![channels]));
        }
        if let Some(node) = beta {
            grads.register::<Flex>(node.id, flex_tensor(r.beta, vec![channels]));
        }
    }
}

/// Training-mode batch norm (followed by a ReLU when `relu`, then by the max pooling `pool` of
/// every plane when given) as one autodiff step; returns the output and the batch statistics.
fn batch_norm_autodiff(
    shape: NormShape,
    dims: Vec<usize>,
    epsilon: f64,
    (relu, pool): (bool, Option<PoolGeometry>),
    [x, gamma, beta]: [AdPrimitive; 3],
) -> (AdPrimitive, Vec<f32>, Vec<f32>) {
    let kind = BatchNormStep
        .prepare::<NoCheckpointing>([x.node(), gamma.node(), beta.node()])
        .compute_bound()
        .stateful();
    let (x, g, b) = (FlexAd::inner(x), FlexAd::inner(gamma), FlexAd::inner(beta));
    let (xs, gs, bs) = (f32_elements(&x), f32_elements(&g), f32_elements(&b));
    let (f, out_dims, pooled) = match pool.and_then(|p| Some((p, p.output()?))) {
        Some((p, [oh, ow])) => {
            let (f, argmax) = batch_norm::forward_pooled(&shape, &xs, &gs, &bs, epsilon, relu, &p);
            let out_dims = vec![shape.batch, shape.channels, oh, ow];
            (f, out_dims, Some((argmax, oh * ow)))
        }
        None => {
            let f = batch_norm::forward(&shape, &xs, &gs, &bs, epsilon, relu);
            (f, dims.clone(), None)
        }
    };
    drop((xs, gs, bs));
    let batch_norm::NormForward {
        output,
        mean,
        variance,
        affine,
    } = f;
    let state = NormState {
        x,
        gamma: g,
        mean: mean.clone(),
        variance: variance.clone(),
        epsilon,
        shape,
        dims,
        relu: relu.then_some(affine),
        pool: pooled,
    };
    (
        finish(kind, state, flex_tensor(output, out_dims)),
        mean,
        variance,
    )
}

/// `bn.forward(x)`, through lemo-train's batch norm in training mode on Flex (statistics,
/// output and backward without layout copies; running statistics updated as burn does), through
/// burn's otherwise (inference, GPU backends, other dtypes).
pub fn batch_norm<const D: usize>(bn: &BatchNorm, x: Tensor<D>) -> Tensor<D> {
    norm(bn, x, false)
}

/// `relu(bn.forward(x))`. In training mode on Flex the ReLU runs inside the batch norm's output
/// pass and its backward step inside the batch norm's (no pass, no buffer of its own); elsewhere
/// it is [`batch_norm`] followed by burn's `relu`.
pub fn batch_norm_relu<const D: usize>(bn: &BatchNorm, x: Tensor<D>) -> Tensor<D> {
    norm(bn, x, true)
}

/// [`batch_norm_relu`] when `relu`, else [`batch_norm`]: for callers that decide per step.
pub(crate) fn norm<const D: usize>(bn: &BatchNorm, x: Tensor<D>, relu: bool) -> Tensor<D> {
    match norm_step(bn, &x, relu, None) {
        Some(y) => y,
        None => {
            let y = bn.forward(x);
            if relu {
                burn::tensor::activation::relu(y)
            } else {
                y
            }
        }
    }
}

/// A max pooling's square kernel, stride and symmetric padding (dilation 1, floor mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxPool {
    /// Kernel side.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Padding on every side.
    pub pad: usize,
}

/// `max_pool(relu?(bn.forward(x)))`. In training mode on Flex the pooling runs inside the batch
/// norm's output pass (only the pooled map is written) and its backward step inside the batch
/// norm's (each plane's gradient rebuilt in the cache); elsewhere it is [`norm`] followed by
/// [`max_pool2d`].
pub fn batch_norm_max_pool(bn: &BatchNorm, x: Tensor<4>, relu: bool, pool: MaxPool) -> Tensor<4> {
    let [n, c, h, w] = x.dims();
    let g = PoolGeometry {
        planes: n * c,
        h,
        w,
        kernel: pool.kernel,
        stride: pool.stride,
        pad: pool.pad,
    };
    if g.output().is_some()
        && let Some(y) = norm_step(bn, &x, relu, Some(g))
    {
        return y;
    }
    max_pool2d(norm(bn, x, relu), pool.kernel, pool.stride, pool.pad)
}

/// lemo-train's training-mode batch norm step (ReLU when `relu`, pooling when `pool`), or
/// `None` when it does not apply (inference, another backend or dtype, a shape mismatch).
fn norm_step<const D: usize>(
    bn: &BatchNorm,
    x: &Tensor<D>,
    relu: bool,
    pool: Option<PoolGeometry>,
) -> Option<Tensor<D>> {
    let training = x.device().is_autodiff() && bn.training.is_enabled();
    let dims = x.dims();
    let [channels] = bn.gamma.dims();
    if !training || D < 2 || dims[1] != channels || (pool.is_some() && D != 4) {
        return None;
    }
    let shape = NormShape {
        batch: dims[0],
        channels,
        spatial: dims[2..].iter().product(),
    };
    let device = x.device();
    let prims = (
        f32_primitive::<FlexAd, D>(x.clone()),
        f32_primitive::<FlexAd, 1>(bn.gamma.val()),
        f32_primitive::<FlexAd, 1>(bn.beta.val()),
    );
    let (Some(xp), Some(gp), Some(bp)) = prims else {
        return None;
    };
    let (out, mean, variance) =
        batch_norm_autodiff(shape, dims.to_vec(), bn.epsilon, (relu, pool), [xp, gp, bp]);
    let stat = |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v, [channels]), &device);
    let update = |running: Tensor<1>, batch: Vec<f32>| {
        running
            .to_device(&device)
            .mul_scalar(1.0 - bn.momentum)
            .add(stat(batch).mul_scalar(bn.momentum))
            .detach()
    };
    bn.running_mean
        .update(update(bn.running_mean.value_sync(), mean));
    bn.running_var
        .update(update(bn.running_var.value_sync(), variance));
    Some(Tensor::from_primitive::<FlexAd>(out))
}

#[derive(Debug)]
struct MaxPoolStep;

impl Backward<Flex, 1> for MaxPoolStep {
    type State = (Vec<u32>, PoolGeometry, [usize; 4]);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (argmax, g, dims) = ops.state;
        if let Some(node) = x {
            let dx = pool::backward(&g, &argmax, &f32_elements(&dy));
            grads.register::<Flex>(node.id, flex_tensor(dx, dims.to_vec()));
        }
    }
}

/// Max pooling with a square `kernel`, `stride` and symmetric `pad` (dilation 1, floor mode):
/// lemo-train's kernel on Flex (with or without autodiff), burn's `max_pool2d` otherwise.
pub fn max_pool2d(x: Tensor<4>, kernel: usize, stride: usize, pad: usize) -> Tensor<4> {
    let dims = x.dims();
    let [n, c, h, w] = dims;
    let g = PoolGeometry {
        planes: n * c,
        h,
        w,
        kernel,
        stride,
        pad,
    };
    let burn_path = |x: Tensor<4>| {
        burn::tensor::module::max_pool2d(
            x,
            burn::tensor::ops::MaxPoolOptions::new([kernel, kernel])
                .with_stride([stride, stride])
                .with_padding([pad, pad]),
        )
    };
    let Some([oh, ow]) = g.output() else {
        return burn_path(x);
    };
    let out_dims = vec![n, c, oh, ow];
    if let Some(xp) = f32_primitive::<FlexAd, 4>(x.clone()) {
        let kind = MaxPoolStep
            .prepare::<NoCheckpointing>([xp.node()])
            .compute_bound()
            .stateful();
        let f = pool::forward(&g, &f32_elements(&FlexAd::inner(xp)));
        let out = finish(kind, (f.argmax, g, dims), flex_tensor(f.output, out_dims));
        return Tensor::from_primitive::<FlexAd>(out);
    }
    if let Some(xp) = f32_primitive::<Flex, 4>(x.clone()) {
        let f = pool::forward(&g, &f32_elements(&xp));
        return Tensor::from_primitive::<Flex>(flex_tensor(f.output, out_dims));
    }
    burn_path(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::{Device, Distribution};

    fn convs(device: &Device) -> Vec<Conv2d> {
        let base = |k: usize| Conv2dConfig::new([3, 5], [k, k]);
        vec![
            base(3)
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device),
            base(3)
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 0, 0, 1))
                .init(device),
            base(3)
                .with_dilation([2, 2])
                .with_padding(PaddingConfig2d::Explicit(2, 2, 2, 2))
                .with_bias(false)
                .init(device),
            base(1).init(device),
            base(5).with_padding(PaddingConfig2d::Valid).init(device),
        ]
    }

    fn assert_close(a: Tensor<4>, b: Tensor<4>) {
        let (a, b) = (a.into_data(), b.into_data());
        a.assert_approx_eq::<f32>(&b, burn::tensor::Tolerance::absolute(1e-4));
    }

    #[test]
    fn inference_agrees_with_burns_convolution() {
        let device = Device::flex();
        for conv in convs(&device) {
            let x = Tensor::<4>::random([2, 3, 9, 8], Distribution::Normal(0.0, 1.0), &device);
            assert!(geometry(&conv, x.dims()).is_some());
            // the fast path applies: plain Flex tensors
            assert!(x.clone().try_into_primitive::<Flex>().is_ok());
            assert!(conv.weight.val().try_into_primitive::<Flex>().is_ok());
            assert_close(conv2d(&conv, x.clone()), conv.forward(x));
        }
    }

    /// Values and all three gradients of [`conv2d`] against burn's own convolution on an
    /// input of shape `dims`.
    fn check_gradients(conv: &Conv2d, dims: [usize; 4], device: &Device) {
        let x = Tensor::<4>::random(dims, Distribution::Normal(0.0, 1.0), device).require_grad();
        // the fast path applies: autodiff tensors on Flex without checkpointing
        assert!(x.clone().try_into_primitive::<FlexAd>().is_ok());
        assert!(conv.weight.val().try_into_primitive::<FlexAd>().is_ok());
        let ours = conv2d(conv, x.clone());
        let theirs = conv.forward(x.clone());
        // A non-uniform upstream gradient: weight every output by a fixed pattern.
        let pattern = Tensor::<4>::random(ours.dims(), Distribution::Normal(0.0, 1.0), device);
        let g_ours = (ours.clone() * pattern.clone()).sum().backward();
        let g_theirs = (theirs.clone() * pattern).sum().backward();
        assert_close(ours, theirs);
        let tolerance = burn::tensor::Tolerance::absolute(1e-3);
        let xg = |g: &burn::tensor::Gradients| x.grad(g).expect("input gradient");
        let (a, b) = (xg(&g_ours), xg(&g_theirs));
        a.into_data()
            .assert_approx_eq::<f32>(&b.into_data(), tolerance);
        let wg = |g: &burn::tensor::Gradients| conv.weight.grad(g).expect("weight gradient");
        wg(&g_ours)
            .into_data()
            .assert_approx_eq::<f32>(&wg(&g_theirs).into_data(), tolerance);
        if let Some(bias) = &conv.bias {
            let bg = |g: &burn::tensor::Gradients| bias.grad(g).expect("bias gradient");
            bg(&g_ours)
                .into_data()
                .assert_approx_eq::<f32>(&bg(&g_theirs).into_data(), tolerance);
        }
    }

    #[test]
    fn gradients_agree_with_burns_autodiff() {
        let device = Device::flex().autodiff();
        for conv in convs(&device) {
            check_gradients(&conv, [2, 3, 9, 8], &device);
        }
    }

    /// A training-sized batch of a 3x3 convolution with enough channels takes the Winograd
    /// path; values and gradients still agree with burn's.
    #[test]
    fn winograd_convolutions_agree_with_burns_autodiff() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("pool");
        pool.install(|| {
            let device = Device::flex().autodiff();
            let conv = Conv2dConfig::new([16, 24], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(&device);
            let dims = [24, 16, 10, 7];
            let g = geometry(&conv, dims).expect("dense");
            assert!(winograd::supports(&g), "{g:?}");
            check_gradients(&conv, dims, &device);
        });
    }

    #[test]
    fn fused_relu_agrees_with_conv_then_relu() {
        for device in [Device::flex(), Device::flex().autodiff()] {
            for conv in convs(&device) {
                let x = Tensor::<4>::random([2, 3, 9, 8], Distribution::Normal(0.0, 1.0), &device);
                let want = burn::tensor::activation::relu(conv.forward(x.clone()));
                assert_close(conv2d_relu(&conv, x), want);
            }
        }
    }

    #[test]
    fn grouped_and_same_padded_convolutions_take_burns_path() {
        let device = Device::flex();
        let grouped = Conv2dConfig::new([4, 4], [3, 3])
            .with_groups(4)
            .init(&device);
        assert!(geometry(&grouped, [1, 4, 8, 8]).is_none());
        let same = Conv2dConfig::new([4, 4], [3, 3])
            .with_padding(PaddingConfig2d::Same)
            .init(&device);
        assert!(geometry(&same, [1, 4, 8, 8]).is_none());
        let x = Tensor::<4>::random([1, 4, 8, 8], Distribution::Normal(0.0, 1.0), &device);
        assert_close(conv2d(&grouped, x.clone()), grouped.forward(x));
    }
    #[test]
    fn batch_norm_agrees_with_burns_in_training() {
        batch_norm_agrees_with_burns(false);
    }

    #[test]
    fn batch_norm_relu_agrees_with_burns_batch_norm_then_relu_in_training() {
        batch_norm_agrees_with_burns(true);
    }

    /// Values, the three gradients and the running statistics of lemo-train's training-mode
    /// batch norm (with a fused ReLU when `relu`) against burn's.
    fn batch_norm_agrees_with_burns(relu: bool) {
        use burn::nn::BatchNormConfig;
        let device = Device::flex().autodiff();
        let ours = BatchNormConfig::new(4).init(&device);
        let theirs = BatchNormConfig::new(4).init(&device);
        // burn's batch norm, then burn's ReLU when `relu`.
        fn burns<const D: usize>(bn: &BatchNorm, x: Tensor<D>, relu: bool) -> Tensor<D> {
            let y = bn.forward(x);
            if relu {
                burn::tensor::activation::relu(y)
            } else {
                y
            }
        }
        for dims in [[3usize, 4, 5, 6], [8, 4, 1, 1]] {
            let x =
                Tensor::<4>::random(dims, Distribution::Normal(1.0, 2.0), &device).require_grad();
            assert!(x.clone().try_into_primitive::<FlexAd>().is_ok());
            let a = norm(&ours, x.clone(), relu);
            let b = burns(&theirs, x.clone(), relu);
            let pattern = Tensor::<4>::random(dims, Distribution::Normal(0.0, 1.0), &device);
            let ga = (a.clone() * pattern.clone()).sum().backward();
            let gb = (b.clone() * pattern).sum().backward();
            assert_close(a, b);
            let tol = burn::tensor::Tolerance::absolute(1e-3);
            x.grad(&ga)
                .expect("dx")
                .into_data()
                .assert_approx_eq::<f32>(&x.grad(&gb).expect("dx").into_data(), tol);
            for (p, q) in [(&ours.gamma, &theirs.gamma), (&ours.beta, &theirs.beta)] {
                p.grad(&ga)
                    .expect("param grad")
                    .into_data()
                    .assert_approx_eq::<f32>(&q.grad(&gb).expect("param grad").into_data(), tol);
            }
        }
        for (p, q) in [
            (&ours.running_mean, &theirs.running_mean),
            (&ours.running_var, &theirs.running_var),
        ] {
            p.value().into_data().assert_approx_eq::<f32>(
                &q.value().into_data(),
                burn::tensor::Tolerance::absolute(1e-4),
            );
        }
        // Vectors ([batch, features]) take the same path.
        let v = Tensor::<2>::random([6, 4], Distribution::Normal(0.0, 1.0), &device);
        let (a, b) = (norm(&ours, v.clone(), relu), burns(&theirs, v, relu));
        a.into_data()
            .assert_approx_eq::<f32>(&b.into_data(), burn::tensor::Tolerance::absolute(1e-4));
    }
    /// A convolution + 2x2 max pooling as one step gives the values and the three gradients
    /// of the two steps, on the im2col and the Winograd paths, and other poolings fall back.
    #[test]
    fn conv2d_max_pool_agrees_with_conv2d_then_max_pool() {
        use burn::module::Module;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("pool");
        pool.install(|| {
            let device = Device::flex().autodiff();
            let tol = burn::tensor::Tolerance::absolute(1e-3);
            let winograd = Conv2dConfig::new([16, 24], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(&device);
            let mut cases: Vec<(Conv2d, [usize; 4])> = convs(&device)
                .into_iter()
                .map(|c| (c, [2, 3, 9, 8]))
                .collect();
            cases.push((winograd, [24, 16, 11, 7]));
            for (conv, dims) in cases {
                for (kernel, stride, pad) in [(2, 2, 0), (3, 1, 1)] {
                    let p = MaxPool {
                        kernel,
                        stride,
                        pad,
                    };
                    let x = Tensor::<4>::random(dims, Distribution::Normal(0.0, 1.0), &device)
                        .require_grad();
                    let a = conv2d_max_pool(&conv, x.clone(), false, p);
                    let b = max_pool2d(conv2d(&conv, x.clone()), kernel, stride, pad);
                    assert_eq!(a.dims(), b.dims());
                    let pattern =
                        Tensor::<4>::random(a.dims(), Distribution::Normal(0.0, 1.0), &device);
                    let ga = (a.clone() * pattern.clone()).sum().backward();
                    let gb = (b.clone() * pattern).sum().backward();
                    assert_close(a, b);
                    let xg = |g: &burn::tensor::Gradients| x.grad(g).expect("dx").into_data();
                    xg(&ga).assert_approx_eq::<f32>(&xg(&gb), tol);
                    let wg = |g: &burn::tensor::Gradients| conv.weight.grad(g).expect("dw");
                    wg(&ga)
                        .into_data()
                        .assert_approx_eq::<f32>(&wg(&gb).into_data(), tol);
                    if let Some(bias) = &conv.bias {
                        let bg = |g: &burn::tensor::Gradients| bias.grad(g).expect("db");
                        bg(&ga)
                            .into_data()
                            .assert_approx_eq::<f32>(&bg(&gb).into_data(), tol);
                    }
                    // Inference with the ReLU inside.
                    let plain =
                        Tensor::<4>::random(dims, Distribution::Normal(0.0, 1.0), &Device::flex());
                    let inner = conv.valid();
                    assert_close(
                        conv2d_max_pool(&inner, plain.clone(), true, p),
                        max_pool2d(conv2d_relu(&inner, plain), kernel, stride, pad),
                    );
                }
            }
        });
    }

    /// Batch norm (+ ReLU) + max pooling as one training step gives the values, the three
    /// gradients and the running statistics of the two steps; outside training it is the two.
    #[test]
    fn batch_norm_max_pool_agrees_with_batch_norm_then_max_pool() {
        use burn::module::Module;
        use burn::nn::BatchNormConfig;
        let device = Device::flex().autodiff();
        let tol = burn::tensor::Tolerance::absolute(1e-4);
        for relu in [false, true] {
            for (kernel, stride, pad) in [(2, 2, 0), (3, 2, 1)] {
                let pool = MaxPool {
                    kernel,
                    stride,
                    pad,
                };
                let ours = BatchNormConfig::new(4).init(&device);
                let theirs = BatchNormConfig::new(4).init(&device);
                let x = Tensor::<4>::random([3, 4, 7, 6], Distribution::Normal(1.0, 2.0), &device)
                    .require_grad();
                let a = batch_norm_max_pool(&ours, x.clone(), relu, pool);
                let b = max_pool2d(norm(&theirs, x.clone(), relu), kernel, stride, pad);
                assert_eq!(a.dims(), b.dims());
                let pattern =
                    Tensor::<4>::random(a.dims(), Distribution::Normal(0.0, 1.0), &device);
                let ga = (a.clone() * pattern.clone()).sum().backward();
                let gb = (b.clone() * pattern).sum().backward();
                assert_close(a, b);
                x.grad(&ga)
                    .expect("dx")
                    .into_data()
                    .assert_approx_eq::<f32>(&x.grad(&gb).expect("dx").into_data(), tol);
                for (p, q) in [(&ours.gamma, &theirs.gamma), (&ours.beta, &theirs.beta)] {
                    p.grad(&ga)
                        .expect("param grad")
                        .into_data()
                        .assert_approx_eq::<f32>(
                            &q.grad(&gb).expect("param grad").into_data(),
                            tol,
                        );
                }
                for (p, q) in [
                    (&ours.running_mean, &theirs.running_mean),
                    (&ours.running_var, &theirs.running_var),
                ] {
                    p.value()
                        .into_data()
                        .assert_approx_eq::<f32>(&q.value().into_data(), tol);
                }
                // Validation mode (no autodiff): burn's batch norm, then the pool.
                let (vo, vt) = (ours.valid(), theirs.valid());
                let plain = Tensor::<4>::random(
                    [2, 4, 7, 6],
                    Distribution::Normal(0.0, 1.0),
                    &Device::flex(),
                );
                assert_close(
                    batch_norm_max_pool(&vo, plain.clone(), relu, pool),
                    max_pool2d(norm(&vt, plain, relu), kernel, stride, pad),
                );
            }
        }
    }

    #[test]
    fn max_pool_agrees_with_burns() {
        use burn::tensor::module::max_pool2d as burn_max_pool2d;
        use burn::tensor::ops::MaxPoolOptions;
        let device = Device::flex().autodiff();
        for (k, s, p) in [(2, 2, 0), (3, 1, 1), (3, 2, 1), (2, 1, 0)] {
            let x = Tensor::<4>::random([2, 3, 9, 8], Distribution::Normal(0.0, 1.0), &device)
                .require_grad();
            let opts = MaxPoolOptions::new([k, k])
                .with_stride([s, s])
                .with_padding([p, p]);
            let a = max_pool2d(x.clone(), k, s, p);
            let b = burn_max_pool2d(x.clone(), opts);
            let pattern = Tensor::<4>::random(a.dims(), Distribution::Normal(0.0, 1.0), &device);
            let ga = (a.clone() * pattern.clone()).sum().backward();
            let gb = (b.clone() * pattern).sum().backward();
            assert_close(a, b);
            x.grad(&ga)
                .expect("dx")
                .into_data()
                .assert_approx_eq::<f32>(
                    &x.grad(&gb).expect("dx").into_data(),
                    burn::tensor::Tolerance::absolute(1e-5),
                );
            let plain = Tensor::<4>::random(
                [1, 2, 7, 7],
                Distribution::Normal(0.0, 1.0),
                &Device::flex(),
            );
            let opts = MaxPoolOptions::new([k, k])
                .with_stride([s, s])
                .with_padding([p, p]);
            assert_close(
                max_pool2d(plain.clone(), k, s, p),
                burn_max_pool2d(plain, opts),
            );
        }
    }
}
