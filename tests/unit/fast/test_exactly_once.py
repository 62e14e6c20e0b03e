"""Idempotency keys and writes of unknown outcome: a request is applied once, whatever is retried."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from carryover.core.domain import digest
from carryover.store.codec import parse, write_units
from carryover.store.item import Expired, Live
from infra.local.server import LocalContext
from tests.unit.conftest import Backend

USER = "dora"


def predict(client, inputs, key: str | None = None, raw_body: str | None = None, user: str = USER):
    event = client.event("POST", f"/users/{user}/predict", raw_body or json.dumps({"inputs": inputs}))
    if key is not None:
        event["headers"]["idempotency-key"] = key
    return client.invoke(event)


def rows(count: int, seed: int = 0) -> list[list[float]]:
    return np.random.default_rng(seed).normal(size=(count, 8)).astype(np.float32).tolist()


def remembered_keys(backend: Backend, user: str = USER) -> list[bytes]:
    stored = parse(backend.items.get(user), datetime.now(UTC))
    assert isinstance(stored, Live | Expired), stored
    return [record.key for record in stored.keys]


class Clock:
    """A clock the test moves; the service and the store read the same one."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_repeat_with_same_key_returns_identical_response_and_applies_once(backend):
    client = backend.make_client()
    first = predict(client, rows(3), key="order-1")
    assert first.status == 200 and "idempotent-replayed" not in first.headers
    item = backend.items.get(USER)
    again = predict(client, rows(3), key="order-1")
    assert again.status == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.body == first.body
    assert backend.items.get(USER) == item  # nothing written
    assert client.state(USER).body["steps"] == 3


def test_replay_is_the_same_bytes(backend):
    client = backend.make_client()
    event = client.event("POST", f"/users/{USER}/predict", json.dumps({"inputs": rows(4, seed=8)}))
    event["headers"]["idempotency-key"] = "bytes"
    first, again = (client.handler(json.loads(json.dumps(event)), LocalContext(name)) for name in ("a", "b"))
    assert again["body"] == first["body"]


def test_same_request_written_differently_is_the_same_request(backend):
    client = backend.make_client()
    first = predict(client, [[1, 2, 3, 4, 5, 6, 7, 8]], key="k")
    again = predict(
        client, None, key="k", raw_body='{ "inputs" : [[1.0,2.0,3.0,4.0,5.0,6.0,7.0,8.0]] , "reset": false }'
    )
    assert again.status == 200 and again.body == first.body


def test_negative_zero_is_zero(backend):
    client = backend.make_client()
    first = predict(client, None, key="z", raw_body='{"inputs": [[0.0, 1, 2, 3, 4, 5, 6, 7]]}')
    again = predict(client, None, key="z", raw_body='{"inputs": [[-0.0, 1, 2, 3, 4, 5, 6, 7]]}')
    assert again.status == 200 and again.headers["idempotent-replayed"] == "true" and again.body == first.body


def test_same_key_with_another_body_is_409_and_changes_nothing(backend):
    client = backend.make_client()
    predict(client, rows(2), key="k1")
    before = backend.items.get(USER)
    reply = predict(client, rows(2, seed=1), key="k1")
    assert reply.status == 409 and reply.body["error"]["code"] == "idempotency_key_reused"
    assert backend.items.get(USER) == before


def test_keys_are_per_user(backend):
    client = backend.make_client()
    assert predict(client, rows(1), key="shared").status == 200
    assert predict(client, rows(1, seed=5), key="shared", user="eve").status == 200


def test_crash_after_state_write_before_response_then_retry_applies_once(backend, monkeypatch):
    """The first attempt dies after DynamoDB accepted its write: the retry returns that attempt's outcome."""
    client = backend.make_client()
    inputs = rows(4, seed=3)
    save = backend.store_class.save

    def save_then_die(self, *args, **kwargs):
        save(self, *args, **kwargs)
        raise SystemExit("the Lambda instance died before answering")

    monkeypatch.setattr(backend.store_class, "save", save_then_die)
    with pytest.raises(SystemExit):
        predict(client, inputs, key="crash-1")
    monkeypatch.setattr(backend.store_class, "save", save)

    retried = predict(client, inputs, key="crash-1")
    assert retried.status == 200 and retried.headers["idempotent-replayed"] == "true"
    assert retried.body["steps"] == 4 and retried.body["state"] == "new"
    assert client.state(USER).body["steps"] == 4
    once = predict(client, inputs, user="once")  # the same rows applied once, from a new state
    assert retried.body["outputs"] == once.body["outputs"]
    assert predict(client, inputs, key="crash-1").body == retried.body


