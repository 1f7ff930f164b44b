//! Numerically stable losses and their gradients with respect to the logits.
