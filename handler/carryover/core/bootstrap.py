"""A model version's state for every user, computed from zero over each user's whole history (the row log), and
written into their item beside the versions it holds, as a rollout's next version keeps its state there: a later
deploy of that version answers every user from all of their rows (`seen` = `steps`).

Per user: the log's rows; the writes the log has not received yet caught up from the item itself (the newest
write carries its rows, `logged`: so a user who keeps sending ends exact too; a user more than one write ahead of
the log is left for a later run, `behind`); the version run from zero over them (every user of a batch in one
`run_many`); one conditional write (a conflict re-reads the item and the user's log, and plans again: the local
log is written with the item, so a user written to meanwhile ends exact there). Idempotent: a user whose item
already holds the version's state over every row is `current`, and a run repeated or killed midway writes what
it would have the first time. A user whose log does not reach back to the start of their stream (the log was
off) is left as it is, `incomplete`.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from carryover.bundle import ServedModel
from carryover.core.apply import WRITERS
from carryover.core.domain import ModelState, UserState
from carryover.core.history import History, LogEntry, RowLog, history
from carryover.core.writes import ConditionalWriter, Planned
from carryover.errors import ServiceError
from carryover.store import Clock, StateStore
from carryover.store.item import Live, Stored, Write

# written; current (already over every row); behind (the log lacks more than the newest write: run again later);
# incomplete (the log does not reach back to the start of the user's stream); unlogged (no rows of theirs in the
# log); absent (no state: never written, deleted or expired); failed (the store refused the write)
Status = Literal["written", "current", "behind", "incomplete", "unlogged", "absent", "failed"]


@dataclass(frozen=True)
class Needed:
    """A user's rows up to where their item stands, from zero, and the item: what the version's state is over."""

    rows: np.ndarray
    stored: Live


@dataclass
class Tally:
    """What a run did: users by status, and the rows the model ran over."""

    users: dict[Status, int]
    rows: int = 0

    def add(self, status: Status, rows: int = 0, users: int = 1) -> None:
        self.users[status] = self.users.get(status, 0) + users
        self.rows += rows

    def merge(self, other: Tally) -> None:
        for status, count in other.users.items():
            self.add(status, users=count)
        self.rows += other.rows


def needed(found: History | None, stored: Stored, features: int) -> Needed | Status:
    """The user's rows up to their item's stream position: the log's, then the newest write's own rows when the log
    has not received it yet; or why there are none to take."""
    if not isinstance(stored, Live):
        return "absent"
    if found is None:
        return "unlogged"
    if not found.whole:
        return "incomplete"
    rows = found.rows
    if len(rows) != stored.state.stream:  # the newest write is not in the log yet: its rows are in the item
        runs = stored.logged
        if not runs or runs[0].start not in (0, len(rows)):
            return "behind"
        for run in runs:
            rows = run.rows(features) if run.start == 0 else np.concatenate([rows, run.rows(features)])
    return Needed(rows, stored) if len(rows) == stored.state.stream else "behind"


class Bootstrap:
    def __init__(
        self, model: ServedModel, store: StateStore, writer: ConditionalWriter, log: RowLog, clock: Clock
    ) -> None:
        self._model, self._store, self._writer, self._log, self._clock = model, store, writer, log, clock

    def run(self, users: Sequence[str]) -> Tally:
        """Bootstraps `users` (a batch: their items read at once, the model run once over all of them)."""
        tally = Tally({})
        entries = self._log.entries(users)
        read = self._store.load_many(users)
        needs: dict[str, Needed] = {}
        for user in users:
            need = self._needed(entries[user], read[user])
            if isinstance(need, Needed):
                needs[user] = need
            else:
                tally.add(need)
        reached = dict(zip(needs, self._states([need.rows for need in needs.values()]), strict=True))

        def settle(user: str) -> tuple[Status, int]:
            return self._write(user, needs[user], reached[user], entries[user])

        with ThreadPoolExecutor(max_workers=min(WRITERS, len(needs) or 1)) as writers:
            for status, rows in writers.map(settle, list(needs)):
                tally.add(status, rows)
        return tally

    def _needed(self, entries: list[LogEntry], stored: Stored) -> Needed | Status:
        """What the user's state is computed over, or why it is not: already current, or no rows to take."""
        manifest = self._model.manifest
        if isinstance(stored, Live):
            kept = next((m for m in stored.state.models if m.version == manifest.version), None)
            if kept is not None and kept.since == 0 and kept.at == stored.state.stream:
                return "current"
        features = manifest.input.features
        return needed(history(entries, features), stored, features)

    def _states(self, rows: list[np.ndarray]) -> list[list[np.ndarray]]:
        """The version's state over each user's rows, from zero, in one pass over all of them."""
        if not rows:
            return []
        zero = self._model.manifest.zero_state()
        return [result.state for result in self._model.engine.run_many(rows, [zero] * len(rows))]

    def _write(
        self, user: str, first: Needed, reached: list[np.ndarray], entries: list[LogEntry]
    ) -> tuple[Status, int]:
        """The first attempt from the batch's run; after a conflict, one planned from the item read again."""

        def plan(stored: Stored) -> Planned[tuple[Status, int]]:
            if stored is first.stored:
                return Planned(Write(self._with_state(first.stored.state, reached)), ("written", len(first.rows)))
            # written meanwhile: the log read again (the local one has every write; S3 what it has read)
            need = self._needed(self._log.entries([user])[user] or entries, stored)
            if not isinstance(need, Needed):
                return Planned(None, (need, 0))
            state = self._states([need.rows])[0]
            return Planned(Write(self._with_state(need.stored.state, state)), ("written", len(need.rows)))

        try:
            return self._writer.apply(user, plan, read=first.stored)
        except ServiceError:
            return "failed", 0

    def _with_state(self, saved: UserState, reached: list[np.ndarray]) -> UserState:
        """The user's state with this version's over every row, in its place (or beside the others)."""
        manifest = self._model.manifest
        version = ModelState(manifest.version, manifest.pack_state(reached), 0, saved.stream, manifest.state_kind)
        models = list(saved.models)
        index = next((i for i, m in enumerate(models) if m.version == manifest.version), None)
        if index is None:
            models.append(version)
        else:
            models[index] = version
        return replace(saved, models=tuple(models), updated_at=self._clock())
