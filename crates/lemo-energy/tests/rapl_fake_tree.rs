//! RAPL over fake powercap trees: normal, wrapping counter, unreadable counter, missing DRAM.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lemo_energy::{
    Component, CompositeMeter, EnergyError, EnergyMeter, MeterConfig, Part, Provenance, RaplConfig,
    RaplMeter,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Writes a zone directory with `name`, `energy_uj` and `max_energy_range_uj`.
fn zone(
    root: &Path,
    dir: &str,
    name: &str,
    energy_uj: u64,
    max_uj: u64,
) -> std::io::Result<PathBuf> {
    let path = root.join(dir);
    fs::create_dir_all(&path)?;
    fs::write(path.join("name"), format!("{name}\n"))?;
    fs::write(path.join("max_energy_range_uj"), format!("{max_uj}\n"))?;
    set_energy(&path, energy_uj)?;
    Ok(path)
}

/// Replaces `energy_uj` atomically, so that a concurrent reader never sees a partial value.
fn set_energy(zone: &Path, energy_uj: u64) -> std::io::Result<()> {
    let tmp = zone.join("energy_uj.tmp");
    fs::write(&tmp, format!("{energy_uj}\n"))?;
    fs::rename(tmp, zone.join("energy_uj"))
}

const MAX: u64 = 262_143_328_850;

/// A server-like tree: package-0 with a core subzone and a dram subzone, package-1 with dram,
/// and a psys zone.
fn server_tree(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    Ok(vec![
        zone(root, "intel-rapl:0", "package-0", 1_000_000, MAX)?,
        zone(root, "intel-rapl:0:0", "core", 500_000, MAX)?,
        zone(root, "intel-rapl:0:1", "dram", 2_000_000, MAX)?,
        zone(root, "intel-rapl:1", "package-1", 3_000_000, MAX)?,
        zone(root, "intel-rapl:1:0", "dram", 4_000_000, MAX)?,
        zone(root, "intel-rapl:2", "psys", 9_000_000, MAX)?,
    ])
}

fn config(root: &Path) -> RaplConfig {
    RaplConfig {
        root: root.to_path_buf(),
        include_psys: false,
        sample_interval_ms: Some(5),
    }
}

fn joules_of(report: &lemo_energy::EnergyReport, component: &Component) -> Option<f64> {
    report
        .components
        .iter()
        .find(|c| &c.component == component)
        .map(|c| c.joules)
}

#[test]
fn normal_tree_reads_packages_and_dram_only() -> TestResult {
    let dir = tempfile::tempdir()?;
    let zones = server_tree(dir.path())?;
    let meter = RaplMeter::detect(&config(dir.path()))?;
    let found: Vec<Component> = meter.zones().iter().map(|z| z.component.clone()).collect();
    assert_eq!(
        found,
        vec![
            Component::CpuPackage(0),
            Component::CpuPackage(1),
            Component::Dram(0),
            Component::Dram(1)
        ]
    );
    assert!(meter.has_dram());

    let window = meter.start()?;
    set_energy(&zones[0], 11_000_000)?; // package-0: +10 J
    set_energy(&zones[1], 99_000_000)?; // core: must not be counted
    set_energy(&zones[2], 4_500_000)?; // dram-0: +2.5 J
    set_energy(&zones[3], 3_250_000)?; // package-1: +0.25 J
    set_energy(&zones[5], 99_000_000)?; // psys: not requested
    std::thread::sleep(Duration::from_millis(30));
    let report = window.finish()?;

    assert_eq!(report.components.len(), 4);
    assert_eq!(joules_of(&report, &Component::CpuPackage(0)), Some(10.0));
    assert_eq!(joules_of(&report, &Component::CpuPackage(1)), Some(0.25));
    assert_eq!(joules_of(&report, &Component::Dram(0)), Some(2.5));
    assert_eq!(joules_of(&report, &Component::Dram(1)), Some(0.0));
    assert!((report.total_joules() - 12.75).abs() < 1e-9);
    assert!(!report.has_estimates());
    for c in &report.components {
        assert_eq!(c.provenance, Provenance::Measured);
        assert!(c.source.starts_with("rapl:"), "{}", c.source);
    }
    Ok(())
}

