//! Optimisers: stochastic gradient descent with momentum, and Adam with decoupled weight
//! decay (AdamW).
//!
//! An optimiser keeps its state per parameter tensor, allocated on the first step and reused
//! afterwards, so a training loop allocates nothing once warm. One optimiser serves one
//! network: [`Sequential::train_step`](super::Sequential::train_step) numbers the tensors
//! `2·l` (weights of layer `l`) and `2·l + 1` (its bias).

use rayon::prelude::*;

use crate::error::Error;
use crate::kernel::{Arch, with_arch_features};
use crate::parallel::Parallelism;

/// A rule that updates parameters from their gradients, one training step at a time.
///
/// [`Sequential::train_step`](super::Sequential::train_step) and
/// [`Sequential::apply_gradients`](super::Sequential::apply_gradients) call
/// [`check_tensor`](Optimizer::check_tensor) for every parameter tensor and
/// [`begin_step`](Optimizer::begin_step) once before they change anything, then
/// [`update_with`](Optimizer::update_with) once per tensor, with the network's
/// parallelism. They number the tensors `2·l` (the weights of layer `l`) and `2·l + 1` (its
/// bias), so an optimiser that keeps state per tensor serves one network.
///
/// An implementation that keeps state such as momentum should pass it through
/// [`flush_subnormal`], as [`Sgd`] and [`Adam`] do, or its steps may slow down severalfold
/// late in training.
pub trait Optimizer {
    /// Checks the hyperparameters and starts a new step.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] naming the hyperparameter that is out of range; the step
    /// then does not run.
    fn begin_step(&mut self) -> Result<(), Error>;

    /// Updates parameter tensor number `index` in place from its gradient `grads`.
    ///
    /// Call [`begin_step`](Optimizer::begin_step) once before the updates of each step, as
    /// [`Sequential::train_step`](super::Sequential::train_step) does. It checks the
    /// hyperparameters, which `update` does not, and it advances step counts such as Adam's.
    ///
    /// Tensors are numbered from 0 in the order they are first updated, so `index` may be at
    /// most one past the highest index used so far.
    ///
    /// # Errors
    ///
    /// [`Error::LengthMismatch`] naming `grads` when it is not as long as `params`;
    /// [`Error::InvalidArgument`] naming `params` when tensor `index` had another length
    /// before (the optimiser is being used with another network), or `index` when it skips
    /// a number. Nothing changes on error. An optimiser that keeps no state per tensor,
    /// such as [`Sgd`] without momentum, accepts any index and length.
    fn update(&mut self, index: usize, params: &mut [f32], grads: &[f32]) -> Result<(), Error>;

    /// Checks that tensor number `index` with `len` elements fits the state this optimiser
    /// keeps, without changing anything. [`Sequential::train_step`](super::Sequential::train_step)
    /// checks every tensor before it updates the first, so a step with another network's
    /// optimiser fails with every parameter unchanged.
    ///
    /// The provided method accepts every tensor, which suits an optimiser that keeps no
    /// state per tensor. [`Sgd`] with momentum and [`Adam`] reject a tensor that had
    /// another length before. They check lengths only: an `index` that skips a number,
    /// which `train_step` never passes, is reported by `update`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] naming `params` when tensor `index` had another length
    /// before, as [`update`](Optimizer::update) would report it.
    fn check_tensor(&self, index: usize, len: usize) -> Result<(), Error> {
        let _ = (index, len);
        Ok(())
    }

    /// Updates parameter tensor number `index` as [`update`](Optimizer::update) does, on as
    /// many threads as `par` allows. The result must not depend on `par`.
    ///
    /// The provided method calls `update` on the calling thread. [`Sgd`] and [`Adam`]
    /// update tensors of at least 2 × 65,536 elements in chunks of at least 65,536 on
    /// rayon tasks, since each element's update depends on that element alone, and their
    /// `update` calls this method. An implementation
    /// that does not override this method must not do the same, or the two would call
    /// each other without end. [`Sequential::train_step`](super::Sequential::train_step)
    /// calls this method with the network's parallelism.
    ///
    /// # Errors
    ///
    /// As for [`update`](Optimizer::update).
    fn update_with(
        &mut self,
        index: usize,
        params: &mut [f32],
        grads: &[f32],
        par: Parallelism,
    ) -> Result<(), Error> {
        let _ = par;
        self.update(index, params, grads)
    }
}

