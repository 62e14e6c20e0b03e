"""The DynamoDB item that holds one user's state for one model: its schema, encoding, parsing and size.

One item per (user, model name). Attributes:
  user_id (S, partition key), model (S, sort key)
  revision (N)       +1 on every write, never reset while the item exists (a DELETE leaves a tombstone)
  writes (B)         ids of the last HISTORY writes, 8 bytes each, newest first: writes[i] wrote revision - i
  expires_at (N)     epoch seconds; the table's TTL attribute
  updated_at (S)     ISO 8601
  keys (B)           the newest request keys: 20-byte records, newest first (see KeyRecord)
  -- a live state only:
  model_version (S), state (B: float32 blob in the manifest's layout), steps (N)
  reply (M)          the response of the newest keyed request, if it was this write's or no write came since
                     {k: key digest (B), v: model version (S), s: steps (N), o: origin (S), n: rows (N),
                      y: every output's float32 values, in manifest order (B)}
  -- a tombstone (after DELETE): deleted (BOOL true), and none of the above

Why a write is never applied twice:
- Every write is conditional on the `revision` and `writes` it read (or on the item's absence), so it lands
  only on the item its writer saw. `revision` grows by one per write and is never reset: DELETE writes a
  tombstone, and only TTL removes the item, long after any retry (`expires_at` is at least the key window).
- A writer whose write's outcome is unknown (lost answer; botocore's retry then fails its own condition)
  re-reads: its write landed if its id is in `writes`; it did not if the history covers its revision with
  another id, or the revision never reached it. Otherwise (more than HISTORY writes since) it cannot tell,
  and says so rather than write again.
- A request key (the client's idempotency key) is recorded in the same conditional write as the state it
  produced. A repeat within the window (newest `max_keys` keys, none older than `key_ttl`) finds its record:
  the same fingerprint is a replay, another is a reuse. Only the newest keyed response is kept (`reply`),
  and it is dropped by the next write: a repeat of an older key is recognised, never applied again, but
  its response is no longer there.

Cost: a write is billed per started KiB of the larger of the old and new item. Without keys the item is
the state blob plus about 250 bytes; keys add at most 20 x max_keys + 12 bytes, and a keyed write's reply
4 x (output values) + about 60 bytes, dropped by the next write.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, get_args

from carryover.schemas import StateOrigin  # the API's names for where a state started

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

    Attribute = AttributeValueTypeDef
else:
    Attribute = dict

Item = dict[str, Attribute]

PARTITION_KEY = "user_id"
SORT_KEY = "model"
TTL_ATTRIBUTE = "expires_at"
GUARD_ATTRIBUTES = ("revision", "writes")
HISTORY = 16
WRITE_ID_BYTES = 8
DIGEST_BYTES = 8
_KEY_RECORD = struct.Struct("<8s8sI")  # key digest, request fingerprint, epoch seconds
MAX_COUNT = 2**53  # steps and revisions beyond this are damage, not data
ITEM_LIMIT_BYTES = 400 * 1024  # DynamoDB's item size limit
_ORIGINS: tuple[StateOrigin, ...] = get_args(StateOrigin)


@dataclass(frozen=True)
class KeyRecord:
    """A request made with a key: digests of the key and of what the request asked, and when."""

    key: bytes
    fingerprint: bytes
    at: datetime


@dataclass(frozen=True)
class Reply:
    """What a keyed request answered, enough to render the same response again."""

    key: bytes
    model_version: str
    steps: int
    origin: StateOrigin
    rows: int
    outputs: bytes  # float32 values of every output, in manifest order


@dataclass(frozen=True)
class UserState:
    model_version: str
    blob: bytes
    steps: int
    updated_at: datetime
    reply: Reply | None


@dataclass(frozen=True)
class StoredItem:
    """A readable item: a user's live state, or the tombstone a DELETE leaves (`state` None)."""

    revision: int
    writes: tuple[bytes, ...]
    keys: tuple[KeyRecord, ...]
    expires_at: datetime
    state: UserState | None
    guard: Item  # the raw attributes the next write is conditional on


@dataclass(frozen=True)
class Unreadable:
    """An item with a missing, mistyped or out-of-range attribute: only `guard` can be relied on."""

    guard: Item


Stored = StoredItem | Unreadable | None


def digest(data: bytes | str) -> bytes:
    """The short digest under which a request key or a request's canonical form is recorded."""
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).digest()[:DIGEST_BYTES]


def item_key(user_id: str, model: str) -> Item:
    return {PARTITION_KEY: {"S": user_id}, SORT_KEY: {"S": model}}


def epoch(value: datetime) -> int:
    return int(value.timestamp())


def _from_epoch(value: int) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def _count(attribute: Attribute) -> int:
    value = int(attribute["N"])
    if not 0 <= value < MAX_COUNT:
        raise ValueError(f"count out of range: {value}")
    return value


