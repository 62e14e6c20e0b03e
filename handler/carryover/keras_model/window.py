"""Window mode with Keras: a model that answers on a window of its last `window` input rows, any layers
Keras and the LiteRT converter can run. Its state is those rows, the oldest first, zeros until that many
have arrived (as `keras.utils.pad_sequences` pads by default)."""

from __future__ import annotations

from functools import partial
from typing import Any

import keras
import numpy as np

from carryover.errors import UnsupportedModel
from carryover.keras_model.read import model_outputs, prediction_outputs, read_input, tracked_weights, twin
from carryover.manifest import InputSpec, StateSpec

# The reference runs the windows of all its sequences together, at most this many timesteps (windows times the
# window's length) a call, which bounds a call's memory.
TIMESTEPS_PER_CALL = 1 << 16
# Windows of at most this many rows are unrolled for LiteRT (a batch of windows a call: fastest to serve, but the
# graph, its export time and its size grow with the window); longer ones loop over time (one window a call:
# export time and size that do not grow with the window).
UNROLL_MOST = 64
RECURRENT = ("LSTM", "GRU", "SimpleRNN")
# Layers that act only in training; at inference they pass their input on, and must not reach the converted graph
# (nor the seed generators Keras 3 makes for them): their rates are set to nothing.
TRAINING_ONLY = {"Dropout": "rate", "SpatialDropout1D": "rate", "SpatialDropout2D": "rate",
                 "SpatialDropout3D": "rate", "GaussianDropout": "rate", "AlphaDropout": "rate",
                 "GaussianNoise": "stddev"}  # fmt: skip


def _for_inference(unroll: bool) -> Any:
    """An edit of a model config: training-only noise off everywhere (wrapped layers too), recurrent layers unrolled
    when `unroll`."""

    def edit(config: Any) -> None:
        if isinstance(config, dict):
            name, fields = config.get("class_name"), config.get("config")
            if name in RECURRENT and isinstance(fields, dict):
                fields.update(dropout=0.0, recurrent_dropout=0.0, unroll=unroll)
            elif name in TRAINING_ONLY and isinstance(fields, dict):
                fields[TRAINING_ONLY[name]] = 0.0
            for value in config.values():
                edit(value)
        elif isinstance(config, list):
            for value in config:
                edit(value)

    return edit


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
        self._graph_calls: dict[int, Any] = {}

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
        """The whole model over windows, as a tf.Module's `serve`: (x) -> {output_i}, x being (n, window, features)
        and each output (n, units), the same weights without training-only noise. A window of at most
        UNROLL_MOST rows is unrolled: LiteRT needs no loop over time, and n can vary from call to call. A longer one
        loops over time, one window a call (n = 1: LiteRT's loop needs its shapes fixed)."""
        import tensorflow as tf

        unroll = self.window <= UNROLL_MOST
        served = twin(self.model, _for_inference(unroll))
        shape = (None if unroll else 1, self.window, self.input_spec.features)
        signature = [tf.TensorSpec(shape, tf.float32, name="x")]

        def run(windows: tf.Tensor) -> dict[str, tf.Tensor]:
            return {f"output_{i}": value for i, value in enumerate(self.call(windows, served))}

        module = tf.Module()
        module.weights = tracked_weights([served])
        module.serve = tf.function(run, input_signature=signature)
        return module

    def _graph_call(self, model: Any) -> Any:
        """`model` on a batch of windows as one graph of its own ops, traced once per model for any number of
        windows: Keras run eagerly goes through a recurrent layer's loop over time op by op, too slow for long
        windows. A partial, not a closure: TensorFlow counts the traces of closures of one code together, and warns
        of retracing once five models were traced."""
        import tensorflow as tf

        if id(model) not in self._graph_calls:
            windows = tf.TensorSpec((None, self.window, self.input_spec.features), tf.float32)
            self._graph_calls[id(model)] = tf.function(partial(self.call, model=model), input_signature=[windows])
        return self._graph_calls[id(model)]

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
        graph_call = self._graph_call(model)
        calls = [
            [np.asarray(value) for value in graph_call(windows[start : start + per_call])]
            for start in range(0, len(windows), per_call)
        ]
        joined = [np.concatenate(parts) for parts in zip(*calls, strict=True)]
        ends = np.cumsum([len(sequence) for sequence in sequences])
        return [
            {spec.name: rows[end - len(sequence) : end] for (spec, _), rows in zip(self.outputs, joined, strict=True)}
            for sequence, end in zip(sequences, ends, strict=True)
        ]
