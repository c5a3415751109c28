//! Winograd F(4x4, 3x3) for dense 3x3, stride-1, undilated convolutions on NCHW `f32`
//! buffers: forward, input gradient, weight gradient and bias gradient.
//!
//! Each 4x4 block of outputs is computed from the 6x6 input patch around it with 36 multiplies
//! per (input, output) channel pair instead of 144: the input patch is transformed
//! (`V = Bᵀ d B`), the weights once per call (`U = G w Gᵀ`), the 36 transformed positions are
//! 36 independent gemms `M[ξ] = U[ξ] x V[ξ]` over channels, and the outputs come back with
//! `y = Aᵀ M A` (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016).
//!
//! The backward step is the exact adjoint of that linear map: `dM = A dy Aᵀ`,
//! `dU[ξ] = Σ dM[ξ] V[ξ]ᵀ` then `dw = Gᵀ dU G`, and `dV[ξ] = U[ξ]ᵀ dM[ξ]` then
//! `dx += B dV Bᵀ` on each patch. So all three products of a training step run with a quarter
//! of the multiplies of the im2col path (docs/performance.md has the figures).
//!
//! Work is split into chunks of whole images whose tiles make one set of gemms; chunks run in
//! parallel when there are enough of them, and otherwise the channels of one chunk are split
//! across threads, and its gemms too (forward: the 36 gemms side by side, one thread each;
//! backward: each gemm split).
//!
//! The transforms that gather scattered values (the input patches, the output gradients) run
//! in two passes: the values are copied into the transformed buffer itself (the input patches
//! already transformed along their rows), then transformed in place with whole vector loads
//! and stores. Gathering straight into a
//! working patch of lanes read values back as vectors right after storing them one by one, a
//! store-forwarding stall on every load; the two passes made the backward step of the ref-cnn's
//! layers about 10% faster (docs/performance.md).
//!
//! Four tiles side by side in one tile row lie over one band of the plane: each plane row
//! under them is five contiguous [`Quad`]s, two 4x4 transposes away from the four patches'
//! rows. The input gather and the plain output pass move such tiles four at a time that way
//! (about 10% more training throughput on the ref-cnn, docs/performance.md); the other tiles
//! (map borders of partial tile rows, maps under four tiles wide) go one by one.

use std::ops::{Add, Mul, Range, Sub};
use std::sync::OnceLock;

use rayon::prelude::*;

use super::conv::{ConvGeometry, ConvGrads, check_lengths, matmul, op, with_scratch};
use super::quad::{self, Quad};

/// Outputs per tile side.
const M: usize = 4;
/// Input patch side: `M + 3 - 1`.
const ALPHA: usize = 6;
/// Transformed positions per tile.
const XI: usize = ALPHA * ALPHA;
/// Tiles transformed together, one per lane.
const LANES: usize = 8;
/// Tiles side by side in one [`Quad`]: the gather passes take four tiles of one tile row at a
/// time, whose patch rows are a 4x4 transpose away from the plane rows under them.
const QUAD: usize = 4;
/// Fewest input and output channels for which the transforms pay for themselves.
const MIN_CHANNELS: usize = 16;
/// Fewest tiles per chunk for which [`supports`] takes this path.
const MIN_CHUNK_TILES: usize = 64;
/// Tiles per chunk the chunking aims at: enough columns for an efficient gemm, few enough that
/// a channel's transformed rows stay in the first-level cache and the chunk's in the
/// second-level one between the transforms and the gemms. 64 (one 32x32 image, four 16x16
/// ones) trained the ref-cnn 18% faster than 256 on an AMD EPYC with 1 MiB of L2 per core;
/// 32 was no better (docs/performance.md).
const TARGET_TILES: usize = 64;

/// Whether the Winograd path is switched on: it is unless `LEMO_WINOGRAD` is `0` or `off`
/// (for measuring it against the im2col path).
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        !matches!(
            std::env::var("LEMO_WINOGRAD").as_deref(),
            Ok("0") | Ok("off") | Ok("false")
        )
    })
}

/// True when `g` is a convolution this module computes and where it pays: a 3x3 kernel,
/// stride 1, dilation 1, at least [`MIN_CHANNELS`] input and output channels, an output that is
/// not empty, and chunks of at least [`MIN_CHUNK_TILES`] tiles (below that the 36 small gemms
/// per chunk cost more than the multiplies they save, and the im2col path is faster). A batch
/// too small to give every thread a chunk (batch 1) is split inside its one chunk: a 32x32 map
/// (64 tiles) takes this path at batch 1, a 16x16 one does not.
pub fn supports(g: &ConvGeometry) -> bool {
    computes(g)
        && Tiling::new(g).is_some_and(|tl| {
            let split = Chunking::new(&tl);
            split.per * tl.per_image() >= MIN_CHUNK_TILES
        })
}

/// True when `g` is a geometry [`forward`] and [`backward`] compute correctly (whether or not
/// it pays): a 3x3 kernel, stride 1, dilation 1, enough channels, a non-empty output.
fn computes(g: &ConvGeometry) -> bool {
    g.kernel == [3, 3]
        && g.stride == [1, 1]
        && g.dilation == [1, 1]
        && g.c_in >= MIN_CHANNELS
        && g.c_out >= MIN_CHANNELS
        && g.batch > 0
        && g.output().is_some_and(|[oh, ow]| oh > 0 && ow > 0)
}

/// Eight tiles' values of one position, added and scaled lane by lane (vectorised).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Lanes([f32; LANES]);

impl Add for Lanes {
    type Output = Self;
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        let mut r = self;
        r.0.iter_mut().zip(o.0).for_each(|(a, b)| *a += b);
        r
    }
}

impl Sub for Lanes {
    type Output = Self;
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        let mut r = self;
        r.0.iter_mut().zip(o.0).for_each(|(a, b)| *a -= b);
        r
    }
}

impl Mul<f32> for Lanes {
    type Output = Self;
    #[inline(always)]
    fn mul(self, k: f32) -> Self {
        let mut r = self;
        r.0.iter_mut().for_each(|a| *a *= k);
        r
    }
}

/// What the one-dimensional transforms need of a value: `f32` (weights) or [`Lanes`] (tiles).
trait Value:
    Copy + Default + Add<Output = Self> + Sub<Output = Self> + Mul<f32, Output = Self>
{
}
impl<T: Copy + Default + Add<Output = T> + Sub<Output = T> + Mul<f32, Output = T>> Value for T {}

/// `Bᵀ d`: the input transform of six values.
#[inline(always)]
fn bt<T: Value>([d0, d1, d2, d3, d4, d5]: [T; 6]) -> [T; 6] {
    [
        d0 * 4.0 - d2 * 5.0 + d4,
        d3 + d4 - (d1 + d2) * 4.0,
        (d1 - d2) * 4.0 - d3 + d4,
        (d3 - d1) * 2.0 - d2 + d4,
        (d1 - d3) * 2.0 - d2 + d4,
        d1 * 4.0 - d3 * 5.0 + d5,
    ]
}

/// `B v`, the adjoint of [`bt`] (input gradient).
#[inline(always)]
fn b<T: Value>([v0, v1, v2, v3, v4, v5]: [T; 6]) -> [T; 6] {
    [
        v0 * 4.0,
        (v2 - v1 + v5) * 4.0 + (v4 - v3) * 2.0,
        (v1 + v2) * -4.0 - v0 * 5.0 - v3 - v4,
        v1 - v2 + (v3 - v4) * 2.0 - v5 * 5.0,
        v0 + v1 + v2 + v3 + v4,
        v5,
    ]
}

/// `G w`: the weight transform of three taps.
#[inline(always)]
fn gw<T: Value>([w0, w1, w2]: [T; 3]) -> [T; 6] {
    [
        w0 * 0.25,
        (w0 + w1 + w2) * (-1.0 / 6.0),
        (w0 - w1 + w2) * (-1.0 / 6.0),
        w0 * (1.0 / 24.0) + w1 * (1.0 / 12.0) + w2 * (1.0 / 6.0),
        w0 * (1.0 / 24.0) - w1 * (1.0 / 12.0) + w2 * (1.0 / 6.0),
        w2,
    ]
}

/// `Gᵀ u`, the adjoint of [`gw`] (weight gradient).
#[inline(always)]
fn gt<T: Value>([u0, u1, u2, u3, u4, u5]: [T; 6]) -> [T; 3] {
    [
        u0 * 0.25 - (u1 + u2) * (1.0 / 6.0) + (u3 + u4) * (1.0 / 24.0),
        (u2 - u1) * (1.0 / 6.0) + (u3 - u4) * (1.0 / 12.0),
        (u3 + u4 - u1 - u2) * (1.0 / 6.0) + u5,
    ]
}

