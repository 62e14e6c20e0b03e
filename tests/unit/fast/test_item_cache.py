"""The item cache (`store/cache.py`): a user continuing on one instance costs one round trip a request; a stale
entry (another instance wrote, deleted, TTL) costs two and applies nothing twice; a decision to write nothing is
never taken from the cache; the stream path reads only the users it does not hold. On both stores, each instance
a store object of its own on one table or file."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import numpy as np
import pytest

from carryover.composition import build_service, lifetimes
from carryover.http.lambda_handler import create_lambda_handler
from carryover.store import StateStore
from carryover.store.dynamodb import DynamoDBStateStore
from carryover.store.sqlite import SQLiteStateStore
from tests import streams
from tests.clients import HandlerClient
from tests.unit.conftest import TABLE, settings_for


class Calls:
    """A store's round trips, by what they were: reads of one item, of many, and conditional writes."""

    def __init__(self, store: StateStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.made: list[str] = []
        for name in ("_get", "_get_many", "_put"):
            original = getattr(store, name)
            monkeypatch.setattr(store, name, self._counted(name, original))

    def _counted(self, name: str, original: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.made.append(name.strip("_"))
            return original(*args, **kwargs)

        return call

    def since(self, mark: int) -> list[str]:
        return self.made[mark:]


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(params=["dynamodb", "sqlite"])
def instances(request, small, dynamodb, tmp_path) -> Iterator[Any]:
    """`open()`: a new instance (its own store and cache) on the one table or file, as a cold start builds it."""
    opened: list[StateStore] = []
    clock = Clock()
    settings = settings_for(small, {})

    def open_store() -> StateStore:
        if request.param == "dynamodb":
            return DynamoDBStateStore(dynamodb, TABLE, small.manifest.name, lifetimes(settings), clock)
        return SQLiteStateStore(tmp_path / "state.sqlite3", small.manifest.name, lifetimes(settings), clock)

    def open_instance() -> tuple[HandlerClient, StateStore]:
        store = open_store()
        opened.append(store)
        service = build_service(settings, small.bundles["litert"], store=store, clock=clock)
        return HandlerClient(create_lambda_handler(service, settings)), store

    open_instance.clock = clock  # type: ignore[attr-defined]
    yield open_instance
    for store in opened:
        if isinstance(store, SQLiteStateStore):
            store.close()


def rows(count: int, seed: int) -> list[list[float]]:
    return np.random.default_rng(seed).normal(size=(count, 8)).astype(np.float32).tolist()


def test_a_user_continuing_on_one_instance_costs_one_round_trip_a_request(instances, monkeypatch):
    client, store = instances()
    calls = Calls(store, monkeypatch)
    for index in range(5):
        assert client.predict("ana", rows(2, index)).status == 200
    assert calls.made == ["get", "put"] + ["put"] * 4
    assert client.state("ana").body["steps"] == 10


def test_another_writer_between_two_requests_costs_two_round_trips_and_applies_nothing_twice(instances, monkeypatch):
    first, store = instances()
    second, _ = instances()
    calls = Calls(store, monkeypatch)
    assert first.predict("ana", rows(2, 1)).body["steps"] == 2
    assert second.predict("ana", rows(3, 2)).body["steps"] == 5  # the other instance: read, write
    mark = len(calls.made)
    answer = first.predict("ana", rows(1, 3))
    assert answer.status == 200 and answer.body["steps"] == 6 and answer.body["state"] == "continued"
    assert calls.since(mark) == ["put", "put"]  # refused on the stale entry, returning the item; written on it
    assert first.predict("ana", rows(1, 4)).body["steps"] == 7 and calls.since(mark) == ["put", "put", "put"]


def test_a_delete_by_another_instance_is_seen_through_a_stale_entry(instances):
    first, _ = instances()
    second, _ = instances()
    first.predict("ana", rows(2, 1), key="k-1")
    assert second.delete("ana").status == 204
    again = first.predict("ana", rows(2, 1), key="k-1")  # cached: the reply is there; as it is: erased
    assert again.status == 409 and again.body["error"]["code"] == "already_applied"
    fresh = first.predict("ana", rows(2, 5))
    assert fresh.status == 200 and fresh.body["state"] == "new" and fresh.body["steps"] == 2


def test_a_keyed_retry_answers_what_a_fresh_read_answers(instances, monkeypatch):
    first, store = instances()
    calls = Calls(store, monkeypatch)
    applied = first.predict("ana", rows(2, 1), key="k-1")
    mark = len(calls.made)
    again = first.predict("ana", rows(2, 1), key="k-1")
    assert again.status == 200 and again.headers["idempotent-replayed"] == "true" and again.body == applied.body
    assert calls.since(mark) == ["get"]  # a replay writes nothing: decided on the item read, not the cache


def test_an_entry_past_the_states_ttl_is_read_again(instances, monkeypatch):
    first, store = instances()
    calls = Calls(store, monkeypatch)
    first.predict("ana", rows(2, 1))
    instances.clock.now += timedelta(days=31)
    mark = len(calls.made)
    answer = first.predict("ana", rows(2, 2))
    assert answer.body["state"] == "new" and answer.body["steps"] == 2 and calls.since(mark)[0] == "get"


def test_the_stream_reads_only_the_users_it_does_not_hold(small, dynamodb, monkeypatch):
    settings = settings_for(small, {})
    store = DynamoDBStateStore(dynamodb, TABLE, small.manifest.name, lifetimes(settings))
    calls = Calls(store, monkeypatch)
    tested = streams.ways_in(small, "litert", store, settings, streams.Sinks.create(boto3))
    shard = streams.Shard()
    for user in ("ana", "ben", "cy"):
        shard.put(user, streams.record_data(user, np.asarray(rows(1, 1), np.float32)))
    assert tested.stream.consume(shard.event(0, 3))["batchItemFailures"] == []
    assert calls.made == ["get_many", "put", "put", "put"]
    shard.put("dee", streams.record_data("dee", np.asarray(rows(1, 2), np.float32)))
    shard.put("ana", streams.record_data("ana", np.asarray(rows(1, 3), np.float32)))
    mark = len(calls.made)
    assert tested.stream.consume(shard.event(3, 5))["batchItemFailures"] == []
    assert calls.since(mark) == ["get", "put", "put"]  # only the new user read
    assert [tested.http.state(user).body["steps"] for user in ("ana", "dee")] == [2, 1]
