#!/usr/bin/env python3
"""Plots for the bench scripts: a pinned matplotlib in bench/.venv, and one line chart.

The bench scripts run on the system Python (no third-party packages); only the
plotting runs in the virtual environment, which this module creates on first use
(`python3 -m venv bench/.venv` + `pip install` of the pinned versions below).

    from plot import line_chart          # bench/ is on sys.path for bench/*.py
    line_chart(
        "docs/bench/example.svg", "Get by id", "rows", "latency (ms)",
        {"SQLite p50": [(1000, 0.4), (100000, 0.5)], "SQLite p99": [(1000, 1.2), (100000, 1.3)]},
        logx=True,
    )

`series` maps a label to its points [(x, y), ...] (drawn in that order, a marker at
each point). Optional: `logy=True`; `hlines=[(y, "label")]` for targets (dashed);
`styles={"label": "--"}` for a line style per series. The SVG is reproducible (no
date, fixed ids), so a rerun with the same numbers leaves no diff.

`line_charts(path, title, charts, ncols=2)` draws several such charts side by side
in one file: `charts` is a list of dicts with line_chart's arguments (title, xlabel,
ylabel, series, and optionally logx, logy, hlines, styles).

Also runnable: `python3 bench/plot.py --setup` creates the venv and prints its python.
"""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, "bench", ".venv")
# matplotlib and what it pulls in, pinned (pip install of exactly these, no resolution).
PINNED = [
    "matplotlib==3.11.2",
    "contourpy==1.3.3",
    "cycler==0.12.1",
    "fonttools==4.69.1",
    "kiwisolver==1.5.1",
    "numpy==2.4.6",
    "packaging==26.4",
    "pillow==13.0.0",
    "pyparsing==3.3.3",
    "python-dateutil==4.0.0",
    "tzdata==2026.6",
]


def venv_python():
    """The venv's python, creating bench/.venv with the pinned packages if needed."""
    py = os.path.join(VENV, "bin", "python")
    marker = os.path.join(VENV, ".pinned")
    want = "\n".join(PINNED)
    if os.path.exists(py) and os.path.exists(marker) and open(marker).read() == want:
        return py
    if not os.path.exists(py):
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
    subprocess.run(
        [py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps", *PINNED],
        check=True,
    )
    with open(marker, "w") as f:
        f.write(want)
    return py


def _chart(title, xlabel, ylabel, series, logx=True, logy=False, hlines=(), styles=None):
    return {
        "title": title,
        "xlabel": xlabel,
        "ylabel": ylabel,
        "series": [[label, [list(p) for p in points]] for label, points in series.items()],
        "logx": logx,
        "logy": logy,
        "hlines": [list(h) for h in hlines],
        "styles": styles or {},
    }


def _render(path, spec):
    spec["path"] = os.path.abspath(path)
    os.makedirs(os.path.dirname(spec["path"]), exist_ok=True)
    subprocess.run([venv_python(), os.path.abspath(__file__), "--draw"], input=json.dumps(spec), text=True, check=True)


def line_chart(path, title, xlabel, ylabel, series, logx=True, logy=False, hlines=(), styles=None):
    """Writes a line chart (SVG if `path` ends in .svg, else PNG) of `series`."""
    _render(path, {"charts": [_chart(title, xlabel, ylabel, series, logx, logy, hlines, styles)], "ncols": 1})


def line_charts(path, title, charts, ncols=2):
    """Several line charts in one file, `ncols` to a row, under one `title`."""
    _render(path, {"title": title, "charts": [_chart(**c) for c in charts], "ncols": ncols})


def _draw(spec):
    """Runs inside the venv."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "trellis-bench"
    matplotlib.rcParams["svg.fonttype"] = "none"
    import matplotlib.pyplot as plt

    charts = spec["charts"]
    ncols = min(spec["ncols"], len(charts))
    nrows = (len(charts) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(8 * ncols, 4.5 * nrows), squeeze=False)
    for ax in axes.flat[len(charts):]:
        ax.set_visible(False)
    for ax, chart in zip(axes.flat, charts):
        _axes(ax, chart)
    if spec.get("title"):
        fig.suptitle(spec["title"])
    fig.tight_layout()
    fig.savefig(spec["path"], metadata={"Date": None} if spec["path"].endswith(".svg") else None)
    plt.close(fig)


def _axes(ax, spec):
    for label, points in spec["series"]:
        xs = [p[0] for p in points]
        ys = [p[1] for p in points]
        ax.plot(xs, ys, spec["styles"].get(label, "-"), marker="o", label=label)
    for y, label in spec["hlines"]:
        ax.axhline(y, linestyle="--", color="grey", linewidth=1)
        ax.annotate(label, (0.01, y), xycoords=("axes fraction", "data"), va="bottom", fontsize=8, color="grey")
    if spec["logx"]:
        ax.set_xscale("log")
    if spec["logy"]:
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)
    ax.set_title(spec["title"])
    ax.set_xlabel(spec["xlabel"])
    ax.set_ylabel(spec["ylabel"])
    ax.grid(True, which="both", linewidth=0.3)
    ax.legend(fontsize=8)


if __name__ == "__main__":
    if sys.argv[1:] == ["--draw"]:
        _draw(json.load(sys.stdin))
    elif sys.argv[1:] == ["--setup"]:
        print(venv_python())
    else:
        sys.exit(__doc__)
