//! Reading files the user points at: regular files only, and never more than a stated size.
//!
//! A path in a data folder or on the command line may be anything: a FIFO (reading it blocks
//! until someone writes), a device such as `/dev/zero` (endless), or a file that keeps
//! growing. Each of those is refused with a message saying what the path is, instead of
//! hanging the run or exhausting memory.

use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::path::Path;

/// The largest checkpoint (or optimizer-state) file read: 16 GiB, ViT-L's weights and AdamW
/// moments in f64 with room to spare. Whether the model it describes fits is checked by the
/// model crate from the header, before any tensor is allocated.
pub const MAX_CHECKPOINT_BYTES: u64 = 16 << 30;
/// The largest sidecar (`.json`) read.
pub const MAX_SIDECAR_BYTES: u64 = 1 << 20;

/// Why [`read_regular`] refused or failed to read a file. The messages start with a verb so
/// that they read after the file name ("photo.jpg is not a regular file (a FIFO)").
#[derive(Debug)]
pub enum ReadError {
    /// A directory, FIFO, socket or device; the string names which.
    NotRegular(&'static str),
    /// The file is larger than the cap.
    TooLarge {
        size: u64,
        cap: u64,
    },
    /// The file grew past the cap while being read.
    Grew {
        cap: u64,
    },
    Io(io::Error),
}

impl ReadError {
    /// Whether the path is not a regular file (data loading counts those separately).
    pub fn is_not_regular(&self) -> bool {
        matches!(self, Self::NotRegular(_))
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotRegular(kind) => write!(f, "is not a regular file ({kind})"),
            Self::TooLarge { size, cap } => write!(
                f,
                "is {size} bytes, over the limit of {cap} bytes ({})",
                mib(*cap)
            ),
            Self::Grew { cap } => write!(
                f,
                "grew past the limit of {cap} bytes ({}) while being read",
                mib(*cap)
            ),
            Self::Io(e) => write!(f, "could not be read: {e}"),
        }
    }
}

impl std::error::Error for ReadError {}

fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes >> 20)
}

/// What a non-regular file is, for messages.
fn kind_of(file_type: fs::FileType) -> &'static str {
    if file_type.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "a FIFO";
        }
        if file_type.is_socket() {
            return "a socket";
        }
        if file_type.is_char_device() || file_type.is_block_device() {
            return "a device";
        }
    }
    "not a file"
}

/// Reads `path` (symlinks followed) if it is a regular file of at most `cap` bytes.
///
/// The type and size are checked from the metadata before opening (opening a FIFO would
/// block), checked again on the opened handle (the path may have changed in between), and
/// the read itself stops after `cap + 1` bytes, so a file that grows cannot exceed the cap.
pub fn read_regular(path: &Path, cap: u64) -> Result<Vec<u8>, ReadError> {
    let check = |meta: &fs::Metadata| -> Result<(), ReadError> {
        if !meta.file_type().is_file() {
            return Err(ReadError::NotRegular(kind_of(meta.file_type())));
        }
        if meta.len() > cap {
            return Err(ReadError::TooLarge {
                size: meta.len(),
                cap,
            });
        }
        Ok(())
    };
    check(&fs::metadata(path).map_err(ReadError::Io)?)?;
    let file = fs::File::open(path).map_err(ReadError::Io)?;
    let meta = file.metadata().map_err(ReadError::Io)?;
    check(&meta)?;
    // The size is at most `cap`, so the initial capacity is bounded too.
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > cap {
        return Err(ReadError::Grew { cap });
    }
    Ok(bytes)
}

/// As [`read_regular`], with an error that names the file and says what is wrong.
pub fn read_capped(path: &Path, cap: u64) -> anyhow::Result<Vec<u8>> {
    read_regular(path, cap).map_err(|e| anyhow::anyhow!("{} {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_small_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.bin");
        fs::write(&path, b"hello").unwrap();
        assert_eq!(read_capped(&path, 5).unwrap(), b"hello");
        let e = read_capped(&path, 4).unwrap_err().to_string();
        assert!(
            e.contains("a.bin") && e.contains("over the limit of 4 bytes"),
            "{e}"
        );
    }

    #[test]
    fn refuses_what_is_not_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_regular(dir.path(), 1 << 20).unwrap_err();
        assert!(e.is_not_regular(), "{e}");
        let e = read_capped(dir.path(), 1 << 20).unwrap_err().to_string();
        assert!(e.contains("is not a regular file (a directory)"), "{e}");
        #[cfg(unix)]
        {
            // A device that never ends: refused from its metadata, nothing read.
            let e = read_regular(Path::new("/dev/zero"), 1 << 20).unwrap_err();
            assert!(e.is_not_regular(), "{e}");
            assert!(e.to_string().contains("a device"), "{e}");
        }
        let e = read_capped(&dir.path().join("missing"), 10)
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing could not be read"), "{e}");
    }
}
