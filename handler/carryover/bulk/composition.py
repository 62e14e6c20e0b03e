"""The bootstrap's worker function as its cold start builds it: the bundle (its next version bootstrapped), the
state table, the log's bucket."""

from __future__ import annotations

from carryover.bulk.lambda_handler import BulkHandler, create_bulk_handler
from carryover.bundle import ModelBundle
from carryover.composition import build_store
from carryover.config import Settings
from carryover.store import Clock
from carryover.store.dynamodb import utc_now


def build_bulk_handler(settings: Settings, clock: Clock = utc_now) -> BulkHandler:
    from botocore.session import Session

    bundle = ModelBundle.load(settings.model_bundle, settings.engine)
    store = build_store(settings, bundle, clock=clock, logged_rows=True)
    return create_bulk_handler(bundle, store, Session().create_client("s3"), settings, clock)
