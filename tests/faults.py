"""Faults injected in front of a DynamoDB reached over HTTP: a botocore before-send hook answers or fails
an attempt in place of the server, which then never sees it."""

from __future__ import annotations

import json

from botocore.awsrequest import AWSResponse
from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError


class _Body:
    def __init__(self, payload: bytes) -> None:
        self._payload = payload

    def stream(self, **_):
        yield self._payload


def error_response(status: int, code: str):
    def respond(request, **_):
        payload = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": "injected"}).encode()
        return AWSResponse(request.url, status, {"x-amzn-requestid": "injected"}, _Body(payload))

    return respond


def raising(error: type[Exception]):
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
