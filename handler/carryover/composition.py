"""The composition root: settings -> DynamoDB client -> store -> service -> Lambda handler.

The Lambda entry point, the local stack, the tests and the benchmark all build through here; tests and the
benchmark pass an already loaded bundle, a client of their own, or a clock.
"""

from __future__ import annotations

from datetime import timedelta

from carryover.bundle import ModelBundle
from carryover.config import ConfigurationError, Settings
from carryover.core.apply import WRITERS
from carryover.core.domain import OUTBOX_LIMIT_BYTES, REPLY_LIMIT_BYTES, KeyWindow
from carryover.core.plan import Planner, PlanRules
from carryover.core.room import ItemRoom
from carryover.core.service import PredictionService
from carryover.http.lambda_handler import LambdaHandler, create_lambda_handler
from carryover.store import Clock, StateStore
from carryover.store.blobs import STATE_REF_BYTES, S3Blobs
from carryover.store.dynamodb import DynamoDBClient, DynamoDBStateStore, dynamodb_client, utc_now
from carryover.store.item import ITEM_LIMIT_BYTES, Lifetimes, largest_item_bytes

LOGGED_IN_OBJECTS = 1 << 30  # the rows a write logs, kept as an object: bounded by the request alone


def build_client(settings: Settings) -> DynamoDBClient:
    return dynamodb_client(
        str(settings.dynamodb_endpoint) if settings.dynamodb_endpoint else None,
        connect_timeout=settings.dynamodb_connect_timeout,
        read_timeout=settings.dynamodb_read_timeout,
        max_attempts=settings.dynamodb_max_attempts,
        connections=WRITERS,  # a batch's writes in flight at once, each on a connection kept for the next
    )


def lifetimes(settings: Settings) -> Lifetimes:
    keys = KeyWindow(ttl=timedelta(hours=settings.idempotency_ttl_hours), size=settings.idempotency_keys)
    return Lifetimes(state_ttl=timedelta(days=settings.state_ttl_days), keys=keys)


def states_in_objects(bundle: ModelBundle, settings: Settings) -> bool:
    """Whether states are kept as objects beside the item (`store/blobs.py`): when asked, or when the item cannot
    hold them with room for everything else a write keeps."""
    inline = sum(model.manifest.state_bytes for model in bundle.models)
    keys = lifetimes(settings).keys
    return (
        settings.states_in_objects == "always" or largest_item_bytes(inline, REPLY_LIMIT_BYTES, keys) > ITEM_LIMIT_BYTES
    )


def _item_bytes(bundle: ModelBundle, settings: Settings, history_rows: int) -> int:
    """The most an item holds for this bundle and settings with `history_rows` kept rows, besides the stream
    answers kept until published (a state kept as an object: its name)."""
    objects = states_in_objects(bundle, settings)
    states = sum(STATE_REF_BYTES if objects else model.manifest.state_bytes for model in bundle.models)
    history = history_rows * bundle.manifest.input.features * 4
    return largest_item_bytes(states, REPLY_LIMIT_BYTES, lifetimes(settings).keys, history)


