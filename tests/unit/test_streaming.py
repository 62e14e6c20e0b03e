"""Chunked streams through the Lambda handler (moto) give the original Keras model's outputs."""

from __future__ import annotations

import numpy as np
import pytest

from tests import scenarios


@pytest.mark.parametrize(
    "model",
    ["seed", "stacked", "last_step", "tokens", "masked", "normalized", "conv_window", "bidirectional", "classifier"],
)
def test_interleaved_chunked_streams_match_keras(make_client, served, model, engine):
    scenarios.check_interleaved_streams(make_client(model, engine), served[model], np.random.default_rng(10))


@pytest.mark.parametrize("model", ["seed", "stacked"])
def test_reset_restarts_from_zero(make_client, served, model, engine):
    scenarios.check_reset_restarts(make_client(model, engine), served[model], np.random.default_rng(11))


@pytest.mark.parametrize("model", ["seed", "stacked"])
def test_delete_restarts_from_zero(make_client, served, model, engine):
    scenarios.check_delete_restarts(make_client(model, engine), served[model], np.random.default_rng(12))
