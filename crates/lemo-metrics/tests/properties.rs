//! Properties of the metrics crate: config round trips, CM monotonicity, Pareto front soundness.

use lemo_metrics::{
    Effectiveness, EffectivenessWeights, Objective, Observed, Priorities, Thresholds, UserMetrics,
    dominates, pareto_front,
};
use proptest::prelude::*;

fn unit() -> impl Strategy<Value = f64> {
    0.0..=1.0f64
}

fn user_metrics() -> impl Strategy<Value = UserMetrics> {
    let priorities = (unit(), unit(), unit(), unit(), unit())
        .prop_map(|(a, b, c, d, e)| Priorities::new(a, b, c, d, e));
    let thresholds = (
        unit(),
        unit(),
        0.0..1.0f64,
        0.0..1e-2f64,
        0.0..1e5f64,
        unit(),
        unit(),
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
    let weights =
        proptest::option::of(
            (0.0..10.0f64, 0.0..10.0f64, 0.0..10.0f64)
                .prop_map(|(aw, fw, ew)| EffectivenessWeights { aw, fw, ew }),
        );
    (priorities, thresholds, weights).prop_map(|(priorities, thresholds, weights)| UserMetrics {
        priorities,
        thresholds,
        weights,
    })
}

fn observed() -> impl Strategy<Value = Observed> {
    (
        unit(),
        unit(),
        0.0..1.0f64,
        0.0..1e-2f64,
        0.0..1e5f64,
        0..10_000_000u64,
        proptest::option::of(unit()),
    )
        .prop_map(|(a1, a2, e1, e2, fps, params, test)| Observed {
            test_accuracy: test,
            ..Observed::new(a1, a2, e1, e2, fps, params)
        })
}

proptest! {
    #[test]
    fn user_metrics_round_trip_through_toml_and_json(user in user_metrics()) {
        let toml = user.to_toml_string().map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(UserMetrics::from_toml_str(&toml).map_err(|e| TestCaseError::fail(e.to_string()))?, user);
        let json = user.to_json_string().map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(UserMetrics::from_json_str(&json).map_err(|e| TestCaseError::fail(e.to_string()))?, user);
    }

    #[test]
    fn observed_round_trips_through_json(o in observed()) {
        let json = serde_json::to_string(&o).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let back: Observed = serde_json::from_str(&json).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back, o);
    }

    #[test]
    fn cm_rises_with_accuracy_and_fps_and_falls_with_energy(
        user in user_metrics(), o in observed(), da in 0.0..0.5f64, k in 1.0..10.0f64,
    ) {
        let base = Effectiveness::of(&user, &o).cm;
        let more_acc = Observed { a2: (o.a2 + da).min(1.0), ..o };
        let faster = Observed { fps: o.fps * k, ..o };
        let hungrier = Observed { e1_kwh: o.e1_kwh * k, ..o };
        prop_assert!(Effectiveness::of(&user, &more_acc).cm >= base);
        prop_assert!(Effectiveness::of(&user, &faster).cm >= base);
        prop_assert!(Effectiveness::of(&user, &hungrier).cm <= base);
        let e = Effectiveness::of(&user, &o);
        for v in [e.nf, e.tne, e.vne] {
            prop_assert!((0.0..=1.0).contains(&v), "normalised value {} out of [0, 1]", v);
        }
    }

    #[test]
    fn pareto_front_is_exactly_the_non_dominated(cands in proptest::collection::vec(observed(), 0..12)) {
        let front = pareto_front(&cands, &Objective::DEFAULT);
        for (i, c) in cands.iter().enumerate() {
            let dominated = cands.iter().any(|o| dominates(o, c, &Objective::DEFAULT));
            prop_assert_eq!(front.contains(&i), !dominated);
        }
        prop_assert!(cands.is_empty() || !front.is_empty());
    }
}
