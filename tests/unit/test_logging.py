"""Logs carry what operators need and never a user's input features or state, unless DEBUG is on."""

from __future__ import annotations

import io
import logging

import boto3
import numpy as np
import pytest

from carryover.observability import logger
from carryover.stream.lambda_handler import create_stream_handler
from tests import streams
from tests.unit.conftest import TABLE, saved_item, settings_for

MARKER = 0.7071067690849304  # exactly representable in float32; appears in a log only if inputs are logged


@pytest.fixture
def logs():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logger.registered_formatter)
    logger.addHandler(handler)
    yield stream
    logging.getLogger(logger.name).removeHandler(handler)


def test_info_logs_hold_no_features_or_state(make_client, dynamodb, served, logs):
    client = make_client()
    client.predict("grace", [[MARKER] * 8])
    client.predict("grace", [[MARKER] * 7])  # refused: its message names the row, not the values
    client.request("POST", "/users/grace/predict", '{"inputs": [[0.7071067690849304, "x"]]}')
    text = logs.getvalue()
    assert "request refused" in text and "invalid_request" in text
    assert "0.70710" not in text
    state = served["seed"].manifest.unpack_state(bytes(saved_item(dynamodb, "grace")["state"]["B"]))
    for value in np.concatenate(state)[:50]:
        assert repr(float(value))[:9] not in text


def test_a_line_is_logged_once_when_another_library_gave_the_root_logger_a_handler(logs):
    """absl's first log calls logging.basicConfig() (the LiteRT converter logs through absl, in `make bench`'s
    process and `make compare`'s): the service's lines still go to its own handler alone."""
    root = io.StringIO()
    handler = logging.StreamHandler(root)
    logging.getLogger().addHandler(handler)
    try:
        logger.warning("logged once")
    finally:
        logging.getLogger().removeHandler(handler)
    assert logs.getvalue().count("logged once") == 1 and root.getvalue() == ""


def test_metrics_are_one_emf_line_per_invocation(make_client, capsys):
    client = make_client()
    capsys.readouterr()
    for _ in range(3):
        client.predict("metered", [[0.1] * 8])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    assert len(lines) == 3 and all('"Timesteps":[1.0]' in line for line in lines)


def test_disabled_metrics_are_never_printed(make_client, capsys, monkeypatch):
    """POWERTOOLS_METRICS_DISABLED (make run, make bench): nothing, not even every 100th value."""
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    client = make_client()
    for _ in range(120):
        client.predict("quiet", [[0.1] * 8])
    assert '"_aws"' not in capsys.readouterr().out


def test_disabled_metrics_are_never_printed_by_a_batch_of_many_users(dynamodb, served, capsys, monkeypatch):
    """One stream batch of 120 users counts 120 state origins: nothing printed, though Powertools prints a
    metric's values once it holds 100, whether metrics are on or off."""
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    seed = served["seed"]
    settings = settings_for(seed, {})
    store = streams.dynamodb_store(settings, seed, dynamodb, TABLE)
    ways = streams.ways_in(seed, "litert", store, settings, streams.Sinks.create(boto3))
    shard = streams.Shard()
    for index in range(120):
        shard.put(f"user-{index}", streams.record_data(f"user-{index}", [[0.1] * 8]))
    context = type("Context", (), {"function_name": "stream", "memory_limit_in_mb": 1024, "invoked_function_arn": "",
                                   "aws_request_id": "r-1"})()  # fmt: skip
    assert create_stream_handler(ways.stream)(shard.event(0, 120), context) == {"batchItemFailures": []}
    assert '"_aws"' not in capsys.readouterr().out
