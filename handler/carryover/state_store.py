"""Users' recurrent state in DynamoDB: the item schema and its conditional reads and writes.

One item per (user, model name). Attributes:
  user_id (S, partition key), model (S, sort key), model_version (S), state (B: float32 blob in the
  manifest's layout), steps (N), revision (N: +1 on every write), write_id (S: unique per write),
  updated_at (S, ISO 8601), expires_at (N, epoch seconds; the table's TTL attribute), and receipts
  (M: idempotency key -> {h: request fingerprint (S), r: zlib-compressed response body (B), t: epoch seconds (N)}).

Every write is conditional on the revision and write id read (or on the item's absence), compared as the raw
values read, so even an item of unexpected shape is replaced only if nobody changed it meanwhile. The write
id also tells a writer whether its own write landed when the outcome of a call was unknown.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotocoreConnectionError

from carryover.errors import StoreUnavailable
from carryover.observability import logger

KEY_SCHEMA = {"partition": "user_id", "sort": "model"}
TTL_ATTRIBUTE = "expires_at"
GUARD_ATTRIBUTES = ("revision", "write_id")
UNAVAILABLE_CODES = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
}
UNAVAILABLE_MESSAGE = "the state store is unavailable; retry shortly, with the same Idempotency-Key to apply the request once"
Clock = Callable[[], datetime]


class WriteConflict(Exception):
    """The item changed since it was read: the write `write_id` was not applied."""

    def __init__(self, write_id: str) -> None:
        super().__init__(write_id)
        self.write_id = write_id


@dataclass(frozen=True)
class Receipt:
    """The outcome of one request made with an idempotency key."""

    key: str
    fingerprint: str
    response: str
    at: datetime


@dataclass(frozen=True)
class StoredState:
    """An item as read. `readable` is False when an attribute is missing or of another type; its values
    are then defaults, and only `guard` (what the next write is conditional on) can be relied on."""

    readable: bool
    model_version: str = ""
    blob: bytes = b""
    steps: int = 0
    revision: int = 0
    write_id: str = ""
    updated_at: datetime = datetime.min.replace(tzinfo=UTC)
    expires_at: datetime = datetime.max.replace(tzinfo=UTC)
    receipts: tuple[Receipt, ...] = ()
    guard: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NewState:
    model_version: str
    blob: bytes
    steps: int
    receipt: Receipt | None = None


@dataclass(frozen=True)
class StoreSettings:
    ttl: timedelta
    receipt_ttl: timedelta = timedelta(hours=24)
    max_receipts: int = 32
    receipt_budget_bytes: int = 200_000  # compressed responses kept per item; the newest is always kept


def dynamodb_client(
    endpoint_url: str | None = None, connect_timeout: float = 1, read_timeout: float = 2, max_attempts: int = 3
) -> Any:
    """A client whose timeouts and retries are explicit: the worst case is bounded by
    max_attempts x (connect_timeout + read_timeout) plus botocore's backoff."""
    config = Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"mode": "standard", "total_max_attempts": max_attempts},
    )
    return boto3.client("dynamodb", endpoint_url=endpoint_url, config=config)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _epoch(value: datetime) -> str:
    return str(int(value.timestamp()))


def _from_epoch(value: str) -> datetime:
    return datetime.fromtimestamp(int(value), UTC)


def _receipts(raw: dict[str, Any]) -> tuple[Receipt, ...]:
    found = []
    for key, value in raw.items():
        entry = value["M"]
        response = zlib.decompress(bytes(entry["r"]["B"])).decode()
        found.append(Receipt(key, entry["h"]["S"], response, _from_epoch(entry["t"]["N"])))
    return tuple(sorted(found, key=lambda receipt: receipt.at, reverse=True))


def _parse(item: dict[str, Any]) -> StoredState:
    guard = {name: item.get(name) for name in GUARD_ATTRIBUTES}
    try:
        return StoredState(
            readable=True,
            model_version=item["model_version"]["S"],
            blob=bytes(item["state"]["B"]),
            steps=int(item["steps"]["N"]),
            revision=int(item["revision"]["N"]),
            write_id=item["write_id"]["S"],
            updated_at=datetime.fromisoformat(item["updated_at"]["S"]),
            expires_at=_from_epoch(item[TTL_ATTRIBUTE]["N"]),
            receipts=_receipts(item.get("receipts", {"M": {}})["M"]),
            guard=guard,
        )
    except (KeyError, TypeError, ValueError, zlib.error):
        return StoredState(readable=False, guard=guard)


