"""Where users' state is kept: the interface every store implements. The service knows only this.

A store reads an item strongly consistently and writes one only if it is still as it was read, atomically
(`item.py` says why that applies no request twice). `StateStore` does what every store does alike: a write's
id and the item it leaves (`successor`), the attributes (`codec`), and the named state of what was read
(`parse`); a store implements only its I/O. `dynamodb.py` is the store the Lambda uses, `sqlite.py` the
local API's.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime

from carryover.store.blobs import BlobStore, offload, resolve
from carryover.store.codec import GUARD_ATTRIBUTES, encode, item_key, parse
from carryover.store.item import WRITE_ID_BYTES, Absent, Attempt, Item, Lifetimes, Stored, Write, successor

Clock = Callable[[], datetime]


class WriteConflict(Exception):
    """The item changed since it was read. `ambiguous`: the write may still have landed (an earlier try of it
    had its answer lost), so only a later read can tell; otherwise it surely did not."""

    def __init__(self, write: Attempt, ambiguous: bool) -> None:
        super().__init__(write.write_id.hex())
        self.write, self.ambiguous = write, ambiguous


def guard(item: Item) -> Item:
    """The attributes a write is conditional on, as `item` holds them."""
    return {name: item[name] for name in GUARD_ATTRIBUTES if name in item}


class StateStore(ABC):
    """One user's item per model, read and written whole. Reads and writes raise `StoreUnavailable` when the
    store cannot be reached or keeps refusing (a write may or may not have landed then)."""

    def __init__(self, model_name: str, lifetimes: Lifetimes, clock: Clock) -> None:
        self._model, self._lifetimes, self._clock = model_name, lifetimes, clock
        self._blobs: BlobStore | None = None  # where state blobs go when the item cannot hold them (`blobs.py`)
        self._offloads = False
        self._logged_rows = True

    def keep_states_in(self, blobs: BlobStore, always: bool, logged_rows: bool = False) -> None:
        """Items naming state objects are read from `blobs`; with `always`, every write keeps its states there. The
        rows a write logged, when kept as an object, are fetched only with `logged_rows` (the bootstrap reads them;
        a request never does: the item read for it lacks them)."""
        self._blobs, self._offloads, self._logged_rows = blobs, always, logged_rows

    def _parsed(self, item: Item | None, now: datetime) -> Stored:
        return parse(None if item is None else resolve(item, self._blobs, self._logged_rows), now)

    def load(self, user_id: str) -> Stored:
        """The user's item as the store holds it now (strongly consistent)."""
        return self._parsed(self._get(user_id), self._clock())

    def load_many(self, user_ids: Sequence[str]) -> dict[str, Stored]:
        """Every user's item as `load` reads it, in as few reads as the store allows (strongly consistent)."""
        if len(user_ids) == 1:
            return {user_ids[0]: self.load(user_ids[0])}
        found = self._get_many(user_ids) if user_ids else {}
        now = self._clock()
        return {user_id: self._parsed(found.get(user_id), now) for user_id in user_ids}

    def save(self, user_id: str, write: Write, read: Stored) -> Attempt:
        """Writes `write` on top of `read` if the item is still as `read` left it; raises WriteConflict if not."""
        write_id = os.urandom(WRITE_ID_BYTES)  # never repeated, in any process or restored snapshot
        item = successor(read, write, write_id, self._clock(), self._lifetimes)
        attempt = Attempt(write_id, item.revision)
        condition = None if isinstance(read, Absent) else read.guard
        encoded = encode(item_key(user_id, self._model), item)
        if self._offloads and self._blobs is not None:
            offload(encoded, self._blobs)  # the objects first: the item, written next, is the commit point
        self._put(user_id, encoded, condition, attempt)
        return attempt

    def scan(self) -> Iterator[tuple[str, Stored]]:
        """Every user's item of this model (a bulk read: for export, not for serving)."""
        now = self._clock()
        for user_id, item in self._scan():
            yield user_id, self._parsed(item, now)

    @abstractmethod
    def _scan(self) -> Iterator[tuple[str, Item]]:
        """Every user's raw item of this model."""

    @abstractmethod
    def _get(self, user_id: str) -> Item | None:
        """The user's raw item, or None."""

    @abstractmethod
    def _get_many(self, user_ids: Sequence[str]) -> dict[str, Item]:
        """The raw items of those users that have one."""

    @abstractmethod
    def _put(self, user_id: str, item: Item, condition: Item | None, attempt: Attempt) -> None:
        """Stores `item` if the item's guard attributes are still `condition` (None: if there is no item);
        raises WriteConflict(attempt, ...) if not."""

    @abstractmethod
    def ping(self) -> None:
        """One cheap read that proves the store answers."""