def item_room(bundle: ModelBundle, settings: Settings) -> ItemRoom:
    """Room in the item for what a write records: the newest answer, and in what the item leaves, the stream
    answers kept until published (at most OUTBOX_LIMIT_BYTES) and, with ROW_LOG on, the rows applied."""
    left = max(0, ITEM_LIMIT_BYTES - _item_bytes(bundle, settings, settings.history_rows))
    if states_in_objects(bundle, settings):  # the rows logged are objects too: the item holds only their names
        return ItemRoom(REPLY_LIMIT_BYTES, min(OUTBOX_LIMIT_BYTES, left), LOGGED_IN_OBJECTS if settings.row_log else 0)
    kept = min(OUTBOX_LIMIT_BYTES, left // 2 if settings.row_log else left)
    return ItemRoom(reply=REPLY_LIMIT_BYTES, kept=kept, logged=left - kept if settings.row_log else 0)


def check_item_fits(bundle: ModelBundle, settings: Settings) -> None:
    """Refuses at cold start a bundle whose item could pass the store's limit with these settings: the states of
    its models, the kept rows, the keys and a recorded response."""
    manifest = bundle.manifest
    states = sum(model.manifest.state_bytes for model in bundle.models)
    history = settings.history_rows * manifest.input.features * 4
    if _item_bytes(bundle, settings, settings.history_rows) <= ITEM_LIMIT_BYTES:
        return
    if history:
        room = ITEM_LIMIT_BYTES - _item_bytes(bundle, settings, 0)
        most = max(0, room) // (4 * manifest.input.features)
        raise ConfigurationError(
            f"HISTORY_ROWS={settings.history_rows}: {history} bytes of rows beside model {manifest.name}'s states "
            f"would pass DynamoDB's item limit ({ITEM_LIMIT_BYTES} bytes); at most {most} rows fit"
        )
    raise ConfigurationError(
        f"model {manifest.name}: its states ({states} bytes) do not fit a DynamoDB item with room for "
        f"IDEMPOTENCY_KEYS={settings.idempotency_keys} and a recorded response"
    )


def check_objects_kept(bundle: ModelBundle, settings: Settings) -> None:
    """States that must be kept as objects need the bucket to keep them in (the stack gives STATE_BUCKET)."""
    if states_in_objects(bundle, settings) and not settings.state_bucket:
        states = sum(model.manifest.state_bytes for model in bundle.models)
        raise ConfigurationError(
            f"model {bundle.manifest.name}: its states ({states} bytes) are kept as objects beside the DynamoDB item, "
            "which cannot hold them: set STATE_BUCKET (template.yaml does)"
        )


def build_store(
    settings: Settings,
    bundle: ModelBundle,
    client: DynamoDBClient | None = None,
    clock: Clock = utc_now,
    logged_rows: bool = False,
) -> DynamoDBStateStore:
    """DynamoDB, with the state bucket when there is one: states the item cannot hold kept there (always read
    from there when an item names one); `logged_rows`: reads fetch the rows a write logged as an object too."""
    check_objects_kept(bundle, settings)
    store = DynamoDBStateStore(
        client or build_client(settings), settings.table_name, bundle.manifest.name, lifetimes(settings), clock
    )
    if settings.state_bucket:
        from botocore.config import Config
        from botocore.session import Session

        endpoint = str(settings.s3_endpoint) if settings.s3_endpoint else None
        s3 = Session().create_client("s3", endpoint_url=endpoint, config=Config(max_pool_connections=WRITERS))
        store.keep_states_in(S3Blobs(s3, settings.state_bucket), states_in_objects(bundle, settings), logged_rows)
    return store


def build_service(
    settings: Settings,
    bundle: ModelBundle | None = None,
    client: DynamoDBClient | None = None,
    clock: Clock = utc_now,
    store: StateStore | None = None,
) -> PredictionService:
    """Loads the model and connects the store (DynamoDB unless one is given), which keeps the items it writes for
    the next request (`ITEM_CACHE_MB`): the work of a cold start."""
    bundle = bundle or ModelBundle.load(settings.model_bundle, settings.engine)
    check_item_fits(bundle, settings)
    store = store or build_store(settings, bundle, client, clock)
    store.keep_items(settings.item_cache_mb << 20)
    return PredictionService(
        bundle, store, Planner(bundle, clock, plan_rules(bundle, settings)), settings.conflict_retries
    )


def plan_rules(bundle: ModelBundle, settings: Settings) -> PlanRules:
    return PlanRules(
        policy=settings.state_on_incompatible,
        keys=lifetimes(settings).keys,
        history_rows=settings.history_rows,
        room=item_room(bundle, settings),
    )


def build_handler(
    settings: Settings, bundle: ModelBundle | None = None, client: DynamoDBClient | None = None, clock: Clock = utc_now
) -> LambdaHandler:
    return create_lambda_handler(build_service(settings, bundle, client, clock), settings)
