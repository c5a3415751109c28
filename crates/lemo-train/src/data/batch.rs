//! Batching: a [`Batcher`] walks a [`Dataset`] once (one epoch) and yields normalised, optionally
//! shuffled and augmented `f32` batches.

use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use rand::seq::SliceRandom;

use super::augment::Warp;
use super::{Dataset, Normalization};
use lemo_core::data::Augmentation;

/// One batch, ready for a tensor of shape `[size, C, H, W]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `size * C * H * W` normalised values, each image channel-major.
    pub images: Vec<f32>,
    /// One class index per image.
    pub labels: Vec<i64>,
    /// Number of images in this batch (the last batch of an epoch may be smaller).
    pub size: usize,
}

/// An iterator over one epoch of a dataset in batches.
///
/// ```
/// use lemo_train::data::{Augmentation, Batcher, DatasetSpec, Normalization};
/// let splits = DatasetSpec::Digits { path: None }.load()?;
/// let norm = Normalization::from_dataset(&splits.train);
/// let epoch = 3u64;
/// for batch in Batcher::new(&splits.train, 128, &norm)
///     .shuffle(epoch)
///     .augment(&Augmentation::paper(), epoch)
/// {
///     assert_eq!(batch.images.len(), batch.size * 64);
/// }
/// # Ok::<(), lemo_train::data::DataError>(())
/// ```
///
/// Every epoch needs its own `Batcher`; pass a different seed per epoch (e.g. the epoch number
/// mixed with the run seed) for a different order and different augmentations.
#[derive(Debug, Clone)]
pub struct Batcher<'a> {
    data: &'a Dataset,
    batch_size: usize,
    scale_offset: Vec<(f32, f32)>,
    order: Option<Vec<usize>>,
    augmentation: Option<(Augmentation, Xoshiro256PlusPlus)>,
    warp: Warp,
    pos: usize,
}

impl<'a> Batcher<'a> {
    /// Batches of `batch_size` images (0 counts as 1) of `data`, in order, normalised with
    /// `norm`. A normalisation for another number of channels is a programming error: the
    /// missing channels are only scaled to 0..=1 and a warning is logged.
    pub fn new(data: &'a Dataset, batch_size: usize, norm: &Normalization) -> Self {
        let channels = data.shape[0];
        let mut scale_offset = norm.scale_offset();
        if scale_offset.len() != channels {
            tracing::warn!(
                dataset = %data.name,
                channels,
                normalization_channels = scale_offset.len(),
                "normalisation does not match the dataset's channels"
            );
            scale_offset.resize(channels, (1.0 / 255.0, 0.0));
        }
        Self {
            data,
            batch_size: batch_size.max(1),
            scale_offset,
            order: None,
            augmentation: None,
            warp: Warp::default(),
            pos: 0,
        }
    }

    /// Visit the images in an order shuffled with `seed`.
    pub fn shuffle(mut self, seed: u64) -> Self {
        let mut order: Vec<usize> = (0..self.data.len()).collect();
        order.shuffle(&mut Xoshiro256PlusPlus::seed_from_u64(seed));
        self.order = Some(order);
        self
    }

    /// Augment every image with a fresh random draw of `aug`, from a generator seeded with
    /// `seed` (an identity augmentation costs nothing).
    pub fn augment(mut self, aug: &Augmentation, seed: u64) -> Self {
        self.augmentation = if aug.is_identity() {
            None
        } else {
            Some((*aug, Xoshiro256PlusPlus::seed_from_u64(seed)))
        };
        self
    }

    /// Number of batches in the epoch (the last one may be partial).
    pub fn batches(&self) -> usize {
        self.data.len().div_ceil(self.batch_size)
    }
}

impl Iterator for Batcher<'_> {
    type Item = Batch;

    // `order` is a permutation of 0..len() and pos < len(), so both indexings are in range.
    #[allow(clippy::indexing_slicing)]
    fn next(&mut self) -> Option<Batch> {
        let n = self.data.len();
        if self.pos >= n {
            return None;
        }
        let end = (self.pos + self.batch_size).min(n);
        let size = end - self.pos;
        let per = self.data.image_len();
        let shape = self.data.shape;
        let mut images = vec![0.0f32; size * per];
        let mut labels = Vec::with_capacity(size);
        for (k, out) in images.chunks_exact_mut(per).enumerate() {
            let pos = self.pos + k;
            let i = self.order.as_ref().map_or(pos, |o| o[pos]);
            labels.push(i64::from(self.data.labels[i]));
            let src = self.data.image(i);
            match &mut self.augmentation {
                Some((aug, rng)) => {
                    let m = aug.sample(rng, shape[1], shape[2]);
                    self.warp.apply(src, shape, &m, &self.scale_offset, out);
                    if let Some(c) = aug.sample_cutout(rng, shape[1], shape[2]) {
                        super::augment::erase(out, shape, c);
                    }
                }
                None => super::augment::normalize_into(
                    src,
                    shape[1] * shape[2],
                    &self.scale_offset,
                    out,
                ),
            }
        }
        self.pos = end;
        Some(Batch {
            images,
            labels,
            size,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self
            .data
            .len()
            .saturating_sub(self.pos)
            .div_ceil(self.batch_size);
        (left, Some(left))
    }
}

impl ExactSizeIterator for Batcher<'_> {}
