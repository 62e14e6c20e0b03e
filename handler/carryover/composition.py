"""The composition root: settings -> DynamoDB client -> store -> service -> Lambda handler.

The Lambda entry point, the local stack, the tests and the benchmark all build through here; tests and the
benchmark pass an already loaded bundle, a client of their own, or a clock.
"""

from __future__ import annotations

from datetime import timedelta

from carryover.bundle import ModelBundle
from carryover.config import ConfigurationError, Settings
from carryover.routes import LambdaHandler, create_lambda_handler
from carryover.service import REPLY_LIMIT_BYTES, PredictionService
from carryover.state_item import ITEM_LIMIT_BYTES
from carryover.state_store import Clock, DynamoDBClient, StateStore, StoreSettings, dynamodb_client, utc_now

ITEM_OVERHEAD_BYTES = 2048  # keys, names, write ids, times: everything in an item but the state and the reply


def build_client(settings: Settings) -> DynamoDBClient:
    return dynamodb_client(
        str(settings.dynamodb_endpoint) if settings.dynamodb_endpoint else None,
        connect_timeout=settings.dynamodb_connect_timeout,
        read_timeout=settings.dynamodb_read_timeout,
        max_attempts=settings.dynamodb_max_attempts,
    )


def build_service(
    settings: Settings, bundle: ModelBundle | None = None, client: DynamoDBClient | None = None, clock: Clock = utc_now
) -> PredictionService:
    """Loads the model and connects the store: the work of a cold start."""
    bundle = bundle or ModelBundle.load(settings.model_bundle, settings.engine)
    largest = bundle.manifest.state_bytes + REPLY_LIMIT_BYTES + ITEM_OVERHEAD_BYTES + 20 * settings.idempotency_keys
    if largest > ITEM_LIMIT_BYTES:
        raise ConfigurationError(
            f"model {bundle.manifest.name}: its state ({bundle.manifest.state_bytes} bytes) does not fit a DynamoDB "
            f"item with room for IDEMPOTENCY_KEYS={settings.idempotency_keys} and a recorded response"
        )
    store_settings = StoreSettings(
        ttl=timedelta(days=settings.state_ttl_days),
        key_ttl=timedelta(hours=settings.idempotency_ttl_hours),
        max_keys=settings.idempotency_keys,
    )
    store = StateStore(
        client or build_client(settings), settings.table_name, bundle.manifest.name, store_settings, clock
    )
    return PredictionService(
        bundle.manifest, bundle.engine, store, clock, settings.conflict_retries, settings.state_on_incompatible
    )


def build_handler(
    settings: Settings, bundle: ModelBundle | None = None, client: DynamoDBClient | None = None, clock: Clock = utc_now
) -> LambdaHandler:
    return create_lambda_handler(build_service(settings, bundle, client, clock), settings)
