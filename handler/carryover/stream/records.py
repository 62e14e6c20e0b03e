"""Kinesis records as Lambda's event source mapping delivers them, read into `Record`s.

A record's data is `{"user_id": ..., "inputs": [[...], ...], "reset": false}` (UTF-8 JSON), put with the user id
as its partition key, so that a user's records stay in one shard, in order. Its identity is the shard id (in
`eventID`, before the colon) and its sequence number. A record that is not such JSON, whose user id is not one
or differs from its partition key, or whose rows do not fit the model is a Record with its error.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from carryover.core.batch import Record
from carryover.errors import InvalidRequest, ServiceError
from carryover.manifest import Manifest
from carryover.requests import USER_ID, USER_ID_RULE, RecordBody


@dataclass(frozen=True)
class Delivered:
    """A record of the event as it arrived: what the failure queue is sent for a refused one."""

    record: Record
    partition_key: str
    data: str  # base64, as the event holds it
    source: str  # the stream's ARN


def _shard(entry: dict[str, Any]) -> str:
    event_id = entry.get("eventID")
    if not isinstance(event_id, str) or ":" not in event_id:
        raise InvalidRequest("eventID: expected <shard id>:<sequence number>")
    return event_id.partition(":")[0]


def _read(shard: str, sequence: int, partition_key: str, data: str, manifest: Manifest, max_timesteps: int) -> Record:
    user = partition_key if USER_ID.fullmatch(partition_key) else None
    try:
        try:
            body = base64.b64decode(data, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidRequest("record data: expected UTF-8 JSON") from None
        request = RecordBody.parse(body, manifest, max_timesteps)
        if user is None or request.user_id != partition_key:
            raise InvalidRequest(
                f"user_id: expected {USER_ID_RULE}, the same as the record's partition key (a user's records must "
                "share the partition key to stay in order)"
            )
    except ServiceError as error:
        return Record(shard, sequence, user, error=error)
    return Record(shard, sequence, user, request)


def read_event(event: dict[str, Any], manifest: Manifest, max_timesteps: int) -> list[Delivered]:
    """The event's records, in the order delivered. Raises InvalidRequest for an event that is not a Kinesis
    batch (no record of it can be told apart then)."""
    entries = event.get("Records") if isinstance(event, dict) else None
    if not isinstance(entries, list) or not entries:
        raise InvalidRequest("the event has no Records: expected a Kinesis event from an event source mapping")
    delivered = []
    for entry in entries:
        kinesis = entry.get("kinesis") if isinstance(entry, dict) else None
        if not isinstance(kinesis, dict) or not str(kinesis.get("sequenceNumber", "")).isdigit():
            raise InvalidRequest("Records[].kinesis.sequenceNumber: expected a Kinesis record")
        key, data = str(kinesis.get("partitionKey", "")), str(kinesis.get("data", ""))
        record = _read(_shard(entry), int(kinesis["sequenceNumber"]), key, data, manifest, max_timesteps)
        delivered.append(Delivered(record, key, data, str(entry.get("eventSourceARN", ""))))
    return delivered
