"""A Keras recurrent model read as a graph of supported layers, runnable with explicit state.

The original model may hold stateful layers pinned to batch size 1. Nothing here touches them: every
recurrent layer is rebuilt stateless with `return_state=True` and the same weights, and `RecurrentGraph.call`
threads each layer's state in and out as plain tensors. Every recurrent layer's state is carried, stateful in
the original or not, because the service streams one logical sequence per user.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras

from carryover.errors import UnsupportedModel
from carryover.manifest import InputSpec, OutputSpec, StateKind, StateSpec

RECURRENT: dict[type, tuple[StateKind, tuple[str, ...]]] = {  # layer class -> its kind and state tensors
    keras.layers.LSTM: ("LSTM", ("h", "c")),
    keras.layers.GRU: ("GRU", ("h",)),
    keras.layers.SimpleRNN: ("SimpleRNN", ("h",)),
}
# Layers that act on each timestep alone (BatchNormalization in its inference form), passing any mask on.
ELEMENTWISE = (
    keras.layers.Dense,
    keras.layers.Dropout,
    keras.layers.Activation,
    keras.layers.LayerNormalization,
    keras.layers.BatchNormalization,
)
MASKING = (keras.layers.Masking, keras.layers.Embedding)  # also per timestep; they may start a mask
SUPPORTED = "LSTM, GRU, SimpleRNN, Embedding, Masking, Dense, Dropout, Activation, LayerNormalization, "
SUPPORTED += "BatchNormalization and TimeDistributed(Dense)"
TensorKey = tuple[int, int, int]  # (id(operation), node_index, tensor_index)
Recurrent = Callable[[keras.layers.Layer, Any, list[Any], Any], list[Any]]


@dataclass(frozen=True)
class _Step:
    layer: keras.layers.Layer
    source: TensorKey
    outputs: tuple[TensorKey, ...]
    state_range: tuple[int, int] | None = None  # a recurrent layer's slice of the flat state list


def _key(tensor: Any) -> TensorKey:
    history = tensor._keras_history
    return (id(history.operation), history.node_index, history.tensor_index)


def _problem(layer: keras.layers.Layer) -> str | None:
    """Why the layer cannot be streamed one timestep at a time, or None when it can."""
    kind = type(layer)
    if kind in RECURRENT:
        return "go_backwards=True cannot be streamed forwards in time" if layer.go_backwards else None
    if kind is keras.layers.TimeDistributed and isinstance(layer.layer, ELEMENTWISE):
        return None
    if isinstance(layer, ELEMENTWISE + MASKING):
        return None
    if kind is keras.layers.Bidirectional:
        return "Bidirectional cannot stream backwards in time"
    return f"{kind.__name__} is not a layer that acts one timestep at a time"


def _stateless_copy(layer: keras.layers.Layer, input_shape: tuple[Any, ...]) -> keras.layers.Layer:
    config = layer.get_config() | {"stateful": False, "return_state": True}
    copy = type(layer).from_config(config)
    copy.build((None, *input_shape[1:]))
    copy.set_weights(layer.get_weights())
    return copy


class RecurrentGraph:
    """The layers between a model's input and its outputs, in evaluation order."""

    def __init__(self, model: keras.Model) -> None:
        if len(model.inputs) != 1:
            raise UnsupportedModel(f"the model has {len(model.inputs)} inputs; one is supported")
        self.model = model
        self._input = model.inputs[0]
        self.tokens = len(self._input.shape) == 2  # (batch, time) integer ids, for an Embedding
        if len(self._input.shape) != 3 and not self.tokens:
            raise UnsupportedModel("the model's input must be (batch, time, features) or (batch, time) token ids")
        self._input_key = _key(self._input)
        self.steps: list[_Step] = []
        self.states: list[StateSpec] = []
        self._ordered: set[TensorKey] = {self._input_key}
        self._layers: set[int] = set()
        self._problems: list[str] = []
        for tensor in model.outputs:
            self._visit(tensor)
        if self._problems:
            raise UnsupportedModel(f"cannot stream {'; '.join(self._problems)}; supported layers are {SUPPORTED}")
        first = [step.layer for step in self.steps if step.source == self._input_key]
        if self.tokens and not all(isinstance(layer, keras.layers.Embedding) for layer in first):
            raise UnsupportedModel("a (batch, time) input must go into an Embedding layer")
        self.vocabulary, self.mask_value = _input_traits(model, self.tokens)
        found = prediction_outputs(model)
        self.outputs: list[tuple[OutputSpec, TensorKey]] = [(spec, _key(model.outputs[i])) for spec, i in found]
        self.output_positions = [position for _, position in found]  # where each is in model.outputs

    def _visit(self, tensor: Any) -> None:
        if _key(tensor) in self._ordered:
            return
        layer, node_index, _ = tensor._keras_history
        if id(layer) in self._layers:
            raise UnsupportedModel(f"layer {layer.name!r} is used more than once")
        self._layers.add(id(layer))
        node = layer._inbound_nodes[node_index]
        data = [arg for arg in node.arguments.args if isinstance(arg, keras.KerasTensor)]  # a mask comes as a kwarg
        if len(data) != 1:
            raise UnsupportedModel(f"layer {layer.name!r} takes {len(data)} inputs; one is supported")
        problem = _problem(layer)
        if problem:
            self._problems.append(f"layer {layer.name!r} ({problem})")
        source = data[0]
        self._visit(source)
        state_range = None
        if type(layer) is keras.layers.TimeDistributed:
            layer = layer.layer  # Dense and friends act on the last axis already; Keras' wrapper mis-shapes
            # its output under tf.function when the number of timesteps is unknown
        if type(layer) in RECURRENT:
            begin = sum(len(spec.tensors) for spec in self.states)
            kind, tensors = RECURRENT[type(layer)]
            state_range = (begin, begin + len(tensors))
            self.states.append(StateSpec(layer=layer.name, kind=kind, tensors=tensors, units=layer.units))
            layer = _stateless_copy(layer, tuple(source.shape))
        outputs = tuple(_key(t) for t in node.output_tensors)
        self.steps.append(_Step(layer, _key(source), outputs, state_range))
        self._ordered.update(outputs)

    @property
    def input_spec(self) -> InputSpec:
        return _input_spec(self._input, self.vocabulary)

    def keras_input(self, rows: Any) -> Any:
        """Engine rows, (..., features) float32 (token ids as one float each), in the form the model takes."""
        return _keras_input(rows, self.tokens)

    def call(self, inputs: Any, states: list[Any]) -> tuple[list[Any], list[Any]]:
        """Runs (batch, time, features) inputs from `states`; returns the prediction outputs and new states."""

        def sequence(layer: keras.layers.Layer, x: Any, state: list[Any], mask: Any) -> list[Any]:
            output, *new_state = layer(x, initial_state=state, mask=mask, training=False)
            if mask is None or layer.zero_output_for_mask:
                return [output, *new_state]
            # Keras starts a call's "previous output" at zeros; in the whole sequence, masked timesteps before
            # this chunk's first unmasked one repeat the output carried in (h) instead.
            leading = keras.ops.cumsum(keras.ops.cast(mask, "int32"), axis=1) == 0
            if layer.return_sequences:
                output = keras.ops.where(keras.ops.expand_dims(leading, -1), keras.ops.expand_dims(state[0], 1), output)
            else:
                output = keras.ops.where(keras.ops.expand_dims(leading[:, -1], -1), state[0], output)
            return [output, *new_state]

        return self._run(inputs, states, sequence)

    def step(self, inputs: Any, states: list[Any]) -> tuple[list[Any], list[Any]]:
        """One timestep, (batch, features), through the recurrent layers' cells; returns as `call` does. A
        masked timestep leaves the state as it was and repeats the previous output, as Keras does."""

        def cell(layer: keras.layers.Layer, x: Any, state: list[Any], mask: Any) -> list[Any]:
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

        return self._run(inputs, states, cell, one_timestep=True)

    def _run(
        self, inputs: Any, states: list[Any], recurrent: Recurrent, one_timestep: bool = False
    ) -> tuple[list[Any], list[Any]]:
        values: dict[TensorKey, Any] = {self._input_key: self.keras_input(inputs)}
        masks: dict[TensorKey, Any] = {self._input_key: None}
        new_states = list(states)
        for step in self.steps:
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