/// Minimum number of parameters per rayon task in an optimiser update. The update reads
/// and writes each element's parameter, gradient and state once, so 64 K elements take
/// about ten microseconds on one core, several times what handing a chunk to a task
/// costs. In a profile on Zen 4, 235 k elements took 3.6 % of a 1.3 ms training step.
const MIN_UPDATE_CHUNK: usize = 1 << 16;

/// Elements per rayon task for an update of `len` parameters under `par`, or `None` to
/// update them on the calling thread.
fn update_chunk(par: Parallelism, len: usize) -> Option<usize> {
    let tasks = par.max_threads().min(len / MIN_UPDATE_CHUNK);
    (tasks > 1).then(|| len.div_ceil(tasks))
}

/// Stochastic gradient descent with optional momentum, Nesterov momentum and L2 weight
/// decay, with PyTorch's `torch.optim.SGD` update rule (no dampening):
///
/// ```text
/// g ← grad + weight_decay·p
/// v ← momentum·v + g                      (v starts at 0)
/// p ← p − learning_rate·(nesterov ? g + momentum·v : v)
/// ```
///
/// One departure: a velocity below `f32::MIN_POSITIVE` in magnitude is stored as zero (see
/// [`flush_subnormal`]).
///
/// The update gives the same bits on every SIMD path ([`simd_path`](crate::simd_path)) and
/// every [`Parallelism`], because it computes each element with the same operations in
/// the same order whatever the vector width or the split.
///
/// ```
/// use densegrad::layer::Sgd;
///
/// let sgd = Sgd::new(0.1).with_momentum(0.9);
/// assert_eq!(sgd.momentum, 0.9);
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sgd {
    /// Step size `η`, finite and non-negative.
    pub learning_rate: f32,
    /// Momentum factor in `[0, 1)`; 0 turns momentum off and keeps no state.
    pub momentum: f32,
    /// Use Nesterov momentum; needs `momentum > 0`.
    pub nesterov: bool,
    /// L2 penalty added to the gradient, finite and non-negative.
    pub weight_decay: f32,
    velocity: Vec<Vec<f32>>,
}

impl Sgd {
    /// Creates plain gradient descent with the given learning rate.
    pub fn new(learning_rate: f32) -> Self {
        Self {
            learning_rate,
            ..Self::default()
        }
    }

    /// Sets the momentum factor.
    #[must_use]
    pub fn with_momentum(mut self, momentum: f32) -> Self {
        self.momentum = momentum;
        self
    }

    /// Turns Nesterov momentum on or off.
    #[must_use]
    pub fn with_nesterov(mut self, nesterov: bool) -> Self {
        self.nesterov = nesterov;
        self
    }

    /// Sets the L2 weight decay.
    #[must_use]
    pub fn with_weight_decay(mut self, weight_decay: f32) -> Self {
        self.weight_decay = weight_decay;
        self
    }
}

impl Optimizer for Sgd {
    fn begin_step(&mut self) -> Result<(), Error> {
        check_non_negative("learning_rate", self.learning_rate)?;
        check_unit_interval("momentum", self.momentum)?;
        check_non_negative("weight_decay", self.weight_decay)?;
        if self.nesterov && self.momentum == 0.0 {
            return Err(Error::InvalidArgument {
                operand: "nesterov",
                reason: "Nesterov momentum needs a momentum above 0".to_string(),
            });
        }
        Ok(())
    }

    fn update(&mut self, index: usize, params: &mut [f32], grads: &[f32]) -> Result<(), Error> {
        self.update_with(index, params, grads, Parallelism::Sequential)
    }

    fn check_tensor(&self, index: usize, len: usize) -> Result<(), Error> {
        if self.momentum == 0.0 {
            return Ok(());
        }
        check_state_len(&self.velocity, index, len)
    }

    fn update_with(
        &mut self,
        index: usize,
        params: &mut [f32],
        grads: &[f32],
        par: Parallelism,
    ) -> Result<(), Error> {
        self.update_on(Arch::selected(), index, params, grads, par)
    }
}

