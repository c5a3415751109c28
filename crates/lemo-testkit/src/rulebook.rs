//! The rule book conformance suite.

use std::panic::{AssertUnwindSafe, catch_unwind};

use lemo_core::expert::RuleBook;
use lemo_core::metrics::{Observed, PaperDataset, UserMetrics, table4_setting};

use crate::{ConformanceError, Findings};

/// A deterministic grid of situations: every Table 4 setting with each paper dataset's
/// thresholds, against observed metrics from far below to far above them.
fn situations() -> Vec<(UserMetrics, Observed)> {
    let mut out = Vec::new();
    let scales = [0.0, 0.3, 0.9, 1.0, 1.1, 3.0];
    for setting in 1..=8u8 {
        let Some(priorities) = table4_setting(setting) else {
            continue;
        };
        for dataset in PaperDataset::ALL {
            let user = UserMetrics::new(priorities, dataset.thresholds());
            let t = &user.thresholds;
            // Scale i is paired with scale (7i + 3) mod 6 = (i + 3) mod 6.
            let mut others = scales;
            others.rotate_left(3);
            for (&s, &other) in scales.iter().zip(&others) {
                let a1 = (t.ta1 * s).min(1.0);
                let a2 = (t.ta2 * other).min(1.0);
                out.push((
                    user,
                    Observed::new(
                        a1,
                        a2,
                        t.te1_kwh * other,
                        t.te2_kwh * s,
                        t.tf_fps * s,
                        (100_000.0 * s) as u64,
                    ),
                ));
            }
        }
    }
    out
}

/// The rule book contract, over a grid of priorities, thresholds and metrics:
///
/// - the name is not empty;
/// - every weight is finite and non-negative;
/// - the resolved command never keeps both instructions of a conflicting pair (Algorithm 3);
/// - [`RuleBook::assess`] agrees with [`RuleBook::instructions`] and [`RuleBook::fired`];
/// - the same input gives the same advice (no hidden state);
/// - nothing panics.
pub fn check_rulebook(book: &dyn RuleBook) -> Result<(), ConformanceError> {
    let mut f = Findings::new("rule book", book.name());
    f.expect(!book.name().trim().is_empty(), || {
        "its name is empty".into()
    });
    for (user, observed) in situations() {
        let run = catch_unwind(AssertUnwindSafe(|| {
            (
                book.instructions(&user, &observed),
                book.fired(&user, &observed),
                book.assess(&user, &observed),
                book.advise(&user, &observed),
                book.advise(&user, &observed),
            )
        }));
        let Ok((command, fired, assessment, advice, again)) = run else {
            f.expect(false, || format!("panicked on {observed:?}"));
            continue;
        };
        for (instruction, weight) in command.iter() {
            f.expect(weight.is_finite() && weight >= 0.0, || {
                format!("weight {weight} for {} on {observed:?}", instruction.code())
            });
        }
        for i in advice.instructions() {
            if let Some(c) = i.conflict() {
                f.expect(!advice.instructions().any(|j| j == c), || {
                    format!("kept both {} and {} on {observed:?}", i.code(), c.code())
                });
            }
        }
        f.expect(
            assessment.command == command && assessment.fired == fired,
            || format!("assess disagrees with instructions/fired on {observed:?}"),
        );
        f.expect(advice == again, || {
            format!("two advices differ on {observed:?}")
        });
        if f_has_many(&f) {
            break;
        }
    }
    f.finish()
}

/// Stops a badly broken book from flooding the report.
fn f_has_many(f: &Findings) -> bool {
    f.len() >= 20
}

#[cfg(test)]
mod tests {
    use super::*;
    use lemo_core::expert::PaperRuleBook;

    #[test]
    fn the_paper_rule_book_conforms() {
        assert_eq!(check_rulebook(&PaperRuleBook), Ok(()));
    }
}