def prediction_outputs(model: keras.Model) -> list[tuple[OutputSpec, int]]:
    """The model's outputs that are predictions (not a recurrent layer's returned states), with their positions."""
    found: list[tuple[OutputSpec, int]] = []
    for position, tensor in enumerate(model.outputs):
        history = tensor._keras_history
        if type(history.operation) in RECURRENT and history.tensor_index > 0:
            continue  # a state output: carried in the store, not returned
        name = history.operation.name
        if any(spec.name == name for spec, _ in found):
            raise UnsupportedModel(f"output {name!r} appears twice")
        found.append(
            (OutputSpec(name=name, units=int(tensor.shape[-1]), per_timestep=len(tensor.shape) == 3), position)
        )
    if not found:
        raise UnsupportedModel("the model has no prediction output besides recurrent states")
    return found


def _input_spec(tensor: Any, vocabulary: int | None) -> InputSpec:
    if vocabulary is not None:
        return InputSpec(name=tensor.name, features=1, kind="tokens", vocabulary=vocabulary)
    return InputSpec(name=tensor.name, features=int(tensor.shape[-1]))


def _input_traits(model: keras.Model, tokens: bool) -> tuple[int | None, float | None]:
    """A token model's vocabulary (its Embedding's), and the value a Masking layer masks, where there are."""
    embeddings = [layer for layer in model.layers if isinstance(layer, keras.layers.Embedding)]
    if tokens and not embeddings:
        raise UnsupportedModel("a (batch, time) input must go into an Embedding layer")
    maskings = [layer for layer in model.layers if isinstance(layer, keras.layers.Masking)]
    vocabulary = int(embeddings[0].input_dim) if tokens else None
    return vocabulary, float(maskings[0].mask_value) if maskings else None


