//! ImageNet16-120 as NAS-Bench-201 uses it: the 16x16 downsampled ImageNet of Chrabaszcz et al.
//! (2017), Python pickles `train_data_batch_1` .. `train_data_batch_10` and `val_data`, each a
//! dict with `data` (a numpy uint8 array of N x 768: 256 red, 256 green, 256 blue bytes per image)
//! and `labels` (N labels 1..=1000). Only the classes 1..=120 are kept, as labels 0..=119.

use std::path::Path;

use super::pickle::{self, Value};
use super::util::read_file;
use super::{DataError, Dataset};

/// Number of classes kept (labels 1..=120 of the 1,000).
pub const IMAGENET16_CLASSES: usize = 120;

const PIXELS: usize = 3 * 16 * 16;

/// Append the images of classes 1..=120 of one pickled batch file.
fn load_batch(path: &Path, images: &mut Vec<u8>, labels: &mut Vec<u32>) -> Result<(), DataError> {
    let bytes = read_file(path)?;
    let value = pickle::parse(&bytes).map_err(|e| {
        if e.truncated {
            DataError::truncated(path, e.offset, e.what)
        } else {
            DataError::malformed(path, e.offset, e.what)
        }
    })?;
    let Value::Dict(_) = &value else {
        return Err(DataError::invalid(
            path,
            format!("expected a pickled dict, found a {}", value.kind()),
        ));
    };
    let data = match value.get("data") {
        Some(Value::Array(a)) => a,
        Some(other) => {
            return Err(DataError::invalid(
                path,
                format!("'data' is a {}, expected a uint8 numpy array", other.kind()),
            ));
        }
        None => return Err(DataError::invalid(path, "no 'data' key")),
    };
    let n = data.shape.first().copied().unwrap_or(0);
    let per: usize = data.shape.iter().skip(1).product();
    if data.descr != "u1" || per != PIXELS || data.fortran || data.data.len() != n * PIXELS {
        return Err(DataError::invalid(
            path,
            format!(
                "'data' is {} {:?}{} with {} bytes, expected uint8 N x 768 (16x16x3, row-major)",
                data.descr,
                data.shape,
                if data.fortran { " (Fortran order)" } else { "" },
                data.data.len()
            ),
        ));
    }
    let raw: Vec<i64> = match value.get("labels") {
        Some(Value::List(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::Int(l) => Ok(*l),
                other => Err(DataError::invalid(
                    path,
                    format!("'labels' item {i} is a {}, expected an int", other.kind()),
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(Value::Array(a)) => a
            .to_i64()
            .ok_or_else(|| DataError::invalid(path, format!("'labels' is a {} array", a.descr)))?,
        Some(other) => {
            return Err(DataError::invalid(
                path,
                format!("'labels' is a {}, expected a list of ints", other.kind()),
            ));
        }
        None => return Err(DataError::invalid(path, "no 'labels' key")),
    };
    if raw.len() != n {
        return Err(DataError::invalid(
            path,
            format!("{} labels for {n} images", raw.len()),
        ));
    }
    for (i, &l) in raw.iter().enumerate() {
        if !(1..=1000).contains(&l) {
            return Err(DataError::invalid(
                path,
                format!("label {l} of image {i} is outside 1..=1000"),
            ));
        }
        if l as usize <= IMAGENET16_CLASSES {
            labels.push((l - 1) as u32);
            let image = data
                .data
                .get(i * PIXELS..(i + 1) * PIXELS)
                .ok_or_else(|| DataError::invalid(path, format!("image {i} is missing")))?;
            images.extend_from_slice(image);
        }
    }
    Ok(())
}

/// Load ImageNet16-120 from `dir`: the training batches `train_data_batch_1..10` that exist (at
/// least the first) and `val_data` (optional) as the test split. Class names are the 1-based
/// ImageNet16 labels "1" .. "120".
pub fn load_imagenet16(dir: &Path) -> Result<(Dataset, Option<Dataset>), DataError> {
    let names: Vec<String> = (1..=IMAGENET16_CLASSES).map(|i| i.to_string()).collect();
    let first = dir.join("train_data_batch_1");
    if !first.exists() {
        return Err(DataError::invalid(
            &first,
            "missing ImageNet16 training batch (expected train_data_batch_1 .. _10)",
        ));
    }
    let mut images = Vec::new();
    let mut labels = Vec::new();
    let mut found = 0;
    for i in 1..=10 {
        let p = dir.join(format!("train_data_batch_{i}"));
        if p.exists() {
            load_batch(&p, &mut images, &mut labels)?;
            found += 1;
        }
    }
    if found < 10 {
        tracing::warn!(dir = %dir.display(), found, "ImageNet16: fewer than 10 training batches");
    }
    let train = Dataset::new("imagenet16-120", [3, 16, 16], names.clone(), images, labels)?;
    let val = dir.join("val_data");
    let test = if val.exists() {
        let mut images = Vec::new();
        let mut labels = Vec::new();
        load_batch(&val, &mut images, &mut labels)?;
        Some(Dataset::new(
            "imagenet16-120-test",
            [3, 16, 16],
            names,
            images,
            labels,
        )?)
    } else {
        None
    };
    Ok((train, test))
}
