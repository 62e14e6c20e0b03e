"""The reference engine: the original Keras layers under one `tf.function` with explicit state. Not in the zip
deployment: it needs TensorFlow."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from carryover.engine import EngineResult, slide
from carryover.keras_model.carry import CarryGraph
from carryover.keras_model.window import WindowGraph
from carryover.manifest import Manifest


def _load(bundle: Path, manifest: Manifest) -> keras.Model:
    return keras.saving.load_model(bundle / manifest.files["tensorflow"], compile=False)


class TensorFlowEngine:
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

    def run(self, inputs: np.ndarray, state: list[np.ndarray]) -> EngineResult:
        outputs, new_state = self._call(inputs[np.newaxis], *(s[np.newaxis] for s in state))
        rows = {
            name: (out.numpy()[0] if per_timestep else out.numpy())
            for name, out, per_timestep in zip(self._names, outputs, self._per_timestep, strict=True)
        }
        return EngineResult(outputs=rows, state=[s.numpy()[0] for s in new_state])


class TensorFlowWindowEngine:
    """Window mode: the whole Keras model on the windows ending at each new row, all in one call."""

    name = "tensorflow"

    def __init__(self, graph: WindowGraph, manifest: Manifest) -> None:
        self._window, self._names = graph.window, [spec.name for spec in manifest.outputs]
        signature = [tf.TensorSpec((None, graph.window, manifest.input.features), tf.float32)]
        self._call = tf.function(lambda windows: graph.call(windows), input_signature=signature)
        self.run(np.zeros((1, manifest.input.features), np.float32), manifest.zero_state())  # trace once now

    @classmethod
    def load(cls, bundle: Path, manifest: Manifest) -> TensorFlowWindowEngine:
        return cls(WindowGraph(_load(bundle, manifest), manifest.window or 0), manifest)

    def run(self, inputs: np.ndarray, state: list[np.ndarray]) -> EngineResult:
        windows, buffer = slide(state[0], inputs, self._window)
        outputs = self._call(windows)
        return EngineResult({name: out.numpy() for name, out in zip(self._names, outputs, strict=True)}, [buffer])
