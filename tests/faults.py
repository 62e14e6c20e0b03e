"""Faults injected in front of a DynamoDB reached over HTTP: a botocore before-send hook answers or fails
an attempt in place of the server, which then never sees it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from botocore.awsrequest import AWSResponse, HTTPHeaders
from botocore.exceptions import BotoCoreError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

from carryover.bundle import ModelBundle
from carryover.composition import build_client, build_service
from carryover.config import Settings
from carryover.http.lambda_handler import create_lambda_handler
from infra.local.dynamodb import EmbeddedDynamoDB
from infra.local.server import LocalApi
from infra.table import ensure_table


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
    store = EmbeddedDynamoDB().start()
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
