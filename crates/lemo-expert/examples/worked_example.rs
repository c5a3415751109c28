//! The worked example of docs/expert-system.md, from metrics to prompt text:
//! `cargo run -p lemo-expert --example worked_example`.

use lemo_expert::{PaperRuleBook, RuleBook, RuleSet};
use lemo_metrics::{Effectiveness, Observed, PaperDataset};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Table 4 setting 2 with the CIFAR-10 appendix thresholds.
    let user = PaperDataset::Cifar10
        .setting(2)
        .ok_or("Table 4 has a setting 2")?;
    // What the trainer and the energy meter measured on the current candidate.
    let observed = Observed::new(0.90, 0.76, 2e-3, 2e-5, 15_000.0, 2_000_000);

    println!("== user metrics (TOML)\n{}", user.to_toml_string()?);
    println!(
        "== observed (JSON)\n{}\n",
        serde_json::to_string_pretty(&observed)?
    );

    let book = RuleSet::paper()?;
    println!(
        "== rules fired\n{}\n",
        book.fired(&user, &observed).join(", ")
    );

    let cmd = book.instructions(&user, &observed);
    println!("== Algorithm 2: weighted instructions (paper order, non-zero)");
    for (i, w) in cmd.iter().filter(|(_, w)| *w != 0.0) {
        println!("{:<4}{w:.2}", i.code());
    }

    let resolved = cmd.resolve();
    println!("\n== Algorithm 3: resolved (heaviest first)");
    for e in resolved.entries() {
        println!("{:<4}{:.2}", e.instruction.code(), e.weight);
    }
    assert_eq!(resolved, PaperRuleBook.advise(&user, &observed));

    println!("\n== prompt text\n{}", resolved.render());

    let e = Effectiveness::of(&user, &observed);
    println!(
        "\n== combined model effectiveness\nAW {:.2} FW {:.2} EW {:.2}  NF {:.4} TNE {:.4} VNE {:.4}  CM {:.4}",
        e.weights.aw, e.weights.fw, e.weights.ew, e.nf, e.tne, e.vne, e.cm
    );
    Ok(())
}
