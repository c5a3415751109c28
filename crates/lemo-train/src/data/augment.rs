//! Random affine augmentation (paper section 4.1): rotation, horizontal flip, width and height
//! shift, shear and zoom, combined into one affine map per image and applied with a bilinear warp
//! straight from `u8` to normalised `f32`; then, when asked, cutout.

#[cfg(test)]
use lemo_core::data::Augmentation;
use lemo_core::data::{Affine, Cutout};

/// Normalise one channel-major `u8` image into `out` without any warp.
pub(crate) fn normalize_into(src: &[u8], plane: usize, so: &[(f32, f32)], out: &mut [f32]) {
    for ((s, o), &(scale, offset)) in src
        .chunks_exact(plane)
        .zip(out.chunks_exact_mut(plane))
        .zip(so)
    {
        for (o, &p) in o.iter_mut().zip(s) {
            *o = f32::from(p) * scale + offset;
        }
    }
}

/// One output pixel's bilinear taps: the four source indices and their weights in 1/65536.
#[derive(Debug, Clone, Copy, Default)]
struct Tap {
    idx: [u32; 4],
    w: [u32; 4],
}

/// Reusable scratch space for [`Warp::apply`], so that warping allocates nothing per image.
#[derive(Debug, Clone, Default)]
pub(crate) struct Warp {
    taps: Vec<Tap>,
}

impl Warp {
    /// Warp one channel-major `u8` image of shape `[c, h, w]` with `m` (bilinear with 8-bit
    /// sub-pixel weights, edge pixels repeated outside) and normalise it into `out` (same
    /// length). The taps are computed once per pixel and shared by all channels.
    // Every tap index is a pixel of the h x w plane, clamped to its edges when the taps are built.
    #[allow(clippy::indexing_slicing)]
    pub(crate) fn apply(
        &mut self,
        src: &[u8],
        [c, h, w]: [usize; 3],
        m: &Affine,
        so: &[(f32, f32)],
        out: &mut [f32],
    ) {
        let plane = h * w;
        if *m == Affine::IDENTITY {
            normalize_into(src, plane, so, out);
            return;
        }
        self.taps.resize(plane, Tap::default());
        let max_x = (w - 1) as f32;
        let max_y = (h - 1) as f32;
        for (y, row) in self.taps.chunks_exact_mut(w).enumerate() {
            let yf = y as f32;
            let mut sx = m.b * yf + m.tx;
            let mut sy = m.d * yf + m.ty;
            for tap in row {
                let px = sx.clamp(0.0, max_x);
                let py = sy.clamp(0.0, max_y);
                sx += m.a;
                sy += m.c;
                let x0 = px as usize; // px >= 0, so truncation is floor
                let y0 = py as usize;
                let fx = ((px - x0 as f32) * 256.0 + 0.5) as u32; // 0..=256
                let fy = ((py - y0 as f32) * 256.0 + 0.5) as u32;
                let x1 = (x0 + 1).min(w - 1);
                let y1 = (y0 + 1).min(h - 1);
                tap.idx = [
                    (y0 * w + x0) as u32,
                    (y0 * w + x1) as u32,
                    (y1 * w + x0) as u32,
                    (y1 * w + x1) as u32,
                ];
                tap.w = [
                    (256 - fx) * (256 - fy),
                    fx * (256 - fy),
                    (256 - fx) * fy,
                    fx * fy,
                ];
            }
        }
        for ((p, o), &(scale, offset)) in src
            .chunks_exact(plane)
            .zip(out.chunks_exact_mut(plane))
            .zip(so)
            .take(c)
        {
            let scale = scale / 65536.0;
            for (o, t) in o.iter_mut().zip(&self.taps) {
                let v = u32::from(p[t.idx[0] as usize]) * t.w[0]
                    + u32::from(p[t.idx[1] as usize]) * t.w[1]
                    + u32::from(p[t.idx[2] as usize]) * t.w[2]
                    + u32::from(p[t.idx[3] as usize]) * t.w[3];
                *o = v as f32 * scale + offset;
            }
        }
    }
}

/// Sets the [`Cutout`] square of a normalised channel-major image of shape `[c, h, w]` to 0 (the
/// dataset mean after normalisation) in every channel.
// A Cutout's ranges lie inside the h x w plane (Augmentation::sample_cutout clips them).
#[allow(clippy::indexing_slicing)]
pub(crate) fn erase(out: &mut [f32], [_, h, w]: [usize; 3], c: Cutout) {
    let (rows, cols) = (c.rows.0..c.rows.1.min(h), c.cols.0..c.cols.1.min(w));
    for plane in out.chunks_exact_mut(h * w) {
        for y in rows.clone() {
            plane[y * w + cols.start..y * w + cols.end].fill(0.0);
        }
    }
}

