//! A feed-forward network: dense layers in sequence with a loss on the output.

use super::dense::Dense;
use super::loss::{Loss, check_targets, loss_and_delta, row_class, target_class, target_rows};
use super::optimizer::Optimizer;
use super::workspace::Workspace;
use crate::Activation;
use crate::dense::{DenseGrads, GradMode, dense_backward, dense_forward};
use crate::error::{Error, Shape};
use crate::loss::{Range, Targets, check_values};
use crate::matrix::{MatMut, MatRef, Matrix};
use crate::parallel::{Parallelism, on_pool};

/// Batch size that [`Sequential::evaluate`] and [`Sequential::predict`] work through at a
/// time before the first training step has sized the buffers. Large enough that per-call
/// overhead is small, small enough that the buffers of a wide network stay a few megabytes.
const DEFAULT_CHUNK_ROWS: usize = 256;

/// Dense layers applied in order, with a loss on the output of the last.
///
/// The network owns the buffers of its forward and backward passes. They are sized by the
/// first batch and reused for every batch that is no larger, so
/// [`train_step`](Sequential::train_step) allocates nothing once warm.
///
/// ```
/// use densegrad::layer::{Dense, Init, Loss, Sequential, Sgd, Targets};
/// use densegrad::{Activation, MatRef};
/// use densegrad::rand::SeedableRng;
/// use densegrad::rand_chacha::ChaCha8Rng;
///
/// let mut rng = ChaCha8Rng::seed_from_u64(1);
/// let mut net = Sequential::new(
///     vec![
///         Dense::new(2, 8, Activation::Tanh, Init::XavierUniform, &mut rng)?,
///         Dense::new(8, 2, Activation::Softmax, Init::XavierUniform, &mut rng)?,
///     ],
///     Loss::SoftmaxCrossEntropy,
/// )?;
///
/// let x = MatRef::from_slice(&[0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0], 4, 2)?;
/// let classes = [0, 1, 1, 0];
/// let mut sgd = Sgd::new(0.5).with_momentum(0.9);
/// let first = net.train_step(x, Targets::Classes(&classes), &mut sgd)?;
/// for _ in 0..200 {
///     net.train_step(x, Targets::Classes(&classes), &mut sgd)?;
/// }
/// let (loss, accuracy) = net.evaluate(x, Targets::Classes(&classes))?;
/// assert!(loss < first);
/// assert_eq!(accuracy, 1.0);
/// # Ok::<(), densegrad::Error>(())
/// ```
///
/// Two networks are equal (`==`) when their layers (parameters, activations and
/// gradients), loss and parallelism are. The buffers of the last forward pass do not count.
#[derive(Clone, Debug)]
pub struct Sequential {
    layers: Vec<Dense>,
    loss: Loss,
    parallelism: Parallelism,
    workspace: Workspace,
}

impl PartialEq for Sequential {
    fn eq(&self, other: &Self) -> bool {
        self.layers == other.layers
            && self.loss == other.loss
            && self.parallelism == other.parallelism
    }
}

impl Sequential {
    /// Creates a network from its layers, first to last, and the loss on its output.
    ///
    /// # Errors
    ///
    /// - [`Error::InvalidArgument`] naming `layers` when there are none, when a layer's
    ///   input count differs from the previous layer's output count, or when a hidden layer
    ///   uses softmax, whose error cannot be passed back element-wise.
    /// - [`Error::InvalidArgument`] naming `loss` when the last layer's activation is not
    ///   [`Loss::output_activation`].
    pub fn new(layers: Vec<Dense>, loss: Loss) -> Result<Self, Error> {
        let Some(last) = layers.last() else {
            return Err(Error::InvalidArgument {
                operand: "layers",
                reason: "a network needs at least one layer; got none".to_string(),
            });
        };
        if last.activation() != loss.output_activation() {
            return Err(Error::InvalidArgument {
                operand: "loss",
                reason: format!(
                    "{} needs the last layer's activation to be {:?}, got {:?}",
                    loss.name(),
                    loss.output_activation(),
                    last.activation()
                ),
            });
        }
        for (l, pair) in layers.windows(2).enumerate() {
            let (below, above) = (&pair[0], &pair[1]);
            if above.n_in() != below.n_out() {
                return Err(Error::InvalidArgument {
                    operand: "layers",
                    reason: format!(
                        "layer {} has {} inputs, but layer {l} has {} outputs",
                        l + 1,
                        above.n_in(),
                        below.n_out()
                    ),
                });
            }
            if below.activation() == Activation::Softmax {
                return Err(Error::InvalidArgument {
                    operand: "layers",
                    reason: format!(
                        "layer {l} is a hidden layer with softmax, which only the output layer \
                         may use"
                    ),
                });
            }
        }
        Ok(Self {
            layers,
            loss,
            parallelism: Parallelism::Sequential,
            workspace: Workspace::default(),
        })
    }

