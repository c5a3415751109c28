//! One-line timing of lemo-train's convolution kernels alone on the ref-cnn's four 3x3 layers
//! with 64 or more channels (64->64 at 32x32 with its 2x2 max pooling, 64->128 and 128->128 at
//! 16x16, 128->256 at 8x8: the Winograd path on a multi-core CPU), without the rest of the
//! network, so a change to a kernel is measured without the noise of the whole step:
//!
//! ```text
//! cargo run --release --example bench_conv
//! bench_conv infer256_ms=<forward, batch 256, ReLU fused> infer1_ms=<the same at batch 1>
//!     train128_forward_ms=<batch 128> train128_backward_ms=<all three gradients>
//! ```
//!
//! Each figure is the sum over the four layers of the mean milliseconds of one call.
//! `LEMO_BENCH_REPEATS` (default 6) sets the calls per layer (64 times as many at batch 1);
//! `LEMO_WINOGRAD=off` measures the im2col path instead. Compare builds in one run, interleaved (docs/performance.md).

use std::time::Instant;

use lemo_nade::train::kernels::conv::{self, ConvGeometry};

/// The ref-cnn's 3x3 layers on 64 or more channels: input and output channels, map side, and
/// whether a 2x2 max pooling follows the convolution.
const LAYERS: [(usize, usize, usize, bool); 4] = [
    (64, 64, 32, true),
    (64, 128, 16, false),
    (128, 128, 16, false),
    (128, 256, 8, false),
];

/// A 3x3, stride-1 convolution padded by one on every side.
fn same_3x3(batch: usize, c_in: usize, c_out: usize, side: usize) -> ConvGeometry {
    ConvGeometry {
        batch,
        c_in,
        h: side,
        w: side,
        c_out,
        kernel: [3, 3],
        stride: [1, 1],
        pad_begin: [1, 1],
        pad_end: [1, 1],
        dilation: [1, 1],
    }
}

/// `n` deterministic values in `[-scale / 2, scale / 2)`.
fn values(n: usize, step: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * step) % 1000) as f32 / 1000.0 * scale - scale / 2.0)
        .collect()
}

/// Mean seconds of `f` over `repeats` calls.
fn mean_seconds(repeats: usize, mut f: impl FnMut() -> f32) -> f64 {
    let start = Instant::now();
    let mut keep = 0.0;
    for _ in 0..repeats {
        keep += f();
    }
    std::hint::black_box(keep);
    start.elapsed().as_secs_f64() / repeats.max(1) as f64
}

fn main() {
    let repeats: usize = std::env::var("LEMO_BENCH_REPEATS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    // Batch 256 and batch 1 inference (ReLU fused), batch 128 training (forward and backward).
    let (mut infer256, mut infer1, mut forward, mut backward) = (0.0, 0.0, 0.0, 0.0);
    for (c_in, c_out, side, pool) in LAYERS {
        let weight = values(c_out * c_in * 9, 104_729, 0.1);
        let bias = vec![0.01f32; c_out];
        for batch in [256, 1, 128] {
            let g = same_3x3(batch, c_in, c_out, side);
            let x = values(batch * c_in * side * side, 7_919, 1.0);
            // Inference fuses the ReLU into the convolution; training runs it in the batch norm.
            let training = batch == 128;
            let calls = if batch == 1 { repeats * 64 } else { repeats };
            let seconds = mean_seconds(calls, || {
                if pool {
                    conv::forward_max_pool(&g, &x, &weight, Some(&bias), !training).output[0]
                } else {
                    conv::forward(&g, &x, &weight, Some(&bias), !training)[0]
                }
            });
            match batch {
                256 => infer256 += seconds,
                1 => infer1 += seconds,
                _ => {
                    forward += seconds;
                    let dy = values(batch * c_out * side * side, 31, 1.0);
                    backward += mean_seconds(repeats, || {
                        conv::backward(&g, &x, &weight, &dy, true).weight[0]
                    });
                }
            }
        }
    }
    println!(
        "bench_conv infer256_ms={:.1} infer1_ms={:.3} train128_forward_ms={:.1} \
         train128_backward_ms={:.1}",
        infer256 * 1e3,
        infer1 * 1e3,
        forward * 1e3,
        backward * 1e3
    );
}
