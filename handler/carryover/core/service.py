"""The service: a user's rows applied once on top of their saved state, their state read and erased.

`predict` plans each attempt from the item it read: the answer an earlier request with the same key got (a
replay), or the write that applies the request to every model of the bundle, each from its own state (`start`),
the first one answering; `ConditionalWriter` retries that until it lands. Why this applies a request exactly
once is written down in `store/item.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import partial

import numpy as np

from carryover.bundle import ModelBundle
from carryover.core.idempotency import earlier_reply
from carryover.core.results import LastAnswer, Prediction, StateView, VersionView
from carryover.core.start import Beginning, IncompatiblePolicy, begin
from carryover.core.writes import ConditionalWriter, Planned
from carryover.engine import EngineResult
from carryover.errors import AlreadyApplied, ItemFormatUnsupported, NotFound, StateIncompatible, Unprocessable
from carryover.observability import TIMESTEPS, add_metric, count_origins, logger, record_divergence
from carryover.requests import PredictRequest
from carryover.store import StateStore
from carryover.store.item import (
    KeyRecord,
    KeyWindow,
    Live,
    ModelState,
    Reply,
    Stored,
    Unreadable,
    Unsupported,
    UserState,
    VersionReport,
    Write,
    digest,
    needs_tombstone,
    remembered_keys,
)

Clock = Callable[[], datetime]
REPLY_LIMIT_BYTES = 64 * 1024  # the outputs a keyed request may record for its replay


def finite(result: EngineResult) -> bool:
    return all(np.isfinite(values).all() for values in (*result.outputs.values(), *result.state))


class PredictionService:
    def __init__(
        self,
        bundle: ModelBundle,
        store: StateStore,
        clock: Clock,
        conflict_retries: int,
        on_incompatible: IncompatiblePolicy = "reset",
        keys: KeyWindow | None = None,
        history_rows: int = 0,
    ) -> None:
        self.bundle = bundle
        self.manifest, self.engine = bundle.manifest, bundle.engine
        self._models = bundle.models
        self._store = store
        self._writer = ConditionalWriter(store, conflict_retries)
        self._clock = clock
        self._on_incompatible = on_incompatible
        self._keys = keys or KeyWindow()
        self._history_rows = history_rows

    @property
    def policy(self) -> IncompatiblePolicy:
        """What a saved state this bundle cannot continue meets: a reset, or a refusal."""
        return self._on_incompatible

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
            add_metric(TIMESTEPS, prediction.rows)
            logger.debug("state saved", extra={"user_id": user_id, "steps": prediction.steps})
        return prediction

    def _plan(
        self, user_id: str, request: PredictRequest, request_key: str | None, record: KeyRecord | None, stored: Stored
    ) -> Planned[Prediction]:
        """One attempt from what was read: a replay of an earlier answer, or the write that applies the request."""
        if request_key is not None and record is not None:
            known = remembered_keys(stored, self._clock(), self._keys)
            reply = earlier_reply(request_key, record, known, stored, self.manifest.version, request.fingerprints())
            if reply is not None:
                return Planned(None, self._replayed(user_id, reply))
        beginning = begin(user_id, stored, request.reset, self._models, self._on_incompatible)
        results = [
            model.engine.run(request.array, start.state)
            for model, start in zip(self._models, beginning.starts, strict=True)
        ]
        if not all(finite(result) for result in results):
            raise Unprocessable(
                "inputs: the model gives non-finite outputs or state for these values (too large for it?); "
                "nothing was saved"
            )
        prediction = self.answer(user_id, beginning, results, len(request.inputs))
        reply = None
        if record is not None:  # only a keyed answer is recorded, packed, for its replay
            outputs = self.manifest.pack_outputs(prediction.outputs)
            reply = Reply(record.key, self.manifest.version, prediction.steps, prediction.origin, prediction.rows,
                          outputs, prediction.others)  # fmt: skip
        state = self.saved_state(beginning, results, request.array, prediction.steps, reply)
        return Planned(Write(state, key=record), prediction)

    def answer(self, user_id: str, beginning: Beginning, results: list[EngineResult], rows: int) -> Prediction:
        """The answer of `rows` run from `beginning` (one result per model of the bundle), its metrics counted."""
        stream = beginning.stream + rows
        others = tuple(
            VersionReport(model.manifest.version, model.role, start.origin, stream - start.since)
            for model, start in zip(self._models[1:], beginning.starts[1:], strict=True)
        )
        count_origins([start.origin for start in beginning.starts])
        if len(results) > 1:
            record_divergence(user_id, results[0].outputs, results[1].outputs)
        outputs = {name: np.asarray(values, dtype=np.float32) for name, values in results[0].outputs.items()}
        origin = beginning.starts[0].origin
        return Prediction(user_id, self.manifest.version, outputs, stream, origin, rows, others=others)

    def saved_state(
        self, beginning: Beginning, results: list[EngineResult], rows: np.ndarray, stream: int, reply: Reply | None
    ) -> UserState:
        """What the write leaves: every model's new state, current at the new stream position; the kept rows;
        and the states of versions outside the bundle that those rows can still catch up."""
        history = np.concatenate([beginning.history, rows])[-self._history_rows :] if self._history_rows else rows[:0]
        models = tuple(
            ModelState(model.manifest.version, model.manifest.pack_state(result.state), start.since, stream,
                       model.manifest.state_kind)
            for model, start, result in zip(self._models, beginning.starts, results, strict=True)
        )  # fmt: skip
        kept = tuple(other for other in beginning.others if 0 < stream - other.at <= len(history))
        history_blob = history.astype(np.float32).tobytes() if self._history_rows else b""
        return UserState(stream, models + kept, self._clock(), reply, history_blob)

    def _replayed(self, user_id: str, reply: Reply) -> Prediction:
        outputs = self.manifest.unpack_outputs(reply.outputs, reply.rows)
        if outputs is None:
            raise AlreadyApplied(f"user {user_id!r}: the recorded response does not fit this model")
        return Prediction(
            user_id, reply.model_version, outputs, reply.steps, reply.origin, reply.rows, True, reply.others
        )

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
            case Live(state=saved, expires_at=expires_at, applied=applied):
                versions = tuple(
                    VersionView(model.version, model.steps, model.since == 0, model.at == saved.stream)
                    for model in saved.models
                )
                answering, reply = saved.answering, saved.reply
                outputs = None if reply is None else self.manifest.unpack_outputs(reply.outputs, reply.rows)
                last = None if reply is None or outputs is None else LastAnswer(outputs, reply.steps, reply.rows)
                return StateView(user_id, answering.version, saved.stream, saved.updated_at, expires_at, versions,
                                 last, dict(applied))  # fmt: skip
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

    def health(self) -> None:
        """The model is loaded (or this service would not exist); the store answers a read."""
        self._store.ping()
