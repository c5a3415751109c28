//! Choosing the burn device a network trains on.

use burn::tensor::Device;

use crate::TrainError;
pub use lemo_core::train::DeviceChoice;

/// The backends compiled into this build of lemo-train.
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

/// The device a run uses when nothing says otherwise: the first GPU backend compiled in (CUDA,
/// then Vulkan, then wgpu), else the CPU.
pub fn preferred() -> DeviceChoice {
    let compiled = compiled();
    [
        DeviceChoice::Cuda(0),
        DeviceChoice::Vulkan,
        DeviceChoice::Wgpu,
    ]
    .into_iter()
    .find(|d| compiled.contains(d))
    .unwrap_or(DeviceChoice::Cpu)
}

/// The burn device of a [`DeviceChoice`] (the choice itself is a plain `lemo-core` type).
pub trait BurnDevice {
    /// The burn device (without autodiff), or an error naming the missing feature.
    fn device(&self) -> Result<Device, TrainError>;
}

impl BurnDevice for DeviceChoice {
    fn device(&self) -> Result<Device, TrainError> {
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