/// `Aᵀ m`: the output transform of six values into four outputs.
#[inline(always)]
fn at<T: Value>([m0, m1, m2, m3, m4, m5]: [T; 6]) -> [T; 4] {
    let (s12, d12, s34, d34) = (m1 + m2, m1 - m2, m3 + m4, m3 - m4);
    [
        m0 + s12 + s34,
        d12 + d34 * 2.0,
        s12 + s34 * 4.0,
        d12 + d34 * 8.0 + m5,
    ]
}

/// `A y`, the adjoint of [`at`] (output gradient into the transformed domain).
#[inline(always)]
fn a<T: Value>([y0, y1, y2, y3]: [T; 4]) -> [T; 6] {
    let (s02, s13) = (y0 + y2, y1 + y3);
    [
        y0,
        s02 + s13,
        s02 - s13,
        y0 + y1 * 2.0 + y2 * 4.0 + y3 * 8.0,
        y0 - y1 * 2.0 + y2 * 4.0 - y3 * 8.0,
        y3,
    ]
}

/// `f` applied to every column of `d`, then to every row of the result: `F d Fᵀ` for the
/// matrix `F` of a one-dimensional transform `f`.
/// A 6x6 working patch of lanes, transformed in place.
type Patch = [[Lanes; ALPHA]; ALPHA];

/// In place on the [`Patch`] `$w`: its top-left `$o x $o` corner becomes `F d Fᵀ`, where `d` is
/// its top-left `$i x $i` corner and `F` the matrix of the one-dimensional transform `$f`
/// (`$f` on every column, then on every row). A macro, not a function taking `$f`, so that
/// every call of the transform is direct and inlined, and the patch never leaves its one
/// place in memory (through a closure the compiler made calls and copied arrays around).
macro_rules! two_d {
    ($w:expr, $f:ident, $i:literal, $o:literal) => {{
        let w: &mut Patch = $w;
        for j in 0..$i {
            let mut col = [Lanes::default(); $i];
            for k in 0..$i {
                col[k] = w[k][j];
            }
            let out = $f(col);
            for k in 0..$o {
                w[k][j] = out[k];
            }
        }
        for k in 0..$o {
            let mut row = [Lanes::default(); $i];
            for j in 0..$i {
                row[j] = w[k][j];
            }
            let out = $f(row);
            for j in 0..$o {
                w[k][j] = out[j];
            }
        }
    }};
}

/// The tiles of a chunk of images: `tiles_h x tiles_w` tiles of 4x4 outputs per image.
#[derive(Clone, Copy)]
struct Tiling {
    g: ConvGeometry,
    out: [usize; 2],
    tiles: [usize; 2],
}

impl Tiling {
    fn new(g: &ConvGeometry) -> Option<Self> {
        let out = g.output()?;
        Some(Self {
            g: *g,
            out,
            tiles: [out[0].div_ceil(M), out[1].div_ceil(M)],
        })
    }

    fn per_image(&self) -> usize {
        self.tiles[0] * self.tiles[1]
    }

    /// Images per chunk: about [`TARGET_TILES`] tiles, and at least as many chunks as
    /// threads when the batch allows.
    fn images_per_chunk(&self, threads: usize) -> usize {
        let by_tiles = TARGET_TILES.div_ceil(self.per_image()).max(1);
        by_tiles.min(self.g.batch.div_ceil(threads.max(1))).max(1)
    }
}

/// Where a tile's 6x6 input patch lies: the offset of its image's plane and the patch's
/// top-left corner in that plane (padding included, so possibly negative).
#[derive(Clone, Copy)]
struct PatchAt {
    base: usize,
    y0: isize,
    x0: isize,
}

impl PatchAt {
    /// The index of the patch's first value when the whole patch lies inside the plane (then
    /// its six rows of six are read or written with no check per value).
    #[inline(always)]
    fn first_inside(&self, g: &ConvGeometry) -> Option<usize> {
        let (y0, x0) = (self.y0, self.x0);
        let inside =
            y0 >= 0 && x0 >= 0 && (y0 as usize) + ALPHA <= g.h && (x0 as usize) + ALPHA <= g.w;
        inside.then(|| self.base + y0 as usize * g.w + x0 as usize)
    }
}

/// Where a tile lies: its image within the chunk and its first output's row and column.
#[derive(Clone, Copy)]
struct Origin {
    image: usize,
    oy: usize,
    ox: usize,
}

/// The tiles of a chunk in order, with their origins found by counting instead of dividing.
#[derive(Clone, Copy)]
struct Cursor {
    img: usize,
    ty: usize,
    tx: usize,
    tiles: [usize; 2],
}

impl Cursor {
    /// At the chunk's first tile.
    fn new(tl: &Tiling) -> Self {
        Self {
            img: 0,
            ty: 0,
            tx: 0,
            tiles: tl.tiles,
        }
    }

    /// Image (within the chunk) and output origin of the current tile; then moves to the next.
    #[inline(always)]
    fn next_origin(&mut self) -> (usize, usize, usize) {
        let origin = (self.img, self.ty * M, self.tx * M);
        self.tx += 1;
        if self.tx == self.tiles[1] {
            self.tx = 0;
            self.ty += 1;
            if self.ty == self.tiles[0] {
                self.ty = 0;
                self.img += 1;
            }
        }
        origin
    }

    /// When the current tile and the three after it are lanes `l..l + 4` of a group of `n`
    /// (`l` a multiple of 4; `l = 0` and `n` the tiles left for any four) and lie side by side
    /// in one tile row: the first one's origin (the cursor does not move;
    /// [`Self::skip_quad`] moves it past the four).
    #[inline(always)]
    fn quad_at(&self, l: usize, n: usize) -> Option<Origin> {
        let side_by_side =
            l.is_multiple_of(QUAD) && l + QUAD <= n && self.tx + QUAD <= self.tiles[1];
        side_by_side.then_some(Origin {
            image: self.img,
            oy: self.ty * M,
            ox: self.tx * M,
        })
    }

    /// Moves past four tiles.
    #[inline(always)]
    fn skip_quad(&mut self) {
        for _ in 0..QUAD {
            self.next_origin();
        }
    }

    /// [`Self::next_origin`] as the current tile's input patch (image `i`'s plane at
    /// `i * stride`).
    #[inline(always)]
    fn next_patch(&mut self, g: &ConvGeometry, stride: usize) -> PatchAt {
        let (img, oy, ox) = self.next_origin();
        let [top, left] = g.pad_begin.map(|p| p as isize);
        PatchAt {
            base: img * stride,
            y0: oy as isize - top,
            x0: ox as isize - left,
        }
    }
}

/// Weight pairs (output, input channel) per parallel task of the weight transforms.
const PAIR_BLOCK: usize = 256;

/// Writes `lanes` (the first `n` of them) at the start of `dst`: one vector store for whole
/// lanes.
// n <= LANES and dst holds at least n values (the callers' rows are padded to whole lanes or
// sized exactly).
#[allow(clippy::indexing_slicing)]
#[inline(always)]
fn store(dst: &mut [f32], lanes: &Lanes, n: usize) {
    if n == LANES {
        if let Some(d) = dst.first_chunk_mut::<LANES>() {
            *d = lanes.0;
        }
    } else {
        dst[..n].copy_from_slice(&lanes.0[..n]);
    }
}

/// `LANES` values from the start of `src` (zeros past its end).
#[inline(always)]
fn load(src: &[f32]) -> Lanes {
    match src.first_chunk::<LANES>() {
        Some(v) => Lanes(*v),
        None => {
            let mut l = Lanes::default();
            l.0.iter_mut().zip(src).for_each(|(d, s)| *d = *s);
            l
        }
    }
}

/// The `XI` rows of a `[ξ][pair]` matrix, cut into blocks of [`PAIR_BLOCK`] pairs: block `b`
/// holds the `b`-th piece of every row, so blocks can be filled in parallel.
fn pair_blocks(u: &mut [f32], pairs: usize) -> Vec<Vec<&mut [f32]>> {
    let mut blocks: Vec<Vec<&mut [f32]>> = (0..pairs.div_ceil(PAIR_BLOCK))
        .map(|_| Vec::new())
        .collect();
    for row in u.chunks_mut(pairs.max(1)) {
        for (block, piece) in blocks.iter_mut().zip(row.chunks_mut(PAIR_BLOCK)) {
            block.push(piece);
        }
    }
    blocks
}

