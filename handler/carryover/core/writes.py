"""The retry policy around one conditional write: read, plan, write; on a conflict, plan again from the item the
refused write found (read again where the store does not return it) with jittered backoff until a write lands,
the retries or the time run out, or an earlier attempt turns out to have landed after all (its answer was lost,
and botocore's retry of it failed its own condition). Before giving up, the last item found checks exactly
that, so an applied request is never answered as not applied."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from carryover.errors import OutcomeUnknown, ServiceError, StateConflict
from carryover.observability import WRITE_CONFLICTS, add_metric
from carryover.store import StateStore, WriteConflict
from carryover.store.item import Attempt, Stored, Write, landed

BACKOFF_BASE_S = 0.005
BACKOFF_CAP_S = 0.2
T = TypeVar("T")


@dataclass(frozen=True)
class Planned(Generic[T]):
    """What one attempt decided from what it read: the write to send (None: nothing to write) and the result
    that stands once it lands."""

    write: Write | None
    result: T


def pause(attempt: int, deadline: float) -> bool:
    """Jittered exponential backoff before the next attempt; False when the deadline leaves no time."""
    wait = random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))
    if time.monotonic() + wait >= deadline:
        return False
    time.sleep(wait)
    return True


class ConditionalWriter:
    def __init__(self, store: StateStore, retries: int) -> None:
        self._store = store
        self._retries = retries

    def apply(
        self,
        user_id: str,
        plan: Callable[[Stored], Planned[T]],
        deadline: float = float("inf"),
        read: Stored | None = None,
    ) -> T:
        """Runs `plan` on the user's item until its write lands; `deadline` (time.monotonic) ends retrying.
        `read`: the item as already read (or as this instance's cache holds it), for the first attempt; after a
        conflict, the item the refused write found (read again when the store did not return it)."""
        sent: dict[Attempt, T] = {}  # writes whose outcome is not known -> the result each stands for
        attempts = 0
        stored = read if read is not None else self._store.load(user_id)
        for attempt in range(self._retries + 1):
            earlier = _landed(user_id, sent, stored)
            if earlier:
                return earlier[0]
            stored, planned = self._decide(user_id, plan, stored)
            if planned.write is None:
                return planned.result
            try:
                self._store.save(user_id, planned.write, stored)
                return planned.result
            except WriteConflict as conflict:
                attempts += 1
                if conflict.ambiguous:
                    sent[conflict.write] = planned.result
                add_metric(WRITE_CONFLICTS, 1)
                stored = conflict.current if conflict.current is not None else self._store.load(user_id)
                if attempt == self._retries or not pause(attempt, deadline):
                    break
        earlier = _landed(user_id, sent, stored)  # the last conflict may be its own write
        if earlier:
            return earlier[0]
        raise StateConflict(f"user {user_id!r}: the state kept changing during {attempts} attempts; retry")

    def _decide(self, user_id: str, plan: Callable[[Stored], Planned[T]], stored: Stored) -> tuple[Stored, Planned[T]]:
        """`plan` on `stored`; where that writes nothing or refuses on an item the cache answered (which no write
        would then prove current), on the item read again instead."""
        if not self._store.answered_from_cache(stored):
            return stored, plan(stored)
        try:
            planned = plan(stored)
            if planned.write is not None:
                return stored, planned
        except ServiceError:
            pass
        fresh = self._store.load(user_id)
        return fresh, plan(fresh)


def _landed(user_id: str, sent: dict[Attempt, T], stored: Stored) -> list[T]:
    """The result of an earlier attempt whose write turned out to have landed, if one did. Attempts known not to
    have landed are forgotten: their revision is someone else's for good, so later writes cannot make them unknown."""
    for write, result in list(sent.items()):
        outcome = landed(write, stored)
        if outcome is None:
            raise OutcomeUnknown(
                f"user {user_id!r}: a write's answer was lost and more writes followed than can be told apart; "
                "it may have been applied: read the user's state before sending it again"
            )
        if outcome:
            return [result]
        del sent[write]
    return []
