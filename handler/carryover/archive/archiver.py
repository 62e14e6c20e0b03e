"""The archiver: a batch of the table's change stream (DynamoDB Streams, new images, through Lambda's event source
mapping) written to the row log in S3, each write that applied rows or deleted a user as one line, the batch's
lines one object in `incoming/` named by its content (one PUT a batch: the daily compaction sorts them by user).
A batch delivered again writes the same object, so nothing is written twice; a write S3 refuses fails the batch,
which Lambda delivers again (bisecting it) until the stream's 24 hours run out, and the on-failure queue holds
what it passed over."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.data_classes import DynamoDBStreamEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from carryover.archive.layout import INCOMING, put_lines
from carryover.observability import add_metric, logger, with_metrics
from carryover.store.blobs import BlobStore
from carryover.store.codec import from_json
from carryover.store.log import entry_of, to_line

LOG_LINES = "RowLogLines"  # lines written to the row log
ArchiveHandler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


class Archiver:
    """`blobs`: where the store keeps objects (the rows of a write whose states are kept as objects)."""

    def __init__(self, client: Any, bucket: str, prefix: str, blobs: BlobStore | None = None) -> None:
        self._client, self._bucket, self._prefix, self._blobs = client, bucket, prefix, blobs

    def archive(self, event: dict[str, Any]) -> int:
        """Writes the batch's log lines as one object; returns how many lines."""
        found_lines = []
        for record in DynamoDBStreamEvent(event).records:
            image = (record.get("dynamodb") or {}).get("NewImage")
            found = entry_of(from_json(json.dumps(image)), self._blobs) if image else None
            if found is not None:
                found_lines.append(to_line(*found))
        if found_lines:
            put_lines(self._client, self._bucket, self._prefix + INCOMING, found_lines)
        logger.info("row log archived", extra={"lines": len(found_lines)})
        add_metric(LOG_LINES, len(found_lines))
        return len(found_lines)


def create_archive_handler(archiver: Archiver) -> ArchiveHandler:
    @logger.inject_lambda_context
    @with_metrics
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        return {"lines": archiver.archive(event)}

    return handler
