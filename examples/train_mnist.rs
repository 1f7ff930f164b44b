//! Trains a dense network on handwritten digits and prints its progress, one line per epoch.
//!
//! ```sh
//! cargo run --release --example train_mnist
//! cargo run --release --example train_mnist -- --help
//! ```
//!
//! Without `--data`, it trains on the 10,000-digit MNIST sample in `data/mnist-sample/`,
//! split by digit into 8,000 training and 2,000 test images. The split is the same for
//! every seed. `--data DIR` reads the original MNIST files instead, with their own split
//! of 60,000 and 10,000.

use std::error::Error;
use std::fs;
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use densegrad::Parallelism;
use densegrad::layer::{Adam, Optimizer, Sequential, Sgd, Targets};
use densegrad::mnist::{self, Dataset, Split};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Any error of a run; `Send` because training runs inside a rayon pool.
type BoxError = Box<dyn Error + Send + Sync>;

/// Directory of the shipped sample, an absolute path so the example runs from any working
/// directory.
const SAMPLE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist-sample");

/// Momentum of SGD. It is not an option, so that runs stay comparable with the numpy and
/// JAX versions of the same training in `benches/peers/`, which use 0.9.
const SGD_MOMENTUM: f32 = 0.9;
/// Learning rate when `--learning-rate` is not given, per optimiser. Adam scales each step by
/// the gradient's running size, so it needs a far smaller rate than SGD. With 0.1, the
/// default network reached only 65.1 % test accuracy on the sample after 3 epochs, and
/// 93.8 % with 0.001.
const SGD_LEARNING_RATE: f32 = 0.1;
const ADAM_LEARNING_RATE: f32 = 0.001;

/// Train a dense ReLU network with a softmax cross-entropy output on MNIST digits.
#[derive(Clone, Debug, Parser)]
#[command(name = "train_mnist")]
struct Args {
    /// Number of passes over the training set
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = parse_positive)]
    epochs: usize,

    /// Samples per mini-batch, one optimiser step each
    #[arg(long, value_name = "N", default_value_t = 128, value_parser = parse_positive)]
    batch_size: usize,

    /// Step size of the optimiser [default: 0.1 for sgd, 0.001 for adam]
    #[arg(long, value_name = "RATE", allow_negative_numbers = true, value_parser = parse_learning_rate)]
    learning_rate: Option<f32>,

    /// Optimiser: SGD with momentum 0.9, or Adam
    #[arg(long, value_enum, default_value_t = OptimizerKind::Sgd)]
    optimizer: OptimizerKind,

    /// Widths of the hidden ReLU layers, comma-separated, input side first
    #[arg(long, value_name = "WIDTHS", default_value = "256,128", value_parser = parse_hidden)]
    hidden: Hidden,

    /// Threads for the kernels [default: the number of CPUs]
    #[arg(long, value_name = "N", value_parser = parse_positive)]
    threads: Option<usize>,

    /// Seed of the initial weights and of the shuffle before each epoch
    #[arg(long, value_name = "N", default_value_t = 0)]
    seed: u64,

    /// Directory with the original MNIST files (train-images-idx3-ubyte, train-labels-idx1-ubyte,
    /// t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each plain or .gz) [default: the
    /// shipped 10,000-digit sample]
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,

    /// Write the trained parameters to this safetensors file
    #[arg(long, value_name = "FILE")]
    save: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum OptimizerKind {
    Sgd,
    Adam,
}

/// Hidden layer widths; a named type because clap reads a bare `Vec` as a repeated option.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Hidden(Vec<usize>);

fn parse_positive(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(value) => Ok(value),
        Err(err) => Err(format!("expected a positive whole number: {err}")),
    }
}

fn parse_learning_rate(text: &str) -> Result<f32, String> {
    let value: f32 = text
        .trim()
        .parse()
        .map_err(|err| format!("expected a number: {err}"))?;
    if !value.is_finite() || value <= 0.0 {
        return Err(format!("must be a finite number above 0, got {value}"));
    }
    Ok(value)
}

fn parse_hidden(text: &str) -> Result<Hidden, String> {
    if text.trim().is_empty() {
        return Err("expected at least one width, such as 256,128".to_string());
    }
    let widths = text
        .split(',')
        .enumerate()
        .map(|(i, width)| {
            parse_positive(width).map_err(|err| format!("width {} ({width:?}) {err}", i + 1))
        })
        .collect::<Result<_, _>>()?;
    Ok(Hidden(widths))
}

impl Args {
    fn learning_rate(&self) -> f32 {
        self.learning_rate.unwrap_or(match self.optimizer {
            OptimizerKind::Sgd => SGD_LEARNING_RATE,
            OptimizerKind::Adam => ADAM_LEARNING_RATE,
        })
    }

