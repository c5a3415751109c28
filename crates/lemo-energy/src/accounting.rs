//! The paper's accounting: kWh-PUE (equation 2), CO2e (equation 3), and energy per image.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::EnergyError;
use crate::{EnergyMeter, EnergyReport};

/// Joules in one kWh.
const JOULES_PER_KWH: f64 = 3.6e6;
/// Grams in one pound (avoirdupois).
const GRAMS_PER_LB: f64 = 453.592_37;

/// The shortest window a per-image inference energy figure is taken over: counters update
/// every millisecond or so and estimates sample at 200 ms, so shorter windows are noise.
pub const MIN_INFERENCE_WINDOW: Duration = Duration::from_secs(1);

/// Turns energy into the paper's figures: kWh-PUE = PUE x kWh (equation 2) and
/// CO2e = carbon intensity x kWh-PUE (equation 3).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Accounting {
    /// Power usage effectiveness of the data centre (the paper uses 1.58).
    pub pue: f64,
    /// Carbon intensity of electricity in grams CO2e per kWh (the paper's 0.954 lb/kWh is
    /// 432.7 g/kWh).
    pub carbon_g_per_kwh: f64,
}

impl Default for Accounting {
    fn default() -> Self {
        Self::paper()
    }
}

/// The paper's power figures for equation 2, in watts.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct PowerDraw {
    /// CPU power, `pc`.
    pub cpu_watts: f64,
    /// RAM power, `pr`.
    pub ram_watts: f64,
    /// Power of one GPU, `pg`.
    pub gpu_watts: f64,
    /// Number of GPUs, `g`.
    pub gpus: u32,
}

/// A report in the paper's units.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EnergyAccount {
    /// Energy drawn by the machine, in joules.
    pub joules: f64,
    /// The same in kWh.
    pub kwh: f64,
    /// kWh times PUE (equation 2).
    pub kwh_pue: f64,
    /// CO2e in grams (equation 3).
    pub co2e_grams: f64,
    /// CO2e in pounds (equation 3, the paper's unit).
    pub co2e_lbs: f64,
    /// Whether any figure behind it was estimated rather than measured.
    pub estimated: bool,
}

impl Accounting {
    /// The paper's constants: PUE 1.58 and 0.954 lb CO2e per kWh.
    pub fn paper() -> Self {
        Self {
            pue: 1.58,
            carbon_g_per_kwh: 0.954 * GRAMS_PER_LB,
        }
    }

    /// Accounting with a given PUE and carbon intensity (g CO2e per kWh).
    ///
    /// # Errors
    /// [`EnergyError::InvalidConfig`] when PUE is below 1 or the intensity is negative.
    pub fn new(pue: f64, carbon_g_per_kwh: f64) -> Result<Self, EnergyError> {
        let accounting = Self {
            pue,
            carbon_g_per_kwh,
        };
        accounting.validate()?;
        Ok(accounting)
    }

    /// Checks the values (for configurations read from files).
    ///
    /// # Errors
    /// [`EnergyError::InvalidConfig`] when PUE is below 1 or the intensity is negative.
    pub fn validate(&self) -> Result<(), EnergyError> {
        if !(self.pue.is_finite() && self.pue >= 1.0) {
            return Err(EnergyError::InvalidConfig(format!(
                "PUE must be at least 1, got {}",
                self.pue
            )));
        }
        if !(self.carbon_g_per_kwh.is_finite() && self.carbon_g_per_kwh >= 0.0) {
            return Err(EnergyError::InvalidConfig(format!(
                "carbon intensity must be non-negative, got {} g/kWh",
                self.carbon_g_per_kwh
            )));
        }
        Ok(())
    }

    /// Carbon intensity in pounds CO2e per kWh.
    pub fn carbon_lb_per_kwh(&self) -> f64 {
        self.carbon_g_per_kwh / GRAMS_PER_LB
    }

    /// kWh-PUE of `joules` (equation 2 with energy instead of power x time).
    pub fn kwh_pue(&self, joules: f64) -> f64 {
        self.pue * joules / JOULES_PER_KWH
    }

