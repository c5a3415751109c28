//! Training-mode batch normalisation on contiguous `[n, c, s]` `f32` buffers (`s` = the
//! spatial size, 1 for vectors): batch statistics, normalised output, and the three gradients,
//! each in two passes over the data with no layout copies. A ReLU that reads the output can run
//! inside it: the output pass clamps, and the backward passes recompute the ReLU's mask from the
//! input and the forward's per-channel affine, so no mask or output is kept.
//!
//! The variance is the biased (population) variance, as burn's `batch_norm_train` computes it.

use rayon::prelude::*;

use super::pool::{self, PoolGeometry};
use super::{lane_sum, lane_sum2};

/// The shape of one batch-norm input: batch, channels, elements per channel and image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NormShape {
    /// Batch size.
    pub batch: usize,
    /// Channels (the normalised axis).
    pub channels: usize,
    /// Elements per channel in one image (height x width; 1 for vectors).
    pub spatial: usize,
}

impl NormShape {
    fn len(&self) -> usize {
        self.batch * self.channels * self.spatial
    }

    /// Samples per channel: `batch * spatial`.
    fn samples(&self) -> usize {
        self.batch * self.spatial
    }
}

/// Output and batch statistics of the forward pass.
#[derive(Debug, Clone)]
pub struct NormForward {
    /// Normalised, scaled and shifted input, same layout as the input.
    pub output: Vec<f32>,
    /// Batch mean per channel.
    pub mean: Vec<f32>,
    /// Biased batch variance per channel.
    pub variance: Vec<f32>,
    /// The per-channel affine the output applied, `y = x * scale + shift` (before the ReLU).
    pub affine: Affine,
}

/// The per-channel affine of a batch norm's output pass, `y = x * scale[c] + shift[c]`: what a
/// fused ReLU's backward step needs to recompute its mask exactly as the forward pass clamped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Affine {
    /// Multiplier per channel: `gamma / sqrt(var + eps)`.
    pub scale: Vec<f32>,
    /// Offset per channel: `beta - mean * scale`.
    pub shift: Vec<f32>,
}

fn plane(shape: &NormShape, n: usize, c: usize) -> std::ops::Range<usize> {
    let start = (n * shape.channels + c) * shape.spatial;
    start..start + shape.spatial
}

/// Batch mean and biased variance of every channel, reading each plane of `x` once from
/// memory: per plane its sum, then its squared deviations from its own mean (a second pass over
/// a plane still in the cache); the planes of a channel are combined exactly in `f64` (the
/// pairwise update of Chan, Golub and LeVeque).
// c < channels and every plane lies in x (the callers assert the length).
#[allow(clippy::indexing_slicing)]
fn statistics(shape: &NormShape, x: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let m = shape.samples().max(1) as f64;
    let s = shape.spatial as f64;
    (0..shape.channels)
        .into_par_iter()
        .map(|c| {
            // Per plane: its sum, its f32 mean, and its squared deviations from that mean.
            let planes: Vec<(f64, f32, f64)> = (0..shape.batch)
                .map(|n| {
                    let p = &x[plane(shape, n, c)];
                    let sum = lane_sum(p, p, |v, _| v);
                    let mu = (sum / s.max(1.0)) as f32;
                    (sum, mu, lane_sum(p, p, |v, _| (v - mu) * (v - mu)))
                })
                .collect();
            let mean = planes.iter().map(|p| p.0).sum::<f64>() / m;
            // Σ (v - mean)² = Σ (v - mu)² + 2 (mu - mean) Σ (v - mu) + s (mu - mean)², per plane.
            let m2: f64 = planes
                .iter()
                .map(|&(sum, mu, sq)| {
                    let d = mu as f64 - mean;
                    sq + 2.0 * d * (sum - s * mu as f64) + s * d * d
                })
                .sum();
            (mean, (m2 / m).max(0.0))
        })
        .unzip()
}

