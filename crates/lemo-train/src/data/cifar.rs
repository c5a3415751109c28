//! CIFAR-10 and CIFAR-100 in their binary ("suitable for C programs") releases.
//!
//! CIFAR-10: `data_batch_1.bin` .. `data_batch_5.bin` and `test_batch.bin`, each a run of
//! 3,073-byte records: 1 label byte (0..=9), then 3,072 pixel bytes (1,024 red, 1,024 green,
//! 1,024 blue, rows top to bottom); class names in `batches.meta.txt`.
//! CIFAR-100: `train.bin` and `test.bin`, records of 3,074 bytes: coarse label (0..=19), fine
//! label (0..=99), 3,072 pixel bytes; names in `coarse_label_names.txt` / `fine_label_names.txt`.

use std::path::Path;

use super::util::{numbered_names, read_file, read_names, resolve_dir};
use super::{DataError, Dataset};

const PIXELS: usize = 3 * 32 * 32;
/// Coarse labels are below 20, fine labels below 100.
const CIFAR100_LIMITS: [usize; 2] = [20, 100];

/// The CIFAR-10 class names, used when `batches.meta.txt` is absent.
const CIFAR10_NAMES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// Which of CIFAR-100's two labels to classify by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cifar100Labels {
    /// The 100 fine classes.
    #[default]
    Fine,
    /// The 20 coarse superclasses.
    Coarse,
}

/// Parse records of one label byte per entry of `limits` (each label must be below its limit)
/// plus 3,072 pixels; label byte `pick` is the class.
fn parse_records(
    path: &Path,
    bytes: &[u8],
    limits: &[usize],
    pick: usize,
    images: &mut Vec<u8>,
    labels: &mut Vec<u32>,
) -> Result<(), DataError> {
    let label_bytes = limits.len();
    let record = label_bytes + PIXELS;
    if bytes.is_empty() {
        return Err(DataError::invalid(
            path,
            "empty file, expected CIFAR records",
        ));
    }
    let whole = bytes.len() / record;
    if !bytes.len().is_multiple_of(record) {
        return Err(DataError::truncated(
            path,
            (whole * record) as u64,
            format!(
                "record {whole} needs {record} bytes, only {} left",
                bytes.len() - whole * record
            ),
        ));
    }
    images.reserve(whole * PIXELS);
    labels.reserve(whole);
    for (r, rec) in bytes.chunks_exact(record).enumerate() {
        for (k, (&l, &limit)) in rec.iter().zip(limits).enumerate() {
            if usize::from(l) >= limit {
                return Err(DataError::malformed(
                    path,
                    (r * record + k) as u64,
                    format!("label byte {k} of record {r} is {l}, must be below {limit}"),
                ));
            }
        }
        // A record is the label bytes (pick among them) and the pixels.
        let (Some(&label), Some(pixels)) = (rec.get(pick), rec.get(label_bytes..)) else {
            return Err(DataError::malformed(
                path,
                (r * record) as u64,
                format!("record {r} is shorter than its {label_bytes} label bytes"),
            ));
        };
        labels.push(u32::from(label));
        images.extend_from_slice(pixels);
    }
    Ok(())
}

fn load_files(
    name: &str,
    files: &[std::path::PathBuf],
    limits: &[usize],
    pick: usize,
    class_names: &[String],
) -> Result<Dataset, DataError> {
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for f in files {
        let bytes = read_file(f)?;
        parse_records(f, &bytes, limits, pick, &mut images, &mut labels)?;
    }
    Ok(Dataset::new(
        name,
        [3, 32, 32],
        class_names.to_vec(),
        images,
        labels,
    )?)
}

/// Load CIFAR-10 from `dir` (the `cifar-10-batches-bin` folder, or the folder holding it):
/// the five training batches (all required) and `test_batch.bin` (optional).
pub fn load_cifar10(dir: &Path) -> Result<(Dataset, Option<Dataset>), DataError> {
    let dir = resolve_dir(dir, "cifar-10-batches-bin", "data_batch_1.bin");
    let names = match read_names(&dir.join("batches.meta.txt"))? {
        Some(mut n) if n.len() >= 10 => {
            n.truncate(10);
            n
        }
        Some(n) => {
            return Err(DataError::invalid(
                dir.join("batches.meta.txt"),
                format!("{} class names, expected 10", n.len()),
            ));
        }
        None => CIFAR10_NAMES.iter().map(|s| (*s).to_owned()).collect(),
    };
    let train: Vec<_> = (1..=5)
        .map(|i| dir.join(format!("data_batch_{i}.bin")))
        .collect();
    if let Some(missing) = train.iter().find(|p| !p.exists()) {
        return Err(DataError::invalid(
            missing,
            "missing CIFAR-10 training batch (expected data_batch_1.bin .. data_batch_5.bin)",
        ));
    }
    let train = load_files("cifar10", &train, &[10], 0, &names)?;
    let test_path = dir.join("test_batch.bin");
    let test = if test_path.exists() {
        Some(load_files("cifar10-test", &[test_path], &[10], 0, &names)?)
    } else {
        None
    };
    Ok((train, test))
}

/// Load CIFAR-100 from `dir` (the `cifar-100-binary` folder, or the folder holding it):
/// `train.bin` (required) and `test.bin` (optional), classified by `labels`.
pub fn load_cifar100(
    dir: &Path,
    labels: Cifar100Labels,
) -> Result<(Dataset, Option<Dataset>), DataError> {
    let dir = resolve_dir(dir, "cifar-100-binary", "train.bin");
    let (pick, classes, names_file): (usize, usize, &str) = match labels {
        Cifar100Labels::Coarse => (0, 20, "coarse_label_names.txt"),
        Cifar100Labels::Fine => (1, 100, "fine_label_names.txt"),
    };
    let names = match read_names(&dir.join(names_file))? {
        Some(mut n) if n.len() >= classes => {
            n.truncate(classes);
            n
        }
        Some(n) => {
            return Err(DataError::invalid(
                dir.join(names_file),
                format!("{} class names, expected {classes}", n.len()),
            ));
        }
        None => numbered_names(classes),
    };
    let train_path = dir.join("train.bin");
    if !train_path.exists() {
        return Err(DataError::invalid(
            &train_path,
            "missing CIFAR-100 train.bin",
        ));
    }
    let train = load_files("cifar100", &[train_path], &CIFAR100_LIMITS, pick, &names)?;
    let test_path = dir.join("test.bin");
    let test = if test_path.exists() {
        Some(load_files(
            "cifar100-test",
            &[test_path],
            &CIFAR100_LIMITS,
            pick,
            &names,
        )?)
    } else {
        None
    };
    Ok((train, test))
}
