//! User-defined metrics of Table 1: priorities, thresholds, and the weights of equation 1.

use crate::MetricsError;
use crate::codes::{Priority, Threshold};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The five priorities of Table 1, each in `[0, 1]`: how much weight the rules about a metric add
/// to the instructions they raise (Algorithm 2). A priority left out of a file is 0 (its rules
/// stay silent).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Priorities {
    /// PA1: priority of the training accuracy.
    #[serde(default)]
    pub pa1: f64,
    /// PA2: priority of the validation accuracy.
    #[serde(default)]
    pub pa2: f64,
    /// PE1: priority of the training energy.
    #[serde(default)]
    pub pe1: f64,
    /// PE2: priority of the validation energy.
    #[serde(default)]
    pub pe2: f64,
    /// PF: priority of the inference FPS.
    #[serde(default)]
    pub pf: f64,
}

impl Priorities {
    /// Priorities from the paper's order `[PA1, PA2, PE1, PE2, PF]` (as in Table 4).
    pub const fn new(pa1: f64, pa2: f64, pe1: f64, pe2: f64, pf: f64) -> Self {
        Priorities {
            pa1,
            pa2,
            pe1,
            pe2,
            pf,
        }
    }

    /// The value of one priority.
    pub fn get(&self, p: Priority) -> f64 {
        match p {
            Priority::TrainAccuracy => self.pa1,
            Priority::ValidationAccuracy => self.pa2,
            Priority::TrainEnergy => self.pe1,
            Priority::ValidationEnergy => self.pe2,
            Priority::Fps => self.pf,
        }
    }

    /// Checks that every priority is a finite number in `[0, 1]`.
    pub fn validate(&self) -> Result<(), MetricsError> {
        in_unit("priorities.pa1", self.pa1)?;
        in_unit("priorities.pa2", self.pa2)?;
        in_unit("priorities.pe1", self.pe1)?;
        in_unit("priorities.pe2", self.pe2)?;
        in_unit("priorities.pf", self.pf)
    }
}

/// The thresholds of Table 1. Accuracies and the over/underfitting margins are fractions in
/// `[0, 1]`; energies are in kWh (as the paper's appendix: TE1 = 10⁻³ kWh); FPS in images/s.
///
/// A threshold left out of a file takes its [`Default`]: the paper's CIFAR-10 appendix
/// configuration (TA1 0.95, TA2 0.92, TF 20000, TE1 10⁻³ kWh, TE2 10⁻⁵ kWh) and this project's
/// OT 0.10, UT 0.05 (the paper gives no values for OT and UT).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// TA1: training accuracy threshold (fraction).
    pub ta1: f64,
    /// TA2: validation accuracy threshold (fraction).
    pub ta2: f64,
    /// TE1: training energy threshold, kWh.
    pub te1_kwh: f64,
    /// TE2: validation energy threshold, kWh.
    pub te2_kwh: f64,
    /// TF: inference FPS threshold, images/s.
    pub tf_fps: f64,
    /// OT: overfitting threshold; the overfitting rule fires when A1 - A2 > OT.
    pub ot: f64,
    /// UT: underfitting threshold; the underfitting rule fires when A2 - A1 > UT.
    pub ut: f64,
}

/// This project's default overfitting threshold OT (the paper gives none): a 10-point gap.
pub const DEFAULT_OT: f64 = 0.10;
/// This project's default underfitting threshold UT (the paper gives none): a 5-point gap.
pub const DEFAULT_UT: f64 = 0.05;

impl Default for Thresholds {
    fn default() -> Self {
        crate::presets::PaperDataset::Cifar10.thresholds()
    }
}

impl Thresholds {
    /// The value of one threshold (in the unit of its field).
    pub fn get(&self, t: Threshold) -> f64 {
        match t {
            Threshold::TrainAccuracy => self.ta1,
            Threshold::ValidationAccuracy => self.ta2,
            Threshold::TrainEnergy => self.te1_kwh,
            Threshold::ValidationEnergy => self.te2_kwh,
            Threshold::Fps => self.tf_fps,
            Threshold::Overfitting => self.ot,
            Threshold::Underfitting => self.ut,
        }
    }

    /// Checks every threshold: accuracies and margins in `[0, 1]`, energies and FPS finite and
    /// not negative.
    pub fn validate(&self) -> Result<(), MetricsError> {
        in_unit("thresholds.ta1", self.ta1)?;
        in_unit("thresholds.ta2", self.ta2)?;
        non_negative("thresholds.te1_kwh", self.te1_kwh)?;
        non_negative("thresholds.te2_kwh", self.te2_kwh)?;
        non_negative("thresholds.tf_fps", self.tf_fps)?;
        in_unit("thresholds.ot", self.ot)?;
        in_unit("thresholds.ut", self.ut)
    }
}