impl Sgd {
    /// [`update_with`](Optimizer::update_with) with its element loops compiled for `arch`
    /// (or the fastest supported path below it). Every path gives the same bits.
    fn update_on(
        &mut self,
        arch: Arch,
        index: usize,
        params: &mut [f32],
        grads: &[f32],
        par: Parallelism,
    ) -> Result<(), Error> {
        Error::check_len("grads", params.len(), grads.len())?;
        let (lr, wd, momentum) = (self.learning_rate, self.weight_decay, self.momentum);
        let chunk = update_chunk(par, params.len());
        if momentum == 0.0 {
            let step = |params: &mut [f32], grads: &[f32]| {
                with_arch_features(arch, || {
                    for (p, &g) in params.iter_mut().zip(grads) {
                        *p -= lr * (g + wd * *p);
                    }
                })
            };
            match chunk {
                Some(chunk) => params
                    .par_chunks_mut(chunk)
                    .zip(grads.par_chunks(chunk))
                    .for_each(|(p, g)| step(p, g)),
                None => step(params, grads),
            }
            return Ok(());
        }

        let nesterov = self.nesterov;
        let velocity = state_for(&mut self.velocity, index, params.len())?;
        let step = |params: &mut [f32], grads: &[f32], velocity: &mut [f32]| {
            with_arch_features(arch, || {
                let elements = params.iter_mut().zip(grads).zip(velocity.iter_mut());
                if nesterov {
                    for ((p, &g), v) in elements {
                        let g = g + wd * *p;
                        *v = flush_subnormal(momentum * *v + g);
                        *p -= lr * (g + momentum * *v);
                    }
                } else {
                    for ((p, &g), v) in elements {
                        let g = g + wd * *p;
                        *v = flush_subnormal(momentum * *v + g);
                        *p -= lr * *v;
                    }
                }
            })
        };
        match chunk {
            Some(chunk) => params
                .par_chunks_mut(chunk)
                .zip(grads.par_chunks(chunk))
                .zip(velocity.par_chunks_mut(chunk))
                .for_each(|((p, g), v)| step(p, g, v)),
            None => step(params, grads, velocity),
        }
        Ok(())
    }
}

/// Adam with decoupled weight decay (AdamW), with PyTorch's `torch.optim.AdamW` update rule
/// for step `t = 1, 2, …`:
///
/// ```text
/// p ← p − learning_rate·weight_decay·p
/// m ← beta1·m + (1 − beta1)·g           v ← beta2·v + (1 − beta2)·g²
/// p ← p − learning_rate·(m / (1 − beta1^t)) / (√(v / (1 − beta2^t)) + epsilon)
/// ```
///
/// With `weight_decay = 0` this is plain Adam. One departure: a moment below
/// `f32::MIN_POSITIVE` in magnitude is stored as zero (see [`flush_subnormal`]). The code
/// computes the decay as `p·(1 − learning_rate·weight_decay)`, as PyTorch does, and the
/// denominator as `√v·(1/√(1 − beta2^t)) + epsilon`. Both can round differently from the
/// formula as written. Like [`Sgd`], it gives the same bits on every SIMD path and every
/// [`Parallelism`].
///
/// NOTE: a gradient above about `√(f32::MAX / (1 − beta2))` in magnitude (5.8e20 with
/// `beta2 = 0.999`) makes `(1 − beta2)·g²` overflow, and that parameter's second moment
/// stays infinite, so the parameter no longer moves and no error is returned. Clip such
/// gradients first, for example with
/// [`Sequential::clip_gradient_norm`](super::Sequential::clip_gradient_norm).
///
/// ```
/// use densegrad::layer::Adam;
///
/// let adam = Adam::new(1e-3).with_weight_decay(0.01);
/// assert_eq!((adam.beta1, adam.beta2), (0.9, 0.999));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Adam {
    /// Step size, finite and non-negative.
    pub learning_rate: f32,
    /// Decay of the first-moment estimate, in `[0, 1)`.
    pub beta1: f32,
    /// Decay of the second-moment estimate, in `[0, 1)`.
    pub beta2: f32,
    /// Added to the denominator for numerical stability, finite and positive.
    pub epsilon: f32,
    /// Decoupled weight decay, finite and non-negative.
    pub weight_decay: f32,
    step: i32,
    first_moment: Vec<Vec<f32>>,
    second_moment: Vec<Vec<f32>>,
}

