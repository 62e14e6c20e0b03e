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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras

from carryover.errors import UnsupportedModel
from carryover.manifest import InputSpec, OutputSpec, StateKind, StateSpec

RECURRENT: dict[type, tuple[str, ...]] = {
    keras.layers.LSTM: ("h", "c"),
    keras.layers.GRU: ("h",),
    keras.layers.SimpleRNN: ("h",),
}
RECURRENT_KINDS: dict[type, StateKind] = {
    keras.layers.LSTM: "LSTM",
    keras.layers.GRU: "GRU",
    keras.layers.SimpleRNN: "SimpleRNN",
}
ELEMENTWISE = (keras.layers.Dense, keras.layers.Dropout, keras.layers.Activation, keras.layers.LayerNormalization)
TensorKey = tuple[int, int, int]  # (id(operation), node_index, tensor_index)


@dataclass(frozen=True)
class _Step:
    layer: keras.layers.Layer
    source: TensorKey
    outputs: tuple[TensorKey, ...]
    state_range: tuple[int, int] | None = None  # a recurrent layer's slice of the flat state list


def _key(tensor: Any) -> TensorKey:
    history = tensor._keras_history
    return (id(history.operation), history.node_index, history.tensor_index)


def _check_supported(layer: keras.layers.Layer) -> None:
    kind = type(layer)
    if kind in RECURRENT:
        if layer.go_backwards:
            raise UnsupportedModel(f"layer {layer.name!r}: go_backwards=True cannot be streamed")
        return
    if kind is keras.layers.TimeDistributed and isinstance(layer.layer, ELEMENTWISE):
        return
    if isinstance(layer, ELEMENTWISE):
        return
    raise UnsupportedModel(
        f"layer {layer.name!r} ({kind.__name__}) is not supported; supported layers are "
        "LSTM, GRU, SimpleRNN, Dense, Dropout, Activation, LayerNormalization and TimeDistributed(Dense)"
    )


def _stateless_copy(layer: keras.layers.Layer, input_shape: tuple[Any, ...]) -> keras.layers.Layer:
    config = layer.get_config() | {"stateful": False, "return_state": True}
    copy = type(layer).from_config(config)
    copy.build((None, *input_shape[1:]))
    copy.set_weights(layer.get_weights())
    return copy


class RecurrentGraph:
    """The layers between a model's input and its outputs, in evaluation order."""

    def __init__(self, model: keras.Model) -> None:
        if len(model.inputs) != 1 or len(model.inputs[0].shape) != 3:
            raise UnsupportedModel("the model must have one input of shape (batch, time, features)")
        self.model = model
        self._input = model.inputs[0]
        self._input_key = _key(self._input)
        self.steps: list[_Step] = []
        self.states: list[StateSpec] = []
        self._ordered: set[TensorKey] = {self._input_key}
        self._layers: set[int] = set()
        for tensor in model.outputs:
            self._visit(tensor)
        self.outputs: list[tuple[OutputSpec, TensorKey]] = self._prediction_outputs()
        keys = [_key(tensor) for tensor in model.outputs]
        self.output_positions = [keys.index(key) for _, key in self.outputs]  # where each is in model.outputs

    def _visit(self, tensor: Any) -> None:
        if _key(tensor) in self._ordered:
            return
        layer, node_index, _ = tensor._keras_history
        if id(layer) in self._layers:
            raise UnsupportedModel(f"layer {layer.name!r} is used more than once")
        self._layers.add(id(layer))
        node = layer._inbound_nodes[node_index]
        if len(node.input_tensors) != 1:
            raise UnsupportedModel(f"layer {layer.name!r} must take exactly one input")
        _check_supported(layer)
        source = node.input_tensors[0]
        self._visit(source)
        state_range = None
        if type(layer) is keras.layers.TimeDistributed:
            layer = layer.layer  # Dense and friends act on the last axis already; Keras' wrapper mis-shapes
            # its output under tf.function when the number of timesteps is unknown
        if type(layer) in RECURRENT:
            begin = sum(len(spec.tensors) for spec in self.states)
            tensors = RECURRENT[type(layer)]
            state_range = (begin, begin + len(tensors))
            self.states.append(
                StateSpec(layer=layer.name, kind=RECURRENT_KINDS[type(layer)], tensors=tensors, units=layer.units)
            )
            layer = _stateless_copy(layer, tuple(source.shape))
        outputs = tuple(_key(t) for t in node.output_tensors)
        self.steps.append(_Step(layer, _key(source), outputs, state_range))
        self._ordered.update(outputs)

    def _prediction_outputs(self) -> list[tuple[OutputSpec, TensorKey]]:
        found: list[tuple[OutputSpec, TensorKey]] = []
        for tensor in self.model.outputs:
            history = tensor._keras_history
            if type(history.operation) in RECURRENT and history.tensor_index > 0:
                continue  # a state output: carried in the store, not returned
            name = history.operation.name
            if any(spec.name == name for spec, _ in found):
                raise UnsupportedModel(f"output {name!r} appears twice")
            spec = OutputSpec(name=name, units=int(tensor.shape[-1]), per_timestep=len(tensor.shape) == 3)
            found.append((spec, _key(tensor)))
        if not found:
            raise UnsupportedModel("the model has no prediction output besides recurrent states")
        return found

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(name=self._input.name, features=int(self._input.shape[-1]))

    def call(self, inputs: Any, states: list[Any]) -> tuple[list[Any], list[Any]]:
        """Runs (batch, time, features) inputs from `states`; returns the prediction outputs and new states."""
        return self._run(inputs, states, lambda layer, x, state: layer(x, initial_state=state, training=False))

    def step(self, inputs: Any, states: list[Any]) -> tuple[list[Any], list[Any]]:
        """One timestep, (batch, features), through the recurrent layers' cells; returns as `call` does."""

        def cell(layer: keras.layers.Layer, x: Any, state: list[Any]) -> list[Any]:
            output, new_state = layer.cell(x, state, training=False)
            return [output, *new_state]

        return self._run(inputs, states, cell)

    def _run(
        self, inputs: Any, states: list[Any], recurrent: Callable[[keras.layers.Layer, Any, list[Any]], list[Any]]
    ) -> tuple[list[Any], list[Any]]:
        values: dict[TensorKey, Any] = {self._input_key: inputs}
        new_states = list(states)
        for step in self.steps:
            source = values[step.source]
            if step.state_range is None:
                results = [step.layer(source, training=False)]
            else:
                begin, end = step.state_range
                results = recurrent(step.layer, source, list(states[begin:end]))
                new_states[begin:end] = results[1:]
            values.update(zip(step.outputs, results, strict=False))  # a layer built without return_state has fewer
        return [values[key] for _, key in self.outputs], new_states


def content_hash(model: keras.Model) -> str:
    """A version that changes when the architecture or any weight changes, and only then."""
    digest = hashlib.sha256(json.dumps(model.get_config(), sort_keys=True, default=str).encode())
    for weights in model.get_weights():
        digest.update(weights.tobytes())
    return digest.hexdigest()[:16]
