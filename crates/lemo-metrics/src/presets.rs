//! The paper's numbers: Table 4's settings 1-5 (priorities) and the appendix configurations of
//! CIFAR-10, CIFAR-100 and ImageNet16-120 (thresholds, priorities, LLM temperature).

use crate::user::{DEFAULT_OT, DEFAULT_UT};
use crate::{MetricsError, Priorities, Thresholds, UserMetrics};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Table 4: priorities `[PA1, PA2, PE1, PE2, PF]` of experiment settings 1 to 5 (index 0 is
/// setting 1).
pub const TABLE4_SETTINGS: [Priorities; 5] = [
    Priorities::new(0.4, 0.6, 0.0, 0.0, 0.0),
    Priorities::new(0.3, 0.3, 0.2, 0.2, 0.0),
    Priorities::new(0.0, 1.0, 0.0, 0.0, 0.0),
    Priorities::new(0.0, 0.0, 0.5, 0.5, 0.0),
    Priorities::new(0.3, 0.4, 0.0, 0.0, 0.3),
];

/// The priorities of Table 4's setting `n` (1 to 5); `None` for any other number.
pub fn table4_setting(n: u8) -> Option<Priorities> {
    TABLE4_SETTINGS.get(usize::from(n).checked_sub(1)?).copied()
}

/// A dataset of the paper's experiments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PaperDataset {
    /// CIFAR-10 (10 classes, 32×32).
    #[serde(rename = "cifar10")]
    Cifar10,
    /// CIFAR-100 (100 classes, 32×32).
    #[serde(rename = "cifar100")]
    Cifar100,
    /// ImageNet16-120 (120 classes, 16×16).
    #[serde(rename = "imagenet16-120")]
    ImageNet16x120,
}

impl PaperDataset {
    /// The three datasets.
    pub const ALL: [PaperDataset; 3] = [
        PaperDataset::Cifar10,
        PaperDataset::Cifar100,
        PaperDataset::ImageNet16x120,
    ];

    /// The short name, as parsed and serialised: `cifar10`, `cifar100`, `imagenet16-120`.
    pub fn name(self) -> &'static str {
        match self {
            PaperDataset::Cifar10 => "cifar10",
            PaperDataset::Cifar100 => "cifar100",
            PaperDataset::ImageNet16x120 => "imagenet16-120",
        }
    }

    /// The thresholds of the appendix configuration for this dataset (the text after Figures
    /// 3-5), with this project's OT and UT (the paper gives none).
    pub fn thresholds(self) -> Thresholds {
        let (ta1, ta2, tf_fps, te1_kwh, te2_kwh) = match self {
            PaperDataset::Cifar10 => (0.95, 0.92, 20_000.0, 1e-3, 1e-5),
            PaperDataset::Cifar100 => (0.90, 0.85, 20_000.0, 1e-2, 1e-4),
            PaperDataset::ImageNet16x120 => (0.70, 0.65, 22_000.0, 1e-3, 1e-5),
        };
        Thresholds {
            ta1,
            ta2,
            te1_kwh,
            te2_kwh,
            tf_fps,
            ot: DEFAULT_OT,
            ut: DEFAULT_UT,
        }
    }

    /// The priorities of the appendix configuration for this dataset.
    pub fn appendix_priorities(self) -> Priorities {
        match self {
            PaperDataset::Cifar10 => Priorities::new(0.0, 1.0, 0.0, 0.0, 0.0),
            PaperDataset::Cifar100 | PaperDataset::ImageNet16x120 => {
                Priorities::new(0.4, 0.6, 0.0, 0.0, 0.0)
            }
        }
    }

    /// The LLM temperature of the appendix configuration for this dataset.
    pub fn appendix_temperature(self) -> f64 {
        match self {
            PaperDataset::Cifar10 => 0.6,
            PaperDataset::Cifar100 | PaperDataset::ImageNet16x120 => 0.4,
        }
    }

    /// The appendix configuration for this dataset as user metrics (weights derived from the
    /// priorities).
    pub fn appendix_configuration(self) -> UserMetrics {
        UserMetrics::new(self.appendix_priorities(), self.thresholds())
    }

    /// Table 4's setting `n` (1 to 5) with this dataset's appendix thresholds.
    pub fn setting(self, n: u8) -> Option<UserMetrics> {
        Some(UserMetrics::new(table4_setting(n)?, self.thresholds()))
    }
}

