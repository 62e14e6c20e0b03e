"""The service a way in holds: a user's rows applied once (through the one apply path, `apply`), their state
read and erased, the store's health.

`predict` is the apply path with one user's one entry: the request, identified by its idempotency key when it
has one (a repeat is answered as it was the first time, `plan`).
"""

from __future__ import annotations

import numpy as np

from carryover.bundle import ModelBundle
from carryover.core.apply import Applier
from carryover.core.domain import KeyRecord, digest
from carryover.core.plan import Entry, Planner, Submission
from carryover.core.results import LastAnswer, Prediction, StateView, VersionView
from carryover.core.writes import ConditionalWriter, Planned
from carryover.errors import ItemFormatUnsupported, NotFound, ServiceError, StateIncompatible
from carryover.requests import PredictRequest
from carryover.store import StateStore
from carryover.store.item import Live, Stored, Unreadable, Unsupported, Write, needs_tombstone


class PredictionService:
    def __init__(self, bundle: ModelBundle, store: StateStore, planner: Planner, conflict_retries: int) -> None:
        """`planner` plans each user's write for `bundle`, on the clock every write is dated by."""
        self.bundle = bundle
        self.manifest, self.engine = bundle.manifest, bundle.engine
        self._store = store
        self._clock = planner.clock
        self._writer = ConditionalWriter(store, conflict_retries)
        self.applier = Applier(planner, store, self._writer)

    def predict(
        self, user_id: str, request: PredictRequest, request_key: str | None = None, deadline: float = float("inf")
    ) -> Prediction:
        """Applies the request on top of the user's state, once. `deadline` (time.monotonic) ends retrying."""
        key, room = None, self.applier.planner.room
        if request_key is not None:
            room.check(self.manifest, len(request.inputs), room.reply, "with an Idempotency-Key, a request")
            key = KeyRecord(digest(request_key), digest(request.canonical()), self._clock())
        else:
            room.check(self.manifest, len(request.inputs), None, "a request")
        entry = Entry(request, key=key, key_text=request_key or "")
        outcome = self.applier.apply([Submission(user_id, (entry,))], deadline)[user_id]
        if isinstance(outcome, ServiceError):
            raise outcome
        if outcome.prediction is None:  # an entry of its own is always applied or replayed
            raise ServiceError(f"user {user_id!r}: the request was neither applied nor replayed")
        return outcome.prediction

    def state(self, user_id: str) -> StateView:
        match self._store.load(user_id):
            case Live(state=saved, expires_at=expires_at, applied=applied):
                versions = tuple(
                    VersionView(model.version, model.steps, model.since == 0, model.at == saved.stream)
                    for model in saved.models
                )
                answering, reply = saved.answering, saved.reply
                outputs = None if reply is None else self.manifest.unpack_outputs(reply.outputs, reply.rows)
                last = None if reply is None or outputs is None else LastAnswer(outputs, reply.steps, reply.rows)
                return StateView(user_id, answering.version, saved.stream, saved.updated_at, expires_at, versions,
                                 last, dict(applied.last))  # fmt: skip
            case Unreadable():
                raise StateIncompatible(f"user {user_id!r}: the saved state cannot be read")
            case Unsupported(format=found):
                raise ItemFormatUnsupported(
                    f"user {user_id!r}: the saved state is of item format {found}: retry shortly"
                )
            case _:
                raise NotFound(f"user {user_id!r} has no saved state for model {self.manifest.name!r}")

    def delete(self, user_id: str) -> None:
        """Erases the user's state, keeping what recognises a retry of an earlier request (see `store/item.py`).
        An item of a newer format is left as it is."""
        self._writer.apply(user_id, lambda stored: Planned(self._erasure(user_id, stored), None))

    def _erasure(self, user_id: str, stored: Stored) -> Write | None:
        if isinstance(stored, Unsupported):
            raise ItemFormatUnsupported(f"user {user_id!r}: the saved state is of item format {stored.format}")
        return Write(state=None) if needs_tombstone(stored) else None

    def warm(self) -> None:
        """Runs every model of the bundle once, one row from zero: what a snapshot should hold (`snapstart.py`)."""
        for model in self.bundle.models:
            model.engine.run(np.zeros((1, model.manifest.input.features), np.float32), model.manifest.zero_state())

    def renew(self) -> None:
        """After a snapshot's restore: the store's cache emptied, its connections made again."""
        self._store.renew()

    def health(self) -> None:
        """The model is loaded (or this service would not exist); the store answers a read."""
        self._store.ping()
