//! The error type of every dataset loader, the batcher and the downloader.

use std::path::PathBuf;

/// What went wrong while reading, checking or fetching a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file or folder could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file ended before the data its format announces.
    #[error("{}: truncated at byte {offset}: {what}", path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Byte offset (in the decompressed stream for gzipped files) where data is missing.
        offset: u64,
        /// What was being read there.
        what: String,
    },
    /// A file does not follow its published format.
    #[error("{}: malformed at byte {offset}: {what}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Byte offset (in the decompressed stream for gzipped files) of the bad data.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// An image file could not be decoded.
    #[error("{}: cannot decode image: {source}", path.display())]
    Image {
        /// The image file.
        path: PathBuf,
        /// The decoder's error.
        #[source]
        source: image::ImageError,
    },
    /// The files are readable but do not form a usable dataset (missing files, sizes that differ,
    /// no images, classes that do not match).
    #[error("{}: {what}", path.display())]
    Invalid {
        /// The file or folder concerned.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// The images and labels do not form a dataset (`lemo-core`'s check).
    #[error(transparent)]
    Dataset(#[from] lemo_core::data::DatasetError),
    /// A request to build or use a dataset was wrong (bad fraction, batch size 0, ...).
    #[error("invalid argument: {0}")]
    Argument(String),
    /// A download failed (network, HTTP status, server).
    #[error("download of {url} failed: {what}")]
    Download {
        /// The URL.
        url: String,
        /// What went wrong.
        what: String,
    },
    /// A downloaded file does not have its published checksum; it was deleted.
    #[error("{}: checksum mismatch: expected {expected}, got {actual}", path.display())]
    Checksum {
        /// The file that was checked (already removed).
        path: PathBuf,
        /// The published checksum.
        expected: String,
        /// The checksum of what arrived.
        actual: String,
    },
}

impl DataError {
    /// An [`DataError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// A [`DataError::Invalid`] for `path`.
    pub fn invalid(path: impl Into<PathBuf>, what: impl Into<String>) -> Self {
        Self::Invalid {
            path: path.into(),
            what: what.into(),
        }
    }

    /// A [`DataError::Malformed`] for `path` at `offset`.
    pub fn malformed(path: impl Into<PathBuf>, offset: u64, what: impl Into<String>) -> Self {
        Self::Malformed {
            path: path.into(),
            offset,
            what: what.into(),
        }
    }

    /// A [`DataError::Truncated`] for `path` at `offset`.
    pub fn truncated(path: impl Into<PathBuf>, offset: u64, what: impl Into<String>) -> Self {
        Self::Truncated {
            path: path.into(),
            offset,
            what: what.into(),
        }
    }
}
