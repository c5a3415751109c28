//! Choosing the burn device a network trains on.

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::TrainError;

/// Where training and measurement run. Every variant exists in every build (so a config file
/// is portable); one whose backend is not compiled in is an error when the device is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceChoice {
    /// burn's Flex backend on the CPU (pure Rust, rayon threads, SIMD). Always available.
    #[default]
    Cpu,
    /// CUDA GPU with this index (feature `cuda`; building it needs internet once).
    Cuda(usize),
    /// The best GPU wgpu finds, on whatever graphics API the platform offers (feature `wgpu`).
    Wgpu,
    /// A GPU through Vulkan, SPIR-V kernels (feature `vulkan`).
    Vulkan,
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

    /// The backends compiled into this build.
    pub fn compiled() -> Vec<DeviceChoice> {
        #[allow(unused_mut)]
        let mut out = vec![DeviceChoice::Cpu];
        #[cfg(feature = "cuda")]
        out.push(DeviceChoice::Cuda(0));
        #[cfg(feature = "wgpu")]
        out.push(DeviceChoice::Wgpu);
        #[cfg(feature = "vulkan")]
        out.push(DeviceChoice::Vulkan);
        out
    }

    /// The burn device (without autodiff), or an error naming the missing feature.
    pub fn device(&self) -> Result<Device, TrainError> {
        #[allow(unused_variables)]
        let missing = |feature: &str| TrainError::BackendUnavailable {
            backend: self.backend_name(),
            reason: format!("this build lacks the `{feature}` feature of lemo-train"),
        };
        match *self {
            DeviceChoice::Cpu => Ok(Device::flex()),
            #[cfg(feature = "cuda")]
            DeviceChoice::Cuda(i) => Ok(Device::cuda(i)),
            #[cfg(not(feature = "cuda"))]
            DeviceChoice::Cuda(_) => Err(missing("cuda")),
            #[cfg(feature = "wgpu")]
            DeviceChoice::Wgpu => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
            #[cfg(not(feature = "wgpu"))]
            DeviceChoice::Wgpu => Err(missing("wgpu")),
            #[cfg(feature = "vulkan")]
            DeviceChoice::Vulkan => Ok(Device::vulkan(burn::tensor::DeviceKind::DefaultDevice)),
            #[cfg(not(feature = "vulkan"))]
            DeviceChoice::Vulkan => Err(missing("vulkan")),
        }
    }
}
