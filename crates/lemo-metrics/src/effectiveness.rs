//! Combined model effectiveness (paper, equation 1) and the normalisation of FPS and energies.
//!
//! `CM = AW·(Ta + Va) + FW·NF − EW·(TNE + VNE)`
//!
//! The paper does not define NF, TNE, VNE. The default here, [`SaturatingRatio`], normalises each
//! against the user's own threshold: `x / (x + threshold)`. It is
//! - fixed for the whole run (it depends only on the user metrics, never on the other candidates),
//!   so a CM computed at iteration 3 stays comparable with one computed at iteration 30, which
//!   Algorithm 1's `CM > BCM` test needs;
//! - bounded in `[0, 1)`, so no term of equation 1 can swamp the others whatever the hardware's
//!   energy scale (a range-free `E1/TE1` may be 100 on a slow CPU and swamp the accuracies);
//! - equal to ½ exactly at the threshold, monotone, and never flat, so every improvement counts;
//! - unit-free: only the ratio to the threshold matters (kWh or J alike).
//!
//! [`LinearRatio`] (`x / threshold`, optionally capped) and [`RunRange`] (min–max over the run's
//! candidates) are the alternatives; implement [`Normalisation`] for another.

use crate::{EffectivenessWeights, Observed, UserMetrics};
use serde::{Deserialize, Serialize};

/// How FPS and energies are normalised for equation 1 (NF, TNE, VNE). `Send + Sync`, like every
/// seam the loop holds.
pub trait Normalisation: Send + Sync {
    /// NF: normalised FPS (higher is better).
    fn fps(&self, fps: f64, user: &UserMetrics) -> f64;
    /// TNE: normalised training energy (lower is better).
    fn train_energy(&self, e1_kwh: f64, user: &UserMetrics) -> f64;
    /// VNE: normalised validation energy (lower is better).
    fn validation_energy(&self, e2_kwh: f64, user: &UserMetrics) -> f64;
}

/// The default normalisation: `x / (x + threshold)` against the user's TF, TE1, TE2.
///
/// 0 for `x = 0`, ½ at the threshold, tending to 1 far above it. A zero threshold gives 1 for
/// any positive value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SaturatingRatio;

fn saturating(x: f64, threshold: f64) -> f64 {
    if x.is_nan() || x <= 0.0 {
        0.0
    } else if threshold <= 0.0 || x.is_infinite() {
        1.0
    } else {
        x / (x + threshold)
    }
}

impl Normalisation for SaturatingRatio {
    fn fps(&self, fps: f64, user: &UserMetrics) -> f64 {
        saturating(fps, user.thresholds.tf_fps)
    }
    fn train_energy(&self, e1_kwh: f64, user: &UserMetrics) -> f64 {
        saturating(e1_kwh, user.thresholds.te1_kwh)
    }
    fn validation_energy(&self, e2_kwh: f64, user: &UserMetrics) -> f64 {
        saturating(e2_kwh, user.thresholds.te2_kwh)
    }
}

/// `x / threshold` against TF, TE1, TE2, capped at `cap` when given (e.g. `NF = min(F/TF, 1)`).
///
/// 1 at the threshold. A zero threshold gives `cap` (or 1 without a cap) for positive values.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LinearRatio {
    /// Upper bound of every normalised value; `None` leaves them unbounded.
    pub cap: Option<f64>,
}

impl LinearRatio {
    fn ratio(&self, x: f64, threshold: f64) -> f64 {
        let r = if x.is_nan() || x <= 0.0 {
            0.0
        } else if threshold <= 0.0 {
            self.cap.unwrap_or(1.0)
        } else {
            x / threshold
        };
        self.cap.map_or(r, |c| r.min(c))
    }
}

impl Normalisation for LinearRatio {
    fn fps(&self, fps: f64, user: &UserMetrics) -> f64 {
        self.ratio(fps, user.thresholds.tf_fps)
    }
    fn train_energy(&self, e1_kwh: f64, user: &UserMetrics) -> f64 {
        self.ratio(e1_kwh, user.thresholds.te1_kwh)
    }
    fn validation_energy(&self, e2_kwh: f64, user: &UserMetrics) -> f64 {
        self.ratio(e2_kwh, user.thresholds.te2_kwh)
    }
}

