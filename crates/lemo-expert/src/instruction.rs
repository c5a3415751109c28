//! The fifteen instructions of the expert system (paper, Table 2).

use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use std::str::FromStr;

/// One instruction the expert system can give the architect (paper, Table 2).
///
/// Serialised as its paper code (`"ACL"`, `"ASC"`, ...); read case-insensitively (`"acl"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Instruction {
    /// ACL: add a convolutional layer.
    #[serde(rename = "ACL")]
    AddConvLayer,
    /// ASC: add a skip connection.
    #[serde(rename = "ASC")]
    AddSkipConnection,
    /// ADL: add a dense layer.
    #[serde(rename = "ADL")]
    AddDenseLayer,
    /// RCL: reduce convolutional layers.
    #[serde(rename = "RCL")]
    ReduceConvLayer,
    /// RSC: reduce skip connections.
    #[serde(rename = "RSC")]
    ReduceSkipConnection,
    /// RDL: reduce dense layers.
    #[serde(rename = "RDL")]
    ReduceDenseLayer,
    /// AD: add a dropout layer.
    #[serde(rename = "AD")]
    AddDropout,
    /// AMK: add more kernels (filters) to convolutions.
    #[serde(rename = "AMK")]
    AddMoreKernels,
    /// AWI: add a weight initialiser.
    #[serde(rename = "AWI")]
    AddWeightInitializer,
    /// AR: add regularisation.
    #[serde(rename = "AR")]
    AddRegularization,
    /// RK: reduce the number of kernels (filters).
    #[serde(rename = "RK")]
    ReduceKernels,
    /// RD: reduce dropout.
    #[serde(rename = "RD")]
    ReduceDropout,
    /// AMN: add more neurons to dense layers.
    #[serde(rename = "AMN")]
    AddMoreNeurons,
    /// RN: reduce neurons of dense layers.
    #[serde(rename = "RN")]
    ReduceNeurons,
    /// RR: reduce regularisation.
    #[serde(rename = "RR")]
    ReduceRegularization,
}

impl Instruction {
    /// All fifteen instructions in the paper's order (Algorithm 2, line 2).
    pub const ALL: [Instruction; 15] = [
        Instruction::AddConvLayer,
        Instruction::AddSkipConnection,
        Instruction::AddDenseLayer,
        Instruction::ReduceConvLayer,
        Instruction::ReduceSkipConnection,
        Instruction::ReduceDenseLayer,
        Instruction::AddDropout,
        Instruction::AddMoreKernels,
        Instruction::AddWeightInitializer,
        Instruction::AddRegularization,
        Instruction::ReduceKernels,
        Instruction::ReduceDropout,
        Instruction::AddMoreNeurons,
        Instruction::ReduceNeurons,
        Instruction::ReduceRegularization,
    ];

