//! [`DatasetSpec`]: which dataset a run uses, as written in the run configuration.

use std::path::PathBuf;

use super::{
    Cifar100Labels, DataError, Dataset, Splits, load_cifar10, load_cifar100, load_digits, load_idx,
    load_image_folder, load_imagenet16,
};

/// The validation share of the training data (the paper's 9:1 split).
pub const DEFAULT_VAL_FRACTION: f64 = 0.1;
/// The seed of the train/validation split when none is given.
pub const DEFAULT_SPLIT_SEED: u64 = 0;

/// A dataset in one of the supported published formats.
///
/// In TOML: `dataset = { kind = "cifar10", dir = "data/cifar-10-batches-bin" }`,
/// `{ kind = "cifar100", dir = "...", labels = "coarse" }`, `{ kind = "imagenet16", dir = "..." }`,
/// `{ kind = "image_folder", dir = "...", size = [32, 32] }`, `{ kind = "idx", dir = "..." }`,
/// `{ kind = "digits" }`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum DatasetSpec {
    /// CIFAR-10 binary release: `data_batch_1..5.bin`, `test_batch.bin`, `batches.meta.txt`.
    Cifar10 {
        /// The `cifar-10-batches-bin` folder (or the folder holding it).
        dir: PathBuf,
    },
    /// CIFAR-100 binary release: `train.bin`, `test.bin`.
    Cifar100 {
        /// The `cifar-100-binary` folder (or the folder holding it).
        dir: PathBuf,
        /// Classify by the 100 fine or the 20 coarse labels.
        #[serde(default)]
        labels: Cifar100Labels,
    },
    /// ImageNet16-120 (NAS-Bench-201 pickles `train_data_batch_1..10`, `val_data`).
    #[serde(rename = "imagenet16")]
    ImageNet16 {
        /// The folder holding the pickles.
        dir: PathBuf,
    },
    /// `dir/train/<class>/*.jpg|jpeg|png`, optional `dir/test/<class>/...`.
    ImageFolder {
        /// The root folder.
        dir: PathBuf,
        /// Resize every image to `[height, width]`; without it all images must share one size.
        #[serde(default)]
        size: Option<[usize; 2]>,
    },
    /// MNIST-style IDX files (`train-images-idx3-ubyte[.gz]`, ... as Fashion-MNIST names them).
    Idx {
        /// The folder holding the IDX files.
        dir: PathBuf,
    },
    /// scikit-learn's digits CSV; the embedded copy when `path` is absent.
    Digits {
        /// A `digits.csv[.gz]` to read instead of the embedded copy.
        #[serde(default)]
        path: Option<PathBuf>,
    },
}

impl Default for DatasetSpec {
    /// The embedded digits: works offline, from any working directory.
    fn default() -> Self {
        DatasetSpec::Digits { path: None }
    }
}

impl DatasetSpec {
    /// A short name of the format ("cifar10", "digits", ...).
    pub fn kind(&self) -> &'static str {
        match self {
            DatasetSpec::Cifar10 { .. } => "cifar10",
            DatasetSpec::Cifar100 { .. } => "cifar100",
            DatasetSpec::ImageNet16 { .. } => "imagenet16",
            DatasetSpec::ImageFolder { .. } => "image_folder",
            DatasetSpec::Idx { .. } => "idx",
            DatasetSpec::Digits { .. } => "digits",
        }
    }

    /// CIFAR-10 found in `dir`: the binary release (`dir/cifar-10-batches-bin/` or `dir`
    /// itself holding `data_batch_1.bin`) or the image-folder form (`dir/cifar10-jpeg/` or
    /// `dir` itself holding `train/` and `test/`, images read at 32x32). `None`: neither.
    pub fn find_cifar10(dir: &std::path::Path) -> Option<DatasetSpec> {
        for bin in [dir.join("cifar-10-batches-bin"), dir.to_path_buf()] {
            if bin.join("data_batch_1.bin").is_file() {
                return Some(DatasetSpec::Cifar10 { dir: bin });
            }
        }
        for root in [dir.join("cifar10-jpeg"), dir.to_path_buf()] {
            if root.join("train").is_dir() && root.join("test").is_dir() {
                return Some(DatasetSpec::ImageFolder {
                    dir: root,
                    size: Some([32, 32]),
                });
            }
        }
        None
    }

    /// The training data and, where the format has one, the test set, as stored.
    pub fn load_raw(&self) -> Result<(Dataset, Option<Dataset>), DataError> {
        match self {
            DatasetSpec::Cifar10 { dir } => load_cifar10(dir),
            DatasetSpec::Cifar100 { dir, labels } => load_cifar100(dir, *labels),
            DatasetSpec::ImageNet16 { dir } => load_imagenet16(dir),
            DatasetSpec::ImageFolder { dir, size } => load_image_folder(dir, *size),
            DatasetSpec::Idx { dir } => load_idx(dir),
            DatasetSpec::Digits { path } => Ok((load_digits(path.as_deref())?, None)),
        }
    }

    /// Load with the paper's 9:1 stratified train/validation split (seed
    /// [`DEFAULT_SPLIT_SEED`]); the test split comes from the format's test files.
    pub fn load(&self) -> Result<Splits, DataError> {
        self.load_with(DEFAULT_VAL_FRACTION, DEFAULT_SPLIT_SEED)
    }

    /// Load with a stratified split of `val_fraction` of the training data, chosen with `seed`.
    pub fn load_with(&self, val_fraction: f64, seed: u64) -> Result<Splits, DataError> {
        if !(0.0..1.0).contains(&val_fraction) {
            return Err(DataError::Argument(format!(
                "validation fraction {val_fraction} is not in 0..1"
            )));
        }
        let (all, test) = self.load_raw()?;
        let (train, val) = all.split(val_fraction, seed);
        Ok(Splits { train, val, test })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cifar10_is_found_in_either_published_form() -> Result<(), std::io::Error> {
        let tmp = tempfile::tempdir()?;
        let root = tmp.path();
        assert_eq!(DatasetSpec::find_cifar10(root), None);
        std::fs::create_dir_all(root.join("cifar10-jpeg/train"))?;
        std::fs::create_dir_all(root.join("cifar10-jpeg/test"))?;
        assert_eq!(
            DatasetSpec::find_cifar10(root),
            Some(DatasetSpec::ImageFolder {
                dir: root.join("cifar10-jpeg"),
                size: Some([32, 32]),
            })
        );
        let bin = root.join("cifar-10-batches-bin");
        std::fs::create_dir_all(&bin)?;
        std::fs::write(bin.join("data_batch_1.bin"), [0u8])?;
        // The binary release wins, from the parent or from the folder itself.
        assert_eq!(
            DatasetSpec::find_cifar10(root),
            Some(DatasetSpec::Cifar10 { dir: bin.clone() })
        );
        assert_eq!(
            DatasetSpec::find_cifar10(&bin),
            Some(DatasetSpec::Cifar10 { dir: bin.clone() })
        );
        Ok(())
    }
}
