"""Model files as Keras 2 wrote them, written with h5py in Keras 2's layout, so no old Keras is needed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

FEATURES, UNITS = 6, 16


def _initializer(name: str, **config: Any) -> dict[str, Any]:
    return {"class_name": name, "config": {"seed": None, **config}}


def _lstm_config() -> dict[str, Any]:
    """A stateful LSTM as Keras 2.15 saved it: batch size 4, with options Keras 3 dropped."""
    return {
        "class_name": "LSTM",
        "config": {
            "name": "lstm", "trainable": True, "batch_input_shape": [4, None, FEATURES], "dtype": "float32",
            "return_sequences": True, "return_state": False, "go_backwards": False, "stateful": True, "unroll": False,
            "time_major": False, "units": UNITS, "activation": "tanh", "recurrent_activation": "sigmoid",
            "use_bias": True, "kernel_initializer": _initializer("GlorotUniform"),
            "recurrent_initializer": _initializer("Orthogonal", gain=1.0),
            "bias_initializer": {"class_name": "Zeros", "config": {}}, "unit_forget_bias": True,
            "kernel_regularizer": None, "recurrent_regularizer": None, "bias_regularizer": None,
            "activity_regularizer": None, "kernel_constraint": None, "recurrent_constraint": None,
            "bias_constraint": None, "dropout": 0.0, "recurrent_dropout": 0.0, "implementation": 2,
        },
    }  # fmt: skip


def _dense_config() -> dict[str, Any]:
    return {
        "class_name": "Dense",
        "config": {
            "name": "dense", "trainable": True, "dtype": "float32", "units": 1, "activation": "sigmoid",
            "use_bias": True, "kernel_initializer": _initializer("GlorotUniform"),
            "bias_initializer": {"class_name": "Zeros", "config": {}}, "kernel_regularizer": None,
            "bias_regularizer": None, "activity_regularizer": None, "kernel_constraint": None, "bias_constraint": None,
        },
    }  # fmt: skip


def write_stateful_lstm_h5(path: Path, seed: int = 0) -> list[np.ndarray]:
    """A Keras 2 `Sequential([LSTM(16, stateful, batch_input_shape=(4, None, 6)), Dense(1, sigmoid)])`, no
    input layer, as `model.save("x.h5")` wrote it; returns its weights in Keras order."""
    rng = np.random.default_rng(seed)
    weights = {
        "lstm": [
            ("lstm/lstm_cell/kernel:0", rng.normal(0, 0.3, (FEATURES, 4 * UNITS))),
            ("lstm/lstm_cell/recurrent_kernel:0", rng.normal(0, 0.3, (UNITS, 4 * UNITS))),
            ("lstm/lstm_cell/bias:0", rng.normal(0, 0.1, (4 * UNITS,))),
        ],
        "dense": [("dense/kernel:0", rng.normal(0, 0.5, (UNITS, 1))), ("dense/bias:0", rng.normal(0, 0.1, (1,)))],
    }
    config = {"class_name": "Sequential", "config": {"name": "sequential", "layers": [_lstm_config(), _dense_config()]}}
    with h5py.File(path, "w") as file:
        file.attrs["keras_version"], file.attrs["backend"] = b"2.15.0", b"tensorflow"
        file.attrs["model_config"] = json.dumps(config).encode()
        group = file.create_group("model_weights")
        group.attrs["layer_names"] = [name.encode() for name in weights]
        group.attrs["backend"], group.attrs["keras_version"] = b"tensorflow", b"2.15.0"
        for layer, named in weights.items():
            layer_group = group.create_group(layer)
            layer_group.attrs["weight_names"] = [name.encode() for name, _ in named]
            for name, value in named:
                layer_group.create_dataset(name, data=value.astype(np.float32))
    return [value.astype(np.float32) for named in weights.values() for _, value in named]
