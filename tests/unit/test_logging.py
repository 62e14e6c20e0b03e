"""Logs carry what operators need and never a user's input features or state, unless DEBUG is on."""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest

from carryover.observability import logger
from tests.unit.conftest import saved_item

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
