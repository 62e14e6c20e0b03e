"""The network tf_keras read, rebuilt in Keras 3 from its config, then given its weights layer by layer.

Whatever the file's age, tf_keras hands over one layout, its own `get_config()`; what Keras 3 reads otherwise is
translated here, each change with a note when it could matter:

- options Keras 3's layer classes no longer take are dropped (`time_major=True` is refused);
- Keras 2's `hard_sigmoid` is clip(0.2 x + 0.5, 0, 1) and Keras 3's clip(x / 6 + 0.5, 0, 1): Keras 2's at z is
  Keras 3's at 1.2 z, so the weights feeding a hard_sigmoid (gate columns, or a Dense, Conv or SimpleRNN kernel
  and bias) are scaled by 1.2, exactly;
- `ThresholdedReLU(theta)` is `ReLU(threshold=theta)`; a stateful model is built for batch 1 (a user's stream
  is one sequence), whatever batch it was trained with;
- Functional nodes passing tensors as keyword arguments (MultiHeadAttention's `value`, an RNN's
  `initial_state`) are written in Keras 3's node format.
"""

from __future__ import annotations

import inspect
import json
import re
from typing import Any

import keras
import numpy as np

from carryover.errors import UnsupportedModel
from layers.exporter.formats import MODELS, WRAPPED, Config, layer_configs
from layers.exporter.legacy import first_line, jsonable

