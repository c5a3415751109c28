//! Hand-worked replays of Algorithm 2 (one case per rule, the appendix's CIFAR-10 configuration,
//! a mixed case with conflicts) and Algorithm 3, for the code book and the shipped TOML book.

use Instruction::*;
use lemo_expert::{Command, Instruction, PaperRuleBook, RuleBook, RuleSet};
use lemo_metrics::{Observed, PaperDataset, Priorities, Thresholds, UserMetrics};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Distinct priorities, so that each weight shows which priority a rule added.
fn user(thresholds: Thresholds) -> UserMetrics {
    UserMetrics::new(Priorities::new(0.1, 0.2, 0.3, 0.4, 0.5), thresholds)
}

/// CIFAR-10 appendix thresholds: TA1 .95, TA2 .92, TE1 1e-3 kWh, TE2 1e-5 kWh, TF 20000, OT .1, UT .05.
fn cifar10() -> Thresholds {
    PaperDataset::Cifar10.thresholds()
}

/// A candidate that meets every CIFAR-10 threshold: no rule fires.
fn quiet() -> Observed {
    Observed::new(0.97, 0.93, 5e-4, 5e-6, 30_000.0, 100_000)
}

/// Checks both books on one case: the fired rules, the weight map (every other weight 0), and the
/// resolved instructions in order.
fn replay(
    user: &UserMetrics,
    observed: &Observed,
    fired: &[&str],
    weights: &[(Instruction, f64)],
    resolved: &[(Instruction, f64)],
) -> TestResult {
    let toml = RuleSet::paper()?;
    let books: [&dyn RuleBook; 2] = [&PaperRuleBook, &toml];
    for book in books {
        assert_eq!(book.fired(user, observed), fired, "{}", book.name());
        let cmd = book.instructions(user, observed);
        let expected: Command = weights.iter().copied().collect();
        for i in Instruction::ALL {
            let (got, want) = (cmd.weight(i), expected.weight(i));
            assert!(
                (got - want).abs() < 1e-12,
                "{}: {i} is {got}, expected {want}",
                book.name()
            );
        }
        let got: Vec<(Instruction, f64)> = book
            .advise(user, observed)
            .entries()
            .iter()
            .map(|e| (e.instruction, e.weight))
            .collect();
        assert_eq!(got.len(), resolved.len(), "{}: {got:?}", book.name());
        for ((gi, gw), (wi, ww)) in got.iter().zip(resolved) {
            assert_eq!(gi, wi, "{}: order {got:?}", book.name());
            assert!(
                (gw - ww).abs() < 1e-12,
                "{}: {gi} weight {gw}, expected {ww}",
                book.name()
            );
        }
    }
    Ok(())
}

#[test]
fn no_rule_fires_when_every_threshold_is_met() -> TestResult {
    replay(&user(cifar10()), &quiet(), &[], &[], &[])
}

#[test]
fn a_metric_exactly_at_its_threshold_fires_nothing() -> TestResult {
    let o = Observed::new(0.95, 0.92, 1e-3, 1e-5, 20_000.0, 1);
    replay(&user(cifar10()), &o, &[], &[], &[])
}

#[test]
fn rule_1_low_train_accuracy_adds_pa1() -> TestResult {
    let o = Observed {
        a1: 0.94,
        ..quiet()
    };
    let w = [
        (AddConvLayer, 0.1),
        (AddDenseLayer, 0.1),
        (AddMoreKernels, 0.1),
        (AddSkipConnection, 0.1),
    ];
    let r = [
        (AddConvLayer, 0.1),
        (AddSkipConnection, 0.1),
        (AddDenseLayer, 0.1),
        (AddMoreKernels, 0.1),
    ];
    replay(&user(cifar10()), &o, &["low-train-accuracy"], &w, &r)
}

#[test]
fn rule_2_low_validation_accuracy_adds_pa2() -> TestResult {
    let o = Observed {
        a2: 0.91,
        ..quiet()
    };
    let w = [
        (AddConvLayer, 0.2),
        (AddDenseLayer, 0.2),
        (AddMoreKernels, 0.2),
        (AddSkipConnection, 0.2),
    ];
    let r = [
        (AddConvLayer, 0.2),
        (AddSkipConnection, 0.2),
        (AddDenseLayer, 0.2),
        (AddMoreKernels, 0.2),
    ];
    replay(&user(cifar10()), &o, &["low-validation-accuracy"], &w, &r)
}

