"""Stream records applied exactly once whatever Lambda delivers: every batch twice, batches cut anywhere, a crash
after some users' writes landed, a store outage; records that cannot be applied go to the failure queue and do
not block their user's later records."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from typing import Any, cast

import boto3
import numpy as np
import pytest
from botocore.exceptions import EndpointConnectionError

from carryover.composition import lifetimes
from carryover.store import StateStore
from carryover.store.codec import parse
from carryover.store.dynamodb import utc_now
from carryover.store.item import Live
from carryover.store.sqlite import SQLiteStateStore
from infra.table import ensure_table
from layers.exporter.verify import TOLERANCE
from tests import streams
from tests.dynamodb_server import DynamoDBServer
from tests.stores import MODEL, DynamoDBItems
from tests.unit.conftest import TABLE, settings_for

USERS = 4


class Crash(Exception):
    """The function dies mid-batch (a timeout, an out-of-memory kill)."""


def on_put(client: Any, fail: Any) -> Any:
    """Calls `fail(user)` before each PutItem the client sends; returns the hook, to unregister it."""

    def hook(params: dict[str, Any], **_: Any) -> None:
        fail(params["Item"]["user_id"]["S"])

    client.meta.events.register("before-parameter-build.dynamodb.PutItem", hook)
    return hook


def crash_after(writes: int) -> Any:
    """A crash at the write after `writes` writes landed."""
    left = iter(range(writes, -1, -1))

    def crash(_: str) -> None:
        if next(left, 0) == 0:
            raise Crash

    return crash


def states(items: DynamoDBItems, users: list[str]) -> dict[str, tuple[int, bytes, dict[str, int]]]:
    found = {}
    for user in users:
        stored = parse(items.get(user, MODEL), utc_now())
        assert isinstance(stored, Live), user
        found[user] = (stored.state.stream, stored.state.answering.blob, stored.applied.last)
    return found


@pytest.fixture
def seed(served):
    return served["seed"]


def ways(dynamodb, seed, sinks: streams.Sinks, table: str = TABLE) -> streams.Ways:
    settings = settings_for(seed, {})
    return streams.ways_in(seed, "litert", streams.dynamodb_store(settings, seed, dynamodb, table), settings, sinks)


def test_every_redelivery_applies_each_record_exactly_once(dynamodb, seed):
    rng = np.random.default_rng(1818)
    shard = streams.Shard()
    wholes = streams.interleaved(seed, rng, shard, USERS)
    users = list(wholes)
    ensure_table(dynamodb, "reference")
    reference_ways = ways(dynamodb, seed, streams.Sinks.create(boto3, "reference"), "reference")
    for start in range(0, len(shard.records), 7):
        assert reference_ways.stream.consume(shard.event(start, start + 7)) == {"batchItemFailures": []}
    sinks = streams.Sinks.create(boto3)
    tested = ways(dynamodb, seed, sinks)
    start, crashes = 0, 0
    while start < len(shard.records):
        end = start + int(rng.integers(1, 12))
        in_batch = len({owner for _, owner, _ in shard.records[start:end]})
        if in_batch > 1:  # a crash after some users' writes landed: Lambda delivers the batch again
            hook = on_put(dynamodb, crash_after(int(rng.integers(1, in_batch))))
            with pytest.raises(Crash):
                tested.stream.consume(shard.event(start, end))
            dynamodb.meta.events.unregister("before-parameter-build.dynamodb.PutItem", hook)
            crashes += 1
        assert tested.stream.consume(shard.event(start, end)) == {"batchItemFailures": []}
        assert tested.stream.consume(shard.event(start, end)) == {"batchItemFailures": []}  # every batch twice
        again = int(rng.integers(0, end))  # delivered again from an earlier point, cut elsewhere
        assert tested.stream.consume(shard.event(again, end)) == {"batchItemFailures": []}
        start = end
    assert crashes >= 3

    reference = states(DynamoDBItems(dynamodb, "reference"), users)
    applied = states(DynamoDBItems(dynamodb, TABLE), users)
    for user in users:
        assert applied[user][0] == reference[user][0] == len(wholes[user])
        assert applied[user][2] == reference[user][2]
        difference = np.abs(np.frombuffer(applied[user][1], np.float32) - np.frombuffer(reference[user][1], np.float32))
        assert float(difference.max()) <= 1e-6
    answers = streams.by_user(sinks.answers())
    name = seed.manifest.outputs[0].name
    for user, whole in wholes.items():
        covered = [r["sequence_number"] for a in answers[user] for r in a["records"]]
        assert covered == [str(seq) for seq, owner, _ in shard.records if owner == user]  # each once, in order
        full = seed.graph.reference(seed.keras_model, whole)[name]
        assert float(np.max(np.abs(streams.outputs_of(answers[user], name) - full))) <= TOLERANCE


def test_records_that_cannot_be_applied_go_to_the_failure_queue_and_block_nothing(dynamodb, seed):
    sinks = streams.Sinks.create(boto3)
    tested = ways(dynamodb, seed, sinks)
    rng = np.random.default_rng(3)
    rows = rng.normal(size=(6, 8)).astype(np.float32)
    shard = streams.Shard()
    shard.put("ana", streams.record_data("ana", rows[:2]))
    bad_json = shard.put("ana", b'{"user_id": "ana", "inputs": [[1, 2')
    wrong_features = shard.put("ana", streams.record_data("ana", [[0.5] * 7]))
    shard.put("ana", streams.record_data("ana", rows[2:6]))
    other_key = shard.put("ana", streams.record_data("bob", rows[:1]))
    assert tested.stream.consume(shard.event(0, 5)) == {"batchItemFailures": []}
    failures = {message["sequence_number"]: message for message in sinks.failures()}
    assert set(failures) == {str(bad_json), str(wrong_features), str(other_key)}
    assert failures[str(bad_json)]["code"] == "invalid_json"
    assert failures[str(wrong_features)]["reason"] == "inputs: row 0 has 7 values, expected 8 features"
    assert "partition key" in failures[str(other_key)]["reason"]
    assert json.loads(base64.b64decode(failures[str(other_key)]["data"]))["user_id"] == "bob"
    assert tested.http.state("ana").body["steps"] == 6  # the records after the bad ones applied
    assert tested.http.state("bob").status == 404
    assert tested.stream.consume(shard.event(0, 5)) == {"batchItemFailures": []}
    assert sinks.failures() == []  # behind ana's position now: not sent again
    assert tested.http.state("ana").body["steps"] == 6


def test_a_store_outage_restarts_the_shard_at_the_first_unapplied_record(dynamodb, seed):
    sinks = streams.Sinks.create(boto3)
    tested = ways(dynamodb, seed, sinks)
    rows = np.random.default_rng(4).normal(size=(4, 8)).astype(np.float32)
    shard = streams.Shard()
    shard.put("ana", streams.record_data("ana", rows[:1]))
    first_of_bob = shard.put("bob", streams.record_data("bob", rows[1:2]))
    shard.put("ana", streams.record_data("ana", rows[2:3]))
    shard.put("bob", streams.record_data("bob", rows[3:4]))

    def unreachable(user: str) -> None:
        if user == "bob":
            raise EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")

    hook = on_put(dynamodb, unreachable)
    assert tested.stream.consume(shard.event(0, 4)) == {"batchItemFailures": [{"itemIdentifier": str(first_of_bob)}]}
    assert tested.http.state("ana").body["steps"] == 2 and tested.http.state("bob").status == 404
    dynamodb.meta.events.unregister("before-parameter-build.dynamodb.PutItem", hook)
    assert tested.stream.consume(shard.event(shard.index(str(first_of_bob)), 4)) == {"batchItemFailures": []}
    assert tested.http.state("ana").body["steps"] == 2 and tested.http.state("bob").body["steps"] == 2

    def unreadable(params: dict[str, Any], **_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")

    for read in ("GetItem", "BatchGetItem"):  # one user's item is read alone, many users' together
        dynamodb.meta.events.register(f"before-parameter-build.dynamodb.{read}", unreadable)
    shard.put("cy", streams.record_data("cy", rows[:1]))  # a user this instance does not hold: read first
    assert tested.stream.consume(shard.event(4, 5)) == {
        "batchItemFailures": [{"itemIdentifier": str(shard.records[4][0])}]
    }


class Endpoint:
    """boto3 clients of one endpoint: moto's server, which serves SQS and Kinesis beside DynamoDB."""

    def __init__(self, url: str) -> None:
        self.url = url

    def client(self, name: str) -> Any:
        return cast(Any, boto3.client)(name, endpoint_url=self.url)  # a service named at run time