/// The normalisation a run's configuration names: one that stays fixed for the whole run, so
/// Algorithm 1's `CM > BCM` test keeps its meaning ([`RunRange`] is therefore not offered).
///
/// In TOML: `normalisation = { kind = "saturating" }` (the default) or
/// `normalisation = { kind = "linear", cap = 1.0 }`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum NormalisationChoice {
    /// [`SaturatingRatio`]: `x / (x + threshold)`.
    #[default]
    Saturating,
    /// [`LinearRatio`]: `x / threshold`, capped at `cap` when given.
    Linear {
        /// Upper bound of every normalised value.
        #[serde(default)]
        cap: Option<f64>,
    },
}

impl NormalisationChoice {
    /// The normalisation itself.
    pub fn build(&self) -> Box<dyn Normalisation> {
        match *self {
            NormalisationChoice::Saturating => Box::new(SaturatingRatio),
            NormalisationChoice::Linear { cap } => Box::new(LinearRatio { cap }),
        }
    }
}

/// Min–max normalisation over a set of candidates (`(x − min) / (max − min)`, clamped to
/// `[0, 1]`; 0 when the range is empty).
///
/// Meaningful for ranking a finished run's candidates against each other; *not* for Algorithm 1's
/// running `CM > BCM` test, since a new candidate moves the range and changes every earlier CM.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunRange {
    fps: (f64, f64),
    e1: (f64, f64),
    e2: (f64, f64),
}

impl RunRange {
    /// The ranges of F, E1, E2 over the given candidates (non-finite values are skipped).
    pub fn from_observed<'a>(candidates: impl IntoIterator<Item = &'a Observed>) -> Self {
        let empty = (f64::INFINITY, f64::NEG_INFINITY);
        let widen = |(lo, hi): (f64, f64), x: f64| {
            if x.is_finite() {
                (lo.min(x), hi.max(x))
            } else {
                (lo, hi)
            }
        };
        let (mut fps, mut e1, mut e2) = (empty, empty, empty);
        for o in candidates {
            fps = widen(fps, o.fps);
            e1 = widen(e1, o.e1_kwh);
            e2 = widen(e2, o.e2_kwh);
        }
        RunRange { fps, e1, e2 }
    }

    fn scale((lo, hi): (f64, f64), x: f64) -> f64 {
        if hi > lo && x.is_finite() {
            ((x - lo) / (hi - lo)).clamp(0.0, 1.0)
        } else {
            0.0
        }
    }
}

impl Normalisation for RunRange {
    fn fps(&self, fps: f64, _user: &UserMetrics) -> f64 {
        Self::scale(self.fps, fps)
    }
    fn train_energy(&self, e1_kwh: f64, _user: &UserMetrics) -> f64 {
        Self::scale(self.e1, e1_kwh)
    }
    fn validation_energy(&self, e2_kwh: f64, _user: &UserMetrics) -> f64 {
        Self::scale(self.e2, e2_kwh)
    }
}

/// The combined model effectiveness of one candidate (equation 1) with its parts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Effectiveness {
    /// CM itself.
    pub cm: f64,
    /// The AW, FW, EW used.
    pub weights: EffectivenessWeights,
    /// NF: normalised FPS.
    pub nf: f64,
    /// TNE: normalised training energy.
    pub tne: f64,
    /// VNE: normalised validation energy.
    pub vne: f64,
}

impl Effectiveness {
    /// CM of `observed` under `user`'s weights with the default normalisation
    /// ([`SaturatingRatio`]).
    pub fn of(user: &UserMetrics, observed: &Observed) -> Self {
        Self::with(user, observed, &SaturatingRatio)
    }

