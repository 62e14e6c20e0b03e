"""A batch's writes in flight at once each keep their connection: none is opened, used once and dropped."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from carryover.composition import build_client
from carryover.config import Settings
from carryover.core.apply import WRITERS
from carryover.store.codec import item_key
from infra.table import ensure_table
from tests.conftest import SMALL_BUNDLE
from tests.dynamodb_server import DynamoDBServer
from tests.stores import MODEL

TABLE = "connections"


@pytest.fixture(scope="module")
def endpoint():
    server = DynamoDBServer().start()
    yield server.endpoint
    server.stop()


def test_writes_in_flight_at_once_keep_their_connections(endpoint, caplog):
    settings = Settings.from_env(
        {"TABLE_NAME": TABLE, "MODEL_BUNDLE": str(SMALL_BUNDLE), "DYNAMODB_ENDPOINT": endpoint}
    )
    client = build_client(settings)
    ensure_table(client, TABLE)
    together = threading.Barrier(WRITERS)

    def write(index: int) -> None:
        together.wait()
        client.put_item(TableName=TABLE, Item=item_key(f"user-{index}", MODEL))

    with caplog.at_level(logging.WARNING, logger="urllib3"), ThreadPoolExecutor(WRITERS) as writers:
        for _ in range(3):
            list(writers.map(write, range(WRITERS)))
    dropped = [r.getMessage() for r in caplog.records if "Connection pool is full" in r.getMessage()]
    assert dropped == [], f"{len(dropped)} connections dropped: {dropped[0]}"
