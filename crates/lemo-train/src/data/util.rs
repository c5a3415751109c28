//! Small file helpers shared by the loaders.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::DataError;

/// Read a whole file.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|e| DataError::io(path, e))
}

/// Whether `bytes` start with the gzip magic number.
pub(crate) fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

/// Read a file, gunzipping it when it is gzip-compressed. A damaged or cut gzip stream is an
/// error naming the file and the decompressed offset reached.
pub(crate) fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = read_file(path)?;
    if !is_gzip(&raw) {
        return Ok(raw);
    }
    let mut out = Vec::with_capacity(raw.len() * 4);
    let mut dec = flate2::read::MultiGzDecoder::new(raw.as_slice());
    match dec.read_to_end(&mut out) {
        Ok(_) => Ok(out),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(DataError::truncated(
            path,
            out.len() as u64,
            format!("gzip stream ends early ({e})"),
        )),
        Err(e) => Err(DataError::malformed(
            path,
            out.len() as u64,
            format!("bad gzip data ({e})"),
        )),
    }
}

/// Non-empty trimmed lines of a text file, or `None` if it does not exist.
pub(crate) fn read_names(path: &Path) -> Result<Option<Vec<String>>, DataError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect(),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(DataError::io(path, e)),
    }
}

/// `dir` itself if it holds `marker`, else `dir/sub` if that holds it (the folder a published
/// archive unpacks to), else `dir` (so the error names the file the user pointed at).
pub(crate) fn resolve_dir(dir: &Path, sub: &str, marker: &str) -> PathBuf {
    if dir.join(marker).exists() {
        return dir.to_path_buf();
    }
    let nested = dir.join(sub);
    if nested.join(marker).exists() {
        nested
    } else {
        dir.to_path_buf()
    }
}

/// Class names "0", "1", ... for formats without a names file.
pub(crate) fn numbered_names(n: usize) -> Vec<String> {
    (0..n).map(|i| i.to_string()).collect()
}
