//! Dense (groups = 1) 2-D convolution on contiguous NCHW `f32` buffers: im2col per image into a
//! reused scratch buffer, one gemm per image, images in parallel. Forward, input gradient,
//! weight gradient and bias gradient.
//!
//! The output of `W[c_out, K] x col[K, P]` is already the NCHW plane block of one image, so no
//! layout conversion happens anywhere: this is what makes it faster than a layout-converting
//! implementation on small images (see docs/performance.md).

use std::cell::Cell;
use std::ops::Range;

use gemm::Parallelism;
use rayon::prelude::*;

use super::pool::{PoolForward, PoolGeometry};

/// The geometry of one 2-D convolution: input, kernel, stride, padding, dilation, output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Batch size.
    pub batch: usize,
    /// Input channels.
    pub c_in: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub c_out: usize,
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Stride (height, width).
    pub stride: [usize; 2],
    /// Padding before (top, left).
    pub pad_begin: [usize; 2],
    /// Padding after (bottom, right).
    pub pad_end: [usize; 2],
    /// Dilation (height, width).
    pub dilation: [usize; 2],
}

impl ConvGeometry {
    /// Output height and width, `None` when the (dilated) kernel does not fit the padded input
    /// or a stride / dilation / kernel size is zero.
    pub fn output(&self) -> Option<[usize; 2]> {
        let dim = |size: usize, k: usize, s: usize, d: usize, pad: usize| {
            if k == 0 || s == 0 || d == 0 {
                return None;
            }
            let span = d * (k - 1) + 1;
            let padded = size + pad;
            (padded >= span).then(|| (padded - span) / s + 1)
        };
        let ([kh, kw], [sh, sw], [dh, dw]) = (self.kernel, self.stride, self.dilation);
        let ([top, left], [bottom, right]) = (self.pad_begin, self.pad_end);
        Some([
            dim(self.h, kh, sh, dh, top + bottom)?,
            dim(self.w, kw, sw, dw, left + right)?,
        ])
    }

    /// Rows of the im2col matrix: `c_in * kh * kw`.
    fn k(&self) -> usize {
        self.c_in * self.kernel[0] * self.kernel[1]
    }

    /// True when im2col is the identity (1x1 kernel, stride 1, no padding).
    fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1]
            && self.stride == [1, 1]
            && self.pad_begin == [0, 0]
            && self.pad_end == [0, 0]
    }
}

thread_local! {
    /// Per-thread im2col scratch, reused across calls so no page is faulted in twice.
    static SCRATCH: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Runs `f` on `len` elements of this thread's scratch. The buffer is taken out of the
/// thread-local for the call and put back after it, so nothing is borrowed across `f`: a rayon
/// worker that, blocked in `f`'s parallel gemm, steals another convolution's job finds the
/// slot empty and uses a buffer of its own (which it then hands back; the larger one stays).
pub(super) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buf = SCRATCH.take();
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    // buf.len() >= len: it was just grown to len if it was shorter.
    let (used, _) = buf.split_at_mut(len);
    let out = f(used);
    let nested = SCRATCH.take();
    SCRATCH.set(if nested.len() > buf.len() {
        nested
    } else {
        buf
    });
    out
}

/// The valid output columns `[lo, hi)` of one kernel column: those where
/// `ox * stride + offset` lands inside `0..width`.
fn valid_range(offset: isize, stride: usize, width: usize, out: usize) -> (usize, usize) {
    let s = stride as isize;
    let lo = if offset >= 0 {
        0
    } else {
        ((-offset + s - 1) / s) as usize
    };
    let hi = if (width as isize) <= offset {
        0
    } else {
        (((width as isize - offset) + s - 1) / s) as usize
    };
    (lo.min(out), hi.min(out).max(lo.min(out)))
}

/// A row segment of the im2col matrix that reads from the image: input row start `src`,
/// column `offset` of the kernel tap, and valid output columns `[lo, hi)`.
#[derive(Clone, Copy)]
struct Inside {
    src: usize,
    offset: isize,
    lo: usize,
    hi: usize,
}

