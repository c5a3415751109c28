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

pub use augment::Augmentation;
pub use batch::{Batch, Batcher};
pub use cifar::{Cifar100Labels, load_cifar10, load_cifar100};
pub use digits::{EMBEDDED_DIGITS_CSV_GZ, load_digits, parse_digits_csv};
pub use download::{Checksum, Downloader, RemoteDataset};
pub use error::DataError;
pub use folder::load_image_folder;
pub use idx::{load_idx, load_idx_pair};
pub use imagenet16::{IMAGENET16_CLASSES, load_imagenet16};
pub use spec::{DEFAULT_SPLIT_SEED, DEFAULT_VAL_FRACTION, DatasetSpec};

use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use rand::seq::SliceRandom;

/// An image classification dataset held in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// A short name for reports ("cifar10-train", "digits", ...).
    pub name: String,
    /// Shape of one image: channels, height, width.
    pub shape: [usize; 3],
    /// One name per class; a label is an index into it.
    pub class_names: Vec<String>,
    /// All images, `len() * C * H * W` bytes, each image channel-major (CHW), values 0..=255.
    pub images: Vec<u8>,
    /// One label per image, each `< class_names.len()`.
    pub labels: Vec<u32>,
}

/// The train / validation / (optional) test splits of a task.
#[derive(Debug, Clone, PartialEq)]
pub struct Splits {
    /// The data the network is trained on.
    pub train: Dataset,
    /// Held-out data for the validation accuracy (A2) and the learning-rate plateau.
    pub val: Dataset,
    /// The format's own test set, where it has one.
    pub test: Option<Dataset>,
}

impl Splits {
    /// The per-channel normalisation of the training split.
    pub fn normalization(&self) -> Normalization {
        Normalization::from_dataset(&self.train)
    }
}

impl Dataset {
    /// A checked dataset: `images` must hold whole images of `shape` and `labels` one label per
    /// image, each below the number of classes.
    pub fn new(
        name: impl Into<String>,
        shape: [usize; 3],
        class_names: Vec<String>,
        images: Vec<u8>,
        labels: Vec<u32>,
    ) -> Result<Self, DataError> {
        let name = name.into();
        let per_image = shape.iter().product::<usize>();
        if per_image == 0 {
            return Err(DataError::Argument(format!(
                "{name}: image shape {shape:?} has no pixels"
            )));
        }
        if images.len() != labels.len() * per_image {
            return Err(DataError::Argument(format!(
                "{name}: {} image bytes for {} labels of shape {shape:?} (expected {})",
                images.len(),
                labels.len(),
                labels.len() * per_image
            )));
        }
        if let Some((i, l)) = labels
            .iter()
            .enumerate()
            .find(|(_, l)| **l as usize >= class_names.len())
        {
            return Err(DataError::Argument(format!(
                "{name}: label {l} of image {i} is not below the {} classes",
                class_names.len()
            )));
        }
        Ok(Self {
            name,
            shape,
            class_names,
            images,
            labels,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.class_names.len()
    }

    /// Bytes per image (C * H * W).
    pub fn image_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Image `i`, channel-major. Panics if `i >= len()`.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.images[i * n..(i + 1) * n]
    }

    /// How many images each class has.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes()];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }

    /// The images at `idx`, in that order (same name, shape and classes). Panics on an index
    /// `>= len()`.
    pub fn subset(&self, idx: &[usize]) -> Dataset {
        let n = self.image_len();
        let mut images = Vec::with_capacity(idx.len() * n);
        let mut labels = Vec::with_capacity(idx.len());
        for &i in idx {
            images.extend_from_slice(self.image(i));
            labels.push(self.labels[i]);
        }
        Dataset {
            name: self.name.clone(),
            shape: self.shape,
            class_names: self.class_names.clone(),
            images,
            labels,
        }
    }

    /// Indices of each class, each list shuffled with `seed`.
    fn shuffled_by_class(&self, seed: u64) -> Vec<Vec<usize>> {
        let mut by_class = vec![Vec::new(); self.classes()];
        for (i, &l) in self.labels.iter().enumerate() {
            by_class[l as usize].push(i);
        }
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        for list in &mut by_class {
            list.shuffle(&mut rng);
        }
        by_class
    }

    /// A stratified split into (train, validation): `round(len() * val_fraction)` images chosen
    /// with `seed` go to validation, shared among the classes in proportion to their sizes
    /// (largest remainders get the leftover images), the rest to training. Both keep the
    /// original order. `val_fraction` is clamped to 0..=1 (NaN counts as 0). The names get
    /// "-train" and "-val" appended.
    pub fn split(&self, val_fraction: f64, seed: u64) -> (Dataset, Dataset) {
        let f = clamp_fraction(val_fraction);
        let by_class = self.shuffled_by_class(seed);
        let counts = stratified_counts(&by_class, f);
        let mut train = Vec::with_capacity(self.len());
        let mut val = Vec::new();
        for (list, k) in by_class.iter().zip(counts) {
            val.extend_from_slice(&list[..k]);
            train.extend_from_slice(&list[k..]);
        }
        train.sort_unstable();
        val.sort_unstable();
        let mut t = self.subset(&train);
        let mut v = self.subset(&val);
        t.name = format!("{}-train", self.name);
        v.name = format!("{}-val", self.name);
        (t, v)
    }

    /// A stratified subsample of `round(len() * f)` images chosen with `seed`, shared among the
    /// classes in proportion to their sizes, with at least one image of every class that has
    /// any when `f > 0`; in the original order. `f >= 1` keeps everything; `f` is clamped to
    /// 0..=1 (NaN counts as 0).
    pub fn fraction(&self, f: f64, seed: u64) -> Dataset {
        let f = clamp_fraction(f);
        if f >= 1.0 {
            return self.clone();
        }
        let by_class = self.shuffled_by_class(seed);
        let counts = stratified_counts(&by_class, f);
        let mut keep = Vec::new();
        for (list, mut k) in by_class.iter().zip(counts) {
            if f > 0.0 && k == 0 && !list.is_empty() {
                k = 1;
            }
            keep.extend_from_slice(&list[..k]);
        }
        keep.sort_unstable();
        self.subset(&keep)
    }

    /// Mean pixel value over all images and channels, 0..=255 (0 for an empty dataset).
    pub fn mean_pixel(&self) -> f64 {
        if self.images.is_empty() {
            return 0.0;
        }
        let sum: u64 = self.images.iter().map(|&p| u64::from(p)).sum();
        sum as f64 / self.images.len() as f64
    }
}

/// How many images of each class make up `f` of the whole: `floor(n_c * f)` each, then the
/// images still missing to `round(total * f)` go one each to the classes with the largest
/// remainders (ties to the lower class index).
fn stratified_counts(by_class: &[Vec<usize>], f: f64) -> Vec<usize> {
    let total: usize = by_class.iter().map(Vec::len).sum();
    let want = ((total as f64) * f).round() as usize;
    let mut counts: Vec<usize> = by_class
        .iter()
        .map(|l| (((l.len() as f64) * f).floor() as usize).min(l.len()))
        .collect();
    let mut rest: Vec<(f64, usize)> = by_class
        .iter()
        .enumerate()
        .map(|(c, l)| ((l.len() as f64) * f - counts[c] as f64, c))
        .collect();
    rest.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut missing = want.saturating_sub(counts.iter().sum());
    for (_, c) in rest {
        if missing == 0 {
            break;
        }
        if counts[c] < by_class[c].len() {
            counts[c] += 1;
            missing -= 1;
        }
    }
    counts
}

fn clamp_fraction(f: f64) -> f64 {
    if f.is_nan() { 0.0 } else { f.clamp(0.0, 1.0) }
}

/// Per-channel normalisation, in units of pixel / 255: a pixel `p` of channel `c` becomes
/// `(p / 255 - mean[c]) / std[c]`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Normalization {
    /// Mean of each channel (0..=1).
    pub mean: Vec<f32>,
    /// Standard deviation of each channel (> 0).
    pub std: Vec<f32>,
}

