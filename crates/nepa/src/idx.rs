//! MNIST-style idx files (Fashion-MNIST, MNIST), parsed from byte slices.
//!
//! An idx3 image file is the magic `00 00 08 03` (unsigned bytes, 3 dimensions), then the
//! image count, height and width as big-endian u32, then `count · height · width` grey
//! bytes. An idx1 label file is `00 00 08 01`, the count, then one byte per label. Every
//! header number is checked (sizes bounded, products in checked arithmetic, the data length
//! exact) so a damaged or hostile file is an error naming what is wrong, never a panic.

use crate::error::NepaError;
use crate::image::{RgbImage, from_gray};

/// Magic number of an idx3 file of unsigned bytes.
pub const IDX3_MAGIC: u32 = 0x0000_0803;
/// Magic number of an idx1 file of unsigned bytes.
pub const IDX1_MAGIC: u32 = 0x0000_0801;
/// Largest image height or width accepted in an idx file (MNIST's are 28).
pub const MAX_IDX_SIDE: usize = 4096;

/// The images of an idx3 file: `count` grey images of `height × width`, row-major, one
/// after the other in `pixels` (borrowed from the file bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdxImages<'a> {
    pub count: usize,
    pub height: usize,
    pub width: usize,
    /// `count · height · width` bytes (checked).
    pub pixels: &'a [u8],
}

impl IdxImages<'_> {
    /// The images as 8-bit RGB (grey replicated), in file order.
    pub fn to_rgb(&self) -> Vec<RgbImage> {
        // height and width are ≥ 1 (checked by the parser), so the chunks are not empty.
        self.pixels
            .chunks_exact(self.height * self.width)
            .map(|gray| from_gray(self.width, self.height, gray))
            .collect()
    }
}

fn be_u32(bytes: &[u8], at: usize) -> Option<usize> {
    let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    usize::try_from(u32::from_be_bytes(b)).ok()
}

fn err(what: &str, message: String) -> NepaError {
    NepaError::Input(format!("{what}: {message}"))
}

/// Parses an idx3 image file (magic `0x803`). Height and width must be in
/// `1..=`[`MAX_IDX_SIDE`], and the data exactly `count · height · width` bytes.
pub fn parse_idx_images(bytes: &[u8]) -> Result<IdxImages<'_>, NepaError> {
    let what = "idx3 image file";
    let (Some(magic), Some(count), Some(height), Some(width)) = (
        be_u32(bytes, 0),
        be_u32(bytes, 4),
        be_u32(bytes, 8),
        be_u32(bytes, 12),
    ) else {
        return Err(err(
            what,
            format!("{} bytes is shorter than the 16-byte header", bytes.len()),
        ));
    };
    if magic != IDX3_MAGIC as usize {
        return Err(err(
            what,
            format!("bad magic number {magic:#010x} (expected {IDX3_MAGIC:#010x})"),
        ));
    }
    for (field, value) in [("height", height), ("width", width)] {
        if value == 0 || value > MAX_IDX_SIDE {
            return Err(err(
                what,
                format!(
                    "the header declares an image {field} of {value}; it must be in 1..={MAX_IDX_SIDE}"
                ),
            ));
        }
    }
    let expected = count.checked_mul(height).and_then(|n| n.checked_mul(width));
    let data = &bytes[16..];
    if expected != Some(data.len()) {
        return Err(err(
            what,
            format!(
                "the header declares {count} images of {height} × {width} ({} bytes of pixels), \
                 but the file has {} bytes after the header",
                expected.map_or("more than fits in memory".to_string(), |n| n.to_string()),
                data.len()
            ),
        ));
    }
    Ok(IdxImages {
        count,
        height,
        width,
        pixels: data,
    })
}

/// Parses an idx1 label file (magic `0x801`) that must hold exactly `expected_count` labels
/// (one per image); returns the labels.
pub fn parse_idx_labels(bytes: &[u8], expected_count: usize) -> Result<&[u8], NepaError> {
    let what = "idx1 label file";
    let (Some(magic), Some(count)) = (be_u32(bytes, 0), be_u32(bytes, 4)) else {
        return Err(err(
            what,
            format!("{} bytes is shorter than the 8-byte header", bytes.len()),
        ));
    };
    if magic != IDX1_MAGIC as usize {
        return Err(err(
            what,
            format!("bad magic number {magic:#010x} (expected {IDX1_MAGIC:#010x})"),
        ));
    }
    if count != expected_count {
        return Err(err(
            what,
            format!("the header declares {count} labels, but there are {expected_count} images"),
        ));
    }
    let labels = &bytes[8..];
    if labels.len() != count {
        return Err(err(
            what,
            format!(
                "the header declares {count} labels, but the file has {} bytes after the header",
                labels.len()
            ),
        ));
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images(count: u32, h: u32, w: u32, data: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for v in [IDX3_MAGIC, count, h, w] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.resize(16 + data, 7);
        out
    }

    #[test]
    fn parses_a_valid_file() {
        let bytes = images(2, 3, 4, 24);
        let parsed = parse_idx_images(&bytes).unwrap();
        assert_eq!((parsed.count, parsed.height, parsed.width), (2, 3, 4));
        let rgb = parsed.to_rgb();
        assert_eq!(rgb.len(), 2);
        assert_eq!(rgb[1].pixel(3, 2), [7, 7, 7]);
        let mut labels = IDX1_MAGIC.to_be_bytes().to_vec();
        labels.extend_from_slice(&2u32.to_be_bytes());
        labels.extend_from_slice(&[3, 9]);
        assert_eq!(parse_idx_labels(&labels, 2).unwrap(), &[3, 9]);
        assert!(matches!(
            parse_idx_labels(&labels, 3),
            Err(NepaError::Input(_))
        ));
        assert!(matches!(
            parse_idx_labels(&labels[..9], 2),
            Err(NepaError::Input(_))
        ));
    }

    #[test]
    fn hostile_headers_are_input_errors() {
        let cases = [
            (images(2, 0, 4, 0), "height of 0"),
            (images(2, 3, 0, 0), "width of 0"),
            (images(1, 5000, 1, 5000), "height of 5000"),
            // 2^32-1 images of 4096 × 4096: the product overflows 32 bits (and 64 on wasm).
            (images(u32::MAX, 4096, 4096, 8), "more than fits"),
            (images(2, 3, 4, 23), "23 bytes after the header"),
            (images(2, 3, 4, 25), "25 bytes after the header"),
            (vec![0, 0, 8, 3, 0, 0], "shorter than"),
            (vec![], "shorter than"),
        ];
        for (bytes, expected) in cases {
            let e = parse_idx_images(&bytes).unwrap_err();
            assert!(matches!(e, NepaError::Input(_)), "{e:?}");
            let message = e.to_string();
            // On 64-bit the huge product fits usize, and the length check catches it.
            let ok = message.contains(expected)
                || (expected == "more than fits" && message.contains("bytes after the header"));
            assert!(ok && message.contains("idx3"), "{message}");
        }
        let mut bad_magic = images(1, 1, 1, 1);
        bad_magic[3] = 1;
        let e = parse_idx_images(&bad_magic).unwrap_err();
        assert!(e.to_string().contains("magic"), "{e}");
    }
}
