//! NVIDIA GPU energy through NVML (feature `nvml`; the driver library is loaded at run time).

use std::sync::Arc;
use std::time::{Duration, Instant};

use nvml_wrapper::Nvml;
use nvml_wrapper::error::NvmlError;

use crate::EnergyError;
use crate::integrate::PowerIntegrator;
use crate::sampler::Sampler;
use crate::{Component, ComponentEnergy, EnergyMeter, EnergyReport, EnergyWindow, Provenance};

/// How often power is read on GPUs without an energy counter (at most 100 ms, as asked).
const POWER_SAMPLE_INTERVAL: Duration = Duration::from_millis(50);

/// How the energy of a GPU is obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuEnergyMethod {
    /// The total-energy counter (Volta and newer), read at both ends of the window.
    EnergyCounter,
    /// Power readings integrated over the window every 50 ms (older GPUs).
    PowerIntegration,
}

/// A GPU found by NVML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvmlGpu {
    /// NVML device index.
    pub index: u32,
    /// Device name, e.g. `NVIDIA H200`.
    pub name: String,
    /// How its energy is obtained.
    pub method: GpuEnergyMethod,
}

impl NvmlGpu {
    fn source(&self) -> String {
        match self.method {
            GpuEnergyMethod::EnergyCounter => {
                format!("nvml:energy-counter (gpu {}: {})", self.index, self.name)
            }
            GpuEnergyMethod::PowerIntegration => format!(
                "nvml:power every {} ms, trapezoid (gpu {}: {})",
                POWER_SAMPLE_INTERVAL.as_millis(),
                self.index,
                self.name
            ),
        }
    }
}

/// Measures the energy of every NVIDIA GPU through NVML, labelled [`Provenance::Measured`].
pub struct NvmlMeter {
    nvml: Arc<Nvml>,
    gpus: Vec<NvmlGpu>,
}

impl std::fmt::Debug for NvmlMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvmlMeter")
            .field("gpus", &self.gpus)
            .finish()
    }
}

fn not_available(reason: String) -> EnergyError {
    EnergyError::NotAvailable {
        source_name: "nvml".to_string(),
        reason,
    }
}

fn nvml_error(what: &str, e: &NvmlError) -> EnergyError {
    EnergyError::Unreadable {
        path: format!("nvml {what}"),
        reason: e.to_string(),
    }
}

impl NvmlMeter {
    /// Loads the NVIDIA driver library and finds the GPUs whose energy can be read.
    ///
    /// # Errors
    /// [`EnergyError::NotAvailable`] when the driver library is missing or not loaded, or when
    /// no GPU gives an energy counter or a power reading.
    pub fn detect() -> Result<Self, EnergyError> {
        let nvml = Nvml::init().map_err(|e| {
            not_available(format!(
                "cannot initialise NVML ({e}); is the NVIDIA driver (libnvidia-ml.so.1) installed?"
            ))
        })?;
        let count = nvml
            .device_count()
            .map_err(|e| not_available(format!("cannot count GPUs: {e}")))?;
        let mut gpus = Vec::new();
        for index in 0..count {
            let Ok(device) = nvml.device_by_index(index) else {
                continue;
            };
            let name = device.name().unwrap_or_else(|_| "unknown GPU".to_string());
            let method = if device.total_energy_consumption().is_ok() {
                GpuEnergyMethod::EnergyCounter
            } else if device.power_usage().is_ok() {
                GpuEnergyMethod::PowerIntegration
            } else {
                continue;
            };
            gpus.push(NvmlGpu {
                index,
                name,
                method,
            });
        }
        if gpus.is_empty() {
            return Err(not_available(format!(
                "{count} GPU(s) found, none reports energy or power"
            )));
        }
        Ok(Self {
            nvml: Arc::new(nvml),
            gpus,
        })
    }

    /// The GPUs this meter reads.
    pub fn gpus(&self) -> &[NvmlGpu] {
        &self.gpus
    }
}

