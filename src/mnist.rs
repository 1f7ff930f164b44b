//! MNIST for training a classifier: loading, a fixed train/test split, and the epoch loop.
//!
//! The `train_mnist` example is built from these pieces, and the tests use them too, so
//! what the example does is what the tests check.
//!
//! - [`read_sample`] loads the 10,000-digit sample shipped in `data/mnist-sample/` and
//!   splits it with [`stratified_split`] into 8,000 training and 2,000 test digits. The
//!   split depends only on the labels, never on a seed.
//! - [`read_mnist`] loads the original MNIST files, with their own split of 60,000 training
//!   and 10,000 test digits.
//! - [`classifier`] builds a ReLU network with a softmax cross-entropy output, and
//!   [`train_epoch`] runs one pass over a training set in shuffled mini-batches.
//!
//! # Example
//!
//! A network of two dense layers trained for one epoch on the sample, step by step.
//! [`train_epoch`] does the same loop with a fresh shuffle per call.
//!
//! ```
//! use densegrad::layer::{Dense, Init, Loss, Sequential, Sgd, Targets};
//! use densegrad::{Activation, mnist};
//! use densegrad::rand::{SeedableRng, seq::SliceRandom};
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // The sample is in this repository's data/mnist-sample: run from the repository root,
//!     // or give the folder's full path. 8,000 training and 2,000 test digits.
//!     let data = mnist::read_sample("data/mnist-sample")?;
//!     let mut rng = densegrad::rand_chacha::ChaCha8Rng::seed_from_u64(0);
//!     let layers = vec![
//!         Dense::new(784, 128, Activation::Relu, Init::HeUniform, &mut rng)?,
//!         Dense::new(128, 10, Activation::Softmax, Init::XavierUniform, &mut rng)?,
//!     ];
//!     let mut net = Sequential::new(layers, Loss::SoftmaxCrossEntropy)?;
//!     let mut sgd = Sgd::new(0.1).with_momentum(0.9);
//!
//!     // The split is sorted by digit, so shuffle it, then take steps on batches of 100 rows.
//!     let mut order: Vec<usize> = (0..data.train.len()).collect();
//!     order.shuffle(&mut rng);
//!     let train = data.train.select(&order)?;
//!     for start in (0..train.len()).step_by(100) {
//!         let x = train.images.as_ref().submatrix(start, 0, 100, 784)?;
//!         net.train_step(x, Targets::Classes(&train.labels[start..start + 100]), &mut sgd)?;
//!     }
//!
//!     let test = Targets::Classes(&data.test.labels);
//!     let (loss, accuracy) = net.evaluate(data.test.images.as_ref(), test)?;
//!     println!("test loss {loss:.3}, accuracy {:.1} %", 100.0 * accuracy);
//!     assert!(accuracy > 0.85);
//!
//!     // Serialise the weights as safetensors, which std::fs::write can keep in a file.
//!     let bytes = net.to_safetensors()?;
//!     println!("{} bytes of weights", bytes.len());
//!     Ok(())
//! }
//! ```

use std::io;
use std::path::{Path, PathBuf};

use rand::Rng;
use rand::seq::SliceRandom;

use crate::Activation;
use crate::error::Error;
use crate::idx::{self, IdxError, Labelled};
use crate::layer::{Dense, Init, Loss, Optimizer, Sequential, Targets};
use crate::matrix::Matrix;

/// Number of classes in MNIST, the digits 0 to 9.
pub const CLASSES: usize = 10;

/// Image file of the shipped sample, inside its directory.
pub const SAMPLE_IMAGES: &str = "images-idx3-ubyte.gz";
/// Label file of the shipped sample, inside its directory.
pub const SAMPLE_LABELS: &str = "labels-idx1-ubyte.gz";
/// Number of digits of the 10,000-digit sample that go to the test set. The other 8,000 are
/// for training.
pub const SAMPLE_TEST_COUNT: usize = 2_000;

/// Base names of the original MNIST files: training images and labels, then test images and
/// labels. Each may also carry a `.gz` suffix.
pub const MNIST_FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// Images with one class label each, ready for a network.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// One image per row, pixels scaled to [0, 1].
    pub images: Matrix,
    /// The class of each row of `images`.
    pub labels: Vec<usize>,
}

