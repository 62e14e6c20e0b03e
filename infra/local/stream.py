"""The local stream (`make run STREAM=1`): kinesalite, a Kinesis-compatible server on Node.js, started from
`infra/local/kinesis` (installed there with `npm ci`), and a poller that reads it the way Lambda's event source
mapping reads a Kinesis stream: each shard in turn, a batch of up to BATCH_SIZE records in Lambda's event shape
to the stream function's handler, the shard restarted at the lowest sequence number the answer reports
(ReportBatchItemFailures), a failing batch retried up to RETRIES times and then passed over, its description
sent to the failure file as the on-failure destination would be sent it.
"""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.config import Config
from botocore.session import Session

from carryover.requests import counted
from infra.local.server import LocalContext

KINESIS_DIR = Path(__file__).resolve().parent / "kinesis"
EVENTS_STREAM, ANSWERS_STREAM = "carryover-events", "carryover-answers"
SHARDS = 2
BATCH_SIZE = 100
POLL_EVERY_S = 1.0  # Lambda's base rate per shard; it reads on at once while records keep coming
RETRIES = 3


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
    shard_id: str
    iterator: str
    attempts: int = 0
    pending: list[dict[str, Any]] = field(default_factory=list)  # records read, not yet applied


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

    def _poll(self) -> None:
        shards = [
            _Shard(s["ShardId"], self._iterator(s["ShardId"]))
            for s in self._client.list_shards(StreamName=EVENTS_STREAM)["Shards"]
        ]
        while not self._stop.is_set():
            busy = False
            for shard in shards:
                busy |= self._step(shard)
            if not busy:
                self._stop.wait(POLL_EVERY_S)

    def _step(self, shard: _Shard) -> bool:
        """One batch of the shard, if it has records; True when it had."""
        if len(shard.pending) < BATCH_SIZE:
            found = self._client.get_records(ShardIterator=shard.iterator, Limit=BATCH_SIZE - len(shard.pending))
            shard.iterator = found["NextShardIterator"]
            shard.pending += found["Records"]
        if not shard.pending:
            return False
        batch = shard.pending[:BATCH_SIZE]
        event = {"Records": [lambda_record(record, shard.shard_id, self._source) for record in batch]}
        started = time.perf_counter()
        try:
            answer = self._handler(event, LocalContext(aws_request_id=f"stream-{time.monotonic_ns()}"))
            failed = [item["itemIdentifier"] for item in (answer or {}).get("batchItemFailures") or []]
        except Exception as error:  # a function error: the whole batch again
            self._log(f"stream {shard.shard_id}: the function failed ({type(error).__name__}); retrying the batch")
            failed = [batch[0]["SequenceNumber"]]
        milliseconds = (time.perf_counter() - started) * 1000
        users = len({record["PartitionKey"] for record in batch})
        if not failed:
            self._log(
                f"stream {shard.shard_id}: {counted(len(batch), 'record')} of {counted(users, 'user')} applied in "
                f"{milliseconds:.1f} ms"
            )
            shard.pending, shard.attempts = shard.pending[len(batch) :], 0
            return True
        restart = min(failed, key=int)
        shard.attempts += 1
        if shard.attempts > RETRIES:
            self._log(f"stream {shard.shard_id}: gave up on {len(batch)} records after {RETRIES} retries")
            self._gave_up({"condition": "RetryAttemptsExhausted", "shardId": shard.shard_id,
                           "startSequenceNumber": batch[0]["SequenceNumber"], "batchSize": len(batch)})  # fmt: skip
            shard.pending, shard.attempts = shard.pending[len(batch) :], 0
            return True
        self._log(f"stream {shard.shard_id}: records from {restart} not applied; delivering them again")
        shard.pending = [record for record in shard.pending if int(record["SequenceNumber"]) >= int(restart)]
        time.sleep(min(1.0, 0.1 * 2**shard.attempts))
        return True


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
