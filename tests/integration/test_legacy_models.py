"""Keras 2 `.h5` files: exported by translating their config, served over HTTP with both engines, and
matching the same model built in Keras 3 with the same weights, run over the whole sequence."""

from __future__ import annotations

import zipfile

import keras
import numpy as np
import pytest

from carryover.bundle import ModelBundle
from infra.local.stack import start_stack
from layers.exporter.export import ExportFailed, export
from layers.exporter.verify import random_chunks
from tests.clients import HttpClient
from tests.legacy_files import FEATURES, UNITS, write_stateful_lstm_h5
from tests.scenarios import assert_matches


@pytest.fixture(scope="module")
def legacy_bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("legacy")
    weights = write_stateful_lstm_h5(root / "old-model.h5")
    exported = export(root / "old-model.h5", root / "bundle", sequences=5)
    return root, weights, exported


def test_export_says_what_it_translated_and_stores_a_real_keras_file(legacy_bundle):
    root, _, exported = legacy_bundle
    said = "; ".join(exported.translated)
    assert "time_major" in said and "implementation" in said
    assert "batch size 4" in said and "input layer" in said
    assert exported.manifest.name == "old-model"  # Keras called it `sequential`: the file's stem instead
    assert zipfile.is_zipfile(root / "bundle" / "model.keras")
    assert ModelBundle.load(root / "bundle", "tensorflow").engine.name == "tensorflow"


def keras3_twin(weights: list[np.ndarray]) -> keras.Model:
    """The same network written in Keras 3 by hand, stateless: the ground truth for a whole sequence."""
    model = keras.Sequential(
        [
            keras.layers.Input(shape=(None, FEATURES)),
            keras.layers.LSTM(UNITS, return_sequences=True),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.set_weights(weights)
    return model


@pytest.mark.parametrize("engine", ["litert", "tensorflow"])
def test_served_in_chunks_it_matches_the_model_it_was(legacy_bundle, engine):
    root, weights, _ = legacy_bundle
    rng = np.random.default_rng(40)
    whole = rng.normal(size=(37, FEATURES)).astype(np.float32)
    expected = np.asarray(keras3_twin(weights)(whole[np.newaxis]))[0]
    stack = start_stack(root / "bundle", port=0, engine=engine, table=f"legacy-{engine}")
    try:
        client, start = HttpClient(stack.api.url), 0
        for size in random_chunks(len(whole), rng):
            reply = client.predict("old-user", whole[start : start + size])
            assert reply.status == 200, reply.body
            assert_matches(reply.body["outputs"], {"dense": expected[start : start + size]})
            start += size
    finally:
        stack.stop()


def test_unreadable_file_is_one_line(tmp_path):
    source = tmp_path / "notes.h5"
    source.write_text("not a model")
    with pytest.raises(ExportFailed) as raised:
        export(source, tmp_path / "bundle", sequences=1)
    assert "\n" not in str(raised.value) and "cannot be read as a Keras model" in str(raised.value)
