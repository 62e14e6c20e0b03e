"""The stream function: a Kinesis batch from the event source mapping, applied across users through the one apply
path, answered with the records Lambda must deliver again (`ReportBatchItemFailures`).

Order of effects, each safe to repeat: refused records go to the failure queue first (before any write moves a
user's position past them); then every user's write; then every answer the users' items keep that Lambda has
not acknowledged is published, this batch's among them. Lambda restarts the shard at the lowest sequence number
reported, so the response names the first record not done (a user whose write failed, or whose answers were
not published: their records are in the state and their answers in the item, so the next delivery publishes
them without applying anything twice). A user whose answers would not all fit the item until published is
applied in rounds, each published before the next. An event that is not a Kinesis batch, or a failure of the
store before anything was written, fails the batch from its first record.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from carryover.bundle import ModelBundle
from carryover.core.apply import Applier
from carryover.core.domain import Position, Reply
from carryover.core.plan import Entry, Outcome, Submission
from carryover.errors import InvalidRequest, OutcomeUnknown, ServiceError, StoreUnavailable
from carryover.observability import (
    STORE_UNAVAILABLE,
    STREAM_RECORDS_APPLIED,
    STREAM_RECORDS_REFUSED,
    add_metric,
    logger,
    traced,
    with_metrics,
)
from carryover.stream.records import Delivered, RecordRules, read_event
from carryover.stream.sinks import Answers, Failures

StreamHandler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


def _retry_from(positions: Sequence[Position]) -> dict[str, Any]:
    """The response that makes Lambda deliver again from the lowest of `positions`."""
    first = min(positions, key=lambda position: position.sequence, default=None)
    return {"batchItemFailures": [{"itemIdentifier": str(first.sequence)}] if first else []}


@dataclass
class _Round:
    """What one round of a batch did: the answers to publish (user, answer), the records to deliver again (from
    the lowest), those refused when run, the users left for the next round, the records applied."""

    answers: list[tuple[str, Reply]] = field(default_factory=list)
    again: list[Position] = field(default_factory=list)
    refused: list[Entry] = field(default_factory=list)
    deferred: list[Submission] = field(default_factory=list)
    applied: int = 0


class StreamConsumer:
    def __init__(
        self, applier: Applier, bundle: ModelBundle, rules: RecordRules, failures: Failures, answers: Answers | None
    ) -> None:
        self._applier, self._bundle, self._rules = applier, bundle, rules
        self._failures, self._answers = failures, answers

    def consume(self, event: dict[str, Any]) -> dict[str, Any]:
        """Applies one Kinesis batch; the response says from which record Lambda must deliver it again."""
        try:
            delivered = read_event(event, self._rules)
        except InvalidRequest as error:
            logger.info("event refused", extra={"code": error.code, "reason": error.message})
            return {"batchItemFailures": [{"itemIdentifier": ""}]}  # the whole batch: nothing can be told apart
        by_position = {d.position: d for d in delivered}
        users: dict[str, list[Entry]] = {}
        for d in sorted(delivered, key=lambda d: (d.position.shard, d.position.sequence)):
            if d.user_id is not None:
                users.setdefault(d.user_id, []).append(d.entry)
        unowned = [d for d in delivered if d.user_id is None]
        submissions = [Submission(user, tuple(entries)) for user, entries in users.items()]
        while submissions:
            done = self._round(submissions, by_position, unowned)
            if done.again:
                add_metric(STORE_UNAVAILABLE, 1)
                return _retry_from(done.again)
            submissions, unowned = done.deferred, []
        return {"batchItemFailures": []}

    def _round(
        self, submissions: list[Submission], by_position: dict[Position, Delivered], unowned: list[Delivered]
    ) -> _Round:
        """One write per user, then the publishing of the answers their items keep."""

        def refuse(refused: list[tuple[str, Entry]]) -> None:
            self._refuse(unowned + [by_position[entry.position] for _, entry in refused if entry.position])

        done = _Round()
        try:
            outcomes = self._applier.apply(submissions, refuse=refuse)
        except StoreUnavailable as error:
            logger.warning("stream batch not applied", extra={"code": error.code, "users": len(submissions)})
            done.again = [e.position for s in submissions for e in s.entries if e.position]
            return done
        for submission in submissions:
            _settled(submission, outcomes[submission.user_id], done)
        try:
            self._refuse([by_position[entry.position] for entry in done.refused if entry.position])
        except StoreUnavailable:  # their users' states are unchanged: the next delivery finds them again
            done.again += [entry.position for entry in done.refused if entry.position]
        add_metric(STREAM_RECORDS_APPLIED, done.applied)
        self._publish(done, {s.user_id: s for s in submissions})
        if done.again:
            done.again += [e.position for s in done.deferred for e in s.entries if e.position]
        return done

    def _publish(self, done: _Round, submissions: dict[str, Submission]) -> None:
        """Every answer of the round, once rendered; when the answers stream does not take them, their users'
        records are delivered again from each one's first (the answers stay in the items until published)."""
        if self._answers is None or not done.answers:
            return
        events = [event for user, reply in done.answers if (event := self._event(user, reply)) is not None]
        try:
            self._answers.publish(events)
        except StoreUnavailable:
            users = {user for user, _ in done.answers}
            done.again += [e.position for u in users for e in submissions[u].entries[:1] if e.position]
            return
        published: dict[str, frozenset[bytes]] = {}
        for user, reply in done.answers:
            published[user] = published.get(user, frozenset()) | {reply.key}
        done.deferred = [
            replace(submission, published=submission.published | published.get(submission.user_id, frozenset()))
            for submission in done.deferred
        ]

    def _event(self, user: str, reply: Reply) -> dict[str, Any] | None:
        """The answer as the answers stream carries it, rendered by the model version that gave it."""
        models = sorted(self._bundle.models, key=lambda model: model.manifest.version != reply.model_version)
        outputs = next((o for m in models if (o := m.manifest.unpack_outputs(reply.outputs, reply.rows))), None)
        if outputs is None or reply.covered is None:
            logger.warning("answer not published", extra={"user_id": user, "version": reply.model_version})
            return None
        return {
            "id": f"{user}:{reply.covered.last.event_id}",
            "user_id": user,
            "model": {"name": self._bundle.manifest.name, "version": reply.model_version},
            "steps": reply.steps,
            "state": reply.origin,
            "seen": reply.seen_rows,
            "rows": reply.rows,
            "outputs": {name: rows.tolist() for name, rows in outputs.items()},
            "records": [
                {"shard_id": reply.covered.shard, "sequence_number": str(sequence), "rows": rows}
                for sequence, rows in reply.covered.records
            ],
        }

    def _refuse(self, refused: list[Delivered]) -> None:
        for delivered in refused:
            code = delivered.entry.error.code if delivered.entry.error else ""
            where = {"user_id": delivered.user_id, "code": code, "id": delivered.position.event_id}
            logger.info("record refused", extra=where)
        if refused:
            add_metric(STREAM_RECORDS_REFUSED, len(refused))
            self._failures.send(refused)


def _settled(submission: Submission, outcome: Outcome | ServiceError, done: _Round) -> None:
    """Sorts one user's outcome into the round: answers to publish, records to deliver again or refuse."""
    user = submission.user_id
    if isinstance(outcome, ServiceError):
        valid = [e for e in submission.entries if e.error is None and e.position is not None]
        # a write of unknown outcome is settled by the next delivery: the item's position tells
        if (outcome.retryable or isinstance(outcome, OutcomeUnknown)) and valid:
            logger.warning("stream records not applied", extra={"user_id": user, "code": outcome.code})
            done.again.append(valid[0].position)  # type: ignore[arg-type]
        else:
            done.refused += [replace(e, error=outcome) for e in valid]
        return
    done.answers += [(user, reply) for reply in outcome.unpublished]
    done.applied += len(outcome.applied)
    if outcome.deferred:
        done.deferred.append(Submission(user, outcome.deferred, submission.published))


def create_stream_handler(consumer: StreamConsumer, tracing: bool = False) -> StreamHandler:
    @logger.inject_lambda_context
    @with_metrics
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        return consumer.consume(event)

    return traced(handler) if tracing else handler
