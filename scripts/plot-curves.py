#!/usr/bin/env python3
"""Plots metrics.jsonl curves of several runs as one SVG (standard library only).

usage: [SMOOTH=N] scripts/plot-curves.py OUT.svg FIELD LABEL=RUN_DIR [LABEL=RUN_DIR ...]
(SMOOTH: running mean over N points, default 10; 1 for per-epoch values)
e.g.   scripts/plot-curves.py docs/ablations.svg loss "NEPA=runs/fmnist/pretrain" ...
"""
import json
import os
import sys

COLOURS = ["#1d4ed8", "#60a5fa", "#93c5fd", "#dc2626", "#f87171", "#fca5a5", "#16a34a", "#9333ea"]
W, H, PAD = 640, 360, 50


def main():
    out, field, runs = sys.argv[1], sys.argv[2], sys.argv[3:]
    series = []
    for spec in runs:
        label, path = spec.split("=", 1)
        points = []
        for line in open(f"{path}/metrics.jsonl"):
            v = json.loads(line)
            if v.get(field) is not None and "step" in v:
                points.append((v["step"], v[field]))
        series.append((label, points))
    max_step = max(p[0] for _, pts in series for p in pts)
    values = [p[1] for _, pts in series for p in pts]
    lo, hi = min(values), max(values)
    lo, hi = lo - 0.02 * (hi - lo), hi + 0.02 * (hi - lo)
    x = lambda s: PAD + (W - 2 * PAD) * s / max_step
    y = lambda v: H - PAD - (H - 2 * PAD) * (v - lo) / (hi - lo)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
             f'<rect width="{W}" height="{H}" fill="white"/>',
             f'<line x1="{PAD}" y1="{H-PAD}" x2="{W-PAD}" y2="{H-PAD}" stroke="black"/>',
             f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{H-PAD}" stroke="black"/>',
             f'<text x="{W/2}" y="{H-12}" text-anchor="middle">step</text>',
             f'<text x="14" y="{H/2}" transform="rotate(-90 14 {H/2})" text-anchor="middle">{field}</text>']
    for i in range(5):
        v = lo + (hi - lo) * i / 4
        parts.append(f'<text x="{PAD-6}" y="{y(v)+4}" text-anchor="end">{v:.2f}</text>')
        parts.append(f'<line x1="{PAD}" y1="{y(v)}" x2="{W-PAD}" y2="{y(v)}" stroke="#eee"/>')
    for i in range(5):
        s = max_step * i / 4
        parts.append(f'<text x="{x(s)}" y="{H-PAD+16}" text-anchor="middle">{int(s)}</text>')
    for k, (label, pts) in enumerate(series):
        # Smooth with a running mean (10 steps by default) so the trend is readable.
        n = max(1, int(os.environ.get("SMOOTH", "10")))
        smooth = []
        for j in range(len(pts)):
            window = [p[1] for p in pts[max(0, j - n + 1): j + 1]]
            smooth.append((pts[j][0], sum(window) / len(window)))
        path = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in smooth)
        colour = COLOURS[k % len(COLOURS)]
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{path}"/>')
        parts.append(f'<text x="{W-PAD-4}" y="{PAD+16*k+4}" text-anchor="end" fill="{colour}">{label}</text>')
    parts.append("</svg>")
    open(out, "w").write("\n".join(parts))


if __name__ == "__main__":
    main()