/// `U[ξ][co][ci] = (G w[co][ci] Gᵀ)[ξ]`, eight pairs at a time, blocks of pairs in parallel.
// w holds pairs * 9 values (check_lengths); each block's rows hold its pairs.
#[allow(clippy::indexing_slicing)]
fn weight_transform(g: &ConvGeometry, w: &[f32]) -> Vec<f32> {
    let pairs = g.c_out * g.c_in;
    let mut u = vec![0.0f32; XI * pairs];
    pair_blocks(&mut u, pairs)
        .into_par_iter()
        .enumerate()
        .for_each(|(block, mut rows)| {
            let first = block * PAIR_BLOCK;
            let len = rows.first().map_or(0, |r| r.len());
            let mut patch = Patch::default();
            for p0 in (0..len).step_by(LANES) {
                let n = LANES.min(len - p0);
                let taps = &w[(first + p0) * 9..(first + p0 + n) * 9];
                for (r, row) in patch.iter_mut().take(3).enumerate() {
                    for (s, cell) in row.iter_mut().take(3).enumerate() {
                        cell.0
                            .iter_mut()
                            .zip(taps.chunks_exact(9))
                            .for_each(|(d, t)| *d = t[r * 3 + s]);
                    }
                }
                two_d!(&mut patch, gw, 3, 6);
                for (row, lanes) in rows.iter_mut().zip(patch.iter().flatten()) {
                    store(&mut row[p0..], lanes, n);
                }
            }
        });
    u
}

/// `dw[co][ci] = Gᵀ dU[co][ci] G`: the weight gradient from the transformed one.
// du holds XI * pairs values, as weight_transform's output.
#[allow(clippy::indexing_slicing)]
fn weight_gradient(g: &ConvGeometry, du: &[f32]) -> Vec<f32> {
    let pairs = g.c_out * g.c_in;
    let mut dw = vec![0.0f32; pairs * 9];
    dw.par_chunks_mut(PAIR_BLOCK * 9)
        .enumerate()
        .for_each(|(block, out)| {
            let first = block * PAIR_BLOCK;
            for (i, taps) in out.chunks_mut(LANES * 9).enumerate() {
                let p0 = first + i * LANES;
                let mut t = Patch::default();
                for (r, row) in t.iter_mut().enumerate() {
                    for (s, cell) in row.iter_mut().enumerate() {
                        let at = (r * ALPHA + s) * pairs + p0;
                        *cell = load(&du[at..at + (pairs - p0).min(LANES)]);
                    }
                }
                two_d!(&mut t, gt, 6, 3);
                for (l, pair) in taps.chunks_exact_mut(9).enumerate() {
                    let taps = t.iter().take(3).flat_map(|row| row.iter().take(3));
                    for (d, v) in pair.iter_mut().zip(taps) {
                        *d = v.0[l];
                    }
                }
            }
        });
    dw
}

/// Tile columns of a chunk, rounded up to whole lanes: the row length of every transformed
/// matrix (`[channel][ξ][tile]`). A length that is a multiple of 32 values (128 bytes) gets one
/// more lane group: the gather passes write the `XI` rows of one tile at once, and at such a
/// stride those rows share a few cache sets and evict each other (a chunk of 64 or
/// 256 tiles would put all 36 rows in a few sets of a 64-set, 8-way L1).
fn padded(tiles: usize) -> usize {
    let tp = tiles.div_ceil(LANES) * LANES;
    if tp.is_multiple_of(32) {
        tp + LANES
    } else {
        tp
    }
}

/// The `[ξ][tile]` row (of `XI`) of position `(r, s)` of a 6x6 patch: where the gather passes
/// put value `(r, s)` of every tile's raw patch before transforming it in place.
#[inline(always)]
fn row_of(r: usize, s: usize) -> usize {
    r * ALPHA + s
}

/// Input transform of one channel of a chunk: `x` starts at that channel's plane in the
/// chunk's first image (image `i`'s plane at `i * stride`), `v` receives its `[ξ][tile]` rows
/// of length `tp`.
///
/// Two passes (module docs): the patches are gathered into `v` itself, already transformed
/// along their rows (`d B`), then the column direction (`Bᵀ`) is applied in place, `LANES`
/// tiles at a time with whole vector loads and stores. Four tiles side by side in one tile row
/// ([`gather_row_quad`]) read each plane row under them as five [`Quad`]s straight from the
/// plane and two 4x4 transposes; other tiles are gathered one by one.
// v holds XI * tp values and t < tiles <= tp.
#[allow(clippy::indexing_slicing)]
fn input_transform(tl: &Tiling, tiles: usize, x: &[f32], stride: usize, v: &mut [f32]) {
    let g = &tl.g;
    let tp = padded(tiles);
    let mut cursor = Cursor::new(tl);
    let mut t = 0;
    while t < tiles {
        if let Some(first) = cursor.quad_at(0, tiles - t) {
            cursor.skip_quad();
            gather_row_quad(g, x, first.image * stride, [first.oy, first.ox], (v, tp, t));
            t += QUAD;
            continue;
        }
        let PatchAt { base, y0, x0 } = cursor.next_patch(g, stride);
        for r in 0..ALPHA {
            let iy = y0 + r as isize;
            let row_in = iy >= 0 && iy < g.h as isize;
            let src = base + (iy.max(0) as usize) * g.w;
            let d: [f32; ALPHA] = std::array::from_fn(|s| {
                let ix = x0 + s as isize;
                if row_in && ix >= 0 && ix < g.w as isize {
                    x[src + ix as usize]
                } else {
                    0.0
                }
            });
            for (s, value) in bt(d).into_iter().enumerate() {
                v[row_of(r, s) * tp + t] = value;
            }
        }
        t += 1;
    }
    zero_pad_lanes(ALPHA, tiles, tp, v);
    for t0 in (0..tiles).step_by(LANES) {
        for s in 0..ALPHA {
            let at = |r: usize| row_of(r, s) * tp + t0;
            let col = [
                load(&v[at(0)..]),
                load(&v[at(1)..]),
                load(&v[at(2)..]),
                load(&v[at(3)..]),
                load(&v[at(4)..]),
                load(&v[at(5)..]),
            ];
            for (r, lanes) in bt(col).iter().enumerate() {
                store(&mut v[at(r)..], lanes, LANES);
            }
        }
    }
}

/// The four values of plane row `row` (its first value at `row`) from column `col`, zero for
/// the columns outside `0..w`: one vector load when all four are inside.
// Reads stay inside the row: 0 <= col + i < w.
#[allow(clippy::indexing_slicing)]
#[inline(always)]
fn row_quad(x: &[f32], row: usize, col: isize, w: usize) -> Quad {
    if col >= 0 && col as usize + QUAD <= w {
        return Quad::load(&x[row + col as usize..]);
    }
    Quad::from_array(std::array::from_fn(|i| {
        let c = col + i as isize;
        if c >= 0 && (c as usize) < w {
            x[row + c as usize]
        } else {
            0.0
        }
    }))
}

/// The gather pass of [`input_transform`] for the four tiles from tile `t` (`v`'s rows of
/// `tp` values), which lie side by side in one tile row of the image whose plane starts at
/// `base`, the first one's outputs at `[oy, ox]`. Each of the six plane rows under them is
/// read as the five quads from column `ox - left`: transposing the first four gives values
/// 0..4 of the four patches' rows, the last four values 4..6; they are transformed along the
/// row (`Bᵀ`) and stored four tiles at a time. Rows above or below the plane are zero.
// The stores end at t + 4 <= tiles <= tp in rows of v (XI * tp values).
#[allow(clippy::indexing_slicing)]
#[inline(always)]
fn gather_row_quad(
    g: &ConvGeometry,
    x: &[f32],
    base: usize,
    [oy, ox]: [usize; 2],
    (v, tp, t): (&mut [f32], usize, usize),
) {
    let [top, left] = g.pad_begin.map(|p| p as isize);
    let x0 = ox as isize - left;
    for r in 0..ALPHA {
        let iy = oy as isize + r as isize - top;
        let d = if iy >= 0 && iy < g.h as isize {
            let row = base + iy as usize * g.w;
            let q = |k: isize| row_quad(x, row, x0 + k * QUAD as isize, g.w);
            let (q0, q1, q2, q3, q4) = (q(0), q(1), q(2), q(3), q(4));
            let [d0, d1, d2, d3] = quad::transpose([q0, q1, q2, q3]);
            let [d4, d5, _, _] = quad::transpose([q1, q2, q3, q4]);
            bt([d0, d1, d2, d3, d4, d5])
        } else {
            [Quad::default(); ALPHA]
        };
        for (s, q) in d.into_iter().enumerate() {
            q.store(&mut v[row_of(r, s) * tp + t..]);
        }
    }
}

