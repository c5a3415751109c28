//! Integration of sampled power into energy.

use std::time::Duration;

/// Integrates power samples (watts at given times) into energy (joules) with the trapezoidal
/// rule. Used where a device gives power but no energy counter (older NVIDIA GPUs) and for
/// sampled estimates.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PowerIntegrator {
    last: Option<(Duration, f64)>,
    joules: f64,
    samples: usize,
    longest_gap: Duration,
}

impl PowerIntegrator {
    /// An integrator with no sample yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a power reading `watts` taken at time `at` (from any fixed origin). Samples must come
    /// in time order; a sample earlier than the previous one is ignored.
    pub fn push(&mut self, at: Duration, watts: f64) {
        let watts = if watts.is_finite() {
            watts.max(0.0)
        } else {
            0.0
        };
        if let Some((t0, w0)) = self.last {
            let Some(dt) = at.checked_sub(t0) else {
                return;
            };
            self.joules += 0.5 * (w0 + watts) * dt.as_secs_f64();
            self.longest_gap = self.longest_gap.max(dt);
        }
        self.last = Some((at, watts));
        self.samples += 1;
    }

    /// Energy integrated so far, in joules.
    pub fn joules(&self) -> f64 {
        self.joules
    }

    /// Number of samples taken.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// The longest time between two consecutive samples (the effective sampling interval).
    pub fn longest_gap(&self) -> Duration {
        self.longest_gap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_power_is_exact() {
        let mut p = PowerIntegrator::new();
        for i in 0..=10 {
            p.push(Duration::from_millis(100 * i), 50.0);
        }
        assert!((p.joules() - 50.0).abs() < 1e-9);
        assert_eq!(p.samples(), 11);
        assert_eq!(p.longest_gap(), Duration::from_millis(100));
    }

    #[test]
    fn out_of_order_and_bad_samples_are_ignored() {
        let mut p = PowerIntegrator::new();
        p.push(Duration::from_secs(1), 10.0);
        p.push(Duration::from_millis(500), 1000.0);
        p.push(Duration::from_secs(2), f64::NAN);
        // 1 s from 10 W to 0 W.
        assert!((p.joules() - 5.0).abs() < 1e-12);
    }
}
