"""The local stream (`make run STREAM=1`): kinesalite, a Kinesis-compatible server on Node.js, started from
`infra/local/kinesis` (installed there with `npm ci`), and a poller that reads it the way Lambda's event source
mapping reads a Kinesis stream: each shard in turn, batches of up to BATCH_SIZE records in Lambda's event shape
to the stream function's handler, delivered as `delivery.ShardDelivery` does (a partial batch response retried
from the lowest record reported, a function error bisecting the batch, RETRIES failures in a row passing it
over, its description sent to the failure file as the on-failure destination would be sent it).
"""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.config import Config
from botocore.session import Session

from carryover.requests import counted
from infra.local.delivery import ShardDelivery
from infra.local.server import LocalContext

KINESIS_DIR = Path(__file__).resolve().parent / "kinesis"
EVENTS_STREAM, ANSWERS_STREAM = "carryover-events", "carryover-answers"
SHARDS = 2
BATCH_SIZE = 100
POLL_EVERY_S = 1.0  # Lambda's base rate per shard; it reads on at once while records keep coming
RETRIES = 10  # the template's StreamRetries default


class StreamError(RuntimeError):
    """The local stream cannot start; the message is one line saying what to do."""


def kinesis_client(endpoint: str) -> Any:
    return Session().create_client(
        "kinesis", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="local",
        aws_secret_access_key="local", config=Config(retries={"mode": "standard", "total_max_attempts": 3}),
    )  # fmt: skip


def start_kinesalite(port: int) -> tuple[subprocess.Popen[str], str]:
    """kinesalite on 127.0.0.1:`port` (0: a free one), and its endpoint; the streams created, empty."""
    if not (KINESIS_DIR / "node_modules" / "kinesalite").is_dir():
        raise StreamError(f"kinesalite is not installed: run `npm ci` in {KINESIS_DIR} (make run STREAM=1 does)")
    try:
        process = subprocess.Popen(
            ["node", str(KINESIS_DIR / "serve.js"), str(port)],
            cwd=KINESIS_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
    except FileNotFoundError:
        raise StreamError("STREAM=1 needs Node.js 18+ for kinesalite: apt-get install nodejs npm") from None
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("listening "):
        process.kill()
        raise StreamError(f"kinesalite did not start on port {port} (busy? set KINESIS_PORT)")
    endpoint = f"http://127.0.0.1:{line.split()[1]}"
    client = kinesis_client(endpoint)
    for name, shards in ((EVENTS_STREAM, SHARDS), (ANSWERS_STREAM, 1)):
        client.create_stream(StreamName=name, ShardCount=shards)
        client.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 100})
    return process, endpoint


def lambda_record(record: dict[str, Any], shard: str, source: str) -> dict[str, Any]:
    """A GetRecords record as the event source mapping puts it in the event."""
    sequence = record["SequenceNumber"]
    return {
        "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": record["PartitionKey"], "sequenceNumber": sequence,
                    "data": base64.b64encode(record["Data"]).decode(),
                    "approximateArrivalTimestamp": record["ApproximateArrivalTimestamp"].timestamp()},
        "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventID": f"{shard}:{sequence}",
        "eventName": "aws:kinesis:record", "awsRegion": "us-east-1", "eventSourceARN": source,
    }  # fmt: skip


@dataclass
class _Shard:
    iterator: str
    delivery: ShardDelivery[dict[str, Any]]


class Poller:
    """Reads every shard of the events stream and calls `handler` with each batch, as Lambda would."""

    def __init__(self, client: Any, handler: Callable[[dict[str, Any], Any], dict[str, Any]],
                 log: Callable[[str], None], gave_up: Callable[[dict[str, Any]], None]) -> None:  # fmt: skip
        self._client, self._handler, self._log, self._gave_up = client, handler, log, gave_up
        self._source = client.describe_stream_summary(StreamName=EVENTS_STREAM)["StreamDescriptionSummary"]["StreamARN"]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="stream-poller", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _iterator(self, shard: str) -> str:
        found = self._client.get_shard_iterator(
            StreamName=EVENTS_STREAM, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
        )
        iterator: str = found["ShardIterator"]
        return iterator

    def _shard(self, shard: str) -> _Shard:
        def invoke(batch: list[dict[str, Any]]) -> dict[str, Any]:
            return self._invoke(shard, batch)

        delivery = ShardDelivery(
            shard,
            invoke,
            sequence=lambda record: str(record["SequenceNumber"]),
            on_failure=self._gave_up,
            retries=RETRIES,
            batch_size=BATCH_SIZE,
            log=self._log,
        )
        return _Shard(self._iterator(shard), delivery)

    def _poll(self) -> None:
        shards = [self._shard(s["ShardId"]) for s in self._client.list_shards(StreamName=EVENTS_STREAM)["Shards"]]
        while not self._stop.is_set():
            busy = False
            for shard in shards:
                busy |= self._step(shard)
            if not busy:
                self._stop.wait(POLL_EVERY_S)

    def _step(self, shard: _Shard) -> bool:
        """One batch of the shard, if it has records; True when it had."""
        delivery = shard.delivery
        if delivery.pending < BATCH_SIZE:
            found = self._client.get_records(ShardIterator=shard.iterator, Limit=BATCH_SIZE - delivery.pending)
            shard.iterator = found["NextShardIterator"]
            delivery.records += found["Records"]
        failures = delivery.attempts
        if not delivery.step():
            return False
        delivery.forget_done()
        if delivery.attempts > failures:  # it failed again: back off before the next attempt
            self._stop.wait(min(1.0, 0.1 * 2**delivery.attempts))
        return True

    def _invoke(self, shard: str, batch: list[dict[str, Any]]) -> dict[str, Any]:
        event = {"Records": [lambda_record(record, shard, self._source) for record in batch]}
        started = time.perf_counter()
        answer = self._handler(event, LocalContext(aws_request_id=f"stream-{time.monotonic_ns()}"))
        milliseconds = (time.perf_counter() - started) * 1000
        failed = (answer or {}).get("batchItemFailures") or []
        users = len({record["PartitionKey"] for record in batch})
        if failed:
            self._log(f"stream {shard}: records from {failed[0]['itemIdentifier']} not done; delivering them again")
        else:
            self._log(
                f"stream {shard}: {counted(len(batch), 'record')} of {counted(users, 'user')} applied in "
                f"{milliseconds:.1f} ms"
            )
        return answer


@dataclass
class LocalStream:
    endpoint: str
    failures: Path
    _process: subprocess.Popen[str]
    _poller: Poller

    def stop(self) -> None:
        self._poller.stop()
        self._process.terminate()
        self._process.wait(timeout=5)


def start_stream(
    handler_for: Callable[[str], Callable[[dict[str, Any], Any], dict[str, Any]]],
    port: int,
    failures: Path,
    log: Callable[[str], None],
) -> LocalStream:
    """kinesalite, and the poller calling the handler `handler_for` builds for its endpoint."""
    process, endpoint = start_kinesalite(port)
    handler = handler_for(endpoint)

    def gave_up(description: dict[str, Any]) -> None:
        with failures.open("a") as file:
            file.write(json.dumps(description) + "\n")

    poller = Poller(kinesis_client(endpoint), handler, log, gave_up)
    poller.start()
    return LocalStream(endpoint, failures, process, poller)
