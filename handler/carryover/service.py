"""The request path: read the user's state, decide where to start, run the engine, write conditionally.

`predict` is the retry policy: attempts until one write lands, a repeat is recognised, or retries and time
run out. `_attempt` is one try: from what was read, either the answer (a replay) or the write to send.
Why this applies a request exactly once is written down in `state_item.py`.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
from aws_lambda_powertools.metrics import MetricUnit

from carryover.engine import Engine
from carryover.errors import (
    AlreadyApplied,
    IdempotencyKeyReused,
    NotFound,
    OutcomeUnknown,
    StateConflict,
    StateIncompatible,
    Unprocessable,
)
from carryover.manifest import Manifest
from carryover.observability import TIMESTEPS, WRITE_CONFLICTS, logger, metrics
from carryover.schemas import (
    HealthResponse,
    ModelRef,
    PredictRequest,
    PredictResponse,
    StateOrigin,
    StateResponse,
)
from carryover.state_item import KeyRecord, Reply, Stored, StoredItem, Unreadable, digest
from carryover.state_store import Attempt, Clock, NewState, StateStore, WriteConflict, outcome

BACKOFF_BASE_S = 0.005
BACKOFF_CAP_S = 0.2
REPLY_LIMIT_BYTES = 64 * 1024  # the outputs a keyed request may record for its replay
IncompatiblePolicy = Literal["reset", "reject"]


@dataclass(frozen=True)
class _Start:
    state: list[np.ndarray]
    steps: int
    origin: StateOrigin


@dataclass(frozen=True)
class Prediction:
    body: str  # the response body, exactly as first sent
    replayed: bool  # True when an earlier request with the same idempotency key produced it


@dataclass(frozen=True)
class _Write:
    """One attempt's result when it must write: the new state and the response it stands for."""

    new: NewState
    body: str