impl Dataset {
    /// Converts images and labels read by [`idx::read_labelled`].
    pub fn from_labelled(data: &Labelled) -> Self {
        Self {
            images: data.images.to_matrix(),
            labels: data
                .labels
                .iter()
                .map(|&label| usize::from(label))
                .collect(),
        }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Returns `true` when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of features per sample: the pixels of one image.
    pub fn n_features(&self) -> usize {
        self.images.cols()
    }

    /// Returns the samples at `indices`, in that order.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] naming `indices` when one is not below [`len`](Self::len).
    pub fn select(&self, indices: &[usize]) -> Result<Self, Error> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.len()) {
            return Err(Error::InvalidArgument {
                operand: "indices",
                reason: format!(
                    "index {bad} is out of range for a data set of {} samples",
                    self.len()
                ),
            });
        }

        let width = self.n_features();
        let source = self.images.as_slice();
        let mut pixels = Vec::with_capacity(indices.len() * width);
        for &i in indices {
            pixels.extend_from_slice(&source[i * width..(i + 1) * width]);
        }
        Ok(Self {
            images: Matrix::from_vec(pixels, indices.len(), width)?,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
        })
    }

    /// Returns how many samples each class in `0..classes` has; larger labels are not
    /// counted.
    pub fn class_counts(&self, classes: usize) -> Vec<usize> {
        let mut counts = vec![0; classes];
        for &label in &self.labels {
            if let Some(count) = counts.get_mut(label) {
                *count += 1;
            }
        }
        counts
    }
}

/// A training set and a test set.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    /// The samples to train on.
    pub train: Dataset,
    /// The samples to measure accuracy on, never trained on.
    pub test: Dataset,
}

/// Splits sample indices into training and test indices, stratified by label: each class
/// gives the test set its share of `test_count`, and the split depends only on `labels`.
///
/// Class `c` with `n_c` of the `n` samples gets `test_count · n_c / n` test samples, rounded
/// by the largest-remainder method so that the shares add up to `test_count` exactly (ties
/// go to the smaller class index). Within a class, the `t_c` test samples are spread evenly
/// over its occurrences: occurrence `i` of `n_c` goes to the test set when
/// `⌊(i + 1)·t_c / n_c⌋ > ⌊i·t_c / n_c⌋`. So an order within a class cannot put all of one
/// kind of image on one side. Both returned lists are in increasing order.
///
/// ```
/// let labels = [0, 0, 0, 0, 1, 1, 1, 1, 1, 1];
/// let (train, test) = densegrad::mnist::stratified_split(&labels, 5)?;
/// assert_eq!(test, [1, 3, 5, 7, 9]);
/// assert_eq!(train, [0, 2, 4, 6, 8]);
/// # Ok::<(), densegrad::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::InvalidArgument`] naming `test_count` when it is larger than `labels.len()`.
pub fn stratified_split(
    labels: &[usize],
    test_count: usize,
) -> Result<(Vec<usize>, Vec<usize>), Error> {
    let n = labels.len();
    if test_count > n {
        return Err(Error::InvalidArgument {
            operand: "test_count",
            reason: format!("cannot take {test_count} test samples from {n} samples"),
        });
    }

    // Classes are the distinct label values in increasing order, so any label value works,
    // however large, without sizing a table by it.
    let mut classes = labels.to_vec();
    classes.sort_unstable();
    classes.dedup();
    let class_of = |label: &usize| {
        classes
            .binary_search(label)
            .expect("every label is one of the distinct labels")
    };

    let mut counts = vec![0usize; classes.len()];
    for label in labels {
        counts[class_of(label)] += 1;
    }
    let test_per_class = largest_remainder(&counts, test_count);

    let mut seen = vec![0usize; classes.len()];
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (index, label) in labels.iter().enumerate() {
        let class = class_of(label);
        let (i, t, n_c) = (seen[class], test_per_class[class], counts[class]);
        seen[class] += 1;
        // In u128, because (i + 1)·t can exceed usize on 32-bit targets.
        let (i, t, n_c) = (i as u128, t as u128, n_c as u128);
        if (i + 1) * t / n_c > i * t / n_c {
            test.push(index);
        } else {
            train.push(index);
        }
    }
    Ok((train, test))
}

