"""The row log: every applied write's rows, from both ways in, in each user's order with the stream positions they
cover, resets and deletions included, each once: kept beside the items by the local store, and archived from the
table's change stream to S3 (delivered twice, it writes the same objects), compacted, read back whole; a DELETE
takes the user out of every later use at once; the bootstrap's worker, invoked as a Distributed Map child."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import boto3
import numpy as np
import pytest

from carryover.archive.archiver import Archiver
from carryover.archive.compaction import compact
from carryover.archive.layout import S3Log, partition_of
from carryover.bulk.lambda_handler import create_bulk_handler
from carryover.bundle import ModelBundle
from carryover.composition import lifetimes
from carryover.core.history import RowLog, history, ordered
from carryover.store import StateStore
from carryover.store.blobs import S3Blobs
from carryover.store.dynamodb import DynamoDBStateStore, utc_now
from carryover.store.item import Live
from carryover.store.sqlite import SQLiteLog, SQLiteStateStore
from infra.local.server import LocalContext
from tests import streams
from tests.changes import change_event
from tests.unit.conftest import TABLE, settings_for

BUCKET, PREFIX = "carryover-log", "log/"


@pytest.fixture(params=["sqlite", "dynamodb"])
def kept(request, small, dynamodb, tmp_path) -> Iterator[tuple[str, StateStore]]:
    settings = settings_for(small, {})
    if request.param == "dynamodb":
        yield "dynamodb", DynamoDBStateStore(dynamodb, TABLE, small.manifest.name, lifetimes(settings))
        return
    store = SQLiteStateStore(tmp_path / "state.sqlite3", small.manifest.name, lifetimes(settings), utc_now)
    yield "sqlite", store
    store.close()


@pytest.fixture
def s3(dynamodb) -> Any:
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)
    return client


def rows(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, 8)).astype(np.float32)


def the_log(kind: str, store: StateStore, dynamodb: Any, s3: Any, tmp_path: Path, model: str) -> RowLog:
    """The log as each store keeps it: the local one's table, or the change stream archived (twice) to S3."""
    if kind == "sqlite":
        return SQLiteLog(tmp_path / "state.sqlite3", model)
    event = change_event(dynamodb, boto3.client("dynamodbstreams"), TABLE)
    archiver = Archiver(s3, BUCKET, PREFIX)
    archiver.archive(event)
    first = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"])
    archiver.archive(event)  # the event source mapping delivers the batch again: the same objects
    assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]) == first
    return S3Log(s3, BUCKET, PREFIX, sorted({partition_of(u) for u in ("ana", "bob", "cy")}), model)


def test_every_applied_write_is_logged_once_with_positions_resets_and_deletions(small, kept, dynamodb, s3, tmp_path):
    kind, store = kept
    sinks = streams.Sinks.create(boto3)
    ways = streams.ways_in(small, "litert", store, settings_for(small, {}), sinks)
    shard = streams.Shard()
    sent = rows(12, 1)
    assert ways.http.predict("ana", sent[:3]).status == 200
    shard.put("ana", streams.record_data("ana", sent[3:5]))
    shard.put("bob", streams.record_data("bob", sent[:2]))
    assert ways.stream.consume(shard.event(0, 2)) == {"batchItemFailures": []}
    assert ways.http.predict("ana", sent[5:7], reset=True).status == 200  # the stream starts again
    last = shard.put("ana", streams.record_data("ana", sent[7:8]))
    assert ways.stream.consume(shard.event(2, 3)) == {"batchItemFailures": []}
    assert ways.http.predict("cy", sent[8:], key="k-1").status == 200
    assert ways.http.delete("bob").status == 204
    log = the_log(kind, store, dynamodb, s3, tmp_path, small.manifest.name)
    found = log.entries(["ana", "bob", "cy"])
    ana = history(found["ana"], 8)
    assert ana is not None and ana.whole and ana.steps == 3
    assert np.array_equal(ana.rows, sent[5:8])
    assert [(e.steps, [run.start for run in e.runs], e.records) for e in ordered(found["ana"])] == [
        (3, [0], ()), (5, [3], (f"{streams.SHARD}:{shard.records[0][0]}",)), (2, [0], ()),
        (3, [2], (f"{streams.SHARD}:{last}",)),
    ]  # fmt: skip
    assert history(found["bob"], 8) is None  # deleted: left out at once
    cy = history(found["cy"], 8)
    assert cy is not None and np.array_equal(cy.rows, sent[8:]) and [e.key for e in found["cy"]] != [None]
    if kind == "sqlite":
        assert log.users() == ["ana", "cy"]


