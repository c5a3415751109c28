//! One-line throughput of the reference CNN (ref-cnn, 3x32x32, 100 classes) on the compiled
//! backend, comparable with the PyTorch and Keras figures of docs/performance.md:
//!
//! ```text
//! cargo run --release --example bench_ref_cnn
//! ref-cnn backend=flex macs=<per image> train=<img/s> infer256=<img/s> infer1=<img/s>
//! ```
//!
//! Training: Adam 1e-3, batch 128, cross-entropy, after 2 warm-up steps. Inference: the
//! deployment form (batch norm folded, dropout removed) at batch 256 and 1, device
//! synchronised after each run. `LEMO_BENCH_SECONDS` (default 20) bounds each measurement;
//! `LEMO_BENCH_DEVICE=wgpu|vulkan|cuda` picks a GPU backend compiled in by feature;
//! `LEMO_BENCH_NETWORK=starter` measures the offline architect's CIFAR-10 starter (3x32x32, 10
//! classes) instead, the network the CIFAR-10 benchmark trains (docs/results.md), and
//! `LEMO_BENCH_NETWORK=FILE.json` a network file for that task (e.g.
//! `examples/networks/cifar-amk2.json`); the line then starts with the file's name.

mod common;

use std::path::Path;
use std::time::Instant;

use lemo_nade::arch::{Limits, Task, ValidatedGraph, ref_cnn, starter};
use lemo_nade::train::burn::optim::{AdamConfig, GradientsParams};
use lemo_nade::train::burn::tensor::{Device, Distribution, Int, Tensor};
use lemo_nade::train::trainer::cross_entropy;
use lemo_nade::train::{DeviceChoice, GraphModel, TrainError};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let choice: DeviceChoice = match std::env::var("LEMO_BENCH_DEVICE") {
        Ok(name) => name
            .parse()
            .map_err(|e: String| format!("LEMO_BENCH_DEVICE: {e}"))?,
        Err(_) => DeviceChoice::Cpu,
    };
    let budget: f64 = std::env::var("LEMO_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20.0);
    let device = lemo_nade::train::BurnDevice::device(&choice)?;
    device.seed(0);
    let ad = device.clone().autodiff();
    let name = std::env::var("LEMO_BENCH_NETWORK").unwrap_or_else(|_| "ref-cnn".into());
    let task = |classes| Task {
        input: [3, 32, 32],
        classes,
        limits: Limits::default(),
    };
    let (graph, task) = match name.as_str() {
        "ref-cnn" => (ref_cnn(100), task(100)),
        "starter" => (starter(&task(10)), task(10)),
        file if file.ends_with(".json") => (common::read_network(Path::new(file))?, task(10)),
        other => {
            return Err(format!(
                "LEMO_BENCH_NETWORK: `{other}` is not ref-cnn, starter or a network file (.json)"
            )
            .into());
        }
    };
    let network = ValidatedGraph::new(graph, &task)?;
    let macs = network.analysis().macs;
    let mut model = GraphModel::new(&network, &ad)?;
    let sync = |d: &Device| d.sync().map_err(|e| TrainError::Device(format!("{e:?}")));

    // Training throughput, batch 128.
    let batch = 128;
    let x = Tensor::<4>::random([batch, 3, 32, 32], Distribution::Normal(0.0, 1.0), &ad);
    let y = Tensor::<1, Int>::random(
        [batch],
        Distribution::Uniform(0.0, task.classes as f64),
        &ad,
    );
    let mut optim = AdamConfig::new().init();
    let mut step = |model: GraphModel| -> Result<GraphModel, TrainError> {
        let loss = cross_entropy(model.forward(x.clone())?, y.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let model = optim.step(1e-3, model, grads);
        sync(&device)?;
        Ok(model)
    };
    for _ in 0..2 {
        model = step(model)?;
    }
    let (start, mut steps) = (Instant::now(), 0usize);
    while steps < 3 || (start.elapsed().as_secs_f64() < budget && steps < 50) {
        model = step(model)?;
        steps += 1;
    }
    let train = (steps * batch) as f64 / start.elapsed().as_secs_f64();

    // Inference of the deployment form.
    let deployed = model.deployment_form()?;
    let infer = |batch: usize, warmup: usize, max_runs: usize| -> Result<f64, TrainError> {
        let x = Tensor::<4>::random([batch, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
        for _ in 0..warmup {
            let _ = deployed.forward(x.clone())?;
            sync(&device)?;
        }
        let (start, mut runs) = (Instant::now(), 0usize);
        while runs < 3 || (start.elapsed().as_secs_f64() < budget / 2.0 && runs < max_runs) {
            let _ = deployed.forward(x.clone())?;
            sync(&device)?;
            runs += 1;
        }
        Ok((runs * batch) as f64 / start.elapsed().as_secs_f64())
    };
    let infer256 = infer(256, 1, 40)?;
    let infer1 = infer(1, 10, 2000)?;
    println!(
        "{name} backend={} macs={macs} train={train:.0} infer256={infer256:.0} infer1={infer1:.0}",
        choice.backend_name()
    );
    Ok(())
}
