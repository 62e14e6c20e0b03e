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

ZOO = (
    "tokens", "masked", "normalized", "last_step", "conv_window", "bidirectional", "classifier", "stateful_batch4",
    "attention",
)  # fmt: skip
WINDOWED = {"conv_window": 12, "bidirectional": 10, "classifier": 8, "attention": 16}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("model", ZOO)
def test_streamed_over_http_it_matches_keras(served, model, engine):
    stack = start_stack(served[model].path, port=0, engine=engine, table=f"zoo-{model}-{engine}")
    try:
        client = HttpClient(stack.api.url)
        scenarios.check_interleaved_streams(client, served[model], np.random.default_rng(50))
        described = client.model().body
        assert described["input"]["kind"] == ("tokens" if model in ("tokens", "attention") else "features")
        assert (described["mode"], described["window"]) == (
            ("window", WINDOWED[model]) if model in WINDOWED else ("carry", None)
        )
    finally:
        stack.stop()


def test_window_answers_say_how_many_rows_were_real(served):
    stack = start_stack(served["classifier"].path, port=0, table="real-rows")
    try:
        client, rows = HttpClient(stack.api.url), scenarios.sequence(served["classifier"], np.random.default_rng(3), 11)
        first = client.predict("reader", rows[:5])
        assert first.body["real_rows"] == [1, 2, 3, 4, 5] and len(first.body["outputs"]["label"]) == 5
        then = client.predict("reader", rows[5:])
        assert then.body["real_rows"] == [6, 7, 8, 8, 8, 8] and then.body["steps"] == 11
        assert client.predict("reader", rows[:2], reset=True).body["real_rows"] == [1, 2]
    finally:
        stack.stop()