    /// The paper's code for this instruction, e.g. `"ACL"`.
    pub fn code(self) -> &'static str {
        match self {
            Instruction::AddConvLayer => "ACL",
            Instruction::AddSkipConnection => "ASC",
            Instruction::AddDenseLayer => "ADL",
            Instruction::ReduceConvLayer => "RCL",
            Instruction::ReduceSkipConnection => "RSC",
            Instruction::ReduceDenseLayer => "RDL",
            Instruction::AddDropout => "AD",
            Instruction::AddMoreKernels => "AMK",
            Instruction::AddWeightInitializer => "AWI",
            Instruction::AddRegularization => "AR",
            Instruction::ReduceKernels => "RK",
            Instruction::ReduceDropout => "RD",
            Instruction::AddMoreNeurons => "AMN",
            Instruction::ReduceNeurons => "RN",
            Instruction::ReduceRegularization => "RR",
        }
    }

    /// The paper's description (Table 2), e.g. `"add convolutional layer"`.
    pub fn description(self) -> &'static str {
        match self {
            Instruction::AddConvLayer => "add convolutional layer",
            Instruction::AddSkipConnection => "add skip connection",
            Instruction::AddDenseLayer => "add dense layer",
            Instruction::ReduceConvLayer => "reduce convolutional layer",
            Instruction::ReduceSkipConnection => "reduce skip connection",
            Instruction::ReduceDenseLayer => "reduce dense layer",
            Instruction::AddDropout => "add dropout layer",
            Instruction::AddMoreKernels => "add more kernel",
            Instruction::AddWeightInitializer => "add weight initializer",
            Instruction::AddRegularization => "add regularization",
            Instruction::ReduceKernels => "reduce number of kernel",
            Instruction::ReduceDropout => "reduce dropout layer",
            Instruction::AddMoreNeurons => "add more neurons",
            Instruction::ReduceNeurons => "reduce neurons",
            Instruction::ReduceRegularization => "reduce regularization",
        }
    }

    /// An imperative phrase ready to be placed in an LLM prompt.
    pub fn phrase(self) -> &'static str {
        match self {
            Instruction::AddConvLayer => {
                "Add a convolutional layer (with batch normalisation and an activation)."
            }
            Instruction::AddSkipConnection => {
                "Add a skip (residual) connection around a block of layers."
            }
            Instruction::AddDenseLayer => {
                "Add a dense (fully connected) hidden layer before the classifier."
            }
            Instruction::ReduceConvLayer => "Remove a convolutional layer.",
            Instruction::ReduceSkipConnection => "Remove a skip (residual) connection.",
            Instruction::ReduceDenseLayer => "Remove a dense hidden layer.",
            Instruction::AddDropout => "Add a dropout layer (or raise a dropout rate).",
            Instruction::AddMoreKernels => {
                "Increase the number of filters (kernels) in the convolutional layers."
            }
            Instruction::AddWeightInitializer => {
                "Set an explicit weight initialiser (e.g. he_normal) on the weighted layers."
            }
            Instruction::AddRegularization => {
                "Add L2 weight regularisation to the weighted layers."
            }
            Instruction::ReduceKernels => {
                "Reduce the number of filters (kernels) in the convolutional layers."
            }
            Instruction::ReduceDropout => "Remove a dropout layer (or lower a dropout rate).",
            Instruction::AddMoreNeurons => {
                "Increase the number of neurons in the dense hidden layers."
            }
            Instruction::ReduceNeurons => {
                "Reduce the number of neurons in the dense hidden layers."
            }
            Instruction::ReduceRegularization => "Reduce or remove L2 weight regularisation.",
        }
    }

    /// The instruction this one conflicts with (paper, Table 2); AWI has none.
    pub fn conflict(self) -> Option<Instruction> {
        use Instruction::*;
        match self {
            AddConvLayer => Some(ReduceConvLayer),
            AddSkipConnection => Some(ReduceSkipConnection),
            AddDenseLayer => Some(ReduceDenseLayer),
            ReduceConvLayer => Some(AddConvLayer),
            ReduceSkipConnection => Some(AddSkipConnection),
            ReduceDenseLayer => Some(AddDenseLayer),
            AddDropout => Some(ReduceDropout),
            AddMoreKernels => Some(ReduceKernels),
            AddWeightInitializer => None,
            AddRegularization => Some(ReduceRegularization),
            ReduceKernels => Some(AddMoreKernels),
            ReduceDropout => Some(AddDropout),
            AddMoreNeurons => Some(ReduceNeurons),
            ReduceNeurons => Some(AddMoreNeurons),
            ReduceRegularization => Some(AddRegularization),
        }
    }

    /// Position in [`Instruction::ALL`] (the paper's order), used to break ties deterministically.
    pub fn index(self) -> usize {
        Instruction::ALL
            .iter()
            .position(|i| *i == self)
            .unwrap_or(Instruction::ALL.len())
    }
}

impl fmt::Display for Instruction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// An instruction code that is not one of the paper's fifteen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown instruction `{0}`; expected one of ACL ASC ADL RCL RSC RDL AD AMK AWI AR RK RD AMN RN RR"
)]
pub struct UnknownInstruction(pub String);

impl FromStr for Instruction {
    type Err = UnknownInstruction;

    /// Parses a paper code, case-insensitively (`"acl"`, `"ACL"`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        Instruction::ALL
            .into_iter()
            .find(|i| i.code().eq_ignore_ascii_case(t))
            .ok_or_else(|| UnknownInstruction(s.to_string()))
    }
}

impl<'de> Deserialize<'de> for Instruction {
    /// Reads a paper code, case-insensitively, as [`FromStr`] does.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = String::deserialize(d)?;
        code.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicts_are_symmetric_and_awi_has_none() {
        for i in Instruction::ALL {
            if let Some(c) = i.conflict() {
                assert_eq!(c.conflict(), Some(i), "{i}");
                assert_ne!(c, i);
            } else {
                assert_eq!(i, Instruction::AddWeightInitializer);
            }
        }
    }

    #[test]
    fn codes_round_trip() {
        for (n, i) in Instruction::ALL.into_iter().enumerate() {
            assert_eq!(i.code().parse::<Instruction>(), Ok(i));
            assert_eq!(i.index(), n);
            let json = serde_json::to_string(&i).expect("serialise");
            assert_eq!(json, format!("\"{}\"", i.code()));
            let lower: Instruction =
                serde_json::from_str(&json.to_lowercase()).expect("deserialise");
            assert_eq!(lower, i);
        }
        assert!("XYZ".parse::<Instruction>().is_err());
    }
}
