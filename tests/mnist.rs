//! `densegrad::mnist`: the fixed split of the shipped sample, the original-MNIST loader on
//! files written here, and the epoch loop, down to one epoch of real training.
#![cfg(feature = "idx")]

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use densegrad::Matrix;
use densegrad::idx::{IMAGES_MAGIC, IdxError, LABELS_MAGIC};
use densegrad::layer::{Sgd, Targets};
use densegrad::mnist::{self, Dataset};
use flate2::Compression;
use flate2::write::GzEncoder;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Digits per class in the shipped sample, as `data/README.md` lists them.
const SAMPLE_COUNTS: [usize; 10] = [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978];

fn sample_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/mnist-sample")
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// Writes an IDX image file of `count` 2 × 2 images and a label file, image `i` filled with
/// `i` and labelled `i % 10`.
fn write_idx_pair(dir: &Path, images: &str, labels: &str, count: u32, compress: bool) {
    let mut image_bytes = Vec::new();
    for word in [IMAGES_MAGIC, count, 2, 2] {
        image_bytes.extend(word.to_be_bytes());
    }
    for i in 0..count {
        image_bytes.extend([i as u8; 4]);
    }
    let mut label_bytes = LABELS_MAGIC.to_be_bytes().to_vec();
    label_bytes.extend(count.to_be_bytes());
    label_bytes.extend((0..count).map(|i| (i % 10) as u8));

    let encode = |bytes: Vec<u8>| if compress { gzip(&bytes) } else { bytes };
    std::fs::write(dir.join(images), encode(image_bytes)).unwrap();
    std::fs::write(dir.join(labels), encode(label_bytes)).unwrap();
}

fn random_dataset(rng: &mut ChaCha8Rng, samples: usize, width: usize) -> Dataset {
    Dataset {
        images: Matrix::from_fn(samples, width, |_, _| rng.random_range(0.0..1.0)),
        labels: (0..samples).map(|_| rng.random_range(0..3)).collect(),
    }
}

#[test]
fn split_sample_sizes_and_classes() {
    let split = mnist::read_sample(sample_dir()).unwrap();
    assert_eq!(split.train.len(), 8_000);
    assert_eq!(split.test.len(), 2_000);
    assert_eq!(split.train.n_features(), 784);
    assert_eq!(split.test.n_features(), 784);

    // 20 % of each digit, rounded by largest remainder so that the total is 2,000.
    let expected_test = [200, 225, 198, 206, 196, 173, 203, 214, 189, 196];
    let test_counts = split.test.class_counts(10);
    let train_counts = split.train.class_counts(10);
    assert_eq!(test_counts, expected_test);
    for digit in 0..10 {
        assert_eq!(
            train_counts[digit] + test_counts[digit],
            SAMPLE_COUNTS[digit],
            "digit {digit}"
        );
    }
}

#[test]
fn split_sample_is_fixed() {
    let first = mnist::read_sample(sample_dir()).unwrap();
    let second = mnist::read_sample(sample_dir()).unwrap();
    assert_eq!(first, second);

    // No test image also appears in the training set.
    let width = first.train.n_features();
    let train: std::collections::HashSet<Vec<u32>> = first
        .train
        .images
        .as_slice()
        .chunks(width)
        .map(|row| row.iter().map(|p| p.to_bits()).collect())
        .collect();
    let shared = first
        .test
        .images
        .as_slice()
        .chunks(width)
        .filter(|row| train.contains(&row.iter().map(|p| p.to_bits()).collect::<Vec<_>>()))
        .count();
    assert_eq!(shared, 0, "test images that are also training images");
}

#[test]
fn stratified_split_random_labels() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for _ in 0..50 {
        let n = rng.random_range(1..300);
        let classes = rng.random_range(1..8);
        let labels: Vec<usize> = (0..n).map(|_| rng.random_range(0..classes)).collect();
        let test_count = rng.random_range(0..=n);
        let (train, test) = mnist::stratified_split(&labels, test_count).unwrap();

        assert_eq!(test.len(), test_count, "n {n}");
        let mut all: Vec<usize> = train.iter().chain(&test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..n).collect::<Vec<_>>(), "a partition of 0..{n}");
        assert!(train.windows(2).all(|w| w[0] < w[1]));
        assert!(test.windows(2).all(|w| w[0] < w[1]));

        // Each class's share of the test set is its exact share rounded up or down.
        for class in 0..classes {
            let in_class = labels.iter().filter(|&&l| l == class).count();
            let in_test = test.iter().filter(|&&i| labels[i] == class).count();
            let exact = (test_count * in_class) as f64 / n as f64;
            assert!(
                (in_test as f64 - exact).abs() < 1.0,
                "class {class}: {in_test} test samples, exact share {exact}"
            );
        }
    }
}

