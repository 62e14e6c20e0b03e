"""One user's write, planned from the item read: what a way in sent (`Entry`: rows, and their identity, an
idempotency key or a stream position), cut where the user asked for a reset, run by every model of the bundle
from its own state (`start`), and the write that saves it all once: the new states, the answer recorded, the
key or the stream positions, and the stream answers not yet known published (`carryover.core.domain`).

Planning is split where the models run (`prepare`, then `finish`), so that a batch of many users runs each
model once over all of them (`run`); a write that conflicts is planned again for its user alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from itertools import pairwise

import numpy as np

from carryover.bundle import ModelBundle
from carryover.core.domain import (
    FLOAT32_BYTES,
    Covered,
    KeyRecord,
    KeyWindow,
    ModelState,
    Position,
    Reply,
    UserState,
    VersionReport,
    stream_key,
)
from carryover.core.history import Run
from carryover.core.idempotency import earlier_reply
from carryover.core.results import Prediction
from carryover.core.room import ItemRoom
from carryover.core.start import Beginning, IncompatiblePolicy, begin, restart
from carryover.core.writes import Planned
from carryover.engine import EngineResult
from carryover.errors import AlreadyApplied, ServiceError, Unprocessable
from carryover.observability import count_origins, record_divergence
from carryover.requests import PredictRequest
from carryover.store import Clock
from carryover.store.item import Live, Stored, Write, holds, remembered_keys


@dataclass(frozen=True)
class Entry:
    """One thing a way in received for a user: rows to apply (or the error that refused them as read), and what
    identifies it: a stream record's position, or the key an HTTP request was sent with."""

    request: PredictRequest | None
    error: ServiceError | None = None
    position: Position | None = None
    key: KeyRecord | None = None
    key_text: str = ""  # the Idempotency-Key as sent, for messages

    @property
    def rows(self) -> int:
        return len(self.request.inputs) if self.request is not None else 0


@dataclass(frozen=True)
class Submission:
    """One user's entries, in the user's order, and the stream answers this invocation has published already."""

    user_id: str
    entries: tuple[Entry, ...]
    published: frozenset[bytes] = frozenset()


@dataclass(frozen=True)
class Outcome:
    """What applying a submission did: the answer over the entries applied now (or an earlier answer replayed;
    None when nothing was applied), the stream answers the item keeps that are not known published, this write's
    included, and the entries left for a later write (the answers kept until published would not fit)."""

    prediction: Prediction | None
    applied: tuple[Entry, ...] = ()
    unpublished: tuple[Reply, ...] = ()
    deferred: tuple[Entry, ...] = ()


@dataclass(frozen=True)
class Segment:
    """Entries of one user that run from one beginning: the first from the saved state, later ones after a reset."""

    beginning: Beginning
    entries: tuple[Entry, ...]

    @cached_property
    def rows(self) -> np.ndarray:
        return np.concatenate([entry.request.array for entry in self.entries if entry.request is not None])


@dataclass(frozen=True)
class Prepared:
    """A user's write up to running the models: the segments to run, and what else the write carries."""

    user_id: str
    segments: tuple[Segment, ...]
    carried: tuple[Reply, ...]
    deferred: tuple[Entry, ...]
    passed: tuple[Entry, ...]  # the entries the write moves the user's position past: applied, or refused as read
    key: KeyRecord | None = None


def carried(submission: Submission, stored: Stored) -> tuple[Reply, ...]:
    """The stream answers the item keeps that are not known published, judged from this delivery."""
    if not isinstance(stored, Live):
        return ()
    first: dict[str, int] = {}
    for entry in submission.entries:
        if entry.position is not None:
            first.setdefault(entry.position.shard, entry.position.sequence)
    return tuple(r for r in stored.state.unpublished if not r.acknowledged(first, submission.published))


@dataclass(frozen=True)
class PlanRules:
    """What a write keeps, from the settings: what a state no model can continue meets, the request keys
    remembered, the rows kept for other versions, and the room for recorded answers and logged rows (none: the
    row log is off)."""

    policy: IncompatiblePolicy = "reset"
    keys: KeyWindow = field(default_factory=KeyWindow)
    history_rows: int = 0
    room: ItemRoom = field(default_factory=ItemRoom)


