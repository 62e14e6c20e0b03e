"""A user's state and the rules about it that need no storage: each model version's state and where in the
user's stream it stands, the request keys remembered, the answers recorded, and where the user's stream records
stand. `carryover.store.item` wraps these in the item a store keeps.

Stream positions (`Positions`): a record's identity is its shard and sequence number; sequence numbers grow
within a shard, and a user's records reach the stream function in their order. Kinesis numbers shards as it
creates them (`shardId-000000000012`) and a user's partition key moves only from a shard to one of its children,
created later, whose records Lambda delivers only after every record of the parent: so every record of a user
in a shard numbered below the newest shard their records came from is already applied (or was passed over by
the event source mapping, and is in its failure destination). The item keeps one position per shard it cannot
order (named otherwise) and the newest numbered shard's, with no window to outlive: a reshard history of any
length, re-read from the stream's start, applies nothing twice.

Answers kept until published (`Reply.covered`, `UserState.outbox`): a stream write records its answer with the
records it covers. Lambda delivers a shard from its checkpoint, which moves past a record only once an invocation
holding it succeeded, and the stream function succeeds only once it has published the answers of every record
it was given: so an answer whose records all come before the first of the user's records in a delivery (of that
shard, or of a parent shard) has been published, and is dropped; every other one is published again by each
invocation, with the same id, until then.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

# Where a model's state started for a request: new (no state), continued (its saved state), reset (asked for, or
# nothing it can continue), replayed (run from zero over the kept history), caught_up (its saved state, missing
# rows run from the history first), warmed (a second model starting from zero beside the one that answers).
StateOrigin = Literal["new", "continued", "reset", "replayed", "caught_up", "warmed"]
Role = Literal["answers", "next", "previous"]  # a bundle's models: the one that answers, and its companion
DIGEST_BYTES = 8
FLOAT32_BYTES = 4
REPLY_LIMIT_BYTES = 64 * 1024  # the outputs one recorded answer may hold
OUTBOX_LIMIT_BYTES = 2 * REPLY_LIMIT_BYTES  # stream answers kept beside the newest one, until published
_NUMBERED_SHARD = re.compile(r"shardId-(\d+)")


def digest(data: bytes | str) -> bytes:
    """The short digest under which a request key or a request's canonical form is recorded."""
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).digest()[:DIGEST_BYTES]


@dataclass(frozen=True)
class KeyRecord:
    """A request made with a key: digests of the key and of what the request asked, and when."""

    key: bytes
    fingerprint: bytes
    at: datetime


@dataclass(frozen=True)
class KeyWindow:
    """Which request keys are remembered: the newest `size`, none older than `ttl`."""

    ttl: timedelta = timedelta(hours=24)
    size: int = 32


@dataclass(frozen=True)
class VersionReport:
    """What a request did with a model version that did not answer it: where its state started, and its steps."""

    version: str
    role: Role
    origin: StateOrigin
    steps: int


@dataclass(frozen=True)
class Position:
    """A stream record's identity: its shard, and its sequence number there."""

    shard: str
    sequence: int

    @property
    def event_id(self) -> str:
        return f"{self.shard}:{self.sequence}"


def shard_number(shard: str) -> int | None:
    """The number Kinesis gave the shard when it created it (children after parents); None for another name."""
    found = _NUMBERED_SHARD.fullmatch(shard)
    return int(found.group(1)) if found else None


@dataclass(frozen=True)
class Positions:
    """Where a user's stream records stand: {shard: the sequence number of its last record in the state}, the
    newest numbered shard and every shard named otherwise (see the module's docstring)."""

    last: dict[str, int] = field(default_factory=dict)

    def holds(self, position: Position) -> bool:
        """Whether the record at `position` is in the state already (or was passed over for good)."""
        number = shard_number(position.shard)
        if number is not None and any((shard_number(s) or -1) > number for s in self.last):
            return True
        return position.sequence <= self.last.get(position.shard, -1)

    def advanced(self, moved: dict[str, int]) -> Positions:
        """These positions with each shard of `moved` at its new last record, ancestors of numbered ones dropped."""
        last = {**self.last, **moved}
        newest = max((n for n in map(shard_number, last) if n is not None), default=None)
        return Positions({s: at for s, at in last.items() if shard_number(s) in (None, newest)})


