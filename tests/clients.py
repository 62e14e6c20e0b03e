"""Two ways to call the API with one interface: the Lambda handler with API Gateway events built from
`events/`, and HTTP against the local server."""

from __future__ import annotations

import copy
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from infra.local.server import LocalContext

EVENTS = Path(__file__).resolve().parent.parent / "events"


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any
    headers: dict[str, str]


class Client:
    def request(self, method: str, path: str, body: str | None = None, headers: dict[str, str] | None = None) -> Reply:
        raise NotImplementedError

    def predict(self, user: str, inputs: Any, reset: bool | None = None, key: str | None = None) -> Reply:
        body: dict[str, Any] = {"inputs": inputs.tolist() if hasattr(inputs, "tolist") else inputs}
        if reset is not None:
            body["reset"] = reset
        headers = {"idempotency-key": key} if key is not None else None
        return self.request("POST", f"/users/{user}/predict", json.dumps(body), headers)

    def state(self, user: str) -> Reply:
        return self.request("GET", f"/users/{user}/state")

    def delete(self, user: str) -> Reply:
        return self.request("DELETE", f"/users/{user}/state")

    def model(self) -> Reply:
        return self.request("GET", "/model")


class HandlerClient(Client):
    """Invokes a Lambda handler in process with events shaped like the files in `events/`."""

    ROUTE_EVENTS: ClassVar[dict[tuple[str, str], str]] = {
        ("POST", "predict"): "predict.json",
        ("GET", "state"): "get_state.json",
        ("DELETE", "state"): "delete_state.json",
    }

    def __init__(self, handler: Any) -> None:
        self.handler = handler

    def event(self, method: str, path: str, body: str | None) -> dict[str, Any]:
        parts = path.strip("/").split("/")
        name = self.ROUTE_EVENTS.get((method, parts[-1]), "get_model.json")
        event = copy.deepcopy(load_event(name))
        event["rawPath"] = event["requestContext"]["http"]["path"] = path
        event["requestContext"]["http"]["method"] = method
        if len(parts) == 3 and "pathParameters" in event:
            event["pathParameters"] = {"user_id": parts[1]}
        event["body"] = body
        return event

    def invoke(self, event: dict[str, Any]) -> Reply:
        result = self.handler(event, LocalContext(aws_request_id=event["requestContext"]["requestId"]))
        body = json.loads(result["body"]) if result.get("body") else None
        return Reply(result["statusCode"], body, {k.lower(): v for k, v in (result.get("headers") or {}).items()})

    def request(self, method: str, path: str, body: str | None = None, headers: dict[str, str] | None = None) -> Reply:
        event = self.event(method, path, body)
        event["headers"] |= headers or {}
        return self.invoke(event)


class HttpClient(Client):
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def request(self, method: str, path: str, body: str | None = None, headers: dict[str, str] | None = None) -> Reply:
        data = body.encode() if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers or {})
        request.add_header("content-type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, raw, headers = response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as error:
            status, raw, headers = error.code, error.read(), dict(error.headers)
        return Reply(status, json.loads(raw) if raw else None, {k.lower(): v for k, v in headers.items()})
