//! The crate's error type lives in `lemo-core` (the architect seam returns it); re-exported here.

pub use lemo_core::llm::LlmError;

/// The first `max` characters of `text`, with an ellipsis when cut.
pub(crate) fn excerpt(text: &str, max: usize) -> String {
    let mut out: String = text.chars().take(max).collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out
}