    /// Sets the threading of every kernel call and returns the network.
    #[must_use]
    pub fn with_parallelism(mut self, parallelism: Parallelism) -> Self {
        self.parallelism = parallelism;
        self
    }

    /// Sets the threading of every kernel call. Results do not depend on it.
    ///
    /// With [`Parallelism::Rayon`], run the whole training loop inside one
    /// `ThreadPool::install` to keep it free of allocation. Entering a pool from outside it,
    /// which a call from a thread that is not one of its workers does, costs rayon one heap
    /// block per 63 entries (its injector queue, crossbeam-deque 0.8).
    pub fn set_parallelism(&mut self, parallelism: Parallelism) {
        self.parallelism = parallelism;
    }

    /// The threading of every kernel call.
    pub fn parallelism(&self) -> Parallelism {
        self.parallelism
    }

    /// The layers, first to last.
    pub fn layers(&self) -> &[Dense] {
        &self.layers
    }

    /// Returns the weights and bias of each layer, first to last, mutably, to set or
    /// change parameters by hand: pruning, scaling, copying from another network. The
    /// shapes stay fixed, and [`Sequential::layers`] reads the values back.
    ///
    /// The values are not checked. A NaN written here reaches the output, or nothing at
    /// all behind a ReLU, which maps NaN to 0. An optimiser with state ([`Sgd`] with
    /// momentum, [`Adam`]) applies its old velocity or moments to the changed values on
    /// its next step. Create a new one to start afresh. For an update rule of your own,
    /// implement [`Optimizer`], which [`Sequential::train_step`] calls with each tensor
    /// and its gradient.
    ///
    /// [`Sgd`]: super::Sgd
    /// [`Adam`]: super::Adam
    ///
    /// ```
    /// use densegrad::Activation;
    /// use densegrad::layer::{Dense, Init, Loss, Sequential};
    /// use densegrad::rand::SeedableRng;
    /// use densegrad::rand_chacha::ChaCha8Rng;
    ///
    /// let mut rng = ChaCha8Rng::seed_from_u64(0);
    /// let mut net = Sequential::new(
    ///     vec![
    ///         Dense::new(4, 3, Activation::Relu, Init::HeUniform, &mut rng)?,
    ///         Dense::new(3, 2, Activation::Softmax, Init::XavierUniform, &mut rng)?,
    ///     ],
    ///     Loss::SoftmaxCrossEntropy,
    /// )?;
    ///
    /// // Zero the weights of small magnitude in every layer.
    /// for (weights, _bias) in net.parameters_mut() {
    ///     for w in weights.into_mut_slice().unwrap() {
    ///         if w.abs() < 0.1 {
    ///             *w = 0.0;
    ///         }
    ///     }
    /// }
    /// let weights = net.layers()[0].weights();
    /// assert!(weights.as_slice().unwrap().iter().all(|w| *w == 0.0 || w.abs() >= 0.1));
    /// # Ok::<(), densegrad::Error>(())
    /// ```
    pub fn parameters_mut(
        &mut self,
    ) -> impl DoubleEndedIterator<Item = (MatMut<'_>, &mut [f32])> + ExactSizeIterator {
        self.layers.iter_mut().map(Dense::parameters_mut)
    }

    /// The layers, mutably, for this module's loaders; the shapes must not change.
    pub(super) fn layers_mut(&mut self) -> &mut [Dense] {
        &mut self.layers
    }

    /// The loss on the output.
    pub fn loss(&self) -> Loss {
        self.loss
    }

    /// Number of input features, the width of `x`.
    pub fn n_in(&self) -> usize {
        self.layers[0].n_in()
    }

    /// Number of outputs.
    pub fn n_out(&self) -> usize {
        self.layers[self.layers.len() - 1].n_out()
    }

