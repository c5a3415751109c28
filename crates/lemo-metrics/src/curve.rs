//! Learning curves across training budgets: how a network's accuracy after a whole training of
//! `T` seconds (its schedule fitted to `T`) grows with `T`, so that two short trainings can
//! predict the accuracy of a long one.
//!
//! The model is the power law `A(T) = limit - scale * T^(-exponent)` with a fixed exponent:
//! two measurements at different budgets fix `limit` and `scale`. On CIFAR-10 with the final
//! recipe the exponent is about 0.5 (docs/results.md: the starter at 86, 240 and 1,035 s).
//! Networks that learn slowly per second but keep learning (wider ones) have a larger `scale`
//! and a higher `limit`, which a single short measurement cannot show.

use serde::{Deserialize, Serialize};

/// The exponent measured for CIFAR-10 with the final recipe (docs/results.md).
pub const DEFAULT_CURVE_EXPONENT: f64 = 0.5;

/// The exponent for a curve drawn through epochs (the search's `--curve-epochs`). A first point
/// of one whole (one-cycle) epoch lies further below the law than a first point in seconds, so
/// the exponent is larger than [`DEFAULT_CURVE_EXPONENT`]: through the CIFAR-10 benchmark's 1-
/// and 2- (or 3-) epoch trainings, 1.0 predicts its 13 final trainings of 12 to 86 epochs 1.8
/// points low on average (sd 1.1), 0.8 on average right (sd 1.2). The search needs the order,
/// not the level: with 1.0 it picks the candidate the runs picked in all 12 iterations of the
/// nine earlier runs (docs/results.md, session 24).
pub const EPOCH_CURVE_EXPONENT: f64 = 1.0;

/// A power-law learning curve `A(T) = limit - scale * T^(-exponent)`, with the budget `T` in
/// seconds or in epochs (the unit of the two measurements it is drawn through).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LearningCurve {
    /// The accuracy the curve tends to with unlimited time.
    pub limit: f64,
    /// How far below `limit` the accuracy is at one second.
    pub scale: f64,
    /// How fast the gap closes with time (> 0).
    pub exponent: f64,
}

impl LearningCurve {
    /// The curve of the given `exponent` through two measurements `(seconds, accuracy)` at
    /// different budgets. `None` when a budget is not positive and finite, the budgets are
    /// equal, an accuracy is not finite, or the exponent is not positive and finite.
    pub fn through(first: (f64, f64), second: (f64, f64), exponent: f64) -> Option<Self> {
        let ((t1, a1), (t2, a2)) = (first, second);
        let ok = |t: f64| t.is_finite() && t > 0.0;
        if !ok(t1) || !ok(t2) || !a1.is_finite() || !a2.is_finite() || !ok(exponent) {
            return None;
        }
        let (x1, x2) = (t1.powf(-exponent), t2.powf(-exponent));
        let dx = x1 - x2;
        if dx.abs() < f64::EPSILON * x1.abs().max(x2.abs()) {
            return None;
        }
        // a1 = limit - scale x1, a2 = limit - scale x2.
        let scale = (a2 - a1) / dx;
        let limit = a2 + scale * x2;
        Some(Self {
            limit,
            scale,
            exponent,
        })
    }

    /// The curve's accuracy after a training of `seconds` (> 0), clamped to [0, 1].
    pub fn at(&self, seconds: f64) -> f64 {
        (self.limit - self.scale * seconds.powf(-self.exponent)).clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_measured_starter_and_its_wide_variant_rank_as_the_long_training_does() {
        // docs/results.md (2026-12-02): fast_final for 86, 240 and 1,035 s.
        let starter = LearningCurve::through((86.0, 0.7760), (240.0, 0.8287), 0.5);
        let wide = LearningCurve::through((86.0, 0.7218), (240.0, 0.8264), 0.5);
        let (Some(starter), Some(wide)) = (starter, wide) else {
            panic!("both curves exist");
        };
        // Measured at 1,035 s: 0.8682 and 0.8756.
        assert!((starter.at(1035.0) - 0.8682).abs() < 0.005);
        assert!(wide.at(1035.0) > starter.at(1035.0));
        // At the proxy's own budget the starter is ahead.
        assert!(starter.at(240.0) > wide.at(240.0));
    }

    #[test]
    fn degenerate_inputs_give_no_curve() {
        assert!(LearningCurve::through((10.0, 0.5), (10.0, 0.6), 0.5).is_none());
        assert!(LearningCurve::through((0.0, 0.5), (10.0, 0.6), 0.5).is_none());
        assert!(LearningCurve::through((5.0, f64::NAN), (10.0, 0.6), 0.5).is_none());
        assert!(LearningCurve::through((5.0, 0.5), (10.0, 0.6), 0.0).is_none());
        assert!(LearningCurve::through((5.0, 0.5), (f64::INFINITY, 0.6), 0.5).is_none());
    }

    proptest! {
        /// The curve passes through both measurements (up to clamping) and its prediction is a
        /// finite accuracy for every budget.
        #[test]
        fn passes_through_both_points(
            t1 in 1.0f64..1e4, ratio in 1.1f64..20.0,
            a1 in 0.0f64..1.0, a2 in 0.0f64..1.0,
            exponent in 0.1f64..2.0, later in 1.0f64..1e6,
        ) {
            let t2 = t1 * ratio;
            let c = LearningCurve::through((t1, a1), (t2, a2), exponent);
            prop_assert!(c.is_some());
            let c = c.expect("a curve");
            prop_assert!((c.at(t1) - a1).abs() < 1e-6);
            prop_assert!((c.at(t2) - a2).abs() < 1e-6);
            let p = c.at(later);
            prop_assert!(p.is_finite() && (0.0..=1.0).contains(&p));
            // More accuracy at the longer budget means more still later.
            if a2 > a1 {
                prop_assert!(c.at(t2 * 2.0) >= a2 - 1e-12);
            }
        }
    }
}
