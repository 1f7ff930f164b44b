"""Peer timings for benches/train.rs: the same training step written in numpy and as a
jax.jit function.

Measures, for one framework and one thread count:
  - one training step of a 784-256-128-10 network (ReLU, softmax cross-entropy from
    logits, SGD with momentum 0.9) at batch 32, 128 and 1024;
  - the backward pass of the 784->256 layer alone: dW = delta^T X, db = column sums of
    delta, delta_prev = (delta W) * relu'(X), at m = 32, 128, 256 and 1024;
  - one MNIST-sized epoch: 8,000 samples of the MNIST sample in data/, batch 128 (the last
    batch has 64), the same network, SGD with momentum 0.9 and learning rate 0.1.

Prints one JSON object per line. Thread counts are set by the caller: scripts/bench-peers.sh
pins the process to CPUs with taskset, and this script also limits numpy's BLAS pool with
threadpoolctl.
"""

import argparse
import gzip
import json
import os
import statistics
import struct
import sys
import time

import numpy as np

WIDTHS = (784, 256, 128, 10)
STEP_BATCHES = (32, 128, 1024)
BACKWARD_BATCHES = (32, 128, 256, 1024)
EPOCH_SAMPLES = 8000
EPOCH_BATCH = 128
EPOCH_LEARNING_RATE = 0.1
MOMENTUM = 0.9
# Learning rate of the timed steps: small, so that thousands of repeated steps on one
# batch stay finite.
STEP_LEARNING_RATE = 0.01
# Each timing is the median of ROUNDS rounds; a round repeats the call until it has run for
# at least ROUND_SECONDS.
ROUNDS = 7
ROUND_SECONDS = 0.25


def step_flops(batch):
    """Multiply-adds of a training step, counted as 2 flops each: the forward pass and, per
    layer, dW; delta_prev for every layer but the first."""
    pairs = list(zip(WIDTHS[:-1], WIDTHS[1:]))
    forward = sum(2 * batch * n_in * n_out for n_in, n_out in pairs)
    weight_grads = forward
    input_deltas = sum(2 * batch * n_in * n_out for n_in, n_out in pairs[1:])
    return forward + weight_grads + input_deltas


def time_call(call):
    """Returns the median seconds per call of `call`, which must block until done."""
    call()
    repeats = 1
    while True:
        start = time.perf_counter()
        for _ in range(repeats):
            call()
        elapsed = time.perf_counter() - start
        if elapsed >= ROUND_SECONDS:
            break
        repeats *= 2
    rounds = [elapsed / repeats]
    for _ in range(ROUNDS - 1):
        start = time.perf_counter()
        for _ in range(repeats):
            call()
        rounds.append((time.perf_counter() - start) / repeats)
    return statistics.median(rounds)


def he_uniform(rng, n_in, n_out):
    bound = np.sqrt(6.0 / n_in)
    return rng.uniform(-bound, bound, size=(n_out, n_in)).astype(np.float32)


def init_params(seed):
    rng = np.random.default_rng(seed)
    params = []
    for n_in, n_out in zip(WIDTHS[:-1], WIDTHS[1:]):
        params.append(he_uniform(rng, n_in, n_out))
        params.append(np.zeros(n_out, dtype=np.float32))
    return params


def random_batch(seed, batch):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, size=(batch, WIDTHS[0])).astype(np.float32)
    y = rng.integers(0, WIDTHS[-1], size=batch).astype(np.int32)
    return x, y


