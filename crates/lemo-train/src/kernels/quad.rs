//! Four `f32` values in one vector register, for the Winograd passes that move values between
//! the tile-major `[ξ][tile]` rows and the row-major planes: four tiles side by side in a tile
//! row read or write 4x4 blocks of a plane row, and one 4x4 transpose turns one into the
//! other.
//!
//! On x86-64 a [`Quad`] is an SSE register (SSE2 is part of the x86-64 baseline, so no run-time
//! check is needed, and the intrinsics used here take no pointers); elsewhere it is four floats
//! and the same operations are written lane by lane. Values cross into and out of registers
//! through `bytemuck`'s checked casts, not through pointers.

// SAFETY, for every `unsafe` block below: the SSE intrinsics called take no pointers, and SSE
// (and SSE2) is part of the x86-64 baseline, enabled by every x86-64 target, so no call can
// reach an instruction the CPU lacks. Rust still asks for `unsafe` because the callers do not
// repeat the feature in a `#[target_feature]` attribute.
#![allow(unsafe_code)]

use std::ops::{Add, Mul, Sub};

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{
    __m128, _mm_add_ps, _mm_movehl_ps, _mm_movelh_ps, _mm_mul_ps, _mm_set1_ps, _mm_setzero_ps,
    _mm_sub_ps, _mm_unpackhi_ps, _mm_unpacklo_ps,
};

/// Four values, one per lane.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(super) struct Quad(__m128);

/// Four values, one per lane.
#[cfg(not(target_arch = "x86_64"))]
#[derive(Clone, Copy, Default)]
pub(super) struct Quad([f32; 4]);

#[cfg(target_arch = "x86_64")]
impl Default for Quad {
    #[inline(always)]
    fn default() -> Self {
        Self(unsafe { _mm_setzero_ps() })
    }
}

impl Quad {
    /// The four values as an array.
    #[inline(always)]
    pub(super) fn to_array(self) -> [f32; 4] {
        #[cfg(target_arch = "x86_64")]
        {
            bytemuck::cast(self.0)
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self.0
        }
    }

    /// The four values of an array.
    #[inline(always)]
    pub(super) fn from_array(a: [f32; 4]) -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            Self(bytemuck::cast(a))
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            Self(a)
        }
    }

    /// The first four values of `src` (zeros past its end).
    #[inline(always)]
    pub(super) fn load(src: &[f32]) -> Self {
        match src.first_chunk::<4>() {
            Some(a) => Self::from_array(*a),
            None => {
                let mut a = [0.0f32; 4];
                a.iter_mut().zip(src).for_each(|(d, s)| *d = *s);
                Self::from_array(a)
            }
        }
    }

    /// Writes the four values at the start of `dst` (as many as fit).
    #[inline(always)]
    pub(super) fn store(self, dst: &mut [f32]) {
        let a = self.to_array();
        match dst.first_chunk_mut::<4>() {
            Some(d) => *d = a,
            None => dst.iter_mut().zip(a).for_each(|(d, s)| *d = s),
        }
    }
}

impl Add for Quad {
    type Output = Self;
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            Self(unsafe { _mm_add_ps(self.0, o.0) })
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let mut r = self.0;
            r.iter_mut().zip(o.0).for_each(|(a, b)| *a += b);
            Self(r)
        }
    }
}

impl Sub for Quad {
    type Output = Self;
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            Self(unsafe { _mm_sub_ps(self.0, o.0) })
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let mut r = self.0;
            r.iter_mut().zip(o.0).for_each(|(a, b)| *a -= b);
            Self(r)
        }
    }
}

impl Mul<f32> for Quad {
    type Output = Self;
    #[inline(always)]
    fn mul(self, k: f32) -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            Self(unsafe { _mm_mul_ps(self.0, _mm_set1_ps(k)) })
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            Self(self.0.map(|v| v * k))
        }
    }
}

/// The transpose of the 4x4 block whose rows are `rows`: lane `j` of output `i` is lane `i` of
/// input `j`.
// i, j < 4 index arrays of 4 (the portable form).
#[allow(clippy::indexing_slicing)]
#[inline(always)]
pub(super) fn transpose(rows: [Quad; 4]) -> [Quad; 4] {
    #[cfg(target_arch = "x86_64")]
    {
        let [a, b, c, d] = rows.map(|q| q.0);
        unsafe {
            let ab_lo = _mm_unpacklo_ps(a, b); // a0 b0 a1 b1
            let cd_lo = _mm_unpacklo_ps(c, d); // c0 d0 c1 d1
            let ab_hi = _mm_unpackhi_ps(a, b); // a2 b2 a3 b3
            let cd_hi = _mm_unpackhi_ps(c, d); // c2 d2 c3 d3
            [
                Quad(_mm_movelh_ps(ab_lo, cd_lo)), // a0 b0 c0 d0
                Quad(_mm_movehl_ps(cd_lo, ab_lo)), // a1 b1 c1 d1
                Quad(_mm_movelh_ps(ab_hi, cd_hi)), // a2 b2 c2 d2
                Quad(_mm_movehl_ps(cd_hi, ab_hi)), // a3 b3 c3 d3
            ]
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let m = rows.map(|q| q.0);
        std::array::from_fn(|i| Quad(std::array::from_fn(|j| m[j][i])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_swaps_rows_and_lanes() {
        let rows: [Quad; 4] =
            std::array::from_fn(|i| Quad::from_array(std::array::from_fn(|j| (10 * i + j) as f32)));
        let t = transpose(rows).map(Quad::to_array);
        for (i, row) in t.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                assert_eq!(*v, (10 * j + i) as f32, "lane {j} of output {i}");
            }
        }
    }

    #[test]
    fn arithmetic_is_lane_by_lane_and_loads_stop_at_the_end() {
        let a = Quad::load(&[1.0, 2.0, 3.0, 4.0, 99.0]);
        let b = Quad::load(&[0.5, 0.25]);
        assert_eq!(b.to_array(), [0.5, 0.25, 0.0, 0.0]);
        assert_eq!(((a + b) * 2.0 - a).to_array(), [2.0, 2.5, 3.0, 4.0]);
        let mut short = [7.0f32; 3];
        a.store(&mut short);
        assert_eq!(short, [1.0, 2.0, 3.0]);
        assert_eq!(Quad::default().to_array(), [0.0; 4]);
    }
}