/// The `XI` rows of one channel (row ξ at `ξ * row_stride`: `tp` in the `[channel][ξ][tile]`
/// layout), `LANES` tiles from `t0`, as a 6x6 patch of lanes.
// t0 + LANES <= tp <= row_stride (t0 < tiles, and tp is at least tiles rounded up to whole
// lanes) and the rows hold (XI - 1) * row_stride + tp values.
#[allow(clippy::indexing_slicing)]
#[inline(always)]
fn load_lanes(d: &mut Patch, rows: &[f32], row_stride: usize, t0: usize) {
    for (i, row) in d.iter_mut().enumerate() {
        for (j, cell) in row.iter_mut().enumerate() {
            *cell = load(&rows[(i * ALPHA + j) * row_stride + t0..]);
        }
    }
}

/// Adds `bias` to the 4x4 outputs of a [`Patch`] (its top-left corner after the output
/// transform) and applies ReLU when `relu`, lane by lane (vectorised) before the outputs are
/// scattered. NaN stays NaN (as with burn's relu), so divergence stays visible.
#[inline(always)]
fn bias_relu(out: &mut Patch, bias: f32, relu: bool) {
    for cell in out
        .iter_mut()
        .take(M)
        .flat_map(|row| row.iter_mut().take(M))
    {
        for v in cell.0.iter_mut() {
            let b = *v + bias;
            *v = if relu && b <= 0.0 { 0.0 } else { b };
        }
    }
}

/// Output transform of one channel of a chunk: `m` holds its `XI` rows (row ξ at
/// `ξ * row_stride`, see [`load_lanes`]) of `tp` tiles, `y` starts at that channel's plane in
/// the chunk's first image (image `i`'s at `i * stride`); adds `bias` and applies ReLU when
/// `relu`.
// Indexes kept (hot loop): writes stay inside the output plane (oy + r < oh, ox + s < ow).
#[allow(clippy::indexing_slicing)]
fn output_transform(
    tl: &Tiling,
    tiles: usize,
    (m, row_stride): (&[f32], usize),
    bias: f32,
    relu: bool,
    y: &mut [f32],
    stride: usize,
) {
    let [oh, ow] = tl.out;
    // Four tiles from `o` are whole: their outputs lie in the plane.
    let whole = |o: &Origin| o.oy + M <= oh && o.ox + QUAD * M <= ow;
    let mut out = Patch::default();
    let mut cursor = Cursor::new(tl);
    for t0 in (0..tiles).step_by(LANES) {
        let n = LANES.min(tiles - t0);
        load_lanes(&mut out, m, row_stride, t0);
        two_d!(&mut out, at, 6, 4);
        bias_relu(&mut out, bias, relu);
        let mut l = 0;
        while l < n {
            if let Some(first) = cursor.quad_at(l, n).filter(whole) {
                cursor.skip_quad();
                // Four whole tiles side by side (lanes l..l + 4): output row r of all four is
                // sixteen contiguous values, the transpose of their values (r, 0..4).
                let first = first.image * stride + first.oy * ow + first.ox;
                for (r, row) in out.iter().take(M).enumerate() {
                    let q = [0, 1, 2, 3].map(|s| Quad::load(&row[s].0[l..]));
                    for (i, tile) in quad::transpose(q).into_iter().enumerate() {
                        tile.store(&mut y[first + r * ow + i * M..]);
                    }
                }
                l += QUAD;
                continue;
            }
            let lane = l;
            l += 1;
            let (img, oy, ox) = cursor.next_origin();
            let base = img * stride;
            if oy + M <= oh && ox + M <= ow {
                // The whole tile is in the plane: four rows of four, no checks per value.
                for (r, row) in out.iter().take(M).enumerate() {
                    let Some(dst) = y[base + (oy + r) * ow + ox..].first_chunk_mut::<M>() else {
                        continue;
                    };
                    for (d, v) in dst.iter_mut().zip(row) {
                        *d = v.0[lane];
                    }
                }
                continue;
            }
            for (r, row) in out.iter().take(M).enumerate().take(oh - oy) {
                let dst = base + (oy + r) * ow + ox;
                for (s, v) in row.iter().take(M).enumerate().take(ow - ox) {
                    y[dst + s] = v.0[lane];
                }
            }
        }
    }
}

/// [`output_transform`] followed by a 2x2, stride-2 max pooling: bias, ReLU and the four
/// windows of every tile are computed lane by lane on the transformed tiles (a window's four
/// values are four fixed positions of its tile), and only the `oh / 2 x ow / 2` pooled plane is
/// written to `y`, with each window's arg-max inside the `oh x ow` plane in `arg` (image `i`'s
/// planes at `i * stride`). Windows are read in [`super::pool`]'s order, so ties and NaNs
/// resolve alike.
// Indexes kept (hot loop): py < oh / 2 and px < ow / 2, inside the pooled plane; a tile's
// windows lie in its 4x4 outputs (tiles start at multiples of 4).
#[allow(clippy::indexing_slicing, clippy::too_many_arguments)]
fn output_transform_pooled(
    tl: &Tiling,
    tiles: usize,
    (m, row_stride): (&[f32], usize),
    bias: f32,
    relu: bool,
    y: &mut [f32],
    arg: &mut [u32],
    stride: usize,
) {
    const _: () = assert!(LANES == super::pool::WINDOWS);
    let [oh, ow] = tl.out;
    let (ph, pw) = (oh / 2, ow / 2);
    let mut out = Patch::default();
    let mut cursor = Cursor::new(tl);
    for t0 in (0..tiles).step_by(LANES) {
        let n = LANES.min(tiles - t0);
        load_lanes(&mut out, m, row_stride, t0);
        two_d!(&mut out, at, 6, 4);
        bias_relu(&mut out, bias, relu);
        let window = |wy: usize, wx: usize| {
            let (r, s) = (2 * wy, 2 * wx);
            super::pool::windows_2x2([
                &out[r][s].0,
                &out[r][s + 1].0,
                &out[r + 1][s].0,
                &out[r + 1][s + 1].0,
            ])
        };
        let windows = [[window(0, 0), window(0, 1)], [window(1, 0), window(1, 1)]];
        for l in 0..n {
            let (img, oy, ox) = cursor.next_origin();
            let base = img * stride;
            for (wy, row) in windows.iter().enumerate() {
                let py = oy / 2 + wy;
                if py >= ph {
                    break;
                }
                for (wx, (best, at)) in row.iter().enumerate() {
                    let px = ox / 2 + wx;
                    if px >= pw {
                        break;
                    }
                    let p = at[l] as usize;
                    let from = (oy + 2 * wy + (p >> 1)) * ow + ox + 2 * wx + (p & 1);
                    y[base + py * pw + px] = best[l];
                    arg[base + py * pw + px] = from as u32;
                }
            }
        }
    }
}

/// Second pass of the output-gradient transforms: `dm`'s rows [`row_of`]`(r, s)` (`r, s < M`)
/// hold each tile's 4x4 gradient (zero in the pad lanes); every `LANES` tiles are loaded as
/// vectors, transformed (`A dy Aᵀ`) and stored back as all `XI` rows.
// t0 + LANES <= tp (tp is tiles rounded up to whole lanes, or more) and dm holds XI * tp
// values.
#[allow(clippy::indexing_slicing)]
fn gradient_transform_in_place(tiles: usize, tp: usize, dm: &mut [f32]) {
    let mut d = Patch::default();
    for t0 in (0..tiles).step_by(LANES) {
        for (r, row) in d.iter_mut().take(M).enumerate() {
            for (s, cell) in row.iter_mut().take(M).enumerate() {
                *cell = load(&dm[row_of(r, s) * tp + t0..]);
            }
        }
        two_d!(&mut d, a, 4, 6);
        for (xi, lanes) in d.iter().flatten().enumerate() {
            store(&mut dm[xi * tp + t0..], lanes, LANES);
        }
    }
}

/// Zeroes the pad lanes (`tiles..tp`) of the rows [`row_of`]`(r, s)`, `r, s < side`, that a
/// gather pass filled and its in-place transform reads.
// The rows hold tp values each (rows holds XI * tp).
#[allow(clippy::indexing_slicing)]
fn zero_pad_lanes(side: usize, tiles: usize, tp: usize, rows: &mut [f32]) {
    for r in 0..side {
        for s in 0..side {
            let row = row_of(r, s) * tp;
            rows[row + tiles..row + tp].fill(0.0);
        }
    }
}

