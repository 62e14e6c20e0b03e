"""Checks that an engine, fed a sequence in chunks with state carried between them, matches Keras."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import reduce
from operator import or_
from typing import Any

import numpy as np

from carryover.engine import Engine
from carryover.manifest import Manifest
from carryover.modes import Graph

# An engine's answer matches the model's when |actual - expected| <= TOLERANCE + RELATIVE * |expected|, value by
# value (numpy's `allclose` rule): 1e-5 for answers near 1, float32 rounding (about 1e-6 of the magnitude) with
# room for large ones, such as logits in the tens.
TOLERANCE = 1e-5
RELATIVE = 1e-5
ENGINES_STEP = "verifying: both engines on the same sequences, sent in random chunks"


@dataclass(frozen=True)
class Difference:
    """How far answers are from the reference: the largest absolute difference, the largest relative one (to the
    reference's magnitude, where it is 1 or more), and the largest share of its allowance (TOLERANCE + RELATIVE *
    |expected|) any used."""

    absolute: float = 0.0
    relative: float = 0.0
    used: float = 0.0  # at most 1: within the tolerance

    def __or__(self, other: Difference) -> Difference:
        return Difference(max(self.absolute, other.absolute), max(self.relative, other.relative),
                          max(self.used, other.used))  # fmt: skip

    @property
    def passed(self) -> bool:
        return self.used <= 1.0

    def __str__(self) -> str:
        return f"{self.absolute:.2g} (relative {self.relative:.2g})"


def difference(actual: np.ndarray, expected: np.ndarray) -> Difference:
    """How far `actual` is from `expected`; infinitely far where either is not finite (NaN compares as nothing)."""
    gap = np.abs(np.asarray(actual, np.float64) - np.asarray(expected, np.float64))
    if not np.isfinite(gap).all():
        return Difference(float("inf"), float("inf"), float("inf"))
    if not gap.size:
        return Difference()
    magnitude = np.abs(np.asarray(expected, np.float64))
    return Difference(
        float(gap.max()),
        float((gap / np.maximum(magnitude, 1.0)).max()),  # relative to answers of magnitude 1 and more
        float((gap / (TOLERANCE + RELATIVE * magnitude)).max()),
    )


@dataclass(frozen=True)
class Verification:
    sequences: int
    worst: Difference

    @property
    def passed(self) -> bool:
        return self.worst.passed


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

    def check(case: tuple[tuple[np.ndarray, list[int]], dict[str, np.ndarray]]) -> dict[str, Difference]:
        (sequence, sizes), expected = case
        found = {}
        for engine in engines:
            actual = run_in_chunks(engine, manifest, sequence, sizes)
            found[engine.name] = reduce(or_, (difference(actual[n], rows) for n, rows in expected.items()))
        on_sequence()
        return found

    worst = {engine.name: Difference() for engine in engines}
    # the sequences side by side, a thread a core: each engine keeps its state per call, and LiteRT an
    # interpreter per thread (a long window's loop over time is the slow part)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for found in pool.map(check, zip(cases, references, strict=True)):
            worst = {name: worst[name] | found[name] for name in worst}
    return {name: Verification(sequences, found) for name, found in worst.items()}