/// The weights of equation 1: `CM = AW·(Ta + Va) + FW·NF − EW·(TNE + VNE)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EffectivenessWeights {
    /// AW: weight of the accuracies.
    pub aw: f64,
    /// FW: weight of the normalised FPS.
    pub fw: f64,
    /// EW: weight of the normalised energies.
    pub ew: f64,
}

impl EffectivenessWeights {
    /// The weights this project derives from priorities when none are given:
    /// `AW = (PA1 + PA2) / 2`, `FW = PF`, `EW = (PE1 + PE2) / 2`, so that each term of equation 1
    /// can weigh at most the priority mass the user gave its metrics.
    pub fn from_priorities(p: &Priorities) -> Self {
        EffectivenessWeights {
            aw: (p.pa1 + p.pa2) / 2.0,
            fw: p.pf,
            ew: (p.pe1 + p.pe2) / 2.0,
        }
    }

    /// Checks that every weight is finite and not negative.
    pub fn validate(&self) -> Result<(), MetricsError> {
        non_negative("weights.aw", self.aw)?;
        non_negative("weights.fw", self.fw)?;
        non_negative("weights.ew", self.ew)
    }
}

/// The user-defined metrics of Table 1 plus the weights of equation 1.
///
/// Serialised as three tables, with the paper's codes as keys (units in the key where there is
/// one):
///
/// ```toml
/// [priorities]            # each in [0, 1]; a missing one is 0
/// pa1 = 0.0
/// pa2 = 1.0
/// [thresholds]            # a missing one takes the CIFAR-10 appendix value
/// ta1 = 0.95
/// ta2 = 0.92
/// te1_kwh = 0.001
/// te2_kwh = 0.00001
/// tf_fps = 20000.0
/// ot = 0.1
/// ut = 0.05
/// [weights]               # optional: derived from the priorities when absent
/// aw = 1.0
/// fw = 0.0
/// ew = 0.0
/// ```
///
/// Every deserialisation (TOML, JSON, or embedded in another serde document) validates the
/// values; an invalid one is an error naming the field. [`Default`] is all priorities 0 with the
/// default [`Thresholds`] and derived weights.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(try_from = "RawUserMetrics")]
pub struct UserMetrics {
    /// PA1, PA2, PE1, PE2, PF.
    pub priorities: Priorities,
    /// TA1, TA2, TE1, TE2, TF, OT, UT.
    pub thresholds: Thresholds,
    /// AW, FW, EW of equation 1; `None` derives them from the priorities
    /// ([`EffectivenessWeights::from_priorities`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weights: Option<EffectivenessWeights>,
}

/// The unvalidated shape of [`UserMetrics`], as read from a file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUserMetrics {
    #[serde(default)]
    priorities: Priorities,
    #[serde(default)]
    thresholds: Thresholds,
    #[serde(default)]
    weights: Option<EffectivenessWeights>,
}

impl TryFrom<RawUserMetrics> for UserMetrics {
    type Error = MetricsError;

    fn try_from(raw: RawUserMetrics) -> Result<Self, Self::Error> {
        let user = UserMetrics {
            priorities: raw.priorities,
            thresholds: raw.thresholds,
            weights: raw.weights,
        };
        user.validate()?;
        Ok(user)
    }
}

impl UserMetrics {
    /// User metrics from priorities and thresholds, with weights derived from the priorities.
    pub fn new(priorities: Priorities, thresholds: Thresholds) -> Self {
        UserMetrics {
            priorities,
            thresholds,
            weights: None,
        }
    }

    /// The value of one priority.
    pub fn priority(&self, p: Priority) -> f64 {
        self.priorities.get(p)
    }

    /// The value of one threshold.
    pub fn threshold(&self, t: Threshold) -> f64 {
        self.thresholds.get(t)
    }

    /// AW, FW, EW: the explicit weights, or those derived from the priorities.
    pub fn effectiveness_weights(&self) -> EffectivenessWeights {
        self.weights
            .unwrap_or_else(|| EffectivenessWeights::from_priorities(&self.priorities))
    }

    /// Checks every field; the error names the first invalid one.
    pub fn validate(&self) -> Result<(), MetricsError> {
        self.priorities.validate()?;
        self.thresholds.validate()?;
        if let Some(w) = &self.weights {
            w.validate()?;
        }
        Ok(())
    }

    /// Parses and validates user metrics written in TOML.
    pub fn from_toml_str(text: &str) -> Result<Self, MetricsError> {
        Ok(toml::from_str(text)?)
    }