/// Output-gradient transform `dM = A dy Aᵀ` of one channel of a chunk: `dy` starts at that
/// channel's plane in the chunk's first image (image `i`'s at `i * stride`), `dm` receives its
/// `[ξ][tile]` rows of length `tp`. The 4x4 gradients are gathered first, then transformed in
/// place (two passes, as [`input_transform`] and for the same reason).
// Indexes kept (hot loop): reads stay inside the output plane; dm holds XI * tp values and
// t < tiles <= tp.
#[allow(clippy::indexing_slicing)]
fn gradient_transform(tl: &Tiling, tiles: usize, dy: &[f32], stride: usize, dm: &mut [f32]) {
    let tp = padded(tiles);
    let [oh, ow] = tl.out;
    let mut cursor = Cursor::new(tl);
    for t in 0..tiles {
        let (img, oy, ox) = cursor.next_origin();
        let base = img * stride;
        if oy + M <= oh && ox + M <= ow {
            // The whole tile is in the plane: four rows of four, no checks per value.
            for r in 0..M {
                let src: &[f32; M] = dy[base + (oy + r) * ow + ox..]
                    .first_chunk()
                    .unwrap_or(&[0.0; M]);
                for (s, &value) in src.iter().enumerate() {
                    dm[row_of(r, s) * tp + t] = value;
                }
            }
            continue;
        }
        for r in 0..M {
            let src = base + (oy + r) * ow + ox;
            for s in 0..M {
                dm[row_of(r, s) * tp + t] = if oy + r < oh && ox + s < ow {
                    dy[src + s]
                } else {
                    0.0
                };
            }
        }
    }
    zero_pad_lanes(M, tiles, tp, dm);
    gradient_transform_in_place(tiles, tp, dm);
}

/// [`gradient_transform`] of the output gradient of a 2x2, stride-2 max pooling of the
/// output: `dy` (the pooled gradient) and `arg` (each window's arg-max inside the `oh x ow`
/// plane, as [`forward_pooled`] returns them) start at that channel's pooled plane in the
/// chunk's first image (image `i`'s at `i * stride`). Each tile's 4x4 gradient is rebuilt in
/// the gather pass: the window's value at its arg-max, zero elsewhere.
// Indexes kept (hot loop): py < oh / 2 and px < ow / 2, inside the pooled plane; an arg-max
// outside its window is ignored rather than trusted; t < tiles <= tp.
#[allow(clippy::indexing_slicing)]
fn gradient_transform_pooled(
    tl: &Tiling,
    tiles: usize,
    (dy, arg): (&[f32], &[u32]),
    stride: usize,
    dm: &mut [f32],
) {
    let tp = padded(tiles);
    let [oh, ow] = tl.out;
    let (ph, pw) = (oh / 2, ow / 2);
    let mut cursor = Cursor::new(tl);
    for t in 0..tiles {
        let (img, oy, ox) = cursor.next_origin();
        let base = img * stride;
        let mut d = [[0.0f32; M]; M];
        for wy in 0..M / 2 {
            let py = oy / 2 + wy;
            if py >= ph {
                break;
            }
            for wx in 0..M / 2 {
                let px = ox / 2 + wx;
                if px >= pw {
                    break;
                }
                let p = base + py * pw + px;
                let origin = (oy + 2 * wy) * ow + ox + 2 * wx;
                let off = (arg[p] as usize).wrapping_sub(origin);
                let (r, s) = if off >= ow {
                    (2 * wy + 1, (2 * wx).wrapping_add(off - ow))
                } else {
                    (2 * wy, 2 * wx + off)
                };
                if r < M && s < 2 * wx + 2 {
                    d[r][s] = dy[p];
                }
            }
        }
        for (r, row) in d.iter().enumerate() {
            for (s, &value) in row.iter().enumerate() {
                dm[row_of(r, s) * tp + t] = value;
            }
        }
    }
    zero_pad_lanes(M, tiles, tp, dm);
    gradient_transform_in_place(tiles, tp, dm);
}

/// Input-gradient fold `dx += B dV Bᵀ` of one channel of a chunk: `dv` holds its `[ξ][tile]`
/// rows of length `tp`, `dx` starts at that channel's plane in the chunk's first image (image
/// `i`'s at `i * stride`).
// Indexes kept (hot loop): writes are bounds-checked against the plane as input_transform's reads.
#[allow(clippy::indexing_slicing)]
fn input_gradient(tl: &Tiling, tiles: usize, dv: &[f32], dx: &mut [f32], stride: usize) {
    let g = &tl.g;
    let tp = padded(tiles);
    let mut patch = Patch::default();
    let mut cursor = Cursor::new(tl);
    for t0 in (0..tiles).step_by(LANES) {
        let n = LANES.min(tiles - t0);
        load_lanes(&mut patch, dv, tp, t0);
        two_d!(&mut patch, b, 6, 6);
        for l in 0..n {
            let at = cursor.next_patch(g, stride);
            let PatchAt { base, y0, x0 } = at;
            if let Some(first) = at.first_inside(g) {
                for (r, row) in patch.iter().enumerate() {
                    let Some(dst) = dx[first + r * g.w..].first_chunk_mut::<ALPHA>() else {
                        continue;
                    };
                    for (d, v) in dst.iter_mut().zip(row) {
                        *d += v.0[l];
                    }
                }
                continue;
            }
            for (r, row) in patch.iter().enumerate() {
                let iy = y0 + r as isize;
                if iy < 0 || iy >= g.h as isize {
                    continue;
                }
                let dst = base + iy as usize * g.w;
                for (s, v) in row.iter().enumerate() {
                    let ix = x0 + s as isize;
                    if ix >= 0 && ix < g.w as isize {
                        dx[dst + ix as usize] += v.0[l];
                    }
                }
            }
        }
    }
}

/// How a call splits its batch: images per chunk, chunks, and whether the work inside a chunk
/// is split across threads (too few chunks to keep every thread busy).
#[derive(Clone, Copy)]
struct Chunking {
    per: usize,
    chunks: usize,
    inner: bool,
}

impl Chunking {
    fn new(tl: &Tiling) -> Self {
        let threads = rayon::current_num_threads().max(1);
        let per = tl.images_per_chunk(threads);
        let chunks = tl.g.batch.div_ceil(per);
        Self {
            per,
            chunks,
            inner: chunks < threads,
        }
    }

    fn images(&self, chunk: usize, batch: usize) -> Range<usize> {
        let first = chunk * self.per;
        first..(first + self.per).min(batch)
    }
}

/// Runs `f(c, rows)` on every channel's `[ξ][tile]` rows (`XI * tp` values each), across
/// threads when `par`.
fn each_channel(rows: &mut [f32], tp: usize, par: bool, f: impl Fn(usize, &mut [f32]) + Sync) {
    if par {
        rows.par_chunks_mut(XI * tp)
            .enumerate()
            .for_each(|(c, r)| f(c, r));
    } else {
        rows.chunks_mut(XI * tp)
            .enumerate()
            .for_each(|(c, r)| f(c, r));
    }
}

/// Where a chunk's forward products `M[ξ]` (`c_out x tiles` each) lie in the scratch buffer:
/// row (c, ξ) at `c * channel + ξ * position`. By channel (`[c_out][ξ][tile]`) when chunks run
/// in parallel: each channel's rows are close together for the output pass. By position
/// (`[ξ][c_out][tile]`, one block per ξ) when one chunk is split across threads, so that each
/// thread writes whole blocks; the blocks are one cache line longer than their rows, so that
/// the 36 rows of a channel do not share a cache set.
#[derive(Clone, Copy)]
struct Products {
    /// Values from one channel's rows to the next's (the gemm's destination row stride).
    channel: usize,
    /// Values from one position's rows to the next's (where `M[ξ]` starts).
    position: usize,
    /// Values the products take.
    len: usize,
}

impl Products {
    fn new(c_out: usize, tp: usize, by_position: bool) -> Self {
        if by_position {
            let block = c_out * tp + 16;
            Self {
                channel: tp,
                position: block,
                len: XI * block,
            }
        } else {
            Self {
                channel: XI * tp,
                position: tp,
                len: c_out * XI * tp,
            }
        }
    }

    /// Channel `c`'s rows: the slice from its ξ = 0 row, and the stride between its rows.
    // c < c_out: the row lies inside the buffer of len values.
    #[allow(clippy::indexing_slicing)]
    fn channel<'a>(&self, m: &'a [f32], c: usize) -> (&'a [f32], usize) {
        (&m[c * self.channel..], self.position)
    }
}

