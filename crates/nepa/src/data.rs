//! In-memory image sets and the one batch builder every training loop uses (the native
//! trainer, the page's fine-tuning and "adapt to my images", the bench). Loading files is the
//! caller's job (the CLI reads folders and idx files, the page reads uploads); from decoded
//! images on, the path is the same: a seeded subset, a seeded validation split, a seeded
//! batch order, per-step randomness, and a `[B, 3, H, W]` batch.

use burn::tensor::TensorData;

use crate::error::NepaError;
use crate::image::RgbImage;
use crate::rng::SplitMix64;

/// Decoded images, with one label per image when the source has labels.
#[derive(Clone, Debug, Default)]
pub struct ImageSet {
    pub images: Vec<RgbImage>,
    pub labels: Option<Vec<usize>>,
    /// Class names; label `i` is `classes[i]`.
    pub classes: Vec<String>,
    /// Where the images came from, for messages.
    pub source: String,
}

impl ImageSet {
    pub fn len(&self) -> usize {
        self.images.len()
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// A labelled set from `(image, label)` pairs and class names.
    pub fn labelled(
        pairs: Vec<(RgbImage, usize)>,
        classes: Vec<String>,
        source: &str,
    ) -> Result<Self, NepaError> {
        if let Some((_, label)) = pairs.iter().find(|(_, l)| *l >= classes.len()) {
            return Err(NepaError::Input(format!(
                "label {label} but only {} classes",
                classes.len()
            )));
        }
        let (images, labels) = pairs.into_iter().unzip();
        Ok(Self {
            images,
            labels: Some(labels),
            classes,
            source: source.to_string(),
        })
    }

    /// Keeps a balanced subset: the first `per_class` images of every class after a seeded
    /// shuffle (the labelled-subset fine-tuning of docs/results/fashion-mnist.md).
    pub fn take_per_class(&mut self, per_class: usize, seed: u64) -> Result<(), NepaError> {
        let Some(labels) = &self.labels else {
            return Err(NepaError::Input(
                "a per-class subset needs labels".to_string(),
            ));
        };
        if per_class == 0 {
            return Err(NepaError::Input(
                "--per-class must be at least 1 (0 would keep no images)".to_string(),
            ));
        }
        let mut order: Vec<usize> = (0..self.images.len()).collect();
        SplitMix64::new(seed).shuffle(&mut order);
        let mut counts = vec![0usize; self.classes.len()];
        let keep: Vec<usize> = order
            .into_iter()
            .filter(|&i| {
                // A stray label beyond the class list is dropped rather than indexed.
                counts.get_mut(labels[i]).is_some_and(|c| {
                    *c += 1;
                    *c <= per_class
                })
            })
            .collect();
        self.select(&keep);
        Ok(())
    }

    /// Keeps the images at `indices`, in that order.
    pub fn select(&mut self, indices: &[usize]) {
        self.images = indices.iter().map(|&i| self.images[i].clone()).collect();
        if let Some(labels) = &self.labels {
            self.labels = Some(indices.iter().map(|&i| labels[i]).collect());
        }
    }

    /// Splits off the last `fraction` of a seeded shuffle as a validation set. `fraction`
    /// must be in `[0, 1)` and leave at least one training image.
    pub fn split_validation(mut self, fraction: f64, seed: u64) -> Result<(Self, Self), NepaError> {
        if !(0.0..1.0).contains(&fraction) {
            return Err(NepaError::Input(format!(
                "the validation fraction is {fraction}; it must be in [0, 1)"
            )));
        }
        let n_val = ((self.images.len() as f64) * fraction).round() as usize;
        if n_val >= self.images.len() {
            return Err(NepaError::Input(format!(
                "a validation fraction of {fraction} of {} images leaves none for training",
                self.images.len()
            )));
        }
        let mut order: Vec<usize> = (0..self.images.len()).collect();
        SplitMix64::new(seed ^ 0x5eed).shuffle(&mut order);
        let (train, val) = order.split_at(self.images.len() - n_val);
        let mut validation = Self {
            source: format!("{} (validation split)", self.source),
            ..self.clone()
        };
        validation.select(val);
        self.select(train);
        Ok((self, validation))
    }

    /// The labels, or an error saying that `what` needs them.
    pub fn require_labels(&self, what: &str) -> Result<&[usize], NepaError> {
        self.labels.as_deref().ok_or_else(|| {
            NepaError::Input(format!(
                "{} has no labels: {what} needs one sub-folder per class, or idx files with labels",
                self.source
            ))
        })
    }
}

/// A seeded epoch-by-epoch order: step `s` takes the `s`-th run of `batch` indices through
/// a concatenation of per-epoch shuffles (incomplete last batches dropped). Deterministic in
/// (seed, step), so a resumed run sees the same batches.
#[derive(Clone, Debug)]
pub struct Sampler {
    n: usize,
    batch: usize,
    seed: u64,
}

impl Sampler {
    pub fn new(n: usize, batch: usize, seed: u64) -> Result<Self, NepaError> {
        if batch == 0 {
            return Err(NepaError::Input("the batch size must be at least 1".into()));
        }
        if n < batch {
            return Err(NepaError::Input(format!(
                "the data set has {n} images, fewer than the batch size {batch}"
            )));
        }
        Ok(Self { n, batch, seed })
    }

