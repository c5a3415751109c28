//! MNIST-style IDX files (MNIST, Fashion-MNIST, KMNIST, ...), gzipped or not.
//!
//! An IDX file is a 4-byte magic number (0, 0, element type, number of dimensions), one
//! big-endian `u32` per dimension, then the elements row-major. Images are `u8` with 3 dimensions
//! (N, height, width), labels `u8` with one (N).

use std::path::{Path, PathBuf};

use super::util::{numbered_names, read_maybe_gz, read_names};
use super::{DataError, Dataset};

/// The parsed header and payload of one IDX file.
struct Idx {
    dims: Vec<usize>,
    data: Vec<u8>,
    /// Offset of the first element.
    start: usize,
}

fn parse_idx(path: &Path, dims_wanted: usize) -> Result<Idx, DataError> {
    let mut bytes = read_maybe_gz(path)?;
    let Some(&[m0, m1, m2, m3]) = bytes.first_chunk::<4>() else {
        return Err(DataError::truncated(
            path,
            0,
            "IDX magic number needs 4 bytes",
        ));
    };
    if m0 != 0 || m1 != 0 {
        return Err(DataError::malformed(
            path,
            0,
            format!(
                "not an IDX file (magic {:02x} {:02x} {:02x} {:02x})",
                m0, m1, m2, m3
            ),
        ));
    }
    if m2 != 0x08 {
        return Err(DataError::malformed(
            path,
            2,
            format!(
                "element type 0x{:02x}, only unsigned bytes (0x08) are supported",
                m2
            ),
        ));
    }
    let ndim = usize::from(m3);
    if ndim != dims_wanted {
        return Err(DataError::malformed(
            path,
            3,
            format!("{ndim} dimensions, expected {dims_wanted}"),
        ));
    }
    let start = 4 + 4 * ndim;
    let Some(header) = bytes.get(4..start) else {
        return Err(DataError::truncated(
            path,
            bytes.len() as u64,
            format!("header of {ndim} dimensions needs {start} bytes"),
        ));
    };
    let dims: Vec<usize> = header
        .as_chunks::<4>()
        .0
        .iter()
        .map(|c| u32::from_be_bytes(*c) as usize)
        .collect();
    let want = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| DataError::malformed(path, 4, format!("dimensions {dims:?} overflow")))?;
    let have = bytes.len() - start;
    if have < want {
        return Err(DataError::truncated(
            path,
            bytes.len() as u64,
            format!("dimensions {dims:?} need {want} data bytes, file has {have}"),
        ));
    }
    if have > want {
        return Err(DataError::malformed(
            path,
            (start + want) as u64,
            format!(
                "{} bytes after the {want} data bytes of {dims:?}",
                have - want
            ),
        ));
    }
    bytes.drain(..start);
    Ok(Idx {
        dims,
        data: bytes,
        start,
    })
}

/// Load one images file and its labels file (gzipped or not) as a dataset with `classes` classes
/// (`None`: the largest label plus one) named `class_names` (`None`: "0", "1", ...).
pub fn load_idx_pair(
    images: &Path,
    labels: &Path,
    name: &str,
    classes: Option<usize>,
) -> Result<Dataset, DataError> {
    let img = parse_idx(images, 3)?;
    let lab = parse_idx(labels, 1)?;
    // parse_idx checked the number of dimensions (3 and 1).
    let &[n, h, w] = img.dims.as_slice() else {
        return Err(DataError::malformed(images, 3, "expected 3 dimensions"));
    };
    let &[label_count] = lab.dims.as_slice() else {
        return Err(DataError::malformed(labels, 3, "expected 1 dimension"));
    };
    if label_count != n {
        return Err(DataError::invalid(
            labels,
            format!(
                "{} labels for the {n} images of {}",
                label_count,
                images.display()
            ),
        ));
    }
    let max = lab.data.iter().copied().max().map_or(0, usize::from);
    let classes = classes.unwrap_or(max + 1);
    if let Some((i, l)) = lab
        .data
        .iter()
        .enumerate()
        .find(|&(_, &l)| usize::from(l) >= classes)
    {
        return Err(DataError::malformed(
            labels,
            (lab.start + i) as u64,
            format!("label {l} is not below {classes}"),
        ));
    }
    Ok(Dataset::new(
        name,
        [1, h, w],
        numbered_names(classes),
        img.data,
        lab.data.into_iter().map(u32::from).collect(),
    )?)
}

/// `dir/<stem>` with `-idx` or `.idx` spelling, gzipped or not, if one exists.
fn find(dir: &Path, prefix: &str, suffix: &str) -> Option<PathBuf> {
    ["-", "."].iter().find_map(|sep| {
        let base = format!("{prefix}{sep}{suffix}");
        [base.clone(), format!("{base}.gz")]
            .into_iter()
            .map(|f| dir.join(f))
            .find(|p| p.exists())
    })
}

/// Load MNIST-style IDX files from `dir`: `train-images-idx3-ubyte` and
/// `train-labels-idx1-ubyte` (required), `t10k-images-idx3-ubyte` and `t10k-labels-idx1-ubyte`
/// (optional test split), each optionally `.gz`. Class names come from `classes.txt` (one per
/// line) when present, else "0", "1", ...
pub fn load_idx(dir: &Path) -> Result<(Dataset, Option<Dataset>), DataError> {
    let missing = |f: &str| {
        DataError::invalid(
            dir.join(f),
            "missing IDX file (also looked for the .gz and '.idx' spellings)",
        )
    };
    let ti = find(dir, "train-images", "idx3-ubyte")
        .ok_or_else(|| missing("train-images-idx3-ubyte"))?;
    let tl = find(dir, "train-labels", "idx1-ubyte")
        .ok_or_else(|| missing("train-labels-idx1-ubyte"))?;
    let names = read_names(&dir.join("classes.txt"))?;
    let classes = names.as_ref().map(Vec::len);
    let name = dir
        .file_name()
        .map_or_else(|| "idx".to_owned(), |n| n.to_string_lossy().into_owned());
    let mut train = load_idx_pair(&ti, &tl, &name, classes)?;
    let test = match (
        find(dir, "t10k-images", "idx3-ubyte"),
        find(dir, "t10k-labels", "idx1-ubyte"),
    ) {
        (Some(i), Some(l)) => Some(load_idx_pair(&i, &l, &format!("{name}-test"), classes)?),
        _ => None,
    };
    let mut test = test;
    // Train and test must agree on the number of classes.
    let k = train
        .classes()
        .max(test.as_ref().map_or(0, Dataset::classes));
    let names = names.unwrap_or_else(|| numbered_names(k));
    train.class_names = names.clone();
    if let Some(t) = &mut test {
        t.class_names = names;
    }
    Ok((train, test))
}
