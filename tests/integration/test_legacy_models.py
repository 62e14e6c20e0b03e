"""Keras 2 files, built by `tests/legacy_files.py` in the layouts Keras 2.0 to 2.15 wrote (SavedModel directories
among them): exported through tf_keras, served over HTTP with both engines, each stream sent in chunks matching
the network as Keras 2 itself computes it on the whole sequence."""

from __future__ import annotations

import zipfile

import pytest

from layers.exporter.export import KERAS_FILE
from tests import scenarios
from tests.conftest import ENGINES
from tests.legacy_files import LEGACY

MODES = {
    "keras21_stateful_lstm": ("carry", None, "features"),
    "keras224_bidirectional": ("window", 8, "features"),
    "keras20_gru_tokens": ("carry", None, "tokens"),
    "savedmodel_stateful_tokens": ("carry", None, "tokens"),
    "savedmodel_window": ("window", 12, "features"),
    "keras204_dropout_gru_tokens": ("window", 500, "tokens"),
    "keras212_spatial_dropout_tokens": ("window", 17, "tokens"),
    "keras224_long_bidirectional": ("window", 905, "features"),
}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("model", list(LEGACY))
def test_streamed_over_http_it_matches_keras_2(legacy_served, model, engine):
    described = scenarios.check_served_over_http(legacy_served[model], engine, f"legacy-{model}-{engine}").body
    assert (described["mode"], described["window"], described["input"]["kind"]) == MODES[model]


def test_the_export_says_what_it_translated(legacy_served):
    said = {key: "; ".join(served.translated) for key, served in legacy_served.items()}
    assert "hard_sigmoid" in said["keras21_stateful_lstm"] and "batch size 4" in said["keras21_stateful_lstm"]
    assert said["keras20_gru_tokens"].count("reset_after=False") == 2 and "int32 ids" in said["keras20_gru_tokens"]
    assert "batch size 4" in said["savedmodel_stateful_tokens"]
    assert said["keras224_bidirectional"] == said["savedmodel_window"] == ""  # Keras 3 reads them as they are


def test_the_bundle_holds_a_keras_3_file_named_after_the_file(legacy_served):
    served = legacy_served["keras21_stateful_lstm"]
    assert served.manifest.name == "keras21-stateful-lstm"  # Keras called it `sequential`: the file's stem instead
    assert zipfile.is_zipfile(served.path / KERAS_FILE)
    assert legacy_served["savedmodel_window"].manifest.name == "savedmodel-window"  # its Keras name
