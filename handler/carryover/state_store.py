"""Users' recurrent state in DynamoDB: the item schema and its conditional reads and writes.

One item per (user, model name). Attributes:
  user_id (S, partition key), model (S, sort key), model_version (S), state (B: float32 blob in the
  manifest's layout), steps (N), revision (N: +1 on every write; each write is conditional on the revision
  read), write_id (S: unique per write, so a deleted and re-created item never matches a stale read),
  updated_at (S, ISO 8601), expires_at (N, epoch seconds; the table's TTL attribute).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

KEY_SCHEMA = {"partition": "user_id", "sort": "model"}
TTL_ATTRIBUTE = "expires_at"
Clock = Callable[[], datetime]


class WriteConflict(Exception):
    """Another write changed the item since it was read."""


@dataclass(frozen=True)
class StoredState:
    model_version: str
    blob: bytes
    steps: int
    revision: int
    write_id: str
    updated_at: datetime
    expires_at: datetime


def dynamodb_client(endpoint_url: str | None = None) -> Any:
    config = Config(
        connect_timeout=1,
        read_timeout=2,
        retries={"mode": "standard", "total_max_attempts": 3},
    )
    return boto3.client("dynamodb", endpoint_url=endpoint_url, config=config)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class StateStore:
    def __init__(
        self, client: Any, table: str, model_name: str, ttl: timedelta, clock: Clock = _utc_now
    ) -> None:
        self._client = client
        self._table = table
        self._model = model_name
        self._ttl = ttl
        self._clock = clock

    def _key(self, user_id: str) -> dict[str, dict[str, str]]:
        return {KEY_SCHEMA["partition"]: {"S": user_id}, KEY_SCHEMA["sort"]: {"S": self._model}}

    def load(self, user_id: str) -> StoredState | None:
        """The item as DynamoDB holds it (strongly consistent), expired or not; None when there is none."""
        item = self._client.get_item(TableName=self._table, Key=self._key(user_id), ConsistentRead=True).get("Item")
        if item is None:
            return None
        return StoredState(
            model_version=item["model_version"]["S"],
            blob=bytes(item["state"]["B"]),
            steps=int(item["steps"]["N"]),
            revision=int(item["revision"]["N"]),
            write_id=item["write_id"]["S"],
            updated_at=datetime.fromisoformat(item["updated_at"]["S"]),
            expires_at=datetime.fromtimestamp(int(item[TTL_ATTRIBUTE]["N"]), UTC),
        )

    def is_live(self, stored: StoredState | None) -> bool:
        """False for no item and for one past its TTL that DynamoDB has not deleted yet."""
        return stored is not None and stored.expires_at > self._clock()

    def save(
        self, user_id: str, model_version: str, blob: bytes, steps: int, read: StoredState | None
    ) -> StoredState:
        """Writes the new state if the item is still as `read` left it; raises WriteConflict otherwise."""
        now = self._clock()
        saved = StoredState(
            model_version=model_version,
            blob=blob,
            steps=steps,
            revision=(read.revision + 1) if read else 1,
            write_id=uuid4().hex,
            updated_at=now,
            expires_at=(now + self._ttl).replace(microsecond=0),
        )
        item = self._key(user_id) | {
            "model_version": {"S": saved.model_version},
            "state": {"B": saved.blob},
            "steps": {"N": str(saved.steps)},
            "revision": {"N": str(saved.revision)},
            "write_id": {"S": saved.write_id},
            "updated_at": {"S": saved.updated_at.isoformat()},
            TTL_ATTRIBUTE: {"N": str(int(saved.expires_at.timestamp()))},
        }
        if read is None:
            condition: dict[str, Any] = {
                "ConditionExpression": "attribute_not_exists(#pk)",
                "ExpressionAttributeNames": {"#pk": KEY_SCHEMA["partition"]},
            }
        else:
            condition = {
                "ConditionExpression": "#rev = :rev AND #wid = :wid",
                "ExpressionAttributeNames": {"#rev": "revision", "#wid": "write_id"},
                "ExpressionAttributeValues": {":rev": {"N": str(read.revision)}, ":wid": {"S": read.write_id}},
            }
        try:
            self._client.put_item(TableName=self._table, Item=item, **condition)
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise WriteConflict(user_id) from None
            raise
        return saved

    def delete(self, user_id: str) -> None:
        self._client.delete_item(TableName=self._table, Key=self._key(user_id))
