//! Reading files a user points at without trusting them: only regular files (a FIFO would
//! hang the run, a device such as `/dev/zero` never ends), and never more than a cap.

use std::fs;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// The largest checkpoint (or optimizer-state) file read: 16 GiB, ViT-L's weights and AdamW
/// moments in f64 with room to spare. Whether the model it describes fits is checked by the
/// model crate from the header, before any tensor is allocated.
pub const MAX_CHECKPOINT_BYTES: u64 = 16 << 30;
/// The largest image file read (the decoder's own pixel limit applies after).
pub const MAX_IMAGE_FILE_BYTES: u64 = 256 << 20;
/// The largest sidecar (`.json`) read.
pub const MAX_SIDECAR_BYTES: u64 = 1 << 20;

/// Reads `path` whole if it is a regular file (symlinks followed) of at most `cap` bytes.
/// The size is checked from the metadata and again while reading, so a file that grows
/// meanwhile cannot exceed the cap either.
pub fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>> {
    let meta = fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if !meta.file_type().is_file() {
        bail!("{} is not a regular file", path.display());
    }
    if meta.len() > cap {
        bail!(
            "{} is too large: {} bytes, at most {cap} are read",
            path.display(),
            meta.len()
        );
    }
    let file = fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(cap + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() as u64 > cap {
        bail!("{} grew past {cap} bytes while being read", path.display());
    }
    Ok(bytes)
}
