"""What a model path holds, found before any Keras reads it: its format, the Keras version that wrote it, the
model's config where the file keeps one apart; and the refusals that need nothing more (not a model, a Keras 1
file, a SavedModel without Keras metadata, a Lambda or custom layer).

| format | written by |
| --- | --- |
| `keras3` | Keras 3: a `.keras` zip, or a `.h5` file whose `keras_version` is 3.x |
| `keras2-h5` | Keras 2.0-2.15 (standalone Keras or tf.keras): `model.save("model.h5")` |
| `keras2-zip` | Keras 2.13-2.15: `model.save("model.keras")` |
| `savedmodel` | Keras 2 under TensorFlow 2.0-2.15: `model.save("dir")`, a directory |
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import h5py

from carryover.errors import UnsupportedModel

Config = dict[str, Any]
Format = Literal["keras3", "keras2-h5", "keras2-zip", "savedmodel"]
UNKNOWN = "unknown"
MODELS = ("Sequential", "Functional", "Model")  # a model used as a layer: its own layers inside
WRAPPED = ("layer", "backward_layer", "cell")  # keys of wrappers (Bidirectional, TimeDistributed) and RNN(cell)
# A Keras 1 config's own words, which no Keras 2 config uses (Keras 1.0 and 1.1 wrote no keras_version).
KERAS1_CLASSES = {
    "Convolution1D", "Convolution2D", "Convolution3D", "AtrousConvolution1D", "AtrousConvolution2D",
    "Deconvolution2D", "SeparableConvolution2D", "MaxoutDense", "Highway", "TimeDistributedDense", "Merge",
}  # fmt: skip
KERAS1_OPTIONS = {
    "init", "inner_init", "inner_activation", "nb_filter", "nb_row", "filter_length", "border_mode",
    "subsample_length", "W_regularizer", "dropout_W", "dropout_U", "consume_less", "input_dtype",
}  # fmt: skip


@dataclass(frozen=True)
class ModelFile:
    path: Path
    format: Format
    keras_version: str  # UNKNOWN when the file does not say
    config: Config | None  # the model's config, when the file keeps it apart (not a SavedModel's)

    @property
    def origin(self) -> str:
        """The file for people: "a Keras 2.1.6 .h5 file"."""
        kind = {"keras3": "file", "keras2-h5": ".h5 file", "keras2-zip": ".keras file", "savedmodel": "SavedModel"}
        version = self.keras_version if self.keras_version != UNKNOWN else "(version not recorded)"
        return f"a Keras {version} {kind[self.format]}"


def inspect(path: Path) -> ModelFile:
    """What `path` holds; UnsupportedModel in one line when it is none of the formats above."""
    if path.is_dir():
        return _saved_model(path)
    if not path.is_file():
        raise UnsupportedModel("no such file or directory")
    if h5py.is_hdf5(path):
        with h5py.File(path, "r") as file:
            version = _text(file.attrs.get("keras_version", b"")) or UNKNOWN
            if "model_config" not in file.attrs:
                raise UnsupportedModel("an HDF5 file without a model config (weights only?): save the whole model")
            config = json.loads(_text(file.attrs["model_config"]))
        return ModelFile(path, "keras3" if version.startswith("3.") else "keras2-h5", version, config)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if not {"metadata.json", "config.json"} <= names:
                raise UnsupportedModel("a zip file without Keras' metadata.json and config.json: not a .keras file")
            version = str(json.loads(archive.read("metadata.json")).get("keras_version", UNKNOWN))
            config = json.loads(archive.read("config.json"))
        return ModelFile(path, "keras2-zip" if version.startswith("2.") else "keras3", version, config)
    raise UnsupportedModel(
        "cannot be read as a Keras model: neither a .keras zip, an HDF5 file nor a SavedModel directory"
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _saved_model(path: Path) -> ModelFile:
    """A SavedModel directory written by Keras 2; refused in one line when it is no SavedModel, or one that holds
    functions only (`tf.saved_model.save`, Keras 3's `model.export`): no layers to rebuild."""
    if not (path / "saved_model.pb").is_file():
        raise UnsupportedModel("a directory without saved_model.pb: not a SavedModel")
    if (path / "keras_metadata.pb").is_file():  # TensorFlow 2.5 and later
        from tf_keras.protobuf import saved_metadata_pb2

        metadata = saved_metadata_pb2.SavedMetadata()
        metadata.ParseFromString((path / "keras_metadata.pb").read_bytes())
        nodes = [(node.node_path, node.metadata) for node in metadata.nodes]
    else:  # TensorFlow 2.0-2.4 kept each Keras object's metadata in saved_model.pb
        from tensorflow.core.protobuf import saved_model_pb2

        saved = saved_model_pb2.SavedModel()
        saved.ParseFromString((path / "saved_model.pb").read_bytes())
        graph = saved.meta_graphs[0].object_graph_def.nodes if saved.meta_graphs else []
        nodes = [
            ("root" if index == 0 else "", node.user_object.metadata)
            for index, node in enumerate(graph)
            if node.WhichOneof("kind") == "user_object" and node.user_object.identifier.startswith("_tf_keras_")
        ]
    root = next((metadata for where, metadata in nodes if where == "root" and metadata), None)
    if root is None:
        raise UnsupportedModel(
            "a SavedModel without Keras metadata (written by tf.saved_model.save, or by Keras 3's model.export): "
            "it holds functions, no layers to rebuild; save the Keras model itself with model.save('model.keras') "
            "(Keras 3) or model.save('model.h5') (Keras 2)"
        )
    version = str(json.loads(root).get("keras_version", UNKNOWN))
    return ModelFile(path, "savedmodel", version, None)


def layer_configs(config: Config) -> Iterator[Config]:
    """Every layer's `{"class_name", "config"}` in a model config, those inside nested models, wrappers and RNN
    cells too, in any Keras layout (the config of a Keras 2.0-2.2 Sequential is a bare list of layers)."""
    body = config.get("config")
    entries = body if isinstance(body, list) else body.get("layers", []) if isinstance(body, dict) else []
    for entry in entries:
        yield entry
        inner = entry.get("config") if isinstance(entry.get("config"), dict) else {}
        if entry.get("class_name") in MODELS:
            yield from layer_configs(entry)
            continue
        for value in [*(inner.get(key) for key in WRAPPED), *(inner.get("cells") or [])]:
            if isinstance(value, dict) and "class_name" in value:
                yield from layer_configs({"config": [value]})


def is_keras1(file: ModelFile) -> bool:
    """Keras 1.2 wrote keras_version 1.x; Keras 1.0 and 1.1 wrote none, and are known by their config's words."""
    if file.keras_version.startswith("1."):
        return True
    for layer in layer_configs(file.config or {}):
        options = set(layer.get("config") or {})
        if layer["class_name"] in KERAS1_CLASSES or options & KERAS1_OPTIONS:
            return True
        if "output_dim" in options and layer["class_name"] != "Embedding":
            return True
    return False


def check_layers(file: ModelFile, config: Config, known: set[str]) -> None:
    """Refuses, in one line naming the layer, what no Keras can load from a file: Python code (a Lambda layer) and
    layers of classes outside `known` (custom layers, whose code the file does not hold)."""
    if is_keras1(file):
        version = file.keras_version if file.keras_version != UNKNOWN else "not recorded"
        raise UnsupportedModel(
            f"a Keras 1 file (keras_version {version}): Keras 2 and 3 cannot read its config; load it with Keras "
            "2.0-2.3 (standalone keras, which still converts Keras 1 files), save it with model.save('model.h5') "
            "and export that file"
        )
    for layer in layer_configs(config):
        kind, name = layer["class_name"], (layer.get("config") or {}).get("name")
        if kind == "Lambda":
            raise UnsupportedModel(
                f"{file.origin}: layer {name!r} is a Lambda layer (Python code, which is not run from a file): "
                "build it from Keras' own layers and save the model again"
            )
        module = str(layer.get("module") or "")  # Keras 3 names where each class comes from; Keras 2 may not
        if kind not in known and kind not in MODELS and module.partition(".")[0] not in ("keras", "tf_keras"):
            raise UnsupportedModel(
                f"{file.origin}: layer {name!r} is of class {kind}, not one of Keras' own layers (a custom layer, "
                "whose code the file does not hold): build it from Keras' own layers and save the model again"
            )
