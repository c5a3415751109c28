//! Max pooling on contiguous NCHW `f32` buffers: forward with the arg-max of every window
//! (index inside its input plane), backward as a scatter of the output gradient to those
//! positions. Square kernel, stride and symmetric padding (padding never wins), planes in
//! parallel. A NaN in a window wins it, so a diverging network shows up in the loss.

use rayon::prelude::*;

/// The geometry of one max pooling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolGeometry {
    /// Number of planes: batch x channels.
    pub planes: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Kernel size (square).
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Padding on every side.
    pub pad: usize,
}

impl PoolGeometry {
    /// Output height and width, `None` if the window does not fit or a size is zero.
    pub fn output(&self) -> Option<[usize; 2]> {
        if self.kernel == 0 || self.stride == 0 || self.pad >= self.kernel {
            return None;
        }
        let dim = |size: usize| {
            let padded = size + 2 * self.pad;
            (padded >= self.kernel).then(|| (padded - self.kernel) / self.stride + 1)
        };
        Some([dim(self.h)?, dim(self.w)?])
    }
}

/// Output of the forward pass.
#[derive(Debug, Clone)]
pub struct PoolForward {
    /// Pooled values `[planes, oh, ow]`.
    pub output: Vec<f32>,
    /// Index of each output's maximum inside its input plane.
    pub argmax: Vec<u32>,
}

/// Forward pass.
///
/// # Panics
/// When the input length disagrees with the geometry or the window does not fit.
// The documented panic.
#[allow(clippy::panic)]
pub fn forward(g: &PoolGeometry, x: &[f32]) -> PoolForward {
    let [oh, ow] = g
        .output()
        .unwrap_or_else(|| panic!("max pool: window does not fit: {g:?}"));
    let (plane_in, plane_out) = (g.h * g.w, oh * ow);
    assert_eq!(x.len(), g.planes * plane_in, "max pool: input length");
    let mut output = vec![0.0f32; g.planes * plane_out];
    let mut argmax = vec![0u32; g.planes * plane_out];
    if plane_out == 0 || plane_in == 0 {
        return PoolForward { output, argmax };
    }
    output
        .par_chunks_mut(plane_out)
        .zip(argmax.par_chunks_mut(plane_out))
        .zip(x.par_chunks(plane_in))
        .for_each(|((out, arg), xs)| forward_plane(g, [oh, ow], xs, out, arg));
    PoolForward { output, argmax }
}

/// The pooled values and arg-maxes of one input plane `xs` (`h x w`; `g.planes` is not
/// read) into `out` and `arg` (`oh x ow`, the geometry's output).
// Every index is inside the plane: the windows are clipped to it, and out and arg hold
// oh * ow values (the callers' chunks).
#[allow(clippy::indexing_slicing)]
pub(crate) fn forward_plane(
    g: &PoolGeometry,
    [oh, ow]: [usize; 2],
    xs: &[f32],
    out: &mut [f32],
    arg: &mut [u32],
) {
    if g.kernel == 2 && g.stride == 2 && g.pad == 0 {
        pool_2x2(g.w, ow, xs, out, arg);
        return;
    }
    for oy in 0..oh {
        let y0 = (oy * g.stride) as isize - g.pad as isize;
        let ys = y0.max(0) as usize..((y0 + g.kernel as isize).min(g.h as isize)) as usize;
        for ox in 0..ow {
            let x0 = (ox * g.stride) as isize - g.pad as isize;
            let xs_range =
                x0.max(0) as usize..((x0 + g.kernel as isize).min(g.w as isize)) as usize;
            let (mut best, mut at) = (f32::NEG_INFINITY, ys.start * g.w + xs_range.start);
            for iy in ys.clone() {
                for ix in xs_range.clone() {
                    let i = iy * g.w + ix;
                    (best, at) = pick(best, at, xs[i], i);
                }
            }
            out[oy * ow + ox] = best;
            arg[oy * ow + ox] = at as u32;
        }
    }
}

/// Adds each output gradient of one plane (`dy`, with the forward's `arg`-maxes) to the input
/// gradient plane `d` at its window's arg-max.
pub(crate) fn backward_plane(arg: &[u32], dy: &[f32], d: &mut [f32]) {
    for (&i, &v) in arg.iter().zip(dy) {
        if let Some(slot) = d.get_mut(i as usize) {
            *slot += v;
        }
    }
}

/// The running maximum `(best, at)` after seeing value `v` at index `i`: `v` wins when it is
/// larger, or when it is the window's first NaN (a NaN, once in, is never replaced). Written
/// as selects, without branches: with random data a branch here mispredicts half the time.
#[inline(always)]
fn pick(best: f32, at: usize, v: f32, i: usize) -> (f32, usize) {
    let wins = v > best || (v.is_nan() && !best.is_nan());
    (if wins { v } else { best }, if wins { i } else { at })
}

/// Windows handled together by the vectorised 2x2 pooling.
pub(crate) const WINDOWS: usize = 8;

