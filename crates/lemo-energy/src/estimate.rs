//! Energy estimates from a power model where no counter can be read: CPU from a TDP times
//! utilisation, RAM from installed (or resident) memory times watts per GB.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sysinfo::{CpuRefreshKind, Pid, ProcessRefreshKind, ProcessesToUpdate, RefreshKind, System};

use crate::EnergyError;
use crate::integrate::PowerIntegrator;
use crate::sampler::Sampler;
use crate::{Component, ComponentEnergy, EnergyMeter, EnergyReport, EnergyWindow, Provenance};

/// CPU power assumed per logical CPU (hardware thread) at full load when no TDP is given, in
/// watts. Typical TDP per thread: desktop 65-125 W / 12-24 threads = 4-7 W; laptop 15-45 W /
/// 8-16 threads = 2-4 W; server 200-350 W / 64-128 threads = 2-4 W.
pub const DEFAULT_WATTS_PER_THREAD: f64 = 5.0;

/// Memory power per GB (10^9 bytes) of memory, in watts: 3 W per 8 GB module, the figure used by
/// CodeCarbon and close to Green Algorithms' 0.3725 W/GB.
pub const DEFAULT_RAM_WATTS_PER_GB: f64 = 0.375;

/// How often the resident memory of this process is sampled in [`EstimateScope::Process`].
const RSS_SAMPLE_INTERVAL: Duration = Duration::from_millis(250);

/// Which energy an estimate attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EstimateScope {
    /// The whole machine: CPU from machine-wide utilisation, RAM from installed memory.
    #[default]
    Machine,
    /// This process only: CPU from its share of CPU time, RAM from its resident memory.
    Process,
}

/// Parameters of the estimate model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EstimateConfig {
    /// Total CPU power at full load (all sockets), in watts; by default
    /// [`DEFAULT_WATTS_PER_THREAD`] times the number of logical CPUs.
    pub cpu_tdp_watts: Option<f64>,
    /// Memory power per GB, in watts.
    pub ram_watts_per_gb: f64,
    /// Whole machine or this process.
    pub scope: EstimateScope,
}

impl Default for EstimateConfig {
    fn default() -> Self {
        Self {
            cpu_tdp_watts: None,
            ram_watts_per_gb: DEFAULT_RAM_WATTS_PER_GB,
            scope: EstimateScope::Machine,
        }
    }
}

/// Estimates CPU and RAM energy with sysinfo; every figure is labelled
/// [`Provenance::Estimated`] with a source string that states the model.
///
/// CPU: `tdp_watts x utilisation x wall`, where utilisation is the machine's average over the
/// window ([`EstimateScope::Machine`]; windows shorter than 200 ms are measured over 200 ms) or
/// this process's CPU time divided by `wall x logical CPUs` ([`EstimateScope::Process`]).
/// RAM: `watts_per_gb x GB x wall`, GB being installed memory (machine) or this process's
/// resident memory sampled every 250 ms (process).
#[derive(Debug, Clone)]
pub struct EstimateMeter {
    config: EstimateConfig,
    tdp_watts: f64,
    threads: usize,
    installed_bytes: u64,
    cpu: bool,
    ram: bool,
}