/// Forward pass of a geometry [`supports`] accepts: `y[n, c_out, oh, ow]` from
/// `x[n, c_in, h, w]`, `weight[c_out, c_in, 3, 3]` and an optional `bias[c_out]`, with ReLU
/// applied in the output pass when `relu`. Same contract as [`super::conv::forward`].
///
/// # Panics
/// When a slice length disagrees with the geometry.
pub fn forward(
    g: &ConvGeometry,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
) -> Vec<f32> {
    forward_impl(g, x, weight, bias, relu, false).0
}

/// [`forward`] followed by a 2x2, stride-2 max pooling (floor mode), computed in the output
/// pass: each 4x4 tile of outputs holds whole pooling windows, so only the pooled map
/// `[n, c_out, oh / 2, ow / 2]` is written, with the arg-max of every window inside its
/// `oh x ow` plane (as [`super::pool::forward`] numbers them, ties and NaNs included).
///
/// # Panics
/// When a slice length disagrees with the geometry.
pub fn forward_pooled(
    g: &ConvGeometry,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
) -> (Vec<f32>, Vec<u32>) {
    forward_impl(g, x, weight, bias, relu, true)
}

/// One chunk's share of the forward output: its pooled or full map and, when pooled, the
/// arg-maxes.
type OutChunk<'a> = (&'a mut [f32], Option<&'a mut [u32]>);

/// [`forward`] (`pooled` false; no arg-maxes) or [`forward_pooled`].
// Slices are split at whole images and channel planes, all inside the checked lengths.
#[allow(clippy::indexing_slicing)]
fn forward_impl(
    g: &ConvGeometry,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    pooled: bool,
) -> (Vec<f32>, Vec<u32>) {
    let [oh, ow] = check_lengths(g, x, weight);
    let Some(tl) = Tiling::new(g) else {
        return (Vec::new(), Vec::new());
    };
    let plane_in = g.h * g.w;
    let plane_out = if pooled { (oh / 2) * (ow / 2) } else { oh * ow };
    let (in_len, out_len) = (g.c_in * plane_in, g.c_out * plane_out);
    let mut y = vec![0.0f32; g.batch * out_len];
    let mut argmax = vec![0u32; if pooled { y.len() } else { 0 }];
    if y.is_empty() {
        return (y, argmax);
    }
    let u = weight_transform(g, weight);
    let split = Chunking::new(&tl);
    let inner = split.inner;
    let bias_of = |c: usize| bias.map_or(0.0, |b| b[c]);
    // The output pass of channel c: its transformed rows `mc` (row ξ at `ξ * rs`) into its plane.
    let output = |c: usize,
                  tiles: usize,
                  mc: (&[f32], usize),
                  plane: &mut [f32],
                  arg: Option<&mut [u32]>| match arg {
        Some(arg) => output_transform_pooled(&tl, tiles, mc, bias_of(c), relu, plane, arg, out_len),
        None => output_transform(&tl, tiles, mc, bias_of(c), relu, plane, out_len),
    };
    let run = |chunk: usize, (y_chunk, mut arg_chunk): (&mut [f32], Option<&mut [u32]>)| {
        let images = split.images(chunk, g.batch);
        let tiles = images.len() * tl.per_image();
        let tp = padded(tiles);
        let x_chunk = &x[images.start * in_len..images.end * in_len];
        let layout = Products::new(g.c_out, tp, inner);
        let v_len = g.c_in * XI * tp;
        with_scratch(v_len + layout.len, |scratch| {
            let (v, m) = scratch.split_at_mut(v_len);
            each_channel(v, tp, inner, |c, vc| {
                input_transform(&tl, tiles, &x_chunk[c * plane_in..], in_len, vc);
            });
            // M[ξ] (c_out x tiles) = U[ξ] (c_out x c_in) x V[ξ] (c_in x tiles), into `dst`
            // from its first row; each gemm on one thread.
            let product = |xi: usize, dst: &mut [f32]| {
                let uxi = op(&u[xi * g.c_out * g.c_in..], [g.c_in, 1]);
                let vxi = op(&v[xi * tp..], [XI * tp, 1]);
                let shape = [g.c_out, tiles, g.c_in];
                matmul(shape, dst, layout.channel, false, uxi, vxi, false);
            };
            if inner {
                // Too few chunks for the threads: the 36 gemms run side by side (one small
                // gemm split across threads costs more than it saves).
                m.par_chunks_mut(layout.position)
                    .enumerate()
                    .for_each(|(xi, mxi)| product(xi, mxi));
            } else {
                for xi in 0..XI {
                    product(xi, &mut m[xi * layout.position..]);
                }
            }
            let m = &*m;
            if inner && images.len() == 1 {
                // One image: its channel planes in parallel.
                let args: Vec<Option<&mut [u32]>> = match arg_chunk.as_deref_mut() {
                    Some(a) => a.chunks_mut(plane_out).map(Some).collect(),
                    None => (0..g.c_out).map(|_| None).collect(),
                };
                y_chunk
                    .par_chunks_mut(plane_out)
                    .zip(args)
                    .enumerate()
                    .for_each(|(c, (plane, arg))| {
                        output(c, tiles, layout.channel(m, c), plane, arg)
                    });
            } else {
                for c in 0..g.c_out {
                    let plane = &mut y_chunk[c * plane_out..];
                    let arg = arg_chunk.as_deref_mut().map(|a| &mut a[c * plane_out..]);
                    output(c, tiles, layout.channel(m, c), plane, arg);
                }
            }
        });
    };
    let per = split.per * out_len;
    let chunks: Vec<OutChunk<'_>> = if pooled {
        y.chunks_mut(per)
            .zip(argmax.chunks_mut(per))
            .map(|(y, a)| (y, Some(a)))
            .collect()
    } else {
        y.chunks_mut(per).map(|y| (y, None)).collect()
    };
    if inner {
        chunks
            .into_iter()
            .enumerate()
            .for_each(|(chunk, out)| run(chunk, out));
    } else {
        chunks
            .into_par_iter()
            .enumerate()
            .for_each(|(chunk, out)| run(chunk, out));
    }
    (y, argmax)
}

/// A task's running sums: transformed weight gradient `[ξ][pair]` and bias gradient.
type Partial = (Vec<f32>, Vec<f32>);

/// Backward pass of a geometry [`supports`] accepts, from the output gradient
/// `dy[n, c_out, oh, ow]`. Same contract as [`super::conv::backward`].
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
    backward_impl(g, x, weight, (dy, None), need_x)
}

/// Backward pass of [`forward_pooled`], from the gradient of the pooled output
/// `dy[n, c_out, oh / 2, ow / 2]` and the forward's arg-maxes: as [`backward`] of the full
/// output gradient (`dy` at each window's arg-max, zero elsewhere), which is rebuilt tile by
/// tile and never written out.
///
/// # Panics
/// When a slice length disagrees with the geometry.
pub fn backward_pooled(
    g: &ConvGeometry,
    x: &[f32],
    weight: &[f32],
    dy: &[f32],
    argmax: &[u32],
    need_x: bool,
) -> ConvGrads {
    backward_impl(g, x, weight, (dy, Some(argmax)), need_x)
}

