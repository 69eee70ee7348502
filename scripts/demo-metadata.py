#!/usr/bin/env python3
"""Records how the bundled demo model was made, inside the checkpoint and beside it.

Usage: demo-metadata.py CHECKPOINT NOTE_MD COMMAND IMAGES_DIR LICENCE_FILE...

Adds three string entries to the safetensors header's `__metadata__` (the tensors and their
offsets are untouched; only the header grows, padded to 8 bytes as the format asks):
  nepa_demo_command   the `nepa pretrain` command line that trained it
  nepa_demo_data      one line per training image under IMAGES_DIR: SHA-256, path
  nepa_demo_licences  each LICENCE_FILE, verbatim
and writes the same as markdown to NOTE_MD. Standard library only.
"""

import hashlib
import json
import struct
import sys
from pathlib import Path


def data_lines(images):
    lines = []
    for path in sorted(Path(images).rglob("*")):
        if path.is_file():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            lines.append(f"{digest}  {path.relative_to(images)}")
    return lines


def add_metadata(checkpoint, entries):
    raw = Path(checkpoint).read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + header_len])
    header.setdefault("__metadata__", {}).update(entries)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    Path(checkpoint).write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + header_len :])


def main():
    if len(sys.argv) < 6:
        sys.exit(__doc__)
    checkpoint, note, command, images = sys.argv[1:5]
    data = data_lines(images)
    if not data:
        sys.exit(f"demo-metadata: no images under {images}")
    licences = "\n\n".join(f"== {path} ==\n" + Path(path).read_text() for path in sys.argv[5:])
    add_metadata(
        checkpoint,
        {
            "nepa_demo_command": command,
            "nepa_demo_data": "\n".join(data),
            "nepa_demo_licences": licences,
        },
    )
    fence = "```"
    Path(note).write_text(
        "# The bundled demo model\n\n"
        "`static/nepa-demo.safetensors` was made by `scripts/make-demo-checkpoint.sh`, which ran\n\n"
        f"{fence}sh\n{command}\n{fence}\n\n"
        f"on random resized crops of these {len(data)} photos (SHA-256, file):\n\n"
        f"{fence}\n" + "\n".join(data) + f"\n{fence}\n\n"
        "Their licences, as `scripts/fetch-data.sh` wrote them:\n\n"
        f"{fence}text\n{licences.rstrip()}\n{fence}\n\n"
        "The same three records are in the checkpoint's safetensors metadata (`nepa_demo_command`,\n"
        "`nepa_demo_data`, `nepa_demo_licences`). What its features carry: docs/results/demo-model.md.\n"
    )


if __name__ == "__main__":
    main()
