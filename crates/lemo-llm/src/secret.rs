//! API keys that never show: redacted `Debug` and `Display`, no `Serialize`.

use std::fmt;

/// The text written wherever a secret would have appeared.
pub const REDACTED: &str = "[redacted]";

/// An API key. Its `Debug` and `Display` print [`REDACTED`]; it cannot be serialised, so it
/// never reaches a configuration file, a journal or a report. Read it with [`Secret::expose`]
/// only where it goes on the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a key, trimming surrounding whitespace (a key pasted with a newline).
    pub fn new(key: impl Into<String>) -> Self {
        Secret(key.into().trim().to_string())
    }

    /// The first of the environment variables `names` that is set and not blank, with its name.
    pub fn from_env<'a>(names: &[&'a str]) -> Option<(Secret, &'a str)> {
        names.iter().find_map(|name| {
            std::env::var(name)
                .ok()
                .map(Secret::new)
                .filter(|s| !s.0.is_empty())
                .map(|s| (s, *name))
        })
    }

    /// The key itself, for the request header. Never log or store what this returns.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the key is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the key is usable in an HTTP header (visible ASCII only).
    pub fn is_header_safe(&self) -> bool {
        self.0.bytes().all(|b| b.is_ascii_graphic())
    }

    /// `text` with every occurrence of the key replaced by [`REDACTED`]: applied to every error
    /// message that passes through a backend, whatever produced it.
    pub fn redact_in(&self, text: &str) -> String {
        if self.0.len() < 4 {
            return text.to_string();
        }
        text.replace(&self.0, REDACTED)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({REDACTED})")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Redacts `secret` (when there is one) in `text`.
#[cfg(any(feature = "openai", feature = "gemini"))]
pub(crate) fn redact(secret: Option<&Secret>, text: &str) -> String {
    match secret {
        Some(s) => s.redact_in(text),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_key() {
        let key = Secret::new("sk-live-1234567890abcdef\n");
        assert_eq!(key.expose(), "sk-live-1234567890abcdef");
        for shown in [format!("{key:?}"), format!("{key}"), format!("{key:#?}")] {
            assert!(!shown.contains("sk-live"), "{shown}");
            assert!(shown.contains(REDACTED));
        }
        let nested = format!("{:?}", Some(vec![key.clone()]));
        assert!(!nested.contains("1234567890"));
    }

    #[test]
    fn redact_in_replaces_every_occurrence() {
        let key = Secret::new("AIzaSyExampleKey");
        let text = "GET /v1beta/models?key=AIzaSyExampleKey failed; AIzaSyExampleKey again";
        let clean = key.redact_in(text);
        assert!(!clean.contains("AIzaSyExampleKey"));
        assert_eq!(clean.matches(REDACTED).count(), 2);
    }

    #[test]
    fn header_safety_rejects_control_characters() {
        assert!(Secret::new("abc-DEF_123").is_header_safe());
        assert!(!Secret::new("abc\u{7}def").is_header_safe());
        assert!(!Secret::new("abc def").is_header_safe());
    }
}