impl EstimateMeter {
    /// Reads the machine's CPU count and installed memory.
    ///
    /// # Errors
    /// [`EnergyError::InvalidConfig`] for a non-positive TDP or a negative W/GB;
    /// [`EnergyError::NotAvailable`] where sysinfo cannot read the system.
    pub fn new(config: EstimateConfig) -> Result<Self, EnergyError> {
        if let Some(tdp) = config.cpu_tdp_watts
            && !(tdp.is_finite() && tdp > 0.0)
        {
            return Err(EnergyError::InvalidConfig(format!(
                "cpu_tdp_watts must be positive, got {tdp}"
            )));
        }
        if !(config.ram_watts_per_gb.is_finite() && config.ram_watts_per_gb >= 0.0) {
            return Err(EnergyError::InvalidConfig(format!(
                "ram_watts_per_gb must be non-negative, got {}",
                config.ram_watts_per_gb
            )));
        }
        let sys = System::new_with_specifics(
            RefreshKind::nothing()
                .with_cpu(CpuRefreshKind::nothing())
                .with_memory(sysinfo::MemoryRefreshKind::nothing().with_ram()),
        )
        .map_err(|e| EnergyError::NotAvailable {
            source_name: "estimate".to_string(),
            reason: format!("sysinfo cannot read the system: {e}"),
        })?;
        let threads = match sys.cpus().len() {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let tdp_watts = config
            .cpu_tdp_watts
            .unwrap_or(DEFAULT_WATTS_PER_THREAD * threads as f64);
        Ok(Self {
            installed_bytes: sys.total_memory(),
            config,
            tdp_watts,
            threads,
            cpu: true,
            ram: true,
        })
    }

    /// The same meter without the CPU figure (when the CPU is measured by another source).
    pub fn without_cpu(mut self) -> Self {
        self.cpu = false;
        self
    }

    /// The same meter without the RAM figure (when memory is measured by another source).
    pub fn without_ram(mut self) -> Self {
        self.ram = false;
        self
    }

    /// CPU power at full load used by the model, in watts.
    pub fn tdp_watts(&self) -> f64 {
        self.tdp_watts
    }

    /// Number of logical CPUs seen.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Installed memory, in bytes.
    pub fn installed_bytes(&self) -> u64 {
        self.installed_bytes
    }

    /// The model's parameters.
    pub fn config(&self) -> &EstimateConfig {
        &self.config
    }

    fn cpu_source(&self) -> String {
        let tdp = match self.config.cpu_tdp_watts {
            Some(w) => format!("tdp {w} W (set)"),
            None => format!(
                "tdp {} W ({DEFAULT_WATTS_PER_THREAD} W x {} threads)",
                self.tdp_watts, self.threads
            ),
        };
        match self.config.scope {
            EstimateScope::Machine => format!("estimate:{tdp} x machine utilisation"),
            EstimateScope::Process => {
                format!(
                    "estimate:{tdp} x process cpu time / {} threads",
                    self.threads
                )
            }
        }
    }

    fn ram_source(&self) -> String {
        let w = self.config.ram_watts_per_gb;
        match self.config.scope {
            EstimateScope::Machine => format!(
                "estimate:{w} W/GB x {:.2} GB installed",
                self.installed_bytes as f64 / 1e9
            ),
            EstimateScope::Process => format!("estimate:{w} W/GB x process resident memory"),
        }
    }
}

struct RssState {
    sys: System,
    pid: Pid,
    origin: Instant,
    watts_per_byte: f64,
    integrator: PowerIntegrator,
}

impl RssState {
    fn sample(&mut self) {
        self.sys.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[self.pid]),
            false,
            ProcessRefreshKind::nothing().with_memory(),
        );
        let bytes = self.sys.process(self.pid).map_or(0, |p| p.memory());
        self.integrator
            .push(self.origin.elapsed(), bytes as f64 * self.watts_per_byte);
    }
}

enum EstimateWindowKind {
    Machine {
        sys: System,
    },
    Process {
        sys: System,
        pid: Pid,
        cpu_ms_at_start: u64,
        rss: Option<Sampler<RssState>>,
    },
}

struct EstimateWindow {
    meter: EstimateMeter,
    started: Instant,
    kind: EstimateWindowKind,
}

fn current_pid() -> Result<Pid, EnergyError> {
    sysinfo::get_current_pid().map_err(|e| EnergyError::NotAvailable {
        source_name: "estimate".to_string(),
        reason: format!("cannot find this process: {e}"),
    })
}

fn new_system() -> Result<System, EnergyError> {
    System::new_with_specifics(RefreshKind::nothing()).map_err(|e| EnergyError::NotAvailable {
        source_name: "estimate".to_string(),
        reason: format!("sysinfo cannot read the system: {e}"),
    })
}

fn process_cpu_ms(sys: &mut System, pid: Pid) -> Result<u64, EnergyError> {
    sys.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[pid]),
        false,
        ProcessRefreshKind::nothing().with_cpu(),
    );
    sys.process(pid)
        .map(|p| p.accumulated_cpu_time())
        .ok_or_else(|| EnergyError::Unreadable {
            path: format!("process {pid}"),
            reason: "sysinfo cannot read this process's CPU time".to_string(),
        })
}

