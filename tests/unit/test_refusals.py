"""Every way a model is refused at export, each built here: one line of our own naming the file's Keras version
(where it has one), the layer at fault and what to do, with nothing of Python's or TensorFlow's passing through."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import h5py
import keras
import pytest
import tensorflow as tf
import tf_keras

from layers.exporter.export import ExportFailed, export
from tests.legacy_files import write_function_savedmodel, write_keras1_h5

L = tf_keras.layers
INTERNALS = ("Traceback", 'File "', "in user code", "site-packages", ".py:", "loc(", "<unknown>", "Error:", "\n",
             "Tensor(", "dtype=", "%")  # fmt: skip


def keras2_h5(path: Path, *layers: tf_keras.layers.Layer, shape: tuple[int | None, ...] = (None, 4)) -> Path:
    """A Sequential of `layers` saved by Keras 2 (tf_keras) as a `.h5` file."""
    tf_keras.Sequential([tf_keras.Input(shape), *layers]).save(path, include_optimizer=False)
    return path


def keras3(path: Path, *layers: keras.layers.Layer, shape: tuple[int | None, ...] = (None, 4)) -> Path:
    """A Sequential of `layers` saved by Keras 3 as a `.keras` file."""
    keras.Sequential([keras.layers.Input(shape), *layers]).save(path)
    return path


class Scale(tf_keras.layers.Layer):  # a custom Keras 2 layer: its code is not in the file
    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return inputs * 2.0


class Net(tf_keras.Model):  # a subclassed Keras 2 model: no config to rebuild it from
    def __init__(self) -> None:
        super().__init__()
        self.lstm = L.LSTM(3)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return self.lstm(inputs)


def text(path: Path) -> Path:
    path.write_text("not a model")
    return path


def weights_only(path: Path) -> Path:
    with h5py.File(path, "w") as file:
        file.create_dataset("kernel", data=[1.0, 2.0])
    return path


def other_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "not a model")
    return path


def empty_directory(path: Path) -> Path:
    path.mkdir()
    return path


def subclassed(path: Path) -> Path:
    model = Net()
    model(tf.zeros((1, 5, 4)))
    model.save(path, save_format="tf")
    return path


def frames(path: Path, *layers: keras.layers.Layer, time: int | None = None) -> Path:
    return keras3(path, *layers, shape=(time, 6, 6, 1))


Case = tuple[str, Callable[[Path], Path], list[str]]
CASES: list[Case] = [
    ("notes.h5", text, ["cannot be read as a Keras model", "SavedModel directory"]),
    ("missing.keras", lambda path: path, ["no such file or directory"]),
    ("weights.h5", weights_only, ["without a model config", "save the whole model"]),
    ("other.keras", other_zip, ["not a .keras file"]),
    ("folder", empty_directory, ["without saved_model.pb", "not a SavedModel"]),
    ("function", write_function_savedmodel, ["without Keras metadata", "tf.saved_model.save", "model.save("]),
    ("keras1.h5", write_keras1_h5, ["a Keras 1 file (keras_version 1.2.2)", "Keras 2.0-2.3", "model.save('model.h5')"]),
    (
        "keras11.h5",
        lambda path: write_keras1_h5(path, version=None),
        ["a Keras 1 file (keras_version not recorded)", "Keras 2.0-2.3"],
    ),
    (
        "lambda2.h5",
        lambda path: keras2_h5(path, L.Lambda(lambda x: x * 2, name="double"), L.LSTM(3)),
        ["a Keras 2.21.0 .h5 file", "layer 'double' is a Lambda layer", "Keras' own layers"],
    ),
    (
        "custom2.h5",
        lambda path: keras2_h5(path, Scale(name="scale"), L.LSTM(3)),
        ["a Keras 2.21.0 .h5 file", "layer 'scale' is of class Scale", "custom layer", "Keras' own layers"],
    ),
    (
        "lambda3.keras",
        lambda path: keras3(path, keras.layers.Lambda(lambda x: x * 2, name="double"), keras.layers.LSTM(3)),
        ["a Keras 3", "layer 'double' is a Lambda layer"],
    ),
    ("subclassed", subclassed, ["a Keras 2.21.0 SavedModel", "subclassed", "Sequential or Functional"]),
    (
        "time-major.h5",
        lambda path: keras2_h5(path, L.LSTM(3, time_major=True, name="lstm")),
        ["a Keras 2.21.0 .h5 file", "layer 'lstm' is time_major", "time_major=False"],
    ),
    (
        "hard-sigmoid.h5",
        lambda path: keras2_h5(path, L.LSTM(3, activation="hard_sigmoid", name="lstm")),
        ["a Keras 2.21.0 .h5 file", "layer 'lstm' (LSTM) has activation='hard_sigmoid'", "use another activation"],
    ),
    (
        "conv-lstm.keras",
        lambda path: frames(path, keras.layers.ConvLSTM2D(2, 3, name="conv_lstm"), keras.layers.Flatten()),
        ["a Keras 3", "layer 'conv_lstm' (ConvLSTM2D)", "frame of shape (6, 6, 1)", "MODE=window WINDOW=n"],
    ),
    (
        "bicubic.keras",
        lambda path: frames(
            path,
            keras.layers.TimeDistributed(keras.layers.Resizing(4, 4, interpolation="bicubic"), name="resize"),
            keras.layers.TimeDistributed(keras.layers.Flatten()),
            keras.layers.LSTM(2),
            time=3,
        ),
        ["a Keras 3", "LiteRT has no op", "'resize'", "ops LiteRT runs"],
    ),
]


@pytest.mark.parametrize(("name", "build", "words"), CASES, ids=[name for name, _, _ in CASES])
def test_every_refusal_is_one_line_of_ours(tmp_path, name, build, words):
    source = build(tmp_path / name)
    with pytest.raises(ExportFailed) as raised:
        export(source, tmp_path / "bundle", sequences=1)
    message = str(raised.value)
    assert message.startswith(f"{source}: "), message
    assert [word for word in words if word not in message] == [], message
    assert [part for part in INTERNALS if part in message] == [], message
    assert len(message) < 400, message
    assert not (tmp_path / "bundle").exists()


def test_a_converter_failure_is_one_line_of_ours_naming_the_layer(tmp_path, monkeypatch):
    """Whatever the converter says (here what it said of a seed generator's resource tensor, with its MLIR
    locations), the refusal is one line of ours naming the layer, no internal tensor, op dump or MLIR text."""
    said = (
        '<unknown>:0: error: loc(callsite(fused["ReadVariableOp:", "functional/gru/ReadVariableOp@__inference_run_42"] '
        'at fused["StatefulPartitionedCall:", "StatefulPartitionedCall"])): Internal Tensor = Tensor("2521:0", '
        'shape=(), dtype=resource)\n<unknown>:0: note: %0 = "tf.ReadVariableOp"(%arg0) : (tensor<!tf_type.resource>)'
    )

    class Refusing:  # the converter as from_saved_model gives it, failing as it did
        def convert(self) -> bytes:
            raise RuntimeError(said)

    monkeypatch.setattr(tf.lite.TFLiteConverter, "from_saved_model", lambda *_, **__: Refusing())
    source = keras3(tmp_path / "window.keras", keras.layers.GRU(3, name="gru"), keras.layers.Dense(2), shape=(6, 4))
    with pytest.raises(ExportFailed) as raised:
        export(source, tmp_path / "bundle", sequences=1)
    message = str(raised.value)
    assert message.startswith(f"{source}: a Keras 3"), message
    assert "LiteRT cannot convert the model (in layer 'gru')" in message, message
    assert [part for part in INTERNALS if part in message] == [], message
    assert "resource" not in message and len(message) < 400 and not (tmp_path / "bundle").exists()