#[test]
fn rule_3_high_train_energy_adds_pe1() -> TestResult {
    let o = Observed {
        e1_kwh: 2e-3,
        ..quiet()
    };
    let w = [
        (AddDropout, 0.3),
        (AddWeightInitializer, 0.3),
        (ReduceConvLayer, 0.3),
        (ReduceKernels, 0.3),
        (ReduceSkipConnection, 0.3),
    ];
    let r = [
        (ReduceConvLayer, 0.3),
        (ReduceSkipConnection, 0.3),
        (AddDropout, 0.3),
        (AddWeightInitializer, 0.3),
        (ReduceKernels, 0.3),
    ];
    replay(&user(cifar10()), &o, &["high-train-energy"], &w, &r)
}

#[test]
fn rule_4_high_validation_energy_adds_pe2() -> TestResult {
    let o = Observed {
        e2_kwh: 2e-5,
        ..quiet()
    };
    let w = [
        (AddDropout, 0.4),
        (ReduceConvLayer, 0.4),
        (ReduceKernels, 0.4),
        (ReduceDenseLayer, 0.4),
    ];
    let r = [
        (ReduceConvLayer, 0.4),
        (ReduceDenseLayer, 0.4),
        (AddDropout, 0.4),
        (ReduceKernels, 0.4),
    ];
    replay(&user(cifar10()), &o, &["high-validation-energy"], &w, &r)
}

#[test]
fn rule_5_low_fps_adds_pf() -> TestResult {
    let o = Observed {
        fps: 10_000.0,
        ..quiet()
    };
    let w = [
        (AddDropout, 0.5),
        (ReduceKernels, 0.5),
        (ReduceSkipConnection, 0.5),
    ];
    let r = [
        (ReduceSkipConnection, 0.5),
        (AddDropout, 0.5),
        (ReduceKernels, 0.5),
    ];
    replay(&user(cifar10()), &o, &["low-fps"], &w, &r)
}

#[test]
fn rule_6_overfitting_adds_pa1() -> TestResult {
    // OT 0.05: A1 - A2 = 0.06 > OT while both accuracies meet their thresholds.
    let o = Observed {
        a1: 0.99,
        a2: 0.93,
        ..quiet()
    };
    let w = [
        (AddDenseLayer, 0.1),
        (ReduceConvLayer, 0.1),
        (ReduceKernels, 0.1),
        (ReduceNeurons, 0.1),
        (AddRegularization, 0.1),
    ];
    let r = [
        (AddDenseLayer, 0.1),
        (ReduceConvLayer, 0.1),
        (AddRegularization, 0.1),
        (ReduceKernels, 0.1),
        (ReduceNeurons, 0.1),
    ];
    replay(
        &user(Thresholds {
            ot: 0.05,
            ..cifar10()
        }),
        &o,
        &["overfitting"],
        &w,
        &r,
    )
}

#[test]
fn rule_7_underfitting_adds_pa2() -> TestResult {
    // UT 0.02: A2 - A1 = 0.025 > UT while A1 meets TA1.
    let o = Observed {
        a1: 0.955,
        a2: 0.98,
        ..quiet()
    };
    let w = [
        (ReduceDropout, 0.2),
        (AddConvLayer, 0.2),
        (AddMoreKernels, 0.2),
        (AddDenseLayer, 0.2),
        (AddMoreNeurons, 0.2),
        (AddSkipConnection, 0.2),
        (ReduceRegularization, 0.2),
    ];
    let r = [
        (AddConvLayer, 0.2),
        (AddSkipConnection, 0.2),
        (AddDenseLayer, 0.2),
        (AddMoreKernels, 0.2),
        (ReduceDropout, 0.2),
        (AddMoreNeurons, 0.2),
        (ReduceRegularization, 0.2),
    ];
    replay(
        &user(Thresholds {
            ut: 0.02,
            ..cifar10()
        }),
        &o,
        &["underfitting"],
        &w,
        &r,
    )
}

