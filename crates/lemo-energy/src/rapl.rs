//! Intel/AMD RAPL energy counters through the Linux powercap sysfs tree.
//!
//! Only the top-level `package-N` zones and the `dram` zones are read: the `core` and `uncore`
//! subzones are parts of their package and would be counted twice. The `psys` (platform) zone
//! covers the package and more, so when it is requested it is reported *instead of* the package
//! and DRAM zones.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::EnergyError;
use crate::sampler::Sampler;
use crate::{Component, ComponentEnergy, EnergyMeter, EnergyReport, EnergyWindow, Provenance};

/// Where Linux exposes the powercap tree.
pub const DEFAULT_POWERCAP_ROOT: &str = "/sys/class/powercap";

/// Power assumed as the most a single RAPL zone can draw, used to choose a sampling interval
/// short enough to see every counter wrap-around.
const ASSUMED_MAX_ZONE_WATTS: f64 = 500.0;
/// The longest sampling interval used (counters with a huge range still get sampled this often).
const MAX_SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// The shortest sampling interval used.
const MIN_SAMPLE_INTERVAL: Duration = Duration::from_millis(10);

/// How to find and read the RAPL counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RaplConfig {
    /// The powercap root, `/sys/class/powercap` on Linux (tests point it at a fake tree).
    pub root: PathBuf,
    /// Report the `psys` platform zone instead of package and DRAM zones.
    pub include_psys: bool,
    /// Sampling interval in milliseconds; by default derived from the counters' range so that
    /// no wrap-around is missed (at most 1 s).
    pub sample_interval_ms: Option<u64>,
}

impl Default for RaplConfig {
    fn default() -> Self {
        Self {
            root: PathBuf::from(DEFAULT_POWERCAP_ROOT),
            include_psys: false,
            sample_interval_ms: None,
        }
    }
}

/// One RAPL zone that is read.
#[derive(Debug, Clone, PartialEq)]
pub struct RaplZone {
    /// What the zone measures.
    pub component: Component,
    /// The zone directory, e.g. `/sys/class/powercap/intel-rapl:0`.
    pub path: PathBuf,
    /// The zone's `name` file, e.g. `package-0`, `dram`, `psys`.
    pub name: String,
    /// The counter's range in microjoules (`max_energy_range_uj`); it wraps to zero after this.
    pub max_energy_range_uj: u64,
}

impl RaplZone {
    fn energy_file(&self) -> PathBuf {
        self.path.join("energy_uj")
    }

    fn read_energy_uj(&self) -> Result<u64, EnergyError> {
        read_u64(&self.energy_file())
    }

    fn source(&self) -> String {
        format!("rapl:{} ({})", self.path.display(), self.name)
    }
}

/// An energy counter that wraps around to zero after `max_range`; accumulates the energy seen
/// across wrap-arounds, provided it is updated at least once per wrap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrappingCounter {
    last: u64,
    max_range: u64,
    total: u64,
}

impl WrappingCounter {
    /// A counter whose first reading is `first`, wrapping after `max_range`.
    pub fn new(first: u64, max_range: u64) -> Self {
        Self {
            last: first,
            max_range,
            total: 0,
        }
    }

    /// Takes a new reading and returns the increase since the previous one, assuming at most one
    /// wrap-around in between.
    pub fn update(&mut self, now: u64) -> u64 {
        let delta = if now >= self.last {
            now - self.last
        } else {
            self.max_range.saturating_sub(self.last).saturating_add(now)
        };
        self.last = now;
        self.total = self.total.saturating_add(delta);
        delta
    }

    /// Increase accumulated since the first reading.
    pub fn total(&self) -> u64 {
        self.total
    }
}

/// Reads RAPL package and DRAM energy counters (or psys on request). Whole-machine figures,
/// labelled [`Provenance::Measured`].
#[derive(Debug, Clone)]
pub struct RaplMeter {
    zones: Arc<Vec<RaplZone>>,
    interval: Duration,
}

impl RaplMeter {
    /// Finds the zones under `config.root` and checks that every counter can be read.
    ///
    /// # Errors
    /// [`EnergyError::NotAvailable`] when there is no powercap tree or no package zone (virtual
    /// machines, non-x86 machines), or when `psys` is requested and absent;
    /// [`EnergyError::Unreadable`] when a counter cannot be read (root-only since the PLATYPUS
    /// fix: see docs/energy.md to grant access).
    pub fn detect(config: &RaplConfig) -> Result<Self, EnergyError> {
        let zones = find_zones(&config.root, config.include_psys)?;
        let mut shortest = MAX_SAMPLE_INTERVAL;
        for zone in &zones {
            zone.read_energy_uj()?;
            shortest = shortest.min(wrap_safe_interval(zone.max_energy_range_uj));
        }
        let interval = match config.sample_interval_ms {
            Some(ms) if ms > 0 => Duration::from_millis(ms),
            Some(_) => {
                return Err(EnergyError::InvalidConfig(
                    "rapl sample_interval_ms must be positive".to_string(),
                ));
            }
            None => shortest,
        };
        Ok(Self {
            zones: Arc::new(zones),
            interval,
        })
    }

