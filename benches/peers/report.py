"""Prints the side-by-side table of scripts/bench-peers.sh: criterion's results for
densegrad next to the numpy and JAX timings that train_peers.py wrote as JSON lines.

Usage: report.py CRITERION_DIR PEERS_JSONL
"""

import glob
import json
import os
import sys

WIDTHS = "784-256-128-10"


def criterion_means(criterion_dir):
    """Maps each benchmark's full ID to its mean time in milliseconds."""
    means = {}
    pattern = os.path.join(criterion_dir, "**", "new", "benchmark.json")
    for path in glob.glob(pattern, recursive=True):
        with open(path) as f:
            full_id = json.load(f)["full_id"]
        with open(os.path.join(os.path.dirname(path), "estimates.json")) as f:
            means[full_id] = json.load(f)["mean"]["point_estimate"] / 1e6
    return means


def peer_records(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def cell(value, digits=3):
    return "—" if value is None else f"{value:.{digits}f}"


def ratio(numerator, denominator):
    if numerator is None or denominator is None:
        return "—"
    return f"{numerator / denominator:.2f}×"


def main():
    criterion_dir, peers_path = sys.argv[1], sys.argv[2]
    means = criterion_means(criterion_dir)
    records = peer_records(peers_path)

    def peer(bench, framework, threads, **keys):
        for r in records:
            if (r["bench"], r["framework"], r["threads"]) == (bench, framework, threads) and all(
                r.get(k) == v for k, v in keys.items()
            ):
                return r
        return None

    print("## BLAS and JAX used by the peers\n")
    for r in records:
        if r["bench"] in ("blas", "env"):
            fields = {k: v for k, v in r.items() if k not in ("bench", "framework")}
            print(f"- {r['framework']} {r['bench']}: {json.dumps(fields)}")

    print(f"\n## Training step, {WIDTHS}, ReLU, softmax cross-entropy, SGD with momentum\n")
    print("ms per step (lower is better), samples/s in brackets; the last column is JAX ms / densegrad ms, above 1 when densegrad is faster\n")
    print("| batch | threads | densegrad | numpy | JAX (jit) | JAX / densegrad |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for batch in (32, 128, 1024):
        for threads in (1, 2):
            ours = means.get(f"train_step/{WIDTHS}/b{batch}/densegrad/{threads}t")
            numpy = peer("train_step", "numpy", threads, batch=batch)
            jax = peer("train_step", "jax", threads, batch=batch)

            def with_rate(ms):
                if ms is None:
                    return "—"
                return f"{ms:.3f} ({batch / ms * 1e3:,.0f})"

            numpy_ms = numpy and numpy["ms"]
            jax_ms = jax and jax["ms"]
            print(
                f"| {batch} | {threads} | {with_rate(ours)} | {with_rate(numpy_ms)} | "
                f"{with_rate(jax_ms)} | {ratio(jax_ms, ours)} |"
            )

    print("\n## Backward pass of the 784→256 layer (dW, db, δ_prev with the ReLU mask)\n")
    print("ms per call; GFLOP/s count 4·m·784·256\n")
    print("| m | threads | densegrad | numpy | JAX (jit) |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for m in (32, 128, 256, 1024):
        for threads in (1, 2):
            ours = means.get(f"dense_backward/784x256/m{m}/densegrad/{threads}t")
            row = [cell(ours)]
            for framework in ("numpy", "jax"):
                r = peer("dense_backward_784x256", framework, threads, m=m)
                row.append("—" if r is None else f"{r['ms']:.3f} ({r['gflops']:.0f} GFLOP/s)")
            print(f"| {m} | {threads} | " + " | ".join(row) + " |")

    print("\n## One epoch: 8,000 MNIST samples, batch 128, SGD momentum 0.9, lr 0.1\n")
    print("| threads | numpy (s) | JAX (s) | loss of the last batch, numpy / JAX |")
    print("| ---: | ---: | ---: | --- |")
    for threads in (1, 2):
        numpy = peer("epoch", "numpy", threads)
        jax = peer("epoch", "jax", threads)
        losses = " / ".join(
            "—" if r is None else f"{r['last_batch_losses'][-1]:.3f}" for r in (numpy, jax)
        )
        print(
            f"| {threads} | {cell(numpy and numpy['seconds'])} | "
            f"{cell(jax and jax['seconds'])} | {losses} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