/// [`backward`] (no arg-maxes) or [`backward_pooled`].
// Slices are split at whole images and channel planes, all inside the checked lengths.
#[allow(clippy::indexing_slicing)]
fn backward_impl(
    g: &ConvGeometry,
    x: &[f32],
    weight: &[f32],
    (dy, argmax): (&[f32], Option<&[u32]>),
    need_x: bool,
) -> ConvGrads {
    let [oh, ow] = check_lengths(g, x, weight);
    let plane_in = g.h * g.w;
    // The gradient's plane: the output's, or the pooled output's.
    let plane_out = if argmax.is_some() {
        (oh / 2) * (ow / 2)
    } else {
        oh * ow
    };
    let (in_len, out_len) = (g.c_in * plane_in, g.c_out * plane_out);
    assert_eq!(
        dy.len(),
        g.batch * out_len,
        "conv2d backward: output gradient length"
    );
    if let Some(a) = argmax {
        assert_eq!(a.len(), dy.len(), "conv2d backward: arg-max length");
    }
    let mut dx = need_x.then(|| vec![0.0f32; g.batch * in_len]);
    let pairs = g.c_out * g.c_in;
    let Some(tl) = Tiling::new(g).filter(|_| g.batch > 0 && in_len > 0 && out_len > 0) else {
        return ConvGrads {
            x: dx,
            weight: vec![0.0; pairs * 9],
            bias: vec![0.0; g.c_out],
        };
    };
    let u = weight_transform(g, weight);
    let split = Chunking::new(&tl);
    let inner = split.inner;

    // One chunk: adds its transformed weight gradient and bias gradient to `acc` and writes
    // its images' input gradients into `dx_chunk`.
    let work = |mut acc: Partial, (chunk, dx_chunk): (usize, Option<&mut [f32]>)| -> Partial {
        let (du, db) = (&mut acc.0, &mut acc.1);
        let images = split.images(chunk, g.batch);
        let tiles = images.len() * tl.per_image();
        let tp = padded(tiles);
        let x_chunk = &x[images.start * in_len..images.end * in_len];
        let dy_chunk = &dy[images.start * out_len..images.end * out_len];
        let arg_chunk = argmax.map(|a| &a[images.start * out_len..images.end * out_len]);
        for dy_img in dy_chunk.chunks_exact(out_len) {
            for (acc, plane) in db.iter_mut().zip(dy_img.chunks_exact(plane_out)) {
                *acc += super::lane_sum(plane, plane, |v, _| v) as f32;
            }
        }
        let (v_len, m_len) = (g.c_in * XI * tp, g.c_out * XI * tp);
        let dv_len = if dx_chunk.is_some() { v_len } else { 0 };
        with_scratch(v_len + m_len + dv_len, |scratch| {
            let (v, rest) = scratch.split_at_mut(v_len);
            let (dm, dv) = rest.split_at_mut(m_len);
            each_channel(v, tp, inner, |c, vc| {
                input_transform(&tl, tiles, &x_chunk[c * plane_in..], in_len, vc);
            });
            each_channel(dm, tp, inner, |c, dc| {
                let dyc = &dy_chunk[c * plane_out..];
                match arg_chunk {
                    Some(a) => {
                        let pooled = (dyc, &a[c * plane_out..]);
                        gradient_transform_pooled(&tl, tiles, pooled, out_len, dc);
                    }
                    None => gradient_transform(&tl, tiles, dyc, out_len, dc),
                }
            });
            for xi in 0..XI {
                let dmxi = op(&dm[xi * tp..], [XI * tp, 1]);
                // dU[ξ] (c_out x c_in) += dM[ξ] (c_out x tiles) x V[ξ]ᵀ (tiles x c_in)
                let vt = op(&v[xi * tp..], [1, XI * tp]);
                let du_xi = &mut du[xi * pairs..];
                matmul(
                    [g.c_out, g.c_in, tiles],
                    du_xi,
                    g.c_in,
                    true,
                    dmxi,
                    vt,
                    inner,
                );
                if dv_len > 0 {
                    // dV[ξ] (c_in x tiles) = U[ξ]ᵀ (c_in x c_out) x dM[ξ] (c_out x tiles)
                    let ut = op(&u[xi * pairs..], [1, g.c_in]);
                    let dst = &mut dv[xi * tp..];
                    matmul(
                        [g.c_in, tiles, g.c_out],
                        dst,
                        XI * tp,
                        false,
                        ut,
                        dmxi,
                        inner,
                    );
                }
            }
            let Some(dxc) = dx_chunk else {
                return;
            };
            if inner && images.len() == 1 {
                dxc.par_chunks_mut(plane_in)
                    .zip(dv.par_chunks(XI * tp))
                    .for_each(|(plane, vc)| input_gradient(&tl, tiles, vc, plane, in_len));
            } else {
                for (c, vc) in dv.chunks_exact(XI * tp).enumerate() {
                    input_gradient(&tl, tiles, vc, &mut dxc[c * plane_in..], in_len);
                }
            }
        });
        acc
    };
    let zero = || -> Partial { (vec![0.0f32; XI * pairs], vec![0.0f32; g.c_out]) };
    let sum = |mut a: Partial, b: Partial| -> Partial {
        a.0.iter_mut().zip(&b.0).for_each(|(acc, v)| *acc += v);
        a.1.iter_mut().zip(&b.1).for_each(|(acc, v)| *acc += v);
        a
    };

    // Partial sums per run of `group` consecutive chunks (one run per thread), added up in
    // run order at the end. The runs are fixed by the chunk count and the thread count, not by
    // work stealing (rayon's `fold` + `reduce` would group and add the chunks differently from
    // one call to the next), so the same inputs give the same gradient bit for bit.
    let group = split
        .chunks
        .div_ceil(rayon::current_num_threads().max(1))
        .max(1);
    let in_order = |partials: Vec<Partial>| partials.into_iter().reduce(sum).unwrap_or_else(zero);
    let (du, db) = match (dx.as_mut(), inner) {
        (Some(d), false) => in_order(
            d.par_chunks_mut(split.per * in_len)
                .enumerate()
                .map(|(chunk, dxc)| (chunk, Some(dxc)))
                .fold_chunks(group, zero, work)
                .collect(),
        ),
        (Some(d), true) => d
            .chunks_mut(split.per * in_len)
            .enumerate()
            .map(|(chunk, dxc)| (chunk, Some(dxc)))
            .fold(zero(), work),
        (None, false) => in_order(
            (0..split.chunks)
                .into_par_iter()
                .map(|chunk| (chunk, None))
                .fold_chunks(group, zero, work)
                .collect(),
        ),
        (None, true) => (0..split.chunks)
            .map(|chunk| (chunk, None))
            .fold(zero(), work),
    };
    ConvGrads {
        x: dx,
        weight: weight_gradient(g, &du),
        bias: db,
    }
}

#[cfg(test)]
mod tests {
    use super::super::conv::tests::values;
    use super::super::conv::{backward_im2col, forward_im2col};
    use super::*;
    use proptest::prelude::*;