def _chunks(blob: bytes, size: int) -> list[bytes]:
    if len(blob) % size:
        raise ValueError("blob of the wrong length")
    return [blob[i : i + size] for i in range(0, len(blob), size)]


def pack_keys(records: tuple[KeyRecord, ...]) -> bytes:
    return b"".join(_KEY_RECORD.pack(r.key, r.fingerprint, epoch(r.at)) for r in records)


def _unpack_keys(blob: bytes) -> tuple[KeyRecord, ...]:
    return tuple(
        KeyRecord(key, fingerprint, _from_epoch(at))
        for key, fingerprint, at in (_KEY_RECORD.unpack(chunk) for chunk in _chunks(blob, _KEY_RECORD.size))
    )


def _encode_reply(reply: Reply) -> Attribute:
    return {
        "M": {
            "k": {"B": reply.key},
            "v": {"S": reply.model_version},
            "s": {"N": str(reply.steps)},
            "o": {"S": reply.origin},
            "n": {"N": str(reply.rows)},
            "y": {"B": reply.outputs},
        }
    }


def _parse_reply(attribute: Attribute) -> Reply:
    fields = attribute["M"]
    origin = fields["o"]["S"]
    if origin not in _ORIGINS:
        raise ValueError(f"unknown origin {origin!r}")
    return Reply(
        key=bytes(fields["k"]["B"]),
        model_version=fields["v"]["S"],
        steps=_count(fields["s"]),
        origin=origin,
        rows=_count(fields["n"]),
        outputs=bytes(fields["y"]["B"]),
    )


def encode(key: Item, item: StoredItem) -> Item:
    """The attributes DynamoDB stores for `item` under `key`."""
    encoded: Item = key | {
        "revision": {"N": str(item.revision)},
        "writes": {"B": b"".join(item.writes)},
        TTL_ATTRIBUTE: {"N": str(epoch(item.expires_at))},
    }
    if item.keys:
        encoded["keys"] = {"B": pack_keys(item.keys)}
    if item.state is None:
        encoded["deleted"] = {"BOOL": True}
        return encoded
    encoded |= {
        "model_version": {"S": item.state.model_version},
        "state": {"B": item.state.blob},
        "steps": {"N": str(item.state.steps)},
        "updated_at": {"S": item.state.updated_at.isoformat()},
    }
    if item.state.reply is not None:
        encoded["reply"] = _encode_reply(item.state.reply)
    return encoded


def _parse_state(item: Item) -> UserState | None:
    if item.get("deleted", {}).get("BOOL") is True:
        return None
    updated_at = datetime.fromisoformat(item["updated_at"]["S"])
    if updated_at.tzinfo is None:
        raise ValueError("updated_at without a time zone")
    return UserState(
        model_version=item["model_version"]["S"],
        blob=bytes(item["state"]["B"]),
        steps=_count(item["steps"]),
        updated_at=updated_at,
        reply=_parse_reply(item["reply"]) if "reply" in item else None,
    )


def parse(item: Item) -> StoredItem | Unreadable:
    """Never raises: any damage (missing, mistyped or absurd values) gives Unreadable."""
    guard = {name: item[name] for name in GUARD_ATTRIBUTES if name in item}
    try:
        return StoredItem(
            revision=_count(item["revision"]),
            writes=tuple(_chunks(bytes(item["writes"]["B"]), WRITE_ID_BYTES)),
            keys=_unpack_keys(bytes(item["keys"]["B"])) if "keys" in item else (),
            expires_at=_from_epoch(int(item[TTL_ATTRIBUTE]["N"])),
            state=_parse_state(item),
            guard=guard,
        )
    except (KeyError, TypeError, ValueError, OverflowError, OSError, struct.error):
        return Unreadable(guard)


def _value_bytes(value: Mapping[str, Any]) -> int:
    ((kind, raw),) = value.items()
    if kind == "S":
        return len(str(raw).encode())
    if kind == "B":
        return len(raw)
    if kind == "N":
        digits = str(raw).lstrip("-").replace(".", "").strip("0") or "0"
        return math.ceil(len(digits) / 2) + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(name.encode()) + _value_bytes(v) + 1 for name, v in raw.items())
    if kind == "L":
        return 3 + sum(_value_bytes(v) + 1 for v in raw)
    raise ValueError(f"attribute type {kind} is not used in this table")


def item_bytes(item: Item) -> int:
    """DynamoDB's size of an item: its attribute names and values, as DynamoDB's documentation counts them."""
    return sum(len(name.encode()) + _value_bytes(value) for name, value in item.items())


def write_units(old: Item | None, new: Item) -> int:
    """Write request units of a PutItem: one per started KiB of the larger of the old and new item."""
    return math.ceil(max(item_bytes(old) if old else 0, item_bytes(new)) / 1024)


def read_units(item: Item | None) -> int:
    """Read request units of a strongly consistent GetItem: one per started 4 KiB (one for no item)."""
    return max(1, math.ceil((item_bytes(item) if item else 0) / 4096))
