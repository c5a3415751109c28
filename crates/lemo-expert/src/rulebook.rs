//! The [`RuleBook`] trait and the paper's rule book as code ([`PaperRuleBook`], Algorithm 2).

use crate::{Command, Instruction, ResolvedCommand};
use lemo_metrics::{Observed, UserMetrics};

/// A rule book: turns the user's metrics and a candidate's observed metrics into a weighted
/// instruction map (Algorithm 2's `NNGES`).
///
/// `Send + Sync`, like every seam the loop holds. The `lemo-testkit` crate's `check_rulebook`
/// checks an implementation against the rules every rule book must keep.
pub trait RuleBook: Send + Sync {
    /// A short name for logs and reports.
    fn name(&self) -> String;

    /// The weighted instructions (before conflict resolution).
    fn instructions(&self, user: &UserMetrics, observed: &Observed) -> Command;

    /// The names of the rules whose condition holds, in book order (for reports). Empty unless
    /// the book names its rules.
    fn fired(&self, _user: &UserMetrics, _observed: &Observed) -> Vec<String> {
        Vec::new()
    }

    /// The next command: [`RuleBook::instructions`] resolved by Algorithm 3.
    fn advise(&self, user: &UserMetrics, observed: &Observed) -> ResolvedCommand {
        self.instructions(user, observed).resolve()
    }

    /// Both at once, evaluating the book once: the weighted instructions and the rules that
    /// fired. The loop calls this once per candidate; the default calls the two methods above,
    /// so a book whose rules are costly overrides it.
    fn assess(&self, user: &UserMetrics, observed: &Observed) -> Assessment {
        Assessment {
            command: self.instructions(user, observed),
            fired: self.fired(user, observed),
        }
    }
}

/// One evaluation of a rule book for one candidate ([`RuleBook::assess`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Assessment {
    /// The weighted instructions, before conflict resolution.
    pub command: Command,
    /// The names of the rules whose condition held, in book order.
    pub fired: Vec<String>,
}

/// Algorithm 2 of the paper, written as code, line for line. The rule book file
/// `rulebooks/paper.toml` ([`crate::PAPER_RULEBOOK_TOML`]) loads to the same behaviour.
///
/// Comparisons are strict as in the paper (a metric exactly at its threshold fires nothing).
/// The overfitting rule adds PA1; the underfitting rule adds PA2.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PaperRuleBook;

/// The rule names, shared with `rulebooks/paper.toml`.
pub(crate) const PAPER_RULE_NAMES: [&str; 7] = [
    "low-train-accuracy",
    "low-validation-accuracy",
    "high-train-energy",
    "high-validation-energy",
    "low-fps",
    "overfitting",
    "underfitting",
];

impl PaperRuleBook {
    fn evaluate(user: &UserMetrics, m: &Observed) -> (Command, Vec<&'static str>) {
        use Instruction::*;
        let p = &user.priorities;
        let t = &user.thresholds;
        let mut cmd = Command::new();
        let mut fired = Vec::new();
        let [
            low_a1,
            low_a2,
            high_e1,
            high_e2,
            low_fps,
            overfitting,
            underfitting,
        ] = PAPER_RULE_NAMES;
        let mut rule = |name: &'static str, holds: bool, weight: f64, raise: &[Instruction]| {
            if holds {
                fired.push(name);
                for i in raise {
                    cmd.add(*i, weight);
                }
            }
        };
        // Lines 3-8: A1 < TA1 raises ACL ADL AMK ASC by PA1.
        rule(
            low_a1,
            m.a1 < t.ta1,
            p.pa1,
            &[
                AddConvLayer,
                AddDenseLayer,
                AddMoreKernels,
                AddSkipConnection,
            ],
        );
        // Lines 9-14: A2 < TA2 raises ACL ADL AMK ASC by PA2.
        rule(
            low_a2,
            m.a2 < t.ta2,
            p.pa2,
            &[
                AddConvLayer,
                AddDenseLayer,
                AddMoreKernels,
                AddSkipConnection,
            ],
        );
        // Lines 15-21: E1 > TE1 raises AD AWI RCL RK RSC by PE1.
        rule(
            high_e1,
            m.e1_kwh > t.te1_kwh,
            p.pe1,
            &[
                AddDropout,
                AddWeightInitializer,
                ReduceConvLayer,
                ReduceKernels,
                ReduceSkipConnection,
            ],
        );
        // Lines 22-27: E2 > TE2 raises AD RCL RK RDL by PE2.
        rule(
            high_e2,
            m.e2_kwh > t.te2_kwh,
            p.pe2,
            &[AddDropout, ReduceConvLayer, ReduceKernels, ReduceDenseLayer],
        );
        // Lines 28-32: F < TF raises AD RK RSC by PF.
        rule(
            low_fps,
            m.fps < t.tf_fps,
            p.pf,
            &[AddDropout, ReduceKernels, ReduceSkipConnection],
        );
        // Lines 33-39: A1 - A2 > OT (overfitting) raises ADL RCL RK RN AR by PA1.
        rule(
            overfitting,
            (m.a1 - m.a2) > t.ot,
            p.pa1,
            &[
                AddDenseLayer,
                ReduceConvLayer,
                ReduceKernels,
                ReduceNeurons,
                AddRegularization,
            ],
        );
        // Lines 40-48: A2 - A1 > UT (underfitting) raises RD ACL AMK ADL AMN ASC RR by PA2.
        rule(
            underfitting,
            (m.a2 - m.a1) > t.ut,
            p.pa2,
            &[
                ReduceDropout,
                AddConvLayer,
                AddMoreKernels,
                AddDenseLayer,
                AddMoreNeurons,
                AddSkipConnection,
                ReduceRegularization,
            ],
        );
        (cmd, fired)
    }
}

impl RuleBook for PaperRuleBook {
    fn name(&self) -> String {
        "paper".into()
    }

    fn instructions(&self, user: &UserMetrics, observed: &Observed) -> Command {
        Self::evaluate(user, observed).0
    }

    fn fired(&self, user: &UserMetrics, observed: &Observed) -> Vec<String> {
        Self::evaluate(user, observed)
            .1
            .into_iter()
            .map(String::from)
            .collect()
    }

    fn assess(&self, user: &UserMetrics, observed: &Observed) -> Assessment {
        let (command, fired) = Self::evaluate(user, observed);
        Assessment {
            command,
            fired: fired.into_iter().map(String::from).collect(),
        }
    }
}
