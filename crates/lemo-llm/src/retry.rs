//! Per-request timeout and retries with exponential backoff and jitter on 429, 5xx and
//! connection errors, honouring `Retry-After`.

use rand::RngExt;
use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// The wait a response asks for: `retry-after-ms` (OpenAI), else `Retry-After` in seconds or
/// as an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = text("retry-after-ms")
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let value = text("retry-after")?;
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = parse_http_date(value)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(at.saturating_sub(now)))
}

/// Seconds since the epoch of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn parse_http_date(s: &str) -> Option<u64> {
    let mut parts = s.split_whitespace();
    let _weekday = parts.next()?;
    let day: u64 = parts.next()?.parse().ok()?;
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month_name = parts.next()?;
    let month = MONTHS.iter().position(|m| *m == month_name)? as u64 + 1;
    let year: u64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':').map(|x| x.parse::<u64>().ok());
    let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
    if parts.next()? != "GMT" || !(1..=31).contains(&day) || year < 1970 {
        return None;
    }
    // Days from civil (H. Hinnant), for years after 1970.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(days * 86_400 + h * 3600 + m * 60 + sec)
}

tokio::task_local! {
    static ATTEMPTS: Cell<u32>;
}

/// Runs `fut` counting the HTTP attempts [`send`] makes inside it (also through layers such as
/// async-openai's client, which hide them).
pub(crate) async fn counting<F: Future>(fut: F) -> (F::Output, u32) {
    ATTEMPTS
        .scope(Cell::new(0), async move {
            let out = fut.await;
            (out, ATTEMPTS.with(Cell::get))
        })
        .await
}

/// An HTTP response of either reqwest version in the dependency graph (0.12 for Gemini, 0.13
/// under async-openai); both carry `http` 1 status codes and headers.
pub(crate) trait HttpAnswer {
    /// The status code.
    fn status_code(&self) -> u16;
    /// The headers.
    fn header_map(&self) -> &HeaderMap;
}

impl HttpAnswer for reqwest::Response {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
    fn header_map(&self) -> &HeaderMap {
        self.headers()
    }
}

impl HttpAnswer for reqwest13::Response {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
    fn header_map(&self) -> &HeaderMap {
        self.headers()
    }
}

/// Sends with retries: calls `attempt` until it gives a response that is neither 429 nor 5xx,
/// or an error `is_connect` does not call a connection failure, or `policy.max_attempts` are
/// spent. Returns the last outcome; the caller turns a non-success status into its error.
pub(crate) async fn send<R, E, F, Fut>(
    policy: &RetryPolicy,
    provider: &str,
    mut attempt: F,
    is_connect: impl Fn(&E) -> bool,
) -> Result<R, E>
where
    R: HttpAnswer,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<R, E>>,
{
    let mut retry = 0u32;
    loop {
        let _ = ATTEMPTS.try_with(|n| n.set(n.get() + 1));
        let outcome = attempt().await;
        let (wait, why) = match &outcome {
            Ok(r) if r.status_code() == 429 || r.status_code() >= 500 => (
                retry_after(r.header_map()),
                format!("HTTP {}", r.status_code()),
            ),
            Err(e) if is_connect(e) => (None, "connection failed".to_string()),
            _ => return outcome,
        };
        if retry + 1 >= policy.max_attempts.max(1) {
            return outcome;
        }
        let delay = policy.delay(retry, wait);
        tracing::warn!(
            provider,
            attempt = retry + 1,
            wait_ms = delay.as_millis() as u64,
            "{why}; retrying"
        );
        drop(outcome);
        tokio::time::sleep(delay).await;
        retry += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

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
    fn retry_after_headers_parse() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(250)));
        let mut d = HeaderMap::new();
        d.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(
            retry_after(&d),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        assert_eq!(
            parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(1_445_412_480)
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse_http_date("tomorrow"), None);
        let mut bad = HeaderMap::new();
        bad.insert("retry-after", HeaderValue::from_static("-1"));
        assert_eq!(retry_after(&bad), None);
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
