//! The meters that run on any machine pass the testkit's energy meter conformance suite.

use lemo_energy::{
    CompositeMeter, EnergyError, EstimateConfig, EstimateMeter, MeterConfig, NoMeter,
};
use lemo_testkit::check_meter;

#[test]
fn the_null_meter_conforms() {
    assert_eq!(check_meter(&NoMeter), Ok(()));
}

#[test]
fn the_estimate_meter_conforms() -> Result<(), EnergyError> {
    let meter = EstimateMeter::new(EstimateConfig::default())?;
    assert_eq!(check_meter(&meter), Ok(()));
    Ok(())
}

#[test]
fn the_detected_composite_meter_conforms() -> Result<(), EnergyError> {
    let meter = CompositeMeter::detect(&MeterConfig::default())?;
    assert_eq!(check_meter(&meter), Ok(()));
    Ok(())
}
