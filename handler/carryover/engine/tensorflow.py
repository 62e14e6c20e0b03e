"""The reference engine: the original Keras layers under one `tf.function` with explicit state. Not in the zip
deployment: it needs TensorFlow."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from carryover.engine import Batched, EngineResult, slide_many, split_windows
from carryover.keras_model.carry import CarryGraph
from carryover.keras_model.window import WindowGraph
from carryover.manifest import Manifest


def _load(bundle: Path, manifest: Manifest) -> keras.Model:
    return keras.saving.load_model(bundle / manifest.files["tensorflow"], compile=False)


class TensorFlowEngine(Batched):
    """Carry mode: sequences of one length run in one call, from their own states."""

    name = "tensorflow"

    def __init__(self, graph: CarryGraph, manifest: Manifest) -> None:
        self._per_timestep = [spec.per_timestep for spec in manifest.outputs]
        signature = [tf.TensorSpec((None, None, manifest.input.features), tf.float32)] + [
            tf.TensorSpec((None, units), tf.float32) for units in manifest.state_shapes
        ]
        self._call = tf.function(lambda x, *state: graph.call(x, list(state)), input_signature=signature)
        self._names = [spec.name for spec in manifest.outputs]
        self.run(np.zeros((1, manifest.input.features), np.float32), manifest.zero_state())  # trace once now

    @classmethod
    def load(cls, bundle: Path, manifest: Manifest) -> TensorFlowEngine:
        return cls(CarryGraph(_load(bundle, manifest)), manifest)

    def run_many(self, inputs: Sequence[np.ndarray], states: Sequence[list[np.ndarray]]) -> list[EngineResult]:
        results: dict[int, EngineResult] = {}
        for length in sorted({len(rows) for rows in inputs}):
            group = [index for index, rows in enumerate(inputs) if len(rows) == length]
            x = np.stack([inputs[index] for index in group]).astype(np.float32)
            start = [np.stack([states[index][k] for index in group]) for k in range(len(states[0]))]
            outputs, new_state = self._call(x, *start)
            for position, index in enumerate(group):
                rows = {
                    name: out.numpy()[position] if per_timestep else out.numpy()[position : position + 1]
                    for name, out, per_timestep in zip(self._names, outputs, self._per_timestep, strict=True)
                }
                results[index] = EngineResult(outputs=rows, state=[s.numpy()[position] for s in new_state])
        return [results[index] for index in range(len(inputs))]


class TensorFlowWindowEngine(Batched):
    """Window mode: the whole Keras model on the windows ending at each new row, of every sequence, in one call."""

    name = "tensorflow"

    def __init__(self, graph: WindowGraph, manifest: Manifest) -> None:
        self._window, self._names = graph.window, [spec.name for spec in manifest.outputs]
        signature = [tf.TensorSpec((None, graph.window, manifest.input.features), tf.float32)]
        self._call = tf.function(lambda windows: graph.call(windows), input_signature=signature)
        self.run(np.zeros((1, manifest.input.features), np.float32), manifest.zero_state())  # trace once now

    @classmethod
    def load(cls, bundle: Path, manifest: Manifest) -> TensorFlowWindowEngine:
        return cls(WindowGraph(_load(bundle, manifest), manifest.window or 0), manifest)

    def run_many(self, inputs: Sequence[np.ndarray], states: Sequence[list[np.ndarray]]) -> list[EngineResult]:
        windows, buffers, ends = slide_many(inputs, states, self._window)
        outputs = self._call(windows)
        return split_windows({n: out.numpy() for n, out in zip(self._names, outputs, strict=True)}, buffers, ends)
