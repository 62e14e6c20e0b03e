"""Reading a Keras model: its input, its prediction outputs, and (carry mode) the chain of layers between them,
each checked to act one timestep at a time."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

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


def key_of(tensor: Any) -> TensorKey:
    history = tensor._keras_history
    return (id(history.operation), history.node_index, history.tensor_index)


@dataclass(frozen=True)
class Step:
    """One layer of the chain: where its input comes from, the tensors it makes, and (a recurrent layer) its
    slice of the flat state list."""

    layer: keras.layers.Layer
    source: TensorKey
    outputs: tuple[TensorKey, ...]
    state_range: tuple[int, int] | None = None


@dataclass(frozen=True)
class ModelInput:
    """The model's one input: features, token ids into an Embedding, or frames (each timestep an array of fixed
    shape); the value a Masking layer masks."""

    tensor: Any
    tokens: bool
    vocabulary: int | None
    mask_value: float | None
    frame: tuple[int, ...] | None = None  # frames: one timestep's shape

    @property
    def spec(self) -> InputSpec:
        if self.vocabulary is not None:
            return InputSpec(name=self.tensor.name, features=1, kind="tokens", vocabulary=self.vocabulary)
        if self.frame is not None:
            return InputSpec(name=self.tensor.name, features=math.prod(self.frame), kind="frames", shape=self.frame)
        return InputSpec(name=self.tensor.name, features=int(self.tensor.shape[-1]))

    def keras_input(self, rows: Any) -> Any:
        """Engine rows, (..., time, features) float32 (token ids as one float each, frames flat), in the form the
        model takes."""
        if self.tokens:
            return keras.ops.cast(rows[..., 0], "int32")
        if self.frame is not None:
            return keras.ops.reshape(rows, (-1, *rows.shape[1:-1], *self.frame))
        return rows


INPUT_FORMS = "(batch, time, features), (batch, time) token ids or (batch, time, ...) frames of a fixed shape"


def read_input(model: keras.Model) -> ModelInput:
    if len(model.inputs) != 1:
        raise UnsupportedModel(f"the model has {len(model.inputs)} inputs; one is supported")
    tensor = model.inputs[0]
    tokens = len(tensor.shape) == 2  # (batch, time) integer ids, for an Embedding
    frame = tuple(tensor.shape[2:]) if len(tensor.shape) > 3 else None
    if len(tensor.shape) < 2 or (frame is not None and None in frame):
        raise UnsupportedModel(f"the model's input is {tuple(tensor.shape)}: it must be {INPUT_FORMS}")
    if len(tensor.shape) == 3 and tensor.shape[-1] is None:
        raise UnsupportedModel("the model's input has no fixed number of features per timestep")
    embeddings = [layer for layer in model.layers if isinstance(layer, keras.layers.Embedding)]
    if tokens and not embeddings:
        raise UnsupportedModel("a (batch, time) input must go into an Embedding layer")
    maskings = [layer for layer in model.layers if isinstance(layer, keras.layers.Masking)]
    vocabulary = int(embeddings[0].input_dim) if tokens else None
    mask_value = float(maskings[0].mask_value) if maskings else None
    return ModelInput(tensor, tokens, vocabulary, mask_value, None if frame is None else tuple(map(int, frame)))


def prediction_outputs(model: keras.Model) -> list[tuple[OutputSpec, int]]:
    """The model's outputs that are predictions (not a recurrent layer's returned states), with their positions."""
    found: list[tuple[OutputSpec, int]] = []
    for position, tensor in enumerate(model.outputs):
        history = tensor._keras_history
        if type(history.operation) in RECURRENT and history.tensor_index > 0:
            continue  # a state output: carried in the store, not returned
        name = history.operation.name
        if len(tensor.shape) not in (2, 3):
            raise UnsupportedModel(
                f"output {name!r} is of shape {tuple(tensor.shape)}: an output must be (batch, units) or (batch, time, "
                "units); flatten or pool it in the model"
            )
        if any(spec.name == name for spec, _ in found):
            raise UnsupportedModel(f"output {name!r} appears twice")
        found.append(
            (OutputSpec(name=name, units=int(tensor.shape[-1]), per_timestep=len(tensor.shape) == 3), position)
        )
    if not found:
        raise UnsupportedModel("the model has no prediction output besides recurrent states")
    return found


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


@dataclass
class Chain:
    """The layers between a model's input and its outputs, in evaluation order; every recurrent layer rebuilt
    stateless with `return_state=True` and the same weights, its state a slice of one flat list."""

    input_key: TensorKey
    steps: list[Step] = field(default_factory=list)
    states: list[StateSpec] = field(default_factory=list)
    _ordered: set[TensorKey] = field(default_factory=set)
    _layers: set[int] = field(default_factory=set)
    _problems: list[str] = field(default_factory=list)

    def visit(self, tensor: Any) -> None:
        if key_of(tensor) in self._ordered or key_of(tensor) == self.input_key:
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
        self.visit(source)
        self.steps.append(self._step(layer, source, tuple(key_of(t) for t in node.output_tensors)))
        self._ordered.update(self.steps[-1].outputs)

    def _step(self, layer: keras.layers.Layer, source: Any, outputs: tuple[TensorKey, ...]) -> Step:
        if type(layer) is keras.layers.TimeDistributed:
            layer = layer.layer  # Dense and friends act on the last axis already; Keras' wrapper mis-shapes
            # its output under tf.function when the number of timesteps is unknown
        if type(layer) not in RECURRENT:
            return Step(layer, key_of(source), outputs)
        begin = sum(len(spec.tensors) for spec in self.states)
        kind, tensors = RECURRENT[type(layer)]
        self.states.append(StateSpec(layer=layer.name, kind=kind, tensors=tensors, units=layer.units))
        copy = _stateless_copy(layer, tuple(source.shape))
        return Step(copy, key_of(source), outputs, (begin, begin + len(tensors)))

    def check(self, model_input: ModelInput) -> None:
        if self._problems:
            raise UnsupportedModel(
                f"cannot stream {'; '.join(self._problems)}; supported layers are {SUPPORTED}; or export with "
                "MODE=window WINDOW=n to answer on each user's last n rows"
            )
        first = [step.layer for step in self.steps if step.source == self.input_key]
        if model_input.tokens and not all(isinstance(layer, keras.layers.Embedding) for layer in first):
            raise UnsupportedModel("a (batch, time) input must go into an Embedding layer")


def read_chain(model: keras.Model, model_input: ModelInput) -> Chain:
    """The model's layers as a chain that carry mode runs one timestep (or one chunk) at a time."""
    chain = Chain(key_of(model_input.tensor))
    for tensor in model.outputs:
        chain.visit(tensor)
    chain.check(model_input)
    return chain


