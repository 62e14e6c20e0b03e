"""Users' state in DynamoDB: conditional reads and writes of the item `state_item.py` defines.

Reads are strongly consistent. Every write is conditional on what was read (see `state_item` for why no
write is applied twice); `outcome` tells a writer whether a write whose answer was lost landed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotocoreConnectionError

from carryover.observability import logger
from carryover.state_item import (
    GUARD_ATTRIBUTES,
    HISTORY,
    PARTITION_KEY,
    WRITE_ID_BYTES,
    KeyRecord,
    Reply,
    Stored,
    StoredItem,
    Unreadable,
    UserState,
    encode,
    item_key,
    parse,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
else:
    DynamoDBClient = Any

Clock = Callable[[], datetime]
HEALTH_KEY = "/health"  # not a valid user id, so never a user's item
UNAVAILABLE_CODES = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
}


def utc_now() -> datetime:
    return datetime.now(UTC)


class Unavailable(Exception):
    """DynamoDB could not be reached or kept refusing; a write may or may not have landed."""


class WriteConflict(Exception):
    """The item changed since it was read; the write may still have landed if its answer was lost."""

    def __init__(self, write: Attempt) -> None:
        super().__init__(write.write_id.hex())
        self.write = write


@dataclass(frozen=True)
class Attempt:
    """A write that was sent: its id and the revision it would have written."""

    write_id: bytes
    revision: int


@dataclass(frozen=True)
class NewState:
    """What a request writes: the state it produced and, for a keyed request, its key and reply."""

    model_version: str
    blob: bytes
    steps: int
    key: KeyRecord | None = None
    reply: Reply | None = None


@dataclass(frozen=True)
class StoreSettings:
    ttl: timedelta
    key_ttl: timedelta = timedelta(hours=24)
    max_keys: int = 32


def dynamodb_client(
    endpoint_url: str | None = None, connect_timeout: float = 1, read_timeout: float = 2, max_attempts: int = 3
) -> DynamoDBClient:
    """A client whose timeouts and retries are explicit: the worst case is bounded by
    max_attempts x (connect_timeout + read_timeout) plus botocore's backoff."""
    from botocore.session import Session  # boto3's core, without boto3's own import cost (resources, s3transfer)

    config = Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"mode": "standard", "total_max_attempts": max_attempts},
    )
    return cast("DynamoDBClient", Session().create_client("dynamodb", endpoint_url=endpoint_url, config=config))


def outcome(write: Attempt, stored: Stored) -> bool | None:
    """Whether `write` landed, judged from the item read after it: True, False, or None when it cannot tell."""
    if not isinstance(stored, StoredItem):
        return False if stored is None else None
    if write.write_id in stored.writes:
        return True
    behind = stored.revision - write.revision  # how many writes landed after the revision `write` aimed at
    return False if behind < len(stored.writes) else None


class StateStore:
    def __init__(
        self, client: DynamoDBClient, table: str, model_name: str, settings: StoreSettings, clock: Clock = utc_now
    ) -> None:
        self._client = client
        self._table = table
        self._model = model_name
        self._settings = settings
        self._clock = clock

    def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        """One DynamoDB call (botocore retries it); Unavailable when DynamoDB cannot be reached or
        keeps refusing."""
        try:
            result: dict[str, Any] = getattr(self._client, operation)(TableName=self._table, **params)
            return result
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code in UNAVAILABLE_CODES or error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) >= 500:
                logger.warning("state store unavailable", extra={"operation": operation, "cause": code})
                raise Unavailable(code) from error
            raise
        except (BotocoreConnectionError, HTTPClientError) as error:
            logger.warning("state store unavailable", extra={"operation": operation, "cause": type(error).__name__})
            raise Unavailable(type(error).__name__) from error

    def load(self, user_id: str) -> Stored:
        """The item as DynamoDB holds it (strongly consistent), expired or not; None when there is none."""
        item = self._call("get_item", Key=item_key(user_id, self._model), ConsistentRead=True).get("Item")
        return None if item is None else parse(item)

    def ping(self) -> None:
        """One cheap read (eventually consistent, of a key no user can have): Unavailable if it fails."""
        self._call("get_item", Key=item_key(HEALTH_KEY, self._model), ConsistentRead=False)

    def is_live(self, stored: Stored) -> bool:
        """False for no item, a tombstone, and an item past its TTL that DynamoDB has not deleted yet."""
        if isinstance(stored, Unreadable):
            return True
        return stored is not None and stored.state is not None and stored.expires_at > self._clock()

    def keys(self, stored: Stored) -> tuple[KeyRecord, ...]:
        """The request keys still remembered: from a readable item, within the window."""
        if not isinstance(stored, StoredItem):
            return ()
        oldest = self._clock() - self._settings.key_ttl
        return tuple(record for record in stored.keys if record.at >= oldest)[: self._settings.max_keys]

    def save(self, user_id: str, new: NewState, read: Stored) -> Attempt:
        """Writes `new` if the item is still as `read` left it. Raises WriteConflict when it is not, and
        Unavailable when DynamoDB cannot be reached (the write may or may not have landed)."""
        now = self._clock()
        keys = self.keys(read)
        if new.key is not None:
            keys = (new.key, *keys)[: self._settings.max_keys]
        state = UserState(new.model_version, new.blob, new.steps, now, new.reply)
        return self._put(user_id, read, state, keys, now + self._settings.ttl)

    def delete(self, user_id: str, read: Stored) -> None:
        """Replaces the state `read` with a tombstone that keeps the revision, write ids and request keys (no
        state, no outputs) for the key window. Nothing to do for no item or a tombstone; WriteConflict as `save`."""
        if read is None or (isinstance(read, StoredItem) and read.state is None):
            return
        self._put(user_id, read, None, self.keys(read), self._clock() + self._settings.key_ttl)

    def _put(
        self, user_id: str, read: Stored, state: UserState | None, keys: tuple[KeyRecord, ...], expires: datetime
    ) -> Attempt:
        previous = read if isinstance(read, StoredItem) else None
        write_id = os.urandom(WRITE_ID_BYTES)
        item = StoredItem(
            revision=previous.revision + 1 if previous else 1,
            writes=(write_id, *(previous.writes if previous else ()))[:HISTORY],
            keys=keys,
            expires_at=expires.replace(microsecond=0),
            state=state,
            guard={},
        )
        attempt = Attempt(write_id, item.revision)
        try:
            self._call("put_item", Item=encode(item_key(user_id, self._model), item), **_condition(read))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                raise WriteConflict(attempt) from None
            raise
        return attempt


def _condition(read: Stored) -> dict[str, Any]:
    """The item must still be exactly as read: absent, or with the same raw guard attributes."""
    names = {"#pk": PARTITION_KEY}
    if read is None:
        return {"ConditionExpression": "attribute_not_exists(#pk)", "ExpressionAttributeNames": names}
    clauses, values = ["attribute_exists(#pk)"], {}
    for index, name in enumerate(GUARD_ATTRIBUTES):
        names[f"#g{index}"] = name
        value = read.guard.get(name)
        if value is None:
            clauses.append(f"attribute_not_exists(#g{index})")
        else:
            clauses.append(f"#g{index} = :g{index}")
            values[f":g{index}"] = value
    condition: dict[str, Any] = {"ConditionExpression": " AND ".join(clauses), "ExpressionAttributeNames": names}
    return condition | ({"ExpressionAttributeValues": values} if values else {})
