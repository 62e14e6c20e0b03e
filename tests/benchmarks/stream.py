"""The stream path's figures for `make bench`: batches of 100 and 1,000 records over 10 and 100 users through the
stream function (one BatchGetItem per 100 users, the engine once across users, one conditional PutItem per
user, the answers published to a Kinesis stream), against the HTTP path's per request, in one run."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from carryover.bundle import ModelBundle
from carryover.composition import build_service, build_store
from carryover.config import Settings
from carryover.manifest import Manifest
from carryover.store.codec import item_key, read_units, write_units
from carryover.stream.composition import build_consumer
from carryover.stream.lambda_handler import create_stream_handler
from carryover.stream.sinks import FileFailures, StreamAnswers
from infra.local.server import LocalContext
from tests import streams
from tests.benchmarks import report

SHAPES = ((100, 10), (100, 100), (1000, 10), (1000, 100))  # (records per batch, users)
TIMED_BATCHES = 2
ANSWERS = "bench-answers"
# Prices, us-east-1, as AWS published them on 2024-11-01 (USD): Lambda arm64 per GB-second and per million
# requests; HTTP API per million requests; Kinesis (provisioned) per million PUT payload units of 25 KB, its
# shard hours not counted (they do not grow with the records); DynamoDB on-demand per million request units.
PRICE = {"gb_second": 0.0000133334, "invoke": 0.20, "http_api": 1.00, "put_unit": 0.014, "write": 0.625, "read": 0.125}
MEMORY_GB = 1.0  # template.yaml's MemorySize 1024
CONTEXT: Any = LocalContext(aws_request_id="bench-stream")  # what the handler reads of Lambda's context


def lambda_usd(milliseconds: float) -> float:
    """What one invocation of `milliseconds` costs on arm64 at 1 GB, request included."""
    return milliseconds / 1000 * MEMORY_GB * PRICE["gb_second"] + PRICE["invoke"] / 1e6


def _items(client: Any, table: str, manifest: Manifest, users: list[str]) -> dict[str, Any]:
    """The users' items as stored (None: none yet)."""
    keys = {user: item_key(user, manifest.name) for user in users}
    return {
        user: client.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item") for user, key in keys.items()
    }


def _batch(shard: streams.Shard, users: list[str], records: int, rows: np.ndarray, start: int) -> tuple[int, int]:
    """Puts `records` one-row records round-robin over `users`; the slice of the shard they are."""
    first = len(shard.records)
    for index in range(records):
        user = users[index % len(users)]
        shard.put(user, streams.record_data(user, rows[(start + index) % len(rows)][np.newaxis]))
    return first, len(shard.records)


def measure(
    settings: Settings, bundle: ModelBundle, client: Any, kinesis: Any, records: int, users: int
) -> dict[str, float]:
    """One shape: a warm-up batch (every user then exists), then TIMED_BATCHES batches timed."""
    store = build_store(settings, bundle, client)
    service = build_service(settings, bundle, client, store=store)
    with tempfile.TemporaryDirectory() as scratch:
        failures = FileFailures(Path(scratch) / "failures.jsonl")
        consumer = build_consumer(settings, service, failures, StreamAnswers(kinesis, ANSWERS))
        handler = create_stream_handler(consumer)  # as Lambda calls it: metrics flushed (here: dropped) per call
        names = [f"bench-stream-{records}-{users}-{i}" for i in range(users)]
        rows = np.random.default_rng(records + users).normal(size=(997, bundle.manifest.input.features))
        shard = streams.Shard()
        handler(shard.event(*_batch(shard, names, records, rows, 0)), CONTEXT)  # every user exists: warm
        seconds, reads, writes = 0.0, 0, 0
        for batch in range(TIMED_BATCHES):
            event = shard.event(*_batch(shard, names, records, rows, (batch + 1) * records))
            before = _items(client, settings.table_name, bundle.manifest, names)
            started = time.perf_counter()
            answer = handler(event, CONTEXT)
            seconds += time.perf_counter() - started
            assert answer == {"batchItemFailures": []}, answer
            after = _items(client, settings.table_name, bundle.manifest, names)
            reads += sum(read_units(before[name]) for name in names)
            writes += sum(write_units(before[name], after[name]) for name in names)
    total = records * TIMED_BATCHES
    milliseconds = seconds * 1000 / TIMED_BATCHES
    return {
        "records_per_s": total / seconds,
        "ms": milliseconds,
        "rcu": reads / total,
        "wcu": writes / total,
        "usd": usd_per_million(lambda_usd(milliseconds) / records, reads / total, writes / total, users / records),
    }