def test_key_older_than_the_window_is_a_new_request(backend):
    """Keys are remembered IDEMPOTENCY_TTL_HOURS (24 by default); after that the same key is a new request."""
    clock = Clock()
    client = backend.make_client(clock=clock)
    predict(client, rows(1), key="old")
    clock.now += timedelta(hours=23, minutes=59)
    assert predict(client, rows(1), key="old").headers["idempotent-replayed"] == "true"
    clock.now += timedelta(minutes=2)
    reply = predict(client, rows(1), key="old")
    assert reply.status == 200 and "idempotent-replayed" not in reply.headers and reply.body["steps"] == 2
    assert remembered_keys(backend) == [digest("old")]  # the stale record dropped, the new one kept


def test_window_of_keys_holds_whatever_the_response_size(backend):
    """The newest IDEMPOTENCY_KEYS keys (32) are never forgotten, however large the responses: a repeat of any
    of them is recognised and applies nothing; the newest is replayed; the 33rd newest counts as new."""
    client = backend.make_client(MAX_TIMESTEPS="1000")
    big = rows(1000, seed=4)
    for index in range(40):
        assert predict(client, big, key=f"k{index}").status == 200
    item = backend.items.get(USER)
    assert remembered_keys(backend) == [digest(f"k{index}") for index in range(39, 7, -1)]
    newest = predict(client, big, key="k39")
    assert newest.status == 200 and newest.headers["idempotent-replayed"] == "true" and newest.body["steps"] == 40_000
    for index in (8, 20, 38):
        repeat = predict(client, big, key=f"k{index}")
        assert repeat.status == 409 and repeat.body["error"]["code"] == "already_applied"
        assert f"k{index}" in repeat.body["error"]["message"]
    assert backend.items.get(USER) == item
    assert predict(client, big, key="k7").body["steps"] == 41_000  # beyond the window: a new request


def test_only_the_newest_keys_are_kept(backend):
    client = backend.make_client(IDEMPOTENCY_KEYS="3")
    for index in range(5):
        predict(client, rows(1, seed=index), key=f"k{index}")
    assert remembered_keys(backend) == [digest("k4"), digest("k3"), digest("k2")]
    assert predict(client, rows(1, seed=4), key="k4").headers["idempotent-replayed"] == "true"


def test_keyed_response_too_large_to_record_is_refused_up_front(backend):
    """At the largest allowed settings a keyed request whose response cannot be recorded is a 422 saying
    why, before anything runs; without a key the same request is applied."""
    client = backend.make_client(MAX_TIMESTEPS="60000", MAX_BODY_BYTES=str(10 * 1024 * 1024), ROW_LOG="false")
    many = [[0.25] * 8] * 45_000
    refused = predict(client, many, key="huge")
    assert refused.status == 422 and refused.body["error"]["code"] == "unprocessable"
    assert (
        "at most 16384 timesteps" in refused.body["error"]["message"]
        and "Idempotency-Key" in refused.body["error"]["message"]
    )
    assert backend.items.get(USER) is None
    assert predict(client, many[:16_384], key="largest").status == 200
    assert predict(client, many).body["steps"] == 16_384 + 45_000


@pytest.mark.parametrize("key", ["", "x" * 129, "tab\there", "é"])
def test_bad_idempotency_key_is_400(backend, key):
    reply = predict(backend.make_client(), rows(1), key=key)
    assert reply.status == 400 and "Idempotency-Key" in reply.body["error"]["message"]
    assert backend.items.get(USER) is None


def test_retry_after_delete_is_recognised_not_applied(backend):
    """DELETE erases the state and the recorded response but keeps the keys for their window."""
    client = backend.make_client()
    predict(client, rows(2), key="before-delete")
    assert client.delete(USER).status == 204
    item = backend.items.saved(USER)
    assert "state" not in item and "reply" not in item and client.state(USER).status == 404
    again = predict(client, rows(2), key="before-delete")
    assert again.status == 409 and again.body["error"]["code"] == "already_applied"
    assert backend.items.get(USER) == item
    fresh = predict(client, rows(2), key="after-delete")
    assert fresh.status == 200 and fresh.body["state"] == "new" and fresh.body["steps"] == 2


