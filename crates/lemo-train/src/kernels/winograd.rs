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
//! in two passes: the values are first moved into the transformed buffer itself (the input
//! patches already transformed along their rows), then transformed in place with whole vector
//! loads and stores. Gathering straight into a
//! working patch of lanes read values back as vectors right after storing them one by one, a
//! store-forwarding stall on every load; the two passes made the backward step of the ref-cnn's
//! layers about 10% faster (docs/performance.md). The passes between the planes and the
//! `[ξ][tile]` rows move four tiles at once (in `Quad` registers): four tiles' values of one
//! patch row are a 4x4 block away from a transpose. The input patches are read from
//! zero-padded copies of the planes (`Padded`), so nothing is checked per value, and the
//! input gradient is added into such a copy the same way; the outputs, and the output
//! gradients, go by quads when every 4x4 tile is whole (output sides multiples of 4).

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
/// Tiles side by side in one [`Quad`]: the passes that transpose between a tile row and the
/// plane rows under it take them four at a time.
const QUAD: usize = 4;
/// Fewest input and output channels for which the transforms pay for themselves.
const MIN_CHANNELS: usize = 16;
/// Fewest tiles per chunk for which [`supports`] takes this path.
const MIN_CHUNK_TILES: usize = 64;
/// Tiles per chunk the chunking aims at: enough columns for an efficient gemm, few enough that
/// the transformed chunk stays in the last-level cache.
const TARGET_TILES: usize = 256;

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

    /// Whether every tile is whole (the output's sides are multiples of 4): then a tile's
    /// outputs, or output gradients, are four rows of four contiguous values of its plane.
    fn whole_tiles(&self) -> bool {
        self.out.iter().all(|side| side.is_multiple_of(M))
    }

    /// Images per chunk: about [`TARGET_TILES`] tiles, and at least as many chunks as
    /// threads when the batch allows.
    fn images_per_chunk(&self, threads: usize) -> usize {
        let by_tiles = TARGET_TILES.div_ceil(self.per_image()).max(1);
        by_tiles.min(self.g.batch.div_ceil(threads.max(1))).max(1)
    }
}

/// A chunk's channel planes as zero-padded planes, where every tile's 6x6 input patch is six
/// rows of eight values and nothing is checked per value: padded row `i`, column `j` hold
/// plane row `i - top`, column `j - left`, in `4 * tiles_h + 2` rows of `4 * tiles_w + 4`
/// values per image (a tile's patch ends at row `oy + 5`, its second vector of a row at
/// `ox + 8`). Padding, and what lies past the plane's edges, is zero.
#[derive(Clone, Copy)]
struct Padded {
    /// Values per padded row.
    pw: usize,
    /// Values per padded image.
    per_image: usize,
    /// Images of the chunk.
    images: usize,
    /// Plane rows and columns inside the padded planes (no tile reaches the others).
    rows: usize,
    cols: usize,
    /// Padding before the plane's first row and column.
    top: usize,
    left: usize,
    /// The plane's width.
    w: usize,
}

impl Padded {
    fn new(tl: &Tiling, tiles: usize) -> Self {
        let g = &tl.g;
        let [th, tw] = tl.tiles;
        let (ph, pw) = (M * th + 2, M * tw + QUAD);
        let [top, left] = g.pad_begin;
        Self {
            pw,
            per_image: ph * pw,
            images: tiles.div_ceil(tl.per_image().max(1)),
            rows: g.h.min(ph.saturating_sub(top)),
            cols: g.w.min(pw.saturating_sub(left)),
            top,
            left,
            w: g.w,
        }
    }

    /// Values of all the chunk's padded planes.
    fn len(&self) -> usize {
        self.images * self.per_image
    }

    /// Every plane row inside the padded planes: where it starts in the planes (image `i`'s at
    /// `i * stride`) and in the padded ones; `self.cols` values each.
    fn rows(&self, stride: usize) -> impl Iterator<Item = (usize, usize)> {
        let p = *self;
        (0..p.images).flat_map(move |img| {
            (0..p.rows).map(move |iy| {
                (
                    img * stride + iy * p.w,
                    img * p.per_image + (iy + p.top) * p.pw + p.left,
                )
            })
        })
    }
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