    /// The zones this meter reads.
    pub fn zones(&self) -> &[RaplZone] {
        &self.zones
    }

    /// How often the counters are sampled during a window.
    pub fn sample_interval(&self) -> Duration {
        self.interval
    }

    /// Whether a DRAM zone is read.
    pub fn has_dram(&self) -> bool {
        self.zones
            .iter()
            .any(|z| matches!(z.component, Component::Dram(_)))
    }

    /// Whether the psys platform zone is read.
    pub fn has_platform(&self) -> bool {
        self.zones
            .iter()
            .any(|z| z.component == Component::Platform)
    }
}

/// A sampling interval that sees every wrap of a counter with this range at the assumed power.
fn wrap_safe_interval(max_energy_range_uj: u64) -> Duration {
    let seconds_to_wrap = max_energy_range_uj as f64 / 1e6 / ASSUMED_MAX_ZONE_WATTS;
    Duration::from_secs_f64((seconds_to_wrap / 4.0).max(0.0))
        .clamp(MIN_SAMPLE_INTERVAL, MAX_SAMPLE_INTERVAL)
}

/// Reads all counters of a window; keeps the first error.
struct RaplState {
    zones: Arc<Vec<RaplZone>>,
    counters: Vec<WrappingCounter>,
    error: Option<EnergyError>,
}

impl RaplState {
    fn sample(&mut self) {
        if self.error.is_some() {
            return;
        }
        for (zone, counter) in self.zones.iter().zip(self.counters.iter_mut()) {
            match zone.read_energy_uj() {
                Ok(now) => {
                    counter.update(now);
                }
                Err(e) => {
                    self.error = Some(e);
                    return;
                }
            }
        }
    }
}

struct RaplWindow {
    started: Instant,
    sampler: Sampler<RaplState>,
}

impl EnergyWindow for RaplWindow {
    fn finish(self: Box<Self>) -> Result<EnergyReport, EnergyError> {
        let mut state = self.sampler.stop()?;
        state.sample();
        let wall = self.started.elapsed();
        if let Some(e) = state.error {
            return Err(e);
        }
        let components = state
            .zones
            .iter()
            .zip(&state.counters)
            .map(|(zone, counter)| ComponentEnergy {
                component: zone.component.clone(),
                joules: counter.total() as f64 / 1e6,
                source: zone.source(),
                provenance: Provenance::Measured,
            })
            .collect();
        Ok(EnergyReport { wall, components })
    }
}

impl EnergyMeter for RaplMeter {
    fn name(&self) -> String {
        "rapl".to_string()
    }

    fn start(&self) -> Result<Box<dyn EnergyWindow>, EnergyError> {
        let started = Instant::now();
        let counters = self
            .zones
            .iter()
            .map(|z| {
                Ok(WrappingCounter::new(
                    z.read_energy_uj()?,
                    z.max_energy_range_uj,
                ))
            })
            .collect::<Result<Vec<_>, EnergyError>>()?;
        let state = RaplState {
            zones: Arc::clone(&self.zones),
            counters,
            error: None,
        };
        let sampler = Sampler::spawn(self.interval, state, RaplState::sample)?;
        Ok(Box::new(RaplWindow { started, sampler }))
    }
}

/// A zone directory name `intel-rapl:N` or `intel-rapl:N:M`, as (N, Some(M)).
fn parse_zone_dir(name: &str) -> Option<(u32, Option<u32>)> {
    let rest = name.strip_prefix("intel-rapl:")?;
    let mut parts = rest.split(':');
    let top = parts.next()?.parse().ok()?;
    let sub = match parts.next() {
        Some(s) => Some(s.parse().ok()?),
        None => None,
    };
    if parts.next().is_some() {
        return None;
    }
    Some((top, sub))
}

