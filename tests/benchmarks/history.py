"""The row log and the bootstrap's figures for `make bench`: what the log adds to a request (the rows each write
carries, the archiver's time and PUTs), and a bootstrap worker's users and rows a second over a DynamoDB and an
S3 over HTTP, with what a million users cost and take."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from carryover.archive.archiver import Archiver
from carryover.archive.layout import S3Log, partitions
from carryover.bulk.worker import bootstrap_all
from carryover.bundle import ModelBundle, ServedModel
from carryover.composition import build_handler, build_store
from carryover.config import Settings
from carryover.store.codec import read_units, write_units
from carryover.store.dynamodb import utc_now
from tests.benchmarks import report
from tests.benchmarks.stream import PRICE, lambda_usd
from tests.changes import change_event
from tests.clients import HandlerClient

S3_PUT, S3_GET = 0.005 / 1000, 0.0004 / 1000  # USD a request, us-east-1 S3 Standard, as published 2024-11-01
STATE_TRANSITION = 0.025 / 1000  # Step Functions standard workflows, USD a state transition
ON_DEMAND_WCU_S = 4000  # write request units a second a new on-demand table serves at first (its "previous peak")
WORKER_GB = 2.0  # template.yaml's BootstrapFunction MemorySize
BUCKET = "bench-log"


def log_cost(settings: Settings, bundle: ModelBundle, client: Any, s3: Any, streams: Any) -> float:
    """The table of what the log adds to a request; returns the archiver's ms per 100 writes."""
    found = []
    for rows in (1, 10, 100):
        units = {}
        for logged in ("false", "true"):
            chosen = settings.model_copy(update={"row_log": logged == "true"})
            handler = HandlerClient(build_handler(chosen, bundle, client))
            user = f"bench-log-{rows}-{logged}"
            row = np.full((rows, bundle.manifest.input.features), 0.1, np.float32)
            handler.predict(user, row)
            before = client.get_item(TableName=settings.table_name, Key=_key(user, bundle), ConsistentRead=True)["Item"]
            handler.predict(user, row)
            after = client.get_item(TableName=settings.table_name, Key=_key(user, bundle), ConsistentRead=True)["Item"]
            units[logged] = (write_units(before, after), read_units(after))
        found.append([rows, f"{units['false'][0]} / {units['true'][0]}", f"{units['false'][1]} / {units['true'][1]}"])
    event = change_event(client, streams, settings.table_name)
    records = event["Records"][-100:]
    archiver, times = Archiver(s3, BUCKET, "log/"), []
    for _ in range(3):
        started = time.perf_counter()
        archiver.archive({"Records": records})
        times.append((time.perf_counter() - started) * 1000 * 100 / len(records))
    per_100 = statistics.median(times)
    report.table(["rows per request", "WCU log off / on", "RCU log off / on"], found)
    usd = (lambda_usd(per_100) + S3_PUT) / 100 * 1e6
    meaning = f"USD {usd:.3f} per million writes (Lambda arm64 1 GB and S3), besides the WCU above"
    report.figure("the archiver, per 100 writes", f"{per_100:.1f} ms and 1 PUT", meaning)
    return per_100


def _key(user: str, bundle: ModelBundle) -> dict[str, Any]:
    return {"user_id": {"S": user}, "model": {"S": bundle.manifest.name}}


def bootstrap_rate(settings: Settings, bundle: ModelBundle, client: Any, s3: Any, streams: Any, users: int) -> None:
    """`users` users of 20-row histories (sent as 4 requests of 5 rows, archived), bootstrapped by one worker."""
    handler = HandlerClient(build_handler(settings, bundle, client))
    rng = np.random.default_rng(3)
    names = [f"bench-boot-{index}" for index in range(users)]
    report.step(f"{users} users of 20 rows each, their writes archived to the row log")
    for name in names:
        for _ in range(4):
            handler.predict(name, rng.normal(size=(5, bundle.manifest.input.features)).astype(np.float32))
    Archiver(s3, BUCKET, "log/").archive(change_event(client, streams, settings.table_name))
    worker = settings.model_copy(update={"dynamodb_endpoint": client.meta.endpoint_url})
    store = build_store(worker, bundle)  # the worker's own client: its pool, timeouts and retries
    model = ServedModel(bundle.manifest.model_copy(update={"version": "bench-next"}), bundle.engine, "next")
    report.step("one worker bootstrapping them (a new version's state over each user's whole history)")
    started = time.perf_counter()
    log = S3Log(s3, BUCKET, "log/", partitions(), bundle.manifest.name)
    tally = bootstrap_all(model, store, log, utc_now, settings.conflict_retries, users=names)
    seconds = time.perf_counter() - started
    written = tally.users.get("written", 0)
    per_user = seconds / max(written, 1)
    item = client.get_item(TableName=settings.table_name, Key=_key(names[0], bundle), ConsistentRead=True)["Item"]
    wcu, rcu = write_units(item, item), read_units(item)
    usd = (per_user * WORKER_GB * PRICE["gb_second"] + wcu * PRICE["write"] / 1e6 + rcu * PRICE["read"] / 1e6) * 1e6
    usd += len(partitions()) * 2 * S3_GET + 3 * (len(partitions()) // 4) * STATE_TRANSITION  # a run's fixed part
    rate = f"{written / seconds:,.0f} users/s, {tally.rows / seconds:,.0f} rows/s"
    where = f"{written} users of 20 rows, DynamoDB and S3 over HTTP (moto's server, one request at a time)"
    report.figure("bootstrap, one worker", rate, where)
    paid = (
        f"Lambda arm64 {WORKER_GB:.0f} GB at this rate, {wcu} WCU and {rcu} RCU a user, one run's S3 and Step Functions"
    )
    report.figure("bootstrap, USD per million users", f"{usd:,.2f}", paid)
    hours_table = 1e6 * wcu / ON_DEMAND_WCU_S / 3600
    hours_workers = 1e6 * per_user / 20 / 3600
    bounds = (
        f"the {ON_DEMAND_WCU_S:,} WCU/s a new on-demand table serves: {hours_table:.2f} h; 20 workers at this rate: "
        f"{hours_workers:.2f} h"
    )
    report.figure("a million users", f"{max(hours_table, hours_workers):.1f} h", bounds)


def history_figures(bundle_path: Path, client: Any, s3: Any, streams: Any, table: str) -> None:
    settings = Settings.from_env({"TABLE_NAME": table, "MODEL_BUNDLE": str(bundle_path)})
    bundle = ModelBundle.load(bundle_path, "litert")
    s3.create_bucket(Bucket=BUCKET)
    log_cost(settings, bundle, client, s3, streams)
    bootstrap_rate(settings, bundle, client, s3, streams, users=200)