    /// CM of `observed` under `user`'s weights with the given normalisation.
    pub fn with(user: &UserMetrics, observed: &Observed, norm: &dyn Normalisation) -> Self {
        let weights = user.effectiveness_weights();
        let nf = norm.fps(observed.fps, user);
        let tne = norm.train_energy(observed.e1_kwh, user);
        let vne = norm.validation_energy(observed.e2_kwh, user);
        let cm =
            weights.aw * (observed.a1 + observed.a2) + weights.fw * nf - weights.ew * (tne + vne);
        Effectiveness {
            cm,
            weights,
            nf,
            tne,
            vne,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Priorities, Thresholds};

    fn user(weights: EffectivenessWeights) -> UserMetrics {
        UserMetrics {
            weights: Some(weights),
            ..UserMetrics::default()
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn equation_1_by_hand_with_the_default_normalisation() {
        // TF 20000, TE1 1e-3, TE2 1e-5 (CIFAR-10 appendix thresholds).
        let u = user(EffectivenessWeights {
            aw: 1.0,
            fw: 0.5,
            ew: 0.25,
        });
        let o = Observed::new(0.9, 0.8, 3e-3, 1e-5, 20_000.0, 1000);
        let e = Effectiveness::of(&u, &o);
        assert!(close(e.nf, 0.5));
        assert!(close(e.tne, 0.75)); // 3e-3 / (3e-3 + 1e-3)
        assert!(close(e.vne, 0.5));
        // 1·1.7 + 0.5·0.5 − 0.25·1.25
        assert!(close(e.cm, 1.7 + 0.25 - 0.3125), "{}", e.cm);
    }

    #[test]
    fn docs_worked_example() {
        // docs/metrics.md: setting 2, CIFAR-10 thresholds.
        let u = crate::PaperDataset::Cifar10.setting(2).unwrap_or_default();
        let o = Observed::new(0.90, 0.76, 2e-3, 2e-5, 15_000.0, 2_000_000);
        let e = Effectiveness::of(&u, &o);
        assert!(close(e.weights.aw, 0.3) && close(e.weights.fw, 0.0) && close(e.weights.ew, 0.2));
        assert!(close(e.nf, 15.0 / 35.0));
        assert!(close(e.tne, 2.0 / 3.0) && close(e.vne, 2.0 / 3.0));
        assert!(close(e.cm, 0.3 * 1.66 - 0.2 * 4.0 / 3.0));
        assert_eq!(format!("{:.4}", e.cm), "0.2313");
    }

    #[test]
    fn linear_ratio_caps_and_run_range_scales() {
        let u = user(EffectivenessWeights {
            aw: 0.0,
            fw: 1.0,
            ew: 1.0,
        });
        let o = Observed::new(0.5, 0.5, 2e-3, 5e-6, 40_000.0, 1);
        let capped = Effectiveness::with(&u, &o, &LinearRatio { cap: Some(1.0) });
        assert_eq!((capped.nf, capped.tne, capped.vne), (1.0, 1.0, 0.5));
        let free = Effectiveness::with(&u, &o, &LinearRatio { cap: None });
        assert_eq!((free.nf, free.tne), (2.0, 2.0));

        let a = Observed::new(0.5, 0.5, 1e-3, 1e-5, 100.0, 1);
        let b = Observed::new(0.5, 0.5, 3e-3, 3e-5, 300.0, 1);
        let range = RunRange::from_observed([&a, &b]);
        let mid = Observed::new(0.5, 0.5, 2e-3, 2e-5, 200.0, 1);
        let e = Effectiveness::with(&u, &mid, &range);
        assert!(close(e.nf, 0.5) && close(e.tne, 0.5) && close(e.vne, 0.5));
        let single = RunRange::from_observed([&a]);
        assert_eq!(Effectiveness::with(&u, &a, &single).nf, 0.0);
    }

    #[test]
    fn derived_weights_follow_priorities() {
        // Setting 4 of Table 4: only energies matter, so the lower-energy model wins even with
        // a far lower accuracy.
        let u = UserMetrics::new(
            Priorities::new(0.0, 0.0, 0.5, 0.5, 0.0),
            Thresholds::default(),
        );
        let small = Observed::new(0.6, 0.55, 5e-4, 5e-6, 20_000.0, 10_000);
        let big = Observed::new(0.99, 0.9, 5e-3, 5e-5, 5_000.0, 5_000_000);
        assert!(Effectiveness::of(&u, &small).cm > Effectiveness::of(&u, &big).cm);
        // Setting 3: only validation accuracy matters.
        let u = UserMetrics::new(
            Priorities::new(0.0, 1.0, 0.0, 0.0, 0.0),
            Thresholds::default(),
        );
        assert!(Effectiveness::of(&u, &small).cm < Effectiveness::of(&u, &big).cm);
    }

    #[test]
    fn saturating_edges() {
        assert_eq!(saturating(0.0, 1.0), 0.0);
        assert_eq!(saturating(f64::NAN, 1.0), 0.0);
        assert_eq!(saturating(5.0, 0.0), 1.0);
        assert_eq!(saturating(f64::INFINITY, 1.0), 1.0);
        assert!(saturating(1e9, 1.0) < 1.0);
    }
}