class Planner:
    def __init__(self, bundle: ModelBundle, clock: Clock, rules: PlanRules | None = None) -> None:
        self.manifest, self._models = bundle.manifest, bundle.models
        self.clock, self.rules = clock, rules or PlanRules()
        self.room = self.rules.room

    def plan(self, work: dict[str, tuple[Submission, Stored]]) -> dict[str, Planned[Outcome] | ServiceError]:
        """Each user's write from the item read, every model run once over all users' rows."""
        plans: dict[str, Planned[Outcome] | ServiceError] = {}
        prepared: list[Prepared] = []
        for user, (submission, stored) in work.items():
            try:
                step = self.prepare(submission, stored)
            except ServiceError as error:
                plans[user] = error
                continue
            if isinstance(step, Prepared):
                prepared.append(step)
            else:
                plans[user] = step
        for step, results in zip(prepared, self.run(prepared), strict=True):
            try:
                plans[step.user_id] = self.finish(step, results)
            except ServiceError as error:
                plans[step.user_id] = error
        return plans

    def prepare(self, submission: Submission, stored: Stored) -> Prepared | Planned[Outcome]:
        """The user's segments to run, or their outcome when nothing is to run (a replay; every entry applied
        already; no room for more answers until the ones kept are published)."""
        replayed = self._replay(submission, stored)
        if replayed is not None:
            return Planned(None, Outcome(replayed))
        pending = [e for e in submission.entries if e.position is None or not holds(stored, e.position)]
        valid = [entry for entry in pending if entry.error is None]
        kept = carried(submission, stored)
        taken = self._fitting(valid, kept)
        if not taken:
            return Planned(None, Outcome(None, unpublished=kept, deferred=tuple(valid)))
        first = taken[0].request
        beginning = begin(submission.user_id, stored, bool(first and first.reset), self._models, self.rules.policy)
        cuts = [0, *(i for i, e in enumerate(taken) if i and e.request and e.request.reset), len(taken)]
        segments = tuple(
            Segment(beginning if index == 0 else restart(self._models), tuple(taken[start:end]))
            for index, (start, end) in enumerate(pairwise(cuts))
        )
        deferred = valid[len(taken) :]
        passed = pending[: pending.index(deferred[0])] if deferred else pending
        key = next((entry.key for entry in taken if entry.key is not None), None)
        return Prepared(submission.user_id, segments, kept, tuple(deferred), tuple(passed), key)

    def _replay(self, submission: Submission, stored: Stored) -> Prediction | None:
        """The answer an earlier request with this one's key got, if it is a repeat (raises for a reused key)."""
        keyed = next((entry for entry in submission.entries if entry.key is not None), None)
        if keyed is None or keyed.key is None or keyed.request is None:
            return None
        known = remembered_keys(stored, self.clock(), self.rules.keys)
        version, fingerprints = self.manifest.version, keyed.request.fingerprints()
        reply = earlier_reply(keyed.key_text, keyed.key, known, stored, version, fingerprints)
        if reply is None:
            return None
        outputs = self.manifest.unpack_outputs(reply.outputs, reply.rows)
        if outputs is None:
            raise AlreadyApplied(f"user {submission.user_id!r}: the recorded response does not fit this model")
        user = submission.user_id
        return Prediction(
            user_id=user,
            model_version=reply.model_version,
            outputs=outputs,
            steps=reply.steps,
            origin=reply.origin,
            rows=reply.rows,
            seen=reply.seen,
            replayed=True,
            others=reply.others,
        )

    def _fitting(self, valid: list[Entry], kept: tuple[Reply, ...]) -> list[Entry]:
        """The longest run of `valid` whose answer, recorded until published, fits beside the answers kept, and
        whose rows fit the row log's room (a request alone was checked up front)."""
        room = min(self.room.reply, self.room.kept - sum(reply.size for reply in kept))
        row_bytes = self.manifest.input.features * FLOAT32_BYTES
        taken: list[Entry] = []
        for entry in valid:
            if entry.position is not None:
                records = [e for e in (*taken, entry) if e.position is not None]
                rows = sum(e.rows for e in records)
                if self._reply_size(rows, len(records)) > room or (
                    self.room.logged and rows * row_bytes > self.room.logged
                ):
                    break
            taken.append(entry)
        return taken

    def _reply_size(self, rows: int, records: int) -> int:
        blob = self.manifest.output_values(rows) * FLOAT32_BYTES
        return Reply(b"", "", 0, "new", rows, b"\0" * blob, covered=Covered("", ((0, 0),) * records)).size

    def run(self, prepared: Sequence[Prepared]) -> list[list[list[EngineResult]]]:
        """Every segment of every user, one `run_many` per model over all of them: for each user, each of their
        segments' results, one per model."""
        segments = [segment for step in prepared for segment in step.segments]
        if not segments:
            return []
        rows = [segment.rows for segment in segments]
        per_model = [
            model.engine.run_many(rows, [segment.beginning.starts[index].state for segment in segments])
            for index, model in enumerate(self._models)
        ]
        ran = iter([list(results) for results in zip(*per_model, strict=True)])
        return [[next(ran) for _ in step.segments] for step in prepared]

    def finish(self, step: Prepared, ran: list[list[EngineResult]]) -> Planned[Outcome]:
        """The write of a prepared user once its segments ran: every model's new state, the answer, recorded
        when it has a key or stream records, the stream answers kept, and where the user's stream stands."""
        if not all(result.finite for results in ran for result in results):
            raise Unprocessable(
                "inputs: the model gives non-finite outputs or state for these values (too large for it?); "
                "nothing was saved"
            )
        answers = [
            self.answer(step.user_id, segment.beginning, results, len(segment.rows))
            for segment, results in zip(step.segments, ran, strict=True)
        ]
        prediction = self._combined(step.user_id, answers)
        applied = tuple(entry for segment in step.segments for entry in segment.entries)
        reply = self._reply(step, prediction, applied)
        last = step.segments[-1]
        state = self.saved_state(last.beginning, ran[-1], last.rows, prediction.steps, reply, step.carried)
        moved = {e.position.shard: e.position.sequence for e in step.passed if e.position is not None}
        stream = (reply,) if reply is not None and reply.covered is not None else ()
        outcome = Outcome(prediction, applied, (*step.carried, *stream), step.deferred)
        logged = tuple(Run(s.beginning.stream, s.rows.astype(np.float32).tobytes()) for s in step.segments)
        write = Write(state, key=step.key, applied=tuple(moved.items()), logged=logged if self.room.logged else ())
        return Planned(write, outcome)

    def answer(self, user_id: str, beginning: Beginning, results: list[EngineResult], rows: int) -> Prediction:
        """The answer of `rows` run from `beginning` (one result per model of the bundle), its metrics counted."""
        stream = beginning.stream + rows
        others = tuple(
            VersionReport(model.manifest.version, model.role, start.origin, stream - start.since)
            for model, start in zip(self._models[1:], beginning.starts[1:], strict=True)
        )
        count_origins([start.origin for start in beginning.starts], [start.since > 0 for start in beginning.starts])
        if len(results) > 1:
            record_divergence(user_id, results[0].outputs, results[1].outputs)
        return Prediction(
            user_id=user_id,
            model_version=self.manifest.version,
            outputs={name: np.asarray(values, dtype=np.float32) for name, values in results[0].outputs.items()},
            steps=stream,
            origin=beginning.starts[0].origin,
            rows=rows,
            seen=stream - beginning.starts[0].since,
            others=others,
        )

    def _combined(self, user_id: str, answers: list[Prediction]) -> Prediction:
        """One answer over the segments' (each segment's rows after the one before)."""
        if len(answers) == 1:
            return answers[0]
        last = answers[-1]
        outputs = {
            spec.name: np.concatenate([a.outputs[spec.name] for a in answers])
            if spec.per_timestep
            else last.outputs[spec.name]
            for spec in self.manifest.outputs
        }
        rows = sum(answer.rows for answer in answers)
        return replace(last, outputs=outputs, origin=answers[0].origin, rows=rows)

    def _reply(self, step: Prepared, prediction: Prediction, applied: tuple[Entry, ...]) -> Reply | None:
        """The answer as the item records it: a keyed request's, for its replay; stream records', until published."""
        records = [entry.position for entry in applied if entry.position is not None]
        if step.key is None and not records:
            return None
        covered = None
        if records:
            covered = Covered(records[-1].shard, tuple((e.position.sequence, e.rows) for e in applied if e.position))
        return Reply(
            key=step.key.key if step.key is not None else stream_key(records[-1]),
            model_version=prediction.model_version,
            steps=prediction.steps,
            origin=prediction.origin,
            rows=prediction.rows,
            seen=prediction.seen,
            outputs=self.manifest.pack_outputs(prediction.outputs),
            others=prediction.others,
            covered=covered,
        )

    def saved_state(
        self,
        beginning: Beginning,
        results: list[EngineResult],
        rows: np.ndarray,
        stream: int,
        reply: Reply | None,
        outbox: tuple[Reply, ...] = (),
    ) -> UserState:
        """What the write leaves: every model's new state, current at the new stream position; the kept rows;
        the states of versions outside the bundle that those rows can still catch up; the answers recorded."""
        kept_rows = self.rules.history_rows
        history = np.concatenate([beginning.history, rows])[-kept_rows:] if kept_rows else rows[:0]
        models = tuple(
            ModelState(
                version=model.manifest.version,
                blob=model.manifest.pack_state(result.state),
                since=start.since,
                at=stream,
                kind=model.manifest.state_kind,
            )
            for model, start, result in zip(self._models, beginning.starts, results, strict=True)
        )
        kept = tuple(other for other in beginning.others if 0 < stream - other.at <= len(history))
        history_blob = history.astype(np.float32).tobytes() if kept_rows else b""
        return UserState(stream, models + kept, self.clock(), reply, history_blob, outbox)
