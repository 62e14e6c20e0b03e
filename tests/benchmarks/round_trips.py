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
from carryover.composition import build_client, build_handler, build_service
from carryover.config import Settings
from carryover.core.service import PredictionService
from carryover.requests import PredictRequest
from carryover.store import guard
from carryover.store.codec import item_key
from carryover.store.dynamodb import condition
from infra.local.server import LocalContext
from tests.benchmarks import report
from tests.clients import HandlerClient

OPERATIONS = ("GetItem", "PutItem", "BatchGetItem")
GOAL = 1.1  # a continuing user's warm request / one bare conditional PutItem of its item
APPLY_USER = "trips-apply"  # the one apply path's user, served without HTTP


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
    DYNAMODB_ENDPOINT), with its timeouts and retries. In the same loop, where the rest goes: the one apply path
    without HTTP (another user), and the model's run followed by the bare PutItem (what any server pays)."""
    client = build_client(settings)
    calls = _counted(client)
    one, other = (HandlerClient(build_handler(settings, bundle, client)) for _ in range(2))
    service, body = build_service(settings, bundle, client), json.dumps({"inputs": row})
    for _ in range(3):
        service.predict(APPLY_USER, PredictRequest.parse(body, bundle.manifest, settings.max_timesteps))  # warm
    found: dict[str, dict[str, float]] = {}
    series: dict[str, list[float]] = {name: [] for name in ("bare", "apply path", "model + bare")}
    for label, instances in (("one instance, continuing", [one]), ("two instances, alternating", [one, other])):
        user = f"trips-{len(instances)}"
        for index in range(3):
            instances[index % len(instances)].predict(user, row)  # each instance warm
        put = BarePut(client, settings.table_name, user, bundle.manifest.name)
        before, samples = dict(calls), []
        for index in range(count):
            instance = instances[index % len(instances)]
            event = instance.event("POST", f"/users/{user}/predict", body)  # API Gateway's part, not timed
            context = LocalContext(aws_request_id=event["requestContext"]["requestId"])
            start = time.perf_counter()
            answer = instance.handler(event, context)
            samples.append((time.perf_counter() - start) * 1000)
            assert answer["statusCode"] == 200, answer
            if len(instances) == 1:  # the figures beside it, their calls not the request's
                held = dict(calls)
                _beside(series, put, service, bundle, settings, body)
                calls.update(held)
        found[label] = _per_request(calls, before, count) | {"p50": float(np.percentile(samples, 50))}
    _report(found, {name: float(np.percentile(values, 50)) for name, values in series.items()})


def _beside(
    series: dict[str, list[float]], put: BarePut, service: PredictionService, bundle: ModelBundle,
    settings: Settings, body: str,
) -> None:  # fmt: skip
    """One bare PutItem; the apply path alone on a user of its own, from the request's body; the model's run on
    the request's row then a bare PutItem."""
    series["bare"].append(put())
    start = time.perf_counter()
    service.predict(APPLY_USER, PredictRequest.parse(body, bundle.manifest, settings.max_timesteps))
    series["apply path"].append((time.perf_counter() - start) * 1000)
    inputs = np.array(json.loads(body)["inputs"], np.float32)
    start = time.perf_counter()
    bundle.engine.run(inputs, bundle.manifest.zero_state())
    series["model + bare"].append((time.perf_counter() - start) * 1000 + put())


def _report(found: dict[str, dict[str, float]], p50: dict[str, float]) -> None:
    report.table(
        ["user's requests", "GetItem", "PutItem", "BatchGetItem", "round trips", "p50 ms"],
        [[label, *(f"{m[name]:.2f}" for name in OPERATIONS), f"{sum(m[name] for name in OPERATIONS):.2f}",
          f"{m['p50']:.2f}"] for label, m in found.items()],
    )  # fmt: skip
    bare = p50["bare"]
    report.figure("bare conditional PutItem of the request's item", f"{bare:.2f} ms", "the one round trip left")
    report.figure(
        "the model's run, then the bare PutItem / the bare PutItem", f"{p50['model + bare'] / bare:.2f}",
        "what any server of this model pays: the floor on this machine",
    )  # fmt: skip
    report.figure(
        "the apply path without HTTP / the bare PutItem", f"{p50['apply path'] / bare:.2f}",
        "planning, the model, the item and its write: the request without API Gateway's event and answer",
    )  # fmt: skip
    ratio = found["one instance, continuing"]["p50"] / bare
    report.goal(
        "warm request / bare conditional PutItem", ratio, GOAL,
        "a continuing user, LiteRT, 1 row, the two one after the other in one loop",
    )  # fmt: skip