/// Checks the lengths, computes the batch statistics and the output pass's affine.
// c < channels: gamma and beta hold one value per channel (asserted).
#[allow(clippy::indexing_slicing)]
fn prepare(
    shape: &NormShape,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    epsilon: f64,
) -> (Vec<f32>, Vec<f32>, Affine) {
    assert_eq!(x.len(), shape.len(), "batch norm: input length");
    assert_eq!(gamma.len(), shape.channels, "batch norm: gamma length");
    assert_eq!(beta.len(), shape.channels, "batch norm: beta length");
    let (mean, variance) = statistics(shape, x);
    let scale: Vec<f32> = (0..shape.channels)
        .map(|c| (gamma[c] as f64 / (variance[c] + epsilon).sqrt()) as f32)
        .collect();
    let shift: Vec<f32> = (0..shape.channels)
        .map(|c| beta[c] - mean[c] as f32 * scale[c])
        .collect();
    (
        mean.iter().map(|&v| v as f32).collect(),
        variance.iter().map(|&v| v as f32).collect(),
        Affine { scale, shift },
    )
}

/// `out = x * a + b`, clamped at zero when `relu`.
fn affine_pass(out: &mut [f32], inp: &[f32], (a, b): (f32, f32), relu: bool) {
    if relu {
        for (o, &v) in out.iter_mut().zip(inp) {
            *o = (v * a + b).max(0.0);
        }
    } else {
        for (o, &v) in out.iter_mut().zip(inp) {
            *o = v * a + b;
        }
    }
}

/// Forward pass: `y = (x - mean) / sqrt(var + eps) * gamma + beta` with batch statistics, and
/// `y = max(y, 0)` when `relu`.
///
/// # Panics
/// When a slice length disagrees with the shape.
// c < channels (prepare asserted the lengths).
#[allow(clippy::indexing_slicing)]
pub fn forward(
    shape: &NormShape,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    epsilon: f64,
    relu: bool,
) -> NormForward {
    let (mean, variance, affine) = prepare(shape, x, gamma, beta, epsilon);
    let mut output = vec![0.0f32; shape.len()];
    if shape.spatial > 0 {
        output
            .par_chunks_mut(shape.spatial)
            .zip(x.par_chunks(shape.spatial))
            .enumerate()
            .for_each(|(i, (out, inp))| {
                let c = i % shape.channels;
                affine_pass(out, inp, (affine.scale[c], affine.shift[c]), relu);
            });
    }
    NormForward {
        output,
        mean,
        variance,
        affine,
    }
}

/// [`forward`] followed by the max pooling `pool` of every plane (`pool.h x pool.w` must be the
/// shape's spatial size; `pool.planes` is not read). Each normalised plane is pooled while it
/// is in the cache, so only the pooled output is written. Returns the pooled output in
/// [`NormForward::output`] (`[n, c, oh, ow]`) and the arg-max of every pooled value inside its
/// plane, as [`pool::forward`] numbers them.
///
/// # Panics
/// When a slice length disagrees with the shape, or the pool with the planes.
// c < channels (prepare asserted the lengths).
#[allow(clippy::indexing_slicing, clippy::panic)]
pub fn forward_pooled(
    shape: &NormShape,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    epsilon: f64,
    relu: bool,
    pool: &PoolGeometry,
) -> (NormForward, Vec<u32>) {
    let out = pool
        .output()
        .filter(|_| pool.h * pool.w == shape.spatial)
        .unwrap_or_else(|| panic!("batch norm + max pool: {pool:?} on {shape:?}"));
    let (mean, variance, affine) = prepare(shape, x, gamma, beta, epsilon);
    let pooled = out[0] * out[1];
    let planes = shape.batch * shape.channels;
    let mut output = vec![0.0f32; planes * pooled];
    let mut argmax = vec![0u32; planes * pooled];
    if shape.spatial > 0 && pooled > 0 {
        output
            .par_chunks_mut(pooled)
            .zip(argmax.par_chunks_mut(pooled))
            .zip(x.par_chunks(shape.spatial))
            .enumerate()
            .for_each_init(Vec::new, |plane_buf, (i, ((o, arg), inp))| {
                let c = i % shape.channels;
                plane_buf.resize(shape.spatial, 0.0);
                affine_pass(plane_buf, inp, (affine.scale[c], affine.shift[c]), relu);
                pool::forward_plane(pool, out, plane_buf, o, arg);
            });
    }
    let f = NormForward {
        output,
        mean,
        variance,
        affine,
    };
    (f, argmax)
}

