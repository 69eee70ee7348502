"""Loads a folder written by `nepa export --hf DIR --probe PROBE` with the official NEPA
modeling code and compares its outputs with nepa's on the same input.

    python tests/reference/official_roundtrip.py --official /path/to/official/nepa \
        --model DIR --probe PROBE [--tol 1e-4]

--official is a local copy of the official repository (github.com/SihanXU/nepa): the script
imports `models.vit_nepa` from it. Needs torch, safetensors and transformers==4.56.2 (the
version the official code pins); not part of CI (tests/reference/README.md).

Checks, each printed with its maximum absolute difference:
- `from_pretrained(DIR)` of `architectures[0]` (ViTNepaForPreTraining or
  ViTNepaForImageClassification) loads every tensor: no missing, unexpected or mismatched key;
- `AutoImageProcessor.from_pretrained(DIR)` reads preprocessor_config.json and resizes to the
  model's image size;
- on PROBE's `pixel_values` (eval mode): the input embedding, the final hidden state, the NEPA
  loss, and a classifier's logits agree with nepa's within --tol.
Exits non-zero if any check fails.
"""

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official", required=True, type=Path)
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--probe", required=True, type=Path)
    parser.add_argument("--tol", type=float, default=1e-4)
    args = parser.parse_args()

    sys.path.insert(0, str(args.official.resolve()))
    from models.vit_nepa import (  # noqa: E402  (the official package, from --official)
        ViTNepaForImageClassification,
        ViTNepaForPreTraining,
    )
    from transformers import AutoImageProcessor

    torch.set_grad_enabled(False)
    config = json.loads((args.model / "config.json").read_text())
    architecture = config["architectures"][0]
    classes = {
        "ViTNepaForPreTraining": ViTNepaForPreTraining,
        "ViTNepaForImageClassification": ViTNepaForImageClassification,
    }
    model, info = classes[architecture].from_pretrained(
        args.model, output_loading_info=True, attn_implementation="eager"
    )
    model.eval()
    ok = True
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        if info.get(kind):
            print(f"FAIL {kind}: {info[kind]}")
            ok = False
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"{architecture}: {len(model.state_dict())} tensors, {n_params} parameters, "
        f"causal={model.config.is_causal}, loaded with no missing/unexpected key: {ok}"
    )

    # As the official run_nepa.py / run_image_classification.py read it.
    processor = AutoImageProcessor.from_pretrained(args.model, use_fast=True)
    size = (processor.size["height"], processor.size["width"])
    image_size = model.config.image_size
    want = tuple(image_size) if isinstance(image_size, (list, tuple)) else (image_size,) * 2
    print(f"preprocessor: resize to {size}, resample {processor.resample}, "
          f"mean {processor.image_mean}, std {processor.image_std}")
    if size != want:
        print(f"FAIL preprocessor size {size} != model image size {want}")
        ok = False

    probe = load_file(args.probe)
    pixels = probe["pixel_values"]
    out = model.vit_nepa(pixels)
    comparisons = [
        ("input_embedding", out.input_embedding, probe["input_embedding"]),
        ("last_hidden_state", out.last_hidden_state, probe["last_hidden_state"]),
    ]
    if architecture == "ViTNepaForPreTraining":
        loss = model(pixels).loss
        comparisons.append(("loss", loss.reshape(1), probe["loss"].reshape(1)))
    else:
        logits = model(pixels).logits
        comparisons.append(("logits", logits, probe["logits"]))
    for name, official, ours in comparisons:
        if official.shape != ours.shape:
            print(f"FAIL {name}: shape {tuple(official.shape)} vs nepa {tuple(ours.shape)}")
            ok = False
            continue
        diff = (official.float() - ours.float()).abs().max().item()
        scale = official.abs().max().item()
        verdict = "ok" if diff <= args.tol else "FAIL"
        print(f"{verdict} {name} {tuple(official.shape)}: max |official - nepa| = {diff:.3e} "
              f"(max |value| {scale:.3f})")
        ok = ok and diff <= args.tol
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
