//! LeMo-NADe energy meters (RAPL, NVML, estimates) and the paper's kWh-PUE and CO2 accounting.

mod meter;

pub use meter::{
    Component, ComponentEnergy, EnergyMeter, EnergyReport, EnergyWindow, NoMeter, Provenance,
};

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
}
