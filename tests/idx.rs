//! The IDX reader on good, corrupt and missing files, and on the shipped MNIST sample.
#![cfg(feature = "idx")]

use std::io::{ErrorKind, Write};
use std::path::PathBuf;

use densegrad::idx::{self, IMAGES_MAGIC, IdxError, LABELS_MAGIC};
use flate2::Compression;
use flate2::write::GzEncoder;

fn image_file(count: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for word in [IMAGES_MAGIC, count, rows, cols] {
        bytes.extend(word.to_be_bytes());
    }
    bytes.extend(pixels);
    bytes
}

fn label_file(labels: &[u8]) -> Vec<u8> {
    let mut bytes = LABELS_MAGIC.to_be_bytes().to_vec();
    bytes.extend((labels.len() as u32).to_be_bytes());
    bytes.extend(labels);
    bytes
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn write_temp(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn sample_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("data/mnist-sample")
        .join(name)
}

#[test]
fn images_plain_and_gzip_agree() {
    let dir = tempfile::tempdir().unwrap();
    let pixels: Vec<u8> = (0..2 * 3 * 2).map(|p| p * 20).collect();
    let plain = write_temp(&dir, "plain", &image_file(2, 3, 2, &pixels));
    let packed = write_temp(&dir, "packed.gz", &gzip(&image_file(2, 3, 2, &pixels)));

    let from_plain = idx::read_images(&plain).unwrap();
    let from_gzip = idx::read_images(&packed).unwrap();
    assert_eq!(from_plain, from_gzip);
    assert_eq!(
        (from_plain.count(), from_plain.rows(), from_plain.cols()),
        (2, 3, 2)
    );
    assert_eq!(from_plain.pixels(), pixels);
}

#[test]
fn images_to_matrix_scales_pixels() {
    let images = idx::parse_images(&image_file(2, 1, 2, &[0, 255, 51, 102]), "t").unwrap();
    let x = images.to_matrix();
    assert_eq!((x.rows(), x.cols()), (2, 2));
    assert_eq!(x.as_slice(), &[0.0, 1.0, 0.2, 0.4]);
}

#[test]
fn images_wrong_magic() {
    let err = idx::parse_images(&label_file(&[1, 2]), "labels.idx").unwrap_err();
    assert!(matches!(
        err,
        IdxError::BadMagic {
            expected: IMAGES_MAGIC,
            found: LABELS_MAGIC,
            ..
        }
    ));
    assert_eq!(
        err.to_string(),
        "labels.idx: expected IDX magic number 0x00000803, found 0x00000801"
    );
}

#[test]
fn images_truncated_header() {
    let bytes = image_file(1, 2, 2, &[]);
    let err = idx::parse_images(&bytes[..10], "t").unwrap_err();
    assert!(matches!(
        err,
        IdxError::Truncated {
            expected: 16,
            found: 10,
            ..
        }
    ));
}

#[test]
fn images_truncated_pixels() {
    let err = idx::parse_images(&image_file(2, 2, 2, &[7; 5]), "t").unwrap_err();
    assert!(matches!(
        err,
        IdxError::Truncated {
            expected: 24,
            found: 21,
            ..
        }
    ));
}

#[test]
fn images_dimensions_disagree_with_data() {
    let err = idx::parse_images(&image_file(1, 2, 2, &[7; 6]), "t").unwrap_err();
    assert!(matches!(err, IdxError::TrailingBytes { extra: 2, .. }));
}

#[test]
fn images_huge_header_is_truncated_not_overflow() {
    let err = idx::parse_images(&image_file(u32::MAX, u32::MAX, u32::MAX, &[1]), "t").unwrap_err();
    assert!(matches!(err, IdxError::Truncated { found: 17, .. }));
}

#[test]
fn labels_wrong_magic() {
    let err = idx::parse_labels(&image_file(1, 1, 1, &[0]), "t").unwrap_err();
    assert!(matches!(
        err,
        IdxError::BadMagic {
            expected: LABELS_MAGIC,
            ..
        }
    ));
}

#[test]
fn labels_truncated() {
    let mut bytes = label_file(&[1, 2, 3]);
    bytes.pop();
    let err = idx::parse_labels(&bytes, "t").unwrap_err();
    assert!(matches!(
        err,
        IdxError::Truncated {
            expected: 11,
            found: 10,
            ..
        }
    ));
}

#[test]
fn labelled_count_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let images = write_temp(&dir, "images", &image_file(3, 1, 1, &[0, 1, 2]));
    let labels = write_temp(&dir, "labels", &label_file(&[0, 1]));
    let err = idx::read_labelled(&images, &labels).unwrap_err();
    assert!(matches!(
        err,
        IdxError::CountMismatch {
            images: 3,
            labels: 2,
            ..
        }
    ));
    assert_eq!(
        err.to_string(),
        format!(
            "{} has 3 images but {} has 2 labels; the two files must describe the same samples",
            images.display(),
            labels.display()
        )
    );
}

#[test]
fn read_missing_file_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("train-images-idx3-ubyte");
    let err = idx::read_images(&missing).unwrap_err();
    match &err {
        IdxError::Io { path, source } => {
            assert_eq!(path, &missing);
            assert_eq!(source.kind(), ErrorKind::NotFound);
        }
        other => panic!("expected an I/O error, got {other:?}"),
    }
    assert!(err.to_string().contains("train-images-idx3-ubyte"));
}

#[test]
fn read_corrupt_gzip_is_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut packed = gzip(&label_file(&[1, 2, 3, 4, 5, 6, 7, 8]));
    packed.truncate(packed.len() - 6);
    let path = write_temp(&dir, "labels.gz", &packed);
    assert!(matches!(idx::read_labels(&path), Err(IdxError::Io { .. })));
}

#[test]
fn mnist_sample_loads_all_digits() {
    let data = idx::read_labelled(
        sample_path("images-idx3-ubyte.gz"),
        sample_path("labels-idx1-ubyte.gz"),
    )
    .unwrap();
    assert_eq!(data.images.count(), 10_000);
    assert_eq!((data.images.rows(), data.images.cols()), (28, 28));

    let mut per_digit = [0usize; 10];
    for &label in &data.labels {
        per_digit[usize::from(label)] += 1;
    }
    assert_eq!(
        per_digit,
        [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]
    );
}

#[test]
fn mnist_sample_pixels_look_like_digits() {
    let images = idx::read_images(sample_path("images-idx3-ubyte.gz")).unwrap();
    let per_image = images.pixels_per_image();

    // Every MNIST digit has ink near the centre and a blank border row at the top.
    for image in images.pixels().chunks(per_image) {
        assert!(image.iter().any(|&p| p > 128));
        assert!(image[..28].iter().all(|&p| p == 0));
    }
}
