//! The estimate path on this machine (no RAPL, no GPU): busy work yields a non-zero estimate
//! labelled as such.

use std::hint::black_box;
use std::time::{Duration, Instant};

use lemo_energy::{
    Accounting, Component, CompositeMeter, EnergyError, EnergyMeter, EstimateConfig, EstimateMeter,
    EstimateScope, MeterConfig, NoMeter, Part, Provenance, measure_inference,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Spins one CPU for `how_long`.
fn busy(how_long: Duration) -> u64 {
    let start = Instant::now();
    let mut x = 0u64;
    while start.elapsed() < how_long {
        for i in 0..10_000u64 {
            x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
        }
    }
    x
}

fn assert_estimated(report: &lemo_energy::EnergyReport) {
    assert!(!report.components.is_empty());
    for c in &report.components {
        assert_eq!(c.provenance, Provenance::Estimated, "{c:?}");
        assert!(c.source.starts_with("estimate:"), "{}", c.source);
    }
    assert!(report.has_estimates());
}

#[test]
fn process_scope_busy_closure_is_a_nonzero_estimate() -> TestResult {
    let meter = EstimateMeter::new(EstimateConfig {
        cpu_tdp_watts: Some(100.0),
        scope: EstimateScope::Process,
        ..EstimateConfig::default()
    })?;
    let (_, report) = meter.measure(|| busy(Duration::from_millis(400)))?;
    assert_estimated(&report);
    let cpu = report
        .components
        .iter()
        .find(|c| c.component == Component::CpuPackage(0))
        .ok_or("no cpu figure")?;
    // One thread busy for ~0.4 s: 100 W x cpu_seconds / threads, non-zero even on a loaded
    // machine, and never more than the whole TDP over the wall time (other tests run in this
    // process at the same time, so its CPU time may exceed this thread's).
    let upper = 100.0 * report.wall.as_secs_f64() * 1.05;
    assert!(
        cpu.joules > 0.0 && cpu.joules <= upper,
        "cpu {} J not in (0, {upper}]",
        cpu.joules
    );
    let ram = report
        .components
        .iter()
        .find(|c| c.component == Component::Ram)
        .ok_or("no ram figure")?;
    assert!(ram.joules > 0.0, "this process has resident memory");
    Ok(())
}

#[test]
fn machine_scope_busy_closure_is_a_nonzero_estimate() -> TestResult {
    let meter = EstimateMeter::new(EstimateConfig::default())?;
    assert!(meter.tdp_watts() > 0.0);
    assert!(meter.installed_bytes() > 0);
    let (_, report) = meter.measure(|| busy(Duration::from_millis(400)))?;
    assert_estimated(&report);
    assert!(report.total_joules() > 0.0);
    let cpu = &report.components[0];
    assert_eq!(cpu.component, Component::CpuPackage(0));
    assert!(cpu.joules > 0.0, "a busy CPU uses energy");
    assert!(cpu.joules <= meter.tdp_watts() * report.wall.as_secs_f64() + 1e-9);
    // The default TDP is the documented default per thread.
    assert!(cpu.source.contains("W x"), "{}", cpu.source);
    Ok(())
}

#[test]
fn short_machine_window_still_measures() -> TestResult {
    let meter = EstimateMeter::new(EstimateConfig::default())?;
    let (_, report) = meter.measure(|| busy(Duration::from_millis(20)))?;
    assert_estimated(&report);
    assert!(report.wall < Duration::from_millis(200));
    Ok(())
}

#[test]
fn composite_without_rapl_or_gpu_estimates_and_says_so() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut config = MeterConfig::default();
    config.rapl.root = dir.path().join("absent");
    let meter = CompositeMeter::detect(&config)?;
    let choices = meter.choices();
    assert_eq!(choices.len(), 3);
    assert_eq!(
        (choices[0].part, choices[0].source.as_str()),
        (Part::Cpu, "estimate")
    );
    assert_eq!(
        (choices[1].part, choices[1].source.as_str()),
        (Part::Memory, "estimate")
    );
    assert_eq!(choices[2].part, Part::Gpu);
    assert!(choices[0].notes.iter().any(|n| n.contains("rapl")));
    assert!(meter.describe().contains("estimated"));
    assert!(meter.name().starts_with("composite("));

    let (_, report) = meter.measure(|| busy(Duration::from_millis(300)))?;
    // GPU figures appear only when NVML finds a GPU; CPU and RAM are estimated here.
    let non_gpu: Vec<_> = report
        .components
        .iter()
        .filter(|c| !matches!(c.component, Component::Gpu(_)))
        .collect();
    assert_eq!(non_gpu.len(), 2);
    assert!(
        non_gpu
            .iter()
            .all(|c| c.provenance == Provenance::Estimated)
    );
    assert!(report.total_joules() > 0.0);
    let account = Accounting::paper().account(&report);
    assert!(account.estimated);
    assert!(account.kwh_pue > account.kwh);
    Ok(())
}

#[test]
fn default_detection_works_on_any_machine() -> TestResult {
    let meter = CompositeMeter::detect(&MeterConfig::default())?;
    let (_, report) = meter.measure(|| busy(Duration::from_millis(300)))?;
    assert!(report.total_joules() > 0.0);
    for choice in meter.choices() {
        if choice.part != Part::Gpu {
            let expected = choice
                .provenance
                .ok_or("cpu and memory are always reported")?;
            let reported = report.components.iter().filter(|c| match choice.part {
                Part::Cpu => matches!(c.component, Component::CpuPackage(_) | Component::Platform),
                _ => matches!(c.component, Component::Dram(_) | Component::Ram),
            });
            for c in reported {
                assert_eq!(c.provenance, expected, "{choice}");
            }
        }
    }
    Ok(())
}

#[test]
fn estimate_only_config_ignores_counters() -> TestResult {
    let meter = CompositeMeter::detect(&MeterConfig::estimate_only(EstimateConfig::default()))?;
    let report = meter.start()?.finish()?;
    assert_estimated(&report);
    Ok(())
}

#[test]
fn invalid_estimate_config_is_rejected() {
    for bad in [Some(0.0), Some(-5.0), Some(f64::INFINITY)] {
        let config = EstimateConfig {
            cpu_tdp_watts: bad,
            ..EstimateConfig::default()
        };
        assert!(matches!(
            EstimateMeter::new(config),
            Err(EnergyError::InvalidConfig(_))
        ));
    }
    let config = EstimateConfig {
        ram_watts_per_gb: -1.0,
        ..EstimateConfig::default()
    };
    assert!(EstimateMeter::new(config).is_err());
}

#[test]
fn inference_window_spans_at_least_a_second() -> TestResult {
    let meter = EstimateMeter::new(EstimateConfig {
        scope: EstimateScope::Process,
        ..EstimateConfig::default()
    })?;
    let mut batches = 0;
    let per_image = measure_inference(&meter, || {
        batches += 1;
        busy(Duration::from_millis(50));
        Ok::<u64, EnergyError>(32)
    })?;
    assert!(per_image.report.wall >= Duration::from_secs(1));
    assert_eq!(per_image.images, 32 * batches);
    assert!(per_image.joules_per_image > 0.0);
    assert!(per_image.kwh_pue_per_image(&Accounting::paper()) > per_image.kwh_per_image);

    // Errors of a batch come back as they are.
    let failed = measure_inference(&NoMeter, || Err::<u64, _>(EnergyError::NoImages));
    assert!(matches!(failed, Err(EnergyError::NoImages)));
    Ok(())
}
