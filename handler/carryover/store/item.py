"""The item that holds one user's state (`carryover.core.domain`) for one model name: its envelope (revision,
write ids, keys, stream positions, lifetime), its named states, what one write puts in it, and the rules that
need no I/O. `codec.py` turns it into DynamoDB attributes and back; every store keeps those.

One item per (user, model name). Attributes of format 3 (this release):
  user_id (S, partition key), model (S, sort key)
  format (N)         3. Absent in the items of earlier releases: 2 when `writes` is there, 1 when `write_id` is
  revision (N)       +1 on every write, never reset while the item exists (a DELETE leaves a tombstone)
  writes (B)         ids of the last HISTORY writes, 8 bytes each, newest first: writes[i] wrote revision - i
  expires_at (N)     epoch seconds; the table's TTL attribute
  updated_at (S)     ISO 8601
  keys (B)           the newest request keys: 20-byte records, newest first (see KeyRecord)
  created (N)        epoch seconds of the item's first write: its lifetime, which the row log orders by (absent:
                     written before it was kept)
  logged (L of M)    the rows this write applied, when the row log is on: {f: the stream position they continue
                     from (N; 0: the stream started again), r: the rows, float32 (B)}, one a run of rows; the
                     table's change stream carries them to the log (`store/log.py`), the next write replaces them
  applied (M)        where the user's stream records stand: {shard id: the sequence number of the last record of
                     that shard applied or refused (S, decimal)}: the newest numbered shard and any named otherwise
                     (`Positions`; absent: none)
  -- a live state only:
  steps (N)          the user's stream: rows sent since the state was new or reset
  model_version (S), state (B: float32 blob in the manifest's layout)
                     the state of the model version that answered the last request, current at `steps`
  since (N)          the stream position that state began at (absent: 0, it has seen every row)
  kind (S)           what other versions may continue it: "window:<W>x<F>:<input kind>" (absent: none)
  versions (M)       the other versions' states: {version: {s: blob (B), b: since (N), a: the stream position it
                     is current at (N), k: kind (S, optional)}}
  history (B)        the user's last HISTORY_ROWS input rows, float32, oldest first (absent: none kept)
  reply (M)          the response of the newest keyed request, if it was this write's or no write came since
                     {k: key digest (B), v: model version (S), s: steps (N), o: origin (S), n: rows (N),
                      y: every output's float32 values, in manifest order (B),
                      c: the other versions' reports (L of M: v, r: role, o: origin, n: steps; optional),
                      e: the rows the answering version's state had seen (N, optional: absent, `s`),
                      a stream write's: q: its shard (S), r: its records (B: the first sequence number, then each
                      one's difference from the one before, and each one's rows, as LEB128 varints)}
  outbox (L of M)    older stream answers not yet known published, each as `reply` is (absent: none)
  -- a tombstone (after DELETE): deleted (BOOL true), and none of the above

`created`, `logged`, `applied`, `outbox` and a reply's `e`, `q` and `r` are optional within format 3: a release
that does not know them ignores them (and drops them when it writes), so they are no new format.

Formats evolve as schemas do, expand then contract: a release reads the formats every earlier release wrote;
a change that an earlier release could not read is first shipped read-only (the release after writes it), so a
rollback of one release always finds items it can read. Format 3 only adds attributes to format 2, which the
previous release ignores. An item of a newer format than this release knows is Unsupported: never reset nor
overwritten (the request is answered 503 and retried later, presumably by the newer release).

What is read is one of six named states: Absent (no item), Live, Tombstone, Expired (past its TTL, not yet
removed), Unreadable (an attribute missing, mistyped or out of range: only its guard is relied on) and
Unsupported (a newer format).

Why a write is never applied twice:
- Every write is conditional on the `revision`, `writes` and `write_id` (format 1) it read (or on the item's
  absence), so it lands only on the item its writer saw. `revision` grows by one per write and is never reset:
  DELETE writes a tombstone, and only TTL removes the item, long after any retry (`expires_at` is at least the
  key window).
- A writer whose write's outcome is unknown (lost answer; botocore's retry then fails its own condition)
  re-reads: its write landed if its id is in `writes`; it did not if the history covers its revision with
  another id, or the revision never reached it. Otherwise (more than HISTORY writes since) it cannot tell,
  and says so rather than write again.
- A stream record's identity is its shard and sequence number: sequence numbers grow within a shard, and a
  user's records reach the stream function in that order. The write that applies a user's records records the
  last one's number under its shard (`applied`), in the same conditional write as the state it produced, so a
  record at or below it is already in the state, and so is every record of a shard older than the newest
  numbered one (`Positions`): a batch delivered again applies none of it twice, with no window to outlive.
- A request key (the client's idempotency key) is recorded in the same conditional write as the state it
  produced. A repeat within the window (newest `max_keys` keys, none older than `key_ttl`) finds its record:
  the same fingerprint is a replay, another is a reuse. Only the newest keyed response is kept (`reply`),
  and it is dropped by the next write: a repeat of an older key is recognised, never applied again, but
  its response is no longer there. Keys are per user, whatever the model versions.

Cost: a write is billed per started KiB of the larger of the old and new item. Without keys the item is
the state blob plus about 250 bytes; each other version adds its blob and about 30 bytes, the history
4 x F x HISTORY_ROWS bytes; keys add at most KEY_RECORD_BYTES x max_keys + 12 bytes, and a keyed write's
reply 4 x (output values) + about 60 bytes, dropped by the next write. A stream write's answer stays until a
later delivery shows it published (the next one, when nothing failed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from carryover.core.domain import (
    DIGEST_BYTES,
    KeyRecord,
    KeyWindow,
    Position,
    Positions,
    UserState,
)
from carryover.core.history import Run

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

    Attribute = AttributeValueTypeDef
else:
    Attribute = dict

Item = dict[str, Attribute]  # an item as DynamoDB attributes
FORMAT = 3  # the item format this release writes, and the newest it reads

HISTORY = 16  # write ids kept: a lost answer is recognised past this many other writers, not more
WRITE_ID_BYTES = 8
KEY_RECORD_BYTES = 2 * DIGEST_BYTES + 4  # key digest, request fingerprint, epoch seconds
ITEM_LIMIT_BYTES = 400 * 1024  # DynamoDB's item size limit
ITEM_OVERHEAD_BYTES = 2048  # keys, names, write ids, times: everything in an item but the state and the reply


@dataclass(frozen=True)
class Absent:
    """No item: never written, or removed by TTL."""


@dataclass(frozen=True)
class _Existing:
    revision: int
    writes: tuple[bytes, ...]
    keys: tuple[KeyRecord, ...]
    applied: Positions
    expires_at: datetime
    guard: Item  # the raw attributes the next write is conditional on
    created: int  # epoch seconds of the item's first write (0: not known, written before it was kept)


@dataclass(frozen=True)
class Live(_Existing):
    state: UserState
    logged: tuple[Run, ...] = ()  # the rows the write that left it applied, when the row log is on


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


@dataclass(frozen=True)
class Unsupported:
    """An item of a format newer than this release reads: never reset nor overwritten."""

    format: int
    guard: Item


Stored = Absent | Live | Tombstone | Expired | Unreadable | Unsupported
Written = Live | Tombstone  # what a write leaves


@dataclass(frozen=True)
class Lifetimes:
    state_ttl: timedelta
    keys: KeyWindow = field(default_factory=KeyWindow)


@dataclass(frozen=True)
class Write:
    """What one request writes: the user's new state (None: the tombstone a DELETE leaves); for a keyed
    request, its key; for stream records, where each of their shards now stands; with the row log on, the
    rows it applied, each run from the stream position it continues."""

    state: UserState | None
    key: KeyRecord | None = None
    applied: tuple[tuple[str, int], ...] = ()
    logged: tuple[Run, ...] = ()


@dataclass(frozen=True)
class Attempt:
    """A write that was sent: its id and the revision it would have written."""

    write_id: bytes
    revision: int


def positions(stored: Stored) -> Positions:
    """Where the user's stream records stand, as the item says (none for an item that says nothing)."""
    return stored.applied if isinstance(stored, _Existing) else Positions()


