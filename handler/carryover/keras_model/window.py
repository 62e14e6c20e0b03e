"""Window mode with Keras: a model that answers on a window of its last `window` input rows, any layers
Keras and the LiteRT converter can run. Its state is those rows, the oldest first, zeros until that many
have arrived (as `keras.utils.pad_sequences` pads by default)."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from carryover.errors import UnsupportedModel
from carryover.keras_model.read import model_outputs, prediction_outputs, read_input, tracked_weights, twin
from carryover.manifest import InputSpec, StateSpec

# The reference runs the windows of all its sequences together, at most this many timesteps (windows times the
# window's length) a call, which bounds a call's memory.
TIMESTEPS_PER_CALL = 1 << 16


def _unroll(config: Any) -> None:
    """Every recurrent layer in a model config (wrapped ones too) set to unroll."""
    if isinstance(config, dict):
        if config.get("class_name") in ("LSTM", "GRU", "SimpleRNN"):
            config["config"]["unroll"] = True
        for value in config.values():
            _unroll(value)
    elif isinstance(config, list):
        for value in config:
            _unroll(value)


class WindowGraph:
    def __init__(self, model: keras.Model, window: int) -> None:
        self.model, self.window = model, window
        self.input = read_input(model)
        fixed = self.input.tensor.shape[1]
        if fixed is not None and fixed != window:
            raise UnsupportedModel(
                f"the model takes windows of {fixed} timesteps, not {window}: export with WINDOW={fixed}"
            )
        found = prediction_outputs(model)
        self.outputs = [(spec.model_copy(update={"per_timestep": True}), position) for spec, position in found]
        self._last_step = [spec.per_timestep for spec, _ in found]  # a per-timestep output answers with its last row

    @property
    def input_spec(self) -> InputSpec:
        return self.input.spec

    @property
    def states(self) -> tuple[StateSpec, ...]:
        features = self.input_spec.features
        shape = (self.window, features)
        return (StateSpec(layer="window", kind="Window", tensors=("rows",), units=self.window * features, shape=shape),)

    def call(self, windows: Any, model: Any = None) -> list[Any]:
        """(n, window, features) engine rows -> each prediction output for the n windows, (n, units)."""
        results = model_outputs(model or self.model, self.input.keras_input(windows))
        picked = [results[position] for _, position in self.outputs]
        return [value[:, -1] if last else value for value, last in zip(picked, self._last_step, strict=True)]

    def litert_module(self) -> Any:
        """The whole model over a batch of windows, as a tf.Module's `serve`: (x) -> {output_i}, x being
        (n, window, features) and each output (n, units). A window's length is fixed, so recurrent layers are
        unrolled (same weights): LiteRT then needs no loop over time, and n can vary from call to call."""
        import tensorflow as tf

        unrolled = twin(self.model, _unroll)
        signature = [tf.TensorSpec((None, self.window, self.input_spec.features), tf.float32, name="x")]

        def run(windows: tf.Tensor) -> dict[str, tf.Tensor]:
            return {f"output_{i}": value for i, value in enumerate(self.call(windows, unrolled))}

        module = tf.Module()
        module.weights = tracked_weights([unrolled])
        module.serve = tf.function(run, input_signature=signature)
        return module

    def reference(self, model: Any, sequence: np.ndarray) -> dict[str, np.ndarray]:
        """What `model` gives on each timestep's window of `sequence`, padded as `pad_sequences` pads."""
        return self.references(model, [sequence])[0]

    def references(self, model: Any, sequences: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """`reference` of each sequence, the windows of all of them through `model` together in as few calls as
        TIMESTEPS_PER_CALL allows: a window's answer does not depend on the others in its batch, and an eager call
        costs about as much for one window as for hundreds (Keras runs a recurrent layer's loop over time op by op)."""
        windows = np.concatenate(
            [
                keras.utils.pad_sequences(
                    [sequence[: t + 1] for t in range(len(sequence))], maxlen=self.window, dtype="float32"
                )
                for sequence in sequences
            ]
        )
        per_call = max(1, TIMESTEPS_PER_CALL // self.window)
        calls = [
            [np.asarray(value) for value in self.call(windows[start : start + per_call], model)]
            for start in range(0, len(windows), per_call)
        ]
        joined = [np.concatenate(parts) for parts in zip(*calls, strict=True)]
        ends = np.cumsum([len(sequence) for sequence in sequences])
        return [
            {spec.name: rows[end - len(sequence) : end] for (spec, _), rows in zip(self.outputs, joined, strict=True)}
            for sequence, end in zip(sequences, ends, strict=True)
        ]