class StateStore:
    def __init__(self, client: Any, table: str, model_name: str, settings: StoreSettings, clock: Clock = _utc_now) -> None:
        self._client = client
        self._table = table
        self._model = model_name
        self._settings = settings
        self._clock = clock

    def _key(self, user_id: str) -> dict[str, dict[str, str]]:
        return {KEY_SCHEMA["partition"]: {"S": user_id}, KEY_SCHEMA["sort"]: {"S": self._model}}

    def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        """One DynamoDB call (botocore retries it); StoreUnavailable when DynamoDB cannot be reached or
        keeps refusing."""
        try:
            return getattr(self._client, operation)(TableName=self._table, **params)
        except ClientError as error:
            code = error.response["Error"]["Code"]
            if code in UNAVAILABLE_CODES or error.response["ResponseMetadata"].get("HTTPStatusCode", 0) >= 500:
                logger.warning("state store unavailable", extra={"operation": operation, "cause": code})
                raise StoreUnavailable(UNAVAILABLE_MESSAGE) from error
            raise
        except (BotocoreConnectionError, HTTPClientError) as error:
            logger.warning("state store unavailable", extra={"operation": operation, "cause": type(error).__name__})
            raise StoreUnavailable(UNAVAILABLE_MESSAGE) from error

    def load(self, user_id: str) -> StoredState | None:
        """The item as DynamoDB holds it (strongly consistent), expired or not, with only the receipts still
        remembered; None when there is none."""
        item = self._call("get_item", Key=self._key(user_id), ConsistentRead=True).get("Item")
        if item is None:
            return None
        stored, oldest = _parse(item), self._clock() - self._settings.receipt_ttl
        return replace(stored, receipts=tuple(receipt for receipt in stored.receipts if receipt.at >= oldest))

    def is_live(self, stored: StoredState | None) -> bool:
        """False for no item and for one past its TTL that DynamoDB has not deleted yet."""
        return stored is not None and stored.expires_at > self._clock()

    def _kept_receipts(self, read: StoredState | None, new: Receipt | None) -> dict[str, Any]:
        budget = self._settings.receipt_budget_bytes
        earlier = read.receipts if read is not None and self.is_live(read) else ()
        kept: dict[str, Any] = {}
        for receipt in ([new] if new else []) + list(earlier):
            if len(kept) >= self._settings.max_receipts:
                break
            packed = zlib.compress(receipt.response.encode())
            if kept and len(packed) > budget:
                break
            budget -= len(packed)
            kept[receipt.key] = {"M": {"h": {"S": receipt.fingerprint}, "r": {"B": packed}, "t": {"N": _epoch(receipt.at)}}}
        return kept

    def save(self, user_id: str, new: NewState, read: StoredState | None) -> StoredState:
        """Writes `new` if the item is still as `read` left it. Raises WriteConflict when it is not, and
        StoreUnavailable when DynamoDB cannot be reached (the write may or may not have landed)."""
        now = self._clock()
        saved = StoredState(
            readable=True,
            model_version=new.model_version,
            blob=new.blob,
            steps=new.steps,
            revision=(read.revision + 1) if read else 1,
            write_id=uuid4().hex,
            updated_at=now,
            expires_at=(now + self._settings.ttl).replace(microsecond=0),
        )
        item = self._key(user_id) | {
            "model_version": {"S": saved.model_version},
            "state": {"B": saved.blob},
            "steps": {"N": str(saved.steps)},
            "revision": {"N": str(saved.revision)},
            "write_id": {"S": saved.write_id},
            "updated_at": {"S": saved.updated_at.isoformat()},
            TTL_ATTRIBUTE: {"N": _epoch(saved.expires_at)},
        }
        receipts = self._kept_receipts(read, new.receipt)
        if receipts:
            item["receipts"] = {"M": receipts}
        try:
            self._call("put_item", Item=item, **self._condition(read))
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise WriteConflict(saved.write_id) from None
            raise
        return saved

    @staticmethod
    def _condition(read: StoredState | None) -> dict[str, Any]:
        names = {"#pk": KEY_SCHEMA["partition"]}
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
        condition = {"ConditionExpression": " AND ".join(clauses), "ExpressionAttributeNames": names}
        return condition | ({"ExpressionAttributeValues": values} if values else {})

    def delete(self, user_id: str) -> None:
        self._call("delete_item", Key=self._key(user_id))
