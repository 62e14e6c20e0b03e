"""The local stack over HTTP: the same handler behind the local API, state in a moto server over HTTP."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import boto3
import numpy as np
import pytest

from infra.local.dynamodb import EmbeddedDynamoDB
from infra.local.stack import LocalStack, start_stack
from layers.model.reference import reference_outputs
from tests import scenarios
from tests.clients import HttpClient
from tests.conftest import ENGINES, Served


@pytest.fixture(scope="module")
def stacks(served: dict[str, Served]) -> Iterator[dict[tuple[str, str], LocalStack]]:
    running = {
        (key, engine): start_stack(served[key].path, port=0, instances=8, verbose=False, engine=engine)
        for key in ("seed", "stacked")
        for engine in ENGINES
    }
    yield running
    for stack in running.values():
        stack.stop()


@pytest.fixture(params=["seed", "stacked"])
def model(request: pytest.FixtureRequest) -> str:
    return request.param


def test_each_stack_runs_the_engine_it_was_given(stacks):
    for (_, engine), stack in stacks.items():
        assert HttpClient(stack.api.url).model().body["engine"] == engine


def test_interleaved_chunked_streams_match_keras(stacks, served, model, engine):
    client = HttpClient(stacks[model, engine].api.url)
    scenarios.check_interleaved_streams(client, served[model], np.random.default_rng(20))


def test_reset_and_delete_restart_from_zero(stacks, served, model, engine):
    client = HttpClient(stacks[model, engine].api.url)
    scenarios.check_reset_restarts(client, served[model], np.random.default_rng(21))
    scenarios.check_delete_restarts(client, served[model], np.random.default_rng(22))


def test_bad_request_over_http_is_400_json(stacks):
    client = HttpClient(stacks["seed", "litert"].api.url)
    reply = client.request("POST", "/users/alice/predict", '{"inputs": [[1, 2]]}')
    assert reply.status == 400 and reply.headers["content-type"] == "application/json"
    assert reply.body["error"]["code"] == "invalid_request" and "8 features" in reply.body["error"]["message"]


def test_concurrent_requests_for_one_user_lose_no_update(stacks, served, engine):
    """8 threads x 6 requests on one user: every success is applied once, in the order its `steps` says."""
    client, user = HttpClient(stacks["seed", engine].api.url), scenarios.new_user()
    rng = np.random.default_rng(23)
    work = [[scenarios.sequence(served["seed"], rng, int(rng.integers(1, 4))) for _ in range(6)] for _ in range(8)]
    replies: list[tuple[np.ndarray, object]] = []
    lock = threading.Lock()

    def send(batch: list[np.ndarray]) -> None:
        for inputs in batch:
            reply = client.predict(user, inputs)
            with lock:
                replies.append((inputs, reply))

    threads = [threading.Thread(target=send, args=(batch,)) for batch in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert {reply.status for _, reply in replies} <= {200, 409}
    done = sorted((r.body["steps"], inputs, r) for inputs, r in replies if r.status == 200)
    assert len(done) >= len(replies) // 2
    assert len({steps for steps, _, _ in done}) == len(done), "two requests reported the same steps"
    whole = np.concatenate([inputs for _, inputs, _ in done])
    assert client.state(user).body["steps"] == len(whole) == done[-1][0]
    full = reference_outputs(served["seed"].keras_model, served["seed"].graph, whole)
    for steps, inputs, reply in done:
        expected = scenarios.expected_chunk(served["seed"], whole, full, steps - len(inputs), steps)
        scenarios.assert_matches(reply.body["outputs"], expected)


def test_given_dynamodb_endpoint_gets_the_table_and_the_state(served):
    """DYNAMODB_ENDPOINT: an existing DynamoDB-compatible endpoint is used, and the table created there."""
    external = EmbeddedDynamoDB().start()
    stack = start_stack(served["seed"].path, port=0, dynamodb_endpoint=external.endpoint, table="given", verbose=False)
    try:
        assert stack.dynamodb is None
        reply = HttpClient(stack.api.url).predict("carol", [[0.0] * 8])
        assert reply.status == 200
        items = boto3.client("dynamodb", endpoint_url=external.endpoint).scan(TableName="given")["Items"]
        assert [(item["user_id"]["S"], item["steps"]["N"]) for item in items] == [("carol", "1")]
    finally:
        stack.stop()
        external.stop()

