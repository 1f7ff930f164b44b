#!/usr/bin/env bash
# Times one training step of a 784-256-128-10 network in densegrad (benches/train.rs),
# numpy and JAX in one go, on one and two threads, and prints a side-by-side table. The
# Python peers also time the 784->256 backward pass and one MNIST-sized epoch.
#
# Environment:
#   VENV          virtual environment to create or reuse (default target/peers-venv)
#   PYTHON        interpreter that creates it (default python3)
#   SKIP_RUST=1   reuse the criterion results already in target/criterion
#   CRITERION_ARGS  extra arguments for criterion (default: none)
#
# Each thread count runs under taskset on that many CPUs, so JAX's and OpenBLAS's pools
# see the same cores as the Rust bench's rayon pool.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${VENV:-target/peers-venv}
python=${PYTHON:-python3}
results=target/peers-results.jsonl

step() { printf '\n==> %s\n' "$*" >&2; }

step "machine"
uptime >&2
nproc >&2

step "virtual environment ${venv}"
if [[ ! -x "${venv}/bin/python" ]]; then
    "${python}" -m venv "${venv}"
fi
"${venv}/bin/pip" install --quiet -r benches/peers/requirements.txt

if [[ "${SKIP_RUST:-0}" != 1 ]]; then
    step "cargo bench --bench train"
    # shellcheck disable=SC2086 # CRITERION_ARGS is a list of words.
    cargo bench --bench train -- ${CRITERION_ARGS:-} >&2
fi

: >"${results}"
for threads in 1 2; do
    cpus=$((threads - 1))
    cpus="0-${cpus}"

    step "numpy, ${threads} thread(s), CPUs ${cpus}"
    # These two variables tune OpenBLAS builds older than numpy's and halve a current
    # numpy's speed, so the numpy run alone goes without them.
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
        taskset -c "${cpus}" "${venv}/bin/python" benches/peers/train_peers.py \
        --framework numpy --threads "${threads}" | tee -a "${results}" >&2

    step "JAX, ${threads} thread(s), CPUs ${cpus}"
    taskset -c "${cpus}" "${venv}/bin/python" benches/peers/train_peers.py \
        --framework jax --threads "${threads}" | tee -a "${results}" >&2
done

step "report"
"${venv}/bin/python" benches/peers/report.py target/criterion "${results}"
