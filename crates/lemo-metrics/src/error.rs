//! Errors of the metrics crate.

use std::path::PathBuf;

/// Why user metrics (or observed metrics) could not be loaded or are not valid.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// A field holds a value outside its allowed range; `field` is its dotted path, e.g.
    /// `priorities.pa1`.
    #[error("{field} = {value} is invalid: {reason}")]
    InvalidField {
        /// Dotted path of the field, e.g. `thresholds.te1_kwh`.
        field: &'static str,
        /// The offending value.
        value: f64,
        /// What the value must be, e.g. `must be in [0, 1]`.
        reason: &'static str,
    },
    /// The text is not valid TOML for user metrics (the message names the line and field).
    #[error("invalid user metrics TOML: {0}")]
    Toml(#[from] toml::de::Error),
    /// The text is not valid JSON for user metrics (the message names the line and field).
    #[error("invalid user metrics JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The metrics could not be written as TOML.
    #[error("cannot write user metrics as TOML: {0}")]
    TomlWrite(#[from] toml::ser::Error),
    /// A metrics file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A metrics file whose extension is neither `.toml` nor `.json`.
    #[error("{path}: unknown metrics file format (expected a .toml or .json extension)")]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// A code (`PA1`, `TE1`, `A2`, a dataset name, ...) that is not known.
    #[error("unknown {kind} `{code}`; expected one of {expected}")]
    UnknownCode {
        /// What kind of code was expected (`priority`, `threshold`, `metric`, ...).
        kind: &'static str,
        /// The text given.
        code: String,
        /// The accepted codes.
        expected: &'static str,
    },
}
