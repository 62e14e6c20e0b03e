"""Where the stream function sends what it cannot apply, and each user's answers.

Failures go to an SQS queue, one message per record with its reason and its data, so that nothing but the
queue is needed to inspect or replay them (the event source mapping's own on-failure destination, the same
queue, receives only the metadata of batches it gave up on). Answers go to a Kinesis stream, one record per
user per batch with the user id as partition key: consumers of an ordered per-user stream expect the answers
in the same order, replayable, and readable by several independent consumers, each with its own position.
Both are at least once: each message and each answer carries an id that is the same on every delivery.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from carryover.core.batch import Applied
from carryover.errors import StoreUnavailable
from carryover.manifest import Manifest
from carryover.observability import logger
from carryover.stream.records import Delivered

SQS_BATCH = 10  # messages per SendMessageBatch
KINESIS_BATCH = 500  # records per PutRecords
ATTEMPTS = 3  # calls for the entries a batch call did not take


class SinkUnavailable(StoreUnavailable):
    """A queue or stream did not take what it was sent: the batch is retried from there."""

    code = "sink_unavailable"


class Failures(Protocol):
    def send(self, refused: Sequence[Delivered]) -> None: ...


class Answers(Protocol):
    def publish(self, applied: Sequence[Applied], manifest: Manifest) -> None: ...


def failure_message(delivered: Delivered) -> dict[str, Any]:
    record, error = delivered.record, delivered.record.error
    return {
        "id": record.event_id,
        "code": error.code if error else "internal_error",
        "reason": error.message if error else "",
        "shard_id": record.shard,
        "sequence_number": str(record.sequence),
        "partition_key": delivered.partition_key,
        "data": delivered.data,
        "stream": delivered.source,
    }


def answer_event(applied: Applied, manifest: Manifest) -> dict[str, Any]:
    prediction = applied.prediction
    return {
        "id": applied.event_id,
        "user_id": prediction.user_id,
        "model": {"name": manifest.name, "version": prediction.model_version},
        "steps": prediction.steps,
        "state": prediction.origin,
        "rows": prediction.rows,
        "outputs": {name: rows.tolist() for name, rows in prediction.outputs.items()},
        "records": [
            {"shard_id": r.shard, "sequence_number": str(r.sequence), "rows": len(r.request.inputs) if r.request else 0}
            for r in applied.records
        ],
    }


def _calling(what: str, call: Any, **params: Any) -> dict[str, Any]:
    try:
        answer: dict[str, Any] = call(**params)
        return answer
    except (BotoCoreError, ClientError) as error:
        logger.warning("stream sink unavailable", extra={"sink": what, "cause": type(error).__name__})
        raise SinkUnavailable(f"{what}: {type(error).__name__}") from error


class QueueFailures:
    """Refused records to an SQS queue, as SendMessageBatch takes them; entries it fails are sent again."""

    def __init__(self, client: Any, queue_url: str) -> None:
        self._client, self._url = client, queue_url

    def send(self, refused: Sequence[Delivered]) -> None:
        for start in range(0, len(refused), SQS_BATCH):
            entries = [
                {"Id": str(index), "MessageBody": json.dumps(failure_message(delivered))}
                for index, delivered in enumerate(refused[start : start + SQS_BATCH])
            ]
            for _ in range(ATTEMPTS):
                answer = _calling("failure queue", self._client.send_message_batch, QueueUrl=self._url, Entries=entries)
                failed = {entry["Id"] for entry in answer.get("Failed", [])}
                entries = [entry for entry in entries if entry["Id"] in failed]
                if not entries:
                    break
            if entries:
                raise SinkUnavailable(f"failure queue: {len(entries)} messages not taken")


class FileFailures:
    """Refused records as JSON lines in a file: the local stack's failure queue."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def send(self, refused: Sequence[Delivered]) -> None:
        with self._path.open("a") as file:
            file.writelines(json.dumps(failure_message(delivered)) + "\n" for delivered in refused)


class StreamAnswers:
    """Each user's answers as one Kinesis record, partition key the user id; records PutRecords fails are sent
    again (one record per user per batch, so resending keeps each user's order)."""

    def __init__(self, client: Any, stream_name: str) -> None:
        self._client, self._stream = client, stream_name

    def publish(self, applied: Sequence[Applied], manifest: Manifest) -> None:
        for start in range(0, len(applied), KINESIS_BATCH):
            entries = [
                {"Data": json.dumps(answer_event(a, manifest)).encode(), "PartitionKey": a.prediction.user_id}
                for a in applied[start : start + KINESIS_BATCH]
            ]
            for _ in range(ATTEMPTS):
                answer = _calling("answers stream", self._client.put_records, StreamName=self._stream, Records=entries)
                results = answer.get("Records", [])
                entries = [entry for entry, result in zip(entries, results, strict=True) if "ErrorCode" in result]
                if not entries:
                    break
            if entries:
                raise SinkUnavailable(f"answers stream: {len(entries)} records not taken")
