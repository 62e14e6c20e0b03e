"""The item that holds one user's state for one model: its named states, what one write puts in it, and the
rules that need no I/O. `codec.py` turns it into DynamoDB attributes and back; every store keeps those.

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

What is read is one of five named states: Absent (no item), Live, Tombstone, Expired (past its TTL, not yet
removed) and Unreadable (an attribute missing, mistyped or out of range: only its guard is relied on).

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
the state blob plus about 250 bytes; keys add at most KEY_RECORD_BYTES x max_keys + 12 bytes, and a keyed
write's reply 4 x (output values) + about 60 bytes, dropped by the next write.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

    Attribute = AttributeValueTypeDef
else:
    Attribute = dict

Item = dict[str, Attribute]  # an item as DynamoDB attributes
StateOrigin = Literal["new", "continued", "reset"]  # where a request's state started

HISTORY = 16  # write ids kept: a lost answer is recognised past this many other writers, not more
WRITE_ID_BYTES = 8
DIGEST_BYTES = 8
KEY_RECORD_BYTES = 2 * DIGEST_BYTES + 4  # key digest, request fingerprint, epoch seconds
ITEM_LIMIT_BYTES = 400 * 1024  # DynamoDB's item size limit
ITEM_OVERHEAD_BYTES = 2048  # keys, names, write ids, times: everything in an item but the state and the reply


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
    """A user's state as one write leaves it."""

    model_version: str
    blob: bytes
    steps: int
    updated_at: datetime
    reply: Reply | None = None


@dataclass(frozen=True)
class Absent:
    """No item: never written, or removed by TTL."""


@dataclass(frozen=True)
class _Existing:
    revision: int
    writes: tuple[bytes, ...]
    keys: tuple[KeyRecord, ...]
    expires_at: datetime
    guard: Item  # the raw attributes the next write is conditional on


@dataclass(frozen=True)
class Live(_Existing):
    state: UserState


@dataclass(frozen=True)
class Tombstone(_Existing):
    """What a DELETE leaves: the revision, write ids and keys, no state."""


@dataclass(frozen=True)
class Expired(_Existing):
    """An item past its TTL that the store has not removed yet: no state, but its history still counts."""


@dataclass(frozen=True)
class Unreadable:
    """An item with a missing, mistyped or out-of-range attribute: only `guard` can be relied on."""

    guard: Item


Stored = Absent | Live | Tombstone | Expired | Unreadable
Written = Live | Tombstone  # what a write leaves


@dataclass(frozen=True)
class KeyWindow:
    """Which request keys are remembered: the newest `size`, none older than `ttl`."""

    ttl: timedelta = timedelta(hours=24)
    size: int = 32


@dataclass(frozen=True)
class Lifetimes:
    state_ttl: timedelta
    keys: KeyWindow = KeyWindow()


@dataclass(frozen=True)
class Write:
    """What one request writes: the user's new state (None: the tombstone a DELETE leaves) and, for a keyed
    request, its key."""

    state: UserState | None
    key: KeyRecord | None = None


@dataclass(frozen=True)
class Attempt:
    """A write that was sent: its id and the revision it would have written."""

    write_id: bytes
    revision: int


def digest(data: bytes | str) -> bytes:
    """The short digest under which a request key or a request's canonical form is recorded."""
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).digest()[:DIGEST_BYTES]


def remembered_keys(stored: Stored, now: datetime, window: KeyWindow) -> tuple[KeyRecord, ...]:
    """The request keys still remembered: from a readable item, within the window."""
    if not isinstance(stored, _Existing):
        return ()
    oldest = now - window.ttl
    return tuple(record for record in stored.keys if record.at >= oldest)[: window.size]


def landed(write: Attempt, stored: Stored) -> bool | None:
    """Whether `write` landed, judged from the item read after it: True, False, or None when it cannot tell."""
    match stored:
        case Absent():
            return False
        case Unreadable():
            return None
        case _Existing(revision=revision, writes=writes):
            if write.write_id in writes:
                return True
            behind = revision - write.revision  # how many writes landed after the revision `write` aimed at
            return False if behind < len(writes) else None
    raise TypeError(stored)


def successor(read: Stored, write: Write, write_id: bytes, now: datetime, lifetimes: Lifetimes) -> Written:
    """The item `write` leaves on top of `read`: the next revision, its id first in the history, its key first
    among the remembered ones; a state lives `state_ttl`, a tombstone as long as its keys."""
    keys = remembered_keys(read, now, lifetimes.keys)
    if write.key is not None:
        keys = (write.key, *keys)[: lifetimes.keys.size]
    previous = read if isinstance(read, _Existing) else None
    fields: dict[str, Any] = {
        "revision": previous.revision + 1 if previous else 1,
        "writes": (write_id, *(previous.writes if previous else ()))[:HISTORY],
        "keys": keys,
        "guard": {},
    }
    if write.state is None:
        return Tombstone(expires_at=(now + lifetimes.keys.ttl).replace(microsecond=0), **fields)
    return Live(state=write.state, expires_at=(now + lifetimes.state_ttl).replace(microsecond=0), **fields)


def needs_tombstone(read: Stored) -> bool:
    """Whether a DELETE has anything to erase: a live state, or an item whose content cannot be read."""
    return isinstance(read, Live | Unreadable)


def largest_item_bytes(state_bytes: int, reply_bytes: int, window: KeyWindow) -> int:
    """The most an item can hold for a state of `state_bytes` and a recorded reply of at most `reply_bytes`."""
    return state_bytes + reply_bytes + ITEM_OVERHEAD_BYTES + KEY_RECORD_BYTES * window.size