@pytest.mark.parametrize("retries", [{}, {"CONFLICT_RETRIES": "0"}], ids=["retries left", "last attempt"])
def test_write_of_unknown_outcome_is_not_applied_twice(backend, retries):
    """The PutItem lands, its answer is lost, botocore retries it: the retry's condition fails on our own
    write, and the service recognises that write instead of applying it again. With no conflict retries left,
    that write is still what the retry conflicted with: the request was applied, so it answers 200 (a 409 would
    make the client send it again and apply it twice)."""
    client = backend.make_client(**retries)
    assert predict(client, rows(2)).status == 200
    with backend.lost_answer() as fault:
        reply = predict(client, rows(3, seed=9))
    assert fault.lost == 1
    assert reply.status == 200 and reply.body["steps"] == 5
    assert client.state(USER).body["steps"] == 5
    assert backend.items.saved(USER)["revision"]["N"] == "2"


@pytest.mark.parametrize("others", [1, 15])
def test_lost_answer_then_other_writers_is_not_applied_twice(backend, others):
    """A's write lands and its answer is lost; B (and more) land before A is retried: A still finds its
    own write among the recent ones and answers with it, applied once."""
    a, b = backend.make_client(), backend.make_client()
    assert predict(a, rows(1)).status == 200

    def other_writers():
        for index in range(others):
            assert predict(b, rows(1, seed=20 + index)).status == 200

    with backend.lost_answer(other_writers) as fault:
        reply = predict(a, rows(5, seed=9))
    assert fault.lost == 1
    assert reply.status == 200 and reply.body["steps"] == 6
    assert client_steps(a) == 1 + 5 + others
    assert backend.items.saved(USER)["revision"]["N"] == str(2 + others)


def test_lost_answer_beyond_the_history_is_refused_not_applied(backend):
    """More writers landed than the write history covers: A cannot tell, so it says so and writes nothing."""
    a, b = backend.make_client(), backend.make_client()
    assert predict(a, rows(1)).status == 200

    def many_writers():
        for index in range(16):
            predict(b, rows(1, seed=40 + index))

    with backend.lost_answer(many_writers):
        reply = predict(a, rows(5, seed=9))
    assert reply.status == 409 and reply.body["error"]["code"] == "outcome_unknown"
    assert client_steps(a) == 1 + 5 + 16


def client_steps(client) -> int:
    return client.state(USER).body["steps"]


def test_write_cost_of_a_key_is_at_most_one_unit(backend):
    """Per request, a keyed write costs at most 1 WCU more than the same stream without keys, for responses
    up to 1 KB, however long the user has streamed (state_item's size bound)."""
    for count in (1, 10):
        keyed, plain = backend.make_client(), backend.make_client()
        costs: dict[str, list[int]] = {"keyed": [], "plain": []}
        for index in range(40):
            inputs = rows(count, seed=index)
            for name, client, key in (("keyed", keyed, f"c{index}"), ("plain", plain, None)):
                user = f"{name}-{count}"
                before = backend.items.get(user)
                reply = predict(client, inputs, key=key, user=user)
                assert reply.status == 200
                costs[name].append(write_units(before, backend.items.saved(user)))
        assert len(json.dumps(reply.body)) <= 1024
        assert all(k - p <= 1 for k, p in zip(costs["keyed"], costs["plain"], strict=True)), costs


def test_a_crash_between_the_state_object_and_the_item_applies_once(backend, monkeypatch):
    """States kept as objects (as states too large for an item are): the object is written first, then the
    conditional write of the item that names it. Dying between the two leaves an object nothing names; the retry
    applies the request once, answering what applying it once answers."""
    if backend.name != "objects":
        pytest.skip("states kept as objects only")
    client = backend.make_client()
    inputs = rows(4, seed=11)
    put = backend.store_class._put

    def dies_before_the_item(self, *args, **kwargs):
        raise SystemExit("the Lambda instance died between the object and the item")

    monkeypatch.setattr(backend.store_class, "_put", dies_before_the_item)
    with pytest.raises(SystemExit):
        predict(client, inputs, key="between")
    monkeypatch.setattr(backend.store_class, "_put", put)
    assert backend.items.get(USER) is None  # the item never was: nothing applied
    retried = predict(client, inputs, key="between")
    assert retried.status == 200 and "idempotent-replayed" not in retried.headers
    assert retried.body["steps"] == 4 and client.state(USER).body["steps"] == 4
    assert retried.body["outputs"] == predict(client, inputs, user="once").body["outputs"]
    assert predict(client, inputs, key="between").headers["idempotent-replayed"] == "true"
