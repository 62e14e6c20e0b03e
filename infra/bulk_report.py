"""`make compare`'s report: per output, the distribution of the two versions' differences (a table, and a chart of
their histograms), and the users whose answers diverge most."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from carryover.core.compare import BINS, Comparison
from carryover.manifest import Manifest

QUANTILES = (0.5, 0.9, 0.99)


def comparison_report(found: Comparison, old: Manifest, new: Manifest, out: Path) -> tuple[Path, Path]:
    """Writes `report.md` and `differences.png` into `out`; returns both paths."""
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# {old.name}: {old.version} against {new.version}",
        "",
        f"{found.users:,} users ({found.timesteps:,} timesteps) compared, each version run from zero over all of the "
        f"user's logged rows; {found.skipped:,} users left out (their log does not reach back to the start of their "
        "stream).",
        "",
        "| output | timesteps | mean | p50 | p90 | p99 | largest |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, spread in found.outputs.items():
        mean = spread.sum / spread.total if spread.total else 0.0
        quantiles = " | ".join(f"≤ {spread.quantile(q):.2e}" for q in QUANTILES)
        lines.append(f"| {name} | {spread.total:,} | {mean:.2e} | {quantiles} | {spread.largest:.2e} |")
    lines += [
        "",
        "Absolute differences, per timestep; quantiles are the upper edge of their histogram bin.",
        "",
        "## Users who diverge most",
        "",
        "| user | output | largest difference | steps |",
        "| --- | --- | --- | --- |",
    ]
    top = sorted(found.top, reverse=True)
    lines += [f"| {user} | {name} | {largest:.3e} | {steps:,} |" for largest, user, name, steps in top]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    chart = out / "differences.png"
    _chart(found, old, new, chart)
    return report, chart


def _chart(found: Comparison, old: Manifest, new: Manifest, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4.5))
    edges = np.concatenate([[BINS[0] / 10], BINS, [BINS[-1] * 10]])
    for name, spread in found.outputs.items():
        share = spread.counts / max(spread.total, 1)
        axes.stairs(share, edges, label=name)
    axes.set_xscale("log")
    axes.set_xlabel("absolute difference at a timestep")
    axes.set_ylabel("share of timesteps")
    axes.set_title(f"{old.name}: {new.version} against {old.version}, {found.users:,} users")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
