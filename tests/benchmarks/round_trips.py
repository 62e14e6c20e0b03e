"""A warm request's DynamoDB round trips for `make bench`: counted for a user continuing on one instance and for
a user whose requests alternate between two instances, and timed against the one round trip a durable update
cannot avoid: a bare conditional PutItem of the request's own item, with its condition."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import numpy as np

from carryover.bundle import ModelBundle
from carryover.composition import build_client, build_handler
from carryover.config import Settings
from carryover.store import guard
from carryover.store.codec import item_key
from carryover.store.dynamodb import condition
from tests.benchmarks import report
from tests.clients import HandlerClient

OPERATIONS = ("GetItem", "PutItem", "BatchGetItem")
GOAL = 1.1  # a continuing user's warm request / one bare conditional PutItem of its item


def _counted(client: Any) -> dict[str, int]:
    calls = dict.fromkeys(OPERATIONS, 0)
    for name in OPERATIONS:
        client.meta.events.register(
            f"before-call.dynamodb.{name}", lambda name=name, **_: calls.__setitem__(name, calls[name] + 1)
        )
    return calls


def _per_request(calls: dict[str, int], before: dict[str, int], requests: int) -> dict[str, float]:
    return {name: (calls[name] - before[name]) / requests for name in OPERATIONS}


class BarePut:
    """A PutItem of a copy of `user`'s item as a request writes it: each a new revision, write id and state of the
    same sizes, conditional on the guard of the item before it (as a request's write is)."""

    def __init__(self, client: Any, table: str, user: str, model: str) -> None:
        self._client, self._table = client, table
        item = client.get_item(TableName=table, Key=item_key(user, model), ConsistentRead=True)["Item"]
        self._item = item | item_key(f"{user}-bare", model)
        client.put_item(TableName=table, Item=self._item)

    def __call__(self) -> float:
        """One write; its milliseconds."""
        item, writes = self._item, bytes(self._item["writes"]["B"])
        written = item | {
            "revision": {"N": str(int(item["revision"]["N"]) + 1)},
            "writes": {"B": (os.urandom(8) + writes)[: len(writes)]},
            "state": {"B": os.urandom(len(item["state"]["B"]))},
        }
        start = time.perf_counter()
        self._client.put_item(
            TableName=self._table, Item=written, ReturnValuesOnConditionCheckFailure="ALL_OLD", **condition(guard(item))
        )
        self._item = written
        return (time.perf_counter() - start) * 1000


def round_trips(settings: Settings, bundle: ModelBundle, row: list[list[float]], count: int) -> None:
    """The table of calls per request, and the warm request against the bare conditional PutItem, one after the
    other in one loop (what slows one slows the other); both on the client the function builds (`settings`: its
    DYNAMODB_ENDPOINT), with its timeouts and retries."""
    client = build_client(settings)
    calls = _counted(client)
    one, other = (HandlerClient(build_handler(settings, bundle, client)) for _ in range(2))
    found: dict[str, dict[str, float]] = {}
    bare: list[float] = []
    for label, instances in (("one instance, continuing", [one]), ("two instances, alternating", [one, other])):
        user = f"trips-{len(instances)}"
        for index in range(3):
            instances[index % len(instances)].predict(user, row)  # each instance warm
        put = BarePut(client, settings.table_name, user, bundle.manifest.name)
        before, samples, body = dict(calls), [], json.dumps({"inputs": row})
        for index in range(count):
            instance = instances[index % len(instances)]
            event = instance.event("POST", f"/users/{user}/predict", body)  # API Gateway's part, not timed
            start = time.perf_counter()
            assert instance.invoke(event).status == 200
            samples.append((time.perf_counter() - start) * 1000)
            if len(instances) == 1:  # the bare write, right after (its call not the request's)
                calls["PutItem"] -= 1
                bare.append(put())
        found[label] = _per_request(calls, before, count) | {"p50": float(np.percentile(samples, 50))}
    _report(found, float(np.percentile(bare, 50)))


def _report(found: dict[str, dict[str, float]], bare: float) -> None:
    report.table(
        ["user's requests", "GetItem", "PutItem", "BatchGetItem", "round trips", "p50 ms"],
        [[label, *(f"{m[name]:.2f}" for name in OPERATIONS), f"{sum(m[name] for name in OPERATIONS):.2f}",
          f"{m['p50']:.2f}"] for label, m in found.items()],
    )  # fmt: skip
    ratio = found["one instance, continuing"]["p50"] / bare
    report.figure("bare conditional PutItem of the request's item", f"{bare:.2f} ms", "the one round trip left")
    report.goal(
        "warm request / bare conditional PutItem", ratio, GOAL,
        "a continuing user, LiteRT, 1 row, the two one after the other in one loop",
    )  # fmt: skip
