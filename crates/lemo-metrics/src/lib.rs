//! LeMo-NADe metrics: the user-defined metrics of Table 1 (priorities, thresholds), the observed
//! metrics of a candidate, the combined model effectiveness of equation 1 with a swappable
//! normalisation, the Pareto front, and the paper's presets (Table 4, appendix configurations).
//!
//! ```
//! use lemo_metrics::{Effectiveness, Observed, PaperDataset};
//!
//! let user = PaperDataset::Cifar10.appendix_configuration();
//! let observed = Observed::new(0.97, 0.90, 2e-3, 1e-5, 25_000.0, 600_000);
//! let cm = Effectiveness::of(&user, &observed).cm;
//! assert!(cm > 0.0);
//! ```

#![warn(clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod codes;
mod curve;
mod effectiveness;
mod error;
mod observed;
mod pareto;
mod presets;
mod user;

pub use codes::{Metric, Priority, Threshold};
pub use curve::{DEFAULT_CURVE_EXPONENT, EPOCH_CURVE_EXPONENT, LearningCurve};
pub use effectiveness::{
    Effectiveness, LinearRatio, Normalisation, NormalisationChoice, RunRange, SaturatingRatio,
};
pub use error::MetricsError;
pub use observed::{JOULES_PER_KWH, Observed};
pub use pareto::{Goal, Objective, dominates, pareto_front};
pub use presets::{PaperDataset, TABLE4_SETTINGS, table4_setting};
pub use user::{DEFAULT_OT, DEFAULT_UT, EffectivenessWeights, Priorities, Thresholds, UserMetrics};
