//! Per-request timeout and retries with exponential backoff and jitter on 429, 5xx and
//! connection errors, honouring `Retry-After`: the policy, configuration present in every
//! build. The clients apply it with `crate::http` (compiled with them).

use rand::RngExt;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How a backend talks HTTP: the per-request timeout and the retry policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Timeout of one HTTP request (connect, send, wait for and read the answer), ms. Long: an
    /// LLM writing a network takes tens of seconds. A request past it is not retried.
    pub timeout_ms: u64,
    /// Attempts in all (first try included) before a 429, 5xx or connection error is returned.
    pub max_attempts: u32,
    /// Backoff before the first retry, ms; doubled every further retry.
    pub initial_backoff_ms: u64,
    /// Longest backoff, ms.
    pub max_backoff_ms: u64,
    /// Longest wait a `Retry-After` header is honoured with, ms (longer requests are capped).
    pub max_retry_after_ms: u64,
    /// Jitter as a fraction of the backoff: each wait is scaled by a random factor in
    /// `[1 - jitter, 1 + jitter]`, so that parallel runs do not retry in lockstep.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            timeout_ms: 180_000,
            max_attempts: 5,
            initial_backoff_ms: 1_000,
            max_backoff_ms: 30_000,
            max_retry_after_ms: 120_000,
            jitter: 0.25,
        }
    }
}

impl RetryPolicy {
    /// The per-request timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.max(1))
    }

    /// The wait before retry number `retry` (0 = the first retry): the server's `Retry-After`
    /// when it sent one (capped at `max_retry_after_ms`), else exponential backoff with jitter.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return wait.min(Duration::from_millis(self.max_retry_after_ms));
        }
        let base = self
            .initial_backoff_ms
            .saturating_mul(1u64 << retry.min(30))
            .min(self.max_backoff_ms) as f64;
        let jitter = self.jitter.clamp(0.0, 1.0);
        let factor = if jitter > 0.0 {
            rand::rng().random_range(1.0 - jitter..=1.0 + jitter)
        } else {
            1.0
        };
        Duration::from_secs_f64((base * factor).max(0.0) / 1000.0)
    }

    /// Checks the values.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_attempts == 0 {
            return Err("retry.max_attempts must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(format!(
                "retry.jitter must be in [0, 1], got {}",
                self.jitter
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_jitter_stays_in_bounds() {
        let p = RetryPolicy {
            initial_backoff_ms: 100,
            max_backoff_ms: 1000,
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        let ms: Vec<u128> = (0..6).map(|r| p.delay(r, None).as_millis()).collect();
        assert_eq!(ms, vec![100, 200, 400, 800, 1000, 1000]);
        let j = RetryPolicy { jitter: 0.5, ..p };
        for _ in 0..200 {
            let d = j.delay(1, None).as_millis();
            assert!((100..=300).contains(&d), "{d}");
        }
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        let p = RetryPolicy {
            max_retry_after_ms: 5_000,
            ..RetryPolicy::default()
        };
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(600))),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn validate_rejects_zero_attempts_and_bad_jitter() {
        assert!(RetryPolicy::default().validate().is_ok());
        let zero = RetryPolicy {
            max_attempts: 0,
            ..RetryPolicy::default()
        };
        assert!(zero.validate().is_err());
        let j = RetryPolicy {
            jitter: 2.0,
            ..RetryPolicy::default()
        };
        assert!(j.validate().is_err());
    }
}