/// Visits every im2col row segment of input channels `channels` and output rows `rows` of one
/// image (the im2col matrix of that tile is `[channels.len() * kh * kw, rows.len() * ow]`):
/// `f(segment_start, Some(inside))` for segments that read inside the image,
/// `f(segment_start, None)` for padding rows.
fn for_each_segment(
    g: &ConvGeometry,
    channels: Range<usize>,
    rows: Range<usize>,
    ow: usize,
    mut f: impl FnMut(usize, Option<Inside>),
) {
    let [kh, kw] = g.kernel;
    let p = rows.len() * ow;
    let first = channels.start;
    for c in channels {
        for ky in 0..kh {
            for kx in 0..kw {
                let row = (((c - first) * kh + ky) * kw + kx) * p;
                let offset = (kx * g.dilation[1]) as isize - g.pad_begin[1] as isize;
                let (lo, hi) = valid_range(offset, g.stride[1], g.w, ow);
                for oy in rows.clone() {
                    let iy =
                        (oy * g.stride[0] + ky * g.dilation[0]) as isize - g.pad_begin[0] as isize;
                    let seg = row + (oy - rows.start) * ow;
                    if iy < 0 || iy >= g.h as isize {
                        f(seg, None);
                    } else {
                        let src = (c * g.h + iy as usize) * g.w;
                        f(
                            seg,
                            Some(Inside {
                                src,
                                offset,
                                lo,
                                hi,
                            }),
                        );
                    }
                }
            }
        }
    }
}

/// im2col of output rows `rows` of one image `x[c_in, h, w]` into `col[K, rows.len() * ow]`.
fn im2col(g: &ConvGeometry, rows: Range<usize>, ow: usize, x: &[f32], col: &mut [f32]) {
    im2col_channels(g, 0..g.c_in, rows, ow, x, col);
}

/// im2col of input channels `channels` and output rows `rows` of one image `x[c_in, h, w]` into
/// `col[channels.len() * kh * kw, rows.len() * ow]` (that block of the whole im2col matrix).
// Hot loop, indexes kept: for_each_segment's segments `seg..seg + ow` tile `col`, lo <= hi <= ow,
// and valid_range keeps every `start + i * sw` (i < hi - lo) inside the input row `src..src + w`.
#[allow(clippy::indexing_slicing)]
fn im2col_channels(
    g: &ConvGeometry,
    channels: Range<usize>,
    rows: Range<usize>,
    ow: usize,
    x: &[f32],
    col: &mut [f32],
) {
    let sw = g.stride[1];
    for_each_segment(g, channels, rows, ow, |seg, inside| {
        let dst = &mut col[seg..seg + ow];
        let Some(Inside {
            src,
            offset,
            lo,
            hi,
        }) = inside
        else {
            dst.fill(0.0);
            return;
        };
        dst[..lo].fill(0.0);
        dst[hi..].fill(0.0);
        if hi > lo {
            let start = (src as isize + lo as isize * sw as isize + offset) as usize;
            if sw == 1 {
                dst[lo..hi].copy_from_slice(&x[start..start + (hi - lo)]);
            } else {
                for (i, d) in dst[lo..hi].iter_mut().enumerate() {
                    *d = x[start + i * sw];
                }
            }
        }
    });
}

/// col2im of output rows `rows` of one image: accumulates `col[K, rows.len() * ow]` into
/// `dx[c_in, h, w]`.
// Hot loop, indexes kept: the same segments and input positions as im2col's (see there).
#[allow(clippy::indexing_slicing)]
fn col2im(g: &ConvGeometry, rows: Range<usize>, ow: usize, col: &[f32], dx: &mut [f32]) {
    let sw = g.stride[1];
    for_each_segment(g, 0..g.c_in, rows, ow, |seg, inside| {
        let Some(Inside {
            src,
            offset,
            lo,
            hi,
        }) = inside
        else {
            return;
        };
        if hi > lo {
            let start = (src as isize + lo as isize * sw as isize + offset) as usize;
            let from = &col[seg + lo..seg + hi];
            if sw == 1 {
                for (d, s) in dx[start..start + (hi - lo)].iter_mut().zip(from) {
                    *d += s;
                }
            } else {
                for (i, s) in from.iter().enumerate() {
                    dx[start + i * sw] += s;
                }
            }
        }
    });
}

/// A read-only matrix operand: elements and (row stride, column stride).
#[derive(Clone, Copy)]
pub(super) struct Operand<'a> {
    data: &'a [f32],
    strides: [usize; 2],
}

pub(super) fn op(data: &[f32], strides: [usize; 2]) -> Operand<'_> {
    Operand { data, strides }
}

/// `dst[m, n] (+)= lhs[m, k] x rhs[k, n]`, `dst` row-major with row stride `dst_rs`.
#[allow(clippy::too_many_arguments)]
pub(super) fn matmul(
    [m, n, k]: [usize; 3],
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    lhs: Operand<'_>,
    rhs: Operand<'_>,
    parallel: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        dst_rs >= n && dst.len() > (m - 1) * dst_rs + (n - 1),
        "matmul: destination too small"
    );
    // SAFETY: the assert keeps every element written inside `dst`, which is borrowed mutably,
    // so nothing else reads or writes it meanwhile.
    #[allow(unsafe_code)]
    unsafe {
        let dst = dst.as_mut_ptr();
        matmul_to([m, n, k], dst, dst_rs, accumulate, lhs, rhs, parallel);
    }
}

