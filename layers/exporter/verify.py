"""Checks that an engine, fed a sequence in chunks with state carried between them, matches Keras."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from carryover.engine import Engine
from carryover.manifest import Manifest
from carryover.modes import Graph

TOLERANCE = 1e-5
ENGINES_STEP = "verifying: both engines on the same sequences, sent in random chunks"


@dataclass(frozen=True)
class Verification:
    sequences: int
    max_abs_diff: float

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= TOLERANCE


def max_abs_diff(actual: np.ndarray, expected: np.ndarray) -> float:
    """The largest difference; infinite where either side is not finite (NaN compares as nothing)."""
    difference = np.abs(np.asarray(actual, np.float64) - np.asarray(expected, np.float64))
    return float(np.max(difference)) if np.isfinite(difference).all() else float("inf")


def sample_sequence(graph: Graph, length: int, rng: np.random.Generator) -> np.ndarray:
    """A random sequence in engine form, (length, features) float32: token ids (zeros, the usual padding id,
    among them) for a token model; for a model with Masking, about a quarter of the rows masked."""
    spec, model_input = graph.input_spec, graph.input
    if model_input.vocabulary is not None:
        ids = rng.integers(0, model_input.vocabulary, size=(length, 1))
        return np.where(rng.random((length, 1)) < 0.2, 0, ids).astype(np.float32)
    rows = rng.normal(size=(length, spec.features)).astype(np.float32)
    if model_input.mask_value is not None:
        rows[rng.random(length) < 0.25] = model_input.mask_value
    return rows


def random_chunks(length: int, rng: np.random.Generator) -> list[int]:
    """Chunk sizes of 1 to 8 timesteps that add up to `length`."""
    sizes = []
    while length > 0:
        sizes.append(int(rng.integers(1, min(8, length) + 1)))
        length -= sizes[-1]
    return sizes


def run_in_chunks(engine: Engine, manifest: Manifest, sequence: np.ndarray, sizes: list[int]) -> dict[str, np.ndarray]:
    """The engine's outputs over `sequence` sent chunk by chunk: per-timestep rows joined, last rows as is."""
    state = manifest.zero_state()
    pieces: dict[str, list[np.ndarray]] = {spec.name: [] for spec in manifest.outputs}
    start = 0
    for size in sizes:
        result = engine.run(sequence[start : start + size], state)
        state, start = result.state, start + size
        for name, rows in result.outputs.items():
            pieces[name].append(rows)
    return {
        spec.name: np.concatenate(pieces[spec.name]) if spec.per_timestep else pieces[spec.name][-1]
        for spec in manifest.outputs
    }


def verify(
    engines: list[Engine],
    manifest: Manifest,
    model: Any,
    graph: Graph,
    sequences: int,
    seed: int = 0,
    on_sequence: Callable[[], None] = lambda: None,
    on_step: Callable[[str], None] = lambda _: None,
) -> dict[str, Verification]:
    """Each engine's worst difference from `model` (the Keras model as its owner ran it), on the same random
    sequences and chunkings. `on_step` hears when Keras' answers are computed (all sequences at once) and when the
    engines' runs begin."""
    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(sequences):
        sequence = sample_sequence(graph, int(rng.integers(1, 49)), rng)
        cases.append((sequence, random_chunks(len(sequence), rng)))
    on_step(f"verifying: Keras' answers on {sequences} random sequences")
    references = graph.references(model, [sequence for sequence, _ in cases])
    on_step(ENGINES_STEP)
    worst = dict.fromkeys((engine.name for engine in engines), 0.0)
    for (sequence, sizes), expected in zip(cases, references, strict=True):
        for engine in engines:
            actual = run_in_chunks(engine, manifest, sequence, sizes)
            for name, rows in expected.items():
                worst[engine.name] = max(worst[engine.name], max_abs_diff(actual[name], rows))
        on_sequence()
    return {name: Verification(sequences, diff) for name, diff in worst.items()}