/// Shares `total` out in proportion to `counts`, rounding by the largest-remainder method.
fn largest_remainder(counts: &[usize], total: usize) -> Vec<usize> {
    let n: usize = counts.iter().sum();
    if n == 0 {
        return vec![0; counts.len()];
    }
    // In u128, because count · total can exceed usize on 32-bit targets.
    let (total_wide, n_wide) = (total as u128, n as u128);
    let mut shares: Vec<usize> = counts
        .iter()
        .map(|&c| (c as u128 * total_wide / n_wide) as usize)
        .collect();
    let mut by_remainder: Vec<usize> = (0..counts.len()).collect();
    // A stable sort keeps the smaller class first among equal remainders.
    by_remainder.sort_by_key(|&c| std::cmp::Reverse(counts[c] as u128 * total_wide % n_wide));
    let missing = total - shares.iter().sum::<usize>();
    for &c in by_remainder.iter().take(missing) {
        shares[c] += 1;
    }
    shares
}

/// Reads the MNIST sample in `dir` ([`SAMPLE_IMAGES`] and [`SAMPLE_LABELS`]) and splits it
/// with [`stratified_split`] into [`SAMPLE_TEST_COUNT`] test digits and the rest for
/// training.
///
/// # Errors
///
/// The errors of [`idx::read_labelled`], whose messages name the file. A sample with fewer
/// than [`SAMPLE_TEST_COUNT`] digits is reported as [`IdxError::Truncated`] on the label file.
pub fn read_sample(dir: impl AsRef<Path>) -> Result<Split, IdxError> {
    let dir = dir.as_ref();
    let labels_path = dir.join(SAMPLE_LABELS);
    let labelled = idx::read_labelled(dir.join(SAMPLE_IMAGES), &labels_path)?;
    check_labels(&labels_path, &labelled.labels)?;
    let data = Dataset::from_labelled(&labelled);

    let too_short = |_| IdxError::Truncated {
        name: labels_path.display().to_string(),
        expected: SAMPLE_TEST_COUNT as u128,
        found: data.len() as u128,
    };
    let (train, test) = stratified_split(&data.labels, SAMPLE_TEST_COUNT).map_err(too_short)?;
    let select = |indices: &[usize]| {
        data.select(indices)
            .expect("stratified_split returns indices of the data set")
    };
    Ok(Split {
        train: select(&train),
        test: select(&test),
    })
}

/// Reads the original MNIST files from `dir`: [`MNIST_FILES`], each plain or with a `.gz`
/// suffix (the plain file is used when both exist). The training set is the 60,000 digits
/// of the `train-` files and the test set the 10,000 of the `t10k-` files.
///
/// # Errors
///
/// - [`IdxError::Io`] of kind `NotFound` naming `dir` when it is not a directory.
/// - [`IdxError::Io`] of kind `NotFound` naming the file without the suffix when neither
///   version of a file exists.
/// - The errors of [`idx::read_labelled`].
pub fn read_mnist(dir: impl AsRef<Path>) -> Result<Split, IdxError> {
    let dir = dir.as_ref();
    if !dir.is_dir() {
        let reason = if dir.exists() {
            "not a directory; give the folder that holds the MNIST files"
        } else {
            "no such directory"
        };
        return Err(IdxError::Io {
            path: dir.to_owned(),
            source: io::Error::new(io::ErrorKind::NotFound, reason),
        });
    }
    let [train_images, train_labels, test_images, test_labels] =
        MNIST_FILES.map(|name| find_plain_or_gzip(dir, name));
    let (train_images, train_labels) = (train_images?, train_labels?);
    let (test_images, test_labels) = (test_images?, test_labels?);
    let train = idx::read_labelled(train_images, &train_labels)?;
    check_labels(&train_labels, &train.labels)?;
    let test = idx::read_labelled(test_images, &test_labels)?;
    check_labels(&test_labels, &test.labels)?;
    Ok(Split {
        train: Dataset::from_labelled(&train),
        test: Dataset::from_labelled(&test),
    })
}

/// Checks that every label of the file at `path` is a digit, below [`CLASSES`].
fn check_labels(path: &Path, labels: &[u8]) -> Result<(), IdxError> {
    match labels
        .iter()
        .position(|&label| usize::from(label) >= CLASSES)
    {
        None => Ok(()),
        Some(index) => Err(IdxError::InvalidLabel {
            name: path.display().to_string(),
            index,
            label: labels[index],
            classes: CLASSES,
        }),
    }
}