/// Gradients of the forward pass.
#[derive(Debug, Clone)]
pub struct NormGrads {
    /// Gradient of the input, when asked for.
    pub x: Option<Vec<f32>>,
    /// Gradient of gamma.
    pub gamma: Vec<f32>,
    /// Gradient of beta.
    pub beta: Vec<f32>,
}

/// The gradient of a batch norm's output, as the next step hands it back.
#[derive(Debug, Clone, Copy)]
pub enum Upstream<'a> {
    /// One value per output element, in the input's layout.
    Full(&'a [f32]),
    /// The gradient of [`forward_pooled`]'s output: `dy` per pooled value, the `argmax` of each
    /// inside its plane, and `pooled` values per plane. The plane's gradient is rebuilt in the
    /// cache where a pass needs it, never written out whole.
    Pooled {
        /// Gradient of every pooled value.
        dy: &'a [f32],
        /// Where each pooled value came from inside its plane.
        argmax: &'a [u32],
        /// Pooled values per plane.
        pooled: usize,
    },
}

impl Upstream<'_> {
    /// Asserts that the gradient covers `planes` planes.
    fn check(&self, planes: usize, spatial: usize) {
        match self {
            Upstream::Full(dy) => assert_eq!(
                dy.len(),
                planes * spatial,
                "batch norm backward: output gradient length"
            ),
            Upstream::Pooled { dy, argmax, pooled } => {
                assert_eq!(
                    dy.len(),
                    planes * pooled,
                    "batch norm backward: pooled gradient length"
                );
                assert_eq!(
                    argmax.len(),
                    dy.len(),
                    "batch norm backward: arg-max length"
                );
            }
        }
    }

    /// The output gradient of plane `p` (`spatial` values), rebuilt in `scratch` when pooled.
    fn plane<'s>(&'s self, p: usize, spatial: usize, scratch: &'s mut Vec<f32>) -> &'s [f32] {
        match *self {
            Upstream::Full(dy) => dy.get(p * spatial..(p + 1) * spatial).unwrap_or(&[]),
            Upstream::Pooled { dy, argmax, pooled } => {
                scratch.clear();
                scratch.resize(spatial, 0.0);
                let r = p * pooled..(p + 1) * pooled;
                if let (Some(a), Some(g)) = (argmax.get(r.clone()), dy.get(r)) {
                    pool::backward_plane(a, g, scratch);
                }
                scratch
            }
        }
    }
}