#[test]
fn stratified_split_too_many() {
    let err = mnist::stratified_split(&[0, 1, 1], 4).unwrap_err();
    assert!(err.to_string().contains("test_count"), "{err}");
    assert!(err.to_string().contains("4 test samples from 3"), "{err}");
}

#[test]
fn select_out_of_range() {
    let data = random_dataset(&mut ChaCha8Rng::seed_from_u64(1), 5, 3);
    let picked = data.select(&[4, 0]).unwrap();
    assert_eq!(picked.labels, [data.labels[4], data.labels[0]]);
    assert_eq!(picked.images.as_slice()[..3], data.images.as_slice()[12..]);

    let err = data.select(&[1, 5]).unwrap_err();
    assert!(err.to_string().contains("index 5"), "{err}");
}

#[test]
fn read_mnist_plain_and_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let [train_images, train_labels, test_images, test_labels] = mnist::MNIST_FILES;
    write_idx_pair(dir.path(), train_images, train_labels, 30, false);
    write_idx_pair(
        dir.path(),
        &format!("{test_images}.gz"),
        &format!("{test_labels}.gz"),
        12,
        true,
    );

    let split = mnist::read_mnist(dir.path()).unwrap();
    assert_eq!((split.train.len(), split.test.len()), (30, 12));
    assert_eq!(split.train.n_features(), 4);
    assert_eq!(split.test.labels[11], 1);
    assert_eq!(split.test.images.get(3, 0), Some(3.0 / 255.0));
}

#[test]
fn read_mnist_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let [train_images, train_labels, ..] = mnist::MNIST_FILES;
    write_idx_pair(dir.path(), train_images, train_labels, 3, false);

    let err = mnist::read_mnist(dir.path()).unwrap_err();
    let IdxError::Io { path, source } = &err else {
        panic!("expected an I/O error, got {err}");
    };
    assert_eq!(source.kind(), ErrorKind::NotFound);
    assert_eq!(path, &dir.path().join("t10k-images-idx3-ubyte"));
    assert!(
        err.to_string().contains("t10k-images-idx3-ubyte.gz"),
        "{err}"
    );
}

#[test]
fn read_mnist_not_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "not MNIST").unwrap();
    for (path, reason) in [
        (
            file.clone(),
            "not a directory; give the folder that holds the MNIST files",
        ),
        (dir.path().join("absent"), "no such directory"),
    ] {
        let err = mnist::read_mnist(&path).unwrap_err();
        let IdxError::Io {
            path: named,
            source,
        } = &err
        else {
            panic!("expected an I/O error, got {err}");
        };
        assert_eq!(named, &path);
        assert_eq!(source.to_string(), reason);
    }
}

#[test]
fn train_epoch_visits_every_sample() {
    // With a learning rate of 0 the parameters never change. So the epoch's mean loss equals
    // the loss of the whole training set, whatever the batch size, only if every sample is
    // used once and each batch is weighted by its size.
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let data = random_dataset(&mut rng, 103, 6);
    let mut net = mnist::classifier(6, &[8], 3, &mut rng).unwrap();
    let (expected, _) = net
        .evaluate(data.images.as_ref(), Targets::Classes(&data.labels))
        .unwrap();

    for batch_size in [1, 10, 103, 500] {
        let mut batches = Vec::new();
        let loss = mnist::train_epoch(
            &mut net,
            &mut Sgd::new(0.0),
            &data,
            batch_size,
            &mut rng,
            |m| batches.push(m),
        )
        .unwrap();
        assert!(
            (loss - expected).abs() <= 1e-5 * expected,
            "batch {batch_size}: {loss} vs {expected}"
        );
        assert_eq!(batches.iter().sum::<usize>(), 103, "batch {batch_size}");
        assert!(batches.iter().all(|&m| m <= batch_size));
        assert_eq!(batches.len(), 103usize.div_ceil(batch_size));
    }
}