    fn threads(&self) -> usize {
        self.threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        })
    }

    fn optimizer(&self) -> Box<dyn Optimizer + Send> {
        match self.optimizer {
            OptimizerKind::Sgd => {
                Box::new(Sgd::new(self.learning_rate()).with_momentum(SGD_MOMENTUM))
            }
            OptimizerKind::Adam => Box::new(Adam::new(self.learning_rate())),
        }
    }

    /// Describes the network and training settings in one line.
    fn describe(&self, n_in: usize) -> String {
        let mut widths = vec![n_in];
        widths.extend(&self.hidden.0);
        widths.push(mnist::CLASSES);
        let widths: Vec<String> = widths.iter().map(usize::to_string).collect();
        let optimizer = match self.optimizer {
            OptimizerKind::Sgd => format!("SGD with momentum {SGD_MOMENTUM}"),
            OptimizerKind::Adam => "Adam".to_string(),
        };
        let threads = self.threads();
        format!(
            "network {}, ReLU, softmax cross-entropy; {optimizer}, learning rate {}; \
             batch {}; seed {}; {threads} thread{}",
            widths.join("-"),
            self.learning_rate(),
            self.batch_size,
            self.seed,
            if threads == 1 { "" } else { "s" },
        )
    }
}

/// Loads the data that `args` selects and describes it in one line.
fn load(args: &Args) -> Result<(Split, String), BoxError> {
    let (split, source) = match &args.data {
        Some(dir) => (
            mnist::read_mnist(dir)?,
            format!("MNIST from {}", dir.display()),
        ),
        None => (
            mnist::read_sample(SAMPLE_DIR)?,
            "the MNIST sample, split by digit".to_string(),
        ),
    };
    if split.train.n_features() != split.test.n_features() {
        return Err(format!(
            "the training images have {} pixels and the test images {}; both must have the same size",
            split.train.n_features(),
            split.test.n_features()
        )
        .into());
    }
    let line = format!(
        "data: {source}, {} training and {} test images of {} pixels",
        split.train.len(),
        split.test.len(),
        split.train.n_features()
    );
    Ok((split, line))
}

/// Checks, before any training, that the parameters can be saved where `--save` requests.
fn check_save_path(args: &Args) -> Result<(), BoxError> {
    let Some(path) = &args.save else {
        return Ok(());
    };
    if path.is_dir() {
        return Err(format!(
            "--save {}: this is a directory; give a file name such as {}",
            path.display(),
            path.join("mnist.safetensors").display()
        )
        .into());
    }
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => return Ok(()),
    };
    if !parent.is_dir() {
        return Err(format!(
            "--save {}: directory {} does not exist; create it or choose another file",
            path.display(),
            parent.display()
        )
        .into());
    }
    Ok(())
}

/// Returns the accuracy of `net` on `data`.
fn accuracy(net: &mut Sequential, data: &Dataset) -> Result<f32, densegrad::Error> {
    let (_, accuracy) = net.evaluate(data.images.as_ref(), Targets::Classes(&data.labels))?;
    Ok(accuracy)
}

/// Adds the epoch to a training error and, when the logits stopped being finite, the
/// usual fix.
fn explain_training_error(epoch: usize, err: densegrad::Error) -> BoxError {
    let hint = match &err {
        densegrad::Error::InvalidValue {
            operand: "logits", ..
        } => "; training diverged, so try a smaller --learning-rate",
        _ => "",
    };
    format!("training failed in epoch {epoch}: {err}{hint}").into()
}

fn progress_bar(show: bool, epoch: usize, batches: usize) -> ProgressBar {
    if !show {
        return ProgressBar::with_draw_target(Some(batches as u64), ProgressDrawTarget::hidden());
    }
    let style = ProgressStyle::with_template(
        "epoch {prefix:>3} [{bar:40}] {pos}/{len} batches, {elapsed_precise}",
    )
    .expect("the template is valid")
    .progress_chars("=> ");
    ProgressBar::new(batches as u64)
        .with_style(style)
        .with_prefix(epoch.to_string())
}

