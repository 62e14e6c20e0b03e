"""DynamoDB failing: bounded retries, then 503 with Retry-After, and the saved state exactly as before.

Faults are injected in front of a DynamoDB reached over HTTP (the embedded moto server): a hook answers or
fails an attempt in place of the server, which then never sees it.
"""

from __future__ import annotations

from typing import Any

import pytest

from carryover.store.codec import item_key
from carryover.store.dynamodb import dynamodb_client
from infra.table import ensure_table
from tests.dynamodb_server import DynamoDBServer
from tests.faults import FAULTS
from tests.stores import MODEL
from tests.unit.conftest import TABLE, raw_item

ROW = [0.5] * 8
USER = "frank"
ATTEMPTS = 2


@pytest.fixture(scope="module")
def server():
    embedded = DynamoDBServer().start()
    ensure_table(dynamodb_client(embedded.endpoint), TABLE)
    yield embedded
    embedded.stop()


@pytest.fixture
def dynamodb(server):
    """An unhooked client of the same server, to read what it holds."""
    client = dynamodb_client(server.endpoint)
    client.delete_item(TableName=TABLE, Key=item_key(USER, MODEL))
    return client


@pytest.fixture
def faulty(make_client, server, dynamodb):
    """A handler whose DynamoDB client makes ATTEMPTS attempts per call, and a way to break one operation; the
    user's item written by another instance (this one reads it before writing)."""
    client = dynamodb_client(server.endpoint, connect_timeout=0.5, read_timeout=0.5, max_attempts=ATTEMPTS)
    assert make_client().predict(USER, [ROW]).status == 200
    handler = make_client(client=client)
    attempts: list[str] = []

    def inject(operation: str, fault) -> None:
        def counted(request, **kwargs):
            attempts.append(operation)
            return fault(request, **kwargs)

        client.meta.events.register_first(f"before-send.dynamodb.{operation}", counted)

    return handler, inject, attempts


@pytest.mark.parametrize("fault", FAULTS, ids=list(FAULTS))
@pytest.mark.parametrize("operation", ["GetItem", "PutItem"])
def test_predict_during_a_fault_is_503_and_leaves_state_as_it_was(faulty, dynamodb, fault, operation):
    handler, inject, attempts = faulty
    before = raw_item(dynamodb, USER)
    inject(operation, FAULTS[fault])
    reply = handler.predict(USER, [ROW])
    assert reply.status == 503, reply.body
    assert reply.body["error"]["code"] == "store_unavailable"
    assert reply.headers["retry-after"] == "1"
    assert attempts == [operation] * ATTEMPTS
    assert raw_item(dynamodb, USER) == before


@pytest.mark.parametrize(("method", "operation"), [("GET", "GetItem"), ("DELETE", "GetItem"), ("DELETE", "PutItem")])
def test_state_routes_during_a_fault_are_503(faulty, dynamodb, method, operation):
    handler, inject, attempts = faulty
    before = raw_item(dynamodb, USER)
    inject(operation, FAULTS["service unavailable"])
    reply = handler.request(method, f"/users/{USER}/state")
    assert reply.status == 503 and reply.body["error"]["code"] == "store_unavailable"
    assert len(attempts) == ATTEMPTS and raw_item(dynamodb, USER) == before


def test_a_passing_fault_is_retried_away(faulty):
    handler, inject, attempts = faulty
    once: list[int] = []

    def first_attempt_throttled(request, **kwargs):
        if not once:
            once.append(1)
            return FAULTS["throttled"](request, **kwargs)
        return None

    inject("GetItem", first_attempt_throttled)
    reply = handler.predict(USER, [ROW])
    assert reply.status == 200 and reply.body["steps"] == 2
    assert attempts == ["GetItem", "GetItem"]


def test_client_timeouts_and_attempts_are_explicit():
    config: Any = dynamodb_client(connect_timeout=0.7, read_timeout=1.5, max_attempts=4).meta.config  # no stubs
    assert (config.connect_timeout, config.read_timeout) == (0.7, 1.5)
    assert config.retries == {"mode": "standard", "total_max_attempts": 4}