impl Normalization {
    /// Mean and standard deviation of every channel of `d` (use the training split). A channel
    /// without variation gets std 1, so it is only centred.
    pub fn from_dataset(d: &Dataset) -> Normalization {
        let [c, h, w] = d.shape;
        let plane = h * w;
        let mut sum = vec![0u64; c];
        let mut sq = vec![0u64; c];
        if plane > 0 {
            for img in d.images.chunks_exact(c * plane) {
                for (ch, p) in img.chunks_exact(plane).enumerate() {
                    let (s, q) = p.iter().fold((0u64, 0u64), |(s, q), &v| {
                        let v = u64::from(v);
                        (s + v, q + v * v)
                    });
                    sum[ch] += s;
                    sq[ch] += q;
                }
            }
        }
        let n = (d.len() * plane) as f64;
        let mut mean = Vec::with_capacity(c);
        let mut std = Vec::with_capacity(c);
        for ch in 0..c {
            if n == 0.0 {
                mean.push(0.0);
                std.push(1.0);
                continue;
            }
            let m = sum[ch] as f64 / n / 255.0;
            let var = (sq[ch] as f64 / n / (255.0 * 255.0) - m * m).max(0.0);
            let s = var.sqrt();
            mean.push(m as f32);
            std.push(if s < 1e-6 { 1.0 } else { s as f32 });
        }
        Normalization { mean, std }
    }

    /// No normalisation beyond scaling to 0..=1, for `channels` channels.
    pub fn unit(channels: usize) -> Normalization {
        Normalization {
            mean: vec![0.0; channels],
            std: vec![1.0; channels],
        }
    }

    /// Per channel `(scale, offset)` so that the normalised value is `p * scale + offset`.
    pub fn scale_offset(&self) -> Vec<(f32, f32)> {
        self.mean
            .iter()
            .zip(&self.std)
            .map(|(&m, &s)| (1.0 / (255.0 * s), -m / s))
            .collect()
    }
}