    /// Runs the network on a batch `x` (`m × n_in`) for inference and returns its output
    /// (`m × n_out`): probabilities for the cross-entropies, values for mean squared error.
    ///
    /// The output lives in the network's buffers until the next call. A batch larger than
    /// any before grows the buffers. An empty batch (`m = 0`) gives an empty output, while
    /// the training and evaluation methods reject it.
    ///
    /// # Errors
    ///
    /// [`Error::ShapeMismatch`] naming `x` when it does not have `n_in` columns, and
    /// [`Error::InvalidValue`] naming the first row of `x` with a value that is not finite.
    pub fn forward(&mut self, x: MatRef<'_>) -> Result<MatRef<'_>, Error> {
        self.check_input(x)?;
        let m = x.rows();
        self.workspace.reserve(&self.layers, m);
        self.forward_rows(x, false)?;
        Ok(self.workspace.output(self.layers.len() - 1, m))
    }

    /// Runs one training step on the batch `x` (`m × n_in`): a forward pass that keeps every
    /// layer's output, the loss and its gradient, a backward pass through every layer, and
    /// one update by `optimizer`. Returns the batch's mean loss before the update.
    ///
    /// Afterwards each layer's [`grad_weights`](Dense::grad_weights) and
    /// [`grad_bias`](Dense::grad_bias) contain this batch's gradients. When an error is
    /// returned, the parameters, the gradients and the optimiser's state are unchanged:
    /// the step calls [`Optimizer::check_tensor`] on every tensor before it computes the
    /// gradients. A custom optimiser whose update fails on a tensor its check accepted
    /// leaves the gradients this batch's and the tensors before that one updated.
    ///
    /// # Errors
    ///
    /// - [`Error::InvalidArgument`] naming `x` for an empty batch, and the errors of
    ///   [`forward`](Sequential::forward) for `x`.
    /// - [`Error::LengthMismatch`] or [`Error::ShapeMismatch`] naming `targets` when it does
    ///   not have one entry per row.
    /// - [`Error::InvalidValue`] naming `targets` and the first row with a class index out
    ///   of range, a value that is not finite, or a binary cross-entropy target outside
    ///   `[0, 1]`.
    /// - [`Error::InvalidArgument`] naming `targets` for class indices with a loss other
    ///   than softmax cross-entropy.
    /// - [`Error::InvalidValue`] naming `logits` (`predictions` for mean squared error)
    ///   and the first row whose output is not finite, which happens once the parameters
    ///   have diverged or when inputs near the `f32` range overflow inside the network,
    ///   or naming `loss` and the first row whose loss alone is beyond the
    ///   `f32` range (finite outputs far from their targets), where an update would write
    ///   infinite or NaN parameters.
    /// - [`Error::InvalidArgument`] from `optimizer` for a hyperparameter out of range, or
    ///   naming `params` when a tensor's length differs from the state the optimiser
    ///   keeps for it, as after updating another network. Another network goes undetected
    ///   when its tensors have the same lengths, or when it has more layers after ones of
    ///   the same lengths: it shares the state, and its extra tensors get new state.
    pub fn train_step<O: Optimizer + ?Sized>(
        &mut self,
        x: MatRef<'_>,
        targets: Targets<'_>,
        optimizer: &mut O,
    ) -> Result<f32, Error> {
        let loss = self.forward_loss(x, targets)?;

        // Every check has passed once the optimiser accepts its hyperparameters and every
        // tensor, so from here on nothing fails and the step changes the gradients, the
        // parameters and the optimiser's state together.
        self.begin_update(optimizer)?;
        self.backward(x, GradMode::Overwrite)?;
        self.update(optimizer)?;
        Ok(loss)
    }

    /// Computes the gradients of the batch's mean loss, as [`train_step`](Sequential::train_step)
    /// does, without changing any parameter, and returns that loss. Each layer's
    /// [`grad_weights`](Dense::grad_weights) and [`grad_bias`](Dense::grad_bias) then
    /// contain this batch's gradients, which [`clip_gradient_norm`](Sequential::clip_gradient_norm)
    /// or [`gradients_mut`](Sequential::gradients_mut) can change (to clip them, or to add
    /// those of several batches) before
    /// [`apply_gradients`](Sequential::apply_gradients) updates the parameters.
    ///
    /// `compute_gradients` followed by `apply_gradients` gives the same parameters, bit for
    /// bit, as one `train_step`. Each call overwrites the gradients. To add up those of
    /// several micro-batches instead, see
    /// [`accumulate_gradients`](Sequential::accumulate_gradients).
    ///
    /// ```
    /// use densegrad::layer::{Dense, Init, Loss, Sequential, Sgd, Targets};
    /// use densegrad::{Activation, MatRef};
    /// use densegrad::rand::SeedableRng;
    /// use densegrad::rand_chacha::ChaCha8Rng;
    ///
    /// let mut rng = ChaCha8Rng::seed_from_u64(3);
    /// let mut net = Sequential::new(
    ///     vec![
    ///         Dense::new(2, 8, Activation::Tanh, Init::XavierUniform, &mut rng)?,
    ///         Dense::new(8, 1, Activation::Identity, Init::XavierUniform, &mut rng)?,
    ///     ],
    ///     Loss::MeanSquaredError,
    /// )?;
    /// let x = MatRef::from_slice(&[0.0, 1.0, 1.0, 0.0, 1.0, 1.0], 3, 2)?;
    /// let y = MatRef::from_slice(&[1.0, 1.0, 0.0], 3, 1)?;
    /// let mut sgd = Sgd::new(0.1);
    ///
    /// // Clip the gradients to a global norm of at most 1 before each update.
    /// for _ in 0..100 {
    ///     net.compute_gradients(x, Targets::Dense(y))?;
    ///     net.clip_gradient_norm(1.0)?;
    ///     net.apply_gradients(&mut sgd)?;
    /// }
    /// let (loss, _) = net.evaluate(x, Targets::Dense(y))?;
    /// assert!(loss < 0.05);
    /// # Ok::<(), densegrad::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The errors of [`train_step`](Sequential::train_step) that concern `x`, `targets`
    /// and outputs or a loss that are not finite. The parameters and the gradients are then
    /// unchanged.
    pub fn compute_gradients(&mut self, x: MatRef<'_>, targets: Targets<'_>) -> Result<f32, Error> {
        let loss = self.forward_loss(x, targets)?;
        self.backward(x, GradMode::Overwrite)?;
        Ok(loss)
    }

    /// Adds the gradients of the micro-batch `x` to those each layer contains, as one part
    /// of a batch of `total_rows` rows, and returns the micro-batch's mean loss.
    ///
    /// The loss of a batch is the mean over its rows, so a micro-batch of `m` rows counts
    /// with the weight `m / total_rows`. Start with
    /// [`zero_gradients`](Sequential::zero_gradients) and call this method once for each
    /// micro-batch of a batch. The gradients are then those that
    /// [`compute_gradients`](Sequential::compute_gradients) computes on the whole batch, to
    /// rounding, since the sums run in another order. The mean loss of the batch is the
    /// sum of the returned losses weighted the same way. Then
    /// [`apply_gradients`](Sequential::apply_gradients) takes the step. A batch too large
    /// for memory, or for the buffers of the forward pass, can train this way in pieces.
    ///
    /// The gradients are added to whatever the layers hold: after `compute_gradients`,
    /// [`train_step`](Sequential::train_step) or `apply_gradients`, which leaves them in
    /// place, those are the last batch's. Start every batch with `zero_gradients`. Pass
    /// the same `total_rows`, the sum of the parts' rows, with every part: only its
    /// lower bound, the rows of `x`, can be checked. Rows named in errors count from the
    /// first row of `x`.
    ///
    /// ```
    /// use densegrad::layer::{Dense, Init, Loss, Sequential, Sgd, Targets};
    /// use densegrad::{Activation, MatRef};
    /// use densegrad::rand::SeedableRng;
    /// use densegrad::rand_chacha::ChaCha8Rng;
    ///
    /// let mut rng = ChaCha8Rng::seed_from_u64(5);
    /// let mut net = Sequential::new(
    ///     vec![
    ///         Dense::new(2, 8, Activation::Tanh, Init::XavierUniform, &mut rng)?,
    ///         Dense::new(8, 1, Activation::Identity, Init::XavierUniform, &mut rng)?,
    ///     ],
    ///     Loss::MeanSquaredError,
    /// )?;
    /// let x = [0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0];
    /// let y = [1.0, 1.0, 0.0, 0.0];
    /// let mut whole = net.clone();
    ///
    /// // The batch of 4 rows in micro-batches of 3 and 1 rows.
    /// net.zero_gradients();
    /// let mut loss = 0.0;
    /// for (start, rows) in [(0, 3), (3, 1)] {
    ///     let part = MatRef::from_slice(&x[2 * start..2 * (start + rows)], rows, 2)?;
    ///     let targets = MatRef::from_slice(&y[start..start + rows], rows, 1)?;
    ///     let part_loss = net.accumulate_gradients(part, Targets::Dense(targets), 4)?;
    ///     loss += part_loss * rows as f32 / 4.0;
    /// }
    ///
    /// let whole_loss = whole.compute_gradients(
    ///     MatRef::from_slice(&x, 4, 2)?,
    ///     Targets::Dense(MatRef::from_slice(&y, 4, 1)?),
    /// )?;
    /// assert!((loss - whole_loss).abs() < 1e-6);
    /// for (layer, whole_layer) in net.layers().iter().zip(whole.layers()) {
    ///     for (g, w) in layer.grad_bias().iter().zip(whole_layer.grad_bias()) {
    ///         assert!((g - w).abs() < 1e-6);
    ///     }
    /// }
    /// net.apply_gradients(&mut Sgd::new(0.1))?;
    /// # Ok::<(), densegrad::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] naming `total_rows` when it is smaller than the number
    /// of rows of `x`, and the errors of
    /// [`compute_gradients`](Sequential::compute_gradients). The parameters and the
    /// gradients are then unchanged.
    pub fn accumulate_gradients(
        &mut self,
        x: MatRef<'_>,
        targets: Targets<'_>,
        total_rows: usize,
    ) -> Result<f32, Error> {
        let m = x.rows();
        if total_rows < m {
            return Err(Error::InvalidArgument {
                operand: "total_rows",
                reason: format!("{total_rows} is fewer than the {m} rows of x"),
            });
        }
        let loss = self.forward_loss(x, targets)?;

        // The loss gradient is that of the micro-batch's mean. Its share of the batch
        // scales it in f64, so that the scaling adds a single rounding.
        if total_rows != m {
            let share = m as f64 / total_rows as f64;
            let (_, mut delta) = self.workspace.logits_and_delta(m);
            delta.for_each_mut(|_, _, d| *d = (f64::from(*d) * share) as f32);
        }
        self.backward(x, GradMode::Accumulate)?;
        Ok(loss)
    }

    /// Sets every weight and bias gradient to zero, to start adding up micro-batches with
    /// [`accumulate_gradients`](Sequential::accumulate_gradients).
    pub fn zero_gradients(&mut self) {
        for (grad_weights, grad_bias) in self.gradients_mut() {
            grad_weights.into_mut_slice().unwrap_or_default().fill(0.0);
            grad_bias.fill(0.0);
        }
    }

    /// Updates every parameter by `optimizer` from the gradients that each layer contains:
    /// those of the last [`compute_gradients`](Sequential::compute_gradients) or
    /// [`train_step`](Sequential::train_step), as [`gradients_mut`](Sequential::gradients_mut)
    /// may have changed them. A network that has not computed any has zero gradients. The
    /// gradients stay as they are.
    ///
    /// # Errors
    ///
    /// The optimiser's errors, as for [`train_step`](Sequential::train_step); the
    /// parameters and the optimiser's state are then unchanged.
    pub fn apply_gradients<O: Optimizer + ?Sized>(
        &mut self,
        optimizer: &mut O,
    ) -> Result<(), Error> {
        self.begin_update(optimizer)?;
        self.update(optimizer)
    }

    /// Returns each layer's weight and bias gradients, first to last, mutably, to change
    /// them between [`compute_gradients`](Sequential::compute_gradients) and
    /// [`apply_gradients`](Sequential::apply_gradients): clipping, scaling, or adding the
    /// gradients of several batches. The weight gradients are row-major like the weights.
    /// Values are not checked, so a NaN written here reaches the parameters.
    pub fn gradients_mut(
        &mut self,
    ) -> impl DoubleEndedIterator<Item = (MatMut<'_>, &mut [f32])> + ExactSizeIterator {
        self.layers
            .iter_mut()
            .map(|layer| (layer.grad_weights.as_mut(), layer.grad_bias.as_mut_slice()))
    }

    /// Returns the global L2 norm of the gradients: the square root of the sum of the
    /// squares of every weight and bias gradient in every layer. The sum and the result are
    /// `f64`, which can represent the norm of any finite `f32` gradients, even above
    /// `f32::MAX`. The norm is infinite or NaN only when a gradient is.
    pub fn gradient_norm(&self) -> f64 {
        let sum_of_squares: f64 = self
            .layers
            .iter()
            .map(|layer| {
                sum_of_squares(layer.grad_weights.as_slice()) + sum_of_squares(&layer.grad_bias)
            })
            .sum();
        sum_of_squares.sqrt()
    }

    /// Scales every gradient by the same factor so that their global norm
    /// ([`gradient_norm`](Sequential::gradient_norm)) is at most `max_norm`, and returns
    /// the norm from before. Gradients whose norm is already at most `max_norm` stay as
    /// they are. Call it between [`compute_gradients`](Sequential::compute_gradients) and
    /// [`apply_gradients`](Sequential::apply_gradients).
    ///
    /// When the norm is infinite or NaN, which happens only when a gradient is, the
    /// gradients stay unchanged and that norm is returned, so that the caller can skip the
    /// update (scaling would turn every gradient into zero or NaN). The scaling is done in
    /// `f64`, so gradients near `f32::MAX` are scaled as accurately as small ones.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] naming `max_norm` when it is not finite or not
    /// positive; the gradients are then unchanged.
    pub fn clip_gradient_norm(&mut self, max_norm: f32) -> Result<f64, Error> {
        if !(max_norm.is_finite() && max_norm > 0.0) {
            return Err(Error::InvalidArgument {
                operand: "max_norm",
                reason: format!("{max_norm} must be finite and positive"),
            });
        }

        let norm = self.gradient_norm();
        let max_norm = f64::from(max_norm);
        if norm.is_finite() && norm > max_norm {
            let scale = max_norm / norm;
            for (grad_weights, grad_bias) in self.gradients_mut() {
                let grad_weights = grad_weights.into_mut_slice().unwrap_or_default();
                for g in grad_weights.iter_mut().chain(grad_bias) {
                    *g = (f64::from(*g) * scale) as f32;
                }
            }
        }
        Ok(norm)
    }

    /// Returns the predicted class of each row of `x`: the output with the largest value,
    /// or, for a network with a single output, 1 when it is at least 0.5 and 0 otherwise.
    ///
    /// # Errors
    ///
    /// The errors of [`forward`](Sequential::forward), and [`Error::InvalidValue`] naming
    /// `outputs` and the first row with an output that is not finite (NaN or infinite
    /// parameters), where the largest output would not name a class.
    pub fn predict(&mut self, x: MatRef<'_>) -> Result<Vec<usize>, Error> {
        self.check_input(x)?;
        let mut classes = Vec::with_capacity(x.rows());
        let chunk_rows = self.reserve_chunks(x.rows());
        let mut start = 0;
        while start < x.rows() {
            let rows = chunk_rows.min(x.rows() - start);
            let chunk = x.submatrix(start, 0, rows, x.cols())?;
            self.forward_rows(chunk, false)?;
            let outputs = self.workspace.output(self.layers.len() - 1, rows);
            check_values(outputs, "outputs", Range::Finite).map_err(|e| shift_row(e, start))?;
            classes.extend((0..rows).map(|i| row_class(outputs, i)));
            start += rows;
        }
        Ok(classes)
    }

    /// Returns the mean loss and the accuracy of the network on `x` against `targets`,
    /// without training.
    ///
    /// The accuracy is the fraction of rows whose predicted class, as
    /// [`predict`](Sequential::predict) returns it, equals the target class. The target class
    /// is the class index or, for a target matrix, the column of its largest value. A single
    /// column counts as class 1 when its value is at least 0.5. The batch is processed in
    /// chunks no larger than the buffers, so a large test set does not grow them.
    ///
    /// # Errors
    ///
    /// The input, target and `logits` errors of [`train_step`](Sequential::train_step).
    pub fn evaluate(&mut self, x: MatRef<'_>, targets: Targets<'_>) -> Result<(f32, f32), Error> {
        let m = x.rows();
        check_not_empty(x)?;
        self.check_input(x)?;
        check_targets(self.loss, targets, m, self.n_out())?;

        let chunk_rows = self.reserve_chunks(m);
        let output_activation = self.loss.output_activation();
        let (mut total_loss, mut correct) = (0.0f64, 0usize);
        let mut start = 0;
        while start < m {
            let rows = chunk_rows.min(m - start);
            let chunk = x.submatrix(start, 0, rows, x.cols())?;
            let chunk_targets = target_rows(targets, start, rows);

            self.forward_rows(chunk, true)?;
            let (logits, delta) = self.workspace.logits_and_delta(rows);
            let loss = loss_and_delta(self.loss, logits, chunk_targets, delta)
                .map_err(|err| shift_row(err, start))?;
            total_loss += f64::from(loss) * rows as f64;

            let mut outputs = self.workspace.last_output_mut(rows);
            output_activation.forward_in_place(outputs.rb_mut())?;
            let outputs = outputs.as_ref();
            correct += (0..rows)
                .filter(|&i| row_class(outputs, i) == target_class(chunk_targets, i))
                .count();
            start += rows;
        }
        Ok(((total_loss / m as f64) as f32, correct as f32 / m as f32))
    }

    /// Sizes the buffers for working through `m` rows in chunks and returns the chunk size:
    /// the current buffer size, or up to [`DEFAULT_CHUNK_ROWS`] before the first batch.
    fn reserve_chunks(&mut self, m: usize) -> usize {
        let rows = match self.workspace.rows() {
            0 => m.clamp(1, DEFAULT_CHUNK_ROWS),
            rows => rows,
        };
        self.workspace.reserve(&self.layers, rows);
        rows
    }

    /// Runs the forward pass on `x`, whose rows fit the buffers, and leaves each layer's
    /// output in them. With `logits`, the last layer's output is `Z`, before its activation.
    fn forward_rows(&mut self, x: MatRef<'_>, logits: bool) -> Result<(), Error> {
        let m = x.rows();
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            let activation = if logits && l == last {
                Activation::Identity
            } else {
                layer.activation
            };
            let (input, output) = self.workspace.input_and_output(x, l, m);
            dense_forward(
                input,
                layer.weights.as_ref(),
                &layer.bias,
                activation,
                output,
                self.parallelism,
            )?;
        }
        Ok(())
    }

