"""The stream path driven as Lambda's event source mapping drives it with this template's settings (bisection on
a function error, partial batch responses retried from the reported record, bounded retries; `ShardDelivery`),
with the function crashing, the answers stream throttled, records too large for a failure message and a long
reshard history, on both stores: every record applied exactly once, every applied record's answer published at
least once, nothing blocked."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.exceptions import ClientError

from carryover.composition import lifetimes
from carryover.store import StateStore
from carryover.store.dynamodb import DynamoDBStateStore, utc_now
from carryover.store.item import Live
from carryover.store.sqlite import SQLiteStateStore
from carryover.stream.sinks import MESSAGE_LIMIT, StreamAnswers
from infra.table import ensure_table
from tests import streams
from tests.unit.conftest import MAX_TIMESTEPS, settings_for


class Crash(Exception):
    """The function dies (a timeout, an out-of-memory kill) after its writes, before its answers are out."""


class FaultyKinesis:
    """The answers stream's client, failing PutRecords as `faults` says, in turn: "crash" (the function dies),
    "throttled" (Kinesis refuses, as botocore raises it after its retries), or None (it works)."""

    def __init__(self, client: Any, faults: list[str | None]) -> None:
        self._client, self.faults = client, faults

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def put_records(self, **params: Any) -> Any:
        fault = self.faults.pop(0) if self.faults else None
        if fault == "crash":
            raise Crash
        if fault == "throttled":
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "PutRecords")
        return self._client.put_records(**params)


@pytest.fixture
def seed(small):
    return small


def open_store(kind: str, seed, dynamodb, path) -> StateStore:
    settings = settings_for(seed, {})
    if kind == "dynamodb":
        ensure_table(dynamodb, path.name)
        return DynamoDBStateStore(dynamodb, path.name, seed.manifest.name, lifetimes(settings))
    return SQLiteStateStore(path / "state.sqlite3", seed.manifest.name, lifetimes(settings), utc_now)


@pytest.fixture(params=["dynamodb", "sqlite"])
def store(request, seed, dynamodb, tmp_path) -> Iterator[StateStore]:
    kept = open_store(request.param, seed, dynamodb, tmp_path)
    yield kept
    if isinstance(kept, SQLiteStateStore):
        kept.close()


def ways(
    seed, store: StateStore, faults: list[str | None] | None = None, name: str = "carryover"
) -> tuple[streams.Ways, streams.Sinks]:
    sinks = streams.Sinks.create(boto3, name)
    kinesis = FaultyKinesis(sinks.kinesis, faults or [])
    return streams.ways_in(seed, "litert", store, settings_for(seed, {}), sinks, kinesis), sinks


def covered(answers: list[dict[str, Any]]) -> set[str]:
    """The records the published answers cover, each once."""
    return {record["sequence_number"] for answer in answers for record in answer["records"]}


def rows(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, 8)).astype(np.float32)


def test_answers_are_published_after_a_crash_between_the_write_and_the_publish(seed, store):
    tested, sinks = ways(seed, store, faults=["crash"])
    shard = streams.Shard()
    first = shard.put("ana", streams.record_data("ana", rows(1, 1)))
    second = shard.put("ana", streams.record_data("ana", rows(1, 2)))
    delivered, passed_over = streams.delivery(shard, tested.stream)
    delivered.drain()  # [r1, r2] written, then the crash: Lambda bisects, [r1] and [r2] find them applied
    assert passed_over == [] and tested.http.state("ana").body["steps"] == 2
    assert covered(sinks.answers()) == {str(first), str(second)}


def test_answers_held_back_are_published_when_a_redelivery_brings_new_records(seed, store):
    tested, sinks = ways(seed, store, faults=["throttled"])
    shard = streams.Shard()
    sent = [shard.put("ana", streams.record_data("ana", rows(1, n))) for n in range(2)]
    delivered, _ = streams.delivery(shard, tested.stream)
    assert delivered.step() and delivered.checkpoint == 0  # answers throttled: "retry from r1"
    sent.append(shard.put("ana", streams.record_data("ana", rows(1, 3))))  # arrives before the retry reads
    delivered.drain()  # [r1, r2, r3]
    assert tested.http.state("ana").body["steps"] == 3
    assert covered(sinks.answers()) == {str(sequence) for sequence in sent}


def test_every_redelivery_publishes_every_applied_records_answer_and_applies_each_once(
    seed, store, dynamodb, tmp_path, request
):
    rng = np.random.default_rng(2207)
    faults = [str(rng.choice(["crash", "throttled"])) if rng.random() < 0.3 else None for _ in range(400)]
    tested, sinks = ways(seed, store, faults)
    shard = streams.Shard()
    wholes = streams.interleaved(seed, rng, shard, 6)
    delivered, passed_over = streams.delivery(shard, tested.stream, batch_size=9)
    delivered.drain()
    assert passed_over == []
    (tmp_path / "reference").mkdir()
    reference_store = open_store(request.node.callspec.params["store"], seed, dynamodb, tmp_path / "reference")
    reference, reference_sinks = ways(seed, reference_store, name="reference")
    streams.delivery(shard, reference.stream, batch_size=9)[0].drain()  # the same records, nothing failing
    answers, uninterrupted = streams.by_user(sinks.answers()), streams.by_user(reference_sinks.answers())
    name = seed.manifest.outputs[0].name
    for user, whole in wholes.items():
        ours, theirs = store.load(user), reference_store.load(user)
        assert isinstance(ours, Live) and isinstance(theirs, Live)
        assert ours.state.stream == theirs.state.stream == len(whole) and ours.applied == theirs.applied
        difference = np.frombuffer(ours.state.answering.blob, np.float32) - np.frombuffer(
            theirs.state.answering.blob, np.float32
        )
        assert np.abs(difference).max() <= 1e-6
        assert covered(answers[user]) == {str(seq) for seq, owner, _ in shard.records if owner == user}
        full = streams.outputs_of(uninterrupted[user], name)
        assert len(full) == len(whole)
        for answer in answers[user]:  # each answer, however often published, what it is without faults
            outputs = np.asarray(answer["outputs"][name])
            assert np.abs(outputs - full[answer["steps"] - answer["rows"] : answer["steps"]]).max() <= 1e-6


def test_large_refused_records_reach_the_failure_queue_and_block_nothing(seed, store):
    tested, sinks = ways(seed, store)
    shard = streams.Shard()
    large = json.dumps({"user_id": "ana", "inputs": [[0.125] * 8] * 3000}).encode()  # about 190 KB, too many rows
    good = []
    for index in range(20):
        if index % 3 == 1 and index < 18:
            shard.put("ana", large)
        else:
            good.append(shard.put("ana", streams.record_data("ana", rows(1, index))))
    huge = shard.put("ana", b'{"user_id": "ana", "inputs": "' + b"x" * 1_000_000 + b'"}')  # 1 MB
    delivered, passed_over = streams.delivery(shard, tested.stream)
    delivered.drain()
    assert passed_over == [] and tested.http.state("ana").body["steps"] == len(good) == 14
    failures = {message["sequence_number"]: message for message in sinks.failures()}
    assert len(failures) == 7 and all(len(json.dumps(m)) <= MESSAGE_LIMIT for m in failures.values())
    assert failures[str(huge)]["size"] == 1_000_032 and "data" not in failures[str(huge)]
    assert "GetShardIterator AT_SEQUENCE_NUMBER" in failures[str(huge)]["data_omitted"]
    carried = [m for m in failures.values() if "data" in m]
    assert len(carried) == 6 and all(m["reason"].endswith(f"at most {MAX_TIMESTEPS} timesteps, got 3000")
                                     for m in carried)  # fmt: skip


def test_a_long_reshard_history_read_again_applies_nothing_twice(seed, store):
    tested, sinks = ways(seed, store)
    shards = [streams.Shard(shard_id=f"shardId-{n:012d}", first=10**20 * (n + 1)) for n in range(10)]
    for number, shard in enumerate(shards):  # the user's key moves to a child shard at each reshard
        for index in range(2):
            shard.put("ana", streams.record_data("ana", rows(1, 10 * number + index)))
        streams.delivery(shard, tested.stream)[0].drain()
    assert tested.http.state("ana").body["steps"] == 20
    for shard in shards:  # a new event source mapping reads the stream again from TRIM_HORIZON
        streams.delivery(shard, tested.stream)[0].drain()
    state = tested.http.state("ana").body
    assert state["steps"] == 20 and state["stream"] == {shards[-1].shard_id: str(shards[-1].records[-1][0])}
    assert sinks.failures() == []


class PartlyFailing:
    """Kinesis PutRecords as documented under throttling: some records of a call refused (ErrorCode), the others
    taken. The first call refuses its first record; every record taken is kept, in the order it landed."""

    def __init__(self) -> None:
        self.landed: list[dict[str, Any]] = []
        self.calls = 0

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> Any:
        self.calls += 1
        results = []
        for index, record in enumerate(Records):
            if self.calls == 1 and index == 0:
                results.append({"ErrorCode": "ProvisionedThroughputExceededException"})
            else:
                self.landed.append(json.loads(record["Data"]))
                results.append({"SequenceNumber": str(len(self.landed))})
        return {"Records": results, "FailedRecordCount": int(self.calls == 1)}


def test_a_record_the_answers_stream_refuses_lands_before_its_users_next_answer():
    """A user's answers of one publishing land in their order, though PutRecords took a later one and refused an
    earlier one: a call holds one answer per user, and the next is sent once the one before has landed."""
    kinesis = PartlyFailing()
    events = [{"user_id": user, "id": f"{user}:{n}"} for user, n in (("ann", 1), ("ann", 2), ("bob", 1), ("ann", 3))]
    StreamAnswers(kinesis, "answers").publish(events)
    landed = [event["id"] for event in kinesis.landed]
    assert [e for e in landed if e.startswith("ann")] == ["ann:1", "ann:2", "ann:3"]
    assert sorted(landed) == sorted(event["id"] for event in events)
