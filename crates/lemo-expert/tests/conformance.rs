//! The built-in rule books pass the testkit's rule book conformance suite.

use lemo_expert::{PaperRuleBook, RuleSet};
use lemo_testkit::check_rulebook;

#[test]
fn the_paper_rule_book_conforms() {
    assert_eq!(check_rulebook(&PaperRuleBook), Ok(()));
}

#[test]
fn the_paper_rule_book_as_toml_conforms() -> Result<(), lemo_expert::RuleBookError> {
    assert_eq!(check_rulebook(&RuleSet::paper()?), Ok(()));
    Ok(())
}
