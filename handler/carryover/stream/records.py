"""Kinesis records as Lambda's event source mapping delivers them (Powertools' `KinesisStreamEvent`), read into
the apply path's entries.

A record's data is `{"user_id": ..., "inputs": [[...], ...], "reset": false}` (UTF-8 JSON), put with the user id
as its partition key, so that a user's records stay in one shard, in order. Its identity is the shard id (in
`eventID`, before the colon) and its sequence number. A record that is not such JSON, whose user id is not one
or differs from its partition key, whose rows do not fit the model, or whose answer could not be kept until
published or its rows logged (`ItemRoom.check`) is an entry with its error.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.utilities.data_classes import KinesisStreamEvent
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord

from carryover.core.domain import Position
from carryover.core.plan import Entry
from carryover.core.room import ItemRoom
from carryover.errors import InvalidRequest, ServiceError
from carryover.manifest import Manifest
from carryover.requests import USER_ID, USER_ID_RULE, RecordBody


@dataclass(frozen=True)
class Delivered:
    """A record of the event as it arrived: its identity, its user (None when its partition key is not a user
    id), the entry it asks the apply path for, and what the failure queue is sent when it is refused."""

    position: Position
    user_id: str | None
    entry: Entry
    partition_key: str
    data: str  # base64, as the event holds it
    source: str  # the stream's ARN

    @property
    def raw(self) -> bytes:
        return base64.b64decode(self.data)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()


@dataclass(frozen=True)
class RecordRules:
    """What a record must meet: the model's input, the most timesteps, and the room its answer and rows take."""

    manifest: Manifest
    max_timesteps: int
    room: ItemRoom


def _position(record: KinesisStreamRecord) -> Position:
    event_id, sequence = record.get("eventID"), record["kinesis"].get("sequenceNumber")
    if not isinstance(event_id, str) or ":" not in event_id:
        raise InvalidRequest("eventID: expected <shard id>:<sequence number>")
    if not isinstance(sequence, str) or not sequence.isdigit():
        raise InvalidRequest("Records[].kinesis.sequenceNumber: expected a Kinesis record")
    return Position(event_id.partition(":")[0], int(sequence))


def _entry(position: Position, partition_key: str, data: str, rules: RecordRules) -> tuple[str | None, Entry]:
    user = partition_key if USER_ID.fullmatch(partition_key) else None
    try:
        try:
            body = base64.b64decode(data, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidRequest("record data: expected UTF-8 JSON") from None
        request = RecordBody.parse(body, rules.manifest, rules.max_timesteps)
        if user is None or request.user_id != partition_key:
            raise InvalidRequest(
                f"user_id: expected {USER_ID_RULE}, the same as the record's partition key (a user's records must "
                "share the partition key to stay in order)"
            )
        rules.room.check(rules.manifest, len(request.inputs), rules.room.stream_answer, "a stream record")
    except ServiceError as error:
        return user, Entry(None, error, position)
    return user, Entry(request, position=position)


def read_event(event: dict[str, Any], rules: RecordRules) -> list[Delivered]:
    """The event's records, in the order delivered. Raises InvalidRequest for an event that is not a Kinesis
    batch (no record of it can be told apart then)."""
    entries = event.get("Records") if isinstance(event, dict) else None
    if not isinstance(entries, list) or not entries or not all(isinstance(entry, dict) for entry in entries):
        raise InvalidRequest("the event has no Records: expected a Kinesis event from an event source mapping")
    delivered = []
    for record in KinesisStreamEvent(event).records:
        kinesis = record.get("kinesis")
        if not isinstance(kinesis, dict):
            raise InvalidRequest("Records[].kinesis.sequenceNumber: expected a Kinesis record")
        position = _position(record)
        key, data = str(kinesis.get("partitionKey", "")), str(kinesis.get("data", ""))
        user, entry = _entry(position, key, data, rules)
        delivered.append(Delivered(position, user, entry, key, data, str(record.get("eventSourceARN", ""))))
    return delivered
