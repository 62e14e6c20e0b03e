"""Unit fixtures: the real handler and store against moto's in-process DynamoDB."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from carryover.routes import create_lambda_handler
from carryover.service import PredictionService
from carryover.state_store import StateStore
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
    def make(model: str = "seed", engine: str = "litert", conflict_retries: int = 10, client: Any = dynamodb) -> HandlerClient:
        bundle = served[model].bundles[engine]
        store = StateStore(client, TABLE, bundle.manifest.name, timedelta(days=30))
        service = PredictionService(bundle, store, conflict_retries)
        return HandlerClient(create_lambda_handler(service, MAX_TIMESTEPS))

    return make


def raw_item(dynamodb: Any, user: str, model: str = "seed_lstm") -> dict[str, Any] | None:
    return dynamodb.get_item(TableName=TABLE, Key={"user_id": {"S": user}, "model": {"S": model}}).get("Item")