/// [`Warp::apply`] with fresh scratch space.
#[cfg(test)]
pub(crate) fn warp_into(
    src: &[u8],
    shape: [usize; 3],
    m: &Affine,
    so: &[(f32, f32)],
    out: &mut [f32],
) {
    Warp::default().apply(src, shape, m, so, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::Xoshiro256PlusPlus;

    fn ramp(c: usize, h: usize, w: usize) -> Vec<u8> {
        (0..c * h * w).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn identity_is_plain_normalisation() {
        let img = ramp(3, 5, 4);
        let so = vec![(1.0, 0.0); 3];
        let m = Augmentation::none().sample(&mut Xoshiro256PlusPlus::seed_from_u64(1), 5, 4);
        let mut out = vec![0.0; img.len()];
        warp_into(&img, [3, 5, 4], &m, &so, &mut out);
        for (o, p) in out.iter().zip(&img) {
            assert_eq!(*o, f32::from(*p));
        }
    }

    #[test]
    fn flip_only_mirrors_rows() {
        let aug = Augmentation {
            hflip: true,
            ..Augmentation::none()
        };
        let img = ramp(2, 3, 5);
        let so = vec![(1.0, 0.0); 2];
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let mut saw_flip = false;
        for _ in 0..20 {
            let m = aug.sample(&mut rng, 3, 5);
            let mut out = vec![0.0; img.len()];
            warp_into(&img, [2, 3, 5], &m, &so, &mut out);
            let flipped = (0..2 * 3).all(|row| {
                (0..5).all(|x| (out[row * 5 + x] - f32::from(img[row * 5 + 4 - x])).abs() < 1e-3)
            });
            let same = out
                .iter()
                .zip(&img)
                .all(|(o, p)| (o - f32::from(*p)).abs() < 1e-3);
            assert!(flipped || same);
            saw_flip |= flipped && !same;
        }
        assert!(saw_flip);
    }

    #[test]
    fn rotation_by_90_degrees_maps_pixels_exactly() {
        // The map a 90 degree rotation about the centre gives (theta = 90 in `sample`).
        let (s, c) = 90f32.to_radians().sin_cos();
        let n = 4usize;
        let cx = (n as f32 - 1.0) / 2.0;
        let m = Affine {
            a: c,
            b: -s,
            c: s,
            d: c,
            tx: cx - c * cx + s * cx,
            ty: cx - s * cx - c * cx,
        };
        let img = ramp(1, n, n);
        let mut out = vec![0.0; n * n];
        warp_into(&img, [1, n, n], &m, &[(1.0, 0.0)], &mut out);
        for y in 0..n {
            for x in 0..n {
                // source (sx, sy) = (cx - (y - cx), cy + (x - cx)) = (n-1-y, x)
                let want = f32::from(img[x * n + (n - 1 - y)]);
                assert!((out[y * n + x] - want).abs() < 1e-3, "({x},{y})");
            }
        }
    }

    #[test]
    fn cutout_erases_one_clipped_square_in_every_channel() {
        let aug = Augmentation {
            cutout: 4,
            ..Augmentation::none()
        };
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
        let (mut clipped, mut whole) = (false, false);
        for _ in 0..200 {
            let c = aug.sample_cutout(&mut rng, 6, 7).expect("cutout is on");
            let (h, w) = (c.rows.1 - c.rows.0, c.cols.1 - c.cols.0);
            assert!((2..=4).contains(&h) && (2..=4).contains(&w), "{c:?}");
            assert!(c.rows.1 <= 6 && c.cols.1 <= 7, "{c:?}");
            clipped |= h < 4 || w < 4;
            whole |= h == 4 && w == 4;
            let mut img = vec![1.0f32; 2 * 6 * 7];
            erase(&mut img, [2, 6, 7], c);
            for (i, v) in img.iter().enumerate() {
                let (y, x) = (i % 42 / 7, i % 7);
                let inside = (c.rows.0..c.rows.1).contains(&y) && (c.cols.0..c.cols.1).contains(&x);
                assert_eq!(*v, if inside { 0.0 } else { 1.0 }, "pixel {i} of {c:?}");
            }
        }
        assert!(clipped && whole);
        // off: no square and no draw from the generator
        let mut a = Xoshiro256PlusPlus::seed_from_u64(1);
        let b = a.clone();
        assert_eq!(Augmentation::none().sample_cutout(&mut a, 6, 7), None);
        assert_eq!(a, b);
    }

    #[test]
    fn paper_draws_stay_in_range_and_vary() {
        let aug = Augmentation::paper();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(9);
        let mut distinct = std::collections::HashSet::new();
        for _ in 0..100 {
            let m = aug.sample(&mut rng, 32, 32);
            // determinant = +-zx*zy within [0.81, 1.21]
            let det = (m.a * m.d - m.b * m.c).abs();
            assert!((0.80..=1.22).contains(&det), "det {det}");
            assert!(m.tx.is_finite() && m.ty.is_finite());
            distinct.insert(m.a.to_bits());
        }
        assert!(distinct.len() > 90);
    }
}
