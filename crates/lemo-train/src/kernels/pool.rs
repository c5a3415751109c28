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
// The documented panic; every index is inside a plane whose length the assertions checked.
#[allow(clippy::panic, clippy::indexing_slicing)]
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
        .for_each(|((out, arg), xs)| {
            for oy in 0..oh {
                let y0 = (oy * g.stride) as isize - g.pad as isize;
                let ys = y0.max(0) as usize..((y0 + g.kernel as isize).min(g.h as isize)) as usize;
                for ox in 0..ow {
                    let x0 = (ox * g.stride) as isize - g.pad as isize;
                    let xs_range =
                        x0.max(0) as usize..((x0 + g.kernel as isize).min(g.w as isize)) as usize;
                    let (mut best, mut at) = (f32::NEG_INFINITY, ys.start * g.w + xs_range.start);
                    'window: for iy in ys.clone() {
                        for ix in xs_range.clone() {
                            let v = xs[iy * g.w + ix];
                            if v > best || v.is_nan() {
                                best = v;
                                at = iy * g.w + ix;
                                if v.is_nan() {
                                    break 'window;
                                }
                            }
                        }
                    }
                    out[oy * ow + ox] = best;
                    arg[oy * ow + ox] = at as u32;
                }
            }
        });
    PoolForward { output, argmax }
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
        .for_each(|(d, (arg, gs))| {
            for (&i, &v) in arg.iter().zip(gs) {
                if let Some(slot) = d.get_mut(i as usize) {
                    *slot += v;
                }
            }
        });
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