/// Millijoules on the energy counter of GPU `index`.
fn read_counter_mj(nvml: &Nvml, index: u32) -> Result<u64, EnergyError> {
    let device = nvml
        .device_by_index(index)
        .map_err(|e| nvml_error(&format!("gpu {index}"), &e))?;
    device
        .total_energy_consumption()
        .map_err(|e| nvml_error(&format!("gpu {index} energy counter"), &e))
}

/// Watts drawn now by GPU `index`.
fn read_watts(nvml: &Nvml, index: u32) -> Result<f64, EnergyError> {
    let device = nvml
        .device_by_index(index)
        .map_err(|e| nvml_error(&format!("gpu {index}"), &e))?;
    device
        .power_usage()
        .map(|mw| f64::from(mw) / 1e3)
        .map_err(|e| nvml_error(&format!("gpu {index} power"), &e))
}

struct PowerState {
    nvml: Arc<Nvml>,
    origin: Instant,
    /// (gpu index, integrator) of the GPUs without energy counter.
    gpus: Vec<(u32, PowerIntegrator)>,
    error: Option<EnergyError>,
}

impl PowerState {
    fn sample(&mut self) {
        for (index, integrator) in &mut self.gpus {
            match read_watts(&self.nvml, *index) {
                Ok(w) => integrator.push(self.origin.elapsed(), w),
                Err(e) => {
                    self.error.get_or_insert(e);
                }
            }
        }
    }
}

struct NvmlWindow {
    nvml: Arc<Nvml>,
    gpus: Vec<NvmlGpu>,
    started: Instant,
    counters_at_start: Vec<(u32, u64)>,
    power: Option<Sampler<PowerState>>,
}

impl EnergyWindow for NvmlWindow {
    fn finish(self: Box<Self>) -> Result<EnergyReport, EnergyError> {
        let mut joules_of = std::collections::HashMap::new();
        for (index, start) in &self.counters_at_start {
            let end = read_counter_mj(&self.nvml, *index)?;
            joules_of.insert(*index, end.saturating_sub(*start) as f64 / 1e3);
        }
        if let Some(sampler) = self.power {
            let mut state = sampler.stop()?;
            state.sample();
            if let Some(e) = state.error {
                return Err(e);
            }
            for (index, integrator) in &state.gpus {
                joules_of.insert(*index, integrator.joules());
            }
        }
        let wall = self.started.elapsed();
        let components = self
            .gpus
            .iter()
            .map(|gpu| ComponentEnergy {
                component: Component::Gpu(gpu.index),
                joules: joules_of.get(&gpu.index).copied().unwrap_or(0.0),
                source: gpu.source(),
                provenance: Provenance::Measured,
            })
            .collect();
        Ok(EnergyReport { wall, components })
    }
}

impl EnergyMeter for NvmlMeter {
    fn name(&self) -> String {
        "nvml".to_string()
    }

    fn start(&self) -> Result<Box<dyn EnergyWindow>, EnergyError> {
        let started = Instant::now();
        let mut counters_at_start = Vec::new();
        let mut powered = Vec::new();
        for gpu in &self.gpus {
            match gpu.method {
                GpuEnergyMethod::EnergyCounter => {
                    counters_at_start.push((gpu.index, read_counter_mj(&self.nvml, gpu.index)?));
                }
                GpuEnergyMethod::PowerIntegration => {
                    powered.push((gpu.index, PowerIntegrator::new()))
                }
            }
        }
        let power = if powered.is_empty() {
            None
        } else {
            let mut state = PowerState {
                nvml: Arc::clone(&self.nvml),
                origin: started,
                gpus: powered,
                error: None,
            };
            state.sample();
            Some(Sampler::spawn(
                POWER_SAMPLE_INTERVAL,
                state,
                PowerState::sample,
            )?)
        };
        Ok(Box::new(NvmlWindow {
            nvml: Arc::clone(&self.nvml),
            gpus: self.gpus.clone(),
            started,
            counters_at_start,
            power,
        }))
    }
}