/// Backward pass from the output gradient `dy`, given the forward's batch statistics:
/// `dx = gamma * inv_std / m * (m * dy - sum(dy) - x_hat * sum(dy * x_hat))`. With `relu` (the
/// forward's [`NormForward::affine`], when it ran with a ReLU), `dy` is first zeroed wherever the
/// forward clamped (`x * scale + shift <= 0`), inside the same passes. Two passes over the data:
/// both sums at once, then the input gradient.
///
/// # Panics
/// When a slice length disagrees with the shape.
// The lengths are asserted against the shape first: c < channels and every plane lies in x, dy.
#[allow(clippy::too_many_arguments, clippy::indexing_slicing)]
pub fn backward(
    shape: &NormShape,
    x: &[f32],
    gamma: &[f32],
    mean: &[f32],
    variance: &[f32],
    epsilon: f64,
    dy: Upstream<'_>,
    relu: Option<&Affine>,
    need_x: bool,
) -> NormGrads {
    assert_eq!(x.len(), shape.len(), "batch norm backward: input length");
    dy.check(shape.batch * shape.channels, shape.spatial);
    assert_eq!(
        gamma.len(),
        shape.channels,
        "batch norm backward: gamma length"
    );
    assert_eq!(
        mean.len(),
        shape.channels,
        "batch norm backward: mean length"
    );
    assert_eq!(
        variance.len(),
        shape.channels,
        "batch norm backward: variance length"
    );
    if let Some(a) = relu {
        assert_eq!(
            a.scale.len(),
            shape.channels,
            "batch norm backward: scale length"
        );
        assert_eq!(
            a.shift.len(),
            shape.channels,
            "batch norm backward: shift length"
        );
    }
    let inv_std: Vec<f32> = variance
        .iter()
        .map(|&v| (1.0 / (v as f64 + epsilon).sqrt()) as f32)
        .collect();
    // The ReLU's gate of channel c: the output gradient where the forward did not clamp. One
    // branch-free form keeps the loops vectorised.
    let gate = |c: usize| {
        let (a, b) = relu.map_or((0.0, 1.0), |r| (r.scale[c], r.shift[c]));
        move |v: f32, g: f32| if v * a + b > 0.0 { g } else { 0.0 }
    };
    // Per channel, in one pass: sum(dy) (dbeta) and sum(dy * (x - mean)) (dgamma / inv_std).
    let (dbeta, dgamma): (Vec<f64>, Vec<f64>) = (0..shape.channels)
        .into_par_iter()
        .map(|c| {
            let (mu, gate) = (mean[c], gate(c));
            let mut scratch = Vec::new();
            let (mut sb, mut sg) = (0.0f64, 0.0f64);
            for n in 0..shape.batch {
                let xs = &x[plane(shape, n, c)];
                let gs = dy.plane(n * shape.channels + c, shape.spatial, &mut scratch);
                let (b, g) = if relu.is_some() {
                    lane_sum2(xs, gs, |v, g| {
                        let g = gate(v, g);
                        (g, (v - mu) * g)
                    })
                } else {
                    // Without a ReLU every value counts (a NaN input makes dgamma NaN).
                    lane_sum2(xs, gs, |v, g| (g, (v - mu) * g))
                };
                sb += b;
                sg += g;
            }
            (sb, inv_std[c] as f64 * sg)
        })
        .unzip();
    let dx = need_x.then(|| {
        let m = shape.samples().max(1) as f32;
        let mut dx = vec![0.0f32; shape.len()];
        if shape.spatial > 0 {
            dx.par_chunks_mut(shape.spatial)
                .zip(x.par_chunks(shape.spatial))
                .enumerate()
                .for_each_init(Vec::new, |scratch, (i, (out, xs))| {
                    let c = i % shape.channels;
                    let gs = dy.plane(i, shape.spatial, scratch);
                    let (mu, is, gate) = (mean[c], inv_std[c], gate(c));
                    let k = gamma[c] * is / m;
                    let (sb, sg) = (dbeta[c] as f32, dgamma[c] as f32);
                    for ((o, &v), &g) in out.iter_mut().zip(xs).zip(gs) {
                        *o = k * (m * gate(v, g) - sb - (v - mu) * is * sg);
                    }
                });
        }
        dx
    });
    NormGrads {
        x: dx,
        gamma: dgamma.iter().map(|&v| v as f32).collect(),
        beta: dbeta.iter().map(|&v| v as f32).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(7);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s % 2000) as f32 / 500.0 - 2.0
            })
            .collect()
    }

    #[test]
    fn output_is_normalised_per_channel() {
        let shape = NormShape {
            batch: 4,
            channels: 3,
            spatial: 10,
        };
        let x = values(shape.len(), 1);
        let f = forward(&shape, &x, &[1.0; 3], &[0.0; 3], 1e-5, false);
        for c in 0..3 {
            let vals: Vec<f32> = (0..4)
                .flat_map(|n| f.output[plane(&shape, n, c)].to_vec())
                .collect();
            let mean: f32 = vals.iter().sum::<f32>() / vals.len() as f32;
            let var: f32 =
                vals.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / vals.len() as f32;
            assert!(mean.abs() < 1e-5, "channel {c} mean {mean}");
            assert!((var - 1.0).abs() < 1e-3, "channel {c} variance {var}");
        }
    }

    /// Finite differences of `L = sum(dy * y)` agree with the analytic gradients, with and
    /// without a fused ReLU (away from its kink).
    #[test]
    fn gradients_match_finite_differences() {
        let shape = NormShape {
            batch: 3,
            channels: 2,
            spatial: 5,
        };
        let x = values(shape.len(), 2);
        let gamma = [0.7f32, -1.3];
        let beta = [0.2f32, 0.5];
        let dy = values(shape.len(), 3);
        for relu in [false, true] {
            let loss = |x: &[f32], gamma: &[f32], beta: &[f32]| -> f64 {
                let y = forward(&shape, x, gamma, beta, 1e-5, relu).output;
                y.iter()
                    .zip(&dy)
                    .map(|(a, b)| (*a as f64) * (*b as f64))
                    .sum()
            };
            let f = forward(&shape, &x, &gamma, &beta, 1e-5, relu);
            let affine = relu.then_some(&f.affine);
            let g = backward(
                &shape,
                &x,
                &gamma,
                &f.mean,
                &f.variance,
                1e-5,
                Upstream::Full(&dy),
                affine,
                true,
            );
            let dx = g.x.expect("asked for");
            let h = 1e-2f32;
            let pre = |i: usize| {
                let c = (i / shape.spatial) % shape.channels;
                x[i] * f.affine.scale[c] + f.affine.shift[c]
            };
            let mut checked = 0;
            for i in [0usize, 4, 7, 11, 13, 18, 22, 29] {
                if relu && pre(i).abs() < 0.1 {
                    continue;
                }
                checked += 1;
                let (mut up, mut down) = (x.clone(), x.clone());
                up[i] += h;
                down[i] -= h;
                let numeric =
                    (loss(&up, &gamma, &beta) - loss(&down, &gamma, &beta)) / (2.0 * h as f64);
                assert!(
                    (numeric - dx[i] as f64).abs() < 2e-2,
                    "relu {relu}, dx[{i}]: {numeric} vs {}",
                    dx[i]
                );
            }
            assert!(
                checked >= 5,
                "relu {relu}: only {checked} points away from the kink"
            );
            for c in 0..2 {
                let (mut up, mut down) = (gamma, gamma);
                up[c] += h;
                down[c] -= h;
                let numeric = (loss(&x, &up, &beta) - loss(&x, &down, &beta)) / (2.0 * h as f64);
                assert!(
                    (numeric - g.gamma[c] as f64).abs() < 2e-2,
                    "relu {relu}, dgamma[{c}]"
                );
                let (mut up, mut down) = (beta, beta);
                up[c] += h;
                down[c] -= h;
                let numeric = (loss(&x, &gamma, &up) - loss(&x, &gamma, &down)) / (2.0 * h as f64);
                assert!(
                    (numeric - g.beta[c] as f64).abs() < 2e-2,
                    "relu {relu}, dbeta[{c}]"
                );
            }
        }
    }

    /// The fused ReLU is exactly `max(y, 0)` of the plain output, and its backward step is the
    /// plain backward step of the gradient masked where that output is not positive.
    #[test]
    fn fused_relu_equals_norm_then_relu() {
        let shape = NormShape {
            batch: 4,
            channels: 3,
            spatial: 37,
        };
        let x = values(shape.len(), 5);
        let (gamma, beta) = ([0.9f32, -0.6, 1.4], [0.3f32, -0.1, 0.0]);
        let dy = values(shape.len(), 6);
        let plain = forward(&shape, &x, &gamma, &beta, 1e-5, false);
        let fused = forward(&shape, &x, &gamma, &beta, 1e-5, true);
        let clamped = plain.output.iter().filter(|&&v| v <= 0.0).count();
        assert!(
            clamped > 50 && clamped < shape.len() - 50,
            "{clamped} clamped"
        );
        for (a, b) in fused.output.iter().zip(&plain.output) {
            assert_eq!(*a, b.max(0.0));
        }
        let masked: Vec<f32> = dy
            .iter()
            .zip(&plain.output)
            .map(|(&g, &y)| if y > 0.0 { g } else { 0.0 })
            .collect();
        let want = backward(
            &shape,
            &x,
            &gamma,
            &plain.mean,
            &plain.variance,
            1e-5,
            Upstream::Full(&masked),
            None,
            true,
        );
        let got = backward(
            &shape,
            &x,
            &gamma,
            &fused.mean,
            &fused.variance,
            1e-5,
            Upstream::Full(&dy),
            Some(&fused.affine),
            true,
        );
        let close = |a: &[f32], b: &[f32], what: &str| {
            for (i, (p, q)) in a.iter().zip(b).enumerate() {
                assert!(
                    (p - q).abs() <= 1e-5 * (1.0 + q.abs()),
                    "{what}[{i}]: {p} vs {q}"
                );
            }
        };
        close(&got.x.expect("asked"), &want.x.expect("asked"), "dx");
        close(&got.gamma, &want.gamma, "dgamma");
        close(&got.beta, &want.beta, "dbeta");
    }

    /// The statistics read each plane once yet match the two-pass definition in f64, also for
    /// values far from zero (where a one-pass sum of squares would cancel), and for vectors.
    #[test]
    fn statistics_match_the_definition() {
        for (shape, offset) in [
            (
                NormShape {
                    batch: 5,
                    channels: 3,
                    spatial: 49,
                },
                1000.0f32,
            ),
            (
                NormShape {
                    batch: 7,
                    channels: 4,
                    spatial: 1,
                },
                -3.0,
            ),
        ] {
            let x: Vec<f32> = values(shape.len(), 9).iter().map(|v| v + offset).collect();
            let (mean, variance) = statistics(&shape, &x);
            for c in 0..shape.channels {
                let vals: Vec<f64> = (0..shape.batch)
                    .flat_map(|n| x[plane(&shape, n, c)].iter().map(|&v| v as f64))
                    .collect();
                let mu = vals.iter().sum::<f64>() / vals.len() as f64;
                let var = vals.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / vals.len() as f64;
                assert!((mean[c] - mu).abs() < 1e-6 * (1.0 + mu.abs()), "mean {c}");
                assert!(
                    (variance[c] - var).abs() < 1e-4 * var,
                    "variance {c}: {} vs {var}",
                    variance[c]
                );
            }
        }
    }

    /// Batch norm (with and without its ReLU) then max pooling as one step equals the two
    /// steps: the pooled values and arg-maxes, and the three gradients from a pooled gradient.
    #[test]
    fn pooled_forward_and_backward_equal_norm_then_pool() {
        let shape = NormShape {
            batch: 3,
            channels: 4,
            spatial: 7 * 6,
        };
        let x = values(shape.len(), 11);
        let (gamma, beta) = ([0.9f32, -0.6, 1.4, 0.2], [0.3f32, -0.1, 0.0, -0.5]);
        for (kernel, stride, pad) in [(2, 2, 0), (3, 2, 1), (2, 1, 0)] {
            let g = PoolGeometry {
                planes: shape.batch * shape.channels,
                h: 7,
                w: 6,
                kernel,
                stride,
                pad,
            };
            for relu in [false, true] {
                let plain = forward(&shape, &x, &gamma, &beta, 1e-5, relu);
                let pooled = pool::forward(&g, &plain.output);
                let (fused, argmax) = forward_pooled(&shape, &x, &gamma, &beta, 1e-5, relu, &g);
                assert_eq!(fused.output, pooled.output);
                assert_eq!(argmax, pooled.argmax);
                let dyp = values(pooled.output.len(), 12);
                let dy = pool::backward(&g, &pooled.argmax, &dyp);
                let affine = relu.then_some(&plain.affine);
                let (m, v) = (&plain.mean, &plain.variance);
                let want = backward(
                    &shape,
                    &x,
                    &gamma,
                    m,
                    v,
                    1e-5,
                    Upstream::Full(&dy),
                    affine,
                    true,
                );
                let up = Upstream::Pooled {
                    dy: &dyp,
                    argmax: &argmax,
                    pooled: dyp.len() / g.planes,
                };
                let got = backward(&shape, &x, &gamma, m, v, 1e-5, up, affine, true);
                assert_eq!(
                    got.x, want.x,
                    "dx, pool {kernel}/{stride}/{pad}, relu {relu}"
                );
                assert_eq!(got.gamma, want.gamma);
                assert_eq!(got.beta, want.beta);
            }
        }
    }
}