/// Trains as `args` requests, printing one line per epoch to `out`, and returns the network.
/// `progress` shows a progress bar per epoch on standard error.
fn run(args: &Args, out: &mut dyn Write, progress: bool) -> Result<Sequential, BoxError> {
    let start = Instant::now();
    check_save_path(args)?;
    let (data, data_line) = load(args)?;
    writeln!(out, "{data_line}")?;
    writeln!(out, "{}", args.describe(data.train.n_features()))?;
    let loading = start.elapsed().as_secs_f64();

    let threads = args.threads();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let parallelism = match threads {
        1 => Parallelism::Sequential,
        n => Parallelism::Rayon(n),
    };

    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let mut net = mnist::classifier(
        data.train.n_features(),
        &args.hidden.0,
        mnist::CLASSES,
        &mut rng,
    )?
    .with_parallelism(parallelism);
    let mut optimizer = args.optimizer();

    if args.batch_size > data.train.len() {
        eprintln!(
            "note: --batch-size {} is larger than the {} training images, so each epoch is \
             one batch of all of them",
            args.batch_size,
            data.train.len()
        );
    }
    writeln!(
        out,
        "epoch  mean loss  train acc  test acc  samples/s  seconds"
    )?;
    let (mut training, mut evaluation) = (0.0f64, 0.0f64);
    let batches = data.train.len().div_ceil(args.batch_size);
    for epoch in 1..=args.epochs {
        let bar = progress_bar(progress, epoch, batches);
        // Each epoch runs inside the pool, so the kernels' tasks go straight to its workers.
        let epoch_result = pool.install(|| -> Result<_, BoxError> {
            let epoch_start = Instant::now();
            let loss = mnist::train_epoch(
                &mut net,
                optimizer.as_mut(),
                &data.train,
                args.batch_size,
                &mut rng,
                |_| bar.inc(1),
            )
            .map_err(|err| explain_training_error(epoch, err))?;
            let seconds = epoch_start.elapsed().as_secs_f64();
            bar.finish_and_clear();

            let eval_start = Instant::now();
            let train_accuracy = accuracy(&mut net, &data.train)?;
            let test_accuracy = accuracy(&mut net, &data.test)?;
            Ok((
                loss,
                train_accuracy,
                test_accuracy,
                seconds,
                eval_start.elapsed().as_secs_f64(),
            ))
        });
        let (loss, train_accuracy, test_accuracy, seconds, eval_seconds) = epoch_result?;
        training += seconds;
        evaluation += eval_seconds;

        writeln!(
            out,
            "{epoch:>5}  {loss:>9.4}  {:>7.2} %  {:>6.2} %  {:>9.0}  {seconds:>7.3}",
            100.0 * train_accuracy,
            100.0 * test_accuracy,
            data.train.len() as f64 / seconds,
        )?;
    }

    writeln!(
        out,
        "total {:.2} s: loading {loading:.2} s, training {training:.2} s, evaluation {evaluation:.2} s",
        start.elapsed().as_secs_f64()
    )?;
    if let Some(path) = &args.save {
        fs::write(path, net.to_safetensors()?)
            .map_err(|err| format!("--save {}: failed to write the file: {err}", path.display()))?;
        writeln!(out, "saved the parameters to {}", path.display())?;
    }
    Ok(net)
}

