//! The energy seam: the meter trait, its window, what a window reports, and its error.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Errors of energy measurement.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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

/// A part of the machine whose energy is reported separately.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Component {
    /// A CPU package (socket), by index.
    CpuPackage(u32),
    /// The DRAM attached to a package, measured (RAPL dram zone).
    Dram(u32),
    /// Main memory, estimated from installed size.
    Ram,
    /// A GPU, by index.
    Gpu(u32),
    /// The whole platform (RAPL psys), only on request.
    Platform,
}

/// Whether a figure was read from a hardware counter or estimated from a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provenance {
    /// Read from an energy counter or integrated from measured power.
    Measured,
    /// Estimated from a power model (TDP times utilisation, W per GB, ...).
    Estimated,
}

/// Energy of one component over a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentEnergy {
    /// Which part of the machine.
    pub component: Component,
    /// Energy in joules.
    pub joules: f64,
    /// Where the figure comes from, e.g. `"rapl:/sys/class/powercap/intel-rapl:0"`,
    /// `"nvml:energy-counter"`, `"estimate:tdp 65 W x utilisation"`.
    pub source: String,
    /// Measured or estimated.
    pub provenance: Provenance,
}

/// What one measurement window reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct EnergyReport {
    /// Wall-clock duration of the window.
    pub wall: Duration,
    /// Per-component energy.
    pub components: Vec<ComponentEnergy>,
}

impl EnergyReport {
    /// Total energy over all components, in joules.
    pub fn total_joules(&self) -> f64 {
        self.components.iter().map(|c| c.joules).sum()
    }

    /// Total energy in kWh (1 kWh = 3.6e6 J), before any PUE factor.
    pub fn total_kwh(&self) -> f64 {
        self.total_joules() / 3.6e6
    }

    /// Whether any figure in the report is an estimate.
    pub fn has_estimates(&self) -> bool {
        self.components
            .iter()
            .any(|c| c.provenance == Provenance::Estimated)
    }

    /// Adds another window's energy to this one (two trainings of one candidate): the wall
    /// times add up, and so do the joules of each component with the same source and
    /// provenance; a component only `other` has is appended.
    pub fn absorb(&mut self, other: &EnergyReport) {
        self.wall += other.wall;
        for c in &other.components {
            match self.components.iter_mut().find(|m| {
                m.component == c.component && m.source == c.source && m.provenance == c.provenance
            }) {
                Some(m) => m.joules += c.joules,
                None => self.components.push(c.clone()),
            }
        }
    }
}

/// An open measurement window; closing it yields the energy used while it was open.
pub trait EnergyWindow: Send {
    /// Closes the window and reports the energy used since it was opened.
    fn finish(self: Box<Self>) -> Result<EnergyReport, EnergyError>;
}

/// A source of energy measurements. Implementations must be `Send` so a meter can be moved to
/// the thread that trains.
pub trait EnergyMeter: Send + Sync {
    /// A short human-readable name, e.g. `"rapl"`, `"composite(rapl+nvml)"`.
    fn name(&self) -> String;

    /// Opens a measurement window now.
    fn start(&self) -> Result<Box<dyn EnergyWindow>, EnergyError>;

    /// Measures the energy used by running `f`.
    fn measure<T>(&self, f: impl FnOnce() -> T) -> Result<(T, EnergyReport), EnergyError>
    where
        Self: Sized,
    {
        let window = self.start()?;
        let out = f();
        Ok((out, window.finish()?))
    }
}

/// A meter that measures nothing: zero joules, wall time only. Useful in tests and where no
/// energy figure is wanted.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMeter;

struct NoWindow(std::time::Instant);

impl EnergyWindow for NoWindow {
    fn finish(self: Box<Self>) -> Result<EnergyReport, EnergyError> {
        Ok(EnergyReport {
            wall: self.0.elapsed(),
            components: Vec::new(),
        })
    }
}

impl EnergyMeter for NoMeter {
    fn name(&self) -> String {
        "none".to_string()
    }

    fn start(&self) -> Result<Box<dyn EnergyWindow>, EnergyError> {
        Ok(Box::new(NoWindow(std::time::Instant::now())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(component: Component, joules: f64, source: &str) -> ComponentEnergy {
        ComponentEnergy {
            component,
            joules,
            source: source.into(),
            provenance: Provenance::Measured,
        }
    }

    #[test]
    fn absorb_adds_matching_components_and_appends_the_rest() {
        let mut a = EnergyReport {
            wall: Duration::from_secs(2),
            components: vec![part(Component::CpuPackage(0), 10.0, "rapl")],
        };
        let b = EnergyReport {
            wall: Duration::from_secs(3),
            components: vec![
                part(Component::CpuPackage(0), 5.0, "rapl"),
                part(Component::Gpu(0), 7.0, "nvml"),
            ],
        };
        a.absorb(&b);
        assert_eq!(a.wall, Duration::from_secs(5));
        assert_eq!(a.components.len(), 2);
        assert_eq!(a.total_joules(), 22.0);
        assert_eq!(a.components[0].joules, 15.0);
    }
}