    fn dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
    }

    /// Each one-dimensional transform's partner is its exact adjoint: `<f(x), y> = <x, f*(y)>`.
    #[test]
    fn the_backward_transforms_are_the_adjoints_of_the_forward_ones() {
        for seed in 0..20 {
            let v = values(12, seed);
            let x6: [f32; 6] = std::array::from_fn(|i| v[i]);
            let y6: [f32; 6] = std::array::from_fn(|i| v[6 + i]);
            let (x4, x3) = (&x6[..4], &x6[..3]);
            let close =
                |l: f64, r: f64| assert!((l - r).abs() < 1e-4 * (1.0 + l.abs()), "{l} vs {r}");
            close(dot(&bt(x6), &y6), dot(&x6, &b(y6)));
            close(dot(&at(x6), x4), dot(&x6, &a([x4[0], x4[1], x4[2], x4[3]])));
            close(dot(&gw([x3[0], x3[1], x3[2]]), &y6), dot(x3, &gt(y6)));
        }
    }

    /// `Aᵀ [(G w) ⊙ (Bᵀ d)]` is the correlation of six inputs with three taps.
    #[test]
    fn one_dimensional_f43_is_a_correlation() {
        let v = values(9, 3);
        let d: [f32; 6] = std::array::from_fn(|i| v[i]);
        let w = [v[6], v[7], v[8]];
        let (gd, gwv) = (bt(d), gw(w));
        let y = at(std::array::from_fn(|i| gd[i] * gwv[i]));
        for (i, yi) in y.iter().enumerate() {
            let want: f32 = (0..3).map(|k| w[k] * d[i + k]).sum();
            assert!((yi - want).abs() < 1e-5, "output {i}: {yi} vs {want}");
        }
    }

    fn geometry(
        batch: usize,
        c_in: usize,
        c_out: usize,
        hw: [usize; 2],
        pad: [usize; 4],
    ) -> ConvGeometry {
        ConvGeometry {
            batch,
            c_in,
            h: hw[0],
            w: hw[1],
            c_out,
            kernel: [3, 3],
            stride: [1, 1],
            pad_begin: [pad[0], pad[1]],
            pad_end: [pad[2], pad[3]],
            dilation: [1, 1],
        }
    }

    /// Elementwise agreement scaled by the magnitude of the values a sum of `terms` products
    /// of numbers in [-1, 1] can reach.
    fn agree(got: &[f32], want: &[f32], terms: usize, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        let tol = 2e-5 * (terms as f32).sqrt().max(1.0) * 10.0;
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= tol * (1.0 + w.abs()),
                "{what}[{i}]: {g} vs {w}"
            );
        }
    }

    /// Forward, input, weight and bias gradients against the im2col path on one geometry.
    fn check(g: &ConvGeometry, relu: bool) {
        assert!(computes(g), "{g:?}");
        let [oh, ow] = g.output().expect("fits");
        let x = values(g.batch * g.c_in * g.h * g.w, 1);
        let w = values(g.c_out * g.c_in * 9, 2);
        let bias = values(g.c_out, 3);
        let terms = g.c_in * 9;
        agree(
            &forward(g, &x, &w, Some(&bias), relu),
            &forward_im2col(g, &x, &w, Some(&bias), relu),
            terms,
            "y",
        );
        agree(
            &forward(g, &x, &w, None, false),
            &forward_im2col(g, &x, &w, None, false),
            terms,
            "y",
        );
        let dy = values(g.batch * g.c_out * oh * ow, 4);
        let got = backward(g, &x, &w, &dy, true);
        let want = backward_im2col(g, &x, &w, &dy, true);
        agree(
            got.x.as_deref().expect("dx"),
            want.x.as_deref().expect("dx"),
            g.c_out * 9,
            "dx",
        );
        agree(&got.weight, &want.weight, g.batch * oh * ow, "dw");
        agree(&got.bias, &want.bias, g.batch * oh * ow, "db");
        let no_x = backward(g, &x, &w, &dy, false);
        assert!(no_x.x.is_none());
        agree(
            &no_x.weight,
            &want.weight,
            g.batch * oh * ow,
            "dw without dx",
        );
    }

    /// The pooled forward pass equals the full one followed by the 2x2 pooling (bit for bit,
    /// arg-maxes included), and the pooled backward pass the full one from the pooling's
    /// gradient.
    fn check_pooled(g: &ConvGeometry, relu: bool) {
        let Some(pool) = super::super::conv::output_pool(g) else {
            return;
        };
        let x = values(g.batch * g.c_in * g.h * g.w, 5);
        let w = values(g.c_out * g.c_in * 9, 6);
        let bias = values(g.c_out, 7);
        let full = forward(g, &x, &w, Some(&bias), relu);
        let want = super::super::pool::forward(&pool, &full);
        let (y, argmax) = forward_pooled(g, &x, &w, Some(&bias), relu);
        assert_eq!(argmax, want.argmax, "{g:?}");
        assert!(
            y.iter()
                .zip(&want.output)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{g:?}"
        );
        let dyp = values(y.len(), 8);
        let dy = super::super::pool::backward(&pool, &argmax, &dyp);
        let [oh, ow] = g.output().expect("fits");
        let want = backward(g, &x, &w, &dy, true);
        let got = backward_pooled(g, &x, &w, &dyp, &argmax, true);
        agree(
            got.x.as_deref().expect("dx"),
            want.x.as_deref().expect("dx"),
            g.c_out * 9,
            "pooled dx",
        );
        agree(&got.weight, &want.weight, g.batch * oh * ow, "pooled dw");
        agree(&got.bias, &want.bias, g.batch * oh * ow, "pooled db");
    }

    #[test]
    fn pooled_passes_agree_with_pooling_the_full_output() {
        check_pooled(&geometry(3, 16, 17, [31, 31], [1, 1, 1, 1]), false);
        check_pooled(&geometry(2, 16, 16, [8, 8], [1, 1, 1, 1]), true);
        check_pooled(&geometry(3, 16, 16, [7, 9], [0, 0, 0, 0]), true);
        check_pooled(&geometry(2, 19, 16, [5, 6], [2, 0, 1, 3]), false);
        // no window at all: nothing to pool
        check_pooled(&geometry(2, 16, 16, [1, 1], [0, 0, 0, 0]), false);
    }

    #[test]
    fn agrees_with_im2col_on_the_ref_cnn_shapes_and_odd_ones() {
        // ref-cnn's 3x3 layers, at a small batch (several chunks) and batch 1 (split inside)
        check(&geometry(5, 64, 64, [32, 32], [1, 1, 1, 1]), false);
        check(&geometry(1, 128, 256, [8, 8], [1, 1, 1, 1]), true);
        // maps that are not multiples of the tile, no padding, uneven padding, 1x1 outputs
        check(&geometry(3, 16, 17, [7, 9], [0, 0, 0, 0]), true);
        check(&geometry(2, 19, 16, [5, 6], [2, 0, 1, 3]), false);
        check(&geometry(4, 16, 16, [1, 1], [1, 1, 1, 1]), false);
        check(&geometry(3, 16, 16, [3, 3], [0, 0, 0, 0]), false);
    }

    #[test]
    fn the_winograd_path_agrees_with_im2col_on_every_padding() {
        // Padding on either side, none, more than one; outputs whose sides end in partial
        // tiles and whole ones; chunks of 1 or 2 tiles, and of 2 per image; tile rows of four
        // tiles or more (the passes by quads of tiles), whole and partial.
        for (batch, c_out, hw, pad, relu) in [
            (2, 16, [16, 16], [1, 1, 1, 1], true),
            (1, 17, [13, 16], [0, 2, 2, 0], false),
            (3, 16, [16, 32], [2, 0, 0, 2], true),
            (2, 16, [6, 17], [0, 0, 0, 1], false),
            (2, 18, [8, 14], [1, 3, 1, 1], true),
            (1, 16, [32, 64], [1, 1, 1, 1], false),
            (3, 16, [4, 4], [1, 1, 1, 1], true),
            (3, 17, [6, 10], [0, 0, 0, 0], false),
            // Tile rows of six: a quad of tiles, then two one by one, across images.
            (3, 16, [9, 21], [2, 1, 0, 2], true),
        ] {
            let g = geometry(batch, 16, c_out, hw, pad);
            check(&g, relu);
            check_pooled(&g, relu);
        }
    }

    #[test]
    fn the_backward_pass_gives_the_same_gradients_bit_for_bit_every_time() {
        // Many chunks of 4 images (64 tiles) over 3 threads: runs of chunks per thread. Work
        // stealing changes which chunks a thread takes from call to call; the sums must not
        // depend on it (training with the same seeds must take the same path).
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .expect("pool");
        let g = geometry(96, 16, 16, [16, 16], [1, 1, 1, 1]);
        let x = values(g.batch * g.c_in * g.h * g.w, 5);
        let w = values(g.c_out * g.c_in * 9, 6);
        let dy = values(g.batch * g.c_out * g.h * g.w, 7);
        pool.install(|| {
            for need_x in [true, false] {
                let first = backward(&g, &x, &w, &dy, need_x);
                for _ in 0..12 {
                    let again = backward(&g, &x, &w, &dy, need_x);
                    let same = |a: &[f32], b: &[f32]| {
                        a.iter().zip(b).all(|(a, b)| a.to_bits() == b.to_bits())
                    };
                    assert!(same(&again.weight, &first.weight), "dw, need_x {need_x}");
                    assert!(same(&again.bias, &first.bias), "db, need_x {need_x}");
                    assert_eq!(again.x, first.x, "dx");
                }
            }
        });
    }

    #[test]
    fn supports_only_dense_3x3_stride_1_undilated_convolutions_with_enough_channels() {
        // the batch rule depends on the thread count: fix it
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("pool");
        pool.install(|| {
            let g = geometry(64, 16, 16, [8, 8], [1, 1, 1, 1]);
            assert!(supports(&g));
            // batch 1: the im2col path is faster
            assert!(computes(&ConvGeometry { batch: 1, ..g }));
            assert!(!supports(&ConvGeometry { batch: 1, ..g }));
            assert!(!supports(&ConvGeometry {
                stride: [2, 2],
                ..g
            }));
            assert!(!supports(&ConvGeometry {
                dilation: [2, 1],
                ..g
            }));
            assert!(!supports(&ConvGeometry {
                kernel: [5, 5],
                pad_begin: [2, 2],
                pad_end: [2, 2],
                ..g
            }));
            assert!(!supports(&ConvGeometry { c_in: 3, ..g }));
            assert!(!supports(&ConvGeometry { batch: 0, ..g }));
            assert!(!supports(&ConvGeometry {
                h: 1,
                pad_begin: [0, 1],
                pad_end: [0, 1],
                ..g
            }));
        });
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Any geometry the path accepts gives the im2col path's values and gradients.
        #[test]
        fn agrees_with_im2col_on_random_geometries(
            batch in 1usize..5,
            c_in in 16usize..24,
            c_out in 16usize..24,
            h in 1usize..14,
            w in 1usize..14,
            pad in proptest::array::uniform4(0usize..3),
            relu in any::<bool>(),
        ) {
            let g = geometry(batch, c_in, c_out, [h, w], pad);
            prop_assume!(computes(&g));
            check(&g, relu);
            check_pooled(&g, relu);
        }
    }
}