/// [`pick`] on [`WINDOWS`] windows at once, lane by lane: `v` (the windows' values at one
/// position, numbered `position`) wins where it is larger, or is the window's first NaN; `at`
/// keeps the winning position. Selects only, so the compiler vectorises it.
#[inline(always)]
pub(crate) fn pick_lanes(
    best: &mut [f32; WINDOWS],
    at: &mut [u32; WINDOWS],
    v: &[f32; WINDOWS],
    position: u32,
) {
    for ((b, a), &v) in best.iter_mut().zip(at.iter_mut()).zip(v) {
        // `|` and `&`, not `||` and `&&`: no short-circuit branch, so every lane is a select.
        let wins = (v > *b) | (v.is_nan() & !b.is_nan());
        *b = if wins { v } else { *b };
        *a = if wins { position } else { *a };
    }
}

/// The maxima of [`WINDOWS`] 2x2 windows whose four values are `a` (top left), `b` (top
/// right), `c` (bottom left) and `d` (bottom right), and the position (0-3, in that order) of
/// each window's maximum, picked in that order as [`pick`] does.
#[inline(always)]
pub(crate) fn windows_2x2([a, b, c, d]: [&[f32; WINDOWS]; 4]) -> ([f32; WINDOWS], [u32; WINDOWS]) {
    let (mut best, mut at) = (*a, [0u32; WINDOWS]);
    pick_lanes(&mut best, &mut at, b, 1);
    pick_lanes(&mut best, &mut at, c, 2);
    pick_lanes(&mut best, &mut at, d, 3);
    (best, at)
}

/// 2x2 windows, stride 2, no padding, on one plane of width `w` (the usual down-sampling
/// pool): [`WINDOWS`] windows of a row at a time, de-interleaved from two rows and compared
/// lane by lane; the rest of the row one window at a time.
// Every index is inside the plane: 2 * ow <= w and 2 * oh <= h (the geometry's output), and
// out and arg hold oh * ow values.
#[allow(clippy::indexing_slicing)]
fn pool_2x2(w: usize, ow: usize, xs: &[f32], out: &mut [f32], arg: &mut [u32]) {
    for ((out, arg), oy) in out
        .chunks_exact_mut(ow)
        .zip(arg.chunks_exact_mut(ow))
        .zip(0..)
    {
        let r0 = 2 * oy * w;
        let (top, bottom) = (&xs[r0..r0 + 2 * ow], &xs[r0 + w..r0 + w + 2 * ow]);
        let whole = ow / WINDOWS * WINDOWS;
        let blocks = out[..whole]
            .chunks_exact_mut(WINDOWS)
            .zip(arg[..whole].chunks_exact_mut(WINDOWS))
            .zip(
                top.chunks_exact(2 * WINDOWS)
                    .zip(bottom.chunks_exact(2 * WINDOWS)),
            );
        for (k, ((o, a), (t, b))) in blocks.enumerate() {
            let even = |r: &[f32]| -> [f32; WINDOWS] { std::array::from_fn(|j| r[2 * j]) };
            let odd = |r: &[f32]| -> [f32; WINDOWS] { std::array::from_fn(|j| r[2 * j + 1]) };
            let (best, at) = windows_2x2([&even(t), &odd(t), &even(b), &odd(b)]);
            o.copy_from_slice(&best);
            let i0 = r0 + 2 * k * WINDOWS;
            for (j, (a, &p)) in a.iter_mut().zip(&at).enumerate() {
                let p = p as usize;
                *a = (i0 + 2 * j + (p >> 1) * w + (p & 1)) as u32;
            }
        }
        for ox in whole..ow {
            let i = r0 + 2 * ox;
            let (mut best, mut at) = (top[2 * ox], i);
            (best, at) = pick(best, at, top[2 * ox + 1], i + 1);
            (best, at) = pick(best, at, bottom[2 * ox], i + w);
            (best, at) = pick(best, at, bottom[2 * ox + 1], i + w + 1);
            out[ox] = best;
            arg[ox] = at as u32;
        }
    }
}

