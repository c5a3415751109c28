//! LeMo-NADe expert system: the 15 instructions, rule books (Algorithm 2), conflict
//! resolution (Algorithm 3).

mod instruction;

pub use instruction::{Instruction, UnknownInstruction};