#[test]
fn appendix_cifar10_configuration() -> TestResult {
    // Priorities PA2 = 1, every other 0; a first candidate below both accuracy thresholds, over
    // both energy thresholds and slower than TF. Every rule but overfitting fires (A1 - A2 = 0.08),
    // but only PA2 is non-zero, so only the validation-accuracy rule weighs.
    let user = PaperDataset::Cifar10.appendix_configuration();
    let o = Observed::new(0.80, 0.72, 2e-3, 2e-5, 15_000.0, 300_000);
    let fired = [
        "low-train-accuracy",
        "low-validation-accuracy",
        "high-train-energy",
        "high-validation-energy",
        "low-fps",
    ];
    let w = [
        (AddConvLayer, 1.0),
        (AddDenseLayer, 1.0),
        (AddMoreKernels, 1.0),
        (AddSkipConnection, 1.0),
    ];
    let r = [
        (AddConvLayer, 1.0),
        (AddSkipConnection, 1.0),
        (AddDenseLayer, 1.0),
        (AddMoreKernels, 1.0),
    ];
    replay(&user, &o, &fired, &w, &r)?;
    let text = PaperRuleBook.advise(&user, &o).render();
    assert!(
        text.lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("1. Add a convolutional layer")),
        "{text}"
    );
    assert_eq!(text.lines().count(), 5);
    Ok(())
}

#[test]
fn setting_2_with_conflicts_resolved_by_algorithm_3() -> TestResult {
    // Table 4 setting 2 (PA1 .3, PA2 .3, PE1 .2, PE2 .2, PF 0) with CIFAR-10 thresholds; an
    // overfitting, energy-hungry candidate. Worked by hand:
    //   rule 1, 2: ACL ADL AMK ASC += .3 + .3
    //   rule 3:    AD AWI RCL RK RSC += .2
    //   rule 4:    AD RCL RK RDL += .2
    //   rule 5:    AD RK RSC += 0 (PF = 0)
    //   rule 6:    ADL RCL RK RN AR += .3
    // sorted: ADL .9, RCL .7, RK .7, ACL .6, ASC .6, AMK .6, AD .4, AR .3, RN .3, RSC .2, RDL .2, AWI .2
    // Algorithm 3: ADL zeroes RDL; RCL zeroes ACL; RK zeroes AMK; ASC zeroes RSC.
    let user = PaperDataset::Cifar10.setting(2).ok_or("setting 2")?;
    let o = Observed::new(0.90, 0.76, 2e-3, 2e-5, 15_000.0, 2_000_000);
    let fired = [
        "low-train-accuracy",
        "low-validation-accuracy",
        "high-train-energy",
        "high-validation-energy",
        "low-fps",
        "overfitting",
    ];
    let w = [
        (AddConvLayer, 0.6),
        (AddSkipConnection, 0.6),
        (AddDenseLayer, 0.9),
        (ReduceConvLayer, 0.7),
        (ReduceSkipConnection, 0.2),
        (ReduceDenseLayer, 0.2),
        (AddDropout, 0.4),
        (AddMoreKernels, 0.6),
        (AddWeightInitializer, 0.2),
        (AddRegularization, 0.3),
        (ReduceKernels, 0.7),
        (ReduceNeurons, 0.3),
    ];
    let r = [
        (AddDenseLayer, 0.9),
        (ReduceConvLayer, 0.7),
        (ReduceKernels, 0.7),
        (AddSkipConnection, 0.6),
        (AddDropout, 0.4),
        (AddRegularization, 0.3),
        (ReduceNeurons, 0.3),
        (AddWeightInitializer, 0.2),
    ];
    replay(&user, &o, &fired, &w, &r)
}

#[test]
fn the_shipped_file_round_trips_and_matches_the_code_names() -> TestResult {
    let book = RuleSet::paper()?;
    assert_eq!(book.name, "paper");
    assert_eq!(book.rules.len(), 7);
    assert_eq!(RuleSet::from_toml_str(&book.to_toml_string()?)?, book);
    let conditions: Vec<String> = book.rules.iter().map(|r| r.when.to_string()).collect();
    assert_eq!(
        conditions,
        [
            "A1 < TA1",
            "A2 < TA2",
            "E1 > TE1",
            "E2 > TE2",
            "F < TF",
            "A1 - A2 > OT",
            "A2 - A1 > UT"
        ]
    );
    Ok(())
}
