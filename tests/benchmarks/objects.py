"""States kept as objects for `make bench`: a frame model's warm request with its state in S3 against the same
state in the DynamoDB item, and a state no item can hold (moto's DynamoDB and S3 over HTTP)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from carryover.bundle import ModelBundle
from carryover.composition import build_service, build_store, states_in_objects
from carryover.config import Settings
from carryover.http.lambda_handler import create_lambda_handler
from carryover.store.blobs import S3Blobs
from carryover.store.codec import item_key, read_units, write_units
from infra.table import ensure_table
from layers.exporter.export import export
from tests.benchmarks import report
from tests.benchmarks.history import S3_GET, S3_PUT
from tests.benchmarks.stream import PRICE
from tests.clients import HandlerClient
from tests.models import big_frames

BUCKET = "bench-states"
STORAGE_GB_MONTH = 0.023  # S3 Standard, us-east-1, USD per GB-month, as published 2024-11-01


def _counted(client: Any, operations: tuple[str, ...]) -> dict[str, int]:
    """Calls of each of `operations` made through `client` from now on."""
    calls = dict.fromkeys(operations, 0)
    for name in operations:
        client.meta.events.register(
            f"before-call.{client.meta.service_model.endpoint_prefix}.{name}",
            lambda name=name, **_: calls.__setitem__(name, calls[name] + 1),
        )
    return calls


def _handler(settings: Settings, bundle: ModelBundle, dynamodb: Any, s3: Any) -> HandlerClient:
    """The HTTP function as the stack builds it, its state objects through `s3` (counted)."""
    store = build_store(settings, bundle, dynamodb)
    store.keep_states_in(S3Blobs(s3, BUCKET), states_in_objects(bundle, settings))
    return HandlerClient(create_lambda_handler(build_service(settings, bundle, dynamodb, store=store), settings))


def _measure(
    settings: Settings, bundle: ModelBundle, dynamodb: Any, s3: Any, count: int, timed: Callable[..., list[float]]
) -> dict[str, float]:
    """p50 and p99 ms of a warm one-frame request; DynamoDB units and S3 calls per request; the item's bytes."""
    calls = _counted(s3, ("GetObject", "PutObject"))
    handler, manifest = _handler(settings, bundle, dynamodb, s3), bundle.manifest
    frame = np.random.default_rng(0).normal(size=(1, *(manifest.input.shape or ()))).astype(np.float32).tolist()
    samples = timed(handler, frame, count)
    key = item_key("bench-units", manifest.name)
    handler.predict("bench-units", frame)
    before = dynamodb.get_item(TableName=settings.table_name, Key=key, ConsistentRead=True)
    made = dict(calls)
    handler.predict("bench-units", frame)  # a warm request, its calls counted
    gets, puts = (calls[name] - made[name] for name in ("GetObject", "PutObject"))
    after = dynamodb.get_item(TableName=settings.table_name, Key=key, ConsistentRead=True)
    return {
        "p50": float(np.percentile(samples, 50)),
        "p99": float(np.percentile(samples, 99)),
        "rcu": read_units(before["Item"]),
        "wcu": write_units(before["Item"], after["Item"]),
        "gets": gets,
        "puts": puts,
        "bytes": manifest.state_bytes,
    }


def state_objects(dynamodb: Any, s3: Any, count: int, timed: Callable[..., list[float]]) -> None:
    """The table: a frame model of 20 frames of 24x24x3 (a 138 KB state) with its state in the item and in S3, and
    one of 48x48x3 (553 KB, only in S3)."""
    s3.create_bucket(Bucket=BUCKET)
    found = []
    with tempfile.TemporaryDirectory() as work:
        for side, kept in ((24, "auto"), (24, "always"), (48, "auto")):
            report.step(f"frames of {side}x{side}x3, STATES_IN_OBJECTS={kept}")
            source, bundled = Path(work) / f"frames-{side}.keras", Path(work) / f"frames-{side}"
            if not bundled.exists():
                big_frames(side).save(source)
                export(source, bundled, sequences=3)
            table = f"bench-objects-{side}-{kept}"
            ensure_table(dynamodb, table)
            settings = Settings.from_env(
                {
                    "TABLE_NAME": table,
                    "MODEL_BUNDLE": str(bundled),
                    "STATE_BUCKET": BUCKET,
                    "STATES_IN_OBJECTS": kept,
                    "S3_ENDPOINT": s3.meta.endpoint_url,
                }
            )
            bundle = ModelBundle.load(bundled, "litert")
            where = "S3" if states_in_objects(bundle, settings) else "item"
            found.append((f"{side}x{side}x3", where, _measure(settings, bundle, dynamodb, s3, count, timed)))
    report.table(
        ["frames", "state", "state bytes", "p50 ms", "p99 ms", "RCU", "WCU", "S3 GET / PUT", "USD per million"],
        [[frames, where, f"{m['bytes']:,.0f}", f"{m['p50']:.2f}", f"{m['p99']:.2f}", m["rcu"], m["wcu"],
          f"{m['gets']:.0f} / {m['puts']:.0f}", f"{_usd(m):.2f}"]
         for frames, where, m in found],
    )  # fmt: skip
    report.note(
        "a warm 1-frame request for one user through the HTTP function; USD: DynamoDB and S3 requests (on-demand, "
        f"S3 Standard, us-east-1); each request in S3 also leaves its state's object until the state's TTL: "
        f"USD {STORAGE_GB_MONTH} per GB-month, about {_stored(found[-1][2]):.2f} a month per million requests of "
        "the 553 KB state kept 30 days"
    )
    inline, objects = found[0][2], found[1][2]
    report.figure(
        "state in S3 / in the item, p50", f"{objects['p50'] / inline['p50']:.2f}x",
        "the same 138 KB state: a GetObject before the read's answer, a PutObject before the conditional write",
    )  # fmt: skip


def _usd(measured: dict[str, float]) -> float:
    dynamodb = measured["rcu"] * PRICE["read"] + measured["wcu"] * PRICE["write"]
    return dynamodb + (measured["gets"] * S3_GET + measured["puts"] * S3_PUT) * 1e6


def _stored(measured: dict[str, float]) -> float:
    """USD a month for the objects a million requests leave, each kept for the 30 days of the state's TTL."""
    return measured["puts"] * 1e6 * measured["bytes"] / 1e9 * STORAGE_GB_MONTH