#[test]
fn wrapping_counter_is_followed_across_wraps() -> TestResult {
    let dir = tempfile::tempdir()?;
    let max = 1_000_000_000; // 1 kJ
    let pkg = zone(dir.path(), "intel-rapl:0", "package-0", 900_000_000, max)?;
    let meter = RaplMeter::detect(&config(dir.path()))?;
    assert_eq!(meter.sample_interval(), Duration::from_millis(5));

    let window = meter.start()?;
    // +90 J, wrap (+60 J), +550 J, wrap (+500 J): 1200 J in all, more than the counter's range.
    for value in [990_000_000, 50_000_000, 600_000_000, 100_000_000] {
        set_energy(&pkg, value)?;
        std::thread::sleep(Duration::from_millis(150));
    }
    let report = window.finish()?;
    let joules = joules_of(&report, &Component::CpuPackage(0)).ok_or("no package")?;
    assert!((joules - 1200.0).abs() < 1e-9, "got {joules} J");
    Ok(())
}

#[test]
fn default_interval_sees_every_wrap_at_high_power() -> TestResult {
    let dir = tempfile::tempdir()?;
    // A 2^32 uJ counter (about 4.3 kJ) wraps every 8.6 s at 500 W: sampling must be faster.
    zone(
        dir.path(),
        "intel-rapl:0",
        "package-0",
        0,
        u64::from(u32::MAX),
    )?;
    let meter = RaplMeter::detect(&RaplConfig {
        root: dir.path().to_path_buf(),
        ..RaplConfig::default()
    })?;
    assert!(meter.sample_interval() <= Duration::from_secs(1));
    Ok(())
}

/// Makes `file` unreadable: mode 000 for an ordinary user, a directory in its place for root
/// (root reads any mode).
fn make_unreadable(file: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(file, fs::Permissions::from_mode(0o000))?;
    if fs::read_to_string(file).is_ok() {
        fs::remove_file(file)?;
        fs::create_dir(file)?;
    }
    Ok(())
}

#[test]
fn unreadable_counter_gives_a_reason_and_composite_falls_back() -> TestResult {
    let dir = tempfile::tempdir()?;
    let zones = server_tree(dir.path())?;
    make_unreadable(&zones[0].join("energy_uj"))?;

    match RaplMeter::detect(&config(dir.path())) {
        Err(EnergyError::Unreadable { path, reason }) => {
            assert!(path.ends_with("intel-rapl:0/energy_uj"), "{path}");
            assert!(!reason.is_empty());
        }
        other => return Err(format!("expected Unreadable, got {other:?}").into()),
    }

    let composite = CompositeMeter::detect(&MeterConfig {
        rapl: config(dir.path()),
        ..MeterConfig::default()
    })?;
    let cpu = &composite.choices()[0];
    assert_eq!(cpu.part, Part::Cpu);
    assert_eq!(cpu.source, "estimate");
    assert_eq!(cpu.provenance, Some(Provenance::Estimated));
    assert!(
        cpu.notes.iter().any(|n| n.contains("energy_uj")),
        "{:?}",
        cpu.notes
    );
    let report = composite.start()?.finish()?;
    assert!(report.has_estimates());
    Ok(())
}