    /// Grams CO2e of `joules` (equation 3).
    pub fn co2e_grams(&self, joules: f64) -> f64 {
        self.carbon_g_per_kwh * self.kwh_pue(joules)
    }

    /// Pounds CO2e of `joules` (equation 3).
    pub fn co2e_lbs(&self, joules: f64) -> f64 {
        self.co2e_grams(joules) / GRAMS_PER_LB
    }

    /// Equation 2 as the paper writes it: `pt = PUE x t (pc + pr + g pg) / 1000`, `t` in hours.
    pub fn kwh_pue_from_power(&self, hours: f64, draw: &PowerDraw) -> f64 {
        self.pue * hours * (draw.cpu_watts + draw.ram_watts + f64::from(draw.gpus) * draw.gpu_watts)
            / 1000.0
    }

    /// The report in the paper's units.
    pub fn account(&self, report: &EnergyReport) -> EnergyAccount {
        let joules = report.total_joules();
        EnergyAccount {
            joules,
            kwh: joules / JOULES_PER_KWH,
            kwh_pue: self.kwh_pue(joules),
            co2e_grams: self.co2e_grams(joules),
            co2e_lbs: self.co2e_lbs(joules),
            estimated: report.has_estimates(),
        }
    }
}

/// Inference energy per image over a window of many batches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerImageEnergy {
    /// Images processed in the window.
    pub images: u64,
    /// The window's report.
    pub report: EnergyReport,
    /// Joules per image.
    pub joules_per_image: f64,
    /// kWh per image (before PUE).
    pub kwh_per_image: f64,
}

impl PerImageEnergy {
    /// kWh-PUE per image, the unit of the paper's inference energy.
    pub fn kwh_pue_per_image(&self, accounting: &Accounting) -> f64 {
        accounting.kwh_pue(self.joules_per_image)
    }

    /// Images per second over the window.
    pub fn images_per_second(&self) -> f64 {
        let secs = self.report.wall.as_secs_f64();
        if secs > 0.0 {
            self.images as f64 / secs
        } else {
            0.0
        }
    }
}

/// Energy per image of a window that processed `images` images.
///
/// # Errors
/// [`EnergyError::NoImages`] for zero images; [`EnergyError::WindowTooShort`] when the window
/// is shorter than [`MIN_INFERENCE_WINDOW`].
pub fn per_image(report: &EnergyReport, images: u64) -> Result<PerImageEnergy, EnergyError> {
    if images == 0 {
        return Err(EnergyError::NoImages);
    }
    if report.wall < MIN_INFERENCE_WINDOW {
        return Err(EnergyError::WindowTooShort {
            wall: report.wall,
            min: MIN_INFERENCE_WINDOW,
        });
    }
    let joules_per_image = report.total_joules() / images as f64;
    Ok(PerImageEnergy {
        images,
        report: report.clone(),
        joules_per_image,
        kwh_per_image: joules_per_image / JOULES_PER_KWH,
    })
}