    /// Parses and validates user metrics written in JSON.
    pub fn from_json_str(text: &str) -> Result<Self, MetricsError> {
        Ok(serde_json::from_str(text)?)
    }

    /// Reads and validates a `.toml` or `.json` file (chosen by extension).
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, MetricsError> {
        let path = path.as_ref();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let read = || {
            std::fs::read_to_string(path).map_err(|source| MetricsError::Io {
                path: path.to_path_buf(),
                source,
            })
        };
        match ext.as_deref() {
            Some("toml") => Self::from_toml_str(&read()?),
            Some("json") => Self::from_json_str(&read()?),
            _ => Err(MetricsError::UnknownFormat {
                path: path.to_path_buf(),
            }),
        }
    }

    /// Writes the metrics as TOML (the format [`UserMetrics::from_toml_str`] reads).
    pub fn to_toml_string(&self) -> Result<String, MetricsError> {
        Ok(toml::to_string(self)?)
    }

    /// Writes the metrics as pretty JSON.
    pub fn to_json_string(&self) -> Result<String, MetricsError> {
        Ok(serde_json::to_string_pretty(self)?)
    }
}

fn in_unit(field: &'static str, value: f64) -> Result<(), MetricsError> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(MetricsError::InvalidField {
            field,
            value,
            reason: "must be in [0, 1]",
        })
    }
}

fn non_negative(field: &'static str, value: f64) -> Result<(), MetricsError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(MetricsError::InvalidField {
            field,
            value,
            reason: "must be a finite number, not negative",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_priority_out_of_range_is_an_error_naming_the_field() {
        let err = UserMetrics::from_toml_str("[priorities]\npa2 = 1.5\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("priorities.pa2 = 1.5 is invalid: must be in [0, 1]"),
            "{err}"
        );
    }

    #[test]
    fn a_negative_threshold_is_an_error_naming_the_field() {
        let err = UserMetrics::from_json_str(r#"{"thresholds": {"te2_kwh": -1e-5}}"#)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("thresholds.te2_kwh = -0.00001 is invalid"),
            "{err}"
        );
        let err = UserMetrics::from_toml_str("[weights]\naw = 1\nfw = -2\new = 0\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("weights.fw = -2 is invalid"), "{err}");
    }

    #[test]
    fn an_unknown_or_mistyped_field_is_an_error_naming_it() {
        let err = UserMetrics::from_toml_str("[priorities]\npa3 = 0.5\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("pa3"), "{err}");
        let err = UserMetrics::from_toml_str("[thresholds]\nta1 = \"high\"\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn missing_fields_take_documented_defaults() -> Result<(), MetricsError> {
        let user = UserMetrics::from_toml_str("[priorities]\npa2 = 1.0\n")?;
        assert_eq!(user.priorities, Priorities::new(0.0, 1.0, 0.0, 0.0, 0.0));
        assert_eq!(user.thresholds, Thresholds::default());
        assert_eq!(user.thresholds.ot, DEFAULT_OT);
        assert_eq!(user.thresholds.ut, DEFAULT_UT);
        assert_eq!(user.weights, None);
        assert_eq!(
            user.effectiveness_weights(),
            EffectivenessWeights {
                aw: 0.5,
                fw: 0.0,
                ew: 0.0
            }
        );
        Ok(())
    }

    #[test]
    fn explicit_weights_win_over_derived_ones() -> Result<(), MetricsError> {
        let user = UserMetrics::from_toml_str("[weights]\naw = 1\nfw = 0.5\new = 0.25\n")?;
        assert_eq!(
            user.effectiveness_weights(),
            EffectivenessWeights {
                aw: 1.0,
                fw: 0.5,
                ew: 0.25
            }
        );
        Ok(())
    }

    #[test]
    fn files_load_by_extension() -> Result<(), Box<dyn std::error::Error>> {
        let dir = std::env::temp_dir().join(format!("lemo-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let user = UserMetrics::new(
            Priorities::new(0.3, 0.3, 0.2, 0.2, 0.0),
            Thresholds::default(),
        );
        std::fs::write(dir.join("m.toml"), user.to_toml_string()?)?;
        std::fs::write(dir.join("m.json"), user.to_json_string()?)?;
        assert_eq!(UserMetrics::from_path(dir.join("m.toml"))?, user);
        assert_eq!(UserMetrics::from_path(dir.join("m.json"))?, user);
        assert!(matches!(
            UserMetrics::from_path(dir.join("m.yaml")),
            Err(MetricsError::UnknownFormat { .. })
        ));
        assert!(matches!(
            UserMetrics::from_path(dir.join("absent.toml")),
            Err(MetricsError::Io { .. })
        ));
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
