//! The weighted instruction map of Algorithm 2 ([`Command`]) and its conflict-free, ordered form
//! after Algorithm 3 ([`ResolvedCommand`]).

use crate::Instruction;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A weight for each of the fifteen instructions (Algorithm 2's `cmd`), all 0 at first.
///
/// Serialised as a map from paper code to weight (`{"ACL": 1.0, ...}`); a code left out of the
/// map is 0.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(
    from = "BTreeMap<Instruction, f64>",
    into = "BTreeMap<Instruction, f64>"
)]
pub struct Command {
    weights: [f64; 15],
}

impl Command {
    /// The empty command: every weight 0 (Algorithm 2, line 2).
    pub fn new() -> Self {
        Command::default()
    }

    /// The weight of one instruction.
    // `index` is a position in `Instruction::ALL`, whose 15 entries match the 15 weights.
    #[allow(clippy::indexing_slicing)]
    pub fn weight(&self, instruction: Instruction) -> f64 {
        self.weights[instruction.index()]
    }

    /// Adds `weight` to an instruction (`cmd[X] ← cmd[X] + w`).
    // `index` is a position in `Instruction::ALL`, whose 15 entries match the 15 weights.
    #[allow(clippy::indexing_slicing)]
    pub fn add(&mut self, instruction: Instruction, weight: f64) {
        self.weights[instruction.index()] += weight;
    }

    /// Sets the weight of an instruction.
    // `index` is a position in `Instruction::ALL`, whose 15 entries match the 15 weights.
    #[allow(clippy::indexing_slicing)]
    pub fn set(&mut self, instruction: Instruction, weight: f64) {
        self.weights[instruction.index()] = weight;
    }

    /// Every instruction with its weight, in the paper's order (zeros included).
    pub fn iter(&self) -> impl Iterator<Item = (Instruction, f64)> + '_ {
        Instruction::ALL
            .into_iter()
            .zip(self.weights.iter().copied())
    }

    /// Whether no instruction has a positive weight.
    pub fn is_empty(&self) -> bool {
        !self.weights.iter().any(|w| *w > 0.0)
    }

    /// Resolves conflicts (Algorithm 3); see [`resolve`].
    pub fn resolve(&self) -> ResolvedCommand {
        resolve(self)
    }
}

impl FromIterator<(Instruction, f64)> for Command {
    /// Sums the weights given for each instruction.
    fn from_iter<I: IntoIterator<Item = (Instruction, f64)>>(iter: I) -> Self {
        let mut cmd = Command::new();
        for (i, w) in iter {
            cmd.add(i, w);
        }
        cmd
    }
}

impl From<BTreeMap<Instruction, f64>> for Command {
    fn from(map: BTreeMap<Instruction, f64>) -> Self {
        map.into_iter().collect()
    }
}

impl From<Command> for BTreeMap<Instruction, f64> {
    fn from(cmd: Command) -> Self {
        cmd.iter().collect()
    }
}

/// One kept instruction of a resolved command, with its weight.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WeightedInstruction {
    /// The instruction.
    pub instruction: Instruction,
    /// Its weight (always positive).
    pub weight: f64,
}

/// A command after conflict resolution (Algorithm 3's `Refined_Cmd`): only positive weights, no
/// two conflicting instructions, ordered by weight descending (ties in the paper's order).
///
/// Serialised as a list of `{instruction, weight}`; a deserialised list is resolved again, so the
/// invariants hold whatever the input.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(from = "Vec<WeightedInstruction>", into = "Vec<WeightedInstruction>")]
pub struct ResolvedCommand {
    entries: Vec<WeightedInstruction>,
}

/// Conflict resolution, Algorithm 3 of the paper.
///
/// Sorts the instructions by weight, descending; walks them in that order, keeps each one whose
/// weight is still positive, and sets the weight of its conflicting partner (Table 2,
/// [`Instruction::conflict`]) to 0 when the partner comes later.
///
/// Ties are broken deterministically by the paper's order ([`Instruction::index`]: ACL first,
/// RR last), as the paper's Python (a stable sort of the `cmd` dict, built in that order) does.
/// So of two conflicting instructions with equal weight the one listed first in Table 2 is kept
/// (ACL over RCL, AD over RD, AMK over RK, AR over RR, ...). NaN weights are never kept.
pub fn resolve(cmd: &Command) -> ResolvedCommand {
    let mut order: Vec<(Instruction, f64)> = cmd.iter().collect();
    order.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.index().cmp(&b.0.index())));
    let mut entries = Vec::new();
    let mut rest: &mut [(Instruction, f64)] = &mut order;
    while let Some((&mut (instruction, weight), after)) =
        std::mem::take(&mut rest).split_first_mut()
    {
        rest = after;
        if weight > 0.0 {
            entries.push(WeightedInstruction {
                instruction,
                weight,
            });
            for later in rest.iter_mut() {
                if instruction.conflict() == Some(later.0) {
                    later.1 = 0.0;
                }
            }
        }
    }
    ResolvedCommand { entries }
}

impl From<Vec<WeightedInstruction>> for ResolvedCommand {
    fn from(entries: Vec<WeightedInstruction>) -> Self {
        resolve(
            &entries
                .into_iter()
                .map(|e| (e.instruction, e.weight))
                .collect(),
        )
    }
}