def _keras_input(rows: Any, tokens: bool) -> Any:
    return keras.ops.cast(rows[..., 0], "int32") if tokens else rows


class WindowGraph:
    """A model that answers on a window of its last `window` input rows: any layers Keras and the LiteRT
    converter can run. Its state is those rows, the oldest first, zeros until that many have arrived (as
    `keras.utils.pad_sequences` pads by default)."""

    def __init__(self, model: keras.Model, window: int) -> None:
        if len(model.inputs) != 1:
            raise UnsupportedModel(f"the model has {len(model.inputs)} inputs; one is supported")
        self.model, self.window, self._input = model, window, model.inputs[0]
        self.tokens = len(self._input.shape) == 2
        if len(self._input.shape) != 3 and not self.tokens:
            raise UnsupportedModel("the model's input must be (batch, time, features) or (batch, time) token ids")
        fixed = self._input.shape[1]
        if fixed is not None and fixed != window:
            raise UnsupportedModel(
                f"the model takes windows of {fixed} timesteps, not {window}: export with WINDOW={fixed}"
            )
        self.vocabulary, self.mask_value = _input_traits(model, self.tokens)
        found = prediction_outputs(model)
        self.outputs = [(spec.model_copy(update={"per_timestep": True}), position) for spec, position in found]
        self._last_step = [spec.per_timestep for spec, _ in found]  # a per-timestep output answers with its last row

    @property
    def input_spec(self) -> InputSpec:
        return _input_spec(self._input, self.vocabulary)

    @property
    def state(self) -> StateSpec:
        features = self.input_spec.features
        shape = (self.window, features)
        return StateSpec(layer="window", kind="Window", tensors=("rows",), units=self.window * features, shape=shape)

    def keras_input(self, rows: Any) -> Any:
        return _keras_input(rows, self.tokens)

    def call(self, windows: Any) -> list[Any]:
        """(n, window, features) engine rows -> each prediction output for the n windows, (n, units)."""
        results = self.model(self.keras_input(windows), training=False)
        results = results if isinstance(results, list | tuple) else [results]
        picked = [results[position] for _, position in self.outputs]
        return [value[:, -1] if last else value for value, last in zip(picked, self._last_step, strict=True)]


def content_hash(model: keras.Model) -> str:
    """A version that changes when the architecture or any weight changes, and only then."""
    digest = hashlib.sha256(json.dumps(model.get_config(), sort_keys=True, default=str).encode())
    for weights in model.get_weights():
        digest.update(weights.tobytes())
    return digest.hexdigest()[:16]
