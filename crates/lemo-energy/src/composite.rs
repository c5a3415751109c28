//! A meter that picks the best available source for each part of the machine.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::EnergyError;
use crate::estimate::{EstimateConfig, EstimateMeter};
use crate::rapl::{RaplConfig, RaplMeter};
use crate::{EnergyMeter, EnergyReport, EnergyWindow, Provenance};

/// Which sources [`CompositeMeter::detect`] may use, and their settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MeterConfig {
    /// Try RAPL counters for CPU packages and DRAM.
    pub use_rapl: bool,
    /// Try NVML for GPUs (only when built with the `nvml` feature).
    pub use_nvml: bool,
    /// Where and how to read RAPL.
    pub rapl: RaplConfig,
    /// The estimate model used where nothing is measured.
    pub estimate: EstimateConfig,
}

impl Default for MeterConfig {
    fn default() -> Self {
        Self {
            use_rapl: true,
            use_nvml: true,
            rapl: RaplConfig::default(),
            estimate: EstimateConfig::default(),
        }
    }
}

impl MeterConfig {
    /// Estimates only: reproducible figures that do not depend on counters being readable.
    pub fn estimate_only(estimate: EstimateConfig) -> Self {
        Self {
            use_rapl: false,
            use_nvml: false,
            rapl: RaplConfig::default(),
            estimate,
        }
    }
}

/// A part of the machine a source is chosen for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    /// CPU packages.
    Cpu,
    /// Main memory.
    Memory,
    /// GPUs.
    Gpu,
}

/// The source chosen for one part, and why better ones were not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceChoice {
    /// The part of the machine.
    pub part: Part,
    /// The meter chosen (`rapl`, `nvml`, `estimate`, ...) or `none`.
    pub source: String,
    /// Whether its figures are measured or estimated; `None` when nothing is reported.
    pub provenance: Option<Provenance>,
    /// Why better sources were passed over, e.g. `rapl: cannot read ...: permission denied`.
    pub notes: Vec<String>,
}

impl std::fmt::Display for SourceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = match self.provenance {
            Some(Provenance::Measured) => "measured",
            Some(Provenance::Estimated) => "estimated",
            None => "not reported",
        };
        write!(f, "{:?}: {} ({how})", self.part, self.source)?;
        for note in &self.notes {
            write!(f, "; {note}")?;
        }
        Ok(())
    }
}

/// Runs several meters over the same window and merges their reports.
pub struct CompositeMeter {
    meters: Vec<Box<dyn EnergyMeter>>,
    choices: Vec<SourceChoice>,
}

impl std::fmt::Debug for CompositeMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompositeMeter")
            .field("name", &self.name())
            .field("choices", &self.choices)
            .finish()
    }
}

fn choice(
    part: Part,
    source: &str,
    provenance: Option<Provenance>,
    notes: Vec<String>,
) -> SourceChoice {
    SourceChoice {
        part,
        source: source.to_string(),
        provenance,
        notes,
    }
}