impl From<ResolvedCommand> for Vec<WeightedInstruction> {
    fn from(r: ResolvedCommand) -> Self {
        r.entries
    }
}

impl ResolvedCommand {
    /// The kept instructions with their weights, heaviest first.
    pub fn entries(&self) -> &[WeightedInstruction] {
        &self.entries
    }

    /// The kept instructions, heaviest first.
    pub fn instructions(&self) -> impl Iterator<Item = Instruction> + '_ {
        self.entries.iter().map(|e| e.instruction)
    }

    /// Whether the expert system asks for no change.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The number of kept instructions.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Back to a weight map (the dropped instructions at 0).
    pub fn to_command(&self) -> Command {
        self.entries
            .iter()
            .map(|e| (e.instruction, e.weight))
            .collect()
    }

    /// The instructions as ordered natural-language text for the next LLM prompt, one numbered
    /// line each, heaviest first, with code and weight:
    ///
    /// ```text
    /// Change the architecture as follows, most important first (the weight says how strongly each change is asked for):
    /// 1. Add a convolutional layer (with batch normalisation and an activation). [ACL, weight 1.00]
    /// ```
    ///
    /// An empty command renders as a request to keep the architecture.
    pub fn render(&self) -> String {
        if self.entries.is_empty() {
            return "The expert system asks for no change: keep the architecture as it is, \
                    making only changes you are confident improve it."
                .to_string();
        }
        let mut out = String::from(
            "Change the architecture as follows, most important first \
             (the weight says how strongly each change is asked for):",
        );
        for (n, e) in self.entries.iter().enumerate() {
            out.push_str(&format!(
                "\n{}. {} [{}, weight {:.2}]",
                n + 1,
                e.instruction.phrase(),
                e.instruction.code(),
                e.weight
            ));
        }
        out
    }
}

impl fmt::Display for ResolvedCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Instruction::*;

    fn kept(r: &ResolvedCommand) -> Vec<(Instruction, f64)> {
        r.entries()
            .iter()
            .map(|e| (e.instruction, e.weight))
            .collect()
    }

    #[test]
    fn algorithm_3_sorts_keeps_positive_and_zeroes_the_lighter_partner() {
        // ACL 0.6 vs RCL 1.0: RCL is heavier and wins; RK 1.0 vs AMK 0.6: RK wins;
        // AD 0.2 has no partner raised; AWI 0 is dropped.
        let cmd: Command = [
            (AddConvLayer, 0.6),
            (ReduceConvLayer, 1.0),
            (AddMoreKernels, 0.6),
            (ReduceKernels, 1.0),
            (AddDropout, 0.2),
            (AddWeightInitializer, 0.0),
        ]
        .into_iter()
        .collect();
        let r = resolve(&cmd);
        assert_eq!(
            kept(&r),
            vec![
                (ReduceConvLayer, 1.0),
                (ReduceKernels, 1.0),
                (AddDropout, 0.2)
            ]
        );
    }

    #[test]
    fn ties_go_to_the_paper_order() {
        let cmd: Command = [
            (ReduceRegularization, 0.5),
            (AddRegularization, 0.5),
            (ReduceDropout, 0.5),
            (AddDropout, 0.5),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            kept(&resolve(&cmd)),
            vec![(AddDropout, 0.5), (AddRegularization, 0.5)]
        );
    }

    #[test]
    fn negative_and_nan_weights_are_dropped() {
        let mut cmd = Command::new();
        cmd.set(AddConvLayer, -1.0);
        cmd.set(AddDenseLayer, f64::NAN);
        cmd.set(ReduceDenseLayer, 0.1);
        assert_eq!(kept(&resolve(&cmd)), vec![(ReduceDenseLayer, 0.1)]);
        assert!(Command::new().resolve().is_empty());
    }

    #[test]
    fn render_is_ordered_and_weighted() {
        let cmd: Command = [(AddSkipConnection, 0.4), (AddConvLayer, 1.0)]
            .into_iter()
            .collect();
        let text = cmd.resolve().render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[1].starts_with("1. Add a convolutional layer"),
            "{text}"
        );
        assert!(lines[1].ends_with("[ACL, weight 1.00]"), "{text}");
        assert!(lines[2].ends_with("[ASC, weight 0.40]"), "{text}");
        assert!(Command::new().resolve().render().contains("no change"));
    }

    #[test]
    fn command_serialises_as_a_code_map() -> Result<(), serde_json::Error> {
        let cmd: Command = [(AddConvLayer, 1.0), (ReduceNeurons, 0.25)]
            .into_iter()
            .collect();
        let json = serde_json::to_string(&cmd)?;
        assert!(json.starts_with("{\"ACL\":1.0,\"ASC\":0.0"), "{json}");
        assert_eq!(serde_json::from_str::<Command>(&json)?, cmd);
        assert_eq!(
            serde_json::from_str::<Command>("{\"RN\":0.25,\"ACL\":1}")?,
            cmd
        );
        let r = cmd.resolve();
        let json = serde_json::to_string(&r)?;
        assert_eq!(
            json,
            r#"[{"instruction":"ACL","weight":1.0},{"instruction":"RN","weight":0.25}]"#
        );
        assert_eq!(serde_json::from_str::<ResolvedCommand>(&json)?, r);
        Ok(())
    }
}