impl Adam {
    /// Creates Adam with the given learning rate and the usual defaults `beta1 = 0.9`,
    /// `beta2 = 0.999`, `epsilon = 1e-8` and no weight decay.
    pub fn new(learning_rate: f32) -> Self {
        Self {
            learning_rate,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            weight_decay: 0.0,
            step: 0,
            first_moment: Vec::new(),
            second_moment: Vec::new(),
        }
    }

    /// Sets the two moment decays.
    #[must_use]
    pub fn with_betas(mut self, beta1: f32, beta2: f32) -> Self {
        self.beta1 = beta1;
        self.beta2 = beta2;
        self
    }

    /// Sets `epsilon`.
    #[must_use]
    pub fn with_epsilon(mut self, epsilon: f32) -> Self {
        self.epsilon = epsilon;
        self
    }

    /// Sets the decoupled weight decay.
    #[must_use]
    pub fn with_weight_decay(mut self, weight_decay: f32) -> Self {
        self.weight_decay = weight_decay;
        self
    }

    /// Number of steps taken so far.
    pub fn steps(&self) -> i32 {
        self.step
    }
}

impl Optimizer for Adam {
    fn begin_step(&mut self) -> Result<(), Error> {
        check_non_negative("learning_rate", self.learning_rate)?;
        check_unit_interval("beta1", self.beta1)?;
        check_unit_interval("beta2", self.beta2)?;
        check_non_negative("weight_decay", self.weight_decay)?;
        if !(self.epsilon.is_finite() && self.epsilon > 0.0) {
            return Err(Error::InvalidArgument {
                operand: "epsilon",
                reason: format!("{} must be finite and positive", self.epsilon),
            });
        }
        self.step = self.step.saturating_add(1);
        Ok(())
    }

    fn update(&mut self, index: usize, params: &mut [f32], grads: &[f32]) -> Result<(), Error> {
        self.update_with(index, params, grads, Parallelism::Sequential)
    }

    fn check_tensor(&self, index: usize, len: usize) -> Result<(), Error> {
        check_state_len(&self.first_moment, index, len)?;
        check_state_len(&self.second_moment, index, len)
    }

    fn update_with(
        &mut self,
        index: usize,
        params: &mut [f32],
        grads: &[f32],
        par: Parallelism,
    ) -> Result<(), Error> {
        self.update_on(Arch::selected(), index, params, grads, par)
    }
}

impl Adam {
    /// [`update_with`](Optimizer::update_with) with its element loops compiled for `arch`
    /// (or the fastest supported path below it). Every path gives the same bits.
    fn update_on(
        &mut self,
        arch: Arch,
        index: usize,
        params: &mut [f32],
        grads: &[f32],
        par: Parallelism,
    ) -> Result<(), Error> {
        Error::check_len("grads", params.len(), grads.len())?;
        let (lr, beta1, beta2, eps) = (self.learning_rate, self.beta1, self.beta2, self.epsilon);
        let decay = 1.0 - lr * self.weight_decay;
        let step = self.step.max(1);
        let correction1 = (1.0 - f64::from(beta1).powi(step)) as f32;
        let correction2 = (1.0 - f64::from(beta2).powi(step)) as f32;
        let step_size = lr / correction1;
        let inv_sqrt_correction2 = 1.0 / correction2.sqrt();

        let first = state_for(&mut self.first_moment, index, params.len())?;
        let second = state_for(&mut self.second_moment, index, params.len())?;
        let step = |params: &mut [f32], grads: &[f32], first: &mut [f32], second: &mut [f32]| {
            with_arch_features(arch, || {
                let moments = first.iter_mut().zip(second.iter_mut());
                for ((p, &g), (m, v)) in params.iter_mut().zip(grads).zip(moments) {
                    *p *= decay;
                    *m = flush_subnormal(beta1 * *m + (1.0 - beta1) * g);
                    *v = flush_subnormal(beta2 * *v + (1.0 - beta2) * g * g);
                    *p -= step_size * *m / (v.sqrt() * inv_sqrt_correction2 + eps);
                }
            })
        };
        match update_chunk(par, params.len()) {
            Some(chunk) => params
                .par_chunks_mut(chunk)
                .zip(grads.par_chunks(chunk))
                .zip(first.par_chunks_mut(chunk))
                .zip(second.par_chunks_mut(chunk))
                .for_each(|(((p, g), m), v)| step(p, g, m, v)),
            None => step(params, grads, first, second),
        }
        Ok(())
    }
}

