"""Keras 2 models read by Keras 2 itself: tf_keras (Keras 2 for TensorFlow 2.21), an export-time dependency.

tf_keras reads every Keras 2 `.h5` layout, Keras 2 `.keras` zips and SavedModel directories written by Keras 2,
converting old weight layouts (cuDNN's, Keras 2.0's GRU) as Keras 2 always did. A `.h5` config gets, in a copy,
the few edits even tf_keras needs for files of Keras 2.0-2.2 and of GPU-only layers; each is said. `reference` is
the network as Keras 2 computes it: what the export verifies its Keras 3 rebuild against.
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import h5py
import keras

from carryover.errors import UnsupportedModel
from layers.exporter.formats import Config, ModelFile, check_layers, layer_configs

CUDNN = {"CuDNNLSTM": "LSTM", "CuDNNGRU": "GRU"}  # GPU-only layers of Keras 2.0-2.3, and the layer they compute
INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8")


def known_layers() -> set[str]:
    """The layer classes a Keras 2 file may hold: Keras 2's and Keras 3's own, the cuDNN ones edited here, and the
    layers Keras 2 made of TensorFlow functions called on its tensors."""
    import tf_keras

    return set(dir(keras.layers)) | set(dir(tf_keras.layers)) | set(CUDNN) | {"TFOpLambda", "SlicingOpLambda"}


def read(file: ModelFile, notes: list[str]) -> Any:
    """The model in a Keras 2 file, as tf_keras builds it; `notes` gets what had to be edited for tf_keras."""
    import tf_keras

    known = known_layers()
    with tempfile.TemporaryDirectory() as work:
        source = file.path
        if file.format == "keras2-h5" and file.config is not None:
            check_layers(file, file.config, known)
            source = Path(work) / file.path.name
            shutil.copyfile(file.path, source)
            with h5py.File(source, "r+") as copied:
                copied.attrs["model_config"] = json.dumps(_for_tf_keras(file, file.config, notes)).encode()
        elif file.config is not None:
            check_layers(file, file.config, known)
        try:
            model = tf_keras.models.load_model(str(source), compile=False)
        except Exception as error:  # tf_keras raises errors of every kind; its first line names what it met
            raise UnsupportedModel(f"{file.origin} that Keras 2 cannot read: {first_line(error)}") from None
    if not isinstance(model, tf_keras.Model):
        raise UnsupportedModel(f"{file.origin} without a Keras model in it: save the Keras model itself")
    if file.config is None:  # a SavedModel: its config is known once read
        check_layers(file, {"config": model.get_config()}, known)
    return model


def first_line(error: BaseException, limit: int = 200) -> str:
    """An error's first line, shortened: what a one-line refusal quotes of a library's message."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _for_tf_keras(file: ModelFile, config: Config, notes: list[str]) -> Config:
    """The edits tf_keras needs in configs of Keras 2.0-2.2 and of GPU-only layers, in a copy."""
    config = copy.deepcopy(config)
    for layer in layer_configs(config):
        body, kind, name = layer["config"], layer["class_name"], layer["config"].get("name")
        if kind == "GRU" and "reset_after" not in body:
            body["reset_after"] = False  # Keras 2.0-2.1 wrote no reset_after: its GRU is the reset_after=False one
            notes.append(f"GRU {name!r} of Keras {file.keras_version} read as reset_after=False (Keras 2.0's GRU)")
        if kind in CUDNN:
            layer["class_name"] = CUDNN[kind]  # tf_keras's loader then converts cuDNN's weight layout
            body.update(activation="tanh", recurrent_activation="sigmoid", use_bias=True)
            if kind == "CuDNNGRU":
                body["reset_after"] = True
            notes.append(f"{kind} {name!r} as {CUDNN[kind]} (the same function; its weights converted)")
        if kind == "Embedding" and body.get("dtype") in INT_DTYPES:
            ids = body["dtype"]
            notes.append(f"Embedding {name!r}: {ids} ids in, float32 weights (Keras 2.0 wrote the ids' dtype)")
            body["dtype"] = "float32"
    return config


def reference(model: Any, free_time: bool) -> Any:
    """The network as Keras 2 computes it on a whole sequence from zero state: tf_keras's model rebuilt stateless
    for any batch size (and any number of timesteps with `free_time`), with the same weights."""
    config = json.loads(json.dumps(model.get_config(), default=jsonable))
    for layer in layer_configs({"config": config}):
        body = layer["config"]
        if body.get("stateful"):
            body["stateful"] = False
        for key in ("batch_input_shape", "batch_shape"):
            if body.get(key):
                body[key] = [None, None if free_time else body[key][1], *body[key][2:]]
    twin = type(model).from_config(config)
    twin.set_weights(model.get_weights())
    return twin


def jsonable(value: Any) -> Any:
    """What `json.dumps` writes for the values tf_keras configs hold besides JSON's own: numpy numbers."""
    if hasattr(value, "item"):
        return value.item()
    raise UnsupportedModel(f"a model config holding a {type(value).__name__}, which has no JSON form")
