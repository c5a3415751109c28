//! Observed (evaluation-based) metrics of one candidate network.

use crate::MetricsError;
use crate::codes::Metric;
use serde::{Deserialize, Serialize};

/// What was measured on one candidate: the evaluation-based metrics of Table 1 (A1, A2, E1, E2,
/// F, P) and what the paper reports besides (test accuracy, inference energy, latency, size, MACs).
///
/// Accuracies are fractions in `[0, 1]`; energies of Table 1 in kWh (as the thresholds); FPS in
/// images/s. Optional fields are absent when not measured.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Observed {
    /// A1: training accuracy (fraction).
    pub a1: f64,
    /// A2: validation accuracy (fraction).
    pub a2: f64,
    /// E1: energy used to train and evaluate the training set, kWh.
    pub e1_kwh: f64,
    /// E2: energy used to evaluate the validation set, kWh.
    pub e2_kwh: f64,
    /// F: inference throughput, images/s.
    pub fps: f64,
    /// P: number of trainable parameters.
    pub params: u64,
    /// Test-set accuracy (fraction), when evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_accuracy: Option<f64>,
    /// Inference energy per image, joules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference_energy_per_image_j: Option<f64>,
    /// Median single-batch inference latency, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_p50_ms: Option<f64>,
    /// 95th-percentile single-batch inference latency, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_p95_ms: Option<f64>,
    /// Size of the stored model, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_size_bytes: Option<u64>,
    /// Multiply-accumulate operations of one forward pass of one image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub macs: Option<u64>,
}

/// Joules in one kWh.
pub const JOULES_PER_KWH: f64 = 3.6e6;

impl Observed {
    /// Observed metrics with the six values of Table 1 and nothing else measured.
    pub fn new(a1: f64, a2: f64, e1_kwh: f64, e2_kwh: f64, fps: f64, params: u64) -> Self {
        Observed {
            a1,
            a2,
            e1_kwh,
            e2_kwh,
            fps,
            params,
            ..Observed::default()
        }
    }

    /// The value of one metric of Table 1 (`P` as a float).
    pub fn get(&self, m: Metric) -> f64 {
        match m {
            Metric::TrainAccuracy => self.a1,
            Metric::ValidationAccuracy => self.a2,
            Metric::TrainEnergy => self.e1_kwh,
            Metric::ValidationEnergy => self.e2_kwh,
            Metric::Fps => self.fps,
            // Parameter counts stay far below 2^53, where f64 is exact.
            Metric::Params => self.params as f64,
        }
    }

    /// Inference energy per image in kWh (the unit of the paper's tables), when measured.
    pub fn inference_energy_per_image_kwh(&self) -> Option<f64> {
        self.inference_energy_per_image_j
            .map(|j| j / JOULES_PER_KWH)
    }

    /// Checks the measured values: accuracies in `[0, 1]`, energies, FPS, latencies finite and
    /// not negative. The error names the first invalid field (e.g. `observed.a2`).
    pub fn validate(&self) -> Result<(), MetricsError> {
        let unit = |field, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(MetricsError::InvalidField {
                    field,
                    value: v,
                    reason: "must be in [0, 1]",
                })
            }
        };
        let non_negative = |field, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(MetricsError::InvalidField {
                    field,
                    value: v,
                    reason: "must be a finite number, not negative",
                })
            }
        };
        unit("observed.a1", self.a1)?;
        unit("observed.a2", self.a2)?;
        non_negative("observed.e1_kwh", self.e1_kwh)?;
        non_negative("observed.e2_kwh", self.e2_kwh)?;
        non_negative("observed.fps", self.fps)?;
        if let Some(v) = self.test_accuracy {
            unit("observed.test_accuracy", v)?;
        }
        if let Some(v) = self.inference_energy_per_image_j {
            non_negative("observed.inference_energy_per_image_j", v)?;
        }
        if let Some(v) = self.latency_p50_ms {
            non_negative("observed.latency_p50_ms", v)?;
        }
        if let Some(v) = self.latency_p95_ms {
            non_negative("observed.latency_p95_ms", v)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_by_code_and_validation() {
        let o = Observed::new(0.9, 0.8, 2e-3, 1e-5, 12000.0, 582_000);
        assert_eq!(o.get(Metric::TrainAccuracy), 0.9);
        assert_eq!(o.get(Metric::ValidationEnergy), 1e-5);
        assert_eq!(o.get(Metric::Params), 582_000.0);
        assert!(o.validate().is_ok());
        let bad = Observed { a2: 1.2, ..o };
        let err = bad
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(err, "observed.a2 = 1.2 is invalid: must be in [0, 1]");
        let bad = Observed { fps: f64::NAN, ..o };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn inference_energy_converts_to_kwh() {
        let o = Observed {
            inference_energy_per_image_j: Some(3.6),
            ..Observed::default()
        };
        assert_eq!(o.inference_energy_per_image_kwh(), Some(1e-6));
    }

    #[test]
    fn optional_fields_are_omitted_and_default_when_absent() -> Result<(), serde_json::Error> {
        let o = Observed::new(0.5, 0.4, 1e-3, 1e-5, 100.0, 10);
        let json = serde_json::to_string(&o)?;
        assert!(!json.contains("macs"), "{json}");
        assert_eq!(serde_json::from_str::<Observed>(&json)?, o);
        Ok(())
    }
}
