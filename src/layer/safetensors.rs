//! Saving and loading a network's parameters in the safetensors format.
//!
//! Tensors are named `layers.{i}.weight` (`n_out × n_in`) and `layers.{i}.bias` (`n_out`),
//! `f32` little-endian, which any safetensors reader (PyTorch's, candle's) loads. The names
//! and shapes are the state-dict keys of a PyTorch module whose `layers` attribute is an
//! `nn.ModuleList` of `nn.Linear`, so its `load_state_dict` accepts them. The header metadata contains `"format": "pt"` and, under [`ARCHITECTURE_KEY`], the
//! architecture as JSON: the loss and, per layer, its widths and activation.

use std::collections::HashMap;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde_json::{Value, json};

use super::dense::Dense;
use super::loss::Loss;
use super::sequential::Sequential;
use crate::Activation;
use crate::error::Error;
use crate::matrix::Matrix;

/// Metadata key under which the architecture is stored.
pub const ARCHITECTURE_KEY: &str = "densegrad.architecture";

/// Operand name of every error of this module.
const OPERAND: &str = "safetensors";

impl Sequential {
    /// Serialises the parameters, with the architecture in the metadata, to safetensors
    /// bytes. Write them to a `.safetensors` file with [`std::fs::write`].
    ///
    /// ```
    /// use densegrad::layer::{Dense, Init, Loss, Sequential};
    /// use densegrad::Activation;
    /// use densegrad::rand::SeedableRng;
    ///
    /// let mut rng = densegrad::rand_chacha::ChaCha8Rng::seed_from_u64(3);
    /// let layers = vec![Dense::new(4, 3, Activation::Identity, Init::XavierUniform, &mut rng)?];
    /// let net = Sequential::new(layers, Loss::MeanSquaredError)?;
    ///
    /// let bytes = net.to_safetensors()?;
    /// let copy = Sequential::from_safetensors(&bytes)?;
    /// assert_eq!(copy.layers()[0].weights().to_matrix(), net.layers()[0].weights().to_matrix());
    /// # Ok::<(), densegrad::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] naming `safetensors` when the serialiser fails, which it
    /// does only for a header larger than the format allows.
    pub fn to_safetensors(&self) -> Result<Vec<u8>, Error> {
        let mut bytes = Vec::with_capacity(self.layers().len() * 2);
        for layer in self.layers() {
            bytes.push(to_le_bytes(layer.weights.as_slice()));
            bytes.push(to_le_bytes(layer.bias()));
        }

        let mut tensors = Vec::with_capacity(bytes.len());
        for (l, layer) in self.layers().iter().enumerate() {
            let (n_out, n_in) = (layer.n_out(), layer.n_in());
            let weight = TensorView::new(Dtype::F32, vec![n_out, n_in], &bytes[2 * l])
                .map_err(format_error)?;
            let bias = TensorView::new(Dtype::F32, vec![n_out], &bytes[2 * l + 1])
                .map_err(format_error)?;
            tensors.push((weight_name(l), weight));
            tensors.push((bias_name(l), bias));
        }

        let metadata = HashMap::from([
            ("format".to_string(), "pt".to_string()),
            (
                ARCHITECTURE_KEY.to_string(),
                architecture_json(self).to_string(),
            ),
        ]);
        let bytes = safetensors::serialize(tensors, Some(metadata)).map_err(format_error)?;
        Ok(with_sorted_header(bytes))
    }

