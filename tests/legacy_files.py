"""Model files as Keras 2 (and Keras 1) wrote them, built here: the real Keras 2 (tf_keras) builds each network
with random weights and writes the file; where tf_keras writes a newer layout than the one meant, the file is
edited (its h5 attributes, JSON config and weight names) into the layout older Keras wrote. Each builder returns
the file and the network as Keras 2 computes it, stateless, for any batch size: the reference."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import tensorflow as tf
import tf_keras

L = tf_keras.layers
# How Keras 2.0-2.2 wrote the initializers tf_keras now names otherwise.
OLD_INITIALIZERS = {
    "GlorotUniform": {"scale": 1.0, "mode": "fan_avg", "distribution": "uniform"},
    "GlorotNormal": {"scale": 1.0, "mode": "fan_avg", "distribution": "normal"},
}


@dataclass(frozen=True)
class LegacyFile:
    path: Path
    reference: Any  # the network in tf_keras, stateless, any batch size


def _randomised(model: tf_keras.Model, seed: int) -> tf_keras.Model:
    """Weights far from their initial values, so that a weight put in the wrong place shows in the outputs."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32) for w in model.get_weights()])
    return model


def _twin(build: Callable[[bool], tf_keras.Model], seed: int) -> tuple[tf_keras.Model, tf_keras.Model]:
    """The network as saved (stateful, with its training batch size) and its stateless twin, same weights."""
    saved, reference = _randomised(build(True), seed), build(False)
    reference.set_weights(saved.get_weights())
    return saved, reference


def _config(file: h5py.File) -> dict[str, Any]:
    raw = file.attrs["model_config"]
    return json.loads(raw.decode() if isinstance(raw, bytes) else raw)


def _old_keys(value: Any) -> Any:
    """A config without what Keras <= 2.2 never wrote (`module`, `registered_name`, `build_config`, `time_major`),
    its initializers written the way Keras 2.0-2.2 did."""
    if isinstance(value, list):
        return [_old_keys(item) for item in value]
    if not isinstance(value, dict):
        return value
    new = ("module", "registered_name", "build_config", "time_major")
    out = {key: _old_keys(item) for key, item in value.items() if key not in new}
    if out.get("class_name") in OLD_INITIALIZERS:
        config = OLD_INITIALIZERS[out["class_name"]] | {"seed": out["config"].get("seed")}
        out = {"class_name": "VarianceScaling", "config": config}
    return out


def _bare_list(config: dict[str, Any]) -> dict[str, Any]:
    """A Sequential as Keras <= 2.2.2 wrote it: its config the list of its layers, no InputLayer, the first layer
    carrying `batch_input_shape` and `dtype`."""
    layers = config["config"]["layers"]
    if layers[0]["class_name"] == "InputLayer":
        first = layers.pop(0)["config"]
        layers[0]["config"]["batch_input_shape"] = first["batch_input_shape"]
        layers[0]["config"]["dtype"] = first.get("dtype", "float32")
    return {"class_name": "Sequential", "config": layers}


def _as_written_by(path: Path, version: str, edit: Callable[[dict[str, Any]], dict[str, Any]], renamed: bool) -> None:
    """The `.h5` file at `path` rewritten as Keras `version` wrote it: its config edited, and with `renamed` the
    weights under the names old Keras gave them (`gru_1/kernel:0`, no cell scope)."""
    with h5py.File(path, "r+") as file:
        file.attrs["model_config"] = json.dumps(edit(_old_keys(_config(file)))).encode()
        for group in (file, file["model_weights"]):
            group.attrs["keras_version"], group.attrs["backend"] = version.encode(), b"tensorflow"
        weights = file["model_weights"]
        weights.pop("top_level_model_weights", None)
        for layer in weights.keys() if renamed else ():
            group = weights[layer]
            names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["weight_names"]]
            values = [group[name][()] for name in names]
            for key in list(group.keys()):
                del group[key]
            old = [f"{layer}/{name.rsplit('/', 1)[-1]}" for name in names]
            for name, value in zip(old, values, strict=True):
                group.create_dataset(name, data=value)
            group.attrs["weight_names"] = [name.encode() for name in old]


