"""The items this instance last wrote or saw, per user, so that a warm request writes without reading first.

The write stays conditional on the item's guard as the cache holds it, so the conditional write is still the one
commit point: a stale entry (another instance wrote since, a DELETE, TTL) costs a refused write, which returns
the item as it now is (`ReturnValuesOnConditionCheckFailure=ALL_OLD`), and the attempt is planned again from
that: two round trips, as a read and a write cost without the cache. A decision to write nothing (a replay, a
record already applied) cannot be proved by a write, so it is never taken from the cache: `answered` tells the
caller to read first. Bounded in bytes, least recently used out; emptied when a snapshot is restored.

This holds because every writer of the table moves the item's revision, which each write is conditional on (ours
all do: `item.successor`). A hand edit of an item that leaves its revision as it was is written over by an
instance holding that user: edit the revision too (any new value), or set ITEM_CACHE_MB=0.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from datetime import datetime

from carryover.store.item import ITEM_OVERHEAD_BYTES, Live, Stored, Tombstone

Entry = Live | Tombstone


class ItemCache:
    def __init__(self, limit_bytes: int) -> None:
        self._limit = limit_bytes
        self._entries: OrderedDict[str, tuple[Entry, int]] = OrderedDict()
        self._bytes = 0
        self._handed: weakref.WeakValueDictionary[int, Entry] = weakref.WeakValueDictionary()
        self._lock = threading.Lock()

    def get(self, user_id: str, now: datetime) -> Stored | None:
        """The user's item as last written or seen here, unless it is past its TTL by now (then: read it)."""
        with self._lock:
            found = self._entries.get(user_id)
            if found is None:
                return None
            if found[0].expires_at <= now:
                self._remove(user_id)
                return None
            self._entries.move_to_end(user_id)
            return found[0]

    def put(self, user_id: str, stored: Stored) -> None:
        """Keeps `stored` (an object no caller holds) as the user's item; anything but a state or a tombstone, or
        an item larger than the whole cache, only drops what was kept."""
        size = footprint(stored)
        with self._lock:
            self._remove(user_id)
            if not isinstance(stored, Live | Tombstone) or size > self._limit:
                return
            self._entries[user_id] = (stored, size)
            self._handed[id(stored)] = stored
            self._bytes += size
            while self._bytes > self._limit:
                self._remove(next(iter(self._entries)))

    def drop(self, user_id: str) -> None:
        with self._lock:
            self._remove(user_id)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def answered(self, stored: Stored) -> bool:
        """Whether `stored` was answered from this cache rather than read."""
        return self._handed.get(id(stored)) is stored

    def __len__(self) -> int:
        return len(self._entries)

    def _remove(self, user_id: str) -> None:
        found = self._entries.pop(user_id, None)
        if found is not None:
            self._bytes -= found[1]


def footprint(stored: Stored) -> int:
    """About the bytes `stored` holds: its blobs (states, kept rows, recorded answers) and the item's overhead."""
    if not isinstance(stored, Live):
        return ITEM_OVERHEAD_BYTES
    state = stored.state
    replies = (*state.outbox, *((state.reply,) if state.reply else ()))
    blobs = sum(len(model.blob) for model in state.models) + sum(len(reply.outputs) for reply in replies)
    return ITEM_OVERHEAD_BYTES + blobs + len(state.history)
