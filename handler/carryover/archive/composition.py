"""The row log functions as their cold start builds them: the archiver on the table's change stream, and the
daily compaction of every partition."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from carryover.archive.archiver import ArchiveHandler, Archiver, create_archive_handler
from carryover.archive.compaction import compact
from carryover.config import ConfigurationError, Settings
from carryover.observability import logger
from carryover.store.blobs import S3Blobs


def _bucket(settings: Settings) -> str:
    if not settings.log_bucket:
        raise ConfigurationError("LOG_BUCKET: the row log functions need the log's bucket")
    return settings.log_bucket


def _s3() -> Any:
    from botocore.session import Session

    return Session().create_client("s3")


def build_archive_handler(settings: Settings) -> ArchiveHandler:
    s3 = _s3()
    blobs = S3Blobs(s3, settings.state_bucket) if settings.state_bucket else None
    return create_archive_handler(Archiver(s3, _bucket(settings), settings.log_prefix, blobs))


def build_compact_handler(settings: Settings) -> Callable[[dict[str, Any], LambdaContext], dict[str, Any]]:
    bucket, client = _bucket(settings), _s3()

    @logger.inject_lambda_context
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        sorted_lines = compact(client, bucket, settings.log_prefix, settings.row_log_retention_days, datetime.now(UTC))
        logger.info("row log compacted", extra={"lines": sorted_lines})
        return {"lines": sorted_lines}

    return handler