    /// Propagates the output layer's error, already in the buffers, back through every
    /// layer, writing each layer's parameter gradients, or adding to them in
    /// [`GradMode::Accumulate`].
    ///
    /// With more than one thread, the whole pass runs on a rayon worker, so that the
    /// kernels' parallel regions start from inside the pool (see the forward pass in
    /// [`forward_loss`](Self::forward_loss)).
    fn backward(&mut self, x: MatRef<'_>, mode: GradMode) -> Result<(), Error> {
        on_pool(self.parallelism.max_threads(), || {
            self.backward_here(x, mode)
        })
    }

    /// Runs [`backward`](Self::backward) on the calling thread.
    fn backward_here(&mut self, x: MatRef<'_>, mode: GradMode) -> Result<(), Error> {
        let m = x.rows();
        for l in (0..self.layers.len()).rev() {
            let input_activation = match l {
                0 => Activation::Identity,
                _ => self.layers[l - 1].activation,
            };
            let (delta, input, input_delta) = self.workspace.backward_operands(x, l, m);
            let layer = &mut self.layers[l];
            dense_backward(
                delta,
                input,
                layer.weights.as_ref(),
                input_activation,
                DenseGrads {
                    weights: layer.grad_weights.as_mut(),
                    bias: &mut layer.grad_bias,
                    mode,
                },
                input_delta,
                self.parallelism,
            )?;
        }
        Ok(())
    }