impl fmt::Display for PaperDataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for PaperDataset {
    type Err = MetricsError;

    /// Parses `cifar10`, `CIFAR-10`, `cifar100`, `imagenet16-120`, `ImageNet16_120`, ...
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let key: String = s
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_lowercase())
            .collect();
        match key.as_str() {
            "cifar10" => Ok(PaperDataset::Cifar10),
            "cifar100" => Ok(PaperDataset::Cifar100),
            "imagenet16120" | "imagenet16" => Ok(PaperDataset::ImageNet16x120),
            _ => Err(MetricsError::UnknownCode {
                kind: "dataset",
                code: s.to_string(),
                expected: "cifar10 cifar100 imagenet16-120",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table4_is_the_papers() {
        let rows: Vec<[f64; 5]> = (1..=5)
            .filter_map(table4_setting)
            .map(|p| [p.pa1, p.pa2, p.pe1, p.pe2, p.pf])
            .collect();
        assert_eq!(
            rows,
            vec![
                [0.4, 0.6, 0.0, 0.0, 0.0],
                [0.3, 0.3, 0.2, 0.2, 0.0],
                [0.0, 1.0, 0.0, 0.0, 0.0],
                [0.0, 0.0, 0.5, 0.5, 0.0],
                [0.3, 0.4, 0.0, 0.0, 0.3],
            ]
        );
        assert_eq!(table4_setting(0), None);
        assert_eq!(table4_setting(6), None);
        for p in TABLE4_SETTINGS {
            assert!(p.validate().is_ok());
            let sum = p.pa1 + p.pa2 + p.pe1 + p.pe2 + p.pf;
            assert!((sum - 1.0).abs() < 1e-12, "every setting sums to 1");
        }
    }

    #[test]
    fn appendix_configurations_are_the_papers() {
        let c10 = PaperDataset::Cifar10.appendix_configuration();
        assert_eq!(c10.priorities, Priorities::new(0.0, 1.0, 0.0, 0.0, 0.0));
        let t = c10.thresholds;
        assert_eq!(
            (t.ta1, t.ta2, t.tf_fps, t.te1_kwh, t.te2_kwh),
            (0.95, 0.92, 20_000.0, 1e-3, 1e-5)
        );
        assert_eq!(PaperDataset::Cifar10.appendix_temperature(), 0.6);

        let c100 = PaperDataset::Cifar100.appendix_configuration();
        assert_eq!(c100.priorities, Priorities::new(0.4, 0.6, 0.0, 0.0, 0.0));
        let t = c100.thresholds;
        assert_eq!(
            (t.ta1, t.ta2, t.tf_fps, t.te1_kwh, t.te2_kwh),
            (0.90, 0.85, 20_000.0, 1e-2, 1e-4)
        );
        assert_eq!(PaperDataset::Cifar100.appendix_temperature(), 0.4);

        let inet = PaperDataset::ImageNet16x120.appendix_configuration();
        assert_eq!(inet.priorities, Priorities::new(0.4, 0.6, 0.0, 0.0, 0.0));
        let t = inet.thresholds;
        assert_eq!(
            (t.ta1, t.ta2, t.tf_fps, t.te1_kwh, t.te2_kwh),
            (0.70, 0.65, 22_000.0, 1e-3, 1e-5)
        );
        assert_eq!(PaperDataset::ImageNet16x120.appendix_temperature(), 0.4);

        for d in PaperDataset::ALL {
            assert!(d.appendix_configuration().validate().is_ok());
            assert_eq!(d.setting(3).map(|u| u.priorities), table4_setting(3));
        }
    }

    #[test]
    fn datasets_parse_loosely() -> Result<(), Box<dyn std::error::Error>> {
        assert_eq!("CIFAR-10".parse::<PaperDataset>()?, PaperDataset::Cifar10);
        assert_eq!("cifar100".parse::<PaperDataset>()?, PaperDataset::Cifar100);
        assert_eq!(
            "ImageNet16-120".parse::<PaperDataset>()?,
            PaperDataset::ImageNet16x120
        );
        assert!("mnist".parse::<PaperDataset>().is_err());
        for d in PaperDataset::ALL {
            assert_eq!(d.name().parse::<PaperDataset>()?, d);
            assert_eq!(serde_json::to_string(&d)?, format!("\"{}\"", d.name()));
        }
        Ok(())
    }
}
