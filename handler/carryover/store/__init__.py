"""Where users' state is kept: the interface every store implements. The service knows only this.

A store reads an item strongly consistently and writes one only if it is still as it was read, atomically
(`item.py` says why that applies no request twice). `dynamodb.py` is the store the Lambda uses.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from carryover.store.item import Attempt, Stored, Write


class WriteConflict(Exception):
    """The item changed since it was read. `ambiguous`: the write may still have landed (an earlier try of it
    had its answer lost), so only a later read can tell; otherwise it surely did not."""

    def __init__(self, write: Attempt, ambiguous: bool) -> None:
        super().__init__(write.write_id.hex())
        self.write, self.ambiguous = write, ambiguous


class StateStore(ABC):
    """One user's item per model, read and written whole. Reads and writes raise `StoreUnavailable` when the
    store cannot be reached or keeps refusing (a write may or may not have landed then)."""

    @abstractmethod
    def load(self, user_id: str) -> Stored:
        """The user's item as the store holds it now (strongly consistent)."""

    @abstractmethod
    def load_many(self, user_ids: Sequence[str]) -> dict[str, Stored]:
        """Every user's item as `load` reads it, in as few reads as the store allows (strongly consistent)."""

    @abstractmethod
    def save(self, user_id: str, write: Write, read: Stored) -> Attempt:
        """Writes `write` on top of `read` if the item is still as `read` left it; raises WriteConflict if not."""

    @abstractmethod
    def ping(self) -> None:
        """One cheap read that proves the store answers."""