def test_compaction_sorts_the_log_by_user_and_drops_deleted_users_rows(small, dynamodb, s3):
    store = DynamoDBStateStore(dynamodb, TABLE, small.manifest.name, lifetimes(settings_for(small, {})))
    http = streams.ways_in(small, "litert", store, settings_for(small, {}), streams.Sinks.create(boto3)).http
    for user in ("ana", "bob"):
        http.predict(user, rows(2, 3))
        http.predict(user, rows(1, 4))
    http.delete("bob")
    event = change_event(dynamodb, boto3.client("dynamodbstreams"), TABLE)
    Archiver(s3, BUCKET, PREFIX).archive(event)
    Archiver(s3, BUCKET, PREFIX).archive({"Records": event["Records"][:3]})  # a part delivered again, apart
    assert compact(s3, BUCKET, PREFIX, 0, datetime.now(UTC)) == 5 + 3
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert all(key.startswith(f"{PREFIX}part=") for key in keys)  # incoming/ emptied
    lines = [json.loads(line) for key in keys
             for line in s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode().splitlines()]  # fmt: skip
    assert len({line["write"] for line in lines if line["user_id"] == "ana"}) == 2
    assert [(line["user_id"], line.get("deleted")) for line in lines if line["user_id"] == "bob"] == [("bob", True)]
    log = S3Log(s3, BUCKET, PREFIX, [partition_of("ana")], small.manifest.name)
    found = history(log.entries(["ana"])["ana"], 8)
    assert found is not None and found.whole and found.steps == 3


def test_a_request_whose_rows_cannot_be_logged_is_refused_up_front(backend):
    client = backend.make_client(MAX_TIMESTEPS="20000")
    refused = client.predict("dora", [[0.5] * 8] * 15_000)
    assert refused.status == 422 and "rows are logged with its write" in refused.body["error"]["message"]
    assert backend.items.get("dora") is None
    assert (
        backend.make_client(MAX_TIMESTEPS="20000", ROW_LOG="false").predict("dora", [[0.5] * 8] * 15_000).status == 200
    )


def with_next(small, root: Path) -> Path:
    """The small bundle keeping a next version beside it (the same model under another version name: step 1 of a
    rollout), as the exporter lays one out."""
    bundle = root / "bundle"
    shutil.copytree(small.path, bundle)
    shutil.copytree(small.path, bundle / "next")
    manifest = json.loads((bundle / "next" / "manifest.json").read_text())
    (bundle / "next" / "manifest.json").write_text(json.dumps(manifest | {"version": "next-version"}))
    top = json.loads((bundle / "manifest.json").read_text())
    (bundle / "manifest.json").write_text(json.dumps(top | {"companion": {"role": "next", "directory": "next"}}))
    return bundle


def _stores(small: Any, dynamodb: Any, s3: Any, objects: bool) -> tuple[StateStore, StateStore]:
    """The request path's store and the bootstrap's, on one table (`objects`: every state and logged run kept as
    an object in S3, which only the bootstrap's reads fetch the rows of)."""
    settings = settings_for(small, {})
    serving, bootstrap = (DynamoDBStateStore(dynamodb, TABLE, small.manifest.name, lifetimes(settings)) for _ in "ab")
    if objects:
        s3.create_bucket(Bucket="states")
        serving.keep_states_in(S3Blobs(s3, "states"), always=True)
        bootstrap.keep_states_in(S3Blobs(s3, "states"), always=True, logged_rows=True)
    return serving, bootstrap