#[test]
fn train_epoch_same_seed_same_weights() {
    let data = random_dataset(&mut ChaCha8Rng::seed_from_u64(2), 64, 5);
    let train = |seed| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut net = mnist::classifier(5, &[7], 3, &mut rng).unwrap();
        let mut sgd = Sgd::new(0.1).with_momentum(0.9);
        mnist::train_epoch(&mut net, &mut sgd, &data, 16, &mut rng, |_| {}).unwrap();
        net.layers()[0].weights().to_matrix()
    };
    assert_eq!(train(3), train(3));
    assert_ne!(train(3), train(4));
}

#[test]
fn train_epoch_bad_arguments() {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let data = random_dataset(&mut rng, 4, 2);
    let mut net = mnist::classifier(2, &[3], 3, &mut rng).unwrap();
    let mut sgd = Sgd::new(0.1);

    let err = mnist::train_epoch(&mut net, &mut sgd, &data, 0, &mut rng, |_| {}).unwrap_err();
    assert!(err.to_string().contains("batch_size"), "{err}");

    let empty = data.select(&[]).unwrap();
    let err = mnist::train_epoch(&mut net, &mut sgd, &empty, 2, &mut rng, |_| {}).unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");

    let mut bad_label = data.clone();
    bad_label.labels[2] = 3;
    let err = mnist::train_epoch(&mut net, &mut sgd, &bad_label, 2, &mut rng, |_| {}).unwrap_err();
    assert!(err.to_string().contains("targets"), "{err}");
}

#[test]
fn classifier_zero_width() {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    assert!(mnist::classifier(784, &[256, 0], 10, &mut rng).is_err());
    assert!(mnist::classifier(0, &[256], 10, &mut rng).is_err());
    let net = mnist::classifier(784, &[256, 128], 10, &mut rng).unwrap();
    let widths: Vec<_> = net.layers().iter().map(|l| (l.n_in(), l.n_out())).collect();
    assert_eq!(widths, [(784, 256), (256, 128), (128, 10)]);
}

#[test]
fn one_epoch_beats_chance() {
    // One epoch on 1,000 training digits, about 100 per class, with the trainer's defaults
    // except a batch of 32. That gives 32 steps instead of 8, so the margin over the
    // threshold survives rounding changes in the kernels. Chance is 10 %.
    let split = mnist::read_sample(sample_dir()).unwrap();
    let (_, subset) = mnist::stratified_split(&split.train.labels, 1_000).unwrap();
    let train = split.train.select(&subset).unwrap();

    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut net = mnist::classifier(784, &[256, 128], 10, &mut rng).unwrap();
    let (_, before) = net
        .evaluate(
            split.test.images.as_ref(),
            Targets::Classes(&split.test.labels),
        )
        .unwrap();
    let mut sgd = Sgd::new(0.1).with_momentum(0.9);
    mnist::train_epoch(&mut net, &mut sgd, &train, 32, &mut rng, |_| {}).unwrap();
    let (_, after) = net
        .evaluate(
            split.test.images.as_ref(),
            Targets::Classes(&split.test.labels),
        )
        .unwrap();

    assert!(before < 0.3, "untrained accuracy {before}");
    assert!(after > 0.7, "test accuracy after one epoch {after}");
}

#[test]
fn split_any_label_values() {
    let (train, test) = mnist::stratified_split(&[usize::MAX, 0, 3, usize::MAX, 0, 3], 3).unwrap();
    assert_eq!(test.len(), 3);
    assert_eq!(train.len(), 3);

    let mut test_labels: Vec<usize> = test
        .iter()
        .map(|&i| [usize::MAX, 0, 3, usize::MAX, 0, 3][i])
        .collect();
    test_labels.sort_unstable();
    assert_eq!(test_labels, [0, 3, usize::MAX]);
}

#[test]
fn read_mnist_label_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let [train_images, train_labels, test_images, test_labels] = mnist::MNIST_FILES;
    write_idx_pair(dir.path(), train_images, train_labels, 5, false);
    write_idx_pair(dir.path(), test_images, test_labels, 4, false);

    // Label 12 in the test labels' third sample: the header is 8 bytes.
    let path = dir.path().join(test_labels);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[8 + 2] = 12;
    std::fs::write(&path, bytes).unwrap();

    let err = mnist::read_mnist(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            IdxError::InvalidLabel {
                index: 2,
                label: 12,
                classes: 10,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("t10k-labels-idx1-ubyte"), "{err}");
}