fn main() {
    let args = Args::parse();
    let progress = io::stdout().is_terminal() && io::stderr().is_terminal();
    let mut stdout = io::stdout().lock();
    if let Err(err) = run(&args, &mut stdout, progress) {
        drop(stdout);
        eprintln!("error: {err}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("train_mnist").chain(extra.iter().copied()))
    }

    fn error_text(extra: &[&str]) -> String {
        parse(extra).unwrap_err().to_string()
    }

    #[test]
    fn args_defaults() {
        let args = parse(&[]).unwrap();
        assert_eq!(args.epochs, 10);
        assert_eq!(args.batch_size, 128);
        assert_eq!(args.learning_rate(), 0.1);
        assert_eq!(args.optimizer, OptimizerKind::Sgd);
        assert_eq!(args.hidden, Hidden(vec![256, 128]));
        assert_eq!(args.seed, 0);
        assert_eq!(args.data, None);
        assert_eq!(args.save, None);
    }

    #[test]
    fn args_all_options() {
        let args = parse(&[
            "--epochs=3",
            "--batch-size=32",
            "--learning-rate=0.01",
            "--optimizer=adam",
            "--hidden=64, 32,16",
            "--threads=1",
            "--seed=7",
            "--data=/tmp/mnist",
            "--save=net.safetensors",
        ])
        .unwrap();
        assert_eq!(args.epochs, 3);
        assert_eq!(args.batch_size, 32);
        assert_eq!(args.learning_rate(), 0.01);
        assert_eq!(args.optimizer, OptimizerKind::Adam);
        assert_eq!(args.hidden, Hidden(vec![64, 32, 16]));
        assert_eq!(args.threads(), 1);
        assert_eq!(args.seed, 7);
        assert_eq!(args.data, Some(PathBuf::from("/tmp/mnist")));
        assert_eq!(args.save, Some(PathBuf::from("net.safetensors")));
    }

    #[test]
    fn args_adam_default_rate() {
        assert_eq!(
            parse(&["--optimizer", "adam"]).unwrap().learning_rate(),
            ADAM_LEARNING_RATE
        );
    }

    #[test]
    fn args_zero_batch_size() {
        let text = error_text(&["--batch-size", "0"]);
        assert!(text.contains("--batch-size"), "{text}");
        assert!(text.contains("must be at least 1"), "{text}");
    }

    #[test]
    fn args_zero_epochs_and_threads() {
        for option in ["--epochs", "--threads"] {
            let text = error_text(&[option, "0"]);
            assert!(text.contains(option), "{text}");
            assert!(text.contains("must be at least 1"), "{text}");
        }
    }

    #[test]
    fn args_bad_hidden() {
        let cases = [
            ("", "at least one width"),
            ("256,0", "width 2 (\"0\") must be at least 1"),
            ("256,,128", "width 2 (\"\")"),
            ("-3", "width 1"),
            ("wide", "expected a positive whole number"),
        ];
        for (hidden, expected) in cases {
            let text = error_text(&[&format!("--hidden={hidden}")]);
            assert!(text.contains("--hidden"), "{hidden:?}: {text}");
            assert!(text.contains(expected), "{hidden:?}: {text}");
        }
    }

    #[test]
    fn args_bad_learning_rate() {
        for rate in ["0", "-0.1", "NaN", "inf", "fast"] {
            let text = error_text(&[&format!("--learning-rate={rate}")]);
            assert!(text.contains("--learning-rate"), "{rate}: {text}");
        }
        let text = error_text(&["--learning-rate=-0.1"]);
        assert!(text.contains("must be a finite number above 0"), "{text}");
    }

    #[test]
    fn args_unknown_optimizer() {
        let text = error_text(&["--optimizer", "rmsprop"]);
        assert!(text.contains("rmsprop"), "{text}");
        assert!(text.contains("sgd"), "{text}");
    }

    #[test]
    fn training_error_hints_at_rate() {
        let diverged = densegrad::Error::InvalidValue {
            operand: "logits",
            row: 3,
            reason: "column 0 is NaN, expected a finite number".to_string(),
        };
        let text = explain_training_error(4, diverged).to_string();
        assert!(
            text.starts_with("training failed in epoch 4: logits"),
            "{text}"
        );
        assert!(text.ends_with("try a smaller --learning-rate"), "{text}");

        let other = densegrad::Error::InvalidArgument {
            operand: "x",
            reason: "the batch is empty; pass at least one row".to_string(),
        };
        let text = explain_training_error(1, other).to_string();
        assert!(!text.contains("--learning-rate"), "{text}");
    }

    #[test]
    fn run_missing_data_names_path() {
        let dir = tempfile::tempdir().unwrap();
        let args = parse(&["--data", dir.path().to_str().unwrap()]).unwrap();
        let text = run(&args, &mut Vec::new(), false).unwrap_err().to_string();
        let expected = dir.path().join("train-images-idx3-ubyte");
        assert!(text.contains(&expected.display().to_string()), "{text}");
        assert!(text.contains("neither"), "{text}");
    }

    #[test]
    fn run_save_into_missing_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("net.safetensors");
        let args = parse(&["--save", path.to_str().unwrap()]).unwrap();
        let text = run(&args, &mut Vec::new(), false).unwrap_err().to_string();
        assert!(text.contains("does not exist"), "{text}");
    }

    #[test]
    fn run_save_into_directory_path() {
        let dir = tempfile::tempdir().unwrap();
        let args = parse(&["--save", dir.path().to_str().unwrap()]).unwrap();
        let text = run(&args, &mut Vec::new(), false).unwrap_err().to_string();
        assert!(text.contains("is a directory"), "{text}");
    }

    #[test]
    fn run_save_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("net.safetensors");
        let args = parse(&[
            "--epochs=1",
            "--hidden=32",
            "--threads=1",
            "--save",
            path.to_str().unwrap(),
        ])
        .unwrap();
        let mut output = Vec::new();
        let mut trained = run(&args, &mut output, false).unwrap();

        let output = String::from_utf8(output).unwrap();
        assert!(output.contains("8000 training and 2000 test"), "{output}");
        assert!(output.contains("network 784-32-10"), "{output}");
        assert!(output.contains("saved the parameters"), "{output}");

        let mut loaded = Sequential::from_safetensors(&fs::read(&path).unwrap()).unwrap();
        let data = mnist::read_sample(SAMPLE_DIR).unwrap();
        let x = data.test.images.as_ref();
        assert_eq!(loaded.predict(x).unwrap(), trained.predict(x).unwrap());
        for (l, (a, b)) in loaded.layers().iter().zip(trained.layers()).enumerate() {
            assert_eq!(
                a.weights().to_matrix(),
                b.weights().to_matrix(),
                "layer {l}"
            );
            assert_eq!(a.bias(), b.bias(), "layer {l}");
        }
    }
}
