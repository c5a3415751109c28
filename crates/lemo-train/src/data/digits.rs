//! scikit-learn's digits (UCI optical recognition of handwritten digits, test part): 1,797 grey
//! 8x8 images of the digits 0-9, as `digits.csv.gz`: per row 64 values 0..=16, then the label.
//! A copy is embedded in the binary, so the quickstart needs no file and no download.

use std::path::Path;

use super::util::{numbered_names, read_maybe_gz};
use super::{DataError, Dataset};

/// The embedded `digits.csv.gz` (scikit-learn, BSD-3-Clause; see `data/README.md`).
pub const EMBEDDED_DIGITS_CSV_GZ: &[u8] = include_bytes!("../../../../data/digits.csv.gz");

/// Parse the digits CSV (gzipped or plain) read from `path` (used in error messages). Pixel
/// values 0..=16 are scaled to 0..=255.
pub fn parse_digits_csv(bytes: &[u8], path: &Path) -> Result<Dataset, DataError> {
    let text_bytes;
    let bytes = if super::util::is_gzip(bytes) {
        use std::io::Read;
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(|e| {
                DataError::malformed(path, out.len() as u64, format!("bad gzip data ({e})"))
            })?;
        text_bytes = out;
        &text_bytes[..]
    } else {
        bytes
    };
    let mut images = Vec::new();
    let mut labels = Vec::new();
    let mut offset = 0usize;
    for (row, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let at = offset;
        offset += line.len() + 1;
        let line = std::str::from_utf8(line)
            .map_err(|_| DataError::malformed(path, at as u64, format!("row {row} is not text")))?
            .trim();
        if line.is_empty() {
            continue;
        }
        let values: Vec<&str> = line.split(',').collect();
        if values.len() != 65 {
            return Err(DataError::malformed(
                path,
                at as u64,
                format!(
                    "row {row} has {} values, expected 64 pixels and a label",
                    values.len()
                ),
            ));
        }
        for (k, v) in values.iter().enumerate() {
            let x: f64 = v.trim().parse().map_err(|_| {
                DataError::malformed(path, at as u64, format!("row {row}, column {k}: {v:?}"))
            })?;
            let (limit, what) = if k < 64 {
                (16.0, "pixel")
            } else {
                (9.0, "label")
            };
            if !(0.0..=limit).contains(&x) || x.fract() != 0.0 {
                return Err(DataError::malformed(
                    path,
                    at as u64,
                    format!("row {row}, column {k}: {what} {v} is not an integer 0..={limit}"),
                ));
            }
            if k < 64 {
                images.push((x * 255.0 / 16.0).round() as u8);
            } else {
                labels.push(x as u32);
            }
        }
    }
    if labels.is_empty() {
        return Err(DataError::invalid(path, "no rows"));
    }
    Ok(Dataset::new(
        "digits",
        [1, 8, 8],
        numbered_names(10),
        images,
        labels,
    )?)
}

/// Load the digits from `path`, or the embedded copy when `None`.
pub fn load_digits(path: Option<&Path>) -> Result<Dataset, DataError> {
    match path {
        Some(p) => parse_digits_csv(&read_maybe_gz(p)?, p),
        None => parse_digits_csv(
            EMBEDDED_DIGITS_CSV_GZ,
            Path::new("<embedded digits.csv.gz>"),
        ),
    }
}
