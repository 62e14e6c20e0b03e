"""Carry mode with Keras: the model's chain run from a given state, over a chunk (`call`) or one timestep
through the recurrent layers' cells (`step`, what LiteRT runs); the state goes in and out as plain tensors.

The original model may hold stateful layers pinned to batch size 1. Nothing here touches them: the chain's
recurrent layers are stateless copies. Every recurrent layer's state is carried, stateful in the original
or not, because the service streams one logical sequence per user.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from carryover.errors import UnsupportedModel
from carryover.keras_model.read import (
    ELEMENTWISE,
    MASKING,
    TensorKey,
    key_of,
    model_outputs,
    prediction_outputs,
    read_chain,
    read_input,
    tracked_weights,
    twin,
)
from carryover.manifest import InputSpec, OutputSpec, StateSpec

Recurrent = Callable[[keras.layers.Layer, Any, list[Any], Any], list[Any]]


def _sequence(layer: keras.layers.Layer, x: Any, state: list[Any], mask: Any) -> list[Any]:
    """A recurrent layer over a chunk of timesteps, from `state`."""
    output, *new_state = layer(x, initial_state=state, mask=mask, training=False)
    if mask is None or layer.zero_output_for_mask:
        return [output, *new_state]
    # Keras starts a call's "previous output" at zeros; in the whole sequence, masked timesteps before this
    # chunk's first unmasked one repeat the output carried in (h) instead.
    leading = keras.ops.cumsum(keras.ops.cast(mask, "int32"), axis=1) == 0
    if layer.return_sequences:
        output = keras.ops.where(keras.ops.expand_dims(leading, -1), keras.ops.expand_dims(state[0], 1), output)
    else:
        output = keras.ops.where(keras.ops.expand_dims(leading[:, -1], -1), state[0], output)
    return [output, *new_state]


def _cell(layer: keras.layers.Layer, x: Any, state: list[Any], mask: Any) -> list[Any]:
    """A recurrent layer's cell on one timestep. A masked timestep leaves the state as it was and repeats the
    previous output, as Keras does."""
    with warnings.catch_warnings():  # the mask is applied here, below; the cell need not know it
        warnings.filterwarnings("ignore", message=".*does not support masking.*")
        output, new_state = layer.cell(x, state, training=False)
    if mask is None:
        return [output, *new_state]
    keep = keras.ops.expand_dims(mask, -1)
    held = keras.ops.zeros_like(output) if layer.zero_output_for_mask else state[0]
    return [
        keras.ops.where(keep, output, held),
        *(keras.ops.where(keep, n, o) for n, o in zip(new_state, state, strict=True)),
    ]


def _streamable(model: keras.Model) -> keras.Model:
    """The same model taking (1 or any, any, ...) inputs: a free time dimension to stream a fixed-window model,
    and batch 1 for a stateful model saved with another batch size."""
    shape = model.inputs[0].shape if len(model.inputs) == 1 else (None, None)
    if shape[1] is None and shape[0] in (None, 1):
        return model
    batch = None if shape[0] is None else 1

    def reshape(config: dict[str, Any]) -> None:
        for layer in config["layers"]:
            layer.pop("build_config", None)  # the shapes it was built with: rebuilt from the new input instead
            if layer["class_name"] == "InputLayer":
                old = layer["config"].pop("batch_input_shape", None) or layer["config"]["batch_shape"]
                layer["config"]["batch_shape"] = [batch, None, *old[2:]]

    return twin(model, reshape)


class CarryGraph:
    """A model read for carry mode: its recurrent state carried from one request to the next."""

    window = None

    def __init__(self, model: keras.Model, window: None = None) -> None:  # carry mode answers on no window
        frame = read_input(model).frame
        if frame is not None:
            first = next(layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer))
            raise UnsupportedModel(
                f"cannot stream layer {first.name!r} ({type(first).__name__}) in carry mode: it takes a frame of shape "
                f"{frame} per timestep, and carry mode streams rows of features or token ids; export it with "
                "MODE=window WINDOW=n to answer on each user's last n frames"
            )
        model = self.model = _streamable(model)
        self.input = read_input(model)
        self.chain = read_chain(model, self.input)
        found = prediction_outputs(model)
        self.outputs: list[tuple[OutputSpec, TensorKey]] = [(spec, key_of(model.outputs[i])) for spec, i in found]
        self.output_positions = [position for _, position in found]  # where each is in model.outputs

    @property
    def input_spec(self) -> InputSpec:
        return self.input.spec

    @property
    def states(self) -> tuple[StateSpec, ...]:
        return tuple(self.chain.states)

    def call(self, inputs: Any, states: list[Any]) -> tuple[list[Any], list[Any]]:
        """Runs (batch, time, features) inputs from `states`; returns the prediction outputs and new states."""
        return self._run(inputs, states, _sequence)

    def step(self, inputs: Any, states: list[Any]) -> tuple[list[Any], list[Any]]:
        """One timestep, (batch, features), through the recurrent layers' cells; returns as `call` does."""
        return self._run(inputs, states, _cell, one_timestep=True)

    def _run(
        self, inputs: Any, states: list[Any], recurrent: Recurrent, one_timestep: bool = False
    ) -> tuple[list[Any], list[Any]]:
        start = self.chain.input_key
        values: dict[TensorKey, Any] = {start: self.input.keras_input(inputs)}
        masks: dict[TensorKey, Any] = {start: None}
        new_states = list(states)
        for step in self.chain.steps:
            source, mask = values[step.source], masks[step.source]
            if isinstance(step.layer, MASKING):  # Masking, or Embedding(mask_zero=True): a mask from here on
                mask = step.layer.compute_mask(source)
            if step.state_range is None and one_timestep and isinstance(step.layer, ELEMENTWISE):
                # a time axis of one: layers built on (batch, time, features), BatchNormalization among them,
                # check the rank of what they are given
                results = [step.layer(keras.ops.expand_dims(source, 1), training=False)[:, 0]]
            elif step.state_range is None:
                results = [step.layer(source, training=False)]
            else:
                begin, end = step.state_range
                results = recurrent(step.layer, source, list(states[begin:end]), mask)
                new_states[begin:end] = results[1:]
                mask = mask if step.layer.return_sequences else None
            for key, value in zip(step.outputs, results, strict=False):  # built without return_state: fewer
                values[key], masks[key] = value, mask
        return [values[key] for _, key in self.outputs], new_states

    def litert_module(self) -> Any:
        """The single step LiteRT runs, as a tf.Module's `serve`: (x, state_0, ...) -> {output_i, state_i}, x
        being the input at one timestep."""
        import tensorflow as tf

        features = self.input_spec.features
        units = [spec.units for spec in self.states for _ in spec.tensors]
        signature = [tf.TensorSpec((None, features), tf.float32, name="x")] + [
            tf.TensorSpec((None, size), tf.float32, name=f"state_{i}") for i, size in enumerate(units)
        ]

        def step(x: tf.Tensor, *states: tf.Tensor) -> dict[str, tf.Tensor]:
            outputs, new_states = self.step(x, list(states))
            named = {f"output_{i}": value for i, value in enumerate(outputs)}
            return named | {f"state_{i}": value for i, value in enumerate(new_states)}

        module = tf.Module()
        module.weights = tracked_weights(step.layer for step in self.chain.steps)
        module.serve = tf.function(step, input_signature=signature)
        return module

    def reference(self, model: Any, sequence: np.ndarray) -> dict[str, np.ndarray]:
        """What `model` (this graph's, or the same network loaded another way) gives over the whole sequence,
        (timesteps, features), from a reset state: (rows, units) per prediction output."""
        for layer in model.layers:
            if getattr(layer, "stateful", False):
                (getattr(layer, "reset_state", None) or layer.reset_states)()
        results = model_outputs(model, self.input.keras_input(sequence[np.newaxis].astype(np.float32)))
        rows = {}
        for (spec, _), position in zip(self.outputs, self.output_positions, strict=True):
            value = np.asarray(results[position])
            rows[spec.name] = value[0] if spec.per_timestep else value
        return rows

    def references(self, model: Any, sequences: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """`reference` of each sequence (a chunked stream is checked against the whole sequence from zero)."""
        return [self.reference(model, sequence) for sequence in sequences]
