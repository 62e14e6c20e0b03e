"""The service: a user's rows applied once on top of their saved state, their state read and erased.

`predict` plans each attempt from the item it read: the answer an earlier request with the same key got (a
replay), or the write that applies the request; `ConditionalWriter` retries that until it lands. Why this
applies a request exactly once is written down in `store/item.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import partial

import numpy as np
from aws_lambda_powertools.metrics import MetricUnit

from carryover.core.idempotency import earlier_reply
from carryover.core.results import Prediction, StateView
from carryover.core.start import IncompatiblePolicy, start
from carryover.core.writes import ConditionalWriter, Planned
from carryover.engine import Engine
from carryover.errors import AlreadyApplied, NotFound, StateIncompatible, Unprocessable
from carryover.manifest import Manifest
from carryover.observability import TIMESTEPS, logger, metrics
from carryover.requests import PredictRequest
from carryover.store import StateStore
from carryover.store.item import (
    KeyRecord,
    KeyWindow,
    Live,
    Reply,
    Stored,
    Unreadable,
    UserState,
    Write,
    digest,
    needs_tombstone,
    remembered_keys,
)

Clock = Callable[[], datetime]
REPLY_LIMIT_BYTES = 64 * 1024  # the outputs a keyed request may record for its replay


class PredictionService:
    def __init__(
        self,
        manifest: Manifest,
        engine: Engine,
        store: StateStore,
        clock: Clock,
        conflict_retries: int,
        on_incompatible: IncompatiblePolicy = "reset",
        keys: KeyWindow | None = None,
    ) -> None:
        self.manifest = manifest
        self.engine = engine
        self._store = store
        self._writer = ConditionalWriter(store, conflict_retries)
        self._clock = clock
        self._on_incompatible = on_incompatible
        self._keys = keys or KeyWindow()

    def predict(
        self, user_id: str, request: PredictRequest, request_key: str | None = None, deadline: float = float("inf")
    ) -> Prediction:
        """Applies the request on top of the user's state, once. `deadline` (time.monotonic) ends retrying."""
        record = None
        if request_key is not None:
            self._check_reply_fits(len(request.inputs))
            record = KeyRecord(digest(request_key), digest(request.canonical()), self._clock())
        prediction = self._writer.apply(user_id, partial(self._plan, user_id, request, request_key, record), deadline)
        if not prediction.replayed:
            metrics.add_metric(name=TIMESTEPS, unit=MetricUnit.Count, value=prediction.rows)
            logger.debug("state saved", extra={"user_id": user_id, "steps": prediction.steps})
        return prediction

    def _plan(
        self, user_id: str, request: PredictRequest, request_key: str | None, record: KeyRecord | None, stored: Stored
    ) -> Planned[Prediction]:
        """One attempt from what was read: a replay of an earlier answer, or the write that applies the request."""
        if request_key is not None and record is not None:
            known = remembered_keys(stored, self._clock(), self._keys)
            reply = earlier_reply(request_key, record, known, stored, self.manifest.version)
            if reply is not None:
                return Planned(None, self._replayed(user_id, reply))
        begin = start(user_id, stored, request.reset, self.manifest, self._on_incompatible)
        result = self.engine.run(request.array, begin.state)
        if not all(np.isfinite(values).all() for values in (*result.outputs.values(), *result.state)):
            raise Unprocessable(
                "inputs: the model gives non-finite outputs or state for these values (too large for it?); "
                "nothing was saved"
            )
        rows = len(request.inputs)
        prediction = Prediction(
            user_id=user_id,
            model_version=self.manifest.version,
            outputs={name: np.asarray(values, dtype=np.float32) for name, values in result.outputs.items()},
            steps=begin.steps + rows,
            origin=begin.origin,
            rows=rows,
        )
        reply = None
        if record is not None:  # only a keyed answer is recorded, packed, for its replay
            outputs = self.manifest.pack_outputs(prediction.outputs)
            reply = Reply(record.key, self.manifest.version, prediction.steps, begin.origin, rows, outputs)
        blob = self.manifest.pack_state(result.state)
        state = UserState(self.manifest.version, blob, prediction.steps, self._clock(), reply)
        return Planned(Write(state, key=record), prediction)

    def _replayed(self, user_id: str, reply: Reply) -> Prediction:
        outputs = self.manifest.unpack_outputs(reply.outputs, reply.rows)
        if outputs is None:
            raise AlreadyApplied(f"user {user_id!r}: the recorded response does not fit this model")
        return Prediction(user_id, reply.model_version, outputs, reply.steps, reply.origin, reply.rows, replayed=True)

    def _check_reply_fits(self, rows: int) -> None:
        if self.manifest.output_values(rows) * 4 > REPLY_LIMIT_BYTES:
            last_only, per_row = (
                self.manifest.output_values(0),
                self.manifest.output_values(1) - self.manifest.output_values(0),
            )
            most = (REPLY_LIMIT_BYTES // 4 - last_only) // per_row  # per_row > 0: otherwise the size never grows
            raise Unprocessable(
                f"inputs: with an Idempotency-Key, a request may carry at most {most} timesteps for this model "
                f"(its response is recorded, {REPLY_LIMIT_BYTES} bytes at most); send fewer rows per request"
            )

    def state(self, user_id: str) -> StateView:
        match self._store.load(user_id):
            case Live(state=saved, expires_at=expires_at):
                return StateView(user_id, saved.model_version, saved.steps, saved.updated_at, expires_at)
            case Unreadable():
                raise StateIncompatible(f"user {user_id!r}: the saved state cannot be read")
            case _:
                raise NotFound(f"user {user_id!r} has no saved state for model {self.manifest.name!r}")

    def delete(self, user_id: str) -> None:
        """Erases the user's state, keeping what recognises a retry of an earlier request (see `store/item.py`)."""
        self._writer.apply(
            user_id, lambda stored: Planned(Write(state=None) if needs_tombstone(stored) else None, None)
        )

    def health(self) -> None:
        """The model is loaded (or this service would not exist); the store answers a read."""
        self._store.ping()
