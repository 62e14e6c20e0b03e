"""Streams a realistic sequence through the API in uneven chunks with the client, and charts the answers
against the same whole sequence run through the original Keras model.

    python -m examples.stream_chart BUNDLE_DIR OUT.png [--url URL]

Without --url it starts the local API (embedded store) on a free port, quiet unless LOG_LEVEL=DEBUG. The
bundle's `model.keras` is the original model.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import keras
import numpy as np
from carryover_client import Client

from carryover.keras_model.carry import CarryGraph
from carryover.manifest import Manifest
from infra.local.quiet import quiet_unless_debug


def sensor_sequence(length: int, features: int, seed: int = 3) -> np.ndarray:
    """Readings with drifts, regime changes and noise: feature 0 swings between positive and negative runs."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    regime = np.sign(np.sin(2 * np.pi * t / 90 + 0.6)) * 0.25
    columns = [regime + 0.35 * np.sin(2 * np.pi * t / 23) + rng.normal(0, 0.3, length)]
    for index in range(1, features):
        columns.append(np.sin(2 * np.pi * t / (15 + 7 * index) + index) + rng.normal(0, 0.2, length))
    return np.stack(columns, axis=1).astype(np.float32)


def chunk_sizes(length: int, seed: int = 4) -> list[int]:
    rng, sizes = np.random.default_rng(seed), list[int]()
    while sum(sizes) < length:
        sizes.append(min(int(rng.integers(1, 17)), length - sum(sizes)))
    return sizes


def stream_and_chart(bundle: Path, out: Path, url: str | None = None, length: int = 240) -> float:
    """Returns the largest difference between the streamed answers and Keras on the whole sequence."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    manifest = Manifest.read(bundle)
    model = keras.saving.load_model(bundle / manifest.files["tensorflow"], compile=False)
    graph = CarryGraph(model)
    sequence = sensor_sequence(length, manifest.input.features)
    output = next(spec for spec in manifest.outputs if spec.per_timestep)
    expected = graph.reference(model, sequence)[output.name][:, 0]

    stack = None
    if url is None:
        from infra.local.stack import start_stack

        stack = start_stack(bundle, port=0, table="example")
        url = stack.api.url
    try:
        client, user, streamed, bounds, start = Client(url), f"example-{os.getpid()}", [], [], 0
        for size in chunk_sizes(length):
            answer = client.predict(user, sequence[start : start + size].tolist(), reset=start == 0)
            streamed += [row[0] for row in answer.outputs[output.name]]
            start += size
            bounds.append(start)
    finally:
        if stack is not None:
            stack.stop()
    streamed_values = np.asarray(streamed)
    worst = float(np.max(np.abs(streamed_values - expected)))

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(10, 5.5), sharex=True, height_ratios=[3, 1.3])
    steps = np.arange(1, length + 1)
    for bound in bounds[:-1]:
        top.axvline(bound + 0.5, color="0.92", linewidth=0.8, zorder=0)
    top.plot(steps, expected, color="tab:blue", linewidth=2.2, label="Keras, whole sequence at once")
    top.plot(
        steps,
        streamed_values,
        "o",
        color="tab:orange",
        markersize=2.6,
        label=f"API, {len(bounds)} requests of 1-16 steps",
    )
    top.plot(
        steps,
        np.cumsum(sequence[:, 0]) > 0,
        color="0.55",
        linewidth=0.8,
        linestyle=":",
        label="target: running sum of feature 0 > 0",
    )
    top.set_ylabel(output.name)
    top.set_title(f"{manifest.name}: a {length}-step stream sent in uneven chunks, its state kept by the API")
    top.set_ylim(-0.05, 1.3)
    top.legend(loc="upper center", ncol=3, fontsize=8, framealpha=0.9)
    bottom.semilogy(steps, np.maximum(np.abs(streamed_values - expected), 1e-12), color="tab:red", linewidth=0.9)
    bottom.axhline(1e-5, color="black", linestyle="--", linewidth=0.8)
    bottom.text(2, 1.6e-5, "tolerance 1e-5", fontsize=8)
    bottom.set_ylabel("|API - Keras|")
    bottom.set_xlabel(f"timestep (grey lines: request boundaries); largest difference {worst:.1e}")
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--url", help="a running API (default: start the local one)")
    args = parser.parse_args()
    quiet_unless_debug()
    worst = stream_and_chart(args.bundle, args.out, args.url)
    print(f"chart written to {args.out}; largest difference from Keras {worst:.2e}")


if __name__ == "__main__":
    main()
