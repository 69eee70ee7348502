//! Data sets: an image folder (recursive; labels from the first-level sub-folder) or
//! MNIST-style idx files (Fashion-MNIST, MNIST). Images are decoded once, with unreadable
//! files skipped and counted, and kept in memory at a bounded size.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor, TensorData};
use nepa::SplitMix64;
use nepa::image::{
    Augment, RgbImage, augment_train, decode, from_gray, preprocess_eval, resize_bilinear,
};

/// Which part of an idx data set to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Split {
    Train,
    Test,
}

pub struct Dataset {
    pub images: Vec<RgbImage>,
    /// One label per image when the source has labels.
    pub labels: Option<Vec<usize>>,
    pub classes: Vec<String>,
    /// Files that could not be read as images.
    pub skipped: Vec<(PathBuf, String)>,
    pub source: String,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.images.len()
    }

    /// Loads `path`: a folder of idx files (`train-images-idx3-ubyte`, …) or of images.
    /// `max_side` bounds the stored size of large photos (aspect kept).
    pub fn load(path: &Path, split: Split, max_side: usize) -> Result<Self> {
        if !path.exists() {
            bail!("data path {} does not exist", path.display());
        }
        let idx_prefix = match split {
            Split::Train => "train",
            Split::Test => "t10k",
        };
        let idx_images = path.join(format!("{idx_prefix}-images-idx3-ubyte"));
        let dataset = if path.is_dir() && idx_images.exists() {
            let labels = path.join(format!("{idx_prefix}-labels-idx1-ubyte"));
            load_idx(&idx_images, labels.exists().then_some(labels.as_path()))?
        } else if path.is_dir() {
            load_folder(path, max_side)?
        } else {
            bail!(
                "{} is not a folder: give a folder of images or of idx files",
                path.display()
            );
        };
        if dataset.images.is_empty() {
            bail!(
                "no readable images in {} ({} files skipped)",
                path.display(),
                dataset.skipped.len()
            );
        }
        for (file, why) in dataset.skipped.iter().take(5) {
            eprintln!("warning: skipped {}: {why}", file.display());
        }
        if dataset.skipped.len() > 5 {
            eprintln!(
                "warning: … and {} more unreadable files",
                dataset.skipped.len() - 5
            );
        }
        Ok(dataset)
    }

    /// Keeps a balanced subset: the first `per_class` images of every class after a seeded
    /// shuffle (the labelled-subset fine-tuning of the README).
    pub fn take_per_class(&mut self, per_class: usize, seed: u64) -> Result<()> {
        let Some(labels) = &self.labels else {
            bail!("--per-class needs labels");
        };
        let mut order: Vec<usize> = (0..self.images.len()).collect();
        SplitMix64::new(seed).shuffle(&mut order);
        let mut counts = vec![0usize; self.classes.len()];
        let keep: Vec<usize> = order
            .into_iter()
            .filter(|&i| {
                let c = labels[i];
                counts[c] += 1;
                counts[c] <= per_class
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

    /// Splits off the last `fraction` of a seeded shuffle as a validation set.
    pub fn split_validation(mut self, fraction: f64, seed: u64) -> (Self, Self) {
        let mut order: Vec<usize> = (0..self.images.len()).collect();
        SplitMix64::new(seed ^ 0x5eed).shuffle(&mut order);
        let n_val = ((self.images.len() as f64) * fraction).round() as usize;
        let (train, val) = order.split_at(self.images.len() - n_val);
        let mut validation = Self {
            images: self.images.clone(),
            labels: self.labels.clone(),
            classes: self.classes.clone(),
            skipped: vec![],
            source: format!("{} (validation split)", self.source),
        };
        validation.select(val);
        self.select(train);
        (self, validation)
    }
}

fn read_be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Reads idx3 images (magic 0x803) and, if given, idx1 labels (magic 0x801).
pub fn load_idx(images: &Path, labels: Option<&Path>) -> Result<Dataset> {
    let bytes = fs::read(images).with_context(|| format!("reading {}", images.display()))?;
    if bytes.len() < 16 || read_be_u32(&bytes, 0) != 0x803 {
        bail!(
            "{} is not an idx3 image file (bad magic number)",
            images.display()
        );
    }
    let n = read_be_u32(&bytes, 4) as usize;
    let (h, w) = (
        read_be_u32(&bytes, 8) as usize,
        read_be_u32(&bytes, 12) as usize,
    );
    if bytes.len() != 16 + n * h * w {
        bail!(
            "{} is truncated: expected {} bytes",
            images.display(),
            16 + n * h * w
        );
    }
    let images_out: Vec<RgbImage> = bytes[16..]
        .chunks_exact(h * w)
        .map(|gray| from_gray(w, h, gray))
        .collect();
    let labels_out = match labels {
        Some(path) => {
            let l = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            if l.len() != 8 + n || read_be_u32(&l, 0) != 0x801 {
                bail!(
                    "{} is not an idx1 label file for {n} images",
                    path.display()
                );
            }
            Some(l[8..].iter().map(|&v| v as usize).collect::<Vec<_>>())
        }
        None => None,
    };
    let classes = match &labels_out {
        Some(l) => (0..=l.iter().copied().max().unwrap_or(0))
            .map(|c| c.to_string())
            .collect(),
        None => vec![],
    };
    Ok(Dataset {
        images: images_out,
        labels: labels_out,
        classes,
        skipped: vec![],
        source: images.display().to_string(),
    })
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("reading folder {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect_files(&path, out)?;
        } else if !path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        {
            // Hidden files (.DS_Store and the like) are not data.
            out.push(path);
        }
    }
    Ok(())
}

/// Reads every image under `dir`. If `dir` has sub-folders, the first-level folder name is
/// the class of the images below it.
pub fn load_folder(dir: &Path, max_side: usize) -> Result<Dataset> {
    let mut files = vec![];
    collect_files(dir, &mut files)?;
    let class_of = |path: &Path| -> Option<String> {
        let rel = path.strip_prefix(dir).ok()?;
        let mut parts = rel.components();
        let first = parts.next()?;
        parts
            .next()
            .map(|_| first.as_os_str().to_string_lossy().into_owned())
    };
    let mut classes: Vec<String> = files.iter().filter_map(|f| class_of(f)).collect();
    classes.sort();
    classes.dedup();
    let labelled = !classes.is_empty() && files.iter().all(|f| class_of(f).is_some());

    let mut images = vec![];
    let mut labels = vec![];
    let mut skipped = vec![];
    for file in files {
        // Every file is tried, whatever its extension (formats are sniffed from content);
        // one that does not decode is skipped and counted, never fatal.
        let bytes = match fs::read(&file) {
            Ok(b) => b,
            Err(e) => {
                skipped.push((file, e.to_string()));
                continue;
            }
        };
        match decode(&bytes) {
            Ok(img) => {
                images.push(shrink(img, max_side));
                if labelled {
                    let class = class_of(&file).expect("labelled");
                    labels.push(classes.binary_search(&class).expect("known class"));
                }
            }
            Err(e) => skipped.push((file, e.to_string())),
        }
    }
    Ok(Dataset {
        images,
        labels: labelled.then_some(labels),
        classes: if labelled { classes } else { vec![] },
        skipped,
        source: dir.display().to_string(),
    })
}

/// Downscales so the longer side is at most `max_side` (memory bound for big photos).
fn shrink(img: RgbImage, max_side: usize) -> RgbImage {
    let longest = img.width.max(img.height);
    if longest <= max_side {
        return img;
    }
    let scale = max_side as f64 / longest as f64;
    let w = ((img.width as f64 * scale).round() as usize).max(1);
    let h = ((img.height as f64 * scale).round() as usize).max(1);
    resize_bilinear(&img, w, h)
}

/// A seeded epoch-by-epoch order: step `s` takes the `s`-th run of `batch` indices through
/// a concatenation of per-epoch shuffles (incomplete last batches dropped). Deterministic in
/// (seed, step), so a resumed run sees the same batches.
pub struct Sampler {
    n: usize,
    batch: usize,
    seed: u64,
}

impl Sampler {
    pub fn new(n: usize, batch: usize, seed: u64) -> Result<Self> {
        if n < batch {
            bail!("the data set has {n} images, fewer than the batch size {batch}");
        }
        Ok(Self { n, batch, seed })
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

/// A per-step generator for augmentation and RoPE draws, independent of earlier steps.
pub fn step_rng(seed: u64, step: usize) -> SplitMix64 {
    let mut base = SplitMix64::new(seed ^ 0xA5A5_5A5A_0F0F_F0F0);
    SplitMix64::new(base.next_u64() ^ (step as u64).wrapping_mul(0xD1B5_4A32_D192_ED03))
}

/// Builds a `[B, 3, H, W]` batch: augmented (training) or resized (evaluation).
pub fn make_batch(
    data: &Dataset,
    indices: &[usize],
    size: [usize; 2],
    augment: Option<(&Augment, &mut SplitMix64)>,
    device: &Device,
) -> Tensor<4> {
    let [h, w] = size;
    let mut values = Vec::with_capacity(indices.len() * 3 * h * w);
    match augment {
        Some((aug, rng)) => {
            for &i in indices {
                values.extend(augment_train(&data.images[i], h, w, aug, rng));
            }
        }
        None => {
            for &i in indices {
                values.extend(preprocess_eval(&data.images[i], h, w));
            }
        }
    }
    Tensor::from_data(TensorData::new(values, [indices.len(), 3, h, w]), device)
}
