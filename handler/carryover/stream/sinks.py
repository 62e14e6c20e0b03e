"""Where the stream function sends what it cannot apply, and each user's answers.

Failures go to an SQS queue, one message per record with its reason and its data, so that nothing but the
queue is needed to inspect or replay them (the event source mapping's own on-failure destination, the same
queue, receives only the metadata of batches it gave up on). A message stays within SQS's limits whatever the
record: one holding data that would pass MESSAGE_LIMIT carries, instead of the data, its size and SHA-256 and
where to read it (the record stays in the stream for the stream's retention); messages go in batches of at most
SQS_BATCH whose sizes add up to at most MESSAGE_LIMIT. Answers go to a Kinesis stream, one record per user per
applied write with the user id as partition key: consumers of an ordered per-user stream expect the answers
in the same order, replayable, and readable by several independent consumers, each with its own position.
Both are at least once: each message and each answer carries an id that is the same on every delivery.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from carryover.errors import StoreUnavailable
from carryover.observability import logger
from carryover.stream.records import Delivered

SQS_BATCH = 10  # messages per SendMessageBatch
MESSAGE_LIMIT = 256 * 1024  # SQS: the most one message holds, and one SendMessageBatch in all
KINESIS_BATCH = 500  # records per PutRecords
ATTEMPTS = 3  # calls for the entries a batch call did not take


class SinkUnavailable(StoreUnavailable):
    """A queue or stream did not take what it was sent: the batch is retried from there."""

    code = "sink_unavailable"


class Failures(Protocol):
    def send(self, refused: Sequence[Delivered]) -> None: ...


class Answers(Protocol):
    def publish(self, events: Sequence[dict[str, Any]]) -> None: ...


def failure_message(delivered: Delivered) -> dict[str, Any]:
    """The message for a refused record: its identity, why, and its data, or what finds it when too large."""
    error = delivered.entry.error
    message = {
        "id": delivered.position.event_id,
        "code": error.code if error else "internal_error",
        "reason": error.message if error else "",
        "shard_id": delivered.position.shard,
        "sequence_number": str(delivered.position.sequence),
        "partition_key": delivered.partition_key,
        "stream": delivered.source,
        "size": len(delivered.raw),
        "sha256": delivered.sha256,
        "data": delivered.data,
    }
    if len(json.dumps(message)) <= MESSAGE_LIMIT:
        return message
    del message["data"]
    return message | {
        "data_omitted": f"{message['size']} bytes of data do not fit a message: read the record from the stream "
        "(GetShardIterator AT_SEQUENCE_NUMBER at shard_id and sequence_number) within its retention"
    }


def sized_batches(bodies: Sequence[str]) -> Iterator[list[str]]:
    """The bodies in order, in batches of at most SQS_BATCH adding up to at most MESSAGE_LIMIT bytes."""
    batch: list[str] = []
    for body in bodies:
        if batch and (len(batch) == SQS_BATCH or sum(map(len, batch)) + len(body) > MESSAGE_LIMIT):
            yield batch
            batch = []
        batch.append(body)
    if batch:
        yield batch


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
        for batch in sized_batches([json.dumps(failure_message(delivered)) for delivered in refused]):
            entries = [{"Id": str(index), "MessageBody": body} for index, body in enumerate(batch)]
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
    """Each answer as one Kinesis record, partition key its user; records PutRecords fails are sent again before any
    later answer of their user is sent (a call holds one answer per user), so each user's answers land in order."""

    def __init__(self, client: Any, stream_name: str) -> None:
        self._client, self._stream = client, stream_name

    def publish(self, events: Sequence[dict[str, Any]]) -> None:
        for wave in _waves(events):
            for start in range(0, len(wave), KINESIS_BATCH):
                self._put(
                    [
                        {"Data": json.dumps(event).encode(), "PartitionKey": event["user_id"]}
                        for event in wave[start : start + KINESIS_BATCH]
                    ]
                )

    def _put(self, entries: list[dict[str, Any]]) -> None:
        for _ in range(ATTEMPTS):
            answer = _calling("answers stream", self._client.put_records, StreamName=self._stream, Records=entries)
            results = answer.get("Records", [])
            entries = [entry for entry, result in zip(entries, results, strict=True) if "ErrorCode" in result]
            if not entries:
                return
        raise SinkUnavailable(f"answers stream: {len(entries)} records not taken")


def _waves(events: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The events in waves, each user's n-th in the n-th: one per user a wave, each user's in their order."""
    waves: list[list[dict[str, Any]]] = []
    counts: dict[str, int] = {}
    for event in events:
        index = counts[event["user_id"]] = counts.get(event["user_id"], -1) + 1
        if index == len(waves):
            waves.append([])
        waves[index].append(event)
    return waves