def model_outputs(model: Any, inputs: Any) -> list[Any]:
    """`model` (Keras 3, or the same network in Keras 2) called on `inputs` for inference: its outputs in the order
    of `model.outputs`, also when it returns them as a dict."""
    return list(keras.tree.flatten(model(inputs, training=False)))


def twin(model: keras.Model, edit: Callable[[dict[str, Any]], None]) -> keras.Model:
    """The same model, weights included, built from its config after `edit` changed it."""
    config = model.get_config()
    edit(config)
    copy = type(model).from_config(config)
    copy.set_weights(model.get_weights())
    return copy


def tracked_weights(layers: Iterable[keras.layers.Layer]) -> list[Any]:
    """The TensorFlow variables under Keras 3 layers' weights. A tf.Module holding these is what the LiteRT
    converter needs to freeze them into the flatbuffer: it does not see through Keras 3 layers, and variables it
    does not see become uninitialised (NaN) tensors."""
    return [weight.value for layer in layers for weight in layer.weights]


def content_hash(model: keras.Model) -> str:
    """A version that changes when the architecture or any weight changes, and only then."""
    digest = hashlib.sha256(json.dumps(model.get_config(), sort_keys=True, default=str).encode())
    for weights in model.get_weights():
        digest.update(weights.tobytes())
    return digest.hexdigest()[:16]
