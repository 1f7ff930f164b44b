//! A reader for the IDX files that MNIST and similar data sets ship in, plain or gzip.
//!
//! An IDX file is a big-endian header — two zero bytes, a type code, the number of
//! dimensions, then one `u32` size per dimension — followed by the elements. This module
//! reads the two kinds MNIST uses: `uint8` images (`idx3`, magic `0x00000803`) and `uint8`
//! labels (`idx1`, magic `0x00000801`). A file that starts with the gzip magic bytes is
//! decompressed first, whatever its name.
//!
//! ```no_run
//! use densegrad::idx;
//!
//! let data = idx::read_labelled(
//!     "data/mnist-sample/images-idx3-ubyte.gz",
//!     "data/mnist-sample/labels-idx1-ubyte.gz",
//! )?;
//! let x = data.images.to_matrix(); // 10,000 × 784, pixels scaled to [0, 1]
//! assert_eq!(x.rows(), data.labels.len());
//! # Ok::<(), densegrad::idx::IdxError>(())
//! ```

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use crate::matrix::Matrix;

/// Magic number of an IDX file of `uint8` elements in 3 dimensions (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of `uint8` elements in 1 dimension (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// The first two bytes of every gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Everything that can go wrong while reading an IDX file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdxError {
    /// The file could not be opened, read or decompressed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error; `NotFound` for a missing file.
        source: io::Error,
    },

    /// The header's magic number is not the expected one, so this is not that kind of file.
    #[error("{name}: expected IDX magic number {expected:#010x}, found {found:#010x}")]
    BadMagic {
        /// The file or buffer.
        name: String,
        /// The magic number of the requested kind.
        expected: u32,
        /// The magic number the data starts with.
        found: u32,
    },

    /// The data ends before the header or the elements the header announces.
    #[error("{name}: truncated, expected {expected} bytes, found {found}")]
    Truncated {
        /// The file or buffer.
        name: String,
        /// The number of bytes the header implies.
        expected: u128,
        /// The number of bytes present.
        found: u128,
    },

    /// The data has more bytes than the header announces.
    #[error("{name}: {extra} bytes after the last element that the header announces")]
    TrailingBytes {
        /// The file or buffer.
        name: String,
        /// The number of unexpected bytes.
        extra: u128,
    },

    /// A label is outside the classes the data set has.
    #[error(
        "{name}: label {label} of sample {index} is not below the number of classes, {classes}"
    )]
    InvalidLabel {
        /// The label file.
        name: String,
        /// The sample, counting from 0.
        index: usize,
        /// The label found.
        label: u8,
        /// The number of classes; labels must be below it.
        classes: usize,
    },

    /// Images and labels disagree on the number of samples.
    #[error(
        "{images_name} has {images} images but {labels_name} has {labels} labels; the two \
         files must describe the same samples"
    )]
    CountMismatch {
        /// The image file.
        images_name: String,
        /// Number of images.
        images: usize,
        /// The label file.
        labels_name: String,
        /// Number of labels.
        labels: usize,
    },
}

/// A stack of `uint8` images, as read from an `idx3` file.
///
/// The fields are private so that `pixels` always contains exactly `count · rows · cols` bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Images {
    count: usize,
    rows: usize,
    cols: usize,
    pixels: Vec<u8>,
}

impl Images {
    /// Number of images.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Pixel rows per image.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Pixel columns per image.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The `count · rows · cols` pixels, image after image, each row-major.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// Number of pixels in one image.
    pub fn pixels_per_image(&self) -> usize {
        self.rows * self.cols
    }

    /// Returns the images as a `count × (rows · cols)` matrix, one image per row, with each
    /// pixel scaled from 0..=255 to [0, 1].
    pub fn to_matrix(&self) -> Matrix {
        let width = self.pixels_per_image();
        Matrix::from_fn(self.count, width, |i, j| {
            f32::from(self.pixels[i * width + j]) / 255.0
        })
    }
}

/// Images with one label each, as read by [`read_labelled`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Labelled {
    /// The images.
    pub images: Images,
    /// One label per image.
    pub labels: Vec<u8>,
}

/// Reads an `idx3-ubyte` image file, plain or gzip.
///
/// # Errors
///
/// [`IdxError::Io`] when the file cannot be read (`NotFound` when it does not exist) or its
/// gzip stream is corrupt; [`IdxError::BadMagic`], [`IdxError::Truncated`] or
/// [`IdxError::TrailingBytes`] when its content is not a whole image file.
pub fn read_images(path: impl AsRef<Path>) -> Result<Images, IdxError> {
    let path = path.as_ref();
    let bytes = read_maybe_gzip(path)?;
    parse_images(&bytes, &path.display().to_string())
}

/// Reads an `idx1-ubyte` label file, plain or gzip.
///
/// # Errors
///
/// As [`read_images`], for a label file.
pub fn read_labels(path: impl AsRef<Path>) -> Result<Vec<u8>, IdxError> {
    let path = path.as_ref();
    let bytes = read_maybe_gzip(path)?;
    parse_labels(&bytes, &path.display().to_string())
}