class PredictionService:
    def __init__(
        self,
        manifest: Manifest,
        engine: Engine,
        store: StateStore,
        clock: Clock,
        conflict_retries: int,
        on_incompatible: IncompatiblePolicy = "reset",
    ) -> None:
        self.manifest = manifest
        self.engine = engine
        self._store = store
        self._clock = clock
        self._retries = conflict_retries
        self._on_incompatible = on_incompatible

    def predict(
        self, user_id: str, request: PredictRequest, request_key: str | None = None, deadline: float = float("inf")
    ) -> Prediction:
        """Applies the request on top of the user's state, once. `deadline` (time.monotonic) ends retrying."""
        if request_key is not None:
            self._check_reply_fits(len(request.inputs))
        sent: dict[Attempt, str] = {}  # writes whose outcome is not known -> the response each stands for
        for attempt in range(self._retries + 1):
            stored = self._store.load(user_id)
            landed = self._landed(user_id, sent, stored)
            if landed is not None:
                return Prediction(landed, replayed=False)
            planned = self._attempt(user_id, request, request_key, stored)
            if isinstance(planned, Prediction):
                return planned
            try:
                self._store.save(user_id, planned.new, stored)
            except WriteConflict as conflict:
                sent[conflict.write] = planned.body
                metrics.add_metric(name=WRITE_CONFLICTS, unit=MetricUnit.Count, value=1)
                if self._pause(attempt, deadline):
                    continue
                break
            metrics.add_metric(name=TIMESTEPS, unit=MetricUnit.Count, value=len(request.inputs))
            logger.debug("state saved", extra={"user_id": user_id, "steps": planned.new.steps, "attempts": attempt + 1})
            return Prediction(planned.body, replayed=False)
        raise StateConflict(f"user {user_id!r}: the state kept changing during {len(sent)} attempts; retry")

    def _attempt(
        self, user_id: str, request: PredictRequest, request_key: str | None, stored: Stored
    ) -> Prediction | _Write:
        """One try from what was read: a replay of an earlier answer, or the write that applies the request."""
        record = None
        if request_key is not None:
            record = KeyRecord(digest(request_key), digest(request.canonical()), self._clock())
            replay = self._replay(user_id, request_key, record, stored)
            if replay is not None:
                return replay
        start = self._start(user_id, stored, request.reset)
        result = self.engine.run(request.array, start.state)
        if not all(np.isfinite(values).all() for values in (*result.outputs.values(), *result.state)):
            raise Unprocessable(
                "inputs: the model gives non-finite outputs or state for these values (too large for it?); "
                "nothing was saved"
            )
        rows = len(request.inputs)
        reply = Reply(
            key=record.key if record else b"",
            model_version=self.manifest.version,
            steps=start.steps + rows,
            origin=start.origin,
            rows=rows,
            outputs=self.manifest.pack_outputs(result.outputs),
        )
        new = NewState(
            self.manifest.version,
            self.manifest.pack_state(result.state),
            reply.steps,
            record,
            reply if record else None,
        )
        return _Write(new, self._render(user_id, reply))

    def _landed(self, user_id: str, sent: dict[Attempt, str], stored: Stored) -> str | None:
        """The response of an earlier attempt whose write turned out to have landed, if one did."""
        for write, body in sent.items():
            landed = outcome(write, stored)
            if landed is None:
                raise OutcomeUnknown(
                    f"user {user_id!r}: a write's answer was lost and more writes followed than can be told apart; "
                    "it may have been applied: see GET /users/{user_id}/state before sending it again"
                )
            if landed:
                return body
        return None

    def _replay(self, user_id: str, request_key: str, record: KeyRecord, stored: Stored) -> Prediction | None:
        """The earlier answer to this key, if the key was used; None for a new key."""
        earlier = next((known for known in self._store.keys(stored) if known.key == record.key), None)
        if earlier is None:
            return None
        if earlier.fingerprint != record.fingerprint:
            raise IdempotencyKeyReused(f"Idempotency-Key {request_key!r} was used with another request body")
        reply = stored.state.reply if isinstance(stored, StoredItem) and stored.state else None
        if reply is None or reply.key != record.key or reply.model_version != self.manifest.version:
            raise AlreadyApplied(
                f"Idempotency-Key {request_key!r}: this request was applied earlier; its response is kept only until "
                f"the user's next request, so GET /users/{user_id}/state shows where the state stands"
            )
        return Prediction(self._render(user_id, reply), replayed=True)

    def _render(self, user_id: str, reply: Reply) -> str:
        """The response body, from the reply as recorded: a replay is the same bytes as the first answer."""
        outputs = self.manifest.unpack_outputs(reply.outputs, reply.rows)
        if outputs is None:
            raise AlreadyApplied(f"user {user_id!r}: the recorded response does not fit this model")
        window = self.manifest.window if self.manifest.mode == "window" else None
        return PredictResponse(
            user_id=user_id,
            model=ModelRef(name=self.manifest.name, version=reply.model_version),
            outputs={name: rows.tolist() for name, rows in outputs.items()},
            steps=reply.steps,
            state=reply.origin,
            real_rows=[min(reply.steps - reply.rows + i, window) for i in range(1, reply.rows + 1)] if window else None,
        ).model_dump_json(exclude_none=True)

    def _start(self, user_id: str, stored: Stored, reset: bool) -> _Start:
        if not self._store.is_live(stored):
            return _Start(self.manifest.zero_state(), 0, "new")
        if reset:
            return _Start(self.manifest.zero_state(), 0, "reset")
        if isinstance(stored, StoredItem) and stored.state and stored.state.model_version == self.manifest.version:
            state = self.manifest.unpack_state(stored.state.blob)
            if state is not None:
                return _Start(state, stored.state.steps, "continued")
        if self._on_incompatible == "reject":
            raise StateIncompatible(
                f"user {user_id!r}: the saved state does not fit model {self.manifest.name} {self.manifest.version}; "
                'send "reset": true to start over'
            )
        logger.info(
            "incompatible state reset", extra={"user_id": user_id, "readable": not isinstance(stored, Unreadable)}
        )
        return _Start(self.manifest.zero_state(), 0, "reset")

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

    @staticmethod
    def _pause(attempt: int, deadline: float) -> bool:
        """Jittered exponential backoff before the next attempt; False when the deadline leaves no time."""
        pause = random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))
        if time.monotonic() + pause >= deadline:
            return False
        time.sleep(pause)
        return True

    def state(self, user_id: str) -> StateResponse:
        stored = self._store.load(user_id)
        if not self._store.is_live(stored):
            raise NotFound(f"user {user_id!r} has no saved state for model {self.manifest.name!r}")
        if not isinstance(stored, StoredItem) or stored.state is None:
            raise StateIncompatible(f"user {user_id!r}: the saved state cannot be read")
        return StateResponse(
            user_id=user_id,
            model=ModelRef(name=self.manifest.name, version=stored.state.model_version),
            steps=stored.state.steps,
            updated_at=stored.state.updated_at,
            expires_at=stored.expires_at,
        )

    def health(self) -> HealthResponse:
        """The model is loaded (or this service would not exist); the store answers a read."""
        self._store.ping()
        return HealthResponse(
            status="ok",
            model=ModelRef(name=self.manifest.name, version=self.manifest.version),
            engine=self.engine.name,
            store="reachable",
        )

    def delete(self, user_id: str) -> None:
        """Erases the user's state, keeping what recognises a retry of an earlier request (see `state_item`)."""
        for attempt in range(self._retries + 1):
            try:
                self._store.delete(user_id, self._store.load(user_id))
                return
            except WriteConflict:
                if not self._pause(attempt, float("inf")):
                    break
        raise StateConflict(f"user {user_id!r}: the state kept changing during the delete; retry")
