//! Properties of conflict resolution (Algorithm 3) and of rule books as data.

use lemo_expert::{
    Bound, Command, Comparison, Condition, Instruction, Operand, PaperRuleBook, Rule, RuleBook,
    RuleSet, Weight, resolve,
};
use lemo_metrics::{Metric, Observed, Priorities, Priority, Threshold, Thresholds, UserMetrics};
use proptest::prelude::*;

fn fail(e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

/// Weights drawn from a small grid (many ties and zeros) or from a continuous range.
fn weight() -> impl Strategy<Value = f64> {
    prop_oneof![(-2i32..=10).prop_map(|k| f64::from(k) / 10.0), -1.0..3.0f64,]
}

fn command() -> impl Strategy<Value = Command> {
    proptest::array::uniform15(weight())
        .prop_map(|ws| Instruction::ALL.into_iter().zip(ws).collect())
}

fn instruction() -> impl Strategy<Value = Instruction> {
    proptest::sample::select(Instruction::ALL.to_vec())
}

fn unit() -> impl Strategy<Value = f64> {
    0.0..=1.0f64
}

fn user_metrics() -> impl Strategy<Value = UserMetrics> {
    let priorities = (unit(), unit(), unit(), unit(), unit())
        .prop_map(|(a, b, c, d, e)| Priorities::new(a, b, c, d, e));
    let thresholds = (
        unit(),
        unit(),
        0.0..1e-2f64,
        0.0..1e-4f64,
        0.0..4e4f64,
        0.0..0.3f64,
        0.0..0.3f64,
    )
        .prop_map(|(ta1, ta2, te1_kwh, te2_kwh, tf_fps, ot, ut)| Thresholds {
            ta1,
            ta2,
            te1_kwh,
            te2_kwh,
            tf_fps,
            ot,
            ut,
        });
    (priorities, thresholds).prop_map(|(p, t)| UserMetrics::new(p, t))
}

fn observed() -> impl Strategy<Value = Observed> {
    (
        unit(),
        unit(),
        0.0..1e-2f64,
        0.0..1e-4f64,
        0.0..4e4f64,
        0..5_000_000u64,
    )
        .prop_map(|(a1, a2, e1, e2, f, p)| Observed::new(a1, a2, e1, e2, f, p))
}

fn condition() -> impl Strategy<Value = Condition> {
    let metric = proptest::sample::select(Metric::ALL.to_vec());
    let left = prop_oneof![
        metric.clone().prop_map(Operand::Metric),
        (metric.clone(), metric).prop_map(|(a, b)| Operand::Difference(a, b)),
    ];
    let comparison = proptest::sample::select(vec![
        Comparison::Less,
        Comparison::LessOrEqual,
        Comparison::Greater,
        Comparison::GreaterOrEqual,
    ]);
    let right = prop_oneof![
        proptest::sample::select(Threshold::ALL.to_vec()).prop_map(Bound::Threshold),
        (-1e6..1e6f64).prop_map(Bound::Value),
        (-1e-5..1e-5f64).prop_map(Bound::Value),
    ];
    (left, comparison, right).prop_map(|(left, comparison, right)| Condition {
        left,
        comparison,
        right,
    })
}

fn rule_set() -> impl Strategy<Value = RuleSet> {
    let add = prop_oneof![
        proptest::sample::select(Priority::ALL.to_vec()).prop_map(Weight::Priority),
        (-2.0..2.0f64).prop_map(Weight::Value),
    ];
    let rule = (
        condition(),
        proptest::sample::subsequence(Instruction::ALL.to_vec(), 1..6),
        add,
    );
    proptest::collection::vec(rule, 1..8).prop_map(|rules| RuleSet {
        name: "random".to_string(),
        description: None,
        rules: rules
            .into_iter()
            .enumerate()
            .map(|(n, (when, raise, add))| Rule {
                name: format!("rule-{n}"),
                when,
                raise,
                add,
            })
            .collect(),
    })
}

/// Whether Algorithm 3 must keep `i`: positive, and not beaten by its partner (heavier, or as
/// heavy and earlier in the paper's order).
fn must_keep(cmd: &Command, i: Instruction) -> bool {
    let w = cmd.weight(i);
    let beaten = i.conflict().is_some_and(|p| {
        let pw = cmd.weight(p);
        pw > w || (pw == w && p.index() < i.index())
    });
    w > 0.0 && !beaten
}

proptest! {
    #[test]
    fn resolution_keeps_exactly_the_positive_unbeaten_side(cmd in command()) {
        let r = resolve(&cmd);
        let kept: Vec<Instruction> = r.instructions().collect();
        for i in Instruction::ALL {
            prop_assert_eq!(kept.contains(&i), must_keep(&cmd, i), "{} in {:?} from {:?}", i, kept, cmd);
        }
        for e in r.entries() {
            // Only positive weights, unchanged.
            prop_assert!(e.weight > 0.0);
            prop_assert_eq!(e.weight, cmd.weight(e.instruction));
            // Never both sides of a conflicting pair; the kept side is at least as heavy.
            if let Some(p) = e.instruction.conflict() {
                prop_assert!(!kept.contains(&p), "{} and {} both kept", e.instruction, p);
                prop_assert!(e.weight >= cmd.weight(p));
            }
        }
        // Heaviest first, ties in the paper's order.
        for pair in r.entries().windows(2) {
            prop_assert!(
                pair[0].weight > pair[1].weight
                    || (pair[0].weight == pair[1].weight
                        && pair[0].instruction.index() < pair[1].instruction.index())
            );
        }
    }

    #[test]
    fn resolution_is_idempotent(cmd in command()) {
        let once = resolve(&cmd);
        prop_assert_eq!(resolve(&once.to_command()), once);
    }

    #[test]
    fn a_heavier_instruction_beats_its_partner(i in instruction(), w in 0.01..5.0f64, d in 0.001..5.0f64) {
        if let Some(p) = i.conflict() {
            let mut cmd = Command::new();
            cmd.set(i, w + d);
            cmd.set(p, w);
            let kept: Vec<Instruction> = resolve(&cmd).instructions().collect();
            prop_assert_eq!(kept, vec![i]);
        }
    }

    #[test]
    fn the_toml_book_equals_the_built_in_one(user in user_metrics(), o in observed()) {
        let book = RuleSet::paper().map_err(fail)?;
        prop_assert_eq!(book.instructions(&user, &o), PaperRuleBook.instructions(&user, &o));
        prop_assert_eq!(book.fired(&user, &o), PaperRuleBook.fired(&user, &o));
        prop_assert_eq!(book.advise(&user, &o), PaperRuleBook.advise(&user, &o));
    }

    #[test]
    fn conditions_round_trip_through_text(c in condition()) {
        let text = c.to_string();
        prop_assert_eq!(text.parse::<Condition>().map_err(fail)?, c);
        let compact = text.replace(' ', "");
        prop_assert_eq!(compact.parse::<Condition>().map_err(fail)?, c);
    }

    #[test]
    fn rule_sets_round_trip_through_toml(book in rule_set()) {
        let text = book.to_toml_string().map_err(fail)?;
        prop_assert_eq!(RuleSet::from_toml_str(&text).map_err(fail)?, book);
    }

    #[test]
    fn commands_round_trip_through_json(cmd in command()) {
        let json = serde_json::to_string(&cmd).map_err(fail)?;
        prop_assert_eq!(serde_json::from_str::<Command>(&json).map_err(fail)?, cmd);
        let r = resolve(&cmd);
        let json = serde_json::to_string(&r).map_err(fail)?;
        prop_assert_eq!(serde_json::from_str::<lemo_expert::ResolvedCommand>(&json).map_err(fail)?, r);
    }
}
