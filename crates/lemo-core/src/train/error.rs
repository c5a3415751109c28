//! Errors of building, training, measuring, saving and loading a network.

/// Everything that can go wrong training or measuring a network, outside the data loaders.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// The graph does not validate for the task (the architect's error, with lemo-arch's message).
    #[error("invalid network: {0}")]
    InvalidGraph(String),
    /// A node uses a hyper-parameter the trainer cannot build (names the node).
    #[error("node {node}: {reason}")]
    Unsupported {
        /// Id of the node.
        node: String,
        /// What is wrong.
        reason: String,
    },
    /// The data does not fit the task (shape, classes, empty splits).
    #[error("data does not fit the task: {0}")]
    Data(String),
    /// A training configuration value is out of range.
    #[error("invalid training configuration: {0}")]
    Config(String),
    /// The requested backend is not compiled in or cannot start.
    #[error("backend {backend} is not available: {reason}")]
    BackendUnavailable {
        /// The backend asked for.
        backend: String,
        /// Why it cannot be used (e.g. "compiled without the `cuda` feature").
        reason: String,
    },
    /// The device reported an execution error or a tensor could not be read back.
    #[error("device error: {0}")]
    Device(String),
    /// An energy meter failed.
    #[error("energy meter: {0}")]
    Energy(#[from] crate::energy::EnergyError),
    /// Reading or writing saved weights failed.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}
