"""Events a deployed function can be invoked with that are not what API Gateway's HTTP API sends: a console test
event with the body as an object, a REST API (payload 1.0) event, events missing their request context or path.
Each gets a 4xx in the API's error shape, in one line, and changes nothing."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from infra.local.server import LocalContext
from tests.clients import load_event
from tests.unit.conftest import raw_item


def body_object() -> Any:
    event = load_event("predict.json")
    event["body"] = json.loads(event["body"])  # as console test events are often written
    return event


def rest_api() -> Any:
    """An API Gateway REST API (proxy integration, payload format 1.0) event for the same request."""
    event = load_event("predict.json")
    return {
        "resource": "/users/{user_id}/predict", "path": event["rawPath"], "httpMethod": "POST",
        "headers": event["headers"], "pathParameters": event["pathParameters"], "body": event["body"],
        "isBase64Encoded": False, "requestContext": {"requestId": "r", "httpMethod": "POST", "path": event["rawPath"]},
    }  # fmt: skip


def without(*names: str) -> Any:
    event = copy.deepcopy(load_event("predict.json"))
    for name in names:
        del event[name]
    return event


EVENTS = {
    "body as a JSON object": (body_object, ["body", "string"]),
    "REST API (payload 1.0)": (rest_api, ["REST API", "payload format 2.0"]),
    "payload 1.0 of an HTTP API": (lambda: load_event("predict.json") | {"version": "1.0"}, ["payload format 1.0"]),
    "no requestContext": (lambda: without("requestContext"), ["requestContext"]),
    "no rawPath": (lambda: without("rawPath"), ["rawPath"]),
    "not an object": (lambda: ["an", "event"], ["not a JSON object"]),
}


@pytest.mark.parametrize("case", EVENTS, ids=list(EVENTS))
def test_an_event_that_is_not_an_http_api_request_is_a_400_in_one_line(make_client, dynamodb, case):
    build, words = EVENTS[case]
    client = make_client()
    result = client.handler(build(), LocalContext(aws_request_id="event"))
    assert result["statusCode"] == 400 and result["headers"]["Content-Type"] == "application/json"
    error = json.loads(result["body"])["error"]
    assert error["code"] == "invalid_request" and "\n" not in error["message"]
    assert all(word in error["message"] for word in words), error["message"]
    assert raw_item(dynamodb, "alice") is None