/// Backward pass: the input gradient, `dy` added at each window's arg-max.
///
/// # Panics
/// When a length disagrees with the geometry.
// The documented panic (a window that does not fit).
#[allow(clippy::panic)]
pub fn backward(g: &PoolGeometry, argmax: &[u32], dy: &[f32]) -> Vec<f32> {
    let [oh, ow] = g
        .output()
        .unwrap_or_else(|| panic!("max pool: window does not fit: {g:?}"));
    let (plane_in, plane_out) = (g.h * g.w, oh * ow);
    assert_eq!(
        dy.len(),
        g.planes * plane_out,
        "max pool backward: gradient length"
    );
    assert_eq!(argmax.len(), dy.len(), "max pool backward: arg-max length");
    let mut dx = vec![0.0f32; g.planes * plane_in];
    if plane_out == 0 || plane_in == 0 {
        return dx;
    }
    dx.par_chunks_mut(plane_in)
        .zip(argmax.par_chunks(plane_out).zip(dy.par_chunks(plane_out)))
        .for_each(|(d, (arg, gs))| backward_plane(arg, gs, d));
    dx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_by_two_pooling_picks_maxima_and_routes_gradients() {
        let g = PoolGeometry {
            planes: 1,
            h: 4,
            w: 4,
            kernel: 2,
            stride: 2,
            pad: 0,
        };
        #[rustfmt::skip]
        let x = [
            1.0, 5.0, 2.0, 0.0,
            3.0, 4.0, 9.0, 1.0,
            0.0, 0.0, -1.0, -2.0,
            7.0, 0.0, -3.0, -4.0,
        ];
        let f = forward(&g, &x);
        assert_eq!(f.output, vec![5.0, 9.0, 7.0, -1.0]);
        assert_eq!(f.argmax, vec![1, 6, 12, 10]);
        let dx = backward(&g, &f.argmax, &[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(dx[1], 1.0);
        assert_eq!(dx[6], 2.0);
        assert_eq!(dx[12], 3.0);
        assert_eq!(dx[10], 4.0);
        assert_eq!(dx.iter().sum::<f32>(), 10.0);
    }

    #[test]
    fn padding_never_wins_and_overlapping_windows_accumulate() {
        let g = PoolGeometry {
            planes: 2,
            h: 3,
            w: 3,
            kernel: 3,
            stride: 1,
            pad: 1,
        };
        let x: Vec<f32> = (0..18).map(|v| -(v as f32) - 1.0).collect();
        let f = forward(&g, &x);
        assert_eq!(g.output(), Some([3, 3]));
        // every window of plane 0 contains its top-left element (-1) only if it covers (0, 0)
        assert_eq!(f.output[0], -1.0);
        assert_eq!(f.output[8], -5.0);
        assert!(f.output.iter().all(|v| v.is_finite()));
        let dx = backward(&g, &f.argmax, &[1.0; 18]);
        assert_eq!(dx.iter().sum::<f32>(), 18.0);
        assert_eq!(dx[0], 4.0);
    }

    /// The window's maximum by the definition: first NaN, else first largest value.
    fn naive(g: &PoolGeometry, x: &[f32]) -> PoolForward {
        let [oh, ow] = g.output().expect("a window that fits");
        let (mut output, mut argmax) = (Vec::new(), Vec::new());
        for p in 0..g.planes {
            let plane = &x[p * g.h * g.w..(p + 1) * g.h * g.w];
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut found: Option<(f32, usize)> = None;
                    for ky in 0..g.kernel {
                        for kx in 0..g.kernel {
                            let (iy, ix) = (oy * g.stride + ky, ox * g.stride + kx);
                            if iy < g.pad || ix < g.pad || iy - g.pad >= g.h || ix - g.pad >= g.w {
                                continue;
                            }
                            let i = (iy - g.pad) * g.w + ix - g.pad;
                            let v = plane[i];
                            found = match found {
                                Some((b, _)) if b.is_nan() => found,
                                Some((b, _)) if !(v.is_nan() || v > b) => found,
                                _ => Some((v, i)),
                            };
                        }
                    }
                    let (v, i) = found.expect("a window with a value");
                    output.push(v);
                    argmax.push(i as u32);
                }
            }
        }
        PoolForward { output, argmax }
    }

    #[test]
    fn every_path_agrees_with_the_definition_ties_and_nans_included() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            match state % 23 {
                0 => f32::NAN,
                1 => f32::NEG_INFINITY,
                2 | 3 => 0.5, // ties
                r => r as f32 - 11.0,
            }
        };
        for (h, w, kernel, stride, pad) in [
            (31, 31, 2, 2, 0),
            (40, 37, 2, 2, 0),
            (8, 8, 2, 2, 0),
            (7, 5, 2, 2, 0),
            (2, 3, 2, 2, 0),
            (9, 9, 3, 2, 1),
            (6, 7, 3, 3, 0),
            (5, 5, 2, 1, 0),
        ] {
            let g = PoolGeometry {
                planes: 3,
                h,
                w,
                kernel,
                stride,
                pad,
            };
            let x: Vec<f32> = (0..3 * h * w).map(|_| next()).collect();
            let (got, want) = (forward(&g, &x), naive(&g, &x));
            assert_eq!(got.argmax, want.argmax, "{g:?}");
            let same = |a: &f32, b: &f32| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
            assert!(
                got.output.iter().zip(&want.output).all(|(a, b)| same(a, b)),
                "{g:?}"
            );
        }
    }

    #[test]
    fn nan_wins_its_window() {
        let g = PoolGeometry {
            planes: 1,
            h: 2,
            w: 2,
            kernel: 2,
            stride: 2,
            pad: 0,
        };
        let f = forward(&g, &[1.0, f32::NAN, 3.0, 2.0]);
        assert!(f.output[0].is_nan());
        assert_eq!(PoolGeometry { pad: 2, ..g }.output(), None);
    }
}