def read_idx(path):
    """Reads a gzip-compressed IDX file of uint8 elements."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = struct.unpack(">" + "I" * dims, data[4 : 4 + 4 * dims])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def mnist_epoch_data(data_dir):
    """Returns the first 8,000 samples of the MNIST sample after a fixed shuffle, because
    the files are sorted by label, with pixels scaled to [0, 1]."""
    images = read_idx(os.path.join(data_dir, "images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(data_dir, "labels-idx1-ubyte.gz"))
    order = np.random.default_rng(0).permutation(len(labels))[:EPOCH_SAMPLES]
    x = images.reshape(len(labels), -1)[order].astype(np.float32) / 255.0
    return np.ascontiguousarray(x), labels[order].astype(np.int32)


def epoch_batches(x, y):
    return [
        (x[start : start + EPOCH_BATCH], y[start : start + EPOCH_BATCH])
        for start in range(0, len(y), EPOCH_BATCH)
    ]


# ---------------------------------------------------------------------------------------
# numpy


class NumpyPeer:
    name = "numpy"

    @staticmethod
    def step(params, velocity, x, y, learning_rate):
        """One SGD-with-momentum step in place; returns the mean loss."""
        w1, b1, w2, b2, w3, b3 = params
        m = x.shape[0]
        a1 = np.maximum(x @ w1.T + b1, 0.0)
        a2 = np.maximum(a1 @ w2.T + b2, 0.0)
        z3 = a2 @ w3.T + b3

        z_max = z3.max(axis=1, keepdims=True)
        e = np.exp(z3 - z_max)
        total = e.sum(axis=1, keepdims=True)
        rows = np.arange(m)
        loss = float(np.mean(np.log(total[:, 0]) + z_max[:, 0] - z3[rows, y]))

        d3 = e / total
        d3[rows, y] -= 1.0
        d3 *= np.float32(1.0 / m)
        grads = [None] * 6
        grads[4] = d3.T @ a2
        grads[5] = d3.sum(axis=0)
        d2 = (d3 @ w3) * (a2 > 0)
        grads[2] = d2.T @ a1
        grads[3] = d2.sum(axis=0)
        d1 = (d2 @ w2) * (a1 > 0)
        grads[0] = d1.T @ x
        grads[1] = d1.sum(axis=0)

        for p, v, g in zip(params, velocity, grads):
            v *= MOMENTUM
            v += g
            p -= np.float32(learning_rate) * v
        return loss

    def time_step(self, batch):
        params = init_params(1)
        velocity = [np.zeros_like(p) for p in params]
        x, y = random_batch(batch, batch)
        return time_call(lambda: self.step(params, velocity, x, y, STEP_LEARNING_RATE))

    @staticmethod
    def backward(delta, x, w):
        grad_w = delta.T @ x
        grad_b = delta.sum(axis=0)
        delta_prev = (delta @ w) * (x > 0)
        return grad_w, grad_b, delta_prev

    def time_backward(self, m):
        rng = np.random.default_rng(m)
        n_in, n_out = WIDTHS[0], WIDTHS[1]
        x = np.maximum(rng.standard_normal((m, n_in)), 0.0).astype(np.float32)
        w = rng.standard_normal((n_out, n_in)).astype(np.float32)
        delta = rng.standard_normal((m, n_out)).astype(np.float32)
        return time_call(lambda: self.backward(delta, x, w))

    def run_epoch(self, params, velocity, batches):
        loss = 0.0
        for x, y in batches:
            loss = self.step(params, velocity, x, y, EPOCH_LEARNING_RATE)
        return loss

    def time_epoch(self, data_dir):
        batches = epoch_batches(*mnist_epoch_data(data_dir))
        params = init_params(2)
        velocity = [np.zeros_like(p) for p in params]
        seconds, losses = [], []
        for _ in range(3):
            start = time.perf_counter()
            losses.append(self.run_epoch(params, velocity, batches))
            seconds.append(time.perf_counter() - start)
        return statistics.median(seconds), losses


# ---------------------------------------------------------------------------------------
# JAX


class JaxPeer:
    name = "jax"

    def __init__(self):
        import jax
        import jax.numpy as jnp

        self.jax, self.jnp = jax, jnp

        def loss_fn(params, x, y):
            w1, b1, w2, b2, w3, b3 = params
            a1 = jax.nn.relu(x @ w1.T + b1)
            a2 = jax.nn.relu(a1 @ w2.T + b2)
            z3 = a2 @ w3.T + b3
            log_p = jax.nn.log_softmax(z3)
            return -jnp.mean(jnp.take_along_axis(log_p, y[:, None], axis=1))

        def step(params, velocity, x, y, learning_rate):
            loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
            velocity = [MOMENTUM * v + g for v, g in zip(velocity, grads)]
            params = [p - learning_rate * v for p, v in zip(params, velocity)]
            return params, velocity, loss

        def backward(delta, x, w):
            return delta.T @ x, delta.sum(axis=0), (delta @ w) * (x > 0)

        self.step = jax.jit(step, donate_argnums=(0, 1))
        self.backward = jax.jit(backward)

    def time_step(self, batch):
        jnp = self.jnp
        state = {
            "params": [jnp.asarray(p) for p in init_params(1)],
        }
        state["velocity"] = [jnp.zeros_like(p) for p in state["params"]]
        x, y = (jnp.asarray(a) for a in random_batch(batch, batch))

        def call():
            params, velocity, loss = self.step(
                state["params"], state["velocity"], x, y, STEP_LEARNING_RATE
            )
            loss.block_until_ready()
            state["params"], state["velocity"] = params, velocity

        return time_call(call)

    def time_backward(self, m):
        jnp = self.jnp
        rng = np.random.default_rng(m)
        n_in, n_out = WIDTHS[0], WIDTHS[1]
        x = jnp.asarray(np.maximum(rng.standard_normal((m, n_in)), 0.0).astype(np.float32))
        w = jnp.asarray(rng.standard_normal((n_out, n_in)).astype(np.float32))
        delta = jnp.asarray(rng.standard_normal((m, n_out)).astype(np.float32))
        return time_call(lambda: self.jax.block_until_ready(self.backward(delta, x, w)))

    def time_epoch(self, data_dir):
        jnp = self.jnp
        batches = [
            (jnp.asarray(x), jnp.asarray(y)) for x, y in epoch_batches(*mnist_epoch_data(data_dir))
        ]
        params = [jnp.asarray(p) for p in init_params(2)]
        velocity = [jnp.zeros_like(p) for p in params]
        seconds, losses = [], []
        # The first epoch compiles the step for the full and the last batch size; it is
        # timed too but not counted.
        for epoch in range(4):
            start = time.perf_counter()
            loss = None
            for x, y in batches:
                params, velocity, loss = self.step(params, velocity, x, y, EPOCH_LEARNING_RATE)
            loss = float(loss)
            elapsed = time.perf_counter() - start
            if epoch > 0:
                seconds.append(elapsed)
                losses.append(loss)
        return statistics.median(seconds), losses


# ---------------------------------------------------------------------------------------


def emit(record):
    print(json.dumps(record), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--framework", choices=("numpy", "jax"), required=True)
    parser.add_argument("--threads", type=int, required=True, help="threads for the BLAS pool")
    parser.add_argument(
        "--data", default="data/mnist-sample", help="folder of the MNIST sample IDX files"
    )
    args = parser.parse_args()

    common = {"framework": args.framework, "threads": args.threads}
    if args.framework == "numpy":
        from threadpoolctl import threadpool_info, threadpool_limits

        threadpool_limits(args.threads)
        peer = NumpyPeer()
        for pool in threadpool_info():
            emit(dict(common, bench="blas", **{k: pool.get(k) for k in (
                "internal_api", "version", "architecture", "num_threads", "filepath")}))
        emit(dict(common, bench="env", OPENBLAS_CORETYPE=os.environ.get("OPENBLAS_CORETYPE"),
                  OPENBLAS_L2_SIZE=os.environ.get("OPENBLAS_L2_SIZE")))
    else:
        peer = JaxPeer()
        emit(dict(common, bench="env", jax=peer.jax.__version__,
                  devices=[str(d) for d in peer.jax.devices()]))

    for batch in STEP_BATCHES:
        seconds = peer.time_step(batch)
        emit(dict(common, bench="train_step", batch=batch, ms=seconds * 1e3,
                  samples_per_s=batch / seconds, gflops=step_flops(batch) / seconds / 1e9))
    for m in BACKWARD_BATCHES:
        seconds = peer.time_backward(m)
        flops = 4 * m * WIDTHS[0] * WIDTHS[1]
        emit(dict(common, bench="dense_backward_784x256", m=m, ms=seconds * 1e3,
                  gflops=flops / seconds / 1e9))
    seconds, losses = peer.time_epoch(args.data)
    emit(dict(common, bench="epoch", samples=EPOCH_SAMPLES, batch=EPOCH_BATCH, seconds=seconds,
              last_batch_losses=losses))
    return 0


if __name__ == "__main__":
    sys.exit(main())