fn find_zones(root: &Path, include_psys: bool) -> Result<Vec<RaplZone>, EnergyError> {
    let not_available = |reason: String| EnergyError::NotAvailable {
        source_name: "rapl".to_string(),
        reason,
    };
    let entries = std::fs::read_dir(root).map_err(|e| {
        not_available(format!(
            "no powercap tree at {} ({e}); not Linux, intel_rapl driver not loaded, or a \
             virtual machine",
            root.display()
        ))
    })?;
    let mut dirs: Vec<(u32, Option<u32>, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name();
            let (top, sub) = parse_zone_dir(name.to_str()?)?;
            Some((top, sub, entry.path()))
        })
        .collect();
    dirs.sort_by_key(|(top, sub, _)| (*top, *sub));

    let mut packages = Vec::new();
    let mut drams = Vec::new();
    let mut psys = None;
    // Package index of each top-level zone, from its `package-K` name.
    let mut package_of_top = std::collections::HashMap::new();
    for (top, sub, path) in &dirs {
        let Ok(name) = read_trimmed(&path.join("name")) else {
            continue;
        };
        let component = match (sub, name.as_str()) {
            (None, n) if n.starts_with("package-") => {
                let k = n["package-".len()..].parse().unwrap_or(*top);
                package_of_top.insert(*top, k);
                Component::CpuPackage(k)
            }
            (None, "psys") => Component::Platform,
            (None, "dram") => Component::Dram(*top),
            (Some(_), "dram") => Component::Dram(package_of_top.get(top).copied().unwrap_or(*top)),
            _ => continue,
        };
        let max_energy_range_uj = read_u64(&path.join("max_energy_range_uj"))?;
        let zone = RaplZone {
            component: component.clone(),
            path: path.clone(),
            name,
            max_energy_range_uj,
        };
        match component {
            Component::CpuPackage(_) => packages.push(zone),
            Component::Dram(_) => drams.push(zone),
            _ => psys = Some(zone),
        }
    }
    if include_psys {
        return match psys {
            Some(zone) => Ok(vec![zone]),
            None => Err(not_available(format!(
                "the psys zone was requested but {} has none",
                root.display()
            ))),
        };
    }
    if packages.is_empty() {
        return Err(not_available(format!(
            "no intel-rapl package zone under {} (virtual machine, or CPU without RAPL)",
            root.display()
        )));
    }
    packages.extend(drams);
    Ok(packages)
}

fn read_trimmed(path: &Path) -> Result<String, EnergyError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| unreadable(path, &e))
}

fn read_u64(path: &Path) -> Result<u64, EnergyError> {
    let text = read_trimmed(path)?;
    text.parse().map_err(|_| EnergyError::Unreadable {
        path: path.display().to_string(),
        reason: format!("expected an integer, found {text:?}"),
    })
}

/// An [`EnergyError::Unreadable`] with a reason that says how to fix the usual causes.
fn unreadable(path: &Path, e: &io::Error) -> EnergyError {
    let reason = match e.kind() {
        io::ErrorKind::PermissionDenied => format!(
            "{e}: RAPL energy counters are readable by root only since the PLATYPUS fix \
             (CVE-2020-8694); grant read access as described in docs/energy.md"
        ),
        io::ErrorKind::NotFound => format!("{e}: the counter does not exist on this machine"),
        _ => e.to_string(),
    };
    EnergyError::Unreadable {
        path: path.display().to_string(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_counter_counts_across_a_wrap() {
        let mut c = WrappingCounter::new(900, 1000);
        assert_eq!(c.update(950), 50);
        assert_eq!(c.update(20), 70);
        assert_eq!(c.update(20), 0);
        assert_eq!(c.total(), 120);
    }

    #[test]
    fn zone_dir_names() {
        assert_eq!(parse_zone_dir("intel-rapl:0"), Some((0, None)));
        assert_eq!(parse_zone_dir("intel-rapl:1:2"), Some((1, Some(2))));
        assert_eq!(parse_zone_dir("intel-rapl"), None);
        assert_eq!(parse_zone_dir("intel-rapl-mmio:0"), None);
        assert_eq!(parse_zone_dir("intel-rapl:0:1:2"), None);
    }

    #[test]
    fn permission_denied_says_how_to_fix() {
        let e = unreadable(
            Path::new("/x/energy_uj"),
            &io::Error::from(io::ErrorKind::PermissionDenied),
        );
        let text = e.to_string();
        assert!(text.contains("PLATYPUS"), "{text}");
        assert!(text.contains("docs/energy.md"), "{text}");
    }

    #[test]
    fn interval_sees_every_wrap() {
        // 2^32 uJ (about 4295 J) at 500 W wraps in about 8.6 s: sample at most every ~2 s,
        // capped at 1 s.
        assert_eq!(wrap_safe_interval(u32::MAX as u64), MAX_SAMPLE_INTERVAL);
        // A tiny range is sampled at the floor.
        assert_eq!(wrap_safe_interval(1000), MIN_SAMPLE_INTERVAL);
        // 1 kJ at 500 W wraps in 2 s: sample every 0.5 s.
        assert_eq!(
            wrap_safe_interval(1_000_000_000),
            Duration::from_millis(500)
        );
    }
}
