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

mod accounting;
mod composite;
mod estimate;
mod integrate;
mod meter;
#[cfg(feature = "nvml")]
mod nvml;
mod rapl;
mod sampler;

use std::time::Duration;

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
pub use meter::{
    Component, ComponentEnergy, EnergyMeter, EnergyReport, EnergyWindow, NoMeter, Provenance,
};
#[cfg(feature = "nvml")]
pub use nvml::{GpuEnergyMethod, NvmlGpu, NvmlMeter};
pub use rapl::{RaplConfig, RaplMeter, RaplZone, WrappingCounter};

/// Errors of energy measurement.
#[derive(Debug, thiserror::Error)]
pub enum EnergyError {
    /// A counter or file could not be read.
    #[error("cannot read {path}: {reason}")]
    Unreadable {
        /// The file or source.
        path: String,
        /// Why.
        reason: String,
    },
    /// The source does not exist on this machine.
    #[error("{source_name} is not available: {reason}")]
    NotAvailable {
        /// Name of the source (rapl, nvml, ...).
        source_name: String,
        /// Why.
        reason: String,
    },
    /// An inference window was too short to give a meaningful energy per image.
    #[error("window of {wall:?} is shorter than the {min:?} needed for a per-image figure")]
    WindowTooShort {
        /// How long the window was.
        wall: Duration,
        /// The minimum.
        min: Duration,
    },
    /// A per-image figure was asked for a window that processed no image.
    #[error("no image was processed in the window")]
    NoImages,
    /// A configuration value is out of range.
    #[error("invalid energy configuration: {0}")]
    InvalidConfig(String),
    /// The background sampling thread could not start or failed.
    #[error("energy sampling thread: {0}")]
    Sampler(String),
}