@dataclass(frozen=True)
class Covered:
    """The stream records an answer covers: their shard, and each one's sequence number and rows, in order."""

    shard: str
    records: tuple[tuple[int, int], ...]

    @property
    def last(self) -> Position:
        return Position(self.shard, self.records[-1][0])


@dataclass(frozen=True)
class Reply:
    """A recorded answer, enough to render it again: a keyed request's (`key` the digest of its key), or a stream
    write's (`covered` its records, `key` the digest of its last record's identity)."""

    key: bytes
    model_version: str
    steps: int
    origin: StateOrigin
    rows: int
    outputs: bytes  # float32 values of every output, in manifest order
    others: tuple[VersionReport, ...] = ()
    covered: Covered | None = None
    seen: int | None = None  # the rows the answering version's state had seen (None: recorded before it was)

    @property
    def seen_rows(self) -> int:
        return self.steps if self.seen is None else self.seen

    @property
    def size(self) -> int:
        """What it adds to an item, about."""
        return len(self.outputs) + 64 + 32 * len(self.covered.records if self.covered else ())

    def acknowledged(self, first: dict[str, int], published: frozenset[bytes]) -> bool:
        """Whether this stream answer is known published: published by this invocation, or its records all before
        `first` ({shard: the sequence number of the user's first record in the delivery}) or in a parent shard."""
        if self.covered is None:
            return False
        if self.key in published:
            return True
        shard, number = self.covered.shard, shard_number(self.covered.shard)
        if shard in first:
            return self.covered.last.sequence < first[shard]
        return number is not None and any((shard_number(s) or -1) > number for s in first)


def stream_key(position: Position) -> bytes:
    """The key a stream answer is recorded under: the digest of its last record's identity."""
    return digest(f"stream:{position.event_id}")


@dataclass(frozen=True)
class ModelState:
    """One model version's state for the user, and where in the user's stream it stands."""

    version: str
    blob: bytes
    since: int  # the stream position it began at: 0 when it has seen every row of the stream
    at: int  # the stream position it is current at
    kind: str | None = None  # states of one kind are continued by any version of that kind (window rows)

    @property
    def steps(self) -> int:
        """The rows this state has seen."""
        return self.at - self.since


@dataclass(frozen=True)
class UserState:
    """A user's state as one write leaves it: their stream, each model version's state (the one that answered
    first, current at the stream), the rows kept for versions that lack a state, the newest recorded answer, and
    the stream answers not yet known published."""

    stream: int
    models: tuple[ModelState, ...]
    updated_at: datetime
    reply: Reply | None = None
    history: bytes = b""  # the last rows, float32, oldest first; they end at `stream`
    outbox: tuple[Reply, ...] = ()

    @classmethod
    def of_one(
        cls, version: str, blob: bytes, steps: int, updated_at: datetime, reply: Reply | None = None
    ) -> UserState:
        """The state of one model version that has seen every row of the stream."""
        return cls(steps, (ModelState(version, blob, 0, steps),), updated_at, reply)

    @property
    def answering(self) -> ModelState:
        return self.models[0]

    @property
    def unpublished(self) -> tuple[Reply, ...]:
        """The stream answers this state keeps: the older ones, then the newest write's if it was one."""
        newest = (self.reply,) if self.reply is not None and self.reply.covered is not None else ()
        return (*self.outbox, *newest)

    def of(self, version: str, kind: str | None) -> ModelState | None:
        """This version's state, or one of the same kind (which any version of that kind continues)."""
        exact = next((model for model in self.models if model.version == version), None)
        if exact is not None or kind is None:
            return exact
        return next((model for model in self.models if model.kind == kind), None)
