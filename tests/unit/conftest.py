"""Unit fixtures: the real handler on a real store, moto's in-process DynamoDB by default, and `backend` for
tests that hold for every store (DynamoDB and SQLite alike)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from carryover.composition import build_service, lifetimes
from carryover.config import Settings
from carryover.http.lambda_handler import create_lambda_handler
from carryover.store import StateStore
from carryover.store.blobs import BlobStore, S3Blobs, resolve
from carryover.store.dynamodb import DynamoDBStateStore, utc_now
from carryover.store.item import Item
from carryover.store.sqlite import SQLiteStateStore
from infra.table import ensure_table
from tests.clients import HandlerClient
from tests.conftest import Bundled
from tests.faults import DynamoDBLostAnswer, LostAnswer, SQLiteLostAnswer
from tests.stores import MODEL, DynamoDBItems, Items, SQLiteItems

TABLE = "carryover-test"
MAX_TIMESTEPS = 50
MakeClient = Callable[..., HandlerClient]


SESSION = boto3.session.Session()  # one per worker: its clients skip loading the service models again (0.1 s each)


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    with mock_aws():
        client = SESSION.client("dynamodb")
        ensure_table(client, TABLE)
        yield client


def settings_for(served: Bundled, environ: dict[str, str]) -> Settings:
    base = {"TABLE_NAME": TABLE, "MODEL_BUNDLE": str(served.path), "MAX_TIMESTEPS": str(MAX_TIMESTEPS)}
    return Settings.from_env(base | environ)


@pytest.fixture
def model_key(request: pytest.FixtureRequest) -> str:
    """The model a handler serves unless a test names another: the demo's ("seed"), or in the fast tier the small
    committed bundle ("small")."""
    return "small" if request.node.get_closest_marker("fast") else "seed"


@pytest.fixture
def bundled(served: dict[str, Bundled], small: Bundled) -> Callable[[str], Bundled]:
    """A model by key: the small committed bundle ("small", no Keras), or one of `served`."""
    return lambda key: small if key == "small" else served[key]


def _maker(
    bundled: Callable[[str], Bundled], default: str, store_for: Callable[[Settings, str, Any, Any], StateStore]
) -> MakeClient:
    def make(
        model: str = default, engine: str = "litert", clock: Any = None, client: Any = None, **environ: str
    ) -> HandlerClient:
        """A handler as a cold start would build it, on a store of its own (as each Lambda instance has); `environ`
        adds configuration (MAX_TIMESTEPS=50 unless given)."""
        chosen = bundled(model)
        settings = settings_for(chosen, environ)
        clock = clock or utc_now
        store = store_for(settings, chosen.manifest.name, clock, client)
        service = build_service(settings, chosen.bundles[engine], store=store, clock=clock)
        return HandlerClient(create_lambda_handler(service, settings))

    return make


@pytest.fixture
def make_client(dynamodb: Any, bundled: Callable[[str], Bundled], model_key: str) -> MakeClient:
    def store(settings: Settings, model: str, clock: Any, client: Any) -> StateStore:
        return DynamoDBStateStore(client or dynamodb, TABLE, model, lifetimes(settings), clock)

    return _maker(bundled, model_key, store)


@dataclass
class Backend:
    """A store under test: handlers on it, the items it holds, and its own way of losing a write's answer."""

    name: str
    make_client: MakeClient
    items: Items
    store_class: type[StateStore]
    lost_answer: Callable[..., LostAnswer]


class ObjectItems(DynamoDBItems):
    """A table's items with their state objects read back in (`store/blobs.py`), as the store reads them."""

    def __init__(self, client: Any, table: str, blobs: BlobStore) -> None:
        super().__init__(client, table)
        self.blobs = blobs

    def get(self, user: str, model: str = MODEL) -> Item | None:
        found = super().get(user, model)
        return None if found is None else resolve(found, self.blobs)


def _uncached(make: MakeClient) -> MakeClient:
    """`make` with no item cache: every request reads its item first."""
    return lambda *args, **environ: make(*args, **({"ITEM_CACHE_MB": "0"} | environ))


@pytest.fixture(params=["dynamodb", "uncached", "sqlite", "objects"])
def backend(
    request: pytest.FixtureRequest, bundled: Callable[[str], Bundled], model_key: str, tmp_path: Path
) -> Iterator[Backend]:
    """A store under test: DynamoDB (moto), the same without the item cache (`store/cache.py`; the others keep
    it on, as served), SQLite, or DynamoDB keeping every state as an object in S3 (moto's), as it keeps states too
    large for an item."""
    if request.param in ("dynamodb", "uncached", "objects"):
        client = request.getfixturevalue("dynamodb")
        items: DynamoDBItems = DynamoDBItems(client, TABLE)
        make = request.getfixturevalue("make_client")
        if request.param == "uncached":
            make = _uncached(make)
        if request.param == "objects":
            s3 = SESSION.client("s3")
            s3.create_bucket(Bucket="states")
            blobs = S3Blobs(s3, "states")
            items = ObjectItems(client, TABLE, blobs)

            def in_objects(settings: Settings, model: str, clock: Any, given: Any) -> StateStore:
                kept = DynamoDBStateStore(given or client, TABLE, model, lifetimes(settings), clock)
                kept.keep_states_in(blobs, always=True)
                return kept

            make = _maker(bundled, model_key, in_objects)
        yield Backend(
            request.param,
            make,
            items,
            DynamoDBStateStore,
            lambda meanwhile=lambda: None, times=1: DynamoDBLostAnswer(client, meanwhile, times),
        )
        return
    path, opened = tmp_path / "state.sqlite3", []

    def sqlite(settings: Settings, model: str, clock: Any, _: Any) -> StateStore:
        opened.append(SQLiteStateStore(path, model, lifetimes(settings), clock))
        return opened[-1]

    yield Backend("sqlite", _maker(bundled, model_key, sqlite), SQLiteItems(path), SQLiteStateStore, SQLiteLostAnswer)
    for opened_store in opened:
        opened_store.close()


def raw_item(dynamodb: Any, user: str, model: str = MODEL) -> Item | None:
    return DynamoDBItems(dynamodb, TABLE).get(user, model)


def saved_item(dynamodb: Any, user: str, model: str = MODEL) -> Item:
    return DynamoDBItems(dynamodb, TABLE).saved(user, model)


def overwrite(dynamodb: Any, user: str, **attributes: Any) -> None:
    """Another writer (an earlier release, another model version, damage): as every writer of the table must, it
    moves the item's revision, which each write is conditional on (an instance holding the item in its cache
    finds out from its refused write), unless `attributes` set the revision themselves."""
    items = DynamoDBItems(dynamodb, TABLE)
    revision = {"N": str(int(items.saved(user)["revision"]["N"]) + 1)}
    items.overwrite(user, **({"revision": revision} | attributes))