/// [`matmul`] into a raw destination: the gemm call behind it, with the operands checked.
///
/// # Safety
/// `dst` must be valid for writes at `dst + i * dst_rs + j` for every `i < m`, `j < n`, and no
/// other thread may read or write those elements during the call.
#[allow(clippy::too_many_arguments, unsafe_code)]
unsafe fn matmul_to(
    [m, n, k]: [usize; 3],
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    lhs: Operand<'_>,
    rhs: Operand<'_>,
    parallel: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    let (lhs, lhs_strides, rhs, rhs_strides) = (lhs.data, lhs.strides, rhs.data, rhs.strides);
    assert!(lhs.len() > (m.max(1) - 1) * lhs_strides[0] + (k.max(1) - 1) * lhs_strides[1]);
    assert!(rhs.len() > (k.max(1) - 1) * rhs_strides[0] + (n.max(1) - 1) * rhs_strides[1]);
    let par = if parallel {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    };
    // SAFETY: the asserts above keep every index the gemm reads inside lhs and rhs; the caller
    // guarantees the written elements of dst (row-major, row stride dst_rs) and that no one
    // else touches them, so dst does not alias lhs or rhs (shared borrows).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_strides[1] as isize,
            lhs_strides[0] as isize,
            rhs.as_ptr(),
            rhs_strides[1] as isize,
            rhs_strides[0] as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

// The documented panic of forward and backward (their callers check shapes first).
#[allow(clippy::panic)]
pub(super) fn check_lengths(g: &ConvGeometry, x: &[f32], weight: &[f32]) -> [usize; 2] {
    let out = g
        .output()
        .unwrap_or_else(|| panic!("conv2d: kernel larger than the padded input: {g:?}"));
    assert_eq!(
        x.len(),
        g.batch * g.c_in * g.h * g.w,
        "conv2d: input length"
    );
    assert_eq!(weight.len(), g.c_out * g.k(), "conv2d: weight length");
    out
}

/// Largest im2col tile, in elements (16 MiB of `f32`): bigger images are processed in bands
/// of output rows so the per-thread scratch stays bounded whatever the input size.
const MAX_TILE: usize = 4 << 20;

/// Output-row bands of at most [`MAX_TILE`] im2col elements each.
fn bands(k: usize, oh: usize, ow: usize) -> impl Iterator<Item = Range<usize>> {
    let rows = (MAX_TILE / (k * ow).max(1)).clamp(1, oh.max(1));
    (0..oh)
        .step_by(rows)
        .map(move |start| start..(start + rows).min(oh))
}

/// Image `img` of `images`, a batch of images of `len` elements each.
// Callers pass img < batch for a buffer check_lengths checked to hold batch * len elements (len
// may be 0, where chunks_exact cannot split).
#[allow(clippy::indexing_slicing)]
fn nth_image(images: &[f32], img: usize, len: usize) -> &[f32] {
    &images[img * len..(img + 1) * len]
}

/// Forward pass: `y[n, c_out, oh, ow]` from `x[n, c_in, h, w]`, `weight[c_out, c_in, kh, kw]`
/// and an optional `bias[c_out]`; with `relu`, `max(y, 0)` applied to each image's block right
/// after its gemm, while it is still in cache (inference of a conv followed by ReLU).
///
/// # Panics
/// When a slice length disagrees with the geometry or the kernel does not fit (the callers
/// check shapes first).
pub fn forward(
    g: &ConvGeometry,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
) -> Vec<f32> {
    if super::winograd::enabled() && super::winograd::supports(g) {
        return super::winograd::forward(g, x, weight, bias, relu);
    }
    forward_im2col(g, x, weight, bias, relu)
}

/// [`forward`] through im2col and one gemm per image, whatever the geometry.
pub(super) fn forward_im2col(
    g: &ConvGeometry,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
) -> Vec<f32> {
    let [oh, ow] = check_lengths(g, x, weight);
    let (p, k) = (oh * ow, g.k());
    let in_len = g.c_in * g.h * g.w;
    let out_len = g.c_out * p;
    let mut y = vec![0.0f32; g.batch * out_len];
    if out_len == 0 || g.batch == 0 {
        return y;
    }
    let par = g.batch < rayon::current_num_threads();
    let w = op(weight, [k, 1]);
    let image = |(img, out): (usize, &mut [f32])| {
        let x_img = nth_image(x, img, in_len);
        if par && k > 0 && k * p <= MAX_TILE {
            split_image(g, [oh, ow], k, x_img, weight, bias, relu, out);
            return;
        }
        if let Some(b) = bias {
            for (plane, &v) in out.chunks_mut(p).zip(b) {
                plane.fill(v);
            }
        }
        let acc = bias.is_some();
        if g.is_pointwise() {
            matmul([g.c_out, p, k], out, p, acc, w, op(x_img, [p, 1]), par);
        } else {
            for rows in bands(k, oh, ow) {
                let (p0, pt) = (rows.start * ow, rows.len() * ow);
                with_scratch(k * pt, |col| {
                    im2col(g, rows, ow, x_img, col);
                    let cols = op(col, [pt, 1]);
                    // p0 < oh * ow = p <= out.len()
                    let (_, out_rows) = out.split_at_mut(p0);
                    matmul([g.c_out, pt, k], out_rows, p, acc, w, cols, par);
                });
            }
        }
        if relu {
            relu_in_place(out);
        }
    };
    y.par_chunks_mut(out_len).enumerate().for_each(image);
    y
}

/// `max(v, 0)` in place; NaN stays NaN (as with burn's relu), so divergence stays visible.
fn relu_in_place(v: &mut [f32]) {
    v.iter_mut()
        .for_each(|v| *v = if v.is_nan() || *v > 0.0 { *v } else { 0.0 });
}

/// One image's convolution across all threads, for batches smaller than the thread count (the
/// batch-1 inference of a deployed model), bias and ReLU included. A pointwise convolution
/// splits its gemm by output channels. Any other splits the output rows into one band per
/// thread: each thread writes the im2col of its band into its own scratch and runs a serial
/// gemm of every output channel on it, writing the band's columns of `out`, so there is one
/// parallel step, and each thread's gemm reads the columns it just wrote, from its own cache.
#[allow(clippy::too_many_arguments)]
fn split_image(
    g: &ConvGeometry,
    [oh, ow]: [usize; 2],
    k: usize,
    x_img: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    out: &mut [f32],
) {
    let p = oh * ow;
    let threads = rayon::current_num_threads().max(1);
    let acc = bias.is_some();
    if g.is_pointwise() {
        let rows = g.c_out.div_ceil(threads).max(1);
        out.par_chunks_mut(rows * p)
            .zip(weight.par_chunks(rows * k))
            .enumerate()
            .for_each(|(i, (o, w))| {
                if let Some(b) = bias {
                    let b = b.iter().skip(i * rows);
                    o.chunks_mut(p).zip(b).for_each(|(plane, &v)| plane.fill(v));
                }
                let (m, cols) = (o.len() / p, op(x_img, [p, 1]));
                matmul([m, p, k], o, p, acc, op(w, [k, 1]), cols, false);
                if relu {
                    relu_in_place(o);
                }
            });
        return;
    }
    assert_eq!(out.len(), g.c_out * p, "split_image: output length");
    let band = oh.div_ceil(threads).max(1);
    let dst = SharedOut(out.as_mut_ptr());
    let w = op(weight, [k, 1]);
    (0..oh.div_ceil(band)).into_par_iter().for_each(|b| {
        let rows = b * band..((b + 1) * band).min(oh);
        let (p0, pt) = (rows.start * ow, rows.len() * ow);
        // This band's part of output channel c: `out[c * p + p0..][..pt]`.
        // SAFETY: `out` holds c_out rows of p elements (asserted above) and stays borrowed
        // mutably for this whole parallel loop without being used; p0 + pt <= p, and the
        // bands' column ranges p0..p0 + pt are disjoint, so each segment is this thread's
        // alone while the slice lives.
        #[allow(unsafe_code)]
        let segment = |c: usize| unsafe { std::slice::from_raw_parts_mut(dst.at(c * p + p0), pt) };
        if let Some(b) = bias {
            for (c, &v) in b.iter().enumerate().take(g.c_out) {
                segment(c).fill(v);
            }
        }
        with_scratch(k * pt, |col| {
            im2col(g, rows, ow, x_img, col);
            // SAFETY: as for `segment`: the gemm writes elements `c * p + p0 + j` (c < c_out,
            // j < pt) of `out`, this band's alone.
            #[allow(unsafe_code)]
            unsafe {
                matmul_to(
                    [g.c_out, pt, k],
                    dst.at(p0),
                    p,
                    acc,
                    w,
                    op(col, [pt, 1]),
                    false,
                );
            }
        });
        if relu {
            (0..g.c_out).for_each(|c| relu_in_place(segment(c)));
        }
    });
}

/// The start of an output buffer that the bands of [`split_image`] write, each only its own
/// columns.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);

// SAFETY: the pointer is only used by split_image's bands, which write disjoint elements of a
// buffer that outlives them (see there).
#[allow(unsafe_code)]
unsafe impl Send for SharedOut {}
#[allow(unsafe_code)]
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// The element `offset` places on.
    fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// Gradients of one convolution.
#[derive(Debug, Clone)]
pub struct ConvGrads {
    /// Gradient of the input, when asked for.
    pub x: Option<Vec<f32>>,
    /// Gradient of the weight `[c_out, c_in, kh, kw]`.
    pub weight: Vec<f32>,
    /// Gradient of the bias `[c_out]`.
    pub bias: Vec<f32>,
}

/// Backward pass from the output gradient `dy[n, c_out, oh, ow]`.
///
/// # Panics
/// When a slice length disagrees with the geometry.
pub fn backward(
    g: &ConvGeometry,
    x: &[f32],
    weight: &[f32],
    dy: &[f32],
    need_x: bool,
) -> ConvGrads {
    if super::winograd::enabled() && super::winograd::supports(g) {
        return super::winograd::backward(g, x, weight, dy, need_x);
    }
    backward_im2col(g, x, weight, dy, need_x)
}

/// The 2x2, stride-2 max pooling (floor mode) of the output of `g` (`None` when the output is
/// smaller than one window).
pub fn output_pool(g: &ConvGeometry) -> Option<PoolGeometry> {
    let [oh, ow] = g.output()?;
    let p = PoolGeometry {
        planes: g.batch * g.c_out,
        h: oh,
        w: ow,
        kernel: 2,
        stride: 2,
        pad: 0,
    };
    p.output().map(|_| p)
}

/// [`forward`] followed by the 2x2, stride-2 max pooling of every output plane: inside the
/// Winograd output pass where that path applies (the full output is never written), else the
/// convolution then [`super::pool::forward`]. Returns the pooled output and the arg-max of every
/// window inside its `oh x ow` plane.
///
/// # Panics
/// When a slice length disagrees with the geometry, or the output is smaller than one window
/// ([`output_pool`] is `None`).
// The documented panic.
#[allow(clippy::panic)]
pub fn forward_max_pool(
    g: &ConvGeometry,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
) -> PoolForward {
    let pool = output_pool(g).unwrap_or_else(|| panic!("conv2d + max pool: no window in {g:?}"));
    if super::winograd::enabled() && super::winograd::supports(g) {
        let (output, argmax) = super::winograd::forward_pooled(g, x, weight, bias, relu);
        return PoolForward { output, argmax };
    }
    super::pool::forward(&pool, &forward_im2col(g, x, weight, bias, relu))
}

/// Backward pass of [`forward_max_pool`] from the pooled output's gradient and the forward's
/// arg-maxes: inside the Winograd gradient transform where that path applies, else the
/// pooling's backward pass then the convolution's.
///
/// # Panics
/// As [`forward_max_pool`], or when `dy` and `argmax` disagree with the pooled output.
// The documented panic.
#[allow(clippy::panic)]
pub fn backward_max_pool(
    g: &ConvGeometry,
    x: &[f32],
    weight: &[f32],
    (dy, argmax): (&[f32], &[u32]),
    need_x: bool,
) -> ConvGrads {
    let pool = output_pool(g).unwrap_or_else(|| panic!("conv2d + max pool: no window in {g:?}"));
    if super::winograd::enabled() && super::winograd::supports(g) {
        return super::winograd::backward_pooled(g, x, weight, dy, argmax, need_x);
    }
    let full = super::pool::backward(&pool, argmax, dy);
    backward_im2col(g, x, weight, &full, need_x)
}

/// [`backward`] through im2col and gemms per image, whatever the geometry.
pub(super) fn backward_im2col(
    g: &ConvGeometry,
    x: &[f32],
    weight: &[f32],
    dy: &[f32],
    need_x: bool,
) -> ConvGrads {
    let [oh, ow] = check_lengths(g, x, weight);
    let (p, k) = (oh * ow, g.k());
    let in_len = g.c_in * g.h * g.w;
    let out_len = g.c_out * p;
    assert_eq!(
        dy.len(),
        g.batch * out_len,
        "conv2d backward: output gradient length"
    );
    let mut dx = need_x.then(|| vec![0.0f32; g.batch * in_len]);
    if g.batch == 0 || in_len == 0 || out_len == 0 {
        return ConvGrads {
            x: dx,
            weight: vec![0.0; g.c_out * k],
            bias: vec![0.0; g.c_out],
        };
    }
    let threads = rayon::current_num_threads().max(1);
    let chunk = g.batch.div_ceil(threads).max(1);
    let par = g.batch < threads;
    // W^T [K, c_out]
    let wt = op(weight, [1, k]);

    // Each worker takes a contiguous run of images, accumulates its own weight/bias gradient
    // and writes its images' input gradients; the partial weight gradients are summed after.
    // (in_len and out_len are not 0 here, and x, dy and each run's dx slice are whole images.)
    let work = |run: usize, dx_run: Option<&mut [f32]>| -> (Vec<f32>, Vec<f32>) {
        let mut dw = vec![0.0f32; g.c_out * k];
        let mut db = vec![0.0f32; g.c_out];
        let first = run * chunk;
        let last = (first + chunk).min(g.batch);
        let images = x.chunks_exact(in_len).zip(dy.chunks_exact(out_len));
        let mut dx_images = dx_run.map(|d| d.chunks_exact_mut(in_len));
        for (x_img, dy_img) in images.skip(first).take(last - first) {
            for (acc, plane) in db.iter_mut().zip(dy_img.chunks(p)) {
                *acc += super::lane_sum(plane, plane, |v, _| v) as f32;
            }
            let mut dx_img = dx_images.as_mut().and_then(Iterator::next);
            if g.is_pointwise() {
                // dW += dy[c_out, P] x x^T[P, K]; dx = W^T[K, c_out] x dy[c_out, P]
                let (dyo, xt) = (op(dy_img, [p, 1]), op(x_img, [1, p]));
                matmul([g.c_out, k, p], &mut dw, k, true, dyo, xt, par);
                if let Some(d) = dx_img {
                    matmul([k, p, g.c_out], d, p, false, wt, dyo, par);
                }
                continue;
            }
            for rows in bands(k, oh, ow) {
                let (p0, pt) = (rows.start * ow, rows.len() * ow);
                // p0 < oh * ow = p <= dy_img.len()
                let (_, dy_rows) = dy_img.split_at(p0);
                let dyo = op(dy_rows, [p, 1]);
                with_scratch(k * pt, |col| {
                    im2col(g, rows.clone(), ow, x_img, col);
                    matmul(
                        [g.c_out, k, pt],
                        &mut dw,
                        k,
                        true,
                        dyo,
                        op(col, [1, pt]),
                        par,
                    );
                    if let Some(d) = dx_img.as_deref_mut() {
                        matmul([k, pt, g.c_out], col, pt, false, wt, dyo, par);
                        col2im(g, rows, ow, col, d);
                    }
                });
            }
        }
        (dw, db)
    };

    let runs = g.batch.div_ceil(chunk);
    let partials: Vec<(Vec<f32>, Vec<f32>)> = match dx.as_mut() {
        Some(d) => d
            .par_chunks_mut(chunk * in_len)
            .enumerate()
            .map(|(run, slice)| work(run, Some(slice)))
            .collect(),
        None => (0..runs)
            .into_par_iter()
            .map(|run| work(run, None))
            .collect(),
    };
    let mut dw = vec![0.0f32; g.c_out * k];
    let mut db = vec![0.0f32; g.c_out];
    for (pw, pb) in partials {
        dw.iter_mut().zip(&pw).for_each(|(a, b)| *a += b);
        db.iter_mut().zip(&pb).for_each(|(a, b)| *a += b);
    }
    ConvGrads {
        x: dx,
        weight: dw,
        bias: db,
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Straightforward six-loop convolution, the reference the fast path must agree with.
    fn naive(g: &ConvGeometry, x: &[f32], w: &[f32], b: Option<&[f32]>) -> Vec<f32> {
        let [oh, ow] = g.output().expect("fits");
        let [kh, kw] = g.kernel;
        let mut y = vec![0.0; g.batch * g.c_out * oh * ow];
        for n in 0..g.batch {
            for co in 0..g.c_out {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = b.map_or(0.0, |b| b[co]);
                        for ci in 0..g.c_in {
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let iy = (oy * g.stride[0] + ky * g.dilation[0]) as isize
                                        - g.pad_begin[0] as isize;
                                    let ix = (ox * g.stride[1] + kx * g.dilation[1]) as isize
                                        - g.pad_begin[1] as isize;
                                    if iy >= 0
                                        && ix >= 0
                                        && (iy as usize) < g.h
                                        && (ix as usize) < g.w
                                    {
                                        acc += x[((n * g.c_in + ci) * g.h + iy as usize) * g.w
                                            + ix as usize]
                                            * w[((co * g.c_in + ci) * kh + ky) * kw + kx];
                                    }
                                }
                            }
                        }
                        y[((n * g.c_out + co) * oh + oy) * ow + ox] = acc;
                    }
                }
            }
        }
        y
    }

    /// `n` pseudo-random values in [-1, 1), the same for the same seed (the kernels' tests).
    pub(in crate::kernels) fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s % 2000) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    fn geometries() -> Vec<ConvGeometry> {
        let base = ConvGeometry {
            batch: 3,
            c_in: 4,
            h: 9,
            w: 7,
            c_out: 5,
            kernel: [3, 3],
            stride: [1, 1],
            pad_begin: [1, 1],
            pad_end: [1, 1],
            dilation: [1, 1],
        };
        vec![
            base,
            ConvGeometry {
                stride: [2, 2],
                ..base
            },
            ConvGeometry {
                dilation: [2, 2],
                pad_begin: [2, 2],
                pad_end: [2, 2],
                ..base
            },
            ConvGeometry {
                kernel: [1, 1],
                pad_begin: [0, 0],
                pad_end: [0, 0],
                ..base
            },
            ConvGeometry {
                kernel: [5, 3],
                stride: [2, 1],
                pad_begin: [0, 2],
                pad_end: [1, 0],
                ..base
            },
            ConvGeometry {
                batch: 1,
                kernel: [1, 1],
                stride: [2, 2],
                pad_begin: [0, 0],
                pad_end: [0, 0],
                ..base
            },
        ]
    }

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                "index {i}: {x} vs {y}"
            );
        }
    }

    #[test]
    fn forward_matches_the_naive_convolution() {
        for g in geometries() {
            let x = values(g.batch * g.c_in * g.h * g.w, 1);
            let w = values(g.c_out * g.k(), 2);
            let b = values(g.c_out, 3);
            close(
                &forward(&g, &x, &w, Some(&b), false),
                &naive(&g, &x, &w, Some(&b)),
            );
            close(&forward(&g, &x, &w, None, false), &naive(&g, &x, &w, None));
            let relu: Vec<f32> = naive(&g, &x, &w, Some(&b))
                .iter()
                .map(|v| v.max(0.0))
                .collect();
            close(&forward(&g, &x, &w, Some(&b), true), &relu);
        }
    }

    /// The gradients are the adjoints of the (linear) forward map: for a random `dy`,
    /// `<dy, conv(x, w)> = <dx, x> = <dw, w>`, and the bias gradient is dy summed per channel.
    /// Batches smaller than the thread count (batch-1 inference) split one image's output rows
    /// into one band per thread (a pointwise convolution its gemm by output channels): uneven
    /// splits included (over 3 and 4 threads), pointwise and strided geometries too.
    #[test]
    fn small_batches_split_across_threads_match_the_naive_convolution() {
        for threads in [3, 4] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool");
            for g in geometries() {
                for batch in [1, 2] {
                    let g = ConvGeometry { batch, ..g };
                    let x = values(g.batch * g.c_in * g.h * g.w, 4);
                    let w = values(g.c_out * g.k(), 5);
                    let b = values(g.c_out, 6);
                    let want = naive(&g, &x, &w, Some(&b));
                    let got = pool.install(|| forward_im2col(&g, &x, &w, Some(&b), false));
                    close(&got, &want);
                    let got = pool.install(|| forward_im2col(&g, &x, &w, None, true));
                    let relu: Vec<f32> =
                        naive(&g, &x, &w, None).iter().map(|v| v.max(0.0)).collect();
                    close(&got, &relu);
                }
            }
        }
    }

    #[test]
    fn backward_is_the_adjoint_of_forward() {
        for g in geometries() {
            let [oh, ow] = g.output().expect("fits");
            let x = values(g.batch * g.c_in * g.h * g.w, 4);
            let w = values(g.c_out * g.k(), 5);
            let dy = values(g.batch * g.c_out * oh * ow, 6);
            let y = naive(&g, &x, &w, None);
            let dot =
                |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(a, b)| (a * b) as f64).sum::<f64>();
            let grads = backward(&g, &x, &w, &dy, true);
            let dx = grads.x.expect("asked for");
            let reference = dot(&dy, &y);
            assert!(
                (dot(&dx, &x) - reference).abs() < 1e-3 * (1.0 + reference.abs()),
                "{g:?}"
            );
            assert!((dot(&grads.weight, &w) - reference).abs() < 1e-3 * (1.0 + reference.abs()));
            let p = oh * ow;
            for co in 0..g.c_out {
                let want: f32 = (0..g.batch)
                    .map(|n| {
                        dy[(n * g.c_out + co) * p..(n * g.c_out + co + 1) * p]
                            .iter()
                            .sum::<f32>()
                    })
                    .sum();
                assert!((grads.bias[co] - want).abs() < 1e-3);
            }
            let no_x = backward(&g, &x, &w, &dy, false);
            assert!(no_x.x.is_none());
            close(&no_x.weight, &grads.weight);
        }
    }

    /// An image whose im2col matrix exceeds [`MAX_TILE`] is processed in bands of output
    /// rows; forward and gradients are unchanged.
    #[test]
    fn large_images_are_processed_in_row_bands() {
        let g = ConvGeometry {
            batch: 1,
            c_in: 16,
            h: 180,
            w: 181,
            c_out: 2,
            kernel: [3, 3],
            stride: [1, 1],
            pad_begin: [1, 1],
            pad_end: [1, 1],
            dilation: [1, 1],
        };
        let [oh, ow] = g.output().expect("fits");
        assert!(g.k() * oh * ow > MAX_TILE);
        assert!(bands(g.k(), oh, ow).count() > 1);
        assert_eq!(bands(g.k(), oh, ow).map(|r| r.len()).sum::<usize>(), oh);
        let x = values(g.batch * g.c_in * g.h * g.w, 7);
        let w = values(g.c_out * g.k(), 8);
        let y = forward(&g, &x, &w, None, false);
        close(&y, &naive(&g, &x, &w, None));
        let dy = values(y.len(), 9);
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(a, b)| (a * b) as f64).sum::<f64>();
        let grads = backward(&g, &x, &w, &dy, true);
        let reference = dot(&dy, &y);
        let dx = grads.x.expect("asked for");
        assert!((dot(&dx, &x) - reference).abs() < 1e-3 * (1.0 + reference.abs()));
        assert!((dot(&grads.weight, &w) - reference).abs() < 1e-3 * (1.0 + reference.abs()));
    }

    /// What a work-stealing rayon worker does: start a convolution while its own is inside
    /// `with_scratch` on the same thread. Each call gets a buffer of its own.
    #[test]
    fn nested_scratch_use_on_one_thread_gets_its_own_buffer() {
        let inner_sum = with_scratch(64, |outer| {
            outer.fill(1.0);
            let inner_sum = with_scratch(32, |inner| {
                inner.fill(2.0);
                inner.iter().sum::<f32>()
            });
            assert!(
                outer.iter().all(|&v| v == 1.0),
                "the nested call wrote here"
            );
            inner_sum
        });
        assert_eq!(inner_sum, 64.0);
        // and the buffer is still reused afterwards
        with_scratch(16, |b| assert_eq!(b.len(), 16));
    }

    /// A rayon worker blocked in a parallel gemm steals other jobs, possibly another
    /// convolution: many convolutions at once from the tasks of a small pool (batch 1, so each
    /// gemm is parallel too) must neither panic (a re-borrowed scratch) nor mix up results.
    #[test]
    fn concurrent_convolutions_in_rayon_tasks_do_not_share_scratch() {
        // gemm goes parallel above 48 x 48 x 256 multiply-adds: here 128 x 256 x 288
        let g = ConvGeometry {
            batch: 1,
            c_in: 32,
            h: 16,
            w: 16,
            c_out: 128,
            kernel: [3, 3],
            stride: [1, 1],
            pad_begin: [1, 1],
            pad_end: [1, 1],
            dilation: [1, 1],
        };
        let w = values(g.c_out * g.k(), 7);
        let inputs: Vec<Vec<f32>> = (0..32)
            .map(|i| values(g.c_in * g.h * g.w, 100 + i))
            .collect();
        let serial = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("pool");
        let want: Vec<Vec<f32>> = serial.install(|| {
            inputs
                .iter()
                .map(|x| forward(&g, x, &w, None, false))
                .collect()
        });
        for threads in [2, 3, 4] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool");
            pool.install(|| {
                inputs.par_iter().zip(&want).for_each(|(x, want)| {
                    close(&forward(&g, x, &w, None, false), want);
                    let grads = backward(&g, x, &w, want, true);
                    assert!(grads.x.is_some_and(|d| d.iter().all(|v| v.is_finite())));
                });
            });
        }
    }

    #[test]
    fn output_size_rejects_kernels_that_do_not_fit() {
        let g = ConvGeometry {
            batch: 1,
            c_in: 1,
            h: 2,
            w: 2,
            c_out: 1,
            kernel: [3, 3],
            stride: [1, 1],
            pad_begin: [0, 0],
            pad_end: [0, 0],
            dilation: [1, 1],
        };
        assert_eq!(g.output(), None);
        assert_eq!(
            ConvGeometry {
                pad_begin: [1, 1],
                ..g
            }
            .output(),
            Some([1, 1])
        );
        assert_eq!(
            ConvGeometry {
                pad_begin: [1, 1],
                pad_end: [1, 1],
                ..g
            }
            .output(),
            Some([2, 2])
        );
        assert_eq!(
            ConvGeometry {
                stride: [0, 1],
                ..g
            }
            .output(),
            None
        );
    }
}