/// Reads an image file and its label file, and checks that they hold the same number of
/// samples.
///
/// # Errors
///
/// Those of [`read_images`] and [`read_labels`], and [`IdxError::CountMismatch`].
pub fn read_labelled(
    images: impl AsRef<Path>,
    labels: impl AsRef<Path>,
) -> Result<Labelled, IdxError> {
    let (images_path, labels_path) = (images.as_ref(), labels.as_ref());
    let images = read_images(images_path)?;
    let labels = read_labels(labels_path)?;
    if images.count != labels.len() {
        return Err(IdxError::CountMismatch {
            images_name: images_path.display().to_string(),
            images: images.count,
            labels_name: labels_path.display().to_string(),
            labels: labels.len(),
        });
    }
    Ok(Labelled { images, labels })
}

/// Parses the bytes of an uncompressed `idx3-ubyte` image file; `name` names it in errors.
///
/// # Errors
///
/// [`IdxError::BadMagic`], [`IdxError::Truncated`] or [`IdxError::TrailingBytes`].
pub fn parse_images(bytes: &[u8], name: &str) -> Result<Images, IdxError> {
    let (dims, body) = parse_header(bytes, name, IMAGES_MAGIC, 3)?;
    let [count, rows, cols] = [dims[0], dims[1], dims[2]];
    let len = u128::from(count) * u128::from(rows) * u128::from(cols);
    check_body(name, body, len, 16)?;
    Ok(Images {
        count: count as usize,
        rows: rows as usize,
        cols: cols as usize,
        pixels: body.to_vec(),
    })
}

/// Parses the bytes of an uncompressed `idx1-ubyte` label file; `name` names it in errors.
///
/// # Errors
///
/// [`IdxError::BadMagic`], [`IdxError::Truncated`] or [`IdxError::TrailingBytes`].
pub fn parse_labels(bytes: &[u8], name: &str) -> Result<Vec<u8>, IdxError> {
    let (dims, body) = parse_header(bytes, name, LABELS_MAGIC, 1)?;
    check_body(name, body, u128::from(dims[0]), 8)?;
    Ok(body.to_vec())
}

/// Splits an IDX file into its dimension sizes and its elements, checking the magic number.
fn parse_header<'a>(
    bytes: &'a [u8],
    name: &str,
    magic: u32,
    dimensions: usize,
) -> Result<(Vec<u32>, &'a [u8]), IdxError> {
    let header_len = 4 + 4 * dimensions;
    if bytes.len() < 4 {
        return Err(IdxError::Truncated {
            name: name.to_owned(),
            expected: header_len as u128,
            found: bytes.len() as u128,
        });
    }

    let found = read_u32(bytes, 0);
    if found != magic {
        return Err(IdxError::BadMagic {
            name: name.to_owned(),
            expected: magic,
            found,
        });
    }
    if bytes.len() < header_len {
        return Err(IdxError::Truncated {
            name: name.to_owned(),
            expected: header_len as u128,
            found: bytes.len() as u128,
        });
    }

    let dims = (0..dimensions)
        .map(|d| read_u32(bytes, 4 + 4 * d))
        .collect();
    Ok((dims, &bytes[header_len..]))
}

/// Checks that `body` contains exactly `len` element bytes after a header of `header_len`.
fn check_body(name: &str, body: &[u8], len: u128, header_len: u128) -> Result<(), IdxError> {
    let found = body.len() as u128;
    if found < len {
        return Err(IdxError::Truncated {
            name: name.to_owned(),
            expected: header_len + len,
            found: header_len + found,
        });
    }
    if found > len {
        return Err(IdxError::TrailingBytes {
            name: name.to_owned(),
            extra: found - len,
        });
    }
    Ok(())
}

/// Reads the big-endian `u32` at `at`; the caller has checked that four bytes are there.
fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Reads a whole file, decompressing it when it starts with the gzip magic bytes.
fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>, IdxError> {
    let io_error = |source| IdxError::Io {
        path: path.to_owned(),
        source,
    };

    let mut raw = Vec::new();
    File::open(path)
        .and_then(|mut file| file.read_to_end(&mut raw))
        .map_err(io_error)?;
    if !raw.starts_with(&GZIP_MAGIC) {
        return Ok(raw);
    }

    let mut decompressed = Vec::new();
    GzDecoder::new(raw.as_slice())
        .read_to_end(&mut decompressed)
        .map_err(io_error)?;
    Ok(decompressed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label_file(labels: &[u8]) -> Vec<u8> {
        let mut bytes = LABELS_MAGIC.to_be_bytes().to_vec();
        bytes.extend((labels.len() as u32).to_be_bytes());
        bytes.extend(labels);
        bytes
    }

    #[test]
    fn parse_labels_good_file() {
        assert_eq!(
            parse_labels(&label_file(&[3, 1, 4]), "t").unwrap(),
            [3, 1, 4]
        );
    }

    #[test]
    fn parse_labels_short_header() {
        let err = parse_labels(&LABELS_MAGIC.to_be_bytes(), "t").unwrap_err();
        assert!(matches!(
            err,
            IdxError::Truncated {
                expected: 8,
                found: 4,
                ..
            }
        ));
    }
}
