//! Data sets: an image folder (recursive; labels from the first-level sub-folder) or
//! MNIST-style idx files (Fashion-MNIST, MNIST). Images are decoded once, with unreadable
//! files skipped and counted, and kept in memory at a bounded size.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nepa::data::ImageSet;
use nepa::idx::{parse_idx_images, parse_idx_labels};
use nepa::image::{RgbImage, decode, resize_bilinear};

use crate::fsio::{read_capped, read_regular};

/// Largest image file read from a data folder: 256 MiB (a larger one is skipped and
/// counted). The decoder's own pixel limit applies after this.
pub const MAX_IMAGE_FILE_BYTES: u64 = 256 << 20;
/// Largest idx file read: 1 GiB (Fashion-MNIST's training images are 47 MB).
pub const MAX_IDX_FILE_BYTES: u64 = 1 << 30;

/// Which part of an idx data set to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Split {
    Train,
    Test,
}

/// A data set read from disk: the crate's [`ImageSet`] (where subsets, splits, batches and
/// training happen) plus what could not be read.
pub struct Dataset {
    pub set: ImageSet,
    /// Files that could not be read as images.
    pub skipped: Vec<(PathBuf, String)>,
    /// How many of `skipped` are not regular files (FIFOs, sockets, devices): never read.
    pub not_regular: usize,
    /// Read from idx files, which have separate train and test splits (a folder has not).
    pub from_idx: bool,
}

impl std::ops::Deref for Dataset {
    type Target = ImageSet;
    fn deref(&self) -> &ImageSet {
        &self.set
    }
}

impl Dataset {
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
        if dataset.not_regular > 0 {
            eprintln!(
                "warning: {} of the skipped paths are not regular files (FIFOs, sockets, \
                 devices) and were not read",
                dataset.not_regular
            );
        }
        Ok(dataset)
    }
}

/// Reads idx3 images (magic 0x803) and, if given, idx1 labels (magic 0x801). The byte-level
/// checks are `nepa::idx`'s; errors name the file.
pub fn load_idx(images: &Path, labels: Option<&Path>) -> Result<Dataset> {
    let bytes = read_capped(images, MAX_IDX_FILE_BYTES)?;
    let parsed = parse_idx_images(&bytes).with_context(|| images.display().to_string())?;
    let images_out = parsed.to_rgb();
    let labels_out = match labels {
        Some(path) => {
            let l = read_capped(path, MAX_IDX_FILE_BYTES)?;
            let labels =
                parse_idx_labels(&l, parsed.count).with_context(|| path.display().to_string())?;
            Some(labels.iter().map(|&v| usize::from(v)).collect::<Vec<_>>())
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
        set: ImageSet {
            images: images_out,
            labels: labels_out,
            classes,
            source: images.display().to_string(),
        },
        skipped: vec![],
        not_regular: 0,
        from_idx: true,
    })
}

/// Lists the files under `dir`, recursively, sorted. `visited` holds the folders already
/// listed (canonical paths), so a symlink back to a parent folder is not followed forever.
fn collect_files(dir: &Path, out: &mut Vec<PathBuf>, visited: &mut HashSet<PathBuf>) -> Result<()> {
    if let Ok(canonical) = fs::canonicalize(dir)
        && !visited.insert(canonical)
    {
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("reading folder {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect_files(&path, out, visited)?;
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
    collect_files(dir, &mut files, &mut HashSet::new())?;
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
    let mut not_regular = 0;
    for file in files {
        // Every file is tried, whatever its extension (formats are sniffed from content);
        // one that does not decode is skipped and counted, never fatal.
        // Only regular files of a bounded size: a FIFO would block the run and a device
        // such as /dev/zero would never end.
        let bytes = match read_regular(&file, MAX_IMAGE_FILE_BYTES) {
            Ok(b) => b,
            Err(e) => {
                not_regular += usize::from(e.is_not_regular());
                skipped.push((file, e.to_string()));
                continue;
            }
        };
        match decode(&bytes) {
            Ok(img) => {
                images.push(shrink(img, max_side));
                if labelled {
                    // `labelled` means every file has a class, all of them in `classes`.
                    let class = class_of(&file).unwrap_or_default();
                    labels.push(classes.binary_search(&class).unwrap_or(0));
                }
            }
            Err(e) => skipped.push((file, e.to_string())),
        }
    }
    Ok(Dataset {
        set: ImageSet {
            images,
            labels: labelled.then_some(labels),
            classes: if labelled { classes } else { vec![] },
            source: dir.display().to_string(),
        },
        skipped,
        not_regular,
        from_idx: false,
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

#[cfg(test)]
mod tests {
    use super::*;
    use nepa::image::to_png;

    fn idx_images(count: u32, h: u32, w: u32, data: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for v in [0x803u32, count, h, w] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.resize(16 + data, 9);
        out
    }

    #[test]
    fn hostile_idx_files_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("train-images-idx3-ubyte");
        for bytes in [
            idx_images(5, 0, 28, 0),
            idx_images(u32::MAX, u32::MAX, u32::MAX, 0),
            idx_images(2, 2, 2, 7),
        ] {
            fs::write(&path, bytes).unwrap();
            let e = format!("{:#}", load_idx(&path, None).err().unwrap());
            assert!(e.contains("train-images-idx3-ubyte"), "{e}");
        }
        fs::write(&path, idx_images(3, 2, 2, 12)).unwrap();
        let labels = dir.path().join("train-labels-idx1-ubyte");
        let mut l = 0x801u32.to_be_bytes().to_vec();
        l.extend_from_slice(&3u32.to_be_bytes());
        l.extend_from_slice(&[0, 1, 1]);
        fs::write(&labels, &l).unwrap();
        let data = load_idx(&path, Some(&labels)).unwrap();
        assert_eq!(data.len(), 3);
        assert_eq!(data.classes.len(), 2);
        fs::write(&labels, &l[..10]).unwrap();
        let e = format!("{:#}", load_idx(&path, Some(&labels)).err().unwrap());
        assert!(e.contains("train-labels-idx1-ubyte"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_in_a_data_folder_is_skipped_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let png = to_png(&RgbImage::filled(4, 4, [200, 10, 10]));
        fs::write(dir.path().join("a.png"), &png).unwrap();
        let fifo = dir.path().join("pipe.png");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .is_ok_and(|s| s.success());
        if !made {
            eprintln!("mkfifo unavailable: FIFO case not run");
            return;
        }
        // A symlink back to the folder itself must not recurse forever.
        std::os::unix::fs::symlink(dir.path(), dir.path().join("loop")).unwrap();
        let data = load_folder(dir.path(), 64).unwrap();
        assert_eq!(data.len(), 1);
        assert_eq!(data.not_regular, 1);
        let (path, why) = &data.skipped[0];
        assert_eq!(path, &fifo);
        assert!(why.contains("not a regular file (a FIFO)"), "{why}");
    }
}