@pytest.fixture(params=["sqlite", "dynamodb"])
def two_instances(request, seed, tmp_path) -> Iterator[tuple[streams.Sinks, list[StateStore]]]:
    """The failure queue and answers stream, and a store for each of two instances on one state: a SQLite file
    (SQS and Kinesis moto's, in process), or a DynamoDB over HTTP (moto's server, one request at a time, as
    DynamoDB applies a conditional write atomically; in-process moto does not under threads)."""
    settings = settings_for(seed, {})
    if request.param == "sqlite":
        request.getfixturevalue("dynamodb")
        path = tmp_path / "state.sqlite3"
        files = [SQLiteStateStore(path, seed.manifest.name, lifetimes(settings), utc_now) for _ in range(2)]
        yield streams.Sinks.create(boto3), list(files)
        for file in files:
            file.close()
        return
    server = DynamoDBServer().start()
    endpoint = Endpoint(server.endpoint)
    ensure_table(endpoint.client("dynamodb"), TABLE)
    yield (
        streams.Sinks.create(endpoint),
        [streams.dynamodb_store(settings, seed, endpoint.client("dynamodb"), TABLE) for _ in range(2)],
    )
    server.stop()


def test_an_http_request_and_a_stream_record_on_one_user_at_once_lose_and_double_nothing(seed, two_instances):
    settings = settings_for(seed, {})
    sinks, stores = two_instances
    stream_way = streams.ways_in(seed, "litert", stores[0], settings, sinks).stream
    http = streams.ways_in(seed, "litert", stores[1], settings, sinks).http  # another instance, as on Lambda
    rng = np.random.default_rng(5)
    shard = streams.Shard()
    http_chunks = [rng.normal(size=(int(rng.integers(1, 4)), 8)).astype(np.float32) for _ in range(12)]
    stream_chunks = [rng.normal(size=(int(rng.integers(1, 4)), 8)).astype(np.float32) for _ in range(12)]
    for chunk in stream_chunks:
        shard.put("eve", streams.record_data("eve", chunk))
    ended: dict[int, tuple[np.ndarray, Any]] = {}  # where each chunk's answer ends -> the chunk, its outputs
    name = seed.manifest.outputs[0].name

    def send_http() -> None:
        for chunk in http_chunks:
            reply = http.predict("eve", chunk)
            assert reply.status == 200, reply.body
            ended[reply.body["steps"]] = (chunk, reply.body["outputs"][name])

    def send_stream() -> None:
        for index in range(len(shard.records)):
            assert stream_way.consume(shard.event(index, index + 1)) == {"batchItemFailures": []}

    threads = [threading.Thread(target=send_http), threading.Thread(target=send_stream)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for answer in sinks.answers():
        chunk = stream_chunks[shard.index(answer["records"][0]["sequence_number"])]
        ended[answer["steps"]] = (chunk, answer["outputs"][name])
    total = sum(len(chunk) for chunk in http_chunks + stream_chunks)
    assert len(ended) == 24 and max(ended) == total and http.state("eve").body["steps"] == total
    whole = np.concatenate([ended[end][0] for end in sorted(ended)])  # the rows in the order they were applied
    full = seed.graph.reference(seed.keras_model, whole)[name]
    for end, (chunk, outputs) in ended.items():  # each answer continues exactly the state the one before left
        assert float(np.max(np.abs(np.asarray(outputs) - full[end - len(chunk) : end]))) <= TOLERANCE