impl EnergyWindow for EstimateWindow {
    fn finish(self: Box<Self>) -> Result<EnergyReport, EnergyError> {
        let EstimateWindow {
            meter,
            started,
            kind,
        } = *self;
        let mut components = Vec::new();
        let (wall, cpu_joules, ram_joules) = match kind {
            EstimateWindowKind::Machine { mut sys } => {
                let wall = started.elapsed();
                if meter.cpu {
                    // sysinfo only updates usage 200 ms after the previous refresh.
                    if let Some(rest) = sysinfo::MINIMUM_CPU_UPDATE_INTERVAL.checked_sub(wall) {
                        std::thread::sleep(rest);
                    }
                    sys.refresh_cpu_usage();
                }
                let utilisation = f64::from(sys.global_cpu_usage()).clamp(0.0, 100.0) / 100.0;
                let secs = wall.as_secs_f64();
                let ram_watts = meter.config.ram_watts_per_gb * meter.installed_bytes as f64 / 1e9;
                (wall, meter.tdp_watts * utilisation * secs, ram_watts * secs)
            }
            EstimateWindowKind::Process {
                mut sys,
                pid,
                cpu_ms_at_start,
                rss,
            } => {
                let cpu_ms = if meter.cpu {
                    process_cpu_ms(&mut sys, pid)?.saturating_sub(cpu_ms_at_start)
                } else {
                    0
                };
                let ram_joules = match rss {
                    Some(sampler) => {
                        let mut state = sampler.stop()?;
                        state.sample();
                        state.integrator.joules()
                    }
                    None => 0.0,
                };
                let wall = started.elapsed();
                let cpu_seconds = cpu_ms as f64 / 1e3;
                (
                    wall,
                    meter.tdp_watts * cpu_seconds / meter.threads as f64,
                    ram_joules,
                )
            }
        };
        if meter.cpu {
            components.push(ComponentEnergy {
                component: Component::CpuPackage(0),
                joules: cpu_joules,
                source: meter.cpu_source(),
                provenance: Provenance::Estimated,
            });
        }
        if meter.ram {
            components.push(ComponentEnergy {
                component: Component::Ram,
                joules: ram_joules,
                source: meter.ram_source(),
                provenance: Provenance::Estimated,
            });
        }
        Ok(EnergyReport { wall, components })
    }
}

impl EnergyMeter for EstimateMeter {
    fn name(&self) -> String {
        match (self.cpu, self.ram) {
            (true, true) => "estimate",
            (true, false) => "estimate(cpu)",
            (false, true) => "estimate(ram)",
            (false, false) => "estimate(nothing)",
        }
        .to_string()
    }

    fn start(&self) -> Result<Box<dyn EnergyWindow>, EnergyError> {
        let mut sys = new_system()?;
        let kind = match self.config.scope {
            EstimateScope::Machine => {
                if self.cpu {
                    sys.refresh_cpu_usage();
                }
                EstimateWindowKind::Machine { sys }
            }
            EstimateScope::Process => {
                let pid = current_pid()?;
                let cpu_ms_at_start = if self.cpu {
                    process_cpu_ms(&mut sys, pid)?
                } else {
                    0
                };
                let rss = if self.ram {
                    let mut state = RssState {
                        sys: new_system()?,
                        pid,
                        origin: Instant::now(),
                        watts_per_byte: self.config.ram_watts_per_gb / 1e9,
                        integrator: PowerIntegrator::new(),
                    };
                    state.sample();
                    Some(Sampler::spawn(
                        RSS_SAMPLE_INTERVAL,
                        state,
                        RssState::sample,
                    )?)
                } else {
                    None
                };
                EstimateWindowKind::Process {
                    sys,
                    pid,
                    cpu_ms_at_start,
                    rss,
                }
            }
        };
        Ok(Box::new(EstimateWindow {
            meter: self.clone(),
            started: Instant::now(),
            kind,
        }))
    }
}
