//! The training seam: the [`Trainer`] trait, what it is told ([`TrainConfig`]) and what it
//! reports ([`Evaluation`], progress to a [`TrainObserver`]).

use std::path::Path;

use lemo_arch::ValidatedGraph;
use serde::{Deserialize, Serialize};

use crate::data::Splits;
use crate::energy::EnergyMeter;

pub mod config;
mod error;
pub mod evaluation;
pub mod observer;

pub use config::{
    AdamSettings, Budget, CurveProxy, Decay, EarlyStopping, InferenceBench, OptimizerKind, Plateau,
    Schedule, SgdSettings, TrainConfig, Tta,
};
pub use error::TrainError;
pub use evaluation::{CurvePrediction, EpochStats, Evaluation, InferenceReport, Status};
pub use observer::{NoObserver, TrainObserver};

/// Where training and measurement run. Every variant exists in every build (so a config file
/// is portable); one whose backend is not compiled in is an error when the device is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceChoice {
    /// burn's Flex backend on the CPU (pure Rust, rayon threads, SIMD). Always available.
    #[default]
    Cpu,
    /// CUDA GPU with this index (`lemo-train` feature `cuda`; building it needs internet once).
    Cuda(usize),
    /// The best GPU wgpu finds, on whatever graphics API the platform offers (`lemo-train` feature `wgpu`).
    Wgpu,
    /// A GPU through Vulkan, SPIR-V kernels (`lemo-train` feature `vulkan`).
    Vulkan,
}

impl std::str::FromStr for DeviceChoice {
    type Err = String;

    /// Reads `cpu` (or `flex`), `cuda` (GPU 0) or `cuda:N`, `wgpu`, `vulkan`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" | "flex" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            "wgpu" => Ok(DeviceChoice::Wgpu),
            "vulkan" => Ok(DeviceChoice::Vulkan),
            other => other
                .strip_prefix("cuda:")
                .and_then(|i| i.parse().ok())
                .map(DeviceChoice::Cuda)
                .ok_or_else(|| {
                    format!("unknown device `{s}`; the devices are cpu, cuda, cuda:N, wgpu, vulkan")
                }),
        }
    }
}

impl DeviceChoice {
    /// A short name for reports: `flex`, `cuda:0`, `wgpu`, `vulkan`.
    pub fn backend_name(&self) -> String {
        match self {
            DeviceChoice::Cpu => "flex".into(),
            DeviceChoice::Cuda(i) => format!("cuda:{i}"),
            DeviceChoice::Wgpu => "wgpu".into(),
            DeviceChoice::Vulkan => "vulkan".into(),
        }
    }
}

/// Trains a network described by an IR graph and measures it. Implement this to plug another
/// training engine into the discovery loop.
///
/// `Send`, so the loop (or an executor) can hand a trainer to the thread that trains.
///
/// ```
/// use lemo_core::{EnergyMeter, Evaluation, Splits, TrainConfig, TrainError, TrainObserver, Trainer};
/// use lemo_arch::ValidatedGraph;
///
/// /// Scores a network by its size alone, without training (a stand-in for a real engine).
/// struct BySize;
///
/// impl Trainer for BySize {
///     fn name(&self) -> String {
///         "by-size".into()
///     }
///     fn train(
///         &mut self,
///         network: &ValidatedGraph,
///         data: &Splits,
///         _config: &TrainConfig,
///         _meter: &dyn EnergyMeter,
///         _observer: &mut dyn TrainObserver,
///     ) -> Result<Evaluation, TrainError> {
///         let mut ev = Evaluation::default();
///         ev.params = network.params();
///         ev.val_accuracy = 1.0 - 1.0 / (1.0 + network.params() as f64 / 1e4);
///         ev.train_images = data.train.len();
///         Ok(ev)
///     }
/// }
/// ```
pub trait Trainer: Send {
    /// A short name for reports (`"burn-flex"`, ...).
    fn name(&self) -> String;

    /// Trains `network` (validated for its task) on `data` as `config` says, measuring energy with `meter` and
    /// reporting progress to `observer`. A network that diverges is an `Ok` evaluation with
    /// [`Status::Diverged`]; errors are for invalid graphs, data or configuration and for
    /// failing devices.
    fn train(
        &mut self,
        network: &ValidatedGraph,
        data: &Splits,
        config: &TrainConfig,
        meter: &dyn EnergyMeter,
        observer: &mut dyn TrainObserver,
    ) -> Result<Evaluation, TrainError>;

    /// Saves the network trained last (weights beside its graph) into `dir`, if this trainer
    /// can; `Ok(false)` means it cannot (the default).
    fn save_last(&self, dir: &Path) -> Result<bool, TrainError> {
        let _ = dir;
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::DeviceChoice;

    #[test]
    fn device_names_parse_and_unknown_ones_list_the_choices() {
        for (name, device) in [
            ("cpu", DeviceChoice::Cpu),
            ("flex", DeviceChoice::Cpu),
            ("cuda", DeviceChoice::Cuda(0)),
            ("CUDA:2", DeviceChoice::Cuda(2)),
            ("wgpu", DeviceChoice::Wgpu),
            ("vulkan", DeviceChoice::Vulkan),
        ] {
            assert_eq!(name.parse::<DeviceChoice>(), Ok(device), "{name}");
        }
        for bad in ["gpu", "cuda:x", ""] {
            let err = bad.parse::<DeviceChoice>().expect_err(bad);
            assert!(err.contains("cpu, cuda, cuda:N, wgpu, vulkan"), "{err}");
        }
    }
}
