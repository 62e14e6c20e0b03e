"""Idempotency keys and writes of unknown outcome: a request is applied once, whatever is retried."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from botocore.exceptions import ReadTimeoutError

from carryover.state_store import StateStore
from layers.model.reference import reference_outputs
from tests.scenarios import assert_matches
from tests.unit.conftest import raw_item

USER = "dora"


def predict(client, inputs, key: str | None = None, raw_body: str | None = None):
    event = client.event("POST", f"/users/{USER}/predict", raw_body or json.dumps({"inputs": inputs}))
    if key is not None:
        event["headers"]["idempotency-key"] = key
    return client.invoke(event)


def rows(count: int, seed: int = 0) -> list[list[float]]:
    return np.random.default_rng(seed).normal(size=(count, 8)).astype(np.float32).tolist()


def test_repeat_with_same_key_returns_identical_response_and_applies_once(make_client, dynamodb):
    client = make_client()
    first = predict(client, rows(3), key="order-1")
    assert first.status == 200 and "idempotent-replayed" not in first.headers
    item = raw_item(dynamodb, USER)
    again = predict(client, rows(3), key="order-1")
    assert again.status == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.body == first.body
    assert raw_item(dynamodb, USER)["write_id"] == item["write_id"]  # nothing written
    assert client.state(USER).body["steps"] == 3


def test_same_request_written_differently_is_the_same_request(make_client):
    client = make_client()
    first = predict(client, [[1, 2, 3, 4, 5, 6, 7, 8]], key="k")
    again = predict(client, None, key="k", raw_body='{ "inputs" : [[1.0,2.0,3.0,4.0,5.0,6.0,7.0,8.0]] , "reset": false }')
    assert again.status == 200 and again.body == first.body


def test_same_key_with_another_body_is_409_and_changes_nothing(make_client, dynamodb):
    client = make_client()
    predict(client, rows(2), key="k1")
    before = raw_item(dynamodb, USER)
    reply = predict(client, rows(2, seed=1), key="k1")
    assert reply.status == 409 and reply.body["error"]["code"] == "idempotency_key_reused"
    assert raw_item(dynamodb, USER) == before


def test_keys_are_per_user(make_client):
    client = make_client()
    assert predict(client, rows(1), key="shared").status == 200
    event = client.event("POST", "/users/eve/predict", json.dumps({"inputs": rows(1, seed=5)}))
    event["headers"]["idempotency-key"] = "shared"
    assert client.invoke(event).status == 200  # the same key for another user is another request


def test_crash_after_state_write_before_response_then_retry_applies_once(make_client, dynamodb, served, monkeypatch):
    """The first attempt dies after DynamoDB accepted its write: the retry returns that attempt's outcome."""
    client = make_client()
    inputs = rows(4, seed=3)
    save = StateStore.save

    def save_then_die(self, *args, **kwargs):
        save(self, *args, **kwargs)
        raise SystemExit("the Lambda instance died before answering")

    monkeypatch.setattr(StateStore, "save", save_then_die)
    with pytest.raises(SystemExit):
        predict(client, inputs, key="crash-1")
    monkeypatch.setattr(StateStore, "save", save)

    retried = predict(client, inputs, key="crash-1")
    assert retried.status == 200 and retried.headers["idempotent-replayed"] == "true"
    assert retried.body["steps"] == 4 and retried.body["state"] == "new"
    assert client.state(USER).body["steps"] == 4
    expected = reference_outputs(served["seed"].keras_model, served["seed"].graph, np.asarray(inputs, np.float32))
    assert_matches(retried.body["outputs"], expected)
    assert predict(client, inputs, key="crash-1").body == retried.body


def test_forgotten_key_is_a_new_request(make_client, dynamodb):
    """Receipts are kept IDEMPOTENCY_TTL_HOURS (24 by default); an older one no longer matches."""
    client = make_client()
    predict(client, rows(1), key="old")
    long_ago = str(int((datetime.now(UTC) - timedelta(hours=25)).timestamp()))
    dynamodb.update_item(
        TableName="carryover-test",
        Key={"user_id": {"S": USER}, "model": {"S": "seed_lstm"}},
        UpdateExpression="SET receipts.#k.t = :t",
        ExpressionAttributeNames={"#k": "old"},
        ExpressionAttributeValues={":t": {"N": long_ago}},
    )
    reply = predict(client, rows(1), key="old")
    assert reply.status == 200 and "idempotent-replayed" not in reply.headers and reply.body["steps"] == 2
    assert set(raw_item(dynamodb, USER)["receipts"]["M"]) == {"old"}  # the stale receipt was dropped, the new one kept


def test_only_the_newest_keys_are_kept(make_client, dynamodb):
    client = make_client(IDEMPOTENCY_KEYS="3")
    for index in range(5):
        predict(client, rows(1, seed=index), key=f"k{index}")
    assert set(raw_item(dynamodb, USER)["receipts"]["M"]) == {"k2", "k3", "k4"}
    assert predict(client, rows(1, seed=4), key="k4").headers["idempotent-replayed"] == "true"


@pytest.mark.parametrize("key", ["", "x" * 129, "tab\there", "é"])
def test_bad_idempotency_key_is_400(make_client, dynamodb, key):
    reply = predict(make_client(), rows(1), key=key)
    assert reply.status == 400 and "Idempotency-Key" in reply.body["error"]["message"]
    assert raw_item(dynamodb, USER) is None


def wire_to_params(value):
    """DynamoDB JSON as sent on the wire (binary as base64) back into boto3 parameters."""
    if isinstance(value, dict):
        return {k: base64.b64decode(v) if k == "B" else wire_to_params(v) for k, v in value.items()}
    if isinstance(value, list):
        return [wire_to_params(v) for v in value]
    return value


def test_write_of_unknown_outcome_is_not_applied_twice(make_client, dynamodb):
    """The PutItem reaches DynamoDB, the answer is lost (read timeout), botocore retries it: the retry's
    condition fails on our own write, and the service recognises that write instead of applying it again."""
    client = make_client()
    assert predict(client, rows(2)).status == 200
    lost = []

    def deliver_then_time_out(request, **_):
        if lost:
            return None
        lost.append(request)
        dynamodb.meta.events.unregister("before-send.dynamodb.PutItem", deliver_then_time_out)
        try:
            dynamodb.put_item(**wire_to_params(json.loads(request.body)))  # the write lands ...
        finally:
            dynamodb.meta.events.register_first("before-send.dynamodb.PutItem", deliver_then_time_out)
        raise ReadTimeoutError(endpoint_url=request.url)  # ... and its answer never comes

    dynamodb.meta.events.register_first("before-send.dynamodb.PutItem", deliver_then_time_out)
    try:
        reply = predict(client, rows(3, seed=9))
    finally:
        dynamodb.meta.events.unregister("before-send.dynamodb.PutItem", deliver_then_time_out)
    assert len(lost) == 1
    assert reply.status == 200 and reply.body["steps"] == 5
    assert client.state(USER).body["steps"] == 5
    assert raw_item(dynamodb, USER)["revision"]["N"] == "2"