    /// Checks the width of `x` and that every value is finite.
    /// Checks the batch and its targets, runs the forward pass that keeps every layer's
    /// output, and writes the loss gradient for the backward pass. Returns the mean loss.
    fn forward_loss(&mut self, x: MatRef<'_>, targets: Targets<'_>) -> Result<f32, Error> {
        let m = x.rows();
        check_not_empty(x)?;
        self.check_input(x)?;
        check_targets(self.loss, targets, m, self.n_out())?;

        // From a thread outside the rayon pool, each parallel region of each layer would
        // hand its tasks over and sleep, so one hand-over serves the whole pass. On two
        // threads, a training step of the 784-256-128-10 network at batch 128 called from
        // the main thread went from 194 to 209 GFLOP/s. Batches 32 and 1024 timed level.
        self.workspace.reserve(&self.layers, m);
        on_pool(self.parallelism.max_threads(), || {
            self.forward_rows(x, true)
        })?;
        let (logits, delta) = self.workspace.logits_and_delta(m);
        let loss = loss_and_delta(self.loss, logits, targets, delta)?;
        if !loss.is_finite() {
            return Err(self.overflowing_loss(m, targets));
        }
        Ok(loss)
    }

    /// Returns the error for a mean loss beyond the `f32` range, naming the first of the
    /// `m` rows in the buffers whose loss alone is. Finite outputs far from their targets
    /// (a mean squared error of outputs near 1e20) get there, and a step would write
    /// infinite or NaN parameters.
    fn overflowing_loss(&mut self, m: usize, targets: Targets<'_>) -> Error {
        let (logits, _) = self.workspace.logits_and_delta(m);
        let mut row_delta = Matrix::zeros(1, logits.cols());
        let mut row_loss = |i: usize| {
            let row = logits
                .submatrix(i, 0, 1, logits.cols())
                .expect("the row lies inside the outputs");
            let loss = loss_and_delta(
                self.loss,
                row,
                target_rows(targets, i, 1),
                row_delta.as_mut(),
            );
            loss.unwrap_or(f32::NAN)
        };
        // The mean of finite row losses is finite, so some row's loss is not.
        let row = (0..m).find(|&i| !row_loss(i).is_finite()).unwrap_or(0);
        Error::InvalidValue {
            operand: "loss",
            row,
            reason: "the loss of this row is beyond the f32 range; the outputs have \
                     diverged from the targets"
                .to_string(),
        }
    }

