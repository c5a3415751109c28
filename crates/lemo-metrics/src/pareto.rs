//! Pareto front of candidates over chosen objectives.

use crate::{MetricsError, Observed};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Whether an objective is to be maximised or minimised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Goal {
    /// Larger is better.
    Maximise,
    /// Smaller is better.
    Minimise,
}

/// One objective a candidate is judged on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// A1, maximised.
    TrainAccuracy,
    /// A2, maximised.
    ValidationAccuracy,
    /// Test accuracy, maximised (missing when not evaluated).
    TestAccuracy,
    /// F (images/s), maximised.
    Fps,
    /// E1 (kWh), minimised.
    TrainEnergy,
    /// E2 (kWh), minimised.
    ValidationEnergy,
    /// Inference energy per image (J), minimised.
    InferenceEnergy,
    /// Latency p50 (ms), minimised.
    Latency,
    /// P, minimised.
    Params,
    /// Model size (bytes), minimised.
    ModelSize,
    /// MACs per image, minimised.
    Macs,
}

impl Objective {
    /// Every objective.
    pub const ALL: [Objective; 11] = [
        Objective::TrainAccuracy,
        Objective::ValidationAccuracy,
        Objective::TestAccuracy,
        Objective::Fps,
        Objective::TrainEnergy,
        Objective::ValidationEnergy,
        Objective::InferenceEnergy,
        Objective::Latency,
        Objective::Params,
        Objective::ModelSize,
        Objective::Macs,
    ];

    /// The default objectives: maximise validation accuracy and FPS, minimise training energy and
    /// parameters.
    pub const DEFAULT: [Objective; 4] = [
        Objective::ValidationAccuracy,
        Objective::Fps,
        Objective::TrainEnergy,
        Objective::Params,
    ];

    /// Whether this objective is maximised or minimised.
    pub fn goal(self) -> Goal {
        match self {
            Objective::TrainAccuracy
            | Objective::ValidationAccuracy
            | Objective::TestAccuracy
            | Objective::Fps => Goal::Maximise,
            _ => Goal::Minimise,
        }
    }

    /// The candidate's value for this objective; `None` when it was not measured.
    pub fn value(self, o: &Observed) -> Option<f64> {
        let v = match self {
            Objective::TrainAccuracy => Some(o.a1),
            Objective::ValidationAccuracy => Some(o.a2),
            Objective::TestAccuracy => o.test_accuracy,
            Objective::Fps => Some(o.fps),
            Objective::TrainEnergy => Some(o.e1_kwh),
            Objective::ValidationEnergy => Some(o.e2_kwh),
            Objective::InferenceEnergy => o.inference_energy_per_image_j,
            Objective::Latency => o.latency_p50_ms,
            Objective::Params => Some(o.params as f64),
            Objective::ModelSize => o.model_size_bytes.map(|b| b as f64),
            Objective::Macs => o.macs.map(|m| m as f64),
        };
        v.filter(|x| !x.is_nan())
    }

    /// The value oriented so that larger is better; a missing value is the worst possible.
    fn score(self, o: &Observed) -> f64 {
        match (self.goal(), self.value(o)) {
            (Goal::Maximise, Some(v)) => v,
            (Goal::Minimise, Some(v)) => -v,
            (_, None) => f64::NEG_INFINITY,
        }
    }

    /// The snake_case name (as serialised), e.g. `validation_accuracy`.
    pub fn name(self) -> &'static str {
        match self {
            Objective::TrainAccuracy => "train_accuracy",
            Objective::ValidationAccuracy => "validation_accuracy",
            Objective::TestAccuracy => "test_accuracy",
            Objective::Fps => "fps",
            Objective::TrainEnergy => "train_energy",
            Objective::ValidationEnergy => "validation_energy",
            Objective::InferenceEnergy => "inference_energy",
            Objective::Latency => "latency",
            Objective::Params => "params",
            Objective::ModelSize => "model_size",
            Objective::Macs => "macs",
        }
    }
}

impl fmt::Display for Objective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Objective {
    type Err = MetricsError;

    /// Parses the snake_case name, case-insensitively (`-` accepted for `_`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().replace('-', "_");
        Objective::ALL
            .into_iter()
            .find(|o| o.name().eq_ignore_ascii_case(&t))
            .ok_or_else(|| MetricsError::UnknownCode {
                kind: "objective",
                code: s.to_string(),
                expected: "train_accuracy validation_accuracy test_accuracy fps train_energy \
                           validation_energy inference_energy latency params model_size macs",
            })
    }
}

/// Whether `a` Pareto-dominates `b`: at least as good on every objective and strictly better on
/// one. A missing (or NaN) value counts as the worst possible.
pub fn dominates(a: &Observed, b: &Observed, objectives: &[Objective]) -> bool {
    let mut strictly = false;
    for o in objectives {
        let (x, y) = (o.score(a), o.score(b));
        if x < y {
            return false;
        }
        if x > y {
            strictly = true;
        }
    }
    strictly
}

/// Indices (in input order) of the candidates no other candidate dominates over `objectives`.
/// Equal candidates are all kept.
pub fn pareto_front<'a>(
    candidates: impl IntoIterator<Item = &'a Observed>,
    objectives: &[Objective],
) -> Vec<usize> {
    let all: Vec<&Observed> = candidates.into_iter().collect();
    all.iter()
        .enumerate()
        .filter(|&(_, &this)| !all.iter().any(|other| dominates(other, this, objectives)))
        .map(|(i, _)| i)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_keeps_the_trade_offs_and_drops_the_dominated() {
        let accurate = Observed::new(0.9, 0.9, 5e-3, 1e-5, 1_000.0, 5_000_000);
        let fast = Observed::new(0.7, 0.7, 1e-3, 1e-5, 20_000.0, 50_000);
        let worse = Observed::new(0.7, 0.65, 2e-3, 1e-5, 10_000.0, 60_000); // dominated by fast
        let twin = fast;
        let front = pareto_front([&accurate, &fast, &worse, &twin], &Objective::DEFAULT);
        assert_eq!(front, vec![0, 1, 3]);
        assert!(dominates(&fast, &worse, &Objective::DEFAULT));
        assert!(!dominates(&fast, &twin, &Objective::DEFAULT));
        // On accuracy alone only the accurate one remains.
        assert_eq!(
            pareto_front([&accurate, &fast, &worse], &[Objective::ValidationAccuracy]),
            vec![0]
        );
        assert_eq!(pareto_front([&accurate, &fast], &[]), vec![0, 1]);
    }

    #[test]
    fn missing_values_are_worst() {
        let measured = Observed {
            test_accuracy: Some(0.1),
            ..Observed::default()
        };
        let unmeasured = Observed::default();
        assert!(dominates(
            &measured,
            &unmeasured,
            &[Objective::TestAccuracy]
        ));
        assert!(!dominates(
            &unmeasured,
            &measured,
            &[Objective::TestAccuracy]
        ));
    }

    #[test]
    fn objectives_parse_by_name() -> Result<(), Box<dyn std::error::Error>> {
        for o in Objective::ALL {
            assert_eq!(
                o.name()
                    .to_uppercase()
                    .replace('_', "-")
                    .parse::<Objective>()?,
                o
            );
            assert_eq!(serde_json::to_string(&o)?, format!("\"{}\"", o.name()));
        }
        assert!("speed".parse::<Objective>().is_err());
        Ok(())
    }
}
