"""The Python client (`client/`) against the local API: streams match Keras, every request applied once
through 503s, conflicts and lost answers, and the auth headers each AuthMode expects."""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any

import numpy as np
import pytest
from botocore.credentials import Credentials
from carryover_client import ApiError, Bearer, Client, SigV4

from infra.local.server import LocalApi
from tests import scenarios
from tests.faults import error_response, local_api


@pytest.fixture(scope="module")
def local(served):
    """The local API over an embedded DynamoDB, with the store's client at hand to break."""
    with local_api(served["seed"].path, served["seed"].bundles["litert"], "client") as found:
        yield found


def steps(state: dict[str, Any] | None) -> int:
    assert state is not None, "no saved state"
    steps: int = state["steps"]
    return steps


def test_stream_in_chunks_matches_keras(local, served):
    url, _ = local
    seed, user = served["seed"], scenarios.new_user()
    whole = scenarios.sequence(seed, np.random.default_rng(30), 23)
    full = seed.graph.reference(seed.keras_model, whole)
    answers = list(Client(url).stream(user, whole.tolist(), chunk=5))
    assert [a.steps for a in answers] == [5, 10, 15, 20, 23]
    assert [a.state for a in answers] == ["new"] + ["continued"] * 4
    for index, answer in enumerate(answers):
        scenarios.assert_matches(answer.outputs, scenarios.expected_chunk(seed, whole, full, index * 5, answer.steps))
    client = Client(url)
    assert steps(client.state(user)) == 23
    client.delete(user)
    assert client.state(user) is None
    assert client.model()["name"] == "seed_lstm" and client.health()["status"] == "ok"


def test_503_is_retried_after_retry_after_and_applied_once(local):
    url, dynamodb = local
    failures: list[int] = []

    def unavailable(request, **kwargs):
        if len(failures) < 3:  # every attempt the handler's DynamoDB client makes for one request
            failures.append(1)
            return error_response(503, "ServiceUnavailable")(request, **kwargs)
        return None

    dynamodb.meta.events.register_first("before-send.dynamodb.PutItem", unavailable)
    waits: list[float] = []
    try:
        answer = Client(url, sleep=waits.append).predict("retried", [[0.5] * 8])
    finally:
        dynamodb.meta.events.unregister("before-send.dynamodb.PutItem", unavailable)
    assert waits == [1.0] and answer.steps == 1 and not answer.replayed
    assert steps(Client(url).state("retried")) == 1


def test_a_lost_answer_is_retried_with_the_same_key_and_applied_once(local):
    """The write lands but the answer comes after the client gave up: the retry gets the recorded answer."""
    url, dynamodb = local
    slowed = threading.Event()

    def slow_answer(**_):
        if not slowed.is_set():
            slowed.set()
            time.sleep(2.5)

    dynamodb.meta.events.register("after-call.dynamodb.PutItem", slow_answer)
    try:
        answer = Client(url, timeout=1.0, sleep=lambda _: None).predict("slow", [[0.5] * 8] * 3)
    finally:
        dynamodb.meta.events.unregister("after-call.dynamodb.PutItem", slow_answer)
    assert slowed.is_set() and answer.replayed and answer.steps == 3
    assert steps(Client(url).state("slow")) == 3


def test_refusals_are_not_retried(local):
    url, _ = local
    waits: list[float] = []
    with pytest.raises(ApiError) as raised:
        Client(url, sleep=waits.append).predict("refused", [[0.5] * 3])
    assert (
        raised.value.status == 400 and raised.value.code == "invalid_request" and "8 features" in raised.value.message
    )
    assert waits == []


class _Recorder:
    """A stand-in Lambda handler that keeps the events it gets."""

    def __init__(self) -> None:
        self.events: list[dict] = []

    def __call__(self, event, context):
        self.events.append(event)
        return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps({"name": "m"})}


@pytest.fixture
def recorder():
    recorded = _Recorder()
    api = LocalApi(lambda: recorded, port=0).start_background()
    yield api.url, recorded
    api.stop()


def test_sigv4_signs_for_execute_api_in_the_region(recorder):
    url, recorded = recorder
    Client(url, auth=SigV4("eu-west-1", Credentials("AKIDEXAMPLE", "secret", "token"))).model()
    headers = recorded.events[-1]["headers"]
    assert re.fullmatch(
        r"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/\d{8}/eu-west-1/execute-api/aws4_request, "
        r"SignedHeaders=[a-z0-9;-]*host[a-z0-9;-]*, Signature=[0-9a-f]{64}",
        headers["authorization"],
    )
    assert re.fullmatch(r"\d{8}T\d{6}Z", headers["x-amz-date"]) and headers["x-amz-security-token"] == "token"


def test_bearer_token_for_jwt(recorder):
    url, recorded = recorder
    Client(url, auth=Bearer("eyJ.example.token")).model()
    assert recorded.events[-1]["headers"]["authorization"] == "Bearer eyJ.example.token"


def test_example_chart_streams_through_the_client_and_matches_keras(served, tmp_path):
    from examples.stream_chart import stream_and_chart

    out = tmp_path / "stream.png"
    worst = stream_and_chart(served["seed"].path, out, length=60)
    assert worst <= 1e-5 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_smoke_passes_against_a_running_api(local, capsys):
    from examples.smoke import region_of, smoke

    smoke(Client(local[0]))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("ok")]  # metrics print too
    assert [line.split(":")[0] for line in lines] == [
        "ok   health",
        "ok   predict",
        "ok   predict",
        "ok   state",
        "ok   delete",
    ]
    assert region_of("https://a1b2c3.execute-api.eu-west-1.amazonaws.com") == "eu-west-1"


def test_window_answers_keep_how_many_rows_were_real(served):
    """The client keeps what window mode says of each answer: how many rows of its window were the user's."""
    classifier = served["classifier"]
    with local_api(classifier.path, classifier.bundles["litert"], "client-window") as (url, _):
        rows = scenarios.sequence(classifier, np.random.default_rng(4), 10)
        answers = list(Client(url).stream(scenarios.new_user(), rows.tolist(), chunk=4))
    assert [answer.real_rows for answer in answers] == [[1, 2, 3, 4], [5, 6, 7, 8], [8, 8]]
