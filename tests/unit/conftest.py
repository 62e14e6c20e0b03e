"""Unit fixtures: the real handler and store against moto's in-process DynamoDB."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from carryover.composition import build_handler
from carryover.config import Settings
from carryover.store.item import Item
from infra.table import ensure_table
from tests import items
from tests.clients import HandlerClient
from tests.conftest import Served

TABLE = "carryover-test"
MAX_TIMESTEPS = 50


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb")
        ensure_table(client, TABLE)
        yield client


@pytest.fixture
def make_client(dynamodb: Any, served: dict[str, Served]) -> Callable[..., HandlerClient]:
    def make(
        model: str = "seed", engine: str = "litert", client: Any = dynamodb, clock: Any = None, **environ: str
    ) -> HandlerClient:
        """A handler as a cold start would build it; `environ` adds configuration (MAX_TIMESTEPS=50 unless given)."""
        clock = {"clock": clock} if clock else {}
        settings = Settings.from_env(
            {"TABLE_NAME": TABLE, "MODEL_BUNDLE": str(served[model].path), "MAX_TIMESTEPS": str(MAX_TIMESTEPS)}
            | environ
        )
        return HandlerClient(build_handler(settings, served[model].bundles[engine], client, **clock))

    return make


def raw_item(dynamodb: Any, user: str, model: str = items.MODEL) -> Item | None:
    return items.raw_item(dynamodb, TABLE, user, model)


def saved_item(dynamodb: Any, user: str, model: str = items.MODEL) -> Item:
    """The user's item, which the test has written."""
    item = raw_item(dynamodb, user, model)
    assert item is not None, f"{user} has no item"
    return item


def overwrite(dynamodb: Any, user: str, **attributes: Any) -> None:
    items.overwrite(dynamodb, TABLE, user, **attributes)
