//! Patch whitening ([`lemo_arch::Init::PatchWhitening`]): the filters of a convolution that
//! reads the image, computed from the training images before training starts (airbench's stem).
//!
//! The second moment `C = E[p pᵀ]` of the normalised `k`x`k` patches of a sample of training
//! images is decomposed as `C = Σ λᵢ vᵢ vᵢᵀ`; filter `2i` is `vᵢ / sqrt(λᵢ + ε)` and filter
//! `2i + 1` its negative, largest eigenvalue first, so the layer's outputs start uncorrelated
//! with unit variance and a following ReLU keeps both signs. Filters beyond `2 x` the patch size
//! keep their He-normal start. Only training images are read: never validation or test data.

use lemo_core::data::{Dataset, Normalization};

/// Images sampled (evenly spaced through the set) for the patch statistics.
pub const WHITENING_IMAGES: usize = 2_000;

/// Added to every eigenvalue before the inverse square root (airbench's value, for normalised
/// pixels): directions with almost no variance are not blown up.
pub const WHITENING_EPSILON: f64 = 5e-4;

/// The whitening filters for the `kernel` x `kernel` patches of `set` under `norm`: the first
/// `n = min(filters, 2 x channels x kernel²)` filters, `[n][channels][kernel][kernel]`
/// row-major, and `n` (the caller keeps its own initial values for the filters past `n`).
/// `None` when the set is empty or no patch fits in its images.
// order holds d indexes below d, vectors is d x d, and row / 2 < d because row < 2 d.
#[allow(clippy::indexing_slicing)]
pub fn whitening_filters(
    set: &Dataset,
    norm: &Normalization,
    kernel: usize,
    filters: usize,
) -> Option<(Vec<f32>, usize)> {
    let [c, h, w] = set.shape;
    if kernel == 0 || kernel > h || kernel > w || set.is_empty() {
        return None;
    }
    let d = c * kernel * kernel;
    let moment = second_moment(set, norm, kernel)?;
    let (values, vectors) = symmetric_eigen(moment, d);
    let mut order: Vec<usize> = (0..d).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    let set_rows = filters.min(2 * d);
    let mut out = vec![0.0f32; set_rows * d];
    for (row, dst) in out.chunks_exact_mut(d).enumerate() {
        let i = order[row / 2];
        let sign = if row % 2 == 0 { 1.0 } else { -1.0 };
        let scale = sign / (values[i].max(0.0) + WHITENING_EPSILON).sqrt();
        for (k, v) in dst.iter_mut().enumerate() {
            *v = (vectors[k * d + i] * scale) as f32;
        }
    }
    Some((out, set_rows))
}

/// `E[p pᵀ]` over every `kernel` x `kernel` patch (stride 1, inside the image) of up to
/// [`WHITENING_IMAGES`] evenly spaced images, as a `d x d` row-major matrix (`d = c k²`,
/// patch values ordered channel, row, column: a convolution weight's order).
// Indexes stay inside one image (y + ky < h, x + kx < w) and inside the d x d matrix.
#[allow(clippy::indexing_slicing)]
fn second_moment(set: &Dataset, norm: &Normalization, kernel: usize) -> Option<Vec<f64>> {
    let [c, h, w] = set.shape;
    let d = c * kernel * kernel;
    let image_len = c * h * w;
    let step = set.len().div_ceil(WHITENING_IMAGES).max(1);
    let scale_offset = norm.scale_offset();
    if scale_offset.len() != c {
        return None;
    }
    let mut sum = vec![0.0f64; d * d];
    let mut count = 0u64;
    let mut pixels = vec![0.0f32; image_len];
    let mut patch = vec![0.0f64; d];
    for img in set.images.chunks_exact(image_len).step_by(step) {
        crate::data::normalize_into(img, h * w, &scale_offset, &mut pixels);
        for y in 0..=h - kernel {
            for x in 0..=w - kernel {
                let mut k = 0;
                for ch in 0..c {
                    for ky in 0..kernel {
                        let row = ch * h * w + (y + ky) * w + x;
                        for &v in &pixels[row..row + kernel] {
                            patch[k] = f64::from(v);
                            k += 1;
                        }
                    }
                }
                for (i, &pi) in patch.iter().enumerate() {
                    // The upper triangle only; mirrored below.
                    for (j, &pj) in patch.iter().enumerate().skip(i) {
                        sum[i * d + j] += pi * pj;
                    }
                }
                count += 1;
            }
        }
    }
    if count == 0 {
        return None;
    }
    for i in 0..d {
        for j in i..d {
            let v = sum[i * d + j] / count as f64;
            sum[i * d + j] = v;
            sum[j * d + i] = v;
        }
    }
    Some(sum)
}