    /// Checks every parameter tensor against `optimizer` and starts its step. The updates
    /// that follow can then fail only with a custom optimiser whose update rejects a
    /// tensor that its check accepted.
    fn begin_update<O: Optimizer + ?Sized>(&self, optimizer: &mut O) -> Result<(), Error> {
        for (l, layer) in self.layers.iter().enumerate() {
            optimizer.check_tensor(2 * l, layer.weights.as_slice().len())?;
            optimizer.check_tensor(2 * l + 1, layer.bias.len())?;
        }
        optimizer.begin_step()
    }

    /// Updates every parameter tensor from its gradient, tensor `2·l` the weights of
    /// layer `l` and `2·l + 1` its bias.
    fn update<O: Optimizer + ?Sized>(&mut self, optimizer: &mut O) -> Result<(), Error> {
        let par = self.parallelism;
        for (l, layer) in self.layers.iter_mut().enumerate() {
            optimizer.update_with(
                2 * l,
                layer.weights.as_mut_slice(),
                layer.grad_weights.as_slice(),
                par,
            )?;
            optimizer.update_with(2 * l + 1, &mut layer.bias, &layer.grad_bias, par)?;
        }
        Ok(())
    }

    fn check_input(&self, x: MatRef<'_>) -> Result<(), Error> {
        Error::check_shape("x", Shape::new(x.rows(), self.n_in()), x.shape())?;
        check_values(x, "x", Range::Finite)
    }
}

