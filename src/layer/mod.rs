//! The safe layer API: dense layers, a sequential network with a loss, and optimisers.
//!
//! A [`Sequential`] network owns its [`Dense`] layers and the buffers of its forward and
//! backward passes. [`Sequential::train_step`] runs the forward pass, the loss, the backward
//! pass through every layer and an [`Optimizer`] update, and allocates nothing once the
//! buffers exist. Parameters are saved and loaded in the safetensors format with PyTorch's
//! tensor names and shapes.
//!
//! [`Sgd`] and [`Adam`] store state values below `f32::MIN_POSITIVE` in magnitude
//! (subnormal numbers) as zero, which PyTorch's optimisers do not; see [`flush_subnormal`].
//!
//! See [`Sequential`] for a complete example.

mod dense;
mod init;
mod loss;
mod optimizer;
mod safetensors;
mod sequential;
mod workspace;

pub use crate::loss::Targets;
pub use dense::Dense;
pub use init::Init;
pub use loss::Loss;
pub use optimizer::{Adam, Optimizer, Sgd, flush_subnormal};
pub use safetensors::ARCHITECTURE_KEY;
pub use sequential::Sequential;
