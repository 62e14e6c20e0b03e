"""The local stack over HTTP: the same handler behind the local API, state in a moto server over HTTP."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import boto3
import numpy as np
import pytest

from infra.local.stack import LocalStack, start_stack
from tests import scenarios
from tests.clients import HttpClient, Reply
from tests.conftest import ENGINES, Served
from tests.dynamodb_server import DynamoDBServer
from tests.stores import items_of


@pytest.fixture(scope="module")
def stacks(served: dict[str, Served]) -> Iterator[dict[tuple[str, str], LocalStack]]:
    """Local APIs on SQLite (the default store) per model and engine, and the seed on a DynamoDB over HTTP with
    the engine the function runs by default (the store's guarantees do not depend on the engine)."""
    dynamodb = DynamoDBServer().start()
    running = {
        (key, engine): start_stack(served[key].path, port=0, instances=16, engine=engine)
        for key in ("seed", "stacked")
        for engine in ENGINES
    }
    running["seed-dynamodb", "litert"] = start_stack(
        served["seed"].path, port=0, instances=16, engine="litert", dynamodb_endpoint=dynamodb.endpoint
    )
    yield running
    for stack in running.values():
        stack.stop()
    dynamodb.stop()


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


@pytest.mark.parametrize(("engine", "store"), [("litert", "sqlite"), ("tensorflow", "sqlite"), ("litert", "dynamodb")])
@pytest.mark.parametrize("users", [1, 8])
def test_concurrent_requests_lose_and_double_no_update(stacks, served, engine, users, store):
    """16 threads x 15 requests over `users` users, on either store: per user, the successes report distinct
    `steps`, and replaying them one by one in that order through the original Keras model gives every answer and
    the final saved state."""
    stack, seed = stacks["seed" if store == "sqlite" else "seed-dynamodb", engine], served["seed"]
    client, names = HttpClient(stack.api.url), [scenarios.new_user() for _ in range(users)]
    rng = np.random.default_rng(23 + users)
    work = [
        [(names[(thread + i) % users], scenarios.sequence(seed, rng, int(rng.integers(1, 4)))) for i in range(15)]
        for thread in range(16)
    ]
    replies: list[tuple[str, np.ndarray, Reply]] = []
    lock = threading.Lock()

    def send(batch: list[tuple[str, np.ndarray]]) -> None:
        for user, inputs in batch:
            reply = client.predict(user, inputs)
            with lock:
                replies.append((user, inputs, reply))

    threads = [threading.Thread(target=send, args=(batch,)) for batch in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert {reply.status for _, _, reply in replies} <= {200, 409}
    assert {reply.body["error"]["code"] for _, _, reply in replies if reply.status == 409} <= {"state_conflict"}
    for user in names:
        done = sorted(
            (r.body["steps"], i, inputs, r) for i, (u, inputs, r) in enumerate(replies) if u == user and r.status == 200
        )
        assert done, f"no request for {user} succeeded"
        assert len({steps for steps, *_ in done}) == len(done), "two requests reported the same steps"
        whole = np.concatenate([inputs for _, _, inputs, _ in done])
        assert client.state(user).body["steps"] == len(whole) == done[-1][0]
        full = seed.graph.reference(seed.keras_model, whole)  # leaves Keras' own final state in the layer
        for steps, _, inputs, reply in done:
            scenarios.assert_matches(
                reply.body["outputs"], scenarios.expected_chunk(seed, whole, full, steps - len(inputs), steps)
            )
        item = items_of(stack).get(user)
        assert item is not None
        saved = seed.manifest.unpack_state(bytes(item["state"]["B"]))
        assert saved is not None
        keras_state = [np.asarray(v)[0] for v in seed.keras_model.get_layer("lstm").states]
        assert max(float(np.max(np.abs(a - b))) for a, b in zip(saved, keras_state, strict=True)) <= 1e-5


def test_given_dynamodb_endpoint_gets_the_table_and_the_state(served):
    """DYNAMODB_ENDPOINT: an existing DynamoDB-compatible endpoint is used, and the table created there."""
    external = DynamoDBServer().start()
    stack = start_stack(served["seed"].path, port=0, dynamodb_endpoint=external.endpoint, table="given")
    try:
        assert stack.state_file is None
        reply = HttpClient(stack.api.url).predict("carol", [[0.0] * 8])
        assert reply.status == 200
        items = boto3.client("dynamodb", endpoint_url=external.endpoint).scan(TableName="given")["Items"]
        assert [(item["user_id"]["S"], item["steps"]["N"]) for item in items] == [("carol", "1")]
    finally:
        stack.stop()
        external.stop()
