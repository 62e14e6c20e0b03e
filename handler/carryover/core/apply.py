"""The one apply path: what every way in calls to apply users' rows, each user's exactly once. An HTTP predict
is one user's one entry (identified by its idempotency key, if any); a stream batch is many users' entries
(identified by their shard positions); a bulk job's worker, many users' too.

One read of every user's item (`StateStore.load_many`; none for a user this instance's cache holds), the entries
that cannot be applied handed to `refuse` before any write moves a user's position past them, every model run
once over all users' rows (`Planner`), and each user's one conditional write (`ConditionalWriter`: `WRITERS`
users at once), planned again for that user alone when another writer got there first. Why this applies nothing
twice is written down in `store/item.py`; why the cache changes none of it, in `store/cache.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from carryover.core.plan import Entry, Outcome, Planner, Submission
from carryover.core.writes import ConditionalWriter, Planned
from carryover.errors import ServiceError
from carryover.observability import TIMESTEPS, add_metric, logger
from carryover.store import StateStore
from carryover.store.item import Stored, holds

Refuse = Callable[[list[tuple[str, Entry]]], None]
WRITERS = 16  # users' conditional writes in flight at once (each its own user: they never conflict)


class Applier:
    def __init__(self, planner: Planner, store: StateStore, writer: ConditionalWriter) -> None:
        self.planner = planner
        self._store = store
        self._writer = writer

    def apply(
        self, submissions: Sequence[Submission], deadline: float = float("inf"), refuse: Refuse | None = None
    ) -> dict[str, Outcome | ServiceError]:
        """Each user's outcome, or the error that kept their write from landing. `refuse` gets each user's
        entries refused as read that are not behind their position yet, before any write; what it raises stops
        the batch with nothing written. `deadline` (time.monotonic) ends retrying conflicts. Raises
        StoreUnavailable when the items cannot be read."""
        read = self._store.load_many([submission.user_id for submission in submissions], cached=True)
        if refuse is not None:
            refuse(self._refused(submissions, read))
        planned = self.planner.plan({s.user_id: (s, read[s.user_id]) for s in submissions})

        def settle(submission: Submission) -> Outcome | ServiceError:
            user = submission.user_id
            return self._settle(submission, read[user], planned[user], deadline)

        if len(submissions) == 1:
            return {submissions[0].user_id: settle(submissions[0])}
        with ThreadPoolExecutor(max_workers=min(WRITERS, len(submissions))) as writers:
            return dict(zip((s.user_id for s in submissions), writers.map(settle, submissions), strict=True))

    def _refused(self, submissions: Sequence[Submission], read: dict[str, Stored]) -> list[tuple[str, Entry]]:
        """The entries refused as read that their user's item has not moved past, judged on the item as it is (a
        cached one read again: a refusal is not proved by a write)."""
        refusing = [s.user_id for s in submissions if any(e.error for e in s.entries)]
        again = [user for user in refusing if self._store.answered_from_cache(read[user])]
        read |= self._store.load_many(again) if again else {}
        return [(s.user_id, e) for s in submissions for e in s.entries if e.error and _pending(e, read[s.user_id])]

    def _settle(
        self, submission: Submission, read: Stored, first: Planned[Outcome] | ServiceError, deadline: float
    ) -> Outcome | ServiceError:
        """Writes one user's plan (the batch's first, a plan of their own after a conflict)."""
        user = submission.user_id

        def plan(stored: Stored) -> Planned[Outcome]:
            result = first if stored is read else self.planner.plan({user: (submission, stored)})[user]
            if isinstance(result, ServiceError):
                raise result
            return result

        try:
            outcome = self._writer.apply(user, plan, deadline, read=read)
        except ServiceError as error:
            return error
        if outcome.applied and outcome.prediction is not None:
            add_metric(TIMESTEPS, sum(entry.rows for entry in outcome.applied))
            logger.debug("state saved", extra={"user_id": user, "steps": outcome.prediction.steps})
        return outcome


def _pending(entry: Entry, stored: Stored) -> bool:
    return entry.position is None or not holds(stored, entry.position)