    /// [`Self::next_origin`] as the index of the current tile's first value in planes of `w`
    /// values per row, image `i`'s at `i * stride` (its first output, or in [`Padded`] planes
    /// its patch's first value).
    #[inline(always)]
    fn next_at(&mut self, stride: usize, w: usize) -> usize {
        let (img, oy, ox) = self.next_origin();
        img * stride + oy * w + ox
    }
}

/// [`Cursor::next_at`] for the quad of tiles from `t` (the cursor at tile `t`): lanes past the
/// chunk's last tile repeat tile `t`, so that every lane reads inside the planes.
#[inline(always)]
fn quad_firsts(
    cursor: &mut Cursor,
    t: usize,
    tiles: usize,
    stride: usize,
    w: usize,
) -> [usize; QUAD] {
    let first = cursor.next_at(stride, w);
    std::array::from_fn(|l| match l {
        0 => first,
        _ if t + l < tiles => cursor.next_at(stride, w),
        _ => first,
    })
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
/// stride those rows share a few cache sets and evict each other (the default chunk of
/// 256 tiles would put all 36 rows in 4 sets of a 64-set, 8-way L1).
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
/// Two passes (module docs): [`gather_quads`] gathers the patches four tiles at a time and
/// applies the row direction of the transform, then [`columns_in_place`] applies the column
/// direction `LANES` tiles at a time with whole vector loads and stores.
fn input_transform(tl: &Tiling, tiles: usize, x: &[f32], stride: usize, v: &mut [f32]) {
    let tp = padded(tiles);
    gather_quads(tl, tiles, x, stride, v);
    zero_pad_lanes(ALPHA, tiles, tp, v);
    columns_in_place(tiles, tp, v);
}

/// The gather pass of [`input_transform`] with the row direction of `Bᵀ d B` folded in. The
/// chunk's channel planes are first copied into [`Padded`] planes, so that no value is checked
/// afterwards. Four tiles at a time, each patch row is read as two vectors per tile and both
/// 4x4 blocks are transposed (lane `l` of `d[s]` is value `s` of tile `l`), transformed along
/// the row (`Bᵀ`) and stored into the rows [`row_of`]`(r, s)`, four tiles per store.
// Indexes kept (hot loop): a tile's last read (row oy + 5, values ox + 4..ox + 8) ends inside its
// image's padded plane (Padded); the copied rows are clipped to both planes; the stores end at
// t + 4 <= tp, and v holds XI * tp values.
#[allow(clippy::indexing_slicing)]
fn gather_quads(tl: &Tiling, tiles: usize, x: &[f32], stride: usize, v: &mut [f32]) {
    let tp = padded(tiles);
    let pad = Padded::new(tl, tiles);
    let mut plane = vec![0.0f32; pad.len()];
    for (src, dst) in pad.rows(stride) {
        plane[dst..dst + pad.cols].copy_from_slice(&x[src..src + pad.cols]);
    }
    let mut cursor = Cursor::new(tl);
    for t in (0..tiles).step_by(QUAD) {
        // Past the last tile, a lane reads the quad's first tile again: it fills pad lanes,
        // which are zeroed afterwards.
        let firsts = quad_firsts(&mut cursor, t, tiles, pad.per_image, pad.pw);
        for r in 0..ALPHA {
            let row = r * pad.pw;
            let [d0, d1, d2, d3] = quad::transpose(firsts.map(|f| Quad::load(&plane[f + row..])));
            let [d4, d5, _, _] =
                quad::transpose(firsts.map(|f| Quad::load(&plane[f + row + QUAD..])));
            for (s, q) in bt([d0, d1, d2, d3, d4, d5]).into_iter().enumerate() {
                q.store(&mut v[row_of(r, s) * tp + t..]);
            }
        }
    }
}

/// The column direction of `Bᵀ d B`, in place on the rows [`row_of`]`(r, s)` that
/// [`gather_quads`] filled (the row direction already applied), `LANES` tiles at a
/// time.
// t0 + LANES <= tp (tp is tiles rounded up to whole lanes, or more) and v holds XI * tp values.
#[allow(clippy::indexing_slicing)]
fn columns_in_place(tiles: usize, tp: usize, v: &mut [f32]) {
    for t0 in (0..tiles).step_by(LANES) {
        for s in 0..ALPHA {
            let col: [Lanes; ALPHA] = std::array::from_fn(|r| load(&v[row_of(r, s) * tp + t0..]));
            for (r, lanes) in bt(col).iter().enumerate() {
                store(&mut v[row_of(r, s) * tp + t0..], lanes, LANES);
            }
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
// Indexes kept (hot loop): writes stay inside the output plane (oy + r < oh, ox + s < ow; the
// quads only when every tile is whole).
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
    let whole = tl.whole_tiles();
    let mut out = Patch::default();
    let mut cursor = Cursor::new(tl);
    for t0 in (0..tiles).step_by(LANES) {
        let n = LANES.min(tiles - t0);
        load_lanes(&mut out, m, row_stride, t0);
        two_d!(&mut out, at, 6, 4);
        bias_relu(&mut out, bias, relu);
        if whole {
            // Lanes 4h..4h + 4 are four tiles: output row r of each is the transpose of their
            // values (r, 0..4).
            for h in 0..LANES / QUAD {
                let t = t0 + h * QUAD;
                if t >= tiles {
                    break;
                }
                let firsts = quad_firsts(&mut cursor, t, tiles, stride, ow);
                for (r, row) in out.iter().take(M).enumerate() {
                    let q: [Quad; M] = std::array::from_fn(|s| Quad::load(&row[s].0[h * QUAD..]));
                    for (tile, first) in quad::transpose(q).into_iter().zip(firsts).take(tiles - t)
                    {
                        tile.store(&mut y[first + r * ow..]);
                    }
                }
            }
            continue;
        }
        for l in 0..n {
            let (img, oy, ox) = cursor.next_origin();
            let base = img * stride;
            if oy + M <= oh && ox + M <= ow {
                // The whole tile is in the plane: four rows of four, no checks per value.
                for (r, row) in out.iter().take(M).enumerate() {
                    let Some(dst) = y[base + (oy + r) * ow + ox..].first_chunk_mut::<M>() else {
                        continue;
                    };
                    for (d, v) in dst.iter_mut().zip(row) {
                        *d = v.0[l];
                    }
                }
                continue;
            }
            for (r, row) in out.iter().take(M).enumerate().take(oh - oy) {
                let dst = base + (oy + r) * ow + ox;
                for (s, v) in row.iter().take(M).enumerate().take(ow - ox) {
                    y[dst + s] = v.0[l];
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
// Indexes kept (hot loop): py < oh / 2 and px < ow / 2, inside the pooled plane (with whole
// tiles, a tile's 2x2 pooled block always is); a tile's windows lie in its 4x4 outputs (tiles
// start at multiples of 4).
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
    let whole = tl.whole_tiles();
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
        if whole {
            // Every tile's 2x2 pooled block lies in the plane: its two rows of two are written
            // whole, and the arg-maxes are computed lane by lane first (vectorised).
            let mut pooled = [0usize; LANES];
            let mut origin = [0u32; LANES];
            for (p, o) in pooled.iter_mut().zip(&mut origin).take(n) {
                let (img, oy, ox) = cursor.next_origin();
                *p = img * stride + (oy / 2) * pw + ox / 2;
                *o = (oy * ow + ox) as u32;
            }
            for (wy, row) in windows.iter().enumerate() {
                let from: [[u32; LANES]; 2] = std::array::from_fn(|wx| {
                    let at = &row[wx].1;
                    let first = (2 * wy * ow + 2 * wx) as u32;
                    std::array::from_fn(|l| {
                        origin[l] + first + (at[l] >> 1) * ow as u32 + (at[l] & 1)
                    })
                });
                for (l, &p) in pooled.iter().enumerate().take(n) {
                    let d = p + wy * pw;
                    y[d..d + 2].copy_from_slice(&[row[0].0[l], row[1].0[l]]);
                    arg[d..d + 2].copy_from_slice(&[from[0][l], from[1][l]]);
                }
            }
            continue;
        }
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
    if tl.whole_tiles() {
        // Four tiles at a time: row r of each one's gradients is four contiguous values, and
        // the transpose of the four rows is their values (r, 0..4).
        for t in (0..tiles).step_by(QUAD) {
            // Past the last tile, a lane reads the quad's first tile again (pad lanes, zeroed
            // afterwards).
            let firsts = quad_firsts(&mut cursor, t, tiles, stride, ow);
            for r in 0..M {
                let q = firsts.map(|f| Quad::load(&dy[f + r * ow..]));
                for (s, values) in quad::transpose(q).into_iter().enumerate() {
                    values.store(&mut dm[row_of(r, s) * tp + t..]);
                }
            }
        }
        zero_pad_lanes(M, tiles, tp, dm);
        gradient_transform_in_place(tiles, tp, dm);
        return;
    }
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
///
/// The mirror of [`gather_quads`]: the patches are added into [`Padded`] planes with no check
/// per value, four tiles at a time (each patch row's two 4x4 blocks transposed back into the
/// tiles' rows; a tile's second block lands exactly where its right neighbour's first one
/// does), and the padded planes are then added into `dx`, dropping what fell on the padding.
// Indexes kept (hot loop): as gather_quads's reads, inside the padded planes; the copied rows
// are clipped to both planes.
#[allow(clippy::indexing_slicing)]
fn input_gradient(tl: &Tiling, tiles: usize, dv: &[f32], dx: &mut [f32], stride: usize) {
    let tp = padded(tiles);
    let pad = Padded::new(tl, tiles);
    let mut plane = vec![0.0f32; pad.len()];
    let mut patch = Patch::default();
    let mut cursor = Cursor::new(tl);
    for t0 in (0..tiles).step_by(LANES) {
        load_lanes(&mut patch, dv, tp, t0);
        two_d!(&mut patch, b, 6, 6);
        for h in 0..LANES / QUAD {
            let t = t0 + h * QUAD;
            if t >= tiles {
                break;
            }
            let firsts = quad_firsts(&mut cursor, t, tiles, pad.per_image, pad.pw);
            for (r, row) in patch.iter().enumerate() {
                let q: [Quad; ALPHA] = std::array::from_fn(|s| Quad::load(&row[s].0[h * QUAD..]));
                let zero = Quad::default();
                let left = quad::transpose([q[0], q[1], q[2], q[3]]);
                let right = quad::transpose([q[4], q[5], zero, zero]);
                // Only the chunk's tiles: the lanes past them hold no gradient.
                for ((first, left), right) in
                    firsts.into_iter().zip(left).zip(right).take(tiles - t)
                {
                    let at = first + r * pad.pw;
                    (Quad::load(&plane[at..]) + left).store(&mut plane[at..]);
                    (Quad::load(&plane[at + QUAD..]) + right).store(&mut plane[at + QUAD..]);
                }
            }
        }
    }
    for (dst, src) in pad.rows(stride) {
        dx[dst..dst + pad.cols]
            .iter_mut()
            .zip(&plane[src..src + pad.cols])
            .for_each(|(d, v)| *d += v);
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

    // Partial sums per rayon task (not per chunk), added up at the end.
    let (du, db) = match (dx.as_mut(), inner) {
        (Some(d), false) => d
            .par_chunks_mut(split.per * in_len)
            .enumerate()
            .map(|(chunk, dxc)| (chunk, Some(dxc)))
            .fold(zero, work)
            .reduce(zero, sum),
        (Some(d), true) => d
            .chunks_mut(split.per * in_len)
            .enumerate()
            .map(|(chunk, dxc)| (chunk, Some(dxc)))
            .fold(zero(), work),
        (None, false) => (0..split.chunks)
            .into_par_iter()
            .map(|chunk| (chunk, None))
            .fold(zero, work)
            .reduce(zero, sum),
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
    fn the_quad_passes_agree_with_im2col_on_every_padding() {
        // Padding on either side, none, more than one; outputs whose sides end in partial
        // tiles (the scalar output passes) and whole ones (the quads).
        for (batch, c_out, hw, pad, relu) in [
            (2, 16, [16, 16], [1, 1, 1, 1], true),
            (1, 17, [13, 16], [0, 2, 2, 0], false),
            (3, 16, [16, 32], [2, 0, 0, 2], true),
            (2, 16, [6, 17], [0, 0, 0, 1], false),
            (2, 18, [8, 14], [1, 3, 1, 1], true),
            (1, 16, [32, 64], [1, 1, 1, 1], false),
            // Chunks of 1 or 2 tiles, and of 2 per image: quads past the chunk's last tile.
            (3, 16, [4, 4], [1, 1, 1, 1], true),
            (3, 17, [6, 10], [0, 0, 0, 0], false),
        ] {
            let g = geometry(batch, 16, c_out, hw, pad);
            check(&g, relu);
            check_pooled(&g, relu);
        }
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