def _written(
    model: tf_keras.Model,
    path: Path,
    version: str,
    edit: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    renamed: bool = False,
    reference: tf_keras.Model | None = None,
) -> LegacyFile:
    """`model` saved at `path` as Keras `version` wrote it (`_as_written_by`); what it must answer as: `reference`,
    by default the model itself."""
    model.save(path, include_optimizer=False)
    _as_written_by(path, version, edit or (lambda config: config), renamed)
    return LegacyFile(path, reference or model)


def keras21_stateful_lstm(folder: Path) -> LegacyFile:
    """Keras 2.1.6's `Sequential([LSTM(8, stateful, batch_input_shape=(4, None, 3), implementation=1,
    recurrent_activation="hard_sigmoid"), Dense(2)])`: the config a bare list, no input layer, hard_sigmoid gates
    (Keras 2's default), trained with batch size 4. Carry mode."""

    def build(stateful: bool) -> tf_keras.Model:
        batch = 4 if stateful else None
        return tf_keras.Sequential(
            [
                L.LSTM(8, return_sequences=True, stateful=stateful, batch_input_shape=(batch, None, 3),
                       implementation=1, recurrent_activation="hard_sigmoid", name="lstm_1"),
                L.Dense(2, activation="tanh", name="dense_1"),
            ]
        )  # fmt: skip

    saved, reference = _twin(build, 21)
    return _written(saved, folder / "keras21-stateful-lstm.h5", "2.1.6", _bare_list, renamed=True, reference=reference)


def keras224_bidirectional(folder: Path) -> LegacyFile:
    """A Keras 2.2.4 window model: Input(8, 4) -> Bidirectional(LSTM(4, seq)) -> TimeDistributed(Dense(2)), its
    nested layers written without `module` (Keras 3 alone cannot locate them). Window mode."""
    inputs = tf_keras.Input((8, 4), name="frames")
    both = L.Bidirectional(L.LSTM(4, return_sequences=True, name="lstm"), name="bi_lstm")(inputs)
    outputs = L.TimeDistributed(L.Dense(2, activation="tanh", name="dense"), name="tag")(both)
    model = _randomised(tf_keras.Model(inputs, outputs), 22)
    return _written(model, folder / "keras224-bidirectional.h5", "2.2.4")


def keras20_gru_tokens(folder: Path) -> LegacyFile:
    """Keras 2.0.8's `Sequential([Embedding(20, 4, dtype="int32"), GRU(6, implementation=0, recurrent_dropout=0.2),
    GRU(4, implementation=1), Dense(3, softmax)])` on token ids, hard_sigmoid gates: its GRUs without
    `reset_after` (what reset_after=False computes, a (3 * units,) bias), its config a bare list. Carry mode."""
    model = tf_keras.Sequential(
        [
            L.Embedding(20, 4, batch_input_shape=(None, None), name="embedding_1"),
            L.GRU(6, return_sequences=True, reset_after=False, recurrent_activation="hard_sigmoid",
                  recurrent_dropout=0.2, name="gru_1"),
            L.GRU(4, return_sequences=True, reset_after=False, recurrent_activation="hard_sigmoid", implementation=1,
                  name="gru_2"),
            L.Dense(3, activation="softmax", name="dense_1"),
        ]
    )  # fmt: skip
    return _written(_randomised(model, 20), folder / "keras20-gru-tokens.h5", "2.0.8", _keras20, renamed=True)


