//! The paper's metric codes (Table 1) as typed names: priorities (`PA1` ...), thresholds (`TA1` ...)
//! and evaluation-based metrics (`A1` ...). Rule books refer to metrics through these.

use crate::MetricsError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Defines a code enum with its paper codes, `ALL`, `code()`, `Display`, case-insensitive `FromStr`
/// and serde as the code.
macro_rules! code_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $kind:literal, $expected:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $code:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $code)] $variant, )+
        }

        impl $name {
            /// Every code, in the paper's order (Table 1).
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The paper's code, e.g. `"PA1"`.
            pub fn code(self) -> &'static str {
                match self { $($name::$variant => $code,)+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.code())
            }
        }

        impl FromStr for $name {
            type Err = MetricsError;

            /// Parses a paper code, case-insensitively.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let t = s.trim();
                $name::ALL
                    .iter()
                    .copied()
                    .find(|c| c.code().eq_ignore_ascii_case(t))
                    .ok_or_else(|| MetricsError::UnknownCode {
                        kind: $kind,
                        code: s.to_string(),
                        expected: $expected,
                    })
            }
        }
    };
}

code_enum! {
    /// A user-defined priority of Table 1: how much weight the rules about one metric add.
    Priority, "priority", "PA1 PA2 PE1 PE2 PF" {
        /// PA1: priority of the training accuracy.
        TrainAccuracy = "PA1",
        /// PA2: priority of the validation accuracy.
        ValidationAccuracy = "PA2",
        /// PE1: priority of the training energy.
        TrainEnergy = "PE1",
        /// PE2: priority of the validation energy.
        ValidationEnergy = "PE2",
        /// PF: priority of the FPS.
        Fps = "PF",
    }
}

code_enum! {
    /// A user-defined threshold of Table 1.
    Threshold, "threshold", "TA1 TA2 TE1 TE2 TF OT UT" {
        /// TA1: training accuracy threshold (fraction 0..1).
        TrainAccuracy = "TA1",
        /// TA2: validation accuracy threshold (fraction 0..1).
        ValidationAccuracy = "TA2",
        /// TE1: training energy threshold (kWh).
        TrainEnergy = "TE1",
        /// TE2: validation energy threshold (kWh).
        ValidationEnergy = "TE2",
        /// TF: FPS threshold (images/s).
        Fps = "TF",
        /// OT: overfitting threshold on A1 - A2 (fraction).
        Overfitting = "OT",
        /// UT: underfitting threshold on A2 - A1 (fraction).
        Underfitting = "UT",
    }
}

code_enum! {
    /// An evaluation-based metric of Table 1, measured on one candidate.
    Metric, "metric", "A1 A2 E1 E2 F P" {
        /// A1: training accuracy (fraction 0..1).
        TrainAccuracy = "A1",
        /// A2: validation accuracy (fraction 0..1).
        ValidationAccuracy = "A2",
        /// E1: training energy (kWh).
        TrainEnergy = "E1",
        /// E2: validation energy (kWh).
        ValidationEnergy = "E2",
        /// F: inference FPS (images/s).
        Fps = "F",
        /// P: number of parameters.
        Params = "P",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_parse_case_insensitively_and_serialise_as_codes()
    -> Result<(), Box<dyn std::error::Error>> {
        for p in Priority::ALL {
            assert_eq!(p.code().to_lowercase().parse::<Priority>()?, *p);
            assert_eq!(serde_json::to_string(p)?, format!("\"{}\"", p.code()));
        }
        for t in Threshold::ALL {
            assert_eq!(t.code().parse::<Threshold>()?, *t);
        }
        for m in Metric::ALL {
            assert_eq!(format!(" {m} ").parse::<Metric>()?, *m);
        }
        let err = "PA3".parse::<Priority>().err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("unknown priority `PA3`; expected one of PA1 PA2 PE1 PE2 PF")
        );
        Ok(())
    }
}