/// Eigenvalues and eigenvectors of the symmetric `d x d` row-major matrix `a` by cyclic Jacobi
/// rotations: `(values, vectors)` with eigenvector `i` in column `i` of `vectors` (row-major).
// All indexes are below d in both dimensions of d x d matrices.
#[allow(clippy::indexing_slicing)]
pub fn symmetric_eigen(mut a: Vec<f64>, d: usize) -> (Vec<f64>, Vec<f64>) {
    let mut v = vec![0.0f64; d * d];
    for i in 0..d {
        v[i * d + i] = 1.0;
    }
    let total: f64 = a.iter().map(|x| x * x).sum::<f64>().max(f64::MIN_POSITIVE);
    for _sweep in 0..100 {
        let off: f64 = (0..d)
            .flat_map(|i| (0..d).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * d + j] * a[i * d + j])
            .sum();
        if off <= 1e-24 * total {
            break;
        }
        for p in 0..d {
            for q in p + 1..d {
                let apq = a[p * d + q];
                if apq.abs() <= 1e-300 {
                    continue;
                }
                // The rotation that zeroes a[p][q] (Golub & Van Loan, algorithm 8.4.2).
                let theta = (a[q * d + q] - a[p * d + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let cos = 1.0 / (t * t + 1.0).sqrt();
                let sin = t * cos;
                for k in 0..d {
                    let (akp, akq) = (a[k * d + p], a[k * d + q]);
                    a[k * d + p] = cos * akp - sin * akq;
                    a[k * d + q] = sin * akp + cos * akq;
                }
                for k in 0..d {
                    let (apk, aqk) = (a[p * d + k], a[q * d + k]);
                    a[p * d + k] = cos * apk - sin * aqk;
                    a[q * d + k] = sin * apk + cos * aqk;
                }
                for k in 0..d {
                    let (vkp, vkq) = (v[k * d + p], v[k * d + q]);
                    v[k * d + p] = cos * vkp - sin * vkq;
                    v[k * d + q] = sin * vkp + cos * vkq;
                }
            }
        }
    }
    ((0..d).map(|i| a[i * d + i]).collect(), v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jacobi_recovers_a_known_decomposition() {
        // A = Q diag(5, 2, 0.5) Qᵀ for a rotation Q.
        let (c, s) = (0.6f64, 0.8f64);
        let q = [c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0];
        let l = [5.0, 2.0, 0.5];
        let mut a = vec![0.0; 9];
        for i in 0..3 {
            for j in 0..3 {
                a[i * 3 + j] = (0..3).map(|k| q[i * 3 + k] * l[k] * q[j * 3 + k]).sum();
            }
        }
        let (values, vectors) = symmetric_eigen(a.clone(), 3);
        let mut sorted = values.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        for (got, want) in sorted.iter().zip(l) {
            assert!((got - want).abs() < 1e-10, "{sorted:?}");
        }
        // A v = λ v for every column.
        for i in 0..3 {
            for r in 0..3 {
                let av: f64 = (0..3).map(|k| a[r * 3 + k] * vectors[k * 3 + i]).sum();
                assert!((av - values[i] * vectors[r * 3 + i]).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn whitened_patches_have_identity_second_moment() {
        // Correlated random images: each pixel mixes its left neighbour and the other channel.
        let (n, c, h, w) = (64usize, 2usize, 9usize, 9usize);
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut images = Vec::with_capacity(n * c * h * w);
        for _ in 0..n {
            let mut img = vec![0.0f64; c * h * w];
            for (i, v) in img.iter_mut().enumerate() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let noise = (state % 1000) as f64 / 1000.0;
                let left = if i % w > 0 { 0.0 } else { 0.5 };
                *v = noise + left;
            }
            for i in 1..img.len() {
                if i % w > 0 {
                    img[i] = 0.5 * img[i] + 0.5 * img[i - 1];
                }
            }
            for i in h * w..img.len() {
                img[i] = 0.3 * img[i] + 0.7 * img[i - h * w];
            }
            images.extend(img.iter().map(|v| (v * 200.0) as u8));
        }
        let set = Dataset::new("test", [c, h, w], vec!["a".into()], images, vec![0; n])
            .expect("a valid dataset");
        let norm = Normalization::from_dataset(&set);
        let kernel = 2;
        let d = c * kernel * kernel;
        let (filters, rows) = whitening_filters(&set, &norm, kernel, 3 * d).expect("filters");
        assert_eq!(rows, 2 * d);
        // Filters 0, 2, 4, ... (the + half) map the patches to outputs with E[y yᵀ] ≈ I.
        let moment = second_moment(&set, &norm, kernel).expect("a moment");
        for i in 0..d {
            for j in 0..d {
                let (fi, fj) = (&filters[2 * i * d..][..d], &filters[2 * j * d..][..d]);
                let m: f64 = (0..d)
                    .map(|a| {
                        (0..d)
                            .map(|b| f64::from(fi[a]) * moment[a * d + b] * f64::from(fj[b]))
                            .sum::<f64>()
                    })
                    .sum();
                let want = if i == j { 1.0 } else { 0.0 };
                // ε shrinks the unit variances slightly: λ / (λ + ε).
                assert!((m - want).abs() < 0.05, "E[y{i} y{j}] = {m}");
            }
            // The - filter is the negative of the + one.
            let (plus, minus) = (&filters[2 * i * d..][..d], &filters[(2 * i + 1) * d..][..d]);
            assert!(plus.iter().zip(minus).all(|(p, m)| p == &-m));
        }
    }
}
