//! LeMo-NADe energy meters (RAPL, NVML, estimates) and the paper's kWh-PUE and CO2 accounting.
//!
//! A [`EnergyMeter`] opens a measurement window; closing it yields an [`EnergyReport`] with the
//! energy of each part of the machine, each figure labelled with its source and whether it was
//! [`Provenance::Measured`] or [`Provenance::Estimated`]. [`CompositeMeter::detect`] picks the best
//! source available per component (RAPL, NVML, else an estimate) and says what it chose and why.
//! [`Accounting`] turns a report into the paper's kWh-PUE (equation 2) and CO2e (equation 3).
//!
//! ```
//! use lemo_energy::{Accounting, CompositeMeter, EnergyMeter, MeterConfig};
//!
//! # fn main() -> Result<(), lemo_energy::EnergyError> {
//! let meter = CompositeMeter::detect(&MeterConfig::default())?;
//! let (sum, report) = meter.measure(|| (0..1_000_000u64).sum::<u64>())?;
//! let account = Accounting::default().account(&report);
//! println!("{sum}: {:.3e} kWh-PUE, {:.3e} g CO2e", account.kwh_pue, account.co2e_grams);
//! # Ok(())
//! # }
//! ```

#![warn(clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod accounting;
mod composite;
mod estimate;
mod integrate;
#[cfg(feature = "nvml")]
mod nvml;
mod rapl;
mod sampler;

pub use accounting::{
    Accounting, EnergyAccount, MIN_INFERENCE_WINDOW, PerImageEnergy, PowerDraw, measure_inference,
    per_image,
};
pub use composite::{CompositeMeter, MeterConfig, Part, SourceChoice};
pub use estimate::{
    DEFAULT_RAM_WATTS_PER_GB, DEFAULT_WATTS_PER_THREAD, EstimateConfig, EstimateMeter,
    EstimateScope,
};
pub use integrate::PowerIntegrator;
/// The meter seam lives in `lemo-core` (so a third-party meter needs no sysinfo or NVML); it is
/// re-exported here under its old paths.
pub use lemo_core::energy::{
    Component, ComponentEnergy, EnergyError, EnergyMeter, EnergyReport, EnergyWindow, NoMeter,
    Provenance,
};
#[cfg(feature = "nvml")]
pub use nvml::{GpuEnergyMethod, NvmlGpu, NvmlMeter};
pub use rapl::{RaplConfig, RaplMeter, RaplZone, WrappingCounter};