/// Returns `x`, or a zero of the same sign when `x` is subnormal (nonzero and below
/// `f32::MIN_POSITIVE` in magnitude).
///
/// Optimiser state passes its values through this. A parameter whose gradient stays zero,
/// such as a weight into a ReLU unit that no sample activates, has its momentum shrink by
/// the same factor every step until it is subnormal. There it stays, because `0.9` times
/// the smallest subnormal rounds back to it. Many x86 cores, among them the Intel Xeon that
/// BENCHMARKS.md was measured on, compute with subnormal numbers through microcode
/// assists, many times slower than with normal ones, so such a state slows every later
/// step. There, a training step of batch 32 became more than twice as slow after a few
/// thousand steps without this flush.
///
/// What the flush drops is small: an SGD velocity below `f32::MIN_POSITIVE` would have
/// moved its parameter by less than `learning_rate · f32::MIN_POSITIVE` per step, and an
/// Adam first moment below it by less than `learning_rate · f32::MIN_POSITIVE /
/// ((1 − beta1^t) · epsilon)`, about `1e-29 · learning_rate` with the defaults.
///
/// The flush is done in software because Rust code must not change the CPU's
/// flush-to-zero mode. NOTE: it only covers stored state. Subnormal intermediates, such as
/// `g²` in Adam for gradients below about `1e-19`, still run on assists.
///
/// ```
/// use densegrad::layer::flush_subnormal;
///
/// assert_eq!(flush_subnormal(1e-40), 0.0);
/// assert_eq!(flush_subnormal(f32::MIN_POSITIVE), f32::MIN_POSITIVE);
/// assert!(flush_subnormal(-1e-40).is_sign_negative());
/// assert!(flush_subnormal(f32::NAN).is_nan());
/// ```
#[inline]
pub fn flush_subnormal(x: f32) -> f32 {
    if x.abs() < f32::MIN_POSITIVE {
        0.0f32.copysign(x)
    } else {
        x
    }
}

/// Returns the state buffer of tensor `index`, creating it (zeroed, `len` elements) on first
/// use. Allocates only then.
///
/// # Errors
///
/// [`Error::InvalidArgument`] naming `index` when it skips a number, or `params` when the
/// tensor had another length before.
fn state_for(states: &mut Vec<Vec<f32>>, index: usize, len: usize) -> Result<&mut [f32], Error> {
    if index > states.len() {
        let seen = match states.len() {
            0 => "no tensors yet".to_string(),
            len => format!("tensors 0 to {}", len - 1),
        };
        return Err(Error::InvalidArgument {
            operand: "index",
            reason: format!(
                "tensor {index} skips a number: this optimiser has seen {seen}; \
                 number them in the order of their first update"
            ),
        });
    }
    if index == states.len() {
        states.push(vec![0.0; len]);
    }
    check_state_len(states, index, len)?;
    Ok(&mut states[index])
}

/// Checks that the state of tensor `index`, if there is one yet, has `len` elements.
///
/// # Errors
///
/// [`Error::InvalidArgument`] naming `params` when the tensor had another length before.
fn check_state_len(states: &[Vec<f32>], index: usize, len: usize) -> Result<(), Error> {
    match states.get(index) {
        Some(state) if state.len() != len => Err(Error::InvalidArgument {
            operand: "params",
            reason: format!(
                "tensor {index} has {len} elements, but this optimiser's state for tensor \
                 {index} has {}; an optimiser keeps state for one network, so give each \
                 network its own",
                state.len()
            ),
        }),
        _ => Ok(()),
    }
}

fn check_non_negative(operand: &'static str, value: f32) -> Result<(), Error> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            operand,
            reason: format!("{value} must be finite and non-negative"),
        })
    }
}