fn check_not_empty(x: MatRef<'_>) -> Result<(), Error> {
    if x.rows() == 0 {
        return Err(Error::InvalidArgument {
            operand: "x",
            reason: "the batch is empty; pass at least one row".to_string(),
        });
    }
    Ok(())
}

/// Adds `offset` to the row of an [`Error::InvalidValue`] about a chunk that starts at row
/// `offset` of the batch, so the error names the row of the batch.
fn shift_row(err: Error, offset: usize) -> Error {
    match err {
        Error::InvalidValue {
            operand,
            row,
            reason,
        } => Error::InvalidValue {
            operand,
            row: row + offset,
            reason,
        },
        other => other,
    }
}

/// Returns the sum of the squares of `values` in `f64`. It keeps independent partial sums,
/// which the compiler can hold in vector registers.
fn sum_of_squares(values: &[f32]) -> f64 {
    /// The number of partial sums: enough to hide the latency of an add.
    const PARTIAL_SUMS: usize = 8;

    let mut partial = [0.0f64; PARTIAL_SUMS];
    let mut chunks = values.chunks_exact(PARTIAL_SUMS);
    for chunk in &mut chunks {
        for (sum, &g) in partial.iter_mut().zip(chunk) {
            *sum += f64::from(g) * f64::from(g);
        }
    }
    let tail: f64 = chunks
        .remainder()
        .iter()
        .map(|&g| f64::from(g) * f64::from(g))
        .sum();
    partial.iter().sum::<f64>() + tail
}
