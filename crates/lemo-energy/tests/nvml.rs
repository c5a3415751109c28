//! NVML (feature `nvml`): a clear "not available" without a driver; real counters with one.
#![cfg(feature = "nvml")]

use std::time::Duration;

use lemo_energy::{Component, EnergyError, EnergyMeter, NvmlMeter, Provenance};

#[test]
fn nvml_is_not_available_or_measures_every_gpu() -> Result<(), EnergyError> {
    match NvmlMeter::detect() {
        Err(EnergyError::NotAvailable {
            source_name,
            reason,
        }) => {
            assert_eq!(source_name, "nvml");
            assert!(!reason.is_empty());
        }
        Err(other) => panic!("expected NotAvailable, got {other}"),
        Ok(meter) => {
            let (_, report) = meter.measure(|| std::thread::sleep(Duration::from_millis(300)))?;
            assert_eq!(report.components.len(), meter.gpus().len());
            for c in &report.components {
                assert!(matches!(c.component, Component::Gpu(_)));
                assert_eq!(c.provenance, Provenance::Measured);
                assert!(c.source.starts_with("nvml:"), "{}", c.source);
                // An idle GPU still draws tens of watts.
                assert!(c.joules > 0.0, "{c:?}");
            }
        }
    }
    Ok(())
}
