//! Datasets: in-memory image classification data, the published file formats it is loaded from
//! (CIFAR-10/100 binary, ImageNet16-120 pickles, image folders, MNIST-style IDX, scikit-learn
//! digits), stratified splits, per-channel normalisation, the paper's augmentation, batching and
//! an opt-in checksummed download.
//!
//! Every image is stored as `u8` in channel-major order (C, H, W); a [`Batcher`] turns them into
//! normalised (and optionally augmented) `f32` batches for the trainer.

mod augment;
mod batch;
mod cifar;
mod digits;
pub mod download;
mod error;
mod folder;
mod idx;
mod imagenet16;
mod pickle;
mod spec;
mod util;

pub(crate) use augment::normalize_into;
pub use batch::{Batch, Batcher};
pub use cifar::{Cifar100Labels, load_cifar10, load_cifar100};
pub use digits::{EMBEDDED_DIGITS_CSV_GZ, load_digits, parse_digits_csv};
pub use download::{Checksum, Downloader, RemoteDataset};
pub use error::DataError;
pub use folder::load_image_folder;
pub use idx::{load_idx, load_idx_pair};
pub use imagenet16::{IMAGENET16_CLASSES, load_imagenet16};
pub use spec::{DEFAULT_SPLIT_SEED, DEFAULT_VAL_FRACTION, DatasetSpec};

/// The in-memory data types live in `lemo-core` (a third-party trainer needs no loader); they
/// are re-exported here under their old paths.
pub use lemo_core::data::{Affine, Augmentation, Dataset, DatasetError, Normalization, Splits};
