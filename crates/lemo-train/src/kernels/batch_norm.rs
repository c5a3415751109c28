//! Training-mode batch normalisation on contiguous `[n, c, s]` `f32` buffers (`s` = the
//! spatial size, 1 for vectors): batch statistics, normalised output, and the three gradients,
//! each in two passes over the data with no layout copies. A ReLU that reads the output can run
//! inside it: the output pass clamps, and the backward passes recompute the ReLU's mask from the
//! input and the forward's per-channel affine, so no mask or output is kept.
//!
//! The variance is the biased (population) variance, as burn's `batch_norm_train` computes it.

use rayon::prelude::*;

use super::lane_sum;

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

/// Per-channel sums of `f(image plane of channel c)` over the batch, in `f64`.
fn per_channel(shape: &NormShape, f: impl Fn(usize, usize) -> f64 + Sync) -> Vec<f64> {
    (0..shape.channels)
        .into_par_iter()
        .map(|c| (0..shape.batch).map(|n| f(n, c)).sum())
        .collect()
}

fn plane(shape: &NormShape, n: usize, c: usize) -> std::ops::Range<usize> {
    let start = (n * shape.channels + c) * shape.spatial;
    start..start + shape.spatial
}

/// Forward pass: `y = (x - mean) / sqrt(var + eps) * gamma + beta` with batch statistics, and
/// `y = max(y, 0)` when `relu`.
///
/// # Panics
/// When a slice length disagrees with the shape.
// The lengths are asserted against the shape first: c < channels and every plane lies in x.
#[allow(clippy::indexing_slicing)]
pub fn forward(
    shape: &NormShape,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    epsilon: f64,
    relu: bool,
) -> NormForward {
    assert_eq!(x.len(), shape.len(), "batch norm: input length");
    assert_eq!(gamma.len(), shape.channels, "batch norm: gamma length");
    assert_eq!(beta.len(), shape.channels, "batch norm: beta length");
    let m = shape.samples().max(1) as f64;
    let sums = per_channel(shape, |n, c| {
        x[plane(shape, n, c)].iter().map(|&v| v as f64).sum()
    });
    let mean: Vec<f64> = sums.iter().map(|s| s / m).collect();
    let sq = per_channel(shape, |n, c| {
        let mu = mean[c] as f32;
        x[plane(shape, n, c)]
            .iter()
            .map(|&v| ((v - mu) * (v - mu)) as f64)
            .sum()
    });
    let variance: Vec<f64> = sq.iter().map(|s| s / m).collect();
    let scale: Vec<f32> = (0..shape.channels)
        .map(|c| (gamma[c] as f64 / (variance[c] + epsilon).sqrt()) as f32)
        .collect();
    let shift: Vec<f32> = (0..shape.channels)
        .map(|c| beta[c] - mean[c] as f32 * scale[c])
        .collect();
    let mut output = vec![0.0f32; shape.len()];
    if shape.spatial > 0 {
        output
            .par_chunks_mut(shape.spatial)
            .zip(x.par_chunks(shape.spatial))
            .enumerate()
            .for_each(|(i, (out, inp))| {
                let c = i % shape.channels;
                let (a, b) = (scale[c], shift[c]);
                if relu {
                    for (o, &v) in out.iter_mut().zip(inp) {
                        *o = (v * a + b).max(0.0);
                    }
                } else {
                    for (o, &v) in out.iter_mut().zip(inp) {
                        *o = v * a + b;
                    }
                }
            });
    }
    NormForward {
        output,
        mean: mean.iter().map(|&v| v as f32).collect(),
        variance: variance.iter().map(|&v| v as f32).collect(),
        affine: Affine { scale, shift },
    }
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

/// Backward pass from the output gradient `dy`, given the forward's batch statistics:
/// `dx = gamma * inv_std / m * (m * dy - sum(dy) - x_hat * sum(dy * x_hat))`. With `relu` (the
/// forward's [`NormForward::affine`], when it ran with a ReLU), `dy` is first zeroed wherever the
/// forward clamped (`x * scale + shift <= 0`), inside the same passes.
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
    dy: &[f32],
    relu: Option<&Affine>,
    need_x: bool,
) -> NormGrads {
    assert_eq!(x.len(), shape.len(), "batch norm backward: input length");
    assert_eq!(
        dy.len(),
        shape.len(),
        "batch norm backward: output gradient length"
    );
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
    // The ReLU's gate of channel c: the output gradient where the forward did not clamp
    // (without a ReLU, `v * 0 + 1 > 0` lets every finite value through; a NaN input makes the
    // gradient NaN either way). One branch-free form keeps the loops vectorised.
    let gate = |c: usize| {
        let (a, b) = relu.map_or((0.0, 1.0), |r| (r.scale[c], r.shift[c]));
        move |v: f32, g: f32| if v * a + b > 0.0 { g } else { 0.0 }
    };
    let dbeta = per_channel(shape, |n, c| {
        let r = plane(shape, n, c);
        if relu.is_some() {
            lane_sum(&x[r.clone()], &dy[r], gate(c))
        } else {
            dy[r].iter().map(|&v| v as f64).sum()
        }
    });
    let dgamma = per_channel(shape, |n, c| {
        let r = plane(shape, n, c);
        let (mu, is, gate) = (mean[c], inv_std[c], gate(c));
        is as f64 * lane_sum(&x[r.clone()], &dy[r], |v, g| (v - mu) * gate(v, g))
    });
    let dx = need_x.then(|| {
        let m = shape.samples().max(1) as f32;
        let mut dx = vec![0.0f32; shape.len()];
        if shape.spatial > 0 {
            dx.par_chunks_mut(shape.spatial)
                .zip(
                    x.par_chunks(shape.spatial)
                        .zip(dy.par_chunks(shape.spatial)),
                )
                .enumerate()
                .for_each(|(i, (out, (xs, gs)))| {
                    let c = i % shape.channels;
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
                &dy,
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
            &masked,
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
            &dy,
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
}