def savedmodel_stateful_tokens(folder: Path) -> LegacyFile:
    """`model.save(dir)` (a TF 2.x SavedModel) of Embedding(15, 4, mask_zero) -> GRU(6, stateful) -> Dense(1) on
    token ids, trained with batch size 4 and saved after running (its states not zero). Carry mode."""

    def build(stateful: bool) -> tf_keras.Model:
        return tf_keras.Sequential(
            [
                L.Embedding(15, 4, mask_zero=True, batch_input_shape=(4 if stateful else None, None), name="tokens"),
                L.GRU(6, return_sequences=True, stateful=stateful, name="gru"),
                L.Dense(1, activation="sigmoid", name="score"),
            ],
            name="stateful-tokens",
        )

    saved, reference = _twin(build, 23)
    saved(np.ones((4, 3), np.int32))
    path = folder / "savedmodel-stateful-tokens"
    saved.save(path, save_format="tf", include_optimizer=False)
    return LegacyFile(path, reference)


def savedmodel_window(folder: Path) -> LegacyFile:
    """A compiled window model saved as a SavedModel with its optimizer and without traced functions
    (`save_traces=False`: Keras 2 rebuilds it from its config alone): Input(12, 4) -> Conv1D(4, 3) -> LSTM(5) ->
    Dense(1). Window mode."""
    inputs = tf_keras.Input((12, 4), name="window")
    x = L.LSTM(5, name="lstm")(L.Conv1D(4, 3, activation="relu", name="conv")(inputs))
    model = _randomised(tf_keras.Model(inputs, L.Dense(1, name="value")(x), name="savedmodel-window"), 24)
    model.compile(optimizer="adam", loss="mse")
    path = folder / "savedmodel-window"
    model.save(path, save_format="tf", save_traces=False)
    return LegacyFile(path, model)


def _keras20(config: dict[str, Any]) -> dict[str, Any]:
    """A Sequential config as Keras 2.0 wrote it: a bare list, GRUs without `reset_after`, an Embedding of the ids'
    dtype, its first GRU in `implementation=0` (Keras 2.0's "cpu" mode)."""
    config = _bare_list(config)
    for layer in config["config"]:
        layer["config"].pop("reset_after", None)
        if layer["class_name"] == "Embedding":
            layer["config"]["dtype"] = "int32"  # Keras 2.0 gave the Embedding its ids' dtype
    next(layer for layer in config["config"] if layer["class_name"] == "GRU")["config"]["implementation"] = 0
    return config


def keras204_dropout_gru_tokens(folder: Path) -> LegacyFile:
    """Keras 2.0.4's window model on 500 token ids: `Embedding(50, 8) -> GRU(12, implementation=0, dropout=0.2,
    recurrent_dropout=0.3) -> Dense(3, softmax)`. Window mode, a window long enough to loop over time."""
    model = tf_keras.Sequential(
        [
            L.Embedding(50, 8, batch_input_shape=(None, 500), name="embedding_1"),
            L.GRU(12, reset_after=False, recurrent_activation="hard_sigmoid", dropout=0.2, recurrent_dropout=0.3,
                  name="gru_1"),
            L.Dense(3, activation="softmax", name="dense_1"),
        ]
    )  # fmt: skip
    return _written(_randomised(model, 25), folder / "keras204-dropout-gru-tokens.h5", "2.0.4", _keras20, renamed=True)


def keras212_spatial_dropout_tokens(folder: Path) -> LegacyFile:
    """Keras 2.1.2's window model on 17 token ids: `Embedding(30, 6) -> SpatialDropout1D(0.2) ->
    LSTM(10, implementation=1, recurrent_dropout=0.2) -> Dense(2)`, its config a bare list. Window mode."""
    model = tf_keras.Sequential(
        [
            L.Embedding(30, 6, batch_input_shape=(None, 17), name="embedding_1"),
            L.SpatialDropout1D(0.2, name="spatial_dropout1d_1"),
            L.LSTM(10, implementation=1, recurrent_dropout=0.2, recurrent_activation="hard_sigmoid", name="lstm_1"),
            L.Dense(2, name="dense_1"),
        ]
    )
    path = folder / "keras212-spatial-dropout-tokens.h5"
    return _written(_randomised(model, 26), path, "2.1.2", _bare_list, renamed=True)


