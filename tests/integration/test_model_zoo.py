"""Models people bring, each exported, served over HTTP with both engines, and checked chunk by chunk
against the original Keras model on the whole sequence: token ids into an Embedding (0 masked), padded rows
under Masking, BatchNormalization between LSTMs, and a prediction after the last step only."""

from __future__ import annotations

import numpy as np
import pytest

from infra.local.stack import start_stack
from tests import scenarios
from tests.clients import HttpClient
from tests.conftest import ENGINES

ZOO = ("tokens", "masked", "normalized", "last_step")


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("model", ZOO)
def test_streamed_over_http_it_matches_keras(served, model, engine):
    stack = start_stack(served[model].path, port=0, engine=engine, table=f"zoo-{model}-{engine}")
    try:
        client = HttpClient(stack.api.url)
        scenarios.check_interleaved_streams(client, served[model], np.random.default_rng(50))
        assert client.model().body["input"]["kind"] == ("tokens" if model == "tokens" else "features")
    finally:
        stack.stop()
