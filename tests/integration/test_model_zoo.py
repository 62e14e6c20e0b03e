"""Models people bring, each exported, served over HTTP with both engines, and checked chunk by chunk
against the original Keras model on the whole sequence: token ids into an Embedding (0 masked), padded rows
under Masking, BatchNormalization between LSTMs, a prediction after the last step only, window models (three
heads, in both modes; frames per timestep; logits in the hundreds, matched with the tolerance relative to the
answer; frames whose window, 552,960 bytes, is more than a DynamoDB item holds, kept as an object)."""

from __future__ import annotations

import numpy as np
import pytest

from infra.local.stack import start_stack
from tests import scenarios
from tests.clients import HttpClient
from tests.conftest import ENGINES

ZOO = (
    "tokens", "masked", "normalized", "last_step", "conv_window", "bidirectional", "classifier", "stateful_batch4",
    "attention", "three_heads", "three_heads_carried", "frames", "pitch_heads", "big_frames",
)  # fmt: skip
WINDOWED = {"conv_window": 12, "bidirectional": 10, "classifier": 8, "attention": 16, "three_heads": 10, "frames": 6,
            "pitch_heads": 25, "big_frames": 20}  # fmt: skip
KINDS = {"tokens": "tokens", "attention": "tokens", "frames": "frames", "big_frames": "frames"}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("model", ZOO)
def test_streamed_over_http_it_matches_keras(served, model, engine):
    described = scenarios.check_served_over_http(served[model], engine, f"zoo-{model}-{engine}")
    assert described.body["input"]["kind"] == KINDS.get(model, "features")
    assert (described.body["mode"], described.body["window"]) == (
        ("window", WINDOWED[model]) if model in WINDOWED else ("carry", None)
    )


def test_several_heads_answer_each_by_its_name(served):
    for model in ("three_heads", "three_heads_carried"):
        assert [(spec.name, spec.units) for spec in served[model].manifest.outputs] == [
            ("kind", 3), ("tag", 2), ("value", 1)
        ]  # fmt: skip


def test_a_frame_model_says_its_frame_shape(served):
    stack = start_stack(served["frames"].path, port=0, table="zoo-frames-described")
    try:
        client = HttpClient(stack.api.url)
        described, document = client.model(), client.request("GET", "/openapi.json")
    finally:
        stack.stop()
    assert described.body["input"] | {"name": None} == {
        "name": None, "kind": "frames", "features": 36, "shape": [6, 6, 1], "vocabulary": None
    }  # fmt: skip
    frame = document.body["components"]["schemas"]["PredictRequest"]["properties"]["inputs"]["items"]
    assert [frame["minItems"], frame["items"]["minItems"], frame["items"]["items"]["maxItems"]] == [6, 6, 1]
    assert frame["items"]["items"]["items"]["type"] == "number"
    assert "a frame of shape [6, 6, 1] per timestep" in document.body["info"]["description"]


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