@pytest.mark.parametrize("objects", [False, True], ids=["in-items", "in-objects"])
def test_the_worker_bootstraps_a_distributed_map_childs_batch_of_partitions(small, dynamodb, s3, tmp_path, objects):
    """Invoked with the event a Distributed Map child receives from its item batcher: the next version's state over
    each user's whole history, for the users of its partitions; an active user's newest write, not in the log yet,
    caught up from the item (its rows fetched from their object when kept as one)."""
    settings = settings_for(small, {})
    serving, store = _stores(small, dynamodb, s3, objects)
    http = streams.ways_in(small, "litert", serving, settings, streams.Sinks.create(boto3)).http
    users = [f"user-{index}" for index in range(6)]
    for index, user in enumerate(users):
        for chunk in range(3):
            http.predict(user, rows(1 + chunk, 10 * index + chunk))
    blobs = S3Blobs(s3, "states") if objects else None
    Archiver(s3, BUCKET, PREFIX, blobs).archive(change_event(dynamodb, boto3.client("dynamodbstreams"), TABLE))
    http.predict("user-0", rows(2, 99))  # written after the log was read: active during the bootstrap
    bundle = ModelBundle.load(with_next(small, tmp_path), "litert")
    handler = create_bulk_handler(bundle, store, s3, settings, utc_now)
    partitions = sorted({partition_of(user) for user in users})
    event = {"Items": [{"partition": p} for p in partitions], "BatchInput": {"bucket": BUCKET, "prefix": PREFIX}}
    answer = handler(event, cast(Any, LocalContext("map-child")))
    assert answer["users"] == {"written": 6} and answer["rows"] == 6 * 6 + 2
    for user in users:
        stored = store.load(user)
        assert isinstance(stored, Live)
        answering, bootstrapped = stored.state.models[0], stored.state.of("next-version", None)
        assert bootstrapped is not None and (bootstrapped.since, bootstrapped.at) == (0, stored.state.stream)
        difference = np.frombuffer(answering.blob, np.float32) - np.frombuffer(bootstrapped.blob, np.float32)
        assert float(np.abs(difference).max()) <= 1e-5  # the same model over the same rows, chunked or not
    assert handler(event, cast(Any, LocalContext("again")))["users"] == {"current": 6}  # run again: nothing to do


def test_a_request_reads_its_state_object_but_never_the_rows_logged_beside_it(small, dynamodb, s3):
    """States kept as objects with the row log on: each write puts the state and the rows it logged; a request
    reads back the state alone (the rows are for the archiver and the bootstrap)."""
    serving, _ = _stores(small, dynamodb, s3, objects=True)
    calls = {"GetObject": 0, "PutObject": 0}
    for name in calls:
        s3.meta.events.register(
            f"before-call.s3.{name}", lambda name=name, **_: calls.__setitem__(name, calls[name] + 1)
        )
    uncached = settings_for(small, {"ITEM_CACHE_MB": "0"})  # every request reads its item
    http = streams.ways_in(small, "litert", serving, uncached, streams.Sinks.create(boto3)).http
    for index in range(5):
        assert http.predict("reader", rows(2, index)).status == 200
    assert calls == {"GetObject": 4, "PutObject": 10}  # the first request found no item


def test_the_archiver_fetches_the_rows_a_write_logged_never_its_states(small, dynamodb, s3):
    """States and logged rows kept as objects: the archiver reads back each write's rows (the log holds them) and
    none of its states (the log holds none), and logs every row sent."""
    serving, _ = _stores(small, dynamodb, s3, objects=True)
    http = streams.ways_in(small, "litert", serving, settings_for(small, {}), streams.Sinks.create(boto3)).http
    sent = [rows(2, index) for index in range(3)]
    for chunk in sent:
        assert http.predict("ada", chunk).status == 200
    event = change_event(dynamodb, boto3.client("dynamodbstreams"), TABLE)
    images = [record["dynamodb"]["NewImage"] for record in event["Records"]]
    states = {image["state_ref"]["S"] for image in images}
    fetched: list[str] = []
    s3.meta.events.register("provide-client-params.s3.GetObject", lambda params, **_: fetched.append(params["Key"]))
    assert Archiver(s3, BUCKET, PREFIX, S3Blobs(s3, "states")).archive(event) == 3
    assert len(fetched) == 3 and not any(key.removeprefix("states/") in states for key in fetched)
    logged = S3Log(s3, BUCKET, PREFIX, [partition_of("ada")], small.manifest.name).entries(["ada"])["ada"]
    got = np.concatenate([run.rows(8) for entry in sorted(logged, key=lambda e: e.order) for run in entry.runs])
    assert np.array_equal(got, np.concatenate(sent))
