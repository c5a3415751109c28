//! Criterion benches of the training core on the ref-cnn (3x32x32 in, 100 classes): one Adam
//! train step at batch 128, and inference of the deployment form at batch 1 and 256, on the
//! backend this build compiles (Flex on the CPU by default; `--features wgpu` / `cuda` add
//! those, selected with `LEMO_BENCH_DEVICE=wgpu|vulkan|cuda`).
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Distribution, Int, Tensor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lemo_arch::{Limits, Task, ValidatedGraph, ref_cnn};
use lemo_train::trainer::cross_entropy;
use lemo_train::{DeviceChoice, GraphModel};

fn device() -> Device {
    let choice: DeviceChoice = match std::env::var("LEMO_BENCH_DEVICE") {
        Ok(name) => name
            .parse()
            .unwrap_or_else(|e: String| panic!("LEMO_BENCH_DEVICE: {e}")),
        Err(_) => DeviceChoice::Cpu,
    };
    match lemo_train::BurnDevice::device(&choice) {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    }
}

fn model(device: &Device) -> GraphModel {
    let task = Task {
        input: [3, 32, 32],
        classes: 100,
        limits: Limits::default(),
    };
    let network = ValidatedGraph::new(ref_cnn(100), &task).expect("ref-cnn validates");
    GraphModel::new(&network, device).expect("builds")
}

fn bench(c: &mut Criterion) {
    let device = device();
    let ad = device.clone().autodiff();
    device.seed(0);

    let mut group = c.benchmark_group("ref-cnn");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.warm_up_time(Duration::from_secs(3));

    let batch = 128;
    let x = Tensor::<4>::random([batch, 3, 32, 32], Distribution::Normal(0.0, 1.0), &ad);
    let y = Tensor::<1, Int>::random([batch], Distribution::Uniform(0.0, 100.0), &ad);
    let mut m = Some(model(&ad));
    let mut optim = AdamConfig::new().init();
    group.throughput(Throughput::Elements(batch as u64));
    group.bench_function("train_step_b128", |b| {
        b.iter(|| {
            let Some(model) = m.take() else { return };
            let loss = cross_entropy(model.forward(x.clone()).expect("forward"), y.clone());
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let model = optim.step(1e-3, model, grads);
            device.sync().expect("sync");
            m = Some(model);
        })
    });

    let deployed = m
        .as_ref()
        .expect("model")
        .deployment_form()
        .expect("deployment form");
    for batch in [1usize, 256] {
        let x = Tensor::<4>::random([batch, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(format!("infer_b{batch}"), |b| {
            b.iter(|| {
                let out = deployed.forward(black_box(x.clone())).expect("forward");
                device.sync().expect("sync");
                out
            })
        });
    }
    group.finish();
    black_box(deployed.num_params());
}

criterion_group!(benches, bench);
criterion_main!(benches);
