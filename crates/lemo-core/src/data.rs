//! The data a trainer receives: an in-memory image classification [`Dataset`], its [`Splits`],
//! per-channel [`Normalization`] and the random [`Augmentation`] of training images.
//!
//! The loaders of the published file formats (CIFAR, ImageNet16, image folders, IDX, digits) are
//! `lemo-train`'s; they all produce these types.

use rand::RngExt;
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use rand::seq::SliceRandom;

/// The images and labels given to [`Dataset::new`] do not form a dataset (the message says why).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid dataset: {0}")]
pub struct DatasetError(pub String);

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
    /// These splits with the validation images added to the training split (validation kept
    /// as it is, no longer held out): for a final training that no longer needs them held out.
    pub fn with_validation_in_training(self) -> Result<Splits, DatasetError> {
        Ok(Splits {
            train: self.train.concat(&self.val)?,
            ..self
        })
    }

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
    ) -> Result<Self, DatasetError> {
        let name = name.into();
        let per_image = shape.iter().product::<usize>();
        if per_image == 0 {
            return Err(DatasetError(format!(
                "{name}: image shape {shape:?} has no pixels"
            )));
        }
        if images.len() != labels.len() * per_image {
            return Err(DatasetError(format!(
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
            return Err(DatasetError(format!(
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
    // The documented panic, as slice indexing: an index past `len()` is the caller's bug.
    #[allow(clippy::indexing_slicing)]
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.images[i * n..(i + 1) * n]
    }

    /// How many images each class has.
    // Every label is below `classes()`, the length of `counts` (checked by `Dataset::new`).
    #[allow(clippy::indexing_slicing)]
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes()];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }

    /// The images at `idx`, in that order (same name, shape and classes). Panics on an index
    /// `>= len()`.
    // The documented panic, as slice indexing: an index past `len()` is the caller's bug.
    #[allow(clippy::indexing_slicing)]
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

    /// This dataset followed by `other`'s images (named "`a`+`b`"); an error when the two
    /// differ in image shape or class names.
    pub fn concat(&self, other: &Dataset) -> Result<Dataset, DatasetError> {
        if self.shape != other.shape || self.class_names != other.class_names {
            return Err(DatasetError(format!(
                "cannot join {} ({:?}, {} classes) and {} ({:?}, {} classes): shapes or classes differ",
                self.name,
                self.shape,
                self.classes(),
                other.name,
                other.shape,
                other.classes()
            )));
        }
        let mut images = Vec::with_capacity(self.images.len() + other.images.len());
        images.extend_from_slice(&self.images);
        images.extend_from_slice(&other.images);
        let mut labels = Vec::with_capacity(self.labels.len() + other.labels.len());
        labels.extend_from_slice(&self.labels);
        labels.extend_from_slice(&other.labels);
        Ok(Dataset {
            name: format!("{}+{}", self.name, other.name),
            shape: self.shape,
            class_names: self.class_names.clone(),
            images,
            labels,
        })
    }

    /// Indices of each class, each list shuffled with `seed`.
    // Every label is below `classes()`, the length of `by_class` (checked by `Dataset::new`).
    #[allow(clippy::indexing_slicing)]
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
            // k <= list.len() (stratified_counts), so this is list[..k] and list[k..].
            val.extend(list.iter().take(k));
            train.extend(list.iter().skip(k));
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
            keep.extend(list.iter().take(k));
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
    let mut missing = want.saturating_sub(counts.iter().sum());
    // (remainder, class, its count, its size)
    let mut rest: Vec<(f64, usize, &mut usize, usize)> = counts
        .iter_mut()
        .zip(by_class)
        .enumerate()
        .map(|(c, (count, l))| ((l.len() as f64) * f - *count as f64, c, count, l.len()))
        .collect();
    rest.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, _, count, len) in rest {
        if missing == 0 {
            break;
        }
        if *count < len {
            *count += 1;
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
                // c planes per image: one for each entry of `sum` and `sq`.
                for ((sum, sq), p) in sum.iter_mut().zip(&mut sq).zip(img.chunks_exact(plane)) {
                    let (s, q) = p.iter().fold((0u64, 0u64), |(s, q), &v| {
                        let v = u64::from(v);
                        (s + v, q + v * v)
                    });
                    *sum += s;
                    *sq += q;
                }
            }
        }
        let n = (d.len() * plane) as f64;
        let mut mean = Vec::with_capacity(c);
        let mut std = Vec::with_capacity(c);
        for (&sum, &sq) in sum.iter().zip(&sq) {
            if n == 0.0 {
                mean.push(0.0);
                std.push(1.0);
                continue;
            }
            let m = sum as f64 / n / 255.0;
            let var = (sq as f64 / n / (255.0 * 255.0) - m * m).max(0.0);
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

/// The augmentation applied to training images, one random draw per image.
///
/// Semantics follow Keras' `ImageDataGenerator`, which the paper used: every parameter is a
/// symmetric range drawn uniformly; points that fall outside the image take the nearest edge
/// pixel (Keras' default `fill_mode="nearest"`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Augmentation {
    /// Rotation, uniform in `-rotation_deg..=rotation_deg` degrees.
    pub rotation_deg: f32,
    /// Flip horizontally with probability 1/2.
    pub hflip: bool,
    /// Horizontal shift, uniform in `±width_shift` times the width.
    pub width_shift: f32,
    /// Vertical shift, uniform in `±height_shift` times the height.
    pub height_shift: f32,
    /// Shear factor (x += shear * y), uniform in `±shear`; 0.1 is the paper's "10% shear".
    pub shear: f32,
    /// Zoom, each axis independently scaled by a factor uniform in `1-zoom..=1+zoom`.
    pub zoom: f32,
    /// Random crop with padding (the standard CIFAR augmentation): the image moves by a whole
    /// number of pixels uniform in `-crop_padding..=crop_padding` on each axis; the margin takes
    /// the nearest edge pixel. 0: off.
    pub crop_padding: u32,
    /// Cutout (DeVries and Taylor, 2017): after the other changes, a square of `cutout` x
    /// `cutout` pixels centred on a uniformly drawn pixel (clipped at the borders) is set to the
    /// dataset mean in every channel. 0: off.
    pub cutout: u32,
}

/// The rows and columns a [`Augmentation::cutout`] draw erases (half-open ranges inside the
/// image).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutout {
    /// First and one-past-last erased row.
    pub rows: (usize, usize),
    /// First and one-past-last erased column.
    pub cols: (usize, usize),
}

impl Default for Augmentation {
    fn default() -> Self {
        Self::none()
    }
}

/// One affine map from output pixel coordinates to source coordinates:
/// `sx = a*x + b*y + tx`, `sy = c*x + d*y + ty` (pixel centres at integers).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine {
    /// x coefficient of the source x.
    pub a: f32,
    /// y coefficient of the source x.
    pub b: f32,
    /// x coefficient of the source y.
    pub c: f32,
    /// y coefficient of the source y.
    pub d: f32,
    /// Translation of the source x.
    pub tx: f32,
    /// Translation of the source y.
    pub ty: f32,
}

impl Affine {
    /// The map that changes nothing.
    pub const IDENTITY: Affine = Affine {
        a: 1.0,
        b: 0.0,
        c: 0.0,
        d: 1.0,
        tx: 0.0,
        ty: 0.0,
    };
}

impl Augmentation {
    /// The paper's training augmentation: rotation 20 degrees, horizontal flip, 10% width and
    /// height shift, 10% shear, 10% zoom.
    pub fn paper() -> Self {
        Self {
            rotation_deg: 20.0,
            hflip: true,
            width_shift: 0.1,
            height_shift: 0.1,
            shear: 0.1,
            zoom: 0.1,
            crop_padding: 0,
            cutout: 0,
        }
    }

    /// The standard CIFAR augmentation: random crop with `padding` pixels, horizontal flip.
    pub fn crop_flip(padding: u32) -> Self {
        Self {
            hflip: true,
            crop_padding: padding,
            ..Self::none()
        }
    }

    /// No augmentation.
    pub fn none() -> Self {
        Self {
            rotation_deg: 0.0,
            hflip: false,
            width_shift: 0.0,
            height_shift: 0.0,
            shear: 0.0,
            zoom: 0.0,
            crop_padding: 0,
            cutout: 0,
        }
    }

    /// Whether this never changes an image.
    pub fn is_identity(&self) -> bool {
        !self.hflip
            && self.rotation_deg == 0.0
            && self.width_shift == 0.0
            && self.height_shift == 0.0
            && self.shear == 0.0
            && self.zoom == 0.0
            && self.crop_padding == 0
            && self.cutout == 0
    }

    /// Draws the square [`Augmentation::cutout`] erases in an image of `h` x `w` pixels, or
    /// `None` when cutout is off. Draws nothing from `rng` when off, so turning it on changes
    /// no other draw of a run before it.
    pub fn sample_cutout<R: rand::Rng + ?Sized>(
        &self,
        rng: &mut R,
        h: usize,
        w: usize,
    ) -> Option<Cutout> {
        if self.cutout == 0 || h == 0 || w == 0 {
            return None;
        }
        let side = self.cutout as usize;
        let span = |n: usize, rng: &mut R| {
            let centre = rng.random_range(0..n);
            (
                centre.saturating_sub(side / 2),
                (centre + side - side / 2).min(n),
            )
        };
        let rows = span(h, rng);
        let cols = span(w, rng);
        Some(Cutout { rows, cols })
    }

    /// Draws one combined map for an image of `h` x `w` pixels.
    pub fn sample<R: rand::Rng + ?Sized>(&self, rng: &mut R, h: usize, w: usize) -> Affine {
        if self.is_identity() {
            return Affine::IDENTITY;
        }
        let theta = sym(rng, self.rotation_deg).to_radians();
        let flip = self.hflip && rng.random_bool(0.5);
        let shift_x = sym(rng, self.width_shift) * w as f32;
        let shift_y = sym(rng, self.height_shift) * h as f32;
        let shear = sym(rng, self.shear);
        let zx = 1.0 + sym(rng, self.zoom);
        let zy = 1.0 + sym(rng, self.zoom);
        let crop = |rng: &mut R| match self.crop_padding {
            0 => 0.0,
            p => rng.random_range(-(p as i32)..=p as i32) as f32,
        };
        let (crop_x, crop_y) = (crop(rng), crop(rng));
        // M = R(theta) * Shear * Zoom * Flip, about the image centre.
        let (s, c) = theta.sin_cos();
        let fx = if flip { -zx } else { zx };
        // Shear * Zoom * Flip = [[fx, shear*zy], [0, zy]]
        let (m00, m01, m10, m11) = (fx, shear * zy, 0.0, zy);
        let a = c * m00 - s * m10;
        let b = c * m01 - s * m11;
        let cc = s * m00 + c * m10;
        let d = s * m01 + c * m11;
        let cx = (w as f32 - 1.0) * 0.5;
        let cy = (h as f32 - 1.0) * 0.5;
        Affine {
            a,
            b,
            c: cc,
            d,
            tx: cx - a * cx - b * cy + shift_x + crop_x,
            ty: cy - cc * cx - d * cy + shift_y + crop_y,
        }
    }
}

fn sym<R: rand::Rng + ?Sized>(rng: &mut R, r: f32) -> f32 {
    if r > 0.0 && r.is_finite() {
        rng.random_range(-r..=r)
    } else {
        0.0
    }
}
