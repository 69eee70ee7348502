#!/usr/bin/env python3
"""Markdown table of run reports (docs/run-report.md, `nepa-run-report/1`), one row per report.

    python3 scripts/bench-table.py [--title T] [--gpu LINE] [--config LINE] [--note LINE]... REPORT.json...

The row name is the file name without `.json`, dashes as spaces (`nepa-cuda-bf16.json` is the
row "nepa cuda bf16"). A report that does not exist or does not parse is a "failed" row; the
reason is read from `<name>.failed` beside it when that file exists (scripts/bench-gpu.sh writes
it). Every field may be missing or null and is then printed as "—".

"× PyTorch" is the throughput ratio to the PyTorch row of the same precision class (bf16 against
bf16, f32 against f32; the first such row when there are several). Standard library only: the
table must be buildable where torch is not installed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

DASH = "—"
COLUMNS = ["row", "tool", "backend", "precision/dtype", "attention", "train img/s", "infer img/s",
           "train × PyTorch", "infer × PyTorch", "train TFLOP/s", "infer TFLOP/s", "peak memory (GiB)"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("reports", nargs="+", metavar="REPORT.json")
    p.add_argument("--title", default="NEPA throughput")
    p.add_argument("--gpu", help="the GPU line (e.g. nvidia-smi's name, memory, driver)")
    p.add_argument("--config", help="the model and run config, as one line")
    p.add_argument("--note", action="append", default=[], help="a line under the table (repeatable)")
    return p.parse_args(argv)


def get(report: dict | None, path: str):
    """`report[a][b]…` for the dotted path, or None where any step is missing or null."""
    value = report
    for key in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def load(path: str) -> tuple[dict | None, str | None]:
    """(report, None), or (None, why the row failed)."""
    stem = path[:-5] if path.endswith(".json") else path
    try:
        with open(path) as f:
            report = json.load(f)
        if not isinstance(report, dict):
            return None, "not a JSON object"
        return report, None
    except (OSError, ValueError) as e:
        reason = None
        if os.path.exists(stem + ".failed"):
            with open(stem + ".failed") as f:
                reason = f.read().strip()
        return None, reason or f"no report: {e.__class__.__name__}"


def precision_of(report: dict) -> str:
    """The report's `dtype` (or `precision`) as written; the schema's default is float32."""
    return str(report.get("dtype") or report.get("precision") or "float32")


def precision_class(text: str) -> str:
    """bf16 / f16 / f32 from any spelling: float32, bfloat16-autocast, bfloat16-mixed, f16, …"""
    t = text.lower()
    if "bf16" in t or "bfloat16" in t:
        return "bf16"
    if "f16" in t or "float16" in t or "half" in t:
        return "f16"
    return "f32"


def is_pytorch(report: dict) -> bool:
    return report.get("tool") == "torch-reference" or str(report.get("backend", "")).startswith("torch")


def number(value, fmt: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return DASH
    return format(value, fmt)


def ratio(value, reference) -> str:
    ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (value, reference))
    return f"{value / reference:.2f}" if ok and reference > 0 else DASH


def memory(report: dict) -> str:
    peak = report.get("peak_memory_bytes")
    if not isinstance(peak, (int, float)) or isinstance(peak, bool):
        return DASH
    kind = report.get("peak_memory_kind")
    return f"{peak / 2**30:.2f}" + (f" ({kind})" if kind else "")


def row_cells(name: str, report: dict, references: dict) -> list[str]:
    reference = references.get(precision_class(precision_of(report)))
    own = reference is report
    cells = [
        name,
        str(report.get("tool") or DASH),
        str(report.get("backend") or DASH),
        precision_of(report),
        str(report.get("attention") or DASH),
        number(get(report, "train.images_per_sec"), ".1f"),
        number(get(report, "inference.images_per_sec"), ".1f"),
    ]
    for part in ("train", "inference"):
        if own:
            cells.append("ref")
        else:
            cells.append(ratio(get(report, f"{part}.images_per_sec"), get(reference, f"{part}.images_per_sec")))
    cells += [number(get(report, "train.tflops"), ".3g"), number(get(report, "inference.tflops"), ".3g"),
              memory(report)]
    return cells


def table(args) -> str:
    rows = [(os.path.basename(p)[:-5 if p.endswith(".json") else None].replace("-", " "), *load(p))
            for p in args.reports]
    references = {}
    for _, report, _ in rows:
        if report is not None and is_pytorch(report):
            references.setdefault(precision_class(precision_of(report)), report)
    lines = [f"## {args.title}", ""]
    if args.gpu:
        lines.append(f"GPU: {args.gpu}  ")
    adapters = sorted({str(r.get("adapter")) for _, r, _ in rows if r is not None and r.get("adapter")})
    if adapters:
        lines.append("adapters: " + "; ".join(adapters) + "  ")
    if args.config:
        lines.append(f"config: {args.config}  ")
    lines += ["", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    failures = []
    for name, report, why in rows:
        if report is None:
            cells = [name] + ["failed"] + [DASH] * (len(COLUMNS) - 2)
            failures.append(f"{name}: failed ({why})")
        else:
            cells = row_cells(name, report, references)
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    notes = failures + args.note
    if not references:
        notes.append("no PyTorch row: the × PyTorch columns are empty")
    if notes:
        lines.append("")
        lines += [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def main(argv=None):
    sys.stdout.write(table(parse_args(argv)))


if __name__ == "__main__":
    main()