def usd_per_million(lambda_per_record: float, rcu: float, wcu: float, answers_per_record: float) -> float:
    """USD per million records all in: Lambda, DynamoDB, and the Kinesis PUT units of the record and its answers."""
    kinesis = (1 + answers_per_record) * PRICE["put_unit"]
    return lambda_per_record * 1e6 + rcu * PRICE["read"] + wcu * PRICE["write"] + kinesis


def engine_batched(bundle: ModelBundle, users: int, rows: int, repeats: int = 5) -> tuple[float, float]:
    """Engine milliseconds per record, `users` users of `rows` one-row records each: batched across users, and
    the same users run one by one."""
    manifest = bundle.manifest
    rng = np.random.default_rng(users)
    inputs = [rng.normal(size=(rows, manifest.input.features)).astype(np.float32) for _ in range(users)]
    states = [manifest.zero_state() for _ in range(users)]
    timings = {}
    for kind in ("batched", "one by one"):
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            if kind == "batched":
                bundle.engine.run_many(inputs, states)
            else:
                for sequence, state in zip(inputs, states, strict=True):
                    bundle.engine.run(sequence, state)
            best = min(best, time.perf_counter() - started)
        timings[kind] = best * 1000 / (users * rows)
    return timings["batched"], timings["one by one"]


def stream_path(settings: Settings, bundle: ModelBundle, client: Any, kinesis: Any, http_ms: float) -> None:
    """The table of the four shapes, against the HTTP path's request (one row: GetItem, PutItem, API Gateway)."""
    kinesis.create_stream(StreamName=ANSWERS, ShardCount=1)
    found = {}
    for records, users in SHAPES:
        report.step(f"batches of {records:,} one-row records over {users} users through the stream function")
        found[(records, users)] = measure(settings, bundle, client, kinesis, records, users)
    probe = _items(client, settings.table_name, bundle.manifest, ["bench-stream-100-10-0"])["bench-stream-100-10-0"]
    http_rcu, http_wcu = read_units(probe), write_units(probe, probe)
    http_usd = lambda_usd(http_ms) * 1e6 + PRICE["http_api"] + http_rcu * PRICE["read"] + http_wcu * PRICE["write"]
    report.table(
        ["records per batch", "users", "records/s per invocation", "ms per invocation", "RCU per record",
         "WCU per record", "USD per million records"],
        [[f"{r:,}", u, f"{f['records_per_s']:,.0f}", f"{f['ms']:.1f}", f"{f['rcu']:.3f}", f"{f['wcu']:.3f}",
          f"{f['usd']:.3f}"] for (r, u), f in found.items()]
        + [["HTTP path, 1 row a request", 1, f"{1000 / http_ms:,.0f}", f"{http_ms:.1f}", f"{http_rcu:.3f}",
            f"{http_wcu:.3f}", f"{http_usd:.3f}"]],
    )  # fmt: skip
    report.note(
        "records/s: one invocation's records over its wall time (DynamoDB and Kinesis are moto's server over HTTP "
        "here); units from the items' sizes as DynamoDB bills them; USD all in: Lambda arm64 1 GB for the measured "
        f"time, its requests, DynamoDB on-demand, Kinesis PUT units (the record and its answer); the HTTP path adds "
        f"API Gateway's HTTP API (${PRICE['http_api']}/million) instead of Kinesis; prices us-east-1, 2024-11-01"
    )
    ten = found[(100, 10)]
    report.goal(
        "WCU per record at 10 records per user / HTTP's per request", ten["wcu"] / http_wcu, 0.20,
        "a user's records of a batch share one write",
    )  # fmt: skip
    for users in (10, 100):
        batched, alone = engine_batched(bundle, users, 10)
        report.goal(
            f"engine per record, {users} users x 10 records: batched / one by one", batched / alone, 0.33,
            f"{batched * 1000:.1f} vs {alone * 1000:.1f} us a record",
        )  # fmt: skip
