"""Records through the stream function give the original Keras model's outputs: several users interleaved in
each batch, sent in chunks of varying size and batches cut anywhere, both engines, both modes."""

from __future__ import annotations

import boto3
import numpy as np
import pytest

from layers.exporter.verify import TOLERANCE
from tests import scenarios, streams
from tests.unit.conftest import TABLE, settings_for

USERS = 5


@pytest.mark.parametrize("model", ["seed", "conv_window"])
def test_records_through_the_stream_function_match_keras(dynamodb, served, model, engine):
    model_served = served[model]
    assert model_served.manifest.mode == ("carry" if model == "seed" else "window")
    settings = settings_for(model_served, {})
    sinks = streams.Sinks.create(boto3)
    store = streams.dynamodb_store(settings, model_served, dynamodb, TABLE)
    ways = streams.ways_in(model_served, engine, store, settings, sinks)
    rng = np.random.default_rng(18)
    shard = streams.Shard()
    wholes = streams.interleaved(model_served, rng, shard, USERS)
    start = 0
    while start < len(shard.records):
        end = start + int(rng.integers(1, 25))
        assert ways.stream.consume(shard.event(start, end)) == {"batchItemFailures": []}
        start = end
    answers = streams.by_user(sinks.answers())
    assert set(answers) == set(wholes)
    for user, whole in wholes.items():
        full = model_served.graph.reference(model_served.keras_model, whole)
        name = model_served.manifest.outputs[0].name
        worst = float(np.max(np.abs(streams.outputs_of(answers[user], name) - full[name])))
        assert worst <= TOLERANCE, (user, worst)
        assert answers[user][-1]["steps"] == len(whole)
        assert sum(r["rows"] for a in answers[user] for r in a["records"]) == len(whole)
        state = ways.http.state(user).body  # the newest outputs, and where the user's records stand
        assert state["steps"] == len(whole) and state["last_answer"]["outputs"] == answers[user][-1]["outputs"]
        assert state["stream"] == {streams.SHARD: str(max(seq for seq, owner, _ in shard.records if owner == user))}
    assert sinks.failures() == []


def test_a_reset_within_a_batch_restarts_that_user_from_zero_there(dynamodb, served):
    seed = served["seed"]
    settings = settings_for(seed, {})
    sinks = streams.Sinks.create(boto3)
    ways = streams.ways_in(seed, "litert", streams.dynamodb_store(settings, seed, dynamodb, TABLE), settings, sinks)
    rng = np.random.default_rng(19)
    before, after = (scenarios.sequence(seed, rng, n) for n in (5, 6))
    shard = streams.Shard()
    shard.put("ana", streams.record_data("ana", before))
    shard.put("bob", streams.record_data("bob", before[:2]))
    shard.put("ana", streams.record_data("ana", after[:4], reset=True))
    shard.put("ana", streams.record_data("ana", after[4:]))
    assert ways.stream.consume(shard.event(0, 4)) == {"batchItemFailures": []}
    (answer,) = [answer for answer in sinks.answers() if answer["user_id"] == "ana"]
    name = seed.manifest.outputs[0].name
    expected = np.concatenate([seed.graph.reference(seed.keras_model, rows)[name] for rows in (before, after)])
    assert float(np.max(np.abs(np.asarray(answer["outputs"][name]) - expected))) <= TOLERANCE
    assert (answer["steps"], answer["rows"], answer["state"]) == (6, 11, "new")
    assert ways.http.state("ana").body["steps"] == 6 and ways.http.state("bob").body["steps"] == 2