    /// Builds a network from safetensors bytes that [`to_safetensors`](Self::to_safetensors)
    /// wrote: the architecture from the metadata, then the parameters as
    /// [`load_safetensors`](Self::load_safetensors) checks and copies them.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] naming `safetensors` when the bytes are not a safetensors
    /// file, when the architecture metadata is missing or invalid, or when a tensor is
    /// missing or has the wrong shape or dtype. The message names the key or tensor.
    pub fn from_safetensors(bytes: &[u8]) -> Result<Self, Error> {
        let (_, metadata) = SafeTensors::read_metadata(bytes).map_err(read_error)?;
        let architecture = metadata
            .metadata()
            .as_ref()
            .and_then(|entries| entries.get(ARCHITECTURE_KEY))
            .ok_or_else(|| {
                invalid(format!(
                    "the metadata has no {ARCHITECTURE_KEY} entry; build the network with \
                     Sequential::new and load the parameters with load_safetensors"
                ))
            })?;
        let (loss, specs) = parse_architecture(architecture)?;

        // Check each weight's shape in the file before allocating it, so a corrupt header
        // cannot request more memory than the file's own tensors hold.
        let file = SafeTensors::deserialize(bytes).map_err(read_error)?;
        for (l, spec) in specs.iter().enumerate() {
            let name = weight_name(l);
            let tensor = file
                .tensor(&name)
                .map_err(|_| invalid(format!("tensor {name} is missing")))?;
            if tensor.shape() != [spec.n_out, spec.n_in] {
                return Err(invalid(format!(
                    "tensor {name} has shape {:?}, but the architecture metadata says [{}, {}]",
                    tensor.shape(),
                    spec.n_out,
                    spec.n_in
                )));
            }
        }

        let mut layers = Vec::with_capacity(specs.len());
        for spec in specs {
            let weights = Matrix::zeros(spec.n_out, spec.n_in);
            layers.push(Dense::from_parameters(
                weights,
                vec![0.0; spec.n_out],
                spec.activation,
            )?);
        }
        let mut net = Sequential::new(layers, loss)?;
        net.load_safetensors(bytes)?;
        Ok(net)
    }

    /// Replaces the parameters with those in safetensors `bytes`, which must hold exactly
    /// the tensors `layers.{i}.weight` (`n_out × n_in`) and `layers.{i}.bias` (`n_out`) of
    /// this network, as `f32`. Every tensor is checked before any parameter changes. The
    /// gradients are set to zero, since they belonged to the parameters replaced.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] naming `safetensors` when the bytes are not a safetensors
    /// file, or when a tensor is missing, unexpected, not `F32`, or of the wrong shape. The
    /// message names the tensor and both shapes or dtypes.
    pub fn load_safetensors(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let file = SafeTensors::deserialize(bytes).map_err(read_error)?;

        let mut expected = Vec::with_capacity(self.layers().len() * 2);
        for (l, layer) in self.layers().iter().enumerate() {
            expected.push((weight_name(l), vec![layer.n_out(), layer.n_in()]));
            expected.push((bias_name(l), vec![layer.n_out()]));
        }
        for name in file.names() {
            if !expected
                .iter()
                .any(|(expected_name, _)| expected_name == name)
            {
                return Err(invalid(format!(
                    "unexpected tensor {name}; a network of {} layers has layers.0 to layers.{}",
                    self.layers().len(),
                    self.layers().len() - 1
                )));
            }
        }
        let mut tensors = Vec::with_capacity(expected.len());
        for (name, shape) in &expected {
            let tensor = file
                .tensor(name)
                .map_err(|_| invalid(format!("tensor {name} is missing")))?;
            if tensor.dtype() != Dtype::F32 {
                return Err(invalid(format!(
                    "tensor {name} has dtype {}, expected F32",
                    tensor.dtype()
                )));
            }
            if tensor.shape() != shape.as_slice() {
                return Err(invalid(format!(
                    "tensor {name} has shape {:?}, expected {shape:?}",
                    tensor.shape()
                )));
            }
            tensors.push(tensor);
        }

        for (l, pair) in tensors.chunks_exact(2).enumerate() {
            let layer = &mut self.layers_mut()[l];
            copy_le_bytes(pair[0].data(), layer.weights.as_mut_slice());
            copy_le_bytes(pair[1].data(), &mut layer.bias);
            layer.grad_weights.as_mut_slice().fill(0.0);
            layer.grad_bias.fill(0.0);
        }
        Ok(())
    }
}

fn weight_name(l: usize) -> String {
    format!("layers.{l}.weight")
}

fn bias_name(l: usize) -> String {
    format!("layers.{l}.bias")
}

