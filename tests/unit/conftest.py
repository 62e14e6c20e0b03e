"""Unit fixtures: the real handler and store against moto's in-process DynamoDB."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from carryover.config import Settings
from carryover.routes import create_lambda_handler
from carryover.service import create_service
from infra.table import ensure_table
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
    def make(model: str = "seed", engine: str = "litert", client: Any = dynamodb, **environ: str) -> HandlerClient:
        """A handler as a cold start would build it; `environ` adds configuration (MAX_TIMESTEPS=50 unless given)."""
        settings = Settings.from_env(
            {"TABLE_NAME": TABLE, "MODEL_BUNDLE": str(served[model].path), "MAX_TIMESTEPS": str(MAX_TIMESTEPS)} | environ
        )
        service = create_service(settings, served[model].bundles[engine], client)
        return HandlerClient(create_lambda_handler(service, settings))

    return make


def raw_item(dynamodb: Any, user: str, model: str = "seed_lstm") -> dict[str, Any] | None:
    return dynamodb.get_item(TableName=TABLE, Key={"user_id": {"S": user}, "model": {"S": model}}).get("Item")
