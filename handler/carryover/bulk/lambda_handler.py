"""A Distributed Map child: the batch of row log partitions its `ItemBatcher` gave it, bootstrapped.

The event, as Step Functions gives a child of a Distributed Map with an item batcher:
`{"Items": [{"partition": "0a"}, ...], "BatchInput": {"bucket": "...", "prefix": "log/"}}`. The answer, written
to the map run's results: the partitions, the users by status and the rows the model ran over. A child that
fails (the store unreachable) is retried by the state machine; one that keeps failing counts against its
tolerated failures.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from carryover.archive.layout import S3Log
from carryover.bulk.worker import bootstrap_all, next_version
from carryover.bundle import ModelBundle
from carryover.config import Settings
from carryover.errors import InvalidRequest
from carryover.observability import logger, with_metrics
from carryover.store import Clock, StateStore

BulkHandler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


def _batch(event: Any) -> tuple[list[str], str, str]:
    """The partitions, bucket and prefix of a Distributed Map child's event."""
    items = event.get("Items") if isinstance(event, dict) else None
    given = event.get("BatchInput") if isinstance(event, dict) else None
    if not isinstance(items, list) or not isinstance(given, dict) or not isinstance(given.get("bucket"), str):
        raise InvalidRequest(
            'expected {"Items": [{"partition": ...}], "BatchInput": {"bucket", "prefix"}}: a batch of the '
            "bootstrap's Distributed Map"
        )
    partitions = [str(item.get("partition")) for item in items if isinstance(item, dict)]
    return partitions, given["bucket"], str(given.get("prefix", "log/"))


def create_bulk_handler(
    bundle: ModelBundle, store: StateStore, s3: Any, settings: Settings, clock: Clock
) -> BulkHandler:
    model = next_version(bundle)  # refused at cold start when there is none

    @logger.inject_lambda_context
    @with_metrics
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        partitions, bucket, prefix = _batch(event)
        log = S3Log(s3, bucket, prefix, partitions, bundle.manifest.name)
        tally = bootstrap_all(model, store, log, clock, settings.conflict_retries)
        logger.info("bootstrap batch", extra={"partitions": len(partitions), "users": tally.users, "rows": tally.rows})
        return {"partitions": partitions, "users": tally.users, "rows": tally.rows}

    return handler
