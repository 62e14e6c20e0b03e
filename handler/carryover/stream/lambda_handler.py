"""The stream function: a Kinesis batch from the event source mapping, applied across users, answered with the
records Lambda must deliver again (`ReportBatchItemFailures`).

Order of effects, each safe to repeat: refused records go to the failure queue first (before any write moves a
user's position past them); then every user's write; then each applied user's answers are published. Lambda
restarts the shard at the lowest sequence number reported, so the answer names the first record not applied
(a user whose write failed, or whose answers were not published: their records are in the state, so the next
delivery publishes them again from the item without applying them twice). An event that is not a Kinesis
batch, or a failure of the store before anything was written, fails the batch from its first record.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from carryover.core.batch import BatchService, Record
from carryover.errors import InvalidRequest, StoreUnavailable
from carryover.manifest import Manifest
from carryover.observability import (
    STORE_UNAVAILABLE,
    STREAM_RECORDS_APPLIED,
    STREAM_RECORDS_REFUSED,
    add_metric,
    logger,
    traced,
    with_metrics,
)
from carryover.stream.records import Delivered, read_event
from carryover.stream.sinks import Answers, Failures

StreamHandler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


def _retry_from(records: list[Record]) -> dict[str, Any]:
    """The response that makes Lambda deliver again from the lowest of `records`."""
    first = min(records, key=lambda record: record.sequence, default=None)
    return {"batchItemFailures": [{"itemIdentifier": str(first.sequence)}] if first else []}


class StreamConsumer:
    def __init__(self, batches: BatchService, manifest: Manifest, max_timesteps: int, failures: Failures,
                 answers: Answers | None) -> None:  # fmt: skip
        self._batches, self._manifest, self._max_timesteps = batches, manifest, max_timesteps
        self._failures, self._answers = failures, answers

    def consume(self, event: dict[str, Any]) -> dict[str, Any]:
        """Applies one Kinesis batch; the response says from which record Lambda must deliver it again."""
        try:
            delivered = read_event(event, self._manifest, self._max_timesteps)
        except InvalidRequest as error:
            logger.info("event refused", extra={"code": error.code, "reason": error.message})
            return {"batchItemFailures": [{"itemIdentifier": ""}]}  # the whole batch: nothing can be told apart
        by_id = {d.record.event_id: d for d in delivered}
        records = [d.record for d in delivered]

        def refuse(refused: list[Record]) -> None:
            self._refuse([replace(by_id[record.event_id], record=record) for record in refused])

        try:
            outcome = self._batches.apply(records, refuse)
        except StoreUnavailable as error:
            logger.warning("stream batch not applied", extra={"code": error.code, "records": len(records)})
            add_metric(STORE_UNAVAILABLE, 1)
            return _retry_from(records)
        try:
            refuse(outcome.refused)
        except StoreUnavailable:  # their users' states are unchanged: the next delivery finds them again
            return _retry_from(outcome.refused + outcome.unapplied)
        unapplied = list(outcome.unapplied)
        fresh = [applied for applied in outcome.applied if not applied.again]
        add_metric(STREAM_RECORDS_APPLIED, sum(len(a.records) for a in fresh))
        if self._answers is not None and outcome.applied:
            try:
                self._answers.publish(outcome.applied, self._manifest)
            except StoreUnavailable:
                unapplied += [applied.records[0] for applied in outcome.applied]
        if unapplied:
            add_metric(STORE_UNAVAILABLE, 1)
        return _retry_from(unapplied)

    def _refuse(self, refused: list[Delivered]) -> None:
        for delivered in refused:
            record = delivered.record
            code = record.error.code if record.error else ""
            logger.info("record refused", extra={"user_id": record.user_id, "code": code, "id": record.event_id})
        if refused:
            add_metric(STREAM_RECORDS_REFUSED, len(refused))
            self._failures.send(refused)


def create_stream_handler(consumer: StreamConsumer, tracing: bool = False) -> StreamHandler:
    @logger.inject_lambda_context
    @with_metrics
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        return consumer.consume(event)

    return traced(handler) if tracing else handler