fn check_unit_interval(operand: &'static str, value: f32) -> Result<(), Error> {
    if (0.0..1.0).contains(&value) {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            operand,
            reason: format!("{value} must lie in [0, 1)"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgd_subnormal_velocity_stored_as_zero() {
        // Velocities 4m, 2m, m, then m/2, which is subnormal. The second element's
        // velocities stay normal. With lr = 1 every step is exact.
        let m = f32::MIN_POSITIVE;
        let mut sgd = Sgd::new(1.0).with_momentum(0.5);
        let mut params = [0.0, 1.0];
        for grads in [[4.0 * m, 1.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]] {
            sgd.begin_step().unwrap();
            sgd.update(0, &mut params, &grads).unwrap();
        }
        assert_eq!(sgd.velocity[0], [0.0, 0.125]);
        assert_eq!(params, [-7.0 * m, -0.875]);
    }

    /// Returns `len` parameters or gradients mixing ordinary values with zeros, subnormal
    /// values and values near the ends of the `f32` range.
    fn mixed_values(len: usize, seed: u32) -> Vec<f32> {
        let specials = [0.0, -0.0, 1e-39, -3e-40, 1e30, -2e-30, f32::MIN_POSITIVE];
        (0..len as u32)
            .map(|i| {
                let hash = (i ^ seed).wrapping_mul(2_654_435_761).rotate_left(13);
                match hash % 11 {
                    r @ 0..=6 => specials[r as usize],
                    _ => (hash >> 8) as f32 / (1 << 23) as f32 - 1.0,
                }
            })
            .collect()
    }

    /// Signature of an optimiser's `update_on`, which updates one tensor with the loops of
    /// a given path.
    type UpdateOn<O> =
        fn(&mut O, Arch, usize, &mut [f32], &[f32], Parallelism) -> Result<(), Error>;

    /// Runs three steps of `optimizer` on every supported path and both parallelisms, and
    /// checks each run against the portable path on one thread, bit for bit.
    fn paths_agree<O: Optimizer + Clone + PartialEq + std::fmt::Debug>(
        optimizer: &O,
        update_on: UpdateOn<O>,
    ) {
        // The long tensor is split into rayon chunks under `Rayon(2)`.
        let lens = [1, 17, 1000, 2 * MIN_UPDATE_CHUNK + 5];
        let run = |arch: Arch, par: Parallelism| {
            let mut optimizer = optimizer.clone();
            let mut params: Vec<Vec<f32>> = lens.iter().map(|&len| mixed_values(len, 1)).collect();
            for step in 0..3 {
                optimizer.begin_step().unwrap();
                for (index, tensor) in params.iter_mut().enumerate() {
                    let grads = mixed_values(tensor.len(), 7 + step);
                    update_on(&mut optimizer, arch, index, tensor, &grads, par).unwrap();
                }
            }
            (optimizer, params)
        };
        let bits = |params: &[Vec<f32>]| -> Vec<Vec<u32>> {
            params
                .iter()
                .map(|t| t.iter().map(|x| x.to_bits()).collect())
                .collect()
        };

        let (expected_state, expected) = run(Arch::Portable, Parallelism::Sequential);
        for arch in Arch::supported() {
            for par in [Parallelism::Sequential, Parallelism::Rayon(2)] {
                let (state, params) = run(arch, par);
                assert_eq!(bits(&params), bits(&expected), "{arch:?} {par:?}");
                assert!(
                    state == expected_state,
                    "{arch:?} {par:?}: optimiser state differs"
                );
            }
        }
    }

    #[test]
    fn sgd_paths_bitwise_equal() {
        for sgd in [
            Sgd::new(0.1).with_weight_decay(0.01),
            Sgd::new(0.1).with_momentum(0.9),
            Sgd::new(0.05)
                .with_momentum(0.5)
                .with_nesterov(true)
                .with_weight_decay(1e-3),
        ] {
            paths_agree(&sgd, Sgd::update_on);
        }
    }

    #[test]
    fn adam_paths_bitwise_equal() {
        paths_agree(&Adam::new(1e-3), Adam::update_on);
        paths_agree(&Adam::new(0.1).with_weight_decay(0.01), Adam::update_on);
    }

    #[test]
    fn adam_subnormal_moments_stored_as_zero() {
        // (1 − beta2)·g² is about 1e-43 for g = 1e-20, and (1 − beta1)·g stays normal.
        let mut adam = Adam::new(0.1);
        let mut params = [0.0; 2];
        adam.begin_step().unwrap();
        adam.update(0, &mut params, &[1e-20, 1.0]).unwrap();
        assert_eq!(adam.second_moment[0][0], 0.0);
        let (beta1, beta2) = (adam.beta1, adam.beta2);
        assert_eq!(adam.first_moment[0], [(1.0 - beta1) * 1e-20, 1.0 - beta1]);
        assert_eq!(adam.second_moment[0][1], 1.0 - beta2);
    }
}
