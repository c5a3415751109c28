//! Sending HTTP requests under a [`RetryPolicy`]: the retry loop, `Retry-After` and the attempt
//! count. Compiled with the clients that use it (the `openai` and `gemini` features).

// The `http` 1 header types, which both reqwest versions re-export: from whichever is compiled in.
#[cfg(feature = "gemini")]
use reqwest::header::HeaderMap;
#[cfg(not(feature = "gemini"))]
use reqwest13::header::HeaderMap;

use crate::retry::RetryPolicy;
use std::cell::Cell;
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

#[cfg(feature = "gemini")]
impl HttpAnswer for reqwest::Response {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
    fn header_map(&self) -> &HeaderMap {
        self.headers()
    }
}

#[cfg(feature = "openai")]
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
    #[cfg(feature = "gemini")]
    use reqwest::header::HeaderValue;
    #[cfg(not(feature = "gemini"))]
    use reqwest13::header::HeaderValue;

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
}