impl CompositeMeter {
    /// Picks per part: RAPL for CPU packages and DRAM if its counters are readable, NVML for
    /// GPUs if built with the `nvml` feature and a driver is present, else the estimate model
    /// for CPU and RAM (GPUs are then not reported). [`CompositeMeter::choices`] says what was
    /// chosen and why.
    ///
    /// # Errors
    /// Only when the estimate model is needed and cannot be built (invalid configuration).
    pub fn detect(config: &MeterConfig) -> Result<Self, EnergyError> {
        let mut meters: Vec<Box<dyn EnergyMeter>> = Vec::new();
        let mut cpu_notes = Vec::new();
        let mut memory_notes = Vec::new();
        let mut cpu_measured = false;
        let mut memory_measured = false;

        if config.use_rapl {
            let mut found = RaplMeter::detect(&config.rapl);
            if config.rapl.include_psys
                && let Err(e) = &found
            {
                cpu_notes.push(format!("rapl psys: {e}"));
                let without_psys = RaplConfig {
                    include_psys: false,
                    ..config.rapl.clone()
                };
                found = RaplMeter::detect(&without_psys);
            }
            match found {
                Ok(rapl) => {
                    cpu_measured = true;
                    memory_measured = rapl.has_dram() || rapl.has_platform();
                    if !memory_measured {
                        memory_notes.push("rapl: no dram zone on this machine".to_string());
                    }
                    meters.push(Box::new(rapl));
                }
                Err(e) => {
                    cpu_notes.push(format!("rapl: {e}"));
                    memory_notes.push("rapl: not available (see the CPU note)".to_string());
                }
            }
        } else {
            cpu_notes.push("rapl: disabled by configuration".to_string());
            memory_notes.push("rapl: disabled by configuration".to_string());
        }

        if !(cpu_measured && memory_measured) {
            let mut estimate = EstimateMeter::new(config.estimate.clone())?;
            if cpu_measured {
                estimate = estimate.without_cpu();
            }
            if memory_measured {
                estimate = estimate.without_ram();
            }
            meters.push(Box::new(estimate));
        }

        let (gpu_source, gpu_provenance, gpu_notes) = detect_gpu(config, &mut meters);
        let source_of = |measured: bool| if measured { "rapl" } else { "estimate" };
        let provenance_of = |measured: bool| {
            Some(if measured {
                Provenance::Measured
            } else {
                Provenance::Estimated
            })
        };
        let choices = vec![
            choice(
                Part::Cpu,
                source_of(cpu_measured),
                provenance_of(cpu_measured),
                if cpu_measured { Vec::new() } else { cpu_notes },
            ),
            choice(
                Part::Memory,
                source_of(memory_measured),
                provenance_of(memory_measured),
                if memory_measured {
                    Vec::new()
                } else {
                    memory_notes
                },
            ),
            choice(Part::Gpu, gpu_source, gpu_provenance, gpu_notes),
        ];
        Ok(Self { meters, choices })
    }

    /// A composite of the given meters, for callers that choose sources themselves. Their
    /// components are concatenated; make sure no two meters report the same part.
    pub fn from_meters(meters: Vec<Box<dyn EnergyMeter>>) -> Self {
        Self {
            meters,
            choices: Vec::new(),
        }
    }

    /// What was chosen for each part and why (empty for [`CompositeMeter::from_meters`]).
    pub fn choices(&self) -> &[SourceChoice] {
        &self.choices
    }

    /// The choices, one line per part, for logs and reports.
    pub fn describe(&self) -> String {
        self.choices
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[cfg(feature = "nvml")]
fn detect_gpu(
    config: &MeterConfig,
    meters: &mut Vec<Box<dyn EnergyMeter>>,
) -> (&'static str, Option<Provenance>, Vec<String>) {
    if !config.use_nvml {
        return (
            "none",
            None,
            vec!["nvml: disabled by configuration".to_string()],
        );
    }
    match crate::nvml::NvmlMeter::detect() {
        Ok(nvml) => {
            meters.push(Box::new(nvml));
            ("nvml", Some(Provenance::Measured), Vec::new())
        }
        Err(e) => ("none", None, vec![format!("{e}")]),
    }
}

#[cfg(not(feature = "nvml"))]
fn detect_gpu(
    config: &MeterConfig,
    _meters: &mut Vec<Box<dyn EnergyMeter>>,
) -> (&'static str, Option<Provenance>, Vec<String>) {
    let note = if config.use_nvml {
        "nvml: built without the `nvml` feature"
    } else {
        "nvml: disabled by configuration"
    };
    ("none", None, vec![note.to_string()])
}

struct CompositeWindow {
    started: Instant,
    windows: Vec<Box<dyn EnergyWindow>>,
}

impl EnergyWindow for CompositeWindow {
    fn finish(self: Box<Self>) -> Result<EnergyReport, EnergyError> {
        let mut components = Vec::new();
        let mut first_error = None;
        // Finish every window (stopping their sampling threads) even if one fails.
        for window in self.windows {
            match window.finish() {
                Ok(report) => components.extend(report.components),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        let wall = self.started.elapsed();
        match first_error {
            Some(e) => Err(e),
            None => Ok(EnergyReport { wall, components }),
        }
    }
}

impl EnergyMeter for CompositeMeter {
    fn name(&self) -> String {
        let names: Vec<String> = self.meters.iter().map(|m| m.name()).collect();
        format!("composite({})", names.join("+"))
    }

    fn start(&self) -> Result<Box<dyn EnergyWindow>, EnergyError> {
        let started = Instant::now();
        let windows = self
            .meters
            .iter()
            .map(|m| m.start())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Box::new(CompositeWindow { started, windows }))
    }
}
