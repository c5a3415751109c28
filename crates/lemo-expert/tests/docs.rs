//! docs/expert-system.md shows what the code does: the worked example, the sample rule book and
//! its error messages are checked here.

use lemo_expert::{PaperRuleBook, RuleBook, RuleSet};
use lemo_metrics::{Observed, PaperDataset};

const DOC: &str = include_str!("../../../docs/expert-system.md");

type TestResult = Result<(), Box<dyn std::error::Error>>;

#[test]
fn docs_show_the_worked_example() -> TestResult {
    let user = PaperDataset::Cifar10.setting(2).ok_or("setting 2")?;
    let observed = Observed::new(0.90, 0.76, 2e-3, 2e-5, 15_000.0, 2_000_000);
    let resolved = PaperRuleBook.advise(&user, &observed);
    assert!(
        DOC.contains(&resolved.render()),
        "the rendered prompt differs from the docs"
    );
    let listing: String = resolved
        .entries()
        .iter()
        .map(|e| format!("{:<4}{:.2}\n", e.instruction.code(), e.weight))
        .collect();
    assert!(
        DOC.contains(&listing),
        "the resolved listing differs from the docs:\n{listing}"
    );
    assert!(DOC.contains(&PaperRuleBook.fired(&user, &observed).join(", ")));
    assert!(DOC.contains(user.to_toml_string()?.trim()));
    Ok(())
}

/// The first TOML block of the "Your own rule book" section.
fn sample_book() -> Result<&'static str, &'static str> {
    let section = DOC.split("## Your own rule book").nth(1).ok_or("section")?;
    let block = section.split("```toml\n").nth(1).ok_or("toml block")?;
    block.split("```").next().ok_or("block end")
}

#[test]
fn the_sample_rule_book_loads_and_its_errors_are_as_shown() -> TestResult {
    let text = sample_book()?;
    let book = RuleSet::from_toml_str(text)?;
    assert_eq!(book.name, "small-and-fast");
    assert_eq!(book.rules.len(), 3);
    let observed = Observed::new(0.9, 0.7, 1e-3, 1e-5, 1_000.0, 900_000);
    let user = PaperDataset::Cifar10.setting(5).ok_or("setting 5")?;
    assert_eq!(
        book.fired(&user, &observed),
        ["too-many-parameters", "slow", "overfitting"]
    );

    for (from, to) in [
        ("\"P > 500000\"", "\"P >> 500000\""),
        ("raise = [\"RK\", \"RSC\"]", "raise = []"),
    ] {
        let bad = text.replace(from, to);
        let e = RuleSet::from_toml_str(&bad)
            .err()
            .ok_or("accepted a bad book")?;
        let shown = format!("small-and-fast.toml: {e}");
        let first = shown.lines().next().ok_or("empty message")?;
        assert!(DOC.contains(first), "docs lack: {shown}");
        assert!(DOC.contains(shown.trim_end()), "docs lack: {shown}");
    }
    Ok(())
}
