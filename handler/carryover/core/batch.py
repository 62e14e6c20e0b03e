"""Records of many users applied in one batch, each user's in order and exactly once.

A record's identity is its shard and sequence number. Per user, the item records the last sequence number of
each shard its state holds (`applied`, see `store/item.py`): records at or below it are skipped, so a batch
delivered again (whole, cut elsewhere, after a crash between users' writes) applies nothing twice and skips
nothing. One batch reads every user's item in one `load_many`, runs each model of the bundle once over all
users' rows together (`Engine.run_many`: each user from their own state), and writes each user once, all of
their records in one conditional write (WRITERS users' writes at once), retried alone (re-read, re-run) when
another writer got there first.
A record that cannot be applied is refused with its reason and does not stop the user's later records; a
user whose write cannot land (the store unavailable) stops at their first unapplied record.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from carryover.core.results import Prediction
from carryover.core.service import REPLY_LIMIT_BYTES, PredictionService, finite
from carryover.core.start import Beginning, begin, restart
from carryover.core.writes import ConditionalWriter, Planned
from carryover.engine import EngineResult
from carryover.errors import OutcomeUnknown, ServiceError, Unprocessable
from carryover.observability import logger
from carryover.requests import PredictRequest
from carryover.store import StateStore
from carryover.store.item import Live, Reply, Stored, Write, applied_through, digest


@dataclass(frozen=True)
class Record:
    """One stream record: its identity (shard, sequence number), its user, and what it asks."""

    shard: str
    sequence: int
    user_id: str | None  # None: a record whose user could not be read
    request: PredictRequest | None = None  # None: refused (`error` says why)
    error: ServiceError | None = None

    @property
    def event_id(self) -> str:
        return f"{self.shard}:{self.sequence}"


Refuse = Callable[[list[Record]], None]
WRITERS = 16  # users' conditional writes in flight at once (each its own user: they never conflict)


@dataclass(frozen=True)
class Applied:
    """What one batch did for one user: the answer over all their records' rows, and the records it covers.
    `again`: the records were in the state already; the answer is the one recorded when they were applied."""

    prediction: Prediction
    records: tuple[Record, ...]
    again: bool = False

    @property
    def event_id(self) -> str:
        """The same for every delivery of the same records: consumers deduplicate on it."""
        return f"{self.prediction.user_id}:{self.records[-1].event_id}"


@dataclass(frozen=True)
class BatchOutcome:
    applied: list[Applied]
    refused: list[Record]  # records found unfit only when run (their user's state unchanged), with their error
    unapplied: list[Record]  # each failed user's first record not applied (their later ones are not either)


@dataclass(frozen=True)
class _Segment:
    """Rows of one user that run from one beginning: the first from the saved state, later ones after a reset."""

    beginning: Beginning
    records: tuple[Record, ...]

    @property
    def rows(self) -> np.ndarray:
        return np.concatenate([record.request.array for record in self.records if record.request is not None])


def _key(record: Record) -> bytes:
    return digest(f"stream:{record.event_id}")


def _rows(records: Sequence[Record]) -> int:
    return sum(len(record.request.inputs) for record in records if record.request is not None)


def _pending(records: Sequence[Record], stored: Stored) -> list[Record]:
    return [record for record in records if record.sequence > applied_through(stored, record.shard)]


class BatchService:
    def __init__(self, service: PredictionService, store: StateStore, conflict_retries: int) -> None:
        self._service = service
        self._models = service.bundle.models
        self._store = store
        self._writer = ConditionalWriter(store, conflict_retries)

    def apply(self, records: Sequence[Record], refuse: Refuse) -> BatchOutcome:
        """Applies the batch. `refuse` gets the records refused as read (bad JSON, wrong features, no user) that
        are not behind their user's position, before any write moves it past them. Raises StoreUnavailable when
        the items cannot be read, or what `refuse` raises: nothing is applied then."""
        users: dict[str, list[Record]] = {}
        for record in sorted(records, key=lambda record: (record.shard, record.sequence)):
            if record.user_id is not None:
                users.setdefault(record.user_id, []).append(record)
        read = self._store.load_many(list(users))
        pending = {user: _pending(group, read[user]) for user, group in users.items()}
        refuse([r for r in records if r.user_id is None] + [r for p in pending.values() for r in p if r.error])
        planned = self._plan({user: (group, read[user]) for user, group in users.items()})
        outcome = BatchOutcome([], [], [])
        with ThreadPoolExecutor(max_workers=min(WRITERS, len(users) or 1)) as writers:  # the writes at once
            list(writers.map(lambda user: self._settle(user, users[user], read[user], planned[user], outcome), users))
        return outcome

    def _settle(
        self, user: str, records: list[Record], read: Stored, planned: Planned[Applied | None] | ServiceError,
        outcome: BatchOutcome,
    ) -> None:  # fmt: skip
        """Writes one user's records (the batch's plan first, a plan of their own on a conflict)."""
        pending = _pending(records, read)

        def plan(stored: Stored) -> Planned[Applied | None]:
            result = planned if stored is read else self._plan({user: (records, stored)})[user]
            if isinstance(result, ServiceError):
                raise result
            return result

        try:
            applied = self._writer.apply(user, plan, read=read)
        except ServiceError as error:
            valid = [record for record in pending if record.error is None]
            # a write of unknown outcome is settled by the next delivery: the item's position tells
            if (error.retryable or isinstance(error, OutcomeUnknown)) and valid:
                logger.warning("stream records not applied", extra={"user_id": user, "code": error.code})
                outcome.unapplied.append(valid[0])  # the ones refused before it are in the failure queue
            else:
                outcome.refused.extend(Record(r.shard, r.sequence, user, r.request, error) for r in valid)
            return
        if applied is not None:
            outcome.applied.append(applied)

    def _plan(self, work: dict[str, tuple[list[Record], Stored]]) -> dict[str, Planned[Applied | None] | ServiceError]:
        """Each user's write from the item read, every model run once over all users' rows."""
        plans: dict[str, Planned[Applied | None] | ServiceError] = {}
        segments: dict[str, list[_Segment]] = {}
        for user, (records, stored) in work.items():
            pending = [record for record in _pending(records, stored) if record.error is None]
            if not pending:
                plans[user] = Planned(None, self._again(records, stored))
                continue
            try:
                segments[user] = self._segments(user, pending, stored)
            except ServiceError as error:
                plans[user] = error
        flat = [segment for user_segments in segments.values() for segment in user_segments]
        results = self._run(flat) if flat else []
        position = 0
        for user, user_segments in segments.items():
            ran = results[position : position + len(user_segments)]
            position += len(user_segments)
            plans[user] = self._write(user, work[user][0], work[user][1], user_segments, ran)
        return plans

    def _segments(self, user: str, pending: list[Record], stored: Stored) -> list[_Segment]:
        """The user's pending records cut at each `reset` after the first record."""
        cuts = [0, *(i for i, r in enumerate(pending) if i and r.request and r.request.reset), len(pending)]
        first = pending[0].request
        beginning = begin(user, stored, bool(first and first.reset), self._models, self._service.policy)
        return [
            _Segment(beginning if index == 0 else restart(self._models), tuple(pending[start:end]))
            for index, (start, end) in enumerate(pairwise(cuts))
        ]

    def _run(self, segments: list[_Segment]) -> list[list[EngineResult]]:
        """Each segment's result per model: one `run_many` per model over every segment of the batch."""
        rows = [segment.rows for segment in segments]
        per_model = [
            model.engine.run_many(rows, [segment.beginning.starts[index].state for segment in segments])
            for index, model in enumerate(self._models)
        ]
        return [list(results) for results in zip(*per_model, strict=True)]

    def _write(
        self, user: str, records: list[Record], stored: Stored, segments: list[_Segment], ran: list[list[EngineResult]]
    ) -> Planned[Applied | None] | ServiceError:
        if not all(finite(result) for results in ran for result in results):
            return Unprocessable(
                "inputs: the model gives non-finite outputs or state for these rows; nothing was saved"
            )
        answers = [
            self._service.answer(user, segment.beginning, results, len(segment.rows))
            for segment, results in zip(segments, ran, strict=True)
        ]
        last = answers[-1]
        outputs = {
            spec.name: np.concatenate([a.outputs[spec.name] for a in answers]) if spec.per_timestep
            else last.outputs[spec.name]
            for spec in self._service.manifest.outputs
        }  # fmt: skip
        rows = sum(answer.rows for answer in answers)
        prediction = Prediction(user, last.model_version, outputs, last.steps, answers[0].origin, rows,
                                others=last.others)  # fmt: skip
        pending = _pending(records, stored)
        reply = self._reply(pending[-1], prediction)
        state = self._service.saved_state(segments[-1].beginning, ran[-1], segments[-1].rows, last.steps, reply)
        shards = {record.shard: record.sequence for record in pending}  # each shard's last
        covered = tuple(record for segment in segments for record in segment.records)
        return Planned(Write(state, applied=tuple(shards.items())), Applied(prediction, covered))

    def _reply(self, last: Record, prediction: Prediction) -> Reply | None:
        """The batch's answer kept in the item, so that a publish lost after the write can be done again."""
        if self._service.manifest.output_values(prediction.rows) * 4 > REPLY_LIMIT_BYTES:
            return None
        outputs = self._service.manifest.pack_outputs(prediction.outputs)
        return Reply(_key(last), prediction.model_version, prediction.steps, prediction.origin, prediction.rows,
                     outputs, prediction.others)  # fmt: skip

    def _again(self, records: list[Record], stored: Stored) -> Applied | None:
        """Records all in the state already: the answer recorded when the last of them was applied, if kept."""
        valid = [record for record in records if record.error is None]
        reply = stored.state.reply if isinstance(stored, Live) else None
        if not valid or reply is None or reply.key != _key(records[-1]):
            return None
        outputs = self._service.manifest.unpack_outputs(reply.outputs, reply.rows)
        if outputs is None:
            return None
        covered: list[Record] = []  # the records the answer covers: the delivery's last `rows` rows
        for record in reversed(valid):
            if _rows(covered) >= reply.rows:
                break
            covered.insert(0, record)
        if _rows(covered) < reply.rows:  # a delivery from within them: their answer was published, or the
            return None  # delivery would start where they do
        user = valid[0].user_id or ""
        prediction = Prediction(user, reply.model_version, outputs, reply.steps, reply.origin, reply.rows,
                                others=reply.others)  # fmt: skip
        return Applied(prediction, tuple(covered), again=True)