/// Runs `batch` repeatedly inside one window until at least [`MIN_INFERENCE_WINDOW`] has
/// passed, and reports energy per image. `batch` returns how many images it processed.
///
/// # Errors
/// The first error of `batch` or of the meter; [`EnergyError::NoImages`] when the batches
/// processed no image.
pub fn measure_inference<M, E>(
    meter: &M,
    mut batch: impl FnMut() -> Result<u64, E>,
) -> Result<PerImageEnergy, E>
where
    M: EnergyMeter + ?Sized,
    E: From<EnergyError>,
{
    let window = meter.start()?;
    let started = Instant::now();
    let mut images = 0u64;
    while started.elapsed() < MIN_INFERENCE_WINDOW {
        images = images.saturating_add(batch()?);
    }
    let report = window.finish()?;
    Ok(per_image(&report, images)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Component, ComponentEnergy, Provenance};

    fn report(joules: f64, wall: Duration, provenance: Provenance) -> EnergyReport {
        EnergyReport {
            wall,
            components: vec![ComponentEnergy {
                component: Component::CpuPackage(0),
                joules,
                source: "test".to_string(),
                provenance,
            }],
        }
    }

    #[test]
    fn paper_constants() {
        let a = Accounting::paper();
        assert_eq!(a.pue, 1.58);
        assert!((a.carbon_lb_per_kwh() - 0.954).abs() < 1e-12);
        assert!((a.carbon_g_per_kwh - 432.727_121_98).abs() < 1e-6);
        assert_eq!(Accounting::default(), a);
    }

    #[test]
    fn equation_2_and_3_by_hand() {
        let a = Accounting::paper();
        // 3.6 MJ = 1 kWh -> 1.58 kWh-PUE -> 0.954 x 1.58 = 1.50732 lb.
        let acc = a.account(&report(
            3.6e6,
            Duration::from_secs(3600),
            Provenance::Measured,
        ));
        assert!((acc.kwh - 1.0).abs() < 1e-12);
        assert!((acc.kwh_pue - 1.58).abs() < 1e-12);
        assert!((acc.co2e_lbs - 1.507_32).abs() < 1e-9);
        assert!((acc.co2e_grams - 1.507_32 * 453.592_37).abs() < 1e-6);
        assert!(!acc.estimated);

        // The paper's form: 2 h at CPU 65 W + RAM 6 W + 1 GPU 250 W:
        // 1.58 x 2 x 321 / 1000 = 1.01436 kWh-PUE, 0.96770 lb.
        let draw = PowerDraw {
            cpu_watts: 65.0,
            ram_watts: 6.0,
            gpu_watts: 250.0,
            gpus: 1,
        };
        let pt = a.kwh_pue_from_power(2.0, &draw);
        assert!((pt - 1.014_36).abs() < 1e-12);
        // Same energy through joules: 321 W x 7200 s.
        assert!((a.kwh_pue(321.0 * 7200.0) - pt).abs() < 1e-12);
        assert!((a.co2e_lbs(321.0 * 7200.0) - 0.954 * 1.014_36).abs() < 1e-9);
    }

    #[test]
    fn configurable_constants() -> Result<(), EnergyError> {
        let a = Accounting::new(1.0, 100.0)?;
        assert!((a.co2e_grams(3.6e6) - 100.0).abs() < 1e-9);
        assert!(Accounting::new(0.9, 100.0).is_err());
        assert!(Accounting::new(1.2, -1.0).is_err());
        assert!(Accounting::new(f64::NAN, 1.0).is_err());
        Ok(())
    }

    #[test]
    fn per_image_needs_a_second_and_images() -> Result<(), EnergyError> {
        let r = report(20.0, Duration::from_secs(2), Provenance::Estimated);
        let p = per_image(&r, 1000)?;
        assert!((p.joules_per_image - 0.02).abs() < 1e-12);
        assert!((p.kwh_per_image - 0.02 / 3.6e6).abs() < 1e-18);
        assert!((p.kwh_pue_per_image(&Accounting::paper()) - 1.58 * 0.02 / 3.6e6).abs() < 1e-18);
        assert!((p.images_per_second() - 500.0).abs() < 1e-9);
        assert!(matches!(per_image(&r, 0), Err(EnergyError::NoImages)));
        let short = report(1.0, Duration::from_millis(500), Provenance::Measured);
        assert!(matches!(
            per_image(&short, 10),
            Err(EnergyError::WindowTooShort { .. })
        ));
        Ok(())
    }

    #[test]
    fn accounting_fills_missing_fields_with_paper_defaults()
    -> Result<(), Box<dyn std::error::Error>> {
        let a: Accounting = serde_json::from_str(r#"{"pue": 1.2}"#)?;
        assert_eq!(a.pue, 1.2);
        assert_eq!(a.carbon_g_per_kwh, Accounting::paper().carbon_g_per_kwh);
        Ok(())
    }
}