def holds(stored: Stored, position: Position) -> bool:
    """Whether the record at `position` is in the item's state already."""
    return positions(stored).holds(position)


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
        case Unreadable() | Unsupported():
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
        "created": previous.created if previous else int(now.timestamp()),
        "revision": previous.revision + 1 if previous else 1,
        "writes": (write_id, *(previous.writes if previous else ()))[:HISTORY],
        "keys": keys,
        "applied": positions(read).advanced(dict(write.applied)),
        "guard": {},
    }
    if write.state is None:
        return Tombstone(expires_at=(now + lifetimes.keys.ttl).replace(microsecond=0), **fields)
    expires_at = (now + lifetimes.state_ttl).replace(microsecond=0)
    return Live(state=write.state, expires_at=expires_at, logged=write.logged, **fields)


def needs_tombstone(read: Stored) -> bool:
    """Whether a DELETE has anything to erase: a live state, or an item whose content cannot be read."""
    return isinstance(read, Live | Unreadable)


def largest_item_bytes(state_bytes: int, reply_bytes: int, window: KeyWindow, history_bytes: int = 0) -> int:
    """The most an item can hold for states of `state_bytes` in all, a recorded reply of at most `reply_bytes`
    and a history of `history_bytes`, besides the stream answers kept until published."""
    return state_bytes + reply_bytes + history_bytes + ITEM_OVERHEAD_BYTES + KEY_RECORD_BYTES * window.size
