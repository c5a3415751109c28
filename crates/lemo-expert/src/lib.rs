//! LeMo-NADe expert system: the 15 instructions (Table 2), rule books (Algorithm 2) in code or
//! as data, and conflict resolution (Algorithm 3).
//!
//! ```
//! use lemo_expert::{PaperRuleBook, RuleBook};
//! use lemo_metrics::{Observed, PaperDataset};
//!
//! let user = PaperDataset::Cifar10.appendix_configuration();
//! let observed = Observed::new(0.80, 0.75, 2e-3, 1e-5, 25_000.0, 600_000);
//! let next = PaperRuleBook.advise(&user, &observed);
//! println!("{}", next.render());
//! ```

#![warn(clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod command;
mod instruction;
mod rulebook;
mod ruleset;

pub use command::{Command, ResolvedCommand, WeightedInstruction, resolve};
pub use instruction::{Instruction, UnknownInstruction};
pub use rulebook::{Assessment, PaperRuleBook, RuleBook};
pub use ruleset::{
    Bound, Comparison, Condition, ConditionError, Operand, PAPER_RULEBOOK_TOML, Rule,
    RuleBookError, RuleSet, Weight,
};