    pub fn batch_size(&self) -> usize {
        self.batch
    }

    pub fn steps_per_epoch(&self) -> usize {
        self.n / self.batch
    }

    pub fn batch_indices(&self, step: usize) -> Vec<usize> {
        let per_epoch = self.steps_per_epoch();
        let epoch = step / per_epoch;
        let within = step % per_epoch;
        let mut order: Vec<usize> = (0..self.n).collect();
        SplitMix64::new(self.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .shuffle(&mut order);
        order[within * self.batch..(within + 1) * self.batch].to_vec()
    }
}

/// A per-step generator for augmentation and RoPE draws, independent of earlier steps (so a
/// resumed run draws what an uninterrupted one would).
pub fn step_rng(seed: u64, step: usize) -> SplitMix64 {
    let mut base = SplitMix64::new(seed ^ 0xA5A5_5A5A_0F0F_F0F0);
    SplitMix64::new(base.next_u64() ^ (step as u64).wrapping_mul(0xD1B5_4A32_D192_ED03))
}

/// The device generator's seed for `step` (drop-path draws and LoRA init come from it).
pub fn step_device_seed(seed: u64, step: usize) -> u64 {
    seed ^ (step as u64).wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// The one batch builder: `transform(image, height, width)` gives each image's normalised
/// CHW values (an evaluation transform or a training augmentation); the result is one
/// `[B, 3, H, W]` batch. The first transform error is returned.
pub fn build_batch(
    images: &[&RgbImage],
    size: [usize; 2],
    mut transform: impl FnMut(&RgbImage, usize, usize) -> Result<Vec<f32>, NepaError>,
) -> Result<TensorData, NepaError> {
    let [h, w] = size;
    let mut values = Vec::with_capacity(images.len() * 3 * h * w);
    for image in images {
        let pixels = transform(image, h, w)?;
        if pixels.len() != 3 * h * w {
            return Err(NepaError::Input(format!(
                "a transform gave {} values for a 3×{h}×{w} input",
                pixels.len()
            )));
        }
        values.extend(pixels);
    }
    Ok(TensorData::new(values, [images.len(), 3, h, w]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(n: usize) -> ImageSet {
        ImageSet {
            images: (0..n)
                .map(|i| RgbImage::filled(2, 2, [i as u8, 2, 3]))
                .collect(),
            labels: Some((0..n).map(|i| i % 2).collect()),
            classes: vec!["a".into(), "b".into()],
            source: "test".into(),
        }
    }

    #[test]
    fn bad_subset_and_split_arguments_are_errors() {
        let e = set(4).take_per_class(0, 1).unwrap_err().to_string();
        assert!(e.contains("--per-class"), "{e}");
        let mut data = set(10);
        data.take_per_class(2, 1).unwrap();
        assert_eq!(data.len(), 4);
        assert_eq!(data.labels.as_ref().unwrap().iter().sum::<usize>(), 2);
        for fraction in [1.0, 1.5, -0.1, f64::NAN, 0.97] {
            let e = set(10)
                .split_validation(fraction, 1)
                .err()
                .unwrap_or_else(|| panic!("fraction {fraction} accepted"));
            assert!(e.to_string().contains("validation fraction"), "{e}");
        }
        let (train, val) = set(10).split_validation(0.2, 1).unwrap();
        assert_eq!((train.len(), val.len()), (8, 2));
        assert!(Sampler::new(10, 0, 1).is_err());
        assert!(Sampler::new(2, 3, 1).is_err());
        assert!(
            ImageSet::labelled(
                vec![(RgbImage::filled(1, 1, [0; 3]), 2)],
                vec!["a".into()],
                "x"
            )
            .is_err()
        );
    }

    #[test]
    fn sampler_covers_each_epoch_once_and_repeats_per_seed() {
        let sampler = Sampler::new(10, 3, 7).unwrap();
        let mut epoch: Vec<usize> = (0..3).flat_map(|s| sampler.batch_indices(s)).collect();
        epoch.sort();
        epoch.dedup();
        assert_eq!(epoch.len(), 9, "one epoch draws 9 distinct images of 10");
        assert_eq!(
            sampler.batch_indices(4),
            Sampler::new(10, 3, 7).unwrap().batch_indices(4)
        );
        assert_ne!(
            sampler.batch_indices(0),
            Sampler::new(10, 3, 8).unwrap().batch_indices(0)
        );
    }

    #[test]
    fn build_batch_stacks_per_image_values_in_order() {
        let images = [
            RgbImage::filled(1, 1, [0; 3]),
            RgbImage::filled(1, 1, [0; 3]),
        ];
        let refs: Vec<&RgbImage> = images.iter().collect();
        let mut calls = 0.0;
        let batch = build_batch(&refs, [1, 2], |_, h, w| {
            calls += 1.0;
            Ok(vec![calls; 3 * h * w])
        })
        .unwrap();
        assert!(build_batch(&refs, [1, 2], |_, _, _| Ok(vec![0.0; 5])).is_err());
        assert_eq!(batch.shape().to_vec(), vec![2, 3, 1, 2]);
        let values = batch.try_into_vec::<f32>().unwrap();
        assert_eq!(&values[..6], &[1.0; 6]);
        assert_eq!(&values[6..], &[2.0; 6]);
    }
}