#[test]
fn missing_dram_zone_estimates_memory() -> TestResult {
    let dir = tempfile::tempdir()?;
    let pkg = zone(dir.path(), "intel-rapl:0", "package-0", 0, MAX)?;
    zone(dir.path(), "intel-rapl:0:0", "core", 0, MAX)?;
    zone(dir.path(), "intel-rapl:0:1", "uncore", 0, MAX)?;

    let rapl = RaplMeter::detect(&config(dir.path()))?;
    assert!(!rapl.has_dram());
    assert_eq!(rapl.zones().len(), 1);

    let composite = CompositeMeter::detect(&MeterConfig {
        rapl: config(dir.path()),
        ..MeterConfig::default()
    })?;
    let choices = composite.choices();
    assert_eq!(choices[0].source, "rapl");
    assert_eq!(choices[0].provenance, Some(Provenance::Measured));
    assert_eq!(choices[1].part, Part::Memory);
    assert_eq!(choices[1].source, "estimate");
    assert!(choices[1].notes.iter().any(|n| n.contains("dram")));

    let window = composite.start()?;
    set_energy(&pkg, 7_000_000)?;
    std::thread::sleep(Duration::from_millis(50));
    let report = window.finish()?;
    let kinds: Vec<(Component, Provenance)> = report
        .components
        .iter()
        .map(|c| (c.component.clone(), c.provenance))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (Component::CpuPackage(0), Provenance::Measured),
            (Component::Ram, Provenance::Estimated)
        ]
    );
    assert_eq!(joules_of(&report, &Component::CpuPackage(0)), Some(7.0));
    let ram = joules_of(&report, &Component::Ram).ok_or("no ram")?;
    assert!(ram > 0.0, "installed memory draws power: {ram}");
    Ok(())
}

#[test]
fn psys_on_request_replaces_package_and_dram() -> TestResult {
    let dir = tempfile::tempdir()?;
    let zones = server_tree(dir.path())?;
    let meter = RaplMeter::detect(&RaplConfig {
        include_psys: true,
        ..config(dir.path())
    })?;
    assert!(meter.has_platform());
    let window = meter.start()?;
    set_energy(&zones[5], 10_000_000)?;
    std::thread::sleep(Duration::from_millis(20));
    let report = window.finish()?;
    assert_eq!(report.components.len(), 1);
    assert_eq!(joules_of(&report, &Component::Platform), Some(1.0));
    Ok(())
}

#[test]
fn psys_requested_but_absent_falls_back_to_packages() -> TestResult {
    let dir = tempfile::tempdir()?;
    zone(dir.path(), "intel-rapl:0", "package-0", 0, MAX)?;
    let psys = RaplConfig {
        include_psys: true,
        ..config(dir.path())
    };
    assert!(matches!(
        RaplMeter::detect(&psys),
        Err(EnergyError::NotAvailable { .. })
    ));
    let composite = CompositeMeter::detect(&MeterConfig {
        rapl: psys,
        ..MeterConfig::default()
    })?;
    assert_eq!(composite.choices()[0].source, "rapl");
    Ok(())
}

#[test]
fn missing_tree_is_not_available() -> TestResult {
    let dir = tempfile::tempdir()?;
    let absent = dir.path().join("no-such-powercap");
    match RaplMeter::detect(&config(&absent)) {
        Err(EnergyError::NotAvailable {
            source_name,
            reason,
        }) => {
            assert_eq!(source_name, "rapl");
            assert!(reason.contains("no-such-powercap"), "{reason}");
        }
        other => return Err(format!("expected NotAvailable, got {other:?}").into()),
    }
    // An empty tree (a VM with the driver loaded but no zones) is not available either.
    assert!(matches!(
        RaplMeter::detect(&config(dir.path())),
        Err(EnergyError::NotAvailable { .. })
    ));
    Ok(())
}

#[test]
fn garbage_counter_is_unreadable() -> TestResult {
    let dir = tempfile::tempdir()?;
    let pkg = zone(dir.path(), "intel-rapl:0", "package-0", 0, MAX)?;
    fs::write(pkg.join("energy_uj"), "not a number\n")?;
    assert!(matches!(
        RaplMeter::detect(&config(dir.path())),
        Err(EnergyError::Unreadable { .. })
    ));
    Ok(())
}
