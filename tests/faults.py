"""Faults injected in front of a store: for DynamoDB reached over HTTP, a botocore before-send hook answers or
fails an attempt in place of the server, which then never sees it; a lost answer for either store."""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from botocore.awsrequest import AWSResponse, HTTPHeaders
from botocore.exceptions import BotoCoreError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

from carryover.bundle import ModelBundle
from carryover.composition import build_client, build_service
from carryover.config import Settings
from carryover.http.lambda_handler import create_lambda_handler
from carryover.store.sqlite import SQLiteStateStore
from infra.local.server import LocalApi
from infra.table import ensure_table
from tests.dynamodb_server import DynamoDBServer


class _Body:
    def __init__(self, payload: bytes) -> None:
        self._payload = payload

    def stream(self, **_):
        yield self._payload


def error_response(status: int, code: str):
    def respond(request, **_):
        payload = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": "injected"}).encode()
        headers = HTTPHeaders.from_pairs([("x-amzn-requestid", "injected")])
        return AWSResponse(request.url, status, headers, _Body(payload))

    return respond


def raising(error: type[BotoCoreError]):
    def respond(request, **_):
        raise error(endpoint_url=request.url)

    return respond


FAULTS = {
    "throttled": error_response(400, "ThrottlingException"),
    "throughput exceeded": error_response(400, "ProvisionedThroughputExceededException"),
    "internal server error": error_response(500, "InternalServerError"),
    "service unavailable": error_response(503, "ServiceUnavailable"),
    "connection refused": raising(EndpointConnectionError),
    "connect timeout": raising(ConnectTimeoutError),
    "read timeout": raising(ReadTimeoutError),
}


@contextmanager
def local_api(bundle: Path, loaded: ModelBundle, table: str) -> Iterator[tuple[str, Any]]:
    """The local API over an embedded DynamoDB, with the store's own client at hand to break: (url, client)."""
    store = DynamoDBServer().start()
    settings = Settings.from_env(
        {"TABLE_NAME": table, "MODEL_BUNDLE": str(bundle), "DYNAMODB_ENDPOINT": store.endpoint}
    )
    client = build_client(settings)
    ensure_table(client, table)
    service = build_service(settings, loaded, client)
    api = LocalApi(lambda: create_lambda_handler(service, settings), port=0).start_background()
    try:
        yield api.url, client
    finally:
        api.stop()
        store.stop()


def wire_to_params(value: Any) -> Any:
    """DynamoDB JSON as sent on the wire (binary as base64) back into boto3 parameters."""
    if isinstance(value, dict):
        return {k: base64.b64decode(v) if k == "B" else wire_to_params(v) for k, v in value.items()}
    if isinstance(value, list):
        return [wire_to_params(v) for v in value]
    return value


class LostAnswer:
    """A write that lands and whose answer is lost, `times` times; `meanwhile` runs before the writer learns of
    it. For DynamoDB, a transport fault on PutItem (a read timeout after the server applied it; botocore retries
    it); for SQLite, a commit that reports an I/O error after it became durable."""

    def __init__(self, meanwhile: Callable[[], None] = lambda: None, times: int = 1) -> None:
        self.meanwhile, self.times, self.lost, self._detached = meanwhile, times, 0, False

    def _lose(self) -> bool:
        if self._detached or self.lost >= self.times:
            return False
        self.lost += 1
        return True

    def _meanwhile(self) -> None:
        self._detached = True  # the other writers of `meanwhile` are not faulted
        try:
            self.meanwhile()
        finally:
            self._detached = False


class DynamoDBLostAnswer(LostAnswer):
    def __init__(self, dynamodb: Any, meanwhile: Callable[[], None] = lambda: None, times: int = 1) -> None:
        super().__init__(meanwhile, times)
        self.dynamodb = dynamodb

    def __call__(self, request: Any, **_: Any) -> None:
        if not self._lose():
            return
        self.dynamodb.meta.events.unregister("before-send.dynamodb.PutItem", self)
        try:
            self.dynamodb.put_item(**wire_to_params(json.loads(request.body)))  # the write lands ...
            self._meanwhile()
        finally:
            self.dynamodb.meta.events.register_first("before-send.dynamodb.PutItem", self)
        raise ReadTimeoutError(endpoint_url=request.url)  # ... and its answer never comes

    def __enter__(self) -> DynamoDBLostAnswer:
        self.dynamodb.meta.events.register_first("before-send.dynamodb.PutItem", self)
        return self

    def __exit__(self, *_: object) -> None:
        self.dynamodb.meta.events.unregister("before-send.dynamodb.PutItem", self)


class SQLiteLostAnswer(LostAnswer):
    def __enter__(self) -> SQLiteLostAnswer:
        self._original = original = SQLiteStateStore._transaction
        fault = self

        def transaction(store: SQLiteStateStore, group: list[Any]) -> None:
            original(store, group)  # the write lands ...
            if fault._lose():
                fault._meanwhile()
                raise sqlite3.OperationalError("disk I/O error")  # ... and its commit reports a failure

        SQLiteStateStore._transaction = transaction  # type: ignore[method-assign,assignment]
        return self

    def __exit__(self, *_: object) -> None:
        SQLiteStateStore._transaction = self._original  # type: ignore[method-assign]
