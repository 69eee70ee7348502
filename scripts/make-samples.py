#!/usr/bin/env python3
"""Writes the web app's bundled fine-tuning sample: 16 Fashion-MNIST test images (MIT licence)
for each of four visually distinct classes, as 28×28 grayscale PNGs, plus manifest.json.

Needs only the Python standard library and data/fashion-mnist (scripts/fetch-data.sh).
Usage: scripts/make-samples.py [data/fashion-mnist] [static/samples/fashion-mnist]
"""
import json
import struct
import sys
import zlib
from pathlib import Path

CLASSES = {0: "tshirt", 1: "trouser", 7: "sneaker", 8: "bag"}
PER_CLASS = 16
MIT = """Fashion-MNIST sample (first 16 test images of classes 0, 1, 7 and 8)
https://github.com/zalandoresearch/fashion-mnist

The MIT License (MIT)

Copyright (c) 2017 Zalando SE, https://tech.zalando.com

Permission is hereby granted, free of charge, to any person obtaining a copy of this software
and associated documentation files (the "Software"), to deal in the Software without
restriction, including without limitation the rights to use, copy, modify, merge, publish,
distribute, sublicense, and/or sell copies of the Software, and to permit persons to whom the
Software is furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING
BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,
DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
"""


def read_idx(path):
    data = Path(path).read_bytes()
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return dims, data[4 + 4 * ndim :]


def png_gray(width, height, pixels):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = b"".join(b"\x00" + pixels[y * width : (y + 1) * width] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")


def main():
    src = Path(sys.argv[1] if len(sys.argv) > 1 else "data/fashion-mnist")
    out = Path(sys.argv[2] if len(sys.argv) > 2 else "static/samples/fashion-mnist")
    (n, h, w), images = read_idx(src / "t10k-images-idx3-ubyte")
    _, labels = read_idx(src / "t10k-labels-idx1-ubyte")
    manifest = {name: [] for name in sorted(CLASSES.values())}
    for i in range(n):
        name = CLASSES.get(labels[i])
        if name is None or len(manifest[name]) >= PER_CLASS:
            continue
        file = f"{name}/{i:05d}.png"
        (out / name).mkdir(parents=True, exist_ok=True)
        (out / file).write_bytes(png_gray(w, h, images[i * h * w : (i + 1) * h * w]))
        manifest[name].append(file)
    (out / "manifest.json").write_text(json.dumps({
        "source": "Fashion-MNIST test set (Zalando Research, MIT licence), first 16 images of each class",
        "classes": manifest,
    }, indent=1) + "\n")
    (out / "LICENSE.txt").write_text(MIT)


if __name__ == "__main__":
    main()
