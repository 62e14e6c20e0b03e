"""Keras 2 `.h5` files, loaded into Keras 3 from the file's own config and weights.

Keras 3 refuses most of them: options it dropped (`time_major`, `implementation`, `input_length`, ...), a
`Sequential` whose first layer carries `batch_input_shape` instead of an input layer, and stateful layers
saved with a batch size other than 1. The config is translated and written into a copy of the file, which
Keras 3's own HDF5 loader then reads, weights included. `load` says what it translated, one phrase a change.
"""

from __future__ import annotations

import inspect
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import h5py
import keras

LayerConfig = dict[str, Any]
_BASE_OPTIONS = set(inspect.signature(keras.layers.Layer.__init__).parameters) | {"batch_shape"}


def is_legacy(path: Path) -> bool:
    """An HDF5 file: what Keras 2 (and `.h5` saving in Keras 3) writes."""
    return h5py.is_hdf5(path)


def load(path: Path) -> tuple[keras.Model, list[str]]:
    """The model in `path`, and what had to be translated (empty when nothing did)."""
    changes: list[str] = []
    with tempfile.TemporaryDirectory() as work:
        copy = Path(work) / "model.h5"
        shutil.copyfile(path, copy)
        with h5py.File(copy, "r+") as file:
            if "model_config" not in file.attrs:
                raise ValueError("an HDF5 file without a model config (weights only?): save the whole model")
            raw = file.attrs["model_config"]
            config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
            file.attrs["model_config"] = json.dumps(_translate_model(config, changes)).encode()
        model = keras.saving.load_model(copy, compile=False)
    return model, changes


def _translate_model(config: dict[str, Any], changes: list[str]) -> dict[str, Any]:
    body = config["config"]
    layers: list[LayerConfig] = body["layers"]
    for layer in layers:
        _translate_layer(layer.get("config", {}), layer["class_name"], changes)
    if config["class_name"] == "Sequential" and layers and layers[0]["class_name"] != "InputLayer":
        first = layers[0]["config"]
        shape = first.pop("batch_input_shape", None) or first.pop("batch_shape", None)
        if shape is None:
            raise ValueError("a Sequential model whose first layer has no input shape: it was never built")
        name = f"{first.get('name', 'model')}_input"
        layers.insert(
            0, {"class_name": "InputLayer", "config": {"batch_shape": _batch_one(shape, changes), "name": name}}
        )
        changes.append(f"an input layer of shape {shape[1:]} before {first.get('name')!r}")
    for layer in layers:
        if layer["class_name"] == "InputLayer":
            layer_config = layer["config"]
            shape = layer_config.pop("batch_input_shape", None) or layer_config.get("batch_shape")
            layer_config["batch_shape"] = _batch_one(shape, changes)
    return config


def _batch_one(shape: list[Any], changes: list[str]) -> list[Any]:
    """Stateful models are saved with their training batch size; a user's stream is one sequence."""
    if shape[0] not in (None, 1):
        changes.append(f"batch size {shape[0]} served one sequence at a time")
    return [None if shape[0] is None else 1, *shape[1:]]


def _translate_layer(config: LayerConfig, class_name: str, changes: list[str]) -> None:
    """Drops the options the layer's Keras 3 class no longer takes; wrappers are translated inside out."""
    inner = config.get("layer")
    if isinstance(inner, dict) and "class_name" in inner:
        _translate_layer(inner.get("config", {}), inner["class_name"], changes)
    kind = getattr(keras.layers, class_name, None)
    if kind is None:
        return  # deserialization names it
    known = set(inspect.signature(kind.__init__).parameters) | _BASE_OPTIONS | {"batch_input_shape"}
    dropped = sorted(key for key in config if key not in known)
    for key in dropped:
        del config[key]
    if dropped:
        changes.append(f"{class_name} {config.get('name')!r} without {', '.join(dropped)} (gone in Keras 3)")