fn to_le_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Copies little-endian `f32` bytes into `values`, whose length the caller checked.
fn copy_le_bytes(bytes: &[u8], values: &mut [f32]) {
    for (value, chunk) in values.iter_mut().zip(bytes.chunks_exact(4)) {
        *value = f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
}

fn invalid(reason: String) -> Error {
    Error::InvalidArgument {
        operand: OPERAND,
        reason,
    }
}

fn format_error(err: safetensors::SafeTensorError) -> Error {
    invalid(err.to_string())
}

/// Describes a file that the `safetensors` crate could not read: its own messages, such
/// as "header too large", do not say that the bytes are not a valid file.
fn read_error(err: safetensors::SafeTensorError) -> Error {
    invalid(format!(
        "the bytes are not a valid safetensors file ({err})"
    ))
}

fn architecture_json(net: &Sequential) -> Value {
    let layers: Vec<Value> = net
        .layers()
        .iter()
        .map(|layer| {
            let mut entry = json!({
                "n_in": layer.n_in(),
                "n_out": layer.n_out(),
                "activation": activation_name(layer.activation()),
            });
            if let Activation::LeakyRelu { slope } = layer.activation() {
                entry["slope"] = json!(slope);
            }
            entry
        })
        .collect();
    json!({ "loss": net.loss().name(), "layers": layers })
}

fn activation_name(activation: Activation) -> &'static str {
    match activation {
        Activation::Identity => "identity",
        Activation::Relu => "relu",
        Activation::LeakyRelu { .. } => "leaky_relu",
        Activation::Sigmoid => "sigmoid",
        Activation::Tanh => "tanh",
        Activation::Softmax => "softmax",
    }
}

/// Rewrites the JSON header of a safetensors file with its keys in sorted order.
///
/// `safetensors::serialize` takes the metadata as a `HashMap`, whose iteration order changes
/// from one map to the next, so two saves of the same network could differ in their header
/// bytes. serde_json's `Value` keeps object keys in a `BTreeMap`, so a parse and re-encode
/// sorts them. The tensor data is untouched: its offsets count from the end of the header.
fn with_sorted_header(bytes: Vec<u8>) -> Vec<u8> {
    const LEN_BYTES: usize = size_of::<u64>();
    let header_len = u64::from_le_bytes(bytes[..LEN_BYTES].try_into().expect("8 bytes"));
    let header_end = LEN_BYTES + header_len as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[LEN_BYTES..header_end])
        .expect("safetensors::serialize writes a JSON header");

    // The format pads the header with spaces to a multiple of 8 bytes, as serialize does.
    let mut sorted = serde_json::to_vec(&header).expect("a JSON value encodes");
    sorted.resize(sorted.len().next_multiple_of(8), b' ');

    let mut out = Vec::with_capacity(LEN_BYTES + sorted.len() + bytes.len() - header_end);
    out.extend((sorted.len() as u64).to_le_bytes());
    out.extend(&sorted);
    out.extend(&bytes[header_end..]);
    out
}

/// One layer as the architecture metadata describes it.
struct LayerSpec {
    n_in: usize,
    n_out: usize,
    activation: Activation,
}

/// Reads the loss and the layers from the architecture JSON.
fn parse_architecture(text: &str) -> Result<(Loss, Vec<LayerSpec>), Error> {
    let bad = |what: &str| invalid(format!("{ARCHITECTURE_KEY} metadata: {what}"));
    let value: Value =
        serde_json::from_str(text).map_err(|err| bad(&format!("not valid JSON: {err}")))?;

    let loss_name = value["loss"]
        .as_str()
        .ok_or_else(|| bad("missing the string field \"loss\""))?;
    let loss =
        Loss::from_name(loss_name).ok_or_else(|| bad(&format!("unknown loss {loss_name:?}")))?;
    let entries = value["layers"]
        .as_array()
        .ok_or_else(|| bad("missing the array field \"layers\""))?;

    let mut specs = Vec::with_capacity(entries.len());
    for (l, entry) in entries.iter().enumerate() {
        let width = |field: &str| {
            entry[field]
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| {
                    bad(&format!(
                        "layer {l} has no unsigned integer field {field:?}"
                    ))
                })
        };
        let (n_in, n_out) = (width("n_in")?, width("n_out")?);
        let activation = parse_activation(entry).ok_or_else(|| {
            bad(&format!(
                "layer {l} has a missing or unknown activation: {entry}"
            ))
        })?;
        specs.push(LayerSpec {
            n_in,
            n_out,
            activation,
        });
    }
    Ok((loss, specs))
}

fn parse_activation(entry: &Value) -> Option<Activation> {
    let activation = match entry["activation"].as_str()? {
        "identity" => Activation::Identity,
        "relu" => Activation::Relu,
        "leaky_relu" => Activation::LeakyRelu {
            slope: entry["slope"].as_f64()? as f32,
        },
        "sigmoid" => Activation::Sigmoid,
        "tanh" => Activation::Tanh,
        "softmax" => Activation::Softmax,
        _ => return None,
    };
    Some(activation)
}
