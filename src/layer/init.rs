//! Random initialisation of a dense layer's weights.

use rand::Rng;
use rand::distr::{Distribution, Uniform};

use crate::error::Error;

/// The distribution that [`Dense::new`](super::Dense::new) draws the initial weights from.
/// Biases start at zero.
///
/// Both schemes draw from a uniform distribution `U(−bound, bound)` whose variance keeps the
/// scale of the activations roughly constant from layer to layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Init {
    /// He (Kaiming) uniform, `bound = √2 · √(3 / n_in) = √(6 / n_in)`, for ReLU and leaky
    /// ReLU layers: the gain √2 makes up for ReLU zeroing half of its inputs.
    #[default]
    HeUniform,
    /// Xavier (Glorot) uniform, `bound = √(6 / (n_in + n_out))`, for tanh, sigmoid and
    /// identity layers.
    XavierUniform,
}

impl Init {
    /// Returns the half-width of the uniform distribution for a `n_out × n_in` layer.
    pub fn bound(self, n_in: usize, n_out: usize) -> f32 {
        let fan = match self {
            Init::HeUniform => n_in,
            Init::XavierUniform => n_in + n_out,
        };
        (6.0 / fan as f64).sqrt() as f32
    }

    /// Fills `weights` of a `n_out × n_in` layer with draws from `rng`.
    pub(crate) fn fill<R: Rng + ?Sized>(
        self,
        weights: &mut [f32],
        n_in: usize,
        n_out: usize,
        rng: &mut R,
    ) -> Result<(), Error> {
        let bound = self.bound(n_in, n_out);
        let uniform =
            Uniform::new_inclusive(-bound, bound).map_err(|err| Error::InvalidArgument {
                operand: "init",
                reason: format!("cannot draw from U(−{bound}, {bound}): {err}"),
            })?;
        for weight in weights {
            *weight = uniform.sample(rng);
        }
        Ok(())
    }
}