/// Returns `dir/name` if it exists, else `dir/name.gz` if that exists.
fn find_plain_or_gzip(dir: &Path, name: &str) -> Result<PathBuf, IdxError> {
    let plain = dir.join(name);
    if plain.exists() {
        return Ok(plain);
    }
    let gzip = dir.join(format!("{name}.gz"));
    if gzip.exists() {
        return Ok(gzip);
    }
    Err(IdxError::Io {
        source: io::Error::new(
            io::ErrorKind::NotFound,
            format!("neither {name} nor {name}.gz exists in this directory"),
        ),
        path: plain,
    })
}

/// Builds a classifier of `n_in` inputs, ReLU hidden layers of the widths in `hidden`, and
/// `classes` softmax outputs trained with softmax cross-entropy.
///
/// Hidden layers start from He uniform weights, which suit ReLU, and the output layer from
/// Xavier uniform weights. All biases start at zero. The weights are drawn from `rng`, layer
/// by layer from the input.
///
/// # Errors
///
/// [`Error::InvalidArgument`] naming `n_in` or `n_out` when `n_in`, a hidden width or
/// `classes` is zero.
pub fn classifier<R: Rng + ?Sized>(
    n_in: usize,
    hidden: &[usize],
    classes: usize,
    rng: &mut R,
) -> Result<Sequential, Error> {
    let mut layers = Vec::with_capacity(hidden.len() + 1);
    let mut width = n_in;
    for &n_out in hidden {
        layers.push(Dense::new(
            width,
            n_out,
            Activation::Relu,
            Init::HeUniform,
            rng,
        )?);
        width = n_out;
    }
    layers.push(Dense::new(
        width,
        classes,
        Activation::Softmax,
        Init::XavierUniform,
        rng,
    )?);
    Sequential::new(layers, Loss::SoftmaxCrossEntropy)
}

/// Trains `net` for one epoch: one pass over `train` in a fresh random order drawn from
/// `rng`, in mini-batches of `batch_size` (the last one smaller when `batch_size` does not
/// divide the number of samples, and one batch of all samples when it exceeds their
/// number), one `optimizer` step per batch. Calls `on_batch` with the
/// number of samples of each batch after its step. Returns the mean loss over the epoch's
/// samples, each batch's loss taken before its step.
///
/// # Errors
///
/// - [`Error::InvalidArgument`] naming `batch_size` when it is zero, or `train` when it is
///   empty.
/// - The errors of [`Sequential::train_step`], for instance a label that is not below the
///   number of outputs, or logits that are no longer finite because training diverged.
///   The epoch stops at the first failed step.
pub fn train_epoch<O, R>(
    net: &mut Sequential,
    optimizer: &mut O,
    train: &Dataset,
    batch_size: usize,
    rng: &mut R,
    mut on_batch: impl FnMut(usize),
) -> Result<f32, Error>
where
    O: Optimizer + ?Sized,
    R: Rng + ?Sized,
{
    if batch_size == 0 {
        return Err(Error::InvalidArgument {
            operand: "batch_size",
            reason: "a mini-batch needs at least one sample; got 0".to_string(),
        });
    }
    if train.is_empty() {
        return Err(Error::InvalidArgument {
            operand: "train",
            reason: "the training set is empty".to_string(),
        });
    }

    let mut order: Vec<usize> = (0..train.len()).collect();
    order.shuffle(rng);

    let width = train.n_features();
    let source = train.images.as_slice();
    let rows = batch_size.min(train.len());
    let mut batch = Matrix::zeros(rows, width);
    let mut classes = vec![0usize; rows];
    let mut total_loss = 0.0f64;

    for indices in order.chunks(rows) {
        let m = indices.len();
        let pixels = batch.as_mut_slice();
        for (row, &i) in indices.iter().enumerate() {
            pixels[row * width..(row + 1) * width]
                .copy_from_slice(&source[i * width..(i + 1) * width]);
            classes[row] = train.labels[i];
        }

        let x = batch.as_ref().submatrix(0, 0, m, width)?;
        let loss = net.train_step(x, Targets::Classes(&classes[..m]), optimizer)?;
        total_loss += f64::from(loss) * m as f64;
        on_batch(m);
    }
    Ok((total_loss / train.len() as f64) as f32)
}
