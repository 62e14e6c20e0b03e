"""Where users' state is kept: the interface every store implements. The service knows only this.

A store reads an item strongly consistently and writes one only if it is still as it was read, atomically
(`item.py` says why that applies no request twice). `StateStore` does what every store does alike: a write's
id and the item it leaves (`successor`), the attributes (`codec`), and the named state of what was read
(`parse`); a store implements only its I/O. `dynamodb.py` is the store the Lambda uses, `sqlite.py` the
local API's.
"""

from __future__ import annotations

import copy
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime

from carryover.store.blobs import BlobStore, offload, resolve
from carryover.store.cache import ItemCache
from carryover.store.codec import GUARD_ATTRIBUTES, encode, item_key, parse
from carryover.store.item import (
    WRITE_ID_BYTES,
    Absent,
    Attempt,
    Item,
    Lifetimes,
    Live,
    Stored,
    Write,
    Written,
    successor,
)

Clock = Callable[[], datetime]


class WriteConflict(Exception):
    """The item changed since it was read. `ambiguous`: the write may still have landed (an earlier try of it
    had its answer lost), so only a later read can tell; otherwise it surely did not. `found`: the raw item the
    refused write found, as the store returned it (`NO_ITEM`: none; None: not returned), and `current` the
    same item as read, which the next attempt plans from without reading again."""

    def __init__(self, write: Attempt, ambiguous: bool, found: Item | None = None) -> None:
        super().__init__(write.write_id.hex())
        self.write, self.ambiguous, self.found = write, ambiguous, found
        self.current: Stored | None = None


NO_ITEM: Item = {}  # what a refused write found when there is no item


def guard(item: Item) -> Item:
    """The attributes a write is conditional on, as `item` holds them."""
    return {name: item[name] for name in GUARD_ATTRIBUTES if name in item}


def _as_kept(written: Written, written_guard: Item) -> Written:
    """The item a write left, as the cache keeps it: with its guard, without the rows it logged."""
    if isinstance(written, Live):
        return replace(written, guard=written_guard, logged=())
    return replace(written, guard=written_guard)


class StateStore(ABC):
    """One user's item per model, read and written whole. Reads and writes raise `StoreUnavailable` when the
    store cannot be reached or keeps refusing (a write may or may not have landed then)."""

    def __init__(self, model_name: str, lifetimes: Lifetimes, clock: Clock) -> None:
        self._model, self._lifetimes, self._clock = model_name, lifetimes, clock
        self._blobs: BlobStore | None = None  # where state blobs go when the item cannot hold them (`blobs.py`)
        self._offloads = False
        self._logged_rows = True
        self._cache: ItemCache | None = None  # the items this instance last wrote or saw (`cache.py`)

    def keep_states_in(self, blobs: BlobStore, always: bool, logged_rows: bool = False) -> None:
        """Items naming state objects are read from `blobs`; with `always`, every write keeps its states there. The
        rows a write logged, when kept as an object, are fetched only with `logged_rows` (the bootstrap reads them;
        a request never does: the item read for it lacks them)."""
        self._blobs, self._offloads, self._logged_rows = blobs, always, logged_rows

    def keep_items(self, limit_bytes: int) -> None:
        """Keeps the items last written or seen, at most `limit_bytes` of them, for `load_many(cached=True)`."""
        self._cache = ItemCache(limit_bytes) if limit_bytes > 0 else None

    def renew(self) -> None:
        """After a snapshot's restore: the cache emptied (other instances have written since it was taken), the
        connections made again (`snapstart.py`)."""
        if self._cache is not None:
            self._cache.clear()
        if self._blobs is not None:
            self._blobs.renew()
        self._reconnect()

    @abstractmethod
    def _reconnect(self) -> None:
        """Makes the store's connections again (a store of local files keeps its own)."""

    def answered_from_cache(self, stored: Stored) -> bool:
        """Whether `stored` came from the cache: a write conditional on it proves it right; nothing else does."""
        return self._cache is not None and self._cache.answered(stored)

    def _seen(self, user_id: str, item: Item | None, now: datetime) -> Stored:
        """What `item`, just read, holds; remembered as the user's item."""
        if item is not None:
            item = resolve(item, self._blobs, self._logged_rows)
        stored = parse(item, now)
        if self._cache is not None:
            self._cache.put(user_id, copy.copy(stored))
        return stored

    def load(self, user_id: str) -> Stored:
        """The user's item as the store holds it now (strongly consistent)."""
        return self._seen(user_id, self._get(user_id), self._clock())

    def load_many(self, user_ids: Sequence[str], cached: bool = False) -> dict[str, Stored]:
        """Every user's item as `load` reads it, in as few reads as the store allows (strongly consistent); with
        `cached`, those the cache holds are answered from it, unread."""
        now = self._clock()
        found = {}
        if cached and self._cache is not None:
            found = {user: held for user in user_ids if (held := self._cache.get(user, now)) is not None}
        unread = [user for user in user_ids if user not in found]
        if len(unread) == 1:
            found[unread[0]] = self.load(unread[0])
        elif unread:
            items = self._get_many(unread)
            found |= {user: self._seen(user, items.get(user), now) for user in unread}
        return {user: found[user] for user in user_ids}

    def save(self, user_id: str, write: Write, read: Stored) -> Attempt:
        """Writes `write` on top of `read` if the item is still as `read` left it; raises WriteConflict if not
        (with the item as it is, when the store returned it)."""
        write_id = os.urandom(WRITE_ID_BYTES)  # never repeated, in any process or restored snapshot
        item = successor(read, write, write_id, self._clock(), self._lifetimes)
        attempt = Attempt(write_id, item.revision)
        condition = None if isinstance(read, Absent) else read.guard
        encoded = encode(item_key(user_id, self._model), item)
        if self._offloads and self._blobs is not None:
            offload(encoded, self._blobs)  # the objects first: the item, written next, is the commit point
        try:
            self._put(user_id, encoded, condition, attempt)
        except WriteConflict as conflict:
            if conflict.found is not None:
                conflict.current = self._seen(user_id, conflict.found or None, self._clock())
            elif self._cache is not None:
                self._cache.drop(user_id)
            raise
        except BaseException:
            if self._cache is not None:
                self._cache.drop(user_id)  # the write may or may not have landed
            raise
        if self._cache is not None:
            self._cache.put(user_id, _as_kept(item, guard(encoded)))
        return attempt

    def scan(self) -> Iterator[tuple[str, Stored]]:
        """Every user's item of this model (a bulk read: for export, not for serving)."""
        now = self._clock()
        for user_id, item in self._scan():
            yield user_id, parse(resolve(item, self._blobs, self._logged_rows), now)

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