def keras224_long_bidirectional(folder: Path) -> LegacyFile:
    """Keras 2.2.4's window model on 905 rows of 4 values: `Bidirectional(LSTM(6, return_sequences,
    recurrent_dropout=0.2)) -> Bidirectional(LSTM(6, recurrent_dropout=0.2)) -> Dense(1)`. Window mode, looping over
    time both ways."""
    inputs = tf_keras.Input((905, 4), name="rows")
    x = L.Bidirectional(L.LSTM(6, return_sequences=True, recurrent_dropout=0.2, name="lstm_1"), name="bi_1")(inputs)
    x = L.Bidirectional(L.LSTM(6, recurrent_dropout=0.2, name="lstm_2"), name="bi_2")(x)
    model = _randomised(tf_keras.Model(inputs, L.Dense(1, name="value")(x)), 27)
    return _written(model, folder / "keras224-long-bidirectional.h5", "2.2.4")


LEGACY = {
    "keras21_stateful_lstm": keras21_stateful_lstm,
    "keras224_bidirectional": keras224_bidirectional,
    "keras20_gru_tokens": keras20_gru_tokens,
    "savedmodel_stateful_tokens": savedmodel_stateful_tokens,
    "savedmodel_window": savedmodel_window,
    "keras204_dropout_gru_tokens": keras204_dropout_gru_tokens,
    "keras212_spatial_dropout_tokens": keras212_spatial_dropout_tokens,
    "keras224_long_bidirectional": keras224_long_bidirectional,
}


def write_keras1_h5(path: Path, version: str | None = "1.2.2") -> Path:
    """A Keras 1 `.h5` (Keras 1.0 and 1.1 wrote no `version`): `Convolution1D(nb_filter, filter_length)`,
    `LSTM(output_dim)` with `init` and `inner_activation`, a bare-list Sequential; Keras 1's weight layout (an
    LSTM's 12 arrays). Written with h5py: no Keras writes Keras 1 configs any more."""
    rng = np.random.default_rng(1)
    layers = [
        {"class_name": "Convolution1D", "config": {"name": "convolution1d_1", "batch_input_shape": [None, 10, 4],
                                                    "input_dtype": "float32", "nb_filter": 6, "filter_length": 3,
                                                    "init": "glorot_uniform", "border_mode": "valid"}},
        {"class_name": "LSTM", "config": {"name": "lstm_1", "output_dim": 8, "init": "glorot_uniform",
                                          "inner_activation": "hard_sigmoid", "consume_less": "cpu"}},
    ]  # fmt: skip
    shapes = {
        "convolution1d_1": [("convolution1d_1_W", (3, 1, 4, 6)), ("convolution1d_1_b", (6,))],
        "lstm_1": [(f"lstm_1_{p}_{g}", {"W": (6, 8), "U": (8, 8), "b": (8,)}[p]) for g in "icfo" for p in "WUb"],
    }
    with h5py.File(path, "w") as file:
        if version is not None:
            file.attrs["keras_version"] = version.encode()
        file.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": layers}).encode()
        group = file.create_group("model_weights")
        group.attrs["layer_names"] = [name.encode() for name in shapes]
        for layer, named in shapes.items():
            sub = group.create_group(layer)
            sub.attrs["weight_names"] = [name.encode() for name, _ in named]
            for name, shape in named:
                sub.create_dataset(name, data=rng.normal(0, 0.3, shape).astype(np.float32))
    return path


def write_function_savedmodel(path: Path) -> Path:
    """`tf.saved_model.save` of a tf.function, as TensorFlow serving exports are written: a SavedModel without
    Keras metadata."""
    module = tf.Module()
    module.scale = tf.Variable(2.0)
    module.serve = tf.function(lambda x: x * module.scale, input_signature=[tf.TensorSpec((None, 4), tf.float32)])
    tf.saved_model.save(module, str(path))
    return path