HARD_SIGMOID_SCALE = 1.2
AFFINE = ("Dense", "Conv1D", "Conv2D", "Conv3D", "SimpleRNN")  # hard_sigmoid(kernel x + bias) as their activation
GATED = ("LSTM", "GRU", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D")  # hard_sigmoid as recurrent_activation
RECURRENT = {"LSTM", "GRU", "SimpleRNN", "RNN", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D"}
# Dropped options that change nothing at inference: any value of these, or these values.
INERT = {"trainable", "implementation", "query_shape", "key_shape", "value_shape"}
INERT_VALUES: dict[str, Any] = {"time_major": False, "softmax_robust_masking": False, "noise_shape": None, "groups": 1}
Scaled = dict[str, list[str]]  # layer name -> the parts of it whose hard_sigmoid inputs are scaled


def rebuild(k2: Any, origin: str, notes: list[str]) -> keras.Model:
    """The Keras 3 model computing what `k2` (a tf_keras Sequential or Functional model) computes."""
    kind = type(k2).__name__
    if kind not in MODELS:
        raise UnsupportedModel(
            f"{origin}: a subclassed Keras 2 model ({kind}) has no config to rebuild it from: save it as a "
            "Sequential or Functional model"
        )
    config = json.loads(json.dumps(k2.get_config(), default=jsonable))
    scaled: Scaled = {}
    _to_keras3_nodes(config)
    _translate_layers(config, origin, notes, scaled)
    if any(layer["config"].get("stateful") for layer in layer_configs({"config": config})):
        _batch_of_one(config, notes)
    try:
        k3 = (keras.Sequential if kind == "Sequential" else keras.Model).from_config(config)
    except Exception as error:  # Keras 3 raises errors of every kind; its first line names what it met
        raise UnsupportedModel(f"{origin}: Keras 3 cannot rebuild the model: {first_line(error)}") from None
    _copy_weights(k2, k3, scaled, origin)
    return k3


def _translate_layers(config: Config, origin: str, notes: list[str], scaled: Scaled) -> None:
    has_input = any(layer["class_name"] == "InputLayer" for layer in config["layers"])
    for layer in config["layers"]:
        _translate(layer, origin, notes, scaled, has_input)


def _translate(layer: Config, origin: str, notes: list[str], scaled: Scaled, has_input: bool) -> None:
    """One layer's config as Keras 3 takes it; wrapped layers, RNN cells and nested models first."""
    body, kind = layer["config"], layer["class_name"]
    name = body.get("name")
    for key in WRAPPED:
        if isinstance(body.get(key), dict) and "class_name" in body[key]:
            _translate(body[key], origin, notes, scaled, has_input)
    if kind == "InputLayer":
        body["batch_shape"] = body.pop("batch_input_shape", None) or body.get("batch_shape")
        return
    if isinstance(body.get("dtype"), dict):  # tf_keras's Policy: Keras 3 takes the policy's name
        body["dtype"] = body["dtype"].get("config", {}).get("name", "float32")
    if kind in MODELS:
        _to_keras3_nodes(body)
        _translate_layers(body, origin, notes, scaled)
        return
    layer.pop("build_config", None)  # the shapes tf_keras built it with: Keras 3 builds it from its input
    if has_input:
        body.pop("batch_input_shape", None)  # the InputLayer has it
    if kind == "ThresholdedReLU":  # gone in Keras 3; the same function
        theta = float(body.pop("theta", 1.0))
        layer["class_name"], kind = "ReLU", "ReLU"
        layer["config"] = body = {key: body[key] for key in ("name", "trainable", "dtype") if key in body}
        body["threshold"] = theta
        notes.append(f"ThresholdedReLU {name!r} as ReLU(threshold={theta:g})")
    if kind == "BatchNormalization" and isinstance(body.get("axis"), list) and len(body["axis"]) == 1:
        body["axis"] = int(body["axis"][0])  # tf_keras writes the axis it was built on as a list
    _hard_sigmoid(layer, origin, notes, scaled)
    cls = getattr(keras.layers, kind, None)
    if not isinstance(cls, type):
        raise UnsupportedModel(
            f"{origin}: layer {name!r} is a {kind}, which Keras 3 does not have: rebuild the model without it"
        )
    _drop_options(cls, layer, origin, notes)


def _accepted(cls: type) -> set[str]:
    """The options a Keras 3 layer class takes: its constructor's, and through `**kwargs` its bases' up to Layer
    (which takes `input_shape` and `input_dim` besides its named ones)."""
    names = {"input_shape", "input_dim"}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        parameters = inspect.signature(vars(klass)["__init__"]).parameters.values()
        names |= {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if klass is keras.layers.Layer or all(p.kind is not p.VAR_KEYWORD for p in parameters):
            break
    return names - {"self"}


def _drop_options(cls: type, layer: Config, origin: str, notes: list[str]) -> None:
    """Drops the options `cls` no longer takes, with a note for those whose value could have mattered."""
    body, name = layer["config"], layer["config"].get("name")
    if body.get("time_major"):
        raise UnsupportedModel(
            f"{origin}: layer {name!r} is time_major (inputs of (time, batch, ...)), which Keras 3 does not have: "
            "save the model with time_major=False"
        )
    accepted = _accepted(cls)
    dropped = {key: body.pop(key) for key in list(body) if key not in accepted}
    said = sorted(
        key
        for key, value in dropped.items()
        if key not in INERT
        and not key.endswith(("_initializer", "_regularizer", "_constraint"))
        and not (key in INERT_VALUES and INERT_VALUES[key] == value)
    )
    if said:
        notes.append(f"{layer['class_name']} {name!r} without {', '.join(said)} (gone in Keras 3)")


def _hard_sigmoid(layer: Config, origin: str, notes: list[str], scaled: Scaled) -> None:
    """Records the parts of the layer whose hard_sigmoid inputs get scaled; refuses a hard_sigmoid no weights feed
    alone (an LSTM's cell activation, an Activation layer)."""
    body, kind, name = layer["config"], layer["class_name"], layer["config"].get("name")
    parts = []
    if kind in GATED and body.get("recurrent_activation") == "hard_sigmoid":
        parts.append("gates")
    if body.get("activation") == "hard_sigmoid":
        if kind not in (*AFFINE, "GRU"):
            raise UnsupportedModel(
                f"{origin}: layer {name!r} ({kind}) has activation='hard_sigmoid', which Keras 3 computes otherwise "
                "(x / 6 + 0.5, not 0.2 x + 0.5) and which no weights here can make up for: use another activation, "
                "or hard_sigmoid as a recurrent_activation or a Dense or Conv activation"
            )
        parts.append("candidate" if kind == "GRU" else "output")
    if parts:
        scaled[name] = parts
        notes.append(f"{kind} {name!r}: Keras 2's hard_sigmoid as Keras 3's on inputs times 1.2 ({', '.join(parts)})")


def _batch_of_one(config: Config, notes: list[str]) -> None:
    """A stateful model's input built for batch 1; its layers' build shapes (states included) are dropped so that
    Keras 3 builds them from it. Weights do not depend on the batch size."""
    for layer in config["layers"]:
        shape = layer["config"].get("batch_shape") if layer["class_name"] == "InputLayer" else None
        if shape and shape[0] != 1:
            notes.append(f"stateful, trained with batch size {shape[0]}: served one sequence at a time")
            layer["config"]["batch_shape"] = [1, *shape[1:]]
    for layer in config["layers"]:
        layer.pop("build_config", None)


def _to_keras3_nodes(config: Config) -> None:
    """Functional nodes whose call took tensors as keyword arguments, rewritten in Keras 3's node format: tf_keras
    writes such tensors as [layer, node, tensor] lists (which Keras 3's reader of that format passes on as lists),
    and flattens RNN(x, initial_state=[h, c]) into three inputs."""
    names = {layer["config"].get("name") for layer in config.get("layers", [])}

    def is_tensor(value: Any) -> bool:
        return (
            isinstance(value, list)
            and len(value) == 3
            and isinstance(value[0], str)
            and value[0] in names
            and all(isinstance(part, int) for part in value[1:])
        )

    def tensor(reference: list[Any]) -> Config:
        history = {"shape": [], "dtype": "float32", "keras_history": reference}
        return {"class_name": "__keras_tensor__", "config": history}

    def keras3(value: Any) -> Any:
        if is_tensor(value):
            return tensor(value)
        if isinstance(value, list):
            return [keras3(item) for item in value]
        if isinstance(value, dict):
            return {key: keras3(item) for key, item in value.items()}
        return value

    for layer in config.get("layers", []):
        nodes = layer.get("inbound_nodes") or []
        for index, node in enumerate(nodes):
            if not isinstance(node, list):
                continue
            if layer["class_name"] in RECURRENT and len(node) > 1:
                initial = [tensor(list(source[:3])) for source in node[1:]]
                nodes[index] = {"args": [tensor(list(node[0][:3]))], "kwargs": {"initial_state": initial}}
            elif any(len(source) == 4 and keras3(source[3]) != source[3] for source in node):
                inputs = [tensor(list(source[:3])) for source in node]
                kwargs: Config = {}
                for source in node:
                    kwargs.update(keras3(source[3]) if len(source) == 4 else {})
                nodes[index] = {"args": [inputs[0] if len(inputs) == 1 else inputs], "kwargs": kwargs}


def _scale(kind: str, config: Config, weights: list[np.ndarray], parts: list[str]) -> list[np.ndarray]:
    """A layer's weights with those feeding each hard_sigmoid multiplied by 1.2: all of an affine layer's, or the
    columns of the gates it computes (GRU: z, r, h; LSTM and ConvLSTM: i, f, c, o, the cell's c left)."""
    if kind in AFFINE:
        return [weight * HARD_SIGMOID_SCALE for weight in weights]
    units = int(config.get("units") or config["filters"])
    columns = []
    if kind == "GRU":
        columns += [slice(0, 2 * units)] if "gates" in parts else []
        columns += [slice(2 * units, 3 * units)] if "candidate" in parts else []
    else:
        columns += [slice(0, 2 * units), slice(3 * units, 4 * units)]
    out = [weight.copy() for weight in weights]
    for weight in out:
        for column in columns:
            weight[..., column] *= HARD_SIGMOID_SCALE
    return out


def _scaled(source: Any, weights: list[np.ndarray], scaled: Scaled) -> list[np.ndarray]:
    """A tf_keras layer's weights, those of its parts with a hard_sigmoid scaled (a wrapper's parts: the layers it
    wraps, whose config names are Bidirectional's forward_<name> and backward_<name> without the prefix)."""
    if hasattr(source, "forward_layer"):
        parts = [source.forward_layer, source.backward_layer]
    elif type(source).__name__ == "TimeDistributed":
        parts = [source.layer]
    else:
        parts = [source]
    out, start = list(weights), 0
    for part in parts:
        count = len(part.weights)
        name = re.sub(r"^(forward|backward)_", "", part.name) if part is not source else part.name
        found = scaled.get(name) or scaled.get(part.name)
        if found:
            part_weights = out[start : start + count]
            out[start : start + count] = _scale(type(part).__name__, part.get_config(), part_weights, found)
        start += count
    return out


def _copy_weights(k2: Any, k3: keras.Model, scaled: Scaled, origin: str) -> None:
    """Each tf_keras layer's weights into the Keras 3 layer of the same name, shapes checked; nested models (also
    inside TimeDistributed) layer by layer."""
    for source in k2.layers:
        weights = source.get_weights()
        if not weights:
            continue
        target = k3.get_layer(source.name)
        if hasattr(source, "layers") and hasattr(target, "layers"):
            _copy_weights(source, target, scaled, origin)
            continue
        if type(source).__name__ == "TimeDistributed" and hasattr(source.layer, "layers"):
            _copy_weights(source.layer, target.layer, scaled, origin)
            continue
        weights = _scaled(source, weights, scaled)
        expected = [tuple(weight.shape) for weight in target.get_weights()]
        if [tuple(weight.shape) for weight in weights] != expected:
            raise UnsupportedModel(
                f"{origin}: layer {source.name!r} has weights of shapes {[tuple(w.shape) for w in weights]} where "
                f"Keras 3 builds {expected}: the file's layout is not one Keras 2 wrote"
            )
        target.set_weights(weights)
