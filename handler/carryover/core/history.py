"""A user's history: the log of every write that applied their rows, and the rows of their stream rebuilt from it.

Every write that applies rows records them (`LogEntry`), each run of rows with the stream position it continues
from (0: the stream started again, the user new or asking for a reset); a DELETE records a deletion. Entries
are identified by their write id (a log delivered twice is read once) and ordered by the item's lifetime
(`created`: an item removed by its TTL and written again starts a new one) and revision. The user's rows are
those since the last restart after the last deletion, when the entries chain (each run continues exactly where
the one before ended); when they do not (the log was off for some writes, or has not received the newest yet),
the history says how far it reaches, never passing for whole.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Run:
    """Rows one write applied from one place in the user's stream."""

    start: int  # the stream position the rows continue from (0: the stream started again there)
    blob: bytes  # the rows, float32, oldest first

    def rows(self, features: int) -> np.ndarray:
        return np.frombuffer(self.blob, dtype="<f4").astype(np.float32).reshape(-1, features)


@dataclass(frozen=True)
class LogEntry:
    """One write of a user's item, as the log records it."""

    user_id: str
    write_id: str  # hex: the write's id, unique
    created: int  # epoch seconds the item was created: its lifetime (0: an item older than the log)
    revision: int  # the revision the write left
    steps: int  # where the user's stream stands after it
    at: str  # ISO 8601 time of the write
    runs: tuple[Run, ...] = ()
    records: tuple[str, ...] = ()  # the stream records it applied, "shard:sequence"
    key: str | None = None  # hex digest of the request's idempotency key
    deleted: bool = False

    @property
    def order(self) -> tuple[int, int]:
        return self.created, self.revision


@dataclass(frozen=True)
class History:
    """The rows of a user's stream as the log holds them, up to `steps`; `whole` when they chain from the
    stream's start (the log saw every write since) and end where the newest entry says the stream stands."""

    rows: np.ndarray  # (steps, features) float32
    revision: tuple[int, int]  # the newest entry's (lifetime, revision)
    steps: int
    whole: bool


class RowLog(ABC):
    """Where the log is read from: the local store's table, or the files the archiver writes."""

    @abstractmethod
    def users(self) -> list[str]:
        """Every user the log holds entries of."""

    @abstractmethod
    def entries(self, users: Sequence[str]) -> dict[str, list[LogEntry]]:
        """Each user's entries, in any order, possibly more than once."""


def ordered(entries: Iterable[LogEntry]) -> list[LogEntry]:
    """The entries once each (by write id), in the user's order, those before the last deletion dropped."""
    unique = sorted({entry.write_id: entry for entry in entries}.values(), key=lambda entry: entry.order)
    deletions = [index for index, entry in enumerate(unique) if entry.deleted]
    return unique[deletions[-1] + 1 :] if deletions else unique


def history(entries: Iterable[LogEntry], features: int) -> History | None:
    """The user's rows rebuilt from their log entries; None for a user the log holds no rows of (or deleted)."""
    kept = ordered(entries)
    if not kept:
        return None
    rows, whole = np.zeros((0, features), np.float32), True
    for run in (run for entry in kept for run in entry.runs):
        if run.start == 0:
            rows, whole = run.rows(features), True
        elif run.start == len(rows):
            rows = np.concatenate([rows, run.rows(features)])
        else:  # a write the log did not see came between
            rows, whole = run.rows(features), False
    newest = kept[-1]
    return History(rows, newest.order, newest.steps, whole and len(rows) == newest.steps)
